# HTTP/2 end to end (RFC 9113), over real loopback sockets: how a connection gets to HTTP/2
# (prior knowledge, `Upgrade: h2c` without a body, ALPN h2 over TLS; HTTP/1.1 still served on
# the same port; --http 1 and --http 2), the scope an app sees over HTTP/2, many streams on one
# connection and RST_STREAM from the client, 100-continue, app failures (500 before the
# response, RST_STREAM INTERNAL_ERROR on that stream alone after it, an invalid Content-Length
# never sent), a request whose start fails (a Forwarded port that is no number) costing its
# stream only, bodiless responses (HEAD, 204, 304: never a Content-Length on a 204), --header
# fields that are HTTP/1.1 connection business kept out of HTTP/2, the body-size limit (413, or
# a reset once the response has started; never a cut-short body passed on as complete) and the
# header-count limit, GOAWAY (graceful shutdown, and one from the client: NO_ERROR lets in-flight
# streams finish, an error code closes at once), an h2load smoke test and the access-log line.
# Clients: tests/h2client.py (raw h2), curl, httpx, h2load. Flow control, backpressure, big
# transfers and fairness are tests/test_http2_flow.py.
from __future__ import annotations

import json
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import h2.config
import h2.connection
import hpack
import httpx
import pytest
import trustme
from h2.errors import ErrorCodes
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from conftest import ServerProcess
from h2client import H2Client, StreamResult
from rawhttp import TIMEOUT, RawClient, build, events, release, serve

APP = "h2_app:app"
SETTINGS_FRAME_TYPE = 0x4
RunServer = Callable[..., ServerProcess]

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
needs_h2load = pytest.mark.skipif(
    shutil.which("h2load") is None, reason="h2load (nghttp2-client) is not installed"
)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """One server for the tests that do not need their own options (side-channel tags are
    unique per test)."""
    with serve(APP, "--root-path", "/base") as proc:
        yield proc


def tag() -> str:
    return uuid.uuid4().hex


def body_json(result: StreamResult) -> Any:
    assert result.status == 200, (result.status, bytes(result.body[:300]))
    return json.loads(bytes(result.body))


