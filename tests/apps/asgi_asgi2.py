# An ASGI 2 ("double callable") application: the class is called with the scope, and the
# instance is awaited with receive and send. laurelin must adapt it to ASGI 3.
from __future__ import annotations

import json
from typing import Any

from asgi_app import Receive, Scope, Send, read_body


class Application:
    def __init__(self, scope: Scope) -> None:
        if scope["type"] != "http":
            raise ValueError(f"unsupported scope type {scope['type']!r}")
        self.scope = scope

    async def __call__(self, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        answer: dict[str, Any] = {
            "style": "asgi2",
            "type": self.scope["type"],
            "method": self.scope["method"],
            "path": self.scope["path"],
            "body": body.decode("latin-1"),
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})
