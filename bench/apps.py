# bench/apps.py — the plain ASGI 3 application every server runs in the benchmark.
#
# One app, one route per workload; no framework, no allocation beyond what the workload needs:
#   GET  /hello   13-byte text body (keep-alive, Connection: close churn, h2c and tls)
#   POST /echo    reads the whole request body and sends it back
#   GET  /1mib    one 1 MiB body in a single http.response.body message
#   GET  /stream  16 chunks of 4 KiB with more_body=True, no Content-Length
#   WebSocket /ws accepts, then echoes every message (text as text, bytes as bytes) until the
#                 client disconnects
# Lifespan is answered (some servers always run it); any other HTTP path gets a 404, and a
# WebSocket on any other path is refused (closed before accept, which servers answer with 403).
from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO = b"Hello, world!"
MIB = b"x" * (1024 * 1024)
CHUNK = b"y" * 4096
CHUNKS = 16

_TEXT = [(b"content-type", b"text/plain")]
_BINARY = [(b"content-type", b"application/octet-stream")]


def _start(status: int, headers: list[tuple[bytes, bytes]], length: int | None) -> Message:
    if length is not None:
        headers = [*headers, (b"content-length", str(length).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers}


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _websocket(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await _lifespan(receive, send)
        return
    if kind == "websocket":
        await _websocket(scope, receive, send)
        return
    if kind != "http":
        return
    path = scope["path"]
    if path == "/hello":
        await send(_start(200, _TEXT, len(HELLO)))
        await send({"type": "http.response.body", "body": HELLO})
    elif path == "/echo":
        parts: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # http.disconnect: the client is gone
            parts.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(parts)
        await send(_start(200, _BINARY, len(body)))
        await send({"type": "http.response.body", "body": body})
    elif path == "/1mib":
        await send(_start(200, _BINARY, len(MIB)))
        await send({"type": "http.response.body", "body": MIB})
    elif path == "/stream":
        await send(_start(200, _BINARY, None))
        for _ in range(CHUNKS):
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await send(_start(404, _TEXT, 9))
        await send({"type": "http.response.body", "body": b"not found"})