def curl(*args: str) -> tuple[str, str]:
    """Run curl with `args`: (the body, curl's %{http_version})."""
    command = [
        "curl",
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        "--write-out",
        "\n%{http_version}",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    body, _, version = result.stdout.rpartition("\n")
    return body, version


def read_head(sock: socket.socket) -> bytes:
    """An HTTP/1.1 response head, read a byte at a time so that nothing after it is consumed."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"closed after {head!r}"
        head += byte
        assert len(head) < 8192, head
    return head


# -- getting to HTTP/2 ----------------------------------------------------------------------------


def test_prior_knowledge_with_the_raw_client(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        result = client.get("/")
        assert result.status == 200
        assert bytes(result.body) == b"Hello, world!"
        assert body_json(client.get("/headers"))["http_version"] == "2"
        assert client.goaway is None


@needs_curl
def test_prior_knowledge_with_curl(server: ServerProcess) -> None:
    body, version = curl("--http2-prior-knowledge", f"http://127.0.0.1:{server.port}/headers")
    assert version == "2"
    assert json.loads(body)["http_version"] == "2"


@needs_curl
def test_h2c_upgrade_with_curl(server: ServerProcess) -> None:
    body, version = curl("--http2", f"http://127.0.0.1:{server.port}/headers?via=upgrade")
    assert version == "2", "curl's Upgrade: h2c was not taken"
    seen = json.loads(body)
    assert seen["http_version"] == "2"
    assert seen["method"] == "GET"
    assert seen["query_string"] == "via=upgrade"
    names = {name for name, _ in seen["headers"]}
    # The upgrade's own fields belong to the HTTP/1.1 hop, not to the HTTP/2 request.
    assert not names & {"upgrade", "http2-settings", "connection"}, seen["headers"]


def test_h2c_upgrade_serves_the_request_as_stream_1(server: ServerProcess) -> None:
    with H2Client(server.port, connect=False) as client:
        settings = client.conn.initiate_upgrade_connection()
        assert settings is not None
        client.send_raw(
            b"GET /headers?upgraded=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        head = read_head(client.sock)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert b"upgrade: h2c" in head.lower(), head
        client.streams[1] = StreamResult(1)
        client.flush()
        seen = body_json(client.response(1))
        assert seen["http_version"] == "2"
        assert seen["query_string"] == "upgraded=1"
        # The connection goes on as HTTP/2: the next stream is 3.
        later = client.request("/")
        assert later == 3
        assert bytes(client.response(later).body) == b"Hello, world!"


def test_h2c_upgrade_with_a_body_is_served_as_http11(server: ServerProcess) -> None:
    request = (
        b"POST /headers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello"
    )
    with RawClient(server.port) as client:
        client.send(request)
        response = client.read_response()
        assert response.status == 200, response.raw[:300]
        assert response.version == "HTTP/1.1"
        seen = response.json()
        assert seen["http_version"] == "1.1"
        assert seen["body_length"] == 5
        # Still HTTP/1.1 after it.
        again = client.request(build("GET", "/"))
        assert (again.status, again.body) == (200, b"Hello, world!")


def test_http11_is_still_served_on_the_same_port(server: ServerProcess) -> None:
    response = httpx.get(f"http://127.0.0.1:{server.port}/headers", timeout=TIMEOUT)
    assert response.http_version == "HTTP/1.1"
    assert response.json()["http_version"] == "1.1"
    with H2Client(server.port) as client:
        assert client.get("/").status == 200


# -- TLS ------------------------------------------------------------------------------------------


class PKI:
    """A trustme CA and a certificate for 127.0.0.1 signed by it, as files."""

    def __init__(self, directory: Path) -> None:
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem.bytes())
        self.cert_file = directory / "cert.pem"
        self.cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        self.key_file = directory / "key.pem"
        self.key_file.write_bytes(cert.private_key_pem.bytes())

    def args(self) -> list[str]:
        return ["--ssl-certfile", str(self.cert_file), "--ssl-keyfile", str(self.key_file)]

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("h2tls"))


@pytest.fixture(scope="module")
def tls_server(pki: PKI) -> Iterator[ServerProcess]:
    with serve(APP, *pki.args()) as proc:
        yield proc


def test_alpn_h2_with_httpx(tls_server: ServerProcess, pki: PKI) -> None:
    url = f"https://127.0.0.1:{tls_server.port}/scope"
    with httpx.Client(http2=True, verify=pki.context(), trust_env=False, timeout=TIMEOUT) as c:
        response = c.get(url)
    assert response.status_code == 200
    assert response.http_version == "HTTP/2"
    scope = response.json()
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "https"
    assert "tls" in scope["extensions"]


def test_alpn_h2_with_the_raw_client(tls_server: ServerProcess, pki: PKI) -> None:
    with H2Client(tls_server.port, pki.context()) as client:
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.selected_alpn_protocol() == "h2"
        scope = body_json(client.get("/scope"))
    assert (scope["http_version"], scope["scheme"]) == ("2", "https")


@needs_curl
def test_alpn_h2_with_curl(tls_server: ServerProcess, pki: PKI) -> None:
    body, version = curl(
        "--http2", "--cacert", str(pki.ca_file), f"https://127.0.0.1:{tls_server.port}/scope"
    )
    assert version == "2"
    scope = json.loads(body)
    assert (scope["http_version"], scope["scheme"]) == ("2", "https")


def test_alpn_picks_http11_with_http_1(run_server: RunServer, pki: PKI) -> None:
    server = run_server(APP, *pki.args(), "--http", "1")
    context = pki.context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
    url = f"https://127.0.0.1:{server.port}/scope"
    with httpx.Client(http2=True, verify=pki.context(), trust_env=False, timeout=TIMEOUT) as c:
        response = c.get(url)
    assert response.http_version == "HTTP/1.1"
    assert response.json()["http_version"] == "1.1"


# -- --http 1 and --http 2 ------------------------------------------------------------------------


def test_http_1_does_not_take_the_preface(run_server: RunServer) -> None:
    server = run_server(APP, "--http", "1")
    client_settings = h2.connection.H2Connection()
    client_settings.initiate_connection()
    with RawClient(server.port) as client:
        client.send(client_settings.data_to_send())  # the preface and a SETTINGS frame
        answer = client.wait_closed()
    is_settings_frame = len(answer) >= 9 and answer[3] == SETTINGS_FRAME_TYPE
    assert not is_settings_frame, f"an HTTP/2 frame came back: {answer[:40]!r}"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5")
    response = httpx.get(f"http://127.0.0.1:{server.port}/", timeout=TIMEOUT)
    assert (response.status_code, response.http_version) == (200, "HTTP/1.1")


def test_http_1_ignores_upgrade_h2c(run_server: RunServer) -> None:
    server = run_server(APP, "--http", "1")
    request = (
        b"GET /headers HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    with RawClient(server.port) as client:
        response = client.request(request)
    assert response.status == 200, response.raw[:300]
    assert response.json()["http_version"] == "1.1"


def test_http_2_answers_http11_with_505(run_server: RunServer) -> None:
    server = run_server(APP, "--http", "2")
    with RawClient(server.port) as client:
        response = client.request(build("GET", "/"))
    assert response.status == 505
    with H2Client(server.port) as h2client:
        result = h2client.get("/")
    assert (result.status, bytes(result.body)) == (200, b"Hello, world!")


# -- the scope ------------------------------------------------------------------------------------


def test_scope_over_http2(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        result = client.get(
            "/scope/caf%C3%A9%20au%2Flait?x=1&y=%20z",
            method="POST",
            headers=[("x-custom", "yes"), ("x_forged", "no"), ("content-type", "text/plain")],
            body=b"twelve bytes",
        )
        local = client.sock.getsockname()
    scope = body_json(result)
    assert scope["type"] == "http"
    assert scope["http_version"] == "2"
    assert scope["method"] == "POST"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/caf\u00e9 au/lait"
    assert scope["raw_path"] == "/scope/caf%C3%A9%20au%2Flait"
    assert scope["query_string"] == "x=1&y=%20z"
    assert scope["root_path"] == "/base"
    assert scope["body_length"] == 12
    headers = scope["headers"]
    assert ["host", "127.0.0.1"] in headers, "no host header made from :authority"
    assert ["x-custom", "yes"] in headers
    assert ["content-type", "text/plain"] in headers
    assert all(not name.startswith(":") for name, _ in headers), headers
    assert all("_" not in name for name, _ in headers), "a header with _ in its name got through"
    assert scope["client"] == [local[0], local[1]]
    assert scope["server"] == ["127.0.0.1", server.port]


def test_scope_host_header_without_authority(server: ServerProcess) -> None:
    """A request with a Host field and no :authority (RFC 9113 8.3.1 allows it) keeps its
    Host as it is, once."""
    with H2Client(server.port) as client:
        stream_id = client.conn.get_next_available_stream_id()
        client.streams[stream_id] = StreamResult(stream_id)
        fields = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/headers"),
            (b"host", b"example.test"),
        ]
        client.conn.send_headers(stream_id, fields, end_stream=True)
        client.flush()
        seen = body_json(client.response(stream_id))
    hosts = [value for name, value in seen["headers"] if name == "host"]
    assert hosts == ["example.test"]


# -- many streams on one connection ---------------------------------------------------------------


def test_fifty_concurrent_streams_each_get_their_own_answer(server: ServerProcess) -> None:
    count = 50
    with H2Client(server.port, timeout=20) as client:
        # Later streams sleep less: answers come back out of order, matched by stream id.
        streams = {
            client.request(
                f"/sleep?id={n}&s={(count - n) * 0.004:.3f}", method="POST", body=b"body-%d" % n
            ): n
            for n in range(count)
        }
        assert len(streams) == count
        for stream_id, n in streams.items():
            result = client.response(stream_id)
            assert result.status == 200, (n, result.status, result.reset)
            assert bytes(result.body) == b"%d:body-%d" % (n, n)
        assert client.goaway is None


def test_client_reset_disconnects_that_stream_only(server: ServerProcess) -> None:
    waiting = tag()
    with H2Client(server.port) as client:
        doomed = client.request(f"/wait-disconnect?tag={waiting}")
        others = [
            client.request(f"/sleep?id={n}&s=0.3", method="POST", body=b"x") for n in range(3)
        ]
        assert "waiting" in events(server, waiting, "waiting")
        client.reset(doomed, ErrorCodes.CANCEL)
        seen = events(server, waiting, "received")
        assert "received:http.disconnect" in seen, seen
        for n, stream_id in enumerate(others):
            result = client.response(stream_id)
            assert (result.status, bytes(result.body)) == (200, b"%d:x" % n)
        assert client.streams[doomed].status is None
        # The connection goes on.
        assert client.get("/").status == 200
        assert client.goaway is None


# -- 100-continue ---------------------------------------------------------------------------------


def test_expect_100_continue_when_the_app_reads(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        stream_id = client.request(
            "/echo", method="POST", headers=[("expect", "100-continue")], end_stream=False
        )
        stream = client.streams[stream_id]
        client.pump(lambda: bool(stream.informational) or stream.done, what="100 Continue")
        assert stream.status is None, "a final response came before the body was sent"
        assert stream.informational[0][0] == (b":status", b"100")
        client.send_body(stream_id, b"after continue")
        result = client.response(stream_id)
    assert (result.status, bytes(result.body)) == (200, b"after continue")


def test_no_100_continue_when_the_app_answers_without_reading(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        stream_id = client.request(
            "/noread", method="POST", headers=[("expect", "100-continue")], end_stream=False
        )
        result = client.response(stream_id)
    assert result.status == 200
    assert result.informational == []
    assert bytes(result.body) == b"answered without reading"


# -- app failures ---------------------------------------------------------------------------------


def test_exception_before_the_response_is_500(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        result = client.get("/raise-before")
        assert result.status == 500
        assert result.ended
        assert b"Traceback" not in result.body
        assert client.get("/").status == 200


def test_returning_without_a_response_is_500(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        result = client.get("/no-response")
        assert result.status == 500
        assert result.ended
        assert client.get("/").status == 200


def test_exception_mid_response_resets_that_stream_only(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        failing = client.request("/raise-after")
        sibling = client.request("/sleep?id=sib&s=0.3", method="POST", body=b"ok")
        result = client.response(failing)
        assert result.status == 200
        assert bytes(result.body) == b"partial;"
        assert not result.ended, "a truncated body ended as if complete"
        assert result.reset == ErrorCodes.INTERNAL_ERROR
        other = client.response(sibling)
        assert (other.status, bytes(other.body)) == (200, b"sib:ok")
        assert client.get("/").status == 200
        assert client.goaway is None


def stream_1_frames(port: int, path: str) -> list[tuple[Frame, list[tuple[bytes, bytes]]]]:
    """The frames the server sends on stream 1 for `GET path`, with the fields of each HEADERS
    frame decoded, read with hyperframe and hpack alone (h2's client would refuse a malformed
    response before the test could see it), until that stream ends or is reset."""
    machine = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    machine.initiate_connection()
    request = [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1")]
    machine.send_headers(1, [*request, (":path", path)], end_stream=True)
    decoder = hpack.Decoder()
    frames: list[tuple[Frame, list[tuple[bytes, bytes]]]] = []
    buffer = bytearray()
    deadline = time.monotonic() + TIMEOUT
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(machine.data_to_send())
        while True:
            while len(buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(bytes(buffer[:9])))
                if len(buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(bytes(buffer[9 : 9 + length])))
                del buffer[: 9 + length]
                fields: list[tuple[bytes, bytes]] = []
                if isinstance(frame, HeadersFrame):  # (small: never continued here)
                    fields = [(bytes(n), bytes(v)) for n, v in decoder.decode(frame.data, raw=True)]
                if frame.stream_id == 1:
                    frames.append((frame, fields))
                    if isinstance(frame, RstStreamFrame) or "END_STREAM" in frame.flags:
                        return frames
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"stream 1 never ended: {frames}"
            sock.settimeout(remaining)
            data = sock.recv(1 << 16)
            assert data, f"the connection closed before stream 1 ended: {frames}"
            buffer += data


@pytest.mark.parametrize("value", ["1x", "-1", "1 2"])
def test_invalid_response_content_length_is_500(server: ServerProcess, value: str) -> None:
    """An app's Content-Length that is no number: its http.response.start fails, and the client
    gets the server's 500 instead; HEADERS carrying the bad value are never sent."""
    path = "/status?" + urlencode({"code": "200", "body": "abc", "h": f"content-length:{value}"})
    frames = stream_1_frames(server.port, path)
    blocks = [fields for frame, fields in frames if isinstance(frame, HeadersFrame)]
    for fields in blocks:
        assert (b"content-length", value.encode()) not in fields, f"HEADERS went out: {fields}"
    statuses = [dict(fields).get(b":status") for fields in blocks]
    assert statuses == [b"500"], f"stream 1: {[type(f).__name__ for f, _ in frames]}, {blocks}"


def test_request_whose_start_fails_costs_its_stream_only(run_server: RunServer) -> None:
    """With --proxy-headers, a trusted peer's `Forwarded: for="1.2.3.4:\xb2"`: "\xb2" (latin-1
    for a superscript two) is a digit to str.isdigit() and not to int(). That request gets an
    answer of its own (served, with no port, or refused), and another stream in flight on the
    connection completes: no GOAWAY, no traceback."""
    server = run_server(APP, "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1")
    waiting = tag()
    with H2Client(server.port) as client:
        in_flight = client.request(f"/late?tag={waiting}")
        assert "started" in events(server, waiting, "started")
        stream_id = client.conn.get_next_available_stream_id()
        client.streams[stream_id] = StreamResult(stream_id)
        fields = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"127.0.0.1"),
            (b":path", b"/headers"),
            (b"forwarded", b'for="1.2.3.4:\xb2"'),
        ]
        client.conn.send_headers(stream_id, fields, end_stream=True)
        client.flush()
        result = client.response(stream_id)
        if result.status == 200:
            assert body_json(result)["client"] == ["1.2.3.4", 0]
        else:
            assert result.status == 400 or result.reset is not None, result
        release(server, waiting)
        held = client.response(in_flight)
        assert (held.status, bytes(held.body)) == (200, b"late"), held
        assert client.get("/").status == 200
        assert client.goaway is None
    assert "Traceback" not in server.output, server.output


