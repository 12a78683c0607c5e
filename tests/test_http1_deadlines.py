# The deadline wheel (protocols/deadlines.py): the header-read and keep-alive deadlines of every
# HTTP/1.1 connection share one loop timer. End to end, many connections waiting for their
# request heads, or idle between requests, hold one timer between them, none of their own. On
# the wheel itself (a real loop, real time): a deadline's slot comes after the deadline and at
# most about one slot later (the wheel may call back up to 2 ms before a slot ends, which is
# why connections compare their own deadline with the clock; asyncio's loop does not fire
# early, so these tests see no early call), an earlier deadline takes over the timer, an
# emptied slot is skipped, a callback that fails does not cost the others theirs, a connection
# that re-adds itself into a slot already due waits for the next firing, and a closed wheel
# takes nothing more.
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from conftest import ServerProcess
from laurelin.protocols.deadlines import SLOTS_PER_SECOND, DeadlineWheel, slot_of
from rawhttp import RawClient, build, exchange, serve

SLOT = 1 / SLOTS_PER_SECOND
# How late a callback may come on a loaded machine, beyond its slot.
SLACK = 0.25


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    # asyncio's loop shows its pending timers (uvloop's does not); the wheel is the same code.
    with serve("h1_app:app", "--loop", "asyncio", "--header-read-timeout", "2") as proc:
        yield proc


def pending_timers(server: ServerProcess) -> dict[str, int]:
    found: dict[str, int] = json.loads(exchange(server.port, build("GET", "/timers")).body)
    return found


def assert_one_shared_timer(server: ServerProcess) -> None:
    timers = pending_timers(server)
    assert timers.get("HTTP1Connection", 0) == 0, timers  # no connection has its own
    assert timers.get("DeadlineWheel", 0) == 1, timers


def test_waiting_connections_share_one_timer(server: ServerProcess) -> None:
    clients = [RawClient(server.port) for _ in range(40)]
    try:
        for index, client in enumerate(clients):
            if index % 2:
                client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # half a head; the rest silent
        time.sleep(0.2)  # every connection accepted, and its deadline set
        assert_one_shared_timer(server)
        # The deadlines still hold: each gets its 408 (a silent one may get just the close)
        # and is closed.
        for client in clients:
            got = client.wait_closed(timeout=5)
            assert got == b"" or got.startswith(b"HTTP/1.1 408 "), got
    finally:
        for client in clients:
            client.close()


def test_keep_alive_connections_share_one_timer(server: ServerProcess) -> None:
    clients = [RawClient(server.port) for _ in range(40)]
    try:
        for client in clients:
            assert client.request(build("GET", "/")).status == 200
        assert_one_shared_timer(server)
    finally:
        for client in clients:
            client.close()


