# Hypothesis fuzzing of laurelin's HTTP/1.1 request parsing over a real socket (RFC 9112), one
# server for the whole file. Requests are built from components (method, target, version,
# headers from pools of valid, ambiguous and hostile values, a body framed by Content-Length or
# chunked or not at all, pipelined), then mutated byte-wise (bit flips, CR/LF/NUL/SP
# insertions, deletions, duplications, truncation) and sent split across several sends with
# small delays. After every example: each response is a well-formed HTTP/1.1 response (status
# line, header lines, body per its framing; an error status closes the connection; no more
# successful responses than requests: nothing smuggled) and the connection ends (the server
# closes within its short timeouts: no hang), the server process is alive, its stderr holds no
# traceback or parse error, and a fresh connection gets a 200. Valid pipelined requests split
# at arbitrary boundaries must be answered exactly as if sent at once (incremental parsing).
# LAURELIN_FUZZ_EXAMPLES sets the examples per test (`make fuzz`: thousands).
from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fuzzkit import (
    EXCHANGE_TIMEOUT,
    Mutation,
    Split,
    Watch,
    check_h1_response,
    first_method,
    fuzz_settings,
    fuzz_timeout,
    mutate,
    mutations,
    read_h1_until_close,
    send_split,
    splits,
)
from hypothesis import given, note
from hypothesis import strategies as st

from conftest import ServerProcess
from rawhttp import RawClient, build, chunked, exchange, serve

APP = "basic:app"
HELLO = b"Hello, world!"
# Short timeouts, so that every connection ends by itself within about a second whatever it
# was sent: an incomplete head gets 408, an idle keep-alive connection is closed, an app left
# waiting for a body that never comes is cut off (503).
SERVER_ARGS = (
    "--http",
    "1",
    "--header-read-timeout",
    "1",
    "--timeout-keep-alive",
    "1",
    "-t",
    "1",
)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve(APP, *SERVER_ARGS) as proc:
        yield proc


def probe(server: ServerProcess) -> None:
    """A fresh connection gets a normal 200 at once."""
    response = exchange(server.port, build("GET", "/?probe"), timeout=5)
    assert (response.status, response.body) == (200, HELLO), response.raw[:300]


# -- generation ------------------------------------------------------------------------------------


def mostly(common: list[str], rare: list[str], odds: int = 10) -> st.SearchStrategy[str]:
    """A value from `common`, but one from `rare` once in `odds` times."""
    return st.one_of(*[st.sampled_from(common)] * (odds - 1), st.sampled_from(rare))


