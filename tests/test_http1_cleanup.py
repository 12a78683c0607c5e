# A finished HTTP/1.1 connection is freed as soon as it is gone, by reference counting alone:
# it leaves nothing for the cyclic GC, whichever way it ended (the server closing after
# `Connection: close`, the client closing an idle keep-alive connection, a reset in the middle
# of a request head, a client gone while its app still runs, or with requests still queued).
# Under connection churn the cyclic GC otherwise runs often and costs a few percent of the CPU.
# tests/apps/h1_app.py's /garbage stops the GC, then reports what one collection finds.
from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from conftest import ServerProcess
from rawhttp import RawClient, build, events, exchange, serve

# What a leaked connection would leave: the protocol object, its parser, and (uvloop) its
# transport, all in one reference cycle.
CONNECTION_TYPES = ("HTTP1Connection", "HttpRequestParser", "TCPTransport")


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve("h1_app:app", "--loop", request.param) as proc:
        yield proc


def unreachable(server: ServerProcess) -> dict[str, int]:
    response = exchange(server.port, build("GET", "/garbage?op=count"))
    found: dict[str, int] = response.json()
    return found


def start_counting(server: ServerProcess) -> None:
    assert exchange(server.port, build("GET", "/garbage?op=start")).body == b"started"


def test_connections_leave_no_cyclic_garbage(server: ServerProcess) -> None:
    start_counting(server)
    for _ in range(10):
        # The server closes: the client asked for it.
        response = exchange(server.port, build("GET", "/", [("Connection", "close")]))
        assert response.body == b"Hello, world!"
        # The client closes an idle keep-alive connection, after two requests.
        with RawClient(server.port) as client:
            for _ in range(2):
                assert client.request(build("GET", "/")).body == b"Hello, world!"
        # The client resets in the middle of a request head.
        client = RawClient(server.port)
        client.send(b"GET / HTTP/1.1\r\nHost: local")
        client.close(reset=True)
    # The client goes away while its app still runs: the app finishes after the connection is
    # lost (the unlinking then waits for the app).
    tags = [uuid.uuid4().hex for _ in range(5)]
    for tag in tags:
        with RawClient(server.port) as client:
            client.send(build("POST", f"/wait-disconnect?tag={tag}", body=b"x"))
            assert events(server, tag, "waiting") == ["waiting"]
    for tag in tags:
        assert "received:http.disconnect" in events(server, tag, "received")
    # The client goes away with pipelined requests still queued behind a running one: those
    # never start.
    for _ in range(5):
        with RawClient(server.port) as client:
            client.send(build("GET", "/sleep?s=0.2") + build("GET", "/") + build("GET", "/"))
    time.sleep(0.6)  # the sleeping apps finish; the last connection_lost callbacks
    found = unreachable(server)
    leaked = {name: found[name] for name in CONNECTION_TYPES if name in found}
    assert leaked == {}, found


def test_the_check_sees_a_leak(server: ServerProcess) -> None:
    """The counting itself works: a cycle the app makes is found."""
    start_counting(server)
    exchange(server.port, build("GET", "/garbage?op=leak"))
    assert unreachable(server).get("Leak") == 1
