# The side channel the end-to-end test apps (h1_app.py, ws_app.py) share: tests observe what an
# app saw, in the server's own process. `record(tag, event)` appends to EVENTS[tag]; the HTTP
# endpoints below let a test wait for an event (`/events?tag=T&want=E`, bounded, `|` separates
# alternatives), open a gate an app waits on (`/release?tag=T`) and read how far a streaming app
# got (`/progress?tag=T`, from PROGRESS[tag]).
from __future__ import annotations

import asyncio
import json
from typing import Any

EVENTS: dict[str, list[str]] = {}
_CHANGED: dict[str, asyncio.Event] = {}
GATES: dict[str, asyncio.Event] = {}
PROGRESS: dict[str, dict[str, Any]] = {}


def record(tag: str, event: str) -> None:
    EVENTS.setdefault(tag, []).append(event)
    changed = _CHANGED.pop(tag, None)
    if changed is not None:
        changed.set()


async def wait_event(tag: str, want: str, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    wanted = tuple(want.split("|"))
    while not any(event.startswith(wanted) for event in EVENTS.get(tag, [])):
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        changed = _CHANGED.setdefault(tag, asyncio.Event())
        try:
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            break
    return EVENTS.get(tag, [])


def gate(tag: str) -> asyncio.Event:
    return GATES.setdefault(tag, asyncio.Event())


async def events(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    """EVENTS[tag], after waiting up to `timeout` seconds for an event starting with `want`
    (or with one of its `|`-separated alternatives)."""
    tag = query.get("tag", "")
    found = await wait_event(tag, query.get("want", ""), float(query.get("timeout", "10")))
    await _respond(send, json.dumps(found).encode(), b"application/json")


async def release(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    gate(query.get("tag", "")).set()
    await _respond(send, b"released", b"text/plain")


async def progress(scope: Any, receive: Any, send: Any, query: dict[str, str]) -> None:
    body = json.dumps(PROGRESS.get(query.get("tag", ""))).encode()
    await _respond(send, body, b"application/json")


async def _respond(send: Any, body: bytes, ctype: bytes) -> None:
    headers = [(b"content-type", ctype)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
