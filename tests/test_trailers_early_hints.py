# The two ASGI HTTP extensions the server implements, end to end over HTTP/1.1 (raw socket) and
# HTTP/2 (tests/h2client.py), on both event loops, served by tests/apps/ext_app.py:
# `http.response.early_hint` (a 103 Early Hints response with the app's Link fields before the
# final response, RFC 8297) and `http.response.trailers` (`trailers: True` on
# http.response.start, then trailer fields after the last body part: HTTP/2 trailing HEADERS
# with END_STREAM, RFC 9113 8.1; HTTP/1.1 fields after the last chunk, RFC 9112 7.1.2).
# Announcement: over HTTP/2 both are always in scope["extensions"]; over HTTP/1.1 early hints
# for HTTP/1.1 requests (not 1.0), trailers only when the request said `TE: trailers` (RFC 9110
# 10.1.4). Trailers the wire cannot carry (no TE: trailers, a Content-Length response) are
# dropped and the response completes. App errors (trailers before the body is complete, a
# trailer name or value the server must refuse, promised trailers never sent, trailers after a
# body shorter than its Content-Length) abort the response (RST_STREAM, or a connection reset)
# and never put the bad bytes on the wire.
from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlencode

import h2.config
import h2.connection
import pytest
from hyperframe.frame import Frame, RstStreamFrame

from conftest import ServerProcess
from h2client import Closed, H2Client, StreamResult
from rawhttp import TIMEOUT, ConnectionClosed, RawClient, Response, build, events, serve

APP = "ext_app:app"
EARLY_HINT = "http.response.early_hint"
TRAILERS = "http.response.trailers"
INTERNAL_ERROR = 0x2
STYLE = "</style.css>; rel=preload; as=style"
SCRIPT = "</app.js>; rel=preload; as=script"
TE = [("TE", "trailers")]


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve(APP, "--loop", request.param) as proc:
        yield proc


def new_tag() -> str:
    return uuid.uuid4().hex


def target(path: str, **params: str | list[str]) -> str:
    return f"{path}?{urlencode(params, doseq=True)}" if params else path


def h1(
    server: ServerProcess,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    version: str = "HTTP/1.1",
) -> tuple[list[Response], Response]:
    """One request on a fresh connection: (1xx responses, final response)."""
    with RawClient(server.port) as client:
        client.send(build("GET", path, headers, version=version))
        return client.read_final()


def h1_aborted(server: ServerProcess, path: str, headers: list[tuple[str, str]]) -> bytes:
    """A request whose response the server must abort: what came before the close or reset."""
    with RawClient(server.port) as client:
        client.send(build("GET", path, headers))
        with pytest.raises(ConnectionClosed) as closed:
            client.read_final()
    return closed.value.partial


def h2_get(server: ServerProcess, path: str) -> StreamResult:
    with H2Client(server.port) as client:
        return client.get(path)


def h2_aborted(client: H2Client, path: str) -> StreamResult:
    """A request whose response the server must reset (RST_STREAM), the connection staying."""
    try:
        result = client.get(path)
    except Closed:
        raise AssertionError(
            f"GET {path}: the connection closed instead of the stream being reset; the client's "
            "h2 state machine refused what the server sent (see "
            "test_h2_aborted_response_still_starts_with_its_headers)"
        ) from None
    assert result.reset == INTERNAL_ERROR, result
    assert result.trailers is None
    assert not result.ended
    return result


