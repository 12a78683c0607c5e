# laurelin.protocols.http2 — HTTP/2 over one transport (RFC 9113), on the h2 library.
#
# Owns one HTTP/2 connection: its settings (max concurrent streams, header list size, RFC 8441
# extended CONNECT), one ASGI cycle per request stream (protocols/http2_stream.py is the sink),
# request-body flow control credited only as apps take the body, RST_STREAM -> that stream's
# `http.disconnect`, WebSocket over HTTP/2 (RFC 8441), and the defences: REFUSED_STREAM past
# the stream limit, the header-list limit (HPACK bombs; h2 bounds CONTINUATION itself),
# budgets for resets (rapid reset) and control frames (PING/SETTINGS floods), no reading while
# the peer does not read what we send, GOAWAY when idle or shutting down, and 503 for a stream
# past --limit-concurrency (each stream beyond a connection's first counts as a connection).
# Sending is the StreamOutput mixin's (http2_output.py); h2 itself is adapted in
# http2_machine.py. Started by protocols/http1.py, which owns the listening socket's first
# bytes: ALPN "h2", the prior-knowledge preface, or an `Upgrade: h2c` request (stream 1).
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingAckReceived,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    UnknownFrameReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import GoAwayFrame, PingFrame

from laurelin.asgi.http import EARLY_HINT, TRAILERS, HTTPCycle
from laurelin.asgi.scope import KNOWN_METHODS, BadRequest, build_http_scope, websocket_scope
from laurelin.asgi.websocket import WebSocketCycle
from laurelin.logs import error_logger
from laurelin.protocols.data_rate import RateMeter, output_meter, reset_connection
from laurelin.protocols.http2_headers import Malformed, RequestHead, parse_request
from laurelin.protocols.http2_limits import (
    BUDGET_WINDOW,
    CONNECTION_WINDOW,
    STREAM_WINDOW,
    Budget,
)
from laurelin.protocols.http2_machine import H2Machine
from laurelin.protocols.http2_output import StreamOutput
from laurelin.protocols.http2_stream import (
    H2Stream,
    StreamTransport,
)
from laurelin.protocols.tls_reads import TLSReads
from laurelin.protocols.websocket import WebSocketConnection
from laurelin.protocols.ws_handshake import (
    HANDSHAKE_HEADERS,
    BadHandshake,
    offered_subprotocols,
    open_framing,
)

if TYPE_CHECKING:
    from websockets.server import ServerProtocol

    from laurelin.asgi.context import PeerInfo
    from laurelin.protocols.settings import ConnectionSettings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# An h2c upgrade: the HTTP2-Settings value, and the request's method, path, query and headers.
H2Upgrade = tuple[bytes, str, bytes, bytes, list[tuple[bytes, bytes]]]

_VERSION_HEADER = [(b"sec-websocket-version", b"13")]
# Seconds a closing connection has to take what is left in our send buffer.
CLOSE_DEADLINE = 5.0
# The first GOAWAY of a graceful shutdown announces this (RFC 9113 6.8), and its PING carries
# this payload: the ACK marks one round trip.
MAX_STREAM_ID = 2**31 - 1
_DRAIN_PING = b"laurelin"
# Why a new stream is refused (HTTP2Connection._refusal).
_OVER_LIMIT, _LINGERING, _DRAINING = 1, 2, 3
# Bytes a client may send on an RFC 8441 stream before its app has accepted; then its window
# is no longer credited until the app has.
WS_EARLY_LIMIT = 65536


