# The laurelin app's management commands: runserver.
