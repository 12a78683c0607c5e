# Fault tests of the security suite: nothing lost, nothing leaked, when clients or the operator
# misbehave at the worst moment. Owns three attack classes, each on both event loops:
#   - clients that vanish (FIN or RST) at every point of an exchange: during the request head,
#     during the body, while the response streams, during the WebSocket handshake and after the
#     accept, and on an HTTP/2 stream. 1,000 of them; every app call that started must get its
#     http.disconnect / websocket.disconnect, and the server's asyncio tasks and file
#     descriptors must come back to their baseline (file-descriptor exhaustion, CWE-772);
#   - a 100 MB upload to an app that consumes it slowly, over HTTP/1.1 (Content-Length and
#     chunked) and HTTP/2: the body arrives intact and the server buffers little (RSS bounded);
#   - SIGTERM under load (HTTP/1.1 keep-alive and new connections, HTTP/2 streams): every request
#     the app received is answered in full, every other one is refused at the connection level
#     and never reached the app, and the server exits 0.
# The app, with its /_stats introspection endpoint, is tests/apps/sec_fault_app.py.
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from h2.errors import ErrorCodes

from conftest import PeakRSS, ServerProcess
from h2client import Closed, H2Client, StreamResult
from rawhttp import ConnectionClosed, RawClient, build, serve
from wsraw import WSClient, handshake_request, new_key

APP = "sec_fault_app:app"
LOOPS = ["asyncio", "uvloop"]
KIB = 1 << 10
MIB = 1 << 20
# "RSS grows by less than 16 MB", in KiB as /proc reports it.
RSS_GROWTH_LIMIT_KIB = 16_000_000 // 1024
# A fresh client after a fault must be answered within this (a loaded CI machine: generous).
PROMPT_SECONDS = 3.0

RunServer = Callable[..., ServerProcess]


# -- shared helpers --------------------------------------------------------------------------------


def stats(server: ServerProcess) -> dict[str, Any]:
    """The app's /_stats: tasks, fds and the per-route counters (see sec_fault_app.py)."""
    with RawClient(server.port, timeout=10) as client:
        response = client.request(build("GET", "/_stats"))
    assert response.status == 200, response.raw[:300]
    result: dict[str, Any] = response.json()
    return result


def served_promptly(server: ServerProcess) -> None:
    """A fresh client is answered at once: the fault cost nobody else anything."""
    began = time.monotonic()
    stats(server)
    elapsed = time.monotonic() - began
    assert elapsed < PROMPT_SECONDS, f"a fresh client waited {elapsed:.1f} s"


def route(snapshot: dict[str, Any], path: str) -> dict[str, int]:
    found: dict[str, int] = snapshot["routes"].get(path, {})
    return {
        name: found.get(name, 0)
        for name in ("started", "http_disconnect", "ws_disconnect", "completed", "timeout")
    }


# -- 1. clients that vanish at every point ---------------------------------------------------------

# Where a client vanishes, and the route whose app it leaves behind ("" for none). For the
# points marked sure, the client first saw proof that its app was running (100 Continue, a
# response byte, a 103, the 101 and the app's first message), so that app must have started.
POINTS: dict[str, tuple[str, bool]] = {
    "connect": ("", True),  # connected, sent nothing
    "head": ("", True),  # half a request head
    "body-length": ("/upload", True),  # mid Content-Length body, after 100 Continue
    "body-chunked": ("/upload", True),  # mid chunked body, after 100 Continue
    "streaming": ("/stream", True),  # while the response streams
    "waiting": ("/hold", True),  # request complete, app waiting, after its 103
    "ws-handshake": ("/ws-hold", False),  # upgrade sent, app has not accepted
    "ws-open": ("/ws-echo", True),  # after the 101 and the app's first message
    "h2-streaming": ("/stream", True),  # HTTP/2: while a stream's response streams
}
VANISH_CLIENTS = 1000
VANISH_THREADS = 16
# Tasks and fds may end up to this much above the baseline, for the polling itself: each
# /_stats poll is a new connection (its socket and app task are counted, in the baseline too),
# and the server may not yet have processed the client's close of the previous poll's
# connection when the next poll is counted (+1 fd, and +1 task if that app call has not
# returned yet). In practice both come back exactly. Anything that leaks per client is far
# above it: the flood has 1,000 clients.
SLACK = 2
SETTLE_SECONDS = 30.0