def test_request_whose_start_fails_over_http11(run_server: RunServer) -> None:
    """The same Forwarded field over HTTP/1.1: an answer (served with no port, or a 400), not a
    dropped connection."""
    server = run_server(APP, "--proxy-headers", "--forwarded-allow-ips", "127.0.0.1")
    with RawClient(server.port) as client:
        client.send(b'GET /headers HTTP/1.1\r\nHost: x\r\nForwarded: for="1.2.3.4:\xb2"\r\n\r\n')
        response = client.read_response()
        if response.status == 200:
            assert response.json()["client"] == ["1.2.3.4", 0]
            assert client.request(build("GET", "/")).status == 200
        else:
            assert response.status == 400, response.raw[:300]
    assert "Traceback" not in server.output, server.output


# -- responses without a body ---------------------------------------------------------------------


def test_head_has_no_body(server: ServerProcess) -> None:
    with H2Client(server.port) as client:
        result = client.get("/", method="HEAD")
    assert result.status == 200
    assert result.ended
    assert bytes(result.body) == b""


@pytest.mark.parametrize("code", [204, 304])
@pytest.mark.parametrize("stream", ["", "1"])
def test_204_and_304_have_no_body(server: ServerProcess, code: int, stream: str) -> None:
    with H2Client(server.port) as client:
        result = client.get(f"/status?code={code}&body=not-sent&stream={stream}")
    assert result.status == code
    assert result.ended
    assert bytes(result.body) == b""


