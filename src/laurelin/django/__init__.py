# laurelin.django — laurelin as a Django app: "laurelin" (or "laurelin.django") in INSTALLED_APPS.
#
# Importing this package imports nothing of Django (laurelin runs without it). Django itself loads
# apps.py (the AppConfig, which registers the system checks in checks.py) and
# management/commands/runserver.py (runserver through laurelin, in devserver.py, with request
# lines in Daphne's runserver format from access.py).
"""laurelin's Django integration: runserver served by laurelin, and its system checks."""
