# laurelin.protocols.deadlines — one loop timer for the deadlines of every HTTP/1.1 connection.
#
# Each HTTP/1.1 connection has one deadline at a time (the header-read timeout, then the
# keep-alive timeout, then the next header read). A loop timer per connection (call_at, and a
# cancel when the connection ends first, which under churn it almost always does) cost more
# than a third of a new connection's CPU time with uvloop: measured, churn went from about
# 12,800 to 16,300 connections/s without it. So the deadlines of one server share one timer.
#
# A deadline goes into the bucket of its 1/16 s slot (the slot that ends after it); the timer is
# armed for the earliest slot, and when it fires every connection of the due slots is called
# back (`on_deadline`), so a deadline is met up to one slot (62.5 ms) late and never early.
# Adding and removing a connection are a dict lookup and a set operation. A slot's bucket stays
# until its time comes even when its connections are all gone, so a slot is created (and put
# on the heap of slot numbers) once, whatever the churn: the heap holds at most one entry per
# slot up to the longest timeout ahead, and the timer fires at most 16 times a second, only
# while some slot is pending.
from __future__ import annotations

import asyncio
import heapq
from typing import Protocol

from laurelin.logs import error_logger

# Slots per second: a deadline is met at most 1/SLOTS_PER_SECOND late.
SLOTS_PER_SECOND = 16
# How early (seconds) a slot may be taken as due: a loop timer can fire a little before its time.
_EARLY = 0.002


class Timed(Protocol):
    """A connection with a deadline in the wheel."""

    def on_deadline(self) -> None:
        """The slot of the deadline the connection was added with has come; it is no longer
        in the wheel. It checks its own deadline (which may have moved since) and adds itself
        again if that is still ahead."""


def slot_of(when: float) -> int:
    """The slot a deadline at loop time `when` is met in: the first one that ends after it."""
    return int(when * SLOTS_PER_SECOND) + 1


class DeadlineWheel:
    """The pending deadlines of one server's connections, by slot; one timer for the earliest."""

    __slots__ = ("_buckets", "_loop", "_slots", "_timer", "_timer_slot")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, set[Timed]] = {}
        self._slots: list[int] = []  # a heap of the keys of _buckets
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def add(self, conn: Timed, slot: int) -> None:
        """Call `conn.on_deadline()` once `slot` (see `slot_of`) has come."""
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = set()
            heapq.heappush(self._slots, slot)
            if self._timer is None or slot < self._timer_slot:
                self._arm(slot)
        bucket.add(conn)

    def discard(self, conn: Timed, slot: int) -> None:
        """Forget `conn`'s deadline in `slot` (nothing if it is not there)."""
        bucket = self._buckets.get(slot)
        if bucket is not None:
            bucket.discard(conn)

    def close(self) -> None:
        """Stop the timer and forget every deadline (the server is gone)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buckets.clear()
        self._slots.clear()

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_slot = slot
        self._timer = self._loop.call_at(slot / SLOTS_PER_SECOND, self._fire)

    def _fire(self) -> None:
        self._timer = None
        due_until = (self._loop.time() + _EARLY) * SLOTS_PER_SECOND
        slots = self._slots
        due: list[set[Timed]] = []
        # All the due buckets are taken out first: a connection called back may add itself to
        # a new bucket for the same slot, which waits for the next firing.
        while slots and slots[0] <= due_until:
            due.append(self._buckets.pop(heapq.heappop(slots)))
        if slots:
            self._arm(slots[0])
        for bucket in due:
            for conn in bucket:
                try:
                    conn.on_deadline()
                except Exception:  # one broken connection must not keep the others' deadlines
                    error_logger.exception("Error in a connection's timeout")
