# The HTTP/1.1 attack suite: a running laurelin attacked over raw sockets, one test per attack
# class, each citing its advisory (CVE) or RFC section. Owns four families:
#
#   1. request smuggling and framing (Content-Length, Transfer-Encoding, chunk syntax, header
#      syntax, methods, targets, absolute-form, CONNECT, HTTP/0.9, pipelining order);
#   2. header and body limits (oversized heads, endless header streams, chunk metadata floods,
#      bodies over --limit-max-body-size, huge targets);
#   3. response splitting and log injection;
#   4. misbehaving apps (never reads, never answers, raises, sends messages out of order).
#
# The invariants asserted beyond the status code: a refused connection is closed with nothing
# after the refusal; a request hidden in a body or after the refusal never runs (it targets
# h1_app's /noread?tag=T, which records "started" in the side channel of
# tests/apps/side_channel.py, and the test asserts the record never appears); during floods the
# server's RSS stays bounded (conftest.PeakRSS); afterwards a fresh client gets a 200 in < 2 s.
# The per-behaviour tests live in tests/test_http1_*.py, test_app_errors.py and
# test_timeouts_app.py; this file adds the attack framing and the invariants above.
from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.asgi_support import wait_marker
from conftest import PeakRSS, ServerProcess
from rawhttp import ConnectionClosed, RawClient, Response, build, chunked, events, exchange, serve

KIB = 1 << 10
MIB = 1 << 20
# What a fresh client may wait for its 200 after an attack (the brief's "promptly").
PROMPT_SECONDS = 2.0
# How much a flood may grow the server's resident memory. The floods below send 16-50 MiB:
# a server that buffered them would pass this bound several times over.
RSS_BOUND_KIB = 12 * 1024
# The most a client may have sent when the refusal of an endless head arrives: the head limit
# is 64 KiB; the rest is kernel buffering (the flood pauses each MiB to let a refusal show).
REFUSED_WITHIN = 4 * MIB
# --limit-max-body-size of the `limited` server.
BODY_LIMIT = MIB


# -- servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def main() -> Iterator[ServerProcess]:
    """h1_app with the default limits and the access log on stdout (-v 1)."""
    with serve("h1_app:app") as proc:
        yield proc


@pytest.fixture(scope="module")
def limited() -> Iterator[ServerProcess]:
    """h1_app with a 1 MiB --limit-max-body-size."""
    with serve("h1_app:app", "--limit-max-body-size", str(BODY_LIMIT)) as proc:
        yield proc


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sec-h1-markers")


@pytest.fixture(scope="module")
def misbehaving(markers: Path) -> Iterator[ServerProcess]:
    """asgi_app (apps that raise, return early, send out of order) with -t 2."""
    with serve(
        "asgi_app:app",
        "--http-timeout",
        "2",
        "--graceful-timeout",
        "2",
        env={"ASGI_TEST_MARKERS": str(markers)},
    ) as proc:
        yield proc


# -- helpers -------------------------------------------------------------------------------------


def new_tag() -> str:
    return uuid.uuid4().hex


def smuggled(tag: str) -> bytes:
    """The request an attacker hides: if it ever runs, EVENTS[tag] gets "started"."""
    return build("GET", f"/noread?tag={tag}")


def assert_serving(server: ServerProcess) -> None:
    """A fresh client gets its 200 promptly."""
    started = time.monotonic()
    response = exchange(server.port, build("GET", "/"), timeout=10)
    elapsed = time.monotonic() - started
    assert (response.status, response.body) == (200, b"Hello, world!")
    assert elapsed < PROMPT_SECONDS, f"a fresh client waited {elapsed:.2f}s"


def never_ran(server: ServerProcess, tag: str) -> None:
    """Nothing was recorded under `tag`: the request carrying it never reached the app. Called
    after assert_serving, so a request the server had dispatched would have run by now."""
    assert events(server, tag, timeout=0) == [], f"the request tagged {tag} was executed"


def refused_and_closed(
    server: ServerProcess, data: bytes, statuses: tuple[int, ...] = (400,)
) -> Response:
    """Send `data`: one error response with `connection: close`, then the close, nothing after
    it; and the server still serves a fresh client promptly."""
    with RawClient(server.port) as client:
        client.try_send(data)
        response = client.read_response()
        assert response.status in statuses, response.raw[:400]
        assert response.header("connection") == "close", response.raw[:400]
        rest = client.wait_closed()
    assert rest == b"", f"bytes after the refusal: {rest[:200]!r}"
    assert_serving(server)
    return response


def assert_smuggling_refused(
    server: ServerProcess,
    tag: str,
    data: bytes,
    outer_may_start: bool = False,
    statuses: tuple[int, ...] = (400,),
) -> None:
    """`data` (a request to /sha256?tag=TAG-outer hiding TAG-smuggled requests, with one more
    appended) is refused and closed, and no smuggled request ever runs. The outer request
    never runs either when the head is refused; when the body is (`outer_may_start`), its app
    may have started but never sees the body as complete."""
    refused_and_closed(server, data + smuggled(f"{tag}-smuggled"), statuses)
    never_ran(server, f"{tag}-smuggled")
    outer = events(server, f"{tag}-outer", timeout=0)
    if outer_may_start:
        assert not any(event.startswith("done") for event in outer), outer
    else:
        assert outer == [], outer


def post(tag: str, headers: bytes, body: bytes) -> bytes:
    """A POST to /sha256?tag=TAG-outer with raw header lines (Host included) and body."""
    return b"POST /sha256?tag=%b-outer HTTP/1.1\r\nHost: x\r\n%b\r\n%b" % (
        tag.encode(),
        headers,
        body,
    )


def open_fds(server: ServerProcess) -> int:
    return len(os.listdir(f"/proc/{server.pid}/fd"))


