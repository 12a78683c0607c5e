# laurelin.protocols.websocket — an accepted WebSocket over one transport (RFC 6455).
#
# Owns the frames after the 101: the `websockets` sans-I/O framing (C speedups, permessage-
# deflate) in, complete messages out to the WebSocketCycle (fragments reassembled, text checked
# for UTF-8 as it arrives: 1007; small whole data frames, most of the traffic, parsed here and
# everything else by the framing, see _split), protocol errors (1002, 1009 over the limits) with
# the right code, the server's keep-alive pings (--ping-interval of silence, then a ping; no
# pong within --ping-timeout: close 1011), the closing handshake with a deadline, read and
# write backpressure, and graceful shutdown (1001). The handshake is protocols/ws_handshake.py's
# and the HTTP/1.1 connection's; the ASGI rules are the bridge's (asgi/websocket.py).
from __future__ import annotations

import asyncio
import codecs
import os
import struct
from typing import TYPE_CHECKING, cast

from websockets.frames import Frame, Opcode

try:
    from websockets.speedups import apply_mask
except ImportError:  # the C speedups are missing on this platform
    from websockets.utils import apply_mask

from laurelin.asgi.context import describe_client
from laurelin.asgi.websocket import ABNORMAL_CLOSURE, INTERNAL_ERROR, WebSocketCycle
from laurelin.logs import error_logger
from laurelin.protocols.data_rate import RateMeter, output_meter, reset_connection
from laurelin.protocols.tls_reads import TLSReads
from laurelin.protocols.write_flow import WriteFlow

if TYPE_CHECKING:
    from websockets.server import ServerProtocol

    from laurelin.protocols.settings import ConnectionSettings

# Seconds the client has to answer our close frame (or drain our last bytes) before the
# connection is dropped.
CLOSE_TIMEOUT = 5.0
PROTOCOL_ERROR = 1002
INVALID_DATA = 1007

_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_CLOSE, _PONG = Opcode.CLOSE, Opcode.PONG
_utf8_decoder = codecs.getincrementaldecoder("utf-8")
# Complete data frames up to this size are parsed here rather than by the framing (_split).
_FAST_MAX = 16384
_LENGTH16 = struct.Struct("!H")
_LENGTH64 = struct.Struct("!Q")
# Heads of the data frames we send, and the payload size above which a payload is written
# after its head instead of copied behind it.
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")
_JOIN_LIMIT = 16384