@pytest.mark.parametrize("length", ["0", "8"])
def test_204_never_carries_content_length(server: ServerProcess, length: str) -> None:
    """RFC 9110 8.6: no Content-Length in a 204, even when the app sets one."""
    with H2Client(server.port) as client:
        result = client.get(f"/status?code=204&h=content-length:{length}")
    assert result.status == 204
    assert result.ended and result.reset is None
    assert result.header(b"content-length") is None, result.headers


def test_header_option_keeps_connection_fields_to_http11(run_server: RunServer) -> None:
    """--header fields that are HTTP/1.1 connection business (RFC 9113 8.2.2: `connection`,
    `keep-alive`) are not sent in HTTP/2 responses (a client must take a response with them
    for malformed); other --header fields are. HTTP/1.1 responses still carry them."""
    server = run_server(
        APP,
        "--header",
        "connection:close",
        "--header",
        "keep-alive:timeout=5",
        "--header",
        "x-extra:yes",
    )
    with H2Client(server.port) as client:
        client.conn.config.validate_inbound_headers = False  # see for ourselves what came
        result = client.get("/")
        assert (result.status, bytes(result.body)) == (200, b"Hello, world!")
        names = [name for name, _ in result.headers]
        assert b"connection" not in names, result.headers
        assert b"keep-alive" not in names, result.headers
        assert result.header(b"x-extra") == b"yes"
        assert client.get("/").status == 200
        assert client.goaway is None
    with RawClient(server.port) as h1:
        response = h1.request(build("GET", "/"))
    assert response.status == 200
    assert response.header("connection") == "close"
    assert response.header("x-extra") == "yes"


