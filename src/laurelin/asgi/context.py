# laurelin.asgi.context — what the bridge needs from the server, built once at start-up.
#
# `ServerContext` is shared by every connection of one server: the app, the lifespan state, the
# timeouts the bridge enforces and the proxy trust rules. `PeerInfo` is what one connection knows
# about its two ends, computed once when the connection is made.
from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from laurelin.asgi.proxy import DEFAULT_TRUSTED_PROXIES, ProxyTrust
from laurelin.importer import ASGIApp

ASGI_VERSION = {"version": "3.0", "spec_version": "2.5"}
# App tasks are named this, plus their server's id: what a drain waits for, then cancels.
APP_TASK_NAME = "laurelin-app"

TaskFactory = Callable[[Coroutine[Any, Any, None]], "asyncio.Task[None]"]


def app_task_factory(loop: asyncio.AbstractEventLoop, name: str = APP_TASK_NAME) -> TaskFactory:
    """How the bridge starts one app call.

    On Python 3.12+ the task starts eagerly: an app that answers without waiting runs to the end
    inside the read callback, with no extra loop iteration. The Task is built directly, with a
    fixed name, because a default "Task-N" name and the loop's create_task wrapper together cost
    more than the rest of a hello-world request.
    """
    if sys.version_info >= (3, 12):
        return partial(asyncio.Task, loop=loop, name=name, eager_start=True)
    return partial(loop.create_task, name=name)


@dataclass(slots=True)
class ServerContext:
    """Server-wide settings and objects the ASGI bridge and the wire adapters share."""

    loop: asyncio.AbstractEventLoop
    app: ASGIApp
    root_path: str = ""
    http_timeout: float | None = None
    application_close_timeout: float = 10.0
    proxy_headers: bool = False
    proxy_host_header: bytes = b"x-forwarded-for"
    proxy_port_header: bytes = b"x-forwarded-port"
    trust: ProxyTrust = field(default_factory=lambda: ProxyTrust(DEFAULT_TRUSTED_PROXIES))
    # None: Daphne-Root-Path is honoured from any peer (Daphne's behaviour, the default when
    # --forwarded-allow-ips is not given); else only from the peers this trusts.
    root_path_trust: ProxyTrust | None = None
    state: dict[str, Any] | None = None
    # WebSocket: seconds the app has to accept (then 403), and the longest lifetime (then close).
    websocket_connect_timeout: float | None = 5.0
    websocket_timeout: float | None = None
    # App calls (HTTP requests, WebSocket connections) started: a worker retires after
    # --max-requests of them.
    requests: int = 0
    # The name of this server's app tasks (one fixed string: naming costs nothing per task).
    task_name: str = field(init=False, repr=False)
    start_task: TaskFactory = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.task_name = f"{APP_TASK_NAME}-{id(self):x}"
        self.start_task = app_task_factory(self.loop, self.task_name)


@dataclass(slots=True)
class PeerInfo:
    """The two ends of one connection, as ASGI scopes show them."""

    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    tls: bool
    proxy_trusted: bool
    root_path_trusted: bool
    # The scope extensions of this connection's requests (the server's, plus `tls` over TLS).
    extensions: dict[str, Any]

    @classmethod
    def from_addresses(
        cls,
        ctx: ServerContext,
        peername: Any,
        sockname: Any,
        tls: bool,
        extensions: dict[str, Any],
    ) -> PeerInfo:
        """Describe a connection from its socket's peer and local names."""
        # IPv4 (host, port) is already the ASGI shape; the rest goes through _as_address.
        client = peername if type(peername) is tuple and len(peername) == 2 else None
        if client is None:
            client = _as_address(peername)
        server: tuple[str, int | None] | None
        if type(sockname) is tuple and len(sockname) == 2:
            server = sockname
        else:
            server = _as_address(sockname)
            if server is None and isinstance(sockname, str) and sockname:
                server = (sockname, None)  # Unix socket: the path, no port (ASGI spec)
        host = client[0] if client else None
        proxy_trusted = ctx.proxy_headers and ctx.trust.trusts(host)
        root_trust = ctx.root_path_trust
        root_path_trusted = root_trust is None or root_trust.trusts(host)
        return cls(client, server, tls, proxy_trusted, root_path_trusted, extensions)

    def who(self) -> str:
        """The client as log lines name it (see `describe_client`)."""
        return describe_client(self.client)


def describe_client(client: tuple[str, int] | None) -> str:
    """A scope's `client` as log lines name it: `host:port`, or "unix socket"."""
    return f"{client[0]}:{client[1]}" if client else "unix socket"


def _as_address(name: Any) -> tuple[str, int] | None:
    if type(name) is tuple:
        if len(name) == 2:
            return name  # IPv4 (host, port): already the ASGI shape
        if len(name) >= 2:
            return (str(name[0]), int(name[1]))  # IPv6 (host, port, flowinfo, scope_id)
    return None
