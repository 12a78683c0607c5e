# bench/run.py — the benchmark driver: starts each server on CPU 1, drives it from CPU 0 with wrk
# (HTTP/1.1 workloads, tls over https), h2load (h2c: cleartext HTTP/2 with prior knowledge) or
# the Node WebSocket client bench/ws/client.mjs (ws-echo, ws-idle), and writes the Markdown report
# (stdout and bench/results/latest.md, raw data as JSON).
#
# Called by bench/run.sh, which builds the venvs and passes --venvs. Standard library only (trustme
# makes the tls certificate when importable, else openssl does); the WebSocket client's npm
# dependencies are installed here (npm ci) when a ws workload needs them.
# For each round, each workload and each server (h2c skips the servers without cleartext HTTP/2):
# wait for an idle machine, start the server (one worker, pinned), wait until its port accepts,
# check one response (or one WebSocket echo) by hand, then
#   HTTP:     warm up with wrk, measure with wrk;
#   h2c:      the same with h2load;
#   ws-echo:  run the client (warm-up and measured window on the same connections);
#   ws-idle:  read the server's VmRSS, open many idle connections with the client, hold them for
#             the run duration, read VmRSS again;
# read the peak RSS (VmHWM) of the server's processes, stop it; repeat the run if other processes
# took CPU meanwhile. Medians over rounds are reported. laurelin runs from a copy of src/laurelin
# taken at the start, so edits made during the benchmark do not leak in.
#
# --workers N (N > 1) is the multi-process variant: each server runs N worker processes with its
# own option (daphne has none and is left out), and neither the server nor the client is pinned:
# both may use every CPU. Before the response check the driver also waits until the server's
# process tree holds its N workers and has gone idle (start-up done); memory and CPU are summed
# over the whole tree, as always. The report says so at the top and in every table title.
from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import datetime as dt
import hashlib
import http.client
import importlib.metadata
import json
import os
import platform
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
HOST = "127.0.0.1"
SERVER_CPU = "1"
CLIENT_CPU = "0"  # wrk or the WebSocket client
APP = "apps:app"
WS_CLIENT_DIR = BENCH_DIR / "ws"
WS_CLIENT = WS_CLIENT_DIR / "client.mjs"

HELLO = b"Hello, world!"
POST_BODY = b"p" * 4096
MIB = 1024 * 1024
STREAM_BODY = b"y" * 4096 * 16  # HELLO, MIB and STREAM_BODY match bench/apps.py
WS_PATH = "/ws"  # the echo route of bench/apps.py
WS_MESSAGE_SIZE = 64


def pin(cpu: str, workers: int) -> list[str]:
    """The taskset prefix pinning a process to cpu in a one-worker run; none in an N-worker run,
    where the server and the client may both use every CPU."""
    return ["taskset", "-c", cpu] if workers == 1 else []


# --- servers -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    # The command line without taskset; the first word is a script in the venv's bin/ and
    # "{port}" stands for the port.
    command: tuple[str, ...]
    # Packages whose versions go in the report.
    packages: tuple[str, ...]
    # Options added, before the app, for the WebSocket workloads only.
    ws_args: tuple[str, ...] = ()
    # Options added, before the app, for the h2c workload; None: the server does not speak
    # cleartext HTTP/2 with prior knowledge, and the h2c workload skips it.
    h2c_args: tuple[str, ...] | None = None
    # Options added, before the app, for the tls workload; "{certfile}" and "{keyfile}" stand for
    # the PEM files made at the start of the benchmark.
    tls_args: tuple[str, ...] = ()
    # The whole command for the tls workload, for a server whose TLS listener replaces its plain
    # one (daphne: an ssl: endpoint instead of -b/-p); None: command plus tls_args.
    tls_command: tuple[str, ...] | None = None
    # Options added, before the app, for --workers N with N > 1 ("{workers}" stands for N, here
    # and in the command, where it is 1 otherwise); None: the server has no option to run several
    # worker processes (daphne), and multi-worker runs leave it out.
    workers_args: tuple[str, ...] | None = None

    def runs(self, workload: Workload) -> bool:
        """Whether the server takes part in the workload (h2c needs cleartext HTTP/2)."""
        return workload.kind != "h2c" or self.h2c_args is not None

    def argv(
        self,
        bin_dir: Path,
        port: str,
        kind: str = "http",
        tls: TlsFiles | None = None,
        workers: int = 1,
    ) -> list[str]:
        """The command line for a workload kind and a number of worker processes; without tls,
        the PEM files are shown as CERT and KEY (for the report)."""
        command = self.command
        extra: tuple[str, ...] = ()
        if kind in ("ws-echo", "ws-idle"):
            extra = self.ws_args
        elif kind == "h2c":
            extra = self.h2c_args or ()
        elif kind == "tls" and self.tls_command is not None:
            command = self.tls_command
        elif kind == "tls":
            extra = self.tls_args
        if workers > 1:
            if self.workers_args is None:
                raise ValueError(f"{self.name} cannot run {workers} worker processes")
            extra = (*self.workers_args, *extra)
        values = {
            "{port}": port,
            "{workers}": str(workers),
            "{certfile}": str(tls.certfile) if tls else "CERT",
            "{keyfile}": str(tls.keyfile) if tls else "KEY",
        }

        def fill(word: str) -> str:
            for key, value in values.items():
                word = word.replace(key, value)
            return word

        first, *rest, app = (fill(word) for word in (*command[:-1], *extra, command[-1]))
        return [str(bin_dir / first), *rest, app]


