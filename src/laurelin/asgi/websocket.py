# laurelin.asgi.websocket — the ASGI WebSocket cycle: one connection, one app call, any wire.
#
# Owns the `websocket.*` message rules between the app and a wire adapter: `websocket.connect`
# first, then accept / close / the denial response (`websocket.http.response.*`) before the
# handshake completes, `websocket.receive` messages from a bounded queue (reading from the wire
# pauses while the app lags), `websocket.send` with write backpressure, `websocket.close`, and
# `websocket.disconnect` with code and reason. Also the connect timeout (403), the lifetime cap
# and the rules for apps that fail: before accept -> 500; after -> close 1011 (the failure is
# logged, with the fix when it is a known Channels set-up mistake). Frames, pings and the
# handshake bytes are the wire adapter's business, reached through two small interfaces:
# `HandshakeSink` until the app accepts, `WebSocketSink` after.
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from laurelin.asgi.errors import error_page
from laurelin.asgi.http import TOKEN, ClientDisconnected, check_response_headers
from laurelin.logs import access_logger, escape, log_websocket

if TYPE_CHECKING:
    from laurelin.asgi.context import ServerContext
    from laurelin.importer import Message, Scope

logger = logging.getLogger("laurelin.error")

# Reading from the wire pauses while this many messages, or this many bytes, wait for the app's
# receive(); it resumes once the app has taken them.
QUEUE_MESSAGES = 16
QUEUE_BYTES = 1 << 20

# Close codes (RFC 6455 7.4.1).
NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
NO_STATUS = 1005
ABNORMAL_CLOSURE = 1006
INTERNAL_ERROR = 1011

_CONNECTING, _RESPONSE, _OPEN, _CLOSED = 0, 1, 2, 3

_warned_send_before_accept = False


