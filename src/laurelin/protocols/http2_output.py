# laurelin.protocols.http2_output — the sending half of an HTTP/2 connection (RFC 9113 5.2, 8.1).
#
# A mixin of HTTP2Connection (protocols/http2.py), which owns the state it reads: streams queue
# their response (protocols/http2_stream.py) and `want_send()` puts them in line; `_pump()`
# frames one DATA frame per stream in turn while the connection's and each stream's window
# allow (streams share the connection fairly; a stream out of window waits in `_blocked` until
# the peer's WINDOW_UPDATE), once per loop iteration or at the end of a read; the response
# headers get the server's defaults; a response ended early is reset after what was sent; a
# stream that makes no progress for --h2-flow-control-timeout is reset (CANCEL), so a peer that
# never opens its window cannot hold an app and its output forever.
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING

from h2.connection import ConnectionState
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from laurelin.asgi.http import HTTPCycle
from laurelin.asgi.websocket import WebSocketCycle
from laurelin.logs import error_logger, log_access
from laurelin.protocols.http2_stream import (
    CONNECTION_HEADERS,
    STATUS,
    STREAM_HIGH_WATER,
    H2Stream,
    error_headers,
)

if TYPE_CHECKING:
    from laurelin.protocols.http2_limits import H2Limits
    from laurelin.protocols.http2_machine import H2Machine
    from laurelin.protocols.settings import ConnectionSettings


