# Graceful shutdown with WebSockets open, end to end on both event loops: on SIGTERM every open
# WebSocket is closed with 1001 (going away), its app gets websocket.disconnect with 1001, and the
# server exits 0, even when a client never answers the close frame. The app prints its events
# (WS_APP_PRINT=1) because the side channel goes away with the server.
from __future__ import annotations

import signal
import uuid
from collections.abc import Callable

import pytest
from websockets.exceptions import ConnectionClosed

import wsraw
from conftest import ServerProcess

APP = "ws_app:app"
RunServer = Callable[..., ServerProcess]
PRINT = {"WS_APP_PRINT": "1"}


@pytest.fixture(params=["uvloop", "asyncio"])
def loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_sigterm_closes_websockets_with_1001(run_server: RunServer, loop: str) -> None:
    server = run_server(APP, "--loop", loop, env=PRINT)
    raw_tag, lib_tag = uuid.uuid4().hex, uuid.uuid4().hex
    with (
        wsraw.connect(server.port, f"/echo?tag={raw_tag}") as raw,
        wsraw.client(f"ws://127.0.0.1:{server.port}/echo?tag={lib_tag}") as lib,
    ):
        raw.send_text("before")
        assert raw.read_text() == "before"
        lib.send("before")
        assert lib.recv(10) == "before"
        server.signal(signal.SIGTERM)
        assert raw.expect_close(timeout=15)[0] == 1001
        with pytest.raises(ConnectionClosed) as closed:
            lib.recv(15)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
    server.wait_for(f"ws_app event {raw_tag} disconnect:1001:", "stderr", timeout=15)
    server.wait_for(f"ws_app event {lib_tag} disconnect:1001:", "stderr", timeout=15)
    assert server.wait_exit() == 0


@pytest.mark.slow
def test_sigterm_with_a_client_that_never_answers_the_close(
    run_server: RunServer, loop: str
) -> None:
    server = run_server(APP, "--loop", loop, env=PRINT)
    tag = uuid.uuid4().hex
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        server.signal(signal.SIGTERM)
        got = ws.read_message(15)
        assert got.close_code == 1001, got
        # No close frame back, no TCP close: the server must still finish on its own.
        assert server.wait_exit(30) == 0
    server.wait_for(f"ws_app event {tag} disconnect:", "stderr", timeout=5)


def test_sigterm_while_the_app_is_blocked_sending(run_server: RunServer, loop: str) -> None:
    """An app stuck in send() to a client that does not read is not allowed to hold up the
    exit forever."""
    server = run_server(APP, "--loop", loop, "--graceful-timeout", "3", env=PRINT)
    tag = uuid.uuid4().hex
    with wsraw.connect(server.port, f"/flood?tag={tag}&count=100000", rcvbuf=65536):
        server.wait_for(f"ws_app event {tag} accepted", "stderr")
        server.signal(signal.SIGTERM)
        assert server.wait_exit(30) == 0


def test_sigterm_with_no_websockets_open(run_server: RunServer) -> None:
    server = run_server(APP)
    with wsraw.connect(server.port, "/echo") as ws:
        ws.close_handshake()
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
