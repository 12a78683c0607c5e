# The HTTP/2 attack suite: black-box tests of a running laurelin over cleartext HTTP/2 (prior
# knowledge), one test per attack class, each citing its advisory (CVE, CERT/CC VU#) or its
# RFC 9113 / RFC 7541 section. Owns: rapid reset (CVE-2023-44487) and the server-provoked resets
# of MadeYouReset (CVE-2025-8671) and the reset flood (CVE-2019-9514); CONTINUATION floods
# (VU#421644, CVE-2024-27316); HPACK bombs (CVE-2016-6581) and HPACK decoding errors; control
# frame floods (CVE-2019-9512/9515/9518), zero-length header fields (CVE-2019-9516) and PINGs
# from a client that never reads (CVE-2019-9512); stream-identifier misuse and the
# concurrent-stream limit (RFC 9113 5.1.1, 5.1.2); flow-control window overflow (6.9);
# Content-Length against DATA (8.1.1); connection-specific fields (8.2.2); malformed field
# sections (8.2.1, 8.3).
#
# Each test asserts the end-to-end outcome (the GOAWAY or RST_STREAM code, the status, the
# connection closed, what the app saw through tests/apps/side_channel.py) and the security
# invariants: the server process survives, a `Bystander` on its own connection is served all
# through a flood, the peak RSS growth stays under RSS_GROWTH_LIMIT_KIB, and a fresh client is
# answered promptly afterwards (`Siege` bundles these). tests/test_http2_defences.py tests the
# same defences feature by feature; both use tests/h2raw.py's frame-level client `RawH2`
# (hyperframe frames out, every server frame read back), its constants and its helpers, and the
# well-behaved clients are tests/h2client.py's `H2Client`.
from __future__ import annotations

import json
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator

import pytest
from h2.settings import SettingCodes
from hyperframe.frame import HeadersFrame, RstStreamFrame, SettingsFrame

from conftest import PeakRSS, ServerProcess
from h2client import H2Client
from h2raw import (
    CANCEL,
    COMPRESSION_ERROR,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    FLOW_CONTROL_ERROR,
    HEADER_REFUSALS,
    HEADERS,
    MIB,
    PRIORITY,
    PROTOCOL_ERROR,
    REFUSED_STREAM,
    STREAM_CLOSED,
    WINDOW_UPDATE,
    RawH2,
    RawStream,
    assert_no_crash,
    connected,
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
from rawhttp import events, release, serve

APP = "h2_attack_app:app"

MAX_WINDOW = (1 << 31) - 1  # RFC 9113 6.9.1
MAX_STREAM_ID = (1 << 31) - 1  # RFC 9113 5.1.1

# The server's defaults (laurelin --help): SETTINGS_MAX_CONCURRENT_STREAMS and the flood budgets
# (--h2-max-reset-streams, --h2-max-control-frames) per 10 s. The floods below send several
# times a budget, against the defaults: the defences must hold out of the box.
MAX_STREAMS = 100
RESET_BUDGET = 1000
CONTROL_BUDGET = 1000

# How much the server's resident memory may grow while an attack runs. An idle worker holds
# about 35 MB; a connection's legitimate buffers come to about 2 MiB at most (a 1 MiB receive
# window, 64 KiB of queued output, h2's CONTINUATION backlog of 64 frames of 16 KiB), and a
# warmed-up server grows by 0.5-5 MB during the attacks it fends off here (allocator noise).
# Undefended, each attack costs far more: the HPACK bomb decodes to 48 MB per header block, a
# CONTINUATION flood to whatever the client sends, 32 MiB of PINGs to 32 MiB of queued ACKs,
# thousands of streams to thousands of app tasks. 16 MiB sits well above the first and well
# below the second, with room for a loaded CI machine.
RSS_GROWTH_LIMIT_KIB = 16 * 1024
# Seconds within which a fresh client must be answered after (and a bystander during) an attack:
# on an idle machine the slowest answer during the floods the server fends off took 1.4 s; the
# margin is for a CI machine running other suites at once.
PROMPT = 10.0


# -- the security invariants -------------------------------------------------------------------


def served_promptly(server: ServerProcess) -> None:
    """The server is alive and answers a fresh HTTP/2 connection within PROMPT seconds."""
    assert server.proc.poll() is None, f"the server died:\n{server.output[-3000:]}"
    started = time.monotonic()
    with H2Client(server.port, timeout=2 * PROMPT) as client:
        result = client.get("/")
    elapsed = time.monotonic() - started
    assert (result.status, bytes(result.body)) == (200, b"Hello, world!"), result
    assert elapsed < PROMPT, f"a fresh client waited {elapsed:.1f} s for its answer"


class Bystander:
    """A well-behaved client on a connection of its own, asking for a page every 50 ms in a
    thread while an attack runs (and at least `minimum` times): every answer must be right and
    come within PROMPT seconds."""

    def __init__(self, server: ServerProcess, minimum: int = 3) -> None:
        self.port = server.port
        self.minimum = minimum
        self.served = 0
        self.slowest = 0.0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            with H2Client(self.port, timeout=2 * PROMPT) as client:
                while not self._stop.is_set() or self.served < self.minimum:
                    started = time.monotonic()
                    body = f"bystander-{self.served}"
                    result = client.get(f"/status?code=200&body={body}")
                    self.slowest = max(self.slowest, time.monotonic() - started)
                    if (result.status, bytes(result.body)) != (200, body.encode()):
                        self.failures.append(f"request {self.served}: {result}")
                        return
                    self.served += 1
                    self._stop.wait(0.05)
        except Exception as exc:  # reported by check()
            self.failures.append(f"request {self.served}: {type(exc).__name__}: {exc}")

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2 * PROMPT + 5)

    def problems(self) -> list[str]:
        """What went wrong for the bystander (nothing: it was served, promptly, throughout)."""
        found = list(self.failures)
        if self._thread.is_alive():
            found.append(f"the bystander is stuck after {self.served} answers")
        if self.served < self.minimum:
            found.append(f"the bystander got {self.served} answers")
        if self.slowest >= PROMPT:
            found.append(f"the bystander waited {self.slowest:.1f} s for an answer")
        return found


