# laurelin.protocols.data_rate — minimum data rates: the defence against clients that trickle.
#
# A timeout between reads cannot stop a client that sends a request body one byte a second
# (R.U.D.Y.), or reads a response that slowly: each byte resets the timer, and a few hundred
# such clients hold every connection slot. So, as Kestrel does, a request body must arrive at
# --min-request-body-rate bytes/s and a client must take the server's output at
# --min-response-data-rate bytes/s, each averaged over the time the server has actually been
# waiting on that client (not while the app is slow to read, nor while nothing is queued for
# the client), and enforced only once that time passes --data-rate-grace seconds.
#
# Nothing here runs per request: the connections keep the byte counts they keep anyway, and one
# heartbeat per server (`Heartbeat`, once a second) has each connection compare them with the
# time waited (`RateMeter`). A connection that falls behind is answered 408 (request body) or
# dropped (output) by its own protocol.
from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from laurelin.logs import error_logger

# Seconds between two checks of every connection.
HEARTBEAT_SECONDS = 1.0
_INT = struct.Struct("i")
_INT_ZERO = _INT.pack(0)
_SIOCOUTQNSD = 0x894B  # Linux: a TCP socket's bytes not yet sent (SIOCOUTQ less those in flight)
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)
# SO_LINGER on with a zero timeout: close() sends RST and discards the send queue.
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass(frozen=True, slots=True)
class DataRates:
    """The configured minimum rates (bytes per second; 0: not enforced) and grace period."""

    request_body: float = 240.0
    response: float = 240.0
    grace: float = 5.0

    @property
    def active(self) -> bool:
        """Whether any rate is enforced."""
        return self.request_body > 0 or self.response > 0


class RateMeter:
    """One span of waiting on a client in one direction: the seconds waited so far, and the
    client's byte count when the span began. `key` names what the span is about (a request),
    so that a new request starts a new span."""

    __slots__ = ("base", "key", "waited")

    def __init__(self, key: object, count: int) -> None:
        self.key = key
        self.base = count
        self.waited = 0.0

    def too_slow(self, count: int, seconds: float, rate: float, grace: float) -> bool:
        """Add `seconds` of waiting; whether the client, now at `count` bytes, has averaged
        less than `rate` bytes/s over a wait longer than `grace`."""
        self.waited += seconds
        waited = self.waited
        return waited >= grace and count - self.base < rate * waited


def output_meter(
    meter: RateMeter | None,
    transport: asyncio.WriteTransport,
    written: int,
    seconds: float,
    rates: DataRates,
) -> tuple[RateMeter | None, bool]:
    """The output side of a connection's check. The server waits on the client while output
    it has written is not yet sent: held in the transport, or unsent in the kernel (a client
    that reads nothing shuts its TCP window, and a send buffer of megabytes would otherwise
    hide it for minutes). Bytes merely in flight are not waiting. Progress is what the client
    has acknowledged: `written` (what the connection has handed the transport) less what the
    transport and the kernel still hold. Returns the meter to keep and whether the client is
    too slow."""
    buffered = transport.get_write_buffer_size()
    if not buffered and meter is None:
        return None, False
    unsent, queued = _kernel_queues(transport)
    if not buffered and not unsent:
        return None, False  # caught up: the next backlog starts a new span
    sent = written - buffered - queued
    if meter is None:
        return RateMeter(None, sent), False
    return meter, meter.too_slow(sent, seconds, rates.response, rates.grace)


def _kernel_queues(transport: asyncio.BaseTransport) -> tuple[int, int]:
    """The TCP socket's unsent bytes (SIOCOUTQNSD) and its unsent plus unacknowledged bytes
    (SIOCOUTQ); (0, 0) where the transport has no TCP socket of its own (a Unix socket's
    queue is counted in buffer memory, not bytes) or the platform cannot tell."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in _TCP_FAMILIES:
        return 0, 0
    try:
        fileno = sock.fileno()
        unsent = _INT.unpack(fcntl.ioctl(fileno, _SIOCOUTQNSD, _INT_ZERO))[0]
        queued = _INT.unpack(fcntl.ioctl(fileno, termios.TIOCOUTQ, _INT_ZERO))[0]
    except (OSError, ValueError):
        return 0, 0
    return int(unsent), int(queued)


def reset_connection(transport: asyncio.WriteTransport) -> None:
    """Close with a TCP reset (SO_LINGER 0): the kernel discards what it still holds for the
    client, and a truncated response never reads as complete. How a client too slow for the
    minimum rates is dropped, and how HTTP/1.1 aborts a response."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()


class RateChecked(Protocol):
    """What the heartbeat asks of a connection."""

    def check_rates(self, seconds: float) -> None:
        """Account `seconds` of waiting; act on a client below a minimum rate."""


class Heartbeat:
    """Once a second, every live connection of one server checks its client's data rates."""

    __slots__ = ("_connections", "_handle", "_last", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: Iterable[RateChecked]) -> None:
        self._loop = loop
        self._connections = connections
        self._last = loop.time()
        self._handle: asyncio.TimerHandle | None = loop.call_later(HEARTBEAT_SECONDS, self._beat)

    def _beat(self) -> None:
        now = self._loop.time()
        # Loop time, not wall time; a loop that was itself stalled does not charge the clients
        # for more than one period.
        seconds = min(now - self._last, HEARTBEAT_SECONDS)
        self._last = now
        for conn in self._connections:
            try:
                conn.check_rates(seconds)
            except Exception:
                error_logger.exception("Error checking a connection's data rate")
        self._handle = self._loop.call_later(HEARTBEAT_SECONDS, self._beat)

    def stop(self) -> None:
        """No more checks."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
