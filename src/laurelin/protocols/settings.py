# laurelin.protocols.settings — what every wire adapter of one server shares, built once.
#
# Derived from Config at start-up (encoded default headers, the Date cache, limits, the live
# connection registry the server drains on shutdown) so that no connection re-derives anything.
# The registry is also what --limit-concurrency counts (`over_limit`).
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from laurelin.asgi.context import ServerContext
from laurelin.asgi.scope import CONNECTION_SPECIFIC
from laurelin.logs import error_logger
from laurelin.protocols.data_rate import DataRates
from laurelin.protocols.deadlines import DeadlineWheel
from laurelin.protocols.http1_encoding import DateHeader
from laurelin.protocols.http2_limits import H2Limits
from laurelin.protocols.write_batch import WriteBatch
from laurelin.protocols.ws_handshake import FramingSettings

# Seconds between two "concurrency limit reached" warnings: an overload must not flood the log.
LIMIT_WARNING_EVERY = 10.0


class ConnectionRegistry:
    """The live connections of one server; draining waits on `wait_empty()`, not a poll."""

    __slots__ = ("_empty", "_items")

    def __init__(self) -> None:
        self._items: set[Any] = set()
        self._empty: asyncio.Event | None = None

    def add(self, conn: Any) -> None:
        """Register a new connection."""
        self._items.add(conn)

    def discard(self, conn: Any) -> None:
        """Forget a closed connection."""
        self._items.discard(conn)
        if not self._items and self._empty is not None:
            self._empty.set()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Any:
        return iter(list(self._items))

    async def wait_empty(self) -> None:
        """Return once no connection is left."""
        if not self._items:
            return
        self._empty = asyncio.Event()
        await self._empty.wait()


@dataclass(slots=True)
class ConnectionSettings:
    """Per-server settings and state for wire adapters."""

    ctx: ServerContext
    header_read_timeout: float = 30.0
    timeout_keep_alive: float = 5.0
    limit_request_head_size: int = 65536
    limit_request_headers: int = 100
    limit_max_body_size: int | None = None
    # Minimum request-body and output rates (protocols/data_rate.py).
    rates: DataRates = field(default_factory=DataRates)
    default_headers: bytes = b""
    default_header_names: frozenset[bytes] = frozenset()
    # Response header names the wire adapter must look at: framing, and the defaults above.
    special_header_names: frozenset[bytes] = frozenset()
    # Request header names that need more than being copied into the scope; HTTP/1.1 also
    # looks at the fields its parser reads keep-alive from (protocols/http1.py).
    notable_headers: frozenset[bytes] = frozenset()
    h1_notable_headers: frozenset[bytes] = frozenset()
    # Request field names HTTP/1.1 has seen, raw -> lower-cased: see protocols/http1.py.
    h1_header_names: dict[bytes, bytes] = field(default_factory=dict)
    # Host values HTTP/1.1 has found valid: see protocols/http1.py.
    h1_hosts: set[bytes] = field(default_factory=set)
    date_header: DateHeader | None = field(default_factory=DateHeader)
    # HTTP/1.1 response header lines by the app's (name, value) pair: see
    # protocols/http1_response.py, header_line.
    header_lines: dict[Any, tuple[bytes, int, int]] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)
    connections: ConnectionRegistry = field(default_factory=ConnectionRegistry)
    draining: bool = False
    # Seconds an idle HTTP/1.1 connection stays open once draining starts: a request already on
    # its way is answered (with Connection: close) instead of meeting a closed connection.
    drain_idle_grace: float = 1.0
    # WebSocket framing limits and extensions; keep-alive ping interval and pong timeout (0: no
    # pings).
    websocket: FramingSettings = field(default_factory=FramingSettings)
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 30.0
    # Which HTTP versions are served: "auto" (1.1 and 2), "1" or "2"; HTTP/2's limits.
    http_versions: str = "auto"
    h2: H2Limits = field(default_factory=H2Limits)
    # default_headers as HTTP/2 header fields.
    h2_default_headers: tuple[tuple[bytes, bytes], ...] = ()
    # Whether access-log lines are wanted: read once at start-up, not per request.
    access_log: bool = False
    # Whether transport.writelines() pauses the protocol when its buffer fills (uvloop: yes;
    # asyncio on Python 3.12: no), so big bodies can go out without being joined first.
    writelines_pauses: bool = False
    # --limit-concurrency (None: no limit): the most slots in use at once. A slot is a connection
    # (HTTP/1.1, WebSocket, HTTP/2), or an HTTP/2 request stream beyond its connection's first,
    # so N requests in flight take N slots whichever HTTP version carries them.
    limit_concurrency: int | None = None
    # HTTP/2 streams beyond the first of their connection: counted only under a limit.
    h2_extra_streams: int = 0
    # When the last "over the limit" warning was logged (loop time): one per LIMIT_WARNING_EVERY.
    limit_warned_at: float | None = None
    # HTTP/1.1's small writes, flushed once per loop iteration (protocols/write_batch.py).
    write_batch: WriteBatch = field(init=False)
    # HTTP/1.1's header-read and keep-alive deadlines, on one timer (protocols/deadlines.py).
    deadlines: DeadlineWheel = field(init=False)

    def over_limit(self, new_slots: int) -> bool:
        """Whether the slots in use, with `new_slots` more, go past --limit-concurrency (set).
        A refusal is logged as a warning, at most once per LIMIT_WARNING_EVERY seconds."""
        limit = self.limit_concurrency
        assert limit is not None
        in_use = len(self.connections) + self.h2_extra_streams + new_slots
        if in_use <= limit:
            return False
        now = self.ctx.loop.time()
        if self.limit_warned_at is None or now - self.limit_warned_at >= LIMIT_WARNING_EVERY:
            self.limit_warned_at = now
            error_logger.warning(
                "Concurrency limit reached (--limit-concurrency %d): answering 503", limit
            )
        return True

    def __post_init__(self) -> None:
        self.write_batch = WriteBatch(self.ctx.loop)
        self.deadlines = DeadlineWheel(self.ctx.loop)
        # Connection-specific fields (RFC 9113 8.2.2) given with --header stay HTTP/1.1's.
        self.h2_default_headers = tuple(
            (name.strip().lower(), value.strip())
            for line in self.default_headers.split(b"\r\n")
            if line
            for name, _, value in [line.partition(b":")]
            if name.strip().lower() not in CONNECTION_SPECIFIC
        )
        self.special_header_names = self.default_header_names | {
            b"content-length",
            b"transfer-encoding",
            b"connection",
            b"date",
        }
        ctx = self.ctx
        self.notable_headers = frozenset(
            {
                b"expect",
                b"host",
                b"upgrade",
                b"te",
                b"transfer-encoding",
                b"daphne-root-path",
                b"x-forwarded-proto",
                b"forwarded",
                ctx.proxy_host_header,
                ctx.proxy_port_header,
            }
        )
        self.h1_notable_headers = self.notable_headers | {b"connection", b"proxy-connection"}
