# HTTP/2 flow control end to end (RFC 9113 5.2, 6.9): a request body to an app that does not read
# yet stops at the stream's window (the server credits only what the app takes) and arrives
# intact once the app reads; a response to a client that does not credit its window stops at
# that window with the app's send() held, and completes intact once credited; 100 MiB each way
# on one stream with SHA-256 compared and the server's RSS growth bounded; two large responses
# on one connection share it (their DATA frames interleave); request body an app never took is
# credited back to the connection when its stream closes (answered early, or reset), so that
# uploads on one connection never run dry. Clients: tests/h2client.py; the app:
# tests/apps/h2_app.py (h1_app's /gated-echo, /late, /bigstream, /sha256 and the side channel).
from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator

import h2.events
import h2.exceptions
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from conftest import PeakRSS, ServerProcess
from h2client import H2Client
from rawhttp import events, progress, release, serve, wait_stalled

APP = "h2_app:app"
KIB = 1 << 10
MIB = 1 << 20
DEFAULT_WINDOW = 65535  # RFC 9113 6.9.2, for a client that does not change it
SERVER_STREAM_WINDOW = 65535  # the server's receive window per stream (its SETTINGS)
SERVER_CONNECTION_WINDOW = MIB  # the server's receive window for the whole connection
# What the server may take of a request body the app has not read: the stream's window and the
# bridge's buffer (64 KiB each), with room to spare; far below the 1 MiB body sent.
REQUEST_BUFFER_BOUND = 256 * KIB
# What an app may have handed to send() beyond what the client's window let through: the
# stream's queue (64 KiB) and a chunk, with room to spare.
RESPONSE_QUEUE_BOUND = 256 * KIB
RSS_GROWTH_LIMIT_KIB = 48 * KIB  # 48 MiB for 100 MiB through one stream


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve(APP) as proc:
        warm_up(proc)
        yield proc


def warm_up(server: ServerProcess) -> None:
    """Run the upload and download paths once, so that first-use allocations do not count as
    growth in the RSS checks."""
    with no_delay(H2Client(server.port, timeout=30)) as client:
        body = os.urandom(4 * MIB)
        answer = client.get("/sha256", method="POST", body=body)
        assert answer.status == 200
        result = client.get(f"/bigstream?tag={tag()}&total={4 * MIB}")
        assert len(result.body) == 4 * MIB


def tag() -> str:
    return uuid.uuid4().hex


