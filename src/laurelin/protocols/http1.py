# laurelin.protocols.http1 — HTTP/1.1 and 1.0 over one transport (RFC 9112), on httptools.
#
# Owns: parsing request heads and bodies (llhttp in strict mode, which already rejects
# CL+TE conflicts, duplicate Content-Length, bad chunk sizes, obs-fold, bare LF/CR and
# whitespace before the colon: each a 400 and close), the head-size/header-count/body-size
# limits (431/414/413), the header-read and keep-alive timers (408 / silent close), pipelining
# (one request runs at a time; responses leave in request order), `Expect: 100-continue`,
# response framing (Content-Length, chunked, HEAD/1xx/204/304 without body, HTTP/1.0
# read-until-close) and write backpressure. The ASGI rules are the bridge's (asgi/http.py):
# this class is the `HTTPSink` every HTTPCycle of the connection talks to.
from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
from collections import deque
from typing import TYPE_CHECKING

import httptools

from laurelin.asgi.context import PeerInfo
from laurelin.asgi.errors import error_page
from laurelin.asgi.http import HTTPCycle
from laurelin.asgi.scope import BadRequest, build_http_scope
from laurelin.logs import error_logger, log_access
from laurelin.protocols.http1_response import (
    _STATUS_LINES,
    CONTINUE,
    LAST_CHUNK,
    chunk,
    status_line,
)

if TYPE_CHECKING:
    from laurelin.protocols.settings import ConnectionSettings

_NO_BODY_STATUS = frozenset({204, 304})
# Seconds a connection we are closing after an error keeps reading (and discarding) before it
# is dropped, so the client sees our response instead of a reset (RFC 9112 9.6).
LINGER_SECONDS = 2.0
# A big write is handed to the transport as separate buffers instead of one joined copy.
_JOIN_LIMIT = 16384

_IDLE, _HEAD, _KEEPALIVE = 0, 1, 2
# SO_LINGER on with a zero timeout: close() sends RST instead of FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)
_UNDERSCORE = ord("_")
_NEL = 0x85
_SLASH = ord("/")
_HASH = ord("#")
# RFC 9112 3.2 / RFC 3986 3.2.2: uri-host [ ":" port ], possibly empty.
_HOST_VALUE = re.compile(rb"[A-Za-z0-9\-._~%!$&'()*+,;=:\[\]]*")
_METHODS = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")
}


