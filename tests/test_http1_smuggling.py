# Bad and ambiguous requests end to end (RFC 9112 sections 2.2, 3, 5, 6, 7.1; RFC 9110 5.5;
# Daphne's request rules). Each is refused with a 400 (or 505/414/431 where RFC says so) and
# `connection: close`, the connection then closes, nothing after the bad request is answered,
# and the server goes on serving fresh connections. These are the request-smuggling defences:
# two parsers must never disagree about where a message ends.
from __future__ import annotations

from collections.abc import Iterator

import httptools
import pytest

from conftest import ServerProcess
from rawhttp import RawClient, build, chunked, exchange, serve


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve("h1_app:app", "--loop", request.param) as proc:
        yield proc


FOLLOW_UP = b"GET /sleep?id=SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n"


def assert_refused(server: ServerProcess, data: bytes, statuses: tuple[int, ...] = (400,)) -> None:
    """`data` (followed by a good request) gets one error response, then the close."""
    with RawClient(server.port) as client:
        client.try_send(data + FOLLOW_UP)
        response = client.read_response()
        assert response.status in statuses, response.raw
        assert response.header("connection") == "close"
        assert response.header("content-type") == "text/html; charset=utf-8"
        assert b"SMUGGLED" not in response.raw
        assert client.wait_closed() == b""
    following = exchange(server.port, build("GET", "/"))
    assert (following.status, following.body) == (200, b"Hello, world!")


