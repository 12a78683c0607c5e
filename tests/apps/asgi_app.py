# The ASGI app the bridge tests serve: one path per behaviour of the ASGI HTTP cycle.
#
# What the app cannot say in its response (an exception raised inside it by send(), the message
# receive() returned after the response, a cancellation) it writes to a marker file named by the
# request's `token` query parameter, in the directory given by $ASGI_TEST_MARKERS.
from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]

ROUTES: dict[str, Handler] = {}


def route(path: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES[path] = handler
        return handler

    return register


def record(name: str, text: str) -> None:
    """Write a marker file atomically (the test polls for it)."""
    directory = os.environ.get("ASGI_TEST_MARKERS")
    if not directory or not name:
        return
    tmp = Path(directory) / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, Path(directory) / name)


def params(scope: Scope) -> dict[str, str]:
    query = parse_qs(scope["query_string"].decode("ascii"))
    return {key: values[-1] for key, values in query.items()}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    assert scope["type"] == "http"
    path = scope["path"]
    handler = ROUTES.get(path) or (describe_scope if path.startswith("/scope/") else hello)
    await handler(scope, receive, send)


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["from_lifespan"] = "yes"
            scope["state"]["counter"] = 0
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def respond(
    send: Send, status: int, body: bytes, ctype: bytes = b"text/plain", **extra: Any
) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]}
    )
    await send({"type": "http.response.body", "body": body, **extra})


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise RuntimeError(f"unexpected {message['type']} while reading the body")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


@route("/")
async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, 200, b"Hello, world!")


@route("/scope")
async def describe_scope(scope: Scope, receive: Receive, send: Send) -> None:
    """The scope as JSON (bytes as latin-1 text), with the Python type of every value."""
    # ASGI: client and server are (host, port) tuples (or None), never lists.
    for key in ("client", "server"):
        value = scope[key]
        assert value is None or (isinstance(value, tuple) and len(value) == 2), (key, value)
    body = {key: jsonable(value) for key, value in scope.items()}
    body["types"] = {key: type(value).__name__ for key, value in scope.items()}
    body["asgi_types"] = {key: type(value).__name__ for key, value in scope["asgi"].items()}
    body["header_types"] = sorted(
        {f"{type(name).__name__},{type(value).__name__}" for name, value in scope["headers"]}
    )
    body["address_types"] = {
        key: [type(part).__name__ for part in scope[key]] if scope[key] is not None else None
        for key in ("client", "server")
    }
    await respond(send, 200, json.dumps(body).encode(), b"application/json")


@route("/state")
async def state(scope: Scope, receive: Receive, send: Send) -> None:
    """Show the request's state, then change it: the next request must not see the change."""
    state = scope.get("state")
    seen = json.dumps(jsonable(state) if state is not None else None).encode()
    if state is not None:
        state["mutated_by"] = params(scope).get("token", "?")
        state["counter"] = state.get("counter", 0) + 1
    await respond(send, 200, seen, b"application/json")


@route("/mutate-scope")
async def mutate_scope(scope: Scope, receive: Receive, send: Send) -> None:
    """Change the scope's nested dicts; the next request's scope must not show it."""
    scope["asgi"]["mutated"] = True
    scope["extensions"]["mutated"] = {}
    await respond(send, 200, b"mutated")