def wait_fds_at_most(server: ServerProcess, limit: int, timeout: float = 10.0) -> None:
    """The server's open descriptors fall back to `limit` or fewer (connections released)."""
    deadline = time.monotonic() + timeout
    while (count := open_fds(server)) > limit:
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} descriptors open, expected at most {limit}")
        time.sleep(0.05)


def flood(client: RawClient, filler: bytes, cap: int) -> int:
    """Send `filler` over and over until the server answers or closes, or `cap` bytes went
    out; return how many bytes were sent. At each MiB the sender pauses briefly, so that a
    refusal shows before kernel buffers (several MiB on loopback) hide how early it came."""
    sent = 0
    pause_at = MIB
    while sent < cap:
        client.sock.settimeout(10.0)
        try:
            client.sock.sendall(filler)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            break
        sent += len(filler)
        if sent >= pause_at:
            pause_at += MIB
            if client.poll(0.5):
                break
        elif client.poll(0.0005):
            break
    return sent


def flooded(
    server: ServerProcess, head: bytes, filler: bytes, statuses: tuple[int, ...], cap: int
) -> tuple[Response, int]:
    """`head`, then a flood of `filler`: refused with one of `statuses` and closed before the
    client has sent REFUSED_WITHIN bytes, with the server's RSS bounded throughout."""
    with PeakRSS(server) as rss, RawClient(server.port, timeout=20) as client:
        client.send(head)
        sent = flood(client, filler, cap)
        try:
            response = client.read_response(timeout=3)
        except (ConnectionClosed, TimeoutError) as exc:
            raise AssertionError(f"no refusal after {sent} bytes of flood: {exc}") from None
        client.wait_closed(timeout=20)
    assert response.status in statuses, response.raw[:300]
    assert response.header("connection") == "close"
    assert sent < REFUSED_WITHIN, f"refused only after {sent} bytes"
    assert rss.growth < RSS_BOUND_KIB, f"RSS grew by {rss.growth} KiB"
    assert_serving(server)
    return response, sent


# == 1. Request smuggling and framing =============================================================


def content_length_cases(tag: str, hidden: bytes) -> dict[str, bytes]:
    size = len(hidden)
    return {
        "duplicate_same": post(
            tag, b"Content-Length: %d\r\nContent-Length: %d\r\n" % (size, size), hidden
        ),
        "duplicate_zero_first": post(
            tag, b"Content-Length: 0\r\nContent-Length: %d\r\n" % size, hidden
        ),
        "duplicate_zero_last": post(
            tag, b"Content-Length: %d\r\nContent-Length: 0\r\n" % size, hidden
        ),
        "list_same": post(tag, b"Content-Length: %d, %d\r\n" % (size, size), hidden),
        "list_different": post(tag, b"Content-Length: 0, %d\r\n" % size, hidden),
        "inner_space": post(tag, b"Content-Length: 0 %d\r\n" % size, hidden),
        "plus_sign": post(tag, b"Content-Length: +%d\r\n" % size, hidden),
        "minus_sign": post(tag, b"Content-Length: -%d\r\n" % size, hidden),
        "hex": post(tag, b"Content-Length: 0x%x\r\n" % size, hidden),
        "overflow_wraps_to_zero": post(tag, b"Content-Length: %d\r\n" % (1 << 64), hidden),
    }


CONTENT_LENGTH_CASES = list(content_length_cases("", b""))


@pytest.mark.parametrize("case", CONTENT_LENGTH_CASES)
def test_content_length_smuggling(main: ServerProcess, case: str) -> None:
    """Ambiguous Content-Length (RFC 9112 6.3 (5), RFC 9110 8.6): Twisted CVE-2020-10108 (two
    Content-Length fields, the first ignored: a zero second one made the body the next request)
    and CVE-2022-24801 (signed and otherwise non-digit lengths accepted). Parsers disagree on
    each value (the first or the last of two, 0 for what does not parse, the low 64 bits of an
    overflow), and the body is a request that the shorter reading runs: 400, close, never run."""
    tag = new_tag()
    data = content_length_cases(tag, smuggled(f"{tag}-smuggled"))[case]
    assert_smuggling_refused(main, tag, data)


def transfer_encoding_cases(tag: str, hidden: bytes) -> dict[str, bytes]:
    ends_at_zero = b"0\r\n\r\n" + hidden  # chunked: empty body, then `hidden` as a request
    as_chunk = chunked(hidden)  # chunked: `hidden` is data
    size_line = b"%x\r\n" % len(hidden)
    return {
        "cl_te": post(
            tag,
            b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(ends_at_zero),
            ends_at_zero,
        ),
        "te_cl": post(
            tag,
            b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n" % len(size_line),
            as_chunk,
        ),
        "gzip_only": post(tag, b"Transfer-Encoding: gzip\r\n", hidden),
        "chunked_then_gzip": post(tag, b"Transfer-Encoding: chunked, gzip\r\n", ends_at_zero),
        "chunked_twice_in_a_list": post(tag, b"Transfer-Encoding: chunked, chunked\r\n", as_chunk),
        "chunked_in_two_fields": post(
            tag, b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", as_chunk
        ),
        "chunked_then_identity": post(
            tag, b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", ends_at_zero
        ),
        "identity": post(tag, b"Transfer-Encoding: identity\r\n", hidden),
        "xchunked": post(tag, b"Transfer-Encoding: xchunked\r\n", ends_at_zero),
        "vertical_tab": post(tag, b"Transfer-Encoding: \x0bchunked\r\n", ends_at_zero),
        "space_before_colon_with_cl": post(
            tag,
            b"Transfer-Encoding : chunked\r\nContent-Length: %d\r\n" % len(ends_at_zero),
            ends_at_zero,
        ),
        "http10_chunked": post(tag, b"Transfer-Encoding: chunked\r\n", as_chunk).replace(
            b"HTTP/1.1", b"HTTP/1.0", 1
        ),
    }


TRANSFER_ENCODING_CASES = list(transfer_encoding_cases("", b""))


