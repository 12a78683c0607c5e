# The deadline wheel (protocols/deadlines.py): the header-read and keep-alive deadlines of every
# HTTP/1.1 connection share one loop timer. End to end, many connections waiting for their
# request heads hold one timer between them, not one each; on the wheel itself (a real loop,
# real time), a deadline is met in its slot, never early and at most one slot late, an earlier
# deadline takes over the timer, a callback that fails does not cost the others theirs, and a
# connection that re-adds itself while it is being called back waits for the next firing.
from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from conftest import ServerProcess
from laurelin.protocols.deadlines import SLOTS_PER_SECOND, DeadlineWheel, slot_of
from rawhttp import RawClient, build, exchange, serve

SLOT = 1 / SLOTS_PER_SECOND


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    # asyncio's loop shows its pending timers (uvloop's does not); the wheel is the same code.
    with serve("h1_app:app", "--loop", "asyncio", "--header-read-timeout", "2") as proc:
        yield proc


def pending_timers(server: ServerProcess) -> int:
    return int(exchange(server.port, build("GET", "/timers")).body)


def test_waiting_connections_share_one_timer(server: ServerProcess) -> None:
    baseline = pending_timers(server)
    clients = [RawClient(server.port) for _ in range(40)]
    try:
        for index, client in enumerate(clients):
            if index % 2:
                client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half a head; the rest silent
        time.sleep(0.2)  # every connection accepted, and its deadline set
        assert pending_timers(server) <= baseline + 1
        # The deadlines still hold, within a slot: each gets its 408 (a silent one may get
        # just the close) and is closed.
        for client in clients:
            got = client.wait_closed(timeout=5)
            assert got == b"" or got.startswith(b"HTTP/1.1 408 "), got
    finally:
        for client in clients:
            client.close()


def test_keep_alive_connections_share_one_timer(server: ServerProcess) -> None:
    baseline = pending_timers(server)
    clients = [RawClient(server.port) for _ in range(40)]
    try:
        for client in clients:
            assert client.request(build("GET", "/")).status == 200
        assert pending_timers(server) <= baseline + 1
    finally:
        for client in clients:
            client.close()


class Recorder:
    """A connection stand-in: records when it was called back."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wheel: DeadlineWheel) -> None:
        self.loop = loop
        self.wheel = wheel
        self.called: list[float] = []
        self.readd_until = 0.0
        self.fail = False

    def on_deadline(self) -> None:
        now = self.loop.time()
        self.called.append(now)
        if now < self.readd_until:
            # A slot already due (it ended before now): waits for the next firing.
            self.wheel.add(self, int(now * SLOTS_PER_SECOND))
        if self.fail:
            raise ValueError("broken connection")


def run(coro_fn: object) -> None:
    asyncio.run(coro_fn())  # type: ignore[operator]


def test_deadline_met_in_its_slot_never_early() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = DeadlineWheel(loop)
        recorders = []
        for delay in (0.05, 0.13, 0.2, 0.31):
            recorder = Recorder(loop, wheel)
            deadline = loop.time() + delay
            wheel.add(recorder, slot_of(deadline))
            recorders.append((deadline, recorder))
        await asyncio.sleep(0.31 + 3 * SLOT)
        for deadline, recorder in recorders:
            assert len(recorder.called) == 1
            assert deadline <= recorder.called[0] <= deadline + SLOT + 0.05
        assert len(wheel) == 0
        wheel.close()

    run(main)


def test_earlier_deadline_rearms_the_timer() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = DeadlineWheel(loop)
        late, early = Recorder(loop, wheel), Recorder(loop, wheel)
        wheel.add(late, slot_of(loop.time() + 30))
        deadline = loop.time() + 0.1
        wheel.add(early, slot_of(deadline))
        await asyncio.sleep(0.1 + 2 * SLOT)
        assert len(early.called) == 1 and early.called[0] >= deadline
        assert late.called == []
        assert len(wheel) == 1
        wheel.close()
        assert len(wheel) == 0

    run(main)


def test_discarded_connection_is_not_called() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = DeadlineWheel(loop)
        kept, gone = Recorder(loop, wheel), Recorder(loop, wheel)
        slot = slot_of(loop.time() + 0.05)
        wheel.add(kept, slot)
        wheel.add(gone, slot)
        wheel.discard(gone, slot)
        wheel.discard(gone, slot + 5)  # not there: nothing happens
        await asyncio.sleep(0.05 + 2 * SLOT)
        assert len(kept.called) == 1
        assert gone.called == []
        wheel.close()

    run(main)


def test_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = DeadlineWheel(loop)
        recorders = [Recorder(loop, wheel) for _ in range(5)]
        recorders[2].fail = True
        slot = slot_of(loop.time() + 0.05)
        for recorder in recorders:
            wheel.add(recorder, slot)
        # and a later slot, which the failure must not leave without its timer
        later = Recorder(loop, wheel)
        wheel.add(later, slot + 2)
        await asyncio.sleep(0.05 + 4 * SLOT)
        assert [len(r.called) for r in recorders] == [1] * 5
        assert len(later.called) == 1
        wheel.close()

    run(main)
    assert "Error in a connection's timeout" in caplog.text


def test_readding_a_due_slot_waits_for_the_next_firing() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        wheel = DeadlineWheel(loop)
        recorder = Recorder(loop, wheel)
        recorder.readd_until = loop.time() + 0.2
        wheel.add(recorder, slot_of(loop.time()))
        await asyncio.sleep(0.2 + 3 * SLOT)  # stuck inside one firing, this would never return
        # Called again, once per firing, until readd_until; then no more.
        assert len(recorder.called) > 1
        assert recorder.called == sorted(recorder.called)
        assert len(wheel) == 0
        wheel.close()

    run(main)