class WebSocketSink(Protocol):
    """What a wire adapter offers an accepted WebSocket (HTTP/1.1 connection, HTTP/2 stream)."""

    write_paused: bool

    def opened(self) -> None:
        """The cycle is ready: deliver frames from now on."""

    def send_message(self, data: str | bytes) -> None:
        """Send one message: text for str, binary for bytes."""

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake with this code and reason."""

    def pause_reading(self) -> None:
        """Stop reading frames from the peer."""

    def resume_reading(self) -> None:
        """Resume reading frames from the peer."""

    async def wait_writable(self) -> None:
        """Return once the peer has drained enough of what was written (or went away)."""

    def abort(self) -> None:
        """Drop the connection without a closing handshake."""


class HandshakeSink(Protocol):
    """What a wire adapter offers a WebSocket before the app has accepted it."""

    write_paused: bool

    def accept_websocket(
        self, cycle: WebSocketCycle, subprotocol: str | None, headers: list[tuple[bytes, bytes]]
    ) -> WebSocketSink:
        """Complete the handshake; from now on frames go through the returned sink."""

    def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """Refuse the handshake with this HTTP response (validated, lower-cased headers)."""

    def write_body(self, data: bytes, more_body: bool) -> None:
        """Body of the refusal response; `more_body=False` completes it (and the connection)."""

    async def wait_writable(self) -> None:
        """Return once the peer has drained enough of what was written (or went away)."""

    def abort(self) -> None:
        """Drop the connection (a refusal response that cannot be completed)."""

    def cycle_finished(self, cycle: Any) -> None:
        """The app call for this cycle has returned or failed; release it."""


class WebSocketCycle:
    """One WebSocket connection between a wire adapter and the ASGI app."""

    __slots__ = (
        "_close_timer",
        "_connect_timer",
        "_ctx",
        "_disconnect",
        "_handshake",
        "_lifetime_timer",
        "_queue",
        "_queued_bytes",
        "_reading_paused",
        "_server_closed",
        "_sink",
        "_state",
        "_waiter",
        "more_body",
        "scope",
        "status",
        "task",
    )

    def __init__(self, scope: Scope, handshake: HandshakeSink, ctx: ServerContext) -> None:
        self.scope = scope
        self._ctx = ctx
        self._handshake = handshake
        self._sink: WebSocketSink | None = None
        self._state = _CONNECTING
        # A list, not a deque: it holds a few messages at most, and an idle WebSocket's empty
        # list costs a tenth of an empty deque.
        self._queue: list[Message] = [{"type": "websocket.connect"}]
        self._queued_bytes = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._disconnect: dict[str, Any] | None = None
        self._server_closed = False  # the app or the server ended it, not the client
        self._connect_timer: asyncio.TimerHandle | None = None
        self._lifetime_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        # What an HTTP/1.1 connection reads of the exchange it runs (see protocols/http1.py):
        # no request body, and the status of a refusal response.
        self.more_body = False
        self.status = 0

    # -- wire side -----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the app for this connection; the handshake waits for its answer."""
        ctx = self._ctx
        ctx.requests += 1
        self._access("WSCONNECTING")
        if ctx.websocket_connect_timeout is not None:
            self._connect_timer = ctx.loop.call_later(
                ctx.websocket_connect_timeout, self._on_connect_timeout
            )
        self.task = ctx.start_task(self._run())

    def feed_message(self, data: str | bytes) -> None:
        """A complete message arrived from the client."""
        if self._disconnect is not None:
            return
        if type(data) is str:
            self._queue.append({"type": "websocket.receive", "text": data})
        else:
            self._queue.append({"type": "websocket.receive", "bytes": data})
        self._queued_bytes += len(data)
        if (
            len(self._queue) >= QUEUE_MESSAGES or self._queued_bytes >= QUEUE_BYTES
        ) and not self._reading_paused:
            self._reading_paused = True
            if self._sink is not None:
                self._sink.pause_reading()
        self._wake()

    def on_disconnect(self, code: int = ABNORMAL_CLOSURE, reason: str = "") -> None:
        """The connection is over (closing handshake, error, or lost): tell the app once."""
        if self._disconnect is not None:
            return
        was_open = self._state == _OPEN
        self._disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        if self._state != _RESPONSE:
            self._state = _CLOSED
        self._cancel_timers()
        if was_open:
            self._access("WSDISCONNECT")
        self._wake()
        task = self.task
        if task is not None and not task.done():
            self._close_timer = self._ctx.loop.call_later(
                self._ctx.application_close_timeout, self._on_close_timeout
            )

    def shutdown(self) -> None:
        """Graceful shutdown: close an open WebSocket with 1001 (going away)."""
        if self._state == _OPEN and self._sink is not None:
            self._close(GOING_AWAY, "server shutting down")

    @property
    def response_started(self) -> bool:
        """Whether the handshake has been answered (accepted or refused)."""
        return self._state != _CONNECTING

    # -- app side ------------------------------------------------------------------------------

    async def receive(self) -> Message:
        """ASGI receive(): connect, then received messages, then the disconnect."""
        while True:
            queue = self._queue
            if queue:
                message = queue.pop(0)
                if message["type"] == "websocket.receive":
                    data = message.get("text")
                    self._queued_bytes -= len(data if data is not None else message["bytes"])
                    if self._reading_paused and not queue:
                        self._reading_paused = False
                        if self._sink is not None:
                            self._sink.resume_reading()
                return message
            if self._disconnect is not None:
                return dict(self._disconnect)
            waiter = self._ctx.loop.create_future()
            self._waiter = waiter
            await waiter

    async def send(self, message: Message) -> None:
        """ASGI send(): accept, messages, close or the denial response, in order."""
        try:
            kind = message["type"]
        except (KeyError, TypeError):
            raise RuntimeError(f"ASGI message without a 'type': {message!r}") from None
        state = self._state
        if state == _OPEN:
            if kind == "websocket.send":
                sink = self._sink
                assert sink is not None
                sink.send_message(_payload(message))
                if sink.write_paused:
                    await sink.wait_writable()
                return
            if kind == "websocket.close":
                code, reason = _close_args(message)
                self._close(code, reason)
                return
        elif state == _CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
                return
            if kind == "websocket.close":
                self._refuse(403)
                return
            if kind == "websocket.http.response.start":
                self._start_response(message)
                return
            if kind == "websocket.send":
                _warn_send_before_accept(self.scope)
                self._accept({"type": "websocket.accept"})
                await self.send(message)
                return
        elif state == _RESPONSE and kind == "websocket.http.response.body":
            if self._disconnect is not None:
                raise ClientDisconnected("the client disconnected")
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise RuntimeError(
                    f"'websocket.http.response.body' body must be bytes, got {type(body).__name__}"
                )
            more = bool(message.get("more_body", False))
            if not more:
                self._state = _CLOSED
            self._handshake.write_body(bytes(body), more)
            if more and self._handshake.write_paused:
                await self._handshake.wait_writable()
            return
        if state == _CLOSED and kind in _AFTER_CLOSE_KINDS:
            if self._server_closed or self._disconnect is None:
                raise RuntimeError(f"Unexpected ASGI message {kind!r}: the WebSocket is closed")
            raise ClientDisconnected("the client disconnected")
        raise RuntimeError(f"Unexpected ASGI message {kind!r} sent; expected {_EXPECTED[state]}")

    # -- handshake -----------------------------------------------------------------------------

    def _accept(self, message: Message) -> None:
        if self._disconnect is not None:
            raise ClientDisconnected("the client disconnected before the WebSocket was accepted")
        subprotocol = message.get("subprotocol")
        if subprotocol is not None and (
            not isinstance(subprotocol, str)
            or not subprotocol.isascii()
            or TOKEN.fullmatch(subprotocol.encode()) is None
        ):
            raise RuntimeError(
                f"'websocket.accept' subprotocol must be a str token, got {subprotocol!r}"
            )
        if subprotocol is not None and subprotocol not in self.scope["subprotocols"]:
            # RFC 6455 4.1: the client would fail the connection on a subprotocol it did not
            # offer; the app learns of its mistake here instead.
            raise RuntimeError(
                f"'websocket.accept' subprotocol {subprotocol!r} was not offered by the client "
                f"(it offered {self.scope['subprotocols']!r})"
            )
        headers = check_response_headers(message.get("headers", ()))
        self._cancel_connect_timer()
        self._state = _OPEN
        self._sink = self._handshake.accept_websocket(self, subprotocol, headers)
        self._handshake = _ACCEPTED  # the HTTP/1.1 connection is done: let it go
        self._access("WSCONNECT")
        ctx = self._ctx
        if ctx.websocket_timeout is not None:
            self._lifetime_timer = ctx.loop.call_later(ctx.websocket_timeout, self._on_lifetime)
        self._sink.opened()

    def _start_response(self, message: Message) -> None:
        if self._disconnect is not None:
            raise ClientDisconnected("the client disconnected")
        status = message.get("status")
        if type(status) is not int or not 200 <= status <= 599:
            raise RuntimeError(
                f"'websocket.http.response.start' needs an int status in 200-599, got {status!r}"
            )
        headers = check_response_headers(message.get("headers", ()))
        self._cancel_connect_timer()
        self._state = _RESPONSE
        self.status = status
        self._access("WSREJECT")
        self._handshake.start_response(status, headers)

    def _refuse(self, status: int) -> None:
        """Answer the handshake with the server's own error page (403, 500)."""
        self._cancel_connect_timer()
        self._state = _CLOSED
        self.status = status
        if self._disconnect is not None:
            return
        self._access("WSREJECT")
        headers, body = error_page(status)
        self._handshake.start_response(status, headers)
        self._handshake.write_body(body, False)

    def _close(self, code: int, reason: str) -> None:
        sink = self._sink
        assert sink is not None
        self._server_closed = True
        sink.close(code, reason)
        # The app learns of the end now; the client's answer to the close frame changes nothing.
        self.on_disconnect(code, reason)

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
            state = self._state
            if state == _CONNECTING:
                if self._disconnect is None:
                    logger.error(
                        "ASGI app returned without accepting or closing the WebSocket: %s",
                        self._where(),
                    )
                self._refuse(500)
            elif state == _OPEN:
                self._close(NORMAL_CLOSURE, "")
            elif state == _RESPONSE:
                logger.error("ASGI app returned before completing its response: %s", self._where())
                self._handshake.abort()
        finally:
            self._cancel_timers()
            if self._close_timer is not None:
                self._close_timer.cancel()
                self._close_timer = None
            self._handshake.cycle_finished(self)

    def _after_failure(self, exc: BaseException | None) -> None:
        state = self._state
        if exc is not None:
            logger.error("Exception in ASGI app: %s%s", self._where(), _hint(exc), exc_info=exc)
        if state == _CONNECTING:
            self._refuse(500)
        elif state == _OPEN:
            self._close(INTERNAL_ERROR, "")
        elif state == _RESPONSE:
            self._state = _CLOSED
            self._handshake.abort()

    def _where(self) -> str:
        return f"WebSocket {escape(self.scope['raw_path'].decode('latin-1'))}"

    def _access(self, action: str) -> None:
        if access_logger.isEnabledFor(logging.INFO):
            log_websocket(self.scope["client"], action, self.scope["raw_path"].decode("latin-1"))

    # -- timers --------------------------------------------------------------------------------

    def _on_connect_timeout(self) -> None:
        self._connect_timer = None
        if self._state == _CONNECTING:
            logger.warning(
                "WebSocket not accepted within %ss: %s",
                self._ctx.websocket_connect_timeout,
                self._where(),
            )
            self._refuse(403)
            self.on_disconnect(ABNORMAL_CLOSURE, "")

    def _on_lifetime(self) -> None:
        self._lifetime_timer = None
        if self._state == _OPEN:
            self._close(NORMAL_CLOSURE, "")

    def _on_close_timeout(self) -> None:
        self._close_timer = None
        if self.task is not None and not self.task.done():
            logger.warning(
                "Application still running %ss after the WebSocket closed; cancelling: %s",
                self._ctx.application_close_timeout,
                self._where(),
            )
            self.task.cancel()

    def _cancel_connect_timer(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_connect_timer()
        if self._lifetime_timer is not None:
            self._lifetime_timer.cancel()
            self._lifetime_timer = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)


