# laurelin.testing — a laurelin server in a child process, for other projects' live-server tests.
#
# `LaurelinProcess` is `daphne.testing.DaphneProcess` served by laurelin: the same constructor
# and the same `ready` (Event), `port` (Value) and `errors` (Queue) attributes, so
# `ChannelsLiveServerTestCase.ProtocolServerProcess = LaurelinProcess` works, and so does
# laurelin.django.testing's own test case. In the child: `get_application()`, then `setup()`,
# then listen (port 0: a free one), report the port and set `ready` once serving, serve until
# SIGTERM (`terminate()`), SIGINT or the parent's exit, drain as the CLI does on SIGTERM, then
# `teardown()`. Whatever the child raises is put on `errors` as (exception, traceback text);
# `wait_ready()` and `stop()` raise it in the parent as a `LiveServerError`.
#
# Works with every multiprocessing start method: under "spawn" the process object is pickled,
# so `get_application`, `setup` and `teardown` must be module-level callables (or partials of
# them). Nothing here imports Django.
from __future__ import annotations

import asyncio
import errno
import multiprocessing
import multiprocessing.queues
import multiprocessing.sharedctypes
import multiprocessing.synchronize
import os
import pickle
import queue
import signal
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from types import FrameType, TracebackType
from typing import Any

from laurelin.config import Config, option_fields, typed_value
from laurelin.importer import ASGIApp
from laurelin.server import Server
from laurelin.supervisor.loops import loop_factory, prepare_loop

__all__ = ["LaurelinProcess", "LiveServerError", "server_config"]

# The child's traceback text is cut to this many characters: a queue item larger than a pipe
# buffer would keep the child from exiting until the parent reads it.
_MAX_TRACEBACK = 16000
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _proxy_header(config_name: str) -> Callable[[Any], dict[str, Any]]:
    def translate(value: Any) -> dict[str, Any]:
        return {"proxy_headers": True, config_name: value} if value else {}

    return translate


# Keyword arguments of Daphne's Server that laurelin spells differently. The others Daphne's
# testing passes (http_timeout, websocket_timeout, websocket_connect_timeout, ping_interval,
# ping_timeout, root_path, application_close_timeout, server_name,
# websocket_max_message_size, websocket_max_frame_size) are Config fields of the same name.
_DAPHNE_KWARGS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "proxy_forwarded_address_header": _proxy_header("proxy_headers_host"),
    "proxy_forwarded_port_header": _proxy_header("proxy_headers_port"),
    # laurelin reads X-Forwarded-Proto whenever proxy headers are on.
    "proxy_forwarded_proto_header": lambda value: {"proxy_headers": True} if value else {},
    # Daphne's command line sets both from --websocket_connect_timeout.
    "websocket_handshake_timeout": lambda value: {"websocket_connect_timeout": value},
    # Daphne's read size for request bodies: laurelin streams them with backpressure instead.
    "request_buffer_size": lambda value: {},
}


# Config fields a LaurelinProcess cannot honour: it serves plain HTTP on host:port in one process.
_UNSUPPORTED = frozenset(
    {
        "app", "app_dir", "factory", "host", "port", "unix_socket", "fd", "endpoints",
        "ssl_certfile", "ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs", "ssl_cert_reqs",
        "ssl_ciphers", "ssl_handshake_timeout", "workers", "reuse_port",
        "worker_healthcheck_timeout", "max_requests", "max_requests_jitter", "reload",
        "reload_dirs", "reload_includes", "reload_excludes", "pid_file", "config_file",
        "print_config",
    }
)  # fmt: skip


def server_config(host: str, port: int | None, kwargs: Mapping[str, Any]) -> Config:
    """The Config a LaurelinProcess serves with: Config field names or Daphne's Server names.

    Values are read as the command line reads them, so Daphne's conventions hold: 0 for
    http_timeout or a message/frame size, and a negative websocket_timeout, mean no limit.

    Raises:
        TypeError: a keyword that is neither, or an option this process cannot honour.
        ValueError: a value the option does not accept (naming it).
    """
    fields = {f.name: f for f in option_fields()}
    given: dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in _DAPHNE_KWARGS:
            given.update(_DAPHNE_KWARGS[name](value))
        elif name in _UNSUPPORTED:
            raise TypeError(f"LaurelinProcess: option {name!r} is not supported in a test server")
        elif name in fields:
            given[name] = value
        else:
            raise TypeError(
                f"LaurelinProcess: unknown server option {name!r} (give laurelin.Config field "
                "names such as http_timeout, websocket_timeout or root_path)"
            )
    values: dict[str, Any] = {}
    for name, value in given.items():
        try:
            values[name] = typed_value(fields[name], value, allow_none=True)
        except ValueError as exc:
            raise ValueError(f"LaurelinProcess: {name}={value!r}: {exc}") from None
    return Config(host=host, port=port or 0, **values)


class LiveServerError(RuntimeError):
    """The live server process failed; the message carries its error and traceback."""


class _Stopped(BaseException):
    """SIGTERM or SIGINT before the event loop took the signals over."""


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


