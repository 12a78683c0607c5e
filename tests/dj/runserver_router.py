# A Channels ProtocolTypeRouter with an "http" entry and no "websocket" entry: the set-up
# mistake whose WebSocket requests laurelin logs with a hint (tests/dj/test_router_hint.py).
# `with_another_failure` is the same router, except that a WebSocket to /other fails with a
# different ValueError, which must be logged without the hint.
from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"http only"})


application = ProtocolTypeRouter({"http": http_app})


async def with_another_failure(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket" and scope["path"] == "/other":
        raise ValueError("No application configured for this room")
    await application(scope, receive, send)