class Siege:
    """The invariants around one attack on `server`: warmed up first; meanwhile a Bystander is
    served and the peak RSS sampled; afterwards (unless the block failed already) the
    bystander was served promptly throughout and the RSS grew by less than `limit_kib` (both
    reported together), a fresh client is answered promptly and the server logged no crash."""

    def __init__(self, server: ServerProcess, limit_kib: int = RSS_GROWTH_LIMIT_KIB) -> None:
        self.server = server
        self.limit_kib = limit_kib
        self.note = ""  # what the attack achieved, for the messages

    def __enter__(self) -> Siege:
        warm_up(self.server)
        self.rss = PeakRSS(self.server).__enter__()
        self.bystander = Bystander(self.server).__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.bystander.__exit__()
        self.rss.__exit__()
        if exc_type is not None:
            return
        problems = self.bystander.problems()
        if self.rss.growth >= self.limit_kib:
            problems.append(f"RSS grew by {self.rss.growth} KiB (limit {self.limit_kib} KiB)")
        assert not problems, f"during the attack {self.note}: " + "; ".join(problems)
        served_promptly(self.server)
        assert_no_crash(self.server)


# -- frame-level helpers -----------------------------------------------------------------------


def stream_ids(count: int, first: int = 1) -> range:
    """`count` client stream ids (odd, increasing) from `first`."""
    return range(first, first + 2 * count, 2)


def rst(stream_id: int, code: int = CANCEL) -> bytes:
    return RstStreamFrame(stream_id, error_code=code).serialize()


def window_update(stream_id: int, increment: int) -> bytes:
    """A WINDOW_UPDATE with any increment, 0 included (hyperframe checks only on parsing)."""
    return raw_frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def flood(client: RawH2, chunks: Iterable[bytes]) -> int:
    """Send `chunks` in turn, reading whatever comes back between them, until all are sent or
    the server has ended the connection (GOAWAY or close). Returns how many chunks went."""
    sent = 0
    for chunk in chunks:
        if client.goaway is not None or client.closed:
            break
        client.sock.settimeout(client.timeout)  # read_once leaves a short timeout behind
        if not client.send(chunk):
            break
        sent += 1
        client.read_once(time.monotonic())  # what has arrived (waits 10 ms at most)
    return sent


