# laurelin.protocols.http2_machine — the h2 library's connection, adapted to a server's needs.
#
# `H2Machine` is h2's H2Connection (the RFC 9113 state machine, framing and flow-control
# windows) with these changes, each kept small because each leans on h2 4.4 internals (hence
# the pin in pyproject.toml):
# - the concurrent-stream limit is left to protocols/http2.py, which refuses the one stream
#   too many (REFUSED_STREAM, RFC 9113 5.1.2) where h2 would end the whole connection;
# - a client's GOAWAY(NO_ERROR) does not stop the answers to its requests in flight (6.8);
# - a request body that does not match its Content-Length resets that stream only (8.1.1;
#   HTTP2Connection checks it), where h2 would end the connection;
# - the client's first frame must be SETTINGS (3.4), and a frame longer than our
#   SETTINGS_MAX_FRAME_SIZE is known as such from its header (4.2), not once all of it has been
#   buffered;
# - HPACK coding remembers blocks it has coded (protocols/http2_hpack.py), a block that cannot
#   be decoded is a COMPRESSION_ERROR (4.3), and hpack's per-field DEBUG calls are silenced;
# - closed streams are remembered 1,024 at a time, not 65,536 (memory per connection);
# - `send_headers_fast` / `send_data_fast` frame a response's HEADERS and DATA with the same
#   stream-state transitions and window accounting as h2's send_headers / send_data, minus the
#   per-call generality (validation flags, priority, padding, frame objects) that made sending
#   half of a small response's cost. Callers keep within the windows and the frame size.
from __future__ import annotations

import struct
from typing import Any

import hpack.hpack as hpack_module
from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import ConnectionTerminated
from h2.exceptions import ProtocolError
from h2.stream import H2Stream, StreamInputs
from hyperframe.frame import Frame, GoAwayFrame, SettingsFrame

from laurelin.protocols.http2_hpack import MemoDecoder, MemoEncoder

CONFIG = H2Configuration(
    client_side=False,
    header_encoding=None,
    # Response headers come validated and lower-cased from the bridge (asgi/http.py); the
    # connection-specific ones are dropped by HTTP2Connection.response_headers().
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    # Request headers are checked by http2_headers.py, in one pass instead of h2's several.
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)

# A frame header (RFC 9113 4.1): 24-bit length and 8-bit type packed as one int, flags, stream.
_FRAME_HEAD = struct.Struct("!IBL")
_DATA, _HEADERS, _CONTINUATION = 0x0, 0x1, 0x9
_END_STREAM, _END_HEADERS = 0x1, 0x4


class _QuietLog:
    """Stands in for hpack's module logger, see quiet_hpack()."""

    @staticmethod
    def debug(*args: object, **kwargs: object) -> None:
        return None


def quiet_hpack() -> None:
    """hpack logs every header it encodes or decodes at DEBUG; the calls alone, with DEBUG
    off, cost about a tenth of a request. Called once at server start."""
    hpack_module.log = _QuietLog()  # type: ignore[assignment]


class _Stream(H2Stream):
    """h2's stream, leaving Content-Length to HTTP2Connection: a request whose body does not
    match it, or whose value is not a number, is malformed, a stream error (RFC 9113 8.1.1);
    h2 would end the whole connection."""

    def _initialize_content_length(self, headers: Any) -> None:
        return None

    def _track_content_length(self, length: int, end_stream: bool) -> None:
        return None


