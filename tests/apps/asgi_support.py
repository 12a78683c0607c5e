# Helpers shared by the ASGI end-to-end tests (not an app): servers that live for a whole test
# module, marker files written by tests/apps/asgi_app.py, and a raw-socket HTTP/1.1 client that
# can tell a complete response from a truncated one.
from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from conftest import ServerProcess, free_port


@contextmanager
def serving(app: str, *args: str, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A laurelin process serving `app` on a free port for the length of the `with` block (for
    module-scoped fixtures; conftest's `run_server` is per test)."""
    proc = ServerProcess(["-p", str(free_port()), *args, app], env)
    try:
        proc.wait_listening()
        yield proc
    finally:
        proc.stop()


def wait_marker(directory: Path, name: str, timeout: float = 10.0) -> str:
    """The text of marker file `name` once the app has written it; fail after `timeout`."""
    path = directory / name
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            present = sorted(p.name for p in directory.iterdir())
            raise AssertionError(f"marker {name!r} not written within {timeout}s; have {present}")
        time.sleep(0.02)
    return path.read_text()


def wait_until(predicate: object, what: str, timeout: float = 10.0) -> None:
    """Poll `predicate()` until true; fail after `timeout` naming `what`."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.02)


def connect(port: int, source: str | None = None, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the server on 127.0.0.1, optionally from another loopback address."""
    return socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
    )


def close_with_reset(sock: socket.socket) -> None:
    """Close so that the peer gets a RST (SO_LINGER 0) rather than a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass
class RawResponse:
    """One response as read off the wire; `complete` is False if the connection ended first."""

    status: int | None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False
    raw: bytes = b""
    closed: bool = False
    reset: bool = False  # the connection ended with a RST, not a clean close

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.raw = b""
        self.eof = False
        self.reset = False

    def fill(self) -> bool:
        """Read more; False at EOF or reset."""
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        self.raw += data
        return True

    def until(self, marker: bytes) -> bytes | None:
        while marker not in self.buf:
            if not self.fill():
                return None
        head, _, self.buf = self.buf.partition(marker)
        return head

    def exactly(self, size: int) -> bytes | None:
        while len(self.buf) < size:
            if not self.fill():
                return None
        data, self.buf = self.buf[:size], self.buf[size:]
        return data


def read_response(sock: socket.socket, head_only: bool = False) -> RawResponse:
    """Read one response (skipping 1xx) from `sock`; never raises on EOF or reset."""
    reader = _Reader(sock)
    while True:
        head = reader.until(b"\r\n\r\n")
        if head is None:
            return RawResponse(None, raw=reader.raw, closed=True, reset=reader.reset)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        if status >= 200:
            break
    response = RawResponse(status, headers, raw=reader.raw)
    if head_only or status in (204, 304):
        response.complete = True
        return response
    body = b""
    if (response.header("transfer-encoding") or "").lower() == "chunked":
        while True:
            size_line = reader.until(b"\r\n")
            if size_line is None:
                break
            size = int(size_line.split(b";")[0], 16)
            if size == 0:  # the last chunk: trailer lines up to an empty one
                while (line := reader.until(b"\r\n")) is not None and line:
                    pass
                response.complete = line is not None
                break
            data = reader.exactly(size + 2)
            if data is None:
                body += reader.buf
                break
            body += data[:-2]
    elif response.header("content-length") is not None:
        length = int(response.header("content-length") or "0")
        data = reader.exactly(length)
        response.complete = data is not None
        body = data if data is not None else reader.buf
    else:
        while reader.fill():
            pass
        body = reader.buf
        response.complete = not reader.reset  # delimited by a clean close
    response.body = body
    response.closed = reader.eof
    response.raw = reader.raw
    response.reset = reader.reset
    return response


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    reader = _Reader(sock)
    while reader.fill():
        pass
    return reader.raw


def request(
    port: int,
    data: bytes,
    source: str | None = None,
    timeout: float = 10.0,
) -> RawResponse:
    """Send raw request bytes on a new connection and read one response."""
    with connect(port, source, timeout) as sock:
        sock.sendall(data)
        return read_response(sock)
