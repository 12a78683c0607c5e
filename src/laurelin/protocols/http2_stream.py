# laurelin.protocols.http2_stream — one HTTP/2 stream as the ASGI bridge sees it (RFC 9113 8).
#
# `H2Stream` is the `HTTPSink` of one request's HTTPCycle (and the `HandshakeSink` of an RFC 8441
# WebSocket until the app accepts): it turns the response into HEADERS, DATA and trailing
# HEADERS queued on the connection, which sends them as the peer's flow-control windows allow
# (fairly between streams, see protocols/http2_output.py). Request-body flow control is
# credited back only as the app takes the body (backpressure: a stream buffers at most its
# window plus the bridge's high-water mark). `StreamTransport` lets a WebSocketConnection run
# over the stream's DATA frames exactly as it runs over a TCP transport.
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from laurelin.asgi.errors import error_page
from laurelin.asgi.http import HTTPCycle, check_response_headers
from laurelin.asgi.scope import CONNECTION_SPECIFIC

if TYPE_CHECKING:
    from laurelin.asgi.websocket import WebSocketCycle
    from laurelin.protocols.data_rate import RateMeter
    from laurelin.protocols.http2 import HTTP2Connection
    from laurelin.protocols.websocket import WebSocketConnection

# Response bytes a stream may have queued (not yet framed into the connection) before the app's
# send() waits.
STREAM_HIGH_WATER = 65536

_NO_BODY_STATUS = frozenset({204, 304})
# Response headers that are HTTP/1.1 connection business, forbidden in HTTP/2 (RFC 9113 8.2.2).
CONNECTION_HEADERS = CONNECTION_SPECIFIC  # the response fields HTTP/2 leaves out
STATUS = {status: str(status).encode() for status in range(100, 600)}


