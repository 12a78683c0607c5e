# HTTP/1.1's write batch (protocols/write_batch.py): a small complete response is corked and
# written at the end of the loop iteration together with the other connections'. What must hold:
# every corked response leaves (many connections answered in the same iteration, a client that
# half-closes right after its request), and nothing overtakes it on its connection (a 400 for
# the next pipelined request, a 101 for a pipelined WebSocket handshake, a 100 Continue for the
# next request, the close after `Connection: close`). The batch flush keeps serving the other
# connections when one of them fails.
from __future__ import annotations

import logging
import select
import socket
from collections.abc import Iterator

import pytest

from conftest import ServerProcess
from laurelin.protocols.write_batch import WriteBatch
from rawhttp import RawClient, build, serve
from wsraw import WSClient, handshake_request, new_key


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve("h1_app:app", "--loop", request.param) as proc:
        yield proc


@pytest.fixture(scope="module")
def ws_server() -> Iterator[ServerProcess]:
    with serve("ws_app:app") as proc:
        yield proc


def test_many_connections_answered_in_one_burst(server: ServerProcess) -> None:
    """Requests that arrive together are answered together; every response is complete."""
    clients = [RawClient(server.port) for _ in range(50)]
    try:
        for index, client in enumerate(clients):
            client.send(build("POST", "/echo", body=b"%d" % index))
        for index, client in enumerate(clients):
            assert client.read_response().body == b"%d" % index
        # And again on the same connections: the batch is not left waiting for anything.
        for client in clients:
            client.send(build("GET", "/"))
        for client in clients:
            assert client.read_response().body == b"Hello, world!"
    finally:
        for client in clients:
            client.close()


def test_request_then_fin_in_one_packet(server: ServerProcess) -> None:
    """The transport closes once the client's FIN is read: the corked answer goes first."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    try:
        sock.sendall(build("GET", "/"))
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        assert received.startswith(b"HTTP/1.1 200 OK\r\n")
        assert received.endswith(b"Hello, world!")
    finally:
        sock.close()


def test_error_for_the_next_pipelined_request_comes_after(server: ServerProcess) -> None:
    with RawClient(server.port) as client:
        client.send(build("GET", "/") + b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n")
        assert client.read_response().body == b"Hello, world!"
        assert client.read_response().status == 400
        assert client.wait_closed() == b""


def test_connection_close_response_then_the_close(server: ServerProcess) -> None:
    with RawClient(server.port) as client:
        client.send(build("GET", "/", [("Connection", "close")]) + build("GET", "/"))
        response = client.read_response()
        assert response.body == b"Hello, world!"
        assert response.header("connection") == "close"
        assert client.wait_closed() == b""


def test_continue_for_the_next_request_comes_after(server: ServerProcess) -> None:
    with RawClient(server.port) as client:
        expect = build("POST", "/echo", [("Expect", "100-continue"), ("Content-Length", "4")])
        client.send(build("GET", "/") + expect)
        assert client.read_response().body == b"Hello, world!"
        assert client.read_response().status == 100
        client.send(b"body")
        assert client.read_response().body == b"body"


def test_websocket_handshake_pipelined_after_a_response(ws_server: ServerProcess) -> None:
    with WSClient(ws_server.port) as ws:
        ws.key = new_key()
        ws.send(build("GET", "/plain") + handshake_request("/echo", key=ws.key))
        first = ws.read_response()
        assert first.status == 200, first.raw
        assert ws.read_response().status == 101
        ws.send_text("after the batch")
        assert ws.read_text() == "after the batch"
        assert ws.close_handshake() == (1000, "")


class _Conn:
    """A stand-in for a corked connection (a real transport never fails this way on demand)."""

    def __init__(self, fail: bool, abort_fails: bool = False) -> None:
        self.fail = fail
        self.abort_fails = abort_fails
        self.flushed = False
        self.aborted = False

    def _uncork(self) -> None:
        if self.fail:
            raise RuntimeError("the transport broke")
        self.flushed = True

    def abort(self) -> None:
        self.aborted = True
        if self.abort_fails:
            raise OSError("the reset failed too")


def test_one_failing_connection_does_not_hold_back_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        batch = WriteBatch(loop)
        broken, fine = _Conn(fail=True), _Conn(fail=False)
        worse = _Conn(fail=True, abort_fails=True)
        batch.add(broken)
        batch.add(worse)
        batch.add(fine)
        with caplog.at_level(logging.ERROR, logger="laurelin.error"):
            loop.run_until_complete(asyncio.sleep(0))
        assert fine.flushed and not fine.aborted
        assert broken.aborted
        assert "Error writing a response" in caplog.text
        assert "Error resetting a connection" in caplog.text
        # The next iteration's batch starts empty and is flushed again.
        again = _Conn(fail=False)
        batch.add(again)
        loop.run_until_complete(asyncio.sleep(0))
        assert again.flushed
    finally:
        loop.close()


def test_nothing_is_written_twice(server: ServerProcess) -> None:
    """Keep-alive requests one after another: exactly one response each, nothing extra."""
    with RawClient(server.port) as client:
        for _ in range(20):
            assert client.request(build("GET", "/")).body == b"Hello, world!"
        ready, _, _ = select.select([client.sock], [], [], 0.3)
        assert not ready and not client.buffer