def h2_frames(server: ServerProcess, path: str) -> list[Frame]:
    """The frames the server sends on stream 1 for `GET path`, parsed with hyperframe alone (no
    client state machine to give up on them), until that stream ends or is reset."""
    machine = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    machine.initiate_connection()
    request = [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1")]
    machine.send_headers(1, [*request, (":path", path)], end_stream=True)
    frames: list[Frame] = []
    buffer = bytearray()
    deadline = time.monotonic() + TIMEOUT
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(machine.data_to_send())
        while True:
            while len(buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(bytes(buffer[:9])))
                if len(buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(bytes(buffer[9 : 9 + length])))
                del buffer[: 9 + length]
                frames.append(frame)
                if frame.stream_id == 1 and (
                    isinstance(frame, RstStreamFrame) or "END_STREAM" in frame.flags
                ):
                    return frames
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"stream 1 never ended: {frames}"
            sock.settimeout(remaining)
            data = sock.recv(1 << 16)
            if not data:
                return frames
            buffer += data


def recorded(server: ServerProcess, tag: str, want: str) -> list[str]:
    found = events(server, tag, want)
    assert any(event.startswith(tuple(want.split("|"))) for event in found), found
    return found


def still_serves(client: RawClient) -> None:
    """The HTTP/1.1 connection is still good for another request (keep-alive)."""
    client.send(build("GET", "/extensions"))
    assert client.read_final()[1].status == 200


# -- announcing the extensions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("te", "trailers"),
    [
        (None, False),
        ("trailers", True),
        ("Trailers", True),
        ("gzip, trailers", True),
        ("trailers;q=1, deflate;q=0.5", True),
        ("gzip", False),
    ],
)
def test_h1_announces_early_hints_and_trailers_only_with_te(
    server: ServerProcess, te: str | None, trailers: bool
) -> None:
    _, response = h1(server, "/extensions", [("TE", te)] if te is not None else [])
    info = response.json()
    assert info["http_version"] == "1.1"
    assert EARLY_HINT in info["extensions"], info
    assert (TRAILERS in info["extensions"]) is trailers, info


def test_h1_te_counts_for_its_own_request_only(server: ServerProcess) -> None:
    """On one keep-alive connection (pipelined too), each request's own TE decides."""
    with RawClient(server.port) as client:
        client.send(
            build("GET", "/extensions", TE)
            + build("GET", "/extensions")
            + build("GET", target("/trailers", parts="1"), TE)
            + build("GET", target("/trailers", parts="1"))
        )
        first, second = client.read_final()[1].json(), client.read_final()[1].json()
        assert TRAILERS in first["extensions"], first
        assert TRAILERS not in second["extensions"], second
        with_te, without = client.read_final()[1], client.read_final()[1]
        assert (with_te.framing, with_te.trailers) == ("chunked", [("x-checksum", "abc123")])
        assert (without.framing, without.trailers) == ("content-length", [])
        assert with_te.body == without.body == b"part0;"


def test_h1_0_announces_neither(server: ServerProcess) -> None:
    _, response = h1(server, "/extensions", TE, version="HTTP/1.0")
    info = response.json()
    assert info["http_version"] == "1.0"
    assert EARLY_HINT not in info["extensions"], info
    assert TRAILERS not in info["extensions"], info


