# The WebSocket attack suite: one test per attack class, each citing its RFC 6455 / RFC 7692
# section or advisory, sent frame by frame with tests/wsraw.py as no client library would.
#
# Owns the security invariants of the WebSocket layer, end to end against a real laurelin
# process: a protocol violation fails the connection with its close code (1002, 1007, 1009),
# the server closes the TCP connection without waiting for the client's close (RFC 6455 7.1.7),
# nothing sent after the violation reaches the app, and the app's websocket.disconnect carries
# the server's code; oversize frames and messages, deflate bombs, fragment floods and ping
# floods are refused or absorbed with bounded memory (PeakRSS), after which a fresh client (the
# `websockets` library) is served promptly; bad opening handshakes are refused without a 101
# and without calling the app. The per-behaviour tests (every close code, every limit flag) are
# tests/test_websocket_protocol_errors.py's, test_websocket_limits.py's and
# test_websocket_bounds.py's; a WebSocket client that never reads data is the slow-client
# suite's.
from __future__ import annotations

import contextlib
import functools
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import wsraw
from conftest import PeakRSS, ServerProcess
from rawhttp import RawClient, build, events, serve
from wsraw import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, frame

APP = "ws_app:app"
MAX_MESSAGE = 256 * 1024
MAX_FRAME = 64 * 1024
DEFLATE = "permessage-deflate; client_max_window_bits"
# A valid text frame sent right after each violation: it must never reach the app.
TRAILER = frame(TEXT, b"sent after the violation")
# How fast a fresh client must be served after an attack (generous: 2 shared CPUs).
PROMPT = 5.0


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """Limits small enough for floods to reach them fast; permessage-deflate is offered (it is
    agreed only with clients that ask for it)."""
    with serve(
        APP,
        "--websocket-max-message-size",
        str(MAX_MESSAGE),
        "--websocket-max-frame-size",
        str(MAX_FRAME),
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def unlimited() -> Iterator[ServerProcess]:
    """Size limits switched off (0), as an operator streaming big messages would."""
    with serve(APP, "--websocket-max-message-size", "0", "--websocket-max-frame-size", "0") as proc:
        yield proc


# -- helpers ---------------------------------------------------------------------------------------


def new_tag() -> str:
    return uuid.uuid4().hex


def hwm_kib(server: ServerProcess) -> int:
    return wsraw.peak_rss_kib(server.pid)


@contextlib.contextmanager
def bounded_rss(server: ServerProcess, bound_kib: int, why: str) -> Iterator[PeakRSS]:
    """The block must not grow the server's RSS by `bound_kib` or more: sampled (PeakRSS) and
    from the kernel's high-water mark (VmHWM), which catches a spike between two samples."""
    hwm_before = hwm_kib(server)
    with PeakRSS(server) as peak:
        yield peak
    hwm_after = hwm_kib(server)
    assert peak.growth < bound_kib, (
        f"server RSS grew by {peak.growth} KiB (bound {bound_kib} KiB: {why})"
    )
    assert hwm_after < max(hwm_before, peak.start + bound_kib), (
        f"server peak RSS (VmHWM) reached {hwm_after} KiB from {peak.start} KiB "
        f"(bound {bound_kib} KiB: {why})"
    )


def assert_still_serving(server: ServerProcess) -> None:
    """The server process is alive and a fresh `websockets` client completes a round trip
    within PROMPT seconds."""
    assert server.proc.poll() is None, f"the server exited:\n{server.text()[-3000:]}"
    started = time.monotonic()
    url = f"ws://127.0.0.1:{server.port}/echo"
    with wsraw.client(url, open_timeout=PROMPT, close_timeout=PROMPT) as ws:
        ws.send("fresh client after the attack")
        assert ws.recv(PROMPT) == "fresh client after the attack"
    elapsed = time.monotonic() - started
    assert elapsed < PROMPT, f"a fresh client took {elapsed:.1f}s to be served"


def app_events(server: ServerProcess, tag: str) -> list[str]:
    found = events(server, tag, "disconnect")
    assert any(event.startswith("disconnect:") for event in found), found
    return found


def delivered(found: list[str]) -> list[str]:
    """The data messages the /record route received."""
    return [event for event in found if event.startswith(("text:", "bytes:"))]


def expect_failed(
    server: ServerProcess,
    raw: bytes,
    code: int,
    *,
    extensions: str | None = None,
    before: tuple[str, ...] = (),
) -> None:
    """Open a WebSocket on /record (the app records what it receives and sends nothing), send
    `raw` then TRAILER, and check the failure: the server's close frame carries `code`, the
    server closes TCP without waiting for our close (RFC 6455 7.1.7), the app got
    websocket.disconnect with `code`, and of the data only the messages `before` (as /record
    describes them: `text:LEN`, `bytes:LEN`) that were complete before the violation."""
    tag = new_tag()
    options: dict[str, Any] = {"extensions": extensions} if extensions else {}
    with wsraw.connect(server.port, f"/record?tag={tag}", **options) as ws:
        if extensions:
            assert ws.deflate, ws.response
        ws.try_send(raw + TRAILER)
        got = ws.read_eof_or_close()
        assert got is not None, "the server closed the TCP connection without a close frame"
        assert got.opcode == CLOSE, f"expected the server's close frame, got {got}"
        assert got.close_code == code, got
        # No close frame from us: the server must close the TCP connection by itself.
        ws.wait_closed(PROMPT)
    found = app_events(server, tag)
    assert found[:2] == ["scope:websocket", "first:websocket.connect"], found
    assert found[-1].startswith(f"disconnect:{code}:"), found
    assert delivered(found) == list(before), f"data reaching the app: {found}"


def long_header(opcode: int, declared: int) -> bytes:
    """A masked final frame's head declaring a 64-bit payload length, without the payload."""
    return bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", declared) + b"mask"


@functools.cache
def bomb(mebibytes: int) -> bytes:
    """`mebibytes` MiB of zeros as a permessage-deflate body (about 1000:1)."""
    return wsraw.deflate([b"\0" * (1 << 20)] * mebibytes)


# -- RFC 6455 5.1: masking -------------------------------------------------------------------------


UNMASKED: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "text": (frame(TEXT, b"not masked", mask=False), ()),
    "binary": (frame(BINARY, b"\x00\x01", mask=False), ()),
    "ping": (frame(PING, b"unmasked ping", mask=False), ()),
    "close": (frame(CLOSE, wsraw.close_payload(1000), mask=False), ()),
    # A masked message, then an unmasked frame: every frame is checked, not only the first.
    "second-frame": (frame(TEXT, b"masked") + frame(TEXT, b"unmasked", mask=False), ("text:6",)),
}