@route("/parts")
async def parts(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer each http.request message with one line `<len> <more_body>` as it arrives."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    while True:
        message = await receive()
        more = message.get("more_body", False)
        line = f"{message['type']} {len(message.get('body', b''))} {more}\n".encode()
        await send({"type": "http.response.body", "body": line, "more_body": True})
        if message["type"] != "http.request" or not more:
            break
    await send({"type": "http.response.body", "body": b"end\n"})


@route("/echo")
async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    await respond(send, 200, await read_body(receive))


@route("/wait-disconnect")
async def wait_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the whole body, then wait in receive() for what comes next (the disconnect)."""
    token = params(scope)["token"]
    body = await read_body(receive)
    record(f"{token}.waiting", str(len(body)))
    try:
        message = await asyncio.wait_for(receive(), 20)
    except TimeoutError:
        record(f"{token}.after", "timeout: receive() never returned")
        return
    record(f"{token}.after", message["type"])


@route("/record-receive")
async def record_receive(scope: Scope, receive: Receive, send: Send) -> None:
    """Record every message receive() gives (`<token>.progress` after each one) until
    http.disconnect; then `<token>.done`."""
    token = params(scope)["token"]
    seen: list[str] = []
    while True:
        try:
            message = await asyncio.wait_for(receive(), 20)
        except TimeoutError:
            seen.append("timeout")
            break
        seen.append(
            f"{message['type']} {len(message.get('body', b''))} {message.get('more_body', False)}"
        )
        record(f"{token}.progress", json.dumps(seen))
        if message["type"] == "http.disconnect":
            break
    record(f"{token}.done", json.dumps(seen))


@route("/after-response")
async def after_response(scope: Scope, receive: Receive, send: Send) -> None:
    """Complete the response, then call receive(): it must say http.disconnect at once."""
    token = params(scope)["token"]
    await read_body(receive)
    await respond(send, 200, b"done")
    try:
        message = await asyncio.wait_for(receive(), 10)
    except TimeoutError:
        record(f"{token}.after", "timeout: receive() never returned")
        return
    record(f"{token}.after", message["type"])


async def _send_error_case(case: str, scope: Scope, receive: Receive, send: Send) -> None:
    start = {"type": "http.response.start", "status": 200, "headers": []}
    if case == "body-before-start":
        await send({"type": "http.response.body", "body": b"too early"})
    elif case == "start-twice":
        await send(start)
        await send(start)
    elif case == "unknown-type":
        await send({"type": "http.response.bogus"})
    elif case == "no-type":
        await send({"status": 200, "headers": []})
    elif case == "websocket-type":
        await send({"type": "websocket.accept"})
    elif case == "body-str":
        await send(start)
        await send({"type": "http.response.body", "body": "not bytes"})
    elif case == "status-str":
        await send({"type": "http.response.start", "status": "200", "headers": []})
    elif case == "status-missing":
        await send({"type": "http.response.start", "headers": []})
    elif case == "headers-str":
        await send({"type": "http.response.start", "status": 200, "headers": [("x-name", "value")]})
    elif case == "header-value-str":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-name", "v")]})
    elif case == "header-crlf":
        headers = [(b"x-name", b"value\r\nx-injected: yes")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
    elif case == "after-complete":
        await respond(send, 200, b"complete")
        await send({"type": "http.response.body", "body": b"one more"})
    elif case == "start-after-complete":
        await respond(send, 200, b"complete")
        await send(start)
    elif case == "after-disconnect":
        # Stream until the server says the client is gone (the test closes after one part).
        await send(start)
        for _ in range(400):
            await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
            await asyncio.sleep(0.025)
        raise AssertionError("send() never noticed that the client went away")
    else:
        raise AssertionError(f"unknown case {case}")


@route("/send-error")
async def send_error(scope: Scope, receive: Receive, send: Send) -> None:
    """Break one send() rule; record what send() raised; let it propagate."""
    query = params(scope)
    try:
        await _send_error_case(query["case"], scope, receive, send)
    except BaseException as exc:
        record(
            query["token"],
            json.dumps(
                {
                    "type": type(exc).__name__,
                    "oserror": isinstance(exc, OSError),
                    "message": str(exc),
                }
            ),
        )
        raise
    record(query["token"], json.dumps({"type": None}))


@route("/raise-before-start")
async def raise_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    raise ValueError(f"boom before start {params(scope).get('token', '')}")


async def _partial(scope: Scope, send: Send) -> None:
    headers = [(b"content-type", b"text/plain")]
    if params(scope).get("framing") == "length":
        headers.append((b"content-length", b"1000"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"partial body", "more_body": True})


@route("/raise-after-start")
async def raise_after_start(scope: Scope, receive: Receive, send: Send) -> None:
    await _partial(scope, send)
    raise ValueError(f"boom after start {params(scope).get('token', '')}")


@route("/return-without-response")
async def return_without_response(scope: Scope, receive: Receive, send: Send) -> None:
    return None


@route("/return-mid-response")
async def return_mid_response(scope: Scope, receive: Receive, send: Send) -> None:
    await _partial(scope, send)


async def _sleep_recording(token: str, seconds: float) -> None:
    record(f"{token}.started", "1")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        record(f"{token}.cancelled", "CancelledError")
        raise
    record(f"{token}.finished", "1")


@route("/slow")
async def slow(scope: Scope, receive: Receive, send: Send) -> None:
    """Sleep `seconds` (recording the start and any cancellation), then answer 200."""
    query = params(scope)
    await _sleep_recording(query.get("token", ""), float(query.get("seconds", "1")))
    await respond(send, 200, b"slow done")


@route("/work-after-response")
async def work_after_response(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer at once, then keep working `seconds` (as a background task would)."""
    query = params(scope)
    await respond(send, 200, b"answered")
    await _sleep_recording(query.get("token", ""), float(query.get("seconds", "1")))


@route("/slow-stream")
async def slow_stream(scope: Scope, receive: Receive, send: Send) -> None:
    """Start a chunked response, sleep `seconds`, then finish it."""
    query = params(scope)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first part;", "more_body": True})
    await _sleep_recording(query.get("token", ""), float(query.get("seconds", "1")))
    await send({"type": "http.response.body", "body": b"last part"})


@route("/ignore-disconnect")
async def ignore_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    """Keep working without ever looking at receive(), long after the client left."""
    query = params(scope)
    await _sleep_recording(query["token"], 30)
