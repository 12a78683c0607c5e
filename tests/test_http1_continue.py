# `Expect: 100-continue` end to end (RFC 9110 section 10.1.1, RFC 9112 section 9.3):
# the interim `100 Continue` is sent only once the app first asks for the body (receive()),
# never when the app answers without reading, and never to an HTTP/1.0 client.
from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from conftest import ServerProcess
from rawhttp import ConnectionClosed, RawClient, build, events, release, serve

EXPECT = ("Expect", "100-continue")


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve("h1_app:app", "--loop", request.param) as proc:
        yield proc


class TestContinueOnReceive:
    """RFC 9110 10.1.1: the server may wait for the app before asking for the content."""

    def test_100_sent_when_app_reads(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            client.send(build("POST", "/echo", [EXPECT, ("Content-Length", "5")]))
            interim = client.read_response()
            assert interim.status == 100
            assert interim.raw == b"HTTP/1.1 100 Continue\r\n\r\n"
            client.send(b"hello")
            informational, final = client.read_final()
            assert informational == []
            assert (final.status, final.body) == (200, b"hello")

    def test_100_not_sent_before_the_app_calls_receive(self, server: ServerProcess) -> None:
        tag = uuid.uuid4().hex
        with RawClient(server.port) as client:
            client.send(build("POST", f"/gated-echo?tag={tag}", [EXPECT, ("Content-Length", "4")]))
            # The app is running and has not called receive() yet: no 100 may have been sent.
            assert events(server, tag, "started") == ["started"]
            assert client.receive_nothing() == b""
            release(server, tag)
            assert client.read_response().status == 100
            client.send(b"body")
            informational, final = client.read_final()
            assert informational == []
            assert final.body == b"body"

    def test_100_with_chunked_body(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            client.send(build("POST", "/echo", [EXPECT, ("Transfer-Encoding", "chunked")]))
            assert client.read_response().status == 100
            client.send(b"3\r\nabc\r\n0\r\n\r\n")
            assert client.read_final()[1].body == b"abc"

    def test_100_only_once(self, server: ServerProcess) -> None:
        """Several receive() calls while the body trickles in: one 100, then the final."""
        with RawClient(server.port) as client:
            client.send(build("POST", "/echo", [EXPECT, ("Content-Length", "6")]))
            assert client.read_response().status == 100
            for byte in b"abcdef":
                client.send(bytes([byte]))
            informational, final = client.read_final()
            assert informational == []
            assert final.body == b"abcdef"

    def test_client_sends_body_without_waiting(self, server: ServerProcess) -> None:
        """RFC 9110 10.1.1: a client may send the content before the 100 arrives."""
        with RawClient(server.port) as client:
            client.send(build("POST", "/echo", [EXPECT], body=b"eager"))
            informational, final = client.read_final()
            assert [response.status for response in informational] in ([], [100])
            assert final.body == b"eager"
            assert client.request(build("GET", "/")).status == 200

    def test_expect_case_insensitive(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            client.send(
                build("POST", "/echo", [("Expect", "100-Continue"), ("Content-Length", "2")])
            )
            assert client.read_response().status == 100
            client.send(b"ok")
            assert client.read_final()[1].body == b"ok"

    def test_keep_alive_after_continue(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            for index in range(3):
                client.send(build("POST", "/echo", [EXPECT, ("Content-Length", "1")]))
                assert client.read_response().status == 100
                client.send(str(index).encode())
                assert client.read_final()[1].body == str(index).encode()

    def test_no_100_without_a_body(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            client.send(build("POST", "/echo", [EXPECT, ("Content-Length", "0")]))
            informational, final = client.read_final()
            assert informational == []
            assert final.status == 200

    def test_curl_expect(self, server: ServerProcess) -> None:
        import subprocess

        result = subprocess.run(
            [
                "curl",
                "-sS",
                "-i",
                "-H",
                "Expect: 100-continue",
                "--expect100-timeout",
                "30",
                "--data-binary",
                "curl body",
                server.url + "/echo",
            ],
            capture_output=True,
            timeout=40,
            check=True,
        )
        assert result.stdout.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
        assert result.stdout.endswith(b"\r\n\r\ncurl body")


class TestNoReadNoContinue:
    """RFC 9110 10.1.1: a server that answers with a final status does not send 100 first,
    and then either closes or reads and discards the content it did not want. RFC 9112 9.6:
    a server that closes after a response says so with "close" in that response."""

    @pytest.mark.parametrize("length", [10, 100000])
    @pytest.mark.parametrize("expect", [True, False], ids=["expect", "no-expect"])
    def test_final_response_without_100(
        self, server: ServerProcess, length: int, expect: bool
    ) -> None:
        tag = uuid.uuid4().hex
        headers = [EXPECT] if expect else []
        headers.append(("Content-Length", str(length)))
        with RawClient(server.port) as client:
            client.send(build("POST", f"/noread?tag={tag}", headers))
            response = client.read_response()
            assert response.status == 200
            assert response.body == b"answered without reading"
            # The client sends the body anyway, then reuses the connection.
            client.try_send(b"z" * length + build("GET", "/"))
            try:
                following = client.read_response()
            except ConnectionClosed:
                assert response.header("connection") == "close", "closed without saying so"
            else:
                assert following.body == b"Hello, world!"

    def test_unread_body_never_taken_for_a_request(self, server: ServerProcess) -> None:
        """Whatever the server does with the unread body, its bytes are not a new request."""
        body = build("GET", "/sleep?id=smuggled")
        headers = [EXPECT, ("Content-Length", str(len(body)))]
        with RawClient(server.port) as client:
            client.send(build("POST", "/noread", headers))
            assert client.read_response().status == 200
            client.try_send(body)
            try:
                rest = client.wait_closed(timeout=3)
            except TimeoutError:
                rest = client.receive_nothing()
            assert b"smuggled" not in rest

    def test_app_that_never_reads_keeps_server_healthy(self, server: ServerProcess) -> None:
        for _ in range(5):
            with RawClient(server.port) as client:
                client.send(build("POST", "/noread", [EXPECT, ("Content-Length", "5")]))
                assert client.read_final()[0] == []
        response = httpx.get(server.url + "/", timeout=30)
        assert response.status_code == 200


class TestHTTP10Expect:
    """RFC 9110 10.1.1: a server MUST NOT send 100 to an HTTP/1.0 client."""

    def test_no_100_for_http10(self, server: ServerProcess) -> None:
        tag = uuid.uuid4().hex
        headers = [EXPECT, ("Content-Length", "4")]
        with RawClient(server.port) as client:
            client.send(build("POST", f"/gated-echo?tag={tag}", headers, version="HTTP/1.0"))
            assert events(server, tag, "started") == ["started"]
            release(server, tag)
            # The app is now blocked in receive(): with 1.1 a 100 would be on the wire by now.
            assert events(server, tag, "receiving") == ["started", "receiving"]
            assert client.receive_nothing() == b""
            client.send(b"1.0!")
            response = client.read_response()
            assert response.status == 200
            assert response.body == b"1.0!"

    def test_no_100_for_http10_echo(self, server: ServerProcess) -> None:
        headers = [EXPECT, ("Content-Length", "3")]
        with RawClient(server.port) as client:
            client.send(build("POST", "/echo", headers, version="HTTP/1.0"))
            assert client.receive_nothing() == b""
            client.send(b"abc")
            response = client.read_response()
            assert (response.status, response.body) == (200, b"abc")
