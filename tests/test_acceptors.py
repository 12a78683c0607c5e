# Several acceptors per listening socket (server.py, ACCEPTORS): uvloop accepts one connection
# per listener per loop iteration, so each listening socket is served by ACCEPTORS loop servers
# on duplicates of it, and connections queued while the loop was busy are taken several per
# iteration. Seen from outside: the process holds the socket that many times (once with
# asyncio, which takes the whole queue per readiness event itself); connections queued behind
# a blocked loop start their requests in a few loop iterations, not one iteration each (the
# app counts iterations); every queued connection is answered; and a server stopped in-process
# closes every duplicate, its port free again.
from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop

import laurelin
from conftest import ServerProcess, free_port
from laurelin.config import Config
from laurelin.server import ACCEPTORS
from rawhttp import RawClient, build, exchange, serve

QUEUED = 3 * ACCEPTORS


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[ServerProcess, str]]:
    with serve("h1_app:app", "--loop", request.param) as proc:
        yield proc, request.param


def listening_inode(port: int) -> str:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
            return fields[9]
    raise AssertionError(f"nothing listens on {port}")


def handles_on(pid: int, inode: str) -> int:
    found = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                found += 1
        except FileNotFoundError:
            pass
    return found


def test_one_listening_socket_many_acceptors(served: tuple[ServerProcess, str]) -> None:
    server, loop = served
    expected = ACCEPTORS if loop == "uvloop" else 1
    assert handles_on(server.pid, listening_inode(server.port)) == expected


def test_queued_connections_are_taken_several_per_iteration(
    served: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    server, _ = served
    mark = tmp_path / "held"
    assert exchange(server.port, build("GET", "/ticks?op=start")).body == b"ok"
    try:
        with RawClient(server.port) as blocker:
            blocker.send(build("GET", f"/block?s=0.5&mark={mark}"))
            deadline = time.monotonic() + 5
            while not mark.exists():  # the loop is held from now on
                assert time.monotonic() < deadline, "the app never blocked"
                time.sleep(0.01)
            clients = [RawClient(server.port) for _ in range(QUEUED)]
            for client in clients:
                client.send(build("GET", "/tick", [("Connection", "close")]))
            assert blocker.read_response().body == b"unblocked"
        ticks = []
        for client in clients:
            response = client.read_response()
            assert response.status == 200
            ticks.append(int(response.body))
            assert client.wait_closed() == b""
            client.close()
    finally:
        exchange(server.port, build("GET", "/ticks?op=stop"))
    # One acceptor would start them in QUEUED different iterations; ACCEPTORS of them take the
    # queue in QUEUED / ACCEPTORS (asyncio: in one), give or take the iteration the first read
    # lands in.
    assert len(set(ticks)) <= QUEUED // ACCEPTORS + 1, ticks


def test_in_process_server_closes_every_acceptor() -> None:
    """laurelin.serve() in the caller's uvloop loop: while serving, the process holds the
    listening socket ACCEPTORS times; once stopped, not at all, and the port is free."""
    port = free_port()
    held: list[int] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> None:
        started = asyncio.Event()
        stop = asyncio.Event()
        task = asyncio.create_task(
            laurelin.serve(
                app,
                Config(port=port, lifespan="off"),
                shutdown_trigger=stop.wait,
                on_started=lambda _: started.set(),
            )
        )
        async with asyncio.timeout(20):
            await started.wait()
            inode = listening_inode(port)
            held.append(handles_on(os.getpid(), inode))
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"http://127.0.0.1:{port}/")).text == "ok"
            stop.set()
            await task
            held.append(handles_on(os.getpid(), inode))

    uvloop.run(scenario())
    assert held == [ACCEPTORS, 0]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free again
