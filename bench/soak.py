# bench/soak.py — the soak (`make soak`, not in CI): one laurelin process under a moderate, mixed
# HTTP/1.1, HTTP/2 and WebSocket load for --seconds, checking that nothing fails and that the
# server's memory and open files stay flat.
#
# The server: `python -m laurelin`, one worker, the default loop (or --loop), serving
# bench/apps.py (GET /hello, POST /echo, GET /stream, WebSocket echo on /ws) on 127.0.0.1, pinned
# to CPU 1 while this driver, wrk and h2load are pinned to CPU 0 (when taskset exists and both
# CPUs are usable, as bench/run.py does). All at once, for the whole duration:
#   h1-keepalive  wrk, 4 keep-alive connections (one per thread), each request in turn GET /hello,
#                 POST /echo (1-8 KiB bodies), GET /stream; a Lua script checks every status and
#                 body and paces each connection (a pause between requests);
#   h1-close      wrk, 2 connections, GET /hello and POST /echo with `Connection: close`: one TCP
#                 connection per request, checked the same way;
#   h2c           h2load in short rounds (cleartext HTTP/2 with prior knowledge), GET /hello and
#                 /stream, then POST /echo, in turn; every request must succeed;
#   websocket     20 clients of the `websockets` library in this process, echoing text and binary
#                 messages of 1 B to 128 KiB, each checked, and reconnecting after a few hundred.
# Every request and message is counted, and every failure: non-2xx, socket errors, wrong bodies
# or echoes, wrk's "Non-2xx" and "Socket errors", h2load's "failed" and "errored", timeouts.
#
# Every few seconds the driver samples the server's VmRSS (/proc/PID/status) and open files
# (/proc/PID/fd). The warm-up is the first 10% of the run (30 s at least, 60 s at most). The
# verdict (exit status 0 only when every criterion holds, 1 otherwise; 130 when interrupted):
#   - no failed request or message, and every kind of load completed some;
#   - RSS after the load (stopped, then a 2 s settle) at most 10% above the RSS at the end of the
#     warm-up (under load): the reference;
#   - open files under load at the end within 10% of open files under load at the end of the
#     warm-up (each the median of the samples of the last 10 s, which smooths out the connection
#     churn), and open files with the load stopped no more than before the load started (+10%);
#   - the server still up afterwards and answering a fresh client on each protocol (the checks
#     by hand of bench/run.py), and nothing logged at ERROR level nor a traceback.
# The summary is printed and written to bench/results/soak-<timestamp>.json, the server's output
# to soak-<timestamp>.log next to it. Everything started here is stopped on Ctrl-C, SIGTERM and
# errors (the server runs in its own session and is killed as a group).
from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import connect

# bench/run.py, next to this file: the response checks, the output parsers and the process
# helpers of the benchmark.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

HOST = bench.HOST
BENCH_DIR = bench.BENCH_DIR
RESULTS_DIR = bench.RESULTS_DIR
APP = bench.APP  # bench/apps.py: /hello, /echo, /stream and the /ws echo

SAMPLE_EVERY = 2.0  # seconds between RSS / fd samples
WINDOW = 10.0  # the fd figures under load: median of the samples of the last WINDOW seconds
SETTLE = 2.0  # seconds between the end of the load and the final figures
TOLERANCE = 0.10  # RSS and fds: 10% of the reference
WRK_SEGMENT = 30  # seconds per wrk run (counts come at the end of each)
WRK_TIMEOUT = "10s"  # wrk counts a request slower than this as a timeout error
H2_ROUND_PAUSE = 0.5  # seconds between h2load rounds
H2_ROUND_LIMIT = 60.0  # an h2load round taking longer is killed, its requests failed
WS_CLIENTS = 20
WS_ECHO_TIMEOUT = 10.0  # seconds a WebSocket echo may take
POST_SIZES = (1024, 4096, 8192)  # h2load's POST rounds, in turn
EXAMPLES = 5  # failure examples kept per kind


# --- what the load generators count ---------------------------------------------------------


