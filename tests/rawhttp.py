# A small raw-socket HTTP/1.1 client for byte-exact end-to-end tests, and their shared helpers.
#
# `RawClient` sends exactly the bytes a test gives it and reads responses with RFC 9112 section 6.3
# framing (no body for HEAD, 1xx, 204 and 304; chunked; Content-Length; else until close). Every
# read is bounded by a timeout: a server that hangs fails the test instead of stalling it.
# `ConnectionClosed` means the server closed (EOF or reset) before a response was complete.
# `serve()` runs a laurelin process for a module-scoped fixture; `events()`, `release()`,
# `progress()` and `wait_stalled()` use the side channel of tests/apps/h1_app.py.
from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from conftest import ServerProcess, free_port

TIMEOUT = 10.0


class ConnectionClosed(Exception):
    """The server closed the connection (EOF or reset) before a complete response."""

    def __init__(self, message: str, partial: bytes) -> None:
        super().__init__(f"{message}; received {len(partial)} bytes: {partial[:300]!r}")
        self.partial = partial


@dataclass
class Response:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    framing: str = "none"  # "none", "content-length", "chunked" or "close"
    trailers: list[tuple[str, str]] = field(default_factory=list)
    raw: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def head(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


def build(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "HTTP/1.1",
    host: bool = True,
) -> bytes:
    """A well-formed request; Content-Length is added when there is a body and no framing."""
    lines = [f"{method} {target} {version}"]
    names = {name.lower() for name, _ in headers or []}
    if host and "host" not in names:
        lines.append("Host: localhost")
    lines += [f"{name}: {value}" for name, value in headers or []]
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes, trailers: bytes = b"") -> bytes:
    """A chunked body (RFC 9112 7.1) made of `parts`, then the last chunk and `trailers`."""
    out = b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in parts if part)
    return out + b"0\r\n" + trailers + b"\r\n"


