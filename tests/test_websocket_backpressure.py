# WebSocket flow control end to end, both directions. A client that stops reading while the app
# keeps sending: the app's send() blocks, the server's memory stays bounded, and once the client
# reads again it gets every message in order. A client that keeps sending while the app never
# calls receive(): the server stops reading (the client's writes block), memory stays bounded,
# and once the app reads it gets every message.
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest

import wsraw
from conftest import ServerProcess
from rawhttp import events, progress, release, serve, wait_stalled
from wsraw import BINARY, TEXT

APP = "ws_app:app"
MESSAGE = 65536
RSS_GROWTH_LIMIT_KIB = 32 * 1024


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve(APP, "--loop", request.param) as proc:
        yield proc


def test_client_that_stops_reading_blocks_the_app_then_gets_everything(
    server: ServerProcess,
) -> None:
    tag = uuid.uuid4().hex
    count = 4096  # 256 MiB the app would send if nothing held it back
    before = server.rss_kib()
    target = f"/flood?tag={tag}&size={MESSAGE}&count={count}"
    with wsraw.connect(server.port, target, rcvbuf=MESSAGE, timeout=30) as ws:
        stalled = wait_stalled(server, tag)
        assert stalled["sent"] < count * MESSAGE // 4, stalled
        grown = server.rss_kib() - before
        assert grown < RSS_GROWTH_LIMIT_KIB, f"server RSS grew by {grown} KiB while stalled"
        # Still stalled a moment later: nothing was dropped to make room.
        assert not progress(server, tag)["done"]
        for index in range(count):
            data = ws.read_binary()
            assert len(data) == MESSAGE
            assert int.from_bytes(data[:8], "big") == index
        assert ws.read_text() == "done"
        assert progress(server, tag)["done"]
        ws.close_handshake()
    assert events(server, tag, "disconnect")[-1].startswith("disconnect:1000:")


def test_client_that_never_reads_then_goes_away(server: ServerProcess) -> None:
    """The app is blocked in send() when the client resets: it learns of the disconnect."""
    tag = uuid.uuid4().hex
    target = f"/flood?tag={tag}&size={MESSAGE}&count=100000"
    ws = wsraw.connect(server.port, target, rcvbuf=MESSAGE)
    wait_stalled(server, tag)
    ws.close(reset=True)
    found = events(server, tag, "send-raised|disconnect|done", timeout=30)
    assert not found[-1].startswith("done"), found
    assert not progress(server, tag)["done"]


def test_app_that_never_receives_stops_the_server_reading(server: ServerProcess) -> None:
    tag = uuid.uuid4().hex
    payload = bytes(range(256)) * (MESSAGE // 256)
    with wsraw.connect(server.port, f"/never-receive?tag={tag}", timeout=60) as ws:
        assert "accepted" in events(server, tag, "accepted")
        before = server.rss_kib()
        frames, _, rest = ws.send_until_blocked(wsraw.frame(BINARY, payload), limit=512 << 20)
        grown = server.rss_kib() - before
        assert grown < RSS_GROWTH_LIMIT_KIB, f"server RSS grew by {grown} KiB"
        time.sleep(0.5)
        assert server.rss_kib() - before < RSS_GROWTH_LIMIT_KIB
        release(server, tag)
        ws.send(rest)
        ws.send_frame(TEXT, b"end")
        assert ws.read_text(60) == f"received:{frames}:{frames * MESSAGE}"
        ws.send_text("and after that, echo")
        assert ws.read_text() == "and after that, echo"
        ws.close_handshake()


def test_slow_app_reader_gets_every_message_in_order(server: ServerProcess) -> None:
    """Many small messages sent faster than the app reads them arrive complete and in order
    (the server pauses reading rather than dropping or reordering)."""
    tag = uuid.uuid4().hex
    count = 20000
    with wsraw.connect(server.port, f"/echo?tag={tag}", timeout=60) as ws:
        batch = b"".join(wsraw.frame(TEXT, f"{i:06d}".encode()) for i in range(count))
        ws.sock.sendall(batch)
        for index in range(count):
            assert ws.read_text(30) == f"{index:06d}"
        ws.close_handshake()


def test_keepalive_spares_a_client_held_back_by_a_slow_app(
    run_server: Callable[..., ServerProcess],
) -> None:
    """While reading is paused because the app is behind, the client's pongs cannot be read:
    the keep-alive must not take that for a dead peer (no 1011), and no ping is due either,
    since the client was evidently sending."""
    server = run_server(APP, "--ping-interval", "0.2", "--ping-timeout", "0.2")
    tag = uuid.uuid4().hex
    payload = bytes(MESSAGE)
    with wsraw.connect(server.port, f"/never-receive?tag={tag}", timeout=60) as ws:
        assert "accepted" in events(server, tag, "accepted")
        frames, _, rest = ws.send_until_blocked(wsraw.frame(BINARY, payload), limit=512 << 20)
        time.sleep(1.5)  # several ping intervals and timeouts with reading paused
        release(server, tag)
        ws.send(rest)
        ws.send_frame(TEXT, b"end")
        assert ws.read_text(60) == f"received:{frames}:{frames * MESSAGE}"
        ws.close_handshake()
    assert not any(e.startswith("disconnect:1011") for e in events(server, tag, "disconnect"))