# -- limits ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited_server() -> Iterator[ServerProcess]:
    with serve(APP, "--limit-max-body-size", "1000", "--limit-request-headers", "10") as proc:
        yield proc


def test_body_under_the_limit_is_served(limited_server: ServerProcess) -> None:
    with H2Client(limited_server.port) as client:
        result = client.get("/echo", method="POST", body=b"a" * 1000)
    assert (result.status, len(result.body)) == (200, 1000)


def test_declared_body_over_the_limit_is_413(limited_server: ServerProcess) -> None:
    with H2Client(limited_server.port) as client:
        stream_id = client.request(
            "/echo", method="POST", headers=[("content-length", "2000")], end_stream=False
        )
        result = client.response(stream_id)
        assert result.status == 413
        assert client.get("/").status == 200


def test_undeclared_body_over_the_limit_is_413(limited_server: ServerProcess) -> None:
    with H2Client(limited_server.port) as client:
        stream_id = client.request("/echo", method="POST", end_stream=False)
        client.send_body(stream_id, b"a" * 800, end_stream=False)
        client.send_body(stream_id, b"b" * 800, end_stream=False)
        result = client.response(stream_id)
        assert result.status == 413
        assert client.get("/").status == 200


def test_cut_short_body_is_never_passed_on_as_complete(limited_server: ServerProcess) -> None:
    """800 bytes, then 800 more with END_STREAM, all in one write, against a 1000-byte limit:
    the second DATA frame gets the 413, and the app, which has the first 800 bytes, must see
    the request end in http.disconnect, never those 800 bytes as the whole body."""
    watched = tag()
    with H2Client(limited_server.port) as client:
        stream_id = client.conn.get_next_available_stream_id()
        client.streams[stream_id] = StreamResult(stream_id)
        fields = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"127.0.0.1"),
            (b":path", f"/sha256?tag={watched}".encode()),
        ]
        client.conn.send_headers(stream_id, fields)
        client.conn.send_data(stream_id, b"a" * 800)
        client.conn.send_data(stream_id, b"b" * 800, end_stream=True)
        client.flush()
        result = client.response(stream_id)
        assert result.status == 413, result
        assert client.get("/").status == 200
    seen = events(limited_server, watched, "done|disconnect")
    assert [e for e in seen if e.startswith("disconnect:")], seen
    assert not [e for e in seen if e.startswith("done:")], f"a cut-short body looked whole: {seen}"


