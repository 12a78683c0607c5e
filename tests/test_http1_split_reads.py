# Incomplete-read tests for the HTTP/1.1 adapter, h11's `tr()` habit: every request is fed
# whole, one byte per read, and followed by trailing garbage, and must give the same answers.
#
# A real peer cannot make the kernel deliver one byte per read, so this drives
# protocols.http1.HTTP1Connection directly through a recording transport (the only mock here).
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from laurelin.config import Config
from laurelin.protocols.http1 import HTTP1Connection
from laurelin.server import build_context, build_settings


class RecordingTransport(asyncio.Transport):
    """Collects what the connection writes; remembers whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.data += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with method, path, query and the whole request body."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = b"%s %s ?%s [%s]" % (
        scope["method"].encode(),
        scope["raw_path"],
        scope["query_string"],
        body,
    )
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": text})


def run_feed(chunks: list[bytes]) -> tuple[bytes, bool]:
    """Feed `chunks` as separate reads to a fresh connection; return what it wrote."""

    async def main() -> tuple[bytes, bool]:
        loop = asyncio.get_running_loop()
        config = Config(app="x", date_header=False)
        settings = build_settings(config, build_context(config, echo_app, loop))
        conn = HTTP1Connection(settings)
        transport = RecordingTransport()
        conn.connection_made(transport)
        for chunk in chunks:
            if transport.closed:
                break
            while transport.paused and not transport.closed:
                await asyncio.sleep(0)
            conn.data_received(chunk)
            for _ in range(5):
                await asyncio.sleep(0)
        for _ in range(20):
            await asyncio.sleep(0)
        conn.connection_lost(None)
        return bytes(transport.data), transport.closed

    return asyncio.run(main())


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


SPLITS: list[Callable[[bytes], list[bytes]]] = [whole, bytewise]

REQUESTS = {
    "get": (b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", b"GET /a ?x=1 []"),
    "content-length": (
        b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST /p ? [hello world]",
    ),
    "chunked": (
        b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer-A: x\r\n\r\n",
        b"POST /c ? [hello world]",
    ),
}


@pytest.mark.parametrize("split", SPLITS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_same_answer_however_the_request_is_split(name: str, split: Any) -> None:
    request, expected = REQUESTS[name]
    out, closed = run_feed(split(request))
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert out.endswith(b"\r\n\r\n" + expected)
    assert b"content-length: %d\r\n" % len(expected) in out
    assert not closed


@pytest.mark.parametrize("split", SPLITS, ids=lambda f: f.__name__)
def test_pipelined_requests_answered_in_order(split: Any) -> None:
    data = b"".join(REQUESTS[name][0] for name in ("get", "content-length", "chunked"))
    out, _ = run_feed(split(data))
    bodies = [REQUESTS[name][1] for name in ("get", "content-length", "chunked")]
    positions = [out.find(body) for body in bodies]
    assert -1 not in positions, out
    assert positions == sorted(positions)
    assert out.count(b"HTTP/1.1 200 OK") == 3


@pytest.mark.parametrize("split", SPLITS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_trailing_garbage_is_a_400_after_the_good_response(name: str, split: Any) -> None:
    request, expected = REQUESTS[name]
    out, closed = run_feed(split(request + b"\x00garbage\r\n\r\n"))
    first = out.find(expected)
    second = out.find(b"HTTP/1.1 400 Bad Request")
    assert first != -1 and second != -1, out
    assert first < second
    assert b"connection: close" in out[second:]
    assert closed