@pytest.mark.parametrize("kind", list(UNMASKED))
def test_unmasked_client_frame_is_1002(server: ServerProcess, kind: str) -> None:
    """RFC 6455 5.1: "The server MUST close the connection upon receiving a frame that is not
    masked" (masking defeats cache poisoning of intermediaries, RFC 6455 10.3); the status
    code is 1002 (RFC 6455 7.4.1). A complete message before the bad frame was valid and is
    delivered; nothing after it is."""
    raw, before = UNMASKED[kind]
    expect_failed(server, raw, 1002, before=before)


# -- RFC 6455 5.2 / RFC 7692 6: reserved bits ------------------------------------------------------


RSV_VIOLATIONS: dict[str, tuple[bytes, str | None]] = {
    "rsv1-no-extension": (frame(TEXT, b"rsv1", rsv=4), None),
    "rsv2": (frame(TEXT, b"rsv2", rsv=2), None),
    "rsv3": (frame(BINARY, b"rsv3", rsv=1), None),
    "all-rsv": (frame(BINARY, b"rsv", rsv=7), None),
    "rsv1-on-ping": (frame(PING, b"rsv1", rsv=4), None),
    # permessage-deflate agreed: RSV1 only on the first frame of a data message (RFC 7692 6).
    "deflate-rsv2": (frame(TEXT, wsraw.deflate([b"x"]), rsv=2), DEFLATE),
    "deflate-rsv1-on-ping": (frame(PING, b"ping", rsv=4), DEFLATE),
    "deflate-rsv1-on-continuation": (
        frame(TEXT, wsraw.deflate([b"first"]), rsv=4, fin=False)
        + frame(CONTINUATION, b"second", rsv=4),
        DEFLATE,
    ),
    "deflate-corrupt-stream": (frame(BINARY, b"\xff\xff\xff\xff not deflate", rsv=4), DEFLATE),
}