def no_delay(client: H2Client) -> H2Client:
    """TCP_NODELAY on the client's socket: without it, Nagle's algorithm holds the last DATA
    frame of each window until the server's delayed ACK (~40 ms a window on loopback)."""
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def drain(client: H2Client, seconds: float) -> None:
    """Read and dispatch what the server sends for `seconds` (WINDOW_UPDATEs included)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        client._read_once(end)  # returns at `end` when nothing comes


# -- request bodies -------------------------------------------------------------------------------


def send_until_blocked(client: H2Client, stream_id: int, body: bytes) -> int:
    """Send `body` on the stream as far as the server's windows allow, until the stream's window
    stays at 0 while we keep reading; return how many bytes went out."""
    sent = 0
    steady = 0
    deadline = time.monotonic() + 20
    while steady < 3:
        assert time.monotonic() < deadline, f"the window never stayed closed ({sent} sent)"
        window = min(
            client.conn.local_flow_control_window(stream_id), client.conn.max_outbound_frame_size
        )
        if window > 0:
            assert sent < len(body), "the whole body went through before the app read any"
            chunk = body[sent : sent + window]
            client.conn.send_data(stream_id, chunk)
            client.flush()
            sent += len(chunk)
            steady = 0
            continue
        drain(client, 0.2)
        steady += client.conn.local_flow_control_window(stream_id) == 0
    return sent


def test_request_body_waits_for_the_app_then_arrives_intact(server: ServerProcess) -> None:
    gate = tag()
    body = os.urandom(MIB)
    with H2Client(server.port, timeout=20) as client:
        stream_id = client.request(f"/gated-echo?tag={gate}", method="POST", end_stream=False)
        assert "started" in events(server, gate, "started")
        sent = send_until_blocked(client, stream_id, body)
        assert client.conn.local_flow_control_window(stream_id) == 0
        assert 0 < sent <= REQUEST_BUFFER_BOUND, f"{sent} bytes taken for an app not reading"
        assert client.streams[stream_id].status is None
        release(server, gate)
        client.send_body(stream_id, body[sent:])
        result = client.response(stream_id)
    assert result.status == 200
    assert len(result.body) == len(body)
    assert bytes(result.body) == body


def test_other_streams_go_on_while_one_body_waits(server: ServerProcess) -> None:
    """A stream whose window is spent does not hold the connection: another request on it is
    answered meanwhile."""
    gate = tag()
    body = os.urandom(512 * KIB)
    with H2Client(server.port, timeout=20) as client:
        stream_id = client.request(f"/gated-echo?tag={gate}", method="POST", end_stream=False)
        assert "started" in events(server, gate, "started")
        sent = send_until_blocked(client, stream_id, body)
        other = client.get("/echo", method="POST", body=b"meanwhile")
        assert (other.status, bytes(other.body)) == (200, b"meanwhile")
        release(server, gate)
        client.send_body(stream_id, body[sent:])
        result = client.response(stream_id)
    assert bytes(result.body) == body


def ping_round_trip(client: H2Client) -> None:
    """Send a PING and read until its ACK: whatever the server wrote before the ACK (the
    WINDOW_UPDATEs for the DATA it had read) has been read too."""
    acks = sum(isinstance(e, h2.events.PingAckReceived) for e in client.events)
    client.conn.ping(b"shut%04d" % (acks % 10000))
    client.flush()
    client.pump(
        lambda: sum(isinstance(e, h2.events.PingAckReceived) for e in client.events) > acks,
        what="the PING's ACK",
    )


def upload_until_shut(client: H2Client, stream_id: int, body: bytes) -> int:
    """Send `body` on the stream as far as the server's windows allow, until the window stays
    shut across two PING round trips (the server gives no more credit) or the stream is
    closed; return how many bytes went out."""
    conn = client.conn
    result = client.streams[stream_id]
    sent = 0
    shut = 0
    while sent < len(body) and not result.done and shut < 2:
        try:
            window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
        except h2.exceptions.ProtocolError:
            break  # the server closed the stream
        if window > 0:
            chunk = body[sent : sent + window]
            conn.send_data(stream_id, chunk, end_stream=sent + len(chunk) == len(body))
            client.flush()
            sent += len(chunk)
            shut = 0
            continue
        ping_round_trip(client)
        shut += 1
    return sent


@pytest.mark.parametrize("close", ["answered", "client-reset"])
def test_body_an_app_never_took_is_credited_to_the_connection(
    server: ServerProcess, close: str
) -> None:
    """30 uploads of 200 KiB, one after the other on one connection, to an app that never reads
    its request body: what the server held back for it (its stream window's worth) must go back
    to the connection window when the stream closes, whether the app answers (the server then
    resets the stream NO_ERROR) or the client resets it. Otherwise about 16 such uploads use up
    the connection's 1 MiB window for good and every later upload stalls."""
    body = os.urandom(200 * KIB)
    with no_delay(H2Client(server.port, timeout=20)) as client:
        for attempt in range(30):
            gate = tag()
            stream_id = client.request(f"/late?tag={gate}", method="POST", end_stream=False)
            sent = upload_until_shut(client, stream_id, body)
            # The server takes a stream window and credits (most of) it, then holds what comes
            # next unread.
            assert sent > SERVER_STREAM_WINDOW + 16 * KIB, (
                f"upload {attempt}: only {sent} bytes went; connection window "
                f"{client.conn.outbound_flow_control_window}"
            )
            if close == "client-reset":
                client.reset(stream_id, ErrorCodes.CANCEL)
                release(server, gate)
                continue
            release(server, gate)
            result = client.response(stream_id)
            assert (result.status, bytes(result.body)) == (200, b"late"), result
            assert result.reset in (None, ErrorCodes.NO_ERROR), result
        drain(client, 0.2)
        window = client.conn.outbound_flow_control_window
        assert window >= SERVER_CONNECTION_WINDOW // 4, (
            f"connection window {window} after 30 uploads"
        )
        # And a body an app does read still goes through whole on this connection.
        answer = client.get("/sha256", method="POST", body=body)
    assert answer.status == 200, answer
    assert json.loads(bytes(answer.body))["length"] == len(body)


# -- responses ------------------------------------------------------------------------------------


def test_response_waits_for_the_client_window_then_completes(server: ServerProcess) -> None:
    stream_tag = tag()
    total = 4 * MIB
    with H2Client(server.port, timeout=20, auto_window=False) as client:
        stream_id = client.request(f"/bigstream?tag={stream_tag}&total={total}&chunk=16384")
        stream = client.streams[stream_id]
        client.pump(lambda: len(stream.body) >= DEFAULT_WINDOW, what="a window's worth")
        held = wait_stalled(server, stream_tag)  # the app's send() stopped advancing
        drain(client, 0.3)
        received = len(stream.body)
        assert received <= DEFAULT_WINDOW, f"{received} bytes past a {DEFAULT_WINDOW} window"
        assert not stream.done
        assert not held["done"]
        assert held["sent"] <= received + RESPONSE_QUEUE_BOUND, held
        # Credit what came and read on as a well-behaved client: the rest follows.
        client.auto_window = True
        client.credit(stream_id, received)
        result = client.response(stream_id)
    assert result.status == 200
    assert result.ended
    assert len(result.body) == total
    final = progress(server, stream_tag)
    assert final["done"]
    assert hashlib.sha256(result.body).hexdigest() == final["sha256"]


