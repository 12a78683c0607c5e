# The app the WebSocket end-to-end tests (tests/test_websocket_*.py) serve. One path per
# behaviour; options come in the query string (`tag` names the side-channel record). Tests observe
# what the app saw through the side channel of tests/apps/side_channel.py: `record(tag, event)`,
# `/events?tag=T&want=E`, `/release?tag=T` (the gate `/never-receive` waits on) and
# `/progress?tag=T` (how far `/flood` got). Every scope the app is called with is recorded
# (except the side channel's own requests) as `scope:<type>` under its tag, so a test can tell that
# the app was (or was not) called.
# With WS_APP_PRINT=1 every event is also printed to stderr (for tests that outlive the server).
from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs

import side_channel
from side_channel import PROGRESS, events, gate, progress, release

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Query = dict[str, str]
Handler = Callable[[Scope, Receive, Send, Query], Coroutine[Any, Any, None]]

PRINT = os.environ.get("WS_APP_PRINT") == "1"


def record(tag: str, event: str) -> None:
    """side_channel.record, for tagged connections only (and to stderr with WS_APP_PRINT=1)."""
    if not tag:
        return
    if PRINT:
        print(f"ws_app event {tag} {event}", file=sys.stderr, flush=True)
    side_channel.record(tag, event)


def describe(message: Message) -> str:
    """A received message as one event string: `disconnect:CODE:REASON`, `text:...` etc."""
    kind = str(message["type"])
    if kind == "websocket.disconnect":
        return f"disconnect:{message.get('code')}:{message.get('reason', '<absent>')}"
    if kind == "websocket.receive":
        if message.get("text") is not None:
            return f"text:{len(message['text'])}"
        return f"bytes:{len(message.get('bytes') or b'')}"
    return "other:" + kind


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
    path = scope["path"]
    if scope["type"] == "http" and path in HTTP_ROUTES:
        return await HTTP_ROUTES[path](scope, receive, send, query)
    record(query.get("tag", ""), "scope:" + scope["type"])
    handler: Handler = http_default
    if scope["type"] != "http":
        handler = WS_ROUTES.get(path) or WS_ROUTES.get("/" + path.split("/")[1], echo)
    await handler(scope, receive, send, query)


# -- WebSocket behaviours --------------------------------------------------------------------------


def accept_message(query: Query, scope: Scope) -> Message:
    """websocket.accept with `subprotocol` (`first`: the client's first offer) and `h`
    (extra headers, `name:value;...`) from the query string."""
    message: Message = {"type": "websocket.accept"}
    subprotocol = query.get("subprotocol")
    if subprotocol == "first":
        subprotocol = scope["subprotocols"][0] if scope["subprotocols"] else None
    if subprotocol is not None:
        message["subprotocol"] = subprotocol
    headers = []
    for item in query.get("h", "").split(";"):
        if item:
            name, _, value = item.partition(":")
            headers.append((name.encode("latin-1"), value.encode("latin-1")))
    if headers:
        message["headers"] = headers
    return message


async def expect_connect(receive: Receive, tag: str) -> None:
    message = await receive()
    record(tag, "first:" + message["type"])
    assert message["type"] == "websocket.connect", message