@pytest.mark.parametrize("kind", list(RSV_VIOLATIONS))
def test_reserved_bits_without_extension_are_1002(server: ServerProcess, kind: str) -> None:
    """RFC 6455 5.2: RSV1-3 "MUST be 0 unless an extension is negotiated that defines meanings
    for non-zero values. If a nonzero value is received and none of the negotiated extensions
    defines the meaning of such a nonzero value, the receiving endpoint MUST _Fail the
    WebSocket Connection_". With permessage-deflate agreed, RFC 7692 6: the "Per-Message
    Compressed" bit (RSV1) is set on the first frame of a data message only; a control frame or
    a continuation with it fails the connection, RSV2/RSV3 stay undefined, and a payload that
    does not inflate (RFC 7692 7.2.2) is not a message."""
    raw, extensions = RSV_VIOLATIONS[kind]
    expect_failed(server, raw, 1002, extensions=extensions)


# -- RFC 6455 5.2: reserved opcodes ----------------------------------------------------------------


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_is_1002(server: ServerProcess, opcode: int) -> None:
    """RFC 6455 5.2: opcodes 0x3-0x7 are reserved for further non-control frames and 0xB-0xF
    for further control frames; "If an unknown opcode is received, the receiving endpoint MUST
    _Fail the WebSocket Connection_"."""
    expect_failed(server, frame(opcode, b"reserved"), 1002)


# -- RFC 6455 5.5: control frames ------------------------------------------------------------------


CONTROL_VIOLATIONS: dict[str, bytes] = {
    "ping-126": frame(PING, b"p" * 126),
    "pong-126": frame(PONG, b"q" * 126),
    "close-126": frame(CLOSE, wsraw.close_payload(1000, "r" * 124)),
    "ping-16-bit-length": frame(PING, b"p" * 4000),
    "ping-fragmented": frame(PING, b"part", fin=False) + frame(CONTINUATION, b"rest"),
    "pong-fragmented": frame(PONG, b"part", fin=False),
    "close-fragmented": frame(CLOSE, b"\x03\xe8", fin=False),
    # Inside a fragmented data message (where control frames are allowed, 5.4) too.
    "ping-126-between-fragments": frame(TEXT, b"start", fin=False) + frame(PING, b"p" * 126),
}


@pytest.mark.parametrize("kind", list(CONTROL_VIOLATIONS))
def test_oversized_or_fragmented_control_frame_is_1002(server: ServerProcess, kind: str) -> None:
    """RFC 6455 5.5: "All control frames MUST have a payload length of 125 bytes or less and
    MUST NOT be fragmented." A larger or fragmented ping would otherwise let a client make the
    server echo (pong) arbitrary amounts of data."""
    expect_failed(server, CONTROL_VIOLATIONS[kind], 1002)


# -- RFC 6455 5.4: fragmentation -------------------------------------------------------------------


FRAGMENTATION_VIOLATIONS: dict[str, bytes] = {
    "orphan-continuation": frame(CONTINUATION, b"orphan", fin=False),
    "orphan-final-continuation": frame(CONTINUATION, b"orphan"),
    "orphan-after-complete-message": frame(TEXT, b"whole") + frame(CONTINUATION, b"orphan"),
    "text-inside-fragmented-text": frame(TEXT, b"start", fin=False) + frame(TEXT, b"again"),
    "binary-inside-fragmented-text": frame(TEXT, b"start", fin=False) + frame(BINARY, b"x"),
    "text-inside-fragmented-binary": frame(BINARY, b"start", fin=False)
    + frame(CONTINUATION, b"more", fin=False)
    + frame(TEXT, b"interleaved"),
}


@pytest.mark.parametrize("kind", list(FRAGMENTATION_VIOLATIONS))
def test_fragmentation_violation_is_1002(server: ServerProcess, kind: str) -> None:
    """RFC 6455 5.4: a fragmented message is a first frame with FIN clear and an opcode, then
    continuation frames (opcode 0) to the one with FIN set; "The fragments of one message MUST
    NOT be interleaved between the fragments of another message" without an extension that
    says how. A continuation with no message started, or a new data frame before the
    message's last fragment, fails the connection (1002). Only the complete message before
    the orphan continuation is delivered."""
    before = ("text:5",) if kind == "orphan-after-complete-message" else ()
    expect_failed(server, FRAGMENTATION_VIOLATIONS[kind], 1002, before=before)


# -- RFC 6455 8.1 / 5.5.1: invalid UTF-8 -----------------------------------------------------------