def test_body_over_the_limit_after_the_response_started(run_server: RunServer) -> None:
    """The app has started its response when the body goes over --limit-max-body-size: too
    late for a 413, so the stream is reset (CANCEL) and the app hears http.disconnect, instead
    of the stream being left open for ever; the connection serves on, then idles out."""
    server = run_server(APP, "--limit-max-body-size", "1000", "--timeout-keep-alive", "1")
    watched = tag()
    with H2Client(server.port) as client:
        stream_id = client.request(f"/respond-then-read?tag={watched}", "POST", end_stream=False)
        stream = client.streams[stream_id]
        client.pump(lambda: bytes(stream.body) == b"reading;", what="the response's start")
        client.send_body(stream_id, b"a" * 800, end_stream=False)
        assert "body:800:True" in events(server, watched, "body:")
        client.send_body(stream_id, b"b" * 800, end_stream=False)
        result = client.response(stream_id)
        assert result.reset == ErrorCodes.CANCEL, result
        assert not result.ended
        assert bytes(result.body) == b"reading;"
        seen = events(server, watched, "send-raised|sent")
        assert "disconnect" in seen, seen
        assert not any(e.startswith("body:") and e.endswith(":False") for e in seen), seen
        # The connection is fine: served, then closed once idle.
        assert client.get("/").status == 200
        assert client.wait_goaway().error_code == ErrorCodes.NO_ERROR
        client.wait_closed()