class _Accepted:
    """The handshake sink of an accepted WebSocket: nothing is left to answer."""

    write_paused = False

    def accept_websocket(
        self, cycle: WebSocketCycle, subprotocol: str | None, headers: list[tuple[bytes, bytes]]
    ) -> WebSocketSink:
        raise RuntimeError("the WebSocket is already accepted")

    def start_response(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        raise RuntimeError("the WebSocket is already accepted")

    def write_body(self, data: bytes, more_body: bool) -> None:
        raise RuntimeError("the WebSocket is already accepted")

    async def wait_writable(self) -> None:
        return None

    def abort(self) -> None:
        return None

    def cycle_finished(self, cycle: Any) -> None:
        return None


_ACCEPTED = _Accepted()

_EXPECTED = {
    _CONNECTING: "'websocket.accept', 'websocket.close' or 'websocket.http.response.start'",
    _RESPONSE: "'websocket.http.response.body'",
    _OPEN: "'websocket.send' or 'websocket.close'",
    _CLOSED: "nothing (the WebSocket is closed)",
}
# Close codes an endpoint may put in a close frame (RFC 6455 7.4.1, IANA registry).
_SENDABLE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)
_AFTER_CLOSE_KINDS = frozenset(
    {
        "websocket.accept",
        "websocket.send",
        "websocket.close",
        "websocket.http.response.start",
        "websocket.http.response.body",
    }
)


