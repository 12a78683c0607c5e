# HTTP/1.1 message framing end to end (RFC 9112 sections 6 and 7, RFC 9110 sections 6.4.1,
# 8.6, 9.3.2, 15.3.5, 15.4.5): request bodies by Content-Length and chunked (extensions,
# trailers), the framing the server chooses for responses (Content-Length for one body part,
# chunked when streamed over 1.1, until-close over 1.0), bodiless HEAD/204/304 responses, app
# bodies that disagree with their Content-Length (aborted, never passed off as complete), and
# response header validation (an app error: 500, nothing of the bad header on the wire).
from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest

from conftest import ServerProcess
from rawhttp import ConnectionClosed, RawClient, Response, build, chunked, events, exchange, serve


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve("h1_app:app", "--loop", request.param) as proc:
        yield proc


def still_serving(server: ServerProcess) -> None:
    response = exchange(server.port, build("GET", "/"))
    assert (response.status, response.body) == (200, b"Hello, world!")


class TestRequestBodies:
    """RFC 9112 6.2 and 7.1: Content-Length and chunked request bodies reach the app intact."""

    def test_content_length_body(self, server: ServerProcess) -> None:
        body = bytes(range(256)) * 40
        response = exchange(server.port, build("POST", "/echo", body=body))
        assert response.body == body

    def test_empty_content_length_body(self, server: ServerProcess) -> None:
        response = exchange(server.port, build("POST", "/echo", [("Content-Length", "0")]))
        assert (response.status, response.body) == (200, b"")

    def test_no_body_without_framing_headers(self, server: ServerProcess) -> None:
        """RFC 9112 6.3 (7): a request without CL or TE has an empty body."""
        with RawClient(server.port) as client:
            response = client.request(build("POST", "/echo"))
            assert (response.status, response.body) == (200, b"")
            assert client.request(build("GET", "/")).status == 200

    def test_chunked_body_several_chunks(self, server: ServerProcess) -> None:
        parts = [b"a" * 1, b"b" * 15, b"c" * 16, b"d" * 4096, b"e" * 70000]
        request = build("POST", "/echo", [("Transfer-Encoding", "chunked")], chunked(*parts))
        response = exchange(server.port, request)
        assert response.body == b"".join(parts)

    def test_chunked_uppercase_hex_and_leading_zeros(self, server: ServerProcess) -> None:
        body = b"000A\r\n0123456789\r\n1a\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n"
        request = build("POST", "/echo", [("Transfer-Encoding", "chunked")], body)
        assert exchange(server.port, request).body == b"0123456789" + b"z" * 26

    def test_chunk_extensions_are_ignored(self, server: ServerProcess) -> None:
        """RFC 9112 7.1.1: a recipient ignores unrecognized chunk extensions."""
        body = b'5;name=value\r\nhello\r\n6;quoted="a;b";flag\r\n world\r\n0;last=1\r\n\r\n'
        request = build("POST", "/echo", [("Transfer-Encoding", "chunked")], body)
        assert exchange(server.port, request).body == b"hello world"

    def test_chunked_trailers(self, server: ServerProcess) -> None:
        """RFC 9112 7.1.2: trailer fields end the chunked body; the connection stays usable."""
        body = chunked(b"with", b" trailers", trailers=b"X-Checksum: abc\r\nX-Other: 1\r\n")
        request = build(
            "POST", "/echo", [("Transfer-Encoding", "chunked"), ("Trailer", "X-Checksum")], body
        )
        with RawClient(server.port) as client:
            assert client.request(request).body == b"with trailers"
            assert client.request(build("GET", "/")).body == b"Hello, world!"

    def test_transfer_encoding_case_insensitive(self, server: ServerProcess) -> None:
        request = build("POST", "/echo", [("Transfer-Encoding", "Chunked")], chunked(b"hi"))
        assert exchange(server.port, request).body == b"hi"

    def test_chunked_body_in_tiny_pieces(self, server: ServerProcess) -> None:
        request = build(
            "POST", "/echo", [("Transfer-Encoding", "chunked")], chunked(b"piece", b"wise")
        )
        with RawClient(server.port) as client:
            for index in range(len(request)):
                client.send(request[index : index + 1])
            assert client.read_response().body == b"piecewise"

    def test_httpx_streamed_upload(self, server: ServerProcess) -> None:
        def parts() -> Iterator[bytes]:
            for index in range(50):
                yield bytes([index]) * 1000

        response = httpx.post(server.url + "/echo", content=parts(), timeout=30)
        assert response.content == b"".join(parts())

    def test_curl_chunked_upload(self, server: ServerProcess) -> None:
        body = bytes(range(256)) * 1000
        result = subprocess.run(
            [
                "curl",
                "-sS",
                "-H",
                "Transfer-Encoding: chunked",
                "-H",
                "Expect:",
                "--data-binary",
                "@-",
                server.url + "/sha256",
            ],
            input=body,
            capture_output=True,
            timeout=30,
            check=True,
        )
        answer = json.loads(result.stdout)
        assert answer == {
            "sha256": hashlib.sha256(body).hexdigest(),
            "length": len(body),
            "messages": answer["messages"],
        }

    def test_bad_chunk_mid_body_while_app_reads(self, server: ServerProcess) -> None:
        """RFC 9112 7.1: a broken chunk after the app began reading: 400 and close; RFC 9112
        9.6: that response, after which the server closes, carries "close"."""
        tag = uuid.uuid4().hex
        with RawClient(server.port) as client:
            client.send(
                build("POST", f"/sha256?tag={tag}", [("Transfer-Encoding", "chunked")])
                + b"5\r\nhello\r\n"
            )
            assert "started" in events(server, tag, "started")
            client.send(b"5\r\nworldXX\r\n")
            response = client.read_response()
            assert response.status == 400
            assert response.header("connection") == "close"
            assert client.wait_closed() == b""
        assert any(event.startswith("disconnect") for event in events(server, tag, "disconnect"))
        still_serving(server)