def batched(frames: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Frames joined into writes of `size` frames."""
    batch: list[bytes] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield b"".join(batch)
            batch = []
    if batch:
        yield b"".join(batch)


def connection_refused(
    client: RawH2, codes: set[int], *, reset_may_lose_goaway: bool = False
) -> str:
    """Read until the server ends the connection: a GOAWAY whose code is in `codes`, then the
    close. With `reset_may_lose_goaway`, a close without GOAWAY is as good (a server that
    closes with the client's frames still unread sends a TCP reset, which may overtake its
    GOAWAY). Returns the outcome, for messages."""
    deadline = time.monotonic() + 10
    while client.goaway is None and not client.closed:
        assert time.monotonic() < deadline, f"the connection was not ended; {client.summary()}"
        client.read_once(deadline)
    if client.goaway is None:
        assert reset_may_lose_goaway, f"connection closed without GOAWAY; {client.summary()}"
        return "closed"
    code = client.goaway.error_code
    assert code in codes, (
        f"GOAWAY {name(code)}, expected one of {sorted(map(name, codes))}; {client.summary()}"
    )
    client.wait_closed(10)
    return f"GOAWAY {name(code)}"


def headers_frames(client: RawH2, stream_id: int) -> int:
    """How many HEADERS frames (responses) the server sent on `stream_id` so far."""
    return sum(1 for f in client.frames if isinstance(f, HeadersFrame) and f.stream_id == stream_id)


def app_events(server: ServerProcess, tag: str, want: str = "", timeout: float = 0.1) -> list[str]:
    """What the app recorded under `tag` (tests/apps/h1_app.py's /late and /sha256 record
    "started", then "done:LENGTH" or "disconnect:LENGTH"), waiting up to `timeout` for `want`."""
    return events(server, tag, want, timeout=timeout)


def run_parallel(count: int, attack: Callable[[int], str]) -> list[str]:
    """Run `attack(index)` on `count` threads at once; the outcomes, or the failures raised."""
    outcomes: list[str] = [""] * count
    failures: list[str] = []

    def run(index: int) -> None:
        try:
            outcomes[index] = attack(index)
        except Exception as exc:  # collected: the test fails with all of them
            failures.append(f"connection {index}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "an attacking connection hangs"
    assert not failures, "\n".join(failures)
    return outcomes


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """A server with every default limit (shared by the tests that do not change them)."""
    with serve(APP) as proc:
        yield proc


# -- rapid reset (CVE-2023-44487) and server-provoked resets (CVE-2025-8671) -------------------

BURST = 3 * RESET_BUDGET  # streams per burst


@pytest.mark.parametrize("variant", ["client-resets", "refused-past-the-limit"])
def test_rapid_reset(server: ServerProcess, variant: str) -> None:
    """CVE-2023-44487 (HTTP/2 Rapid Reset): 3000 streams in one burst, each opened and reset
    at once by the client (RST_STREAM CANCEL), or opened past SETTINGS_MAX_CONCURRENT_STREAMS
    so that the server must refuse them (RFC 9113 5.1.2, REFUSED_STREAM): the server starts
    work the client never waits for. With the default --h2-max-reset-streams (1000 per 10 s)
    the connection ends in GOAWAY ENHANCE_YOUR_CALM before the burst is over, and no more
    apps run at once than twice the stream limit."""
    tag = uuid.uuid4().hex
    path = f"/late?tag={tag}"  # an app that holds its stream until released
    try:
        with Siege(server) as siege, connected(server.port) as client:
            if variant == "client-resets":
                frames = (client.request(sid, path) + rst(sid) for sid in stream_ids(BURST))
            else:  # no END_STREAM: every stream stays open; the 101st on are refused
                frames = (
                    client.request(sid, path, "POST", end_stream=False) for sid in stream_ids(BURST)
                )
            flood(client, batched(frames, 100))
            outcome = connection_refused(client, {ENHANCE_YOUR_CALM}, reset_may_lose_goaway=True)
            if client.goaway is not None:
                last = client.goaway.last_stream_id
                assert last < stream_ids(BURST)[-1], f"the whole burst was served: {outcome}"
            started = app_events(server, tag).count("started")
            siege.note = f"({outcome}, {started} apps started)"
            assert 0 < started <= 2 * MAX_STREAMS, f"{started} apps ran at once ({outcome})"
    finally:
        release(server, tag)


def made_you_reset_window_overflow(client: RawH2, stream_id: int, path: str) -> bytes:
    # RFC 9113 6.9.1: a WINDOW_UPDATE past 2^31-1 on a stream is a stream error.
    return client.request(stream_id, path) + window_update(stream_id, MAX_WINDOW)


def made_you_reset_data_after_end(client: RawH2, stream_id: int, path: str) -> bytes:
    # RFC 9113 5.1: DATA on a half-closed (remote) stream is a stream error STREAM_CLOSED.
    return client.request(stream_id, path) + raw_frame(DATA, 0, stream_id, b"x")


def made_you_reset_content_length(client: RawH2, stream_id: int, path: str) -> bytes:
    # RFC 9113 8.1.1: more DATA than Content-Length makes the request malformed, a stream error.
    opening = client.request(stream_id, path, "POST", [(b"content-length", b"1")], False)
    return opening + raw_frame(DATA, END_STREAM, stream_id, b"xx")


MADE_YOU_RESET: dict[str, Callable[[RawH2, int, str], bytes]] = {
    "window-update-overflow": made_you_reset_window_overflow,
    "data-after-end-stream": made_you_reset_data_after_end,
    "body-over-content-length": made_you_reset_content_length,
}


@pytest.mark.parametrize("primitive", list(MADE_YOU_RESET))
def test_made_you_reset(server: ServerProcess, primitive: str) -> None:
    """CVE-2025-8671 (MadeYouReset, VU#767506, August 2025): the rapid reset of
    CVE-2023-44487 without a single RST_STREAM from the client. Each request is valid and
    starts its app; a frame right after it makes the server reset the stream itself (a stream
    error, RFC 9113 5.4.2), so that the stream no longer counts against the concurrency limit
    while the app has started. A server-sent reset the client provoked must cost the client's
    reset budget like its own resets: 3000 of them in one burst end the connection in GOAWAY
    ENHANCE_YOUR_CALM before the burst is over."""
    build = MADE_YOU_RESET[primitive]
    tag = uuid.uuid4().hex
    path = f"/sha256?tag={tag}"  # records "started"; answers, or returns once reset
    with Siege(server) as siege, connected(server.port) as client:
        frames = (build(client, sid, path) for sid in stream_ids(BURST))
        flood(client, batched(frames, 100))
        last = client.streams.setdefault(stream_ids(BURST)[-1], RawStream(stream_ids(BURST)[-1]))
        client.pump(lambda: client.goaway is not None or client.closed or last.done, "the end")
        started = app_events(server, tag).count("started")
        resets = sum(1 for s in client.streams.values() if s.reset is not None)
        siege.note = f"({resets} streams reset by the server, {started} apps started)"
        assert client.goaway is not None, (
            f"{resets} streams reset by the server, {started} apps started, and no GOAWAY: "
            f"server-provoked resets cost the client nothing; {client.summary()}"
        )
        assert client.goaway.error_code == ENHANCE_YOUR_CALM, client.summary()
        assert client.goaway.last_stream_id < stream_ids(BURST)[-1], client.summary()


# -- CONTINUATION floods (VU#421644, CVE-2024-27316 and kin) ------------------------------------

# Most header block a client may send before the server must have refused it: 32 times the
# header list the server announces (SETTINGS_MAX_HEADER_LIST_SIZE, 64 KiB), and 1024 frames.
CONTINUATION_BYTES = 2 * MIB
CONTINUATION_FRAMES = 1024

CONTINUATION_PAYLOADS = {
    "empty": b"",
    "16k-of-literal-fields": literal_fields(130),
}


@pytest.mark.parametrize("payload", list(CONTINUATION_PAYLOADS))
def test_continuation_flood(server: ServerProcess, payload: str) -> None:
    """VU#421644 (the HTTP/2 CONTINUATION flood, April 2024: CVE-2024-27316 Apache httpd,
    CVE-2024-27983 Node.js, CVE-2023-45288 Go, ...): HEADERS without END_HEADERS, then
    CONTINUATION frames that never end the block (empty ones too, CVE-2019-9518's empty frames),
    on four connections at once. RFC 9113 10.5.1 lets a server refuse a field block larger
    than it will take, with a connection error (RFC 9113 6.10): each connection must be ended
    before its client has sent 2 MiB or 1024 frames of the block, so that nothing is buffered
    or decoded without bound; a server waiting for END_HEADERS never answers."""
    data = CONTINUATION_PAYLOADS[payload]
    count = min(CONTINUATION_FRAMES, CONTINUATION_BYTES // (9 + len(data)))
    frame = raw_frame(CONTINUATION, 0, 1, data)

    def attack(index: int) -> str:
        with connected(server.port) as client:
            opening = client.encoder.encode(request_fields(), huffman=False)
            client.send(raw_frame(HEADERS, END_STREAM, 1, opening))
            flood(client, batched([frame] * count, 16))
            return connection_refused(client, HEADER_REFUSALS, reset_may_lose_goaway=True)

    with Siege(server) as siege:
        outcomes = run_parallel(4, attack)
        siege.note = str(outcomes)


# -- HPACK (RFC 7541) --------------------------------------------------------------------------


def bomb_in_one_frame(client: RawH2) -> bytes:
    # A 4000-byte field added to the dynamic table, then named by its index 12000 times:
    # under 16 KiB on the wire, 48 MB decoded.
    return hpack_bomb(client, 1)


def bomb_over_continuations(client: RawH2) -> bytes:
    # The same entry referenced 60000 times (240 MB decoded), in HEADERS + CONTINUATION frames.
    block = client.encoder.encode(request_fields(), huffman=False)
    block += client.encoder.encode([(b"x-bomb", b"b" * 4000)], huffman=False)
    block += bytes([0x80 | 62]) * 60000
    client.streams[1] = RawStream(1)
    return split_block(1, block)


def bomb_of_static_entries(client: RawH2) -> bytes:
    # A static-table entry (index 16, "accept-encoding: gzip, deflate") 16000 times: 16 KB on
    # the wire, 960 KB and 16000 fields decoded.
    block = client.encoder.encode(request_fields(), huffman=False) + bytes([0x80 | 16]) * 16000
    client.streams[1] = RawStream(1)
    return raw_frame(HEADERS, END_HEADERS | END_STREAM, 1, block)


HPACK_BOMBS: dict[str, Callable[[RawH2], bytes]] = {
    "dynamic-entry-in-one-frame": bomb_in_one_frame,
    "dynamic-entry-over-continuations": bomb_over_continuations,
    "static-entry": bomb_of_static_entries,
}


@pytest.mark.parametrize("bomb", list(HPACK_BOMBS))
def test_hpack_bomb(server: ServerProcess, bomb: str) -> None:
    """RFC 7541 7.3 and CVE-2016-6581 (the HPACK bomb of python-hyper's hpack, which laurelin
    decodes with): a small header block that decompresses to far more than the
    SETTINGS_MAX_HEADER_LIST_SIZE the server announced (64 KiB), on four connections at once.
    The block is refused (GOAWAY COMPRESSION_ERROR, ENHANCE_YOUR_CALM or PROTOCOL_ERROR, or
    431 on its stream: RFC 9113 10.5.1) without being decoded in full: RSS stays bounded."""
    build = HPACK_BOMBS[bomb]

    def attack(index: int) -> str:
        with connected(server.port) as client:
            client.send(build(client))
            return refuses_header_block(client, 1)

    with Siege(server) as siege:
        siege.note = str(run_parallel(4, attack))


HPACK_DECODING_ERRORS: dict[str, Callable[[bytes], bytes]] = {
    # RFC 7541 2.3.3: an index past the static and dynamic tables (here 2175).
    "index-past-the-tables": lambda fields: b"\xff\x80\x10" + fields,
    # RFC 7541 4.2 and 6.3: a dynamic table size update above SETTINGS_HEADER_TABLE_SIZE (4096).
    "table-size-over-the-limit": lambda fields: b"\x3f\xe1\xff\xff\x0f" + fields,
    # RFC 7541 5.2: a string literal running past the end of the block.
    "truncated-string": lambda fields: fields + b"\x00\x05ab",
}


@pytest.mark.parametrize("case", list(HPACK_DECODING_ERRORS))
def test_hpack_decoding_error(server: ServerProcess, case: str) -> None:
    """RFC 9113 4.3: a field block that cannot be decompressed MUST end the connection with a
    connection error of type COMPRESSION_ERROR (the decoder's state is lost: no later block
    can be trusted); RFC 7541 names each of these a decoding error. The request around the
    broken representation is never served."""
    with connected(server.port) as client:
        fields = client.encoder.encode(request_fields(), huffman=False)
        block = HPACK_DECODING_ERRORS[case](fields)
        client.send(raw_frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
        stream = client.streams.setdefault(1, RawStream(1))
        connection_refused(client, {COMPRESSION_ERROR})
        assert stream.status is None, f"the request was answered: {stream}"
    served_promptly(server)
    assert_no_crash(server)


# -- control frame floods (CVE-2019-9512, 9515, 9516, 9518) ------------------------------------

FLOOD_FRAMES = 5 * CONTROL_BUDGET

CONTROL_FLOODS: dict[str, Callable[[RawH2], Iterator[bytes]]] = {
    # CVE-2019-9512 (ping flood): each PING asks for a PING ACK.
    "ping": lambda c: (ping() for _ in range(FLOOD_FRAMES)),
    # CVE-2019-9515 (settings flood): each SETTINGS asks for a SETTINGS ACK.
    "settings": lambda c: (SettingsFrame(0).serialize() for _ in range(FLOOD_FRAMES)),
    # CVE-2019-9513 (resource loop) and RFC 9113 5.3.2: PRIORITY frames, on idle streams.
    "priority": lambda c: (
        raw_frame(PRIORITY, 0, sid, struct.pack(">IB", 0, 15)) for sid in stream_ids(FLOOD_FRAMES)
    ),
    # CVE-2019-9518 (empty frames flood): DATA frames without payload or END_STREAM.
    "empty-data": lambda c: iter(
        [c.request(1, "/echo", "POST", end_stream=False)] + [raw_frame(DATA, 0, 1)] * FLOOD_FRAMES
    ),
    # RFC 9113 4.1, 5.5: frames of an unknown type are ignored, but not for free.
    "unknown-frame-type": lambda c: (raw_frame(0xEE, 0, 0, b"junk") for _ in range(FLOOD_FRAMES)),
}


@pytest.mark.parametrize("kind", list(CONTROL_FLOODS))
def test_control_frame_flood(server: ServerProcess, kind: str) -> None:
    """CVE-2019-9512 ping flood, CVE-2019-9515 settings flood, CVE-2019-9518 empty frames flood
    (and PRIORITY and unknown-type frames, as cheap to send): frames that make the server work
    or answer without a request. 5000 of them, five times the default --h2-max-control-frames
    (1000 per 10 s): GOAWAY ENHANCE_YOUR_CALM, before the server has answered them all."""
    with Siege(server) as siege, connected(server.port) as client:
        client.pump(lambda: client.settings_acked, "the ACK of our SETTINGS")
        flood(client, batched(CONTROL_FLOODS[kind](client), 250))
        siege.note = connection_refused(client, {ENHANCE_YOUR_CALM}, reset_may_lose_goaway=True)
        if kind == "ping":
            assert client.ping_acks < FLOOD_FRAMES, f"all {client.ping_acks} PINGs were answered"


EMPTY_FIELDS = {
    # Literal field without indexing, new name: name length 0, value length 0.
    "plain": b"\x00\x00\x00",
    # The same with both (empty) strings Huffman-coded.
    "huffman": b"\x00\x80\x80",
}


@pytest.mark.parametrize("coding", list(EMPTY_FIELDS))
def test_zero_length_header_fields(server: ServerProcess, coding: str) -> None:
    """CVE-2019-9516 (0-length headers leak): header blocks full of fields with an empty name
    and an empty value, which some servers allocated and kept until the connection died.
    200 streams of 1000 such fields each on one connection (which stays open): every stream
    is refused (an empty name is no token, RFC 9113 8.2.1 and RFC 9110 5.1: malformed, RST
    PROTOCOL_ERROR, or 400 or 431), the connection still serves a valid request after them,
    and nothing is kept."""
    opening = b"\x82\x86\x84\x01\x09127.0.0.1"  # GET, http, /, :authority 127.0.0.1
    block = opening + EMPTY_FIELDS[coding] * 1000
    count = 200
    with Siege(server), connected(server.port) as client:
        frames = (
            raw_frame(HEADERS, END_HEADERS | END_STREAM, sid, block) for sid in stream_ids(count)
        )
        flood(client, batched(frames, 20))
        probe = stream_ids(count + 1)[-1]
        client.send(client.request(probe))
        answer = client.response(probe)
        assert (answer.status, client.goaway) == (200, None), client.summary()
        for sid in stream_ids(count):
            stream = client.response(sid)
            refused = stream.reset == PROTOCOL_ERROR or stream.status in (400, 431)
            assert refused, f"stream {sid}: {stream}"


def test_pings_from_a_client_that_never_reads(run_server: Callable[..., ServerProcess]) -> None:
    """CVE-2019-9512 (ping flood) is about output: a client that sends PINGs and never reads
    the ACKs makes a server queue them without bound. With the control-frame budget out of
    the way, the server must stop reading from such a client once its output backs up (the
    client's sends block long before 32 MiB), hold bounded memory while the client sits there,
    and go on serving others meanwhile."""
    server = run_server(APP, "--h2-max-control-frames", "1000000000")
    frame = ping()
    blob = memoryview(frame * (32 * MIB // len(frame)))
    with Siege(server) as siege, connected(server.port, rcvbuf=4096, timeout=30) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        client.pump(lambda: client.settings_acked, "the ACK of our SETTINGS")
        sent = send_until_blocked(client.sock, blob)
        siege.note = f"({sent} bytes of PINGs taken)"
        assert sent < len(blob), "the server read 32 MiB of PINGs without our reading an ACK"
        # The flooding client is still connected, its PINGs unanswered: others are served.
        served_promptly(server)


def test_reset_flood(run_server: Callable[..., ServerProcess]) -> None:
    """CVE-2019-9514 (reset flood): invalid requests, each of which the server answers with
    RST_STREAM (an uppercase field name, RFC 9113 8.2.1: malformed, PROTOCOL_ERROR), 20000 on
    each of four connections that read nothing while they send, and stay open afterwards. The
    RST_STREAM frames must not queue without bound, nor the server keep anything per reset
    stream for the connection's lifetime: RSS stays bounded however many streams were reset.
    (--timeout-keep-alive 60 keeps the connections from being closed while idle, as a client
    sending one more stream now and then would; --min-response-data-rate 0 keeps them from
    being dropped as slow readers when the sends take longer than --data-rate-grace on a
    loaded machine, which would end the test before the budget is what stops them.)"""
    server = run_server(APP, "--timeout-keep-alive", "60", "--min-response-data-rate", "0")
    block = b"\x82\x86\x84\x01\x09127.0.0.1\x00\x04X-Up\x011"  # GET / plus "X-Up: 1"
    count = 20000
    frames = b"".join(
        raw_frame(HEADERS, END_HEADERS | END_STREAM, sid, block) for sid in stream_ids(count)
    )
    last = stream_ids(count)[-1]
    clients: list[RawH2] = []

    def attack(index: int) -> str:
        client = clients[index]
        send_until_blocked(client.sock, memoryview(frames))  # without reading
        end = client.streams.setdefault(last, RawStream(last))
        client.pump(lambda: client.goaway is not None or client.closed or end.done, "the end")
        if client.goaway is not None or client.closed:
            # The resets spent the reset budget (CVE-2025-8671): ENHANCE_YOUR_CALM.
            return connection_refused(client, {ENHANCE_YOUR_CALM}, reset_may_lose_goaway=True)
        assert end.reset == PROTOCOL_ERROR, f"stream {last}: {end}"
        return f"{sum(s.reset is not None for s in client.streams.values())} streams reset"

    with Siege(server) as siege:
        try:
            for _ in range(4):
                clients.append(connected(server.port, rcvbuf=4096, timeout=60))
            outcomes = run_parallel(4, attack)
            siege.note = str(outcomes)
            time.sleep(0.2)  # the connections stay open a moment, as the RSS is sampled
        finally:
            for client in clients:
                client.close()


# -- stream identifiers and the concurrent-stream limit (RFC 9113 5.1.1, 5.1.2) ----------------


def answered_then(client: RawH2, stream_id: int) -> None:
    """Open `stream_id` with a request and wait for its answer."""
    client.send(client.request(stream_id))
    assert client.response(stream_id).status == 200, client.summary()


def reopen_as(client: RawH2, stream_id: int) -> bytes:
    """A request's HEADERS on any stream id, the reserved bit included (raw: hyperframe
    refuses ids it considers invalid)."""
    return raw_frame(HEADERS, END_HEADERS | END_STREAM, stream_id, client.block(request_fields()))


def reused_after_close(client: RawH2) -> bytes:
    answered_then(client, 1)
    return reopen_as(client, 1)


def past_the_last_id(client: RawH2) -> bytes:
    answered_then(client, MAX_STREAM_ID)
    return reopen_as(client, (1 << 31) | 1)


STREAM_ID_MISUSE: dict[str, tuple[Callable[[RawH2], bytes], set[int]]] = {
    # 5.1.1: streams a client opens have odd ids.
    "even-id": (lambda c: reopen_as(c, 2), {PROTOCOL_ERROR}),
    # 6.2: HEADERS on stream 0.
    "id-zero": (lambda c: reopen_as(c, 0), {PROTOCOL_ERROR}),
    # 5.1.1: a new stream's id must exceed every id the client has used.
    "decreasing": (lambda c: c.request(5) + c.request(3), {PROTOCOL_ERROR}),
    # 5.1: HEADERS again on a stream both ends have closed (STREAM_CLOSED, or 5.1.1's error).
    "reused-after-close": (reused_after_close, {STREAM_CLOSED, PROTOCOL_ERROR}),
    # 5.1.1: after stream 2^31-1 the client has no id left; "one more" with the reserved bit
    # set (4.1: ignored on receipt) is stream 1 again.
    "past-the-last-id": (past_the_last_id, {PROTOCOL_ERROR}),
}


@pytest.mark.parametrize("case", list(STREAM_ID_MISUSE))
def test_stream_id_misuse(server: ServerProcess, case: str) -> None:
    """RFC 9113 5.1.1: a stream id the client may not use (even, zero, not above all ids it used
    before, or past 2^31-1) is a connection error PROTOCOL_ERROR (STREAM_CLOSED for a closed
    stream, 5.1): GOAWAY and close, and no request served on it."""
    build, codes = STREAM_ID_MISUSE[case]
    watched = (0, 1, 2, 3, MAX_STREAM_ID)
    with connected(server.port) as client:
        misuse = build(client)  # after the requests the case answers first
        answered = {sid: headers_frames(client, sid) for sid in watched}
        client.send(misuse)
        connection_refused(client, codes)
        after = {sid: headers_frames(client, sid) for sid in watched}
        assert after == answered, f"a stream was served: {answered} -> {after}"
    served_promptly(server)
    assert_no_crash(server)


def test_max_concurrent_streams(run_server: Callable[..., ServerProcess]) -> None:
    """RFC 9113 5.1.2: streams past the SETTINGS_MAX_CONCURRENT_STREAMS the server announced
    (--h2-max-concurrent-streams 10) are refused with RST_STREAM REFUSED_STREAM: 40 over the
    limit never start an app, the 10 open ones are untouched, another connection is served
    meanwhile, and once the open ones complete the connection takes new streams."""
    server = run_server(APP, "--h2-max-concurrent-streams", "10")
    tag = uuid.uuid4().hex
    held, extra = stream_ids(10), stream_ids(40, first=21)
    try:
        with Siege(server), connected(server.port) as client:
            assert client.server_settings.get(SettingCodes.MAX_CONCURRENT_STREAMS) == 10
            client.send(b"".join(client.request(sid, f"/late?tag={tag}") for sid in held))
            app_events(server, tag, "started", timeout=5)
            client.send(b"".join(client.request(sid, f"/late?tag={tag}") for sid in extra))
            for sid in extra:
                refused = client.response(sid)
                assert refused.reset == REFUSED_STREAM, f"stream {sid}: {refused}"
            assert not any(client.streams[sid].done for sid in held), client.summary()
            served_promptly(server)
            assert app_events(server, tag).count("started") == 10
            release(server, tag)
            for sid in held:
                assert client.response(sid).status == 200, client.summary()
            after = extra[-1] + 2
            client.send(client.request(after))
            assert client.response(after).status == 200, client.summary()
            assert client.goaway is None, client.summary()
    finally:
        release(server, tag)


# -- flow-control windows (RFC 9113 6.9) -------------------------------------------------------


def open_stream(client: RawH2) -> bytes:
    """Stream 1, a POST whose body never comes: open, its response not started."""
    return client.request(1, "/echo", "POST", end_stream=False)


# name: (what to send, the RST_STREAM codes allowed on stream 1 (empty: none), the GOAWAY codes)
WINDOW_ERRORS: dict[str, tuple[Callable[[RawH2], bytes], set[int], set[int]]] = {
    # 6.9.1: a stream's window past 2^31-1 is a stream error FLOW_CONTROL_ERROR (5.4: a
    # server may make any stream error a connection error).
    "stream-window-past-max": (
        lambda c: open_stream(c) + window_update(1, MAX_WINDOW),
        {FLOW_CONTROL_ERROR},
        {FLOW_CONTROL_ERROR},
    ),
    "stream-window-past-max-in-steps": (
        lambda c: open_stream(c) + window_update(1, 1 << 30) + window_update(1, 1 << 30),
        {FLOW_CONTROL_ERROR},
        {FLOW_CONTROL_ERROR},
    ),
    # 6.9.1: the connection's window past 2^31-1: connection error FLOW_CONTROL_ERROR.
    "connection-window-past-max": (
        lambda c: window_update(0, MAX_WINDOW),
        set(),
        {FLOW_CONTROL_ERROR},
    ),
    "connection-window-past-max-in-steps": (
        lambda c: window_update(0, 1 << 30) + window_update(0, 1 << 30),
        set(),
        {FLOW_CONTROL_ERROR},
    ),
    # 6.9.2: a SETTINGS_INITIAL_WINDOW_SIZE change that pushes an open stream's window past
    # 2^31-1 is a connection error FLOW_CONTROL_ERROR.
    "initial-window-size-change": (
        lambda c: (
            open_stream(c)
            + window_update(1, 1000)
            + SettingsFrame(0, {SettingCodes.INITIAL_WINDOW_SIZE: MAX_WINDOW}).serialize()
        ),
        set(),
        {FLOW_CONTROL_ERROR},
    ),
    # 6.5.2: SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1: connection error FLOW_CONTROL_ERROR.
    "initial-window-size-too-large": (
        lambda c: raw_frame(
            0x4, 0, 0, struct.pack(">HI", SettingCodes.INITIAL_WINDOW_SIZE, 1 << 31)
        ),
        set(),
        {FLOW_CONTROL_ERROR},
    ),
    # 6.9: an increment of 0 is a stream error PROTOCOL_ERROR on a stream, a connection error
    # on the connection.
    "zero-increment-on-a-stream": (
        lambda c: open_stream(c) + window_update(1, 0),
        {PROTOCOL_ERROR},
        {PROTOCOL_ERROR},
    ),
    "zero-increment-on-the-connection": (lambda c: window_update(0, 0), set(), {PROTOCOL_ERROR}),
}


@pytest.mark.parametrize("case", list(WINDOW_ERRORS))
def test_window_update_overflow(server: ServerProcess, case: str) -> None:
    """RFC 9113 6.9, 6.9.1, 6.9.2: flow-control windows may not exceed 2^31-1, nor a
    WINDOW_UPDATE be 0. A stream-level error resets that stream (and the connection serves on)
    or ends the connection; a connection-level one ends the connection, with the code the RFC
    names. Never a crash: the server serves a fresh client afterwards."""
    build, stream_codes, goaway_codes = WINDOW_ERRORS[case]
    with connected(server.port) as client:
        client.send(build(client))
        stream = client.streams.setdefault(1, RawStream(1))
        client.pump(lambda: client.goaway is not None or client.closed or stream.done, "the error")
        if client.goaway is None and not client.closed:
            assert stream_codes, f"a connection error was due; {client.summary()}"
            assert stream.reset in stream_codes, f"stream 1: {stream}; {client.summary()}"
            client.send(client.request(3))
            assert client.response(3).status == 200, "the connection no longer serves"
        else:
            connection_refused(client, goaway_codes)
    served_promptly(server)
    assert_no_crash(server)


# -- request framing and fields (RFC 9113 8.1.1, 8.2, 8.3) --------------------------------------

# name: (declared Content-Length, the DATA frames as (payload, END_STREAM)). "matching" is the
# control: the one body the app may see complete.
CONTENT_LENGTH_CASES: dict[str, tuple[int, list[tuple[bytes, bool]]]] = {
    "matching": (10, [(b"0123456789", True)]),
    "longer-in-one-frame": (5, [(b"0123456789", True)]),
    "longer-over-frames": (5, [(b"0123", False), (b"45", False), (b"6789", True)]),
    "shorter": (10, [(b"01234", True)]),
    "no-body-at-all": (5, []),
}


@pytest.mark.parametrize("case", list(CONTENT_LENGTH_CASES))
def test_content_length_mismatch(server: ServerProcess, case: str) -> None:
    """RFC 9113 8.1.1: a request whose DATA frames add up to more or less than its
    Content-Length is malformed: a stream error PROTOCOL_ERROR, and the app must never see it
    as a complete body of the wrong length (the H2.CL desync of request smuggling through
    HTTP/2 downgrades). The app (h1_app's /sha256) records "done:LENGTH" only for a body it
    received complete; here it may only hear of a disconnect, after at most Content-Length
    bytes, or (no body at all: refused from its HEADERS) never start. The connection serves on."""
    declared, frames = CONTENT_LENGTH_CASES[case]
    tag = uuid.uuid4().hex
    with connected(server.port) as client:
        extra = [(b"content-length", str(declared).encode())]
        opening = client.request(1, f"/sha256?tag={tag}", "POST", extra, end_stream=not frames)
        body = b"".join(raw_frame(DATA, END_STREAM if end else 0, 1, data) for data, end in frames)
        client.send(opening + body)
        stream = client.response(1)
        client.send(client.request(3))
        assert client.response(3).status == 200, client.summary()
        assert client.goaway is None, client.summary()
    if case == "matching":
        assert (stream.status, stream.reset) == (200, None), stream
        assert app_events(server, tag, "done", timeout=5) == ["started", "done:10"]
        return
    assert (stream.status, stream.reset) == (None, PROTOCOL_ERROR), stream
    seen = app_events(server, tag, "done|disconnect", timeout=5 if frames else 0.2)
    assert not any(e.startswith("done") for e in seen), f"the app took the body whole: {seen}"
    if not frames:
        assert seen == [], f"the app ran for a request refused from its HEADERS: {seen}"
        return
    ends = [e for e in seen if e.startswith("disconnect:")]
    assert len(ends) == 1 and int(ends[0].split(":")[1]) <= declared, seen


# RFC 9113 8.2.2: HTTP/1.1's connection-specific fields, and TE other than "trailers".
CONNECTION_SPECIFIC = {
    "connection": (b"connection", b"keep-alive"),
    "keep-alive": (b"keep-alive", b"timeout=5"),
    "proxy-connection": (b"proxy-connection", b"keep-alive"),
    "transfer-encoding": (b"transfer-encoding", b"chunked"),
    "upgrade": (b"upgrade", b"h2c"),
    "te-gzip": (b"te", b"gzip"),
    "te-trailers-and-gzip": (b"te", b"trailers, gzip"),
}


def refused_request(
    server: ServerProcess,
    fields: list[tuple[bytes, bytes]],
    tag: str | None,
    statuses: frozenset[int] = frozenset({400}),
) -> str:
    """Send `fields` as a request on stream 1: it must be refused (RST_STREAM PROTOCOL_ERROR,
    or one of `statuses`, or GOAWAY PROTOCOL_ERROR), the app for `tag` must never start, and
    (unless the connection ended) stream 3 is served after it. Returns the outcome."""
    with connected(server.port) as client:
        client.send(client.headers(1, fields))
        stream = client.streams[1]
        client.pump(lambda: client.goaway is not None or client.closed or stream.done, "refusal")
        if client.goaway is not None or client.closed:
            outcome = connection_refused(client, {PROTOCOL_ERROR})
        else:
            assert stream.reset == PROTOCOL_ERROR or (
                stream.reset is None and stream.status in statuses
            ), f"stream 1 was not refused: {stream}"
            outcome = (
                f"RST {name(stream.reset)}" if stream.reset is not None else str(stream.status)
            )
            client.send(client.request(3))
            assert client.response(3).status == 200, client.summary()
    if tag is not None:
        seen = app_events(server, tag)
        assert seen == [], f"the app ran for a malformed request ({outcome}): {seen}"
    return outcome


@pytest.mark.parametrize("case", list(CONNECTION_SPECIFIC))
def test_connection_specific_fields(server: ServerProcess, case: str) -> None:
    """RFC 9113 8.2.2: a request carrying a connection-specific field (Connection, Keep-Alive,
    Proxy-Connection, Transfer-Encoding, Upgrade) or a TE other than "trailers" is malformed: a
    stream error PROTOCOL_ERROR (or 400), and the app never sees it (a Transfer-Encoding passed
    on is the H2.TE desync of HTTP/2 downgrades). The connection serves on."""
    tag = uuid.uuid4().hex
    fields = request_fields(f"/sha256?tag={tag}", extra=[CONNECTION_SPECIFIC[case]])
    refused_request(server, fields, tag)


def test_te_trailers_is_allowed(server: ServerProcess) -> None:
    """RFC 9113 8.2.2: "TE: trailers" is the one TE an HTTP/2 request may carry (the control
    case of test_connection_specific_fields)."""
    with H2Client(server.port) as client:
        result = client.get("/headers", headers=[("te", "trailers")])
    assert result.status == 200, result
    assert ["te", "trailers"] in json.loads(bytes(result.body))["headers"]


def fields_with(
    path: str,
    method: bytes = b"GET",
    drop: tuple[bytes, ...] = (),
    pseudo: list[tuple[bytes, bytes]] | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> list[tuple[bytes, bytes]]:
    """A request's fields: the four pseudo-headers (less `drop`), more pseudo-headers, then
    regular fields."""
    fields = [(n, v) for n, v in request_fields(path, method.decode()) if n not in drop]
    return fields + (pseudo or []) + (extra or [])


# name: (fields for a request to `path`, whether `path` reaches the app: its tag can tell
# whether the app ran).
MALFORMED: dict[str, tuple[Callable[[str], list[tuple[bytes, bytes]]], bool]] = {
    # 8.2.1: field names are lowercase; no colon, space, or empty name (RFC 9110 5.1: a token).
    "uppercase-name": (lambda p: fields_with(p, extra=[(b"X-Upper", b"1")]), True),
    "colon-in-name": (lambda p: fields_with(p, extra=[(b"x:evil", b"1")]), True),
    "space-in-name": (lambda p: fields_with(p, extra=[(b"x evil", b"1")]), True),
    "empty-name": (lambda p: fields_with(p, extra=[(b"", b"1")]), True),
    # 8.2.1: no CR, LF or NUL in a value, nor leading or trailing whitespace.
    "cr-in-value": (lambda p: fields_with(p, extra=[(b"x-evil", b"a\rb")]), True),
    "lf-in-value": (lambda p: fields_with(p, extra=[(b"x-evil", b"a\nb")]), True),
    "nul-in-value": (lambda p: fields_with(p, extra=[(b"x-evil", b"a\x00b")]), True),
    "crlf-injection": (
        lambda p: fields_with(p, extra=[(b"x-evil", b"a\r\ntransfer-encoding: chunked")]),
        True,
    ),
    "leading-space-in-value": (lambda p: fields_with(p, extra=[(b"x-evil", b" a")]), True),
    "trailing-tab-in-value": (lambda p: fields_with(p, extra=[(b"x-evil", b"a\t")]), True),
    # 8.3: pseudo-headers come before regular fields, once each, only the defined ones, and
    # none of a response's.
    "pseudo-after-regular": (
        lambda p: fields_with(p, drop=(b":path",), extra=[(b"x-a", b"1"), (b":path", p.encode())]),
        True,
    ),
    "duplicate-method": (lambda p: fields_with(p, pseudo=[(b":method", b"POST")]), True),
    "duplicate-scheme": (lambda p: fields_with(p, pseudo=[(b":scheme", b"https")]), True),
    "duplicate-authority": (lambda p: fields_with(p, pseudo=[(b":authority", b"evil")]), True),
    "duplicate-path": (lambda p: fields_with(p, pseudo=[(b":path", b"/")]), True),
    "unknown-pseudo": (lambda p: fields_with(p, pseudo=[(b":foo", b"bar")]), True),
    "status-in-request": (lambda p: fields_with(p, pseudo=[(b":status", b"200")]), True),
    "protocol-without-connect": (
        lambda p: fields_with(p, pseudo=[(b":protocol", b"websocket")]),
        True,
    ),
    # 8.3.1: a request has :method, :scheme and :path (but CONNECT).
    "missing-method": (lambda p: fields_with(p, drop=(b":method",)), True),
    "missing-scheme": (lambda p: fields_with(p, drop=(b":scheme",)), True),
    "missing-path": (lambda p: fields_with(p, drop=(b":path",)), False),
    # 8.3.1: :path is not empty and starts with "/" ("*" for OPTIONS only); no CR or LF in it.
    "empty-path": (lambda p: fields_with(""), False),
    "path-without-slash": (lambda p: fields_with("sha256"), False),
    "absolute-form-path": (lambda p: fields_with("http://127.0.0.1" + p), False),
    "asterisk-path-for-get": (lambda p: fields_with("*"), False),
    "crlf-in-path": (lambda p: fields_with(p + "\r\nx-injected: 1"), False),
    # 8.3.1: a Host that differs from :authority (SHOULD be treated as malformed).
    "host-differs-from-authority": (lambda p: fields_with(p, extra=[(b"host", b"evil")]), True),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_field_section(server: ServerProcess, case: str) -> None:
    """RFC 9113 8.2.1 (field validity), 8.3 and 8.3.1 (pseudo-header fields): a request that
    breaks them is malformed (8.1.1): a stream error PROTOCOL_ERROR (or a 400 on its stream, or
    the connection ended with PROTOCOL_ERROR), the app never sees it, and, the error being the
    stream's, the connection serves on."""
    build, tagged = MALFORMED[case]
    tag = uuid.uuid4().hex
    refused_request(server, build(f"/sha256?tag={tag}"), tag if tagged else None)
