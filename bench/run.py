# bench/run.py — the benchmark driver: starts each server on CPU 1, drives it with wrk on CPU 0,
# and writes the Markdown report (stdout and bench/results/latest.md, raw data as JSON).
#
# Called by bench/run.sh, which builds the venvs and passes --venvs. Standard library only.
# For each round, each workload and each server: wait for an idle machine, start the server (one
# worker, pinned), wait until its port accepts, check one response by hand, warm up with wrk,
# measure with wrk, read the peak RSS (VmHWM) of the server's processes, stop it; repeat the run
# if other processes took CPU meanwhile. Medians over rounds are reported. laurelin runs from a
# copy of src/laurelin taken at the start, so edits made during the benchmark do not leak in.
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"
SERVER_CPU = "1"
WRK_CPU = "0"
APP = "apps:app"

HELLO = b"Hello, world!"
POST_BODY = b"p" * 4096
MIB = 1024 * 1024
STREAM_BODY = b"y" * 4096 * 16  # HELLO, MIB and STREAM_BODY match bench/apps.py


# --- servers -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    # The command line without taskset; the first word is a script in the venv's bin/ and
    # "{port}" stands for the port.
    command: tuple[str, ...]
    # Packages whose versions go in the report.
    packages: tuple[str, ...]

    def argv(self, bin_dir: Path, port: str) -> list[str]:
        first, *rest = (word.replace("{port}", port) for word in self.command)
        return [str(bin_dir / first), *rest]


SERVERS: dict[str, Server] = {
    s.name: s
    for s in (
        Server(
            "laurelin",
            ("laurelin", "-b", HOST, "-p", "{port}", "-v", "0", "--no-access-log", APP),
            ("laurelin", "httptools", "uvloop"),
        ),
        Server(
            "uvicorn",
            (
                *("uvicorn", "--host", HOST, "--port", "{port}", "--http", "httptools"),
                *("--loop", "uvloop", "--no-access-log", "--log-level", "warning", APP),
            ),
            ("uvicorn", "httptools", "uvloop"),
        ),
        Server(
            "hypercorn",
            (
                *("hypercorn", "-b", f"{HOST}:{{port}}", "-w", "1", "-k", "uvloop"),
                *("--log-level", "warning", APP),
            ),
            ("hypercorn", "h11", "uvloop"),
        ),
        Server(
            "daphne",
            ("daphne", "-v", "0", "-b", HOST, "-p", "{port}", APP),
            ("daphne", "twisted"),
        ),
        Server(
            "granian",
            (
                *("granian", "--interface", "asgi", "--workers", "1", "--runtime-threads", "1"),
                *("--loop", "uvloop", "--log-level", "warning"),
                *("--host", HOST, "--port", "{port}", APP),
            ),
            ("granian", "uvloop"),
        ),
    )
}


# --- workloads -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    path: str
    wrk_args: tuple[str, ...]
    description: str


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("hello", "/hello", (), "GET /hello, 13-byte body, keep-alive"),
        Workload(
            "close",
            "/hello",
            ("-H", "Connection: close"),
            "GET /hello with `Connection: close`: one TCP connection per request",
        ),
        Workload(
            "post",
            "/echo",
            ("-s", str(BENCH_DIR / "post.lua")),
            "POST /echo with a 4096-byte body; the app reads it all and echoes it",
        ),
        Workload("1mib", "/1mib", (), "GET /1mib: a 1 MiB body sent in one message"),
        Workload(
            "stream",
            "/stream",
            (),
            "GET /stream: 16 x 4 KiB body messages with more_body=True (chunked)",
        ),
    )
}


def check_response(workload: Workload, port: int) -> str | None:
    """Make one request by hand and check the answer; None when it is right, else the problem."""
    try:
        if workload.name == "close":
            return _check_close(port)
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            if workload.name == "post":
                conn.request("POST", workload.path, body=POST_BODY)
            else:
                conn.request("GET", workload.path)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return f"request failed: {exc!r}"
    if resp.status != 200:
        return f"status {resp.status}"
    expected = {
        "hello": HELLO,
        "post": POST_BODY,
        "1mib": b"x" * MIB,
        "stream": STREAM_BODY,
    }[workload.name]
    if body != expected:
        return f"wrong body: {len(body)} bytes, expected {len(expected)}"
    return None