class HTTP2Connection(StreamOutput, asyncio.BaseProtocol):
    """One client connection speaking HTTP/2."""

    __slots__ = (
        "_announced",
        "_closing",
        "_control_budget",
        "_draining",
        "_h2",
        "_idle_deadline",
        "_idle_timer",
        "_in_receive",
        "_last_stream_id",
        "_lost",
        "_out_meter",
        "_read_paused",
        "_reset_budget",
        "_streams",
        "limits",
        "loop",
        "peer",
        "settings",
        "transport",
        "write_paused",
    )

    def __init__(self, settings: ConnectionSettings, peer: PeerInfo) -> None:
        self.settings = settings
        self.limits = settings.h2
        self.loop = settings.ctx.loop
        self.peer = peer
        self._h2 = H2Machine(settings.h2.max_header_list_size)
        self._streams: dict[int, H2Stream] = {}
        self._init_output()
        self._in_receive = False
        self.write_paused = False
        self._read_paused = False
        self._closing = False
        self._draining = False
        self._announced = False  # the first GOAWAY of a graceful shutdown is out
        self._lost = False
        self._last_stream_id = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_deadline = 0.0
        self._out_meter: RateMeter | None = None
        clock = self.loop.time
        limits = self.limits
        self._reset_budget = Budget(limits.max_resets, BUDGET_WINDOW, clock)
        self._control_budget = Budget(limits.max_control_frames, BUDGET_WINDOW, clock)

    # -- starting ------------------------------------------------------------------------------

    def start(
        self,
        transport: asyncio.Transport,
        data: bytes = b"",
        upgrade: H2Upgrade | None = None,
    ) -> None:
        """Take over `transport` (already set to this protocol): send our SETTINGS, then serve
        `data` (what was read already). `upgrade` is an h2c upgrade's HTTP2-Settings value and
        the request (method, target, HTTP version, headers), served as stream 1."""
        self.transport = transport
        h2 = self._h2
        limits = self.limits
        # Our SETTINGS, in force from the start (initial values, not changes awaiting an ACK).
        h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
                SettingCodes.MAX_HEADER_LIST_SIZE: limits.max_header_list_size,
                SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        self.settings.connections.add(self)
        if upgrade is None:
            h2.initiate_connection()
        else:
            try:
                h2.initiate_upgrade_connection(upgrade[0])
            except (ProtocolError, HyperframeError):  # the client's settings are invalid
                transport.close()
                return
        h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        # Our SETTINGS go out now, first (RFC 9113 3.4): h2 drops unsent output when the
        # client's first frames end the connection, and the GOAWAY would come alone.
        transport.write(h2.data_to_send())
        self._arm_idle()
        if upgrade is not None:
            self._upgraded_request(upgrade)
        if self.settings.draining:
            self.shutdown()  # started as the server began to drain (a late TLS handshake)
        if data:
            self.data_received(data)
        else:
            self._flush()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        h2 = self._h2
        try:
            events: list[Any] = h2.receive_data(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        if h2.oversized_frame_pending():
            # Not buffered up to its announced length first (RFC 9113 4.2).
            self._goaway(ErrorCodes.FRAME_SIZE_ERROR)
            self._close()
            return
        self._in_receive = True
        # The PRIORITY data of a HEADERS frame comes as an event of its own: not a control frame.
        request_priority = None
        try:
            for event in events:
                kind = type(event)
                if kind is DataReceived:
                    self._on_data(event)
                elif kind is RequestReceived:
                    request_priority = event.priority_updated
                    self._on_request(event)
                elif kind is StreamEnded:
                    self._on_stream_ended(event.stream_id)
                elif kind is WindowUpdated:
                    self._on_window_updated(event.stream_id)
                elif kind is StreamReset:
                    self._on_reset(event.stream_id)
                elif kind is RemoteSettingsChanged:
                    self._control_frame()
                    if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                        self._on_window_updated(0)
                elif kind is ConnectionTerminated:
                    if event.error_code != ErrorCodes.NO_ERROR:
                        self.abort()  # the client gave up on the connection: so do we
                        break
                    self._draining = True
                    if not self._streams:
                        self._close()
                elif kind is TrailersReceived:
                    pass  # request trailers are not passed on (ASGI has no message for them)
                elif kind is PriorityUpdated:
                    if event is not request_priority:
                        self._control_frame()
                elif kind is PingReceived or kind is UnknownFrameReceived:
                    self._control_frame()
                elif kind is PingAckReceived and event.ping_data == _DRAIN_PING and self._announced:
                    self._final_goaway()
                if self._closing:
                    break
        finally:
            self._in_receive = False
        self._flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closing = True
        self.settings.connections.discard(self)
        for timer in (self._idle_timer, self._stall_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._stall_timer = None
        for stream in list(self._streams.values()):
            stream.lost()
        self._ready.clear()
        self._blocked.clear()

    def pause_writing(self) -> None:
        # The peer is not reading: stop reading from it too, so that what it sends cannot make
        # us queue answers (PING and SETTINGS acks, RST_STREAM) without bound.
        self.write_paused = True
        if not self._read_paused and not self._closing:
            self._read_paused = True
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._read_paused and not self._closing:
            self._read_paused = False
            self.transport.resume_reading()
        self._flush()

    # -- requests in -----------------------------------------------------------------------------

    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        self._last_stream_id = stream_id
        streams = self._streams
        if self._draining or len(streams) >= self.limits.max_concurrent_streams:
            refusal = self._refusal()
            if refusal:
                self._refuse_stream(stream_id, charge=refusal == _OVER_LIMIT)
                return
        stream = H2Stream(self, stream_id, False)
        self._streams[stream_id] = stream
        over_limit = self.settings.limit_concurrency is not None and self._take_slot()
        self._idle_deadline = 0.0
        if event.stream_ended is not None:
            stream.remote_closed = True
        try:
            head = parse_request(
                event.headers or [], self.settings.notable_headers, self.limits.max_headers
            )
            stream.head_only = head.method == b"HEAD"
            if over_limit:
                raise BadRequest("over --limit-concurrency", 503)
            self._begin(stream, head)
        except Malformed as exc:
            if error_logger.isEnabledFor(logging.DEBUG):
                error_logger.debug("Malformed request on stream %d: %s", stream_id, exc)
            self._reset_malformed(stream)
        except BadRequest as exc:
            if error_logger.isEnabledFor(logging.DEBUG):
                error_logger.debug("Refusing stream %d with %d: %s", stream_id, exc.status, exc)
            self.respond_error(stream, exc.status, exc.headers)
        except Exception:
            # A bug of ours must cost this stream, not the connection's other streams.
            error_logger.exception("Error starting the request on HTTP/2 stream %d", stream_id)
            if stream.cycle is None:
                self.respond_error(stream, 500)

    def _refusal(self) -> int:
        """Why a new stream cannot open now (0: it can). Over the advertised limit counts only
        streams still open in the protocol (RFC 9113 5.1.2); streams whose response is done but
        whose app still runs (background work) are capped separately, higher."""
        if self._draining:
            return _DRAINING
        limit = self.limits.max_concurrent_streams
        streams = self._streams.values()
        open_now = sum(1 for s in streams if not (s.closed or (s.end_sent and s.remote_closed)))
        if open_now >= limit:
            return _OVER_LIMIT
        return _LINGERING if len(streams) >= 2 * limit else 0

    def _take_slot(self) -> bool:
        """Count the stream just opened against --limit-concurrency; True if it goes past it.
        A connection's first stream uses the connection's own slot; each other takes one more
        (settings.h2_extra_streams, given back in _maybe_done)."""
        settings = self.settings
        if len(self._streams) > 1:
            settings.h2_extra_streams += 1
        return settings.over_limit(0)

    def _begin(self, stream: H2Stream, head: RequestHead) -> None:
        """Build the scope and start the app for a new request stream."""
        raw_method, target, protocol, headers = head.method, head.path, head.protocol, head.fields
        method = KNOWN_METHODS.get(raw_method) or raw_method.decode("ascii", "replace")
        if method == "CONNECT" and not protocol:
            raise BadRequest("CONNECT is not supported", 405)
        if target == b"*" and method == "OPTIONS":
            raw_path, query = target, b""
        elif target[:1] == b"/":
            raw_path, _, query = target.partition(b"?")
        else:
            raise BadRequest("invalid :path")
        settings = self.settings
        scope = build_http_scope(
            settings.ctx,
            self.peer,
            method,
            "2",
            raw_path,
            query,
            headers,
            self.peer.extensions,
            head.intermediary,
        )
        if protocol:
            self._begin_websocket(stream, scope, protocol, headers)
            return
        length = stream.expected_length = head.content_length
        if length is not None:
            if stream.remote_closed and length:
                raise Malformed("content-length without a body")  # RFC 9113 8.1.1
            limit = settings.limit_max_body_size
            if limit is not None and length > limit:
                raise BadRequest("request body too large", 413)
        extensions = scope["extensions"]
        extensions[EARLY_HINT] = {}
        extensions[TRAILERS] = {}
        cycle = HTTPCycle(scope, stream, settings.ctx)
        if settings.access_log:
            cycle.arrived = self.loop.time()
        stream.cycle = cycle
        if stream.remote_closed:
            cycle.feed_eof()
        else:
            stream.expect_continue = any(
                name == b"expect" and value.lower() == b"100-continue" for name, value in headers
            )
        cycle.start()

    def _begin_websocket(
        self,
        stream: H2Stream,
        scope: dict[str, Any],
        protocol: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """An extended CONNECT (RFC 8441 4): a WebSocket over this stream."""
        if protocol.lower() != b"websocket":
            raise BadRequest(f"unsupported :protocol {protocol!r}", 501)
        versions = [value for name, value in headers if name == b"sec-websocket-version"]
        if len(versions) != 1 or versions[0].strip() != b"13":
            raise BadHandshake("WebSocket without Sec-WebSocket-Version: 13", _VERSION_HEADER)
        framing, extensions = open_framing(self.settings.websocket, headers)
        cycle = WebSocketCycle(
            websocket_scope(scope, offered_subprotocols(headers)), stream, self.settings.ctx
        )
        stream.cycle = cycle
        stream.framing = framing
        stream.ws_extensions = extensions
        cycle.start()

    def _upgraded_request(self, upgrade: H2Upgrade) -> None:
        """Serve the request of an h2c upgrade (RFC 7540 3.2) as stream 1, half-closed."""
        _, method, raw_path, query, headers = upgrade
        stream = H2Stream(self, 1, method == "HEAD")
        stream.remote_closed = True
        self._streams[1] = stream
        self._last_stream_id = 1
        fields = [(name, value) for name, value in headers if name not in _UPGRADE_HEADERS]
        try:
            scope = build_http_scope(
                self.settings.ctx,
                self.peer,
                method,
                "2",
                raw_path,
                query,
                fields,
                self.peer.extensions,
            )
        except BadRequest as exc:
            self.respond_error(stream, exc.status, exc.headers)
            return
        scope["extensions"][EARLY_HINT] = {}
        scope["extensions"][TRAILERS] = {}
        cycle = HTTPCycle(scope, stream, self.settings.ctx)
        if self.settings.access_log:
            cycle.arrived = self.loop.time()
        stream.cycle = cycle
        cycle.feed_eof()
        cycle.start()

    def _on_data(self, event: DataReceived) -> None:
        stream_id = event.stream_id
        size = event.flow_controlled_length or 0
        data = event.data or b""
        stream = self._streams.get(stream_id)
        if not data and not event.stream_ended:
            self._control_frame()  # an empty DATA frame costs work and carries nothing
        if stream is None or stream.closed:
            self._credit_now(stream_id, size)
            return
        ws = stream.ws
        if ws is not None:
            ws.data_received(data)
            stream.received(size)
            return
        cycle = stream.cycle
        if type(cycle) is not HTTPCycle:
            if type(cycle) is WebSocketCycle:
                self._early_frames(stream, data, size)
            else:
                self._credit_now(stream_id, size)
            return
        received = stream.body_received = stream.body_received + len(data)
        if stream.expected_length is not None and received > stream.expected_length:
            self._credit_now(stream_id, size)
            self._reset_malformed(stream)  # RFC 9113 8.1.1
            return
        if cycle.response_complete or cycle.disconnected:
            self._credit_now(stream_id, size)  # answered already: what is in flight is dropped
            return
        limit = self.settings.limit_max_body_size
        if limit is not None and received > limit:
            self._credit_now(stream_id, size)
            if cycle.response_started:
                self.reset(stream, ErrorCodes.CANCEL)
            else:
                cycle.fail_request(413)
            return
        if data:
            cycle.feed_body(data)
        stream.received(size)

    def _early_frames(self, stream: H2Stream, data: bytes, size: int) -> None:
        """WebSocket frames sent before the app accepted: held for it (RFC 8441 lets a client
        send them at once), up to a bound; past it the stream's window stays shut."""
        stream.ws_early += data
        if len(stream.ws_early) > WS_EARLY_LIMIT:
            stream.read_paused = True
        stream.received(size)

    def _on_stream_ended(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return
        stream.remote_closed = True
        if stream.ws is not None:
            stream.ws.eof_received()
            if stream.end_sent:
                self._finish(stream)
            return
        cycle = stream.cycle
        if type(cycle) is HTTPCycle:
            expected = stream.expected_length
            if expected is not None and stream.body_received != expected:
                self._reset_malformed(stream)  # RFC 9113 8.1.1
                return
            cycle.feed_eof()

    def _on_reset(self, stream_id: int) -> None:
        if not self._reset_budget.spend():
            self._calm("too many streams reset")
            return
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.lost()
            self._blocked.discard(stream)
            self._maybe_done(stream)

    def _reset_malformed(self, stream: H2Stream) -> None:
        """Reset a stream the client made malformed (PROTOCOL_ERROR). Such resets spend the
        client's reset budget as its own do: otherwise a flood of requests made to be reset
        by the server is a rapid reset by other means (MadeYouReset, CVE-2025-8671)."""
        if not self._reset_budget.spend():
            self._calm("too many malformed streams")
            return
        self.reset(stream, ErrorCodes.PROTOCOL_ERROR)

    def _control_frame(self) -> None:
        if not self._control_budget.spend():
            self._calm("too many control frames")

    def cycle_finished(self, stream: H2Stream) -> None:
        """The app call for `stream` has returned."""
        stream.app_done = True
        self._maybe_done(stream)

    def _maybe_done(self, stream: H2Stream) -> None:
        """Forget `stream` once it holds nothing: its response is out (or it was reset) and its
        app has returned. An accepted WebSocket is done when its stream has closed both ways
        (its app, like one over HTTP/1.1, is told and given --application-close-timeout)."""
        if stream.ws is not None:
            finished = stream.closed
        else:
            finished = (stream.end_sent or stream.closed) and (
                stream.app_done or stream.cycle is None
            )
        if not finished or self._streams.pop(stream.stream_id, None) is None:
            return
        if self._streams:
            if self.settings.limit_concurrency is not None:
                self.settings.h2_extra_streams -= 1  # see _take_slot
        elif self._draining:
            self._schedule_flush()
        else:
            self._arm_idle()

    def _refuse_stream(self, stream_id: int, charge: bool) -> None:
        """REFUSED_STREAM; `charge`: the client went past the limit we announced, which spends
        its reset budget (a rapid-reset attack may refuse streams instead of resetting them)."""
        if charge and not self._reset_budget.spend():
            self._calm("too many streams refused")
            return
        with contextlib.suppress(ProtocolError):
            self._h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)

    # -- WebSocket over HTTP/2 (RFC 8441) ------------------------------------------------------

    def accept_websocket(
        self,
        stream: H2Stream,
        cycle: WebSocketCycle,
        subprotocol: str | None,
        headers: list[tuple[bytes, bytes]],
    ) -> WebSocketConnection:
        """Answer the extended CONNECT with 200; frames then flow in the stream's DATA."""
        fields: list[tuple[bytes, bytes]] = []
        if stream.ws_extensions is not None:
            fields.append((b"sec-websocket-extensions", stream.ws_extensions))
        if subprotocol is not None:
            fields.append((b"sec-websocket-protocol", subprotocol.encode()))
        fields += [(n, v) for n, v in headers if n not in HANDSHAKE_HEADERS]
        stream.head = self.response_headers(200, fields)
        transport = StreamTransport(stream)
        framing: ServerProtocol = stream.framing
        stream.framing = None
        early, stream.ws_early = bytes(stream.ws_early), bytearray()
        conn = WebSocketConnection(self.settings, transport, cycle, framing, early)
        transport.set_protocol(conn)
        stream.ws = conn
        self.settings.connections.add(conn)
        self.want_send(stream)
        if stream.read_paused:
            stream.resume_reading()  # the early frames are the connection's now
        if stream.remote_closed:
            self.loop.call_soon(conn.eof_received)  # the client ended it before the accept
        return conn

    # -- timers, errors and closing ------------------------------------------------------------

    def _arm_idle(self) -> None:
        if self._lost:
            return
        timeout = self.limits.idle_timeout
        self._idle_deadline = deadline = self.loop.time() + timeout
        timer = self._idle_timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._idle_timer = self.loop.call_at(deadline, self._on_idle)

    def _on_idle(self) -> None:
        self._idle_timer = None
        if self._closing or self._streams or not self._idle_deadline:
            return
        if self.loop.time() < self._idle_deadline:
            self._idle_timer = self.loop.call_at(self._idle_deadline, self._on_idle)
            return
        self._goaway(ErrorCodes.NO_ERROR)
        self._close()

    def _calm(self, reason: str) -> None:
        """The peer overspent a budget: GOAWAY ENHANCE_YOUR_CALM and close."""
        error_logger.warning("Closing HTTP/2 connection from %s: %s", self.peer.who(), reason)
        self._goaway(ErrorCodes.ENHANCE_YOUR_CALM)
        self._close()

    def _protocol_error(self, exc: ProtocolError) -> None:
        if error_logger.isEnabledFor(logging.DEBUG):
            error_logger.debug("HTTP/2 protocol error from %s: %s", self.peer.who(), exc)
        data = self._h2.data_to_send()  # h2 has queued the GOAWAY with the error code
        if data:
            self.transport.write(data)
        self._close()

    def _goaway(self, code: int) -> None:
        with contextlib.suppress(ProtocolError):
            self._h2.close_connection(code, last_stream_id=self._last_stream_id)
        data = self._h2.data_to_send()
        if data and not self._lost:
            self.transport.write(data)

    def _close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._draining = True
        if not self._lost:
            self.transport.close()
            # A client that does not read what is left (a GOAWAY, resets) would keep the
            # connection open for ever: dropped after a while, as HTTP/1.1 does when lingering.
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._idle_timer = self.loop.call_later(CLOSE_DEADLINE, self.transport.abort)

    def check_rates(self, seconds: float) -> None:
        """The heartbeat's check of the minimum data rates (protocols/data_rate.py): each
        request body is waited for while the client may send (the app is not behind, the
        windows are open) and is not waiting for a 100 Continue; output, while some of it is
        not sent yet."""
        if self._closing:
            return
        rates = self.settings.rates
        if rates.request_body and not self._read_paused:
            for stream in list(self._streams.values()):
                cycle = stream.cycle
                if (
                    type(cycle) is not HTTPCycle
                    or stream.remote_closed
                    or stream.closed
                    or cycle.response_complete
                ):
                    stream.body_meter = None
                elif (
                    not stream.read_paused
                    and not stream.expect_continue
                    and self._window_open(stream.stream_id)
                ):
                    meter = stream.body_meter
                    if meter is None:
                        stream.body_meter = RateMeter(None, stream.body_received)
                    elif meter.too_slow(
                        stream.body_received, seconds, rates.request_body, rates.grace
                    ):
                        stream.body_meter = None
                        error_logger.info(
                            "Request body from %s (stream %d) below --min-request-body-rate: 408",
                            self.peer.who(),
                            stream.stream_id,
                        )
                        if cycle.response_started:
                            self.reset(stream, ErrorCodes.CANCEL)
                        else:
                            cycle.fail_request(408)  # then RST_STREAM(NO_ERROR): stop sending
            self._flush()
        if rates.response:
            self._out_meter, slow = output_meter(
                self._out_meter, self.transport, self.bytes_out, seconds, rates
            )
            if slow:
                error_logger.info(
                    "Client %s reads below --min-response-data-rate: dropped", self.peer.who()
                )
                self._closing = True
                reset_connection(self.transport)

    def _window_open(self, stream_id: int) -> bool:
        """Whether the client may send on `stream_id` now: its window and the connection's
        are not shut (an app that has not taken a window's worth yet keeps it shut)."""
        try:
            return self._h2.remote_flow_control_window(stream_id) > 0
        except ProtocolError:  # the stream is closed
            return False

    def shutdown(self) -> None:
        """Graceful shutdown (RFC 9113 6.8): first a GOAWAY announcing the largest stream id,
        with a PING; one round trip later (its ACK, or the drain grace at most) the GOAWAY
        with the real last stream id. Streams the client opened before it saw the first are
        served instead of refused; in-flight streams finish; then the connection closes."""
        if self._closing or self._draining or self._announced:
            return
        self._announced = True
        # Written here, not through h2: h2 would take its own GOAWAY for the end of the
        # connection and refuse to send the responses still in flight.
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = MAX_STREAM_ID
        goaway.error_code = ErrorCodes.NO_ERROR
        ping = PingFrame(0)
        ping.opaque_data = _DRAIN_PING
        if not self._lost:
            self.transport.write(self._h2.data_to_send() + goaway.serialize() + ping.serialize())
        grace = self.settings.drain_idle_grace
        if grace > 0:
            self.loop.call_later(grace, self._final_goaway)
        else:
            self._final_goaway()

    def _final_goaway(self) -> None:
        """The second GOAWAY of a graceful shutdown: no stream after the last one seen."""
        if self._closing or self._draining:
            return
        self._draining = True
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = self._last_stream_id
        goaway.error_code = ErrorCodes.NO_ERROR
        if not self._lost:
            self.transport.write(self._h2.data_to_send() + goaway.serialize())
        if not self._streams:
            self._close()

    def cancel_apps(self) -> None:
        """Cancel every app task still running on this connection (end of a drain)."""
        for stream in list(self._streams.values()):
            task = stream.cycle.task if stream.cycle is not None else None
            if task is not None and not task.done():
                task.cancel()

    def abort(self) -> None:
        """Drop the connection now."""
        self._closing = True
        if not self._lost:
            self.transport.abort()


# Headers of an HTTP/1.1 upgrade request that belong to the upgrade, not to the request.
_UPGRADE_HEADERS = frozenset(
    {b"connection", b"upgrade", b"http2-settings", b"keep-alive", b"proxy-connection", b"te"}
)


class HTTP2TLSConnection(HTTP2Connection, TLSReads):
    """HTTP2Connection on a TLS transport (reads through protocols/tls_reads.py)."""

    __slots__ = ()