def post(headers: bytes, body: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST /echo " + version + b"\r\nHost: x\r\n" + headers + b"\r\n" + body


def get(line: bytes = b"GET / HTTP/1.1", headers: bytes = b"Host: x\r\n") -> bytes:
    return line + b"\r\n" + headers + b"\r\n"


def cases(**items: bytes) -> list[object]:
    return [pytest.param(data, id=name) for name, data in items.items()]


class TestContentLength:
    """RFC 9112 6.3 (5) and RFC 9110 8.6: an invalid or ambiguous Content-Length is a 400."""

    @pytest.mark.parametrize(
        "data",
        cases(
            duplicate_same=post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
            duplicate_conflicting=post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
            list_same=post(b"Content-Length: 5, 5\r\n", b"hello"),
            list_conflicting=post(b"Content-Length: 5, 6\r\n", b"hello!"),
            negative=post(b"Content-Length: -5\r\n", b"hello"),
            plus_sign=post(b"Content-Length: +5\r\n", b"hello"),
            hex=post(b"Content-Length: 0x5\r\n", b"hello"),
            empty=post(b"Content-Length: \r\n", b"hello"),
            inner_space=post(b"Content-Length: 1 0\r\n", b"helloworld"),
            letters=post(b"Content-Length: 5a\r\n", b"hello"),
            overflow=post(b"Content-Length: 99999999999999999999999\r\n", b"hello"),
        ),
    )
    def test_bad_content_length(self, server: ServerProcess, data: bytes) -> None:
        assert_refused(server, data)

    def test_content_length_and_transfer_encoding(self, server: ServerProcess) -> None:
        """RFC 9112 6.1: CL with TE is a smuggling attempt; reject and close (CL.TE)."""
        assert_refused(
            server,
            post(b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\nG"),
        )

    def test_transfer_encoding_and_content_length(self, server: ServerProcess) -> None:
        """The same with the fields in the other order (TE.CL)."""
        assert_refused(
            server,
            post(
                b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                b"8\r\nSMUGGLED\r\n0\r\n\r\n",
            ),
        )

    def test_body_is_not_a_request(self, server: ServerProcess) -> None:
        """RFC 9112 6.2: the Content-Length bytes are content, even when they look like a
        request."""
        inner = build("GET", "/sleep?id=SMUGGLED")
        with RawClient(server.port) as client:
            response = client.request(build("POST", "/echo", body=inner))
            assert response.body == inner
            assert client.receive_nothing() == b""
            assert client.request(build("GET", "/")).body == b"Hello, world!"


class TestUpgradeBody:
    """A request asking for an upgrade the server does not perform is served as HTTP/1.1, and its
    body is its body: llhttp is told to skip upgrade bodies, and a server that then parsed them
    as the next request would let a client smuggle one in."""

    @pytest.mark.parametrize("upgrade", [b"foo/1", b"h2c"])
    @pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
    def test_upgrade_body_is_not_a_request(
        self, server: ServerProcess, upgrade: bytes, chunked: bool
    ) -> None:
        inner = build("GET", "/sleep?id=SMUGGLED")
        framing = (
            b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % len(inner)
        )
        body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(inner), inner) if chunked else inner
        head = (
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: " + upgrade + b"\r\n"
            b"HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n" + framing
        )
        with RawClient(server.port) as client:
            client.try_send(post(head, body) + build("GET", "/"))
            response = client.read_response()
            assert (response.status, response.body) == (200, inner)
            assert client.read_response().body == b"Hello, world!"
            assert b"SMUGGLED" not in client.receive_nothing()

    @pytest.mark.parametrize("codings", [b"gzip", b"chunked, gzip"])
    def test_upgrade_with_transfer_encoding_not_ending_in_chunked(
        self, server: ServerProcess, codings: bytes
    ) -> None:
        """RFC 9112 6.3 (4): a Transfer-Encoding whose last coding is not chunked leaves the
        body's length unknown, on a request asking for an upgrade the server does not perform
        as on any other: 400 and close. Here the body happens to parse as chunked; reading it
        so would serve the request that follows it."""
        head = b"Connection: upgrade\r\nUpgrade: foo\r\nTransfer-Encoding: " + codings + b"\r\n"
        assert_refused(server, post(head, chunked(b"hello")))


class TestTransferEncoding:
    """RFC 9112 6.1 and 6.3 (4): a request whose Transfer-Encoding does not end in chunked
    (or applies chunked twice) cannot be framed: 400 and close."""

    @pytest.mark.parametrize(
        "data",
        cases(
            gzip_only=post(b"Transfer-Encoding: gzip\r\n", b"hello"),
            chunked_not_last=post(
                b"Transfer-Encoding: chunked, gzip\r\n", b"5\r\nhello\r\n0\r\n\r\n"
            ),
            chunked_twice=post(
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            chunked_then_identity=post(
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            xchunked=post(b"Transfer-Encoding: xchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
            space_before_colon=post(b"Transfer-Encoding : chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"),
        ),
    )
    def test_bad_transfer_encoding(self, server: ServerProcess, data: bytes) -> None:
        assert_refused(server, data)

    def test_http10_transfer_encoding_closes(self, server: ServerProcess) -> None:
        """RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing: the
        server may answer, but MUST close the connection after it."""
        data = post(
            b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n",
            b"5\r\nhello\r\n0\r\n\r\n",
            version=b"HTTP/1.0",
        )
        with RawClient(server.port) as client:
            client.send(data + FOLLOW_UP)
            response = client.read_response()
            assert response.status in (200, 400)
            assert response.header("connection") != "keep-alive"
            assert b"SMUGGLED" not in client.wait_closed()


class TestChunkedSyntax:
    """RFC 9112 7.1: chunk-size is 1*HEXDIG followed by optional extensions and CRLF."""

    @pytest.mark.parametrize(
        "body",
        cases(
            non_hex=b"zz\r\nhello\r\n0\r\n\r\n",
            overflow=b"fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            negative=b"-5\r\nhello\r\n0\r\n\r\n",
            hex_prefix=b"0x5\r\nhello\r\n0\r\n\r\n",
            empty_size=b"\r\nhello\r\n0\r\n\r\n",
            space_after_size=b"5 \r\nhello\r\n0\r\n\r\n",
            bare_lf_after_size=b"5\nhello\r\n0\r\n\r\n",
            data_longer_than_size=b"5\r\nhelloXX\r\n0\r\n\r\n",
            data_shorter_than_size=b"9\r\nhello\r\n0\r\n\r\n\r\n\r\n",
            bare_lf_after_data=b"5\r\nhello\n0\r\n\r\n",
        ),
    )
    def test_bad_chunk(self, server: ServerProcess, body: bytes) -> None:
        assert_refused(server, post(b"Transfer-Encoding: chunked\r\n", body))


class TestLineEndings:
    """RFC 9112 2.2: lines end in CRLF; a bare CR is rejected, and this server rejects bare LF
    as a line terminator rather than risk disagreeing with a proxy about it."""

    @pytest.mark.parametrize(
        "data",
        cases(
            bare_lf_everywhere=b"GET / HTTP/1.1\nHost: x\n\n",
            bare_lf_request_line=b"GET / HTTP/1.1\nHost: x\r\n\r\n",
            bare_lf_header=b"GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
            bare_cr_header=b"GET / HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
            bare_cr_request_line=b"GET / HTTP/1.1\rHost: x\r\n\r\n",
        ),
    )
    def test_bad_line_ending(self, server: ServerProcess, data: bytes) -> None:
        assert_refused(server, data)


class TestFieldSyntax:
    """RFC 9112 5.1 (no whitespace before the colon), 5.2 (obs-fold rejected), 2.2 (no
    whitespace before the first field), RFC 9110 5.1 (names are tokens) and 5.5 (values)."""

    @pytest.mark.parametrize(
        "headers",
        cases(
            obs_fold_space=b"Host: x\r\nX-A: a\r\n b\r\n",
            obs_fold_tab=b"Host: x\r\nX-A: a\r\n\tb\r\n",
            space_before_colon=b"Host : x\r\n",
            tab_before_colon=b"Host\t: x\r\n",
            leading_whitespace=b" Host: x\r\n",
            no_colon=b"Host: x\r\nNoColon\r\n",
            name_with_parenthesis=b"Host: x\r\nX(A): b\r\n",
            name_with_slash=b"Host: x\r\nX/A: b\r\n",
            empty_name=b"Host: x\r\n: b\r\n",
            nul_in_value=b"Host: x\r\nX-A: a\x00b\r\n",
            del_in_value=b"Host: x\r\nX-A: a\x7fb\r\n",
            cr_in_value=b"Host: x\r\nX-A: a\rb\r\n",
        ),
    )
    def test_bad_field(self, server: ServerProcess, headers: bytes) -> None:
        assert_refused(server, get(headers=headers))

    @pytest.mark.parametrize("byte", [b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x85"])
    def test_daphne_line_break_bytes_in_values(self, server: ServerProcess, byte: bytes) -> None:
        """Daphne (CVE-2026-44546): bytes str.splitlines() breaks on are refused in values."""
        assert_refused(server, get(headers=b"Host: x\r\nX-A: a" + byte + b"b\r\n"))

    def test_obs_text_in_value_is_accepted(self, server: ServerProcess) -> None:
        """RFC 9110 5.5: obs-text (bytes 0x80-0xFF) is allowed in a value; only \\x85 is not."""
        response = exchange(
            server.port, get(b"GET /headers HTTP/1.1", b"Host: x\r\nX-A: caf\xc3\xa9\r\n")
        )
        assert response.status == 200
        assert ["x-a", "caf\xc3\xa9"] in response.json()["headers"]

    def test_tab_in_value_is_accepted(self, server: ServerProcess) -> None:
        response = exchange(server.port, get(b"GET /headers HTTP/1.1", b"Host: x\r\nX-A: a\tb\r\n"))
        assert ["x-a", "a\tb"] in response.json()["headers"]


class TestUnderscoreHeaders:
    """Daphne (CVE-2015-0219): header names with "_" never reach the app, so they cannot pose
    as their "-" twins in WSGI-style header maps."""

    def test_underscore_names_dropped(self, server: ServerProcess) -> None:
        headers = (
            b"Host: x\r\nX_Forwarded_For: 6.6.6.6\r\nX-Forwarded-For: 1.2.3.4\r\n"
            b"Content_Length: 99\r\nx_a: 1\r\nX-B: 2\r\n_: 3\r\n"
        )
        response = exchange(server.port, get(b"GET /headers HTTP/1.1", headers))
        assert response.status == 200
        seen = response.json()["headers"]
        assert [name for name, _ in seen if "_" in name] == []
        assert ["x-forwarded-for", "1.2.3.4"] in seen
        assert ["x-b", "2"] in seen
        assert "6.6.6.6" not in response.body.decode()
        assert response.json()["body_length"] == 0

    def test_underscore_header_does_not_break_keep_alive(self, server: ServerProcess) -> None:
        with RawClient(server.port) as client:
            for _ in range(3):
                response = client.request(get(b"GET /headers HTTP/1.1", b"Host: x\r\nX_Y: z\r\n"))
                assert response.status == 200


class TestRequestLine:
    """RFC 9112 3: method is a token, one SP between parts, the target has no whitespace or
    controls, and the version is HTTP/1.x in upper case. Daphne: a non-ASCII path or query is
    a 400."""

    @pytest.mark.parametrize(
        "line",
        cases(
            method_with_parenthesis=b"G(T / HTTP/1.1",
            method_with_space=b"GE T / HTTP/1.1",
            method_empty=b" / HTTP/1.1",
            target_space=b"GET /a b HTTP/1.1",
            target_control=b"GET /a\x01b HTTP/1.1",
            target_del=b"GET /a\x7fb HTTP/1.1",
            target_tab=b"GET /a\tb HTTP/1.1",
            target_empty=b"GET  HTTP/1.1",
            lowercase_version=b"GET / http/1.1",
            no_version=b"GET /",
            version_garbage=b"GET / HTTP/x.y",
            path_non_ascii=b"GET /caf\xc3\xa9 HTTP/1.1",
            query_non_ascii=b"GET /?q=\xff HTTP/1.1",
            path_latin1=b"GET /\xe9 HTTP/1.1",
        ),
    )
    def test_bad_request_line(self, server: ServerProcess, line: bytes) -> None:
        assert_refused(server, get(line), statuses=(400, 505) if line == b"GET /" else (400,))

    def test_percent_encoded_non_ascii_is_fine(self, server: ServerProcess) -> None:
        response = exchange(server.port, build("GET", "/headers/caf%C3%A9?q=%FF"))
        assert response.status == 200
        assert response.json()["raw_path"] == "/headers/caf%C3%A9"
        assert response.json()["query_string"] == "q=%FF"

    @pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "PROPFIND", "PURGE"])
    def test_other_methods_reach_the_app(self, server: ServerProcess, method: str) -> None:
        response = exchange(server.port, build(method, "/headers"))
        assert response.json()["method"] == method


class TestGarbage:
    """Bytes that are not HTTP at all: 400, close, and the server carries on."""

    @pytest.mark.parametrize(
        "data",
        cases(
            binary=b"\x00\xff\xfe\x01 garbage\r\n\r\n",
            tls_client_hello=bytes.fromhex("16030100a5010000a10303") + bytes(64) + b"\r\n\r\n",
            # The HTTP/2 preface anywhere but first on a connection.
            late_http2_preface=b"\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            only_crlf_then_junk=b"\r\n\r\n\x01\x02\x03\r\n\r\n",
            json=b'{"jsonrpc": "2.0"}\r\n\r\n',
        ),
    )
    def test_garbage(self, server: ServerProcess, data: bytes) -> None:
        assert_refused(server, data, statuses=(400, 505))

    def test_leading_empty_lines_are_ignored(self, server: ServerProcess) -> None:
        """RFC 9112 2.2: a server SHOULD ignore at least one empty line before a request."""
        response = exchange(server.port, b"\r\n" + build("GET", "/"))
        assert response.status == 200


class TestVersion:
    """RFC 9110 6.2 and 15.6.6: a major version the server does not speak is a 505."""

    def test_http2_request_line(self, server: ServerProcess) -> None:
        assert_refused(server, get(b"GET / HTTP/2.0"), statuses=(505,))

    def test_http3_request_line(self, server: ServerProcess) -> None:
        assert_refused(server, get(b"GET / HTTP/3.0"), statuses=(505,))

    @pytest.mark.parametrize("field", [b"Connection: keep-alive", b"Proxy-Connection: keep-alive"])
    def test_http2_request_line_asking_keep_alive(
        self, server: ServerProcess, field: bytes
    ) -> None:
        """llhttp keeps an HTTP/2.0 request line alive when a Connection field asks it to: the
        version must still be read (and refused), not taken for 1.1 from the keep-alive."""
        assert_refused(server, get(b"GET / HTTP/2.0", b"Host: x\r\n" + field + b"\r\n"), (505,))

    def test_llhttp_keeps_alive_by_default_only_11(self) -> None:
        """What protocols/http1.py relies on to skip get_http_version(): llhttp takes only
        these request-line versions, and without a Connection field keeps only 1.1 alive."""

        class Callbacks:
            pass

        kept = {}
        for version in ("0.9", "1.0", "1.1", "1.2", "2.0", "2.1", "3.0", "9.9"):
            parser = httptools.HttpRequestParser(Callbacks())
            try:
                parser.feed_data(f"GET / HTTP/{version}\r\nHost: x\r\n\r\n".encode())
            except httptools.HttpParserError:
                continue
            kept[version] = parser.should_keep_alive()
        assert kept == {"0.9": False, "1.0": False, "1.1": True, "2.0": False}

    def test_http10_and_11_served(self, server: ServerProcess) -> None:
        assert exchange(server.port, get(b"GET / HTTP/1.0")).status == 200
        assert exchange(server.port, get(b"GET / HTTP/1.1")).status == 200


class TestHost:
    """RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request without Host, with
    more than one Host field line, or with an invalid Host value."""

    @pytest.mark.parametrize(
        "headers",
        cases(
            missing=b"",
            two_fields=b"Host: a\r\nHost: b\r\n",
            invalid_value=b"Host: a b\r\n",
        ),
    )
    def test_bad_host(self, server: ServerProcess, headers: bytes) -> None:
        assert_refused(server, get(headers=headers))

    def test_a_valid_host_does_not_vouch_for_the_next(self, server: ServerProcess) -> None:
        """A Host value found valid is not checked again (clients repeat it with every
        request, on every connection); another value still is."""
        with RawClient(server.port) as client:
            client.try_send(get() + get(headers=b"Host: x\r\n") + get(headers=b"Host: a b\r\n"))
            assert client.read_response().status == 200
            assert client.read_response().status == 200
            refused = client.read_response()
            assert refused.status == 400, refused.raw
            assert client.wait_closed() == b""

    def test_more_distinct_hosts_than_the_table_holds(self, server: ServerProcess) -> None:
        """Past the table of valid Host values (64) it starts over: every value is still
        checked, and a value from before the restart is served on a new connection."""
        with RawClient(server.port) as client:
            requests = [get(headers=b"Host: h%d.example\r\n" % index) for index in range(150)]
            client.try_send(b"".join(requests) + get(headers=b"Host: a b\r\n"))
            for _ in requests:
                assert client.read_response().status == 200
            refused = client.read_response()
            assert refused.status == 400, refused.raw
            assert client.wait_closed() == b""
        assert exchange(server.port, get(headers=b"Host: h3.example\r\n")).status == 200
        long_host = b"Host: " + b"h" * 300 + b"\r\n"  # valid, too long for the table
        assert exchange(server.port, get(headers=long_host)).status == 200
        assert exchange(server.port, get(headers=long_host)).status == 200

    def test_the_known_host_twice_is_still_two_hosts(self, server: ServerProcess) -> None:
        """The Host value a connection already sent, repeated in one later request, is two
        Host field lines: 400 (RFC 9112 3.2)."""
        with RawClient(server.port) as client:
            client.try_send(get() + get(headers=b"Host: x\r\nHost: x\r\n") + FOLLOW_UP)
            assert client.read_response().status == 200
            refused = client.read_response()
            assert refused.status == 400, refused.raw
            assert b"SMUGGLED" not in refused.raw
            assert client.wait_closed() == b""


def test_http10_without_host_is_fine(server: ServerProcess) -> None:
    """RFC 9112 3.2: Host is required of HTTP/1.1 requests only."""
    assert exchange(server.port, get(b"GET / HTTP/1.0", b"")).status == 200
