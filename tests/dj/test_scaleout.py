# Scale-out on Redis, as in production (docs/deployment.md): a real redis-server started on a free
# port (no persistence, its files in tmp_path), two laurelin processes serving examples/chat with
# REDIS_URL pointing at it, so they share the channels_redis layer. A message sent through a
# client of one process reaches the clients of the same room on the other. Then one process gets
# SIGTERM: its WebSocket clients are closed with 1001, its consumers' disconnect() runs (their
# channels leave the room's group in Redis: channels_redis keeps a group as the sorted set
# "asgi:group:<name>" of channel names "specific.<process prefix>!<id>"), it exits 0, and the
# other process's clients keep chatting through the same Redis.
from __future__ import annotations

import json
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from channels_redis.core import RedisChannelLayer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from cli_process import Launched
from conftest import free_port
from test_chat import chat_server, heard, heard_leave, join, say

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# channels_redis waits for a consumer's next message with BZPOPMIN, this many seconds at a time.
LAYER_BLOCKING_READ = float(RedisChannelLayer.brpop_timeout)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port, stopped after the test."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed (Debian package redis-server; .ci/run adds it)")
    port = free_port()
    workdir = tmp_path / "redis"
    workdir.mkdir()
    argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port)]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
    server = Launched(argv, cwd=workdir)
    try:
        server.wait_for(r"Ready to accept connections", timeout=15)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.stop()


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(params=["uvloop", "asyncio"])
def loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def pair(tmp_path: Path, redis_url: str, loop: str) -> Iterator[tuple[Launched, Launched]]:
    """Two laurelin processes serving the chat, sharing the Redis channel layer."""
    started: list[Launched] = []
    try:
        for name in ("a", "b"):
            workdir = tmp_path / name
            workdir.mkdir()
            started.append(chat_server(workdir, "--loop", loop, redis_url=redis_url))
        yield started[0], started[1]
    finally:
        for proc in started:
            proc.stop()


def members(db: redis.Redis, room: str) -> set[str]:
    """The channel names in the room's group, as channels_redis keeps them."""
    return {m.decode() for m in db.zrange(f"asgi:group:chat_{room}", 0, -1)}


def process_prefix(channels: set[str]) -> str:
    """The one process prefix ("specific.<hex>") the given channel names share."""
    prefixes = {name.partition("!")[0] for name in channels}
    assert len(prefixes) == 1, channels
    return prefixes.pop()


def everyone_hears(server: Launched, clients: list[ClientConnection], message: str) -> None:
    """Each of `server`'s `clients` receives `message` (on failure, with the server's output)."""
    for ws in clients:
        try:
            got = heard(ws)
        except (ConnectionClosed, TimeoutError) as exc:
            raise AssertionError(f"{exc!r}; the server's output:\n{server.output}") from exc
        assert got == message, server.output


def close_code(ws: ClientConnection) -> int | None:
    """The code of the server's close frame (None: the connection ended without one, 1006)."""
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(15)
    received = closed.value.rcvd
    return None if received is None else received.code


def new_room() -> str:
    return f"room-{uuid.uuid4().hex[:12]}"


def test_an_idle_client_outlives_the_layers_blocking_read(tmp_path: Path, redis_url: str) -> None:
    """redis-py 8 reads with a 5 s socket timeout by default, as long as channels_redis's
    BZPOPMIN blocks: unless the layer's hosts set socket_timeout (None, or longer), every
    consumer idle for 5 s dies with redis TimeoutError and its client gets 1011
    (django/channels_redis#422). The example's settings must set it."""
    server = chat_server(tmp_path, redis_url=redis_url)
    try:
        with join(server, new_room()) as ws:
            try:
                ws.recv(LAYER_BLOCKING_READ + 2)
            except TimeoutError:
                pass  # nothing arrived and the socket stayed open: as it should
            except ConnectionClosed as exc:
                raise AssertionError(
                    f"an idle chat client was closed ({exc}); the server's output:\n"
                    + server.output
                ) from exc
            say(ws, "still here")
            assert heard(ws) == "still here"
    finally:
        server.stop()


def test_a_message_reaches_the_room_on_both_processes(
    pair: tuple[Launched, Launched], db: redis.Redis
) -> None:
    a, b = pair
    room, other_room = new_room(), new_room()
    with join(a, room) as on_a, join(b, room) as on_b, join(b, other_room) as elsewhere:
        assert len(members(db, room)) == 2
        say(on_a, "from a")
        everyone_hears(a, [on_a], "from a")
        everyone_hears(b, [on_b], "from a")
        say(on_b, "from b")
        everyone_hears(a, [on_a], "from b")
        everyone_hears(b, [on_b], "from b")
        # Not in the room: the first thing it hears is its own message.
        say(elsewhere, "other room")
        assert heard(elsewhere) == "other room"


def test_sigterm_closes_with_1001_and_leaves_the_groups_while_the_other_serves(
    pair: tuple[Launched, Launched], db: redis.Redis
) -> None:
    a, b = pair
    room, a_only_room = new_room(), new_room()
    with (
        join(a, room) as a1,
        join(a, room) as a2,
        join(a, a_only_room) as a3,
    ):
        # connect() adds the channel to the group before accepting: no wait needed.
        a_prefix = process_prefix(members(db, room) | members(db, a_only_room))
        with join(b, room) as b1, join(b, room) as b2:
            b_channels = {n for n in members(db, room) if not n.startswith(a_prefix + "!")}
            assert len(b_channels) == 2
            assert process_prefix(b_channels) != a_prefix
            assert len(members(db, room)) == 4

            say(a1, "before the restart")
            everyone_hears(a, [a1, a2], "before the restart")
            everyone_hears(b, [b1, b2], "before the restart")

            a.signal(signal.SIGTERM)
            codes = [close_code(ws) for ws in (a1, a2, a3)]
            status = a.wait_exit(30)
            # Each of a's consumers in the shared room said goodbye from its disconnect(), and
            # b's clients were told, across the processes.
            for ws in (b1, b2):
                heard_leave(ws)
                heard_leave(ws)

            # b's clients are unaffected and keep chatting through the same Redis; b serves on.
            say(b2, "after the restart")
            everyone_hears(b, [b1, b2], "after the restart")
            page = httpx.get(f"{b.url}/chat/{room}/")
            assert page.status_code == 200
            assert json.dumps(room) in page.text
            assert b.proc.poll() is None

            # What a's graceful exit must have done, all reported together.
            problems = []
            if codes != [1001, 1001, 1001]:
                problems.append(f"a's clients saw close codes {codes}, not 1001 each")
            if status != 0:
                problems.append(f"a exited with status {status}, not 0")
            # disconnect() ran for each of a's consumers: their channels left the groups...
            if members(db, room) != b_channels:
                stale = sorted(members(db, room) - b_channels)
                problems.append(f"a's channels still in the room's group in Redis: {stale}")
            if db.exists(f"asgi:group:chat_{a_only_room}"):
                problems.append("the group of the room only a served is still in Redis")
            # ...so b's message was not queued for a's (gone) channels.
            queued = [k.decode() for k in db.keys("asgi:*") if a_prefix.encode() in k]
            if queued:
                problems.append(f"messages queued in Redis for a's gone channels: {queued}")
            for sign in ("Traceback", "Task was destroyed but it is pending"):
                if sign in a.output:
                    problems.append(f"a's output has {sign!r}: its consumers outlived its loop")
            assert not problems, "\n".join(problems) + "\n--- a's output:\n" + a.output
