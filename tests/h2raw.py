# A raw-frame HTTP/2 client (RFC 9113) for the attack and limit tests, over a blocking loopback
# socket, and the frame builders and checks those tests share.
#
# `RawH2(port)` connects in cleartext (prior knowledge), sends the preface and its SETTINGS
# (unless `preface=False`), then sends exactly the bytes a test gives it: frames serialized by
# hyperframe, HEADERS from `headers()` / `request()` (HPACK-encoded when built: build in send
# order), or `raw_frame()` where hyperframe refuses to build a frame. It reads every frame the
# server sends into per-stream `RawStream`s (header blocks decoded with hpack, SETTINGS acked
# unless `ack_settings` is off, DATA credited back at once, GOAWAY and PING ACKs kept);
# `pump()`, `response()`, `wait_goaway()` and `wait_closed()` wait with a deadline: a hang
# fails. `connected()` is a RawH2 that has seen the server's SETTINGS. Beside it: the error
# codes, frame types and flags; attack builders (`hpack_bomb()`, `split_block()`,
# `literal_fields()`, `ping()`, `send_until_blocked()`); and the checks after an attack
# (`ends_connection()`, `refuses_header_block()`, `assert_serves()`, `assert_no_crash()`,
# `warm_up()`). Used by tests/test_http2_defences.py and tests/security/test_attack_http2.py.
from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import hpack
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from conftest import ServerProcess
from h2client import H2Client

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 7: error codes.
NO_ERROR = ErrorCodes.NO_ERROR
PROTOCOL_ERROR = ErrorCodes.PROTOCOL_ERROR
FLOW_CONTROL_ERROR = ErrorCodes.FLOW_CONTROL_ERROR
STREAM_CLOSED = ErrorCodes.STREAM_CLOSED
FRAME_SIZE_ERROR = ErrorCodes.FRAME_SIZE_ERROR
REFUSED_STREAM = ErrorCodes.REFUSED_STREAM
CANCEL = ErrorCodes.CANCEL
COMPRESSION_ERROR = ErrorCodes.COMPRESSION_ERROR
ENHANCE_YOUR_CALM = ErrorCodes.ENHANCE_YOUR_CALM
# The ways a server may refuse a header block it will not take (RFC 9113 10.5.1, RFC 7541 7.3).
HEADER_REFUSALS: set[int] = {PROTOCOL_ERROR, COMPRESSION_ERROR, ENHANCE_YOUR_CALM}

# Frame types and flags, for frames built by hand.
DATA, HEADERS, PRIORITY, WINDOW_UPDATE, CONTINUATION = 0x0, 0x1, 0x2, 0x8, 0x9
END_STREAM, END_HEADERS = 0x1, 0x4

MIB = 1 << 20


# -- the connection ----------------------------------------------------------------------------


