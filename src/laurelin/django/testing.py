# laurelin.django.testing — Channels' live-server test case, served by laurelin, without Daphne.
#
# `LaurelinLiveServerTestCase` is `channels.testing.ChannelsLiveServerTestCase` with laurelin in
# place of Daphne: a TransactionTestCase whose class set-up serves ASGI_APPLICATION (static files
# too, through Django's ASGIStaticFilesHandler, unless `serve_static` is False) in a
# `LaurelinProcess` on a free port, with the same attributes (`host`, `serve_static`,
# `static_wrapper`, `ProtocolServerProcess`, `live_server_url`, `live_server_ws_url`). It does
# not import channels.testing, whose live.py imports daphne.testing unconditionally (channels
# 4.3), so Daphne need not be installed; nor Channels at all: without ASGI_APPLICATION it serves
# Django's own ASGI handler.
#
# Differences that are fixes: the server process is given the parent's test database names and
# ALLOWED_HOSTS (so it also works under the "spawn" start method, where the child reads the
# settings afresh; other settings the test class overrides reach a forked child only); a failure
# in the server process is raised in the test with its traceback instead of "Server stopped";
# an in-memory SQLite test database is refused with the fix.
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import ClassVar

import django
from django.apps import apps
from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test.testcases import TransactionTestCase
from django.test.utils import modify_settings
from django.utils.module_loading import import_string

from laurelin.importer import ASGIApp
from laurelin.testing import LaurelinProcess

__all__ = ["LaurelinLiveServerTestCase", "make_application", "use_parent_settings"]


def make_application(*, static_wrapper: Callable[[ASGIApp], ASGIApp] | None) -> ASGIApp:
    """In the server process: ASGI_APPLICATION (or Django's ASGI handler), maybe wrapped."""
    if not apps.ready:  # a spawned child starts with nothing set up
        django.setup(set_prefix=False)
    path = getattr(settings, "ASGI_APPLICATION", None)
    if path:
        application: ASGIApp = import_string(path)
    else:
        from django.core.asgi import get_asgi_application

        application = get_asgi_application()
    if static_wrapper is not None:
        application = static_wrapper(application)
    return application


def use_parent_settings(database_names: dict[str, str], allowed_hosts: list[str]) -> None:
    """In the server process, before it serves: the test databases and hosts of the tests."""
    for alias, name in database_names.items():
        settings.DATABASES[alias]["NAME"] = name
    settings.ALLOWED_HOSTS = allowed_hosts


# Django ships no type information: its classes are Any to mypy.
class LaurelinLiveServerTestCase(TransactionTestCase):  # type: ignore[misc]
    """A TransactionTestCase with the project served by laurelin in another process."""

    host: ClassVar[str] = "localhost"
    ProtocolServerProcess: ClassVar[type[LaurelinProcess]] = LaurelinProcess
    static_wrapper: ClassVar[Callable[[ASGIApp], ASGIApp] | None] = ASGIStaticFilesHandler
    serve_static: ClassVar[bool] = True
    startup_timeout: ClassVar[float] = 30.0
    _port: ClassVar[int]
    _server_process: ClassVar[LaurelinProcess]

    @property
    def live_server_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def live_server_ws_url(self) -> str:
        return f"ws://{self.host}:{self._port}"

    @classmethod
    def setUpClass(cls) -> None:
        for connection in connections.all():
            if connection.vendor == "sqlite" and connection.is_in_memory_db():
                raise ImproperlyConfigured(
                    f"{cls.__name__}: the test database {connection.alias!r} is an in-memory "
                    "SQLite database, which the live server process cannot open: give it a file, "
                    f"DATABASES[{connection.alias!r}]['TEST']['NAME'] = 'path/to/test.sqlite3'"
                )
        super().setUpClass()
        hosts = modify_settings(ALLOWED_HOSTS={"append": cls.host})
        hosts.enable()
        cls.addClassCleanup(hosts.disable)
        database_names = {conn.alias: conn.settings_dict["NAME"] for conn in connections.all()}
        wrapper = cls.static_wrapper if cls.serve_static else None
        process = cls.ProtocolServerProcess(
            cls.host,
            partial(make_application, static_wrapper=wrapper),
            setup=partial(use_parent_settings, database_names, list(settings.ALLOWED_HOSTS)),
        )
        process.start()
        cls._server_process = process
        # Class clean-ups run after tearDownClass, and also when this set-up fails part way:
        # the process is stopped (its errors raised) first, then the settings are restored.
        cls.addClassCleanup(process.stop)
        cls._port = process.wait_ready(cls.startup_timeout)