class CountingWheel(DeadlineWheel):
    """The wheel, counting its firings."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.firings = 0

    def _fire(self) -> None:
        self.firings += 1
        super()._fire()


class Recorder:
    """A connection stand-in: records when (and in which firing) it was called back."""

    def __init__(self, loop: asyncio.AbstractEventLoop, wheel: CountingWheel) -> None:
        self.loop = loop
        self.wheel = wheel
        self.called: list[float] = []
        self.firings: list[int] = []
        self.readds = 0  # times to add itself again, into a slot already due
        self.fail = False

    def on_deadline(self) -> None:
        now = self.loop.time()
        self.called.append(now)
        self.firings.append(self.wheel.firings)
        if self.readds:
            self.readds -= 1
            self.wheel.add(self, int(now * SLOTS_PER_SECOND))  # ended before now
        if self.fail:
            raise ValueError("broken connection")


def run(main: Callable[[asyncio.AbstractEventLoop, CountingWheel], Awaitable[None]]) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        wheel = CountingWheel(loop)
        try:
            await main(loop, wheel)
        finally:
            wheel.close()

    asyncio.run(scenario())


def test_deadline_met_in_its_slot_never_early() -> None:
    async def main(loop: asyncio.AbstractEventLoop, wheel: CountingWheel) -> None:
        recorders = []
        for delay in (0.05, 0.13, 0.2, 0.31):
            recorder = Recorder(loop, wheel)
            deadline = loop.time() + delay
            wheel.add(recorder, slot_of(deadline))
            recorders.append((deadline, recorder))
        await asyncio.sleep(0.31 + SLOT + SLACK)
        for deadline, recorder in recorders:
            assert len(recorder.called) == 1
            assert deadline <= recorder.called[0] <= deadline + SLOT + SLACK
        assert len(wheel) == 0

    run(main)


def test_earlier_deadline_rearms_the_timer() -> None:
    async def main(loop: asyncio.AbstractEventLoop, wheel: CountingWheel) -> None:
        late, early = Recorder(loop, wheel), Recorder(loop, wheel)
        wheel.add(late, slot_of(loop.time() + 30))
        deadline = loop.time() + 0.1
        wheel.add(early, slot_of(deadline))
        await asyncio.sleep(0.1 + SLOT + SLACK)
        assert len(early.called) == 1 and early.called[0] >= deadline
        assert late.called == []
        assert len(wheel) == 1

    run(main)


def test_discarded_connection_is_not_called_and_its_empty_slot_is_skipped() -> None:
    async def main(loop: asyncio.AbstractEventLoop, wheel: CountingWheel) -> None:
        kept, gone, alone = (Recorder(loop, wheel) for _ in range(3))
        slot = slot_of(loop.time() + 0.05)
        wheel.add(kept, slot)
        wheel.add(gone, slot)
        wheel.discard(gone, slot)
        wheel.discard(gone, slot + 5)  # not there: nothing happens
        # A slot emptied before its time: nothing fires for it.
        wheel.add(alone, slot + 2)
        wheel.discard(alone, slot + 2)
        await asyncio.sleep(0.05 + 2 * SLOT + SLACK)
        assert len(kept.called) == 1
        assert gone.called == [] and alone.called == []
        assert wheel.firings == 1

    run(main)


def test_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    async def main(loop: asyncio.AbstractEventLoop, wheel: CountingWheel) -> None:
        recorders = [Recorder(loop, wheel) for _ in range(5)]
        recorders[2].fail = True
        slot = slot_of(loop.time() + 0.05)
        for recorder in recorders:
            wheel.add(recorder, slot)
        # and a later slot, which the failure must not leave without its timer
        later = Recorder(loop, wheel)
        wheel.add(later, slot + 2)
        await asyncio.sleep(0.05 + 2 * SLOT + SLACK)
        assert [len(r.called) for r in recorders] == [1] * 5
        assert len(later.called) == 1

    run(main)
    assert "Error in a connection's timeout" in caplog.text


def test_readding_a_due_slot_waits_for_the_next_firing() -> None:
    async def main(loop: asyncio.AbstractEventLoop, wheel: CountingWheel) -> None:
        recorder = Recorder(loop, wheel)
        recorder.readds = 3
        wheel.add(recorder, slot_of(loop.time()))
        await asyncio.sleep(SLOT + SLACK)
        # Called again for each re-add, at most once per firing.
        assert len(recorder.called) == 4
        assert len(set(recorder.firings)) == len(recorder.firings), recorder.firings
        assert len(wheel) == 0

    run(main)


def test_a_closed_wheel_takes_nothing() -> None:
    async def main(loop: asyncio.AbstractEventLoop, wheel: CountingWheel) -> None:
        wheel.close()
        recorder = Recorder(loop, wheel)
        wheel.add(recorder, slot_of(loop.time()))
        assert len(wheel) == 0
        await asyncio.sleep(2 * SLOT)
        assert recorder.called == [] and wheel.firings == 0

    run(main)


def test_an_endless_timeout_is_a_far_slot() -> None:
    async def main(loop: asyncio.AbstractEventLoop, wheel: CountingWheel) -> None:
        recorder = Recorder(loop, wheel)
        wheel.add(recorder, slot_of(loop.time() + float("inf")))  # --timeout-keep-alive inf
        await asyncio.sleep(2 * SLOT)
        assert recorder.called == [] and len(wheel) == 1

    run(main)


def test_endless_timeouts_serve() -> None:
    """--header-read-timeout inf and --timeout-keep-alive inf: no deadline, requests served."""
    with (
        serve("h1_app:app", "--header-read-timeout", "inf", "--timeout-keep-alive", "inf") as proc,
        RawClient(proc.port) as client,
    ):
        for _ in range(2):
            assert client.request(build("GET", "/")).body == b"Hello, world!"


def test_header_read_deadline_shorter_than_keep_alive() -> None:
    """A head begun on an idle keep-alive connection gets the header-read deadline, even when
    that is earlier than the keep-alive one the connection was waiting on."""
    with (
        serve("h1_app:app", "--header-read-timeout", "1", "--timeout-keep-alive", "10") as proc,
        RawClient(proc.port) as client,
    ):
        assert client.request(build("GET", "/")).status == 200
        time.sleep(1.5)  # idle past the first head's slot: only the keep-alive one is left
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and no more
        started = time.monotonic()
        assert client.read_response(timeout=4).status == 408
        assert 0.9 <= time.monotonic() - started < 4
