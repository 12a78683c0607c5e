# laurelin.django.apps — the AppConfig Django loads for "laurelin.django" (and, through
# laurelin/apps.py, for "laurelin"): it registers the system checks of checks.py.
from __future__ import annotations

from django.apps import AppConfig
from django.core import checks

from laurelin.django.checks import check_app_order, check_one_runserver


class LaurelinConfig(AppConfig):  # type: ignore[misc]
    """laurelin in INSTALLED_APPS: `manage.py runserver` is laurelin's, checked at start-up."""

    name = "laurelin.django"
    # One label for both spellings, so listing both is Django's "labels aren't unique" error.
    label = "laurelin"
    verbose_name = "laurelin"

    def ready(self) -> None:
        """Register the checks (like Daphne's, E001 is tagged staticfiles)."""
        checks.register(check_app_order, checks.Tags.staticfiles)
        checks.register(check_one_runserver)