SERVERS: dict[str, Server] = {
    s.name: s
    for s in (
        Server(
            "laurelin",
            ("laurelin", "-b", HOST, "-p", "{port}", "-v", "0", "--no-access-log", APP),
            ("laurelin", "httptools", "uvloop", "websockets", "h2"),
            h2c_args=(),  # HTTP/1.1 and h2c on the same port (--http auto)
            tls_args=("--ssl-certfile", "{certfile}", "--ssl-keyfile", "{keyfile}"),
            workers_args=("--workers", "{workers}"),
        ),
        Server(
            "uvicorn",
            (
                *("uvicorn", "--host", HOST, "--port", "{port}", "--http", "httptools"),
                *("--loop", "uvloop", "--no-access-log", "--log-level", "warning", APP),
            ),
            ("uvicorn", "httptools", "uvloop", "websockets"),
            # The legacy websockets implementation; it warns that it is deprecated, at start-up.
            ("--ws", "websockets"),
            tls_args=("--ssl-certfile", "{certfile}", "--ssl-keyfile", "{keyfile}"),
            workers_args=("--workers", "{workers}"),
        ),
        Server(
            "hypercorn",
            (
                *("hypercorn", "-b", f"{HOST}:{{port}}", "-w", "{workers}", "-k", "uvloop"),
                *("--log-level", "warning", APP),
            ),
            ("hypercorn", "h11", "h2", "wsproto", "uvloop"),
            # Hypercorn ends a connection after 1,000 requests (keep_alive_max_requests), which
            # h2load counts as errors; the config file raises that limit. bench/ is the servers'
            # working directory.
            h2c_args=("--config", "hypercorn-h2c.toml"),
            tls_args=("--certfile", "{certfile}", "--keyfile", "{keyfile}"),
            workers_args=(),  # -w {workers} in the command
        ),
        Server(
            "daphne",
            ("daphne", "-v", "0", "-b", HOST, "-p", "{port}", APP),
            ("daphne", "twisted", "autobahn", "pyopenssl"),
            tls_command=(
                *("daphne", "-v", "0", "-e"),
                f"ssl:{{port}}:interface={HOST}:privateKey={{keyfile}}:certKey={{certfile}}",
                APP,
            ),
        ),
        Server(
            "granian",
            (
                *("granian", "--interface", "asgi", "--workers", "{workers}"),
                *("--runtime-threads", "1"),
                *("--loop", "uvloop", "--log-level", "warning"),
                *("--host", HOST, "--port", "{port}", APP),
            ),
            ("granian", "uvloop"),
            h2c_args=(),  # --http auto takes HTTP/2 with prior knowledge
            tls_args=("--ssl-certificate", "{certfile}", "--ssl-keyfile", "{keyfile}"),
            workers_args=(),  # --workers {workers} in the command
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
    # "http" (driven by wrk), "tls" (wrk over https), "h2c" (h2load, cleartext HTTP/2 with prior
    # knowledge), "ws-echo" (messages/s) or "ws-idle" (memory per connection).
    kind: str = "http"
    # The ratio the report holds laurelin's rate to: (other server, at least laurelin / other).
    target: tuple[str, float] | None = None

    @property
    def websocket(self) -> bool:
        return self.kind in ("ws-echo", "ws-idle")

    @property
    def rated(self) -> bool:
        """Measured as a rate (requests/s, messages/s) with latency and CPU use."""
        return self.kind != "ws-idle"


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
        Workload(
            "h2c",
            "/hello",
            (),
            "GET /hello over cleartext HTTP/2 with prior knowledge: h2load, "
            "many streams in flight per connection",
            "h2c",
            ("hypercorn", 2.5),
        ),
        Workload(
            "tls",
            "/hello",
            (),
            "GET /hello over HTTP/1.1 on TLS (https), keep-alive",
            "tls",
            ("uvicorn", 1.2),
        ),
        Workload(
            "ws-echo",
            WS_PATH,
            (),
            f"WebSocket echo: {WS_MESSAGE_SIZE}-byte text messages, one in flight per connection",
            "ws-echo",
        ),
        Workload(
            "ws-idle",
            WS_PATH,
            (),
            "idle WebSocket connections held open: server memory per connection",
            "ws-idle",
        ),
    )
}


def check_response(workload: Workload, port: int, tls: TlsFiles | None = None) -> str | None:
    """Make one request by hand and check the answer; None when it is right, else the problem."""
    if workload.websocket:
        try:
            return _check_websocket(port)
        except (OSError, ValueError) as exc:
            return f"WebSocket check failed: {exc!r}"
    if workload.kind == "h2c":
        try:
            return _check_h2c(port, workload.path)
        except (OSError, ValueError) as exc:
            return f"HTTP/2 check failed: {exc!r}"
    try:
        if workload.name == "close":
            return _check_close(port)
        if workload.kind == "tls":
            assert tls is not None
            return _check_tls(port, workload.path, tls)
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


def _check_tls(port: int, path: str, tls: TlsFiles) -> str | None:
    """GET over TLS as wrk does it: no ALPN offered, so the server must answer in HTTP/1.1. The
    certificate must be the one made for the run (it is verified against its CA)."""
    context = ssl.create_default_context(cafile=str(tls.cafile))
    with (
        socket.create_connection((HOST, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as sock,
    ):
        if sock.selected_alpn_protocol() is not None:
            return f"ALPN {sock.selected_alpn_protocol()!r} chosen though none was offered"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        body = resp.read()
    if resp.version != 11 or resp.status != 200:
        return f"answered HTTP/{resp.version / 10:.1f} {resp.status}, not HTTP/1.1 200"
    if body != HELLO:
        return f"wrong body: {len(body)} bytes, expected {len(HELLO)}"
    return None


# A minimal HTTP/2 client (RFC 9113, HPACK of RFC 7541), enough for the h2c check by hand: the
# prior-knowledge preface, one GET, the response's status and body.

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_H2_DATA, _H2_HEADERS, _H2_RST_STREAM, _H2_SETTINGS, _H2_GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
_H2_END_STREAM, _H2_ACK, _H2_END_HEADERS, _H2_PADDED, _H2_PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
# :status values of HPACK's static table (RFC 7541 appendix A), by index.
_HPACK_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def _h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload))[1:] + struct.pack("!BBI", kind, flags, stream) + payload


def _hpack_literal(index: int, value: str) -> bytes:
    """A literal header field without indexing, its name from the static table (index < 15)."""
    data = value.encode()
    assert index < 15 and len(data) < 127
    return bytes([index, len(data)]) + data


def _hpack_status(block: bytes) -> int | None:
    """The :status of a response header block: the first field, once any dynamic table size
    updates are skipped. Servers send it indexed from the static table, or as a literal with a
    plain (not Huffman-coded) value; anything else gives None."""
    i = 0
    while i < len(block) and block[i] & 0xE0 == 0x20:
        i += 1  # dynamic table size update (sizes under 31 only; servers send none)
    if i >= len(block):
        return None
    first = block[i]
    if first & 0x80:
        return _HPACK_STATUS.get(first & 0x7F)
    name = first & (0x3F if first & 0x40 else 0x0F)
    if name != 8 or i + 1 >= len(block) or block[i + 1] & 0x80:
        return None
    size = block[i + 1]
    value = block[i + 2 : i + 2 + size]
    return int(value) if value.isdigit() else None


def _check_h2c(port: int, path: str) -> str | None:
    request = (
        b"\x82\x86"  # :method GET, :scheme http (static table 2 and 6)
        + _hpack_literal(4, path)  # :path
        + _hpack_literal(1, f"{HOST}:{port}")  # :authority
    )
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(
            _H2_PREFACE
            + _h2_frame(_H2_SETTINGS, 0, 0)
            + _h2_frame(_H2_HEADERS, _H2_END_STREAM | _H2_END_HEADERS, 1, request)
        )
        reader = sock.makefile("rb")
        status: int | None = None
        body = b""
        first = True
        while True:
            head = _read_exact(reader, 9)
            length = int.from_bytes(head[:3], "big")
            kind, flags = head[3], head[4]
            if first and (kind != _H2_SETTINGS or flags & _H2_ACK):
                return f"no HTTP/2 server preface: the server sent {head!r} first"
            first = False
            stream = int.from_bytes(head[5:], "big") & 0x7FFFFFFF
            payload = _read_exact(reader, length)
            if kind == _H2_SETTINGS and not flags & _H2_ACK:
                sock.sendall(_h2_frame(_H2_SETTINGS, _H2_ACK, 0))
            elif kind == _H2_GOAWAY:
                return f"GOAWAY (error code {int.from_bytes(payload[4:8], 'big')})"
            elif kind == _H2_RST_STREAM and stream == 1:
                return f"RST_STREAM (error code {int.from_bytes(payload[:4], 'big')})"
            elif kind in (_H2_HEADERS, _H2_DATA) and stream == 1:
                if flags & _H2_PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                if kind == _H2_DATA:
                    body += payload
                elif status is None:
                    if not flags & _H2_END_HEADERS:
                        return "response headers in CONTINUATION frames (not handled)"
                    if flags & _H2_PRIORITY:
                        payload = payload[5:]
                    status = _hpack_status(payload)
                    if status is None:
                        return f"could not read :status from {payload[:16].hex()}"
                if flags & _H2_END_STREAM:
                    break
        sock.sendall(_h2_frame(_H2_GOAWAY, 0, 0, struct.pack("!II", 1, 0)))
    if status != 200:
        return f"status {status}"
    if body != HELLO:
        return f"wrong body: {len(body)} bytes, expected {len(HELLO)}"
    return None


# A minimal WebSocket client (RFC 6455), enough for the check by hand: handshake, one text and
# one binary message echoed, closing handshake.

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE = 0x0, 0x1, 0x2, 0x8


def _check_websocket(port: int) -> str | None:
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest()).decode()
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(
            f"GET {WS_PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        reader = sock.makefile("rb")
        status = reader.readline()
        if not status.startswith(b"HTTP/1.1 101"):
            return f"handshake answered {status.strip()[:60]!r}"
        headers: dict[str, str] = {}
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept") != accept:
            return f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}, not {accept!r}"
        if headers.get("sec-websocket-extensions"):
            return f"extension {headers['sec-websocket-extensions']!r} that was not offered"
        text = "bench check: h\u00e9llo \u2713 ".encode() * 4
        for opcode, payload in ((_OP_TEXT, text), (_OP_BINARY, bytes(range(256)) * 300)):
            sock.sendall(_ws_frame(opcode, payload))
            got = _ws_read_message(reader)
            if got != (opcode, payload):
                kind = "text" if opcode == _OP_TEXT else "binary"
                return f"{kind} echo: got opcode {got[0]} with {len(got[1])} bytes"
        sock.sendall(_ws_frame(_OP_CLOSE, struct.pack("!H", 1000)))
        opcode, _ = _ws_read_message(reader)
        if opcode != _OP_CLOSE:
            return f"answered the close frame with opcode {opcode}"
    return None


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    mask = os.urandom(4)
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return head + mask + masked


