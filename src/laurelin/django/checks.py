# laurelin.django.checks — the system checks of the laurelin app (`manage.py check`, runserver).
#
# Django runs the `runserver` command of the first app in INSTALLED_APPS that has one, so the
# order decides whose runserver starts: laurelin.E001 when django.contrib.staticfiles comes first
# (its runserver is Django's WSGI one, without WebSockets), laurelin.E002 when Daphne is
# installed as well (two ASGI runservers: one of them is dead weight, and which one runs depends on
# the order). Apps are recognised by name, so custom AppConfig subclasses count too.
from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error

LAURELIN_APPS = ("laurelin", "laurelin.django")
STATICFILES_APP = "django.contrib.staticfiles"
DAPHNE_APP = "daphne"


def _position(names: list[str], wanted: tuple[str, ...]) -> int | None:
    for index, name in enumerate(names):
        if name in wanted:
            return index
    return None


def _installed() -> list[str]:
    return [config.name for config in apps.get_app_configs()]


def check_app_order(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """laurelin.E001: laurelin must come before django.contrib.staticfiles."""
    names = _installed()
    ours = _position(names, LAURELIN_APPS)
    static = _position(names, (STATICFILES_APP,))
    if ours is None or static is None or ours < static:
        return []
    return [
        Error(
            f'"{names[ours]}" must be listed before "{STATICFILES_APP}" in INSTALLED_APPS.',
            hint=(
                f'Move "{names[ours]}" above "{STATICFILES_APP}": the first app with a '
                "runserver command wins, and staticfiles' runserver is Django's WSGI server "
                "(no WebSockets, no ASGI_APPLICATION)."
            ),
            id="laurelin.E001",
        )
    ]


def check_one_runserver(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """laurelin.E002: daphne and laurelin both installed (two ASGI runservers)."""
    names = _installed()
    ours = _position(names, LAURELIN_APPS)
    daphne = _position(names, (DAPHNE_APP,))
    if ours is None or daphne is None:
        return []
    winner = "daphne" if daphne < ours else "laurelin"
    return [
        Error(
            f'Both "{DAPHNE_APP}" and "{names[ours]}" are in INSTALLED_APPS: manage.py runserver '
            f"is {winner}'s, because it is listed first.",
            hint=(
                f'Remove one of them: to serve with laurelin, remove "{DAPHNE_APP}" (laurelin '
                "takes Daphne's runserver flags and settings unchanged)."
            ),
            id="laurelin.E002",
        )
    ]