class H2Machine(H2Connection):
    """h2's server connection with the changes listed in the module comment."""

    # h2 remembers how each closed stream closed, to tell a frame still in flight for it from
    # a protocol error; 2**16 of them per connection cost megabytes on a connection that
    # opens many streams. A DATA, WINDOW_UPDATE or RST_STREAM frame for a stream forgotten
    # since gets that stream reset; HEADERS (trailers) for one is a connection error, which
    # takes a client sending them more than 1,024 stream closures late.
    MAX_CLOSED_STREAMS = 1024

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(config=CONFIG)
        self.encoder = MemoEncoder()
        self.decoder = MemoDecoder(max_header_list_size)
        self._sweep_at = 64
        self._settings_seen = False

    def _receive_frame(self, frame: Frame) -> Any:
        if not self._settings_seen:
            if not isinstance(frame, SettingsFrame) or "ACK" in frame.flags:
                raise ProtocolError("the client's first frame is not SETTINGS (RFC 9113 3.4)")
            self._settings_seen = True
        return super()._receive_frame(frame)

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> H2Stream:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = _Stream
        return stream

    def oversized_frame_pending(self) -> bool:
        """Whether the partly received frame is longer than SETTINGS_MAX_FRAME_SIZE allows."""
        pending = self.incoming_buffer._data
        return (
            len(pending) >= 3 and int.from_bytes(pending[:3], "big") > self.max_inbound_frame_size
        )

    @property
    def open_inbound_streams(self) -> int:
        # h2 forgets closed streams as it counts open ones, walking all of them for each new
        # stream; once the table has doubled is often enough. The limit is HTTP2Connection's.
        if len(self.streams) >= self._sweep_at:
            self._open_streams(1)
            self._sweep_at = max(64, 2 * len(self.streams))
        return 0

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Any], list[Any]]:
        """A client's GOAWAY without an error (RFC 9113 6.8) limits only the streams a server
        would open: the client's own requests in flight are still answered. h2 would close the
        connection's state and drop what is queued; instead only the event is passed on."""
        if frame.error_code != ErrorCodes.NO_ERROR:
            return super()._receive_goaway_frame(frame)
        event = ConnectionTerminated()
        event.error_code = ErrorCodes.NO_ERROR
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]

    def send_headers_fast(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        """A final response's HEADERS (and CONTINUATION) frames on an open stream.

        Raises:
            ProtocolError: the connection or the stream can no longer send.
            KeyError: h2 has already forgotten the stream (closed and swept).
        """
        if self.state_machine.state is ConnectionState.CLOSED:
            raise ProtocolError("the connection is closed")
        stream_machine = self.streams[stream_id].state_machine
        # The transition first, as h2 does: a stream that cannot send leaves HPACK untouched.
        stream_machine.process_input(StreamInputs.SEND_HEADERS)
        block = self.encoder.encode(headers)
        flags = 0
        if end_stream:
            stream_machine.process_input(StreamInputs.SEND_END_STREAM)
            flags = _END_STREAM
        size = self.max_outbound_frame_size
        out = self._data_to_send
        if len(block) <= size:
            out += _FRAME_HEAD.pack(len(block) << 8 | _HEADERS, flags | _END_HEADERS, stream_id)
            out += block
            return
        kind = _HEADERS
        for start in range(0, len(block), size):
            piece = block[start : start + size]
            last = start + size >= len(block)
            out += _FRAME_HEAD.pack(
                len(piece) << 8 | kind, flags | (_END_HEADERS if last else 0), stream_id
            )
            out += piece
            kind, flags = _CONTINUATION, 0

    def send_data_fast(self, stream_id: int, data: bytes | memoryview, end_stream: bool) -> None:
        """One DATA frame, within the windows and the frame size (the caller's to check).

        Raises:
            ProtocolError: the connection or the stream can no longer send.
            KeyError: h2 has already forgotten the stream (closed and swept).
        """
        if self.state_machine.state is ConnectionState.CLOSED:
            raise ProtocolError("the connection is closed")
        stream = self.streams[stream_id]
        stream_machine = stream.state_machine
        stream_machine.process_input(StreamInputs.SEND_DATA)
        if end_stream:
            stream_machine.process_input(StreamInputs.SEND_END_STREAM)
        size = len(data)
        stream.outbound_flow_control_window -= size
        self.outbound_flow_control_window -= size
        out = self._data_to_send
        out += _FRAME_HEAD.pack(size << 8 | _DATA, _END_STREAM if end_stream else 0, stream_id)
        out += data
