# RFC 6455 protocol errors from the client, sent byte by byte with tests/wsraw.py: the server
# fails the connection with the right close code (1002 protocol error, 1007 invalid payload data)
# and the app gets websocket.disconnect with that code. Valid edge cases (registered and private
# close codes, control frames of exactly 125 bytes) are accepted.
from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator

import pytest

import wsraw
from conftest import ServerProcess
from rawhttp import events, serve
from wsraw import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, frame

APP = "ws_app:app"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve(APP) as proc:
        yield proc


def disconnect_event(server: ServerProcess, tag: str) -> str:
    found = events(server, tag, "disconnect")
    matching = [event for event in found if event.startswith("disconnect:")]
    assert matching, found
    return matching[-1]


def long_length_frame(opcode: int, declared: int) -> bytes:
    """A frame header declaring a 64-bit payload length, masked, with no payload."""
    return bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", declared) + b"\0\0\0\0"


PROTOCOL_ERRORS: dict[str, tuple[bytes, int]] = {
    "unmasked-text": (frame(TEXT, b"not masked", mask=False), 1002),
    "unmasked-close": (frame(CLOSE, wsraw.close_payload(1000), mask=False), 1002),
    "opcode-3": (frame(0x3, b"reserved data opcode"), 1002),
    "opcode-7": (frame(0x7, b""), 1002),
    "opcode-0xb": (frame(0xB, b"reserved control opcode"), 1002),
    "opcode-0xf": (frame(0xF, b""), 1002),
    "rsv1-without-extension": (frame(TEXT, b"rsv1", rsv=4), 1002),
    "rsv2": (frame(TEXT, b"rsv2", rsv=2), 1002),
    "rsv3": (frame(BINARY, b"rsv3", rsv=1), 1002),
    "invalid-utf8": (frame(TEXT, b"bad \xff\xfe utf-8"), 1007),
    "overlong-utf8": (frame(TEXT, b"\xc0\xaf"), 1007),
    "surrogate-utf8": (frame(TEXT, b"\xed\xa0\x80"), 1007),
    "truncated-utf8": (frame(TEXT, "€".encode()[:2]), 1007),
    "invalid-utf8-across-fragments": (
        frame(TEXT, b"ok so far \xe2\x82", fin=False) + frame(CONTINUATION, b"\x28"),
        1007,
    ),
    "close-code-999": (frame(CLOSE, wsraw.close_payload(999)), 1002),
    "close-code-1004": (frame(CLOSE, wsraw.close_payload(1004)), 1002),
    "close-code-1005": (frame(CLOSE, wsraw.close_payload(1005)), 1002),
    "close-code-1006": (frame(CLOSE, wsraw.close_payload(1006)), 1002),
    "close-code-1015": (frame(CLOSE, wsraw.close_payload(1015)), 1002),
    "close-code-1016": (frame(CLOSE, wsraw.close_payload(1016)), 1002),
    "close-code-2999": (frame(CLOSE, wsraw.close_payload(2999)), 1002),
    "close-code-5000": (frame(CLOSE, wsraw.close_payload(5000)), 1002),
    "close-code-0": (frame(CLOSE, wsraw.close_payload(0)), 1002),
    "close-one-byte": (frame(CLOSE, b"\x03"), 1002),
    "close-reason-invalid-utf8": (frame(CLOSE, wsraw.close_payload(1000, b"\xff")), 1007),
    "ping-126-bytes": (frame(PING, b"x" * 126), 1002),
    "pong-126-bytes": (frame(PONG, b"x" * 126), 1002),
    "close-126-bytes": (frame(CLOSE, wsraw.close_payload(1000, "r" * 124)), 1002),
    "continuation-without-start": (frame(CONTINUATION, b"orphan"), 1002),
    "final-continuation-without-start": (frame(CONTINUATION, b"orphan", fin=True), 1002),
    "fragmented-ping": (frame(PING, b"part", fin=False) + frame(CONTINUATION, b"rest"), 1002),
    "fragmented-close": (frame(CLOSE, b"\x03\xe8", fin=False), 1002),
    "new-message-inside-fragmented": (
        frame(TEXT, b"start", fin=False) + frame(TEXT, b"another start"),
        1002,
    ),
    "binary-inside-fragmented-text": (
        frame(TEXT, b"start", fin=False) + frame(BINARY, b"x", fin=True),
        1002,
    ),
}