@dataclasses.dataclass
class Tally:
    """What one kind of load completed and what failed; `runs` counts wrk runs, h2load rounds or
    WebSocket connections opened."""

    name: str
    description: str
    unit: str = "requests"
    ok: int = 0
    by_route: dict[str, int] = dataclasses.field(default_factory=dict)
    failed: int = 0
    failures: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: list[str] = dataclasses.field(default_factory=list)
    runs: int = 0

    def count(self, route: str, n: int = 1) -> None:
        self.ok += n
        self.by_route[route] = self.by_route.get(route, 0) + n

    def fail(self, kind: str, detail: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.failed += n
        self.failures[kind] = self.failures.get(kind, 0) + n
        if len(self.examples) < EXAMPLES:
            elapsed = time.monotonic() - STARTED
            self.examples.append(f"{elapsed:.0f}s {kind}: {detail}"[:300])


STARTED = time.monotonic()  # reset when the load starts


# --- the server ------------------------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    t: float  # seconds since the load started; negative before
    rss_kib: int
    fds: int
    phase: str  # "idle-before", "load", "idle-after"


def server_rss_kib(pid: int) -> int:
    """VmRSS summed over the server's process tree (one process with one worker)."""
    return sum(bench.vm_kib(p, "VmRSS") for p in bench.process_tree(pid))


def server_fds(pid: int) -> int:
    """Open file descriptors of the server's process tree (/proc/PID/fd)."""
    total = 0
    for p in bench.process_tree(pid):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{p}/fd"))
    return total


def server_cpu_seconds(pid: int) -> float:
    return bench._process_ticks(bench.process_tree(pid)) / bench.CLK_TCK


def sample(pid: int, t: float, phase: str) -> Sample:
    return Sample(round(t, 2), server_rss_kib(pid), server_fds(pid), phase)


def start_server(
    port: int, loop: str | None, pin: list[str], log_path: Path
) -> subprocess.Popen[bytes]:
    argv = [
        *pin,
        *(sys.executable, "-m", "laurelin", "-b", HOST, "-p", str(port)),
        *("-v", "0", "--no-access-log"),
        *(("--loop", loop) if loop else ()),
        APP,
    ]
    env = dict(os.environ, PYTHONPATH=str(BENCH_DIR), PYTHONUNBUFFERED="1")
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            cwd=BENCH_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the driver only; stop() kills the group
        )


def check_server(port: int) -> dict[str, str]:
    """One request by hand per protocol and route (bench/run.py's checks); the problems found."""
    problems: dict[str, str] = {}
    for name in ("hello", "post", "stream", "h2c", "ws-echo"):
        if problem := bench.check_response(bench.WORKLOADS[name], port):
            problems[name] = problem
    return problems


# --- wrk: HTTP/1.1 keep-alive and connection churn --------------------------------------------

WRK_SCRIPT = r"""
-- Written by bench/soak.py for one soak run: the HTTP/1.1 load of wrk. One connection per wrk
-- thread, so each response answers the request made just before on the same thread.
-- init arguments: the mode ("keepalive": GET /hello, POST /echo 1-8 KiB, GET /stream in turn;
-- "close": GET /hello and POST /echo in turn, with Connection: close) and the pause between two
-- requests of a connection, in ms. done() prints one "SOAK ..." line per thread.
local HELLO = "Hello, world!"
local STREAM = string.rep("y", 4096 * 16)
local SIZES = {1024, 2048, 3000, 4096, 5555, 8192}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "keepalive"
  pause = tonumber(args[2] or "0")
  bodies = {}
  for i, size in ipairs(SIZES) do
    bodies[i] = string.rep(string.char(96 + i), size)
  end
  turn = 0
  route = ""
  expected = ""
  hello, echo, stream, bad = 0, 0, 0, 0
  first_bad = ""
end

function request()
  turn = turn + 1
  local headers = {}
  local pick = turn % 3
  if mode == "close" then
    headers["Connection"] = "close"
    pick = turn % 2
  end
  if pick == 0 then
    route, expected = "hello", HELLO
    return wrk.format("GET", "/hello", headers)
  elseif pick == 1 then
    local body = bodies[turn % #bodies + 1]
    route, expected = "echo", body
    headers["Content-Type"] = "application/octet-stream"
    return wrk.format("POST", "/echo", headers, body)
  end
  route, expected = "stream", STREAM
  return wrk.format("GET", "/stream", headers)
end

function response(status, headers, body)
  if status == 200 and body == expected then
    if route == "hello" then
      hello = hello + 1
    elseif route == "echo" then
      echo = echo + 1
    else
      stream = stream + 1
    end
  else
    bad = bad + 1
    if first_bad == "" then
      first_bad = string.format("%s: status %d, %d-byte body %q, expected %d bytes",
                                route, status, #body, string.sub(body, 1, 24), #expected)
    end
  end
end

function delay()
  return pause
end

function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    io.write(string.format("SOAK hello=%d echo=%d stream=%d bad=%d first_bad=%s\n",
                           thread:get("hello"), thread:get("echo"), thread:get("stream"),
                           thread:get("bad"), thread:get("first_bad")))
  end
end
"""