@pytest.mark.parametrize("case", TRANSFER_ENCODING_CASES)
def test_transfer_encoding_smuggling(main: ServerProcess, case: str) -> None:
    """Transfer-Encoding smuggling (RFC 9112 6.1, 6.3 (3)-(4)): Twisted CVE-2020-10109 (with
    Content-Length and chunked both present, the length won and the rest of the body became a
    pipelined request); CL.TE / TE.CL desync; codings that do not end in exactly one chunked.
    Each case hides a request that one of the two readings would run: 400, close, never run.
    (HTTP/1.0 with Transfer-Encoding: RFC 9112 6.1 says the framing is faulty; this server
    refuses it outright.)"""
    tag = new_tag()
    data = transfer_encoding_cases(tag, smuggled(f"{tag}-smuggled"))[case]
    assert_smuggling_refused(main, tag, data)


def chunk_cases(hidden: bytes) -> dict[str, bytes]:
    size = b"%x" % len(hidden)
    return {
        "non_hex_size": b"zz\r\n" + hidden + b"\r\n0\r\n\r\n",
        "size_wraps_to_zero": b"%x\r\n\r\n" % (1 << 64) + hidden,
        "size_wraps_to_length": b"%x\r\nhello\r\n0\r\n\r\n" % ((1 << 64) + 5) + hidden,
        "negative_size": b"-" + size + b"\r\n" + hidden + b"\r\n0\r\n\r\n",
        "plus_size": b"+" + size + b"\r\n" + hidden + b"\r\n0\r\n\r\n",
        "hex_prefix_size": b"0x" + size + b"\r\n" + hidden + b"\r\n0\r\n\r\n",
        "leading_space_size": b" " + size + b"\r\n" + hidden + b"\r\n0\r\n\r\n",
        "empty_size": b"\r\n" + hidden + b"\r\n0\r\n\r\n",
        "lf_after_size": size + b"\n" + hidden + b"\r\n0\r\n\r\n",
        "bare_cr_after_size": b"5\rhello\r\n0\r\n\r\n" + hidden,
        "lf_after_data": b"5\r\nhello\n0\r\n\r\n" + hidden,
        "bare_cr_after_data": b"5\r\nhello\r0\r\n\r\n" + hidden,
        "lf_after_last_chunk": b"0\n\r\n" + hidden,
        "lf_after_trailer": b"0\r\nx-t: 1\n\r\n" + hidden,
        "bare_cr_in_extension": b"5;ext\rx\r\nhello\r\n0\r\n\r\n" + hidden,
        "lf_after_extension": b"5;ext=1\nhello\r\n0\r\n\r\n" + hidden,
        "nul_in_extension": b"5;a\x00b\r\nhello\r\n0\r\n\r\n" + hidden,
        "control_in_extension": b"5;a=\x01\r\nhello\r\n0\r\n\r\n" + hidden,
        "unterminated_quoted_extension": b'5;a="b\r\nhello\r\n0\r\n\r\n' + hidden,
        # h11: any two bytes after the chunk data were taken for its CRLF.
        "data_not_followed_by_crlf": b"5\r\nhelloXX0\r\n\r\n" + hidden,
        "data_longer_than_size": b"5\r\nhello" + hidden + b"\r\n0\r\n\r\n",
        "data_shorter_than_size": size + b"\r\nhello\r\n0\r\n\r\n" + hidden,
    }


CHUNK_CASES = list(chunk_cases(b""))


@pytest.mark.parametrize("case", CHUNK_CASES)
def test_chunked_framing_smuggling(main: ServerProcess, case: str) -> None:
    """Chunked-body desync (RFC 9112 7.1, 7.1.1, 2.2): h11 CVE-2025-43859 (a chunk not
    followed by CRLF was accepted), llhttp CVE-2023-30589 (bare CR as a line end), Twisted
    CVE-2022-24801 (signed and 0x chunk sizes, bad chunk-extension bytes), 64-bit chunk-size
    overflow that wraps to a small size. The app may have begun reading the outer body; it
    never sees it complete, and the hidden request never runs: 400, close."""
    tag = new_tag()
    body = chunk_cases(smuggled(f"{tag}-smuggled"))[case]
    data = post(tag, b"Transfer-Encoding: chunked\r\n", body)
    assert_smuggling_refused(main, tag, data, outer_may_start=True)


def header_syntax_cases(tag: str, hidden: bytes) -> dict[str, bytes]:
    length = b"%d" % len(hidden)
    return {
        "obs_fold_content_length": post(
            tag, b"X-A: a\r\n Content-Length: " + length + b"\r\n", hidden
        ),
        "obs_fold_tab": post(tag, b"X-A: a\r\n\tContent-Length: " + length + b"\r\n", hidden),
        "obs_fold_transfer_encoding": post(
            tag, b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n" + hidden
        ),
        "space_before_colon": post(tag, b"Content-Length : " + length + b"\r\n", hidden),
        "tab_before_colon": post(tag, b"Content-Length\t: " + length + b"\r\n", hidden),
        "space_in_name": post(tag, b"Content Length: " + length + b"\r\n", hidden),
        "bare_cr_between_fields": post(tag, b"X-A: a\rContent-Length: " + length + b"\r\n", hidden),
        "bare_lf_between_fields": post(tag, b"X-A: a\nContent-Length: " + length + b"\r\n", hidden),
        "nul_in_value": post(tag, b"X-A: a\x00Content-Length: " + length + b"\r\n", hidden),
        "no_colon": post(tag, b"Content-Length " + length + b"\r\n", hidden),
    }


HEADER_SYNTAX_CASES = list(header_syntax_cases("", b""))


@pytest.mark.parametrize("case", HEADER_SYNTAX_CASES)
def test_header_syntax_smuggling(main: ServerProcess, case: str) -> None:
    """Header-line tricks that hide a framing field from one parser (RFC 9112 5.1 no
    whitespace before the colon, 5.2 obs-fold, 2.2 bare CR; RFC 9110 5.5): llhttp
    CVE-2024-27982 (a Content-Length preceded by whitespace, i.e. folded onto the previous
    field), CVE-2023-30589 (bare CR taken for a line end). 400, close, never run."""
    tag = new_tag()
    data = header_syntax_cases(tag, smuggled(f"{tag}-smuggled"))[case]
    assert_smuggling_refused(main, tag, data)


