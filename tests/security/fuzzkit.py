# Shared machinery of the hypothesis fuzz tests (tests/security/test_fuzz_*.py): how many
# examples to run and the settings and per-test timeout that follow from it, the byte-level
# mutations applied to valid inputs (bit flips, CR/LF/NUL/SP insertions, deletions,
# duplications, truncation), splitting an input across several sends with small delays,
# reading every HTTP/1.1 response a connection gives until it closes (RFC 9112 framing), and
# `Watch`, which after every example checks that the server process is alive, that its
# stderr holds no traceback or parse error, and that a fresh connection is served; at the end
# of a run it checks that the server's open file descriptors came back (no leaked connection).
# The tests own the generation of valid inputs and the protocol-specific checks.
from __future__ import annotations

import contextlib
import itertools
import os
import re
import socket
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from conftest import PeakRSS, ServerProcess
from rawhttp import ConnectionClosed, RawClient, Response

# Examples per fuzz test: small by default (the suite runs them on every CI run), thousands
# for `make fuzz`.
EXAMPLES = int(os.environ.get("LAURELIN_FUZZ_EXAMPLES", "40"))
# How long one exchange may take before the server counts as hung. The fuzz servers run with
# timeouts of a second or less (header read, keep-alive, app), so this is a wide margin.
EXCHANGE_TIMEOUT = 8.0
# Seconds hypothesis may spend shrinking after the first failure before the run is stopped
# with that failure (a hang costs EXCHANGE_TIMEOUT per attempt: shrinking one could take long).
SHRINK_BUDGET = 20.0
# How much the server's resident memory may grow over a whole fuzz run (KiB).
RSS_GROWTH_LIMIT_KIB = 64 * 1024

# What must never appear on the server's stderr for merely malformed input: a traceback, the
# parser's "Error parsing request", "Exception in ..." (ASGI app, callback, lifespan),
# asyncio's "Fatal error on transport" / "data_received() call failed" / "Task exception was
# never retrieved", or any ERROR or CRITICAL log line.
BAD_OUTPUT = re.compile(
    r"Traceback|Error parsing request|Exception in|Error starting the request|Fatal error"
    r"|call failed|never retrieved|Unhandled|\bERROR\b|\bCRITICAL\b"
)


def fuzz_settings(**overrides: object) -> settings:
    """Hypothesis settings for a fuzz test: EXAMPLES examples, no deadline (each example is a
    real network exchange), random (not derandomized) generation."""
    options: dict[str, object] = {
        "max_examples": EXAMPLES,
        "deadline": None,
        "derandomize": False,
        "suppress_health_check": [
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
        "print_blob": True,
    }
    options.update(overrides)
    return settings(**options)  # type: ignore[arg-type]


def fuzz_timeout(per_example: float) -> float:
    """The pytest timeout of a fuzz test whose examples take up to `per_example` seconds."""
    return 60 + EXAMPLES * per_example


# -- mutations -------------------------------------------------------------------------------------

# Bytes that parsers treat specially, for insertions and replacements.
SPECIAL = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"\r\n\r\n",
    b"\x0b",
    b"\x7f",
    b"\xff",
    b"\x80",
    b"0",
    b"-",
    b'"',
]
KINDS = ("flip", "set", "insert", "delete", "duplicate", "truncate", "swap")


@dataclass(frozen=True)
class Mutation:
    kind: str
    position: int
    value: int
    size: int

    def apply(self, data: bytearray) -> bytearray:
        pos = self.position % (len(data) + 1)
        if self.kind == "flip" and data:
            pos %= len(data)
            data[pos] ^= 1 << (self.value % 8)
        elif self.kind == "set" and data:
            pos %= len(data)
            special = SPECIAL[self.value % len(SPECIAL)]
            data[pos] = special[0] if self.value < 128 else self.value
        elif self.kind == "insert":
            data[pos:pos] = SPECIAL[self.value % len(SPECIAL)] * (1 + self.size % 3)
        elif self.kind == "delete":
            del data[pos : pos + self.size]
        elif self.kind == "duplicate":
            data[pos:pos] = data[pos : pos + self.size * 4]
        elif self.kind == "truncate":
            del data[pos:]
        elif self.kind == "swap" and len(data) > 1:
            pos %= len(data) - 1
            data[pos], data[pos + 1] = data[pos + 1], data[pos]
        return data