def _read_exact(reader: Any, size: int) -> bytes:
    data: bytes = reader.read(size)
    if len(data) != size:
        raise ConnectionError("the server closed the connection")
    return data


def _ws_read_message(reader: Any) -> tuple[int, bytes]:
    """The next data message (fragments joined) or close frame; pings and pongs are skipped."""
    opcode = _OP_CONTINUATION
    parts: list[bytes] = []
    while True:
        first, second = _read_exact(reader, 2)
        if second & 0x80:
            raise ValueError("the server masked a frame")
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", _read_exact(reader, 2))
        elif size == 127:
            (size,) = struct.unpack("!Q", _read_exact(reader, 8))
        payload = _read_exact(reader, size)
        frame_op = first & 0x0F
        if frame_op == _OP_CLOSE:
            return frame_op, payload
        if frame_op > _OP_CLOSE:
            continue  # ping or pong
        if frame_op != _OP_CONTINUATION:
            opcode = frame_op
        parts.append(payload)
        if first & 0x80:
            return opcode, b"".join(parts)


# --- wrk -----------------------------------------------------------------------------------


@dataclasses.dataclass
class WrkResult:
    """wrk's summary, or h2load's for the h2c workload."""

    requests_per_sec: float = 0.0
    requests: int = 0
    latency_avg_ms: float = 0.0
    latency_max_ms: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    socket_errors: dict[str, int] = dataclasses.field(default_factory=dict)
    non_2xx: int = 0
    protocol: str = ""  # h2load: the application protocol it spoke
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
    workload: Workload,
    port: int,
    duration: int,
    connections: int,
    latency: bool,
    workers: int = 1,
) -> list[str]:
    argv = [*pin(CLIENT_CPU, workers), "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    if latency:
        argv.append("--latency")
    scheme = "https" if workload.kind == "tls" else "http"
    return [*argv, *workload.wrk_args, f"{scheme}://{HOST}:{port}{workload.path}"]


def run_wrk(argv: Sequence[str], duration: int) -> tuple[int, str]:
    """Run wrk or h2load; their exit status and output (stdout + stderr)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    return proc.returncode, proc.stdout + proc.stderr


# --- h2load (the h2c workload) --------------------------------------------------------------


def h2load_command(
    workload: Workload, port: int, duration: int, args: argparse.Namespace, log: Path | None
) -> list[str]:
    """h2load on one thread; an http:// URL makes it speak HTTP/2 with prior knowledge (h2c).
    With log, it writes one line per request (start, status, time taken), for the percentiles."""
    argv = [
        *pin(CLIENT_CPU, args.workers),
        *("h2load", "-t1"),
        *(f"-c{args.h2_connections}", f"-m{args.h2_streams}", "-D", str(duration)),
    ]
    if log is not None:
        argv.append(f"--log-file={log}")
    return [*argv, f"http://{HOST}:{port}{workload.path}"]


def parse_h2load(output: str, log: Path | None = None) -> WrkResult:
    """Pick h2load's summary apart (nghttp2 1.x), and take the latency percentiles from its
    per-request log when there is one. h2load's "failed" holds "errored" (network and stream
    errors), which holds "timeout"; the rest of "failed" are responses other than 2xx or 3xx."""
    result = WrkResult()
    finished = re.search(r"^finished in [\d.]+\w*s, ([\d.]+) req/s", output, re.M)
    counts = re.search(
        r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
        r"(\d+) errored, (\d+) timeout",
        output,
        re.M,
    )
    if not finished or not counts:
        result.parse_error = "no summary in h2load output"
        return result
    done, failed, errored, timeout = (int(counts.group(i)) for i in (3, 5, 6, 7))
    result.requests = done
    result.socket_errors = {"errored": errored - timeout, "timeout": timeout}
    result.non_2xx = failed - errored
    if m := re.search(r"^Application protocol: (\S+)", output, re.M):
        result.protocol = m.group(1)
    if result.protocol != "h2c":
        result.parse_error = f"h2load did not speak h2c (protocol {result.protocol or 'none'})"
        return result
    if not done:
        # A server that does not speak HTTP/2 ignores the preface: nothing completes, and h2load
        # counts no error either.
        result.parse_error = "h2load completed no request"
        return result
    result.requests_per_sec = float(finished.group(1))
    if m := re.search(
        rf"^time for request:\s+{_DURATION}\s+{_DURATION}\s+{_DURATION}", output, re.M
    ):
        result.latency_max_ms = _ms(m.group(3), m.group(4))
        result.latency_avg_ms = _ms(m.group(5), m.group(6))
    times: list[int] = []
    if log is not None:
        with contextlib.suppress(OSError), log.open() as lines:
            for line in lines:
                fields = line.split()
                if len(fields) == 3 and fields[2].isdigit():
                    times.append(int(fields[2]))  # microseconds
    if times:
        times.sort()
        result.latency_p50_ms = times[(len(times) - 1) // 2] / 1000
        result.latency_p99_ms = times[(len(times) * 99 + 99) // 100 - 1] / 1000  # nearest rank
    return result


# --- the WebSocket client (bench/ws/client.mjs, Node + the ws package) ----------------------


@dataclasses.dataclass
class WsResult:
    """The client's result line, plus the server's memory read by this driver for ws-idle."""

    connections: int = 0  # asked for
    opened: int = 0  # handshakes completed
    messages: int = 0  # ws-echo: echoes received (and checked) in the measured window
    seconds: float = 0.0  # ws-echo: length of the measured window
    messages_per_sec: float = 0.0
    latency_avg_ms: float = 0.0  # ws-echo: round trip, from send to the echo's arrival
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_max_ms: float = 0.0
    open_seconds: float = 0.0  # ws-idle: time taken to open all the connections
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    error_details: dict[str, str] = dataclasses.field(default_factory=dict)
    rss_before_kib: int = 0  # ws-idle: VmRSS summed over the server's processes, no connection
    rss_held_kib: int = 0  # ws-idle: the same at the end of the hold

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def mib_per_1000(self) -> float | None:
        """ws-idle: growth of the server's RSS per 1,000 connections held, in MiB."""
        if not (self.opened and self.rss_before_kib and self.rss_held_kib):
            return None
        return (self.rss_held_kib - self.rss_before_kib) / self.opened * 1000 / 1024

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> WsResult:
        def number(key: str) -> float:
            value = record.get(key)
            return float(value) if isinstance(value, int | float) else 0.0

        def mapping(key: str) -> dict[str, Any]:
            value = record.get(key)
            return value if isinstance(value, dict) else {}

        return cls(
            connections=int(number("connections")),
            opened=int(number("opened")),
            messages=int(number("messages")),
            seconds=number("seconds"),
            messages_per_sec=number("messages_per_sec"),
            latency_avg_ms=number("latency_avg_ms"),
            latency_p50_ms=number("latency_p50_ms"),
            latency_p99_ms=number("latency_p99_ms"),
            latency_max_ms=number("latency_max_ms"),
            open_seconds=number("open_seconds"),
            errors={str(k): int(v) for k, v in mapping("errors").items() if v},
            error_details={str(k): str(v) for k, v in mapping("error_details").items()},
        )


def _ws_errors(result: WsResult) -> str:
    return ", ".join(
        f"{kind} {count}"
        + (f" ({result.error_details[kind]})" if kind in result.error_details else "")
        for kind, count in result.errors.items()
    )


def ws_client_command(workload: Workload, port: int, args: argparse.Namespace) -> list[str]:
    url = f"ws://{HOST}:{port}{WS_PATH}"
    argv = [*pin(CLIENT_CPU, args.workers), "node", str(WS_CLIENT)]
    if workload.kind == "ws-echo":
        return [
            *(*argv, "echo", "--url", url, "--connections", str(args.ws_connections)),
            *("--size", str(WS_MESSAGE_SIZE), "--warmup", str(args.warmup)),
            *("--duration", str(args.duration)),
        ]
    return [*argv, "idle", "--url", url, "--connections", str(args.ws_idle_connections)]


