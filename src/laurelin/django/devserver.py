# laurelin.django.devserver — one laurelin server inside `manage.py runserver`.
#
# runserver calls `DevServer.run()` from Django's autoreloader: in its child process that is a
# daemon thread ("django-main-thread") while the main thread watches files, so no signal
# handlers may be installed there. Ctrl-C, SIGTERM and a reload (the watcher's sys.exit(3)) all
# end the process from the main thread; an exit hook then drains the server briefly (WebSockets
# get close 1001 and their consumers' disconnect() runs) before the interpreter stops the thread.
# The hook is a threading exit hook, not an atexit one: those run after concurrent.futures has
# refused new work, and Channels' consumers need the thread pool (sync_to_async) to disconnect.
# With --noreload it runs in the main thread and handles SIGINT / SIGTERM itself, as the laurelin
# command does: a graceful drain, then a normal return (exit status 0).
from __future__ import annotations

import asyncio
import atexit
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

from laurelin.config import Config
from laurelin.importer import ASGIApp
from laurelin.listeners import listen_specs, open_listener
from laurelin.server import Server
from laurelin.supervisor.loops import loop_factory, prepare_loop

logger = logging.getLogger("laurelin.error")

# How long in-flight requests may finish when the development server stops or reloads: long
# enough for WebSocket closing handshakes, short enough not to hold up a reload.
DEV_GRACEFUL_TIMEOUT = 3.0


class DevServer:
    """Serve one app on the listeners of `config` in the calling thread until stopped.

    Raises (from `run`):
        laurelin.listeners.ListenError: the address cannot be listened on.
        laurelin.server.StartupFailure: the app's lifespan startup failed.
    """

    def __init__(self, config: Config, app: ASGIApp) -> None:
        self.config = config
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._finished = threading.Event()

    def run(self, on_bind: Callable[[socket.socket], None]) -> None:
        """Listen, call `on_bind` with the first listening socket, serve until stopped."""
        sockets: list[socket.socket] = []
        try:
            for spec in listen_specs(self.config, environ={}):
                sockets.append(open_listener(spec, self.config.backlog))
            on_bind(sockets[0])
            loop = loop_factory(self.config.loop)()
            try:
                prepare_loop(loop, 0)
                asyncio.set_event_loop(loop)
                self._loop = loop
                _at_exit(self.stop_at_exit)
                loop.run_until_complete(self._serve(sockets))
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                asyncio.set_event_loop(None)
                loop.close()
        finally:
            self._finished.set()
            for sock in sockets:
                sock.close()

    async def _serve(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        stop = self._stop = asyncio.Event()
        handle_signals = threading.current_thread() is threading.main_thread()

        def on_signal(signum: int) -> None:
            if signum == signal.SIGINT and stop.is_set():
                logger.warning("Second interrupt: exiting at once")
                os._exit(1)
            stop.set()

        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, on_signal, signum)
        try:
            await Server(self.config, self.app, sockets).serve(stop.wait)
        finally:
            if handle_signals:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
        await _finish_tasks(self.config.graceful_timeout)

    def stop_at_exit(self) -> None:
        """Drain the server from another thread (the process is exiting) and wait for it."""
        loop, stop = self._loop, self._stop
        if loop is None or stop is None or self._finished.is_set():
            return
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # the loop has just closed
            return
        self._finished.wait(2 * self.config.graceful_timeout + 2.0)


async def _finish_tasks(timeout: float) -> None:
    """Let the app tasks that outlived their connections end (a Channels consumer running its
    disconnect()), for up to `timeout` seconds; cancel the rest. The loop closes after this,
    and a task still pending then would die mid-await with a traceback."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    if not pending:
        return
    _, late = await asyncio.wait(pending, timeout=timeout)
    for task in late:
        task.cancel()
    if late:
        await asyncio.wait(late, timeout=1.0)


def _at_exit(hook: Callable[[], None]) -> None:
    """Run `hook` when the main thread finishes, before thread pools shut down.

    threading's exit hooks run in reverse order of registration, so this one runs before
    concurrent.futures' own (registered when it was first imported). The function is private
    but stable since Python 3.9; atexit (too late for thread pools, but better than nothing)
    if it ever goes.
    """
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        atexit.register(hook)
        return
    register(hook)