_SOAK_LINE = re.compile(
    r"^SOAK hello=(\d+) echo=(\d+) stream=(\d+) bad=(\d+) first_bad=(.*)$", re.M
)


async def run_tool(argv: Sequence[str], limit: float) -> tuple[int | None, str]:
    """Run wrk or h2load; (exit status, stdout + stderr), status None when it was killed after
    limit seconds. A cancelled call kills the tool before passing the cancellation on."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        return None, out.decode(errors="replace")
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
    return proc.returncode, out.decode(errors="replace")


async def wrk_load(
    tally: Tally,
    mode: str,
    connections: int,
    pause_ms: int,
    url: str,
    script: Path,
    pin: list[str],
    deadline: float,
) -> None:
    """wrk runs of WRK_SEGMENT seconds back to back until the deadline."""
    while (left := deadline - time.monotonic()) >= 1:
        seconds = int(min(WRK_SEGMENT, left))
        argv = [
            *pin,
            *("wrk", f"-t{connections}", f"-c{connections}", f"-d{seconds}s"),
            *("--timeout", WRK_TIMEOUT, "-s", str(script), url, "--", mode, str(pause_ms)),
        ]
        status, out = await run_tool(argv, seconds + 60)
        tally.runs += 1
        result = bench.parse_wrk(out)
        lines = _SOAK_LINE.findall(out)
        if status != 0 or result.parse_error or len(lines) != connections:
            tally.fail(
                "wrk run failed",
                f"status {status}, {result.parse_error or 'no per-thread counts'}: " + _tail(out),
            )
            await asyncio.sleep(1.0)  # no busy loop when the server is gone
            continue
        for name, value in result.socket_errors.items():
            tally.fail(f"socket errors ({name})", f"wrk: {value} {name} socket errors", value)
        tally.fail("non-2xx", f"wrk: {result.non_2xx} non-2xx or 3xx responses", result.non_2xx)
        checked = bad_total = 0
        first_bads = []
        for hello, echo, stream, bad, first_bad in lines:
            tally.count("GET /hello", int(hello))
            tally.count("POST /echo", int(echo))
            if int(stream):
                tally.count("GET /stream", int(stream))
            checked += int(hello) + int(echo) + int(stream) + int(bad)
            bad_total += int(bad)
            if first_bad:
                first_bads.append(first_bad)
        # A non-2xx response is in both wrk's count and the script's: counted once, as non-2xx.
        tally.fail("wrong status or body", "; ".join(first_bads), bad_total - result.non_2xx)
        if checked != result.requests:
            tally.fail(
                "count mismatch",
                f"wrk counted {result.requests} responses, the script {checked}",
                abs(result.requests - checked),
            )


def _tail(output: str) -> str:
    """The end of a tool's output on one line, for a failure example."""
    return " ".join(output.split())[-200:]


# --- h2load: cleartext HTTP/2 in short rounds ------------------------------------------------

_H2_COUNTS = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
    r"(\d+) errored, (\d+) timeout",
    re.M,
)