def _check_close(port: int) -> str | None:
    """Connection: close must get the response and then end of stream from the server."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    if not data.startswith(b"HTTP/1.1 200"):
        return f"unexpected response start {data[:40]!r}"
    if not data.endswith(HELLO):
        return "response does not end with the body"
    return None


# --- wrk -----------------------------------------------------------------------------------


@dataclasses.dataclass
class WrkResult:
    requests_per_sec: float = 0.0
    requests: int = 0
    latency_avg_ms: float = 0.0
    latency_max_ms: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    socket_errors: dict[str, int] = dataclasses.field(default_factory=dict)
    non_2xx: int = 0
    parse_error: str = ""

    @property
    def error_count(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """Pick wrk's summary apart (wrk 4.x text output, run with --latency)."""
    result = WrkResult()
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not rps:
        result.parse_error = "no Requests/sec line in wrk output"
        return result
    result.requests_per_sec = float(rps.group(1))
    if m := re.search(r"^\s*(\d+) requests in", output, re.M):
        result.requests = int(m.group(1))
    if m := re.search(rf"^\s*Latency\s+{_DURATION}\s+\S+\s+{_DURATION}", output, re.M):
        result.latency_avg_ms = _ms(m.group(1), m.group(2))
        result.latency_max_ms = _ms(m.group(3), m.group(4))
    if m := re.search(rf"^\s*50%\s+{_DURATION}", output, re.M):
        result.latency_p50_ms = _ms(m.group(1), m.group(2))
    if m := re.search(rf"^\s*99%\s+{_DURATION}", output, re.M):
        result.latency_p99_ms = _ms(m.group(1), m.group(2))
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        names = ("connect", "read", "write", "timeout")
        result.socket_errors = {n: int(v) for n, v in zip(names, m.groups(), strict=True)}
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        result.non_2xx = int(m.group(1))
    return result


def _wrk_errors(result: WrkResult) -> str:
    parts = [f"{k} {v}" for k, v in result.socket_errors.items() if v]
    if result.non_2xx:
        parts.append(f"non-2xx {result.non_2xx}")
    return ", ".join(parts)


