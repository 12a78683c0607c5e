# The limits and attack defences of the HTTP/2 server (RFC 9113), end to end over loopback:
# the SETTINGS it announces; REFUSED_STREAM past --h2-max-concurrent-streams (also before the
# client ACKs our SETTINGS, and counting reset streams whose app still runs, but not answered
# ones whose app still runs); HPACK bombs and oversized header lists
# (--limit-request-head-size) and too many header fields (--limit-request-headers);
# CONTINUATION floods (CVE-2024-27316 and kin); rapid reset (CVE-2023-44487,
# --h2-max-reset-streams) and streams reset in the very read that opens them (apps started
# eagerly must survive it); PING, SETTINGS, PRIORITY, empty-DATA and unknown-frame floods
# (CVE-2019-9512/9515/9518, --h2-max-control-frames; the PRIORITY data of a HEADERS frame is
# no control frame) and a client that floods PINGs without reading the ACKs; a client that
# never opens its window, or stops reading its socket (--h2-flow-control-timeout: CANCEL, the
# app hears http.disconnect, the slot is freed, a connection nobody reads is dropped; a stream
# idle for longer is not reset once it sends); idle and silent connections
# (--timeout-keep-alive: GOAWAY NO_ERROR); connection errors (GOAWAY PROTOCOL_ERROR or
# FRAME_SIZE_ERROR, never a crash, oversized frames refused from their header), bad prefaces,
# malformed requests (a stream error, or 405, 501, 400 on their stream: an invalid :method,
# :path, :authority or host, or a body that does not match its Content-Length, costs its
# stream only); and many misbehaving connections at once beside a good client.
# After each attack the server must still serve a fresh connection, with its memory bounded
# where an attack aims at memory. Frames are built with hyperframe (or by hand where hyperframe
# refuses to build them) and sent by tests/h2raw.py's `RawH2`, which reads whatever comes back
# frame by frame.
from __future__ import annotations

import contextlib
import os
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from h2.settings import SettingCodes
from hyperframe.frame import (
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from conftest import PeakRSS, ServerProcess
from h2client import H2Client, StreamResult
from h2raw import (
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FRAME_SIZE_ERROR,
    HEADER_REFUSALS,
    HEADERS,
    MIB,
    NO_ERROR,
    PREFACE,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    RawH2,
    RawStream,
    assert_no_crash,
    assert_serves,
    connected,
    ends_connection,
    hpack_bomb,
    literal_fields,
    name,
    ping,
    raw_frame,
    refuses_header_block,
    request_fields,
    send_until_blocked,
    split_block,
    warm_up,
)
from rawhttp import events, progress, release, serve

APP = "h2_attack_app:app"
# How much the server's resident memory may grow during an attack aimed at its memory.
RSS_GROWTH_LIMIT_KIB = 16 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """A server with the default limits (shared by the tests that do not change them)."""
    with serve(APP) as proc:
        yield proc


@pytest.fixture(scope="module")
def strict_server() -> Iterator[ServerProcess]:
    """A server with small flood budgets: 50 resets and 100 control frames per 10 s."""
    with serve(APP, "--h2-max-reset-streams", "50", "--h2-max-control-frames", "100") as proc:
        yield proc


def wait_events(server: ServerProcess, tag: str, event: str, count: int) -> list[str]:
    """Poll the side channel until `count` events starting with `event` were recorded."""
    deadline = time.monotonic() + 15
    while True:
        seen = events(server, tag, event)
        if sum(e.startswith(event) for e in seen) >= count:
            return seen
        assert time.monotonic() < deadline, f"expected {count} x {event!r}, saw {seen}"
        time.sleep(0.05)


# -- 1. the SETTINGS the server announces -----------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "streams", "header_list"),
    [
        ((), 100, 65536),
        (("--h2-max-concurrent-streams", "7", "--limit-request-head-size", "16384"), 7, 16384),
    ],
    ids=["defaults", "flags"],
)
def test_announced_settings(
    run_server: Callable[..., ServerProcess],
    flags: tuple[str, ...],
    streams: int,
    header_list: int,
) -> None:
    server = run_server(APP, *flags)
    with connected(server.port) as client:
        client.pump(lambda: client.settings_acked, "the ACK of our SETTINGS")
        settings = client.server_settings
        assert settings.get(SettingCodes.MAX_CONCURRENT_STREAMS) == streams, settings
        assert settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1, settings
        assert settings.get(SettingCodes.MAX_HEADER_LIST_SIZE) == header_list, settings
        # The server's receive window for each stream (RFC 9113 6.9.2): what a request body
        # may have in flight before the app takes it.
        assert settings.get(SettingCodes.INITIAL_WINDOW_SIZE) == 65535, settings
        client.send(client.request(1))
        assert client.response(1).status == 200
    with H2Client(server.port) as h2client:
        assert h2client.setting(SettingCodes.MAX_CONCURRENT_STREAMS) == streams
        assert h2client.setting(SettingCodes.MAX_HEADER_LIST_SIZE) == header_list


def test_header_list_limit_follows_the_flag(run_server: Callable[..., ServerProcess]) -> None:
    server = run_server(APP, "--limit-request-head-size", "16384")
    with connected(server.port) as client:
        client.send(client.request(1, "/headers", extra=[(b"x-fits", b"f" * 12000)]))
        assert client.response(1).status == 200
    with connected(server.port) as client:
        client.send(client.request(1, extra=[(b"x-too-big", b"b" * 20000)]))
        refuses_header_block(client, 1)
    assert_serves(server)


# -- 2. the concurrent-stream limit -----------------------------------------------------------

HELD = [1, 3, 5, 7, 9]