class WsClient:
    """The client as a child process: stdout read one JSON object a line, stderr to a log file.
    Leaving the with block kills it if it is still running."""

    def __init__(self, argv: Sequence[str], log_path: Path) -> None:
        self._log = log_path.open("wb")
        self.log_path = log_path
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=BENCH_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
            )
        except OSError:
            self._log.close()
            raise
        self._pending = b""
        self.stray: list[str] = []  # stdout lines that were not JSON objects

    def __enter__(self) -> WsClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self._log.close()

    @property
    def pid(self) -> int:
        return self.proc.pid  # taskset, when there is one, execs node: the same process

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON line, or None at the end of the output or after timeout seconds."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    return record
                self.stray.append(line.decode(errors="replace"))
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._pending += chunk

    def end_hold(self) -> None:
        """ws-idle: closing stdin tells the client to close its connections and report."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr_tail(self) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip()
        return text[-300:] if text else "(nothing on stderr)"


def _ws_client_installed() -> bool:
    """Whether node_modules holds every package of the lock file, at the locked version."""
    lock = json.loads((WS_CLIENT_DIR / "package-lock.json").read_text())
    for path, info in lock.get("packages", {}).items():
        if not path:
            continue  # the client itself
        try:
            manifest = json.loads((WS_CLIENT_DIR / path / "package.json").read_text())
        except (OSError, ValueError):
            return False
        if manifest.get("version") != info.get("version"):
            return False
    return True


def ws_client_ready() -> str | None:
    """Install the client's npm dependencies (npm ci) unless node_modules already matches the
    lock file; None when the client can run, else the problem."""
    if shutil.which("node") is None:
        return "node not found (apt-get install -y nodejs npm)"
    if _ws_client_installed():
        return None
    if shutil.which("npm") is None:
        return "npm not found (apt-get install -y npm)"
    print(f"bench: npm ci --prefix {WS_CLIENT_DIR.relative_to(REPO_DIR)}", file=sys.stderr)
    proc = subprocess.run(
        ["npm", "ci", "--prefix", str(WS_CLIENT_DIR), "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return f"npm ci failed: {(proc.stdout + proc.stderr).strip()[-500:]}"
    return None


def raise_fd_limit(needed: int) -> str | None:
    """Raise this process's soft RLIMIT_NOFILE (inherited by the servers and the client) to at
    least needed; None when it is enough, else the problem."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            return f"the hard limit on open files is {hard}, below the {needed} needed"
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return None


# --- the tls workload's certificate ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """The certificate and key every server gets for the tls workload, made once per benchmark."""

    certfile: Path  # the server's certificate (PEM)
    keyfile: Path  # its private key, PEM in PKCS#8 (granian takes no other form)
    cafile: Path  # what the response check verifies the certificate against
    how: str  # for the report


def make_tls_files(directory: Path) -> TlsFiles:
    """An EC P-256 certificate for 127.0.0.1 and localhost: issued by a throwaway CA with trustme
    when the driver's Python can import it (run.sh installs it), else self-signed by
    `openssl req -x509`."""
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    try:  # not the standard library: optional, see the docstring
        import trustme
        from cryptography.hazmat.primitives import serialization  # a dependency of trustme
    except ImportError:
        pass
    else:
        ca = trustme.CA()
        leaf = ca.issue_cert(HOST, "localhost")
        leaf.cert_chain_pems[0].write_to_path(str(certfile))
        key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
        keyfile.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        cafile = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(cafile))
        version = importlib.metadata.version("trustme")
        return TlsFiles(
            certfile, keyfile, cafile, f"EC P-256, issued by a throwaway CA (trustme {version})"
        )
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec"),
            *("-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"),
            *("-keyout", str(keyfile), "-out", str(certfile), "-subj", f"/CN={HOST}"),
            *("-addext", f"subjectAltName=IP:{HOST},DNS:localhost"),
        ],
        capture_output=True,
        check=True,
    )
    return TlsFiles(certfile, keyfile, certfile, "EC P-256, self-signed (openssl req -x509)")


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


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


# Processes of a server's tree that are not workers: multiprocessing's resource tracker, which
# uvicorn and hypercorn start next to their spawned workers.
_HELPER_PROCESSES = ("multiprocessing.resource_tracker",)
# N-worker runs: the tree must stay this long under _SETTLE_CPU % of one core, with the same
# processes, to count as started.
_SETTLE_SECONDS = 0.5
_SETTLE_CPU = 5.0


def worker_processes(pids: Sequence[int]) -> list[int]:
    """The server's worker processes: its tree (pids, root first) without the root and helpers."""
    return [pid for pid in pids[1:] if not any(h in _cmdline(pid) for h in _HELPER_PROCESSES)]


def wait_for_workers(
    proc: subprocess.Popen[bytes], workers: int, timeout: float = 60.0
) -> str | None:
    """N-worker runs: the port accepts as soon as the parent has bound it, before any worker
    serves (the kernel queues the connections), so wait until the server's process tree holds at
    least `workers` worker processes and has gone idle with the same processes for
    _SETTLE_SECONDS: every worker has imported the app, run its lifespan startup and waits in its
    event loop. None when that happened, else the problem."""
    deadline = time.monotonic() + timeout
    found: list[int] = []
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"server exited while its workers started (status {proc.returncode})"
        pids = process_tree(proc.pid)
        found = worker_processes(pids)
        if len(found) < workers:
            time.sleep(0.1)
            continue
        before = _process_ticks(pids)
        time.sleep(_SETTLE_SECONDS)
        busy = (_process_ticks(pids) - before) * 100 / (_SETTLE_SECONDS * CLK_TCK)
        if sorted(process_tree(proc.pid)) == sorted(pids) and busy < _SETTLE_CPU:
            return None
    return (
        f"workers not settled after {timeout:.0f} s ({len(found)} worker processes of {workers} "
        "seen, or still busy); measured anyway"
    )


def vm_kib(pid: int, field: str = "VmHWM") -> int:
    """A memory figure of /proc/<pid>/status: VmHWM (peak RSS) or VmRSS (RSS now); 0 if gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    m = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
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


# --- CPU accounting: how busy the server and the client were, and how much else ran meanwhile -
#
# The machine may be shared, so every measured run also records "other": user + system time on
# both CPUs that was neither the server's, the client's (wrk or the WebSocket client) nor this
# driver's (IRQ and softirq time, where the loopback network work lands, is left out on every
# side). Before each run the driver waits for the machine to be quiet, and a run with too much
# other load is repeated. wrk is counted once reaped (getrusage of the driver's children); the
# WebSocket client is still running when its measured window ends, so it is counted from /proc.

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

    server: float = 0.0  # the server's processes (pinned to SERVER_CPU in one-worker runs)
    client: float = 0.0  # wrk or the WebSocket client (pinned to CLIENT_CPU likewise)
    other: float = 0.0  # everything else, on either CPU
    steal: float = 0.0  # hypervisor steal, both CPUs


@dataclasses.dataclass
class CpuSnapshot:
    when: float
    busy: int
    steal: int
    server: int
    client: int  # ticks of the running client processes given to take()
    children: float
    driver: float

    @classmethod
    def take(cls, pids: Sequence[int], client_pids: Sequence[int] = ()) -> CpuSnapshot:
        busy, steal = _cpu_ticks()
        return cls(
            time.monotonic(),
            busy,
            steal,
            _process_ticks(pids),
            _process_ticks(client_pids),
            _rusage_seconds(resource.RUSAGE_CHILDREN),
            _rusage_seconds(resource.RUSAGE_SELF),
        )

    def since(self, before: CpuSnapshot) -> CpuUse:
        ticks = (self.when - before.when) * CLK_TCK
        if ticks <= 0:
            return CpuUse()
        server = self.server - before.server
        client = (self.children - before.children) * CLK_TCK + (self.client - before.client)
        driver = (self.driver - before.driver) * CLK_TCK
        other = (self.busy - before.busy) - server - client - driver
        pct = 100 / ticks
        return CpuUse(
            server=server * pct,
            client=client * pct,
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
    # A temporary directory for this benchmark (the certificate, h2load's logs), deleted at the end.
    tmp: Path
    # The tls workload's certificate and key (in tmp), or None when it is not run.
    tls: TlsFiles | None = None


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
    kind: str  # Workload.kind
    wrk: WrkResult = dataclasses.field(default_factory=WrkResult)  # HTTP workloads
    ws: WsResult = dataclasses.field(default_factory=WsResult)  # WebSocket workloads
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
        return bool(self.problems) or self.wrk.error_count > 0 or self.ws.error_count > 0

    @property
    def rate(self) -> float:
        """Requests/s (HTTP) or messages/s (ws-echo); 0 for ws-idle and for failed runs."""
        return self.ws.messages_per_sec if self.kind == "ws-echo" else self.wrk.requests_per_sec

    @property
    def latency_avg_ms(self) -> float:
        return self.ws.latency_avg_ms if self.kind == "ws-echo" else self.wrk.latency_avg_ms

    @property
    def latency_p99_ms(self) -> float:
        return self.ws.latency_p99_ms if self.kind == "ws-echo" else self.wrk.latency_p99_ms

    def error_summary(self) -> str:
        """The client's error counts, or "" when there were none."""
        if self.wrk.error_count:
            client = "h2load" if self.kind == "h2c" else "wrk"
            return f"{client} errors: {_wrk_errors(self.wrk)} (of {self.wrk.requests} requests)"
        if self.ws.error_count:
            return f"WebSocket client errors: {_ws_errors(self.ws)}"
        return ""


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
        if run.cpu.other <= args.max_other or run.rate == 0:
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
    server_argv = server.argv(bin_dir, str(port), workload.kind, paths.tls, args.workers)
    argv = [*pin(SERVER_CPU, args.workers), *server_argv]
    logs = RESULTS_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{server.name}-{workload.name}-r{rnd}.log"
    client_log = logs / f"{server.name}-{workload.name}-r{rnd}.client.log"
    pythonpath = [str(BENCH_DIR)]
    if server.name == "laurelin" and paths.laurelin_snapshot is not None:
        pythonpath.insert(0, str(paths.laurelin_snapshot))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(pythonpath), PYTHONUNBUFFERED="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    run = Run(server.name, workload.name, rnd, workload.kind)
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
            _drive(proc, port, workload, args, run, client_log, paths)
        finally:
            stop(proc)
    run.exit_status = proc.returncode
    run.log = log_path.read_text(errors="replace")
    return run


