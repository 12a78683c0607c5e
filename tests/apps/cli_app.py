# The app the command-line, listener and logging tests serve, plus objects that fail to load.
#
# `application` answers by path: "/" a fixed text, "/scope" the parts of the scope the command
# line shapes (JSON), "/loop" which event loop runs it, "/log" logs at every level through the
# "cli_app" logger, "/body" reads the request body and answers its size, "/slow?N" logs that it
# started and answers after N seconds, "/threads" answers how many threads the default executor
# used for eight overlapping calls, "/raise..." raises. The other names exist to be loaded
# wrongly: a factory, failing factories, a value that is not callable, and lifespan apps whose
# startup fails.
from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

logger = logging.getLogger("cli_app")

not_an_app = 42


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The app served in the tests; see the module comment for its paths."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    path = scope["path"]
    if path == "/scope":
        shown = {
            "client": scope["client"],
            "server": scope["server"],
            "scheme": scope["scheme"],
            "root_path": scope["root_path"],
            "state": scope.get("state"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        }
        await _respond(send, json.dumps(shown).encode(), b"application/json")
    elif path == "/loop":
        loop = asyncio.get_running_loop()
        shown = {"module": type(loop).__module__, "debug": loop.get_debug()}
        await _respond(send, json.dumps(shown).encode(), b"application/json")
    elif path == "/log":
        logger.debug("cli_app debug message")
        logger.info("cli_app info message")
        logger.warning("cli_app warning message")
        await _respond(send, b"logged")
    elif path == "/body":
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await _respond(send, str(size).encode())
    elif path == "/threads":
        loop = asyncio.get_running_loop()
        idents = await asyncio.gather(*(loop.run_in_executor(None, _blocking) for _ in range(8)))
        await _respond(send, str(len(set(idents))).encode())
    elif path.startswith("/raise"):
        raise ValueError("the app failed on purpose")
    elif path == "/slow":
        logger.warning("slow request started")
        await asyncio.sleep(float(scope["query_string"] or b"1"))
        await _respond(send, b"slow done")
    else:
        await _respond(send, b"cli ok")


def _blocking() -> int:
    # Long enough that the eight calls overlap: a pool with room starts a thread for each.
    time.sleep(0.2)
    return threading.get_ident()


async def _respond(send: Any, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["lifespan"] = "ran"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def make_app() -> Any:
    """An app factory, for --factory."""
    return application


def exploding_factory() -> Any:
    """A factory that fails."""
    raise RuntimeError("factory exploded")


async def async_factory() -> Any:
    """A factory that is a coroutine function (not supported: it must return the app)."""
    return application


async def startup_failed_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reports lifespan.startup.failed with its reason."""
    assert scope["type"] == "lifespan"
    message = await receive()
    assert message["type"] == "lifespan.startup"
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})


async def startup_raising_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Raises during lifespan startup."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("cannot open the connection pool")
    await application(scope, receive, send)


async def no_lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app without lifespan support: it refuses every other scope type."""
    if scope["type"] != "http":
        raise ValueError(f"unsupported scope type {scope['type']!r}")
    await application(scope, receive, send)