class H2Stream:
    """One request stream: the sink of its ASGI cycle, and its queued response."""

    __slots__ = (
        "_drain_waiters",
        "_unacked",
        "app_done",
        "body_meter",
        "body_received",
        "closed",
        "conn",
        "cycle",
        "end_queued",
        "end_sent",
        "expect_continue",
        "expected_length",
        "framing",
        "head",
        "head_only",
        "last_progress",
        "no_body",
        "out",
        "out_size",
        "read_paused",
        "remaining",
        "remote_closed",
        "resp_bytes",
        "stream_id",
        "trailers",
        "write_paused",
        "ws",
        "ws_early",
        "ws_extensions",
    )

    def __init__(self, conn: HTTP2Connection, stream_id: int, head_only: bool) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.cycle: HTTPCycle | WebSocketCycle | None = None
        self.head_only = head_only  # a HEAD request: headers only, whatever the app sends
        self.head: list[tuple[bytes, bytes]] | None = None  # response headers not yet sent
        self.no_body = False
        self.remaining: int | None = None  # body bytes the app's Content-Length still owes
        self.out: deque[bytes | memoryview] = deque()
        self.out_size = 0
        self.end_queued = False  # the app's last body part is queued
        self.end_sent = False  # END_STREAM has gone to the connection
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.read_paused = False
        self._unacked = 0  # request-body bytes received but not yet credited back
        self.remote_closed = False  # the client's END_STREAM came
        self.closed = False  # reset, or the connection is gone
        self.expect_continue = False
        self.resp_bytes = 0
        self.last_progress = 0.0
        self.app_done = False
        self.body_received = 0
        self.body_meter: RateMeter | None = None  # the heartbeat's (protocols/data_rate.py)
        self.expected_length: int | None = None  # the request's Content-Length
        # An RFC 8441 WebSocket: its framing and agreed extensions until accepted, then its
        # connection.
        self.framing: Any = None
        self.ws_extensions: bytes | None = None
        self.ws_early = bytearray()  # frames the client sent before the app accepted
        self.ws: WebSocketConnection | None = None

    # -- HTTPSink ----------------------------------------------------------------------------------

    def start_response(self, status: int, headers: Iterable[Any]) -> None:
        checked = check_response_headers(headers)
        if self.closed:
            return
        conn = self.conn
        if status < 200:
            conn.send_informational(self, status, checked)
            return
        self.expect_continue = False
        self.no_body = self.head_only or status in _NO_BODY_STATUS
        for name, value in checked:
            if name == b"content-length":
                if not (value.isascii() and value.isdigit()):
                    raise RuntimeError(f"Invalid Content-Length {value!r} in the response")
                if not self.no_body:
                    self.remaining = int(value)
        self.head = conn.response_headers(status, checked)

    def write_body(self, data: bytes, more_body: bool) -> None:
        if self.closed:
            return
        if self.remaining is not None and not self.no_body:
            self._check_length(len(data), more_body)
        if data and not self.no_body:
            self.out.append(data)
            self.out_size += len(data)
            self.resp_bytes += len(data)
        if not more_body:
            self.end_queued = True
        self.conn.want_send(self)
        if self.out_size > STREAM_HIGH_WATER:
            self.write_paused = True

    def _check_length(self, size: int, more_body: bool) -> None:
        """The body must match the app's Content-Length (RFC 9113 8.1.1): if not, the stream is
        reset, so a client never takes a wrong body for the whole one."""
        remaining = self.remaining
        assert remaining is not None
        remaining -= size
        self.remaining = remaining
        if remaining < 0:
            self.abort()
            raise RuntimeError("The app sent more body than its Content-Length")
        if not more_body and remaining:
            self.abort()
            raise RuntimeError("The app's response body is shorter than its Content-Length")

    def write_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        """The response's trailer fields: sent as a last HEADERS frame, ending the stream."""
        if self.closed:
            return
        if self.remaining and not self.no_body:
            self._check_length(0, False)
        self.trailers = [(n, v) for n, v in headers if n not in CONNECTION_HEADERS]
        self.end_queued = True
        self.conn.want_send(self)

    def send_continue(self) -> None:
        if self.expect_continue and not self.closed:
            self.expect_continue = False
            self.conn.send_informational(self, 100, [])

    def pause_reading(self) -> None:
        self.read_paused = True

    def resume_reading(self) -> None:
        self.read_paused = False
        if self._unacked:
            unacked, self._unacked = self._unacked, 0
            self.conn.credit(self, unacked)

    def received(self, size: int) -> None:
        """`size` flow-controlled bytes arrived and were handed on: credit them back now, or
        once the app has taken them."""
        if self.read_paused:
            self._unacked += size
        else:
            self.conn.credit(self, size)

    def abort(self) -> None:
        if not self.closed:
            self.conn.reset(self)

    async def wait_writable(self) -> None:
        if not self.write_paused or self.closed:
            return
        waiter = self.conn.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def wake_writers(self) -> None:
        """Queued output drained below the high-water mark (or the stream is gone)."""
        self.write_paused = self.out_size > STREAM_HIGH_WATER and not self.closed
        if self.write_paused:
            return
        ws = self.ws
        if ws is not None and ws.write_paused and not self.closed:
            ws.resume_writing()
        waiters = self._drain_waiters
        if waiters:
            self._drain_waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def cycle_finished(self, cycle: Any) -> None:
        self.conn.cycle_finished(self)

    # -- HandshakeSink (RFC 8441) --------------------------------------------------------------

    def accept_websocket(
        self, cycle: WebSocketCycle, subprotocol: str | None, headers: list[tuple[bytes, bytes]]
    ) -> WebSocketConnection:
        return self.conn.accept_websocket(self, cycle, subprotocol, headers)

    # -- the connection's side -----------------------------------------------------------------

    def release_credit(self) -> None:
        """The stream is closing: credit the connection window with what the app never took
        (h2 credits only the connection for a closed stream)."""
        if self._unacked:
            unacked, self._unacked = self._unacked, 0
            self.conn.credit(self, unacked)

    def lost(self) -> None:
        """The stream was reset by the peer, or the connection is gone."""
        if self.closed:
            return
        self.closed = True
        self.release_credit()
        self.out.clear()
        self.out_size = 0
        if self.ws is not None:
            self.ws.connection_lost(None)
        elif self.cycle is not None:
            self.cycle.on_disconnect()
        self.wake_writers()

    @property
    def finished(self) -> bool:
        """Nothing more will be sent on this stream."""
        return self.end_sent or self.closed


def error_headers(status: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The server's own error response for a stream, as HTTP/2 header fields and body."""
    headers, body = error_page(status)
    return [(b":status", STATUS[status]), *headers], body


class StreamTransport(asyncio.Transport):
    """An HTTP/2 stream's DATA frames as a transport, for a WebSocket (RFC 8441 5)."""

    def __init__(self, stream: H2Stream) -> None:
        super().__init__()
        self._stream = stream
        self._closing = False
        self._protocol: Any = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        stream = self._stream
        if self._closing or stream.closed:
            return
        stream.write_body(bytes(data), True)
        ws = stream.ws
        if stream.write_paused and ws is not None and not ws.write_paused:
            ws.pause_writing()  # resumed by H2Stream.wake_writers

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def close(self) -> None:
        """Half-close: END_STREAM after what is queued (the WebSocket's TCP FIN)."""
        if self._closing:
            return
        self._closing = True
        stream = self._stream
        if not stream.closed:
            stream.write_body(b"", False)

    def abort(self) -> None:
        self._closing = True
        if not self._stream.closed:
            self._stream.conn.reset(self._stream)

    def is_closing(self) -> bool:
        return self._closing or self._stream.closed

    def pause_reading(self) -> None:
        self._stream.pause_reading()

    def resume_reading(self) -> None:
        self._stream.resume_reading()

    def is_reading(self) -> bool:
        return not self._stream.read_paused

    def can_write_eof(self) -> bool:
        return False

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol  # type: ignore[no-any-return]

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return default  # the connection's, not this stream's
        return self._stream.conn.transport.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self._stream.out_size