def test_h2_always_announces_both(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        plain = client.get("/extensions")
        with_te = client.get("/extensions", headers=[("te", "trailers")])
    for result in (plain, with_te):
        assert result.status == 200
        info = json.loads(result.body)
        assert info["http_version"] == "2"
        assert EARLY_HINT in info["extensions"], info
        assert TRAILERS in info["extensions"], info


# -- early hints -----------------------------------------------------------------------------------


def test_h1_early_hint_is_a_103_before_the_response(server: ServerProcess) -> None:
    tag = new_tag()
    with RawClient(server.port) as client:
        client.send(build("GET", target("/hint", tag=tag, link=[STYLE, SCRIPT])))
        informational, final = client.read_final()
        assert [r.status for r in informational] == [103], [r.raw for r in informational]
        hint = informational[0]
        assert hint.version == "HTTP/1.1"
        assert hint.get_all("link") == [STYLE, SCRIPT], hint.raw
        assert hint.header("content-length") is None
        assert hint.header("transfer-encoding") is None
        assert hint.header("x-final") is None  # the final response's own headers come later
        assert (final.status, final.body) == (200, b"final")
        assert final.header("x-final") == "yes"
        still_serves(client)
    recorded(server, tag, "done")


def test_h1_several_early_hints_then_a_streamed_response(server: ServerProcess) -> None:
    with RawClient(server.port) as client:
        client.send(build("GET", target("/hint", link=STYLE, hints="3", stream="1")))
        informational, final = client.read_final()
        assert [r.status for r in informational] == [103, 103, 103]
        assert all(r.get_all("link") == [STYLE] for r in informational)
        assert (final.status, final.framing, final.body) == (200, "chunked", b"final")
        still_serves(client)


def test_h1_early_hint_without_links_sends_no_103(server: ServerProcess) -> None:
    informational, final = h1(server, "/hint")
    assert informational == []
    assert (final.status, final.body) == (200, b"final")


def test_h1_0_early_hint_is_ignored(server: ServerProcess) -> None:
    """Not announced for HTTP/1.0 (which has no 1xx responses): the hint is dropped, the
    response is complete."""
    tag = new_tag()
    informational, final = h1(server, target("/hint", tag=tag, link=STYLE), version="HTTP/1.0")
    assert informational == []
    assert (final.status, final.body) == (200, b"final")
    assert b"103" not in final.raw.split(b"\r\n", 1)[0]
    assert "raised:" not in "".join(recorded(server, tag, "done"))


@pytest.mark.parametrize("kind", ["crlf", "str"])
def test_h1_invalid_early_hint_is_an_app_error(server: ServerProcess, kind: str) -> None:
    tag = new_tag()
    with RawClient(server.port) as client:
        client.send(build("GET", target("/bad-hint", tag=tag, kind=kind)))
        informational, final = client.read_final()
        assert informational == []
        assert final.status == 500
        assert b"x-injected" not in final.raw
    recorded(server, tag, "raised:RuntimeError")


def test_h1_early_hint_after_the_response_started_aborts(server: ServerProcess) -> None:
    tag = new_tag()
    partial = h1_aborted(server, target("/bad-hint", tag=tag, kind="after-start"), [])
    assert b"103" not in partial
    assert b"late.css" not in partial
    recorded(server, tag, "raised:RuntimeError")


def test_h2_early_hint_is_an_informational_headers_frame(server: ServerProcess) -> None:
    tag = new_tag()
    with H2Client(server.port) as client:
        result = client.get(target("/hint", tag=tag, link=[STYLE, SCRIPT]))
        assert result.informational == [
            [(b":status", b"103"), (b"link", STYLE.encode()), (b"link", SCRIPT.encode())]
        ]
        assert (result.status, bytes(result.body)) == (200, b"final")
        assert result.header(b"x-final") == b"yes"
        assert result.ended and result.reset is None
        again = client.get(target("/hint", link=SCRIPT, hints="2", stream="1"))
        assert again.informational == [[(b":status", b"103"), (b"link", SCRIPT.encode())]] * 2
        assert (again.status, bytes(again.body)) == (200, b"final")
    recorded(server, tag, "done")


def test_h2_early_hint_without_links_sends_nothing(server: ServerProcess) -> None:
    result = h2_get(server, "/hint")
    assert result.informational == []
    assert (result.status, bytes(result.body)) == (200, b"final")


def test_h2_invalid_early_hint_is_an_app_error(server: ServerProcess) -> None:
    tag = new_tag()
    result = h2_get(server, target("/bad-hint", tag=tag, kind="crlf"))
    assert result.informational == []
    assert result.status == 500
    assert all(b"x-injected" not in value for _, value in result.headers)
    recorded(server, tag, "raised:RuntimeError")


# -- trailers over HTTP/1.1 ------------------------------------------------------------------------


def test_h1_trailers_after_the_last_chunk(server: ServerProcess) -> None:
    tag = new_tag()
    with RawClient(server.port) as client:
        client.send(build("GET", target("/trailers", tag=tag), TE))
        _, response = client.read_final()
        assert response.status == 200
        assert response.framing == "chunked"
        assert response.body == b"part0;part1;"
        assert response.trailers == [("x-checksum", "abc123")]
        # The last chunk, then the trailer section, then the empty line: nothing after it.
        assert response.raw.endswith(b"0\r\nx-checksum: abc123\r\n\r\n"), response.raw[-80:]
        still_serves(client)
    assert recorded(server, tag, "done")[-2:] == ["extension:True", "done"]


def test_h1_trailers_in_several_messages(server: ServerProcess) -> None:
    """more_trailers: the fields of every http.response.trailers message, in order."""
    path = target("/trailers", t=["x-one:1", "x-two:2", "x-three:3"], msgs="3", parts="5")
    with RawClient(server.port) as client:
        client.send(build("GET", path, TE))
        _, response = client.read_final()
        assert response.body == b"part0;part1;part2;part3;part4;"
        assert response.trailers == [("x-one", "1"), ("x-two", "2"), ("x-three", "3")]
        still_serves(client)


def test_h1_trailers_after_a_large_streamed_body(server: ServerProcess) -> None:
    path = target("/trailers", parts="8", size="65536", t="x-digest:sha-256=abc")
    _, response = h1(server, path, TE)
    expected = b"".join(bytes([65 + i]) * 65536 for i in range(8))
    assert response.body == expected
    assert response.trailers == [("x-digest", "sha-256=abc")]


def test_h1_trailers_after_a_single_body_message(server: ServerProcess) -> None:
    """One body message with more_body=False still needs chunked framing to carry trailers."""
    _, response = h1(server, target("/trailers", parts="1"), TE)
    assert (response.framing, response.body) == ("chunked", b"part0;")
    assert response.trailers == [("x-checksum", "abc123")]
    _, empty = h1(server, target("/trailers", parts="0"), TE)
    assert (empty.framing, empty.body) == ("chunked", b"")
    assert empty.trailers == [("x-checksum", "abc123")]


@pytest.mark.parametrize("parts", ["1", "3"])
def test_h1_without_te_trailers_are_dropped_and_the_response_completes(
    server: ServerProcess, parts: str
) -> None:
    tag = new_tag()
    with RawClient(server.port) as client:
        client.send(build("GET", target("/trailers", tag=tag, parts=parts)))
        _, response = client.read_final()
        assert response.status == 200
        assert response.body == b"".join(f"part{i};".encode() for i in range(int(parts)))
        assert response.trailers == []
        assert b"x-checksum" not in response.raw
        assert response.framing == ("content-length" if parts == "1" else "chunked")
        still_serves(client)
    found = recorded(server, tag, "done|raised")
    assert found[-2:] == ["extension:False", "done"], found


def test_h1_content_length_response_drops_its_trailers(server: ServerProcess) -> None:
    """Trailers need chunked framing; a response with the app's Content-Length keeps it, the
    body arrives intact and the trailers are dropped (RFC 9112 6.1)."""
    tag = new_tag()
    with RawClient(server.port) as client:
        client.send(build("GET", target("/trailers", tag=tag, cl="1", parts="3"), TE))
        _, response = client.read_final()
        assert response.framing == "content-length"
        assert response.header("content-length") == str(len(b"part0;part1;part2;"))
        assert response.body == b"part0;part1;part2;"
        assert b"x-checksum" not in response.raw
        still_serves(client)
    assert recorded(server, tag, "done|raised")[-1] == "done"


def test_h1_trailers_before_the_body_is_complete_abort(server: ServerProcess) -> None:
    tag = new_tag()
    partial = h1_aborted(server, target("/trailers-early", tag=tag), TE)
    assert b"x-early" not in partial
    assert b"\r\n0\r\n" not in partial  # never a last chunk: the body must not look complete
    recorded(server, tag, "raised:RuntimeError")
    server.wait_for("Exception in ASGI app: GET /trailers-early")


@pytest.mark.parametrize("kind", ["crlf", "lf", "nul", "space", "colon", "str"])
def test_h1_invalid_trailer_is_never_written(server: ServerProcess, kind: str) -> None:
    tag = new_tag()
    partial = h1_aborted(server, target("/trailers-bad", tag=tag, kind=kind), TE)
    assert b"injected" not in partial
    assert b"x-good" not in partial  # the valid field of the same message is not sent either
    assert b"\r\n0\r\n" not in partial
    recorded(server, tag, "raised:RuntimeError")


def test_h1_promised_trailers_never_sent_aborts(server: ServerProcess) -> None:
    tag = new_tag()
    partial = h1_aborted(server, target("/trailers-missing", tag=tag), TE)
    assert b"\r\n0\r\n" not in partial
    recorded(server, tag, "returning")
    server.wait_for("ASGI app returned before completing its response: GET /trailers-missing")


# -- trailers over HTTP/2 --------------------------------------------------------------------------


def test_h2_trailers_are_trailing_headers_with_end_stream(server: ServerProcess) -> None:
    tag = new_tag()
    with H2Client(server.port) as client:
        result = client.get(target("/trailers", tag=tag))
        assert result.status == 200
        assert bytes(result.body) == b"part0;part1;"
        assert result.trailers == [(b"x-checksum", b"abc123")]
        assert result.ended and result.reset is None
        # The trailers are the stream's last frame: END_STREAM came with them.
        kinds = [type(e).__name__ for e in client.events if getattr(e, "stream_id", 0) == 1]
        assert kinds[-2:] == ["TrailersReceived", "StreamEnded"], kinds
    assert recorded(server, tag, "done")[-2:] == ["extension:True", "done"]


def test_h2_trailers_in_several_messages(server: ServerProcess) -> None:
    path = target("/trailers", t=["x-one:1", "x-two:2", "x-three:3"], msgs="2", parts="4")
    result = h2_get(server, path)
    assert bytes(result.body) == b"part0;part1;part2;part3;"
    assert result.trailers == [(b"x-one", b"1"), (b"x-two", b"2"), (b"x-three", b"3")]


def test_h2_trailers_after_a_large_body(server: ServerProcess) -> None:
    """16 x 64 KiB: far beyond the client's initial windows; the trailers still come last."""
    result = h2_get(server, target("/trailers", parts="16", size="65536", t="x-size:1048576"))
    expected = b"".join(bytes([65 + i]) * 65536 for i in range(16))
    assert bytes(result.body) == expected
    assert result.trailers == [(b"x-size", b"1048576")]
    assert result.ended


def test_h2_trailers_with_content_length(server: ServerProcess) -> None:
    """HTTP/2 frames the body itself: a Content-Length response carries its trailers."""
    result = h2_get(server, target("/trailers", cl="1", parts="3"))
    assert result.header(b"content-length") == b"18"
    assert bytes(result.body) == b"part0;part1;part2;"
    assert result.trailers == [(b"x-checksum", b"abc123")]


def test_h2_trailers_after_a_body_shorter_than_its_content_length(server: ServerProcess) -> None:
    """Content-Length 20, then 12 bytes of body and the trailers: the trailers would end the
    stream with the body short, which a client must take for a malformed response (RFC 9113
    8.1.1). The stream is reset instead (never ended), and the app's send() of the trailers
    raises."""
    tag = new_tag()
    path = target("/trailers", tag=tag, cl="1", declared="20")
    frames = [frame for frame in h2_frames(server, path) if frame.stream_id == 1]
    kinds = [type(frame).__name__ for frame in frames]
    assert isinstance(frames[-1], RstStreamFrame), kinds
    assert frames[-1].error_code == INTERNAL_ERROR
    assert not any("END_STREAM" in frame.flags for frame in frames), kinds
    with H2Client(server.port) as client:
        result = h2_aborted(client, path)
        assert b"part0;part1;".startswith(bytes(result.body)), result
        assert client.get("/extensions").status == 200
    recorded(server, tag, "raised:RuntimeError")


def test_h2_trailers_after_an_empty_body(server: ServerProcess) -> None:
    result = h2_get(server, target("/trailers", parts="0"))
    assert (result.status, bytes(result.body)) == (200, b"")
    assert result.trailers == [(b"x-checksum", b"abc123")]


def test_h2_trailers_before_the_body_is_complete_reset_the_stream(
    server: ServerProcess,
) -> None:
    tag = new_tag()
    with H2Client(server.port) as client:
        result = h2_aborted(client, target("/trailers-early", tag=tag))
        assert b"first part;".startswith(bytes(result.body)), result
        # One stream failed, not the connection.
        assert client.get("/extensions").status == 200
    recorded(server, tag, "raised:RuntimeError")


@pytest.mark.parametrize("kind", ["crlf", "lf", "nul", "space", "colon", "str"])
def test_h2_invalid_trailer_resets_the_stream(server: ServerProcess, kind: str) -> None:
    tag = new_tag()
    with H2Client(server.port) as client:
        result = h2_aborted(client, target("/trailers-bad", tag=tag, kind=kind))
        assert not any(b"injected" in value for _, value in result.headers)
        assert client.get("/extensions").status == 200
    recorded(server, tag, "raised:RuntimeError")


def test_h2_promised_trailers_never_sent_reset_the_stream(server: ServerProcess) -> None:
    tag = new_tag()
    with H2Client(server.port) as client:
        result = h2_aborted(client, target("/trailers-missing", tag=tag))
        assert b"body without its trailers".startswith(bytes(result.body)), result
        assert client.get("/extensions").status == 200
    recorded(server, tag, "returning")


@pytest.mark.parametrize(
    "path", ["/trailers-early", "/trailers-bad?kind=crlf", "/trailers-missing"]
)
def test_h2_aborted_response_still_starts_with_its_headers(
    server: ServerProcess, path: str
) -> None:
    """A response aborted right after the app started it: whatever DATA the server lets out
    before its RST_STREAM must follow the response HEADERS (RFC 9113 8.1; DATA first is a
    malformed response, which clients treat as a protocol error)."""
    frames = [frame for frame in h2_frames(server, path) if frame.stream_id == 1]
    kinds = [type(frame).__name__ for frame in frames]
    assert kinds and isinstance(frames[-1], RstStreamFrame), kinds
    assert frames[-1].error_code == INTERNAL_ERROR
    if "DataFrame" in kinds:
        assert "HeadersFrame" in kinds[: kinds.index("DataFrame")], kinds
