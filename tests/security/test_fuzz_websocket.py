# Hypothesis fuzzing of laurelin's WebSocket server over a real socket (RFC 6455, RFC 7692), one
# server for the whole file. Frames are built from their fields (FIN, RSV bits, opcode, mask,
# length encoding, payload: valid and invalid UTF-8 text, binary, close codes and reasons,
# oversized control frames, fragments, permessage-deflate), then mutated byte-wise and sent split
# across several sends with small delays; once the echoes are in, the client closes. After every
# example: every frame the server sent is well-formed (unmasked, known opcode, no RSV bit unless
# compressed, control frames short and final, text valid UTF-8, a close frame with a code a
# server may send and a UTF-8 reason, nothing after it) and the exchange ends with a close in
# bounded time (a frame left incomplete is completed with zero bytes, which must end in a
# protocol-error close), the server is alive with a clean stderr, and a fresh WebSocket gets its
# echo. Valid messages split at arbitrary boundaries must be echoed exactly; mutated opening
# handshakes end in a 101 that works or a well-formed HTTP response and a close.
# LAURELIN_FUZZ_EXAMPLES sets the examples per test (`make fuzz`: thousands).
from __future__ import annotations

import codecs
import itertools
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fuzzkit import (
    EXCHANGE_TIMEOUT,
    Mutation,
    Split,
    Watch,
    check_h1_response,
    first_method,
    fuzz_settings,
    fuzz_timeout,
    mutate,
    mutations,
    read_h1_until_close,
    send_split,
    splits,
)
from hypothesis import given, note
from hypothesis import strategies as st

import wsraw
from conftest import ServerProcess
from rawhttp import ConnectionClosed, serve
from wsraw import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, Frame, WSClient

APP = "ws_app:app"
MAX_FRAME = 65536
# A frame the server is still waiting for is at most MAX_FRAME bytes of payload: this many
# zero bytes complete it, and then parse as unmasked frames (a protocol error, RFC 6455 5.1).
FLUSH = b"\x00" * (MAX_FRAME + 1024)
# Seconds of silence after which the client takes the server to have echoed what it could,
# and then to be waiting for more input.
ECHO_QUIET = 0.2
QUIET = 0.5
SERVER_ARGS = (
    "--websocket-max-frame-size",
    str(MAX_FRAME),
    "--websocket-max-message-size",
    str(4 * MAX_FRAME),
    "--header-read-timeout",
    "1",
    "--timeout-keep-alive",
    "0.5",
    "-t",
    "1",
)
DEFLATE_OFFER = "permessage-deflate; server_no_context_takeover"
# Close codes a server may send (RFC 6455 7.4.1-7.4.2: not 1004-1006, 1015, nor below 1000).
SENDABLE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve(APP, *SERVER_ARGS) as proc:
        yield proc


def probe(server: ServerProcess) -> None:
    """A fresh WebSocket gets its message echoed and closes cleanly."""
    client = wsraw.connect(server.port, "/echo?probe", timeout=5)
    with client:
        client.send_text("probe")
        assert client.read_text() == "probe"
        assert client.close_handshake() == (1000, "")