async def h2_load(
    tally: Tally, base: str, bodies: list[Path], pin: list[str], deadline: float
) -> None:
    """h2load rounds until the deadline: 2 connections, 4 streams each, GET /hello and /stream
    (400 requests), then POST /echo (200 requests, the body rotating through POST_SIZES)."""
    turn = 0
    while time.monotonic() < deadline:
        post = turn % 2 == 1
        argv = [*pin, "h2load", "-c2", "-m4"]
        if post:
            body = bodies[(turn // 2) % len(bodies)]
            argv += ["-n200", "-d", str(body), f"{base}/echo"]
            routes = [f"POST /echo ({body.stat().st_size} B)"]
        else:
            argv += ["-n400", f"{base}/hello", f"{base}/stream"]
            routes = ["GET /hello", "GET /stream"]
        turn += 1
        status, out = await run_tool(argv, H2_ROUND_LIMIT)
        tally.runs += 1
        requested = 200 if post else 400
        counts = _H2_COUNTS.search(out)
        parsed = bench.parse_h2load(out)
        if status != 0 or counts is None or parsed.parse_error:
            problem = f"status {status}"
            if status is None:
                problem = f"killed after {H2_ROUND_LIMIT:.0f} s"
            tally.fail(
                "h2load round failed",
                f"{problem}, {parsed.parse_error or 'no summary'}: "
                + (counts.group(0) if counts else _tail(out)),
                requested,
            )
        else:
            total, _, done, succeeded, failed, errored, timeout = map(int, counts.groups())
            for i, route in enumerate(routes):  # h2load takes the URIs in turn
                tally.count(route, succeeded // len(routes) + (i < succeeded % len(routes)))
            if succeeded != total:
                tally.fail(
                    "h2load failed/errored",
                    f"{total} total, {done} done, {succeeded} succeeded, {failed} failed, "
                    f"{errored} errored, {timeout} timeout",
                    total - succeeded,
                )
        await asyncio.sleep(H2_ROUND_PAUSE)


# --- WebSocket clients ----------------------------------------------------------------------

_TEXT_POOL = ("soak h\u00e9llo \u2713 \u00fcnicode \U0001d11e " * 6000)[: 140 * 1024]
_BINARY_POOL = random.Random(6455).randbytes(140 * 1024)


def ws_message(rng: random.Random) -> str | bytes:
    """Text or binary, 1 B to 128 KiB: mostly small frames, some 16-bit lengths, a few 64-bit."""
    roll = rng.random()
    if roll < 0.7:
        size = rng.randint(1, 125)
    elif roll < 0.95:
        size = rng.randint(126, 16 * 1024)
    else:
        size = rng.randint(64 * 1024, 128 * 1024)
    start = rng.randint(0, 8 * 1024)
    if rng.random() < 0.5:
        return _TEXT_POOL[start : start + size]
    return _BINARY_POOL[start : start + size]


async def ws_client(tally: Tally, url: str, rng: random.Random, stop: asyncio.Event) -> None:
    """Echo messages one at a time, a short pause between them, on connections of 100 to 600
    messages, until stop is set; every echo is compared with what was sent."""
    while not stop.is_set():
        try:
            async with connect(url, max_size=1 << 20, open_timeout=10, close_timeout=10) as ws:
                tally.runs += 1
                for _ in range(rng.randint(100, 600)):
                    if stop.is_set():
                        break
                    message = ws_message(rng)
                    await ws.send(message)
                    echo = await asyncio.wait_for(ws.recv(), WS_ECHO_TIMEOUT)
                    if echo == message:  # str != bytes: the type is checked too
                        tally.count("text" if isinstance(message, str) else "binary")
                    else:
                        tally.fail(
                            "wrong echo",
                            f"sent {type(message).__name__} of {len(message)}, "
                            f"got {type(echo).__name__} of {len(echo)}",
                        )
                    await asyncio.sleep(rng.uniform(0.01, 0.05))
            if ws.close_code != 1000:
                tally.fail(
                    "unclean close",
                    f"closing handshake ended with {ws.close_code} {ws.close_reason!r}",
                )
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            tally.fail(type(exc).__name__, repr(exc))
            await asyncio.sleep(0.5)


# --- the run ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Soak:
    """What the load phase measured."""

    tallies: list[Tally]
    samples: list[Sample]
    reference: Sample | None = None  # at the end of the warm-up, under load
    load_end: Sample | None = None  # just before the load stopped
    server_cpu_percent: float = 0.0  # mean over the load, % of one core
    load_seconds: float = 0.0


async def drive(
    pid: int, port: int, seconds: float, warmup: float, pin: list[str], tmp: Path
) -> Soak:
    global STARTED
    script = tmp / "soak.lua"
    script.write_text(WRK_SCRIPT)
    bodies = []
    for size in POST_SIZES:
        path = tmp / f"post-{size}.bin"
        path.write_bytes(random.Random(size).randbytes(size))
        bodies.append(path)
    base = f"http://{HOST}:{port}"
    keepalive = Tally(
        "h1-keepalive",
        "HTTP/1.1 keep-alive: wrk, 4 connections, 5 ms pause between requests",
    )
    close = Tally(
        "h1-close",
        "HTTP/1.1 churn: wrk, 2 connections, Connection: close, 20 ms pause",
    )
    h2 = Tally("h2c", "HTTP/2 cleartext: h2load rounds, 2 connections x 4 streams")
    ws = Tally(
        "websocket",
        f"WebSocket echo: {WS_CLIENTS} clients, 1 B-128 KiB, 10-50 ms pause",
        unit="messages",
    )
    soak = Soak([keepalive, close, h2, ws], [])
    stop = asyncio.Event()
    STARTED = time.monotonic()
    deadline = STARTED + seconds
    cpu_before = server_cpu_seconds(pid)
    tasks = [
        asyncio.create_task(wrk_load(keepalive, "keepalive", 4, 5, base, script, pin, deadline)),
        asyncio.create_task(wrk_load(close, "close", 2, 20, base, script, pin, deadline)),
        asyncio.create_task(h2_load(h2, base, bodies, pin, deadline)),
        *(
            asyncio.create_task(ws_client(ws, f"ws://{HOST}:{port}/ws", random.Random(i), stop))
            for i in range(WS_CLIENTS)
        ),
    ]
    try:
        next_sample = STARTED
        next_progress = STARTED + 10
        while (now := time.monotonic()) < deadline:
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise RuntimeError(f"a load generator crashed: {task.exception()!r}")
            if soak.reference is None and now >= STARTED + warmup:
                soak.reference = sample(pid, now - STARTED, "load")
                soak.samples.append(soak.reference)
                print(
                    f"soak: end of warm-up: reference RSS "
                    f"{soak.reference.rss_kib / 1024:.1f} MiB, {soak.reference.fds} fds",
                    file=sys.stderr,
                )
            elif now >= next_sample:
                soak.samples.append(sample(pid, now - STARTED, "load"))
                next_sample += SAMPLE_EVERY
            if now >= next_progress:
                next_progress += 10
                last = soak.samples[-1]
                counts = "  ".join(f"{t.name} {t.ok:,}" for t in soak.tallies)
                failed = sum(t.failed for t in soak.tallies)
                print(
                    f"[{now - STARTED:5.0f}/{seconds:.0f} s] rss {last.rss_kib / 1024:6.1f} MiB "
                    f"fds {last.fds:4}  {counts}  failures {failed}",
                    file=sys.stderr,
                )
            wake = min(next_sample, deadline, next_progress)
            if soak.reference is None:
                wake = min(wake, STARTED + warmup)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))
        soak.load_end = sample(pid, time.monotonic() - STARTED, "load")
        soak.samples.append(soak.load_end)
        soak.load_seconds = time.monotonic() - STARTED
        soak.server_cpu_percent = (
            100 * (server_cpu_seconds(pid) - cpu_before) / max(soak.load_seconds, 1e-9)
        )
        stop.set()
        # wrk and h2load end on their own at the deadline; the WebSocket clients close their
        # connections after the echo in flight.
        _, pending = await asyncio.wait(tasks, timeout=WS_ECHO_TIMEOUT + 30)
        if pending:
            raise RuntimeError(f"{len(pending)} load generators did not stop")
        for task in tasks:
            if (exc := task.exception()) is not None:
                raise RuntimeError(f"a load generator crashed: {exc!r}") from exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return soak


def warmup_seconds(seconds: float) -> float:
    return min(60.0, max(30.0, seconds / 10))


def fd_window(samples: Sequence[Sample], end: float) -> float:
    """The median fd count of the load samples of the WINDOW seconds up to end."""
    window = [s.fds for s in samples if s.phase == "load" and end - WINDOW <= s.t <= end]
    return statistics.median(window) if window else 0.0


def within(value: float, reference: float, two_sided: bool) -> bool:
    if reference <= 0:
        return False
    if two_sided:
        return abs(value - reference) <= TOLERANCE * reference
    return value <= (1 + TOLERANCE) * reference


def run_soak(args: argparse.Namespace) -> int:
    for tool, package in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            print(f"soak: {tool} not found (apt-get install -y {package})", file=sys.stderr)
            return 2
    if problem := bench.raise_fd_limit(4096):
        print(f"soak: {problem}", file=sys.stderr)
        return 2
    pinned = (
        shutil.which("taskset") is not None
        and (os.cpu_count() or 1) >= 2
        and {0, 1} <= os.sched_getaffinity(0)
    )
    if pinned:
        os.sched_setaffinity(0, {int(bench.CLIENT_CPU)})  # this driver and its children
    server_pin = ["taskset", "-c", bench.SERVER_CPU] if pinned else []
    client_pin = ["taskset", "-c", bench.CLIENT_CPU] if pinned else []
    warmup = args.warmup if args.warmup is not None else warmup_seconds(args.seconds)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    log_path = RESULTS_DIR / f"soak-{stamp}.log"
    json_path = RESULTS_DIR / f"soak-{stamp}.json"
    port = args.port or bench.free_port()
    if args.port:
        # wait_for_port would take another program's listener for the server's.
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError as exc:
                print(f"soak: port {port} is not free: {exc}", file=sys.stderr)
                return 2
    meta: dict[str, Any] = {
        "command": " ".join(["bench/soak.py", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "revision": bench._git_revision(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "pinned": (
            f"server on CPU {bench.SERVER_CPU}, driver, wrk and h2load on CPU {bench.CLIENT_CPU}"
            if pinned
            else "no (taskset missing or fewer than 2 usable CPUs)"
        ),
        "loop": args.loop or "default (auto)",
        "seconds": args.seconds,
        "warmup_seconds": warmup,
        "port": port,
        "server_log": str(log_path.relative_to(bench.REPO_DIR)),
    }
    print(
        f"soak: {args.seconds:.0f} s of mixed load (warm-up {warmup:.0f} s) on port {port}; "
        f"pinned: {meta['pinned']}",
        file=sys.stderr,
    )
    tmp = Path(tempfile.mkdtemp(prefix="laurelin-soak-"))
    proc = start_server(port, args.loop, server_pin, log_path)
    interrupted = False
    soak: Soak | None = None
    checks_before: dict[str, str] = {}
    checks_after: dict[str, str] = {}
    idle_before: Sample | None = None
    idle_after: Sample | None = None
    vmhwm = 0
    exit_status: int | None = None
    error: str | None = None
    try:
        if not bench.wait_for_port(port, proc):
            error = f"the server did not accept on port {port} (exit {proc.poll()})"
        elif checks_before := check_server(port):
            error = f"the checks before the load failed: {checks_before}"
        else:
            time.sleep(1.0)  # the checks' connections closed
            idle_before = sample(proc.pid, -1.0, "idle-before")
            soak = asyncio.run(drive(proc.pid, port, args.seconds, warmup, client_pin, tmp))
            soak.samples.insert(0, idle_before)
            time.sleep(SETTLE)
            if proc.poll() is None:
                idle_after = sample(proc.pid, soak.load_seconds + SETTLE, "idle-after")
                soak.samples.append(idle_after)
                vmhwm = sum(bench.vm_kib(p, "VmHWM") for p in bench.process_tree(proc.pid))
                checks_after = check_server(port)
    except KeyboardInterrupt:
        interrupted = True
    except RuntimeError as exc:
        error = str(exc)
    finally:
        if proc.poll() is not None:
            exit_status = proc.returncode
        bench.stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    if interrupted:
        print("soak: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    log_text = log_path.read_text(errors="replace")
    errors_logged = [
        line
        for line in log_text.splitlines()
        if "Traceback" in line or re.search(r"\bERROR\b|\bCRITICAL\b", line)
    ]

    report: dict[str, Any] = {"meta": meta}
    criteria: list[tuple[str, bool, str]] = []
    if error is not None or soak is None or idle_before is None:
        criteria.append(("the soak ran", False, error or "no result"))
    else:
        failed = sum(t.failed for t in soak.tallies)
        idle_kinds = [t.name for t in soak.tallies if t.ok == 0]
        criteria.append(
            (
                "zero failed requests and messages",
                failed == 0,
                f"{failed} failed" + (f" ({_failures(soak.tallies)})" if failed else ""),
            )
        )
        criteria.append(
            (
                "every kind of load completed requests",
                not idle_kinds,
                f"none completed: {', '.join(idle_kinds)}" if idle_kinds else "all four",
            )
        )
        ref = soak.reference
        if ref is None or idle_after is None or soak.load_end is None:
            criteria.append(("server up to the end", False, f"exit status {exit_status}"))
        else:
            change = (idle_after.rss_kib - ref.rss_kib) / ref.rss_kib * 100
            criteria.append(
                (
                    "RSS after the load <= reference + 10%",
                    within(idle_after.rss_kib, ref.rss_kib, two_sided=False),
                    f"{idle_after.rss_kib / 1024:.1f} MiB vs {ref.rss_kib / 1024:.1f} MiB at "
                    f"the end of the warm-up ({change:+.1f}%)",
                )
            )
            fd_ref = fd_window(soak.samples, ref.t)
            fd_end = fd_window(soak.samples, soak.load_end.t)
            criteria.append(
                (
                    "fds under load at the end within 10% of the end of the warm-up",
                    within(fd_end, fd_ref, two_sided=True),
                    f"median {fd_end:g} over the last {WINDOW:.0f} s vs {fd_ref:g} over the "
                    f"last {WINDOW:.0f} s of the warm-up",
                )
            )
            criteria.append(
                (
                    "fds with the load stopped <= before the load + 10%",
                    within(idle_after.fds, idle_before.fds, two_sided=False),
                    f"{idle_after.fds} after vs {idle_before.fds} before",
                )
            )
            criteria.append(
                (
                    "a fresh client served on every protocol afterwards",
                    not checks_after,
                    "; ".join(f"{k}: {v}" for k, v in checks_after.items()) or "all 5 checks",
                )
            )
        criteria.append(
            (
                "no error or traceback in the server's output",
                not errors_logged,
                f"{len(errors_logged)} lines, first: {errors_logged[0][:200]}"
                if errors_logged
                else f"{len(log_text.splitlines())} lines logged (-v 0: warnings and up)",
            )
        )
        report.update(
            load_seconds=round(soak.load_seconds, 1),
            server_cpu_percent=round(soak.server_cpu_percent, 1),
            load=[dataclasses.asdict(t) for t in soak.tallies],
            memory={
                "rss_idle_before_kib": idle_before.rss_kib,
                "rss_reference_kib": ref.rss_kib if ref else None,
                "rss_load_end_kib": soak.load_end.rss_kib if soak.load_end else None,
                "rss_after_kib": idle_after.rss_kib if idle_after else None,
                "rss_peak_sampled_kib": max(s.rss_kib for s in soak.samples),
                "vmhwm_kib": vmhwm,
            },
            fds={
                "idle_before": idle_before.fds,
                "reference_at_warmup": ref.fds if ref else None,
                "reference_window_median": fd_window(soak.samples, ref.t) if ref else None,
                "load_end": soak.load_end.fds if soak.load_end else None,
                "load_end_window_median": (
                    fd_window(soak.samples, soak.load_end.t) if soak.load_end else None
                ),
                "idle_after": idle_after.fds if idle_after else None,
                "peak_sampled": max(s.fds for s in soak.samples),
            },
            checks_after=checks_after,
        )
    passed = all(ok for _, ok, _ in criteria)
    report.update(
        passed=passed,
        criteria=[{"criterion": c, "passed": ok, "detail": d} for c, ok, d in criteria],
        server_exit_status=exit_status,
        server_errors_logged=errors_logged[:20],
        samples=[dataclasses.asdict(s) for s in soak.samples] if soak else [],
    )
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    print(render(report, soak))
    print(f"soak: {'PASSED' if passed else 'FAILED'}; JSON in {json_path}", file=sys.stderr)
    return 0 if passed else 1


def _failures(tallies: Sequence[Tally]) -> str:
    return "; ".join(
        f"{t.name}: " + ", ".join(f"{k} {v}" for k, v in t.failures.items())
        for t in tallies
        if t.failed
    )


def render(report: dict[str, Any], soak: Soak | None) -> str:
    """The summary: the load table, the RSS and fd table, the criteria (Markdown)."""
    lines: list[str] = []
    add = lines.append
    meta = report["meta"]
    add(f"## laurelin soak, {meta['date']} ({meta['revision']})")
    add("")
    add(
        f"{meta['seconds']:.0f} s of load (warm-up {meta['warmup_seconds']:.0f} s), "
        f"Python {meta['python']}, loop {meta['loop']}, pinned: {meta['pinned']}."
    )
    if soak is not None:
        add(f"Server CPU over the load: {soak.server_cpu_percent:.0f}% of one core.")
        add("")
        add("| load | what | completed | failed | runs |")
        add("|---|---|---:|---:|---:|")
        for t in soak.tallies:
            routes = ", ".join(f"{k} {v:,}" for k, v in t.by_route.items())
            runs = {"h1-keepalive": "wrk runs", "h1-close": "wrk runs", "h2c": "rounds"}.get(
                t.name, "connections"
            )
            add(
                f"| {t.name} | {t.description} | {t.ok:,} {t.unit} ({routes}) | {t.failed:,} | "
                f"{t.runs:,} {runs} |"
            )
        total = sum(t.ok for t in soak.tallies)
        add(f"| **total** | | **{total:,}** | **{sum(t.failed for t in soak.tallies):,}** | |")
        for t in soak.tallies:
            for example in t.examples:
                add(f"- {t.name} failure: {example}")
        mem, fds = report["memory"], report["fds"]

        def mib(kib: int | None) -> str:
            return "-" if not kib else f"{kib / 1024:.1f}"

        add("")
        add("| server | idle before | end of warm-up (reference) | end of load | peak | after |")
        add("|---|---:|---:|---:|---:|---:|")
        add(
            f"| RSS, MiB | {mib(mem['rss_idle_before_kib'])} | {mib(mem['rss_reference_kib'])} "
            f"| {mib(mem['rss_load_end_kib'])} | {mib(mem['rss_peak_sampled_kib'])} sampled, "
            f"{mib(mem['vmhwm_kib'])} VmHWM | {mib(mem['rss_after_kib'])} |"
        )
        add(
            f"| open fds | {fds['idle_before']} | {fds['reference_at_warmup']} "
            f"(median {fds['reference_window_median']}) | {fds['load_end']} "
            f"(median {fds['load_end_window_median']}) | {fds['peak_sampled']} | "
            f"{fds['idle_after']} |"
        )
    add("")
    add("| criterion | | detail |")
    add("|---|---|---|")
    for c in report["criteria"]:
        add(f"| {c['criterion']} | {'PASS' if c['passed'] else '**FAIL**'} | {c['detail']} |")
    add("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/soak.py",
        description="Soak laurelin: mixed HTTP/1.1 (wrk), HTTP/2 (h2load) and WebSocket load on "
        "one server process; exit 0 only if nothing failed and RSS and open files stayed flat.",
    )
    parser.add_argument("--seconds", type=float, default=600.0, help="load duration (default 600)")
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default=None,
        help="the server's event loop (default: laurelin's default, auto)",
    )
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="warm-up seconds (default 10%% of --seconds, at least 30, at most 60)",
    )
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else warmup_seconds(args.seconds)
    if warmup < WINDOW or args.seconds < warmup + WINDOW:
        parser.error(
            f"the warm-up must last {WINDOW:.0f} s at least and the load {WINDOW:.0f} s longer "
            f"(warm-up {warmup:g} s, --seconds {args.seconds:g})"
        )
    if not 0 <= args.port < 65536:
        parser.error("--port must be between 1 and 65535 (0: a free port)")
    return args


def _exit_on_signal(signum: int, _frame: object) -> None:
    # Unwinds like Ctrl-C: the load is cancelled and the server stopped.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    return run_soak(args)


if __name__ == "__main__":
    sys.exit(main())