INVALID_METHODS = {
    "control_char": b"G\x01T",
    "nul": b"G\x00T",
    "del": b"GET\x7f",
    "space_inside": b"GE T",
    "tab_separator": b"GET\t",
    "parenthesis": b"G(T",
    "empty": b"",
    "lowercase": b"get",
    "mixed_case": b"gEt",
}


@pytest.mark.parametrize("case", list(INVALID_METHODS))
def test_invalid_method(main: ServerProcess, case: str) -> None:
    """Methods that are not tokens, or lower-case lookalikes a proxy might normalise (RFC 9110
    9.1: a method is a case-sensitive token; RFC 9112 3: an invalid request-line SHOULD get a
    400, and the recipient must not autocorrect it). Refused (400, or 501 for an unknown
    token), closed, and the request never reaches the app."""
    tag = new_tag()
    method = INVALID_METHODS[case]
    data = method + b" /noread?tag=%b HTTP/1.1\r\nHost: x\r\n\r\n" % tag.encode()
    refused_and_closed(main, data + smuggled(f"{tag}-after"), statuses=(400, 501))
    never_ran(main, tag)
    never_ran(main, f"{tag}-after")


INVALID_TARGETS = {
    "space": b"/noread?tag=TAG x",
    "tab": b"/noread?tag=TAG\tx",
    "control_char": b"/noread?tag=TAG\x01",
    "nul": b"/noread?tag=TAG\x00x",
    "del": b"/noread?tag=TAG\x7f",
    "bare_cr": b"/noread?tag=TAG\rx",
    "non_ascii": b"/noread?tag=TAG\xc3\xa9",
    "relative": b"noread?tag=TAG",
    "query_only": b"?tag=TAG",
    "authority_form_with_get": b"example.com:80",
    "asterisk_with_get": b"*",
    "asterisk_prefix": b"*/noread?tag=TAG",
}


@pytest.mark.parametrize("case", list(INVALID_TARGETS))
def test_invalid_request_target(main: ServerProcess, case: str) -> None:
    """Request-targets outside RFC 9112 3.2's four forms: whitespace or control bytes (which
    would split or forge the request line), relative paths, authority-form on a GET, and the
    asterisk-form on anything but OPTIONS (RFC 9112 3.2.4: "only used for a server-wide
    OPTIONS request"). RFC 9112 3: answer 400; here also: closed, never reaches the app."""
    tag = new_tag()
    target = INVALID_TARGETS[case].replace(b"TAG", tag.encode())
    data = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    refused_and_closed(main, data + smuggled(f"{tag}-after"))
    never_ran(main, tag)
    never_ran(main, f"{tag}-after")


@pytest.mark.parametrize(
    "target",
    [
        "/headers#/../admin",
        "/headers?x=1#frag?y=2",
        "/headers#%2e%2e%2fadmin",
    ],
)
def test_fragment_never_reaches_the_app(main: ServerProcess, target: str) -> None:
    """A fragment is not part of an origin-form target (RFC 9112 3.2.1, RFC 9110 4.2.5: a
    client never sends one). If the server serves the request at all, the app's path, raw_path
    and query never hold what follows the "#" (which could smuggle a path past a front-end
    that cut it off); a 400 with close is the other acceptable outcome."""
    with RawClient(main.port) as client:
        response = client.request(build("GET", target))
        if response.status == 400:
            assert response.header("connection") == "close"
        else:
            assert response.status == 200
            seen = response.json()
            assert (seen["path"], seen["raw_path"]) == ("/headers", "/headers")
            assert "#" not in seen["query_string"]
            assert "frag" not in seen["query_string"]
            assert seen["query_string"] == target.partition("?")[2].partition("#")[0]
    assert_serving(main)


def test_absolute_form_target(main: ServerProcess) -> None:
    """Absolute-form request-target (RFC 9112 3.2.2): a server MUST accept it, and "MUST
    ignore the received Host header field (if any) and instead use the host information of
    the request-target". The app gets the target's path and query, and the only Host it sees
    is the target's authority; a disagreeing Host header is what routing and cache-poisoning
    attacks on a front-end rely on."""
    data = b"GET http://target.example/headers?x=1 HTTP/1.1\r\nHost: attacker.example\r\n\r\n"
    with RawClient(main.port) as client:
        response = client.request(data)
        assert response.status == 200, response.raw[:300]
        seen = response.json()
        assert (seen["path"], seen["raw_path"], seen["query_string"]) == (
            "/headers",
            "/headers",
            "x=1",
        )
        hosts = [value for name, value in seen["headers"] if name == "host"]
        assert hosts == ["target.example"], f"the app saw Host {hosts}"
        # The connection goes on as usual.
        assert client.request(build("GET", "/")).body == b"Hello, world!"


@pytest.mark.parametrize(
    ("target", "status"),
    [
        (b"HTTPS://target.example:8443/headers", 200),  # RFC 3986 3.1: case-insensitive
        (b"http://user:secret@target.example/headers", 400),  # RFC 9110 4.2.4
        (b"ftp://target.example/headers", 400),
        (b"http:///headers", 400),
    ],
    ids=["uppercase_scheme", "userinfo", "other_scheme", "no_host"],
)
def test_absolute_form_authority(main: ServerProcess, target: bytes, status: int) -> None:
    """The absolute-form's scheme is http or https in any case, with a host and no userinfo
    (RFC 9110 4.2.4: a recipient SHOULD treat userinfo as an error; it is how phishing URLs
    hide their real host). Anything else is refused and closed."""
    data = b"GET " + target + b" HTTP/1.1\r\nHost: attacker.example\r\n\r\n"
    with RawClient(main.port) as client:
        response = client.request(data)
    assert response.status == status, response.raw[:300]
    if status == 200:
        hosts = [value for name, value in response.json()["headers"] if name == "host"]
        assert hosts == ["target.example:8443"]


