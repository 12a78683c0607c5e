# laurelin.asgi.http — the ASGI HTTP cycle: one request, one app call, every wire protocol.
#
# Owns the `http.request` / `http.disconnect` receive side (a bounded body buffer with
# backpressure towards the wire), the send-side state machine (response.start, then body
# messages until more_body is false), validation of what the app sends, and the rules for apps
# that fail: exception before the response starts -> 500; after -> the wire is aborted so a
# truncated body never looks complete; --http-timeout -> 503; --application-close-timeout after
# the client left -> the app is cancelled. Framing (chunked, Content-Length, HEAD/204/304) is the
# wire adapter's business, reached through the `HTTPSink` interface. Two extensions ride on the
# same machine when the wire announced them in the scope: `http.response.early_hint` (a 103
# before the response) and `http.response.trailers` (trailer fields after the last body part).
from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from laurelin.asgi.errors import error_page
from laurelin.logs import escape

if TYPE_CHECKING:
    from laurelin.asgi.context import ServerContext
    from laurelin.importer import Message, Scope

logger = logging.getLogger("laurelin.error")

# Reading from the wire pauses once this much request body is buffered and not yet received by
# the app; it resumes when the app calls receive(). 64 KiB is what Uvicorn and Hypercorn buffer.
BODY_HIGH_WATER = 65536

# RFC 9110 5.1: a header name is a token (5.5: a value never holds CR, LF or NUL; see below).
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# The response: not started; started; body complete, trailers awaited; complete.
_PENDING, _STARTED, _TRAILERS, _DONE = 0, 1, 2, 3
EARLY_HINT = "http.response.early_hint"
TRAILERS = "http.response.trailers"

_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}
# The statuses an app may start a response with (101 is the WebSocket handshake's only).
_STATUSES = frozenset(range(100, 600)) - {101}


class ClientDisconnected(OSError):
    """Raised by send() once the client has gone: the ASGI 2.4 contract for a closed connection."""


