# laurelin.api — laurelin as a library: `run()` an app as the command line does, or `serve()`
# it inside an event loop the caller already runs (docs/api.md).
#
# Options are the Config fields, checked by the same rules as the command line and the config
# file (config.typed_value). `run()` hands its Config to the supervisor, so workers, signals,
# --pid and the exit status behave as they do for `laurelin ...`. `serve()` is one server in the
# caller's loop: listeners, lifespan, serving until the shutdown trigger returns (or the task is
# cancelled), a graceful drain; no signal handlers, no logging set-up, unless asked.
from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from laurelin.config import COMMAND_LINE_ONLY, Config, check_combination, option_fields, typed_value
from laurelin.importer import AppLoadError, ASGI2Adapter, ASGIApp, _is_asgi2, load_app
from laurelin.listeners import EndpointError, ListenError, describe_socket, listen_specs
from laurelin.pidfile import PidFileError, pid_file
from laurelin.server import Server, StartupFailure
from laurelin.supervisor import run_from_config
from laurelin.supervisor.single import open_listeners, remove_unix_sockets, server_tls
from laurelin.tls import TLSError

ShutdownTrigger = Callable[[], Awaitable[object]]
# What may be served: an ASGI application, or the "module.path:attribute" that names one.
AppOrPath = ASGIApp | str


class StartupError(Exception):
    """serve() could not start: the app did not load, a listener did not open, TLS could not be
    set up, the pid file is held, or the app's lifespan startup failed. str() is the one line
    saying why (the same line the command line logs)."""


def config_from_options(options: Mapping[str, Any], app: str = "") -> Config:
    """A Config from keyword options (Config field names), checked like the command line's.

    Raises:
        TypeError: an option that does not exist (or is the command line's alone).
        ValueError: an option value of the wrong type or out of range, or options that do not
            go together; the message names the option.
    """
    fields = {f.name: f for f in option_fields()}
    values: dict[str, Any] = {"app": app}
    for name, value in options.items():
        f = fields.get(name)
        if f is None or name == "app" or name in COMMAND_LINE_ONLY:
            raise TypeError(f"laurelin: unknown option {name!r}{_hint(name, fields)}")
        try:
            values[name] = typed_value(f, value, allow_none=True)
        except ValueError as exc:
            raise ValueError(f"laurelin: option {name}: {exc}") from None
    try:
        check_combination(values)
    except ValueError as exc:
        raise ValueError(f"laurelin: {exc}") from None
    return Config(**values)


def _hint(name: str, fields: Mapping[str, object]) -> str:
    import difflib  # only on this error path

    known = [n for n in fields if n != "app" and n not in COMMAND_LINE_ONLY]
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _app_object(app: object) -> ASGIApp:
    """An application object as ASGI 3 (an ASGI 2 one is adapted, as the importer does)."""
    if not callable(app):
        raise TypeError(
            f"laurelin: the application must be an ASGI callable or a 'module:attribute' string, "
            f"not {type(app).__name__}"
        )
    if _is_asgi2(app):
        return ASGI2Adapter(app)
    asgi_app: ASGIApp = app
    return asgi_app


