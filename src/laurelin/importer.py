# laurelin.importer — turn "module.path:attribute" into an ASGI 3 callable, or one clear line.
#
# Every failure a user can cause at start-up becomes an `AppLoadError` whose message is a single
# readable sentence with the fix. The mistakes Django Channels users make get their own: the
# module not found from the app directory (naming the directory, --app-dir and PYTHONPATH, and
# the subdirectory that does hold the package), a file path instead of a dotted path, a missing
# dependency (naming who imports it), DJANGO_SETTINGS_MODULE unset or naming no module, Django
# apps used before django.setup() (naming the asgi.py line), "daphne" left in INSTALLED_APPS
# without Daphne, a module without the attribute (listing what in it looks like an app), a
# package given instead of its asgi module, and an object that cannot take ASGI's arguments.
# ASGI 2 applications (a class called with the scope, returning a coroutine function) are wrapped.
from __future__ import annotations

import asyncio
import importlib
import inspect
import linecache
import os
import sys
import sysconfig
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Directories never searched for a misplaced project package (virtualenvs, caches, VCS).
_SKIPPED_DIRS = {"node_modules", "__pycache__", "site-packages", "dist-packages", "build", "dist"}
_SEARCH_DEPTH = 2
_SEARCH_BUDGET = 500  # directories looked at, at most: the hint must stay instant
_STDLIB = sysconfig.get_paths()["stdlib"] + os.sep
_LAURELIN = os.path.dirname(os.path.abspath(__file__)) + os.sep


class AppLoadError(Exception):
    """The application could not be loaded; str() is the one line to show the user."""


# -- where things are ------------------------------------------------------------------------------


def _is_library(filename: str) -> bool:
    """Whether a traceback frame is not the user's code: the standard library, installed
    packages, laurelin itself, or frozen importlib."""
    return (
        filename.startswith(("<", _STDLIB, _LAURELIN))
        or "site-packages" in filename
        or "dist-packages" in filename
    )


def _shown(path: str, directory: str) -> str:
    """`path` relative to the app directory when it is inside it."""
    try:
        relative = os.path.relpath(path, directory)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def _frames(tb: TracebackType | None) -> Iterator[tuple[str, int]]:
    while tb is not None:
        yield tb.tb_frame.f_code.co_filename, tb.tb_lineno
        tb = tb.tb_next


def _where(filename: str, line: int, directory: str) -> str:
    source = linecache.getline(filename, line).strip()
    place = f"{_shown(filename, directory)} line {line}"
    return f"{place}: {source}" if source else place


def _user_line(exc: BaseException, directory: str) -> str | None:
    """The outermost line of the user's own code in the traceback (in asgi.py, usually)."""
    for filename, line in _frames(exc.__traceback__):
        inside = os.path.abspath(filename).startswith(directory + os.sep)
        if inside and not _is_library(filename):
            return _where(filename, line, directory)
    return None


def _importing_line(exc: BaseException, directory: str) -> str | None:
    """The innermost line outside importlib: the import statement that failed."""
    found = None
    for filename, line in _frames(exc.__traceback__):
        if not filename.startswith("<") and os.sep + "importlib" + os.sep not in filename:
            found = (filename, line)
    return _where(found[0], found[1], directory) if found else None


def _find_package(directory: str, name: str) -> str | None:
    """A subdirectory of `directory` (two levels down at most) that holds `name` as a package or
    module: where the user probably meant to run from."""
    budget = _SEARCH_BUDGET
    level = [Path(directory)]
    for _ in range(_SEARCH_DEPTH):
        below: list[Path] = []
        for parent in level:
            try:
                children = sorted(parent.iterdir())
            except OSError:
                continue
            for child in children:
                if budget <= 0:
                    return None
                if child.name.startswith(".") or child.name in _SKIPPED_DIRS:
                    continue
                if not child.is_dir() or (child / "pyvenv.cfg").exists():
                    continue
                budget -= 1
                if (child / name / "__init__.py").is_file() or (child / f"{name}.py").is_file():
                    return str(child)
                below.append(child)
        level = below
    return None


