# The app tests/security/test_faults.py serves: every route counts what it saw, so a test can
# check that nothing is lost (every app call that started learns of its client's disconnect, or
# completes) and nothing leaks (asyncio tasks and file descriptors back to their baseline).
#
# `GET /_stats` (not counted itself) answers JSON: `tasks` (len(asyncio.all_tasks()), this
# request's own task included), `fds` (entries of /proc/self/fd), the totals `started`,
# `http_disconnect`, `ws_disconnect`, `completed`, and the same per route under `routes`.
# HTTP routes:
#   /upload?pace=N&sleep=S  hash the request body, sleeping S seconds every N receive() calls
#                           (a slow consumer); answers {"sha256", "length", "messages"}.
#   /stream?total=B         stream B bytes in 16 KiB parts with a short sleep between them.
#   /hold                   read the body, send a 103 Early Hints (the client's sign that the
#                           app runs), then wait in receive() for the http.disconnect.
#   /work?id=I&ms=M         print "sec_fault_app received I" to stderr (the server's log: it
#                           outlives the process), wait M ms, read the body, answer "done:I".
# WebSocket routes:
#   /ws-hold                take websocket.connect, never accept, wait for websocket.disconnect.
#   /ws-echo                accept, send "ready", echo until websocket.disconnect.
# Counters: `started` when the route begins; `http_disconnect` / `ws_disconnect` when receive()
# gave the disconnect; `completed` when the route answered in full. A route that times out
# waiting (30 s) counts `timeout` instead, which a test sees as lost.
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Query = dict[str, str]
Handler = Callable[[Scope, Receive, Send, Query], Coroutine[Any, Any, None]]

COUNTERS = ("started", "http_disconnect", "ws_disconnect", "completed", "timeout")
ROUTE_STATS: dict[str, dict[str, int]] = {}
WAIT_SECONDS = 30.0


def count(route: str, counter: str) -> None:
    stats = ROUTE_STATS.setdefault(route, dict.fromkeys(COUNTERS, 0))
    stats[counter] += 1


def snapshot() -> dict[str, Any]:
    totals = {name: sum(route[name] for route in ROUTE_STATS.values()) for name in COUNTERS}
    return {
        "tasks": len(asyncio.all_tasks()),
        "fds": len(os.listdir("/proc/self/fd")),
        **totals,
        "routes": ROUTE_STATS,
    }


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
    path = scope["path"]
    if scope["type"] == "http" and path == "/_stats":
        await respond(send, json.dumps(snapshot()).encode(), b"application/json")
        return
    routes = HTTP_ROUTES if scope["type"] == "http" else WS_ROUTES
    handler = routes.get(path)
    if handler is None:
        if scope["type"] == "http":
            await respond(send, b"unknown route", status=404)
        else:
            await send({"type": "websocket.close"})
        return
    count(path, "started")
    await handler(scope, receive, send, query)


async def wait_http_disconnect(route: str, receive: Receive) -> None:
    """Call receive() until it gives http.disconnect (bounded); count it."""
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        count(route, "timeout")
        return
    count(route, "http_disconnect")


async def upload(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    pace = int(query.get("pace", "0"))
    pause = float(query.get("sleep", "0.001"))
    digest = hashlib.sha256()
    length = messages = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            count("/upload", "http_disconnect")
            return
        messages += 1
        body = message.get("body", b"")
        digest.update(body)
        length += len(body)
        if not message.get("more_body", False):
            break
        if pace and messages % pace == 0:
            await asyncio.sleep(pause)
    answer = {"sha256": digest.hexdigest(), "length": length, "messages": messages}
    await respond(send, json.dumps(answer).encode(), b"application/json")
    count("/upload", "completed")


async def stream(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    total = int(query.get("total", str(1 << 30)))
    part = b"s" * 16384
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        sent = 0
        while sent < total:
            await send({"type": "http.response.body", "body": part, "more_body": True})
            sent += len(part)
            await asyncio.sleep(0.002)
        await send({"type": "http.response.body", "body": b""})
    except OSError:
        # ASGI 2.4: send() raises an OSError once the client is gone; receive() tells why.
        await wait_http_disconnect("/stream", receive)
        return
    count("/stream", "completed")


async def hold(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            count("/hold", "http_disconnect")
            return
        if not message.get("more_body", False):
            break
    with contextlib.suppress(OSError):  # gone already: the receive() below says so
        await send({"type": "http.response.early_hint", "links": [b"</hold.css>; rel=preload"]})
    await wait_http_disconnect("/hold", receive)


async def work(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    request_id = query.get("id", "")
    print(f"sec_fault_app received {request_id}", file=sys.stderr, flush=True)
    await asyncio.sleep(int(query.get("ms", "100")) / 1000)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            count("/work", "http_disconnect")
            return
        if not message.get("more_body", False):
            break
    await respond(send, f"done:{request_id}".encode())
    count("/work", "completed")


async def ws_hold(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    first = await receive()
    assert first["type"] == "websocket.connect", first
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            message = await receive()
    except TimeoutError:
        count("/ws-hold", "timeout")
        await send({"type": "websocket.close"})
        return
    if message["type"] == "websocket.disconnect":
        count("/ws-hold", "ws_disconnect")


async def ws_echo(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    first = await receive()
    assert first["type"] == "websocket.connect", first
    try:
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "ready"})
    except OSError:
        pass  # gone already: the receive() below says so
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    count("/ws-echo", "ws_disconnect")
                    return
                reply: Message = {"type": "websocket.send"}
                if message.get("text") is not None:
                    reply["text"] = message["text"]
                else:
                    reply["bytes"] = message.get("bytes") or b""
                with contextlib.suppress(OSError):  # the next receive() is the disconnect
                    await send(reply)
    except TimeoutError:
        count("/ws-echo", "timeout")


async def respond(send: Send, body: bytes, ctype: bytes = b"text/plain", status: int = 200) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


HTTP_ROUTES: dict[str, Handler] = {
    "/upload": upload,
    "/stream": stream,
    "/hold": hold,
    "/work": work,
}
WS_ROUTES: dict[str, Handler] = {
    "/ws-hold": ws_hold,
    "/ws-echo": ws_echo,
}