def test_too_many_headers_is_431(limited_server: ServerProcess) -> None:
    with H2Client(limited_server.port) as client:
        fields = [(f"x-field-{n}", "v") for n in range(20)]
        result = client.get("/", headers=fields)
        assert result.status == 431
        assert client.get("/", headers=fields[:3]).status == 200


# -- graceful shutdown ----------------------------------------------------------------------------


def test_stream_sent_before_the_final_goaway_is_served(run_server: RunServer) -> None:
    """RFC 9113 6.8: a graceful shutdown first announces the largest stream id, with a PING.
    A stream the client opens before it has answered that PING (it had not seen the GOAWAY
    when it sent the request) is served, and the final GOAWAY names it as the last."""
    server = run_server(APP, "--graceful-timeout", "10")
    started = tag()
    with H2Client(server.port) as client:
        busy = client.request(f"/slow?tag={started}&s=1")
        assert "started" in events(server, started, "started")
        server.signal(signal.SIGTERM)
        # The announcement is waiting in the socket: send a request before reading it (and so
        # before the client's PING ACK goes out).
        readable, _, _ = select.select([client.sock], [], [], 10)
        assert readable, "no GOAWAY came"
        late = client.request("/")
        goaway = client.wait_goaway()
        assert client.goaway_announced
        assert goaway.error_code == ErrorCodes.NO_ERROR
        assert goaway.last_stream_id == late
        assert client.response(late).status == 200
        assert client.response(busy).status == 200
        client.wait_closed()
    assert server.wait_exit() == 0


