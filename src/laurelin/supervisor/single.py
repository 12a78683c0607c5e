# laurelin.supervisor.single — run one server process from a Config, with signal handling.
#
# `run_from_config` is what the command line runs: one process serving on its own (the fast,
# common case), or, with --workers > 1, --reload or --max-requests, the parent of worker
# processes (supervisor/workers.py). `run_worker` is the body of one such worker: the same
# server, on listeners inherited from the parent, linked to it by a control socket.
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

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
from laurelin.pidfile import PidFileError, pid_file
from laurelin.server import Server, StartupFailure
from laurelin.supervisor.loops import LoopSetupError, loop_factory, prepare_loop
from laurelin.supervisor.worker import ParentLink, max_requests_for
from laurelin.tls import ServerTLS, TLSError, TLSFiles, build_server_tls

logger = logging.getLogger("laurelin.error")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_STARTUP_FAILED = 3


def supervised(config: Config) -> bool:
    """Whether this Config needs a parent process watching worker processes."""
    return config.workers > 1 or config.reload or config.max_requests is not None


def run_from_config(config: Config, app: ASGIApp | None = None) -> int:
    """Load the app, open the listeners, serve until signalled; return the exit status.

    `app`: an application object (laurelin.run()) served instead of importing config.app; a
    single process only, as worker processes import the app themselves.
    """
    try:
        configure_logging(config)
    except ValueError as exc:
        print(f"laurelin: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(pid_file(config.pid_file))
        except PidFileError as exc:
            logger.critical("%s", exc)
            return EXIT_FAILURE
        if supervised(config):
            from laurelin.supervisor.workers import run_workers

            return run_workers(config)
        return _run_single(config, app)


def _run_single(config: Config, app: ASGIApp | None) -> int:
    try:
        factory = loop_factory(config.loop)
        if app is None:
            app = load_app(config.app, app_dir=config.app_dir, factory=config.factory)
        specs = listen_specs(config)
    except (AppLoadError, LoopSetupError, EndpointError) as exc:
        logger.critical("%s", exc)
        return EXIT_FAILURE
    try:
        tls = server_tls(specs, config)
    except TLSError as exc:
        logger.critical("%s", exc)
        return EXIT_FAILURE
    try:
        sockets = open_listeners(specs, config)
    except ListenError as exc:
        logger.critical("%s", exc)
        return EXIT_FAILURE
    try:
        return _run_loop(factory, config, app, sockets, tls, None)
    finally:
        remove_unix_sockets([spec.path for spec in specs if spec.kind == "unix"])


def run_worker(
    config: Config, specs: list[ListenSpec], fds: list[int | None], control: socket.socket
) -> int:
    """One worker process: the server on the parent's listeners `specs`, handed down as an fd
    each (None: a TCP listener this worker opens itself with SO_REUSEPORT)."""
    try:
        configure_logging(config)
    except ValueError as exc:
        print(f"laurelin: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        factory = loop_factory(config.loop)
        app = load_app(config.app, app_dir=config.app_dir, factory=config.factory)
        tls = server_tls(specs, config)
        sockets = []
        for spec, fd in zip(specs, fds, strict=True):
            if fd is None:
                sockets.append(open_listener(spec, config.backlog, reuse_port=True))
            else:
                sock = socket.socket(fileno=fd)
                sock.setblocking(False)
                sockets.append(sock)
    except (AppLoadError, LoopSetupError, EndpointError, TLSError, ListenError) as exc:
        logger.critical("%s", exc)
        return EXIT_FAILURE
    return _run_loop(factory, config, app, sockets, tls, control)


def open_listeners(specs: list[ListenSpec], config: Config) -> list[socket.socket]:
    """Open every listener, or none (ListenError)."""
    sockets: list[socket.socket] = []
    try:
        for spec in specs:
            sockets.append(open_listener(spec, config.backlog))
    except ListenError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _run_loop(
    factory: Callable[[], asyncio.AbstractEventLoop],
    config: Config,
    app: ASGIApp,
    sockets: list[socket.socket],
    tls: list[ServerTLS | None],
    control: socket.socket | None,
) -> int:
    loop = factory()
    try:
        prepare_loop(loop, config.verbosity)
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(_serve(config, app, sockets, tls, control))
    finally:
        for sock in sockets:
            sock.close()
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()


def server_tls(specs: list[ListenSpec], config: Config) -> list[ServerTLS | None]:
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
    config: Config,
    app: ASGIApp,
    sockets: list[socket.socket],
    tls: list[ServerTLS | None],
    control: socket.socket | None,
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

    # A worker leaves Ctrl-C to its parent, which stops the workers with SIGTERM.
    signals = (signal.SIGTERM,) if control is not None else (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    server = Server(config, app, sockets, tls)
    link = None
    if control is not None:
        link = ParentLink(
            control, server.started, stop, max_requests_for(config), server.requests_served
        )
    try:
        await server.serve(stop.wait)
    except StartupFailure as exc:
        logger.critical("%s", exc)
        return EXIT_STARTUP_FAILED
    finally:
        if link is not None:
            link.close()
        for signum in signals:
            loop.remove_signal_handler(signum)
    return EXIT_OK


def remove_unix_sockets(paths: list[str]) -> None:
    """Remove the socket files this process bound (from -u / unix:); adopted descriptors
    belong to whoever passed them."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
