# HTTP/1.1 pipelining end to end (RFC 9112 section 9.3.2): requests sent back to back in one
# write are answered in request order, even when an earlier request takes longer than a later
# one; a malformed request after good ones gets its 400 only after their responses.
from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import ServerProcess
from rawhttp import RawClient, build, chunked, serve


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve("h1_app:app", "--loop", request.param) as proc:
        yield proc


class TestPipelineOrder:
    """RFC 9112 9.3.2: a server MUST send responses in the order the requests were received."""

    def test_slower_first_request_still_answered_first(self, server: ServerProcess) -> None:
        data = b"".join(
            build("GET", f"/sleep?id={name}&s={delay}")
            for name, delay in [("a", "0.4"), ("b", "0.2"), ("c", "0"), ("d", "0.1"), ("e", "0")]
        )
        with RawClient(server.port) as client:
            client.send(data)
            bodies = [client.read_response().body for _ in range(5)]
        assert bodies == [b"a:", b"b:", b"c:", b"d:", b"e:"]

    def test_pipelined_bodies(self, server: ServerProcess) -> None:
        data = (
            build("POST", "/sleep?id=1&s=0.3", body=b"first body")
            + build(
                "POST",
                "/sleep?id=2",
                [("Transfer-Encoding", "chunked")],
                chunked(b"second", b" body"),
            )
            + build("GET", "/sleep?id=3")
            + build("POST", "/sleep?id=4&s=0.1", body=b"fourth" * 1000)
        )
        with RawClient(server.port) as client:
            client.send(data)
            bodies = [client.read_response().body for _ in range(4)]
        assert bodies == [b"1:first body", b"2:second body", b"3:", b"4:" + b"fourth" * 1000]

    def test_many_pipelined_requests(self, server: ServerProcess) -> None:
        data = b"".join(build("GET", f"/headers?n={index}") for index in range(200))
        with RawClient(server.port) as client:
            client.send(data)
            queries = [client.read_response().json()["query_string"] for _ in range(200)]
        assert queries == [f"n={index}" for index in range(200)]

    def test_thousands_of_pipelined_requests(self, server: ServerProcess) -> None:
        data = b"".join(build("GET", f"/?n={index}") for index in range(5000))
        assert len(data) > 128 * 1024
        with RawClient(server.port) as client:
            client.send(data)
            statuses = [client.read_response().status for _ in range(5000)]
        assert statuses == [200] * 5000

    def test_pipeline_split_across_writes(self, server: ServerProcess) -> None:
        """Request boundaries need not match TCP segments: bytes are fed one at a time."""
        data = build("POST", "/sleep?id=x", body=b"0123456789") + build("GET", "/sleep?id=y")
        with RawClient(server.port) as client:
            for index in range(len(data)):
                client.send(data[index : index + 1])
            assert client.read_response().body == b"x:0123456789"
            assert client.read_response().body == b"y:"

    def test_head_and_no_body_statuses_in_a_pipeline(self, server: ServerProcess) -> None:
        """RFC 9112 6.3 (1): HEAD, 204 and 304 responses end at the head; the next one follows."""
        data = (
            build("HEAD", "/stream")
            + build("GET", "/status?code=204&body=xyz")
            + build("GET", "/status?code=304&body=xyz&stream=1")
            + build("GET", "/sleep?id=last")
        )
        with RawClient(server.port) as client:
            client.send(data)
            assert client.read_response("HEAD").status == 200
            assert client.read_response().status == 204
            assert client.read_response().status == 304
            last = client.read_response()
            assert last.body == b"last:"
            assert client.receive_nothing() == b""


class TestPipelineErrors:
    """RFC 9112 9.3.2 with 2.2: a bad request ends the pipeline, after earlier responses."""

    @pytest.mark.parametrize(
        "bad",
        [
            b"\x00\x01garbage\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ],
        ids=["garbage", "bad-header-name", "conflicting-length"],
    )
    def test_good_requests_answered_before_the_400(self, server: ServerProcess, bad: bytes) -> None:
        data = (
            build("GET", "/sleep?id=a&s=0.3")
            + build("POST", "/sleep?id=b", body=b"body")
            + bad
            + build("GET", "/sleep?id=never")
        )
        with RawClient(server.port) as client:
            client.send(data)
            first = client.read_response()
            second = client.read_response()
            error = client.read_response()
            rest = client.wait_closed()
        assert (first.status, first.body) == (200, b"a:")
        assert (second.status, second.body) == (200, b"b:body")
        assert first.header("connection") is None
        assert error.status == 400
        assert error.header("connection") == "close"
        assert rest == b""

    def test_bad_chunked_body_after_good_request(self, server: ServerProcess) -> None:
        data = build("GET", "/sleep?id=a&s=0.2") + (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
        )
        with RawClient(server.port) as client:
            client.send(data)
            assert client.read_response().body == b"a:"
            assert client.read_response().status == 400
            assert client.wait_closed() == b""