def run(app: AppOrPath, **options: Any) -> int:
    """Run `app` as the `laurelin` command would, until SIGTERM or SIGINT; return the exit
    status (0 after a graceful shutdown).

    Args:
        app: An ASGI application, or "module.path:attribute" naming one (needed for
            `workers` > 1, `reload` and `max_requests`, whose worker processes import it).
        options: Config field names and values: port=8000, workers=4, headers=["X-A:1"].

    Raises:
        TypeError: an unknown option, or an app that is neither callable nor a string.
        ValueError: a bad option value, or an application object with worker processes.
        RuntimeError: called inside a running event loop (use serve()) or off the main thread.
    """
    if _running_loop() is not None:
        raise RuntimeError(
            "laurelin.run() runs its own event loop: inside a running loop, "
            "await laurelin.serve(app, config) instead"
        )
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "laurelin.run() handles signals, so it must be called from the main thread; "
            "in another thread, run laurelin.serve() in an event loop of that thread"
        )
    if isinstance(app, str):
        return run_from_config(config_from_options(options, app))
    config = config_from_options(options)
    asgi_app = _app_object(app)
    if any(used for _, used in _process_options(config)):
        raise ValueError(
            "laurelin.run(): with workers > 1, reload or max_requests each worker process "
            "imports the application, so pass its import path ('myproject.asgi:application') "
            "instead of the object"
        )
    return run_from_config(config, app=asgi_app)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def serve(
    app: AppOrPath,
    config: Config | None = None,
    *,
    shutdown_trigger: ShutdownTrigger | None = None,
    handle_signals: bool = False,
    on_started: Callable[[list[str]], object] | None = None,
) -> None:
    """Serve `app` in the running event loop until `shutdown_trigger()` returns, then drain.

    Opens the listeners `config` names (the command line's defaults otherwise: 127.0.0.1:8000),
    runs the lifespan startup, serves, and once the trigger's awaitable returns (or the task
    running serve() is cancelled) stops accepting, lets in-flight requests finish for up to
    `config.graceful_timeout`, runs the lifespan shutdown and closes the listeners.

    Args:
        app: An ASGI application, or "module.path:attribute" naming one.
        config: The options (`laurelin.Config(port=8001, ...)`); process options (`workers`,
            `reload`, `max_requests`) are run()'s and refused here.
        shutdown_trigger: Called once serving; its awaitable returning starts the shutdown.
            None: serve until cancelled (or signalled, with `handle_signals`).
        handle_signals: Also shut down on SIGINT or SIGTERM (main thread only). The handlers
            are removed at the first signal, so a second one acts as without laurelin.
        on_started: Called with the listening addresses ("http://127.0.0.1:8000",
            "unix:/run/app.sock") once they accept connections.

    Raises:
        StartupError: the server could not start (nothing is left open).
        ValueError: a process option is set in `config`.
    """
    config = Config() if config is None else config
    process_options = [name for name, used in _process_options(config) if used]
    if process_options:
        raise ValueError(
            f"laurelin.serve() runs one server in this event loop: {', '.join(process_options)} "
            "need laurelin.run() (or the laurelin command)"
        )
    try:
        asgi_app = (
            load_app(app, app_dir=config.app_dir, factory=config.factory)
            if isinstance(app, str)
            else _app_object(app)
        )
        specs = listen_specs(config, {})  # only what config names: no LISTEN_FDS adoption
        tls = server_tls(specs, config)
    except (AppLoadError, EndpointError, TLSError) as exc:
        raise StartupError(str(exc)) from exc
    try:
        with pid_file(config.pid_file):
            sockets = open_listeners(specs, config)
            try:
                await _serve(
                    config, asgi_app, sockets, tls, shutdown_trigger, handle_signals, on_started
                )
            finally:
                for sock in sockets:
                    sock.close()
                remove_unix_sockets([spec.path for spec in specs if spec.kind == "unix"])
    except (PidFileError, ListenError) as exc:
        raise StartupError(str(exc)) from exc


def _process_options(config: Config) -> list[tuple[str, bool]]:
    """The options only a supervising process can honour, and whether `config` uses each."""
    return [
        ("workers", config.workers > 1),
        ("reload", config.reload),
        ("max_requests", config.max_requests is not None),
    ]


async def _serve(
    config: Config,
    app: ASGIApp,
    sockets: list[Any],
    tls: list[Any],
    shutdown_trigger: ShutdownTrigger | None,
    handle_signals: bool,
    on_started: Callable[[list[str]], object] | None,
) -> None:
    loop = asyncio.get_running_loop()
    server = Server(config, app, sockets, tls)
    signalled = asyncio.Event()
    handled: list[int] = []

    def on_signal() -> None:
        signalled.set()
        while handled:
            loop.remove_signal_handler(handled.pop())

    async def until_shutdown() -> None:
        if on_started is not None:
            pairs = zip(sockets, tls, strict=True)
            on_started([describe_socket(sock, spec is not None) for sock, spec in pairs])
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(signalled.wait())]
        if shutdown_trigger is not None:
            waits.append(asyncio.ensure_future(shutdown_trigger()))
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        for finished in done:
            finished.result()  # a trigger that failed: its error, after the drain

    if handle_signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal)
            handled.append(signum)
    try:
        await server.serve(until_shutdown)
    except StartupFailure as exc:
        raise StartupError(str(exc)) from None
    finally:
        while handled:
            loop.remove_signal_handler(handled.pop())