class HTTPSink(Protocol):
    """What a wire adapter (HTTP/1.1 connection, HTTP/2 stream) offers one HTTP cycle."""

    write_paused: bool

    def start_response(self, status: int, headers: Iterable[Any]) -> None:
        """Take the status and the headers as the app sent them, which the sink validates
        (`check_response_headers`, or an equivalent that also encodes them) before anything
        changes: an invalid header raises RuntimeError with nothing started. May hold them
        until the first body part."""

    def write_body(self, data: bytes, more_body: bool) -> None:
        """Frame and write body bytes; `more_body=False` completes the response."""

    def write_trailers(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Complete the response with these trailer fields (validated, lower-cased)."""

    def send_continue(self) -> None:
        """Send `100 Continue` if the client asked for it and it has not been sent."""

    def pause_reading(self) -> None:
        """Stop reading request body from the peer."""

    def resume_reading(self) -> None:
        """Resume reading request body from the peer."""

    def abort(self) -> None:
        """End the exchange without completing the response (connection or stream reset)."""

    async def wait_writable(self) -> None:
        """Return once the peer has drained enough of what was written (or went away)."""

    def cycle_finished(self, cycle: HTTPCycle) -> None:
        """The app call for this cycle has returned or failed; release it."""


# Validated response header names, raw -> lower-cased. Apps send the same few names over and
# over; remembering them skips the token check. Bounded: cleared when full.
_NAME_CACHE: dict[bytes, bytes] = {}
_NAME_CACHE_MAX = 4096
_CR, _LF, _NUL = 13, 10, 0


def check_response_headers(headers: Iterable[Any]) -> list[tuple[bytes, bytes]]:
    """Validate the app's response headers; return (lower-cased name, value) byte pairs.

    Raises:
        RuntimeError: a name that is not a token, a value with CR, LF or NUL, or non-bytes.
    """
    return [check_header(item) for item in headers]


def check_header(item: Any) -> tuple[bytes, bytes]:
    """Validate one response header of the app's; return it as (lower-cased name, value).

    Raises:
        RuntimeError: see `check_response_headers`.
    """
    try:
        name, value = item
    except (TypeError, ValueError):
        raise RuntimeError(f"Response header {item!r} is not a (name, value) pair") from None
    lname = _NAME_CACHE.get(name) if type(name) is bytes else None
    if lname is None:
        lname = _check_name(name, item)
    if type(value) is not bytes:
        value = _as_bytes(value, item)
    # Int membership is a plain memchr; see protocols/http1.py on why not b"\r" in value.
    if _CR in value or _LF in value or _NUL in value:
        raise RuntimeError(f"Response header {lname!r} has CR, LF or NUL in its value")
    return lname, value


def _as_bytes(value: Any, item: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise RuntimeError(
        f"Response header {item!r}: names and values must be bytes, got {type(value).__name__}"
    )


def _check_name(name: Any, item: Any) -> bytes:
    raw = _as_bytes(name, item)
    if TOKEN.fullmatch(raw) is None:
        raise RuntimeError(f"Invalid response header name {raw!r}")
    lname = raw.lower()
    if type(name) is bytes:
        if len(_NAME_CACHE) >= _NAME_CACHE_MAX:
            _NAME_CACHE.clear()
        _NAME_CACHE[name] = lname
    return lname


class HTTPCycle:
    """One HTTP request/response exchange between a wire adapter and the ASGI app."""

    __slots__ = (
        "_body",
        "_body_size",
        "_close_timer",
        "_ctx",
        "_delivered",
        "_reading_paused",
        "_state",
        "_timeout_timer",
        "_trailer_fields",
        "_waiter",
        "arrived",
        "disconnected",
        "more_body",
        "scope",
        "sink",
        "status",
        "task",
    )

    def __init__(self, scope: Scope, sink: HTTPSink, ctx: ServerContext) -> None:
        self.scope = scope
        self.sink = sink
        self._ctx = ctx
        self._body: list[bytes] = []
        self._body_size = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._state = _PENDING
        self._timeout_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._delivered = False
        self._trailer_fields: list[tuple[bytes, bytes]] | None = None  # trailers promised
        self.more_body = True
        self.disconnected = False
        self.status = 0
        self.task: asyncio.Task[None] | None = None
        # Loop time the request arrived, set by the wire only when there is an access log.
        self.arrived = 0.0

    # -- wire side -----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the app for this cycle (eagerly on Python 3.12+: context.app_task_factory)."""
        ctx = self._ctx
        ctx.requests += 1
        if ctx.http_timeout is not None:
            self._timeout_timer = ctx.loop.call_later(ctx.http_timeout, self._on_http_timeout)
        self.task = ctx.start_task(self._run())

    def feed_body(self, data: bytes) -> None:
        """Request body bytes arrived from the wire (dropped once the response is complete:
        the app answered without reading them)."""
        if self._state == _DONE:
            return
        self._body.append(data)
        self._body_size += len(data)
        if self._body_size > BODY_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.sink.pause_reading()
        if self._waiter is not None:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def feed_eof(self) -> None:
        """The request body is complete."""
        if self.disconnected:
            return  # cut short (e.g. 413): what the app got must not look complete
        self.more_body = False
        if self._waiter is not None:
            self._wake()

    def on_disconnect(self) -> None:
        """The client went away (or the stream was reset)."""
        if self.disconnected:
            return
        self.disconnected = True
        self._wake()
        task = self.task
        if task is not None and not task.done() and self._close_timer is None:
            self._close_timer = self._ctx.loop.call_later(
                self._ctx.application_close_timeout, self._on_close_timeout
            )

    def fail_request(self, status: int) -> None:
        """The wire refused the rest of the request (e.g. 413): answer it if still possible."""
        if self._state == _PENDING:
            self._send_error(status)
        self.on_disconnect()

    @property
    def response_started(self) -> bool:
        """Whether http.response.start has been sent."""
        return self._state != _PENDING

    @property
    def response_complete(self) -> bool:
        """Whether the response has been completed (or answered by the server instead)."""
        return self._state == _DONE

    # -- app side ------------------------------------------------------------------------------

    async def receive(self) -> Message:
        """ASGI receive(): the next part of the request body, or http.disconnect."""
        while True:
            if self._body:
                body = b"".join(self._body)  # one part: that very object, not a copy
                self._body.clear()
                self._body_size = 0
                if self._reading_paused:
                    self._reading_paused = False
                    self.sink.resume_reading()
                more = self.more_body
                self._delivered = not more
                return {"type": "http.request", "body": body, "more_body": more}
            if not self.more_body and not self._delivered:
                self._delivered = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.disconnected or self._state == _DONE:
                return _DISCONNECT.copy()
            if self.more_body:
                self.sink.send_continue()
            # Wait for more body, or (body complete) for the disconnect, whenever it comes.
            waiter = self._ctx.loop.create_future()
            self._waiter = waiter
            await waiter

    async def send(self, message: Message) -> None:
        """ASGI send(): the response, validated, in order."""
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise RuntimeError(f"ASGI message without a 'type': {message!r}") from None
        state = self._state
        if state == _STARTED and kind == "http.response.body":
            body = message.get("body", b"")
            if type(body) is not bytes:
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise RuntimeError(
                        f"'http.response.body' body must be bytes, got {type(body).__name__}"
                    )
                body = bytes(body)
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")
            if message.get("more_body", False):
                self.sink.write_body(body, True)
                if self.sink.write_paused:
                    await self.sink.wait_writable()
                    if self.disconnected:
                        raise ClientDisconnected("the client disconnected")
                return
            if self._trailer_fields is not None:
                self._state = _TRAILERS
                self.sink.write_body(body, True)
                return
            self._state = _DONE
            if self._timeout_timer is not None:
                self._cancel_timeout()
            self.sink.write_body(body, False)
            if self._waiter is not None:
                self._wake()
            return
        if state == _PENDING and kind == "http.response.start":
            if self.disconnected:
                raise ClientDisconnected("the client disconnected")
            status = message.get("status")
            if type(status) is not int or status not in _STATUSES:
                raise RuntimeError(
                    f"'http.response.start' needs an int status in 100-599 (not 101), "
                    f"got {status!r}"
                )
            # The sink validates the headers (and may refuse the head, e.g. for an invalid
            # Content-Length): then nothing has started, and the app's failure gets a 500.
            self.sink.start_response(status, message.get("headers", ()))
            if message.get("trailers") and TRAILERS in self.scope["extensions"]:
                self._trailer_fields = []
            self._state = _STARTED
            self.status = status
            return
        if state == _TRAILERS and kind == TRAILERS:
            fields = self._trailer_fields
            assert fields is not None
            fields += check_response_headers(message.get("headers", ()))
            if not message.get("more_trailers", False):
                self._state = _DONE
                if self._timeout_timer is not None:
                    self._cancel_timeout()
                if self.disconnected:
                    raise ClientDisconnected("the client disconnected")
                self.sink.write_trailers(fields)
                self._wake()
            return
        if state == _PENDING and kind == EARLY_HINT:
            self._early_hint(message)
            return
        if kind == TRAILERS and state >= _STARTED and self._trailer_fields is None:
            return  # trailers the wire cannot carry (HTTP/1.1 without TE: trailers): dropped
        if self.disconnected and state != _PENDING:
            raise ClientDisconnected("the client disconnected")
        expected = {
            _PENDING: "'http.response.start'",
            _STARTED: "'http.response.body'",
            _TRAILERS: "'http.response.trailers'",
            _DONE: "nothing (the response is complete)",
        }[state]
        raise RuntimeError(f"Unexpected ASGI message {kind!r} sent; expected {expected}")

    # -- running the app -----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._ctx.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except asyncio.CancelledError:
            self._after_failure(None)
        except BaseException as exc:
            self._after_failure(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            if self._state == _PENDING:
                logger.error("ASGI app returned without starting a response: %s", self._where())
                self._send_error(500)
            elif self._state != _DONE:
                logger.error("ASGI app returned before completing its response: %s", self._where())
                self._abort()
        finally:
            if self._timeout_timer is not None:
                self._cancel_timeout()
            if self._close_timer is not None:
                self._close_timer.cancel()
                self._close_timer = None
            self.sink.cycle_finished(self)

    def _after_failure(self, exc: BaseException | None) -> None:
        if exc is not None and not self.disconnected:
            logger.error("Exception in ASGI app: %s", self._where(), exc_info=exc)
        if self._state == _PENDING:
            if not self.disconnected:
                self._send_error(500)
        elif self._state != _DONE:
            self._abort()

    def _where(self) -> str:
        # The raw path, escaped: a decoded %0d%0a must not forge lines in the error log.
        scope = self.scope
        return f"{scope['method']} {escape(scope['raw_path'].decode('latin-1'))}"

    def _early_hint(self, message: Message) -> None:
        """A 103 Early Hints response with the app's Link values (RFC 8297)."""
        if self.disconnected or EARLY_HINT not in self.scope["extensions"]:
            return  # not announced: ignored, as the extension's spec allows
        links = message.get("links", ())
        if isinstance(links, (bytes, str)) or not all(
            isinstance(link, (bytes, bytearray)) for link in links
        ):
            raise RuntimeError("'http.response.early_hint' links must be a list of bytes")
        headers = check_response_headers([(b"link", bytes(link)) for link in links])
        if headers:
            self.sink.start_response(103, headers)

    def _send_error(self, status: int) -> None:
        """Answer in the app's place (500, 503, 413): a complete small HTML response."""
        self._state = _DONE
        self.status = status
        headers, body = error_page(status)
        self.sink.start_response(status, headers)
        self.sink.write_body(body, False)
        self._wake()

    def _abort(self) -> None:
        self._state = _DONE
        self.sink.abort()
        self._wake()

    def _cancel_timeout(self) -> None:
        if self._timeout_timer is not None:
            self._timeout_timer.cancel()
            self._timeout_timer = None

    def _on_http_timeout(self) -> None:
        self._timeout_timer = None
        if self._state == _DONE:
            return
        logger.warning("HTTP timeout after %ss: %s", self._ctx.http_timeout, self._where())
        if self._state == _PENDING:
            self._send_error(503)
        else:
            self._abort()
        if self.task is not None:
            self.task.cancel()

    def _on_close_timeout(self) -> None:
        self._close_timer = None
        if self.task is not None and not self.task.done():
            logger.warning(
                "Application still running %ss after the client disconnected; cancelling: %s",
                self._ctx.application_close_timeout,
                self._where(),
            )
            self.task.cancel()
