# WebSocket limits and timers, Daphne's flags end to end: --websocket-max-message-size and
# --websocket-max-frame-size (close 1009; 0 = no limit, a 16 MiB message round-trips),
# --ws-per-message-deflate (RFC 7692 negotiated or not; a deflate bomb gets 1009 without the
# server's memory growing), --websocket_timeout (the server closes with 1000),
# --websocket_connect_timeout (403 for an app that does not accept in time) and
# --ping-interval/--ping-timeout (1011 for a client that never answers a ping; one that answers
# stays connected).
from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

import wsraw
from conftest import ServerProcess
from rawhttp import events, serve
from wsraw import BINARY, CONTINUATION, PING, TEXT, frame

APP = "ws_app:app"
RunServer = Callable[..., ServerProcess]
DEFLATE = "permessage-deflate; client_max_window_bits"


@pytest.fixture(scope="module")
def limited() -> Iterator[ServerProcess]:
    with serve(
        APP,
        "--websocket-max-message-size",
        "100000",
        "--websocket-max-frame-size",
        "50000",
        "--ws-per-message-deflate",
        "false",
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def unlimited() -> Iterator[ServerProcess]:
    with serve(APP, "--websocket-max-message-size", "0", "--websocket-max-frame-size", "0") as p:
        yield p


@pytest.fixture(scope="module")
def default() -> Iterator[ServerProcess]:
    with serve(APP) as proc:
        yield proc


def new_tag() -> str:
    return uuid.uuid4().hex


def url(server: ServerProcess, target: str) -> str:
    return f"ws://127.0.0.1:{server.port}{target}"


def disconnect_event(server: ServerProcess, tag: str, timeout: float = 10.0) -> str:
    found = events(server, tag, "disconnect", timeout)
    matching = [event for event in found if event.startswith("disconnect:")]
    assert matching, found
    return matching[-1]


# -- message and frame size ------------------------------------------------------------------------


def test_frame_over_the_frame_limit_is_1009(limited: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.connect(limited.port, f"/echo?tag={tag}") as ws:
        ws.try_send(frame(BINARY, b"x" * 50001))
        assert ws.expect_close(skip_data=False)[0] == 1009
    assert disconnect_event(limited, tag).startswith("disconnect:1009:")


def test_message_over_the_message_limit_in_small_frames_is_1009(limited: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.connect(limited.port, f"/echo?tag={tag}") as ws:
        ws.try_send(frame(TEXT, b"y" * 40000, fin=False))
        ws.try_send(frame(CONTINUATION, b"y" * 40000, fin=False))
        ws.try_send(frame(CONTINUATION, b"y" * 40000, fin=True))
        assert ws.expect_close(skip_data=False)[0] == 1009
    assert disconnect_event(limited, tag).startswith("disconnect:1009:")


def test_messages_at_the_limits_go_through(limited: ServerProcess) -> None:
    with wsraw.connect(limited.port, "/echo") as ws:
        ws.send_binary(b"z" * 50000)
        assert ws.read_binary() == b"z" * 50000
        ws.send_binary(b"w" * 100000, fragments=2)
        assert ws.read_binary() == b"w" * 100000
        ws.send_text("v" * 90000, fragments=3)
        assert ws.read_text() == "v" * 90000


def test_oversized_declared_length_is_refused_before_the_payload(limited: ServerProcess) -> None:
    """A header announcing 1 GiB is refused at once: the server does not wait for the bytes."""
    with wsraw.connect(limited.port, "/echo") as ws:
        ws.send(bytes([0x82, 0x80 | 127]) + (1 << 30).to_bytes(8, "big") + b"mask")
        assert ws.expect_close(skip_data=False)[0] == 1009


def test_default_limit_is_one_mebibyte(default: ServerProcess) -> None:
    with wsraw.connect(default.port, "/echo") as ws:
        ws.try_send(frame(BINARY, b"x" * ((1 << 20) + 1)))
        assert ws.expect_close(skip_data=False)[0] == 1009


def test_16_mib_message_round_trips_without_limits(unlimited: ServerProcess) -> None:
    data = os.urandom(16 << 20)
    with wsraw.client(url(unlimited, "/echo"), max_size=None, compression=None) as ws:
        ws.send(data)
        echoed = ws.recv(60)
    assert isinstance(echoed, bytes)
    assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(data).hexdigest()


def test_16_mib_text_in_many_fragments_without_limits(unlimited: ServerProcess) -> None:
    text = "0123456789abcdef" * (1 << 20)
    with wsraw.connect(unlimited.port, "/echo", timeout=60) as ws:
        ws.send_text(text, fragments=256)
        assert ws.read_text(60) == text


# -- permessage-deflate ----------------------------------------------------------------------------


def test_deflate_is_negotiated_by_default(default: ServerProcess) -> None:
    text = "compressible " * 20000
    with wsraw.client(url(default, "/echo")) as ws:
        assert ws.response is not None
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in extensions
        ws.send(text)
        assert ws.recv(10) == text
        ws.send(b"\x00" * 500000)
        assert ws.recv(10) == b"\x00" * 500000


def test_deflate_by_hand(default: ServerProcess) -> None:
    """A compressed message from a raw client is inflated; the reply may be compressed."""
    with wsraw.connect(default.port, "/echo", extensions=DEFLATE) as ws:
        assert ws.deflate
        ws.send_frame(TEXT, wsraw.deflate([b"hello ", b"deflate"]), rsv=4)
        assert ws.read_text() == "hello deflate"
        ws.send_frame(BINARY, b"uncompressed")
        assert ws.read_binary() == b"uncompressed"


def test_deflate_off_is_not_negotiated(limited: ServerProcess) -> None:
    with wsraw.client(url(limited, "/echo")) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("plain " * 1000)
        assert ws.recv(10) == "plain " * 1000
    with wsraw.connect(limited.port, "/echo", extensions=DEFLATE) as ws:
        assert not ws.deflate
        ws.try_send(frame(TEXT, wsraw.deflate([b"compressed anyway"]), rsv=4))
        assert ws.expect_close(skip_data=False)[0] == 1002


def test_deflate_bomb_is_1009_without_memory_growth(run_server: RunServer) -> None:
    """256 MiB of zeros compress to ~260 KB, under the 1 MiB frame limit; inflating stops at
    the 1 MiB message limit. The server's peak RSS (VmHWM) shows any transient spike."""
    server = run_server(APP)
    tag = new_tag()
    bomb = wsraw.deflate([b"\0" * (1 << 20)] * 256)
    assert len(bomb) < 1 << 20
    with wsraw.connect(server.port, f"/echo?tag={tag}", extensions=DEFLATE) as ws:
        assert ws.deflate
        before = server.rss_kib()
        peak_before = wsraw.peak_rss_kib(server.pid)
        ws.try_send(frame(BINARY, bomb, rsv=4))
        assert ws.expect_close(skip_data=False)[0] == 1009
    peak = wsraw.peak_rss_kib(server.pid)
    assert peak < max(peak_before, before + 32 * 1024), (
        f"server peak RSS {peak} KiB; {before} KiB before the bomb"
    )
    assert disconnect_event(server, tag).startswith("disconnect:1009:")


def test_deflate_bomb_in_fragments_is_1009(default: ServerProcess) -> None:
    tag = new_tag()
    bomb = wsraw.deflate([b"\0" * (1 << 20)] * 16)
    third = len(bomb) // 3
    with wsraw.connect(default.port, f"/echo?tag={tag}", extensions=DEFLATE) as ws:
        ws.try_send(frame(BINARY, bomb[:third], rsv=4, fin=False))
        ws.try_send(frame(CONTINUATION, bomb[third : 2 * third], fin=False))
        ws.try_send(frame(CONTINUATION, bomb[2 * third :], fin=True))
        assert ws.expect_close(skip_data=False)[0] == 1009
    assert disconnect_event(default, tag).startswith("disconnect:1009:")


# -- timers ----------------------------------------------------------------------------------------


def collect_pings(ws: wsraw.WSClient, count: int, timeout: float = 20.0) -> None:
    """Read (answering pings) until the server has pinged `count` times; no data, no close."""
    deadline = time.monotonic() + timeout
    while len(ws.pings) < count:
        assert time.monotonic() < deadline, f"only {len(ws.pings)} pings in {timeout}s"
        try:
            message = ws.read_message(0.5)
        except TimeoutError:
            continue
        raise AssertionError(f"expected only pings, got {message}")


def test_websocket_timeout_closes_with_1000(run_server: RunServer) -> None:
    server = run_server(APP, "--websocket_timeout", "2")
    tag = new_tag()
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        ws.send_text("before the deadline")
        assert ws.read_text() == "before the deadline"
        assert ws.expect_close(timeout=15)[0] == 1000
    assert disconnect_event(server, tag).startswith("disconnect:")


def test_websocket_timeout_minus_one_means_none(run_server: RunServer) -> None:
    server = run_server(
        APP, "--websocket_timeout", "-1", "--ping-interval", "0.5", "--ping-timeout", "1"
    )
    with wsraw.connect(server.port, "/echo") as ws:
        collect_pings(ws, 2)
        ws.send_text("still open")
        assert ws.read_text() == "still open"


def test_connect_timeout_refuses_with_403(run_server: RunServer) -> None:
    server = run_server(APP, "--websocket_connect_timeout", "1")
    tag = new_tag()
    with wsraw.WSClient(server.port) as ws:
        response = ws.handshake(f"/slow-accept?tag={tag}&s=30", key=wsraw.new_key())
        assert response.status == 403, response.raw
        ws.wait_closed()
    found = events(server, tag, "disconnect|waited|accept")
    assert found[-1].startswith("disconnect:"), found


def test_app_accepting_within_the_connect_timeout(run_server: RunServer) -> None:
    server = run_server(APP, "--websocket_connect_timeout", "10")
    with wsraw.connect(server.port, "/slow-accept?s=0.5") as ws:
        ws.send_text("accepted late but in time")
        assert ws.read_text() == "accepted late but in time"


def test_unanswered_ping_closes_with_1011(run_server: RunServer) -> None:
    server = run_server(APP, "--ping-interval", "1", "--ping-timeout", "1")
    tag = new_tag()
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        first = ws.read_frame(10)
        assert first.opcode == PING, first
        got = ws.read_message(10, answer_pings=False)
        assert got.close_code == 1011, got
        ws.send_close(1011)
        ws.wait_closed()
    assert disconnect_event(server, tag).startswith("disconnect:1011:")


def test_answered_pings_keep_the_connection(run_server: RunServer) -> None:
    server = run_server(APP, "--ping-interval", "0.5", "--ping-timeout", "1")
    with wsraw.connect(server.port, "/echo") as ws:
        collect_pings(ws, 3)
        ws.send_text("alive")
        assert ws.read_text() == "alive"


def test_pings_keep_coming_when_answered_quickly(run_server: RunServer) -> None:
    """Once the pong is in, the next ping comes after another --ping-interval of silence, not
    only after --ping-timeout (Daphne pings every interval; a proxy's idle timeout between
    pings is what the interval is for)."""
    server = run_server(APP, "--ping-interval", "0.5", "--ping-timeout", "60")
    with wsraw.connect(server.port, "/echo") as ws:
        collect_pings(ws, 3, timeout=20)


def test_websockets_client_answers_pings_and_stays(run_server: RunServer) -> None:
    server = run_server(APP, "--ping-interval", "0.5", "--ping-timeout", "1")
    with wsraw.client(url(server, "/echo"), ping_interval=None) as ws:
        # The client stays silent for 3 s: the server pings, the library answers in its
        # background thread, and nothing else arrives.
        for _ in range(6):
            with pytest.raises(TimeoutError):
                ws.recv(0.5)
        ws.send("alive")
        assert ws.recv(10) == "alive"