# -- the module could not be imported --------------------------------------------------------------


def _path_hint(module_name: str, attr_path: str, directory: str) -> str | None:
    """`mysite/asgi.py` given where `mysite.asgi` was meant: the dotted path and the --app-dir
    that make it importable (the first directory up that is not a package)."""
    if "/" not in module_name and os.sep not in module_name and not module_name.endswith(".py"):
        return None
    file = Path(directory, module_name.removesuffix(".py") + ".py")
    if not file.is_file():
        return (
            f"{module_name!r} looks like a file path, and there is no {file}: laurelin takes a "
            f"dotted module path (mysite.asgi:{attr_path}) with --app-dir for its directory"
        )
    parts = [file.stem]
    parent = file.parent
    while (parent / "__init__.py").is_file():
        parts.insert(0, parent.name)
        parent = parent.parent
    app_dir = "" if str(parent) == directory else f"--app-dir {_shown(str(parent), directory)} "
    return (
        f"{module_name!r} is a file path; laurelin takes a dotted module path: "
        f"laurelin {app_dir}{'.'.join(parts)}:{attr_path}"
    )


def _module_not_found(module_name: str, exc: ModuleNotFoundError, directory: str) -> str:
    missing = exc.name or ""
    if missing and (module_name == missing or module_name.startswith(missing + ".")):
        top = module_name.partition(".")[0]
        elsewhere = _find_package(directory, top) if missing == top else None
        if elsewhere:
            return (
                f"Could not import module {module_name!r}: no module named {missing!r} in "
                f"{directory}, but {top!r} is in {elsewhere}: use --app-dir {elsewhere} "
                "(or run laurelin from there)"
            )
        return (
            f"Could not import module {module_name!r} (no module named {missing!r} found from "
            f"directory {directory}, nor on PYTHONPATH); check the module path, the directory "
            "you run laurelin from, or use --app-dir"
        )
    settings_module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    if settings_module and (
        settings_module == missing or settings_module.startswith(missing + ".")
    ):
        return (
            f"Error importing {module_name!r}: DJANGO_SETTINGS_MODULE is {settings_module!r} but "
            f"no module named {missing!r} can be imported from {directory}: check its spelling "
            "and that its package is in --app-dir"
        )
    top_missing = missing.partition(".")[0]
    from_installed_apps = any(
        filename.endswith(os.path.join("django", "apps", "config.py"))
        for filename, _ in _frames(exc.__traceback__)
    )
    if from_installed_apps and top_missing == "daphne":
        return (
            f"Error importing {module_name!r}: 'daphne' is in INSTALLED_APPS but is not "
            "installed: laurelin takes its place, so put 'laurelin' there instead of 'daphne'"
        )
    if from_installed_apps:
        return (
            f"Error importing {module_name!r}: {missing!r} is in INSTALLED_APPS but cannot be "
            f"imported: install it into this environment ({sys.prefix}) or fix INSTALLED_APPS"
        )
    where = _importing_line(exc, directory)
    by = f" (imported by {where})" if where else ""
    return (
        f"Error importing {module_name!r}: {exc}{by}: a module it imports is missing; install "
        f"it into this environment ({sys.prefix}) or fix PYTHONPATH"
    )


def _settings_candidate(module_name: str, directory: str) -> str:
    """The settings module next to the app module (mysite.asgi -> mysite.settings), if any."""
    package = module_name.rpartition(".")[0]
    if package and Path(directory, *package.split("."), "settings.py").is_file():
        return f"{package}.settings"
    return "myproject.settings"


