# laurelin.apps — what Django loads for "laurelin" in INSTALLED_APPS: the laurelin.django app
# under the shorter name (its runserver command is laurelin/management/commands/runserver.py).
# Only Django imports this module; nothing else in laurelin does.
from __future__ import annotations

import laurelin.django.apps as _django_apps


class LaurelinConfig(_django_apps.LaurelinConfig):
    """The laurelin app, listed as "laurelin"."""

    name = "laurelin"