@pytest.mark.parametrize(
    "target",
    [b"target.example:443", b"/noread?tag=TAG", b"http://target.example/noread?tag=TAG"],
    ids=["authority_form", "origin_form", "absolute_form"],
)
def test_connect_refused(main: ServerProcess, target: bytes) -> None:
    """CONNECT (RFC 9110 9.3.6; RFC 9112 3.2.3: its target is authority-form only) turns the
    connection into a tunnel for a proxy that grants it: the bytes after it are opaque. An
    origin server that serves it anyway and then parses those bytes as requests lets them past
    every front-end (tunnel smuggling). Refused cleanly (405, or 400 for a target that is not
    authority-form), closed, and neither it nor the "tunnelled" request reaches the app."""
    tag = new_tag()
    target = target.replace(b"TAG", tag.encode())
    data = b"CONNECT " + target + b" HTTP/1.1\r\nHost: target.example:443\r\n\r\n"
    refused_and_closed(main, data + smuggled(f"{tag}-tunnelled"), statuses=(400, 405))
    never_ran(main, tag)
    never_ran(main, f"{tag}-tunnelled")


@pytest.mark.parametrize(
    "data",
    [
        b"GET /noread?tag=TAG\r\n\r\n",
        b"GET /noread?tag=TAG\r\nHost: x\r\n\r\n",
        b"GET /noread?tag=TAG\r\n",
    ],
    ids=["bare", "followed_by_fields", "line_then_eof"],
)
def test_http09_request_refused(main: ServerProcess, data: bytes) -> None:
    """HTTP/0.9 (RFC 9112 3: the request-line requires an HTTP-version; Appendix C.1: HTTP/0.9
    support ought to be disabled, and its response is a bare body a client or cache cannot
    tell from a 1.x response's content). A request line without a version gets an HTTP/1.1
    error (400 or 505) with a status line, never a 0.9-style bare body, is closed, and never
    reaches the app. A lone 0.9 line whose client then half-closes (as a 0.9 client does) is
    answered the same way or dropped silently, never served."""
    tag = new_tag()
    data = data.replace(b"TAG", tag.encode())
    if data.endswith(b"\r\n\r\n"):
        response = refused_and_closed(main, data + smuggled(f"{tag}-after"), (400, 505))
        assert response.raw.startswith(b"HTTP/1.1 ")
        never_ran(main, f"{tag}-after")
    else:
        with RawClient(main.port) as client:
            client.send(data)
            client.shutdown_write()
            answer = client.wait_closed()
        assert answer == b"" or re.match(rb"HTTP/1\.1 (400|505) ", answer), answer[:200]
        assert_serving(main)
    never_ran(main, tag)


def test_pipelined_responses_in_request_order(main: ServerProcess) -> None:
    """Pipelining (RFC 9112 9.3.2: responses MUST be sent in request order): Twisted
    CVE-2023-46137 (a slow first response overtaken by a later one) and CVE-2024-41671
    (a pipelined request processed, and answered, before the previous response was complete).
    24 pipelined requests with shrinking delays, bodies and streamed responses mixed in come
    back strictly in order; the next request does not even start while the one before it is
    unanswered; and meanwhile a fresh client is served promptly."""
    gate = new_tag()
    second = new_tag()
    requests = [build("POST", f"/gated-echo?tag={gate}", body=b"first")]
    requests.append(build("GET", f"/noread?tag={second}"))
    expected = [b"first", b"answered without reading"]
    for index in range(22):
        delay = (0.3, 0.0, 0.15, 0.05)[index % 4] if index < 12 else 0.0
        if index % 5 == 2:
            body = b"body%d" % index
            requests.append(build("POST", f"/sleep?id={index}&s={delay}", body=body))
            expected.append(b"%d:%b" % (index, body))
        elif index % 5 == 4:
            requests.append(build("GET", "/stream?n=3"))
            expected.append(b"part0;part1;part2;")
        else:
            requests.append(build("GET", f"/sleep?id={index}&s={delay}"))
            expected.append(b"%d:" % index)
    with PeakRSS(main) as rss, RawClient(main.port, timeout=20) as client:
        client.send(b"".join(requests))
        assert events(main, gate, "started") == ["started"]
        # The first response is held by its app: nothing may overtake it, and the second
        # request may not run before it is answered.
        assert client.receive_nothing(0.3) == b""
        assert events(main, second, timeout=0.2) == []
        assert_serving(main)
        release_gate(main, gate)
        bodies = [client.read_response().body for _ in expected]
        assert client.receive_nothing(0.2) == b""
    assert bodies == expected
    assert events(main, second, timeout=0) == ["started"]
    assert rss.growth < RSS_BOUND_KIB


def release_gate(server: ServerProcess, tag: str) -> None:
    with RawClient(server.port) as client:
        assert client.request(build("GET", f"/release?tag={tag}")).body == b"released"


# == 2. Header and body limits ====================================================================


def with_headers(count: int, size: int) -> bytes:
    """A GET with Host and `count - 1` more fields whose values are `size` bytes."""
    return build("GET", "/", [(f"X-Field-{index}", "v" * size) for index in range(count - 1)])


OVERSIZED_HEADS = {
    "one_70k_field": (build("GET", "/", [("X-Big", "a" * 70 * KIB)]), 431),
    "seventy_1k_fields": (with_headers(70, KIB), 431),
    "101_fields": (with_headers(101, 10), 431),
    "5000_fields": (with_headers(5000, 1), 431),
    "100k_target": (build("GET", "/" + "a" * 100 * KIB), 414),
    "100k_query": (build("GET", "/?" + "q" * 100 * KIB), 414),
}


