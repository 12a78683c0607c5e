# HTTP/1.1 persistent connections end to end (RFC 9112 section 9.3, 9.6; RFC 9110 7.6.1),
# on both event loops: many requests on one connection, HTTP/1.0 keep-alive, Connection: close
# from either side, and that the server closes exactly when it says it will.
from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from conftest import ServerProcess
from rawhttp import RawClient, build, serve


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve("h1_app:app", "--loop", request.param) as proc:
        yield proc


class TestPersistence:
    """RFC 9112 9.3: HTTP/1.1 connections persist unless "close" is signalled."""

    def test_many_requests_on_one_connection(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            ports = set()
            for index in range(100):
                response = client.request(build("GET", f"/headers?i={index}"))
                assert response.status == 200
                assert response.header("connection") is None
                info = response.json()
                assert info["query_string"] == f"i={index}"
                ports.add(info["client"][1])
            assert len(ports) == 1

    def test_bodies_on_one_connection(self, server: ServerProcess) -> None:
        """RFC 9112 6.3: each body is delimited, so the next request parses cleanly."""
        with RawClient(server.port) as client:
            for index in range(20):
                body = b"x" * index * 97
                response = client.request(build("POST", "/echo", body=body))
                assert response.status == 200
                assert response.body == body

    def test_httpx_client_reuses_the_connection(self, server: ServerProcess) -> None:
        with httpx.Client(base_url=server.url) as client:
            ports = {client.get("/headers").json()["client"][1] for _ in range(10)}
        assert len(ports) == 1

    def test_response_is_http_1_1_for_a_1_0_request(self, server: ServerProcess) -> None:
        """RFC 9110 6.2: a server sends its own highest version, 1.1, in the status line."""
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/", version="HTTP/1.0"))
        assert response.version == "HTTP/1.1"
        assert response.status == 200


class TestHTTP10:
    """RFC 9112 9.3 and appendix C.2.2: HTTP/1.0 persists only with Connection: keep-alive."""

    def test_http10_without_keep_alive_closes(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/", version="HTTP/1.0"))
            assert response.status == 200
            assert response.body == b"Hello, world!"
            assert "keep-alive" not in (response.header("connection") or "").lower()
            assert client.wait_closed() == b""

    def test_http10_keep_alive_stays_open(self, server: ServerProcess) -> None:
        request = build("GET", "/", [("Connection", "keep-alive")], version="HTTP/1.0")
        with RawClient(server.port) as client:
            for _ in range(3):
                response = client.request(request)
                assert response.status == 200
                assert response.header("connection") == "keep-alive"
                assert response.framing == "content-length"
                assert response.body == b"Hello, world!"

    def test_http10_keep_alive_case_insensitive(self, server: ServerProcess) -> None:
        request = build("GET", "/", [("Connection", "Keep-Alive")], version="HTTP/1.0")
        with RawClient(server.port) as client:
            assert client.request(request).status == 200
            assert client.request(request).status == 200

    def test_http10_keep_alive_post(self, server: ServerProcess) -> None:
        request = build(
            "POST", "/echo", [("Connection", "keep-alive")], body=b"abc", version="HTTP/1.0"
        )
        with RawClient(server.port) as client:
            assert client.request(request).body == b"abc"
            assert client.request(request).body == b"abc"

    def test_http10_keep_alive_streamed_response_closes(self, server: ServerProcess) -> None:
        """RFC 9112 6.3 (8): without a length a 1.0 response ends at close, so no keep-alive."""
        request = build("GET", "/stream", [("Connection", "keep-alive")], version="HTTP/1.0")
        with RawClient(server.port) as client:
            response = client.request(request)
            assert response.framing == "close"
            assert response.body == b"part0;part1;part2;"
            assert response.header("connection") != "keep-alive"


class TestConnectionClose:
    """RFC 9112 9.6: "close" ends the connection after the response that carries it."""

    @pytest.mark.parametrize("value", ["close", "Close", "CLOSE", "keep-alive, close"])
    def test_client_close(self, server: ServerProcess, value: str) -> None:
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/", [("Connection", value)]))
            assert response.status == 200
            assert response.body == b"Hello, world!"
            assert response.header("connection") == "close"
            assert client.wait_closed() == b""

    def test_client_close_after_keep_alive_requests(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            assert client.request(build("GET", "/")).status == 200
            response = client.request(build("POST", "/echo", [("Connection", "close")], b"bye"))
            assert response.body == b"bye"
            assert response.header("connection") == "close"
            assert client.wait_closed() == b""

    def test_client_close_with_streamed_response(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/stream", [("Connection", "close")]))
            assert response.framing == "chunked"
            assert response.body == b"part0;part1;part2;"
            assert response.header("connection") == "close"
            assert client.wait_closed() == b""

    def test_app_connection_close(self, server: ServerProcess) -> None:
        """The app's `connection: close` closes after its response, stated once on the wire."""
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/close"))
            assert response.status == 200
            assert response.body == b"closing"
            assert response.get_all("connection") == ["close"]
            assert client.wait_closed() == b""

    def test_app_connection_close_http10_keep_alive(self, server: ServerProcess) -> None:
        request = build("GET", "/close", [("Connection", "keep-alive")], version="HTTP/1.0")
        with RawClient(server.port) as client:
            response = client.request(request)
            assert response.body == b"closing"
            assert response.get_all("connection") == ["close"]
            assert client.wait_closed() == b""

    def test_pipelined_request_after_close_is_not_answered(self, server: ServerProcess) -> None:
        """RFC 9112 9.6: nothing after the request with "close" is processed."""
        data = (
            build("GET", "/sleep?id=a")
            + build("GET", "/sleep?id=b", [("Connection", "close")])
            + build("GET", "/sleep?id=c")
        )
        with RawClient(server.port) as client:
            client.send(data)
            assert client.read_response().body == b"a:"
            last = client.read_response()
            assert last.body == b"b:"
            assert last.header("connection") == "close"
            assert client.wait_closed() == b""

    def test_half_closed_client_gets_its_response(self, server: ServerProcess) -> None:
        """A client that shuts down its sending side after the request still gets the answer."""
        with RawClient(server.port) as client:
            client.send(build("POST", "/echo", body=b"half"))
            client.shutdown_write()
            response = client.read_response()
            assert response.body == b"half"
            assert client.wait_closed() == b""


class TestClients:
    def test_curl_http10(self, server: ServerProcess) -> None:
        result = subprocess.run(
            ["curl", "-sS", "--http1.0", "-i", server.url + "/"],
            capture_output=True,
            timeout=20,
            check=True,
        )
        assert result.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
        assert result.stdout.endswith(b"\r\n\r\nHello, world!")

    def test_curl_reuses_connection(self, server: ServerProcess) -> None:
        result = subprocess.run(
            ["curl", "-sS", server.url + "/headers", server.url + "/headers"],
            capture_output=True,
            timeout=20,
            check=True,
        )
        decoder = json.JSONDecoder()
        first, end = decoder.raw_decode(result.stdout.decode())
        second, _ = decoder.raw_decode(result.stdout.decode()[end:])
        assert first["client"] == second["client"]