def wrk_command(
    workload: Workload, port: int, duration: int, connections: int, latency: bool
) -> list[str]:
    argv = ["taskset", "-c", WRK_CPU, "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    if latency:
        argv.append("--latency")
    return [*argv, *workload.wrk_args, f"http://{HOST}:{port}{workload.path}"]


def run_wrk(argv: Sequence[str], duration: int) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    return proc.returncode, proc.stdout + proc.stderr


# --- server processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def process_tree(root: int) -> list[int]:
    """root and all its descendants, found through /proc/*/stat."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
    tree = [root]
    for pid in tree:
        tree.extend(child for child, parent in parents.items() if parent == pid)
    return tree


def vm_hwm_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(m.group(1)) if m else 0


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it was started in its own session), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Children left behind by a parent that exited first.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# --- CPU accounting: how busy the server and wrk were, and how much else ran meanwhile --------
#
# The machine may be shared, so every measured run also records "other": user + system time on
# both CPUs that was neither the server's, wrk's nor this driver's (IRQ and softirq time, where
# the loopback network work lands, is left out on every side). Before each run the driver waits
# for the machine to be quiet, and a run with too much other load is repeated.

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> tuple[int, int]:
    """Both CPUs together, from /proc/stat: (user + nice + system ticks, steal ticks)."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name == "cpu":
            v = [int(x) for x in values]
            return v[0] + v[1] + v[2], v[7] if len(v) > 7 else 0
    return 0, 0


def _process_ticks(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, all threads
    return total


def _rusage_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass
class CpuUse:
    """Percent of one CPU over the measured run."""

    server: float = 0.0  # the server's processes (pinned to SERVER_CPU)
    wrk: float = 0.0  # wrk (pinned to WRK_CPU): this driver's reaped children
    other: float = 0.0  # everything else, on either CPU
    steal: float = 0.0  # hypervisor steal, both CPUs


@dataclasses.dataclass
class CpuSnapshot:
    when: float
    busy: int
    steal: int
    server: int
    children: float
    driver: float

    @classmethod
    def take(cls, pids: Sequence[int]) -> CpuSnapshot:
        busy, steal = _cpu_ticks()
        return cls(
            time.monotonic(),
            busy,
            steal,
            _process_ticks(pids),
            _rusage_seconds(resource.RUSAGE_CHILDREN),
            _rusage_seconds(resource.RUSAGE_SELF),
        )

    def since(self, before: CpuSnapshot) -> CpuUse:
        ticks = (self.when - before.when) * CLK_TCK
        if ticks <= 0:
            return CpuUse()
        server = self.server - before.server
        wrk = (self.children - before.children) * CLK_TCK
        driver = (self.driver - before.driver) * CLK_TCK
        other = (self.busy - before.busy) - server - wrk - driver
        pct = 100 / ticks
        return CpuUse(
            server=server * pct,
            wrk=wrk * pct,
            other=max(0.0, other) * pct,
            steal=(self.steal - before.steal) * pct,
        )


def wait_for_quiet(limit: float, threshold: float) -> float:
    """Wait until the machine is idle (under threshold % of one CPU busy over 1 s), at most
    limit seconds; return the busy percentage last seen."""
    deadline = time.monotonic() + limit
    while True:
        before = CpuSnapshot.take(())
        time.sleep(1.0)
        load = CpuSnapshot.take(()).since(before).other
        if load < threshold or time.monotonic() >= deadline:
            return load
        time.sleep(1.0)


# --- laurelin's source: one fixed copy for the whole benchmark ------------------------------


@dataclasses.dataclass(frozen=True)
class Paths:
    venvs: Path
    # A copy of src/ (holding laurelin/) put first on laurelin's PYTHONPATH, or None to run the
    # editable install straight from the working tree.
    laurelin_snapshot: Path | None


def snapshot_laurelin(dest: Path) -> str:
    """Copy src/laurelin under dest, so that every laurelin run of this benchmark uses the code
    as it was at the start even if the working tree changes meanwhile; return its digest."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(
        REPO_DIR / "src" / "laurelin",
        dest / "laurelin",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return source_digest(dest / "laurelin")


def source_digest(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def imported_from(venv: Path, pythonpath: Path) -> str:
    """Where the laurelin venv's Python imports laurelin from, given the snapshot path."""
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import laurelin; print(laurelin.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(pythonpath)),
    )
    return proc.stdout.strip()


# --- one run -------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    server: str
    workload: str
    round: int
    wrk: WrkResult
    cpu: CpuUse = dataclasses.field(default_factory=CpuUse)
    rss_kib: int = 0
    rss_largest_kib: int = 0
    processes: int = 0
    exit_status: int | None = None
    attempts: int = 1
    load_before: float = 0.0
    problems: list[str] = dataclasses.field(default_factory=list)
    log: str = ""

    @property
    def flagged(self) -> bool:
        return bool(self.problems) or self.wrk.error_count > 0


def measure(
    server: Server, workload: Workload, rnd: int, args: argparse.Namespace, paths: Paths
) -> Run:
    """One (server, workload, round) measurement, repeated while other load spoils it; the
    attempt with the least other load is kept."""
    best: Run | None = None
    attempts = 0
    while attempts <= args.retries:
        attempts += 1
        load = wait_for_quiet(args.quiet_wait, args.max_other)
        run = run_one(server, workload, rnd, args, paths)
        run.load_before = load
        if best is None or run.cpu.other < best.cpu.other:
            best = run
        if run.cpu.other <= args.max_other or run.wrk.requests_per_sec == 0:
            break
    assert best is not None
    best.attempts = attempts
    return best


def run_one(
    server: Server,
    workload: Workload,
    rnd: int,
    args: argparse.Namespace,
    paths: Paths,
) -> Run:
    port = free_port()
    bin_dir = paths.venvs / server.name / "bin"
    argv = ["taskset", "-c", SERVER_CPU, *server.argv(bin_dir, str(port))]
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{server.name}-{workload.name}-r{rnd}.log"
    pythonpath = [str(BENCH_DIR)]
    if server.name == "laurelin" and paths.laurelin_snapshot is not None:
        pythonpath.insert(0, str(paths.laurelin_snapshot))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath), PYTHONUNBUFFERED="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    run = Run(server.name, workload.name, rnd, WrkResult())
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=BENCH_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _drive(proc, port, server, workload, args, run)
        finally:
            stop(proc)
    run.exit_status = proc.returncode
    run.log = log_path.read_text(errors="replace")
    return run


