# laurelin.supervisor.single — run one server process from a Config, with signal handling.
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

from laurelin.config import Config
from laurelin.importer import AppLoadError, ASGIApp, load_app
from laurelin.listeners import (
    EndpointError,
    ListenError,
    ListenSpec,
    listen_specs,
    open_listener,
)
from laurelin.logs import configure_logging
from laurelin.server import Server, StartupFailure
from laurelin.supervisor.loops import LoopSetupError, loop_factory, prepare_loop
from laurelin.tls import ServerTLS, TLSError, TLSFiles, build_server_tls

logger = logging.getLogger("laurelin.error")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_STARTUP_FAILED = 3


def run_from_config(config: Config) -> int:
    """Load the app, open the listeners, serve until signalled; return the exit status."""
    try:
        configure_logging(config)
    except ValueError as exc:
        print(f"laurelin: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        factory = loop_factory(config.loop)
        app = load_app(config.app, app_dir=config.app_dir, factory=config.factory)
        specs = listen_specs(config)
    except (AppLoadError, LoopSetupError, EndpointError) as exc:
        logger.critical("%s", exc)
        return EXIT_FAILURE
    try:
        tls = _server_tls(specs, config)
    except TLSError as exc:
        logger.critical("%s", exc)
        return EXIT_FAILURE
    sockets: list[socket.socket] = []
    try:
        for spec in specs:
            sockets.append(open_listener(spec, config.backlog))
    except ListenError as exc:
        logger.critical("%s", exc)
        for sock in sockets:
            sock.close()
        return EXIT_FAILURE
    loop = factory()
    try:
        prepare_loop(loop, config.verbosity)
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(_serve(config, app, sockets, tls))
    finally:
        for sock in sockets:
            sock.close()
        _remove_unix_sockets([spec.path for spec in specs if spec.kind == "unix"])
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


def _server_tls(specs: list[ListenSpec], config: Config) -> list[ServerTLS | None]:
    """One SSL context per distinct set of TLS files, built before any socket is opened."""
    built: dict[TLSFiles, ServerTLS] = {}
    result: list[ServerTLS | None] = []
    for spec in specs:
        if spec.tls is None:
            result.append(None)
            continue
        if spec.tls not in built:
            built[spec.tls] = build_server_tls(spec.tls, config)
        result.append(built[spec.tls])
    return result


async def _serve(
    config: Config, app: ASGIApp, sockets: list[socket.socket], tls: list[ServerTLS | None]
) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(signum: int) -> None:
        if signum == signal.SIGINT and stop.is_set():
            # Ctrl-C while already shutting down (after SIGINT or SIGTERM): stop waiting.
            logger.warning("Second interrupt: exiting at once")
            os._exit(EXIT_FAILURE)
        if not stop.is_set():
            logger.info("Received %s: shutting down gracefully", signal.Signals(signum).name)
            stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    server = Server(config, app, sockets, tls)
    try:
        await server.serve(stop.wait)
    except StartupFailure as exc:
        logger.critical("%s", exc)
        return EXIT_STARTUP_FAILED
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return EXIT_OK


def _remove_unix_sockets(paths: list[str]) -> None:
    # Only the socket files this process bound (from -u / unix:) are removed; adopted
    # descriptors belong to whoever passed them.
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
