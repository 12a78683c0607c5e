# laurelin.server — one process, one event loop: listeners, lifespan, connections, draining.
#
# `Server.serve()` runs lifespan startup, serves the already-open listening sockets until its
# shutdown trigger fires, then drains: stop accepting, close idle keep-alive connections, let
# in-flight requests finish for up to --graceful-timeout, cancel what remains, run lifespan
# shutdown. Signals are not this module's business (see laurelin.supervisor).
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from functools import partial

from laurelin.asgi.context import ServerContext
from laurelin.asgi.lifespan import Lifespan, LifespanFailure
from laurelin.asgi.proxy import DEFAULT_TRUSTED_PROXIES, ProxyTrust
from laurelin.config import Config
from laurelin.importer import ASGIApp
from laurelin.listeners import describe_socket
from laurelin.logs import access_logger
from laurelin.protocols.data_rate import DataRates, Heartbeat
from laurelin.protocols.http1 import HTTP1Connection, HTTP1TLSConnection
from laurelin.protocols.http1_encoding import (
    DateHeader,
    default_header_names,
    encode_default_headers,
)
from laurelin.protocols.http2_limits import H2Limits
from laurelin.protocols.http2_machine import quiet_hpack
from laurelin.protocols.settings import ConnectionSettings
from laurelin.protocols.ws_handshake import FramingSettings
from laurelin.tls import ServerTLS

logger = logging.getLogger("laurelin.error")

# uvloop accepts one connection per listening socket per loop iteration. Under connection
# churn each iteration then served one new connection, and each response woke the client on
# its own (in this VM a cross-CPU wake-up costs the writer about 10 us). So each listening
# socket is served by this many uvloop servers (the socket and duplicates of it, all on the one
# kernel accept queue): up to this many connections are accepted per iteration, and their
# responses leave together. Measured on close churn (64 wrk connections, pinned as in bench/):
# 13,300-14,400 connections/s with one acceptor, 17,100-18,600 with two, 22,400-23,400 with
# three; four to eight were no better. The price is paid when the queue is empty: a new
# connection wakes every acceptor and all but one find nothing (failed accept() calls, in C;
# about 10 us of CPU per connection, so a single client opening connections one after another
# gets some 5-10 % fewer per second).
ACCEPTORS = 3


class StartupFailure(Exception):
    """The server could not start (lifespan startup failed); str() is the line to log."""


def build_context(config: Config, app: ASGIApp, loop: asyncio.AbstractEventLoop) -> ServerContext:
    """The bridge's server-wide context, derived once from Config."""
    explicit_trust = config.forwarded_allow_ips is not None
    trust = ProxyTrust(config.forwarded_allow_ips or DEFAULT_TRUSTED_PROXIES)
    return ServerContext(
        loop=loop,
        app=app,
        root_path=config.root_path,
        http_timeout=config.http_timeout,
        application_close_timeout=config.application_close_timeout,
        proxy_headers=config.proxy_headers,
        proxy_host_header=(config.proxy_headers_host or "x-forwarded-for").lower().encode(),
        proxy_port_header=(config.proxy_headers_port or "x-forwarded-port").lower().encode(),
        trust=trust,
        root_path_trust=trust if explicit_trust else None,
        websocket_connect_timeout=config.websocket_connect_timeout,
        websocket_timeout=config.websocket_timeout,
    )


def build_settings(config: Config, ctx: ServerContext) -> ConnectionSettings:
    """The wire adapters' shared settings, derived once from Config."""
    server_name = None if config.no_server_name else config.server_name
    return ConnectionSettings(
        ctx=ctx,
        header_read_timeout=config.header_read_timeout,
        timeout_keep_alive=config.timeout_keep_alive,
        limit_request_head_size=config.limit_request_head_size,
        limit_request_headers=config.limit_request_headers,
        limit_max_body_size=config.limit_max_body_size,
        rates=DataRates(
            request_body=config.min_request_body_rate,
            response=config.min_response_data_rate,
            grace=config.data_rate_grace,
        ),
        default_headers=encode_default_headers(server_name, config.headers),
        default_header_names=default_header_names(server_name, config.headers),
        date_header=DateHeader() if config.date_header else None,
        access_log=access_logger.isEnabledFor(logging.INFO),
        websocket=FramingSettings(
            max_message_size=config.websocket_max_message_size,
            max_frame_size=config.websocket_max_frame_size,
            per_message_deflate=config.ws_per_message_deflate,
        ),
        http_versions=config.http,
        h2=H2Limits(
            max_concurrent_streams=config.h2_max_concurrent_streams,
            max_header_list_size=config.limit_request_head_size,
            max_headers=config.limit_request_headers,
            max_resets=config.h2_max_reset_streams,
            max_control_frames=config.h2_max_control_frames,
            flow_control_timeout=config.h2_flow_control_timeout,
            idle_timeout=config.timeout_keep_alive,
        ),
        ws_ping_interval=config.ping_interval,
        ws_ping_timeout=config.ping_timeout,
        writelines_pauses=not isinstance(ctx.loop, asyncio.BaseEventLoop),
        limit_concurrency=config.limit_concurrency,
    )