EURO = "€".encode()  # e2 82 ac
UTF8_VIOLATIONS: dict[str, tuple[bytes, str | None]] = {
    "invalid-byte": (frame(TEXT, b"bad \xff\xfe utf-8"), None),
    "overlong": (frame(TEXT, b"\xc0\xaf"), None),
    "surrogate": (frame(TEXT, b"\xed\xa0\x80"), None),
    "above-u10ffff": (frame(TEXT, b"\xf4\x90\x80\x80"), None),
    "truncated": (frame(TEXT, EURO[:2]), None),
    # Over 16 KiB: parsed by the framing, not the small-frame fast path.
    "invalid-in-a-large-frame": (frame(TEXT, b"a" * 20000 + b"\xff"), None),
    "split-across-fragments": (
        frame(TEXT, b"ok so far " + EURO[:2], fin=False) + frame(CONTINUATION, b"\x28"),
        None,
    ),
    "truncated-at-the-last-fragment": (
        frame(TEXT, b"ok", fin=False) + frame(CONTINUATION, EURO[:1]),
        None,
    ),
    # Invalid in the first fragment of a message that never ends: failed at once (8.1, "as
    # soon as"), not buffered until a FIN that never comes.
    "invalid-in-an-unfinished-message": (frame(TEXT, b"\xff" + b"a" * 1000, fin=False), None),
    "invalid-in-close-reason": (frame(CLOSE, wsraw.close_payload(1000, b"bye \xff")), None),
    "invalid-after-inflating": (frame(TEXT, wsraw.deflate([b"deflated \xff\xfe"]), rsv=4), DEFLATE),
}


@pytest.mark.parametrize("kind", list(UTF8_VIOLATIONS))
def test_invalid_utf8_is_1007(server: ServerProcess, kind: str) -> None:
    """RFC 6455 8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds that
    the byte stream is not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the
    WebSocket Connection_" (status 1007, 7.4.1), in a text message however it is fragmented
    (5.6, 5.4) or compressed (RFC 7692), and in a close frame's reason (5.5.1). Invalid text
    reaching the app as a str would be a decoding crash or a smuggled payload there."""
    raw, extensions = UTF8_VIOLATIONS[kind]
    expect_failed(server, raw, 1007, extensions=extensions)


# -- RFC 6455 5.5.1 / 7.4: close frame abuse -------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        wsraw.close_payload(1005),
        wsraw.close_payload(1006),
        wsraw.close_payload(1015),
        wsraw.close_payload(999),
        wsraw.close_payload(5000),
        wsraw.close_payload(0),
        wsraw.close_payload(1004),
        wsraw.close_payload(2999),
        wsraw.close_payload(65535, "max"),
        b"\x03",
    ],
    ids=["1005", "1006", "1015", "999", "5000", "0", "1004", "2999", "65535", "one-byte"],
)
def test_invalid_close_frame_is_1002(server: ServerProcess, payload: bytes) -> None:
    """RFC 6455 7.4.1: 1005, 1006 and 1015 "MUST NOT be set as a status code in a Close
    control frame by an endpoint"; 7.4.2: codes below 1000 are unused and 1004, 1016-2999 are
    reserved; 5.5.1: a close body is empty or starts with a 2-byte code (one byte is
    malformed). Autobahn 7.9.x: fail with 1002. The app must get 1002, never a
    status (1005/1006) that a peer cannot send and that would be mistaken for the server's."""
    expect_failed(server, frame(CLOSE, payload), 1002)


# -- Daphne CVE-2026-44545: unbounded messages -----------------------------------------------------

# What the server may hold of a refused message: the 256 KiB message buffer, one 64 KiB frame
# and its read buffers, with generous room for a loaded machine. Buffering any of the refused
# attack (tens of MiB) would be far over it.
OVERSIZE_RSS_KIB = 16 * 1024


def stream_after_refusal(ws: wsraw.WSClient, mebibytes: int) -> bool:
    """Keep sending `mebibytes` MiB after the server refused the frame or message (what an
    attacker declaring a huge payload does): True if the server took all of it."""
    chunk = b"\xa5" * (1 << 20)
    return all(ws.try_send(chunk) for _ in range(mebibytes))