def _drive(
    proc: subprocess.Popen[bytes],
    port: int,
    server: Server,
    workload: Workload,
    args: argparse.Namespace,
    run: Run,
) -> None:
    if not wait_for_port(port, proc):
        run.problems.append(f"server did not accept on port {port} (exit {proc.poll()})")
        return
    if problem := check_response(workload, port):
        run.problems.append(f"response check: {problem}")
    if args.warmup > 0:
        argv = wrk_command(workload, port, args.warmup, args.connections, False)
        warm = parse_wrk(run_wrk(argv, args.warmup)[1])
        if warm.error_count or warm.parse_error:
            run.problems.append(f"warm-up: {_wrk_errors(warm) or warm.parse_error}")
    pids = process_tree(proc.pid)
    before = CpuSnapshot.take(pids)
    code, output = run_wrk(
        wrk_command(workload, port, args.duration, args.connections, True), args.duration
    )
    run.cpu = CpuSnapshot.take(pids).since(before)
    run.wrk = parse_wrk(output)
    if code != 0:
        run.problems.append(f"wrk exited {code}")
    if run.wrk.parse_error:
        run.problems.append(run.wrk.parse_error + ": " + output.strip()[-300:])
    if proc.poll() is not None:
        run.problems.append(f"server exited during the run (status {proc.returncode})")
        return
    pids = process_tree(proc.pid)
    run.processes = len(pids)
    hwm = [vm_hwm_kib(pid) for pid in pids]
    run.rss_kib = sum(hwm)
    run.rss_largest_kib = max(hwm)


# --- report --------------------------------------------------------------------------------