def test_stream_past_the_limit_is_refused(run_server: Callable[..., ServerProcess]) -> None:
    server = run_server(APP, "--h2-max-concurrent-streams", "5")
    tag = uuid.uuid4().hex
    with connected(server.port) as client:
        client.send(b"".join(client.request(sid, f"/late?tag={tag}") for sid in HELD))
        wait_events(server, tag, "started", len(HELD))
        client.send(client.request(11))
        refused = client.response(11)
        assert refused.reset == REFUSED_STREAM, f"6th stream: {refused}"
        assert not any(client.streams[sid].done for sid in HELD)
        # The connection is fine: the held streams complete once released, and a new stream
        # is served.
        release(server, tag)
        for sid in HELD:
            held = client.response(sid)
            assert (held.status, bytes(held.body)) == (200, b"late")
        client.send(client.request(13))
        fresh = client.response(13)
        assert (fresh.status, bytes(fresh.body)) == (200, b"Hello, world!")
        assert client.goaway is None
    assert_serves(server)


def test_stream_limit_before_the_client_acks_our_settings(
    run_server: Callable[..., ServerProcess],
) -> None:
    """The limit holds from the first frame: a client that opens six streams in its first
    write, before it has even read (let alone ACKed) our SETTINGS, gets the sixth refused."""
    server = run_server(APP, "--h2-max-concurrent-streams", "5")
    tag = uuid.uuid4().hex
    with RawH2(server.port, preface=False, ack_settings=False) as client:
        opening = b"".join(client.request(sid, f"/late?tag={tag}") for sid in HELD)
        client.send(PREFACE + SettingsFrame(0).serialize() + opening + client.request(11))
        refused = client.response(11)
        assert refused.reset == REFUSED_STREAM, f"6th stream: {refused}"
        wait_events(server, tag, "started", len(HELD))
        release(server, tag)
        for sid in HELD:
            assert client.response(sid).status == 200
        assert client.goaway is None
    assert_serves(server)


def test_reset_streams_whose_app_runs_still_count(
    run_server: Callable[..., ServerProcess],
) -> None:
    """A reset stream whose app still runs no longer counts against the advertised limit (RFC
    9113 5.1.2 counts open streams), but running apps stay capped at twice the limit: a client
    cannot reset and reopen to run any number of apps at once (CVE-2023-44487)."""
    server = run_server(APP, "--h2-max-concurrent-streams", "5")
    tag = uuid.uuid4().hex
    second = tuple(sid + 10 for sid in HELD)
    with connected(server.port) as client:
        for batch in (HELD, second):
            client.send(b"".join(client.request(sid, f"/late?tag={tag}") for sid in batch))
            client.send(
                b"".join(RstStreamFrame(sid, error_code=CANCEL).serialize() for sid in batch)
            )
        wait_events(server, tag, "started", 2 * len(HELD))
        probe = second[-1] + 2
        client.send(client.request(probe, f"/late?tag={tag}"))
        refused = client.response(probe)
        assert refused.reset == REFUSED_STREAM, f"stream past 10 running apps: {refused}"
        # Once the apps are done, their slots are free again.
        release(server, tag)
        wait_events(server, tag, "send-raised", 2 * len(HELD))
        deadline = time.monotonic() + 10
        sid = probe + 2
        while True:
            client.send(client.request(sid))
            answer = client.response(sid)
            if answer.status == 200:
                break
            assert answer.reset == REFUSED_STREAM, answer
            assert time.monotonic() < deadline, "the slots of finished apps were never freed"
            time.sleep(0.05)
            sid += 2
        assert client.goaway is None
    assert_serves(server)


def test_answered_streams_whose_app_still_runs_do_not_count(
    run_server: Callable[..., ServerProcess],
) -> None:
    """A stream whose response is complete is closed (RFC 9113 5.1.2 counts open streams), even
    if its app goes on running (background work after the response): a client that has one
    stream open at a time is never refused, though ten apps still run at once (the cap on
    running apps, twice the limit, is test_reset_streams_whose_app_runs_still_count's)."""
    server = run_server(
        "h2_app:app", "--h2-max-concurrent-streams", "5", "--h2-max-reset-streams", "20"
    )
    tag = uuid.uuid4().hex
    with H2Client(server.port) as client:
        for n in range(10):
            result = client.get(f"/linger?tag={tag}&s=3")
            assert (result.status, bytes(result.body)) == (200, b"lingering"), (n, result)
            assert result.reset is None, (n, result)
        assert client.goaway is None
        still = events(server, tag)
    assert still.count("answered") == 10, still
    assert still.count("finished") <= 4, f"the apps did not overlap: {still}"


# -- 3. HPACK bombs and header-list limits ----------------------------------------------------


def huge_header(client: RawH2, stream_id: int = 1, size: int = 70000) -> bytes:
    block = client.encoder.encode(request_fields(extra=[(b"x-huge", b"v" * size)]), huffman=False)
    client.streams[stream_id] = RawStream(stream_id)
    return split_block(stream_id, block)


@pytest.mark.parametrize("build", [hpack_bomb, huge_header], ids=["hpack-bomb", "huge-value"])
def test_oversized_header_list(server: ServerProcess, build: Callable[[RawH2], bytes]) -> None:
    warm_up(server)
    with PeakRSS(server) as rss, connected(server.port) as client:
        client.send(build(client))
        how = refuses_header_block(client, 1)
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB ({how})"
    assert_serves(server)


def test_header_list_just_under_the_limit(server: ServerProcess) -> None:
    """A 60000-byte header, in HEADERS plus CONTINUATION frames, fits the 64 KiB list."""
    with connected(server.port) as client:
        client.send(huge_header(client, 1, 60000))
        assert client.response(1).status == 200


