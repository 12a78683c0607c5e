# laurelin.protocols.http2_limits — the limits one HTTP/2 connection enforces, and the rate
# budgets behind its flood defences.
#
# `H2Limits` is built once per server from Config. `Budget` is a token bucket: a peer may spend
# `count` tokens at once and earns them back at `count` per `window` seconds. Stream resets
# (rapid reset, CVE-2023-44487) and control frames that cost us work without a request
# (PING, SETTINGS, PRIORITY, unknown frame types, empty DATA: the "flood" family of
# CVE-2019-9512/9515/9518) each draw on one; an empty budget is GOAWAY ENHANCE_YOUR_CALM.
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# The peer's budgets refill over this many seconds.
BUDGET_WINDOW = 10.0
# Our receive windows: per stream (what one request body may have in flight before the app takes
# it) and for the whole connection.
STREAM_WINDOW = 65535
CONNECTION_WINDOW = 1 << 20


@dataclass(frozen=True, slots=True)
class H2Limits:
    """What every HTTP/2 connection of one server allows its peer."""

    max_concurrent_streams: int = 100
    max_header_list_size: int = 65536
    max_headers: int = 100
    max_resets: int = 1000  # per BUDGET_WINDOW
    max_control_frames: int = 1000  # per BUDGET_WINDOW
    flow_control_timeout: float = 30.0
    idle_timeout: float = 5.0


class Budget:
    """A token bucket: `spend()` is False once the peer has used up its allowance."""

    __slots__ = ("_capacity", "_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, count: int, window: float, clock: Callable[[], float]) -> None:
        self._capacity = float(count)
        self._rate = count / window
        self._tokens = float(count)
        self._clock = clock
        self._stamp = clock()

    def spend(self) -> bool:
        """Take one token; False when there is none left."""
        now = self._clock()
        tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if tokens < 1.0:
            self._tokens = tokens
            return False
        self._tokens = tokens - 1.0
        return True
