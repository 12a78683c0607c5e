# Hypothesis fuzzing of laurelin's HTTP/2 server at frame level over a real socket (RFC 9113,
# RFC 7541), one server for the whole file. After the connection preface, frames are built from
# their fields (type, flags, stream id, payload: requests HPACK-encoded from pools of valid and
# malformed pseudo-headers and fields, split into CONTINUATION frames, padded or with priority;
# DATA, SETTINGS, PING, WINDOW_UPDATE, PRIORITY, RST_STREAM, PUSH_PROMISE, GOAWAY, unknown
# types, random frames), then mutated byte-wise and sent split across several sends with small
# delays, followed by a GOAWAY(NO_ERROR). After every example: every byte the server sent parses
# as HTTP/2 frames (hyperframe; header blocks decode with HPACK; a SETTINGS first; responses
# well-formed, nothing on a stream after it ended or was reset, no push) and the connection ends
# (GOAWAY or not, closed within the server's short timeouts: no hang), the server is alive with
# a clean stderr, and a fresh connection gets a 200. Valid requests (bodies in several DATA
# frames, padding, trailers) split at arbitrary boundaries must be answered exactly.
# LAURELIN_FUZZ_EXAMPLES sets the examples per test (`make fuzz`: thousands).
from __future__ import annotations

import itertools
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import hpack
import pytest
from fuzzkit import (
    EXCHANGE_TIMEOUT,
    Mutation,
    Split,
    Watch,
    fuzz_settings,
    fuzz_timeout,
    mutate,
    mutations,
    send_split,
    splits,
)
from h2.errors import ErrorCodes
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given, note
from hypothesis import strategies as st

from conftest import ServerProcess
from h2client import H2Client, StreamResult
from rawhttp import serve

APP = "basic:app"
HELLO = b"Hello, world!"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# Short timeouts, so that every connection ends by itself whatever it was sent: an idle
# connection (no stream open, say after an incomplete frame) gets GOAWAY after a second, an app
# waiting for a body that never comes is cut off (503), a response the client's flow-control
# window holds back (SETTINGS_INITIAL_WINDOW_SIZE 0) is reset after a second.
SERVER_ARGS = (
    "--http",
    "2",
    "--timeout-keep-alive",
    "1",
    "--header-read-timeout",
    "1",
    "-t",
    "1",
    "--h2-flow-control-timeout",
    "1",
)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
# Fields HTTP/2 forbids (RFC 9113 8.2.2); the server must never send them.
CONNECTION_SPECIFIC = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding"}
CONNECTION_SPECIFIC |= {b"upgrade"}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve(APP, *SERVER_ARGS) as proc:
        yield proc


def probe(server: ServerProcess) -> None:
    """A fresh HTTP/2 connection gets a normal 200 at once."""
    with H2Client(server.port, timeout=5) as client:
        result = client.get("/?probe")
        assert (result.status, bytes(result.body)) == (200, HELLO), result


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """A frame as bytes, whatever its fields (hyperframe refuses to build invalid ones)."""
    head = struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream_id)
    return head + payload


def padded(payload: bytes, pad: int) -> bytes:
    return bytes([pad]) + payload + b"\x00" * pad


# -- generation ------------------------------------------------------------------------------------