mutation_st = st.builds(
    Mutation,
    st.sampled_from(KINDS),
    st.integers(0, 1 << 20),
    st.integers(0, 255),
    st.integers(1, 16),
)


def mutate(data: bytes, mutations: list[Mutation]) -> bytes:
    out = bytearray(data)
    for mutation in mutations:
        out = mutation.apply(out)
    return bytes(out)


def mutations(max_size: int = 4) -> st.SearchStrategy[list[Mutation]]:
    """Up to `max_size` mutations; none half the time (the generated input itself, often
    valid, must be tried too)."""
    return st.one_of(st.just([]), st.lists(mutation_st, min_size=1, max_size=max_size))


# -- splitting across sends ------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Where to cut an input (positions taken modulo its length) and how long to wait between
    the pieces (seconds)."""

    cuts: tuple[int, ...] = ()
    delay: float = 0.0

    def pieces(self, data: bytes) -> list[bytes]:
        if not data:
            return []
        points = sorted({cut % len(data) for cut in self.cuts} - {0})
        bounds = [0, *points, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]


split_st = st.builds(
    Split,
    st.lists(st.integers(0, 1 << 20), max_size=8).map(tuple),
    st.sampled_from([0.0, 0.0, 0.001, 0.005, 0.02]),
)
# Cuts at every byte boundary of a short stretch: 1-byte sends.
bytewise_st = st.builds(
    Split, st.integers(0, 4096).map(lambda start: tuple(range(start, start + 48))), st.just(0.0)
)
splits = st.one_of(split_st, split_st, bytewise_st)


def send_split(sock: socket.socket, data: bytes, split: Split) -> bool:
    """Send `data` in the pieces `split` gives, pausing between them. False (and the rest is
    not sent) if the server closed or reset the connection meanwhile, which is allowed."""
    pieces = split.pieces(data)
    for index, piece in enumerate(pieces):
        if index and split.delay:
            time.sleep(split.delay)
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            return False
    return True


# -- HTTP/1.1 responses until the connection closes --------------------------------------------


@dataclass
class H1Outcome:
    """Every response a connection gave (1xx included) and how it ended."""

    responses: list[Response] = field(default_factory=list)
    ending: str = "eof"  # "eof", "reset", or "upgrade" (stopped at a 101)
    partial: bytes = b""  # what came before a reset in the middle of a response


def read_h1_until_close(client: RawClient, deadline: float, first: str = "GET") -> H1Outcome:
    """Read responses (each checked by RawClient.read_response: a status line, well-formed
    header lines, a body framed by Content-Length or chunked or the close) until the server
    closes; `first` is the method of the first request (HEAD: its response has no body, RFC
    9112 6.3), later ones are taken for GETs. A response cut short by a FIN is an
    AssertionError (a truncated response must never read as complete: RFC 9112 8); one cut by a
    reset is allowed (the server may abort). Hangs raise TimeoutError. Stops after a 101."""
    outcome = H1Outcome()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no close within the exchange; got {len(outcome.responses)}")
        finals = sum(r.status >= 200 for r in outcome.responses)
        method = first if finals == 0 else "GET"
        after = outcome.responses[-1].raw[:300] if outcome.responses else b""
        context = f" (after the response {after!r} to a {first})" if after else ""
        try:
            response = client.read_response(method, timeout=remaining)
        except ConnectionClosed as exc:
            if client.reset:
                outcome.ending, outcome.partial = "reset", exc.partial
                return outcome
            assert exc.partial == b"", (
                f"a response truncated by the close: {exc.partial[:500]!r}{context}"
            )
            return outcome
        except AssertionError as exc:
            raise AssertionError(f"{exc}{context}") from None
        outcome.responses.append(response)
        if response.status == 101:
            outcome.ending = "upgrade"
            return outcome


def first_method(data: bytes) -> str:
    """HEAD if `data` starts with a HEAD request (after the empty lines a server may skip
    before a request-line, RFC 9112 2.2), else GET: how to frame the first response."""
    return "HEAD" if data.lstrip(b"\r\n").startswith(b"HEAD ") else "GET"


def check_h1_response(response: Response) -> None:
    """What every HTTP/1.1 response of the server must look like (RFC 9112 4, RFC 9110 15)."""
    assert response.version == "HTTP/1.1", response.raw[:300]
    assert 100 <= response.status <= 599, response.raw[:300]
    assert response.reason, response.raw[:300]
    for name, value in response.headers:
        assert re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9a-z]+", name), response.raw[:500]
        assert "\r" not in value and "\n" not in value and "\x00" not in value, response.raw
    if response.status >= 200:
        assert len(response.get_all("content-length")) <= 1, response.raw[:500]
        assert response.header("date"), response.raw[:500]


# -- the per-example invariants ------------------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class FuzzingStopped(BaseException):
    """Raised past SHRINK_BUDGET after a failure: a BaseException, which hypothesis does not
    take for a failing example but lets through, ending the run with the first failure."""


class Watch:
    """The invariants checked after every example: the server is alive, nothing bad on its
    stderr since the last check, and `probe()` (a fresh connection served normally) works.
    `run()` wraps a whole hypothesis run: peak RSS bounded, file descriptors back to their
    level before the run once the connections have closed (none leaked). `example()` wraps
    one example: its failure is remembered, and shrinking is cut short (FuzzingStopped)."""

    def __init__(self, server: ServerProcess, probe: Callable[[ServerProcess], None]) -> None:
        self.server = server
        self.probe = probe
        self.seen = len(server.stderr)
        self.examples = 0
        self.stats: Counter[str] = Counter()
        self.failure: tuple[float, str, str] | None = None  # when, the input, the traceback

    @contextlib.contextmanager
    def example(self, description: str) -> Iterator[None]:
        """One example (`description`: its input, for the report): the exchange runs in the
        block, then the invariants of after_example()."""
        if self.failure is not None and time.monotonic() - self.failure[0] > SHRINK_BUDGET:
            _, first, trace = self.failure
            raise FuzzingStopped(
                f"shrinking stopped after {SHRINK_BUDGET}s; the first failing example: "
                f"{first}\n{trace}"
            )
        try:
            yield
            self.after_example(description)
        except Exception:
            if self.failure is None:
                self.failure = (time.monotonic(), description, traceback.format_exc()[-4000:])
                print(f"first failing example: {description}")
            raise

    def alive(self, what: str = "") -> None:
        code = self.server.proc.poll()
        assert code is None, f"the server exited ({code}) {what}; output:\n{self.server.output}"

    def stderr_clean(self, what: str = "") -> None:
        text = self.server.stderr
        new, self.seen = text[self.seen :], len(text)
        match = BAD_OUTPUT.search(new)
        assert match is None, f"the server logged {match.group(0)!r} {what}:\n{new[-4000:]}"

    def after_example(self, description: str) -> None:
        """The invariants after one example (`description`: the input, for the failure)."""
        self.examples += 1
        self.alive(f"after {description}")
        self.probe(self.server)
        time.sleep(0.002)  # let the output readers catch up with what the probe flushed
        self.alive(f"after {description}")
        self.stderr_clean(f"after {description}")

    @contextlib.contextmanager
    def run(self) -> Iterator[None]:
        fds = open_fds(self.server.pid)
        with PeakRSS(self.server) as rss:
            yield
        self.alive("at the end of the run")
        time.sleep(0.2)
        self.stderr_clean("during the run")
        assert rss.growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew by {rss.growth} KiB"
        # Closing connections linger a few seconds at most (HTTP/1.1 2 s, HTTP/2 and
        # WebSocket close deadlines 5 s).
        deadline = time.monotonic() + 15
        while open_fds(self.server.pid) > fds + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = open_fds(self.server.pid)
        assert after <= fds + 2, f"file descriptors: {fds} before the run, {after} after"
        print(
            f"{self.examples} examples, RSS growth {rss.growth} KiB, fds {fds} -> {after}: "
            f"{dict(self.stats)}"
        )
