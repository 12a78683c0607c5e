# Connection timers end to end (RFC 9110 15.5.9 408; RFC 9112 9.5 closing idle connections),
# with --header-read-timeout 1 and --timeout-keep-alive 1: a client that does not finish its
# request head in time gets 408 and is closed (however it dribbles bytes), an idle keep-alive
# connection is closed quietly, and neither timer touches a request whose head is complete
# (slow bodies, slow apps). Waits are bounded; nothing asserts how long anything took.
from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import ServerProcess
from rawhttp import ConnectionClosed, RawClient, build, serve


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve(
        "h1_app:app",
        "--loop",
        request.param,
        "--header-read-timeout",
        "1",
        "--timeout-keep-alive",
        "1",
    ) as proc:
        yield proc


def assert_408_and_close(client: RawClient) -> None:
    response = client.read_response()
    assert response.status == 408
    assert response.header("connection") == "close"
    assert response.header("content-type") == "text/html; charset=utf-8"
    assert client.wait_closed() == b""


class TestHeaderReadTimeout:
    """RFC 9110 15.5.9: a request head not received in time: 408, then close."""

    def test_partial_head(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
            assert_408_and_close(client)

    def test_partial_request_line(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            client.send(b"GET /some")
            assert_408_and_close(client)

    def test_silent_client(self, server: ServerProcess) -> None:
        """A client that connects and sends nothing: 408 (or just the close), never a hang."""
        with RawClient(server.port) as client:
            try:
                response = client.read_response()
            except ConnectionClosed as closed:
                assert closed.partial == b""
            else:
                assert response.status == 408
                assert client.wait_closed() == b""

    def test_dribbling_client(self, server: ServerProcess) -> None:
        """Slowloris: a byte now and then does not extend the deadline of the head."""
        head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"s" * 1000
        with RawClient(server.port) as client:
            for index in range(len(head)):
                if not client.try_send(head[index : index + 1]):
                    break
                if client.poll(timeout=0.1):
                    break
            else:
                pytest.fail("the server let a head dribble in for 100 s")
            assert_408_and_close(client)

    def test_others_served_meanwhile(self, server: ServerProcess) -> None:
        idle = [RawClient(server.port) for _ in range(5)]
        try:
            for index, client in enumerate(idle):
                client.send(b"GET /" + str(index).encode())
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for _ in range(5):
                    assert http.get("/").text == "Hello, world!"
            for client in idle:
                assert_408_and_close(client)
        finally:
            for client in idle:
                client.close()

    def test_partial_second_request_on_keep_alive(self, server: ServerProcess) -> None:
        """After a response, a started but unfinished next head also times out with 408."""
        with RawClient(server.port) as client:
            assert client.request(build("GET", "/")).status == 200
            client.send(b"GET / HTTP/1.1\r\nHost")
            assert_408_and_close(client)

    def test_slow_body_is_not_a_slow_head(self, server: ServerProcess) -> None:
        """The timer covers the head only: a body that takes longer is still read."""
        with RawClient(server.port) as client:
            client.send(build("POST", "/echo", [("Content-Length", "10")]))
            time.sleep(1.5)
            client.send(b"01234")
            time.sleep(1.5)
            client.send(b"56789")
            response = client.read_response()
            assert (response.status, response.body) == (200, b"0123456789")

    def test_slow_app_is_not_timed_out(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/sleep?id=slow&s=2.5"))
            assert (response.status, response.body) == (200, b"slow:")


class TestKeepAliveTimeout:
    """RFC 9112 9.5: an idle persistent connection may be closed; no response is sent."""

    def test_idle_connection_closed(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            assert client.request(build("GET", "/")).status == 200
            assert client.wait_closed() == b""

    def test_idle_after_several_requests(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            for _ in range(3):
                assert client.request(build("POST", "/echo", body=b"x")).body == b"x"
            assert client.wait_closed() == b""

    def test_slow_app_longer_than_keep_alive(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/sleep?id=a&s=1.5"))
            assert response.body == b"a:"
            assert client.request(build("GET", "/")).status == 200