def _payload(message: Message) -> str | bytes:
    text = message.get("text")
    data = message.get("bytes")
    if text is not None:
        if data is not None:
            raise RuntimeError("'websocket.send' needs exactly one of 'text' and 'bytes', got both")
        if type(text) is not str:
            raise RuntimeError(f"'websocket.send' text must be a str, got {type(text).__name__}")
        return text
    if data is None:
        raise RuntimeError("'websocket.send' needs exactly one of 'text' and 'bytes', got neither")
    if type(data) is not bytes:
        if not isinstance(data, (bytearray, memoryview)):
            raise RuntimeError(f"'websocket.send' bytes must be bytes, got {type(data).__name__}")
        data = bytes(data)
    return data


def _close_args(message: Message) -> tuple[int, str]:
    code = message.get("code", NORMAL_CLOSURE)
    reason = message.get("reason") or ""
    if type(code) is not int or not (code in _SENDABLE_CODES or 3000 <= code < 5000):
        raise RuntimeError(
            f"'websocket.close' code must be 1000-1003, 1007-1014 or 3000-4999 "
            f"(RFC 6455 7.4), got {code!r}"
        )
    if not isinstance(reason, str):
        raise RuntimeError(f"'websocket.close' reason must be a str, got {type(reason).__name__}")
    if len(reason.encode()) > 123:
        raise RuntimeError("'websocket.close' reason is longer than 123 bytes (RFC 6455 5.5)")
    return code, reason


def _hint(exc: BaseException) -> str:
    """The fix for an app failure Channels users often meet, or ""."""
    if isinstance(exc, ValueError) and str(exc).startswith(
        "No application configured for scope type 'websocket'"
    ):
        # Channels' ProtocolTypeRouter raises this for a scope type it has no entry for.
        return (
            ' (hint: your ProtocolTypeRouter has no "websocket" entry: add '
            '"websocket": URLRouter(websocket_urlpatterns) to it in your asgi.py)'
        )
    return ""


def _warn_send_before_accept(scope: Scope) -> None:
    global _warned_send_before_accept
    if not _warned_send_before_accept:
        _warned_send_before_accept = True
        logger.warning(
            "ASGI app sent 'websocket.send' before 'websocket.accept'; accepting first "
            "(logged once): WebSocket %s",
            escape(scope["raw_path"].decode("latin-1")),
        )
