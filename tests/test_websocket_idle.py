# Many idle WebSockets on one server: 10,000 connections, each past its handshake and accepted
# by the app, keep the server under 200 MB resident, and the server still answers on any of them
# (and on new ones). The test raises its own RLIMIT_NOFILE; the server inherits it.
from __future__ import annotations

import resource
import socket
from collections.abc import Callable, Iterator

import pytest

import wsraw
from conftest import ServerProcess
from rawhttp import RawClient, build

APP = "ws_app:app"
RunServer = Callable[..., ServerProcess]
CONNECTIONS = 10_000
BATCH = 500
RSS_LIMIT_KIB = 200 * 1024


@pytest.fixture
def many_files() -> Iterator[None]:
    """Raise the soft file limit for this process (and the server it starts) for the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CONNECTIONS + 1000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_batch(port: int, size: int) -> list[socket.socket]:
    """`size` WebSocket connections past their 101 (handshakes sent together, then read)."""
    socks = []
    for _ in range(size):
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        socks.append(sock)
    for sock in socks:
        sock.sendall(wsraw.handshake_request("/echo", key=wsraw.new_key()))
    for sock in socks:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, f"closed during the handshake after {head!r}"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101 "), head[:200]
        assert head.endswith(b"\r\n\r\n"), "the server sent more than the 101"
    return socks


def echo_on(sock: socket.socket, text: bytes) -> bytes:
    sock.sendall(wsraw.frame(wsraw.TEXT, text))
    reply = b""
    while len(reply) < 2 + len(text):
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        reply += chunk
    return reply


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ten_thousand_idle_websockets(run_server: RunServer, many_files: None) -> None:
    server = run_server(APP)
    socks: list[socket.socket] = []
    try:
        while len(socks) < CONNECTIONS:
            socks += open_batch(server.port, min(BATCH, CONNECTIONS - len(socks)))
        rss = server.rss_kib()
        assert rss < RSS_LIMIT_KIB, f"{CONNECTIONS} idle WebSockets: server RSS {rss} KiB"
        for index in (0, CONNECTIONS // 2, CONNECTIONS - 1):
            text = b"idle %d" % index
            assert echo_on(socks[index], text) == wsraw.frame(wsraw.TEXT, text, mask=False)
        with RawClient(server.port) as client:
            assert client.request(build("GET", "/still-serving")).status == 200
    finally:
        for sock in socks:
            sock.close()
    with wsraw.connect(server.port, "/echo", timeout=60) as ws:
        ws.send_text("after the crowd left")
        assert ws.read_text() == "after the crowd left"