@pytest.mark.parametrize("case", list(OVERSIZED_HEADS))
def test_oversized_request_head(main: ServerProcess, case: str) -> None:
    """Oversized request heads (RFC 6585 5: 431; RFC 9110 15.5.15: 414 for the target; RFC 9112
    3: a server SHOULD limit the request-line): the class of Node.js CVE-2018-12121 (large
    headers as a denial of service). Defaults: 64 KiB of head, 100 fields. Refused, closed,
    memory bounded, and the next client is served."""
    data, status = OVERSIZED_HEADS[case]
    with PeakRSS(main) as rss:
        refused_and_closed(main, data, statuses=(status,))
    assert rss.growth < RSS_BOUND_KIB


ENDLESS_HEADS = {
    "header_lines": (
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"X-Flood: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n" * 256,
        431,
    ),
    "one_header_line": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: ", b"a" * 16 * KIB, 431),
    "one_header_name": (b"GET / HTTP/1.1\r\nHost: x\r\nX-", b"a" * 16 * KIB, 431),
    "request_target": (b"GET /", b"a" * 16 * KIB, 414),
}


@pytest.mark.parametrize("case", list(ENDLESS_HEADS))
def test_endless_request_head(main: ServerProcess, case: str) -> None:
    """A head that never ends (RFC 6585 5, RFC 9110 15.5.15; Node.js CVE-2018-12121): header
    lines streamed forever without the blank line, one endless field, an endless target. The
    server answers 431 (414 for the target) and closes once past its 64 KiB limit, long before
    the client has sent several MiB (up to 16 MiB are offered), its RSS stays bounded, and a
    fresh client is then served promptly."""
    head, filler, status = ENDLESS_HEADS[case]
    flooded(main, head, filler, (status,), cap=16 * MIB)


CHUNK_METADATA_FLOODS = {
    # case: (first bytes of the body, what is then sent over and over, the server to attack)
    "endless_extension": (b"5;ext=", b"x" * 16 * KIB, "main"),
    "endless_size_line": (b"0", b"0" * 16 * KIB, "main"),
    # 64-byte chunks each carrying a 16 KiB extension: the body grows (fast enough for any
    # minimum body rate) but 256 times slower than what the client sends, so a 1 MiB body
    # limit would take 256 MiB of input to reach.
    "extension_heavy_chunks": (
        b"",
        b"40;e=" + b"x" * 16 * KIB + b"\r\n" + b"c" * 64 + b"\r\n",
        "limited",
    ),
}


@pytest.mark.parametrize("case", list(CHUNK_METADATA_FLOODS))
def test_chunk_metadata_flood(request: pytest.FixtureRequest, case: str) -> None:
    """Unbounded chunk metadata: Node.js CVE-2024-22019 (chunk extensions read without limit,
    "bypassing standard safeguards like timeouts and body size limits": the bytes are neither
    head nor body), Go CVE-2023-39326 (small chunks carrying large extensions) and Go's 4 KiB
    cap on a chunk-size line. A chunk-size line (size and extensions, RFC 9112 7.1.1) that
    grows without end, or chunks whose extensions dwarf their data, must be refused (400, or
    408/413/431 as a limit) and closed like an endless head, long before the client has sent
    several MiB, with RSS bounded; the app never sees the body complete."""
    first, filler, which = CHUNK_METADATA_FLOODS[case]
    server: ServerProcess = request.getfixturevalue(which)
    tag = new_tag()
    head = post(tag, b"Transfer-Encoding: chunked\r\n", first)
    flooded(server, head, filler, (400, 408, 413, 431), cap=8 * MIB)
    outer = events(server, f"{tag}-outer", timeout=0)
    assert not any(event.startswith("done") for event in outer), outer


def test_content_length_over_body_limit(limited: ServerProcess) -> None:
    """A declared body over --limit-max-body-size (RFC 9110 15.5.14: 413 Content Too Large):
    refused from the head alone, before the app runs and before the client sends the body
    (with a length of 10**12, and with 2 MiB that the client does send), then closed."""
    for length, body in ((10**12, b""), (2 * MIB, b"b" * 2 * MIB)):
        tag = new_tag()
        head = build("POST", f"/sha256?tag={tag}", [("Content-Length", str(length))])
        with PeakRSS(limited) as rss:
            refused_and_closed(limited, head + body, statuses=(413,))
        never_ran(limited, tag)
        assert rss.growth < RSS_BOUND_KIB


def test_chunked_body_over_body_limit(limited: ServerProcess) -> None:
    """A chunked body growing past --limit-max-body-size (RFC 9110 15.5.14), streamed without
    end: 413 and close once past the 1 MiB limit, long before the client has sent the 16 MiB it
    offers; the app, which was reading, never sees the body complete; RSS stays bounded."""
    tag = new_tag()
    head = build("POST", f"/sha256?tag={tag}", [("Transfer-Encoding", "chunked")])
    filler = b"4000\r\n" + b"b" * 0x4000 + b"\r\n"
    flooded(limited, head, filler, (413,), cap=16 * MIB)
    found = events(limited, tag, "disconnect|done", timeout=5)
    assert not any(event.startswith("done") for event in found), found


# == 3. Response splitting and log injection =====================================================


@pytest.mark.parametrize(
    "kind", ["cr", "lf", "nul", "crlf-inject", "name-crlf", "name-space", "name-colon"]
)
def test_response_header_splitting(main: ServerProcess, kind: str) -> None:
    """HTTP response splitting (Uvicorn CVE-2020-7695: CR/LF in app header values reached the
    wire; RFC 9110 5.1 names are tokens, 5.5 values hold no CR, LF or NUL). The app's send()
    raises, the client gets a 500, and none of the injected bytes reach the wire: the response
    after it on the same connection is intact (not shifted by a forged header or body), and
    the server keeps serving."""
    tag = new_tag()
    with RawClient(main.port) as client:
        client.send(build("GET", f"/badheader?kind={kind}&tag={tag}") + build("GET", "/"))
        first = client.read_response()
        second = client.read_response()
        client.try_send(build("GET", "/", [("Connection", "close")]))
        rest = client.wait_closed()
    assert first.status == 500
    assert (second.status, second.body) == (200, b"Hello, world!")
    wire = (first.raw + second.raw + rest).lower()
    assert b"evil" not in wire
    assert b"set-cookie" not in wire
    assert events(main, tag, "raised") == ["raised:RuntimeError"]
    assert_serving(main)