class TestResponseFraming:
    """RFC 9112 6.1-6.3: the server frames each response so the client can find its end."""

    def test_single_body_gets_content_length(self, server: ServerProcess) -> None:
        response = exchange(server.port, build("GET", "/"))
        assert response.framing == "content-length"
        assert response.get_all("content-length") == ["13"]
        assert response.get_all("transfer-encoding") == []
        assert response.body == b"Hello, world!"

    def test_empty_single_body_gets_content_length_zero(self, server: ServerProcess) -> None:
        response = exchange(server.port, build("GET", "/status?code=200"))
        assert response.get_all("content-length") == ["0"]
        assert response.body == b""

    def test_streamed_body_is_chunked_for_http11(self, server: ServerProcess) -> None:
        response = exchange(server.port, build("GET", "/stream?n=5"))
        assert response.framing == "chunked"
        assert response.get_all("transfer-encoding") == ["chunked"]
        assert response.get_all("content-length") == []
        assert response.body == b"part0;part1;part2;part3;part4;"
        # No empty chunk before the last one: an empty chunk would end the body early.
        assert b"\r\n0\r\n" not in response.raw.split(b"\r\n\r\n", 1)[1][:-5]

    def test_streamed_body_read_until_close_for_http10(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/stream?n=4", version="HTTP/1.0"))
            assert response.framing == "close"
            assert response.get_all("transfer-encoding") == []
            assert response.body == b"part0;part1;part2;part3;"

    def test_app_content_length_respected_when_streaming(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/stream?n=3&cl=1"))
            assert response.framing == "content-length"
            assert response.get_all("content-length") == ["18"]
            assert response.get_all("transfer-encoding") == []
            assert response.body == b"part0;part1;part2;"
            assert client.request(build("GET", "/")).status == 200

    def test_app_content_length_with_http10_keep_alive(self, server: ServerProcess) -> None:
        request = build(
            "GET", "/stream?n=3&cl=1", [("Connection", "keep-alive")], version="HTTP/1.0"
        )
        with RawClient(server.port) as client:
            response = client.request(request)
            assert response.body == b"part0;part1;part2;"
            assert response.header("connection") == "keep-alive"
            assert client.request(request).body == b"part0;part1;part2;"

    def test_app_transfer_encoding_single_body(self, server: ServerProcess) -> None:
        """RFC 9112 6.1: framing is the server's; the app's header does not double-chunk."""
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/te"))
            assert response.body == b"world"
            assert len(response.get_all("transfer-encoding")) <= 1
            assert client.request(build("GET", "/")).body == b"Hello, world!"

    def test_app_transfer_encoding_streamed(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/te?stream=1"))
            assert response.get_all("transfer-encoding") == ["chunked"]
            assert response.body == b"hello world"
            assert client.request(build("GET", "/")).body == b"Hello, world!"

    def test_app_transfer_encoding_http10(self, server: ServerProcess) -> None:
        """RFC 9112 6.1: no transfer coding is sent to an HTTP/1.0 client."""
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/te?stream=1", version="HTTP/1.0"))
            assert response.get_all("transfer-encoding") == []
            assert response.body == b"hello world"

    def test_httpx_streamed_download(self, server: ServerProcess) -> None:
        with httpx.stream("GET", server.url + "/stream?n=100", timeout=30) as response:
            data = b"".join(response.iter_raw())
        assert data == b"".join(b"part%d;" % index for index in range(100))


def _comparable(response: Response) -> list[tuple[str, str]]:
    return [(name, value) for name, value in response.headers if name != "date"]


class TestHead:
    """RFC 9110 9.3.2: HEAD gets the GET response's header fields and no content."""

    def test_head_has_no_body_and_connection_stays_usable(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            head = client.request(build("HEAD", "/stream?n=3&cl=1"), method="HEAD")
            assert head.status == 200
            assert head.get_all("content-length") == ["18"]
            following = client.request(build("GET", "/"))
            assert following.body == b"Hello, world!"

    def test_head_streamed_response_sends_no_chunks(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            head = client.request(build("HEAD", "/stream"), method="HEAD")
            assert head.status == 200
            assert client.request(build("GET", "/")).body == b"Hello, world!"

    def test_head_same_headers_as_get_with_app_length(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            get = client.request(build("GET", "/stream?cl=1"))
            head = client.request(build("HEAD", "/stream?cl=1"), method="HEAD")
        assert _comparable(head) == _comparable(get)

    def test_head_keeps_the_apps_content_length_once(self, server: ServerProcess) -> None:
        """An app that sets Content-Length and sends the body in one message (as Starlette
        and Django do): the HEAD response carries that one Content-Length, not ours too."""
        with RawClient(server.port) as client:
            head = client.request(build("HEAD", "/cl?declared=5&parts=5"), method="HEAD")
            assert head.status == 200
            assert head.get_all("content-length") == ["5"]
            assert client.request(build("GET", "/")).body == b"Hello, world!"

    def test_error_page_for_head_has_no_body(self, server: ServerProcess) -> None:
        """The server's own error responses to HEAD carry no content either: it would be read
        as the start of the next response."""
        with RawClient(server.port) as client:
            client.send(b"HEAD / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
            response = client.read_response(method="HEAD")
            assert response.status == 400
            assert response.header("content-length") is not None
            assert client.wait_closed() == b""

    def test_error_page_after_a_head_keeps_its_body(self, server: ServerProcess) -> None:
        """A request refused for its method, after a HEAD on the same connection, is not
        answered as if it were that HEAD: its error page has its body."""
        with RawClient(server.port) as client:
            assert client.request(build("HEAD", "/"), method="HEAD").status == 200
            client.send(b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n")
            response = client.read_response()
        assert response.status == 400
        assert response.body and len(response.body) == int(response.header("content-length") or 0)

    def test_head_same_headers_as_get(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            get = client.request(build("GET", "/"))
            head = client.request(build("HEAD", "/"), method="HEAD")
        assert head.raw.endswith(b"\r\n\r\n")
        assert _comparable(head) == _comparable(get)

    def test_head_http10(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            head = client.request(build("HEAD", "/", version="HTTP/1.0"), method="HEAD")
            assert head.status == 200
            assert client.wait_closed() == b""


class TestNoBodyStatuses:
    """RFC 9110 15.3.5 / 15.4.5 and RFC 9112 6.3 (1): 204 and 304 never carry content."""

    @pytest.mark.parametrize("code", [204, 304])
    @pytest.mark.parametrize("stream", ["", "1"])
    def test_no_body_no_chunking(self, server: ServerProcess, code: int, stream: str) -> None:
        with RawClient(server.port) as client:
            response = client.request(build("GET", f"/status?code={code}&body=xyz&stream={stream}"))
            assert response.status == code
            assert response.raw.endswith(b"\r\n\r\n")
            assert response.get_all("transfer-encoding") == []
            # Nothing of the app's body reached the wire: the next response parses cleanly.
            following = client.request(build("GET", "/"))
            assert following.raw.startswith(b"HTTP/1.1 200 OK\r\n")
            assert following.body == b"Hello, world!"

    def test_204_has_no_content_length(self, server: ServerProcess) -> None:
        response = exchange(server.port, build("GET", "/status?code=204"))
        assert response.get_all("content-length") == []

    def test_204_app_content_length_not_sent(self, server: ServerProcess) -> None:
        response = exchange(server.port, build("GET", "/status?code=204&h=content-length:3"))
        assert response.status == 204
        assert response.get_all("content-length") == []

    def test_304_keeps_app_content_length(self, server: ServerProcess) -> None:
        """RFC 9110 8.6: a 304 may state the length the 200 would have had."""
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/status?code=304&h=content-length:42"))
            assert response.get_all("content-length") == ["42"]
            assert client.request(build("GET", "/")).body == b"Hello, world!"


class TestLengthMismatch:
    """RFC 9112 6.3 / 8: a body that disagrees with its Content-Length is never completed:
    the connection is aborted so the client cannot take a truncated body for a whole one."""

    @pytest.mark.parametrize(
        ("declared", "parts"),
        [
            ("10", "5"),
            ("10", "4,4"),
            ("10", "0"),
            ("5", "10"),
            ("5", "3,3"),
            ("0", "1"),
        ],
    )
    def test_mismatch_aborts(self, server: ServerProcess, declared: str, parts: str) -> None:
        tag = uuid.uuid4().hex
        with RawClient(server.port) as client:
            client.send(build("GET", f"/cl?declared={declared}&parts={parts}&tag={tag}"))
            with pytest.raises(ConnectionClosed) as closed:
                client.read_response()
            partial = closed.value.partial
        # Never more body bytes than declared on the wire.
        if b"\r\n\r\n" in partial:
            assert len(partial.split(b"\r\n\r\n", 1)[1]) <= int(declared)
        found = events(server, tag, "raised")
        assert any(event.startswith("raised:RuntimeError") for event in found), found
        still_serving(server)

    def test_mismatch_on_keep_alive_connection(self, server: ServerProcess) -> None:
        """The abort also ends a pipeline: no response after the broken one."""
        with RawClient(server.port) as client:
            client.send(build("GET", "/cl?declared=10&parts=3,3") + build("GET", "/"))
            with pytest.raises(ConnectionClosed):
                client.read_response()

    def test_exact_length_in_parts(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            response = client.request(build("GET", "/cl?declared=10&parts=3,3,4"))
            assert response.body == b"x" * 10
            assert client.request(build("GET", "/")).status == 200


BAD_HEADER_KINDS = [
    "cr",
    "lf",
    "nul",
    "crlf-inject",
    "name-space",
    "name-colon",
    "name-crlf",
    "name-empty",
    "name-str",
    "value-str",
    "value-int",
    "not-pair",
]


class TestResponseHeaderValidation:
    """RFC 9110 5.1 and 5.5: names are tokens, values have no CR/LF/NUL. A bad header is an
    app error (RuntimeError in the app, 500 to the client) and never reaches the wire."""

    @pytest.mark.parametrize("kind", BAD_HEADER_KINDS)
    def test_bad_header_gives_500(self, server: ServerProcess, kind: str) -> None:
        tag = uuid.uuid4().hex
        with RawClient(server.port) as client:
            client.send(build("GET", f"/badheader?kind={kind}&tag={tag}"))
            response = client.read_response()
            # Whatever follows on this connection (the next response, if it is kept) is clean.
            client.try_send(build("GET", "/", [("Connection", "close")]))
            after = client.wait_closed()
        assert response.status == 500
        assert b"EVIL" not in response.raw.upper()
        assert b"EVIL" not in after.upper()
        assert events(server, tag, "raised") == ["raised:RuntimeError"]
        still_serving(server)


class TestRepeatedResponseHeaders:
    """Apps send the same header pairs with every response, and the server encodes each pair
    once (protocols/http1_response.py, header_line): the second and later responses carrying
    a pair must be framed exactly as the first was."""

    def test_same_pairs_on_one_connection(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            for _ in range(3):
                plain = client.request(build("GET", "/status?code=200&h=X-Mixed-Case:one&body=ab"))
                assert plain.header("x-mixed-case") == "one"
                assert plain.header("content-length") == "2"
                declared = client.request(
                    build("GET", "/status?code=200&h=Content-Length:3&body=abc")
                )
                assert (declared.header("content-length"), declared.body) == ("3", b"abc")
                empty = client.request(build("GET", "/status?code=204&h=Content-Length:0"))
                assert empty.status == 204
                assert empty.header("content-length") is None
                ours = client.request(
                    build("GET", "/status?code=200&h=Transfer-Encoding:gzip&stream=1&body=x")
                )
                assert ours.header("transfer-encoding") == "chunked"
                assert ours.body == b"xx"

    def test_connection_close_every_time(self, server: ServerProcess) -> None:
        for _ in range(3):
            with RawClient(server.port) as client:
                response = client.request(build("GET", "/close"))
                assert (response.status, response.header("connection")) == (200, "close")
                assert client.wait_closed() == b""

    def test_a_bad_value_under_a_name_seen_before(self, server: ServerProcess) -> None:
        """A pair is remembered only once it passed; the same name with a bad value is refused."""
        ok = exchange(server.port, build("GET", "/status?code=200&h=x-evil:fine"))
        assert ok.header("x-evil") == "fine"
        tag = uuid.uuid4().hex
        refused = exchange(server.port, build("GET", f"/badheader?kind=cr&tag={tag}"))
        assert refused.status == 500
        assert b"EVIL" not in refused.raw.upper()
        assert events(server, tag, "raised") == ["raised:RuntimeError"]

    def test_headers_from_a_generator(self, server: ServerProcess) -> None:
        """ASGI allows any iterable of pairs; one that replaces a default header (Server) is
        read twice by the server, so a one-shot iterable must still give every header."""
        for _ in range(2):
            response = exchange(server.port, build("GET", "/generated-headers"))
            assert (response.status, response.body) == (200, b"generated")
            assert response.header("x-generated") == "yes"
            assert [v for n, v in response.headers if n == "server"] == ["generated"]

    def test_items_a_cache_cannot_key_on(self, server: ServerProcess) -> None:
        """A writable memoryview value, a pair as a one-shot iterator (replacing Server) and
        a list pair are all served as before, every time."""
        for _ in range(2):
            with RawClient(server.port) as client:
                response = client.request(build("GET", "/odd-headers"))
                assert (response.status, response.body) == (200, b"odd"), response.raw
                assert response.header("x-view") == "viewed"
                assert [v for n, v in response.headers if n == "server"] == ["odd"]
                assert response.header("connection") == "close"
                assert client.wait_closed() == b""

    def test_more_distinct_pairs_than_the_cache_holds(self, server: ServerProcess) -> None:
        """Past LINE_CACHE_MAX distinct pairs the cache starts over; every response still
        carries exactly its own header."""
        with RawClient(server.port) as client:
            for index in range(1100):
                response = client.request(build("GET", f"/status?code=200&h=x-id:{index}"))
                assert response.header("x-id") == str(index)

    def test_early_hint_extension_is_each_requests_own(self, server: ServerProcess) -> None:
        """What an app writes into one scope's extension dicts is not seen by the next
        request on the connection."""
        with RawClient(server.port) as client:
            for _ in range(3):
                assert client.request(build("GET", "/early-hint-counter")).body == b"1"