class _TooLarge(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class HTTP1Connection(asyncio.Protocol):
    """One client connection speaking HTTP/1.x; the sink of its requests' ASGI cycles."""

    __slots__ = (
        "_active",
        "_closing",
        "_cycles",
        "_deadline",
        "_deadline_kind",
        "_deferred_error",
        "_drain_waiters",
        "_dropped_headers",
        "_expect_continue",
        "_expect_pending",
        "_feed_size",
        "_head_reads",
        "_headers",
        "_hosts",
        "_in_head",
        "_intermediary",
        "_lost",
        "_parser",
        "_parsing",
        "_pipeline",
        "_raw_head",
        "_read_paused",
        "_read_paused_body",
        "_request_keep_alive",
        "_resp_bytes",
        "_resp_chunked",
        "_resp_head",
        "_resp_head_request",
        "_resp_http10",
        "_resp_keep_alive",
        "_resp_no_body",
        "_resp_remaining",
        "_timer",
        "_transfer_encoding",
        "_url",
        "body_received",
        "loop",
        "peer",
        "settings",
        "transport",
        "write_paused",
    )

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.loop = settings.ctx.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.peer: PeerInfo = None  # type: ignore[assignment]
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._dropped_headers = 0
        self._feed_size = 0
        self._intermediary = False
        self._hosts = 0
        self._transfer_encoding = False
        self._raw_head = 0
        self._in_head = False
        self._head_reads = 0
        self._expect_continue = False
        self._expect_pending = False
        self._request_keep_alive = True
        self._parsing: HTTPCycle | None = None
        self._active: HTTPCycle | None = None
        self._pipeline: deque[tuple[HTTPCycle, bool, bool]] = deque()
        self._cycles: set[HTTPCycle] = set()
        self._deferred_error = 0
        self._closing = False
        self._lost = False
        self._read_paused = False
        self._read_paused_body = False
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._deadline_kind = _IDLE
        self._resp_head: list[bytes] | None = None
        self._resp_chunked = False
        self._resp_http10 = False
        self._resp_head_request = False
        self._resp_no_body = False
        self._resp_remaining: int | None = None
        self._resp_keep_alive = True
        self._resp_bytes = 0
        self.body_received = 0

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        settings = self.settings
        self.peer = PeerInfo.from_addresses(
            settings.ctx,
            transport.get_extra_info("peername"),
            transport.get_extra_info("sockname"),
            settings.tls,
        )
        settings.connections.add(self)
        self._arm(_HEAD, settings.header_read_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._lost = True
        self.settings.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for cycle in list(self._cycles):
            cycle.on_disconnect()
        self._pipeline.clear()
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._deadline_kind == _KEEPALIVE:
            self._deadline_kind = _HEAD
            self._deadline = self.loop.time() + self.settings.header_read_timeout
        if len(data) > self.settings.limit_request_head_size:
            self._receive_sliced(data)
        elif not self._feed(data, data):
            return
        if self._active is None and self._pipeline:
            self._start_next()

    def _receive_sliced(self, data: bytes) -> None:
        # Fed in slices of at most the head limit, so that the slice a head begins in (not
        # counted, see _feed) can hide at most one limit's worth of an endless header.
        limit = self.settings.limit_request_head_size
        view = memoryview(data)
        for start in range(0, len(data), limit):
            if self._closing or not self._feed(view[start : start + limit], view[start:]):
                return

    def _feed(self, data: bytes | memoryview, rest: bytes | memoryview) -> bool:
        """Parse one slice of input (`rest`: it and all input after it); False when parsing
        stopped (an error, or an upgrade that took the rest)."""
        self._feed_size = len(data)
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._parse_stopped(exc, rest)
            return False
        if self._in_head:
            # A head still incomplete after this slice. llhttp buffers a partial field itself,
            # so counting slices is what bounds an endless header line (431). The slice the
            # head began in is not counted (it may hold earlier requests too); it is at most
            # the limit, and a head that spans slices gets the exact check once complete.
            if self._head_reads:
                self._raw_head += len(data)
                if self._raw_head > self.settings.limit_request_head_size:
                    self._refuse(431, "request head too large")
                    return False
            self._head_reads += 1
        return True

    def _parse_stopped(self, exc: Exception, rest: bytes | memoryview) -> None:
        if isinstance(exc, httptools.HttpParserUpgrade):
            self._on_upgrade(bytes(rest[exc.args[0] :]))
        elif isinstance(exc, httptools.HttpParserCallbackError):
            cause = exc.__context__
            if isinstance(cause, _TooLarge):
                self._refuse(cause.status)
            elif isinstance(cause, BadRequest):
                self._refuse(cause.status, str(cause))
            else:
                error_logger.exception("Error parsing request", exc_info=cause)
                self._refuse(400)
        else:
            reason = str(exc)
            self._refuse(505 if "HTTP version" in reason else 400, reason)

    def eof_received(self) -> bool | None:
        # The client closed its side. Like Daphne and Uvicorn we take that as the client going
        # away: returning None lets the transport close, and connection_lost tells every
        # running app `http.disconnect` (a half-close that still waits for an answer is rare;
        # an app left waiting for a disconnect that never comes is not).
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._head_reads = 0
        self._raw_head = 0
        self._url = b""
        self._headers = []
        self._dropped_headers = 0
        self._expect_continue = False
        self._intermediary = False
        self._hosts = 0
        self._transfer_encoding = False
        self.body_received = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.settings.limit_request_head_size:
            raise _TooLarge(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp has already refused every CTL but HTAB (RFC 9110 5.5), so of Daphne's rule
        # (asgi.scope.BAD_HEADER_VALUE) only \x85 can still be here.
        # Byte membership is tested with ints: `b"_" in name` first tries the operand as an
        # int, fails with a formatted TypeError and retries; that cost more than all the rest.
        name = name.lower()
        if _UNDERSCORE in name or _NEL in value or name in self.settings.notable_headers:
            self._unusual_header(name, value)
            return
        self._headers.append((name, value))

    def _unusual_header(self, name: bytes, value: bytes) -> None:
        if _NEL in value:
            raise BadRequest("control character in a header value")
        if _UNDERSCORE in name:
            # Daphne (CVE-2015-0219): "_" names could masquerade as "-" ones; drop them.
            self._dropped_headers += 1
            return
        if name == b"host":
            self._hosts += 1
            if _HOST_VALUE.fullmatch(value) is None:
                raise BadRequest("invalid Host header")
        elif name == b"transfer-encoding":
            self._transfer_encoding = True
        elif name == b"expect":
            if value.lower() == b"100-continue":
                self._expect_continue = True
        else:
            self._intermediary = True  # Daphne-Root-Path or a proxy header: the scope looks
        self._headers.append((name, value))

    def _check_head_limits(self) -> None:
        """431 for too many header fields or too large a head (RFC 6585 5).

        Called only when the cheap bound says the limit may be passed: the head spanned reads,
        or the read it lies in is larger than the limit.
        """
        settings = self.settings
        headers = self._headers
        if len(headers) + self._dropped_headers > settings.limit_request_headers:
            raise _TooLarge(431)
        size = len(self._url) + sum([len(n) + len(v) + 4 for n, v in headers])
        if size > settings.limit_request_head_size:
            raise _TooLarge(431)

    def on_headers_complete(self) -> None:
        parser = self._parser
        http_version = parser.get_http_version()
        if http_version != "1.1" and http_version != "1.0":
            raise BadRequest("HTTP version not supported", 505)
        if self._hosts != 1 and (self._hosts or http_version == "1.1"):
            # RFC 9112 3.2: an HTTP/1.1 request needs exactly one Host; any request, at most one.
            raise BadRequest("missing or repeated Host header")
        if self._transfer_encoding and http_version == "1.0":
            # RFC 9112 6.1: faulty framing; answering and closing is the only safe reading.
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        settings = self.settings
        headers = self._headers
        if (
            len(headers) + self._dropped_headers > settings.limit_request_headers
            or self._head_reads
            or self._feed_size > settings.limit_request_head_size
        ):
            self._check_head_limits()
        self._deadline_kind = _IDLE
        self._in_head = False
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        url = self._url
        if url[0] == _SLASH and _HASH not in url:
            question = url.find(b"?")
            if question < 0:
                raw_path, query = url, b""
            else:
                raw_path, query = url[:question], url[question + 1 :]
        else:
            raw_path, query = _split_target(url, method)
        scope = build_http_scope(
            settings.ctx,
            self.peer,
            method,
            http_version,
            raw_path,
            query,
            headers,
            settings.extensions,
            self._intermediary,
        )
        if settings.limit_max_body_size is not None:
            length = _content_length(headers)
            if length is not None and length > settings.limit_max_body_size:
                raise _TooLarge(413)
        self._request_keep_alive = keep_alive = parser.should_keep_alive()
        cycle = HTTPCycle(scope, self, settings.ctx)
        self._parsing = cycle
        self._cycles.add(cycle)
        # RFC 9110 10.1.1: a 1.0 client cannot be relied on to understand 100 Continue.
        expect = self._expect_continue and http_version == "1.1"
        self._pipeline.append((cycle, keep_alive, expect))
        if self._active is not None and not self._read_paused:
            # A pipelined request: hold further input until the current response is done.
            self._read_paused = True
            self.transport.pause_reading()

    def on_body(self, body: bytes) -> None:
        cycle = self._parsing
        if cycle is None:
            return
        self.body_received += len(body)
        limit = self.settings.limit_max_body_size
        if limit is not None and self.body_received > limit:
            raise _TooLarge(413)
        if cycle.response_complete:
            return  # the app answered without reading: discard what is still in flight
        cycle.feed_body(body)

    def on_message_complete(self) -> None:
        cycle = self._parsing
        self._parsing = None
        if cycle is not None:
            cycle.feed_eof()

    # -- running requests ------------------------------------------------------------------------

    def _start_next(self) -> None:
        if self._closing or self._active is not None or not self._pipeline:
            return
        cycle, keep_alive, expect = self._pipeline.popleft()
        self._active = cycle
        self._resp_keep_alive = keep_alive
        self._expect_pending = expect
        self._resp_bytes = 0
        self._resp_head = None
        cycle.start()
        if self._read_paused and not self._pipeline:
            self._maybe_resume_reading()

    def cycle_finished(self, cycle: HTTPCycle) -> None:
        self._cycles.discard(cycle)

    # -- HTTPSink ----------------------------------------------------------------------------------

    def send_continue(self) -> None:
        if self._expect_pending:
            self._expect_pending = False
            if not self._closing:
                self.transport.write(CONTINUE)

    def pause_reading(self) -> None:
        self._read_paused_body = True
        if not self._read_paused and not self._closing:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        self._read_paused_body = False
        self._maybe_resume_reading()

    def _maybe_resume_reading(self) -> None:
        if (
            self._read_paused
            and not self._read_paused_body
            and not self._closing
            and not self._pipeline
            and not self._deferred_error
        ):
            self._read_paused = False
            self.transport.resume_reading()

    def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        settings = self.settings
        active = self._active
        assert active is not None
        date = settings.date_header
        parts = [_STATUS_LINES[status], settings.default_headers, date.line() if date else b""]
        remaining: int | None = None
        special = settings.special_header_names
        override = False
        for name, value in headers:  # names arrive lower-cased and validated (asgi/http.py)
            if name in special:
                if name == b"content-length":
                    if not value.isdigit():
                        raise RuntimeError(f"Invalid Content-Length {value!r} in the response")
                    remaining = int(value)
                elif name == b"transfer-encoding":
                    continue  # framing is ours to choose (RFC 9112 6.1)
                elif name == b"connection":
                    if value.lower() == b"close":
                        self._resp_keep_alive = False
                    continue
                else:
                    override = True  # the app's own Server / Date / --header replaces ours
            parts += (name, b": ", value, b"\r\n")
        if override:
            parts[1:3] = _default_lines(settings, {name for name, _ in headers})
        if status < 200:
            # An informational response (103 Early Hints): written now; the final one follows.
            parts.append(b"\r\n")
            self.transport.write(b"".join(parts))
            return
        scope = active.scope
        self._expect_pending = False  # answered without reading: no 100 Continue any more
        if status == 204 and remaining is not None:
            # RFC 9110 8.6: never a Content-Length on a 204.
            parts = _without_field(parts, b"content-length")
        self._resp_head = parts
        self._resp_head_request = scope["method"] == "HEAD"
        if status in _NO_BODY_STATUS or self._resp_head_request:
            self._resp_no_body = True
            self._resp_remaining = None
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
            if not more_body:
                self._response_done()
            return
        head = self._resp_head
        if head is not None:
            self._resp_head = None
            self._write_first(head, data, more_body)
        elif self._resp_no_body:
            pass
        elif self._resp_chunked:
            if data:
                self._write_chunk(data)
            if not more_body:
                self.transport.write(LAST_CHUNK)
        elif self._resp_remaining is not None:
            self._check_length(data, more_body)
            if data:
                self.transport.write(data)
        elif data:
            self.transport.write(data)
        self._resp_bytes += len(data)
        if not more_body:
            self._response_done()

    def _write_first(self, head: list[bytes], data: bytes, more_body: bool) -> None:
        """Write the held head with the first body part, choosing the framing (RFC 9112 6.3)."""
        active = self._active
        # An unread request body means we close after this response (RFC 9112 9.6): say so.
        close = (
            not self._resp_keep_alive
            or self.settings.draining
            or (active is not None and active.more_body)
        )
        if self._resp_no_body:
            if self._resp_head_request and self._resp_remaining is None and data and not more_body:
                # HEAD: the length the GET would have had (RFC 9110 9.3.2).
                head.append(b"content-length: %d\r\n" % len(data))
            data = b""
        elif self._resp_remaining is not None:
            self._check_length(data, more_body)
        elif not more_body:
            self._resp_remaining = 0
            head.append(b"content-length: %d\r\n" % len(data))
        elif not self._resp_http10:
            self._resp_chunked = True
            head.append(b"transfer-encoding: chunked\r\n")
            if data:
                data = chunk(data)
        else:
            close = True  # HTTP/1.0 and no length: the body ends when the connection closes
        if close:
            self._resp_keep_alive = False
            head.append(b"connection: close\r\n\r\n")
        elif self._resp_http10:
            head.append(b"connection: keep-alive\r\n\r\n")
        else:
            head.append(b"\r\n")
        if len(data) > _JOIN_LIMIT:
            self.transport.writelines((b"".join(head), data))
        else:
            head.append(data)
            self.transport.write(b"".join(head))

    def _write_chunk(self, data: bytes) -> None:
        if len(data) > _JOIN_LIMIT:
            self.transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            self.transport.write(chunk(data))

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

    def _response_done(self) -> None:
        cycle = self._active
        if cycle is None:
            return
        self._active = None
        if self.settings.access_log:
            scope = cycle.scope
            query = scope["query_string"]
            target = scope["raw_path"].decode("ascii")
            if query:
                target += "?" + query.decode("ascii")
            log_access(scope["client"], scope["method"], target, cycle.status, self._resp_bytes)
        if self._closing:
            return
        if cycle.more_body or not self._resp_keep_alive or self.settings.draining:
            # Unread request body, Connection: close, HTTP/1.0 without length, or draining.
            self._close(linger=cycle.more_body)
            return
        if self._pipeline:
            self.loop.call_soon(self._start_next)
            return
        if self._deferred_error:
            self._write_error(self._deferred_error)
            return
        self._arm(_KEEPALIVE, self.settings.timeout_keep_alive)
        if self._read_paused:
            self._maybe_resume_reading()

    async def wait_writable(self) -> None:
        if not self.write_paused or self._lost:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def cancel_apps(self) -> None:
        """Cancel every app task still running for this connection (end of a drain)."""
        for cycle in list(self._cycles):
            if cycle.task is not None and not cycle.task.done():
                cycle.task.cancel()

    def abort(self) -> None:
        """Reset the connection: an RST, so a truncated response never reads as complete."""
        self._closing = True
        self._active = None
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.transport.abort()

    # -- errors, timers and closing ----------------------------------------------------------------

    def _refuse(self, status: int, reason: str = "") -> None:
        """Answer a request the parser or a limit refused, then close (after pending responses)."""
        if error_logger.isEnabledFor(logging.DEBUG):
            error_logger.debug("Refusing request with %d: %s", status, reason or "limit")
        if self._parsing is not None and self._parsing is self._active:
            if self._parsing.response_started:
                self.abort()
            else:
                self._parsing.fail_request(status)
            return
        parsing = self._parsing
        if parsing is not None and self._pipeline and self._pipeline[-1][0] is parsing:
            # Its body cannot be read any further: it will never run.
            self._pipeline.pop()
            self._cycles.discard(parsing)
        self._parsing = None
        if self._active is None and self._pipeline:
            self._start_next()  # requests parsed before the bad one are answered first
        if self._active is not None or self._pipeline:
            self._deferred_error = status
            if not self._read_paused:
                self._read_paused = True
                self.transport.pause_reading()
            return
        self._write_error(status)

    def _write_error(self, status: int) -> None:
        self._pipeline.clear()
        headers, body = error_page(status)
        parts = [status_line(status), self.settings.default_headers]
        if self.settings.date_header is not None:
            parts.append(self.settings.date_header.line())
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"connection: close\r\n\r\n", body)
        self.transport.write(b"".join(parts))
        self._close(linger=True)

    def _close(self, linger: bool) -> None:
        if self._closing:
            return
        self._closing = True
        self._deadline_kind = _IDLE
        transport = self.transport
        if linger and transport.can_write_eof():
            # Half-close and keep reading briefly, so unread input does not turn into a reset
            # that destroys the response before the client has read it.
            try:
                transport.write_eof()
            except OSError:
                transport.abort()  # the peer already reset: nothing left to linger for
                return
            if self._read_paused:
                transport.resume_reading()
            self.loop.call_later(LINGER_SECONDS, transport.abort)
            return
        transport.close()

    def _arm(self, kind: int, seconds: float) -> None:
        """Set the connection's one deadline; one timer handle serves all of them lazily."""
        self._deadline_kind = kind
        deadline = self.loop.time() + seconds
        self._deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        kind = self._deadline_kind
        if kind == _IDLE or self._closing:
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._on_deadline)
            return
        if kind == _KEEPALIVE:
            self._close(linger=False)
        elif self._active is None:
            self._write_error(408)

    def shutdown(self) -> None:
        """Graceful shutdown: close now if idle, else after the current response."""
        if self._active is None and not self._pipeline and self._parsing is None:
            self._close(linger=False)
        else:
            self._resp_keep_alive = False

    def _on_upgrade(self, rest: bytes) -> None:
        # Protocol upgrades this connection does not perform (e.g. h2c before HTTP/2 exists) are
        # ignored: the request was served as plain HTTP/1.1; bytes after it start a new request.
        self._parser = httptools.HttpRequestParser(self)
        if self._active is None and self._pipeline:
            self._start_next()
        if rest:
            self.data_received(rest)


def _default_lines(settings: ConnectionSettings, app_names: set[bytes]) -> list[bytes]:
    """The default header lines the app did not set itself."""
    lines = [
        line + b"\r\n"
        for line in settings.default_headers.split(b"\r\n")
        if line and line.split(b":", 1)[0].lower() not in app_names
    ]
    date = settings.date_header
    lines.append(date.line() if date is not None and b"date" not in app_names else b"")
    return lines


def _split_target(url: bytes, method: str) -> tuple[bytes, bytes]:
    """Path and query of a request target that is not a plain origin-form (RFC 9112 3.2)."""
    if url == b"*":
        return url, b""  # asterisk-form, OPTIONS only
    if method == "CONNECT":
        raise BadRequest("CONNECT is not supported", 405)
    if url[0] == _SLASH:  # origin-form with a fragment, which no client should send
        url = url.split(b"#", 1)[0]
        path, _, query = url.partition(b"?")
        return path, query
    parsed = httptools.parse_url(url)  # absolute-form
    return parsed.path or b"/", parsed.query or b""


def _without_field(parts: list[bytes], name: bytes) -> list[bytes]:
    """Drop the name/": "/value/CRLF quadruples of field `name` from a head being built."""
    kept: list[bytes] = []
    index = 0
    while index < len(parts):
        if parts[index] == name and index + 3 < len(parts) and parts[index + 1] == b": ":
            index += 4
            continue
        kept.append(parts[index])
        index += 1
    return kept


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None