def venv_info(venv: Path, packages: Sequence[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, platform, sys\n"
        "out = {'python': platform.python_implementation() + ' ' + platform.python_version()}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code, *packages],
        capture_output=True,
        text=True,
        check=True,
    )
    info: dict[str, str] = json.loads(proc.stdout)
    return info


def _git_revision() -> str:
    proc = subprocess.run(
        ["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _wrk_version() -> str:
    proc = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"wrk (\S+)", proc.stdout + proc.stderr)
    return f"wrk {m.group(1)}" if m else "wrk (unknown version)"


def _fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


@dataclasses.dataclass
class Cell:
    rps: float
    rps_low: float
    rps_high: float
    latency_avg_ms: float
    latency_p99_ms: float
    rss_kib: int
    rss_largest_kib: int
    processes: int
    flagged: bool
    rounds: int
    server_cpu: float
    wrk_cpu: float


def summarize(runs: Sequence[Run]) -> Cell:
    good = [r for r in runs if r.wrk.requests_per_sec > 0] or list(runs)
    return Cell(
        rps=statistics.median(r.wrk.requests_per_sec for r in good),
        rps_low=min(r.wrk.requests_per_sec for r in good),
        rps_high=max(r.wrk.requests_per_sec for r in good),
        latency_avg_ms=statistics.median(r.wrk.latency_avg_ms for r in good),
        latency_p99_ms=statistics.median(r.wrk.latency_p99_ms for r in good),
        rss_kib=max(r.rss_kib for r in runs),
        rss_largest_kib=max(r.rss_largest_kib for r in runs),
        processes=max(r.processes for r in runs),
        flagged=any(r.flagged for r in runs),
        rounds=len(good),
        server_cpu=statistics.median(r.cpu.server for r in good),
        wrk_cpu=statistics.median(r.cpu.wrk for r in good),
    )


def render(
    runs: Sequence[Run],
    servers: Sequence[Server],
    workloads: Sequence[Workload],
    args: argparse.Namespace,
    meta: dict[str, Any],
) -> str:
    cells: dict[tuple[str, str], Cell] = {}
    for s in servers:
        for w in workloads:
            mine = [r for r in runs if r.server == s.name and r.workload == w.name]
            if mine:
                cells[s.name, w.name] = summarize(mine)
    names = [s.name for s in servers]
    others = [n for n in names if n != "laurelin"] if "laurelin" in names else []
    lines: list[str] = []
    add = lines.append

    add(f"Command: `{meta['command']}`  ")
    add(f"Date: {meta['date']}  ")
    add(f"Python: {meta['python']} (every server)  ")
    add(f"laurelin revision: {meta['revision']}  ")
    if "laurelin_source" in meta:
        add(f"laurelin source: {meta['laurelin_source']}  ")
    add(f"Machine: {meta['cpu']}, {meta['cpus']} CPUs, Linux {meta['kernel']}  ")
    add(
        f"Method: server on `taskset -c {SERVER_CPU}` (one worker), "
        f"`taskset -c {WRK_CPU} wrk -t1 -c{args.connections} -d{args.duration}s --latency` "
        f"after a {args.warmup} s warm-up; {args.rounds} round(s), median shown; "
        f"{meta['wrk']}"
    )
    add("")
    add(f"### Requests/sec (median of {args.rounds})")
    add("")
    header = ["workload", *names, *(f"laurelin vs {o}" for o in others)]
    add("| " + " | ".join(header) + " |")
    add("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for w in workloads:
        row = [w.name]
        for n in names:
            c = cells.get((n, w.name))
            row.append("-" if c is None else _fmt_rps(c.rps) + (" (!)" if c.flagged else ""))
        ours = cells.get(("laurelin", w.name))
        for o in others:
            theirs = cells.get((o, w.name))
            if ours is None or theirs is None or theirs.rps == 0:
                row.append("-")
            else:
                row.append(f"{ours.rps / theirs.rps:.2f}x {o}")
        add("| " + " | ".join(row) + " |")
    add("")
    if any(c.flagged for c in cells.values()):
        add("(!) = at least one round had socket errors, non-2xx responses, a failed response")
        add("check or a server exit; see Errors below.")
        add("")
    if args.rounds > 1:
        add("### Requests/sec, spread over rounds (lowest - highest)")
        add("")
        add("| workload | " + " | ".join(names) + " |")
        add("|---|" + "---:|" * len(names))
        for w in workloads:
            row = [w.name]
            for n in names:
                c = cells.get((n, w.name))
                row.append("-" if c is None else f"{_fmt_rps(c.rps_low)} - {_fmt_rps(c.rps_high)}")
            add("| " + " | ".join(row) + " |")
        add("")
    add("### Latency, ms (median of rounds: average / 99th percentile)")
    add("")
    add("| workload | " + " | ".join(names) + " |")
    add("|---|" + "---:|" * len(names))
    for w in workloads:
        row = [w.name]
        for n in names:
            c = cells.get((n, w.name))
            row.append(
                "-" if c is None else f"{_fmt_ms(c.latency_avg_ms)} / {_fmt_ms(c.latency_p99_ms)}"
            )
        add("| " + " | ".join(row) + " |")
    add("")
    add("### Peak RSS, MiB (VmHWM at the end of the run, max over rounds)")
    add("")
    add("| workload | " + " | ".join(names) + " |")
    add("|---|" + "---:|" * len(names))
    peak: dict[str, int] = {}
    largest: dict[str, int] = {}
    for w in workloads:
        row = [w.name]
        for n in names:
            c = cells.get((n, w.name))
            if c is None:
                row.append("-")
                continue
            peak[n] = max(peak.get(n, 0), c.rss_kib)
            largest[n] = max(largest.get(n, 0), c.rss_largest_kib)
            row.append(f"{c.rss_kib / 1024:.1f}" if c.rss_kib else "-")
        add("| " + " | ".join(row) + " |")
    add("| **max** | " + " | ".join(f"**{peak.get(n, 0) / 1024:.1f}**" for n in names) + " |")
    multi = [n for n in names if any(c.processes > 1 for (m, _), c in cells.items() if m == n)]
    if multi:
        add(
            "| max, largest process | "
            + " | ".join(f"{largest.get(n, 0) / 1024:.1f}" for n in names)
            + " |"
        )
        add("")
        add(
            "RSS is summed over all of a server's processes (VmHWM of each); "
            f"more than one process: {', '.join(multi)}. "
            "The last row is the largest single process (the worker)."
        )
    add("")
    add(f"### CPU use, % of one core (median: server on CPU {SERVER_CPU} / wrk on CPU {WRK_CPU})")
    add("")
    add("| workload | " + " | ".join(names) + " |")
    add("|---|" + "---:|" * len(names))
    for w in workloads:
        row = [w.name]
        for n in names:
            c = cells.get((n, w.name))
            row.append("-" if c is None else f"{c.server_cpu:.0f} / {c.wrk_cpu:.0f}")
        add("| " + " | ".join(row) + " |")
    add("")
    measured = [r for r in runs if r.wrk.requests_per_sec > 0]
    if measured:
        worst = max(measured, key=lambda r: r.cpu.other)
        repeated = sum(r.attempts - 1 for r in runs)
        add(
            "Other load during the measured runs (user + system CPU time of processes other "
            "than the server, wrk and this driver, in % of one core): "
            f"median {statistics.median(r.cpu.other for r in measured):.1f}%, "
            f"worst {worst.cpu.other:.1f}% ({worst.server} / {worst.workload} / "
            f"round {worst.round}); steal median "
            f"{statistics.median(r.cpu.steal for r in measured):.1f}%. "
            f"Runs repeated because other load exceeded {args.max_other:g}%: {repeated}."
        )
        noisy_runs = [r for r in measured if r.cpu.other > args.max_other]
        if noisy_runs:
            add("")
            add(
                f"Kept runs still above {args.max_other:g}% other load after "
                f"{args.retries} repeat(s): "
                + ", ".join(
                    f"{r.server} / {r.workload} / r{r.round} ({r.cpu.other:.0f}%)"
                    for r in noisy_runs
                )
                + "."
            )
        add("")
    add("### Servers")
    add("")
    add("| server | versions | command (after `taskset -c 1`) |")
    add("|---|---|---|")
    for s in servers:
        versions = ", ".join(
            f"{k} {v}" for k, v in meta["versions"][s.name].items() if k != "python"
        )
        cmd = shlex.join(s.argv(Path(), "PORT"))
        add(f"| {s.name} | {versions} | `{cmd}` |")
    add("")
    add("### Errors")
    add("")
    flagged = [r for r in runs if r.flagged]
    if not flagged:
        add("None: no socket errors, no non-2xx responses, every response check passed.")
    for r in flagged:
        parts = list(r.problems)
        if r.wrk.error_count:
            parts.append(f"wrk errors: {_wrk_errors(r.wrk)} (of {r.wrk.requests} requests)")
        add(f"- {r.server} / {r.workload} / round {r.round}: " + "; ".join(parts))
    odd_exits = [r for r in runs if r.exit_status not in (0, -signal.SIGTERM) and not r.problems]
    if odd_exits:
        add("")
        add("Exit status after SIGTERM other than 0 (not flagged; the numbers are unaffected):")
        add("")
        for r in odd_exits:
            add(f"- {r.server} / {r.workload} / round {r.round}: {r.exit_status}")
    noisy = [r for r in runs if r.log.strip()]
    if not noisy:
        add("")
        add("No server wrote anything to stdout or stderr in any run.")
    else:
        add("")
        add("### Server output (stdout + stderr)")
        add("")
        for r in noisy:
            text = r.log.strip()
            if len(text) > 1500:
                text = text[:1500] + "\n… (truncated; full log in bench/results/logs/)"
            add(f"{r.server} / {r.workload} / round {r.round}:")
            add("")
            add("```")
            add(text)
            add("```")
            add("")
    return "\n".join(lines).rstrip() + "\n"


# --- main ----------------------------------------------------------------------------------


def _names(text: str, known: dict[str, Any], what: str) -> list[str]:
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown {what}: {', '.join(unknown) or '(none)'}; choose from {', '.join(known)}"
        )
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.sh",
        description="Benchmark laurelin against uvicorn, hypercorn, daphne and granian with wrk. "
        "run.sh also takes --python VERSION|PATH (default 3.12, or $BENCH_PYTHON) and "
        "--reinstall.",
    )
    parser.add_argument("--venvs", type=Path, required=True, help="set by run.sh")
    parser.add_argument(
        "--servers",
        type=lambda t: _names(t, SERVERS, "server"),
        default=list(SERVERS),
        help=f"comma-separated (default: {','.join(SERVERS)})",
    )
    parser.add_argument(
        "--workloads",
        type=lambda t: _names(t, WORKLOADS, "workload"),
        default=list(WORKLOADS),
        help=f"comma-separated (default: {','.join(WORKLOADS)})",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per pair (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (default 64)")
    parser.add_argument(
        "--max-other",
        type=float,
        default=10.0,
        help="repeat a run when other processes used more than this %% of one core (default 10)",
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="repeats of a noisy run, at most (default 2)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        help="seconds to wait, at most, for an idle machine before each run (default 60)",
    )
    parser.add_argument(
        "--no-snapshot",
        action="store_true",
        help="run laurelin from the live working tree instead of a copy taken at the start",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR / "latest.md",
        help="Markdown report path; the raw data goes next to it as .json "
        "(default bench/results/latest.md)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1 or args.connections < 1:
        parser.error("--rounds, --duration and --connections must be positive")
    if args.warmup < 0 or args.retries < 0 or args.quiet_wait < 0:
        parser.error("--warmup, --retries and --quiet-wait must not be negative")
    return args


def _exit_on_signal(signum: int, _frame: object) -> None:
    # SystemExit unwinds through run_one's finally, which stops the server under test.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    venvs: Path = args.venvs.resolve()
    servers = [SERVERS[n] for n in args.servers]
    workloads = [WORKLOADS[n] for n in args.workloads]
    versions = {s.name: venv_info(venvs / s.name, s.packages) for s in servers}
    pythons = {v["python"] for v in versions.values()}
    if len(pythons) != 1:
        print(f"bench: the venvs disagree on Python: {versions}", file=sys.stderr)
        return 2
    meta: dict[str, Any] = {
        "command": os.environ.get("BENCH_COMMAND")
        or shlex.join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": pythons.pop(),
        "revision": _git_revision(),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "wrk": _wrk_version(),
        "versions": versions,
    }
    live = REPO_DIR / "src" / "laurelin"
    snapshot: Path | None = None
    if "laurelin" in args.servers and not args.no_snapshot:
        snapshot = BENCH_DIR / ".venvs" / f"snapshot-{os.getpid()}"
        digest = snapshot_laurelin(snapshot)
        where = imported_from(venvs / "laurelin", snapshot)
        if not where.startswith(str(snapshot)):
            print(f"bench: laurelin imports from {where}, not the snapshot", file=sys.stderr)
            shutil.rmtree(snapshot, ignore_errors=True)
            return 2
        meta["laurelin_source"] = (
            f"copy of the working tree taken at the start (sha256 {digest}), "
            "used by every laurelin run"
        )
    else:
        digest = source_digest(live)
        meta["laurelin_source"] = f"the working tree, live (editable install; sha256 {digest})"
    try:
        runs = run_all(servers, workloads, args, Paths(venvs, snapshot))
    finally:
        if snapshot is not None:
            shutil.rmtree(snapshot, ignore_errors=True)
    if "laurelin" in args.servers and source_digest(live) != digest:
        meta["laurelin_source"] += "; src/laurelin changed during the benchmark" + (
            " (not used: the runs kept the copy)" if snapshot else ": runs may mix versions"
        )
    report = render(runs, servers, workloads, args, meta)
    sys.stdout.write(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    raw: dict[str, Any] = {
        "meta": meta,
        "args": {k: str(v) for k, v in vars(args).items()},
        "runs": [dataclasses.asdict(r) for r in runs],
    }
    args.output.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    return 0


def run_all(
    servers: Sequence[Server], workloads: Sequence[Workload], args: argparse.Namespace, paths: Paths
) -> list[Run]:
    """Rounds outermost, servers innermost: slow drift on the machine hits every server alike."""
    total = args.rounds * len(servers) * len(workloads)
    per_run = args.duration + args.warmup + 3  # + start-up, response check, quiet check
    print(f"bench: {total} runs, at least {total * per_run / 60:.0f} min", file=sys.stderr)
    runs: list[Run] = []
    for rnd in range(1, args.rounds + 1):
        for w in workloads:
            for s in servers:
                run = measure(s, w, rnd, args, paths)
                runs.append(run)
                flag = "  FLAGGED: " + "; ".join(run.problems) if run.flagged else ""
                if run.wrk.error_count:
                    flag += f" (wrk errors: {_wrk_errors(run.wrk)})"
                print(
                    f"[{rnd}/{args.rounds}] {w.name:<6} {s.name:<9} "
                    f"{run.wrk.requests_per_sec:>10,.0f} req/s  "
                    f"avg {run.wrk.latency_avg_ms:7.2f} ms  "
                    f"rss {run.rss_kib / 1024:6.1f} MiB  "
                    f"cpu server {run.cpu.server:3.0f}% wrk {run.cpu.wrk:3.0f}% "
                    f"other {run.cpu.other:3.0f}% (attempts {run.attempts}){flag}",
                    file=sys.stderr,
                )
    return runs


if __name__ == "__main__":
    sys.exit(main())