async def echo_loop(receive: Receive, send: Send, tag: str, inspect: bool = False) -> Message:
    """Echo every message back (as the same kind) until the disconnect, which is recorded and
    returned. With `inspect`, answer each message with a JSON description of it instead."""
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            record(tag, describe(message))
            return message
        if inspect:
            info = {
                "keys": sorted(message),
                "text": message.get("text", "<absent>"),
                "bytes": (
                    message["bytes"].hex()
                    if isinstance(message.get("bytes"), bytes)
                    else message.get("bytes", "<absent>")
                ),
            }
            await send({"type": "websocket.send", "text": json.dumps(info)})
        elif message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def echo(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Accept (with the query's subprotocol/headers), then echo until the client goes away."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send(accept_message(query, scope))
    record(tag, "accepted")
    await echo_loop(receive, send, tag, inspect=bool(query.get("inspect")))


async def scope_dump(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Accept, send the scope as JSON text (bytes as latin-1), then echo."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send(accept_message(query, scope))
    await send({"type": "websocket.send", "text": json.dumps(jsonable(scope))})
    await echo_loop(receive, send, tag)


async def close(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Accept, optionally wait for one message (`first=1`), then close with `code` (absent:
    no code key) and `reason`; then record what receive() gives."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send({"type": "websocket.accept"})
    if query.get("first"):
        record(tag, describe(await receive()))
    message: Message = {"type": "websocket.close"}
    if "code" in query:
        message["code"] = int(query["code"])
    if "reason" in query:
        message["reason"] = query["reason"]
    await send(message)
    record(tag, "closed")
    record(tag, describe(await asyncio.wait_for(receive(), 30)))


async def deny(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Refuse with an HTTP response (the websocket.http.response extension): `status`, headers
    from `h`, the body `body` sent in `parts` messages."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    record(tag, "extension:" + str("websocket.http.response" in scope.get("extensions", {})))
    headers = [(b"content-type", b"text/plain")]
    for item in query.get("h", "").split(";"):
        if item:
            name, _, value = item.partition(":")
            headers.append((name.encode("latin-1"), value.encode("latin-1")))
    await send(
        {
            "type": "websocket.http.response.start",
            "status": int(query.get("status", "401")),
            "headers": headers,
        }
    )
    body = query.get("body", "denied").encode()
    parts = int(query.get("parts", "1"))
    size = -(-len(body) // parts) if body else 0
    for index in range(parts):
        piece = body[index * size : (index + 1) * size]
        more = index < parts - 1
        await send({"type": "websocket.http.response.body", "body": piece, "more_body": more})
    record(tag, "denied")
    record(tag, describe(await asyncio.wait_for(receive(), 30)))


async def reject(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """websocket.close before accepting (a 403 for the client)."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send({"type": "websocket.close", "code": int(query.get("code", "1000"))})
    record(tag, "rejected")
    record(tag, describe(await asyncio.wait_for(receive(), 30)))


async def raise_before_accept(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    await expect_connect(receive, query.get("tag", ""))
    raise RuntimeError("ws_app failed before accept")


async def raise_after_accept(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send({"type": "websocket.accept"})
    if query.get("first"):
        record(tag, describe(await receive()))
    record(tag, "raising")
    raise RuntimeError("ws_app failed after accept")


async def send_after_close(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Accept, close, then try to send: the send must raise (recorded as `raised:TYPE`)."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1000})
    if query.get("wait"):
        record(tag, describe(await asyncio.wait_for(receive(), 30)))
    try:
        await send({"type": "websocket.send", "text": "after close"})
    except Exception as exc:
        record(tag, f"raised:{type(exc).__name__}:{isinstance(exc, RuntimeError)}")
    else:
        record(tag, "sent")


async def send_before_accept(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """websocket.send without accepting first (the server accepts implicitly), then echo."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send({"type": "websocket.send", "text": "early"})
    record(tag, "sent")
    await echo_loop(receive, send, tag)


async def return_without_close(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "bye"})
    record(tag, "returning")


async def return_without_accept(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    record(tag, "returning")


async def slow_accept(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Wait up to `s` seconds in receive() before accepting; record what receive() gave."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    try:
        message = await asyncio.wait_for(receive(), float(query.get("s", "10")))
    except TimeoutError:
        record(tag, "waited")
    else:
        record(tag, describe(message))
        return
    try:
        await send({"type": "websocket.accept"})
    except Exception as exc:
        record(tag, f"accept-raised:{type(exc).__name__}")
        return
    record(tag, "accepted")
    await echo_loop(receive, send, tag)


async def record_messages(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Accept, then record every message received (`text:LEN`, `bytes:LEN`) and the
    disconnect, sending nothing."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        record(tag, describe(message))
        if message["type"] != "websocket.receive":
            return


async def never_receive(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Accept, then call receive() only once /release?tag=T was called; then count the
    messages until a text message "end" and record `received:COUNT:BYTES`."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send({"type": "websocket.accept"})
    record(tag, "accepted")
    await asyncio.wait_for(gate(tag).wait(), 120)
    record(tag, "receiving")
    count = size = 0
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            record(tag, describe(message))
            return
        if message.get("text") == "end":
            break
        count += 1
        size += len(message.get("bytes") or b"") + len(message.get("text") or "")
    record(tag, f"received:{count}:{size}")
    await send({"type": "websocket.send", "text": f"received:{count}:{size}"})
    await echo_loop(receive, send, tag)


async def flood(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Accept, then send `count` binary messages of `size` bytes as fast as send() lets it;
    each starts with its index (8 bytes, big-endian). PROGRESS[tag] = {"sent", "done"}."""
    tag = query.get("tag", "")
    size = int(query.get("size", "65536"))
    count = int(query.get("count", "4096"))
    progress: dict[str, Any] = {"sent": 0, "done": False, "error": None}
    PROGRESS[tag] = progress
    await expect_connect(receive, tag)
    await send({"type": "websocket.accept"})
    record(tag, "accepted")
    block = bytearray(b"\xa5" * size)
    try:
        for index in range(count):
            block[:8] = index.to_bytes(8, "big")
            await send({"type": "websocket.send", "bytes": bytes(block)})
            progress["sent"] = (index + 1) * size
        await send({"type": "websocket.send", "text": "done"})
        progress["done"] = True
        record(tag, "done")
    except Exception as exc:
        progress["error"] = type(exc).__name__
        record(tag, f"send-raised:{type(exc).__name__}")
        raise
    record(tag, describe(await asyncio.wait_for(receive(), 60)))


async def after_disconnect(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Accept, wait for the disconnect, then try to send: record what send() does."""
    tag = query.get("tag", "")
    await expect_connect(receive, tag)
    await send({"type": "websocket.accept"})
    record(tag, "accepted")
    message = await receive()
    while message["type"] == "websocket.receive":
        message = await receive()
    record(tag, describe(message))
    try:
        await send({"type": "websocket.send", "text": "too late"})
    except Exception as exc:
        record(tag, f"raised:{type(exc).__name__}:{isinstance(exc, OSError)}")
    else:
        record(tag, "sent")


# -- HTTP: the side channel, and what a plain HTTP request to a WebSocket path sees ----------------


async def http_default(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Any other HTTP request: `http <method> <path>` (a WebSocket path reached without
    `Connection: upgrade` lands here)."""
    while (await receive()).get("more_body"):
        pass
    await respond(send, 200, f"http {scope['method']} {scope['path']}".encode())


async def respond(send: Send, code: int, body: bytes, ctype: bytes = b"text/plain") -> None:
    headers = [(b"content-type", ctype)]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if "state" in scope:
                scope["state"]["from_lifespan"] = "yes"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


WS_ROUTES: dict[str, Handler] = {
    "/echo": echo,
    "/scope": scope_dump,
    "/close": close,
    "/deny": deny,
    "/reject": reject,
    "/raise-before-accept": raise_before_accept,
    "/raise-after-accept": raise_after_accept,
    "/send-after-close": send_after_close,
    "/send-before-accept": send_before_accept,
    "/return-without-close": return_without_close,
    "/return-without-accept": return_without_accept,
    "/slow-accept": slow_accept,
    "/never-receive": never_receive,
    "/record": record_messages,
    "/flood": flood,
    "/after-disconnect": after_disconnect,
}

HTTP_ROUTES: dict[str, Handler] = {
    "/events": events,
    "/release": release,
    "/progress": progress,
}