@pytest.mark.parametrize("code", [99, 101, 600, 1000])
def test_status_line_is_the_servers(main: ServerProcess, code: int) -> None:
    """The status line (RFC 9112 4: status-code is 3 digits; RFC 9110 15: 100-599). ASGI has no
    reason phrase an app could inject into, so the status code is the app's only input to the
    line: one out of range (or 101, which only the server's upgrade machinery may send) is an
    app error, a 500, and the connection stays in step."""
    with RawClient(main.port) as client:
        response = client.request(build("GET", f"/status?code={code}&body=EVIL"))
        assert response.status == 500
        assert response.raw.startswith(b"HTTP/1.1 500 ")
        assert b"EVIL" not in response.raw
        assert client.request(build("GET", "/")).body == b"Hello, world!"


ACCESS_LINE = re.compile(
    r'^127\.0\.0\.1:\d+ - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\] "[^"]*" \d{3} \d+$'
)
FORGED = '127.0.0.1:1 - - [01/Jan/2026:00:00:00] "GET /admin" 200 1'


def test_log_injection(main: ServerProcess) -> None:
    """Log injection (Uvicorn CVE-2020-7694: the request path reached the access log unescaped;
    Daphne CVE-2026-44546: bytes str.splitlines() treats as line breaks, \\x0b \\x0c \\x1c-\\x1e
    \\x85, accepted in header values). Client-controlled CR, LF, NUL and ANSI escapes, raw or
    percent-encoded, in the path, the query and header values: every request served writes
    exactly one access-log line, the access log (stdout) holds nothing but well-formed lines
    with no raw control character, and no log line starts with forged text. Raw control bytes
    are refused (400) before they can reach a log."""
    probe = new_tag()
    quoted = FORGED.replace(" ", "%20").replace('"', "%22")
    served = [
        f"/{probe}-crlf%0d%0a{quoted}",
        f"/{probe}-lf%0a{quoted}",
        f"/{probe}-query?x=%0A%0D{quoted}",
        f"/{probe}-ansi%1b[31mFORGED%1b[0m",
        f"/{probe}-nul%00FORGED",
        f"/{probe}-backspace%08%08%08FORGED",
    ]
    refused = [
        b"GET /" + probe.encode() + b"-raw\rFORGED HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /" + probe.encode() + b"-raw\x1b[31mFORGED HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /" + probe.encode() + b"-raw\x85FORGED HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: a\x1b[31mFORGED\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nReferer: a\x0bFORGED\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x85FORGED\r\n\r\n",
    ]
    for target in served:
        response = exchange(main.port, build("GET", target))
        assert response.status == 200, target
    for data in refused:
        refused_and_closed(main, data)
    last = f"/{probe}-last"
    assert exchange(main.port, build("GET", last)).status == 200
    main.wait_for(re.escape(f'"GET {last}" 200'), "stdout")
    stdout = main.stdout
    lines = stdout.splitlines()
    bad = [line for line in lines if not ACCESS_LINE.match(line)]
    assert bad == [], f"not access-log lines: {bad[:5]!r}"
    assert len([line for line in lines if probe in line]) == len(served) + 1
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f\x85]", stdout.replace("\n", ""))
    for text in (stdout, main.stderr):
        assert not any(line.startswith(("FORGED", "127.0.0.1:1 ")) for line in text.splitlines())


# == 4. Misbehaving apps ==========================================================================


def test_app_never_reads_a_large_upload(main: ServerProcess) -> None:
    """An app that answers without reading a 50 MiB upload (RFC 9112 9.6: the server may
    close after the response rather than read the rest; the resource-exhaustion class of
    unbounded request buffering). The response arrives while the client is still sending,
    says `connection: close`, the rest of the body is discarded or the connection closed (not
    buffered: RSS bounded), and other clients are served meanwhile and afterwards."""
    tag = new_tag()
    total = 50 * MIB
    sent = [0]

    def upload(client: RawClient) -> None:
        # The reader thread changes the socket's timeout as it goes: a timeout here only
        # means "try again", until the overall deadline.
        piece = memoryview(b"u" * (256 * KIB))
        deadline = time.monotonic() + 30
        while sent[0] < total and time.monotonic() < deadline:
            try:
                sent[0] += client.sock.send(piece[: min(len(piece), total - sent[0])])
            except TimeoutError:
                continue
            except OSError:
                return

    with PeakRSS(main) as rss, RawClient(main.port, timeout=20) as client:
        client.send(build("POST", f"/noread?tag={tag}", [("Content-Length", str(total))]))
        sender = threading.Thread(target=upload, args=(client,), daemon=True)
        sender.start()
        response = client.read_response()
        assert_serving(main)
        sender.join(30)
        assert not sender.is_alive(), "the upload never ended: the server neither read nor closed"
        client.wait_closed(timeout=20)
    assert (response.status, response.body) == (200, b"answered without reading")
    assert response.header("connection") == "close"
    assert events(main, tag, timeout=0) == ["started"]
    assert rss.growth < RSS_BOUND_KIB, f"RSS grew by {rss.growth} KiB during a {sent[0]} B upload"
    assert_serving(main)


