# Client disconnects end to end (ASGI HTTP spec 2.4+: `http.disconnect`, send() raising an
# OSError subclass once the client is gone; RFC 9112 9.6 closing). A client that goes away
# mid-body, mid-response, or while the app is still thinking is reported to the app, and the
# server goes on serving everyone else. Both FIN (close) and RST (SO_LINGER 0) are covered.
from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from conftest import ServerProcess
from rawhttp import RawClient, build, events, exchange, release, serve, wait_stalled


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve("h1_app:app", "--loop", request.param) as proc:
        yield proc


def still_serving(server: ServerProcess) -> None:
    assert exchange(server.port, build("GET", "/")).body == b"Hello, world!"


@pytest.fixture(params=["fin", "rst"])
def close_how(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def hang_up(client: RawClient, how: str) -> None:
    client.close(reset=how == "rst")


class TestDisconnectMidBody:
    """The client goes away before the whole request body arrived: receive() returns
    http.disconnect (after the bytes that did arrive)."""

    def test_content_length_body(self, server: ServerProcess, close_how: str) -> None:
        tag = uuid.uuid4().hex
        client = RawClient(server.port)
        client.send(build("POST", f"/sha256?tag={tag}", [("Content-Length", "1000000")]))
        client.send(b"a" * 1000)
        assert "started" in events(server, tag, "started")
        hang_up(client, close_how)
        found = events(server, tag, "disconnect")
        assert found[-1].startswith("disconnect:"), found
        assert int(found[-1].split(":")[1]) <= 1000
        still_serving(server)

    def test_chunked_body(self, server: ServerProcess, close_how: str) -> None:
        tag = uuid.uuid4().hex
        client = RawClient(server.port)
        client.send(build("POST", f"/sha256?tag={tag}", [("Transfer-Encoding", "chunked")]))
        client.send(b"5\r\nhello\r\n")
        assert "started" in events(server, tag, "started")
        hang_up(client, close_how)
        found = events(server, tag, "disconnect")
        assert found[-1] in ("disconnect:0", "disconnect:5"), found
        still_serving(server)

    def test_half_close_mid_body(self, server: ServerProcess) -> None:
        """A client that shuts down writing mid-body will never complete it: disconnect."""
        tag = uuid.uuid4().hex
        with RawClient(server.port) as client:
            client.send(build("POST", f"/sha256?tag={tag}", [("Content-Length", "100")]))
            client.send(b"a" * 10)
            assert "started" in events(server, tag, "started")
            client.shutdown_write()
            found = events(server, tag, "disconnect")
            assert found[-1].startswith("disconnect:"), found
        still_serving(server)

    def test_disconnect_while_reading_is_paused(self, server: ServerProcess) -> None:
        """The app reads slowly (reading from the socket is paused) when the client resets."""
        tag = uuid.uuid4().hex
        client = RawClient(server.port)
        client.send(
            build("POST", f"/sha256?tag={tag}&delay=0.05", [("Content-Length", "10000000")])
        )
        client.try_send(b"a" * 2_000_000)
        assert "started" in events(server, tag, "started")
        hang_up(client, "rst")
        found = events(server, tag, "disconnect", timeout=30)
        assert found[-1].startswith("disconnect:"), found
        still_serving(server)


class TestDisconnectWhileStreaming:
    """The client goes away while the app streams its response: the app's next send()
    raises an OSError subclass (ClientDisconnected), even if it was waiting for the client
    to drain."""

    @pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
    def test_send_raises(self, server: ServerProcess, close_how: str, version: str) -> None:
        """The client read part of the stream, stopped, and went away while send() waited."""
        tag = uuid.uuid4().hex
        client = RawClient(server.port, rcvbuf=65536)
        client.send(build("GET", f"/bigstream?tag={tag}&total={1 << 30}", version=version))
        assert client.read_raw(100_000)
        wait_stalled(server, tag)
        hang_up(client, close_how)
        found = events(server, tag, "send-raised|done", timeout=30)
        assert found[-1] == "send-raised:ClientDisconnected:True", found
        still_serving(server)

    def test_client_never_reads_then_goes(self, server: ServerProcess, close_how: str) -> None:
        tag = uuid.uuid4().hex
        client = RawClient(server.port, rcvbuf=65536)
        client.send(build("GET", f"/bigstream?tag={tag}&total={1 << 30}"))
        wait_stalled(server, tag)
        hang_up(client, close_how)
        found = events(server, tag, "send-raised|done", timeout=30)
        assert found[-1] == "send-raised:ClientDisconnected:True", found
        still_serving(server)

    def test_send_raises_when_the_write_fails(self, server: ServerProcess, close_how: str) -> None:
        """The server learns of the disconnect from a failed write, not from a read (reading
        is paused: the app has not read the request body). The app's next send() must raise
        instead of dropping the data, and it must not monopolise the event loop."""
        tag = uuid.uuid4().hex
        client = RawClient(server.port)
        target = f"/bigstream?tag={tag}&gate=1&total={1 << 30}"
        client.send(build("POST", target, [("Content-Length", str(10**8))]))
        client.send(b"b" * 1_000_000)
        assert "started" in events(server, tag, "started")
        hang_up(client, close_how)
        release(server, tag)
        found = events(server, tag, "send-raised|done", timeout=30)
        assert found[-1] == "send-raised:ClientDisconnected:True", found


class TestDisconnectBeforeResponse:
    def test_late_send_raises_after_reset(self, server: ServerProcess) -> None:
        """The client resets while the app has not responded yet: the app's send() raises."""
        tag = uuid.uuid4().hex
        client = RawClient(server.port)
        client.send(build("GET", f"/late?tag={tag}"))
        assert "started" in events(server, tag, "started")
        hang_up(client, "rst")
        # Give the server the reset before the app goes on: a request on a fresh connection
        # is served after the reset was read.
        still_serving(server)
        release(server, tag)
        found = events(server, tag, "send-raised")
        assert found[-1] == "send-raised:ClientDisconnected:True", found

    def test_waiting_for_disconnect_after_body_reset(self, server: ServerProcess) -> None:
        """After the whole body, receive() waits; a reset turns into http.disconnect."""
        tag = uuid.uuid4().hex
        client = RawClient(server.port)
        client.send(build("POST", f"/wait-disconnect?tag={tag}", body=b"done"))
        assert "waiting" in events(server, tag, "waiting")
        hang_up(client, "rst")
        found = events(server, tag, "received")
        assert "received:http.disconnect" in found, found
        still_serving(server)

    def test_waiting_for_disconnect_after_body_fin(self, server: ServerProcess) -> None:
        """As Daphne and other servers do: a closed client is a disconnect for a waiting app
        (long-poll and server-sent-events apps rely on this)."""
        tag = uuid.uuid4().hex
        client = RawClient(server.port)
        client.send(build("POST", f"/wait-disconnect?tag={tag}&timeout=5", body=b"done"))
        assert "waiting" in events(server, tag, "waiting")
        hang_up(client, "fin")
        found = events(server, tag, "received")
        assert "received:http.disconnect" in found, found

    def test_many_disconnects_leave_server_healthy(self, server: ServerProcess) -> None:
        for index in range(20):
            client = RawClient(server.port)
            client.send(build("POST", "/sha256", [("Content-Length", "1000")]) + b"x" * 500)
            hang_up(client, "rst" if index % 2 else "fin")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(5):
                assert http.get("/").text == "Hello, world!"