@pytest.mark.parametrize("kind", list(PROTOCOL_ERRORS))
def test_protocol_error_closes_with_its_code(server: ServerProcess, kind: str) -> None:
    raw, code = PROTOCOL_ERRORS[kind]
    tag = uuid.uuid4().hex
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        ws.try_send(raw)
        got = ws.read_eof_or_close()
        assert got is not None, "the server closed the TCP connection without a close frame"
        assert got.opcode == CLOSE, f"expected a close frame, got {got}"
        assert got.close_code == code, got
        ws.send_close(code)
        ws.wait_closed()
    assert disconnect_event(server, tag).startswith(f"disconnect:{code}:")


def test_length_msb_set_is_refused_without_reading_a_payload(server: ServerProcess) -> None:
    """A 2^63 declared length is a protocol error (RFC 6455 5.2), or at least too big: the
    server must not wait for the payload."""
    with wsraw.connect(server.port, "/echo") as ws:
        ws.send(long_length_frame(BINARY, (1 << 63) + 5))
        got = ws.read_eof_or_close()
        assert got is not None and got.close_code in (1002, 1009), got


@pytest.mark.parametrize(
    "code",
    [
        1000,
        1001,
        1002,
        1003,
        1007,
        1008,
        1009,
        1010,
        1011,
        1012,
        1013,
        1014,
        3000,
        3999,
        4000,
        4999,
    ],
)
def test_valid_close_codes_reach_the_app(server: ServerProcess, code: int) -> None:
    tag = uuid.uuid4().hex
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        reply, _ = ws.close_handshake(code, "valid")
        assert reply is not None
    assert disconnect_event(server, tag) == f"disconnect:{code}:valid"


def test_close_between_fragments_closes_normally(server: ServerProcess) -> None:
    """RFC 6455 5.4: control frames may come between fragments; a close there ends the
    unfinished message and is answered like any close (Autobahn 7.1.5), not with 1002."""
    tag = uuid.uuid4().hex
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        ws.sock.sendall(frame(TEXT, b"fragment1", fin=False))
        ws.sock.sendall(frame(CLOSE, wsraw.close_payload(1000, "bye")))
        ws.sock.sendall(frame(CONTINUATION, b"fragment2"))
        code, _ = ws.expect_close(reply=False)
        assert code == 1000
    assert disconnect_event(server, tag) == "disconnect:1000:bye"


def test_control_frames_of_125_bytes_are_fine(server: ServerProcess) -> None:
    tag = uuid.uuid4().hex
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        ws.send_frame(PING, b"p" * 125)
        pong = ws.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"p" * 125)
        ws.send_frame(PONG, b"q" * 125)
        ws.send_text("still open")
        assert ws.read_text() == "still open"
        reason = "r" * 123
        assert ws.close_handshake(4000, reason)[0] is not None
    assert disconnect_event(server, tag) == f"disconnect:4000:{reason}"


def test_data_after_close_is_ignored(server: ServerProcess) -> None:
    """After its close frame the client sends more: the server does not echo it."""
    tag = uuid.uuid4().hex
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        ws.send(frame(CLOSE, wsraw.close_payload(1000)) + frame(TEXT, b"too late"))
        got = ws.read_eof_or_close()
        assert got is not None and got.opcode == CLOSE, got
        ws.wait_closed()
    assert disconnect_event(server, tag).startswith("disconnect:1000:")


def test_protocol_error_does_not_disturb_other_connections(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo") as good:
        with wsraw.connect(server.port, "/echo") as bad:
            bad.send(frame(TEXT, b"unmasked", mask=False))
            assert bad.expect_close()[0] == 1002
        good.send_text("unaffected")
        assert good.read_text() == "unaffected"
