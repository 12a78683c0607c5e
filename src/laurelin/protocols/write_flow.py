# laurelin.protocols.write_flow — waiting for a transport's write buffer to drain.
#
# The part of write backpressure every wire adapter shares: the transport calls pause_writing /
# resume_writing (the adapter keeps `write_paused`), an app's send() awaits `wait_writable()`,
# and the adapter wakes the waiters when writing resumes or the connection is lost. A mixin with
# no slots of its own: each adapter declares `write_paused`, `_drain_waiters`, `_lost`, `loop`.
from __future__ import annotations

import asyncio


class WriteFlow:
    """`wait_writable()` and its wake-up, for a protocol that tracks `write_paused`."""

    __slots__ = ()

    # Declared by the adapter that mixes this in.
    write_paused: bool
    _drain_waiters: list[asyncio.Future[None]]
    _lost: bool
    loop: asyncio.AbstractEventLoop

    async def wait_writable(self) -> None:
        """Return once the peer has drained enough of what was written (or went away)."""
        if not self.write_paused or self._lost:
            return
        waiter = self.loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_writers(self) -> None:
        waiters = self._drain_waiters[:]
        self._drain_waiters.clear()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