def _drive(
    proc: subprocess.Popen[bytes],
    port: int,
    workload: Workload,
    args: argparse.Namespace,
    run: Run,
    client_log: Path,
    paths: Paths,
) -> None:
    if not wait_for_port(port, proc):
        run.problems.append(f"server did not accept on port {port} (exit {proc.poll()})")
        return
    if args.workers > 1 and (problem := wait_for_workers(proc, args.workers)):
        run.problems.append(problem)
        if proc.poll() is not None:
            return
    if problem := check_response(workload, port, paths.tls):
        run.problems.append(f"response check: {problem}")
    if workload.websocket:
        _drive_ws(proc, port, workload, args, run, client_log)
    elif workload.kind == "h2c":
        _drive_h2load(proc, port, workload, args, run, paths.tmp)
    else:
        _drive_wrk(proc, port, workload, args, run)
    if proc.poll() is not None:
        run.problems.append(f"server exited during the run (status {proc.returncode})")
        return
    pids = process_tree(proc.pid)
    run.processes = len(pids)
    hwm = [vm_kib(pid, "VmHWM") for pid in pids]
    run.rss_kib = sum(hwm)
    run.rss_largest_kib = max(hwm)


def _drive_wrk(
    proc: subprocess.Popen[bytes],
    port: int,
    workload: Workload,
    args: argparse.Namespace,
    run: Run,
) -> None:
    if args.warmup > 0:
        argv = wrk_command(workload, port, args.warmup, args.connections, False, args.workers)
        warm = parse_wrk(run_wrk(argv, args.warmup)[1])
        if warm.error_count or warm.parse_error:
            run.problems.append(f"warm-up: {_wrk_errors(warm) or warm.parse_error}")
    pids = process_tree(proc.pid)
    before = CpuSnapshot.take(pids)
    code, output = run_wrk(
        wrk_command(workload, port, args.duration, args.connections, True, args.workers),
        args.duration,
    )
    run.cpu = CpuSnapshot.take(pids).since(before)
    run.wrk = parse_wrk(output)
    if code != 0:
        run.problems.append(f"wrk exited {code}")
    if run.wrk.parse_error:
        run.problems.append(run.wrk.parse_error + ": " + output.strip()[-300:])


def _drive_h2load(
    proc: subprocess.Popen[bytes],
    port: int,
    workload: Workload,
    args: argparse.Namespace,
    run: Run,
    tmp: Path,
) -> None:
    """As _drive_wrk, with h2load; its per-request log goes to a temporary file, read for the
    latency percentiles and deleted."""
    if args.warmup > 0:
        warm = parse_h2load(
            run_wrk(h2load_command(workload, port, args.warmup, args, None), args.warmup)[1]
        )
        if warm.error_count or warm.parse_error:
            run.problems.append(f"warm-up: {_wrk_errors(warm) or warm.parse_error}")
    log = tmp / f"h2load-{run.server}-{run.workload}-r{run.round}.log"
    pids = process_tree(proc.pid)
    before = CpuSnapshot.take(pids)
    try:
        code, output = run_wrk(
            h2load_command(workload, port, args.duration, args, log), args.duration
        )
        run.cpu = CpuSnapshot.take(pids).since(before)
        run.wrk = parse_h2load(output, log)
    finally:
        log.unlink(missing_ok=True)
    if code != 0:
        run.problems.append(f"h2load exited {code}")
    if run.wrk.parse_error:
        run.problems.append(run.wrk.parse_error + ": " + output.strip()[-300:])


def _drive_ws(
    proc: subprocess.Popen[bytes],
    port: int,
    workload: Workload,
    args: argparse.Namespace,
    run: Run,
    client_log: Path,
) -> None:
    """Run the WebSocket client. ws-echo: CPU use is taken between its "measuring" and
    "measured" lines. ws-idle: the server's VmRSS before the client starts, and again once the
    connections have been held for the run duration; then the client is told to close them."""
    idle = workload.kind == "ws-idle"
    pids = process_tree(proc.pid)
    rss_before = sum(vm_kib(pid, "VmRSS") for pid in pids) if idle else 0
    rss_held = 0
    # Handshakes, warm-up, run, closing and slack; opening the idle connections, at 50/s or more.
    budget = args.warmup + args.duration + 60 + (args.ws_idle_connections / 50 if idle else 0)
    deadline = time.monotonic() + budget
    result: dict[str, Any] | None = None
    with WsClient(ws_client_command(workload, port, args), client_log) as client:
        before: CpuSnapshot | None = None
        while (event := client.next_event(deadline - time.monotonic())) is not None:
            kind = event.get("event")
            if kind == "measuring":
                before = CpuSnapshot.take(pids, (client.pid,))
            elif kind == "measured" and before is not None:
                run.cpu = CpuSnapshot.take(pids, (client.pid,)).since(before)
            elif kind == "holding":
                if event.get("opened"):
                    time.sleep(args.duration)
                    rss_held = sum(vm_kib(pid, "VmRSS") for pid in process_tree(proc.pid))
                client.end_hold()
            elif kind == "result":
                result = event
                break
        status = client.wait(timeout=10)
        if result is None:
            why = "timed out" if status is None else f"exit status {status}"
            stray = " ".join(client.stray)[-200:]
            run.problems.append(
                f"WebSocket client gave no result ({why}): {client.stderr_tail()} {stray}".strip()
            )
        elif status != 0:
            run.problems.append(f"WebSocket client exit status {status}: {client.stderr_tail()}")
    if result is not None:
        run.ws = WsResult.from_record(result)
    run.ws.rss_before_kib = rss_before
    run.ws.rss_held_kib = rss_held
    if idle and run.ws.opened < args.ws_idle_connections and not run.ws.error_count:
        run.problems.append(f"only {run.ws.opened} of {args.ws_idle_connections} connections")


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


def _h2load_version() -> str:
    proc = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"nghttp2/(\S+)", proc.stdout + proc.stderr)
    return f"h2load nghttp2 {m.group(1)}" if m else "h2load (unknown version)"