def name(code: int | None) -> str:
    """An error code's name, for messages."""
    if code is None:
        return "none"
    try:
        return ErrorCodes(code).name
    except ValueError:
        return hex(code)


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A frame as bytes, whatever its fields (hyperframe refuses e.g. DATA on stream 0)."""
    return (
        struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream_id) + payload
    )


@dataclass
class RawStream:
    """What came back on one stream of a `RawH2` connection."""

    stream_id: int
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class RawH2:
    """One HTTP/2 connection to 127.0.0.1:`port` that sends exactly the bytes a test gives it
    and reads every frame the server sends (HEADERS decoded with hpack, SETTINGS acked unless
    `ack_settings` is off, DATA credited back at once). Every wait has a deadline."""

    def __init__(
        self,
        port: int,
        *,
        settings: dict[int, int] | None = None,
        preface: bool = True,
        ack_settings: bool = True,
        rcvbuf: int | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.timeout = timeout
        self.ack_settings = ack_settings
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.frames: deque[Frame] = deque(maxlen=200)  # the last frames received
        self.frame_count = 0
        self.streams: dict[int, RawStream] = {}
        self.server_settings: dict[int, int] = {}
        self.settings_seen = False
        self.settings_acked = False
        self.ping_acks = 0
        self.last_ping_ack = b""
        self.goaway: GoAwayFrame | None = None
        self.closed = False
        self.raw_received = bytearray()  # everything received, for diagnostics
        self._buffer = bytearray()
        self._block: tuple[int, bytearray, bool] | None = None  # header block being continued
        if preface:
            self.send(PREFACE + SettingsFrame(0, settings or {}).serialize())

    def __enter__(self) -> RawH2:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    # -- sending ---------------------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        """Send `data`; False if the server has closed the connection already."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def block(self, fields: list[tuple[bytes, bytes]]) -> bytes:
        return self.encoder.encode(fields)

    def headers(
        self,
        stream_id: int,
        fields: list[tuple[bytes, bytes]],
        end_stream: bool = True,
        end_headers: bool = True,
    ) -> bytes:
        """A HEADERS frame opening `stream_id` with `fields` (encoded now: call in send order)."""
        self.streams.setdefault(stream_id, RawStream(stream_id))
        frame = HeadersFrame(stream_id, self.block(fields))
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame.serialize()

    def request(
        self,
        stream_id: int,
        path: str = "/",
        method: str = "GET",
        extra: list[tuple[bytes, bytes]] | None = None,
        end_stream: bool = True,
    ) -> bytes:
        """A well-formed request's HEADERS frame."""
        return self.headers(stream_id, request_fields(path, method, extra), end_stream)

    # -- receiving -------------------------------------------------------------------------------

    def read_once(self, deadline: float) -> None:
        if self.closed:
            raise ConnectionError("connection closed")
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        self.raw_received += data
        self._buffer += data
        while len(self._buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(bytes(self._buffer[:9])))
            if len(self._buffer) < 9 + length:
                break
            frame.parse_body(memoryview(bytes(self._buffer[9 : 9 + length])))
            del self._buffer[: 9 + length]
            self._dispatch(frame)

    def _stream(self, stream_id: int) -> RawStream:
        return self.streams.setdefault(stream_id, RawStream(stream_id))

    def _dispatch(self, frame: Frame) -> None:
        self.frames.append(frame)
        self.frame_count += 1
        flags = frame.flags
        if isinstance(frame, SettingsFrame):
            if "ACK" in flags:
                self.settings_acked = True
            else:
                self.server_settings.update(frame.settings)
                self.settings_seen = True
                if self.ack_settings:
                    self.send(SettingsFrame(0, flags=["ACK"]).serialize())
        elif isinstance(frame, HeadersFrame):
            self._block = (frame.stream_id, bytearray(frame.data), "END_STREAM" in flags)
            if "END_HEADERS" in flags:
                self._end_block()
        elif isinstance(frame, ContinuationFrame) and self._block is not None:
            self._block[1].extend(frame.data)
            if "END_HEADERS" in flags:
                self._end_block()
        elif isinstance(frame, DataFrame):
            stream = self._stream(frame.stream_id)
            stream.body += frame.data
            if "END_STREAM" in flags:
                stream.ended = True
            size = frame.flow_controlled_length
            if size:
                self.send(
                    WindowUpdateFrame(0, window_increment=size).serialize()
                    + WindowUpdateFrame(frame.stream_id, window_increment=size).serialize()
                )
        elif isinstance(frame, RstStreamFrame):
            self._stream(frame.stream_id).reset = frame.error_code
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, PingFrame) and "ACK" in flags:
            self.ping_acks += 1
            self.last_ping_ack = frame.opaque_data

    def _end_block(self) -> None:
        assert self._block is not None
        stream_id, data, end_stream = self._block
        self._block = None
        fields = [(bytes(n), bytes(v)) for n, v in self.decoder.decode(bytes(data), raw=True)]
        stream = self._stream(stream_id)
        status = dict(fields).get(b":status")
        if stream.status is None and status is not None and not status.startswith(b"1"):
            stream.status = int(status)
            stream.headers = fields
        if end_stream:
            stream.ended = True

    def pump(self, condition: Callable[[], bool], what: str, timeout: float | None = None) -> None:
        """Read until `condition()` holds; fail at the deadline or when the server closes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not condition():
            if self.closed:
                raise AssertionError(
                    f"connection closed while waiting for {what}; {self.summary()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; {self.summary()}")
            self.read_once(deadline)

    def response(self, stream_id: int, timeout: float | None = None) -> RawStream:
        stream = self._stream(stream_id)
        self.pump(lambda: stream.done, f"stream {stream_id}", timeout)
        return stream

    def answer(self, stream_id: int, timeout: float | None = None) -> RawStream:
        """Wait for the stream's response HEADERS (or its reset), not for its end."""
        stream = self._stream(stream_id)
        self.pump(
            lambda: stream.status is not None or stream.reset is not None, "an answer", timeout
        )
        return stream

    def wait_goaway(self, timeout: float | None = None) -> GoAwayFrame:
        """Read until GOAWAY (or EOF, which then fails unless a GOAWAY came first)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self.goaway is None and not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for GOAWAY; {self.summary()}")
            self.read_once(deadline)
        assert self.goaway is not None, f"connection closed without GOAWAY; {self.summary()}"
        return self.goaway

    def wait_closed(self, timeout: float | None = None) -> None:
        """Read (and dispatch) until the server closes the connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server never closed the connection; {self.summary()}")
            self.read_once(deadline)

    def summary(self) -> str:
        kinds = [type(f).__name__.removesuffix("Frame") for f in list(self.frames)[-12:]]
        goaway = self.goaway
        return (
            f"frames received: {self.frame_count} (last: {kinds}), "
            f"GOAWAY: {name(goaway.error_code) if goaway else 'none'}"
            + (f" {bytes(goaway.additional_data)!r}" if goaway else "")
            + f", closed: {self.closed}"
        )


