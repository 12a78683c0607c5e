# laurelin.django.application — the app runserver serves: ASGI_APPLICATION, with static files.
#
# Like Daphne's runserver: the dotted path in settings.ASGI_APPLICATION, wrapped in Django's
# ASGIStaticFilesHandler when django.contrib.staticfiles is installed and either DEBUG or
# --insecure is on (unless --nostatic). Every mistake in the setting is a CommandError that
# says what is wrong and what to write instead; an exception raised by the project's own module
# while it is imported is left alone, so its traceback shows where.
from __future__ import annotations

import importlib
import inspect
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management import CommandError

from laurelin.importer import ASGIApp

EXAMPLE = 'ASGI_APPLICATION = "myproject.asgi.application"'


def asgi_application_path() -> str:
    """The ASGI_APPLICATION setting, checked for shape.

    Raises:
        CommandError: the setting is missing, empty or not a dotted path.
    """
    value = getattr(settings, "ASGI_APPLICATION", None)
    if not value:
        raise CommandError(
            "You have not set ASGI_APPLICATION, which is needed to run the server: "
            f"name your ASGI application in your settings, e.g. {EXAMPLE}"
        )
    if not isinstance(value, str) or "." not in value.strip(".") or ":" in value:
        raise CommandError(
            f"ASGI_APPLICATION = {value!r} is not a dotted path to an ASGI application: "
            f"write module.path.attribute, e.g. {EXAMPLE}"
        )
    return value


def load_asgi_application() -> ASGIApp:
    """Import the object ASGI_APPLICATION names.

    Raises:
        CommandError: the setting is missing or malformed, its module does not exist, or it
            names an attribute that the module lacks or that is not callable.
    """
    value = asgi_application_path()
    module_name, _, attribute = value.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise  # a module the project imports is missing: its traceback says which
        raise CommandError(
            f"ASGI_APPLICATION = {value!r}: there is no module {module_name!r} "
            f"(no module named {exc.name!r}); check the setting"
        ) from None
    try:
        app = getattr(module, attribute)
    except AttributeError:
        raise CommandError(
            f"ASGI_APPLICATION = {value!r}: module {module_name!r} has no attribute "
            f"{attribute!r}{_what_it_has(module)}"
        ) from None
    if not callable(app):
        raise CommandError(
            f"ASGI_APPLICATION = {value!r} is not an ASGI application: it is a "
            f"{type(app).__name__}, not a callable"
        )
    result: ASGIApp = app
    return result


def _what_it_has(module: Any) -> str:
    """The names in `module` that could be what the setting meant (not what it imported)."""
    found = sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)
        and "app" in name.lower()
        and not (
            (inspect.isroutine(value) or inspect.isclass(value))
            and getattr(value, "__module__", None) != module.__name__
        )
    )
    return f" (it has: {', '.join(found)})" if found else ""


def runserver_application(use_static_handler: bool, insecure_serving: bool) -> ASGIApp:
    """The application runserver serves, with static files when Django would serve them."""
    app = load_asgi_application()
    if (
        use_static_handler
        and apps.is_installed("django.contrib.staticfiles")
        and (settings.DEBUG or insecure_serving)
    ):
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        static: ASGIApp = ASGIStaticFilesHandler(app)
        return static
    return app
