# laurelin.protocols.http1 — HTTP/1.1 and 1.0 over one transport (RFC 9112), on httptools.
#
# Owns: parsing request heads and bodies (llhttp in strict mode, which already rejects
# CL+TE conflicts, duplicate Content-Length, bad chunk sizes, obs-fold, bare LF/CR and
# whitespace before the colon: each a 400 and close), Host rules (RFC 9112 3.2), the
# head-size/header-count/body-size limits (431/414/413), the header-read and keep-alive timers
# (408 / silent close), pipelining (one request runs at a time; responses leave in request
# order), `Expect: 100-continue`, closing (lingering after errors, RST on abort) and write
# backpressure. Response framing is the ResponseWriter mixin's (http1_response.py). The ASGI
# rules are the bridge's (asgi/http.py): this class is the `HTTPSink` every HTTPCycle of the
# connection talks to. A WebSocket upgrade (RFC 6455 4.2) is queued like a request; until its
# app accepts, this class is also its `HandshakeSink` (a refusal is an ordinary response, then
# close); on accept it writes the 101 and hands the transport to a WebSocketConnection.
# HTTP/2 starts here too (RFC 9113 3): ALPN "h2" after a TLS handshake, the connection preface
# as a cleartext connection's first bytes (prior knowledge), or an `Upgrade: h2c` request
# without a body (101, then the request is stream 1); each hands the transport to an
# HTTP2Connection. Past --limit-concurrency a new connection's first request gets 503 (_OverLimit).
# A lost connection with no app left running lets go of its parser and transport (_unlink), so
# that reference counting frees it instead of the cyclic GC.
from __future__ import annotations

import asyncio
import base64
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import httptools

from laurelin.asgi.context import PeerInfo
from laurelin.asgi.http import EARLY_HINT, TRAILERS, HTTPCycle
from laurelin.asgi.scope import (
    HOST_VALUE,
    KNOWN_METHODS,
    BadRequest,
    build_http_scope,
    websocket_scope,
)
from laurelin.asgi.websocket import WebSocketCycle
from laurelin.logs import error_logger, log_access
from laurelin.protocols.data_rate import RateMeter, output_meter, reset_connection
from laurelin.protocols.deadlines import SLOTS_PER_SECOND, slot_of
from laurelin.protocols.http1_encoding import CONTINUE
from laurelin.protocols.http1_response import ResponseWriter, default_lines
from laurelin.protocols.http2 import PREFACE, H2Upgrade, HTTP2Connection, HTTP2TLSConnection
from laurelin.protocols.tls_reads import TLSReads
from laurelin.protocols.websocket import WebSocketConnection, WebSocketTLSConnection
from laurelin.protocols.write_flow import WriteFlow
from laurelin.protocols.ws_handshake import (
    check_upgrade,
    is_websocket_upgrade,
    offered_subprotocols,
    open_framing,
    response_head,
)
from laurelin.tls import tls_extension

if TYPE_CHECKING:
    from websockets.server import ServerProtocol

    from laurelin.protocols.settings import ConnectionSettings
    from laurelin.tls import ServerTLS

# What one connection runs: HTTP requests, and at most one WebSocket handshake at its end.
Cycle = HTTPCycle | WebSocketCycle

# Bytes a client may send after its WebSocket handshake request, before the app has answered
# it; then reading pauses until it has.
WS_EARLY_LIMIT = 65536
# Seconds a connection we are closing after an error keeps reading (and discarding) before it
# is dropped, so the client sees our response instead of a reset (RFC 9112 9.6).
LINGER_SECONDS = 2.0
# on_header's table of request field names (ConnectionSettings.h1_header_names): at most this
# many names (then it is emptied), each at most this long.
NAME_TABLE_MAX = 512
NAME_TABLE_NAME_MAX = 64
# on_header's table of valid Host values (ConnectionSettings.h1_hosts): at most this many
# values (then it is emptied), each at most this long.
HOST_TABLE_MAX = 64
HOST_TABLE_VALUE_MAX = 255
# The lower-cased Host name, one object: on_header's table maps every spelling of it to this.
_HOST = b"host"

_IDLE, _HEAD, _KEEPALIVE = 0, 1, 2
_UNDERSCORE = ord("_")
_NEL = 0x85
_SLASH = ord("/")
_HASH = ord("#")


