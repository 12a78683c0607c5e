# The WebSocket input path whatever the read boundaries: small complete data frames are parsed by
# laurelin itself and every other frame (control frames, fragments, big frames) by the framing
# library, so a stream mixing them, cut into reads of any size (a frame's head split, a payload
# split, several frames in one read), must come out exactly as sent. Frame sizes straddle the
# 7-bit, 16-bit and 64-bit length forms and laurelin's own limit for frames it parses (16 KiB).
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

import wsraw
from conftest import ServerProcess
from rawhttp import events, serve
from wsraw import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, frame

APP = "ws_app:app"
SIZES = (0, 1, 125, 126, 127, 16383, 16384, 16385, 65535, 65536, 70000)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve(APP) as proc:
        yield proc


def mixed_stream() -> tuple[bytes, list[tuple[int, bytes]]]:
    """Client frames of every kind, and the data messages the echo app should send back."""
    wire = bytearray()
    expected: list[tuple[int, bytes]] = []
    for index, size in enumerate(SIZES):
        text = (f"{index:03d}" + "é" * size)[:size].encode()
        payload = bytes((index + n) % 251 for n in range(size))
        wire += frame(TEXT, text)
        wire += frame(BINARY, payload)
        expected += [(TEXT, text), (BINARY, payload)]
        if index % 3 == 0:
            wire += frame(PING, b"ping %d" % index)
        if index % 4 == 1:
            wire += frame(PONG, b"unsolicited")
    # A fragmented message with a ping between its fragments, then a small frame right after.
    wire += frame(TEXT, b"frag-", fin=False)
    wire += frame(PING, b"in between")
    wire += frame(CONTINUATION, b"ment", fin=False)
    wire += frame(CONTINUATION, b"ed", fin=True)
    wire += frame(BINARY, b"after the fragments")
    expected += [(TEXT, b"frag-mented"), (BINARY, b"after the fragments")]
    return bytes(wire), expected


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 13, 64, 1000, 16389, 1 << 30])
def test_mixed_frames_in_reads_of_any_size(server: ServerProcess, chunk: int) -> None:
    tag = uuid.uuid4().hex
    wire, expected = mixed_stream()
    with wsraw.connect(server.port, f"/echo?tag={tag}", timeout=30) as ws:
        for start in range(0, len(wire), chunk):
            ws.sock.sendall(wire[start : start + chunk])
        for opcode, payload in expected:
            message = ws.read_message()
            assert (message.opcode, len(message.payload)) == (opcode, len(payload))
            assert message.payload == payload
        assert ws.pings == []  # the server sent none; the pongs to ours were skipped
        code, _ = ws.close_handshake(1000, "done")
        assert code == 1000
    assert events(server, tag, "disconnect")[-1] == "disconnect:1000:done"


# A close or a protocol error in the same read as good messages: the messages reach the app
# (recorded by /record), and the close frame goes out at once, before any echo could.
@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(TEXT, b"bad \xff"), 1007),
        (frame(BINARY, b"bare", mask=False), 1002),
        (frame(CLOSE, wsraw.close_payload(4001, "bye")), 4001),
    ],
    ids=["invalid-utf8", "unmasked", "close"],
)
def test_end_in_the_same_read_as_good_messages(
    server: ServerProcess, bad: bytes, code: int
) -> None:
    tag = uuid.uuid4().hex
    with wsraw.connect(server.port, f"/record?tag={tag}") as ws:
        ws.sock.sendall(frame(TEXT, b"one") + frame(BINARY, b"two") + bad + frame(TEXT, b"no"))
        got, _ = ws.expect_close(reply=False)
        assert got == code
    found = events(server, tag, "disconnect")
    assert found[-3:-1] == ["text:3", "bytes:3"], found
    assert found[-1].startswith(f"disconnect:{code}:"), found


def test_frame_over_the_message_limit_is_refused_from_its_head(
    run_server: object,
) -> None:
    """A declared length over --websocket-max-message-size gets 1009 at once: the server does
    not wait for (or buffer) the payload."""
    server = run_server(APP, "--websocket-max-message-size", "100")  # type: ignore[operator]
    with wsraw.connect(server.port, "/echo") as ws:
        ws.send_text("x" * 100)
        assert ws.read_text() == "x" * 100
        head = frame(BINARY, b"y" * 101)[:8]  # the head and mask only
        ws.sock.sendall(head)
        code, _ = ws.expect_close()
        assert code == 1009
