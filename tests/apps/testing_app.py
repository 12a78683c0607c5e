# What tests/dj/test_live_server.py runs in laurelin.testing.LaurelinProcess: the application
# factory, setup and teardown callables (module level, so "spawn" can pickle them) and an app
# that tells which process serves it and what happened there before it served.
#
# GET /state: {"pid", "built_in", "setup_in", "client"}: the serving process, the process
# get_application() ran in, the process setup() ran in (null if it has not run), the ASGI client.
# GET /slow?seconds=S&marker=PATH: writes PATH (if given) on arrival, answers "slow done" S
# seconds later.
from __future__ import annotations

import asyncio
import importlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

STATE: dict[str, int] = {}


def get_application() -> Any:
    STATE["built_in"] = os.getpid()
    return app


def get_missing_application() -> Any:
    return importlib.import_module("no_such_module_for_laurelin_tests").application


def record_setup() -> None:
    STATE["setup_in"] = os.getpid()


def failing_setup() -> None:
    raise ValueError("setup failed on purpose")


class TwoArgumentError(Exception):
    """Pickles, but cannot be rebuilt from its args: the child must not send it as it is."""

    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} and {second}")


def unpicklable_setup() -> None:
    raise TwoArgumentError("one", "two")


def write_marker(path: str) -> None:
    """A teardown: leaves the serving process's pid in `path` (used through functools.partial)."""
    Path(path).write_text(str(os.getpid()))


def failing_teardown() -> None:
    raise RuntimeError("teardown failed on purpose")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    if scope["path"] == "/slow":
        query = parse_qs(scope["query_string"].decode())
        if "marker" in query:
            Path(query["marker"][0]).write_text("arrived")
        await asyncio.sleep(float(query.get("seconds", ["1"])[0]))
        return await respond(send, b"slow done")
    state = {
        "pid": os.getpid(),
        "built_in": STATE.get("built_in"),
        "setup_in": STATE.get("setup_in"),
        "client": scope["client"],
    }
    await respond(send, json.dumps(state).encode())


async def respond(send: Any, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