def test_too_many_header_fields(server: ServerProcess) -> None:
    many = [(b"x-field-%d" % i, b"1") for i in range(101)]
    with connected(server.port) as client:
        client.send(client.request(1, extra=many[:100]))
        assert client.response(1).status == 200
        client.send(client.request(3, extra=many))
        assert client.response(3).status == 431
        client.send(client.request(5))
        assert client.response(5).status == 200  # a stream-level refusal: the connection stays
        assert client.goaway is None


# -- 4. CONTINUATION floods -------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", literal_fields(130)], ids=["empty", "16k-literals"])
def test_continuation_flood(server: ServerProcess, payload: bytes) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames without end: the server must give
    up after a bounded amount (CVE-2024-27316 and kin), not buffer or decode forever."""
    warm_up(server)
    limit = 64 * MIB
    sent = 0
    stop = threading.Event()
    with PeakRSS(server) as rss, connected(server.port) as client:
        opening = client.encoder.encode(request_fields(), huffman=False)
        client.send(raw_frame(HEADERS, END_STREAM, 1, opening))
        burst = raw_frame(CONTINUATION, 0, 1, payload) * max(1, 65536 // (len(payload) + 9))

        def flood() -> None:
            nonlocal sent
            while not stop.is_set() and sent < limit and client.send(burst):
                sent += len(burst)

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        try:
            # Other clients are served meanwhile.
            assert_serves(server)
            code = ends_connection(client, {PROTOCOL_ERROR, ENHANCE_YOUR_CALM, COMPRESSION_ERROR})
        finally:
            stop.set()
            flooder.join(10)
    assert sent < limit, f"the server took {sent} bytes of CONTINUATION frames ({name(code)})"
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"
    assert_serves(server)


# -- 5. rapid reset (CVE-2023-44487) ----------------------------------------------------------


def open_and_reset(client: RawH2, count: int, first: int = 1) -> bytes:
    return b"".join(
        client.request(sid) + RstStreamFrame(sid, error_code=CANCEL).serialize()
        for sid in range(first, first + 2 * count, 2)
    )


def test_rapid_reset(strict_server: ServerProcess) -> None:
    warm_up(strict_server)
    with PeakRSS(strict_server) as rss, connected(strict_server.port) as client:
        client.send(open_and_reset(client, 200))
        ends_connection(client, {ENHANCE_YOUR_CALM})
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"
    assert_serves(strict_server)


def test_resets_under_the_budget(strict_server: ServerProcess) -> None:
    with connected(strict_server.port) as client:
        client.send(open_and_reset(client, 40))
        client.send(client.request(81))
        answer = client.response(81)
        assert (answer.status, bytes(answer.body)) == (200, b"Hello, world!")
        assert client.goaway is None


APP_TRACEBACKS = ("Traceback", "Exception in ASGI app", "Task exception was never retrieved")


@pytest.mark.parametrize("pairs", [1, 80], ids=["one-expect-continue", "80-streams"])
def test_streams_reset_in_the_read_that_opens_them(
    run_server: Callable[..., ServerProcess], pairs: int
) -> None:
    """HEADERS and RST_STREAM for the same stream in one write: h2 has closed the stream before
    the server sees the request, and on Python 3.12+ the app starts eagerly, inside that read,
    and asks for 100 Continue (POST with `expect: 100-continue`) or answers (GET) on a stream
    h2 no longer has. No app error, no failed callback; the connection serves on."""
    server = run_server(APP)
    with connected(server.port) as client:
        frames = []
        for n in range(pairs):
            sid = 1 + 2 * n
            if n % 2 == 0:
                expect = [(b"expect", b"100-continue")]
                opening = client.request(sid, "/echo", "POST", expect, end_stream=False)
            else:
                opening = client.request(sid)
            frames.append(opening + RstStreamFrame(sid, error_code=CANCEL).serialize())
        client.send(b"".join(frames))
        sid = 1 + 2 * pairs
        client.send(client.request(sid))
        answer = client.response(sid)
        assert (answer.status, bytes(answer.body)) == (200, b"Hello, world!")
        assert client.goaway is None
    assert_serves(server)
    server.terminate()  # all its output is in, tracebacks of tasks collected late included
    output = server.output
    assert not any(text in output for text in (*APP_TRACEBACKS, "KeyError")), output


# -- 6. control-frame floods ------------------------------------------------------------------


FLOODS: dict[str, Callable[[RawH2, int], bytes]] = {
    "ping": lambda client, n: ping() * n,
    "settings": lambda client, n: SettingsFrame(0).serialize() * n,
    "priority": lambda client, n: raw_frame(0x2, 0, 1, b"\0\0\0\0\x10") * n,
    "empty-data": lambda client, n: (
        client.request(1, "/echo", end_stream=False) + raw_frame(DATA, 0, 1) * n
    ),
    "unknown-frame": lambda client, n: raw_frame(0xEE, 0, 0, b"junk") * n,
}


@pytest.mark.parametrize("kind", list(FLOODS))
def test_control_frame_flood(strict_server: ServerProcess, kind: str) -> None:
    with connected(strict_server.port) as client:
        client.pump(lambda: client.settings_acked, "the ACK of our SETTINGS")
        client.send(FLOODS[kind](client, 500))
        ends_connection(client, {ENHANCE_YOUR_CALM})
    assert_serves(strict_server)


@pytest.mark.parametrize("kind", list(FLOODS))
def test_control_frames_under_the_budget(strict_server: ServerProcess, kind: str) -> None:
    with connected(strict_server.port) as client:
        client.pump(lambda: client.settings_acked, "the ACK of our SETTINGS")
        client.send(FLOODS[kind](client, 50))
        client.send(client.request(3))
        assert client.response(3).status == 200
        if kind == "ping":
            assert client.ping_acks == 50
        assert client.goaway is None


def test_priority_in_headers_is_not_a_control_frame(
    run_server: Callable[..., ServerProcess],
) -> None:
    """HEADERS with the PRIORITY flag (RFC 9113 6.2) open requests: they cost the control-frame
    budget nothing. 100 of them, one after the other, on one connection allowed 50 control
    frames per 10 s: all answered, no GOAWAY."""
    server = run_server(APP, "--h2-max-control-frames", "50")
    with H2Client(server.port) as client:
        for n in range(100):
            sid = client.conn.get_next_available_stream_id()
            client.streams[sid] = StreamResult(sid)
            client.conn.send_headers(
                sid,
                request_fields(f"/?n={n}"),
                end_stream=True,
                priority_weight=1 + n % 256,
                priority_depends_on=0,
                priority_exclusive=False,
            )
            client.flush()
            result = client.response(sid)
            assert (result.status, result.reset) == (200, None), (n, result, client.goaway)
        assert client.goaway is None
    assert_serves(server)


@pytest.mark.slow
def test_pings_from_a_client_that_reads_nothing(run_server: Callable[..., ServerProcess]) -> None:
    """Without reading the ACKs, a client's PINGs would make the server queue ACKs without
    bound; it must stop reading instead (CVE-2019-9512), then carry on once the client reads.
    The minimum output rate is off: the client's non-reading phase lasts as long as its sends
    take, which on a loaded machine can pass --data-rate-grace, and dropping such a client is
    tested in tests/security/test_attack_slow_clients.py."""
    server = run_server(
        APP, "--h2-max-control-frames", "1000000000", "--min-response-data-rate", "0"
    )
    warm_up(server)
    frame = ping()
    blob = memoryview(frame * (64 * MIB // len(frame)))
    with PeakRSS(server) as rss, connected(server.port, rcvbuf=4096, timeout=60) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        client.pump(lambda: client.settings_acked, "the ACK of our SETTINGS")
        sent = send_until_blocked(client.sock, blob)
        assert sent < len(blob), "the server read 64 MiB of PINGs without our reading an ACK"
        grown = rss.growth
        # Reading again, the client gets its ACKs, up to one for a last, marked PING.
        tail = bytes(blob[sent : sent + (-sent) % len(frame)]) + ping(b"THE-END!")
        sender = threading.Thread(target=client.send, args=(tail,), daemon=True)
        sender.start()
        client.pump(lambda: client.last_ping_ack == b"THE-END!", "the last PING's ACK", 50)
        sender.join(10)
        assert client.ping_acks == (sent + len(tail)) // len(frame)
    assert grown < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {grown} KiB for {sent} bytes of PINGs"
    assert_serves(server)


# -- 7. a client that never opens its window ---------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "auto_window"),
    [({SettingCodes.INITIAL_WINDOW_SIZE: 0}, True), (None, False)],
    ids=["initial-window-0", "window-never-credited"],
)
def test_window_never_opened(
    run_server: Callable[..., ServerProcess], settings: dict[int, int] | None, auto_window: bool
) -> None:
    """A stream the client's window stalls is reset (CANCEL) after --h2-flow-control-timeout;
    its app hears http.disconnect; the response is not buffered meanwhile."""
    server = run_server(APP, "--h2-flow-control-timeout", "1")
    warm_up(server)
    tag = uuid.uuid4().hex
    client = H2Client(server.port, timeout=20, settings=settings, auto_window=auto_window)
    with PeakRSS(server) as rss, client:
        stream_id = client.request(f"/watched-stream?tag={tag}&total={64 * MIB}")
        result = client.response(stream_id)
        assert result.reset == CANCEL, f"stream ended {result}"
        assert len(result.body) <= 65535
        seen = events(server, tag, "received:", timeout=5)
        assert "received:http.disconnect" in seen, f"the app never heard of the reset: {seen}"
    sent = progress_sent(server, tag)
    assert sent < 4 * MIB, f"the app got {sent} bytes into a stream nobody reads"
    assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"
    assert_serves(server)


def test_stalled_stream_reset_frees_its_slot(run_server: Callable[..., ServerProcess]) -> None:
    """Once the server resets a stream the client's window stalled, that stream's app ends
    and its slot is free: the connection (allowed one stream) can open another."""
    server = run_server(APP, "--h2-flow-control-timeout", "1", "--h2-max-concurrent-streams", "1")
    tag = uuid.uuid4().hex
    with connected(server.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0}) as client:
        client.send(client.request(1, f"/watched-stream?tag={tag}&total={64 * MIB}"))
        assert client.response(1).reset == CANCEL
        deadline = time.monotonic() + 10
        sid = 3
        while True:
            # With a zero window the response's DATA cannot come, but its HEADERS can.
            client.send(client.request(sid))
            stream = client.answer(sid)
            if stream.status == 200:
                break
            assert stream.reset == REFUSED_STREAM, stream
            assert time.monotonic() < deadline, (
                f"the stalled stream's slot was never freed; its app: {events(server, tag)}"
            )
            time.sleep(0.1)
            sid += 2
    assert_serves(server)


def test_stream_idle_longer_than_the_timeout_then_sending(
    run_server: Callable[..., ServerProcess],
) -> None:
    """The stall deadline runs from when a stream starts to wait for the client, not from its
    last DATA frame: a response that sends its headers, has nothing to send for 3 s (longer
    than --h2-flow-control-timeout 2), then sends a body larger than the client's windows, to
    a client that credits its windows as it reads, completes."""
    server = run_server("h2_app:app", "--h2-flow-control-timeout", "2")
    with H2Client(server.port, timeout=20) as client:
        result = client.get(f"/late-body?s=3&size={4 * MIB}")
        assert client.goaway is None
    assert (result.status, result.reset) == (200, None), (result.status, result.reset)
    assert result.ended
    assert len(result.body) == 4 * MIB


def test_stream_idle_then_waiting_behind_another_is_not_reset(
    run_server: Callable[..., ServerProcess],
) -> None:
    """The same, sharper: stream B sends its headers and 1000 bytes, then nothing for 3 s; its
    last DATA frame is long past when the rest comes. Meanwhile stream A, a large download,
    takes all the connection window, and the client, which reads in bursts (it credits what it
    has read at 1.0, 2.2 and 4.0 s, then every 0.5 s: never 2 s without), keeps A waiting
    between bursts, so that stall checks run while B's last 16 KiB wait from 3.0 to 4.0 s for
    their share. Measured from when B began to wait (1 s), not from its last DATA frame (3 s),
    B is no stalled stream: it completes."""
    server = run_server("h2_app:app", "--h2-flow-control-timeout", "2")
    with H2Client(server.port, timeout=20, auto_window=False) as client:
        conn = client.conn
        b_id = client.request("/late-body?s=3&first=1000&size=16384")
        stream_b = client.streams[b_id]
        client.pump(lambda: len(stream_b.body) >= 1000, what="B's first 1000 bytes")
        start = time.monotonic()
        credited = {b_id: 1000}
        conn.increment_flow_control_window(1000, b_id)
        conn.increment_flow_control_window(1000)
        client.flush()
        while time.monotonic() < start + 0.5:
            client._read_once(start + 0.5)
        a_id = client.request(f"/bigstream?tag={uuid.uuid4().hex}&total={1 << 30}&chunk=16384")
        credited[a_id] = 0
        bursts = [1.0, 2.2, 4.0] + [4.5 + 0.5 * n for n in range(30)]
        for at in bursts:
            while time.monotonic() < start + at and not stream_b.done:
                client._read_once(start + at)
            if stream_b.done:
                break
            total = 0
            for sid in (b_id, a_id):
                fresh = len(client.streams[sid].body) - credited[sid]
                if fresh and not client.streams[sid].done:
                    conn.increment_flow_control_window(fresh, sid)
                credited[sid] += fresh
                total += fresh
            if total:
                conn.increment_flow_control_window(total)
            client.flush()
        assert stream_b.done, "B never completed"
        assert client.goaway is None
    assert (stream_b.status, stream_b.reset) == (200, None), (
        f"B: status {stream_b.status}, reset {name(stream_b.reset)}"
    )
    assert stream_b.ended
    assert len(stream_b.body) == 1000 + 16384


def held_sockets(pid: int) -> set[str]:
    """The inodes of the sockets process `pid` has open."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                held.add(target[8:-1])
    return held


