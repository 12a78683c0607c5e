# `manage.py runserver` for "laurelin" in INSTALLED_APPS: laurelin.django's command.
from __future__ import annotations

from laurelin.django.management.commands.runserver import Command

__all__ = ["Command"]