def mostly(common: list[bytes], rare: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(*[st.sampled_from(common)] * 7, st.sampled_from(rare))


PSEUDO = {
    b":method": mostly([b"GET", b"POST"], [b"HEAD", b"CONNECT", b"", b"get", b"G T", b"OPTIONS"]),
    b":scheme": mostly([b"http"], [b"https", b"", b"ftp"]),
    b":path": mostly(
        [b"/", b"/echo", b"/?x=1"], [b"", b"*", b"noslash", b"/%00", b"/ x", b"/\x00"]
    ),
    b":authority": mostly([b"localhost"], [b"", b"a b", b"x@y", b"localhost:99999"]),
}
EXTRA_FIELDS = [
    (b"content-length", b"0"),
    (b"content-length", b"5"),
    (b"content-length", b"-1"),
    (b"content-length", b"5, 6"),
    (b"te", b"trailers"),
    (b"te", b"gzip"),
    (b"connection", b"keep-alive"),
    (b"transfer-encoding", b"chunked"),
    (b"upgrade", b"h2c"),
    (b"host", b"localhost"),
    (b"host", b"other"),
    (b"cookie", b"a=b"),
    (b"cookie", b"c=d"),
    (b"X-Upper", b"1"),
    (b"x-crlf", b"a\r\nb"),
    (b"x-nul", b"a\x00b"),
    (b"x-space", b" padded "),
    (b":unknown", b"1"),
    (b"expect", b"100-continue"),
    (b"", b"empty-name"),
]
TOKEN = st.binary(min_size=1, max_size=12).map(lambda b: bytes(97 + (c % 26) for c in b))


@st.composite
def request_fields(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    fields = [(name, draw(value)) for name, value in PSEUDO.items()]
    shape = draw(st.sampled_from(["ok"] * 6 + ["drop", "duplicate", "pseudo-last", "shuffle"]))
    if shape == "drop":
        del fields[draw(st.integers(0, len(fields) - 1))]
    elif shape == "duplicate":
        fields.append(fields[draw(st.integers(0, len(fields) - 1))])
    elif shape == "pseudo-last":
        fields.append((b"x-before", b"1"))
        fields.reverse()
    elif shape == "shuffle":
        fields = draw(st.permutations(fields))
    fields += draw(
        st.lists(
            st.one_of(
                st.sampled_from(EXTRA_FIELDS),
                st.tuples(TOKEN, st.binary(max_size=20)),
                st.tuples(TOKEN, TOKEN),
            ),
            max_size=4,
        )
    )
    return fields


@dataclass
class Conversation:
    """What an example sends after the preface, frame by frame, and notes on it."""

    frames: list[bytes] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


@st.composite
def conversation(draw: st.DrawFn) -> Conversation:
    """SETTINGS (and an ACK of the server's), then up to 8 frames of every kind; requests on
    increasing odd stream ids, HPACK-encoded in order with one encoder."""
    encoder = hpack.Encoder()
    conv = Conversation()
    settings = draw(
        st.lists(
            st.tuples(
                st.one_of(st.integers(1, 8), st.integers(0, 0xFFFF)),
                st.sampled_from([0, 1, 100, 4096, 16384, 65535, 16777215, 2**31 - 1, 2**32 - 1]),
            ),
            max_size=3,
        )
    )
    conv.frames.append(
        raw_frame(SETTINGS, 0, 0, b"".join(struct.pack(">HI", *s) for s in settings))
    )
    conv.frames.append(raw_frame(SETTINGS, ACK, 0))
    next_stream = 1
    streams: list[int] = []
    weights = ["request"] * 6 + ["data"] * 3 + ["control"] * 3 + ["odd"] * 2
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(weights))
        conv.kinds.append(kind)
        if kind == "request":
            stream_id = next_stream
            next_stream += 2
            streams.append(stream_id)
            fields = draw(request_fields())
            block = encoder.encode(fields, huffman=draw(st.booleans()))
            flags = END_HEADERS | (END_STREAM if draw(st.booleans()) else 0)
            pieces = draw(st.integers(1, 3))
            size = -(-len(block) // pieces)
            first, rest = block[:size], [block[i : i + size] for i in range(size, len(block), size)]
            if rest:
                flags &= ~END_HEADERS
            payload = first
            if draw(st.integers(0, 5)) == 0:
                flags |= PRIORITY_FLAG
                payload = draw(st.binary(min_size=5, max_size=5)) + payload
            if draw(st.integers(0, 5)) == 0:
                flags |= PADDED
                payload = padded(payload, draw(st.integers(0, 20)))
            conv.frames.append(raw_frame(HEADERS, flags, stream_id, payload))
            for index, piece in enumerate(rest):
                last = index == len(rest) - 1
                conv.frames.append(
                    raw_frame(CONTINUATION, END_HEADERS if last else 0, stream_id, piece)
                )
        elif kind == "data":
            stream_id = draw(st.sampled_from(streams)) if streams else draw(st.integers(0, 5))
            payload = draw(st.binary(max_size=64))
            flags = draw(st.sampled_from([0, END_STREAM, END_STREAM, PADDED]))
            if flags & PADDED:
                payload = padded(payload, draw(st.integers(0, 10)))
            conv.frames.append(raw_frame(DATA, flags, stream_id, payload))
        elif kind == "control":
            control = draw(st.sampled_from(["settings", "ping", "window", "priority", "rst"]))
            target = draw(st.sampled_from([0, *streams, next_stream, 2]))
            if control == "settings":
                body = struct.pack(">HI", draw(st.integers(1, 6)), draw(st.integers(0, 2**32 - 1)))
                conv.frames.append(raw_frame(SETTINGS, 0, 0, body))
            elif control == "ping":
                conv.frames.append(raw_frame(PING, draw(st.sampled_from([0, ACK])), 0, b"p" * 8))
            elif control == "window":
                increment = draw(st.sampled_from([0, 1, 65535, 2**31 - 1, 2**31]))
                conv.frames.append(
                    raw_frame(WINDOW_UPDATE, 0, target, struct.pack(">I", increment))
                )
            elif control == "priority":
                dependency = draw(st.sampled_from([0, target, 1]))
                body = struct.pack(">IB", dependency, draw(st.integers(0, 255)))
                conv.frames.append(raw_frame(PRIORITY, 0, target, body))
            else:
                code = draw(st.sampled_from([0, 1, 2, 8, 0xFF]))
                conv.frames.append(raw_frame(RST_STREAM, 0, target, struct.pack(">I", code)))
        else:
            odd = draw(st.sampled_from(["random", "push", "goaway", "continuation", "unknown"]))
            if odd == "random":
                conv.frames.append(
                    raw_frame(
                        draw(st.integers(0, 255)),
                        draw(st.integers(0, 255)),
                        draw(st.sampled_from([0, 1, 2, 3, 2**31 - 1, 2**31 + 1])),
                        draw(st.binary(max_size=32)),
                    )
                )
            elif odd == "push":
                body = struct.pack(">I", 2) + encoder.encode([(b":method", b"GET")])
                conv.frames.append(raw_frame(PUSH_PROMISE, END_HEADERS, 1, body))
            elif odd == "goaway":
                body = struct.pack(">II", draw(st.integers(0, 9)), draw(st.integers(0, 13)))
                conv.frames.append(raw_frame(GOAWAY, 0, 0, body + b"debug"))
            elif odd == "continuation":
                conv.frames.append(raw_frame(CONTINUATION, END_HEADERS, 1, b"\x82"))
            else:
                conv.frames.append(raw_frame(draw(st.integers(10, 255)), 0, 0, b"x" * 4))
    return conv


# -- reading and checking what the server sends ------------------------------------------------


def read_until_close(sock: socket.socket, deadline: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes: (bytes, reset?). TimeoutError past the
    deadline: the server neither finished nor closed."""
    received = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no close within the exchange; received {bytes(received[-200:])!r}")
        sock.settimeout(remaining)
        try:
            data = sock.recv(1 << 20)
        except ConnectionResetError:
            return bytes(received), True
        except TimeoutError:
            continue
        if not data:
            return bytes(received), False
        received += data


@dataclass
class StreamState:
    final: bool = False  # a final (non-1xx) response head came
    ended: bool = False
    reset: bool = False


def parse_frames(data: bytes, reset: bool) -> list[Frame]:
    """The server's bytes as frames (hyperframe checks each frame's layout). A frame cut short
    is allowed only when the connection was reset."""
    frames = []
    view = memoryview(data)
    while view:
        if len(view) < 9:
            assert reset, f"a truncated frame header at the close: {bytes(view)!r}"
            break
        try:
            frame, length = Frame.parse_frame_header(view[:9])
        except HyperframeError as exc:
            raise AssertionError(f"bad frame header {bytes(view[:9])!r}: {exc}") from None
        if len(view) < 9 + length:
            assert reset, f"a truncated frame at the close: {frame} ({length} bytes)"
            break
        try:
            frame.parse_body(view[9 : 9 + length])
        except HyperframeError as exc:
            raise AssertionError(f"bad frame {frame}: {exc}") from None
        frames.append(frame)
        view = view[9 + length :]
    return frames


def check_server_frames(frames: list[Frame], watch: Watch) -> None:
    """The server's frames by RFC 9113 (4-6, 8.1-8.3) and RFC 7541."""
    decoder = hpack.Decoder()
    decoder.max_allowed_table_size = 1 << 32
    streams: dict[int, StreamState] = {}
    block: tuple[int, bytearray, bool] | None = None  # stream, fragments, END_STREAM
    error_goaway = False
    for index, frame in enumerate(frames):
        assert not isinstance(frame, ExtensionFrame), frame
        assert frame.type not in (PRIORITY, PUSH_PROMISE), f"the server sent {frame}"
        if index == 0:
            # The server's connection preface (RFC 9113 3.4).
            assert isinstance(frame, SettingsFrame) and "ACK" not in frame.flags, frame
        assert not error_goaway, f"{frame} after GOAWAY with an error"
        if block is not None:
            assert isinstance(frame, ContinuationFrame) and frame.stream_id == block[0], frame
        if isinstance(frame, GoAwayFrame):
            assert frame.stream_id == 0 and frame.error_code <= 0xD, frame
            watch.stats[f"goaway:{ErrorCodes(frame.error_code).name}"] += 1
            error_goaway = frame.error_code != 0
            continue
        if isinstance(frame, SettingsFrame | PingFrame):
            assert frame.stream_id == 0, frame
            continue
        if isinstance(frame, WindowUpdateFrame):
            assert frame.window_increment > 0, frame
            continue
        assert frame.stream_id % 2 == 1, f"{frame} on a stream the client cannot have opened"
        state = streams.setdefault(frame.stream_id, StreamState())
        if isinstance(frame, RstStreamFrame):
            # More than one RST_STREAM is allowed for frames the client sent on the stream
            # after the first (RFC 9113 5.4.2): nothing else may follow one.
            assert frame.error_code <= 0xD, frame
            watch.stats[f"rst:{ErrorCodes(frame.error_code).name}"] += 1
            state.reset = True
            continue
        assert not state.reset, f"{frame} after RST_STREAM"
        assert not state.ended, f"{frame} after END_STREAM"
        if isinstance(frame, HeadersFrame | ContinuationFrame):
            if isinstance(frame, HeadersFrame):
                block = (frame.stream_id, bytearray(frame.data), "END_STREAM" in frame.flags)
            else:
                assert block is not None, f"a stray {frame}"
                block[1].extend(frame.data)
            if "END_HEADERS" not in frame.flags:
                continue
            _stream_id, fragments, end_stream = block
            block = None
            fields = decoder.decode(bytes(fragments), raw=True)
            check_response_fields(fields, state, watch)
            state.ended = end_stream
        elif isinstance(frame, DataFrame):
            assert state.final, f"DATA before the response head: {frame}"
            state.ended = "END_STREAM" in frame.flags
    assert block is None, "the connection ended inside a header block"


def check_response_fields(
    fields: list[tuple[bytes, bytes]], state: StreamState, watch: Watch
) -> None:
    """A response head, or trailers (RFC 9113 8.1, 8.2, 8.3.2)."""
    names = [name for name, _ in fields]
    for name, value in fields:
        assert name == name.lower(), fields
        assert name not in CONNECTION_SPECIFIC, fields
        assert not any(c in value for c in b"\r\n\x00"), fields
    if state.final:  # trailers: no pseudo-header
        assert not any(name.startswith(b":") for name in names), fields
        return
    assert names and names[0] == b":status", fields
    assert not any(name.startswith(b":") for name in names[1:]), fields
    status = fields[0][1]
    assert len(status) == 3 and status.isdigit() and b"100" <= status <= b"599", fields
    watch.stats[f"status:{status.decode()}"] += 1
    state.final = not status.startswith(b"1")


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.fuzz
@pytest.mark.timeout(fuzz_timeout(1.5))
def test_fuzz_mutated_frames(server: ServerProcess) -> None:
    """Malformed and mutated HTTP/2 frames and header blocks: the frame-parser and HPACK attack
    surface (RFC 9113 3.4, 4-6, 8.1-8.3; RFC 7541; CVE-2016-6581, the HPACK bomb of python
    hpack; the CVE-2019-9511..9518 family, CVE-2023-44487 rapid reset and CVE-2024-27316
    CONTINUATION flood classes). Every exchange ends in valid frames (the server's SETTINGS
    first) and a close, never a crash or a hang."""
    watch = Watch(server, probe)

    @fuzz_settings()
    @given(
        conv=conversation(),
        muts=mutations(3),
        preface_mutated=st.sampled_from([False] * 9 + [True]),
        split=splits,
    )
    def run(conv: Conversation, muts: list[Mutation], preface_mutated: bool, split: Split) -> None:
        body = b"".join(conv.frames)
        data = mutate(PREFACE + body, muts) if preface_mutated else PREFACE + mutate(body, muts)
        data += raw_frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0))
        note(f"kinds: {conv.kinds}")
        note(f"sent: {data[:2000]!r} ({len(data)} bytes) split {split}")
        with watch.example(f"{data[:1000]!r} split {split}"):
            deadline = time.monotonic() + EXCHANGE_TIMEOUT
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                send_split(sock, data, split)
                received, reset = read_until_close(sock, deadline)
            watch.stats["reset" if reset else "eof"] += 1
            if received.startswith(b"HTTP/1.1 "):
                # Not an HTTP/2 preface, and --http 2: 505, then the close.
                assert received.startswith(b"HTTP/1.1 505 "), received[:300]
                assert not data.startswith(PREFACE)
                watch.stats["505"] += 1
            else:
                check_server_frames(parse_frames(received, reset), watch)

    with watch.run():
        run()


