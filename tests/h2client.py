# A raw HTTP/2 client for the tests, on the `h2` library over a blocking loopback socket.
#
# `H2Client(port)` connects (cleartext prior knowledge, or TLS with ALPN h2 when given an
# SSLContext), sends the preface and reads the server's SETTINGS. `request()` opens a stream;
# `pump()` reads and dispatches events into per-stream `StreamResult`s until a condition holds
# or the deadline passes; `send_raw()` writes bytes the h2 state machine never saw (for
# frame-level attacks built with `hyperframe`). Every wait has a deadline: a hang fails.
from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

# The stream id a graceful shutdown's first GOAWAY announces (RFC 9113 6.8).
MAX_STREAM_ID = 2**31 - 1


class _Connection(h2.connection.H2Connection):
    """h2's client connection, reading on after a graceful GOAWAY: h2 takes any GOAWAY for the
    end of the connection, but after GOAWAY(NO_ERROR) the server still answers the streams at or
    below its last stream id (RFC 9113 6.8), and the tests must see those answers."""

    def _receive_goaway_frame(self, frame: Any) -> Any:
        if frame.error_code != 0:
            return super()._receive_goaway_frame(frame)
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors.ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]


class Closed(Exception):
    """The server closed the connection while we waited."""


@dataclass
class StreamResult:
    """What came back on one stream."""

    stream_id: int
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[bytes, bytes]] | None = None
    ended: bool = False
    reset: int | None = None  # RST_STREAM error code

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class H2Client:
    """One HTTP/2 connection to 127.0.0.1:`port`."""

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext | None = None,
        *,
        timeout: float = 10.0,
        settings: dict[int, int] | None = None,
        auto_window: bool = True,
        connect: bool = True,
    ) -> None:
        self.timeout = timeout
        # auto_window: credit back received DATA at once (a well-behaved reader); off, the
        # server's windows only open when the test calls `credit()`.
        self.auto_window = auto_window
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if context is not None:
            context.set_alpn_protocols(["h2"])
            self.sock: socket.socket = context.wrap_socket(raw, server_hostname="localhost")
        else:
            self.sock = raw
        self.conn = _Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.streams: dict[int, StreamResult] = {}
        self.events: list[Any] = []  # every event seen, in order
        self.goaway: h2.events.ConnectionTerminated | None = None
        self.closed = False
        if connect:
            self.conn.initiate_connection()
            if settings:
                self.conn.update_settings(settings)
            self.flush()
            self.pump(lambda: self.remote_settings_seen, what="the server's SETTINGS")

    # -- sending ---------------------------------------------------------------------------------

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        end_stream: bool = True,
    ) -> int:
        """Open a stream with this request; the body (if any) is sent as far as the windows
        allow (see `send_body` for more). Returns the stream id."""
        stream_id = self.conn.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https" if isinstance(self.sock, ssl.SSLSocket) else b"http"),
            (b":authority", b"127.0.0.1"),
            (b":path", path.encode()),
        ]
        fields += [(k.lower().encode(), v.encode()) for k, v in headers or []]
        self.streams[stream_id] = StreamResult(stream_id)
        no_body = body is None or body == b""
        self.conn.send_headers(stream_id, fields, end_stream=end_stream and no_body)
        self.flush()
        if not no_body:
            assert body is not None
            self.send_body(stream_id, body, end_stream=end_stream)
        return stream_id

    def send_body(self, stream_id: int, data: bytes, end_stream: bool = True) -> None:
        """Send `data` on a stream, waiting for window as needed (reading meanwhile)."""
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        while view:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                if time.monotonic() > deadline:
                    raise AssertionError(f"stream {stream_id}: the send window stayed shut")
                self._read_once(deadline)
                continue
            chunk = bytes(view[:window])
            view = view[window:]
            self.conn.send_data(stream_id, chunk, end_stream=end_stream and not view)
            self.flush()
        if end_stream and not data:
            self.conn.end_stream(stream_id)
            self.flush()

    def credit(self, stream_id: int, size: int) -> None:
        """Open our receive window by `size` (when auto_window is off)."""
        self.conn.acknowledge_received_data(size, stream_id)
        self.flush()

    def reset(self, stream_id: int, code: int = 8) -> None:
        self.conn.reset_stream(stream_id, code)
        self.flush()

    # -- receiving -------------------------------------------------------------------------------

    @property
    def remote_settings_seen(self) -> bool:
        return any(isinstance(e, h2.events.RemoteSettingsChanged) for e in self.events)

    def pump(self, condition: Callable[[], bool], what: str = "the condition") -> None:
        """Read until `condition()` holds; AssertionError at the deadline, Closed on EOF."""
        deadline = time.monotonic() + self.timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            self._read_once(deadline)

    def response(self, stream_id: int) -> StreamResult:
        """Wait until the stream is complete (or reset) and return it."""
        result = self.streams[stream_id]
        self.pump(lambda: result.done, what=f"stream {stream_id}")
        return result

    def get(self, path: str = "/", **kwargs: Any) -> StreamResult:
        return self.response(self.request(path, **kwargs))

    def wait_goaway(self) -> h2.events.ConnectionTerminated:
        """Read until a GOAWAY that names the last stream (or the connection closes after one).
        A graceful shutdown first announces the largest stream id (RFC 9113 6.8): that one
        is read past (`goaway_announced` tells it came)."""
        with contextlib.suppress(Closed):
            self.pump(
                lambda: self.goaway is not None and self.goaway.last_stream_id != MAX_STREAM_ID,
                what="GOAWAY",
            )
        assert self.goaway is not None, "connection closed without GOAWAY"
        return self.goaway

    def wait_closed(self) -> None:
        """Read (and dispatch) until the server closes the connection."""
        deadline = time.monotonic() + self.timeout
        while True:
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the connection to close")
            try:
                self._read_once(deadline)
            except Closed:
                return

    def _read_once(self, deadline: float) -> None:
        if self.closed:
            raise Closed("connection closed")
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.closed = True
            raise Closed("connection closed")
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            events = []
        for event in events:
            self._dispatch(event)
        with contextlib.suppress(OSError):
            self.flush()

    def _dispatch(self, event: Any) -> None:
        self.events.append(event)
        stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream.headers = list(event.headers)
            stream.status = int(dict(event.headers)[b":status"])
        elif isinstance(event, h2.events.InformationalResponseReceived) and stream is not None:
            stream.informational.append(list(event.headers))
        elif isinstance(event, h2.events.DataReceived):
            if stream is not None:
                stream.body += event.data
            if self.auto_window and event.flow_controlled_length:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
        elif isinstance(event, h2.events.TrailersReceived) and stream is not None:
            stream.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            stream.reset = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event

    @property
    def goaway_announced(self) -> bool:
        """Whether a GOAWAY announcing the largest stream id (a shutdown's first) came."""
        return any(
            isinstance(e, h2.events.ConnectionTerminated) and e.last_stream_id == MAX_STREAM_ID
            for e in self.events
        )

    def setting(self, code: h2.settings.SettingCodes) -> int:
        """The value the server announced for a setting."""
        return int(self.conn.remote_settings[code])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> H2Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