def request_fields(
    path: str = "/", method: str = "GET", extra: list[tuple[bytes, bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method.encode()),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1"),
        (b":path", path.encode()),
        *(extra or []),
    ]


def connected(
    port: int,
    *,
    settings: dict[int, int] | None = None,
    rcvbuf: int | None = None,
    timeout: float = 10.0,
) -> RawH2:
    """A RawH2 connection that has seen the server's SETTINGS."""
    client = RawH2(port, settings=settings, rcvbuf=rcvbuf, timeout=timeout)
    client.pump(lambda: client.settings_seen, "the server's SETTINGS")
    return client


# -- checks after an attack --------------------------------------------------------------------


def ends_connection(client: RawH2, codes: set[int], timeout: float = 10.0) -> int:
    """Read until GOAWAY, then until the server closes; the GOAWAY's code must be in `codes`."""
    goaway = client.wait_goaway(timeout)
    assert goaway.error_code in codes, (
        f"GOAWAY {name(goaway.error_code)}, expected one of {sorted(map(name, codes))}; "
        f"{client.summary()}"
    )
    client.wait_closed(timeout)
    return int(goaway.error_code)


def refuses_header_block(client: RawH2, stream_id: int) -> str:
    """The server refused a header block: GOAWAY (COMPRESSION_ERROR, ENHANCE_YOUR_CALM or
    PROTOCOL_ERROR) and close, or 431 on the stream. Returns which, for the messages."""
    stream = client.streams.setdefault(stream_id, RawStream(stream_id))
    client.pump(lambda: client.goaway is not None or stream.done, "the refusal")
    if client.goaway is not None:
        return f"GOAWAY {name(ends_connection(client, HEADER_REFUSALS))}"
    assert stream.status == 431, f"stream answered {stream.status} / reset {name(stream.reset)}"
    return "431"


def assert_serves(server: ServerProcess) -> None:
    """The server is alive and answers a fresh, well-behaved HTTP/2 connection."""
    assert server.proc.poll() is None, f"the server died:\n{server.output}"
    with H2Client(server.port) as client:
        result = client.get("/")
        assert result.status == 200, result
        assert bytes(result.body) == b"Hello, world!"


def assert_no_crash(server: ServerProcess) -> None:
    """Nothing in the server's log says a callback or handler blew up."""
    output = server.output
    assert "Traceback" not in output, output
    assert "Exception in callback" not in output, output


def warm_up(server: ServerProcess) -> None:
    """Run the HTTP/2 paths once so that first-use allocations are not counted as growth."""
    for _ in range(3):
        assert_serves(server)


# -- frames and header blocks for attacks ------------------------------------------------------


def split_block(stream_id: int, block: bytes, size: int = 16384, end_stream: bool = True) -> bytes:
    """A header block as HEADERS plus CONTINUATION frames of at most `size` bytes."""
    pieces = [block[i : i + size] for i in range(0, len(block), size)] or [b""]
    frames = []
    for index, piece in enumerate(pieces):
        flags = END_HEADERS if index == len(pieces) - 1 else 0
        if index == 0:
            frames.append(
                raw_frame(HEADERS, flags | (END_STREAM if end_stream else 0), stream_id, piece)
            )
        else:
            frames.append(raw_frame(CONTINUATION, flags, stream_id, piece))
    return b"".join(frames)


def hpack_bomb(client: RawH2, stream_id: int = 1) -> bytes:
    """One HEADERS frame (under 16 KiB on the wire) that decodes to about 48 MB: a 4000-byte
    header added to the dynamic table, then referenced by its index 12000 times."""
    encoder = client.encoder
    block = encoder.encode(request_fields(), huffman=False)
    block += encoder.encode([(b"x-bomb", b"b" * 4000)], huffman=False)  # incremental indexing
    block += bytes([0x80 | 62]) * 12000  # indexed field: the newest dynamic-table entry
    client.streams[stream_id] = RawStream(stream_id)
    return raw_frame(HEADERS, END_HEADERS | END_STREAM, stream_id, block)


def literal_fields(count: int) -> bytes:
    """`count` literal header fields (not indexed) as HPACK bytes."""
    encoder = hpack.Encoder()
    fields = [(b"x-flood-%d" % i, b"v" * 100) for i in range(count)]
    return b"".join(encoder.encode([f], huffman=False) for f in fields)


def ping(data: bytes = b"12345678") -> bytes:
    return PingFrame(0, opaque_data=data).serialize()


def send_until_blocked(sock: socket.socket, data: memoryview, stall: float = 1.0) -> int:
    """Send `data` without blocking until the peer has taken nothing for `stall` seconds (or
    all of it went); returns how many bytes went."""
    sock.setblocking(False)
    sent = 0
    last = time.monotonic()
    try:
        while sent < len(data) and time.monotonic() - last < stall:
            try:
                sent += sock.send(data[sent : sent + 65536])
                last = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        sock.setblocking(True)
    return sent