class WebSocketConnection(WriteFlow, asyncio.BaseProtocol):
    """One accepted WebSocket: the transport's protocol after the handshake, and the sink of
    its WebSocketCycle."""

    __slots__ = (
        "_app_paused",
        "_closing",
        "_decoder",
        "_drain_waiters",
        "_early",
        "_fast_max",
        "_framing",
        "_held",
        "_lost",
        "_out_meter",
        "_owed",
        "_partial",
        "_ping",
        "_read_paused",
        "_rx",
        "_timer",
        "bytes_out",
        "cycle",
        "loop",
        "settings",
        "transport",
        "write_paused",
    )

    def __init__(
        self,
        settings: ConnectionSettings,
        transport: asyncio.Transport,
        cycle: WebSocketCycle,
        framing: ServerProtocol,
        early: bytes,
    ) -> None:
        self.settings = settings
        self.loop = settings.ctx.loop
        self.transport = transport
        self.cycle = cycle
        self._framing = framing
        self.write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._app_paused = False  # the cycle asked: its queue is full
        self._read_paused = False  # the transport's reading is paused (app, or write backlog)
        self._closing = False  # our close frame is out (or the transport is closing)
        self._lost = False
        # The message being reassembled from fragments, and for text the UTF-8 check of it.
        self._partial: bytearray | None = None
        self._decoder: codecs.IncrementalDecoder | None = None
        self._rx = True  # traffic since the last keep-alive check
        self._ping: bytes | None = None  # payload of the ping awaiting its pong
        self._timer: asyncio.TimerHandle | None = None
        self._early = early  # what the client sent after its handshake request
        # Input splitting (see _split): bytes of an incomplete frame we hold, bytes of the
        # current frame the framing has yet to see, and the largest frame handled here.
        self._held = b""
        self._owed = 0
        limits = [_FAST_MAX, settings.websocket.max_message_size, settings.websocket.max_frame_size]
        self._fast_max = min(limit for limit in limits if limit is not None)
        self.bytes_out = 0  # bytes written (protocols/data_rate.py)
        self._out_meter: RateMeter | None = None

    def opened(self) -> None:
        """The cycle is ready for frames: start the keep-alive and read what came early."""
        self._arm_keepalive()
        early, self._early = self._early, b""
        if early:
            self.data_received(early)
        if self.settings.draining:
            self.cycle.shutdown()

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._rx = True
        if self._closing:
            if self._held:  # frames the framing has not seen come first
                data = self._held + data
                self._held = b""
            self._to_framing(data)  # only a close frame matters now; the framing finds it
            return
        owed = self._owed
        if owed:
            # The rest of a frame the framing is parsing: it is the framing's.
            if len(data) <= owed:
                self._owed = owed - len(data)
                self._to_framing(data)
                return
            self._owed = 0
            self._to_framing(data[:owed])
            data = data[owed:]
        if self._held:
            data = self._held + data
            self._held = b""
        self._split(data)

    def _split(self, data: bytes) -> None:
        """Walk the input frame by frame (RFC 6455 5.2). A complete small data message in one
        masked frame, the everyday case, is unmasked and delivered here; every other frame
        (control frames, fragments, compressed or oversized ones, anything malformed) goes
        whole to the framing, which then always stands at a frame boundary, as if it had seen
        all the input. A frame's incomplete head, or an incomplete small frame, is held."""
        end = len(data)
        pos = 0
        framing = self._framing
        while pos < end:
            if self._closing:
                self._to_framing(data[pos:])
                return
            avail = end - pos
            if avail < 2:
                break
            first = data[pos]
            second = data[pos + 1]
            if not second & 0x80:
                # Unmasked: a protocol error (RFC 6455 5.1), the framing's to report (1002).
                self._to_framing(data[pos:])
                return
            length = second & 0x7F
            head = 6  # two bytes and the mask
            if length == 126:
                head = 8
            elif length == 127:
                head = 14
            if avail < head:
                break
            if length == 126:
                length = _LENGTH16.unpack_from(data, pos + 2)[0]
            elif length == 127:
                length = _LENGTH64.unpack_from(data, pos + 2)[0]
                if length >> 63:
                    # RFC 6455 5.2: the most significant bit MUST be 0. The framing checks
                    # lengths only against a size limit, and there may be none.
                    self._fail(PROTOCOL_ERROR, "invalid frame length")
                    self._write_out()
                    return
            total = head + length
            if (
                (first == 0x81 or first == 0x82)  # FIN, no RSV bit, text or binary
                and length <= self._fast_max
                and framing.current_size is None  # not inside a fragmented message
            ):
                if avail < total:
                    break
                payload = apply_mask(
                    data[pos + head : pos + total], data[pos + head - 4 : pos + head]
                )
                pos += total
                if first == 0x81:
                    try:
                        text = str(payload, "utf-8")
                    except UnicodeDecodeError:
                        self._fail(INVALID_DATA, "invalid UTF-8 in a text message")
                        self._write_out()
                        return
                    self.cycle.feed_message(text)
                else:
                    self.cycle.feed_message(payload)
                if self._app_paused:
                    break  # the app is behind: the rest waits in _held (resume_reading)
                continue
            # The framing's frame: what is here of it now, the rest as it comes.
            chunk = data[pos : pos + total]
            self._owed = total - len(chunk)
            pos += len(chunk)
            self._to_framing(chunk)
        if pos < end:
            self._held = data[pos:]

    def _to_framing(self, data: bytes) -> None:
        framing = self._framing
        framing.receive_data(data)
        events = framing.events_received()
        if events:
            self._handle(cast("list[Frame]", events))
        if framing.parser_exc is not None:
            self._parser_failed()
        self._write_out()

    def eof_received(self) -> bool | None:
        self._framing.receive_eof()
        self._write_out()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.settings.connections.discard(self)
        framing = self._framing
        rcvd = framing.close_rcvd
        if rcvd is not None:
            self.cycle.on_disconnect(rcvd.code, rcvd.reason)
        else:
            self.cycle.on_disconnect(ABNORMAL_CLOSURE, "")
        self.write_paused = True
        self._wake_writers()

    def pause_writing(self) -> None:
        # The client is not reading what we send: stop reading from it too, or pings could
        # make it queue pongs here without bound.
        self.write_paused = True
        self._sync_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_writers()
        self._sync_reading()

    # -- frames in -------------------------------------------------------------------------------

    def _handle(self, events: list[Frame]) -> None:
        cycle = self.cycle
        for frame in events:
            opcode = frame.opcode
            if opcode is _TEXT:
                if self._closing:
                    continue
                if frame.fin:
                    try:
                        text = str(frame.data, "utf-8")
                    except UnicodeDecodeError:
                        self._fail(INVALID_DATA, "invalid UTF-8 in a text message")
                        return
                    cycle.feed_message(text)
                else:
                    self._partial = bytearray(frame.data)
                    self._decoder = _utf8_decoder()
                    if not self._check_utf8(frame.data, False):
                        return
            elif opcode is _BINARY:
                if self._closing:
                    continue
                if frame.fin:
                    cycle.feed_message(bytes(frame.data))
                else:
                    self._partial = bytearray(frame.data)
                    self._decoder = None
            elif opcode is _CONT:
                partial = self._partial
                if partial is None:
                    continue  # cannot happen: the framing refuses a stray continuation
                partial += frame.data
                fin = frame.fin
                if self._decoder is not None and not self._check_utf8(frame.data, fin):
                    return
                if fin:
                    self._partial = None
                    if self._closing:
                        continue
                    if self._decoder is not None:
                        self._decoder = None
                        cycle.feed_message(str(partial, "utf-8"))
                    else:
                        cycle.feed_message(bytes(partial))
            elif opcode is _PONG:
                if self._ping is not None and frame.data == self._ping:
                    self._ping = None
                    if not self._closing:
                        self._rx = False
                        self._arm_keepalive()  # the next ping one interval after this pong
            elif opcode is _CLOSE:
                rcvd = self._framing.close_rcvd
                assert rcvd is not None
                self.cycle.on_disconnect(rcvd.code, rcvd.reason)
            # PING: the framing has already queued the pong.

    def _check_utf8(self, data: bytes | bytearray | memoryview, final: bool) -> bool:
        """Validate a fragment of a text message as it arrives, so that invalid UTF-8 fails
        the connection at once (1007) instead of after the whole message."""
        decoder = self._decoder
        assert decoder is not None
        try:
            decoder.decode(data, final)
        except UnicodeDecodeError:
            self._fail(INVALID_DATA, "invalid UTF-8 in a text message")
            return False
        return True

    def _parser_failed(self) -> None:
        """The framing refused the input (1002, 1009, ...) and queued its close frame."""
        sent = self._framing.close_sent
        if sent is not None:
            self.cycle.on_disconnect(sent.code, sent.reason)
        else:
            self.cycle.on_disconnect(ABNORMAL_CLOSURE, "")
        self._closing = True

    def _fail(self, code: int, reason: str) -> None:
        """Close at once for a protocol error of ours to report (RFC 6455 7.1.7)."""
        if not self._closing:
            self._closing = True
            self._framing.fail(code, reason)
            self._arm(CLOSE_TIMEOUT)
        self.cycle.on_disconnect(code, reason)

    # -- frames out: the WebSocketSink the cycle talks to --------------------------------------

    def send_message(self, data: str | bytes) -> None:
        if self._closing:
            return
        framing = self._framing
        if isinstance(data, str):
            payload = data.encode()
            if framing.extensions:
                framing.send_text(payload)
                self._write_out()
                return
            first = 0x81  # FIN + text
        else:
            payload = data
            if framing.extensions:
                framing.send_binary(payload)
                self._write_out()
                return
            first = 0x82  # FIN + binary
        # No extension to apply: the frame is a fixed header and the payload (RFC 6455 5.2),
        # written directly instead of through the framing's general serializer.
        size = len(payload)
        if size < 126:
            head = bytes((first, size))
        elif size < 65536:
            head = _HEAD16.pack(first, 126, size)
        else:
            head = _HEAD64.pack(first, 127, size)
        self.bytes_out += len(head) + size
        if size <= _JOIN_LIMIT:
            self.transport.write(head + payload)
        elif self.settings.writelines_pauses:
            self.transport.writelines((head, payload))
        else:  # asyncio's writelines() on 3.12 never pauses the protocol (http1_response.py)
            self.transport.write(head)
            self.transport.write(payload)

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        self._framing.send_close(code, reason)
        self._write_out()
        self._arm(CLOSE_TIMEOUT)
        # The client's answer must be read even if the app stopped receiving: read again, and
        # let the framing see what was held back (the answer may be in there already).
        self._app_paused = False
        if self._held:
            held, self._held = self._held, b""
            self._to_framing(held)
        self._sync_reading()

    def pause_reading(self) -> None:
        if not self._app_paused:
            self._app_paused = True
            self._sync_reading()

    def resume_reading(self) -> None:
        if self._app_paused:
            self._app_paused = False
            if self._held and not self._closing:
                # Complete frames read before the pause come first; from the loop, not from
                # inside the app's receive().
                self.loop.call_soon(self._take_held)
            else:
                self._sync_reading()

    def _take_held(self) -> None:
        if self._lost or self._app_paused or self._closing or not self._held:
            self._sync_reading()
            return
        held, self._held = self._held, b""
        self._split(held)
        self._write_out()
        self._sync_reading()

    def _sync_reading(self) -> None:
        """Read from the transport unless the app is behind or the client is not reading."""
        paused = (self._app_paused or self.write_paused) and not self._closing
        if paused != self._read_paused and not self._lost:
            self._read_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def abort(self) -> None:
        self._closing = True
        self.transport.abort()

    def check_rates(self, seconds: float) -> None:
        """The heartbeat's check of --min-response-data-rate (protocols/data_rate.py): a
        client that takes our frames too slowly is dropped. (Its frames in have no minimum: a
        quiet WebSocket is normal, and --ping-interval finds the dead ones.)"""
        rates = self.settings.rates
        if self._lost or not rates.response:
            return
        self._out_meter, slow = output_meter(
            self._out_meter, self.transport, self.bytes_out, seconds, rates
        )
        if slow:
            error_logger.info(
                "WebSocket client %s reads below --min-response-data-rate: dropped",
                describe_client(self.cycle.scope.get("client")),
            )
            self._closing = True
            reset_connection(self.transport)

    def _write_out(self) -> None:
        out = self._framing.data_to_send()
        if not out:
            return
        eof = not out[-1]  # the framing's end-of-stream marker: close the TCP connection
        if eof:
            out.pop()
        if out and not self._lost:
            data = out[0] if len(out) == 1 else b"".join(out)
            self.bytes_out += len(data)
            self.transport.write(data)
        if eof:
            self._closing = True
            self.transport.close()
            self._arm(CLOSE_TIMEOUT)  # a client that never drains our last bytes is dropped

    # -- server side: keep-alive pings, shutdown -----------------------------------------------

    def _arm_keepalive(self) -> None:
        interval = self.settings.ws_ping_interval
        if interval:
            self._arm(interval)

    def _arm(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(seconds, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._lost:
            return
        if self._closing:
            self.transport.abort()  # the closing handshake or our last write did not finish
            return
        if self._read_paused:
            # Not reading, because the app is behind (so the client was sending: it is alive)
            # or because the client is not reading what we send (TCP will tell if it is gone):
            # a pong could not be read anyway. Check again one interval later.
            self._ping = None
            self._arm_keepalive()
            return
        if self._ping is not None:
            self._fail(INTERNAL_ERROR, "keepalive ping timeout")
            self._write_out()
            return
        if self._rx:
            self._rx = False  # traffic since the last check: look again one interval later
            self._arm_keepalive()
            return
        ping = os.urandom(4)
        self._framing.send_ping(ping)
        self._write_out()
        if self.settings.ws_ping_timeout:
            self._ping = ping
            self._arm(self.settings.ws_ping_timeout)
        else:
            self._arm_keepalive()  # --ping-timeout 0: pings without a deadline

    def shutdown(self) -> None:
        """Graceful shutdown: close with 1001 (going away)."""
        self.cycle.shutdown()

    def cancel_apps(self) -> None:
        """Cancel the app task if it is still running (end of a drain)."""
        task = self.cycle.task
        if task is not None and not task.done():
            task.cancel()


class WebSocketTLSConnection(WebSocketConnection, TLSReads):
    """WebSocketConnection on a TLS transport (reads through protocols/tls_reads.py)."""

    __slots__ = ()