def vanish(port: int, point: str, how: str) -> None:
    """One client that goes away at `point`, with a FIN ("fin") or an RST ("rst")."""
    if point == "h2-streaming":
        h2_vanish(port, how)
        return
    client: RawClient = (
        WSClient(port, timeout=15) if point.startswith("ws-") else RawClient(port, timeout=15)
    )
    try:
        run_point(client, point)
    finally:
        client.close(reset=how == "rst")


def run_point(client: RawClient, point: str) -> None:
    expect = [("Expect", "100-continue")]
    if point == "head":
        client.send(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Le")
    elif point == "body-length":
        client.send(build("POST", "/upload", [*expect, ("Content-Length", str(MIB))]))
        assert client.read_response().status == 100
        client.send(b"b" * 8192)
    elif point == "body-chunked":
        client.send(build("POST", "/upload", [*expect, ("Transfer-Encoding", "chunked")]))
        assert client.read_response().status == 100
        client.send(b"2000\r\n" + b"c" * 8192 + b"\r\n1000\r\n" + b"c" * 100)
    elif point == "streaming":
        client.send(build("GET", "/stream"))
        client.read_raw(40_000)  # the head and over two 16 KiB parts
    elif point == "waiting":
        client.send(build("POST", "/hold", body=b"w" * 100))
        assert client.read_response().status == 103
    elif point == "ws-handshake":
        client.send(handshake_request("/ws-hold", key=new_key()))
        time.sleep(0.01)  # the app has no way to say it runs before it answers
    elif point == "ws-open":
        assert isinstance(client, WSClient)
        client.upgrade("/ws-echo")
        assert client.read_text() == "ready"
        client.send_text("last words")
    # "connect": nothing at all


def h2_vanish(port: int, how: str) -> None:
    client = H2Client(port, timeout=15)
    try:
        stream_id = client.request("/stream")
        client.pump(
            lambda: len(client.streams[stream_id].body) >= 32 * KIB, what="the streamed body"
        )
    finally:
        if how == "rst":
            with contextlib.suppress(OSError):
                client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()


def plan(total: int) -> list[tuple[str, str]]:
    """`total` (point, how) pairs: every point, each with FIN and RST, interleaved."""
    combos = [(point, how) for point in POINTS for how in ("fin", "rst")]
    return list(itertools.islice(itertools.cycle(combos), total))


def run_clients(port: int, clients: list[tuple[str, str]]) -> None:
    with ThreadPoolExecutor(VANISH_THREADS) as pool:
        futures = [pool.submit(vanish, port, point, how) for point, how in clients]
        errors = [f.exception(timeout=60) for f in futures]
    failed = [(clients[i], repr(e)) for i, e in enumerate(errors) if e is not None]
    assert not failed, f"{len(failed)} clients failed before vanishing, e.g. {failed[:5]}"


def settled(before: dict[str, Any], server: ServerProcess) -> dict[str, Any]:
    """Poll /_stats until every started app has had its disconnect and tasks and fds are back
    within SLACK of `before`, or SETTLE_SECONDS pass; return the last snapshot."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        now = stats(server)
        balanced = (
            now["started"]
            == now["http_disconnect"] + now["ws_disconnect"] + now["completed"] + now["timeout"]
        )
        if (
            balanced
            and now["tasks"] <= before["tasks"] + SLACK
            and now["fds"] <= before["fds"] + SLACK
        ) or time.monotonic() > deadline:
            return now
        time.sleep(0.25)


@pytest.mark.parametrize("loop", LOOPS)
def test_vanishing_clients_lose_no_disconnect_and_leak_nothing(
    run_server: RunServer, loop: str
) -> None:
    """Clients that abandon a connection at any point must cost the server nothing afterwards.

    Attack class: resource exhaustion by abandoned connections (CWE-772, missing release of a
    resource after its lifetime; CVE-2021-42075 is this bug in another server: descriptors of
    connections abandoned mid-handshake never closed, until accept() fails). RFC 9112 section
    9.6 (a closed or reset connection ends every exchange on it), RFC 6455 section 7.1.5 (a
    connection closed without a close frame is 1006 to the application), RFC 9113 section 5.4.1
    (the end of an HTTP/2 connection ends its streams), and the ASGI spec: an app whose client
    went away gets `http.disconnect` / `websocket.disconnect` from receive().
    """
    server = run_server(APP, "--loop", loop, "--no-access-log")
    # Every point once with each ending: first-use allocations and lazily created objects are
    # then part of the baseline.
    run_clients(server.port, plan(2 * len(POINTS)))
    before = settled(stats(server), server)
    assert before["started"] == before["http_disconnect"] + before["ws_disconnect"], before
    clients = plan(VANISH_CLIENTS)
    began = time.monotonic()
    with PeakRSS(server) as rss:
        run_clients(server.port, clients)
    flood_seconds = time.monotonic() - began
    after = settled(before, server)

    problems = []
    for path in sorted({path for path, _ in POINTS.values() if path}):
        old, new = route(before, path), route(after, path)
        delta = {name: new[name] - old[name] for name in new}
        sure = sum(1 for point, _ in clients if POINTS[point] == (path, True))
        maybe = sum(1 for point, _ in clients if POINTS[point] == (path, False))
        # Every app that started learned of its client's departure; none completed, none
        # waited in vain.
        if delta["started"] != delta["http_disconnect"] + delta["ws_disconnect"]:
            problems.append(f"{path}: {delta['started']} started but disconnects {delta}")
        if delta["completed"] or delta["timeout"]:
            problems.append(f"{path}: completed or timed out: {delta}")
        if sure and delta["started"] != sure:
            problems.append(f"{path}: {sure} clients saw their app run, {delta} started")
        if maybe and not maybe // 4 <= delta["started"] <= maybe:
            problems.append(f"{path}: {delta['started']} of {maybe} handshakes reached the app")
    assert not problems, problems
    # Nothing leaked: the per-connection objects are all gone.
    assert after["tasks"] <= before["tasks"] + SLACK, (before["tasks"], after["tasks"])
    assert after["fds"] <= before["fds"] + SLACK, (before["fds"], after["fds"])
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"
    assert flood_seconds < 45, f"1,000 clients took {flood_seconds:.1f} s"
    served_promptly(server)
    assert "Traceback" not in server.output, server.output[-3000:]


# -- 2. a slow app and a 100 MB upload -------------------------------------------------------------

UPLOAD_TOTAL = 100 * MIB
# The app sleeps 1 ms every 2 receive() calls: it takes the body slower than loopback gives it.
SLOW_QUERY = "/upload?pace=2&sleep=0.001"


@pytest.fixture(scope="module", params=LOOPS)
def upload_server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve(APP, "--loop", request.param, "--no-access-log") as proc:
        # Each upload path once, so that first-use allocations do not count as growth.
        body = os.urandom(4 * MIB)
        digest = hashlib.sha256(body).hexdigest()
        with RawClient(proc.port, timeout=60) as client:
            assert client.request(build("POST", SLOW_QUERY, body=body)).json()["sha256"] == digest
            chunked = build("POST", SLOW_QUERY, [("Transfer-Encoding", "chunked")])
            client.send(chunked + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
            assert client.read_response().json()["sha256"] == digest
        with H2Client(proc.port, timeout=60) as h2:
            result = h2.get(SLOW_QUERY, method="POST", body=body)
            assert json.loads(bytes(result.body))["sha256"] == digest
        yield proc


class Blocks:
    """`total` bytes in 1 MiB blocks, each different (its index in its first 8 bytes), made one
    at a time and hashed as they go: the client never holds the whole body."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.block = bytearray(os.urandom(MIB))
        self.digest = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for index in range(self.total // MIB):
            self.block[:8] = index.to_bytes(8, "big")
            part = bytes(self.block)
            self.digest.update(part)
            yield part


def upload_h1(server: ServerProcess, blocks: Blocks, framing: str) -> dict[str, Any]:
    if framing == "content-length":
        head = build("POST", SLOW_QUERY, [("Content-Length", str(blocks.total))])
    else:
        head = build("POST", SLOW_QUERY, [("Transfer-Encoding", "chunked")])
    with RawClient(server.port, timeout=120) as client:
        client.send(head)
        for block in blocks:
            if framing == "chunked":
                # Uneven chunks: a chunk boundary never lines up with a read.
                for piece in (block[:1000], block[1000:300_000], block[300_000:]):
                    client.send(b"%x\r\n%b\r\n" % (len(piece), piece))
            else:
                client.send(block)
        if framing == "chunked":
            client.send(b"0\r\n\r\n")
        response = client.read_response(timeout=120)
    assert response.status == 200, response.raw[:300]
    answer: dict[str, Any] = response.json()
    return answer


def upload_h2(server: ServerProcess, blocks: Blocks) -> dict[str, Any]:
    with H2Client(server.port, timeout=120) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream_id = client.request(
            SLOW_QUERY,
            method="POST",
            headers=[("content-length", str(blocks.total))],
            end_stream=False,
        )
        for block in blocks:
            client.send_body(stream_id, block, end_stream=False)
        client.send_body(stream_id, b"")
        result = client.response(stream_id)
    assert result.status == 200, bytes(result.body[:300])
    answer: dict[str, Any] = json.loads(bytes(result.body))
    return answer


@pytest.mark.timeout(120)
@pytest.mark.parametrize("transport", ["h1-content-length", "h1-chunked", "h2"])
def test_slow_app_gets_100_mb_upload_intact_in_bounded_memory(
    upload_server: ServerProcess, transport: str
) -> None:
    """A client can push a large body faster than the app takes it; the server must not buffer
    the difference (nor lose or reorder any of it).

    Attack class: memory exhaustion through request-body buffering (CWE-770, allocation without
    limits). RFC 9112 section 6 and 7.1 (the body, Content-Length and chunked: TCP flow control
    is HTTP/1.1's only backpressure, so the server must stop reading while the app lags); RFC
    9113 section 5.2 (HTTP/2 flow control: a receiver credits WINDOW_UPDATE only for what it
    has consumed, so buffering stays within the window it announced).
    """
    blocks = Blocks(UPLOAD_TOTAL)
    with PeakRSS(upload_server) as rss:
        if transport == "h2":
            answer = upload_h2(upload_server, blocks)
        else:
            answer = upload_h1(upload_server, blocks, transport.removeprefix("h1-"))
    assert answer["length"] == UPLOAD_TOTAL, answer
    assert answer["sha256"] == blocks.digest.hexdigest(), answer
    # The app really was slower than the wire: it took the body in many small pieces.
    assert answer["messages"] > UPLOAD_TOTAL // (1 * MIB), answer
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"
    served_promptly(upload_server)


# -- 3. SIGTERM under load ---------------------------------------------------------------------

RECEIVED = re.compile(r"^sec_fault_app received (\S+)$", re.MULTILINE)
LOAD_SECONDS_BEFORE_SIGTERM = 1.5
CLIENT_DEADLINE_SECONDS = 25.0


@dataclass
class Outcome:
    """What one request's client saw: "ok" (a complete, correct response), "refused" (no
    connection, or the connection ended before any byte of a response; HTTP/2: REFUSED_STREAM
    or a stream above the GOAWAY's last stream id), or "bad" (anything else: a truncated or
    wrong response, a timeout)."""

    request_id: str
    via: str
    kind: str
    detail: str
    sent_at: float  # when the request went out (monotonic clock)
    at: float  # when its outcome was known


class Load:
    """Client threads sending /work requests until the server refuses connections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.ids = itertools.count()
        self.deadline = time.monotonic() + CLIENT_DEADLINE_SECONDS
        self.threads: list[threading.Thread] = []
        self.crashed: list[str] = []
        self.signalled = threading.Event()

    def next_id(self, via: str) -> str:
        with self.lock:
            return f"{via}-{next(self.ids)}"

    def record(
        self, request_id: str, via: str, sent_at: float, kind: str, detail: str = ""
    ) -> None:
        outcome = Outcome(request_id, via, kind, detail, sent_at, time.monotonic())
        with self.lock:
            self.outcomes.append(outcome)

    def count(self, kind: str) -> int:
        with self.lock:
            return sum(1 for o in self.outcomes if o.kind == kind)

    def start(self, target: Callable[[random.Random], None], seed: int) -> None:
        def run() -> None:
            try:
                target(random.Random(seed))
            except Exception as exc:
                self.crashed.append(f"{target.__name__}: {exc!r}")

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(max(1.0, self.deadline - time.monotonic() + 5))
        assert not any(t.is_alive() for t in self.threads), "a client thread never finished"
        assert not self.crashed, self.crashed

    # -- HTTP/1.1 ----------------------------------------------------------------------------

    def h1_keep_alive(self, rng: random.Random) -> None:
        """Requests on one connection for as long as the server keeps it, sometimes two
        pipelined, with pauses between them as long as the server's drain grace: a request may
        arrive just before or just after an idle connection is closed."""
        client: RawClient | None = None
        try:
            while time.monotonic() < self.deadline:
                if client is None:
                    client = self.connect()
                    if client is None:
                        return  # the listener is closed: the drain has begun
                size = rng.choice([1, 1, 2])
                batch = [self.h1_request("h1-keepalive", rng) for _ in range(size)]
                if not self.h1_exchange(client, "h1-keepalive", batch):
                    client.close()
                    client = None
                    continue
                time.sleep(rng.choice([0.0, 0.0, 0.0, 0.05, 0.3, 0.8, 1.2]))
        finally:
            if client is not None:
                client.close()

    def h1_new_connections(self, rng: random.Random) -> None:
        """One request per connection, sometimes sent a while after connecting."""
        while time.monotonic() < self.deadline:
            client = self.connect()
            if client is None:
                return
            with client:
                time.sleep(rng.choice([0.0, 0.0, 0.02, 0.2, 0.6]))
                self.h1_exchange(client, "h1-new", [self.h1_request("h1-new", rng)])

    def h1_bursts(self, rng: random.Random) -> None:
        """Bursts of 10 connections opened at once, one request each: around the signal some
        sit in the listen backlog when the listener closes."""
        while time.monotonic() < self.deadline:
            clients: list[RawClient] = []
            while len(clients) < 10 and (client := self.connect()) is not None:
                clients.append(client)
            try:
                exchanges: list[tuple[RawClient, list[tuple[str, bytes]], float]] = []
                for client in clients:
                    batch = [self.h1_request("h1-burst", rng)]
                    exchanges.append((client, batch, time.monotonic()))
                    client.try_send(batch[0][1])  # a failure shows when reading
                for client, batch, sent_at in exchanges:
                    self.h1_exchange(client, "h1-burst", batch, sent_at)
            finally:
                for client in clients:
                    client.close()
            if len(clients) < 10:
                return

    def h1_at_signal(self, rng: random.Random) -> None:
        """Waits for the signal, then opens connections as fast as it can (one request each)
        until refused: connections race the closing of the listener, some accepted by the
        kernel but not yet by the server."""
        assert self.signalled.wait(CLIENT_DEADLINE_SECONDS)
        exchanges: list[tuple[RawClient, list[tuple[str, bytes]], float]] = []
        try:
            while len(exchanges) < 100:
                client = self.connect()
                if client is None:
                    break
                request = self.h1_request("h1-at-signal", rng)
                exchanges.append((client, [request], time.monotonic()))
                client.try_send(request[1])  # a failure shows when reading
            for client, batch, sent_at in exchanges:
                self.h1_exchange(client, "h1-at-signal", batch, sent_at)
        finally:
            for client, _, _ in exchanges:
                client.close()

    def connect(self) -> RawClient | None:
        """A new connection, or None once the server refuses them (or resets them mid-connect:
        the listener closed with the connection in its backlog); no request was sent."""
        try:
            return RawClient(self.port, timeout=15)
        except (ConnectionRefusedError, ConnectionResetError):
            return None

    def h1_request(self, via: str, rng: random.Random) -> tuple[str, bytes]:
        request_id = self.next_id(via)
        ms = rng.randint(50, 200)
        body = b"p" * rng.choice([0, 0, 10, 5000])
        method = "POST" if body else "GET"
        return request_id, build(method, f"/work?id={request_id}&ms={ms}", body=body)

    def h1_exchange(
        self,
        client: RawClient,
        via: str,
        batch: list[tuple[str, bytes]],
        sent_at: float | None = None,
    ) -> bool:
        """Send the requests of `batch` at once (pipelined; `sent_at` given: they were sent
        then) and read their responses in order; whether the connection can carry more. A
        request whose response has not begun when the server closes is refused (RFC 9112
        9.3.2: the client may retry it)."""
        if sent_at is None:
            sent_at = time.monotonic()
            if not client.try_send(b"".join(data for _, data in batch)):
                for request_id, _ in batch:
                    self.record(request_id, via, sent_at, "refused", "reset while sending")
                return False
        for index, (request_id, _) in enumerate(batch):
            if self.h1_response(client, request_id, via, sent_at):
                continue
            rest = batch[index + 1 :]
            if rest:
                # Closed after this response: nothing more may come for the ones behind it.
                try:
                    extra = b"" if client.eof else client.wait_closed(10)
                except TimeoutError:
                    extra = b"<still open after Connection: close>"
                for later, _ in rest:
                    if extra:
                        detail = f"after the close: {extra[:200]!r}"
                        self.record(later, via, sent_at, "bad", detail)
                    else:
                        detail = "closed after the previous response"
                        self.record(later, via, sent_at, "refused", detail)
            return False
        return True

    def h1_response(self, client: RawClient, request_id: str, via: str, sent_at: float) -> bool:
        try:
            response = client.read_response()
        except ConnectionClosed as exc:
            kind = "refused" if not exc.partial else "bad"
            self.record(request_id, via, sent_at, kind, str(exc))
            return False
        except (TimeoutError, OSError, AssertionError) as exc:
            self.record(request_id, via, sent_at, "bad", repr(exc))
            return False
        expected = f"done:{request_id}".encode()
        if response.status != 200 or response.body != expected:
            self.record(request_id, via, sent_at, "bad", repr(response.raw[:300]))
            return False
        self.record(request_id, via, sent_at, "ok")
        # After Connection: close, requests pipelined behind this one are the caller's.
        return response.header("connection") != "close"

    # -- HTTP/2 ------------------------------------------------------------------------------

    def h2_streams(self, rng: random.Random) -> None:
        while time.monotonic() < self.deadline:
            try:
                client = H2Client(self.port, timeout=15)
            except ConnectionRefusedError:
                return
            except (Closed, OSError):
                continue  # reset before the preface was answered: no request was sent
            with client:
                while client.goaway is None and not client.closed:
                    if time.monotonic() > self.deadline:
                        return
                    self._h2_batch(client, rng)
                    # A pause without reading: a GOAWAY that comes meanwhile lies unread, and
                    # the next batch goes out after it (those streams must be refused).
                    time.sleep(rng.choice([0.0, 0.0, 0.1, 0.4]))

    def _h2_batch(self, client: H2Client, rng: random.Random) -> None:
        """Three concurrent streams on the connection, then their outcomes."""
        sent: dict[int, str] = {}
        sent_at = time.monotonic()
        for _ in range(3):
            request_id = self.next_id("h2")
            path = f"/work?id={request_id}&ms={rng.randint(50, 200)}"
            stream_id = client.conn.get_next_available_stream_id()
            try:
                client.request(path)
            except OSError as exc:
                # The server closed the connection (after its GOAWAY, which this client had
                # not read yet): the stream never reached it.
                detail = f"stream {stream_id}: {exc!r}"
                self.record(request_id, "h2", sent_at, "refused", detail)
                break  # what the server sent before it closed is still read below
            sent[stream_id] = request_id
        streams = client.streams

        def batch_done() -> bool:
            goaway = client.goaway
            last = goaway.last_stream_id if goaway is not None else None
            return all(streams[s].done or (last is not None and s > last) for s in sent)

        failure = ""
        try:
            client.pump(batch_done, what="the batch's streams")
        except Closed:
            pass
        except AssertionError as exc:
            failure = str(exc)
        goaway = client.goaway
        for stream_id, request_id in sent.items():
            kind, detail = classify_stream(streams[stream_id], request_id, goaway, client.closed)
            self.record(request_id, "h2", sent_at, kind, f"{detail} {failure}".strip())


def classify_stream(
    result: StreamResult, request_id: str, goaway: Any, closed: bool
) -> tuple[str, str]:
    """The outcome of one HTTP/2 request stream after its batch settled: (kind, detail)."""
    where = f"stream {result.stream_id}"
    if (
        result.ended
        and result.status == 200
        and bytes(result.body) == f"done:{request_id}".encode()
    ):
        return "ok", ""
    if result.reset == ErrorCodes.REFUSED_STREAM and result.status is None:
        return "refused", f"{where}: REFUSED_STREAM"
    if result.status is None and not result.body and result.reset is None:
        if goaway is not None and result.stream_id > goaway.last_stream_id:
            return "refused", f"{where}: above the GOAWAY's last stream id"
        if goaway is None and closed:
            # The connection ended before any byte of this stream's response and no GOAWAY
            # was read: refused at the connection level (the app's log says whether it ran).
            return "refused", f"{where}: connection closed, no GOAWAY read"
    return "bad", (
        f"{where}: status {result.status}, reset {result.reset}, "
        f"body {bytes(result.body[:100])!r}, goaway {goaway}, closed {closed}"
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize("loop", LOOPS)
def test_sigterm_under_load_drops_no_accepted_request(run_server: RunServer, loop: str) -> None:
    """A graceful shutdown in the middle of traffic must not lose work: a request either
    reached the app and got its complete response, or never reached the app and was refused
    at the connection level (so that a client can safely retry it).

    Attack class: request loss on restart (a deploy or an attacker-triggered restart that
    silently drops accepted requests). RFC 9112 section 9.6 (a server closing a persistent
    connection must not do so while a response is in progress; a request it did not process
    can be retried, RFC 9110 section 9.2.2); RFC 9113 section 6.8 (GOAWAY: streams up to the
    last stream id may be processed and are completed, higher ones were not processed and may
    be retried) and section 8.7 (REFUSED_STREAM: not processed).
    """
    server = run_server(APP, "--loop", loop, "--graceful-timeout", "20", "--no-access-log")
    # Fresh timings every run (the seed is in every failure message, to replay a run).
    seed = random.SystemRandom().randrange(1 << 30)
    where = f"loop {loop}, seed {seed}"
    load = Load(server.port)
    for offset in range(3):
        load.start(load.h1_keep_alive, seed + offset)
    for offset in range(3, 6):
        load.start(load.h1_new_connections, seed + offset)
    for offset in range(6, 8):
        load.start(load.h2_streams, seed + offset)
    load.start(load.h1_bursts, seed + 8)
    load.start(load.h1_at_signal, seed + 9)
    time.sleep(LOAD_SECONDS_BEFORE_SIGTERM)
    assert load.count("ok") >= 10, f"{where}: too little traffic before SIGTERM"
    sigterm_at = time.monotonic()
    load.signalled.set()
    server.signal(signal.SIGTERM)
    load.join()
    status = server.wait_exit(timeout=30)
    exit_seconds = time.monotonic() - sigterm_at

    received = RECEIVED.findall(server.stderr)
    by_id = {o.request_id: o for o in load.outcomes}
    assert len(by_id) == len(load.outcomes), f"{where}: a request id was recorded twice"
    bad = [f"{o.request_id}: {o.detail}" for o in load.outcomes if o.kind == "bad"]
    assert not bad, f"{where}: {len(bad)} requests got a broken answer: {bad[:10]}"
    unknown = [rid for rid in received if rid not in by_id]
    assert not unknown, f"{where}: the app got requests no client recorded: {unknown[:10]}"
    assert len(received) == len(set(received)), f"{where}: the app got a request twice"
    # Everything the app received was answered in full ...
    lost = [(rid, by_id[rid].kind, by_id[rid].detail) for rid in received]
    lost = [item for item in lost if item[1] != "ok"]
    assert not lost, f"{where}: received by the app but not answered: {lost[:10]}"
    # ... and everything else was refused before reaching it.
    reached = set(received)
    ghosts = [o.request_id for o in load.outcomes if o.kind == "ok" and o.request_id not in reached]
    assert not ghosts, f"{where}: answered without reaching the app: {ghosts[:10]}"
    # The drain let requests in flight at the signal finish.
    in_flight = [o for o in load.outcomes if o.kind == "ok" and o.sent_at < sigterm_at < o.at]
    assert in_flight, f"{where}: no request in flight at SIGTERM was answered"
    assert status == 0, f"{where}: exit status {status}\n{server.output[-3000:]}"
    # No connection held the drain: in-flight requests (<= 200 ms) and the 1 s idle grace.
    assert "Graceful timeout" not in server.output, f"{where}\n{server.output[-3000:]}"
    assert exit_seconds < 15, f"{where}: the server took {exit_seconds:.1f} s to exit"