def test_message_over_the_limit_is_1009_before_it_ends(server: ServerProcess) -> None:
    """Daphne CVE-2026-44545 (no bound on the size of an incoming WebSocket message): a message
    in fragments, each under --websocket-max-frame-size, whose running total passes
    --websocket-max-message-size is failed with 1009 (RFC 6455 7.4.1 "a message that is too
    big for it to process") when the limit is crossed, not when its FIN arrives: the client
    never sends the FIN here, and then keeps streaming. The server's memory stays bounded."""
    tag = new_tag()
    piece = b"m" * 60000
    raw = frame(BINARY, piece, fin=False) + b"".join(
        frame(CONTINUATION, piece, fin=False) for _ in range(MAX_MESSAGE // len(piece))
    )
    assert len(piece) < MAX_FRAME and len(piece) * (MAX_MESSAGE // len(piece) + 1) > MAX_MESSAGE
    with (
        bounded_rss(server, OVERSIZE_RSS_KIB, "the message is refused at 256 KiB"),
        wsraw.connect(server.port, f"/record?tag={tag}") as ws,
    ):
        ws.try_send(raw)
        got = ws.read_eof_or_close()
        assert got is not None and got.close_code == 1009, got
        assert not stream_after_refusal(ws, 32), "the server read on after refusing"
    found = app_events(server, tag)
    assert delivered(found) == [] and found[-1].startswith("disconnect:1009:"), found
    assert_still_serving(server)


@pytest.mark.parametrize(
    "declared",
    [MAX_FRAME + 1, 1 << 30, (1 << 63) - 1, 1 << 63, (1 << 64) - 1],
    ids=["frame-limit+1", "1GiB", "2^63-1", "2^63", "2^64-1"],
)
def test_oversize_frame_header_refused_at_once(server: ServerProcess, declared: int) -> None:
    """Daphne CVE-2026-44545: a frame whose header declares more than
    --websocket-max-frame-size (here up to the 64-bit maximum, RFC 6455 5.2's 127 length) is
    failed with 1009 as soon as its header is read: the server does not wait for (or buffer)
    the payload, and stops reading what the client streams after it. A length with the most
    significant bit set breaks RFC 6455 5.2 before any limit: 1002."""
    code = 1002 if declared >> 63 else 1009
    tag = new_tag()
    with (
        bounded_rss(server, OVERSIZE_RSS_KIB, "no payload of the refused frame is buffered"),
        wsraw.connect(server.port, f"/record?tag={tag}") as ws,
    ):
        ws.send(long_header(BINARY, declared) + b"\x00" * 1000)
        got = ws.read_eof_or_close()
        assert got is not None and got.close_code == code, got
        assert not stream_after_refusal(ws, 32), "the server read on after refusing"
    found = app_events(server, tag)
    assert delivered(found) == [] and found[-1].startswith(f"disconnect:{code}:"), found
    assert_still_serving(server)


def test_length_with_msb_set_is_1002_even_without_limits(unlimited: ServerProcess) -> None:
    """RFC 6455 5.2: in a 64-bit payload length "the most significant bit MUST be 0". With the
    size limits off (0), a header declaring 2^63 bytes is still a protocol error (1002): a
    server that waits for that payload buffers everything the client sends, without bound
    (the CVE-2026-44545 shape, reachable even when the operator lifted limits for real
    messages)."""
    with wsraw.connect(unlimited.port, "/echo") as ws:
        ws.send(long_header(BINARY, 1 << 63) + b"\x00" * 1000)
        waited = False
        try:
            got = ws.read_eof_or_close(PROMPT)
        except TimeoutError:
            waited, got = True, None
        if waited:
            with PeakRSS(unlimited) as peak:
                stream_after_refusal(ws, 16)
            pytest.fail(
                "no close frame: the server waits for the payload of a frame "
                f"declaring 2^63 bytes, and buffered {peak.growth} KiB of the 16 MiB streamed "
                "after its header"
            )
        assert got is not None, "the server closed the TCP connection without a close frame"
        assert got.close_code == 1002, got
    assert_still_serving(unlimited)


# -- RFC 7692 (permessage-deflate): decompression bombs --------------------------------------------

# Inflating stops at the limits (64 KiB a frame, 256 KiB a message); zlib's window and buffers
# are a few hundred KiB. Inflating the bomb (48 or 256 MiB) would be far over this.
BOMB_RSS_KIB = 16 * 1024


def bomb_frames(kind: str) -> tuple[bytes, int]:
    """The bomb as frames on the wire, and how many bytes it inflates to."""
    if kind == "one-frame":
        body = bomb(48)
        assert len(body) < MAX_FRAME  # every frame is under the wire limits
        return frame(BINARY, body, rsv=4), 48 << 20
    body = bomb(256)
    size = 60000
    pieces = [body[start : start + size] for start in range(0, len(body), size)]
    out = [frame(TEXT, pieces[0], rsv=4, fin=False)]
    out += [frame(CONTINUATION, piece, fin=False) for piece in pieces[1:-1]]
    out.append(frame(CONTINUATION, pieces[-1]))
    return b"".join(out), 256 << 20


@pytest.mark.parametrize("kind", ["one-frame", "fragmented"])
def test_deflate_bomb_is_1009_with_bounded_memory(server: ServerProcess, kind: str) -> None:
    """RFC 7692 7.2.2 (permessage-deflate decompression) with RFC 6455 10.4's limit on "the
    total message size after reassembly", the decompression-bomb form of Daphne
    CVE-2026-44545: a compressed message far under the wire limits (48 MiB of zeros in one
    48 KB frame; 256 MiB in 60 KB fragments) that inflates past --websocket-max-message-size is
    failed with 1009 while inflating, with the server's memory bounded."""
    raw, inflated = bomb_frames(kind)
    assert inflated > 100 * MAX_MESSAGE
    tag = new_tag()
    with (
        bounded_rss(server, BOMB_RSS_KIB, "inflating stops at the 64 KiB / 256 KiB limits"),
        wsraw.connect(server.port, f"/record?tag={tag}", extensions=DEFLATE) as ws,
    ):
        assert ws.deflate, ws.response
        ws.try_send(raw)
        got = ws.read_eof_or_close()
        assert got is not None and got.close_code == 1009, got
        ws.wait_closed(PROMPT)
    found = app_events(server, tag)
    assert delivered(found) == [] and found[-1].startswith("disconnect:1009:"), found
    assert_still_serving(server)


# -- RFC 6455 5.4: fragment floods -----------------------------------------------------------------

# The fragments of a message are not kept (the message buffer is capped at 256 KiB); kept, the
# 262,145 or 300,000 frames would cost tens of MiB (a Frame object and its bytes each).
FRAGMENT_RSS_KIB = 16 * 1024
MASK = b"\x01\x02\x03\x04"


def test_one_byte_fragment_flood_stops_at_the_message_limit(server: ServerProcess) -> None:
    """RFC 6455 5.4 allows a message in any number of fragments and RFC 6455 10.4 ("Implementations
    SHOULD impose a limit on frame sizes and the total message size after reassembly from
    multiple frames"); Daphne CVE-2026-44545. 262,145 one-byte fragments (1.8 MB on the wire)
    add up past --websocket-max-message-size (256 KiB): 1009 at the fragment that crosses it,
    with bounded memory."""
    tag = new_tag()
    count = MAX_MESSAGE + 1
    first = frame(BINARY, b"f", fin=False, mask_key=MASK)
    rest = frame(CONTINUATION, b"f", fin=False, mask_key=MASK) * (count - 1)
    with (
        bounded_rss(server, FRAGMENT_RSS_KIB, "fragments are not kept, the message is capped"),
        wsraw.connect(server.port, f"/record?tag={tag}", timeout=30) as ws,
    ):
        ws.try_send(first + rest)
        got = ws.read_eof_or_close()
        assert got is not None and got.close_code == 1009, got
        ws.wait_closed(PROMPT)
    found = app_events(server, tag)
    assert delivered(found) == [] and found[-1].startswith("disconnect:1009:"), found
    assert_still_serving(server)


def test_empty_fragment_flood_is_absorbed_in_bounded_memory(server: ServerProcess) -> None:
    """RFC 6455 5.4 / 10.4: empty continuation frames add nothing to the message, so the size
    limit never ends them and laurelin sets no fragment count limit (protocols/websocket.py):
    300,000 of them (1.8 MB) must cost constant memory, the message they belong to still
    arrives whole once its FIN comes, and other clients are served."""
    tag = new_tag()
    empties = frame(CONTINUATION, b"", fin=False, mask_key=MASK) * 300_000
    with (
        bounded_rss(server, FRAGMENT_RSS_KIB, "empty fragments add nothing to the message"),
        wsraw.connect(server.port, f"/echo?tag={tag}", timeout=30) as ws,
    ):
        ws.send(frame(TEXT, b"start-", fin=False) + empties + frame(CONTINUATION, b"end"))
        assert ws.read_text(30) == "start-end"
        assert ws.close_handshake() == (1000, "")
    assert_still_serving(server)


# -- RFC 6455 5.5.2: ping floods -------------------------------------------------------------------

# The server stops reading a client that does not read its pongs once its write buffer is past
# asyncio's high-water mark (64 KiB): a read's worth of pongs at most, plus socket buffers.
PING_RSS_KIB = 16 * 1024


def test_ping_flood_from_a_client_that_never_reads_pongs(server: ServerProcess) -> None:
    """RFC 6455 5.5.2: every ping "MUST" be answered with a pong, so a client that pings
    without reading makes the server queue pongs (the amplification behind the HTTP/2
    CVE-2019-9512 "Ping Flood"). The server must stop reading the flooder when its pongs
    cannot be written (the client's sends block well before 64 MiB), keep its memory bounded,
    and serve a fresh client promptly while the flooder is still connected."""
    ping = frame(PING, b"p" * 125, mask_key=MASK)
    limit = 64 << 20
    with bounded_rss(server, PING_RSS_KIB, "reading stops at the write high-water mark"):
        flooder = wsraw.connect(server.port, "/echo", rcvbuf=4096, timeout=30)
        try:
            _, sent, _ = flooder.send_until_blocked(ping * 512, limit=limit)
            assert sent < limit
            assert_still_serving(server)
        finally:
            flooder.close(reset=True)
    assert_still_serving(server)


# -- RFC 6455 4.2.1 / 4.4: bad opening handshakes --------------------------------------------------


BAD_HANDSHAKES: dict[str, dict[str, Any]] = {
    "no-key": {"key": None},
    "key-not-base64": {"key": "not base64 at all!!"},
    "key-12-bytes": {"key": "AAAAAAAAAAAAAAAA"},
    "two-keys": {"headers": [("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAAAA==")]},
    "version-8": {"version": "8"},
    "version-14": {"version": "14"},
    "no-version": {"version": None},
    "post": {"method": "POST"},
    "http-1.0": {"http_version": "HTTP/1.0"},
    # A body on the upgrade request would be bytes the server could read as frames.
    "with-body": {"headers": [("Content-Length", "10")]},
}
VERSION_KINDS = ("version-8", "version-14", "no-version")


@pytest.mark.parametrize("kind", list(BAD_HANDSHAKES))
def test_bad_handshake_is_refused_cleanly(server: ServerProcess, kind: str) -> None:
    """RFC 6455 4.2.1: the server accepts only an HTTP/1.1 (or higher) GET with one
    Sec-WebSocket-Key of 16 base64-decoded bytes and Sec-WebSocket-Version 13; otherwise
    (4.2.2) it "MUST stop processing the client's handshake and return an HTTP response with an
    appropriate error code (such as 400 Bad Request)". A version it does not speak gets "an
    appropriate HTTP error code (such as 426 Upgrade Required) and a |Sec-WebSocket-Version|
    header field" naming 13 (4.2.2, 4.4). Refused cleanly: no 101 and no accept key, the app is
    never called, the WebSocket frame the client pipelined behind the request is not taken as a
    frame (nothing comes back but the refusal), and the server serves other clients."""
    tag = new_tag()
    options = dict(BAD_HANDSHAKES[kind])
    key = options.pop("key", wsraw.new_key())
    request = wsraw.handshake_request(f"/record?tag={tag}", key=key, **options)
    with RawClient(server.port) as client:
        client.send(request + frame(TEXT, b"pipelined frame"))
        response = client.read_response()
        rest = client.wait_closed(PROMPT)
    assert 400 <= response.status < 500, response.raw
    if kind in VERSION_KINDS:
        assert response.status in (400, 426), response.raw
        assert response.header("sec-websocket-version") == "13", response.raw
    assert response.header("sec-websocket-accept") is None, response.raw
    assert rest == b"", f"bytes after the refusal: {rest!r}"
    # A plain request with the same tag: the only scope the app ever saw for it.
    with RawClient(server.port) as client:
        assert client.request(build("GET", f"/after?tag={tag}")).status == 200
    assert events(server, tag, "scope:http") == ["scope:http"]
    assert_still_serving(server)
