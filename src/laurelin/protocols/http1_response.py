# laurelin.protocols.http1_response — framing one HTTP/1.1 response (RFC 9112 6, 7; RFC 9110 6.4).
#
# The HTTPSink half of an HTTP/1.x connection that writes: it holds the head the app started
# until the first body part, then chooses the framing once: the app's Content-Length (checked:
# a body longer or shorter is an app error and the connection is reset), a Content-Length of
# its own when the whole body came in one message, chunked for streamed HTTP/1.1 bodies, or
# read-until-close for HTTP/1.0. HEAD, 1xx, 204 and 304 carry no body; a 204 never a
# Content-Length. The head and a small body leave in one write; on a keep-alive connection
# without TLS, that write waits for the server's write batch (protocols/write_batch.py), which
# flushes every connection's once per loop iteration. It is a mixin of
# HTTP1Connection (protocols/http1.py), which owns the connection state it reads.
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from laurelin.asgi.errors import error_page
from laurelin.asgi.http import check_header
from laurelin.protocols.http1_encoding import LAST_CHUNK, STATUS_LINES, chunk

if TYPE_CHECKING:
    from laurelin.asgi.http import HTTPCycle
    from laurelin.asgi.websocket import WebSocketCycle
    from laurelin.protocols.settings import ConnectionSettings

_NO_BODY_STATUS = frozenset({204, 304})
# A body part larger than this is written on its own instead of copied into a joined buffer.
_JOIN_LIMIT = 16384
# The parts of a streamed response are gathered and written once per loop iteration (a
# streaming app that never waits makes one write, not one per send()), or as soon as this
# much is waiting, so that write backpressure still reaches the app.
_CORK_LIMIT = 65536
# What a response header means to the framing (see header_line).
_PLAIN, _LENGTH, _FRAMING, _CONNECTION, _DEFAULT = 0, 1, 2, 3, 4
# The header line cache (ConnectionSettings.header_lines): at most this many entries (then it
# is emptied), and only of values at most this long (per-response values do not crowd it).
LINE_CACHE_MAX = 1024
LINE_CACHE_VALUE_MAX = 256


