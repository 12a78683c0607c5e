# Streamed responses leave as the app produces them. The HTTP/1.1 writer gathers the parts of a
# streamed response and writes them once per loop iteration (http1_response._CORK_LIMIT); these
# tests pin down that gathering never holds back a part while the app waits for something.
from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import ServerProcess
from rawhttp import RawClient, build, events, release, serve

FIRST_CHUNK = b"6\r\nfirst;\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve("h1_app:app") as proc:
        yield proc


def test_a_part_arrives_while_the_app_waits(server: ServerProcess) -> None:
    """RFC 9112 7.1: each chunk is sent when the app sends it, not when the response ends."""
    with RawClient(server.port) as client:
        client.send(build("GET", "/trickle?tag=sse1"))
        assert "waiting" in events(server, "sse1", "waiting")
        head = client.read_raw(len(b"HTTP/1.1 200 OK\r\n"))
        assert head == b"HTTP/1.1 200 OK\r\n"
        rest = b""
        while FIRST_CHUNK not in rest:
            rest += client.read_raw(1, timeout=5)
        assert b"transfer-encoding: chunked" in rest
        assert b"second" not in rest
        release(server, "sse1")
        tail = client.read_raw(len(b"7\r\nsecond;\r\n0\r\n\r\n"), timeout=5)
        assert tail == b"7\r\nsecond;\r\n0\r\n\r\n"


def test_many_parts_sent_without_waiting_arrive_whole(server: ServerProcess) -> None:
    """A stream of 2000 small parts (gathered into few writes) arrives complete and in order."""
    with RawClient(server.port) as client:
        response = client.request(build("GET", "/stream?n=2000"))
    assert response.status == 200
    assert response.body == b"".join(b"part%d;" % i for i in range(2000))
