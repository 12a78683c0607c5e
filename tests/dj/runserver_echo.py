# An ASGI app for the runserver tests (ASGI_APPLICATION = "runserver_echo.application"): it
# shows what runserver's server put in the scope, and misbehaves on request so that runserver's
# timeout flags can be seen at work.
#
#   HTTP /slow        never answers (--http_timeout turns that into a 503)
#   HTTP other        200, JSON {"path", "root_path", "http_version"}
#   WebSocket /slow   never accepts (--websocket_handshake_timeout turns that into a 403)
#   WebSocket other   accepts, then echoes every text message
from __future__ import annotations

import asyncio
import json
from typing import Any


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]  # lifespan.startup, then lifespan.shutdown
            await send({"type": f"{kind}.complete"})
            if kind == "lifespan.shutdown":
                return
    if scope["type"] == "http":
        if scope["path"].endswith("/slow"):
            await asyncio.sleep(3600)
        body = json.dumps(
            {
                "path": scope["path"],
                "root_path": scope.get("root_path", ""),
                "http_version": scope["http_version"],
            }
        ).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    if scope["path"].endswith("/slow"):
        await asyncio.sleep(3600)
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})