class LaurelinProcess(multiprocessing.Process):
    """laurelin serving `get_application()` on `host` in a child process (DaphneProcess's API).

    Args:
        host: Address to listen on; a host name listens on its IPv4 address, as Daphne does.
        get_application: Called in the child to build the ASGI application.
        kwargs: Server options: laurelin.Config field names, or Daphne's Server keyword names.
        setup: Called in the child after `get_application()`, before serving.
        teardown: Called in the child after serving, if `setup` completed.
        port: Port to listen on; None or 0 picks a free one.

    The process is a daemon, so that a test run which forgets to stop it does not hang at exit
    (an application that starts processes of its own cannot run in it).
    """

    def __init__(
        self,
        host: str,
        get_application: Callable[[], ASGIApp],
        kwargs: Mapping[str, Any] | None = None,
        setup: Callable[[], object] | None = None,
        teardown: Callable[[], object] | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.host = host
        self.get_application = get_application
        self.kwargs = dict(kwargs or {})
        self.setup = setup
        self.teardown = teardown
        self.config = server_config(host, port, self.kwargs)
        self.port: multiprocessing.sharedctypes.Synchronized[int] = multiprocessing.Value(
            "i", port or 0
        )
        self.ready: multiprocessing.synchronize.Event = multiprocessing.Event()
        self.errors: multiprocessing.queues.Queue[tuple[BaseException, str]] = (
            multiprocessing.Queue()
        )

    @property
    def url(self) -> str:
        """http://host:port of the running server."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port.value}"

    # -- the parent's side -------------------------------------------------------------------

    def wait_ready(self, timeout: float = 30.0) -> int:
        """Wait until the server is serving; return its port.

        Raises:
            LiveServerError: the process failed or exited first (with the child's error and
                traceback), or was not serving within `timeout` seconds (it is then stopped).
        """
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.05):
            if not self.is_alive():
                self.join()
                self._raise_reported(f"exited with code {self.exitcode} before serving")
            if time.monotonic() > deadline:
                self._end(5.0)
                self._raise_reported(f"was not serving after {timeout:g} seconds")
        return int(self.port.value)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM (a graceful drain, then teardown), SIGKILL if it has not exited in time.

        Args:
            timeout: Seconds to wait for the exit; default: the graceful timeout plus 10.

        Raises:
            LiveServerError: the child reported an error (a failing teardown, for one).
        """
        if self.pid is None:
            return
        self._end(self.config.graceful_timeout + 10.0 if timeout is None else timeout)
        self._raise_reported(None)

    def __enter__(self) -> LaurelinProcess:
        self.start()
        self.wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _end(self, timeout: float) -> None:
        if self.is_alive():
            self.terminate()
        self.join(timeout)
        if self.is_alive():
            self.kill()
            self.join(5.0)

    def _raise_reported(self, otherwise: str | None) -> None:
        """Raise what the child put on `errors` (or `otherwise`, if given)."""
        reported: list[tuple[BaseException, str]] = []
        while True:
            try:
                reported.append(self.errors.get(timeout=0.1 if not reported else 0))
            except queue.Empty:
                break
        if reported:
            exc, text = reported[0]
            message = str(exc)
            if not isinstance(exc, LiveServerError):
                message = f"{type(exc).__name__}: {message}"
            raise LiveServerError(
                f"The live server process failed: {message}\n\n"
                f"Traceback in the server process:\n{text}"
            ) from exc
        if otherwise is not None:
            raise LiveServerError(f"The live server process {otherwise}")

    # -- the child's side --------------------------------------------------------------------

    def run(self) -> None:
        """In the child: build the app, run setup, serve until stopped, run teardown."""
        for signum in _STOP_SIGNALS:
            signal.signal(signum, _raise_stopped)
        try:
            self._run_server()
        except _Stopped:
            pass
        except BaseException as exc:
            self._report(exc)

    def _run_server(self) -> None:
        application = self.get_application()
        if self.setup is not None:
            self.setup()
        try:
            self._serve(application)
        finally:
            for signum in _STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            if self.teardown is not None:
                self.teardown()

    def _serve(self, application: ASGIApp) -> None:
        sock = _listen(self.host, self.config.port or 0, self.config.backlog)
        try:
            loop = loop_factory(self.config.loop)()
            try:
                prepare_loop(loop, self.config.verbosity)
                asyncio.set_event_loop(loop)
                loop.run_until_complete(self._serve_until_stopped(application, sock))
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                asyncio.set_event_loop(None)
                loop.close()
        finally:
            sock.close()

    async def _serve_until_stopped(self, application: ASGIApp, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in _STOP_SIGNALS:
            loop.add_signal_handler(signum, stop.set)
        # The parent's sentinel becomes readable when it exits: nobody is left to stop us.
        parent = multiprocessing.parent_process()
        sentinel = parent.sentinel if parent is not None else None

        def parent_exited() -> None:
            if sentinel is not None:
                loop.remove_reader(sentinel)
            stop.set()

        if sentinel is not None:
            loop.add_reader(sentinel, parent_exited)
        server = Server(self.config, application, [sock])
        serving = asyncio.ensure_future(server.serve(stop.wait))
        started = asyncio.ensure_future(server.started.wait())
        try:
            await asyncio.wait([serving, started], return_when=asyncio.FIRST_COMPLETED)
            if started.done():
                self.port.value = int(sock.getsockname()[1])
                self.ready.set()
            await serving
        finally:
            started.cancel()
            if sentinel is not None:
                loop.remove_reader(sentinel)
            for signum in _STOP_SIGNALS:
                loop.remove_signal_handler(signum)
                # Stopping already: a second signal must not cut the drain or teardown short.
                signal.signal(signum, signal.SIG_IGN)

    def _report(self, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(exc))[-_MAX_TRACEBACK:]
        try:
            # The parent must be able to rebuild it, or its get() would fail instead.
            pickle.loads(pickle.dumps(exc))
        except Exception:
            exc = LiveServerError(f"{type(exc).__name__}: {exc}")
        self.errors.put((exc, text))


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on `host` (IPv6 only for an IPv6 address, as Daphne's tcp:).

    Raises:
        LiveServerError: the address cannot be listened on, with the reason.
    """
    address = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        return socket.create_server((address, port), family=family, backlog=backlog)
    except OSError as exc:
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            hint = " (another process is using that port: leave port=None to get a free one)"
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise LiveServerError(f"cannot listen on {host}:{port}: {reason}{hint}") from None
