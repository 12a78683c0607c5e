# The app tests/test_trailers_early_hints.py serves: the two ASGI HTTP extensions the server
# announces, `http.response.early_hint` (103 Early Hints, RFC 8297) and `http.response.trailers`
# (trailer fields after the body). One path per behaviour, options in the query string; `tag`
# names the side-channel record (tests/apps/side_channel.py: `/events?tag=T&want=E`). The apps
# send what their route says whether or not the extension is in the scope, so that tests see
# what the server does with messages it did not announce. Misbehaving routes record
# `raised:<ExceptionType>` when send() refuses a message, then let the exception propagate.
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs

from side_channel import events, record

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Query = dict[str, list[str]]
Handler = Callable[[Scope, Receive, Send, Query], Coroutine[Any, Any, None]]

EARLY_HINT = "http.response.early_hint"
TRAILERS = "http.response.trailers"


def one(query: Query, name: str, default: str = "") -> str:
    values = query.get(name)
    return values[-1] if values else default


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http", scope["type"]
    query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    if scope["path"] == "/events":
        await events(scope, receive, send, {k: v[-1] for k, v in query.items()})
        return
    handler = ROUTES.get(scope["path"], extensions)
    await handler(scope, receive, send, query)


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def guarded(tag: str, send: Send, message: Message) -> None:
    """send(message); if the server refuses it, record `raised:<type>` and re-raise."""
    try:
        await send(message)
    except Exception as exc:
        record(tag, f"raised:{type(exc).__name__}")
        raise


# -- routes ----------------------------------------------------------------------------------------


async def extensions(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """What the scope announces: the HTTP version and the names in scope["extensions"]."""
    await read_body(receive)
    info = {
        "http_version": scope["http_version"],
        "extensions": sorted(scope.get("extensions") or {}),
    }
    body = json.dumps(info).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def hint(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """`hints` early hints (default 1), each with every `link` of the query, then a 200 with
    the body "final" (streamed in two parts with `stream=1`)."""
    tag = one(query, "tag")
    await read_body(receive)
    links = [link.encode("latin-1") for link in query.get("link", [])]
    for _ in range(int(one(query, "hints", "1"))):
        await guarded(tag, send, {"type": EARLY_HINT, "links": links})
    record(tag, "hinted")
    start: Message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain"), (b"x-final", b"yes")],
    }
    await send(start)
    if one(query, "stream"):
        await send({"type": "http.response.body", "body": b"fi", "more_body": True})
        await send({"type": "http.response.body", "body": b"nal"})
    else:
        await send({"type": "http.response.body", "body": b"final"})
    record(tag, "done")


async def bad_hint(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """An early hint the server must refuse (`kind`: crlf in a link, `str` links, a hint after
    http.response.start), then a normal response if the app gets that far."""
    tag = one(query, "tag")
    await read_body(receive)
    kind = one(query, "kind")
    start: Message = {"type": "http.response.start", "status": 200, "headers": []}
    if kind == "crlf":
        await guarded(tag, send, {"type": EARLY_HINT, "links": [b"</a.css>\r\nx-injected: 1"]})
    elif kind == "str":
        await guarded(tag, send, {"type": EARLY_HINT, "links": "</a.css>; rel=preload"})
    elif kind == "after-start":
        await send(start)
        await send({"type": "http.response.body", "body": b"partial;", "more_body": True})
        await guarded(tag, send, {"type": EARLY_HINT, "links": [b"</late.css>; rel=preload"]})
    await send(start)
    await send({"type": "http.response.body", "body": b"not reached"})


def trailer_fields(query: Query) -> list[list[tuple[bytes, bytes]]]:
    """The trailer messages of a route: the `t=name:value` items, in order, split into `msgs`
    messages (the last ones may be empty)."""
    items = [item.partition(":") for item in query.get("t", ["x-checksum:abc123"])]
    fields = [(name.encode("latin-1"), value.encode("latin-1")) for name, _, value in items]
    count = max(1, int(one(query, "msgs", "1")))
    size = -(-len(fields) // count)
    return [fields[index * size : (index + 1) * size] for index in range(count)]


async def trailers(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """A response that promises trailers (whatever the scope says): `parts` body parts of
    `size` bytes (default 2 x "part0;" style parts), then the trailers of `trailer_fields` in
    `msgs` messages. `cl=1` adds a Content-Length (of `declared` bytes if given, else the
    body's); `ctx=1` records whether the extension was announced."""
    tag = one(query, "tag")
    await read_body(receive)
    record(tag, "extension:" + str(TRAILERS in scope.get("extensions", {})))
    parts = int(one(query, "parts", "2"))
    size = int(one(query, "size", "0"))
    bodies = [
        (bytes([65 + index % 26]) * size) if size else f"part{index};".encode()
        for index in range(parts)
    ]
    headers = [(b"content-type", b"text/plain")]
    if one(query, "cl"):
        declared = one(query, "declared", str(sum(map(len, bodies))))
        headers.append((b"content-length", declared.encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers, "trailers": True})
    if not bodies:
        await send({"type": "http.response.body", "body": b""})
    for index, body in enumerate(bodies):
        more = index < len(bodies) - 1
        await send({"type": "http.response.body", "body": body, "more_body": more})
    messages = trailer_fields(query)
    for index, fields in enumerate(messages):
        more = index < len(messages) - 1
        await guarded(tag, send, {"type": TRAILERS, "headers": fields, "more_trailers": more})
    record(tag, "done")


async def trailers_early(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Trailers while the body is still open (more_body=True): out of order."""
    tag = one(query, "tag")
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
    await send({"type": "http.response.body", "body": b"first part;", "more_body": True})
    await guarded(tag, send, {"type": TRAILERS, "headers": [(b"x-early", b"1")]})
    await send({"type": "http.response.body", "body": b"not reached"})


async def trailers_bad(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Trailer fields the server must refuse (`kind`: crlf, lf, nul in a value, a name with a
    space or a colon, a str name)."""
    tag = one(query, "tag")
    await read_body(receive)
    kind = one(query, "kind")
    bad: tuple[Any, Any] = {
        "crlf": (b"x-bad", b"v\r\nx-injected: 1"),
        "lf": (b"x-bad", b"v\nx-injected: 1"),
        "nul": (b"x-bad", b"v\x00x-injected"),
        "space": (b"x injected", b"1"),
        "colon": (b"x-injected:", b"1"),
        "str": ("x-injected", "1"),
    }[kind]
    await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
    await send({"type": "http.response.body", "body": b"body;", "more_body": True})
    await send({"type": "http.response.body", "body": b"end;"})
    await guarded(tag, send, {"type": TRAILERS, "headers": [(b"x-good", b"1"), bad]})


async def trailers_missing(scope: Scope, receive: Receive, send: Send, query: Query) -> None:
    """Promise trailers, complete the body, then return without sending them."""
    tag = one(query, "tag")
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
    await send({"type": "http.response.body", "body": b"body without its trailers"})
    record(tag, "returning")


ROUTES: dict[str, Handler] = {
    "/extensions": extensions,
    "/hint": hint,
    "/bad-hint": bad_hint,
    "/trailers": trailers,
    "/trailers-early": trailers_early,
    "/trailers-bad": trailers_bad,
    "/trailers-missing": trailers_missing,
}
