# What a WebSocket client cannot make the server hold, and the closing handshake when frames
# were held back: a flood of tiny frames while the app is not receiving (the server stops
# parsing once the app's queue is full, not only reading), pings from a client that reads
# nothing (no unbounded queue of pongs: the server stops reading while it cannot write), and a
# frame split around the app's close (the frame's head, held by the server, must reach the
# framing before the rest, or the rest is misread as frames of its own).
from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

import wsraw
from conftest import ServerProcess
from rawhttp import events, release, serve
from wsraw import BINARY, CLOSE, PING, TEXT, frame

APP = "ws_app:app"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    # The minimum output rate is off: a client here stops reading on purpose for as long as
    # its sends take, which on a loaded machine can pass --data-rate-grace, and what is
    # tested is that the server stops reading meanwhile, not that it drops such a client
    # (tests/security/test_attack_slow_clients.py covers that).
    with serve(APP, "--min-response-data-rate", "0") as proc:
        yield proc


def test_tiny_frames_while_the_app_is_behind(server: ServerProcess) -> None:
    tag = uuid.uuid4().hex
    empty = frame(BINARY, b"", mask_key=b"\x01\x02\x03\x04")
    blob = empty * 43690  # 256 KiB of empty messages: one read's worth
    with wsraw.connect(server.port, f"/never-receive?tag={tag}", timeout=60) as ws:
        assert "accepted" in events(server, tag, "accepted")
        before = server.rss_kib()
        _, sent, rest = ws.send_until_blocked(blob, limit=256 << 20)
        grown = server.rss_kib() - before
        # Parsed and queued, those messages would cost about 8 MB per read.
        assert grown < 4096, f"server RSS grew by {grown} KiB for {sent} bytes of empty frames"
        release(server, tag)
        ws.send(rest)
        ws.send_frame(TEXT, b"end")
        count = (sent + len(rest)) // len(empty)
        assert ws.read_text(60) == f"received:{count}:0"
        ws.close_handshake()


def test_pings_from_a_client_that_reads_nothing(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo", rcvbuf=4096, timeout=60) as ws:
        ping = frame(PING, b"p" * 125)
        _, sent, rest = ws.send_until_blocked(ping * 512, limit=64 << 20)
        assert sent < 64 << 20
        # Reading again (while the rest goes out: the server reads only as we drain its
        # pongs), the client gets every pong, then the server is as before.
        sender = threading.Thread(target=ws.send, args=(rest + frame(TEXT, b"still here"),))
        sender.start()
        assert ws.read_text(60) == "still here"
        sender.join(10)
        assert not sender.is_alive()
        ws.close_handshake()


def test_frame_split_around_the_apps_close(server: ServerProcess) -> None:
    """The app closes while the server holds the first bytes of a frame. The rest of that
    frame is shaped to read as two pings if it were taken for the start of a frame: the
    server must answer them with nothing after its close frame, and finish the handshake."""
    tag = uuid.uuid4().hex
    zero_mask = b"\0\0\0\0"  # the payload is sent as it is: its bytes are chosen below
    shaped = frame(PING, b"x" * 125, mask_key=zero_mask) + frame(
        PING, b"y" * 13, mask_key=zero_mask
    )
    payload = b"h" * 42 + shaped
    whole = frame(BINARY, payload, mask_key=zero_mask)
    assert len(whole) == 8 + 42 + 150  # head, then what is held, then the two would-be pings
    with wsraw.connect(server.port, f"/close?tag={tag}&first=1&code=4000", timeout=10) as ws:
        ws.sock.sendall(frame(TEXT, b"go") + whole[:50])
        closing = ws.read_frame()
        assert (closing.opcode, closing.close_code) == (CLOSE, 4000)
        ws.sock.sendall(whole[50:] + frame(CLOSE, wsraw.close_payload(4000)))
        ws.sock.settimeout(10)
        after = b""
        while chunk := ws.sock.recv(4096):
            after += chunk
        assert after == b"", f"frames after the close frame: {after!r}"
    assert events(server, tag, "disconnect")[-1] == "disconnect:4000:"
