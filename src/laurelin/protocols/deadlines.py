# laurelin.protocols.deadlines — one loop timer for the deadlines of every HTTP/1.1 connection.
#
# Each HTTP/1.1 connection has one deadline at a time (the header-read timeout, then the
# keep-alive timeout, then the next header read). A loop timer per connection (call_at, and a
# cancel when the connection ends first, which under churn it almost always does) was the
# largest single cost of a new connection with uvloop: in interleaved runs of close churn,
# 12,700-13,100 connections/s with it, 13,900-15,800 with this wheel (and 15,100-15,300 with no
# header-read deadline at all, which is not an option).
#
# A deadline goes into the bucket of its 1/16 s slot (the slot that ends after it); the timer is
# armed for the earliest slot that has a bucket. When it fires, every connection of the due
# slots is called back (`on_deadline`); a slot counts as due up to 2 ms before it ends, as a
# loop timer may fire a little early, so the connection compares its own deadline with the
# clock: a deadline is met at most about one slot (62.5 ms) late, and never early. Adding and
# removing a connection are a dict lookup and a set operation; a bucket left empty is dropped.
# The heap of slot numbers holds each slot once; a slot whose bucket was dropped stays on it
# until it comes up, bounded by the slots within the longest timeout (16 per second of it),
# and the timer skips such slots instead of firing for them.
from __future__ import annotations

import asyncio
import heapq
from typing import Protocol

from laurelin.logs import error_logger

# Slots per second: a deadline is met at most 1/SLOTS_PER_SECOND late (plus loop latency).
SLOTS_PER_SECOND = 16
# How early (seconds) a slot may be taken as due: a loop timer can fire a little before its time.
_EARLY = 0.002
# Deadlines further ahead than this (seconds of loop time; an infinite timeout) share one slot.
_FAR = 1e9


class Timed(Protocol):
    """A connection with a deadline in the wheel."""

    def on_deadline(self) -> None:
        """The slot of the deadline the connection was added with has come (or is within
        _EARLY of ending); it is no longer in the wheel. It checks its own deadline against
        the clock (the deadline may also have moved) and adds itself again if that is still
        ahead."""


def slot_of(when: float) -> int:
    """The slot a deadline at loop time `when` is met in: the first one that ends after it."""
    return int(min(when, _FAR) * SLOTS_PER_SECOND) + 1


class DeadlineWheel:
    """The pending deadlines of one server's connections, by slot; one timer for the earliest."""

    __slots__ = ("_buckets", "_closed", "_loop", "_queued", "_slots", "_timer", "_timer_slot")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, set[Timed]] = {}
        self._slots: list[int] = []  # a heap of slot numbers, each once (see _queued)
        self._queued: set[int] = set()  # the numbers on the heap
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0
        self._closed = False

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def add(self, conn: Timed, slot: int) -> None:
        """Call `conn.on_deadline()` once `slot` (see `slot_of`) has come. Nothing once the
        wheel is closed."""
        bucket = self._buckets.get(slot)
        if bucket is None:
            if self._closed:
                return
            bucket = self._buckets[slot] = set()
            if slot not in self._queued:
                self._queued.add(slot)
                heapq.heappush(self._slots, slot)
            if self._timer is None or slot < self._timer_slot:
                self._arm(slot)
        bucket.add(conn)

    def discard(self, conn: Timed, slot: int) -> None:
        """Forget `conn`'s deadline in `slot` (nothing if it is not there)."""
        bucket = self._buckets.get(slot)
        if bucket is not None:
            bucket.discard(conn)
            if not bucket:
                del self._buckets[slot]

    def close(self) -> None:
        """Stop the timer and forget every deadline (the server is done): for good, later
        adds are ignored."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buckets.clear()
        self._slots.clear()
        self._queued.clear()

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = slot
        self._timer = self._loop.call_at(slot / SLOTS_PER_SECOND, self._fire)

    def _fire(self) -> None:
        self._timer = None
        due_until = (self._loop.time() + _EARLY) * SLOTS_PER_SECOND
        slots = self._slots
        buckets = self._buckets
        due: list[set[Timed]] = []
        # All the due buckets are taken out first: a connection called back may add itself to
        # a new bucket for the same slot, which waits for the next firing.
        while slots and slots[0] <= due_until:
            slot = heapq.heappop(slots)
            self._queued.discard(slot)
            bucket = buckets.pop(slot, None)
            if bucket is not None:
                due.append(bucket)
        self._arm_next()
        for bucket in due:
            for conn in bucket:
                try:
                    conn.on_deadline()
                except Exception:  # one broken connection must not keep the others' deadlines
                    error_logger.exception("Error in a connection's timeout")

    def _arm_next(self) -> None:
        """Arm the timer for the earliest slot that still has a bucket; drop the ones before
        it whose buckets were emptied."""
        slots = self._slots
        while slots and slots[0] not in self._buckets:
            self._queued.discard(heapq.heappop(slots))
        if slots:
            self._arm(slots[0])
