# laurelin.asgi.lifespan — the ASGI lifespan protocol (spec 2.0, with `state`).
#
# One task runs the app with a `lifespan` scope for the life of the server. `--lifespan auto`
# uses it if the app supports it (an app that raises before receiving the startup event simply
# does not); `on` requires it; `off` never calls it. A `startup.failed` (or an exception during
# startup with `on`) stops the server with the app's message.
from __future__ import annotations

import asyncio
import logging
from typing import Any

from laurelin.importer import ASGIApp, Message

logger = logging.getLogger("laurelin.error")

LIFESPAN_SCOPE_VERSION = {"version": "3.0", "spec_version": "2.0"}


class LifespanFailure(Exception):
    """The app reported (or raised) a lifespan startup or shutdown failure."""


class Lifespan:
    """Drive the app's lifespan events; `state` is what the app put in scope["state"]."""

    def __init__(self, app: ASGIApp, mode: str) -> None:
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = False
        self._receive_queue: asyncio.Queue[Message] = asyncio.Queue()
        self._startup_done = asyncio.Event()
        self._shutdown_done = asyncio.Event()
        self._failure: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._started_receiving = False

    async def startup(self) -> None:
        """Run lifespan startup.

        Raises:
            LifespanFailure: the app reported startup.failed, or raised with --lifespan on.
        """
        if self.mode == "off":
            return
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._main())
        await self._receive_queue.put({"type": "lifespan.startup"})
        await self._startup_done.wait()
        if self._failure is not None:
            await self._stop()
            raise LifespanFailure(self._failure)

    async def shutdown(self) -> None:
        """Run lifespan shutdown (if startup ran).

        Raises:
            LifespanFailure: the app reported shutdown.failed.
        """
        if not self.supported or self._task is None:
            return
        await self._receive_queue.put({"type": "lifespan.shutdown"})
        await self._shutdown_done.wait()
        await self._stop()
        if self._failure is not None:
            raise LifespanFailure(self._failure)

    async def _stop(self) -> None:
        """Cancel the lifespan call if the app still waits in it (e.g. in receive() after
        reporting startup.failed), so no task is left pending when the loop closes."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": LIFESPAN_SCOPE_VERSION, "state": self.state}
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise  # by _stop(): the outcome is already known
        except BaseException as exc:
            if not self._started_receiving and self.mode == "auto":
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
                self.supported = False
            elif not self._startup_done.is_set() or not self._shutdown_done.is_set():
                self._failure = f"{type(exc).__name__}: {exc}"
                logger.error("Exception in 'lifespan' protocol", exc_info=exc)
            if not isinstance(exc, Exception):
                self._startup_done.set()
                self._shutdown_done.set()
                raise
        else:
            if not self._startup_done.is_set() and self.mode == "on":
                self._failure = "the app returned from the lifespan scope before startup completed"
        finally:
            self._startup_done.set()
            self._shutdown_done.set()

    async def _receive(self) -> Message:
        self._started_receiving = True
        self.supported = True
        return await self._receive_queue.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._startup_done.set()
        elif kind == "lifespan.startup.failed":
            self._failure = str(message.get("message", "")) or "lifespan startup failed"
            self._startup_done.set()
        elif kind == "lifespan.shutdown.complete":
            self._shutdown_done.set()
        elif kind == "lifespan.shutdown.failed":
            self._failure = str(message.get("message", "")) or "lifespan shutdown failed"
            self._shutdown_done.set()
        else:
            raise RuntimeError(f"Unexpected ASGI lifespan message {kind!r}")
