# The Autobahn TestSuite's server under test: a plain ASGI 3 app that accepts every WebSocket
# and echoes each message back unchanged (text as text, bytes as bytes, empty ones too),
# answers lifespan startup/shutdown, and gives HTTP requests a small 200 text response.
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HTTP_BODY = b"laurelin compliance echo app: open a WebSocket to any path to have messages echoed.\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await websocket_echo(receive, send)
    elif scope["type"] == "http":
        await http_response(receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)


async def websocket_echo(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.receive":
            # Exactly one of text/bytes is set; an empty message is "" or b"", not None.
            text = message.get("text")
            if text is not None:
                reply: Message = {"type": "websocket.send", "text": text}
            else:
                reply = {"type": "websocket.send", "bytes": message.get("bytes") or b""}
            try:
                await send(reply)
            except OSError:  # the peer went away mid-echo (ASGI: send on a closed socket)
                return
        elif kind == "websocket.disconnect":
            return


async def http_response(receive: Receive, send: Send) -> None:
    more_body = True
    while more_body:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more_body = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(HTTP_BODY)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": HTTP_BODY})


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
