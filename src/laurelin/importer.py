# laurelin.importer — turn "module.path:attribute" into an ASGI 3 callable, or one clear line.
#
# Every failure a user can cause at start-up becomes an `AppLoadError` whose message is a single
# readable sentence with the fix: module not found (and from where), attribute missing (with the
# ASGI-looking names the module does have), not callable, Django settings not configured.
# ASGI 2 applications (a class called with the scope, returning a coroutine function) are wrapped.
from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class AppLoadError(Exception):
    """The application could not be loaded; str() is the one line to show the user."""


def _asgi_looking(module: Any) -> list[str]:
    names = []
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value) or not callable(value):
            continue
        if name in ("application", "app", "asgi_app", "api") or "app" in name.lower():
            names.append(name)
    return sorted(names)


def _settings_hint(exc: BaseException) -> str | None:
    text = str(exc)
    if "DJANGO_SETTINGS_MODULE" in text or "settings are not configured" in text:
        return (
            "Django settings are not configured: set DJANGO_SETTINGS_MODULE (e.g. "
            "DJANGO_SETTINGS_MODULE=myproject.settings) and call django.setup() before "
            "importing models in your asgi.py"
        )
    if "Apps aren't loaded yet" in text:
        return (
            "Django apps aren't loaded yet: call django.setup() (or get_asgi_application()) "
            "in your asgi.py before importing consumers, routing or models"
        )
    return None


def import_from_string(path: str, app_dir: str = ".") -> Any:
    """Import `module.path:attribute` (dotted attributes allowed) and return the object.

    Raises:
        AppLoadError: with a one-line explanation of what is wrong.
    """
    module_name, _, attr_path = path.partition(":")
    if not module_name:
        raise AppLoadError(f"Invalid application {path!r}: expected module.path:attribute")
    attr_path = attr_path or "application"
    directory = os.path.abspath(app_dir)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppLoadError(
                f"Could not import module {module_name!r} (no module named {exc.name!r} "
                f"found from directory {directory}); check the path or use --app-dir"
            ) from None
        raise AppLoadError(
            f"Error importing {module_name!r}: {exc} (a module it imports is missing)"
        ) from exc
    except Exception as exc:
        hint = _settings_hint(exc)
        if hint:
            raise AppLoadError(f"Error importing {module_name!r}: {hint}") from None
        raise AppLoadError(f"Error importing {module_name!r}: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            found = _asgi_looking(module)
            has = f"; it has: {', '.join(found)}" if found else ""
            raise AppLoadError(
                f"Module {module_name!r} has no attribute {attr_path!r}{has}"
            ) from None
    return obj


def _is_asgi2(app: Any) -> bool:
    if inspect.isclass(app):
        call = getattr(app, "__await__", None)
        return call is None
    if inspect.iscoroutinefunction(app):
        return False
    call = getattr(app, "__call__", None)  # noqa: B004 - we want the bound method itself
    if call is not None and inspect.iscoroutinefunction(call):
        return False
    try:
        params = inspect.signature(app).parameters
    except (TypeError, ValueError):
        return False
    return len(params) == 1


class ASGI2Adapter:
    """Run an ASGI 2 ("double callable") application as ASGI 3."""

    __slots__ = ("app",)

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def load_app(path: str, *, app_dir: str = ".", factory: bool = False) -> ASGIApp:
    """Load the application named by `path`, call it if it is a factory, adapt ASGI 2.

    Raises:
        AppLoadError: with a one-line explanation of what is wrong.
    """
    obj = import_from_string(path, app_dir)
    if factory:
        if not callable(obj):
            raise AppLoadError(f"--factory: {path!r} is not callable")
        try:
            obj = obj()
        except Exception as exc:
            raise AppLoadError(
                f"--factory: calling {path!r} raised {type(exc).__name__}: {exc}"
            ) from exc
        if asyncio.iscoroutine(obj):
            obj.close()
            raise AppLoadError(f"--factory: {path!r} is async; it must return the app directly")
    if not callable(obj):
        raise AppLoadError(
            f"{path!r} is not an ASGI application: it is not callable "
            f"(its value is of type {type(obj).__name__})"
        )
    if _is_asgi2(obj):
        return ASGI2Adapter(obj)
    app: ASGIApp = obj
    return app
