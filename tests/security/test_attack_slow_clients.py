# Slow clients: every way a client can hold a connection by being slow is cut off by its own
# timeout or minimum data rate, while other clients keep being served and memory stays bounded.
#
# Slowloris (a head sent a header at a time), R.U.D.Y. (a body trickled a byte at a time, which
# a between-reads timeout never catches: --min-request-body-rate), idle keep-alive, a reader
# that never reads a response or a WebSocket's messages (--min-response-data-rate), an HTTP/2
# client that never opens its flow-control window, and the same body trickle on an HTTP/2
# stream. The rates are measured only while the server waits on the client: an app that is slow
# to read, or a client waiting for its 100 Continue, is never blamed on the client (those cases
# run against a server demanding 1 MB/s, where blaming the client would fail at once).
from __future__ import annotations

import contextlib
import hashlib
import select
import socket
import time
from collections.abc import Iterator

import h2.settings
import pytest

from conftest import PeakRSS, ServerProcess
from h2client import H2Client
from rawhttp import RawClient, build, events, exchange, serve
from wsraw import WSClient

GRACE = 2.0
# A never-reading client is dropped within the grace plus the credit its kernel's receive
# buffer earns it: the few KB it still takes after the wait began count as progress, about 8 s
# at 240 B/s. The tests wait GRACE + 15 s for the drop.
# What a flood of slow clients may add to the server's memory, in KiB: their connections'
# buffers, not their (endless) input.
RSS_BOUND_KIB = 16 * 1024
SMALL_RCVBUF = 4096


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve(
        "h1_app:app",
        "--data-rate-grace",
        str(GRACE),
        "--header-read-timeout",
        "3",
        "--timeout-keep-alive",
        "2",
        "--h2-flow-control-timeout",
        "3",
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def strict() -> Iterator[ServerProcess]:
    """A server demanding 1 MB/s after 1 s: any waiting wrongly charged to a client shows."""
    with serve(
        "h1_app:app",
        "--min-request-body-rate",
        "1000000",
        "--data-rate-grace",
        "1",
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def lenient() -> Iterator[ServerProcess]:
    """Both minimum rates off (0)."""
    with serve(
        "h1_app:app",
        "--min-request-body-rate",
        "0",
        "--min-response-data-rate",
        "0",
        "--data-rate-grace",
        "1",
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def ws_server() -> Iterator[ServerProcess]:
    with serve("ws_app:app", "--data-rate-grace", str(GRACE), "--ping-interval", "0") as proc:
        yield proc


def assert_served_promptly(server: ServerProcess) -> None:
    """A fresh client gets its answer within 2 s."""
    started = time.monotonic()
    response = exchange(server.port, build("GET", "/"), timeout=5)
    assert response.status == 200
    assert time.monotonic() - started < 2.0


@contextlib.contextmanager
def under_attack(server: ServerProcess) -> Iterator[None]:
    """Sample the server's RSS over the block; then its growth is bounded and a fresh client
    is served promptly."""
    with PeakRSS(server) as rss:
        yield
    assert rss.growth < RSS_BOUND_KIB, f"RSS grew by {rss.growth} KiB"
    assert_served_promptly(server)


def trickle(client: RawClient, data: bytes, interval: float, limit: float) -> tuple[bytes, float]:
    """Send `data` a byte every `interval` seconds until the server answers or closes (or
    `limit` seconds pass); returns what came back and when, in seconds from the start."""
    started = time.monotonic()
    for byte in data:
        if time.monotonic() - started > limit:
            break
        if not client.try_send(bytes([byte])) or client.poll(interval):
            break
    elapsed = time.monotonic() - started
    try:
        return client.wait_closed(timeout=5), elapsed
    except TimeoutError:
        return bytes(client.buffer), elapsed


def drained_until_closed(sock: socket.socket, timeout: float) -> int:
    """Read everything the server had sent until it closes; the byte count. TimeoutError if
    the connection stays open."""
    sock.settimeout(timeout)
    total = 0
    try:
        while chunk := sock.recv(1 << 20):
            total += len(chunk)
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise TimeoutError(f"still open after reading {total} bytes") from None
    return total


def test_slowloris_head_cut_by_header_read_timeout(server: ServerProcess) -> None:
    """Slowloris (2009; Uvicorn and Daphne hang on it): 100 clients each send a header line every
    0.5 s and never finish the head. --header-read-timeout (3 s here) is a deadline for the
    whole head, not between reads: each gets 408 and is closed; others are served meanwhile."""
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    for sock in socks:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    answers: dict[socket.socket, bytes] = {}
    started = time.monotonic()
    with PeakRSS(server) as rss:
        while len(answers) < len(socks) and time.monotonic() - started < 10:
            for sock in socks:
                if sock not in answers:
                    try:
                        sock.sendall(b"X-Slow: x\r\n")
                    except OSError:
                        answers[sock] = b""
            readable, _, _ = select.select([s for s in socks if s not in answers], [], [], 0.5)
            for sock in readable:
                try:
                    answers[sock] = sock.recv(65536)
                except OSError:
                    answers[sock] = b""
            if time.monotonic() - started > 1.0:
                assert_served_promptly(server)
    elapsed = time.monotonic() - started
    for sock in socks:
        sock.close()
    assert len(answers) == len(socks), "some slowloris connections were never cut off"
    assert 2.5 < elapsed < 8, elapsed
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers.values() if a), answers
    assert sum(1 for a in answers.values() if a.startswith(b"HTTP/1.1 408 ")) >= 90
    assert rss.growth < RSS_BOUND_KIB
    assert_served_promptly(server)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_rudy_body_trickle_gets_408(server: ServerProcess, framing: str) -> None:
    """R.U.D.Y. ("R U Dead Yet?", 2010): a body sent a byte every 0.5 s resets any timeout
    between reads. Below --min-request-body-rate (240 B/s) once --data-rate-grace is over,
    the request gets 408 and is closed; the app is told the client is gone."""
    with under_attack(server):
        tag = f"rudy-{framing}"
        if framing == "chunked":
            head = build("POST", f"/sha256?tag={tag}", [("Transfer-Encoding", "chunked")])
            body = b"".join(b"1\r\n%c\r\n" % b for b in b"x" * 200)
        else:
            head = build("POST", f"/sha256?tag={tag}", [("Content-Length", "1000")])
            body = b"x" * 1000
        with RawClient(server.port) as client:
            client.send(head)
            answer, elapsed = trickle(client, body, 0.5, limit=GRACE + 6)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b"connection: close" in answer.lower()
        assert GRACE <= elapsed < GRACE + 4, elapsed
        assert any(e.startswith("disconnect:") for e in events(server, tag, "disconnect"))


def test_rudy_many_clients_bounded(server: ServerProcess) -> None:
    """Fifty R.U.D.Y. clients at once: all cut off at about the same time, memory bounded, and
    a fresh client is served throughout."""
    clients = [RawClient(server.port) for _ in range(50)]
    for index, client in enumerate(clients):
        client.send(build("POST", f"/sha256?tag=many{index}", [("Content-Length", "100000")]))
    started = time.monotonic()
    answers: dict[int, bytes] = {}
    with PeakRSS(server) as rss:
        while len(answers) < len(clients) and time.monotonic() - started < GRACE + 8:
            for index, client in enumerate(clients):
                if index not in answers and (not client.try_send(b"x") or client.poll(0.01)):
                    answers[index] = bytes(client.buffer)
            time.sleep(0.5)
            assert_served_promptly(server)
    for client in clients:
        client.close()
    assert len(answers) == len(clients)
    assert sum(1 for a in answers.values() if a.startswith(b"HTTP/1.1 408 ")) >= 45, answers
    assert rss.growth < RSS_BOUND_KIB


def test_body_above_the_minimum_rate_is_served(server: ServerProcess) -> None:
    """A slow but legitimate upload (about 1,000 B/s, four times the minimum, for longer than
    the grace period) is not cut off: the rate is an average, not a per-read deadline."""
    body = bytes(range(256)) * 20  # 5,120 bytes at 100 bytes per 0.1 s: about 5 s
    with RawClient(server.port) as client:
        client.send(build("POST", "/sha256?tag=steady", [("Content-Length", str(len(body)))]))
        for start in range(0, len(body), 100):
            client.send(body[start : start + 100])
            time.sleep(0.1)
        response = client.read_response()
    assert response.status == 200
    assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_app_slow_to_read_is_not_blamed_on_the_client(strict: ServerProcess) -> None:
    """The clock only runs while the server waits for the client: here the app waits 3 s
    before it reads a 2 MB body, which pauses reading (backpressure). Counting that pause
    against the client would make it look far slower than the 1 MB/s this server demands."""
    body = b"z" * (2 << 20)
    with RawClient(strict.port) as client:
        client.send(build("POST", "/sleep?s=3&id=slowapp", [("Content-Length", str(len(body)))]))
        client.send(body)
        response = client.read_response(timeout=20)
    assert response.status == 200
    assert response.body == b"slowapp:" + body


def test_http2_app_slow_to_read_is_not_blamed_on_the_client(strict: ServerProcess) -> None:
    """Over HTTP/2 an app that is behind stops its stream's window from being credited: the
    client may not send until the app reads. That wait is not the client's (against a server
    demanding 1 MB/s, counting it would give 408)."""
    body = b"w" * (1 << 20)
    with H2Client(strict.port, timeout=20) as client:
        stream_id = client.request(
            "/sleep?s=3&id=h2slowapp",
            method="POST",
            headers=[("content-length", str(len(body)))],
            body=body,
        )
        result = client.response(stream_id)
    assert result.status == 200
    assert bytes(result.body) == b"h2slowapp:" + body


def test_client_waiting_for_100_continue_is_not_blamed(strict: ServerProcess) -> None:
    """A client that sent `Expect: 100-continue` waits for the 100, which the app asks for
    only when it first reads (here after 3 s): that wait is not the client's slowness."""
    body = b"q" * 100_000
    head = build(
        "POST",
        "/sleep?s=3&id=expect",
        [("Content-Length", str(len(body))), ("Expect", "100-continue")],
    )
    with RawClient(strict.port) as client:
        client.send(head)
        interim = client.read_response(timeout=10)
        assert interim.status == 100
        client.send(body)
        response = client.read_response(timeout=10)
    assert response.status == 200
    assert response.body == b"expect:" + body


def test_minimum_rates_off(lenient: ServerProcess) -> None:
    """--min-request-body-rate 0 turns the minimum off: a 2 B/s body outlives the grace period
    and is answered once complete."""
    body = b"s" * 8
    with RawClient(lenient.port) as client:
        client.send(build("POST", "/sleep?id=off", [("Content-Length", str(len(body)))]))
        started = time.monotonic()
        for byte in body[:-1]:
            client.send(bytes([byte]))
            assert not client.poll(0.5), client.buffer
        client.send(body[-1:])
        response = client.read_response()
    assert time.monotonic() - started > 3.5
    assert response.status == 200
    assert response.body == b"off:" + body


def test_idle_keep_alive_closed(server: ServerProcess) -> None:
    """An idle keep-alive connection holds a slot for nothing: closed after
    --timeout-keep-alive (2 s here; RFC 9112 9.5 lets a server close idle connections)."""
    with under_attack(server):
        with RawClient(server.port) as client:
            assert client.request(build("GET", "/")).status == 200
            started = time.monotonic()
            assert client.wait_closed(timeout=8) == b""
        assert 1.5 < time.monotonic() - started < 5


def test_response_reader_that_never_reads_is_dropped(server: ServerProcess) -> None:
    """A client that asks for a large response and never reads it holds the app's send() for
    ever (backpressure keeps memory bounded, but not the connection). Once the server has
    waited --data-rate-grace on it with less than --min-response-data-rate taken, it is
    dropped, and the app's send() fails."""
    tag = "noreader"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    sock.connect(("127.0.0.1", server.port))
    with PeakRSS(server) as rss:
        sock.sendall(build("GET", f"/bigstream?tag={tag}&total={200 << 20}"))
        found = events(server, tag, "send-raised", timeout=GRACE + 15)
        assert_served_promptly(server)
    assert any(e.startswith("send-raised") for e in found), found
    assert drained_until_closed(sock, timeout=5) < 50 << 20
    sock.close()
    assert rss.growth < RSS_BOUND_KIB


@pytest.mark.parametrize("connection", ["close", "keep-alive"])
def test_whole_response_never_read_is_dropped(server: ServerProcess, connection: str) -> None:
    """The app sent its whole 8 MB response in one message and is done; the connection is
    closing (Connection: close, or idle past --timeout-keep-alive) with the response still
    unread in its buffers. It still holds a slot and the memory: once the client has taken
    less than --min-response-data-rate for the grace period, it is reset."""
    with under_attack(server):
        size = 8 << 20
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        sock.connect(("127.0.0.1", server.port))
        target = f"/cl?declared={size}&parts={size}"
        sock.sendall(build("GET", target, [("Connection", connection)]))
        port = sock.getsockname()[1]
        server.wait_for(
            rf"Client 127\.0\.0\.1:{port} reads below --min-response-data-rate: dropped",
            timeout=GRACE + 15,
        )
        assert drained_until_closed(sock, timeout=5) < size
        sock.close()


def test_response_reader_above_the_minimum_is_kept(server: ServerProcess) -> None:
    """A slow but steady reader (about 20 KB/s, far above 240 B/s) keeps its connection past
    the grace period, and the response keeps coming."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    sock.connect(("127.0.0.1", server.port))
    sock.settimeout(5)
    sock.sendall(build("GET", f"/bigstream?tag=steadyreader&total={200 << 20}"))
    received = 0
    started = time.monotonic()
    while time.monotonic() - started < GRACE + 3:
        chunk = sock.recv(2048)
        assert chunk, f"dropped after {received} bytes"
        received += len(chunk)
        time.sleep(0.1)
    sock.close()
    assert received > 10_000


def test_websocket_reader_that_never_reads_is_dropped(ws_server: ServerProcess) -> None:
    """A WebSocket client that never reads what the app sends (Daphne CVE-2026-44545's
    neighbour: the server side of an unbounded exchange) is dropped by
    --min-response-data-rate, even with keep-alive pings off; memory stays bounded."""
    tag = "ws-noreader"
    with WSClient(ws_server.port, rcvbuf=SMALL_RCVBUF) as client, PeakRSS(ws_server) as rss:
        client.upgrade(f"/flood?tag={tag}&size=65536&count=100000")
        found = events(ws_server, tag, "send-raised|disconnect", timeout=GRACE + 15)
        assert drained_until_closed(client.sock, timeout=5) < 50 << 20
    assert any(e.startswith(("send-raised", "disconnect")) for e in found), found
    assert rss.growth < RSS_BOUND_KIB
    with RawClient(ws_server.port) as fresh:
        assert fresh.request(build("GET", "/")).status in (200, 404)


def test_http2_zero_window_stream_reset(server: ServerProcess) -> None:
    """An HTTP/2 client that sets its stream window to 0 and never opens it (the slow-read
    attack of CVE-2019-9517's family) has the stream reset after --h2-flow-control-timeout
    (3 s here); the connection and other clients are unaffected."""
    with under_attack(server):
        settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
        with H2Client(server.port, settings=settings, auto_window=False) as client:
            stream_id = client.request(f"/bigstream?tag=h2zero&total={10 << 20}")
            started = time.monotonic()
            assert_served_promptly(server)
            client.pump(lambda: client.streams[stream_id].done, what="the stalled stream's reset")
            assert client.streams[stream_id].reset is not None
            assert 2.5 < time.monotonic() - started < 8
            assert client.get("/").status == 200


def test_http2_body_trickle_gets_408(server: ServerProcess) -> None:
    """R.U.D.Y. over HTTP/2: one DATA frame of a byte every 0.5 s on a stream. The stream
    gets 408, then RST_STREAM(NO_ERROR) to stop the rest (RFC 9113 8.1); the connection
    stays usable."""
    with under_attack(server):
        tag = "h2rudy"
        with H2Client(server.port) as client:
            stream_id = client.request(
                f"/sha256?tag={tag}",
                method="POST",
                headers=[("content-length", "1000")],
                end_stream=False,
            )
            started = time.monotonic()
            while not client.streams[stream_id].done and time.monotonic() - started < GRACE + 6:
                client.send_body(stream_id, b"x", end_stream=False)
                pause = time.monotonic() + 0.5
                while not client.streams[stream_id].done and time.monotonic() < pause:
                    client._read_once(pause)
            result = client.streams[stream_id]
            assert result.status == 408
            assert GRACE <= time.monotonic() - started < GRACE + 4
            assert client.get("/").status == 200
        assert any(e.startswith("disconnect:") for e in events(server, tag, "disconnect"))


def test_http2_reader_that_never_reads_is_dropped(server: ServerProcess) -> None:
    """An HTTP/2 client that opens its windows wide, asks for a large response and never
    reads the socket: the output waits in the transport, and the connection is dropped by
    --min-response-data-rate."""
    big = 2**31 - 1
    settings = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: big}
    client = H2Client(server.port, settings=settings)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    client.conn.increment_flow_control_window(big - 65535)
    client.flush()
    with PeakRSS(server) as rss:
        client.request(f"/bigstream?tag=h2noreader&total={500 << 20}")
        found = events(server, "h2noreader", "send-raised", timeout=GRACE + 15)
        assert_served_promptly(server)
    assert any(e.startswith("send-raised") for e in found), found
    assert drained_until_closed(client.sock, timeout=5) < 100 << 20
    client.sock.close()
    assert rss.growth < RSS_BOUND_KIB
