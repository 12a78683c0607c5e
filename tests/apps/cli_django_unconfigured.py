# Stands in for a Django project's asgi.py imported without DJANGO_SETTINGS_MODULE: Django is not
# a test dependency, so this raises Django's ImproperlyConfigured message from a look-alike class.
from __future__ import annotations


class ImproperlyConfigured(Exception):
    """Same name and message as django.core.exceptions.ImproperlyConfigured."""


raise ImproperlyConfigured(
    "Requested setting DEBUG, but settings are not configured. You must either define the "
    "environment variable DJANGO_SETTINGS_MODULE or call settings.configure() before accessing "
    "settings."
)