# -- generation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawFrame:
    """One frame, every field free: `length_form` "min" (RFC 6455 5.2 minimal encoding), or
    "16"/"64" (the longer encodings, legal lengths but not minimal)."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    mask: bool
    mask_key: bytes
    length_form: str = "min"

    def encode(self) -> bytes:
        head = bytearray([(0x80 if self.fin else 0) | (self.rsv & 7) << 4 | (self.opcode & 0xF)])
        bit = 0x80 if self.mask else 0
        size = len(self.payload)
        if self.length_form == "64" or size >= 1 << 16:
            head += bytes([bit | 127]) + struct.pack("!Q", size)
        elif self.length_form == "16" or size >= 126:
            head += bytes([bit | 126]) + struct.pack("!H", size)
        else:
            head.append(bit | size)
        if not self.mask:
            return bytes(head) + self.payload
        return bytes(head) + self.mask_key + wsraw.apply_mask(self.payload, self.mask_key)


def mostly(common: st.SearchStrategy[int], rare: st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return st.one_of(*[common] * 9, rare)


def pattern(size: int, seed: bytes) -> bytes:
    seed = seed or b"x"
    return (seed * (size // len(seed) + 1))[:size]


text_payload = st.one_of(
    st.text(max_size=40).map(lambda t: t.encode("utf-8")),
    st.text(max_size=40).map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"\xff", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"ok \xf4\x90\x80\x80"]),
)
binary_payload = st.one_of(
    st.binary(max_size=64),
    st.binary(max_size=64),
    st.builds(pattern, st.integers(0, MAX_FRAME + 4096), st.binary(min_size=1, max_size=8)),
)
# Close codes a client may send (RFC 6455 7.4), and ones it may not.
CLIENT_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999]
BAD_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
close_payload = st.one_of(
    st.builds(
        lambda code, reason: struct.pack("!H", code) + reason,
        st.sampled_from([*CLIENT_CODES, *BAD_CODES]),
        st.one_of(st.text(max_size=20).map(str.encode), st.sampled_from([b"\xff", b"x" * 124])),
    ),
    st.sampled_from([b"", b"\x03"]),
)
control_payload = st.one_of(*[st.binary(max_size=125)] * 4, st.binary(min_size=126, max_size=130))

PAYLOADS = {
    TEXT: text_payload,
    CONTINUATION: st.one_of(text_payload, binary_payload),
    BINARY: binary_payload,
    CLOSE: close_payload,
    PING: control_payload,
    PONG: control_payload,
}


@st.composite
def raw_frame(draw: st.DrawFn) -> RawFrame:
    common = [TEXT, TEXT, TEXT, BINARY, BINARY, BINARY, PING, PONG, CLOSE, CONTINUATION]
    opcode = draw(mostly(st.sampled_from(common), st.integers(0, 15)))
    payload = draw(PAYLOADS.get(opcode, st.binary(max_size=16)))
    return RawFrame(
        fin=draw(mostly(st.just(1), st.just(0))) == 1,
        rsv=draw(mostly(st.just(0), st.integers(1, 7))),
        opcode=opcode,
        payload=payload,
        mask=draw(mostly(st.just(1), st.just(0))) == 1,
        mask_key=draw(st.binary(min_size=4, max_size=4)),
        length_form=draw(st.sampled_from(["min", "min", "min", "min", "16", "64"])),
    )


@st.composite
def fragmented_message(draw: st.DrawFn) -> list[RawFrame]:
    """A valid message in several frames, with a control frame between two of them."""
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    payload = draw(text_payload if opcode == TEXT else binary_payload)
    count = draw(st.integers(2, 4))
    size = -(-len(payload) // count) if payload else 0
    keys = draw(st.lists(st.binary(min_size=4, max_size=4), min_size=count + 1, max_size=count + 1))
    frames = [
        RawFrame(
            index == count - 1,
            0,
            opcode if index == 0 else CONTINUATION,
            payload[index * size : (index + 1) * size],
            True,
            keys[index],
        )
        for index in range(count)
    ]
    position = draw(st.integers(1, count - 1))
    frames.insert(position, RawFrame(True, 0, PING, b"between", True, keys[count]))
    return frames


frames_st = st.lists(
    st.one_of(raw_frame().map(lambda f: [f]), raw_frame().map(lambda f: [f]), fragmented_message()),
    min_size=1,
    max_size=4,
).map(lambda groups: [frame for group in groups for frame in group])


# -- reading and checking what the server sends ------------------------------------------------


@dataclass
class WSOutcome:
    frames: list[Frame]
    close: Frame | None
    ending: str  # "eof", "reset"
    flushed: bool


def utf8_ok(data: bytes) -> bool:
    try:
        codecs.decode(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def check_server_frame(frame: Frame, deflate: bool, in_message: list[int]) -> None:
    """One frame from the server, by RFC 6455 5.2-5.6 and RFC 7692 6."""
    assert not frame.masked
    assert frame.opcode in (CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG), frame
    if frame.opcode >= CLOSE:
        assert frame.fin and len(frame.payload) <= 125, frame
        assert frame.rsv == 0, frame
        return
    if frame.opcode == CONTINUATION:
        assert in_message, f"a continuation outside a message: {frame}"
        assert frame.rsv == 0, frame
    else:
        assert not in_message, f"a new message inside a fragmented one: {frame}"
        assert frame.rsv in ((0, 4) if deflate else (0,)), frame
        in_message.append(frame.opcode)
    if frame.fin:
        in_message.clear()


def check_close(frame: Frame) -> None:
    """A close frame the server may send (RFC 6455 5.5.1, 7.4)."""
    payload = frame.payload
    assert len(payload) != 1, frame
    if payload:
        code = struct.unpack("!H", payload[:2])[0]
        assert code in SENDABLE_CODES or 3000 <= code <= 4999, f"close code {code}"
        assert utf8_ok(payload[2:]), frame


def read_until_close(client: WSClient, deflate: bool, watch: Watch) -> WSOutcome:
    """Every frame until the server's close frame, then the end of the connection. Once the
    server is quiet (ECHO_QUIET seconds: its echoes are out), the client closes (1000); if it
    stays quiet (QUIET seconds), it waits for the rest of a frame: FLUSH completes it."""
    deadline = time.monotonic() + EXCHANGE_TIMEOUT
    frames: list[Frame] = []
    in_message: list[int] = []
    message = bytearray()
    closed = flushed = False
    close: Frame | None = None
    while close is None:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no close within {EXCHANGE_TIMEOUT}s; frames: {frames[-5:]}"
        wait = remaining if flushed else min(QUIET if closed else ECHO_QUIET, remaining)
        try:
            frame = client.read_frame(timeout=wait)
        except TimeoutError:
            if flushed:
                raise
            if closed:
                flushed = True
                client.try_send(FLUSH)
            else:
                closed = True
                client.try_send(wsraw.frame(CLOSE, wsraw.close_payload(1000)))
            continue
        except ConnectionClosed as exc:
            # Closed without a close frame: allowed (RFC 6455 7.1.7 lets a server drop the TCP
            # connection), but never in the middle of a frame unless reset.
            assert client.reset or exc.partial == b"", f"a truncated frame: {exc.partial[:200]!r}"
            return WSOutcome(frames, None, "reset" if client.reset else "eof", flushed)
        frames.append(frame)
        check_server_frame(frame, deflate, in_message)
        if frame.opcode == CLOSE:
            check_close(frame)
            close = frame
        elif frame.opcode == PING:
            client.try_send(wsraw.frame(PONG, frame.payload))
        elif frame.opcode in (TEXT, BINARY, CONTINUATION):
            if frame.opcode != CONTINUATION:
                message = bytearray()
                compressed = bool(frame.rsv & 4)
                kind = frame.opcode
            message += frame.payload
            if frame.fin:
                data = wsraw.inflate(bytes(message)) if compressed else bytes(message)
                if kind == TEXT:
                    assert utf8_ok(data), f"the server sent invalid UTF-8: {data[:100]!r}"
                watch.stats["echoed"] += 1
    code = close.close_code
    watch.stats[f"close:{code}"] += 1
    client.try_send(wsraw.frame(CLOSE, close.payload[:2]))
    # The server closes the TCP connection once the closing handshake is done, or at once
    # after failing the connection (RFC 6455 7.1.1, 7.1.7); nothing may follow its close frame.
    rest = client.wait_closed(max(deadline - time.monotonic(), 0.1))
    assert rest == b"", f"data after the close frame: {rest[:200]!r}"
    return WSOutcome(frames, close, "reset" if client.reset else "eof", flushed)


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.fuzz
@pytest.mark.timeout(fuzz_timeout(1.5))
def test_fuzz_mutated_frames(server: ServerProcess) -> None:
    """Malformed, mutated and fragmented frames after a valid handshake: the frame parser's
    attack surface (RFC 6455 5.1-5.6, 7.4, 8.1; RFC 7692 6-7; CVE-2018-1000518, the
    permessage-deflate bomb of websockets < 5; CVE-2016-10542, ws's unbounded payloads). Every
    exchange ends in well-formed frames and a close with a valid code, never a crash or hang."""
    watch = Watch(server, probe)

    @fuzz_settings()
    @given(frames=frames_st, deflate=st.booleans(), muts=mutations(3), split=splits)
    def run(frames: list[RawFrame], deflate: bool, muts: list[Mutation], split: Split) -> None:
        data = mutate(b"".join(f.encode() for f in frames), muts)
        note(f"frames: {frames!r}"[:3000])
        note(f"sent: {data[:2000]!r} ({len(data)} bytes) split {split} deflate {deflate}")
        with watch.example(f"{data[:1000]!r} split {split} deflate {deflate}"):
            with WSClient(server.port, timeout=EXCHANGE_TIMEOUT) as client:
                extensions = DEFLATE_OFFER if deflate else None
                response = client.upgrade("/echo", extensions=extensions)
                agreed = "permessage-deflate" in (response.header("sec-websocket-extensions") or "")
                assert agreed == deflate, response.raw
                send_split(client.sock, data, split)
                outcome = read_until_close(client, agreed, watch)
            watch.stats[f"ending:{outcome.ending}"] += 1
            watch.stats["flushed"] += outcome.flushed

    with watch.run():
        run()


@dataclass(frozen=True)
class Message:
    opcode: int
    payload: bytes
    cuts: tuple[int, ...]  # fragment boundaries
    ping_after: int  # a ping after this fragment (-1: none)
    compress: bool


message_st = st.builds(
    Message,
    st.sampled_from([TEXT, BINARY]),
    st.one_of(
        st.text(max_size=200).map(str.encode),
        st.binary(max_size=200),
        st.builds(pattern, st.integers(0, 3 * MAX_FRAME), st.binary(min_size=1, max_size=8)),
    ),
    st.lists(st.integers(0, 1 << 20), max_size=4).map(tuple),
    st.integers(-1, 4),
    st.booleans(),
)


ASCII = bytes(range(128)) * 2


def encode_message(message: Message, deflate: bool, index: int) -> tuple[bytes, bytes, bytes]:
    """The frames of `message` (fragmented at its cuts, each at most MAX_FRAME, compressed if
    agreed and asked), the payload its echo must carry, and its ping's payload (or b"")."""
    payload = message.payload
    if message.opcode == TEXT and len(payload) > 200:
        payload = payload.translate(ASCII)  # valid UTF-8 of the same size
    elif message.opcode == TEXT:
        payload = payload.decode("utf-8", "replace").encode("utf-8")
    compressed = deflate and message.compress
    if compressed:
        # The frame limit applies to the decompressed size (the decompression-bomb defence).
        payload = payload[:MAX_FRAME]
    wire = wsraw.deflate([payload]) if compressed else payload
    points = {c % (len(wire) or 1) for c in message.cuts} | {0, len(wire)}
    points |= set(range(0, len(wire), MAX_FRAME))
    bounds = sorted(points)
    pieces = [wire[a:b] for a, b in itertools.pairwise(bounds)] or [b""]
    out = bytearray()
    ping = b""
    for number, piece in enumerate(pieces):
        first = number == 0
        out += wsraw.frame(
            message.opcode if first else CONTINUATION,
            piece,
            fin=number == len(pieces) - 1,
            rsv=4 if compressed and first else 0,
        )
        if number == message.ping_after:
            ping = b"ping %d" % index
            out += wsraw.frame(PING, ping)
    return bytes(out), payload, ping


@pytest.mark.fuzz
@pytest.mark.timeout(fuzz_timeout(1.5))
def test_fuzz_split_valid_messages(server: ServerProcess) -> None:
    """Valid messages (fragmented, compressed or not, pings between fragments) split at arbitrary
    byte boundaries (RFC 6455 5.4, 5.5.2; RFC 7692 7.2): the incremental parser must echo each
    exactly, answer every ping, and finish the closing handshake (RFC 6455 7.1.2)."""
    watch = Watch(server, probe)

    @fuzz_settings()
    @given(
        messages=st.lists(message_st, min_size=1, max_size=4),
        deflate=st.booleans(),
        split=st.builds(
            Split,
            st.lists(st.integers(0, 1 << 20), max_size=30).map(tuple),
            st.sampled_from([0.0, 0.0, 0.001, 0.002]),
        ),
    )
    def run(messages: list[Message], deflate: bool, split: Split) -> None:
        encoded = [encode_message(m, deflate, i) for i, m in enumerate(messages)]
        data = b"".join(frames for frames, _, _ in encoded)
        note(f"sent: {data[:2000]!r} ({len(data)} bytes) split {split} deflate {deflate}")
        with watch.example(f"{data[:1000]!r} split {split} deflate {deflate}"):
            with WSClient(server.port, timeout=EXCHANGE_TIMEOUT) as client:
                client.upgrade("/echo", extensions=DEFLATE_OFFER if deflate else None)
                assert client.deflate == deflate
                assert send_split(client.sock, data, split)
                got: list[tuple[int, bytes]] = []
                pongs: list[bytes] = []
                want_pongs = [ping for _, _, ping in encoded if ping]
                while len(got) < len(messages) or len(pongs) < len(want_pongs):
                    frame = client.read_frame()
                    if frame.opcode == PONG:
                        pongs.append(frame.payload)
                        continue
                    assert frame.opcode in (TEXT, BINARY), frame
                    parts = [frame]
                    while not parts[-1].fin:
                        parts.append(client.read_frame())
                        assert parts[-1].opcode in (CONTINUATION, PONG), parts[-1]
                        if parts[-1].opcode == PONG:
                            pongs.append(parts.pop().payload)
                    body = b"".join(p.payload for p in parts)
                    if frame.rsv & 4:
                        body = zlib.decompressobj(-15).decompress(body + b"\x00\x00\xff\xff")
                    got.append((frame.opcode, body))
                # The closing handshake (RFC 6455 7.1.2): our close echoed, then the TCP close.
                assert client.close_handshake(1000, "bye") == (1000, "bye")
            expected = [
                (m.opcode, payload) for m, (_, payload, _) in zip(messages, encoded, strict=True)
            ]
            assert [(op, len(body)) for op, body in got] == [(op, len(p)) for op, p in expected]
            assert got == expected
            assert pongs == want_pongs

    with watch.run():
        run()


# -- the opening handshake ---------------------------------------------------------------------

HANDSHAKE_HEADERS: dict[str, tuple[list[str], list[str]]] = {
    "Upgrade": (["websocket"], ["WebSocket", "websocket, h2c", "", "h2c"]),
    "Connection": (["Upgrade"], ["upgrade, keep-alive", "close", "", "Upgrade, close"]),
    "Sec-WebSocket-Version": (["13"], ["8", "13, 8", "", "014"]),
    "Sec-WebSocket-Key": (
        ["dGhlIHNhbXBsZSBub25jZQ=="],
        ["", "short", "dGhlIHNhbXBsZSBub25jZQ", "!!!!!!!!!!!!!!!!!!!!!!=="],
    ),
    "Sec-WebSocket-Extensions": (
        ["permessage-deflate", DEFLATE_OFFER],
        [
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; unknown=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "x-webkit-deflate-frame",
            ";;",
        ],
    ),
    "Sec-WebSocket-Protocol": (["chat", "chat, superchat"], ["", ",", "a b", "\x7f"]),
}


def text_choice(pools: tuple[list[str], list[str]]) -> st.SearchStrategy[str]:
    common, rare = pools
    return st.one_of(*[st.sampled_from(common)] * 4, st.sampled_from(rare))


@st.composite
def handshake_st(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["GET"] * 6 + ["POST", "HEAD", "get"]))
    target = draw(st.sampled_from(["/echo", "/echo?subprotocol=first", "/echo?h=x-a:1", "*"]))
    version = draw(st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2.0"]))
    lines = [f"{method} {target} {version}", "Host: localhost"]
    for name, pools in HANDSHAKE_HEADERS.items():
        presence = draw(st.sampled_from(["one"] * 6 + ["none", "two"]))
        for _ in range({"one": 1, "none": 0, "two": 2}[presence]):
            lines.append(f"{name}: {draw(text_choice(pools))}")
    if draw(st.booleans()):
        lines.append(f"Origin: {draw(st.sampled_from(['http://localhost', 'null', '']))}")
    body = draw(st.sampled_from([b"", b"", b"Content-Length: 3\r\n\r\nabc"]))
    head = "\r\n".join(lines).encode("latin-1") + b"\r\n"
    return head + (body or b"\r\n")


@pytest.mark.fuzz
@pytest.mark.timeout(fuzz_timeout(1.5))
def test_fuzz_mutated_handshakes(server: ServerProcess) -> None:
    """Mutated opening handshakes (RFC 6455 4.1-4.2, 9.1; RFC 7692 5; RFC 9110 7.8; RFC 9112
    6.3: no content in a response to HEAD; CVE-2020-7662 and CVE-2021-32640, the
    Sec-WebSocket-Extensions / -Protocol parsing bugs): a 101 must carry the right
    Sec-WebSocket-Accept and then echo; anything else is a well-formed HTTP response, and the
    connection closes in bounded time."""
    watch = Watch(server, probe)

    @fuzz_settings()
    @given(request=handshake_st(), muts=mutations(3), split=splits)
    def run(request: bytes, muts: list[Mutation], split: Split) -> None:
        data = mutate(request, muts)
        note(f"sent: {data!r} split {split}")
        with watch.example(f"{data[:1000]!r} split {split}"):
            deadline = time.monotonic() + EXCHANGE_TIMEOUT
            with WSClient(server.port, timeout=EXCHANGE_TIMEOUT) as client:
                send_split(client.sock, data, split)
                outcome = read_h1_until_close(client, deadline, first_method(data))
                for response in outcome.responses:
                    check_h1_response(response)
                    watch.stats[f"status:{response.status}"] += 1
                if outcome.ending == "upgrade":
                    response = outcome.responses[-1]
                    key_line = data.split(b"\r\nSec-WebSocket-Key: ")
                    if len(key_line) == 2:  # one key, intact: its accept value must match
                        key = key_line[1].split(b"\r\n", 1)[0].decode("latin-1")
                        accept = response.header("sec-websocket-accept")
                        assert accept == wsraw.accept_key(key), response.raw
                    assert (response.header("upgrade") or "").lower() == "websocket", response.raw
                    client.deflate = "permessage-deflate" in (
                        response.header("sec-websocket-extensions") or ""
                    )
                    client.send_text("after the handshake")
                    message = client.read_message()
                    if message.opcode == TEXT:
                        assert message.text == "after the handshake"
                        client.send_close(1000)
                    else:  # the server may close at once (say, a body sent after the handshake)
                        assert message.opcode == CLOSE, message
                        check_close(message)
                        client.send_close(1000)
                    client.wait_closed()
                else:
                    assert outcome.responses or outcome.ending in ("eof", "reset")
                    for response in outcome.responses:
                        if response.status >= 400:
                            assert response.header("connection") == "close", response.raw[:500]

    with watch.run():
        run()
