# laurelin.django.management.commands.runserver — `manage.py runserver` served by laurelin.
#
# Django's runserver (address and port, --ipv6, --noreload, the autoreloader, system checks and
# the migrations warning) with Daphne's additions: ASGI_APPLICATION served over HTTP/1.1, h2c and
# WebSocket, static files through ASGIStaticFilesHandler in DEBUG (or with --insecure) unless
# --nostatic, FORCE_SCRIPT_NAME as the root path, --http_timeout, --websocket_handshake_timeout
# and the WebSocket size limits, `--noasgi` for Django's own WSGI server, Daphne's banner and its
# request lines on the "django.channels.server" logger.
from __future__ import annotations

import datetime
import errno
import os
import sys
import threading
from typing import Any, cast

from django.apps import apps
from django.conf import settings
from django.core.management import CommandError
from django.core.management.base import SystemCheckError
from django.core.management.commands.runserver import Command as RunserverCommand
from django.db import connections
from django.utils import autoreload

from laurelin import __version__
from laurelin.config import Config, optional_float, optional_int
from laurelin.django.access import RunserverAccessLog
from laurelin.django.application import asgi_application_path, runserver_application
from laurelin.django.devserver import DEV_GRACEFUL_TIMEOUT, DevServer
from laurelin.listeners import ListenError
from laurelin.logs import set_access_sink
from laurelin.server import StartupFailure

# What Django's runserver says for the usual listening failures.
LISTEN_ERRORS: dict[int | None, str] = {
    errno.EACCES: "You don't have permission to access that port.",
    errno.EADDRINUSE: "That port is already in use.",
    errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
}

_UNSET = -1  # a size flag not given: Daphne's setting decides, else the default
DEFAULT_WEBSOCKET_SIZE = 1048576


def _size(options: dict[str, Any], name: str) -> int | None:
    """A WebSocket size limit: the flag, else Daphne's setting (0: no limit), else 1 MiB."""
    value = options[name]
    if value != _UNSET:
        return cast("int | None", value)
    setting = getattr(settings, f"DAPHNE_{name.upper()}", DEFAULT_WEBSOCKET_SIZE)
    return optional_int(str(setting))


class Command(RunserverCommand):  # type: ignore[misc]
    """runserver through laurelin (Daphne's runserver, option for option)."""

    help = "Starts laurelin as a development server for ASGI_APPLICATION (HTTP and WebSocket)."

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--noasgi",
            action="store_false",
            dest="use_asgi",
            help="Run Django's WSGI development server rather than laurelin.",
        )
        parser.add_argument(
            "--http_timeout",
            type=optional_float,
            default=None,
            metavar="SECONDS",
            help="Seconds an HTTP request may take before a 503 (default: no limit).",
        )
        parser.add_argument(
            "--websocket_handshake_timeout",
            type=optional_float,
            default=5.0,
            metavar="SECONDS",
            help="Seconds the app has to accept a WebSocket before a 403 (default: 5).",
        )
        parser.add_argument(
            "--websocket-max-message-size",
            type=optional_int,
            default=_UNSET,
            metavar="BYTES",
            help="Largest incoming WebSocket message (0: no limit; default: the "
            "DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE setting, else 1 MiB).",
        )
        parser.add_argument(
            "--websocket-max-frame-size",
            type=optional_int,
            default=_UNSET,
            metavar="BYTES",
            help="Largest incoming WebSocket frame (0: no limit; default: the "
            "DAPHNE_WEBSOCKET_MAX_FRAME_SIZE setting, else 1 MiB).",
        )
        if apps.is_installed("django.contrib.staticfiles"):
            parser.add_argument(
                "--nostatic",
                action="store_false",
                dest="use_static_handler",
                help="Tells Django to NOT automatically serve static files at STATIC_URL.",
            )
            parser.add_argument(
                "--insecure",
                action="store_true",
                dest="insecure_serving",
                help="Allows serving static files even if DEBUG is False.",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["use_asgi"]:
            asgi_application_path()  # a missing setting stops here, before the reloader starts
        super().handle(*args, **options)

    def inner_run(self, *args: Any, **options: Any) -> None:
        if not options["use_asgi"]:
            RunserverCommand.inner_run(self, *args, **options)
            return
        try:
            self._asgi_inner_run(options)
        except CommandError as exc:
            if threading.current_thread() is threading.main_thread():
                raise
            # Inside the autoreloader: say it as Django's command runner would, without a
            # traceback, and let the watcher wait for a fix.
            if isinstance(exc, SystemCheckError):
                self.stderr.write(str(exc), lambda text: text)
            else:
                self.stderr.write(f"CommandError: {exc}")
        except KeyboardInterrupt:  # Ctrl-C before the server runs (it handles its own)
            sys.exit(0)

    def get_handler(self, *args: Any, **options: Any) -> Any:
        """The WSGI handler of --noasgi, serving static files as staticfiles' runserver does."""
        handler = super().get_handler(*args, **options)
        if options.get("use_static_handler", False) and (
            settings.DEBUG or options.get("insecure_serving", False)
        ):
            from django.contrib.staticfiles.handlers import StaticFilesHandler

            return StaticFilesHandler(handler)
        return handler

    def _asgi_inner_run(self, options: dict[str, Any]) -> None:
        autoreload.raise_last_exception()
        if not options.get("skip_checks"):
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        self.check_migrations()
        connections.close_all()
        app = runserver_application(
            options.get("use_static_handler", True), options.get("insecure_serving", False)
        )
        config = Config(
            app=settings.ASGI_APPLICATION,
            host=self.addr,
            port=int(self.port),
            root_path=getattr(settings, "FORCE_SCRIPT_NAME", None) or "",
            http_timeout=options["http_timeout"],
            websocket_connect_timeout=options["websocket_handshake_timeout"],
            websocket_max_message_size=_size(options, "websocket_max_message_size"),
            websocket_max_frame_size=_size(options, "websocket_max_frame_size"),
            graceful_timeout=DEV_GRACEFUL_TIMEOUT,
        )
        set_access_sink(RunserverAccessLog(self.style))
        try:
            DevServer(config, app).run(on_bind=self._banner)
        except ListenError as exc:
            cause = exc.__context__
            known = LISTEN_ERRORS.get(cause.errno) if isinstance(cause, OSError) else None
            self.stderr.write(f"Error: {known or exc}")
            # As Django's runserver: sys.exit() would end only the reloader's server thread.
            os._exit(1)
        except StartupFailure as exc:
            raise CommandError(str(exc)) from None
        shutdown_message = options.get("shutdown_message", "")
        if shutdown_message:
            self.stdout.write(shutdown_message)

    def _banner(self, sock: Any) -> None:
        """Daphne's start-up lines, with the port actually bound (runserver 0 picks one)."""
        port = sock.getsockname()[1]
        if self._raw_ipv6:
            addr = f"[{self.addr}]"
        elif self.addr == "0":
            addr = "0.0.0.0"
        else:
            addr = self.addr
        quit_command = "CTRL-BREAK" if sys.platform == "win32" else "CONTROL-C"
        now = datetime.datetime.now().strftime("%B %d, %Y - %X")
        self.stdout.write(
            f"{now}\n"
            f"Django version {self.get_version()}, using settings {settings.SETTINGS_MODULE!r}\n"
            f"Starting ASGI/laurelin version {__version__} development server at "
            f"{self.protocol}://{addr}:{port}/\n"
            f"Quit the server with {quit_command}."
        )
