# The app the HTTP/2 end-to-end tests (tests/test_http2*.py) serve: every route of h1_app.py (the
# side channel of side_channel.py included), plus what those routes cannot show. `/scope` answers
# the whole scope as JSON (bytes as latin-1 text); `/raise-before` raises before
# http.response.start, `/raise-after` after a first body part, `/no-response` returns without
# responding; `/slow?tag=T&s=S` records "started", sleeps S seconds, then answers "slow done";
# `/linger?tag=T&s=S` answers at once, then keeps running S seconds (background work after its
# response); `/respond-then-read?tag=T` starts its response before it reads the request body and
# records what receive() gave; `/late-body?s=S&size=N&first=F` sends its response headers (and F
# bytes), waits S seconds, then sends N bytes more.
from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

import h1_app
from side_channel import record


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        handler = ROUTES.get(scope["path"]) or (
            describe_scope if scope["path"].startswith("/scope") else None
        )
        if handler is not None:
            query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
            return await handler(scope, receive, send, query)
    return await h1_app.app(scope, receive, send)


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


async def describe_scope(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """The scope as JSON, with the length of the request body read in full."""
    body, _ = await h1_app.read_body(receive)
    info = jsonable({key: value for key, value in scope.items() if key != "state"})
    info["body_length"] = len(body)
    await h1_app.respond(send, 200, json.dumps(info).encode(), ctype=b"application/json")


async def raise_before(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    raise RuntimeError("h2_app fails before the response")


async def raise_after(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial;", "more_body": True})
    await asyncio.sleep(0.05)  # the first part goes out before the failure
    raise RuntimeError("h2_app fails mid-response")


async def no_response(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    await h1_app.read_body(receive)


async def slow(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    record(query.get("tag", ""), "started")
    await asyncio.sleep(float(query.get("s", "1")))
    await h1_app.read_body(receive)
    await h1_app.respond(send, 200, b"slow done")


async def linger(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Answer "lingering" at once, then go on running `s` seconds: records "answered", then
    "finished"."""
    tag = query.get("tag", "")
    await h1_app.read_body(receive)
    await h1_app.respond(send, 200, b"lingering")
    record(tag, "answered")
    await asyncio.sleep(float(query.get("s", "1")))
    record(tag, "finished")


async def respond_then_read(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Start the response ("reading;") before reading the request body; record each message
    receive() gives (`body:LEN:MORE`, then `disconnect` if it comes), then end the response with
    `read:TOTAL` (recording `send-raised:TYPE` if send() refuses it, else "sent")."""
    tag = query.get("tag", "")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"reading;", "more_body": True})
    total = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            record(tag, "disconnect")
            break
        body = message.get("body", b"")
        total += len(body)
        more = message.get("more_body", False)
        record(tag, f"body:{len(body)}:{more}")
        if not more:
            break
    try:
        await send({"type": "http.response.body", "body": b"read:%d" % total})
    except Exception as exc:
        record(tag, f"send-raised:{type(exc).__name__}")
        raise
    record(tag, "sent")


async def late_body(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Response headers (and `first` bytes of body) at once, then `s` seconds of nothing, then
    `size` bytes more (in 64 KiB messages)."""
    await h1_app.read_body(receive)
    size = int(query.get("size", "0"))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    first = int(query.get("first", "0"))
    if first:
        await send({"type": "http.response.body", "body": b"a" * first, "more_body": True})
    await asyncio.sleep(float(query.get("s", "3")))
    block = b"b" * 65536
    while size > 0:
        await send({"type": "http.response.body", "body": block[:size], "more_body": True})
        size -= len(block)
    await send({"type": "http.response.body", "body": b""})


ROUTES = {
    "/raise-before": raise_before,
    "/raise-after": raise_after,
    "/no-response": no_response,
    "/slow": slow,
    "/linger": linger,
    "/respond-then-read": respond_then_read,
    "/late-body": late_body,
}