def test_a_small_client_window_is_respected_frame_by_frame(server: ServerProcess) -> None:
    """With SETTINGS_INITIAL_WINDOW_SIZE 1000, no more than 1000 bytes arrive until credited."""
    stream_tag = tag()
    settings = {int(SettingCodes.INITIAL_WINDOW_SIZE): 1000}
    with H2Client(server.port, settings=settings, auto_window=False) as client:
        client.pump(
            lambda: any(isinstance(e, h2.events.SettingsAcknowledged) for e in client.events),
            what="the SETTINGS ack",
        )
        stream_id = client.request(f"/bigstream?tag={stream_tag}&total=5000&chunk=5000")
        stream = client.streams[stream_id]
        client.pump(lambda: len(stream.body) >= 1000, what="the first 1000 bytes")
        drain(client, 0.3)
        assert len(stream.body) == 1000
        for size in (2000, 3000, 4000, 5000):
            client.credit(stream_id, 1000)
            client.pump(lambda: len(stream.body) >= size, what=f"{size} bytes")  # noqa: B023
            drain(client, 0.1)
            assert len(stream.body) == size, "more than the credited window arrived"
        client.pump(lambda: stream.done, what="the end of the stream")
    assert stream.ended
    assert len(stream.body) == 5000
    assert hashlib.sha256(stream.body).hexdigest() == progress(server, stream_tag)["sha256"]


# -- big transfers --------------------------------------------------------------------------------


def big_window_client(server: ServerProcess) -> H2Client:
    """A client that reads fast: a 16 MiB stream window and connection window."""
    client = H2Client(
        server.port, timeout=50, settings={int(SettingCodes.INITIAL_WINDOW_SIZE): 16 * MIB}
    )
    client.conn.increment_flow_control_window(16 * MIB - DEFAULT_WINDOW)
    client.flush()
    return no_delay(client)


@pytest.mark.slow
def test_100_mib_download(server: ServerProcess) -> None:
    stream_tag = tag()
    total = 100 * MIB
    with PeakRSS(server) as rss, big_window_client(server) as client:
        result = client.get(f"/bigstream?tag={stream_tag}&total={total}")
    assert result.status == 200
    assert result.ended
    assert len(result.body) == total
    assert hashlib.sha256(result.body).hexdigest() == progress(server, stream_tag)["sha256"]
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"


@pytest.mark.slow
def test_100_mib_upload(server: ServerProcess) -> None:
    total = 100 * MIB
    block = bytearray(os.urandom(MIB))
    digest = hashlib.sha256()
    with PeakRSS(server) as rss, big_window_client(server) as client:
        stream_id = client.request("/sha256", method="POST", end_stream=False)
        for index in range(total // MIB):
            block[:8] = index.to_bytes(8, "big")  # every block different
            digest.update(block)
            client.send_body(stream_id, bytes(block), end_stream=False)
        client.send_body(stream_id, b"")
        result = client.response(stream_id)
    assert result.status == 200, bytes(result.body[:300])
    answer = json.loads(bytes(result.body))
    assert answer["length"] == total
    assert answer["sha256"] == digest.hexdigest()
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"


# -- fairness -------------------------------------------------------------------------------------


def test_two_large_responses_share_the_connection(server: ServerProcess) -> None:
    total = 4 * MIB
    with H2Client(server.port, timeout=30) as client:
        first = client.request(f"/bigstream?tag={tag()}&total={total}&chunk=16384")
        second = client.request(f"/bigstream?tag={tag()}&total={total}&chunk=16384")
        client.pump(lambda: client.streams[first].done and client.streams[second].done)
        # Replay the DATA frames in arrival order: where each stream stood when the other
        # ended, and how often the sender switched between them.
        received = {first: 0, second: 0}
        at_end: dict[int, dict[int, int]] = {}
        order = []
        for event in client.events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id in received:
                received[event.stream_id] += len(event.data)
                order.append(event.stream_id)
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id in received:
                at_end[event.stream_id] = dict(received)
    for stream_id in (first, second):
        result = client.streams[stream_id]
        assert (result.status, len(result.body)) == (200, total)
    ended_first = min(at_end, key=lambda s: sum(at_end[s].values()))
    other = second if ended_first == first else first
    assert at_end[ended_first][other] >= total // 4, (
        f"stream {other} had {at_end[ended_first][other]} bytes when stream {ended_first} ended"
    )
    switches = sum(1 for a, b in itertools.pairwise(order) if a != b)
    assert switches >= 20, f"the DATA frames switched streams only {switches} times"