class StreamOutput:
    """Response sending for HTTP2Connection; see the module comment."""

    __slots__ = ("_blocked", "_flush_scheduled", "_ready", "_stall_timer", "bytes_out")

    def _init_output(self) -> None:
        self._ready: deque[H2Stream] = deque()  # streams with output to send, in turn
        self._blocked: set[H2Stream] = set()  # streams waiting for their own window
        self._flush_scheduled = False
        self._stall_timer: asyncio.TimerHandle | None = None
        self.bytes_out = 0  # what _flush has written (protocols/data_rate.py)

    # Owned by HTTP2Connection; declared here for the type checker.
    settings: ConnectionSettings
    limits: H2Limits
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    write_paused: bool
    _h2: H2Machine
    _streams: dict[int, H2Stream]
    _in_receive: bool
    _closing: bool
    _draining: bool
    _lost: bool

    if TYPE_CHECKING:

        def _maybe_done(self, stream: H2Stream) -> None: ...

        def _close(self) -> None: ...

    def response_headers(
        self, status: int, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        """The HEADERS of a response: status, the app's fields (less the HTTP/1.1 connection
        ones) and the server's defaults the app did not set."""
        fields = [(b":status", STATUS[status])]
        settings = self.settings
        defaults = settings.default_header_names
        override: set[bytes] | None = None
        for name, value in headers:
            if name in CONNECTION_HEADERS or (status == 204 and name == b"content-length"):
                continue  # the last: RFC 9110 8.6
            if name in defaults or name == b"date":
                if override is None:
                    override = set()
                override.add(name)
            fields.append((name, value))
        for name, value in settings.h2_default_headers:
            if override is None or name not in override:
                fields.append((name, value))
        date = settings.date_header
        if date is not None and (override is None or b"date" not in override):
            fields.append((b"date", date.value()))
        return fields

    def send_informational(
        self, stream: H2Stream, status: int, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """A 1xx response (100 Continue, 103 Early Hints) on `stream`, now."""
        if stream.closed or stream.end_sent or self._closing:
            return
        fields = [(b":status", STATUS[status])]
        fields += [(n, v) for n, v in headers if n not in CONNECTION_HEADERS]
        try:
            self._h2.send_headers(stream.stream_id, fields)
        except ProtocolError:
            return  # h2 saw the stream reset in the same read that started its app
        self._schedule_flush()

    def respond_error(
        self, stream: H2Stream, status: int, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Answer a stream in the app's place (400, 405, 413, 431, ...)."""
        headers, body = error_headers(status)
        if extra:
            headers = [headers[0], *extra, *headers[1:]]
        stream.head = self.response_headers(status, headers[1:])
        stream.write_body(body, False)

    def want_send(self, stream: H2Stream) -> None:
        """`stream` has output queued."""
        if stream not in self._blocked and stream not in self._ready:
            stream.last_progress = self.loop.time()  # waiting from now, not since its last send
            self._ready.append(stream)
            if self._stall_timer is None:
                self._arm_stall_check()
        self._schedule_flush()

    def _arm_stall_check(self) -> None:
        self._stall_timer = self.loop.call_later(
            self.limits.flow_control_timeout / 2, self._on_stall_check
        )

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self._in_receive:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._lost:
            return
        if self._ready and not self.write_paused:
            if self._h2.state_machine.state is ConnectionState.CLOSED:
                self._ready.clear()  # after an error GOAWAY either way: nothing more is sent
            else:
                self._pump()
        data = self._h2.data_to_send()
        if data:
            self.bytes_out += len(data)
            self.transport.write(data)
        if self._draining and not self._streams and not self._closing:
            self._close()

    def _pump(self) -> None:
        """Frame queued output, one DATA frame per stream in turn, while the windows allow."""
        ready = self._ready
        now = self.loop.time()
        while ready and not self.write_paused:
            stream = ready[0]
            if stream.closed or stream.end_sent:
                ready.popleft()
                continue
            try:
                if not self._pump_stream(stream, now):
                    break  # the whole connection waits for the peer's WINDOW_UPDATE
            except (ProtocolError, KeyError):
                # h2 has closed or forgotten the stream (the client reset it in the same read
                # that started its app): nothing more can be sent on it.
                if ready and ready[0] is stream:
                    ready.popleft()
                stream.lost()
                self._maybe_done(stream)

    def _pump_stream(self, stream: H2Stream, now: float) -> bool:
        """One turn of `stream`, first in line: its headers, one DATA frame, or its end. False
        when the whole connection must wait for the peer's WINDOW_UPDATE."""
        h2 = self._h2
        ready = self._ready
        stream_id = stream.stream_id
        if stream.head is not None:
            head, stream.head = stream.head, None
            end = stream.end_queued and not stream.out and stream.trailers is None
            h2.send_headers_fast(stream_id, head, end)
            if end:
                ready.popleft()
                self._ended(stream)
                return True
        out = stream.out
        if out:
            window = h2.local_flow_control_window(stream_id)
            if window <= 0:
                if h2.outbound_flow_control_window <= 0:
                    return False
                ready.popleft()
                stream.last_progress = now  # waiting for its own window from now
                self._blocked.add(stream)
                return True
            size = min(window, h2.max_outbound_frame_size)
            piece = out[0]
            if len(piece) > size:
                view = memoryview(piece)
                out[0] = view[size:]
                piece = view[:size]
            else:
                out.popleft()
            stream.out_size -= len(piece)
            stream.last_progress = now
            end = stream.end_queued and not out and stream.trailers is None
            h2.send_data_fast(stream_id, piece, end)
            if stream.write_paused and stream.out_size <= STREAM_HIGH_WATER:
                stream.wake_writers()
            ready.popleft()
            if end:
                self._ended(stream)
            elif out or stream.end_queued:
                ready.append(stream)
            return True
        ready.popleft()
        if stream.end_queued:
            if stream.trailers is not None:
                h2.send_headers(stream_id, stream.trailers, end_stream=True)
            else:
                h2.end_stream(stream_id)
            self._ended(stream)
        return True

    def _ended(self, stream: H2Stream) -> None:
        """END_STREAM is queued for `stream`: its response is complete."""
        stream.end_sent = True
        stream.wake_writers()
        cycle = stream.cycle
        if self.settings.access_log and type(cycle) is HTTPCycle:
            scope = cycle.scope
            target = scope["raw_path"].decode("ascii", "replace")
            if scope["query_string"]:
                target += "?" + scope["query_string"].decode("ascii", "replace")
            log_access(
                scope["client"],
                scope["method"],
                target,
                cycle.status,
                stream.resp_bytes,
                duration=self.loop.time() - cycle.arrived,
            )
        if stream.ws is not None:
            if stream.remote_closed:
                self._finish(stream)
            return
        if type(cycle) is WebSocketCycle:
            cycle.on_disconnect()  # refused with an HTTP response: the WebSocket is over
        if not stream.remote_closed:
            # A complete response while the request is still open: ask the client to stop
            # sending without error (RFC 9113 8.1).
            stream.closed = True
            stream.release_credit()
            with contextlib.suppress(ProtocolError):
                self._h2.reset_stream(stream.stream_id, ErrorCodes.NO_ERROR)
        self._maybe_done(stream)

    def _finish(self, stream: H2Stream) -> None:
        """Both ends of a WebSocket stream are closed."""
        stream.lost()
        self._maybe_done(stream)

    def _on_window_updated(self, stream_id: int) -> None:
        blocked = self._blocked
        if not blocked:
            if self._ready:
                self._schedule_flush()
            return
        if stream_id == 0:
            self._ready.extend(blocked)
            blocked.clear()
        else:
            stream = self._streams.get(stream_id)
            if stream is None or stream not in blocked:
                return
            blocked.discard(stream)
            self._ready.append(stream)
        self._schedule_flush()

    def credit(self, stream: H2Stream, size: int) -> None:
        """The app has taken `size` flow-controlled bytes of `stream`'s request body."""
        if size and not self._closing:
            self._credit_now(stream.stream_id, size)
            self._schedule_flush()

    def _credit_now(self, stream_id: int, size: int) -> None:
        if size:
            with contextlib.suppress(ProtocolError):
                self._h2.acknowledge_received_data(size, stream_id)

    def reset(self, stream: H2Stream, code: int = ErrorCodes.INTERNAL_ERROR) -> None:
        """Reset `stream` from our side (the app failed mid-response, or a WebSocket abort)."""
        if stream.closed:
            return
        if stream.head is not None or stream.out:
            # What the app did send goes out first (its headers before its body), then the
            # reset: the client sees a response cut short.
            stream.end_queued = False
            self._pump_one(stream)
        with contextlib.suppress(ProtocolError):
            self._h2.reset_stream(stream.stream_id, code)
        stream.lost()  # closes it, and tells its app
        self._blocked.discard(stream)
        self._maybe_done(stream)
        self._schedule_flush()

    def _pump_one(self, stream: H2Stream) -> None:
        h2 = self._h2
        head, stream.head = stream.head, None
        if head is not None:
            try:
                h2.send_headers_fast(stream.stream_id, head, False)
            except ProtocolError:
                return
        while stream.out:
            window = min(h2.local_flow_control_window(stream.stream_id), h2.max_outbound_frame_size)
            if window <= 0:
                return
            piece = stream.out.popleft()
            if len(piece) > window:
                stream.out.appendleft(piece[window:])
                piece = piece[:window]
            stream.out_size -= len(piece)
            with contextlib.suppress(ProtocolError):
                h2.send_data(stream.stream_id, piece)

    def _on_stall_check(self) -> None:
        self._stall_timer = None
        if self._closing:
            return
        timeout = self.limits.flow_control_timeout
        now = self.loop.time()
        waiting = [s for s in (*self._ready, *self._blocked) if not s.finished]
        for stream in waiting:
            if now - stream.last_progress >= timeout:
                error_logger.info(
                    "HTTP/2 stream %d could send nothing for %ss (the client's window is shut or "
                    "it does not read): reset",
                    stream.stream_id,
                    timeout,
                )
                self.reset(stream, ErrorCodes.CANCEL)
        if any(not s.finished for s in (*self._ready, *self._blocked)):
            self._arm_stall_check()
        self._flush()
