# The app the HTTP/2 defence tests (tests/test_http2_defences.py) serve: every route of
# h1_app.py (gates, side channel, big streams), plus `/watched-stream?tag=T&total=N`, a large
# streamed response whose app also waits in receive() meanwhile, so that a test can see it get
# `http.disconnect` when the server gives up on the stream (EVENTS[tag] gets
# "received:http.disconnect", and "send-raised:..." if a send() failed; PROGRESS[tag]["sent"]
# says how far the response got).
from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import parse_qs

import h1_app
from side_channel import PROGRESS, record


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/watched-stream":
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        await watched_stream(receive, send, query)
        return
    await h1_app.app(scope, receive, send)


async def watched_stream(receive: Any, send: Any, query: dict[str, str]) -> None:
    tag = query.get("tag", "")
    total = int(query.get("total", str(64 << 20)))
    size = int(query.get("chunk", "65536"))
    progress: dict[str, Any] = {"sent": 0, "done": False}
    PROGRESS[tag] = progress

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] != "http.request":
                record(tag, "received:" + message["type"])
                return

    watcher = asyncio.ensure_future(watch())
    record(tag, "started")
    block = b"w" * size
    try:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while progress["sent"] < total and not watcher.done():
            data = block[: min(size, total - progress["sent"])]
            await send({"type": "http.response.body", "body": data, "more_body": True})
            progress["sent"] += len(data)
        if not watcher.done():
            await send({"type": "http.response.body", "body": b""})
            progress["done"] = True
            record(tag, "done")
    except Exception as exc:
        record(tag, f"send-raised:{type(exc).__name__}")
    finally:
        if not progress["done"]:
            # Give the watcher a bounded time to see the disconnect.
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(watcher), 10)
        watcher.cancel()
