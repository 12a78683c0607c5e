# The app the HTTP/1.1 end-to-end tests (tests/test_http1_*.py) serve. One path per behaviour;
# options come in the query string. Tests observe what the app saw through the side channel of
# tests/apps/side_channel.py (`record`, `/events`, `/release` for the gate `/gated-echo` waits
# on, `/progress` for how far a streamed response got).
from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import time
from typing import Any
from urllib.parse import parse_qs

from side_channel import PROGRESS, events, gate, progress, record, release


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
    path = scope["path"]
    handler = ROUTES.get(path) or ROUTES.get("/" + path.split("/")[1], hello)
    await handler(scope, receive, send, query)


async def hello(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    await respond(send, 200, b"Hello, world!")


async def echo(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """The request body back, with how many http.request messages carried it."""
    body, messages = await read_body(receive)
    await respond(send, 200, body, [(b"x-messages", str(messages).encode())])


async def headers(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """What the app saw of the request, as JSON."""
    info = {
        "http_version": scope["http_version"],
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query_string": scope["query_string"].decode("latin-1"),
        "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
        "client": list(scope["client"]) if scope["client"] else None,
    }
    body, _ = await read_body(receive)
    info["body_length"] = len(body)
    await respond(send, 200, json.dumps(info).encode(), ctype=b"application/json")


async def sha256(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Hash the request body as it streams in (optionally reading slowly, or only once
    /release?tag=T was called)."""
    tag = query.get("tag", "")
    delay = float(query.get("delay", "0"))
    record(tag, "started")
    if query.get("gate"):
        await asyncio.wait_for(gate(tag).wait(), 60)
    digest = hashlib.sha256()
    length = messages = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            record(tag, f"disconnect:{length}")
            return
        messages += 1
        body = message.get("body", b"")
        digest.update(body)
        length += len(body)
        if not message.get("more_body", False):
            break
        if delay:
            await asyncio.sleep(delay)
    record(tag, f"done:{length}")
    result = {"sha256": digest.hexdigest(), "length": length, "messages": messages}
    await respond(send, 200, json.dumps(result).encode(), ctype=b"application/json")


async def sleep(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    await asyncio.sleep(float(query.get("s", "0")))
    body, _ = await read_body(receive)
    await respond(send, 200, query.get("id", "").encode() + b":" + body)


async def stream(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """`part0;part1;...` in separate more_body messages; `cl=1`: with the app's Content-Length."""
    parts = [b"part%d;" % i for i in range(int(query.get("n", "3")))]
    extra = [(b"content-length", str(sum(map(len, parts))).encode())] if query.get("cl") else []
    status = int(query.get("status", "200"))
    await send({"type": "http.response.start", "status": status, "headers": extra})
    for part in parts:
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def trickle(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """`first;`, then wait for /release?tag=T, then `second;` (an SSE-like stream)."""
    tag = query.get("tag", "")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first;", "more_body": True})
    record(tag, "waiting")
    await asyncio.wait_for(gate(tag).wait(), 30)
    await send({"type": "http.response.body", "body": b"second;"})


async def content_length(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Declare `declared` bytes, then send body parts of the sizes in `parts` (comma list)."""
    tag = query.get("tag", "")
    sizes = [int(size) for size in query.get("parts", "").split(",") if size]
    headers = [(b"content-length", query.get("declared", "0").encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    try:
        for index, size in enumerate(sizes):
            more = index < len(sizes) - 1
            await send({"type": "http.response.body", "body": b"x" * size, "more_body": more})
    except Exception as exc:
        record(tag, f"raised:{type(exc).__name__}:{exc}")
        raise
    record(tag, "sent")


async def status(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Respond with status `code` and body `body` (app headers from `h`: name:value;...)."""
    extra = []
    for item in query.get("h", "").split(";"):
        if item:
            name, _, value = item.partition(":")
            extra.append((name.encode(), value.encode()))
    body = query.get("body", "").encode()
    code = int(query.get("code", "200"))
    await send({"type": "http.response.start", "status": code, "headers": extra})
    if query.get("stream"):
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send({"type": "http.response.body", "body": body})


BAD_HEADERS: dict[str, Any] = {
    "cr": (b"x-evil", b"a\rEVIL"),
    "lf": (b"x-evil", b"a\nEVIL"),
    "nul": (b"x-evil", b"a\x00EVIL"),
    "crlf-inject": (b"x-evil", b"a\r\nset-cookie: EVIL=1"),
    "name-space": (b"x EVIL", b"1"),
    "name-colon": (b"x-EVIL:", b"1"),
    "name-crlf": (b"x-EVIL\r\nset-cookie", b"1"),
    "name-empty": (b"", b"EVIL"),
    "name-str": ("x-EVIL", b"1"),
    "value-str": (b"x-evil", "EVIL"),
    "value-int": (b"x-evil", 1),
    "not-pair": (b"x-evil", b"EVIL", b"3"),
}


async def bad_header(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    tag = query.get("tag", "")
    header = BAD_HEADERS[query["kind"]]
    start = {"type": "http.response.start", "status": 200, "headers": [header]}
    try:
        await send(start)
    except Exception as exc:
        record(tag, f"raised:{type(exc).__name__}")
        raise
    record(tag, "accepted")
    await send({"type": "http.response.body", "body": b"EVIL body"})


async def generated_headers(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Response headers as a generator (any iterable is allowed), one of them replacing the
    server's own Server header."""
    pairs = ((b"server", b"generated"), (b"x-generated", b"yes"))
    start = {"type": "http.response.start", "status": 200, "headers": (p for p in pairs)}
    await send(start)
    await send({"type": "http.response.body", "body": b"generated"})


async def odd_headers(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Header items the ASGI spec allows but a cache cannot key on: a writable memoryview
    value (unhashable), a pair given as a one-shot iterator (replacing the Server header),
    and a list pair asking to close."""
    headers = [
        (b"x-view", memoryview(bytearray(b"viewed"))),
        iter([b"server", b"odd"]),
        [b"connection", b"close"],
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"odd"})


async def early_hint_counter(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Counts in the scope's early-hint extension dict: it must be this request's own."""
    hint = scope["extensions"]["http.response.early_hint"]
    hint["seen"] = hint.get("seen", 0) + 1
    await respond(send, 200, str(hint["seen"]).encode())


async def close(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    await respond(send, 200, b"closing", [(b"connection", b"close")])


async def transfer_encoding(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """The app sets `transfer-encoding: chunked` itself (framing is the server's business)."""
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"transfer-encoding", b"chunked")],
    }
    await send(start)
    if query.get("stream"):
        await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
    await send({"type": "http.response.body", "body": b"world"})


async def noread(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Answer without reading the request body."""
    record(query.get("tag", ""), "started")
    await respond(send, 200, b"answered without reading")


async def gated_echo(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Wait for /release?tag=T before the first receive(), then echo the body."""
    tag = query.get("tag", "")
    record(tag, "started")
    await asyncio.wait_for(gate(tag).wait(), 30)
    record(tag, "receiving")
    body, _ = await read_body(receive)
    await respond(send, 200, body)


async def bigstream(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Stream `total` bytes in `chunk`-sized more_body messages; PROGRESS[tag] says how far.
    The loop awaits nothing but send(), like an app streaming from memory."""
    tag = query.get("tag", "")
    total = int(query.get("total", str(64 << 20)))
    size = int(query.get("chunk", "65536"))
    progress: dict[str, Any] = {"sent": 0, "done": False, "error": None, "sha256": None}
    PROGRESS[tag] = progress
    record(tag, "started")
    if query.get("gate"):
        # Wait for /release?tag=T before streaming (without reading the request body).
        await asyncio.wait_for(gate(tag).wait(), 30)
    digest = hashlib.sha256()
    block = bytearray(hashlib.sha256(tag.encode()).digest() * (size // 32 + 1))[:size]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    sent = index = 0
    try:
        while sent < total:
            block[:8] = index.to_bytes(8, "big")
            data = bytes(block[: min(size, total - sent)])
            digest.update(data)
            await send({"type": "http.response.body", "body": data, "more_body": True})
            sent += len(data)
            index += 1
            progress["sent"] = sent
        progress["sha256"] = digest.hexdigest()
        await send({"type": "http.response.body", "body": b""})
        progress["done"] = True
        record(tag, "done")
    except BaseException as exc:
        progress["error"] = f"{type(exc).__name__}:{isinstance(exc, OSError)}"
        record(tag, "send-raised:" + progress["error"])
        raise


async def wait_disconnect(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Read the body, then wait (bounded) in receive() for the http.disconnect."""
    tag = query.get("tag", "")
    await read_body(receive)
    record(tag, "waiting")
    try:
        message = await asyncio.wait_for(receive(), float(query.get("timeout", "30")))
    except TimeoutError:
        record(tag, "received:nothing")
    else:
        record(tag, "received:" + message["type"])
    await late_response(tag, send)


async def late(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Respond only once /release?tag=T was called (the client may be gone by then)."""
    tag = query.get("tag", "")
    record(tag, "started")
    await asyncio.wait_for(gate(tag).wait(), 30)
    await late_response(tag, send)


async def late_response(tag: str, send: Any) -> None:
    try:
        await respond(send, 200, b"late")
    except Exception as exc:
        record(tag, f"send-raised:{type(exc).__name__}:{isinstance(exc, OSError)}")
        raise
    record(tag, "sent")


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Any) -> tuple[bytes, int]:
    chunks = []
    messages = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        messages += 1
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), messages


class Leak:
    """An object in a reference cycle: /garbage?op=leak makes one, to show the count works."""

    me: Any = None


async def garbage(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """op=start: collect, then stop the cyclic GC; op=leak: make one cycle; op=count: what a
    collection finds unreachable now, counted by type name (JSON), then the GC runs again."""
    if query.get("op") == "leak":
        leak = Leak()
        leak.me = leak
        del leak
        await respond(send, 200, b"leaked")
        return
    if query.get("op") == "start":
        gc.collect()
        gc.disable()
        await respond(send, 200, b"started")
        return
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    found: dict[str, int] = {}
    for item in gc.garbage:
        name = type(item).__name__
        found[name] = found.get(name, 0) + 1
    gc.garbage.clear()
    gc.set_debug(0)
    gc.enable()
    await respond(send, 200, json.dumps(found).encode(), ctype=b"application/json")


# /ticks: a counter of loop iterations (a callback that reschedules itself), running between
# op=start and op=stop; /tick answers with its value, /block holds the loop (not just the app).
TICKS = {"count": 0, "running": False}


def _tick() -> None:
    if TICKS["running"]:
        TICKS["count"] += 1
        asyncio.get_running_loop().call_soon(_tick)


async def ticks(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    if query.get("op") == "start":
        if not TICKS["running"]:
            TICKS["running"] = True
            asyncio.get_running_loop().call_soon(_tick)
    else:
        TICKS["running"] = False
    await respond(send, 200, b"ok")


async def tick(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    await respond(send, 200, str(TICKS["count"]).encode())


async def block(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """Hold the whole loop for s seconds; first create the file `mark` (if given), so that a
    test can tell the loop is held."""
    if "mark" in query:
        with open(query["mark"], "w"):
            pass
    time.sleep(float(query.get("s", "0.5")))
    await respond(send, 200, b"unblocked")


async def timers(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """The loop timers pending (asyncio's loop only: uvloop does not show them), as JSON
    counts by the type of the object whose method each calls back ("function" for plain
    callables): a connection's own timer shows as its class, the deadline wheel's as
    DeadlineWheel."""
    found: dict[str, int] = {}
    for handle in getattr(asyncio.get_running_loop(), "_scheduled", ()):
        if not handle.cancelled():
            owner = getattr(handle._callback, "__self__", None)
            name = "function" if owner is None else type(owner).__name__
            found[name] = found.get(name, 0) + 1
    await respond(send, 200, json.dumps(found).encode(), ctype=b"application/json")


async def respond(
    send: Any,
    code: int,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
    ctype: bytes = b"text/plain",
) -> None:
    start_headers = [(b"content-type", ctype), *(extra or [])]
    await send({"type": "http.response.start", "status": code, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


ROUTES = {
    "/": hello,
    "/echo": echo,
    "/headers": headers,
    "/sha256": sha256,
    "/sleep": sleep,
    "/stream": stream,
    "/trickle": trickle,
    "/cl": content_length,
    "/status": status,
    "/badheader": bad_header,
    "/close": close,
    "/generated-headers": generated_headers,
    "/odd-headers": odd_headers,
    "/early-hint-counter": early_hint_counter,
    "/te": transfer_encoding,
    "/noread": noread,
    "/gated-echo": gated_echo,
    "/release": release,
    "/events": events,
    "/bigstream": bigstream,
    "/progress": progress,
    "/wait-disconnect": wait_disconnect,
    "/late": late,
    "/garbage": garbage,
    "/timers": timers,
    "/ticks": ticks,
    "/tick": tick,
    "/block": block,
}
