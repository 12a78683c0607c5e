# Request size limits end to end (RFC 9110 15.5.14 413, 15.5.15 414, RFC 6585 5 431; RFC 9112
# 3 and 5): the request head (64 KiB by default, --limit-request-head-size), the header count
# (100, --limit-request-headers), the target (414), and --limit-max-body-size (413 before the
# app runs when Content-Length says so, 413 mid-body when chunked grows past it). Every refusal
# comes as a response and a close, even when the client never finishes the line it is sending.
from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from conftest import ServerProcess
from rawhttp import RawClient, Response, build, chunked, events, exchange, serve

KIB = 1024


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve("h1_app:app") as proc:
        yield proc


@pytest.fixture(scope="module")
def small() -> Iterator[ServerProcess]:
    with serve(
        "h1_app:app",
        "--limit-request-head-size",
        "4096",
        "--limit-request-headers",
        "10",
        "--limit-max-body-size",
        "1000",
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def tight() -> Iterator[ServerProcess]:
    with serve("h1_app:app", "--limit-request-head-size", "2048") as proc:
        yield proc


def refused(server: ServerProcess, data: bytes, status: int) -> Response:
    """Send `data` (the server may close before all of it is sent): one `status`, then close;
    and the server still answers a fresh connection."""
    with RawClient(server.port, timeout=20) as client:
        client.try_send(data)
        response = client.read_response()
        assert response.status == status, response.raw[:500]
        assert response.header("connection") == "close"
        assert response.header("content-type") == "text/html; charset=utf-8"
        client.wait_closed(timeout=20)
    assert exchange(server.port, build("GET", "/")).body == b"Hello, world!"
    return response


def with_headers(count: int, size: int = 10, target: str = "/headers") -> bytes:
    """A GET with Host plus `count - 1` headers whose values are `size` bytes."""
    headers = [(f"X-Header-{index}", "v" * size) for index in range(count - 1)]
    return build("GET", target, headers)


class TestHeadSize:
    """RFC 6585 5: request header fields too large: 431 (default limit 64 KiB)."""

    def test_head_under_the_limit(self, server: ServerProcess) -> None:
        response = exchange(server.port, with_headers(60, 1000))
        assert response.status == 200
        assert len(response.json()["headers"]) == 60

    def test_head_over_the_limit(self, server: ServerProcess) -> None:
        refused(server, with_headers(70, 1000), 431)

    def test_one_huge_header(self, server: ServerProcess) -> None:
        refused(server, build("GET", "/", [("X-Big", "a" * 70 * KIB)]), 431)

    def test_endless_header_line(self, server: ServerProcess) -> None:
        """200 KiB of one header and no CRLF: a 431 once past the limit, not a hang."""
        data = b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"a" * 200 * KIB
        refused(server, data, 431)

    def test_endless_header_name(self, server: ServerProcess) -> None:
        data = b"GET / HTTP/1.1\r\nHost: x\r\nX-" + b"a" * 200 * KIB
        refused(server, data, 431)

    def test_endless_header_line_sent_slowly(self, server: ServerProcess) -> None:
        """The same in many small writes: the partial line is counted across reads."""
        with RawClient(server.port, timeout=20) as client:
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ")
            sent = 0
            while sent < 200 * KIB and client.try_send(b"a" * 4 * KIB):
                sent += 4 * KIB
            response = client.read_response()
            assert response.status == 431

    def test_many_small_headers_over_the_size(self, server: ServerProcess) -> None:
        """Under the count limit but over the size limit in total."""
        refused(server, with_headers(99, 700), 431)


class TestHeaderCount:
    """More than 100 header fields (default): 431."""

    def test_100_headers(self, server: ServerProcess) -> None:
        response = exchange(server.port, with_headers(100))
        assert response.status == 200
        assert len(response.json()["headers"]) == 100

    def test_101_headers(self, server: ServerProcess) -> None:
        refused(server, with_headers(101), 431)

    def test_thousands_of_headers(self, server: ServerProcess) -> None:
        refused(server, with_headers(5000, 1), 431)


class TestTargetLength:
    """RFC 9110 15.5.15: a request target longer than the server will interpret: 414."""

    def test_long_target_within_the_limit(self, server: ServerProcess) -> None:
        target = "/headers?" + "q" * 8 * KIB
        assert exchange(server.port, build("GET", target)).status == 200

    def test_target_too_long(self, server: ServerProcess) -> None:
        refused(server, build("GET", "/" + "a" * 100 * KIB), 414)

    def test_query_too_long(self, server: ServerProcess) -> None:
        refused(server, build("GET", "/?" + "q" * 100 * KIB), 414)

    def test_endless_target(self, server: ServerProcess) -> None:
        """A request line that never ends: 414, not a hang."""
        refused(server, b"GET /" + b"a" * 200 * KIB, 414)


class TestConfiguredLimits:
    """--limit-request-head-size 4096 and --limit-request-headers 10."""

    def test_head_within_configured_size(self, small: ServerProcess) -> None:
        assert exchange(small.port, with_headers(4, 700)).status == 200

    def test_head_over_configured_size(self, small: ServerProcess) -> None:
        refused(small, with_headers(6, 1000), 431)

    def test_target_over_configured_size(self, small: ServerProcess) -> None:
        refused(small, build("GET", "/" + "a" * 5000), 414)

    def test_endless_header_over_configured_size(self, small: ServerProcess) -> None:
        refused(small, b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"a" * 20 * KIB, 431)

    def test_10_headers(self, small: ServerProcess) -> None:
        assert exchange(small.port, with_headers(10)).status == 200

    def test_11_headers(self, small: ServerProcess) -> None:
        refused(small, with_headers(11), 431)

    def test_limit_applies_to_each_request_of_a_connection(self, small: ServerProcess) -> None:
        """The head counters start again for each request on a keep-alive connection."""
        with RawClient(small.port) as client:
            for _ in range(20):
                response = client.request(with_headers(10, 300))
                assert response.status == 200


class TestBodySize:
    """--limit-max-body-size: RFC 9110 15.5.14 413 Content Too Large."""

    def test_content_length_at_the_limit(self, small: ServerProcess) -> None:
        response = exchange(small.port, build("POST", "/sha256", body=b"b" * 1000))
        assert response.json()["length"] == 1000

    def test_content_length_over_the_limit_app_not_called(self, small: ServerProcess) -> None:
        tag = uuid.uuid4().hex
        request = build("POST", f"/sha256?tag={tag}", [("Content-Length", "1001")])
        refused(small, request + b"b" * 1001, 413)
        assert events(small, tag, timeout=0) == []

    def test_content_length_over_the_limit_body_not_sent(self, small: ServerProcess) -> None:
        """The 413 comes from the head alone: the client need not send the body."""
        tag = uuid.uuid4().hex
        request = build("POST", f"/sha256?tag={tag}", [("Content-Length", str(10**12))])
        refused(small, request, 413)
        assert events(small, tag, timeout=0) == []

    def test_expect_continue_over_the_limit(self, small: ServerProcess) -> None:
        """RFC 9110 10.1.1: the final 413 instead of 100 Continue."""
        tag = uuid.uuid4().hex
        headers = [("Expect", "100-continue"), ("Content-Length", "5000")]
        response = refused(small, build("POST", f"/sha256?tag={tag}", headers), 413)
        assert response.status == 413
        assert events(small, tag, timeout=0) == []

    def test_chunked_at_the_limit(self, small: ServerProcess) -> None:
        body = chunked(*[b"c" * 100] * 10)
        request = build("POST", "/sha256", [("Transfer-Encoding", "chunked")], body)
        assert exchange(small.port, request).json()["length"] == 1000

    def test_chunked_over_the_limit(self, small: ServerProcess) -> None:
        tag = uuid.uuid4().hex
        body = chunked(*[b"c" * 100] * 11)
        request = build("POST", f"/sha256?tag={tag}", [("Transfer-Encoding", "chunked")], body)
        refused(small, request, 413)
        # The app may not have run at all; if it did, it saw at most the limit, then the end.
        found = events(small, tag, timeout=0)
        assert not any(event.startswith("done") for event in found)
        for event in found:
            if event.startswith("disconnect:"):
                assert int(event.split(":")[1]) <= 1000

    def _grow_past_limit(self, small: ServerProcess, tag: str) -> tuple[Response, bytes]:
        with RawClient(small.port) as client:
            client.send(build("POST", f"/sha256?tag={tag}", [("Transfer-Encoding", "chunked")]))
            assert events(small, tag, "started") == ["started"]
            for _ in range(5):
                client.send(b"c8\r\n" + b"c" * 200 + b"\r\n")
            client.try_send(b"c8\r\n" + b"c" * 200 + b"\r\n" + build("GET", "/?SMUGGLED"))
            response = client.read_response()
            return response, client.wait_closed()

    def test_chunked_growing_over_the_limit_slowly(self, small: ServerProcess) -> None:
        """The app has already started reading when the body passes the limit: 413, close,
        and the app's receive() reports the disconnect."""
        tag = uuid.uuid4().hex
        response, rest = self._grow_past_limit(small, tag)
        assert response.status == 413
        assert rest == b""
        found = events(small, tag, "disconnect")
        assert found[-1].startswith("disconnect:")
        assert int(found[-1].split(":")[1]) <= 1000
        assert exchange(small.port, build("GET", "/")).body == b"Hello, world!"

    def test_chunked_growing_over_the_limit_says_close(self, small: ServerProcess) -> None:
        """RFC 9112 9.6: the response after which the server closes carries "close"."""
        response, _ = self._grow_past_limit(small, uuid.uuid4().hex)
        assert response.status == 413
        assert response.header("connection") == "close"

    def test_limit_is_per_request(self, small: ServerProcess) -> None:
        with RawClient(small.port) as client:
            for _ in range(5):
                response = client.request(build("POST", "/sha256", body=b"x" * 900))
                assert response.json()["length"] == 900

    def test_no_limit_by_default(self, server: ServerProcess) -> None:
        body = b"z" * (2 << 20)
        response = httpx.post(server.url + "/sha256", content=body, timeout=30)
        assert response.json()["length"] == len(body)


class TestOnlyTheHeadCounts:
    """The head-size limit is about one request's head (RFC 6585 5), not about how many
    bytes of bodies or of other complete requests happen to arrive in one read."""

    def test_body_bytes_do_not_count_as_head(self, tight: ServerProcess) -> None:
        body = b"b" * 8192
        with RawClient(tight.port) as client:
            for _ in range(3):
                response = client.request(build("POST", "/echo", body=body))
                assert (response.status, response.body) == (200, body)
            assert client.request(build("GET", "/")).status == 200

    def test_pipelined_heads_each_under_the_limit(self, tight: ServerProcess) -> None:
        data = b"".join(build("GET", f"/?n={index}") for index in range(200))
        with RawClient(tight.port) as client:
            client.send(data)
            statuses = [client.read_response().status for _ in range(200)]
            statuses.append(client.request(build("GET", "/")).status)
        assert statuses == [200] * 201