def server_holds_connection(server: ServerProcess, client_port: int) -> bool:
    """Whether the server process still has its socket of the TCP connection from
    127.0.0.1:`client_port` open (from /proc/net/tcp; a closed socket whose unsent data the
    kernel still holds has inode 0, or is gone)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.rsplit(":", 1)[1], 16) == server.port and (
            int(remote.rsplit(":", 1)[1], 16) == client_port
        ):
            inodes.add(inode)
    return bool(inodes - {"0"} & held_sockets(server.pid))


@pytest.mark.slow
def test_client_that_stops_reading(run_server: Callable[..., ServerProcess]) -> None:
    """A client whose windows are wide open stops reading its socket during a large response:
    the output waits on the socket, not on a window, and --h2-flow-control-timeout still holds.
    The stream is reset (CANCEL) and its app hears http.disconnect within a bounded time; then
    the connection, idle, is closed (--timeout-keep-alive) and dropped although the client reads
    none of what is left for it, instead of being kept open for ever."""
    server = run_server(APP, "--h2-flow-control-timeout", "2", "--timeout-keep-alive", "1")
    tag = uuid.uuid4().hex
    widest = (1 << 31) - 1
    settings = {SettingCodes.INITIAL_WINDOW_SIZE: widest}
    with connected(server.port, settings=settings, rcvbuf=4096, timeout=30) as client:
        client.pump(lambda: client.settings_acked, "the ACK of our SETTINGS")
        client.send(WindowUpdateFrame(0, window_increment=widest - 65535).serialize())
        client.send(client.request(1, f"/watched-stream?tag={tag}&total={1 << 30}"))
        local_port = client.sock.getsockname()[1]
        # From here on the client reads nothing.
        assert "started" in events(server, tag, "started")
        assert server_holds_connection(server, local_port)
        seen = events(server, tag, "received:", timeout=15)
        assert "received:http.disconnect" in seen, f"the app never heard of a reset: {seen}"
        server.wait_for("HTTP/2 stream 1 could send nothing for 2", timeout=5)
        assert not progress(server, tag)["done"]
        deadline = time.monotonic() + 20
        while server_holds_connection(server, local_port):
            assert time.monotonic() < deadline, "the server keeps a connection nobody reads"
            time.sleep(0.2)
    assert_serves(server)


def progress_sent(server: ServerProcess, tag: str) -> int:
    return int(progress(server, tag)["sent"])


# -- 8. idle connections ----------------------------------------------------------------------


def test_idle_connection_gets_goaway(run_server: Callable[..., ServerProcess]) -> None:
    server = run_server(APP, "--timeout-keep-alive", "1")
    with H2Client(server.port) as client:
        assert client.get("/").status == 200
        goaway = client.wait_goaway()
        assert goaway.error_code == NO_ERROR
        assert goaway.last_stream_id == 1
        client.wait_closed()
    assert_serves(server)


@pytest.mark.parametrize(
    "opening",
    [PREFACE, PREFACE + SettingsFrame(0).serialize()],
    ids=["preface-only", "preface-and-settings"],
)
def test_silent_connection_is_closed(
    run_server: Callable[..., ServerProcess], opening: bytes
) -> None:
    server = run_server(APP, "--timeout-keep-alive", "1")
    # No SETTINGS ACK from us: an ACK before our own SETTINGS would break RFC 9113 3.4.
    with RawH2(server.port, preface=False, ack_settings=False) as client:
        client.send(opening)
        client.wait_closed()
        if client.goaway is not None:
            assert client.goaway.error_code == NO_ERROR, client.summary()
    assert_serves(server)


# -- 9. protocol errors and malformed requests ------------------------------------------------


def malformed(
    extra: tuple[tuple[bytes, bytes], ...] = (), drop: bytes = b""
) -> Callable[[RawH2], bytes]:
    """A request with `extra` fields added and the field `drop` left out, on stream 1."""

    def build(client: RawH2) -> bytes:
        fields = [f for f in request_fields(extra=list(extra)) if f[0] != drop]
        return client.headers(1, fields)

    return build


# name: (what to send once connected, the GOAWAY codes that may end the connection, whether
# a stream error PROTOCOL_ERROR on stream 1 is as good (RFC 9113 8.1.1: malformed requests))
PROTOCOL_ERRORS: dict[str, tuple[Callable[[RawH2], bytes], set[int], bool]] = {
    # RFC 9113 6.1: DATA on stream 0 is a connection error PROTOCOL_ERROR.
    "data-on-stream-0": (lambda c: raw_frame(DATA, 0, 0, b"hello"), {PROTOCOL_ERROR}, False),
    # RFC 9113 5.1.1: streams a client opens have odd ids.
    "headers-on-even-stream": (lambda c: c.request(2), {PROTOCOL_ERROR}, False),
    # RFC 9113 8.2.1: field names must be lowercase.
    "uppercase-header-name": (malformed(((b"X-Upper", b"1"),)), {PROTOCOL_ERROR}, True),
    # RFC 9113 8.3.1: a request has :path (bar CONNECT).
    "missing-path": (malformed(drop=b":path"), {PROTOCOL_ERROR}, True),
    # RFC 9113 8.2.2: connection-specific fields are malformed.
    "connection-header": (malformed(((b"connection", b"keep-alive"),)), {PROTOCOL_ERROR}, True),
    "transfer-encoding": (malformed(((b"transfer-encoding", b"chunked"),)), {PROTOCOL_ERROR}, True),
    # RFC 9113 5.1.1: a new stream's id must exceed every id the client used before.
    "stream-id-backwards": (lambda c: c.request(3) + c.request(1), {PROTOCOL_ERROR}, False),
    # RFC 9113 4.2: a frame over SETTINGS_MAX_FRAME_SIZE (16384) is FRAME_SIZE_ERROR, a
    # connection error for frames carrying a field block.
    "oversized-data-frame": (
        lambda c: (
            c.request(1, "/echo", "POST", end_stream=False) + raw_frame(DATA, 0, 1, b"x" * 16385)
        ),
        {FRAME_SIZE_ERROR},
        False,
    ),
    "oversized-headers-frame": (
        lambda c: raw_frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            c.encoder.encode(request_fields(extra=[(b"x-big", b"a" * 20000)]), huffman=False),
        ),
        {FRAME_SIZE_ERROR},
        False,
    ),
    # The same, known from the 9-byte frame header alone: the server has no reason to wait
    # for (and buffer) a payload it will refuse.
    "oversized-frame-header-only": (
        lambda c: (
            c.request(1, "/echo", "POST", end_stream=False)
            + raw_frame(DATA, 0, 1, b"x" * MIB)[: 9 + 1000]
        ),
        {FRAME_SIZE_ERROR},
        False,
    ),
}


@pytest.mark.parametrize("case", list(PROTOCOL_ERRORS))
def test_protocol_error(server: ServerProcess, case: str) -> None:
    build, codes, stream_error_ok = PROTOCOL_ERRORS[case]
    with connected(server.port, timeout=5) as client:
        client.send(build(client))
        stream = client.streams.setdefault(1, RawStream(1))
        client.pump(lambda: client.goaway is not None or stream.done, "the error")
        if client.goaway is None and stream_error_ok:
            assert stream.reset == PROTOCOL_ERROR, f"stream 1: {stream}"
        else:
            ends_connection(client, codes)
    assert_serves(server)
    assert_no_crash(server)


def test_oversized_frame_is_not_buffered(server: ServerProcess) -> None:
    """Frames declaring 16 MiB (the most a frame header can say, 1024 x SETTINGS_MAX_FRAME_SIZE)
    on four connections: each is a FRAME_SIZE_ERROR from its header (RFC 9113 4.2), and the
    server must not hold their payloads (64 MiB) until they are complete."""
    warm_up(server)
    declared = 0xFFFFFF
    head = struct.pack(">I", declared)[1:] + struct.pack(">BBI", DATA, 0, 1)
    clients = [connected(server.port, timeout=5) for _ in range(4)]
    try:
        with PeakRSS(server) as rss:
            for client in clients:
                opening = client.request(1, "/echo", "POST", end_stream=False)
                client.send(opening + head + b"x" * (declared - 1))  # one byte short
            outcomes = []
            deadline = time.monotonic() + 5
            for client in clients:
                with contextlib.suppress(AssertionError):
                    client.wait_goaway(timeout=max(0.1, deadline - time.monotonic()))
                goaway = client.goaway
                outcomes.append(name(goaway.error_code) if goaway else f"closed={client.closed}")
        # (A close whose GOAWAY the client's reset connection lost is as good here.)
        refused = all(o in ("FRAME_SIZE_ERROR", "closed=True") for o in outcomes)
        assert refused, f"{outcomes}; RSS grew by {rss.growth} KiB"
        assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"
    finally:
        for client in clients:
            client.close()
    assert_serves(server)


# What may follow the full 24-byte preface in place of the SETTINGS frame RFC 9113 3.4 asks for.
BAD_OPENINGS = {
    "http1-text": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "binary-garbage": bytes(range(256)) * 4,
    "ping-first": ping(),
}


@pytest.mark.parametrize("case", list(BAD_OPENINGS))
def test_no_settings_after_the_preface(server: ServerProcess, case: str) -> None:
    """RFC 9113 3.4: the preface must be followed by SETTINGS; anything else is a connection
    error PROTOCOL_ERROR (the GOAWAY may be omitted). The idle GOAWAY (NO_ERROR, after
    --timeout-keep-alive) does not count."""
    with RawH2(server.port, preface=False) as client:
        client.send(PREFACE + BAD_OPENINGS[case])
        while client.goaway is None and not client.closed:
            client.read_once(time.monotonic() + 10)
        if client.goaway is not None:
            assert client.goaway.error_code in {PROTOCOL_ERROR, FRAME_SIZE_ERROR}, client.summary()
        client.wait_closed()
    assert_serves(server)
    assert_no_crash(server)


def test_settings_come_first_even_when_the_client_ends_at_once(server: ServerProcess) -> None:
    """RFC 9113 3.4: the server's connection preface is its SETTINGS frame, first, whatever
    the client sent in the same read: here SETTINGS, a GOAWAY with an error and a frame that
    is itself a protocol error (DATA on stream 0). h2 drops unsent output on such a GOAWAY;
    the SETTINGS must have left before."""
    goaway = raw_frame(0x7, 0, 0, struct.pack("!II", 0, PROTOCOL_ERROR))
    with RawH2(server.port, preface=False) as client:
        client.send(PREFACE + raw_frame(0x4, 0, 0) + goaway + raw_frame(DATA, 0, 0, b"x"))
        client.wait_closed()
        assert client.frames, "the server sent nothing"
        assert isinstance(client.frames[0], SettingsFrame), client.summary()
    assert_serves(server)


def test_bad_preface(server: ServerProcess) -> None:
    """The PRI line, then garbage where "SM" belongs: not HTTP/2 (RFC 9113 3.4: PROTOCOL_ERROR,
    GOAWAY optional), and not a valid HTTP/1.1 request either: an error, then close."""
    with RawH2(server.port, preface=False) as client:
        client.send(b"PRI * HTTP/2.0\r\n\r\nXY\r\n\r\n" + bytes(32))
        client.wait_closed()
        received = bytes(client.raw_received)
        if received.startswith(b"HTTP/1.1 "):
            assert received[9:10] in (b"4", b"5"), received[:100]
        else:
            assert client.goaway is not None, received[:100]
            assert client.goaway.error_code == PROTOCOL_ERROR, client.summary()
    assert_serves(server)
    assert_no_crash(server)


STREAM_ERRORS: dict[str, tuple[list[tuple[bytes, bytes]], int]] = {
    # RFC 9113 8.5: a plain CONNECT has only :method and :authority; laurelin is no proxy.
    "connect": ([(b":method", b"CONNECT"), (b":authority", b"example.com:443")], 405),
    # RFC 8441 4: extended CONNECT with a protocol the server does not speak.
    "protocol-not-websocket": (
        request_fields(method="CONNECT", extra=[(b":protocol", b"foo")]),
        501,
    ),
    "non-ascii-path": (
        [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"x"),
            (b":path", "/caf\u00e9".encode()),
        ],
        400,
    ),
    "non-ascii-path-latin1": (
        [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"x"),
            (b":path", b"/caf\xe9"),
        ],
        400,
    ),
}


@pytest.mark.parametrize("case", list(STREAM_ERRORS))
def test_malformed_request_answered_on_its_stream(server: ServerProcess, case: str) -> None:
    fields, status = STREAM_ERRORS[case]
    with connected(server.port) as client:
        client.send(client.headers(1, fields))
        assert client.response(1).status == status
        client.send(client.request(3))
        assert client.response(3).status == 200
        assert client.goaway is None


def replaced(changes: dict[bytes, bytes | None]) -> list[tuple[bytes, bytes]]:
    """A GET's fields with the values of `changes` (None: the field left out); fields not in
    the request are added at the end."""
    fields = [(n, changes.get(n, v)) for n, v in request_fields()]
    fields += [(n, v) for n, v in changes.items() if n not in dict(request_fields())]
    return [(n, v) for n, v in fields if v is not None]


# RFC 9113 8.3.1 (and RFC 9110 9.1, RFC 9112 3.2, RFC 3986 3.2.2, as HTTP/1.1's parser has
# them): :method is a token, :path has no space or control character, :authority and Host are
# uri-host [":" port]. Each is a malformed request: a stream error PROTOCOL_ERROR (8.1.1).
INVALID_REQUEST_LINE: dict[str, dict[bytes, bytes | None]] = {
    "method-space": {b":method": b"GE T"},
    "method-control": {b":method": b"GET\x01"},
    "method-delete": {b":method": b"GET\x7f"},
    "method-separator": {b":method": b"G(E)T"},
    "path-space": {b":path": b"/a b"},
    "path-tab": {b":path": b"/a\tb"},
    "path-control": {b":path": b"/a\x1bb"},
    "path-delete": {b":path": b"/a\x7fb"},
    "authority-space": {b":authority": b"a b"},
    "authority-control": {b":authority": b"a\x01b"},
    "authority-slash": {b":authority": b"a/b"},
    "authority-userinfo": {b":authority": b"user@host"},
    "host-space": {b":authority": None, b"host": b"a b"},
    "host-control": {b":authority": None, b"host": b"a\x01b"},
    "host-slash": {b":authority": None, b"host": b"a/b"},
}
# Control characters a log line must never hold raw (tab and newline aside).
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@pytest.mark.parametrize("case", list(INVALID_REQUEST_LINE))
def test_invalid_method_path_or_host_is_a_stream_error(server: ServerProcess, case: str) -> None:
    with connected(server.port) as client:
        client.send(client.headers(1, replaced(INVALID_REQUEST_LINE[case])))
        stream = client.response(1)
        assert (stream.reset, stream.status) == (PROTOCOL_ERROR, None), (
            f"stream 1: {stream}; {client.summary()}"
        )
        client.send(client.request(3))
        assert client.response(3).status == 200
        assert client.goaway is None
    assert_no_crash(server)
    assert RAW_CONTROL.search(server.stdout) is None, server.stdout[-2000:]


# name: (the request's extra fields, then its DATA frames as (payload, END_STREAM); none: the
# HEADERS end the stream). RFC 9113 8.1.1: a body that does not match Content-Length makes the
# request malformed, a stream error.
CONTENT_LENGTH_ERRORS: dict[str, tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bool]]]] = {
    "body-longer": ([(b"content-length", b"5")], [(b"0123456789", True)]),
    "body-longer-before-its-end": ([(b"content-length", b"5")], [(b"0123", False), (b"45", False)]),
    "body-shorter": ([(b"content-length", b"10")], [(b"01234", True)]),
    "no-body": ([(b"content-length", b"5")], []),
    "non-numeric": ([(b"content-length", b"abc")], [(b"abc", True)]),
    "negative": ([(b"content-length", b"-1")], [(b"", True)]),
    "conflicting": ([(b"content-length", b"5"), (b"content-length", b"6")], [(b"01234", True)]),
}


@pytest.mark.parametrize("case", list(CONTENT_LENGTH_ERRORS))
def test_content_length_mismatch_resets_that_stream_only(server: ServerProcess, case: str) -> None:
    """The stream with the bad body is reset PROTOCOL_ERROR; a stream in flight on the same
    connection still completes, and the connection serves on (no GOAWAY)."""
    extra, frames = CONTENT_LENGTH_ERRORS[case]
    tag = uuid.uuid4().hex
    with connected(server.port) as client:
        client.send(client.request(1, f"/late?tag={tag}"))
        wait_events(server, tag, "started", 1)
        opening = client.request(3, "/echo", "POST", extra, end_stream=not frames)
        data = b"".join(raw_frame(DATA, END_STREAM if end else 0, 3, body) for body, end in frames)
        client.send(opening + data)
        bad = client.response(3)
        assert bad.reset == PROTOCOL_ERROR, f"stream 3: {bad}; {client.summary()}"
        assert not bad.ended, bad
        release(server, tag)
        held = client.response(1)
        assert (held.status, bytes(held.body)) == (200, b"late"), client.summary()
        client.send(client.request(5))
        assert client.response(5).status == 200
        assert client.goaway is None
    assert_no_crash(server)


# -- 10. many bad connections at once ---------------------------------------------------------


def attack_rapid_reset(port: int) -> int:
    with connected(port) as client:
        client.send(open_and_reset(client, 200))
        return ends_connection(client, {ENHANCE_YOUR_CALM})


def attack_ping_flood(port: int) -> int:
    with connected(port) as client:
        client.send(ping() * 500)
        return ends_connection(client, {ENHANCE_YOUR_CALM})


def attack_settings_flood(port: int) -> int:
    with connected(port) as client:
        client.send(SettingsFrame(0).serialize() * 500)
        return ends_connection(client, {ENHANCE_YOUR_CALM})


def attack_hpack_bomb(port: int) -> int:
    with connected(port) as client:
        client.send(hpack_bomb(client))
        return ends_connection(client, HEADER_REFUSALS)


def attack_continuation_flood(port: int) -> int:
    with connected(port) as client:
        opening = client.encoder.encode(request_fields(), huffman=False)
        frames = raw_frame(CONTINUATION, 0, 1, literal_fields(130)) * 100
        client.send(raw_frame(HEADERS, END_STREAM, 1, opening))
        client.send(frames)
        return ends_connection(client, {PROTOCOL_ERROR, ENHANCE_YOUR_CALM, COMPRESSION_ERROR})


def attack_protocol_error(port: int) -> int:
    with connected(port) as client:
        client.send(raw_frame(DATA, 0, 0, b"hello"))
        return ends_connection(client, {PROTOCOL_ERROR})


ATTACKS = [
    attack_rapid_reset,
    attack_ping_flood,
    attack_settings_flood,
    attack_hpack_bomb,
    attack_continuation_flood,
    attack_protocol_error,
]


def test_many_bad_connections_beside_a_good_one(strict_server: ServerProcess) -> None:
    warm_up(strict_server)
    failures: list[str] = []
    outcomes: list[int] = []
    lock = threading.Lock()

    def attacker(index: int) -> None:
        attack = ATTACKS[index % len(ATTACKS)]
        for _ in range(10):
            try:
                code = attack(strict_server.port)
            except Exception as exc:  # collected: the test fails with all of them
                with lock:
                    failures.append(f"{attack.__name__}: {type(exc).__name__}: {exc}")
                return
            with lock:
                outcomes.append(code)

    threads = [threading.Thread(target=attacker, args=(i,), daemon=True) for i in range(20)]
    answered = 0
    with PeakRSS(strict_server) as rss, H2Client(strict_server.port, timeout=20) as good:
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads) or answered < 20:
            result = good.get(f"/status?code=200&body=good-{answered}")
            assert (result.status, bytes(result.body)) == (200, f"good-{answered}".encode())
            answered += 1
        for thread in threads:
            thread.join(30)
    assert not failures, "\n".join(failures)
    assert len(outcomes) == 200
    assert rss.growth < 4 * RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"
    assert_serves(strict_server)