def acceptors_per_socket(loop: asyncio.AbstractEventLoop) -> int:
    """How many loop servers accept on each listening socket: ACCEPTORS under uvloop; one
    under asyncio's own loop (it accepts up to the backlog per readiness event) and any other."""
    return ACCEPTORS if type(loop).__module__.partition(".")[0] == "uvloop" else 1


class Server:
    """Serve one ASGI app on a set of listening sockets in the running event loop."""

    def __init__(
        self,
        config: Config,
        app: ASGIApp,
        sockets: list[socket.socket],
        tls: list[ServerTLS | None] | None = None,
    ) -> None:
        self.config = config
        self.app = app
        self.sockets = sockets
        # TLS per socket (same order); None: plain.
        self.tls = tls if tls is not None else [None] * len(sockets)
        self.settings: ConnectionSettings | None = None
        self._servers: list[asyncio.Server] = []
        self.started = asyncio.Event()

    def requests_served(self) -> int:
        """HTTP requests and WebSocket connections started so far."""
        return self.settings.ctx.requests if self.settings is not None else 0

    async def serve(self, shutdown_trigger: Callable[[], Awaitable[object]]) -> None:
        """Start, serve until `shutdown_trigger()` returns, then drain and stop.

        Raises:
            StartupFailure: lifespan startup failed.
        """
        loop = asyncio.get_running_loop()
        config = self.config
        lifespan = Lifespan(self.app, config.lifespan)
        try:
            await lifespan.startup()
        except LifespanFailure as exc:
            raise StartupFailure(f"Application startup failed: {exc}") from None
        ctx = build_context(config, self.app, loop)
        if lifespan.supported:
            ctx.state = lifespan.state
        settings = build_settings(config, ctx)
        self.settings = settings
        quiet_hpack()

        try:
            await self._listen(settings)
        except BaseException:
            for server in self._servers:  # none of them may go on accepting
                server.close()
            raise
        heartbeat = Heartbeat(loop, settings.connections) if settings.rates.active else None
        self.started.set()
        try:
            await shutdown_trigger()
        finally:
            try:
                await self._drain(settings)
            finally:
                settings.deadlines.close()
                if heartbeat is not None:
                    heartbeat.stop()
            try:
                await lifespan.shutdown()
            except LifespanFailure as exc:
                logger.error("Application shutdown failed: %s", exc)

    async def _listen(self, settings: ConnectionSettings) -> None:
        """Start accepting on every socket: ACCEPTORS loop servers per socket under uvloop,
        the first on the socket itself, the others each on a duplicate of it (which its
        server owns and closes)."""
        loop = asyncio.get_running_loop()
        config = self.config
        acceptors = acceptors_per_socket(loop)
        for sock, tls in zip(self.sockets, self.tls, strict=True):
            for index in range(acceptors):
                listening = sock if index == 0 else sock.dup()
                try:
                    if tls is None:
                        server = await loop.create_server(
                            partial(HTTP1Connection, settings),
                            sock=listening,
                            backlog=config.backlog,
                        )
                    else:
                        server = await loop.create_server(
                            partial(HTTP1TLSConnection, settings, tls),
                            sock=listening,
                            backlog=config.backlog,
                            ssl=tls.context,
                            ssl_handshake_timeout=config.ssl_handshake_timeout or None,
                        )
                except BaseException:
                    if index:
                        listening.close()
                    raise
                self._servers.append(server)
            logger.info("Listening on %s", describe_socket(sock, tls is not None))

    async def _drain(self, settings: ConnectionSettings) -> None:
        for server in self._servers:
            server.close()
        settings.draining = True
        for conn in list(settings.connections):
            conn.shutdown()
        timeout = self.config.graceful_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        if settings.connections:
            logger.info(
                "Waiting for %d connection(s) to finish (up to %ss)",
                len(settings.connections),
                timeout,
            )
        try:
            await asyncio.wait_for(settings.connections.wait_empty(), timeout)
        except TimeoutError:
            logger.warning(
                "Graceful timeout: closing %d connection(s) still open", len(settings.connections)
            )
            for conn in settings.connections:
                conn.cancel_apps()
                conn.abort()
            await asyncio.sleep(0)
        await self._finish_apps(settings.ctx, deadline)
        for server in self._servers:
            await server.wait_closed()

    async def _finish_apps(self, ctx: ServerContext, deadline: float) -> None:
        """Let app calls that outlive their connection finish (a WebSocket consumer's
        disconnect(), work after a response) until the graceful deadline; then cancel them.
        This server's app tasks carry its name (asgi/context.py); none starts any more. Those
        the graceful timeout already cancelled are not cancelled twice."""
        loop = asyncio.get_running_loop()
        running = {t for t in asyncio.all_tasks() if t.get_name() == ctx.task_name}
        if not running:
            return
        if deadline > loop.time():
            logger.info("Waiting for %d application call(s) to finish", len(running))
            _, running = await asyncio.wait(running, timeout=deadline - loop.time())
        late = [t for t in running if not t.cancelling()]
        if late:
            logger.warning("Graceful timeout: cancelling %d application call(s)", len(late))
            for task in late:
                task.cancel()
        if running:
            await asyncio.wait(running, timeout=5.0)