def test_sigterm_sends_goaway_and_lets_the_stream_finish(run_server: RunServer) -> None:
    server = run_server(APP, "--graceful-timeout", "10")
    started = tag()
    with H2Client(server.port) as client:
        stream_id = client.request(f"/slow?tag={started}&s=2")
        assert "started" in events(server, started, "started")
        server.signal(signal.SIGTERM)
        goaway = client.wait_goaway()
        assert goaway.error_code == ErrorCodes.NO_ERROR
        assert goaway.last_stream_id == stream_id
        result = client.response(stream_id)
        assert (result.status, bytes(result.body)) == (200, b"slow done")
        assert result.ended
        client.wait_closed()
    assert server.wait_exit() == 0


def test_client_goaway_lets_in_flight_streams_finish(run_server: RunServer) -> None:
    """A client's GOAWAY limits the streams the server may open (none here), not the client's
    own: the response to a request already in flight still comes (RFC 9113 6.8)."""
    server = run_server(APP, "--graceful-timeout", "5")
    started = tag()
    with H2Client(server.port) as client:
        stream_id = client.request(f"/slow?tag={started}&s=0.5")
        assert "started" in events(server, started, "started")
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = 0
        goaway.error_code = ErrorCodes.NO_ERROR
        client.send_raw(goaway.serialize())  # past h2's state machine, which would stop reading
        result = client.response(stream_id)
        assert (result.status, bytes(result.body)) == (200, b"slow done")
        client.wait_closed()


def test_client_goaway_with_an_error_closes_the_connection(run_server: RunServer) -> None:
    """A client's GOAWAY with an error code (RFC 9113 5.4.1: a connection error on its side)
    ends the connection: the server closes it at once, not once the streams in flight are
    answered, and their apps hear http.disconnect."""
    server = run_server(APP)
    waiting = tag()
    with H2Client(server.port, timeout=5) as client:
        client.request(f"/wait-disconnect?tag={waiting}&timeout=30")
        assert "waiting" in events(server, waiting, "waiting")
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = 0
        goaway.error_code = ErrorCodes.PROTOCOL_ERROR
        client.send_raw(goaway.serialize())  # past h2's state machine, which would stop reading
        client.wait_closed()
    assert "received:http.disconnect" in events(server, waiting, "received")


# -- h2load ---------------------------------------------------------------------------------------

H2LOAD_REQUESTS = re.compile(
    r"requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored"
)


@needs_h2load
def test_h2load_smoke(run_server: RunServer) -> None:
    server = run_server(APP, "--no-access-log")
    command = ["h2load", "-n", "2000", "-c", "4", "-m", "10", f"http://127.0.0.1:{server.port}/"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=50, check=False)
    match = H2LOAD_REQUESTS.search(result.stdout)
    assert match, result.stdout + result.stderr
    assert match["succeeded"] == "2000", match.group(0)
    assert (match["failed"], match["errored"]) == ("0", "0"), match.group(0)
    assert re.search(r"status codes: 2000 2xx", result.stdout), result.stdout
    assert "h2c" in result.stdout, "h2load did not speak HTTP/2"
    assert server.proc.poll() is None


# -- the access log -------------------------------------------------------------------------------


def test_access_log_line_for_an_http2_request(server: ServerProcess) -> None:
    marker = tag()
    with H2Client(server.port) as client:
        result = client.get(f"/h2-logged/{marker}?q=1")
        local_port = client.sock.getsockname()[1]
    assert result.status == 200
    match = server.wait_for(
        r"^(?P<client>127\.0\.0\.1:\d+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\] "
        rf'"GET /h2-logged/{marker}\?q=1" (?P<status>\d{{3}}) (?P<size>\d+)$',
        "stdout",
    )
    assert match["client"] == f"127.0.0.1:{local_port}"
    assert (match["status"], match["size"]) == ("200", str(len(b"Hello, world!")))
