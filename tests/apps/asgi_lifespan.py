# Apps for the lifespan tests. Each records what happened to it in marker files in
# $ASGI_TEST_MARKERS (`lifespan.called`, `startup`, `shutdown`), so a test can tell what ran.
from __future__ import annotations

import json

from asgi_app import Receive, Scope, Send, jsonable, record, respond


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    """Every app here answers HTTP alike: `/state` shows the request's state (or null)."""
    if scope["path"] == "/state":
        state = scope.get("state")
        body = json.dumps(jsonable(dict(state)) if state is not None else None)
        await respond(send, 200, body.encode(), b"application/json")
    else:
        await respond(send, 200, b"Hello, world!")


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Full lifespan support: state set at startup, markers at startup and shutdown."""
    if scope["type"] != "lifespan":
        return await http(scope, receive, send)
    record("lifespan.called", json.dumps(jsonable(scope["asgi"])))
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["db"] = "connected"
            scope["state"]["pool"] = [1, 2, 3]
            record("startup", "complete")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            record("shutdown", "complete")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def unsupported(scope: Scope, receive: Receive, send: Send) -> None:
    """Raises on the lifespan scope, as apps without lifespan support do."""
    if scope["type"] != "lifespan":
        return await http(scope, receive, send)
    record("lifespan.called", "raising")
    raise ValueError(f"unsupported scope type {scope['type']!r}")


async def startup_failed(scope: Scope, receive: Receive, send: Send) -> None:
    """Reports startup.failed with a message."""
    if scope["type"] != "lifespan":
        return await http(scope, receive, send)
    message = await receive()
    assert message["type"] == "lifespan.startup"
    await send({"type": "lifespan.startup.failed", "message": "database unreachable: xyzzy-42"})
    await receive()


async def startup_raises(scope: Scope, receive: Receive, send: Send) -> None:
    """Receives lifespan.startup, then raises instead of answering."""
    if scope["type"] != "lifespan":
        return await http(scope, receive, send)
    await receive()
    raise RuntimeError("cannot connect to the cache: plugh-17")


async def shutdown_failed(scope: Scope, receive: Receive, send: Send) -> None:
    """Starts normally; reports shutdown.failed with a message."""
    if scope["type"] != "lifespan":
        return await http(scope, receive, send)
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    record("shutdown", "failed")
    await send({"type": "lifespan.shutdown.failed", "message": "could not flush: frob-99"})


async def lingering(scope: Scope, receive: Receive, send: Send) -> None:
    """Completes startup and shutdown, but stays in the lifespan call afterwards."""
    if scope["type"] != "lifespan":
        return await http(scope, receive, send)
    await receive()
    await send({"type": "lifespan.startup.complete"})
    await receive()
    await send({"type": "lifespan.shutdown.complete"})
    record("shutdown", "complete")
    await receive()


async def returns_at_once(scope: Scope, receive: Receive, send: Send) -> None:
    """Returns from the lifespan scope without a word (some apps ignore scope types)."""
    if scope["type"] != "lifespan":
        return await http(scope, receive, send)
    record("lifespan.called", "returned")