class ResponseWriter:
    """Response framing for HTTP1Connection; see the module comment."""

    __slots__ = (
        "_corked",
        "_expect_pending",
        "_flush_scheduled",
        "_pending",
        "_pending_size",
        "_resp_bytes",
        "_resp_chunked",
        "_resp_head",
        "_resp_head_request",
        "_resp_http10",
        "_resp_keep_alive",
        "_resp_no_body",
        "_resp_remaining",
        "bytes_out",
        "write_paused",
    )

    # Whether small complete responses go through the server's write batch (_cork). Not over
    # TLS: the TLS layer can take the client's FIN (without close_notify) and shut down before
    # the batch flushes, with no eof_received to flush first, and the response would be lost.
    _batched = True

    # Owned by HTTP1Connection; declared here for the type checker.
    settings: ConnectionSettings
    transport: asyncio.Transport
    _active: HTTPCycle | WebSocketCycle | None
    _closing: bool
    _lost: bool
    _pipeline: deque[tuple[HTTPCycle | WebSocketCycle, bool, bool]]
    loop: asyncio.AbstractEventLoop

    def _init_response_state(self) -> None:
        self._resp_head: list[bytes] | None = None
        self._resp_chunked = False
        self._resp_http10 = False
        self._resp_head_request = False
        self._resp_no_body = False
        self._resp_remaining: int | None = None
        self._resp_keep_alive = True
        self._resp_bytes = 0
        self.bytes_out = 0  # bytes written on this connection (protocols/data_rate.py)
        self._expect_pending = False
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._flush_scheduled = False
        # A small response waiting for the server's write batch (see _cork).
        self._corked: list[bytes] | None = None

    def abort(self) -> None:
        raise NotImplementedError

    def _response_done(self) -> None:
        raise NotImplementedError

    def _close(self, linger: bool) -> None:
        raise NotImplementedError

    def start_response(self, status: int, headers: Iterable[Any]) -> None:
        settings = self.settings
        date = settings.date_header
        parts = [STATUS_LINES[status], settings.default_headers, date.line() if date else b""]
        remaining: int | None = None
        overridden: set[bytes] | None = None
        close = False
        lines = settings.header_lines
        # Validated and encoded in one pass (each item is read once); nothing changes before
        # every header has passed.
        for item in headers:
            try:
                line, kind, length = lines[item]
            except Exception:  # not seen yet, or not hashable (a list, a writable memoryview)
                line, kind, length = header_line(item, settings)
            if kind:
                if kind == _LENGTH:
                    if status == 204:
                        continue  # RFC 9110 8.6: never a Content-Length on a 204
                    remaining = length
                elif kind == _FRAMING:
                    continue  # framing is ours to choose (RFC 9112 6.1)
                elif kind == _CONNECTION:
                    close = close or line[12:-2].lower() == b"close"
                    continue
                else:
                    # The app's own Server / Date / --header replaces ours.
                    if overridden is None:
                        overridden = set()
                    overridden.add(line[: line.index(b":")])
            parts.append(line)
        active = self._active
        if active is None:
            return  # reset meanwhile (abort at the end of a drain): nothing can be written
        if close:
            self._resp_keep_alive = False
        if overridden is not None:
            parts[1:3] = default_lines(settings, overridden)
        if status < 200:
            # An informational response (103 Early Hints): written now; the final one follows.
            parts.append(b"\r\n")
            informational = b"".join(parts)
            self.bytes_out += len(informational)
            self._write(informational)
            return
        scope = active.scope
        self._expect_pending = False  # answered without reading: no 100 Continue any more
        self._resp_head = parts
        self._resp_head_request = scope.get("method") == "HEAD"  # none in a websocket scope
        if status in _NO_BODY_STATUS or self._resp_head_request:
            self._resp_no_body = True
            # HEAD keeps the app's own Content-Length (the GET's) so that none is added.
            self._resp_remaining = remaining if self._resp_head_request else None
        else:
            self._resp_no_body = False
            self._resp_remaining = remaining
        self._resp_chunked = False
        self._resp_http10 = scope["http_version"] == "1.0"

    def write_body(self, data: bytes, more_body: bool) -> None:
        if self._closing or self.transport.is_closing():
            # Gone (or going): the bytes are dropped, and the app's next send() waits until
            # connection_lost has told it of the disconnect, instead of streaming into the void.
            self.write_paused = True
            self._pending.clear()
            if not more_body:
                self._response_done()
            return
        head = self._resp_head
        if head is not None:
            self._resp_head = None
            if not more_body:
                self._write_whole(head, data)
                return
            self._write_first(head, data)
        elif self._resp_no_body:
            pass
        elif self._resp_chunked:
            if data:
                self._write_chunk(data)
            if not more_body:
                self._pending.append(LAST_CHUNK)
        elif data:
            if self._resp_remaining is not None:
                self._check_length(data, more_body)
            self._out(data)
        elif not more_body and self._resp_remaining:
            self._check_length(data, more_body)
        self._resp_bytes += len(data)
        if not more_body:
            if self._pending:
                self._flush()
            self._response_done()
        elif self._pending_size >= _CORK_LIMIT:
            self._flush()
        elif self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def write_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        """End the response with trailer fields: after the last chunk when chunked (RFC 9112
        7.1.2); any other framing cannot carry them, and they are dropped."""
        if not self._resp_chunked or self._closing or self.transport.is_closing():
            self.write_body(b"", False)
            return
        parts = [b"0\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"\r\n")
        self._pending.append(b"".join(parts))
        self._flush()
        self._response_done()

    def _out(self, data: bytes) -> None:
        """Queue bytes of a streamed response; write_body flushes them (see _CORK_LIMIT)."""
        if len(data) > _JOIN_LIMIT:
            # Big: not copied into the queue; what is queued goes out with it.
            queued = self._take_pending()
            if self._closing:
                return
            if queued:
                self._write_parts(queued, data)
            else:
                self.bytes_out += len(data)
                self._write(data)
        else:
            self._pending.append(data)
            self._pending_size += len(data)

    def _take_pending(self) -> bytes:
        pending = self._pending
        if not pending:
            return b""
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        pending.clear()
        self._pending_size = 0
        return data

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self._take_pending()
        if data and not self._closing:
            self.bytes_out += len(data)
            self._write(data)

    def _write_whole(self, head: list[bytes], data: bytes) -> None:
        """The held head with the whole body, framed by its length, in one write (or two for
        a big body, not copied); then the response is done. Most responses take this path:
        it is _write_first and the end of write_body for one body part, in one call."""
        size = len(data)
        remaining = self._resp_remaining
        if self._resp_no_body:
            if self._resp_head_request and remaining is None and size:
                # HEAD: the length the GET would have had (RFC 9110 9.3.2).
                head.append(b"content-length: %d\r\n" % size)
            data = b""
        elif remaining is None:
            head.append(b"content-length: %d\r\n" % size)
        elif size != remaining:
            self._check_length(data, False)  # raises: an app error
        self._end_head(head, False)
        if len(data) > _JOIN_LIMIT:
            self._write_parts(b"".join(head), data)
        else:
            head.append(data)
            response = b"".join(head)
            self.bytes_out += len(response)
            if self._resp_keep_alive and self._batched:
                self._cork(response)
            else:
                self._write(response)  # a close follows at once, or TLS (see _batched)
        self._resp_bytes += size
        self._response_done()

    def _write_first(self, head: list[bytes], data: bytes) -> None:
        """Write the held head with the first part of a streamed body (more to come),
        choosing the framing (RFC 9112 6.3); a whole body goes through _write_whole."""
        until_close = False
        if self._resp_no_body:
            data = b""
        elif self._resp_remaining is not None:
            self._check_length(data, True)
        elif not self._resp_http10:
            self._resp_chunked = True
            head.append(b"transfer-encoding: chunked\r\n")
        else:
            until_close = True  # HTTP/1.0 and no length: the body ends when the connection closes
        self._end_head(head, until_close)
        self._out(b"".join(head))
        if self._resp_chunked:
            if data:
                self._write_chunk(data)
        elif data:
            self._out(data)

    def _end_head(self, head: list[bytes], close: bool) -> None:
        """End the head with its Connection line and the blank line: close when asked, when
        the client or the app said so, when draining, or when the request body was not read
        (RFC 9112 9.6); keep-alive said out loud to an HTTP/1.0 client."""
        active = self._active
        if (
            close
            or not self._resp_keep_alive
            or self.settings.draining
            or (active is not None and active.more_body)
        ):
            self._resp_keep_alive = False
            head.append(b"connection: close\r\n\r\n")
        elif self._resp_http10:
            head.append(b"connection: keep-alive\r\n\r\n")
        else:
            head.append(b"\r\n")

    def _cork(self, data: bytes) -> None:
        """Write a small, complete response at the end of this loop iteration, with the other
        connections' (protocols/write_batch.py)."""
        corked = self._corked
        if corked is None:
            self._corked = [data]
            self.settings.write_batch.add(self)
        else:
            corked.append(data)

    def _uncork(self) -> None:
        """Write what _cork holds (the write batch's flush, or an ordered write before it)."""
        corked = self._corked
        if corked is None:
            return
        self._corked = None
        transport = self.transport
        if not self._lost and not transport.is_closing():
            transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def _write(self, data: bytes) -> None:
        """Write now, after whatever this connection has corked."""
        if self._corked is not None:
            self._uncork()
        self.transport.write(data)

    def _write_chunk(self, data: bytes) -> None:
        if len(data) > _JOIN_LIMIT:
            self._out(b"%x\r\n" % len(data))
            self._out(data)
            self._out(b"\r\n")
        else:
            self._out(chunk(data))

    def _write_parts(self, *parts: bytes) -> None:
        """Several buffers in one go, without copying them into one."""
        self.bytes_out += sum([len(part) for part in parts])
        if self._corked is not None:
            self._uncork()
        if self.settings.writelines_pauses:
            self.transport.writelines(parts)
        else:
            # asyncio's writelines() on Python 3.12 never calls pause_writing, which would
            # leave a slow reader's data unbounded: one write() each there.
            for part in parts:
                self.transport.write(part)

    def _check_length(self, data: bytes, more_body: bool) -> None:
        remaining = self._resp_remaining
        assert remaining is not None
        remaining -= len(data)
        if remaining < 0:
            self.abort()
            raise RuntimeError("The app sent more body than its Content-Length")
        self._resp_remaining = remaining
        if not more_body and remaining:
            self._short_body()

    def _short_body(self) -> None:
        self.abort()
        raise RuntimeError("The app's response body is shorter than its Content-Length")

    def _write_error(
        self, status: int, extra_headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self._pipeline.clear()
        headers, body = error_page(status)
        parts = [STATUS_LINES[status], self.settings.default_headers]
        if self.settings.date_header is not None:
            parts.append(self.settings.date_header.line())
        if extra_headers:
            headers = [*extra_headers, *headers]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts.append(b"connection: close\r\n\r\n")
        if not self._answering_head():
            parts.append(body)  # RFC 9110 9.3.2: never a body in answer to HEAD
        page = b"".join(parts)
        self.bytes_out += len(page)
        self._write(page)
        self._close(linger=True)

    def _answering_head(self) -> bool:
        raise NotImplementedError


def header_line(item: Any, settings: ConnectionSettings) -> tuple[bytes, int, int]:
    """One response header of the app's, validated (asgi.http.check_header), as its encoded
    line, what it means to the framing and (a Content-Length) its number; remembered in
    `settings.header_lines` when it is a pair of bytes with a short value, so that the same
    pair next time costs one lookup.

    Raises:
        RuntimeError: an invalid header, or a Content-Length that is not a number.
    """
    name, value = check_header(item)
    kind = _PLAIN
    length = 0
    if name in settings.special_header_names:
        if name == b"content-length":
            if not value.isdigit():
                raise RuntimeError(f"Invalid Content-Length {value!r} in the response")
            kind = _LENGTH
            length = int(value)
        elif name == b"transfer-encoding":
            kind = _FRAMING
        elif name == b"connection":
            kind = _CONNECTION
        else:
            kind = _DEFAULT
    line = b"%b: %b\r\n" % (name, value)
    if (
        type(item) is tuple
        and type(item[0]) is bytes
        and type(item[1]) is bytes
        and len(value) <= LINE_CACHE_VALUE_MAX
    ):
        cache = settings.header_lines
        if len(cache) >= LINE_CACHE_MAX:
            cache.clear()
        entry = cache[item] = (line, kind, length)
        return entry
    return line, kind, length


def default_lines(settings: ConnectionSettings, app_names: set[bytes]) -> list[bytes]:
    """The default header lines the app did not set itself."""
    lines = [
        line + b"\r\n"
        for line in settings.default_headers.split(b"\r\n")
        if line and line.split(b":", 1)[0].lower() not in app_names
    ]
    date = settings.date_header
    lines.append(date.line() if date is not None and b"date" not in app_names else b"")
    return lines