class _GoneTransport(asyncio.Transport):
    """What a finished connection holds instead of its transport (see _unlink): everything is
    a no-op, and it is always closing."""

    def is_closing(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def writelines(self, list_of_data: Any) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


_GONE_TRANSPORT = _GoneTransport()
# A parser with no callbacks, and so no hold on any connection (see _unlink).
_GONE_PARSER = httptools.HttpRequestParser(object())


class _TooLarge(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class _PendingUpgrade:
    """A WebSocket handshake waiting for the app's answer."""

    __slots__ = ("cycle", "early", "extensions", "framing", "key")

    def __init__(
        self, cycle: WebSocketCycle, key: bytes, framing: ServerProtocol, extensions: bytes | None
    ) -> None:
        self.cycle = cycle
        self.key = key
        self.framing = framing
        self.extensions = extensions
        self.early = bytearray()  # what the client sent after its handshake request


class _OverLimit:
    """The parser callbacks of a connection that came past --limit-concurrency: its first
    request head is read as usual (with the usual limits), then answered 503 and the connection
    closed; it never reaches the app. Chosen once per connection: nothing is added per request."""

    __slots__ = ("on_header", "on_url")

    def __init__(self, conn: HTTP1Connection) -> None:
        self.on_url = conn.on_url
        self.on_header = conn.on_header

    def on_headers_complete(self) -> None:
        raise BadRequest("over --limit-concurrency", 503)


class HTTP1Connection(ResponseWriter, WriteFlow, asyncio.BaseProtocol):
    """One client connection speaking HTTP/1.x; the sink of its requests' ASGI cycles."""

    __slots__ = (
        "_active",
        "_body_meter",
        "_body_only",
        "_chunk_meta",
        "_closing",
        "_connection_field",
        "_cycles",
        "_deadline",
        "_deadline_kind",
        "_deferred_error",
        "_deferred_headers",
        "_drain_waiters",
        "_dropped_headers",
        "_expect_continue",
        "_feed_size",
        "_fresh",
        "_good_hosts",
        "_h2c",
        "_head_reads",
        "_headers",
        "_host_checked",
        "_hosts",
        "_in_head",
        "_intermediary",
        "_lost",
        "_method_known",
        "_names",
        "_out_meter",
        "_parser",
        "_parsing",
        "_pipeline",
        "_rare",
        "_raw_head",
        "_raw_preface",
        "_read_paused",
        "_read_paused_body",
        "_slot",
        "_te_trailers",
        "_tls",
        "_transfer_encoding",
        "_upgrade",
        "_upgrade_body",
        "_url",
        "_ws",
        "body_received",
        "loop",
        "peer",
        "settings",
        "transport",
    )

    peer: PeerInfo

    def __init__(self, settings: ConnectionSettings, tls: ServerTLS | None = None) -> None:
        self.settings = settings
        self._tls = tls
        self.loop = settings.ctx.loop
        # transport and peer are set by connection_made, before anything reads them.
        self._parser = httptools.HttpRequestParser(self)
        # The per-request parse state is set by on_url before anything reads it; the part only
        # unusual headers set is set there too, once _rare says so.
        self._in_head = False
        self._url = b""
        self._head_reads = 0
        self._raw_head = 0
        self._transfer_encoding = False
        self._rare = True
        self._names = settings.h1_header_names
        self._good_hosts = settings.h1_hosts
        self._host_checked = b""
        self._parsing: HTTPCycle | None = None
        self._active: Cycle | None = None
        self._pipeline: deque[tuple[Cycle, bool, bool]] = deque()
        self._cycles: set[Cycle] = set()
        self._deferred_error = 0
        self._deferred_headers: list[tuple[bytes, bytes]] = []
        self._chunk_meta = 0  # chunk framing bytes of the request being read (_feed)
        self.body_received = 0
        self._method_known = False  # see _answering_head
        self._ws: _PendingUpgrade | None = None
        self._h2c: H2Upgrade | None = None
        # The framing of an upgrade request's body still to be read, and whether the head
        # being parsed is the stand-in that reads it (see _on_upgrade).
        self._upgrade_body: bytes | None = None
        self._body_only = False
        self._raw_preface = b""
        # Until the first bytes are in: they may be the HTTP/2 preface instead of a request.
        self._fresh = settings.http_versions != "1"
        self._closing = False
        self._lost = False
        self._read_paused = False
        self._read_paused_body = False
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._slot = 0  # the deadline wheel's slot this connection is in; 0: none
        self._deadline = 0.0
        self._deadline_kind = _IDLE
        self._body_meter: RateMeter | None = None
        self._out_meter: RateMeter | None = None
        self._init_response_state()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        settings = self.settings
        extensions = settings.extensions
        tls = self._tls
        if tls is not None:
            extensions = {
                **extensions,
                "tls": tls_extension(tls, transport.get_extra_info("ssl_object")),
            }
        self.peer = PeerInfo.from_addresses(
            settings.ctx,
            transport.get_extra_info("peername"),
            transport.get_extra_info("sockname"),
            tls is not None,
            extensions,
        )
        if tls is not None and self._fresh:
            ssl_object = transport.get_extra_info("ssl_object")
            alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
            if alpn == "h2":
                self._start_http2(b"")
                return
            # Without ALPN a client may still speak HTTP/2 by prior knowledge (RFC 9113 3.3).
            self._fresh = alpn is None
        if settings.limit_concurrency is not None and settings.over_limit(1):
            self._parser = httptools.HttpRequestParser(_OverLimit(self))
        settings.connections.add(self)
        self._arm(_HEAD, settings.header_read_timeout)

    def _sniff(self, data: bytes) -> bytes:
        """The first bytes of a connection: the HTTP/2 preface is taken over by HTTP/2 (b""
        returned); anything else is HTTP/1.x, returned to be parsed."""
        held = self._raw_preface + data if self._raw_preface else data
        if held.startswith(PREFACE):
            self._fresh = False
            self._start_http2(held)
            return b""
        if PREFACE.startswith(held):
            self._raw_preface = held  # wait for the rest of it
            return b""
        self._fresh = False
        if self.settings.http_versions == "2":
            self._write_error(505)  # --http 2: nothing but HTTP/2 is served
            return b""
        return held

    def _start_http2(self, data: bytes, upgrade: H2Upgrade | None = None) -> None:
        """Hand the transport to an HTTP/2 connection, with what was read already."""
        self._closing = True
        self._fresh = False
        self._leave_wheel()
        conn = (HTTP2Connection if self._tls is None else HTTP2TLSConnection)(
            self.settings, self.peer
        )
        self.settings.connections.discard(self)
        self._uncork()
        transport = self.transport
        transport.set_protocol(conn)
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        conn.start(transport, data, upgrade)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._lost = True
        self._corked = None
        self.settings.connections.discard(self)
        self._leave_wheel()
        if self._cycles:
            for cycle in list(self._cycles):
                cycle.on_disconnect()
            # The queued ones never start, so never finish: forgotten here.
            for cycle, _, _ in self._pipeline:
                self._cycles.discard(cycle)
            self._pipeline.clear()
        if self._drain_waiters:
            self._wake_writers()
        if not self._cycles:
            self._unlink()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        if self._fresh:
            data = self._sniff(data)
            if not data:
                return
        if self._ws is not None:
            self._hold_early(data)
            return
        if self._deadline_kind == _KEEPALIVE:
            # The next request's head has begun: its own deadline (an earlier slot when the
            # header-read timeout is the shorter).
            self._arm(_HEAD, self.settings.header_read_timeout)
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
        parsing = self._parsing
        received = self.body_received
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._parse_stopped(exc, rest)
            return False
        if parsing is not None and parsing is self._parsing and self._transfer_encoding:
            # A slice wholly inside a chunked body: what was not body is chunk framing. llhttp
            # bounds no chunk-size line nor extension, so we bound them all together (as Go
            # does): at most a head's worth plus a few bytes per byte of body, else 400.
            meta = self._chunk_meta + len(data) - (self.body_received - received)
            self._chunk_meta = meta
            if meta > self.settings.limit_request_head_size + 8 * self.body_received:
                self._refuse(400, "too much chunk metadata")
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
                self._refuse(cause.status, str(cause), cause.headers)
            else:
                error_logger.exception("Error parsing request", exc_info=cause)
                self._refuse(400)
        else:
            # Past its method the request's method is llhttp's; before it, the last one's.
            self._method_known = not isinstance(exc, httptools.HttpParserInvalidMethodError)
            reason = str(exc)
            self._refuse(505 if "HTTP version" in reason else 400, reason)

    def eof_received(self) -> bool | None:
        # The client closed its side. Like Daphne and Uvicorn we take that as the client going
        # away: returning None lets the transport close, and connection_lost tells every
        # running app `http.disconnect` (a half-close that still waits for an answer is rare;
        # an app left waiting for a disconnect that never comes is not). A response corked
        # for the write batch goes first: the transport closes when this returns.
        self._uncork()
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        if self._in_head:
            url = self._url = self._url + url  # a target split across reads
        else:
            # A new request (llhttp calls on_url first for every request, which saves the
            # on_message_begin callback): reset the per-request parse state. The part only
            # unusual headers set (_unusual_header) is reset after a request that set some.
            self._in_head = True
            self._method_known = True
            self._head_reads = 0
            self._raw_head = 0
            self._url = url
            self._headers: list[tuple[bytes, bytes]] = []
            self._hosts = 0
            self.body_received = 0
            self._chunk_meta = 0
            if self._rare:
                self._rare = False
                self._dropped_headers = 0
                self._expect_continue = False
                self._intermediary = False
                self._transfer_encoding = False
                self._te_trailers = False
                self._upgrade: bytes | None = None
                self._connection_field = False
        if len(url) > self.settings.limit_request_head_size:
            raise _TooLarge(414)

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp has already refused every CTL but HTAB (RFC 9110 5.5), so of Daphne's rule
        # (CTLs and \x85, which str.splitlines() takes for a line break) only \x85 is left.
        # Byte membership is tested with ints: `b"_" in name` first tries the operand as an
        # int, fails with a formatted TypeError and retries; that cost more than all the rest.
        # Names seen before that need nothing but lower-casing (and Host) come from a per-server
        # table: one lookup instead of lower() and three membership tests. Host values found
        # valid before are in another, so a new connection skips the pattern too.
        lname = self._names.get(name)
        if lname is None or _NEL in value:
            self._unusual_header(name.lower(), value, name)
            return
        if lname is _HOST:
            if value != self._host_checked:  # not the value this connection sent last
                if value not in self._good_hosts:
                    self._unusual_header(lname, value, name)
                    return
                self._host_checked = value
            self._hosts += 1  # a valid value (the pattern refuses \x85 too)
        self._headers.append((lname, value))

    def _unusual_header(self, name: bytes, value: bytes, raw_name: bytes) -> None:
        """A header field on_header's table does not settle: `name` is lower-cased."""
        if name == b"host":
            self._hosts += 1
            if HOST_VALUE.fullmatch(value) is None:  # it refuses \x85 too
                raise BadRequest("invalid Host header")
            self._host_checked = value  # see on_header
            if len(value) <= HOST_TABLE_VALUE_MAX:
                hosts = self._good_hosts
                if len(hosts) >= HOST_TABLE_MAX:
                    hosts.clear()
                hosts.add(value)
            self._remember_name(raw_name, _HOST)
            self._headers.append((_HOST, value))
            return
        if (
            name not in self.settings.h1_notable_headers
            and _UNDERSCORE not in name
            and _NEL not in value
        ):
            # A plain field: on_header takes it from the table from now on.
            self._remember_name(raw_name, name)
            self._headers.append((name, value))
            return
        self._rare = True
        if _NEL in value:
            raise BadRequest("control character in a header value")
        if _UNDERSCORE in name:
            # Daphne (CVE-2015-0219): "_" names could masquerade as "-" ones; drop them.
            self._dropped_headers += 1
            return
        if name == b"transfer-encoding":
            self._transfer_encoding = True
        elif name == b"connection" or name == b"proxy-connection":
            self._connection_field = True  # llhttp's keep-alive reads both (on_headers_complete)
        elif name == b"expect":
            if value.lower() == b"100-continue":
                self._expect_continue = True
        elif name == b"upgrade":
            self._upgrade = value
        elif name == b"te":
            # RFC 9110 10.1.4: the client accepts trailer fields (http.response.trailers).
            self._te_trailers = any(
                part.split(b";")[0].strip().lower() == b"trailers" for part in value.split(b",")
            )
        else:
            self._intermediary = True  # Daphne-Root-Path or a proxy header: the scope looks
        self._headers.append((name, value))

    def _remember_name(self, raw_name: bytes, name: bytes) -> None:
        """Put a plain (or Host) field name in on_header's table, which is bounded: emptied
        when full, and only short names enter it."""
        if len(raw_name) <= NAME_TABLE_NAME_MAX:
            names = self._names
            if len(names) >= NAME_TABLE_MAX:
                names.clear()
            names[raw_name] = name

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
        if self._body_only:
            # The stand-in head _on_upgrade fed to read an upgrade request's body.
            self._body_only = False
            self._in_head = False
            return
        parser = self._parser
        keep_alive = parser.should_keep_alive()
        if keep_alive and not self._connection_field:
            # llhttp takes only HTTP/0.9, 1.0, 1.1 and 2.0, and keeps alive without a Connection
            # (or Proxy-Connection) field only 1.1: no need for get_http_version(), which
            # formats a string each time.
            http_version = "1.1"
        else:
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
        method = KNOWN_METHODS.get(raw_method) or raw_method.decode("ascii")
        url = self._url
        if url[0] == _SLASH and _HASH not in url and method != "CONNECT":
            question = url.find(b"?")
            if question < 0:
                raw_path, query = url, b""
            else:
                raw_path, query = url[:question], url[question + 1 :]
        else:
            raw_path, query, authority = _split_target(url, method)
            if authority is not None:
                # RFC 9112 3.2.2: an absolute-form target's host replaces the Host header.
                headers = [(b"host", authority), *((n, v) for n, v in headers if n != b"host")]
        peer = self.peer
        scope = build_http_scope(
            settings.ctx,
            peer,
            method,
            http_version,
            raw_path,
            query,
            headers,
            peer.extensions,
            self._intermediary,
        )
        if settings.limit_max_body_size is not None:
            length = _content_length(headers)
            if length is not None and length > settings.limit_max_body_size:
                raise _TooLarge(413)
        if self._upgrade is not None and parser.should_upgrade():
            if is_websocket_upgrade(self._upgrade):
                self._begin_websocket(scope, method, http_version, headers)
                return
            if self._h2c_possible(http_version, headers):
                # Served as HTTP/2 stream 1 once the parser has stopped at the upgrade.
                settings_value = next(v for n, v in headers if n == b"http2-settings")
                self._h2c = (settings_value, method, raw_path, query, headers)
                return
            # An upgrade we do not perform: served as HTTP/1.1. httptools has told llhttp to
            # skip the body of any upgrade request, so its body comes back after the parser
            # stops (_on_upgrade), where it must be read as this request's body, not as the
            # next request (that would be request smuggling).
            length = _content_length(headers)
            if self._transfer_encoding:
                # llhttp checks the codings only of a body it reads: RFC 9112 6.3 wants chunked
                # last, or the length of the body is unknown.
                codings = b",".join(v for n, v in headers if n == b"transfer-encoding")
                if codings.rsplit(b",", 1)[-1].strip().lower() != b"chunked":
                    raise BadRequest("Transfer-Encoding does not end with chunked")
                self._upgrade_body = b"transfer-encoding: chunked\r\n"
            elif length:
                self._upgrade_body = b"content-length: %d\r\n" % length
        if http_version == "1.1":
            # Early hints (a 103 is not for 1.0 clients); trailers if the client takes them.
            extensions = scope["extensions"]
            extensions[EARLY_HINT] = {}
            if self._te_trailers:
                extensions[TRAILERS] = {}
        cycle = HTTPCycle(scope, self, settings.ctx)
        if settings.access_log:
            cycle.arrived = self.loop.time()
        self._parsing = cycle
        self._cycles.add(cycle)
        # RFC 9110 10.1.1: a 1.0 client cannot be relied on to understand 100 Continue.
        expect = self._expect_continue and http_version == "1.1"
        self._pipeline.append((cycle, keep_alive, expect))
        if self._active is not None and not self._read_paused:
            # A pipelined request: hold further input until the current response is done.
            self._read_paused = True
            self.transport.pause_reading()

    def _h2c_possible(self, http_version: str, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether to take an `Upgrade: h2c` (RFC 7540 3.2): cleartext HTTP/1.1, one
        HTTP2-Settings, no request body (which would have to be read as HTTP/1.1 first), and
        no other request before it on the connection. Otherwise the request is served as
        HTTP/1.1, which a client must accept."""
        if (
            self.settings.http_versions == "1"
            or http_version != "1.1"
            or self._tls is not None
            or self._active is not None
            or self._pipeline
            or self._upgrade is None
            or not any(t.strip().lower() == b"h2c" for t in self._upgrade.split(b","))
        ):
            return False
        found = 0
        for name, value in headers:
            if name == b"http2-settings":
                found += 1
                if not _settings_payload(value):
                    return False
            elif name == b"transfer-encoding" or (
                name == b"content-length" and value.strip() != b"0"
            ):
                return False
        return found == 1

    def _begin_websocket(
        self,
        scope: dict[str, object],
        method: str,
        http_version: str,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Queue a WebSocket handshake (RFC 6455 4.2): the app answers it when its turn comes.
        Input after it is held (it is frames, not HTTP) until the app has accepted."""
        key = check_upgrade(method, http_version, headers)
        framing, extensions = open_framing(self.settings.websocket, headers)
        cycle = WebSocketCycle(
            websocket_scope(scope, offered_subprotocols(headers)), self, self.settings.ctx
        )
        self._ws = _PendingUpgrade(cycle, key, framing, extensions)
        self._cycles.add(cycle)
        self._pipeline.append((cycle, False, False))

    def _hold_early(self, data: bytes) -> None:
        pending = self._ws
        assert pending is not None
        pending.early += data
        if len(pending.early) > WS_EARLY_LIMIT and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def accept_websocket(
        self, cycle: WebSocketCycle, subprotocol: str | None, headers: list[tuple[bytes, bytes]]
    ) -> WebSocketConnection:
        """Complete the handshake with a 101 and hand the transport to a WebSocketConnection;
        this HTTP/1.1 connection is done with it."""
        pending = self._ws
        assert pending is not None and pending.cycle is cycle
        settings = self.settings
        transport = self.transport
        self._write(
            response_head(
                pending.key,
                subprotocol,
                pending.extensions,
                b"".join(default_lines(settings, {name for name, _ in headers})),
                headers,
            )
        )
        conn = (WebSocketConnection if self._tls is None else WebSocketTLSConnection)(
            settings, transport, cycle, pending.framing, bytes(pending.early)
        )
        self._ws = None
        self._closing = True
        self._active = None
        self._cycles.discard(cycle)
        self._leave_wheel()
        # Added before this one is removed: a drain waiting for the registry to empty must not
        # see it empty in between.
        settings.connections.add(conn)
        settings.connections.discard(self)
        transport.set_protocol(conn)
        if self._read_paused:
            self._read_paused = False
            transport.resume_reading()
        return conn

    def on_body(self, body: bytes) -> None:
        cycle = self._parsing
        if cycle is None:
            return
        self.body_received += len(body)
        limit = self.settings.limit_max_body_size
        if limit is not None and self.body_received > limit:
            raise _TooLarge(413)
        cycle.feed_body(body)  # dropped there if the app answered without reading

    def on_message_complete(self) -> None:
        if self._upgrade_body is not None:
            return  # llhttp skipped the body of an upgrade request: see on_headers_complete
        cycle = self._parsing
        self._parsing = None
        self._method_known = False  # llhttp still holds this request's method
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

    def cycle_finished(self, cycle: Cycle) -> None:
        self._cycles.discard(cycle)
        if self._lost and not self._cycles:
            self._unlink()

    def _unlink(self) -> None:
        """Break the reference cycles a connection is part of (its parser holds its bound
        callbacks; its transport holds it, and it the transport; a request it was running
        holds it as its sink) once it is lost and no app runs for it any more: then it is
        freed at once, not by the cyclic GC, which under connection churn costs a few percent
        of the CPU. Nothing calls into it after this."""
        self._parser = _GONE_PARSER
        self.transport = _GONE_TRANSPORT
        self._active = self._parsing = None
        self._ws = None
        self._body_meter = None

    # -- HTTPSink ----------------------------------------------------------------------------------

    def send_continue(self) -> None:
        if self._expect_pending:
            self._expect_pending = False
            if not self._closing:
                self.bytes_out += len(CONTINUE)
                self._write(CONTINUE)

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

    def _response_done(self) -> None:
        cycle = self._active
        if cycle is None:
            return
        self._active = None
        if self.settings.access_log and type(cycle) is HTTPCycle:
            scope = cycle.scope
            query = scope["query_string"]
            target = scope["raw_path"].decode("ascii")
            if query:
                target += "?" + query.decode("ascii")
            log_access(
                scope["client"],
                scope["method"],
                target,
                cycle.status,
                self._resp_bytes,
                duration=self.loop.time() - cycle.arrived,
            )
        if self._closing:
            return
        if cycle.more_body or not self._resp_keep_alive or self.settings.draining:
            # Unread request body, Connection: close, HTTP/1.0 without length, or draining.
            self._close(linger=cycle.more_body or self._ws is not None)
            return
        if self._pipeline:
            self.loop.call_soon(self._start_next)
            return
        if self._deferred_error:
            self._write_error(self._deferred_error, self._deferred_headers)
            return
        self._arm(_KEEPALIVE, self.settings.timeout_keep_alive)
        if self._read_paused:
            self._maybe_resume_reading()

    def cancel_apps(self) -> None:
        """Cancel every app task still running for this connection (end of a drain)."""
        for cycle in list(self._cycles):
            if cycle.task is not None and not cycle.task.done():
                cycle.task.cancel()

    def abort(self) -> None:
        """Reset the connection: an RST, so a truncated response never reads as complete."""
        if not self._closing:
            # What the app did send goes out first (after a corked response), then the reset.
            if self._pending:
                self._flush()
            self._uncork()
        self._closing = True
        self._active = None
        reset_connection(self.transport)

    # -- errors, timers and closing ----------------------------------------------------------------

    def _refuse(
        self, status: int, reason: str = "", headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
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
            self._deferred_headers = headers or []
            if not self._read_paused:
                self._read_paused = True
                self.transport.pause_reading()
            return
        self._write_error(status, headers)

    def _answering_head(self) -> bool:
        """Whether the request a server error page answers is a HEAD. llhttp holds the method
        of the request it stopped in once it is past that method; before, the previous
        request's (so a request that has not got that far is not taken for a HEAD)."""
        if not self._method_known:
            return False
        try:
            return bool(self._parser.get_method() == b"HEAD")
        except Exception:  # no method parsed yet
            return False

    def _close(self, linger: bool) -> None:
        if self._closing:
            return
        self._closing = True
        self._deadline_kind = _IDLE
        self._uncork()  # the last response, then the close
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
        """Set the connection's one deadline. Its place in the server's deadline wheel serves
        all of them lazily: it moves only to an earlier slot; a later deadline is found by
        on_deadline when the earlier slot comes."""
        self._deadline_kind = kind
        self._deadline = deadline = self.loop.time() + seconds
        # deadline * SLOTS_PER_SECOND < slot - 1 is slot_of(deadline) < slot, without the call.
        if not self._slot or deadline * SLOTS_PER_SECOND < self._slot - 1:
            self._move_slot(slot_of(deadline))

    def _move_slot(self, slot: int) -> None:
        """Move this connection to `slot` of the deadline wheel."""
        self._leave_wheel()
        self._slot = slot
        self.settings.deadlines.add(self, slot)

    def _leave_wheel(self) -> None:
        """Take this connection out of the deadline wheel (it is done with deadlines, or
        moves to another slot)."""
        if self._slot:
            self.settings.deadlines.discard(self, self._slot)
            self._slot = 0

    def on_deadline(self) -> None:
        """The deadline wheel's call (protocols/deadlines.py): this connection's slot came."""
        self._slot = 0
        kind = self._deadline_kind
        if kind == _IDLE or self._closing:
            return
        if self.loop.time() < self._deadline:
            self._move_slot(slot_of(self._deadline))
            return
        if kind == _KEEPALIVE:
            self._close(linger=False)
        elif self._active is None:
            self._write_error(408)

    def check_rates(self, seconds: float) -> None:
        """The heartbeat's check of the minimum data rates (protocols/data_rate.py). The body
        of the request being parsed is waited for unless reading is paused (the app is behind,
        or a pipelined request waits its turn) or the client waits for its 100 Continue.
        Output is checked until the connection is gone: a closing connection still holds its
        client's unread response."""
        if self._lost:
            return
        if self._corked is not None:
            self._uncork()  # counted in bytes_out already: out before the meter reads it
        rates = self.settings.rates
        cycle = self._parsing
        if cycle is None or not rates.request_body or self._closing:
            self._body_meter = None
        elif not self._read_paused and not (self._expect_pending and cycle is self._active):
            meter = self._body_meter
            if meter is None or meter.key is not cycle:
                self._body_meter = RateMeter(cycle, self.body_received)
            elif meter.too_slow(self.body_received, seconds, rates.request_body, rates.grace):
                self._body_meter = None
                error_logger.info(
                    "Request body from %s below --min-request-body-rate: 408", self.peer.who()
                )
                self._refuse(408, "request body too slow")
                return
        if rates.response:
            self._out_meter, slow = output_meter(
                self._out_meter, self.transport, self.bytes_out, seconds, rates
            )
            if slow:
                error_logger.info(
                    "Client %s reads below --min-response-data-rate: dropped", self.peer.who()
                )
                self.abort()

    def shutdown(self) -> None:
        """Graceful shutdown: close after the current response; an idle connection closes
        after a short grace, within which a request already sent is still answered."""
        if self._active is None and not self._pipeline and self._parsing is None:
            if self._in_head:
                return  # a request is arriving: answered, then closed (settings.draining)
            grace = self.settings.drain_idle_grace
            if grace <= 0 or self._closing:
                self._close(linger=False)
            elif self._deadline_kind != _KEEPALIVE or self._deadline > self.loop.time() + grace:
                # A client that connected but sent nothing yet, or a keep-alive connection:
                # silently closed at the end of the grace unless a request comes.
                self._arm(_KEEPALIVE, grace)
        else:
            self._resp_keep_alive = False

    def _on_upgrade(self, rest: bytes) -> None:
        if self._h2c is not None:
            upgrade, self._h2c = self._h2c, None
            self._write(
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"
            )
            self._start_http2(rest, upgrade)
            return
        if self._ws is not None:
            # A WebSocket handshake: what follows it is frames, held until the app accepts.
            self._ws.early += rest
            if self._active is None and self._pipeline:
                self._start_next()
            return
        # Protocol upgrades this connection does not perform (h2c with a body, or anything but
        # h2c and websocket) are ignored: the request is served as plain HTTP/1.1, and bytes
        # after it (after its body) start a new request.
        self._parser = httptools.HttpRequestParser(self)
        framing, self._upgrade_body = self._upgrade_body, None
        if framing is not None:
            # The body llhttp skipped: a fresh parser reads it behind a stand-in head with the
            # request's own framing, then goes on with the requests after it.
            self._body_only = True
            self._parser.feed_data(b"POST / HTTP/1.1\r\nhost: body\r\n" + framing + b"\r\n")
        if self._active is None and self._pipeline:
            self._start_next()
        if rest:
            self.data_received(rest)


class HTTP1TLSConnection(HTTP1Connection, TLSReads):
    """HTTP1Connection on a TLS listener (reads through protocols/tls_reads.py)."""

    __slots__ = ()

    _batched = False  # see ResponseWriter._batched


_SCHEMES = frozenset({b"http", b"https"})


def _split_target(url: bytes, method: str) -> tuple[bytes, bytes, bytes | None]:
    """Path, query and (for the absolute-form) authority of a request target that is not a
    plain origin-form (RFC 9112 3.2). CONNECT (authority-form, a tunnel) is not served, in any
    form: what follows it on the connection would be tunnel bytes, never requests."""
    if method == "CONNECT":
        raise BadRequest("CONNECT is not supported", 405)
    if url == b"*":
        if method != "OPTIONS":
            raise BadRequest("the asterisk-form is for OPTIONS only")  # RFC 9112 3.2.4
        return url, b"", None
    if url[0] == _SLASH:  # origin-form with a fragment, which no client should send
        url = url.split(b"#", 1)[0]
        path, _, query = url.partition(b"?")
        return path, query, None
    try:
        parsed = httptools.parse_url(url)  # absolute-form
    except httptools.HttpParserInvalidURLError:
        raise BadRequest("invalid request target") from None
    host = parsed.host
    if (parsed.schema or b"").lower() not in _SCHEMES or not host or parsed.userinfo:
        # RFC 9110 4.2.4: userinfo in an http(s) URI is an error.
        raise BadRequest("invalid request target")
    if b":" in host:
        host = b"[" + host + b"]"  # an IPv6 literal
    authority = host if parsed.port is None else b"%b:%d" % (host, parsed.port)
    return parsed.path or b"/", parsed.query or b"", authority


def _settings_payload(value: bytes) -> bool:
    """Whether an HTTP2-Settings value is base64url of whole SETTINGS entries (RFC 7540 3.2.1)."""
    try:
        raw = base64.b64decode(value.strip(), altchars=b"-_", validate=True)
    except ValueError:
        return False
    return len(raw) % 6 == 0


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None
