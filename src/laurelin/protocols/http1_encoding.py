# laurelin.protocols.http1_encoding — HTTP/1.1 response bytes (RFC 9112 sections 4, 6, 7).
#
# Status lines are precomputed; the Date header (RFC 9110 6.6.1) is formatted once a second;
# the Server and --header lines are encoded once per server. Which framing a response gets
# (Content-Length, chunked, or read-until-close for HTTP/1.0) is decided in http1_response.py;
# this module only turns decisions into bytes.
from __future__ import annotations

import time
from email.utils import formatdate

from laurelin.asgi.errors import reason_phrase

# `HTTP/1.1 200 OK\r\n` for every status 100-599.
STATUS_LINES: dict[int, bytes] = {
    status: f"HTTP/1.1 {status} {reason_phrase(status)}\r\n".encode("ascii")
    for status in range(100, 600)
}

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LAST_CHUNK = b"0\r\n\r\n"


class DateHeader:
    """`date: <IMF-fixdate>\\r\\n`, recomputed at most once a second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        """The current Date header line."""
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
        return self._line

    def value(self) -> bytes:
        """The current Date header value (for HTTP/2 header fields)."""
        return self.line()[6:-2]


def encode_default_headers(server_name: str | None, extra: tuple[str, ...]) -> bytes:
    """The header lines every response carries: Server (unless disabled) and --header values.

    Raises:
        ValueError: a --header value that is not a valid NAME:VALUE field.
    """
    lines = []
    if server_name:
        lines.append(b"server: " + _field_value(server_name) + b"\r\n")
    for item in extra:
        name, _, value = item.partition(":")
        name = name.strip()
        if not name or not all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in name):
            raise ValueError(f"--header {item!r}: invalid header name")
        lines.append(name.encode("ascii") + b": " + _field_value(value.strip()) + b"\r\n")
    return b"".join(lines)


def default_header_names(server_name: str | None, extra: tuple[str, ...]) -> frozenset[bytes]:
    """Lower-cased names of the default headers (an app header of that name replaces them)."""
    names = {b"server"} if server_name else set()
    names.update(item.partition(":")[0].strip().lower().encode("ascii") for item in extra)
    return frozenset(names)


def _field_value(value: str) -> bytes:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"header value {value!r} contains CR, LF or NUL")
    return value.encode("latin-1")


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 7.1)."""
    return b"%x\r\n%b\r\n" % (len(data), data)