def test_app_never_responds_http_timeout(misbehaving: ServerProcess, markers: Path) -> None:
    """Apps that never answer (the hung-worker denial of service): with -t/--http-timeout 2,
    each of 12 concurrent requests to an app sleeping 30 s gets a complete 503 and its app is
    cancelled; while they hang a fresh client is served promptly; afterwards the connections'
    descriptors are released (no leak)."""
    baseline = open_fds(misbehaving)
    tokens = [f"hang-{new_tag()}" for _ in range(12)]
    clients = [RawClient(misbehaving.port, timeout=20) for _ in tokens]
    try:
        for client, token in zip(clients, tokens, strict=True):
            client.send(build("GET", f"/slow?seconds=30&token={token}"))
        for token in tokens:
            wait_marker(markers, f"{token}.started")
        assert_serving(misbehaving)
        responses = [client.read_response() for client in clients]
    finally:
        for client in clients:
            client.close()
    assert [r.status for r in responses] == [503] * len(tokens)
    assert all(b"503" in r.body for r in responses)
    for token in tokens:
        assert wait_marker(markers, f"{token}.cancelled") == "CancelledError"
    assert_serving(misbehaving)
    wait_fds_at_most(misbehaving, baseline + 2)


@pytest.mark.parametrize("close_how", ["fin", "reset"])
def test_app_never_responds_client_leaves(main: ServerProcess, close_how: str) -> None:
    """Without --http-timeout an app that never answers holds only its own client: when that
    client goes (FIN or RST), the app's receive() returns `http.disconnect` (ASGI HTTP spec),
    its late send() raises an OSError instead of writing to a dead socket, and the server's
    descriptors go back to where they were (10 such clients at once)."""
    baseline = open_fds(main)
    tags = [new_tag() for _ in range(10)]
    clients = [RawClient(main.port) for _ in tags]
    for client, tag in zip(clients, tags, strict=True):
        client.send(build("GET", f"/wait-disconnect?tag={tag}&timeout=20"))
    for tag in tags:
        assert events(main, tag, "waiting") == ["waiting"]
    assert_serving(main)
    for client in clients:
        client.close(reset=close_how == "reset")
    for tag in tags:
        found = events(main, tag, "send-raised|sent")
        assert found[:2] == ["waiting", "received:http.disconnect"], found
        assert found[-1].startswith("send-raised:") and found[-1].endswith(":True"), found
    wait_fds_at_most(main, baseline + 2)
    assert_serving(main)


def test_app_raises_before_response(misbehaving: ServerProcess) -> None:
    """An app that raises before http.response.start (ASGI HTTP spec; Daphne and Uvicorn answer
    500): 40 such requests on one keep-alive connection each get a complete 500 page holding
    nothing of the exception, the traceback goes to the server's log, the connection stays in
    step, and memory stays bounded (no per-failure leak)."""
    token = f"boom-{new_tag()}"
    with PeakRSS(misbehaving) as rss, RawClient(misbehaving.port) as client:
        for _ in range(40):
            response = client.request(build("GET", f"/raise-before-start?token={token}"))
            assert response.status == 500
            assert response.header("content-type") == "text/html; charset=utf-8"
            assert token.encode() not in response.raw
            assert b"ValueError" not in response.raw
        assert client.request(build("GET", "/")).body == b"Hello, world!"
    assert rss.growth < RSS_BOUND_KIB
    misbehaving.wait_for(rf"ValueError: boom before start {token}", "stderr")
    assert_serving(misbehaving)


@pytest.mark.parametrize("route", ["raise-after-start", "return-mid-response"])
@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_app_fails_mid_stream(misbehaving: ServerProcess, route: str, framing: str) -> None:
    """An app that raises (or returns) after starting its response: the response must not look
    complete (RFC 9112 6.3, 7.1: the client could cache or act on a truncated body), so the
    connection ends without the last chunk (chunked) or short of the Content-Length, and
    nothing is answered after it on that connection. The server keeps serving."""
    with RawClient(misbehaving.port) as client:
        client.send(build("GET", f"/{route}?framing={framing}") + build("GET", "/"))
        with pytest.raises(ConnectionClosed) as closed:
            client.read_response()
    partial = closed.value.partial
    assert partial.startswith(b"HTTP/1.1 200 ")
    head, _, body = partial.partition(b"\r\n\r\n")
    if framing == "chunked":
        assert b"transfer-encoding: chunked" in head.lower()
        assert b"\r\n0\r\n\r\n" not in body
    else:
        assert b"content-length: 1000" in head.lower()
        assert len(body) < 1000
    assert b"Hello, world!" not in body
    assert_serving(misbehaving)


WRONG_ORDER = {
    # case: whether the client may still get a complete response (the app broke the rules
    # after its response was complete), or must not get a 200 that looks complete.
    "body-before-start": "500",
    "unknown-type": "500",
    "no-type": "500",
    "websocket-type": "500",
    "start-twice": "not-complete",
    "after-complete": "complete",
    "start-after-complete": "complete",
}


@pytest.mark.parametrize("case", list(WRONG_ORDER))
def test_app_sends_messages_in_the_wrong_order(
    misbehaving: ServerProcess, markers: Path, case: str
) -> None:
    """ASGI messages out of order (ASGI HTTP spec: http.response.start, then body messages until
    more_body is false, then nothing): send() raises RuntimeError in the app; before the
    response started the client gets a 500, a response already started is never completed
    with made-up bytes, one already complete stands; and the server keeps serving."""
    token = f"order-{new_tag()}"
    with RawClient(misbehaving.port) as client:
        client.send(build("GET", f"/send-error?case={case}&token={token}"))
        try:
            response: Response | None = client.read_response()
        except ConnectionClosed as exc:
            response = None
            partial = exc.partial
    expected = WRONG_ORDER[case]
    if expected == "500":
        assert response is not None and response.status == 500
    elif expected == "complete":
        assert response is not None and (response.status, response.body) == (200, b"complete")
    else:
        assert response is None or response.status == 500
        if response is None:
            assert not partial.startswith(b"HTTP/1.1 200 ")
    outcome = wait_marker(markers, token)
    assert '"type": "RuntimeError"' in outcome, outcome
    assert_serving(misbehaving)