class RawClient:
    """One TCP connection to the server; every read waits at most `timeout` seconds."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = TIMEOUT,
        rcvbuf: int | None = None,
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False
        self.reset = False

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, tolerating a server that already closed or reset (returns False then)."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def close(self, reset: bool = False) -> None:
        """Close; with `reset` the kernel sends RST instead of FIN (SO_LINGER 0)."""
        if reset:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    # -- receiving -----------------------------------------------------------------------------

    def _fill(self, deadline: float) -> bool:
        """Read more into the buffer; False at EOF or reset. TimeoutError past `deadline`."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except TimeoutError:
            raise TimeoutError(
                f"timed out waiting for the server; buffered: {bytes(self.buffer[:300])!r}"
            ) from None
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _read_until(self, marker: bytes, deadline: float, consumed: bytearray) -> bytes:
        while True:
            index = self.buffer.find(marker)
            if index >= 0:
                data = self._take(index + len(marker))
                consumed += data
                return data
            if not self._fill(deadline):
                raise ConnectionClosed(
                    "connection closed before " + repr(marker), bytes(consumed + self.buffer)
                )

    def _read_exact(self, size: int, deadline: float, consumed: bytearray) -> bytes:
        while len(self.buffer) < size:
            if not self._fill(deadline):
                raise ConnectionClosed(
                    f"connection closed with {size - len(self.buffer)} body bytes missing",
                    bytes(consumed + self.buffer),
                )
        data = self._take(size)
        consumed += data
        return data

    def read_response(self, method: str = "GET", timeout: float | None = None) -> Response:
        """Read one response (a 1xx is returned on its own; call again for the final one)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        consumed = bytearray()
        head = self._read_until(b"\r\n\r\n", deadline, consumed)
        lines = head[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        status_text, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/") or not status_text.isdigit():
            raise AssertionError(f"not an HTTP response: {bytes(consumed)[:300]!r}")
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or name != name.strip() or not name:
                raise AssertionError(f"malformed response header line {line!r}")
            headers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
        response = Response(
            int(status_text), reason.decode("latin-1"), version.decode("latin-1"), headers
        )
        te = response.get_all("transfer-encoding")
        lengths = response.get_all("content-length")
        status = response.status
        if method == "HEAD" or status < 200 or status in (204, 304):
            response.framing = "none"
        elif te:
            if te[-1].split(",")[-1].strip().lower() != "chunked":
                raise AssertionError(f"response transfer-encoding not ending in chunked: {te}")
            if lengths:
                raise AssertionError("response has both Transfer-Encoding and Content-Length")
            response.framing = "chunked"
            response.body, response.trailers = self._read_chunked(deadline, consumed)
        elif lengths:
            if len(lengths) != 1 or not lengths[0].isdigit():
                raise AssertionError(f"bad response content-length: {lengths}")
            response.framing = "content-length"
            response.body = self._read_exact(int(lengths[0]), deadline, consumed)
        else:
            response.framing = "close"
            while self._fill(deadline):
                pass
            response.body = self._take(len(self.buffer))
            consumed += response.body
        response.raw = bytes(consumed)
        return response

    def _read_chunked(
        self, deadline: float, consumed: bytearray
    ) -> tuple[bytes, list[tuple[str, str]]]:
        body = bytearray()
        while True:
            line = self._read_until(b"\r\n", deadline, consumed)[:-2]
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise AssertionError(f"bad chunk size line {line!r}") from None
            if size == 0:
                break
            body += self._read_exact(size, deadline, consumed)
            if self._read_exact(2, deadline, consumed) != b"\r\n":
                raise AssertionError("chunk data not followed by CRLF")
        trailers = []
        while True:
            line = self._read_until(b"\r\n", deadline, consumed)[:-2]
            if not line:
                break
            name, _, value = line.partition(b":")
            trailers.append((name.decode("latin-1").lower(), value.strip().decode("latin-1")))
        return bytes(body), trailers

    def read_final(
        self, method: str = "GET", timeout: float | None = None
    ) -> tuple[list[Response], Response]:
        """Read 1xx responses and the final one: (informational responses, final response)."""
        informational = []
        while True:
            response = self.read_response(method, timeout)
            if response.status >= 200:
                return informational, response
            informational.append(response)

    def request(self, data: bytes, method: str = "GET") -> Response:
        self.send(data)
        return self.read_response(method)

    def receive_nothing(self, timeout: float = 0.5) -> bytes:
        """What arrives within `timeout` (b"" if nothing). A check that the server stays quiet."""
        if self.buffer:
            return self._take(len(self.buffer))
        try:
            self._fill(time.monotonic() + timeout)
        except TimeoutError:
            return b""
        return self._take(len(self.buffer))

    def poll(self, timeout: float) -> bool:
        """Whether the server sent something (kept for the next read) or closed in `timeout`."""
        if self.buffer or self.eof:
            return True
        try:
            return not self._fill(time.monotonic() + timeout) or bool(self.buffer)
        except TimeoutError:
            return False

    def wait_closed(self, timeout: float = TIMEOUT) -> bytes:
        """Read until the server closes; return the bytes that came first. TimeoutError if it
        does not close within `timeout`."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        return self._take(len(self.buffer))

    def read_raw(self, size: int, timeout: float | None = None) -> bytes:
        """Exactly `size` bytes (ConnectionClosed if the server closes first)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        return self._read_exact(size, deadline, bytearray())


def exchange(port: int, data: bytes, method: str = "GET", timeout: float = TIMEOUT) -> Response:
    """Open a connection, send `data`, read one final response, close."""
    with RawClient(port, timeout=timeout) as client:
        client.send(data)
        return client.read_final(method)[1]


def events(server: ServerProcess, tag: str, want: str = "", timeout: float = 10.0) -> list[str]:
    """What tests/apps/h1_app.py recorded under `tag`, once an event starting with `want` (or
    one of its `|`-separated alternatives) is there or `timeout` seconds have passed."""
    with RawClient(server.port, timeout=timeout + 30) as client:
        target = f"/events?tag={tag}&want={want}&timeout={timeout}"
        result: list[str] = client.request(build("GET", target)).json()
    return result


def release(server: ServerProcess, tag: str) -> None:
    """Open the gate h1_app's /gated-echo and /late wait on."""
    with RawClient(server.port) as client:
        assert client.request(build("GET", f"/release?tag={tag}")).body == b"released"


def progress(server: ServerProcess, tag: str) -> dict[str, Any]:
    """How far h1_app's /bigstream?tag=T got: {"sent", "done", "error", "sha256"}."""
    with RawClient(server.port) as client:
        result: dict[str, Any] = client.request(build("GET", f"/progress?tag={tag}")).json()
    return result


def wait_stalled(server: ServerProcess, tag: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll /progress until the stream stops advancing (its send() is blocked); bounded."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    steady = 0
    while time.monotonic() < deadline:
        current = progress(server, tag)
        if current and last and current["sent"] == last["sent"] and not current["done"]:
            steady += 1
            if steady >= 3:
                return current
        else:
            steady = 0
        last = current
        time.sleep(0.2)
    raise AssertionError(f"the stream never stalled: {last}")


@contextlib.contextmanager
def serve(app: str, *args: str, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A laurelin process serving `app` on a free port (for module-scoped fixtures)."""
    proc = ServerProcess(["-p", str(free_port()), *args, app], env)
    try:
        proc.wait_listening()
        yield proc
    finally:
        proc.stop()