def _settings_hint(exc: BaseException, module_name: str, directory: str) -> str | None:
    text = str(exc)
    where = _user_line(exc, directory)
    at = f" (at {where})" if where else ""
    if "DJANGO_SETTINGS_MODULE" in text or "settings are not configured" in text:
        candidate = _settings_candidate(module_name, directory)
        return (
            f"Django settings are not configured{at}: set DJANGO_SETTINGS_MODULE (e.g. "
            f"DJANGO_SETTINGS_MODULE={candidate}), or put os.environ.setdefault("
            f'"DJANGO_SETTINGS_MODULE", "{candidate}") at the top of your asgi.py, and call '
            "django.setup() (or get_asgi_application()) before importing models"
        )
    if "Apps aren't loaded yet" in text:
        return (
            f"Django apps aren't loaded yet{at}: call django.setup() (or get_asgi_application()) "
            "in your asgi.py before importing consumers, routing or models"
        )
    return None


def _import_module(module_name: str, attr_path: str, directory: str) -> Any:
    if module_name.startswith(".") or "/" in module_name or os.sep in module_name:
        # A file path (./mysite/asgi.py) or a relative name: never a module path.
        hint = _path_hint(module_name, attr_path, directory)
        raise AppLoadError(
            hint
            or f"Invalid application module {module_name!r}: expected a "
            "dotted module path such as mysite.asgi"
        )
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            hint = _path_hint(module_name, attr_path, directory)
            if hint:
                raise AppLoadError(hint) from None
        raise AppLoadError(_module_not_found(module_name, exc, directory)) from None
    except Exception as exc:
        hint = _settings_hint(exc, module_name, directory)
        if hint:
            raise AppLoadError(f"Error importing {module_name!r}: {hint}") from None
        raise AppLoadError(f"Error importing {module_name!r}: {type(exc).__name__}: {exc}") from exc


# -- the attribute is not there --------------------------------------------------------------------


def _looks_like_an_app(module: Any, name: str, value: Any) -> bool:
    if name.startswith("_") or inspect.ismodule(value) or not callable(value):
        return False
    named_app = "app" in name.lower()
    if inspect.isfunction(value) or inspect.isclass(value):
        # Only what the module defines: not get_asgi_application or ProtocolTypeRouter imported.
        if getattr(value, "__module__", None) != module.__name__:
            return False
        return named_app or inspect.iscoroutinefunction(value)
    # An instance: Django's ASGIHandler, a ProtocolTypeRouter, a Starlette app...
    return named_app or inspect.iscoroutinefunction(type(value).__call__)


def _asgi_looking(module: Any) -> list[str]:
    return sorted(
        name for name, value in vars(module).items() if _looks_like_an_app(module, name, value)
    )


def _missing_attribute(module: Any, module_name: str, attr_path: str) -> str:
    where = f"Module {module_name!r} has no attribute {attr_path!r}"
    found = _asgi_looking(module)
    if found:
        return f"{where}; it has: {', '.join(found)}"
    for location in getattr(module, "__path__", None) or ():
        if Path(location, "asgi.py").is_file():
            return f"{where}; it is a package: did you mean {module_name}.asgi:{attr_path}?"
    return f"{where}, nor anything else that looks like an ASGI application"


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
    module = _import_module(module_name, attr_path, directory)
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppLoadError(_missing_attribute(module, module_name, attr_path)) from None
    return obj


# -- what was found --------------------------------------------------------------------------------


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


def _takes_asgi_arguments(app: Any) -> bool:
    """Whether `app` can be called as ASGI 3 (scope, receive, send) or ASGI 2 (scope)."""
    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return True  # a builtin or C object: no way to tell, let it run
    for args in ((None, None, None), (None,)):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return True
    return False


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
    if not _takes_asgi_arguments(obj):
        raise AppLoadError(
            f"{path!r} is not an ASGI application: it cannot take (scope, receive, send); if it "
            "returns the app, call it in your module (application = get_asgi_application()) "
            "or pass --factory"
        )
    if _is_asgi2(obj):
        return ASGI2Adapter(obj)
    app: ASGIApp = obj
    return app