def _ws_client_version() -> str:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    try:
        manifest = json.loads((WS_CLIENT_DIR / "node_modules/ws/package.json").read_text())
        ws = f"ws {manifest['version']}"
    except (OSError, ValueError, KeyError):
        ws = "ws (unknown version)"
    return f"Node {node.stdout.strip() or '(unknown version)'}, {ws}"


def _fmt_rps(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _target_line(
    workload: Workload, cells: dict[tuple[str, str], Cell], names: Sequence[str]
) -> str:
    """The workload's target ratio, in bold, and whether this run meets it; "" without one."""
    if workload.target is None or "laurelin" not in names:
        return ""
    other, wanted = workload.target
    ours, theirs = cells.get(("laurelin", workload.name)), cells.get((other, workload.name))
    head = f"**{workload.name} target: laurelin / {other} >= {wanted:g}x"
    if other not in names:
        return head + f": not measured ({other} not run).**"
    if not ours or not theirs or not ours.rps or not theirs.rps:
        return head + ": not measured (no rate).**"
    ratio = ours.rps / theirs.rps
    verdict = "met" if ratio >= wanted else "not met"
    flag = " (from flagged runs: see Errors)" if ours.flagged or theirs.flagged else ""
    return head + f": {ratio:.2f}x, {verdict}.**{flag}"


def _ratio(ours: float | None, theirs: float | None, other: str) -> str:
    """laurelin's figure over another server's; "-" when either is missing or zero."""
    if not ours or not theirs:
        return "-"
    return f"{ours / theirs:.2f}x {other}"


@dataclasses.dataclass
class Cell:
    """One (server, rated workload): requests/s or messages/s, latency, memory, CPU."""

    rps: float
    rps_low: float
    rps_high: float
    latency_avg_ms: float
    latency_p99_ms: float
    rss_kib: int
    rss_largest_kib: int
    processes: int
    flagged: bool
    rounds: int  # rounds that measured a rate (the medians are over those)
    server_cpu: float
    client_cpu: float


def summarize(runs: Sequence[Run]) -> Cell:
    measured = [r for r in runs if r.rate > 0]
    good = measured or list(runs)
    return Cell(
        rps=statistics.median(r.rate for r in good),
        rps_low=min(r.rate for r in good),
        rps_high=max(r.rate for r in good),
        latency_avg_ms=statistics.median(r.latency_avg_ms for r in good),
        latency_p99_ms=statistics.median(r.latency_p99_ms for r in good),
        rss_kib=max(r.rss_kib for r in runs),
        rss_largest_kib=max(r.rss_largest_kib for r in runs),
        processes=max(r.processes for r in runs),
        flagged=any(r.flagged for r in runs),
        rounds=len(measured),
        server_cpu=statistics.median(r.cpu.server for r in good),
        client_cpu=statistics.median(r.cpu.client for r in good),
    )


@dataclasses.dataclass
class IdleCell:
    """One (server, ws-idle): medians over the rounds that held connections; peak is the max."""

    opened: int  # fewest connections opened in a round
    rss_before_kib: float
    rss_held_kib: float
    mib_per_1000: float | None
    peak_kib: int
    flagged: bool


def summarize_idle(runs: Sequence[Run]) -> IdleCell:
    good = [r for r in runs if r.ws.mib_per_1000 is not None]
    per_1000 = [v for r in good if (v := r.ws.mib_per_1000) is not None]
    before = [r.ws.rss_before_kib for r in (good or runs) if r.ws.rss_before_kib]
    return IdleCell(
        opened=min(r.ws.opened for r in runs),
        rss_before_kib=statistics.median(before) if before else 0.0,
        rss_held_kib=statistics.median(r.ws.rss_held_kib for r in good) if good else 0.0,
        mib_per_1000=statistics.median(per_1000) if per_1000 else None,
        peak_kib=max(r.rss_kib for r in runs),
        flagged=any(r.flagged for r in runs),
    )


def render(
    runs: Sequence[Run],
    servers: Sequence[Server],
    workloads: Sequence[Workload],
    args: argparse.Namespace,
    meta: dict[str, Any],
) -> str:
    cells: dict[tuple[str, str], Cell] = {}
    idle_cells: dict[tuple[str, str], IdleCell] = {}
    for s in servers:
        for w in workloads:
            mine = [r for r in runs if r.server == s.name and r.workload == w.name]
            if mine and w.rated:
                cells[s.name, w.name] = summarize(mine)
            elif mine:
                idle_cells[s.name, w.name] = summarize_idle(mine)
    names = [s.name for s in servers]
    others = [n for n in names if n != "laurelin"] if "laurelin" in names else []
    http = [w for w in workloads if w.kind == "http"]
    tls = [w for w in workloads if w.kind == "tls"]
    h2c = [w for w in workloads if w.kind == "h2c"]
    wrk = http + tls
    requests = wrk + h2c  # measured in requests/s
    echo = [w for w in workloads if w.kind == "ws-echo"]
    rated = [w for w in workloads if w.rated]
    idle = [w for w in workloads if w.kind == "ws-idle"]
    websocket = bool(echo or idle)
    client = " or ".join(
        name
        for name, used in (("wrk", wrk), ("h2load", h2c), ("the WebSocket client", websocket))
        if used
    )
    rate_name = "Requests/sec" if requests else "Messages/s"
    multi = args.workers > 1
    mode = _mode(args)  # "" in one-worker runs: the titles are as they always were
    # In N-worker runs every command runs without taskset; in one-worker runs, these prefixes.
    server_pin = shlex.join(pin(SERVER_CPU, args.workers))
    client_pin = " ".join(pin(CLIENT_CPU, args.workers)) + (" " if not multi else "")
    lines: list[str] = []
    add = lines.append

    def rate_table(title: str, rows: Sequence[Workload]) -> None:
        """Rates by server, then laurelin's ratios; only the servers that ran these rows."""
        shown = [s.name for s in servers if any(s.runs(w) for w in rows)]
        versus = [n for n in others if n in shown]
        add(f"### {mode}{title} (median of {args.rounds})")
        add("")
        header = ["workload", *shown, *(f"laurelin vs {o}" for o in versus)]
        add("| " + " | ".join(header) + " |")
        add("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for w in rows:
            row = [w.name]
            for n in shown:
                c = cells.get((n, w.name))
                row.append("-" if c is None else _fmt_rps(c.rps) + (" (!)" if c.flagged else ""))
            ours = cells.get(("laurelin", w.name))
            for o in versus:
                theirs = cells.get((o, w.name))
                row.append(_ratio(ours.rps if ours else None, theirs.rps if theirs else None, o))
            add("| " + " | ".join(row) + " |")
        add("")
        for w in rows:
            # The targets are set for the one-worker, pinned run.
            if not multi and (line := _target_line(w, cells, names)):
                add(line)
                add("")
        skipped = [s.name for s in servers if not all(s.runs(w) for w in rows)]
        if skipped:
            add(
                f"Not run: {' and '.join(skipped)}, which "
                + ("does" if len(skipped) == 1 else "do")
                + " not speak cleartext HTTP/2 with prior knowledge (h2c)."
            )
            add("")

    def server_table(title: str, rows: Sequence[Workload], value: Any) -> None:
        add(f"### {mode}{title}")
        add("")
        add("| workload | " + " | ".join(names) + " |")
        add("|---|" + "---:|" * len(names))
        for w in rows:
            row = [w.name]
            for n in names:
                c = cells.get((n, w.name))
                row.append("-" if c is None else value(c))
            add("| " + " | ".join(row) + " |")
        add("")

    if multi:
        add(
            f"**{args.workers}-worker run, unpinned**: every server runs {args.workers} worker "
            "processes and neither the server nor the load generator is pinned to a CPU (both "
            f"share all {meta['cpus']} CPUs). Not comparable with the one-worker runs, where "
            f"the server has CPU {SERVER_CPU} to itself and the client CPU {CLIENT_CPU}."
            + (
                f" Left out: {', '.join(meta['left_out'])} (no option to run worker processes)."
                if meta.get("left_out")
                else ""
            )
        )
        add("")
    add(f"Command: `{meta['command']}`  ")
    add(f"Date: {meta['date']}  ")
    add(f"Python: {meta['python']} (every server)  ")
    add(f"laurelin revision: {meta['revision']}  ")
    if "laurelin_source" in meta:
        add(f"laurelin source: {meta['laurelin_source']}  ")
    add(f"Machine: {meta['cpu']}, {meta['cpus']} CPUs, Linux {meta['kernel']}  ")
    if multi:
        method = [
            f"Method: {args.workers} worker processes per server, server and client not pinned; "
            f"after the port accepts, the driver waits until the server's process tree holds "
            f"{args.workers} workers and has been idle for {_SETTLE_SECONDS:g} s (start-up done) "
            f"before the response check; {args.rounds} round(s), median shown"
        ]
    else:
        method = [
            f"Method: server on `{server_pin}` (one worker); {args.rounds} round(s), median shown"
        ]
    if wrk:
        method.append(
            f"HTTP: `{client_pin}wrk -t1 -c{args.connections} -d{args.duration}s "
            f"--latency` after a {args.warmup} s warm-up ({meta['wrk']})"
        )
    if tls:
        method.append(
            f"tls: the same wrk command on `https://{HOST}:PORT/hello`, certificate "
            f"{meta['tls']}; wrk offers no ALPN, so every server speaks HTTP/1.1 (the response "
            "check offers none either and requires an HTTP/1.1 answer)"
        )
    if h2c:
        method.append(
            f"h2c: `{client_pin}h2load -t1 -c{args.h2_connections} "
            f"-m{args.h2_streams} -D {args.duration} http://{HOST}:PORT/hello` (HTTP/2 with "
            f"prior knowledge) after a {args.warmup} s warm-up ({meta['h2load']}); latency "
            "percentiles from its per-request log (--log-file)"
        )
    if websocket:
        method.append(
            f"WebSocket: `{client_pin}node bench/ws/client.mjs` "
            f"({meta['ws_client']}, no permessage-deflate)"
        )
    if echo:
        method.append(
            f"ws-echo: {args.ws_connections} connections, {WS_MESSAGE_SIZE}-byte text messages, "
            f"one in flight per connection, {args.duration} s after a {args.warmup} s warm-up "
            "on the same connections"
        )
    if idle:
        method.append(
            f"ws-idle: {args.ws_idle_connections:,} connections, each checked with one echo, "
            f"then held idle for {args.duration} s"
        )
    add("; ".join(method))
    add("")
    if http:
        rate_table("Requests/sec", http)
    if h2c:
        rate_table("HTTP/2 cleartext (h2c, h2load), requests/sec", h2c)
    if tls:
        rate_table("HTTP/1.1 over TLS (wrk, https), requests/sec", tls)
    if echo:
        rate_table("WebSocket echo, messages/s", echo)
    if any(c.flagged for c in cells.values()) or any(c.flagged for c in idle_cells.values()):
        causes = ["socket errors", "non-2xx responses"] if wrk else []
        causes += ["h2load errors"] if h2c else []
        causes += ["WebSocket client errors"] if websocket else []
        add(
            f"(!) = at least one round had {', '.join(causes)}, a failed response check or a "
            "server exit; see Errors below."
        )
        add("")
    if args.rounds > 1 and rated:
        server_table(
            ("Requests/sec (messages/s for ws-echo)" if requests and echo else rate_name)
            + ", spread over rounds (lowest - highest)",
            rated,
            lambda c: f"{_fmt_rps(c.rps_low)} - {_fmt_rps(c.rps_high)}",
        )
    if rated:
        server_table(
            "Latency, ms (median of rounds: average / 99th percentile"
            + ("; h2c: per request, streams queue behind each other" if h2c else "")
            + ("; ws-echo: round trip)" if echo else ")"),
            rated,
            lambda c: (
                f"{_fmt_ms(c.latency_avg_ms)} / {_fmt_ms(c.latency_p99_ms)}" if c.rounds else "-"
            ),
        )
        add(f"### {mode}Peak RSS, MiB (VmHWM at the end of the run, max over rounds)")
        add("")
        add("| workload | " + " | ".join(names) + " |")
        add("|---|" + "---:|" * len(names))
        peak: dict[str, int] = {}
        largest: dict[str, int] = {}
        for w in rated:
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
        several = [
            n for n in names if any(c.processes > 1 for (m, _), c in cells.items() if m == n)
        ]
        if several:
            add(
                "| max, largest process | "
                + " | ".join(f"{largest.get(n, 0) / 1024:.1f}" for n in names)
                + " |"
            )
            add("")
            if multi:
                trackers = [n for n in names if n in ("uvicorn", "hypercorn")]
                add(
                    "RSS is summed over all of a server's processes (VmHWM of each): the "
                    f"parent, its {args.workers} workers"
                    + (
                        f" and, for {' and '.join(trackers)}, multiprocessing's resource tracker"
                        if trackers
                        else ""
                    )
                    + ". The last row is the largest single process."
                )
            else:
                add(
                    "RSS is summed over all of a server's processes (VmHWM of each); "
                    f"more than one process: {', '.join(several)}. "
                    "The last row is the largest single process (the worker)."
                )
        add("")
        if multi:
            cpu_title = (
                f"CPU use, % of one core (median: server, all its processes / {client}; "
                f"nothing pinned, {meta['cpus']} CPUs = {100 * (meta['cpus'] or 1)} %)"
            )
        else:
            cpu_title = (
                f"CPU use, % of one core (median: server on CPU {SERVER_CPU} / "
                f"{client} on CPU {CLIENT_CPU})"
            )
        server_table(
            cpu_title,
            rated,
            lambda c: f"{c.server_cpu:.0f} / {c.client_cpu:.0f}" if c.rounds else "-",
        )
    for w in idle:
        _render_idle(add, w, names, others, idle_cells, args)
    measured = [r for r in runs if r.rate > 0]
    if measured:
        worst = max(measured, key=lambda r: r.cpu.other)
        repeated = sum(r.attempts - 1 for r in runs)
        add(
            "Other load during the measured runs (user + system CPU time of processes other "
            "than the server, the client and this driver, in % of one core): "
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
    pinning = f"after `{server_pin}`" if server_pin else "not pinned"
    add(f"| server | versions | command ({pinning}) |")
    add("|---|---|---|")
    for s in servers:
        versions = ", ".join(
            f"{k} {v}" for k, v in meta["versions"][s.name].items() if k != "python"
        )
        cmd = f"`{shlex.join(s.argv(Path(), 'PORT', workers=args.workers))}`"
        if websocket and s.ws_args:
            cmd += f", plus `{shlex.join(s.ws_args)}` for the WebSocket workloads"
        if h2c and s.h2c_args:
            cmd += f"; h2c: plus `{shlex.join(s.h2c_args)}`"
        elif h2c and s.h2c_args is not None:
            cmd += "; h2c: the same command"
        elif h2c:
            cmd += "; h2c: not run (no cleartext HTTP/2)"
        if tls and s.tls_command is not None:
            cmd += f"; tls: `{shlex.join(s.argv(Path(), 'PORT', 'tls', workers=args.workers))}`"
        elif tls:
            tls_args = (
                w.replace("{certfile}", "CERT").replace("{keyfile}", "KEY") for w in s.tls_args
            )
            cmd += f"; tls: plus `{shlex.join(tls_args)}`"
        add(f"| {s.name} | {versions} | {cmd} |")
    for name in meta.get("left_out", ()):
        add(f"| {name} | - | not run: no option to run {args.workers} worker processes |")
    add("")
    add("### Errors")
    add("")
    flagged = [r for r in runs if r.flagged]
    if not flagged:
        clean = ["no socket errors", "no non-2xx responses"] if wrk else []
        clean += ["no h2load errors"] if h2c else []
        clean += ["no WebSocket client errors"] if websocket else []
        add(f"None: {', '.join(clean)}, every response check passed.")
    for r in flagged:
        parts = list(r.problems)
        if errors := r.error_summary():
            parts.append(errors)
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


def _mode(args: argparse.Namespace) -> str:
    """The start of every table title: "" in one-worker runs, else what makes them different."""
    return "" if args.workers == 1 else f"{args.workers} workers per server, unpinned: "


def _render_idle(
    add: Any,
    workload: Workload,
    names: Sequence[str],
    others: Sequence[str],
    cells: dict[tuple[str, str], IdleCell],
    args: argparse.Namespace,
) -> None:
    """The ws-idle table: one row per figure, one column per server, then laurelin's ratios."""
    add(
        f"### {_mode(args)}WebSocket idle connections: server memory ({args.ws_idle_connections:,} "
        f"connections held {args.duration} s; median of {args.rounds})"
    )
    add("")
    header = ["", *names, *(f"laurelin vs {o}" for o in others)]
    add("| " + " | ".join(header) + " |")
    add("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    ours = cells.get(("laurelin", workload.name))

    def row(label: str, value: Any, ratio: Any = None, flag: bool = False) -> None:
        out = [label]
        for n in names:
            c = cells.get((n, workload.name))
            text = "-" if c is None or value(c) is None else value(c)
            out.append(text + (" (!)" if flag and c is not None and c.flagged else ""))
        for o in others:
            theirs = cells.get((o, workload.name))
            if ratio is None or ours is None or theirs is None:
                out.append("")
            else:
                out.append(_ratio(ratio(ours), ratio(theirs), o))
        add("| " + " | ".join(out) + " |")

    def mib(kib: float) -> str | None:
        return f"{kib / 1024:.1f}" if kib else None

    row("connections held (fewest in a round)", lambda c: f"{c.opened:,}", flag=True)
    row("RSS before, MiB (VmRSS)", lambda c: mib(c.rss_before_kib))
    row("RSS holding them, MiB (VmRSS)", lambda c: mib(c.rss_held_kib))
    row(
        "**MiB per 1,000 connections**",
        lambda c: None if c.mib_per_1000 is None else f"**{c.mib_per_1000:.2f}**",
        lambda c: c.mib_per_1000,
        flag=True,
    )
    row(
        "peak RSS, MiB (VmHWM, max)",
        lambda c: mib(c.peak_kib),
        lambda c: None if c.mib_per_1000 is None else c.peak_kib,  # no ratio without connections
    )
    add("")
    add(
        "RSS summed over all of a server's processes. MiB per 1,000 connections = (RSS holding "
        "them - RSS before) / connections held x 1,000."
        + (
            " Ratios are laurelin's figure over the other server's: below 1, laurelin uses less."
            if others
            else ""
        )
    )
    add("")


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
        description="Benchmark laurelin against uvicorn, hypercorn, daphne and granian with wrk "
        "(HTTP/1.1, plain and TLS), h2load (h2c: cleartext HTTP/2) and a Node WebSocket client "
        "(ws-echo, ws-idle). "
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
        "--h2-connections", type=int, default=16, help="h2c: h2load -c (default 16)"
    )
    parser.add_argument(
        "--h2-streams",
        type=int,
        default=32,
        help="h2c: h2load -m, streams in flight per connection (default 32)",
    )
    parser.add_argument(
        "--ws-connections",
        type=int,
        default=32,
        help="ws-echo: WebSocket connections, one message in flight on each (default 32)",
    )
    parser.add_argument(
        "--ws-idle-connections",
        type=int,
        default=2000,
        help="ws-idle: idle WebSocket connections to open and hold (default 2000)",
    )
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
        "--workers",
        type=int,
        default=1,
        help="worker processes per server (default 1: server pinned to CPU "
        f"{SERVER_CPU}, client to CPU {CLIENT_CPU}); above 1, each server runs that many with "
        "its own option, neither the server nor the client is pinned, and daphne (no such "
        "option) is left out",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="Markdown report path; the raw data goes next to it as .json "
        "(default bench/results/latest.md, or latest-workers<N>.md with --workers N > 1)",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be positive")
    if args.output is None:
        name = "latest.md" if args.workers == 1 else f"latest-workers{args.workers}.md"
        args.output = RESULTS_DIR / name
    if min(args.rounds, args.duration, args.connections) < 1:
        parser.error("--rounds, --duration and --connections must be positive")
    if min(args.h2_connections, args.h2_streams) < 1:
        parser.error("--h2-connections and --h2-streams must be positive")
    if min(args.ws_connections, args.ws_idle_connections) < 1:
        parser.error("--ws-connections and --ws-idle-connections must be positive")
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
    left_out: list[str] = []
    if args.workers > 1:
        left_out = [s.name for s in servers if s.workers_args is None]
        servers = [s for s in servers if s.workers_args is not None]
        args.servers = [s.name for s in servers]
        for name in left_out:
            print(f"bench: {name} left out: no option to run worker processes", file=sys.stderr)
        if not servers:
            print("bench: no chosen server can run several worker processes", file=sys.stderr)
            return 2
    workloads = [WORKLOADS[n] for n in args.workloads]
    if any(w.websocket for w in workloads):
        needed = (args.ws_idle_connections if "ws-idle" in args.workloads else 0) + 1024
        if problem := ws_client_ready() or raise_fd_limit(needed):
            print(f"bench: WebSocket workloads: {problem}", file=sys.stderr)
            return 2
    if any(w.kind == "h2c" for w in workloads) and shutil.which("h2load") is None:
        print("bench: h2c: h2load not found (apt-get install -y nghttp2-client)", file=sys.stderr)
        return 2
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
        "left_out": left_out,
    }
    if any(w.websocket for w in workloads):
        meta["ws_client"] = _ws_client_version()
    if any(w.kind == "h2c" for w in workloads):
        meta["h2load"] = _h2load_version()
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
    tmp = Path(tempfile.mkdtemp(prefix="laurelin-bench-"))
    try:
        tls: TlsFiles | None = None
        if any(w.kind == "tls" for w in workloads):
            try:
                tls = make_tls_files(tmp)
            except (OSError, subprocess.CalledProcessError) as exc:
                print(f"bench: tls: could not make a certificate: {exc!r}", file=sys.stderr)
                return 2
            meta["tls"] = tls.how
        runs = run_all(servers, workloads, args, Paths(venvs, snapshot, tmp, tls))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
    """Rounds outermost, servers innermost: slow drift on the machine hits every server alike.
    A server that cannot take part in a workload (h2c without cleartext HTTP/2) is skipped."""
    total = args.rounds * sum(s.runs(w) for s in servers for w in workloads)
    per_run = args.duration + args.warmup + 3  # + start-up, response check, quiet check
    print(f"bench: {total} runs, at least {total * per_run / 60:.0f} min", file=sys.stderr)
    runs: list[Run] = []
    for rnd in range(1, args.rounds + 1):
        for w in workloads:
            for s in servers:
                if not s.runs(w):
                    print(
                        f"[{rnd}/{args.rounds}] {w.name:<7} {s.name:<9} skipped: "
                        "no cleartext HTTP/2 (h2c)",
                        file=sys.stderr,
                    )
                    continue
                run = measure(s, w, rnd, args, paths)
                runs.append(run)
                flag = "  FLAGGED: " + "; ".join(run.problems) if run.flagged else ""
                if errors := run.error_summary():
                    flag += f" ({errors})"
                print(
                    f"[{rnd}/{args.rounds}] {w.name:<7} {s.name:<9} {_progress(run)}{flag}",
                    file=sys.stderr,
                )
    return runs


def _progress(run: Run) -> str:
    if run.kind == "ws-idle":
        per_1000 = run.ws.mib_per_1000
        return (
            f"held {run.ws.opened:>6,}  "
            f"rss {run.ws.rss_before_kib / 1024:6.1f} -> {run.ws.rss_held_kib / 1024:6.1f} MiB  "
            + ("-" if per_1000 is None else f"{per_1000:.2f}")
            + f" MiB/1000 conns  peak {run.rss_kib / 1024:6.1f} MiB"
        )
    unit = "msg/s" if run.kind == "ws-echo" else "req/s"
    return (
        f"{run.rate:>10,.0f} {unit}  avg {run.latency_avg_ms:7.2f} ms  "
        f"rss {run.rss_kib / 1024:6.1f} MiB  "
        f"cpu server {run.cpu.server:3.0f}% client {run.cpu.client:3.0f}% "
        f"other {run.cpu.other:3.0f}% (attempts {run.attempts})"
    )


if __name__ == "__main__":
    sys.exit(main())