@dataclass(frozen=True)
class Valid:
    post: bool
    body: bytes
    cuts: tuple[int, ...]  # DATA frame boundaries
    pad: int
    trailers: bool
    extra: tuple[tuple[str, str], ...]


valid_st = st.builds(
    Valid,
    st.booleans(),
    st.binary(max_size=3000),
    st.lists(st.integers(0, 1 << 16), max_size=4).map(tuple),
    st.sampled_from([0, 0, 1, 17]),
    st.booleans(),
    st.lists(
        st.tuples(
            st.sampled_from(["x-a", "x-b", "accept", "cookie"]), st.text("abc=; ", max_size=10)
        ),
        max_size=3,
    ).map(tuple),
)


@pytest.mark.fuzz
@pytest.mark.timeout(fuzz_timeout(1.5))
def test_fuzz_split_valid_requests(server: ServerProcess) -> None:
    """Valid concurrent requests (bodies over several DATA frames, padding, trailers) split at
    arbitrary byte boundaries (RFC 9113 4.1, 5.1, 6.1, 6.2, 8.1; frame reassembly across reads,
    CWE-444 desync): each stream answered exactly, then the client's GOAWAY closes the
    connection (RFC 9113 6.8)."""
    watch = Watch(server, probe)

    @fuzz_settings()
    @given(
        requests=st.lists(valid_st, min_size=1, max_size=5),
        split=st.builds(
            Split,
            st.lists(st.integers(0, 1 << 20), max_size=30).map(tuple),
            st.sampled_from([0.0, 0.0, 0.001, 0.002]),
        ),
    )
    def run(requests: list[Valid], split: Split) -> None:
        with (
            watch.example(f"{requests!r}"[:300] + f" split {split}"),
            H2Client(server.port, timeout=EXCHANGE_TIMEOUT, connect=False) as client,
        ):
            conn = client.conn
            conn.initiate_connection()
            expected: dict[int, bytes] = {}
            for request in requests:
                stream_id = conn.get_next_available_stream_id()
                client.streams[stream_id] = StreamResult(stream_id)
                fields = [
                    (b":method", b"POST" if request.post else b"GET"),
                    (b":scheme", b"http"),
                    (b":authority", b"localhost"),
                    (b":path", b"/echo" if request.post else b"/"),
                    *[(k.encode(), v.encode()) for k, v in request.extra],
                ]
                conn.send_headers(stream_id, fields, end_stream=not request.post)
                if request.post:
                    body = request.body
                    points = sorted({c % (len(body) or 1) for c in request.cuts} | {0, len(body)})
                    for a, b in itertools.pairwise(points):
                        conn.send_data(stream_id, body[a:b], pad_length=request.pad or None)
                    if request.trailers:
                        conn.send_headers(stream_id, [(b"x-trailer", b"1")], end_stream=True)
                    else:
                        conn.end_stream(stream_id)
                expected[stream_id] = request.body if request.post else HELLO
            data = conn.data_to_send()
            note(f"sent: {data[:2000]!r} ({len(data)} bytes) split {split}")
            assert send_split(client.sock, data, split)
            for stream_id, body in expected.items():
                result = client.response(stream_id)
                assert (result.status, bytes(result.body), result.reset) == (200, body, None)
            # The client's GOAWAY: the server closes the connection (RFC 9113 6.8).
            conn.close_connection()
            client.flush()
            client.wait_closed()

    with watch.run():
        run()