METHOD_ST = mostly(["GET", "POST"], ["PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "FOO", "get"])
ODD_TARGETS = [
    "*",
    "http://localhost/echo",
    "//echo",
    "/a/../echo",
    "/%00",
    "/%ff",
    "/echo#frag",
    "localhost:80",
    "/\xe9",
    "",
]
TARGET_ST = st.one_of(
    *[mostly(["/", "/echo", "/echo?x=1&y=%20", "/?q=a+b"], ODD_TARGETS, 4)] * 7,
    st.builds(lambda n: "/" + "a" * n, st.integers(1, 70_000)),  # past the 64 KiB head limit
)
VERSION_ST = mostly(
    ["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"], ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "http/1.1"]
)
# Header values: the first of each list are valid, the rest hostile.
HEADER_POOLS: dict[str, tuple[list[str], list[str]]] = {
    "Host": (["localhost", "localhost:8000"], ["", "a b", "localhost:99999", "x@y", "a, b"]),
    "Content-Length": (["0", "5"], ["+5", "-1", " 5", "5, 5", "0x5", "99999999999999999999", ""]),
    "Transfer-Encoding": (["chunked"], ["gzip, chunked", "chunked, gzip", "identity", "Chunked"]),
    "Connection": (["close", "keep-alive"], ["upgrade", "close, keep-alive", "te", ""]),
    "Expect": (["100-continue"], ["100-Continue", "200-ok"]),
    "TE": (["trailers"], ["gzip"]),
    "Cookie": (["a=b; c=d"], ["=", "\x01"]),
    "Accept": (["*/*", "text/plain;q=0.9"], ["\x7f"]),
}
ODD_NAMES = ["X Space", "X\tTab", "X:Colon", "", "X-\x7f", "Content-Length ", " Host", "X-\xe9"]
TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^_`|~"
VALUE = "".join(chr(c) for c in range(0x20, 0x7F)) + "\t\x80\xff"


def header_st() -> st.SearchStrategy[tuple[str, str]]:
    pooled = st.sampled_from(sorted(HEADER_POOLS)).flatmap(
        lambda name: st.tuples(st.just(name), mostly(*HEADER_POOLS[name]))
    )
    token = st.tuples(st.text(TOKEN, min_size=1, max_size=20), st.text(VALUE, max_size=40))
    odd = st.tuples(st.sampled_from(ODD_NAMES), st.text(VALUE, max_size=10))
    return st.one_of(*[pooled] * 5, *[token] * 4, odd)


@dataclass(frozen=True)
class Body:
    data: bytes
    framing: str  # "none", "cl", "chunked", "cl-short", "cl-long"
    cuts: tuple[int, ...] = ()
    extension: str = ""
    trailers: bytes = b""


def pattern(size: int, seed: bytes) -> bytes:
    """`size` bytes repeating `seed` (big bodies without generating every byte)."""
    seed = seed or b"x"
    return (seed * (size // len(seed) + 1))[:size]


body_data = st.one_of(
    st.binary(max_size=64),
    st.builds(pattern, st.integers(0, 100_000), st.binary(min_size=1, max_size=8)),
)
body_st = st.builds(
    Body,
    body_data,
    mostly(["none", "cl", "chunked"], ["cl-short", "cl-long"]),
    st.lists(st.integers(0, 1 << 17), max_size=5).map(tuple),
    st.sampled_from(["", ";a=b", ";a", ' ;a="b"']),
    st.sampled_from([b"", b"X-Trailer: 1\r\n", b"Content-Length: 5\r\n", b"bad\r\n"]),
)


def frame_body(body: Body) -> tuple[list[tuple[str, str]], bytes]:
    """The framing headers and the bytes of `body` (a declared length may lie on purpose)."""
    data = body.data
    if body.framing == "none":
        return [], data
    if body.framing == "cl":
        return [("Content-Length", str(len(data)))], data
    if body.framing == "cl-short":
        return [("Content-Length", str(max(len(data) - 3, 0)))], data
    if body.framing == "cl-long":
        return [("Content-Length", str(len(data) + 7))], data
    points = sorted({c % (len(data) or 1) for c in body.cuts} | {0, len(data)})
    parts = [data[a:b] for a, b in itertools.pairwise(points)]
    encoded = chunked(*parts, trailers=body.trailers)
    if body.extension:
        encoded = encoded.replace(b"\r\n", body.extension.encode() + b"\r\n", 1)
    return [("Transfer-Encoding", "chunked")], encoded


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    host: str  # "one", "none", "two"
    body: Body

    def encode(self, close: bool) -> bytes:
        framing, data = frame_body(self.body)
        headers = list(self.headers)
        if self.host == "one":
            headers.insert(0, ("Host", "localhost"))
        elif self.host == "two":
            headers[:0] = [("Host", "localhost"), ("Host", "other")]
        headers += framing
        if close:
            headers.append(("Connection", "close"))
        lines = [f"{self.method} {self.target} {self.version}"]
        lines += [f"{name}: {value}" for name, value in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


hostile_request_st = st.builds(
    Request,
    METHOD_ST,
    TARGET_ST,
    VERSION_ST,
    st.one_of(
        *[st.lists(header_st(), max_size=4).map(tuple)] * 5,
        st.builds(lambda n: tuple((f"X-H{i}", "v") for i in range(n)), st.integers(90, 110)),
    ),
    mostly(["one"], ["none", "two"]),
    body_st,
)
# A valid request: its headers leave Host and the body framing to the request's own fields.
CLEAN_HEADERS = [
    (name, value)
    for name, (common, _) in HEADER_POOLS.items()
    if name not in ("Host", "Content-Length", "Transfer-Encoding")
    for value in common
]
clean_request_st = st.builds(
    Request,
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS"]),
    st.sampled_from(["/", "/echo", "/echo?x=1&y=%20", "/?q=a+b"]),
    st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]),
    st.lists(
        st.one_of(
            st.sampled_from(CLEAN_HEADERS),
            st.tuples(st.text(TOKEN, min_size=1, max_size=20), st.text(VALUE, max_size=40)),
        ),
        max_size=4,
    ).map(tuple),
    st.just("one"),
    st.builds(
        Body,
        body_data,
        st.sampled_from(["cl", "chunked"]),
        st.lists(st.integers(0, 1 << 17), max_size=5).map(tuple),
        st.sampled_from(["", ";a=b"]),
        st.sampled_from([b"", b"X-Trailer: 1\r\n"]),
    ),
)
# Two valid requests for one hostile one: mutations break them in their own ways.
request_st = st.one_of(clean_request_st, clean_request_st, hostile_request_st)


@dataclass(frozen=True)
class Case:
    requests: tuple[Request, ...]
    close_last: bool
    # The first request a HEAD (only the first: the reader must know which response has no
    # body, RFC 9112 6.3, and later ones could be anything once mutated).
    first_head: bool

    def encode(self) -> bytes:
        last = len(self.requests) - 1
        requests = list(self.requests)
        if self.first_head:
            requests[0] = dataclasses.replace(requests[0], method="HEAD")
        return b"".join(r.encode(self.close_last and i == last) for i, r in enumerate(requests))


case_st = st.builds(
    Case,
    st.lists(request_st, min_size=1, max_size=3).map(tuple),
    st.booleans(),
    st.sampled_from([False, False, False, True]),
)


# -- the exchange and its checks --------------------------------------------------------------


def fuzz_exchange(server: ServerProcess, data: bytes, split: Split, watch: Watch) -> None:
    """Send `data` split as told; every response must be well-formed, the connection must end
    (closed by the server) in bounded time, and nothing after an error may be answered."""
    deadline = time.monotonic() + EXCHANGE_TIMEOUT
    with RawClient(server.port, timeout=EXCHANGE_TIMEOUT) as client:
        send_split(client.sock, data, split)
        outcome = read_h1_until_close(client, deadline, first_method(data))
    watch.stats[f"ending:{outcome.ending}"] += 1
    watch.stats["reset-mid-response"] += bool(outcome.partial)
    finals = [r for r in outcome.responses if r.status >= 200]
    for index, response in enumerate(outcome.responses):
        check_h1_response(response)
        watch.stats[f"status:{response.status}"] += 1
        if response.status < 200:
            # Only a 100 Continue, and only for a request that asked for it (RFC 9110 10.1.1).
            assert response.status == 100, response.raw[:300]
            assert b"100-continue" in data.lower(), response.raw[:300]
            continue
        last = index == len(outcome.responses) - 1
        if response.status >= 400 or response.header("connection") == "close":
            # An error (or a close announced) ends the connection: nothing after it is
            # answered (RFC 9112 9.6), the smuggling defence.
            assert last, [r.status for r in outcome.responses]
        if response.status >= 400:
            assert response.header("connection") == "close", response.raw[:500]
        if response.status == 200:
            assert response.header("content-type") == "text/plain", response.raw[:500]
    # No more successful responses than request lines: a response to bytes that were never a
    # request of their own would be a smuggled request.
    successes = [r for r in finals if r.status < 400]
    assert len(successes) <= data.count(b"HTTP/1."), (len(successes), data[:500])
    assert all(r.status != 101 for r in outcome.responses)


@pytest.mark.fuzz
@pytest.mark.timeout(fuzz_timeout(1.5))
def test_fuzz_mutated_requests(server: ServerProcess) -> None:
    """Malformed and mutated HTTP/1.1 requests: the request-smuggling and parser-crash attack
    surface (RFC 9112 2.2, 3, 6.1-6.3, 7.1, 9.6; RFC 9110 5.5; CWE-444; the llhttp smuggling
    advisories CVE-2022-32213/32214/32215, CVE-2022-35256, CVE-2023-30589 of the parser
    httptools embeds). Each ends in well-formed responses (none with content after a HEAD) or
    a close, never a crash or a hang."""
    watch = Watch(server, probe)

    @fuzz_settings()
    @given(case=case_st, muts=mutations(), split=splits)
    def run(case: Case, muts: list[Mutation], split: Split) -> None:
        data = mutate(case.encode(), muts)
        note(f"sent: {data[:2000]!r} ({len(data)} bytes) split {split}")
        with watch.example(f"{data[:1000]!r} split {split}"):
            fuzz_exchange(server, data, split, watch)

    with watch.run():
        run()


# -- valid requests split anywhere -----------------------------------------------------------


@dataclass(frozen=True)
class Valid:
    method: str  # GET / or POST /echo
    body: bytes
    framing: str  # "cl" or "chunked"
    cuts: tuple[int, ...]
    header_case: bool  # header names in odd case

    def encode(self, close: bool) -> tuple[bytes, bytes]:
        """The request and the body its response must carry."""
        headers = [("X-Fuzz", "1")]
        if close:
            headers.append(("Connection", "close"))
        if self.method == "GET":
            request, expected = build("GET", "/", headers), HELLO
        else:
            body = self.body
            if self.framing == "chunked":
                points = sorted({c % (len(body) or 1) for c in self.cuts} | {0, len(body)})
                parts = [body[a:b] for a, b in itertools.pairwise(points)]
                headers.append(("Transfer-Encoding", "chunked"))
                request = build("POST", "/echo", headers, chunked(*parts))
            else:
                request = build("POST", "/echo", headers, body)
                if not body:
                    request = build("POST", "/echo", [*headers, ("Content-Length", "0")])
            expected = body
        if self.header_case:
            request = request.replace(b"Host:", b"hOsT:").replace(b"X-Fuzz", b"x-fUZZ")
        return request, expected


valid_st = st.builds(
    Valid,
    st.sampled_from(["GET", "POST", "POST"]),
    st.one_of(
        st.binary(max_size=200),
        st.builds(pattern, st.integers(0, 40_000), st.binary(min_size=1, max_size=8)),
    ),
    st.sampled_from(["cl", "chunked"]),
    st.lists(st.integers(0, 1 << 16), max_size=6).map(tuple),
    st.booleans(),
)
fine_split_st = st.builds(
    Split,
    st.lists(st.integers(0, 1 << 20), max_size=30).map(tuple),
    st.sampled_from([0.0, 0.0, 0.001, 0.002]),
)


@pytest.mark.fuzz
@pytest.mark.timeout(fuzz_timeout(1.5))
def test_fuzz_split_pipelined_requests(server: ServerProcess) -> None:
    """Valid pipelined requests split at arbitrary byte boundaries (RFC 9112 6.3, 7.1, 9.3.2;
    the incremental-parsing desyncs behind request smuggling, CWE-444): answered exactly as if
    each had come in one piece, in order, then the connection closes (the last asks for it)."""
    watch = Watch(server, probe)

    @fuzz_settings()
    @given(requests=st.lists(valid_st, min_size=1, max_size=4), split=fine_split_st)
    def run(requests: list[Valid], split: Split) -> None:
        encoded = [r.encode(i == len(requests) - 1) for i, r in enumerate(requests)]
        data = b"".join(request for request, _ in encoded)
        note(f"sent: {data[:2000]!r} ({len(data)} bytes) split {split}")
        with watch.example(f"{data[:1000]!r} split {split}"):
            deadline = time.monotonic() + EXCHANGE_TIMEOUT
            with RawClient(server.port, timeout=EXCHANGE_TIMEOUT) as client:
                assert send_split(client.sock, data, split)
                outcome = read_h1_until_close(client, deadline)
            got = [(r.status, r.body) for r in outcome.responses]
            assert got == [(200, body) for _, body in encoded], got
            assert outcome.ending == "eof"
            for response in outcome.responses:
                check_h1_response(response)

    with watch.run():
        run()
