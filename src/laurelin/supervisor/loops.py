# laurelin.supervisor.loops — choosing and preparing the event loop (--loop, ASGI_THREADS, -v 3).
#
# uvloop when installed (auto) or asked for. No loop-wide task factory: the ASGI bridge starts
# its own app tasks eagerly (asgi/context.py), and the app's own create_task() calls keep the
# ordinary semantics. (asyncio's eager_task_factory on uvloop also breaks on Python 3.13.)
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class LoopSetupError(Exception):
    """The requested event loop is not available; str() is the line to show."""


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for the loop named by --loop.

    Raises:
        LoopSetupError: --loop uvloop without uvloop installed.
    """
    if name in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if name == "uvloop":
                raise LoopSetupError(
                    "--loop uvloop: uvloop is not installed (pip install 'laurelin[standard]')"
                ) from None
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def prepare_loop(loop: asyncio.AbstractEventLoop, verbosity: int) -> None:
    """The ASGI_THREADS executor and asyncio debug at -v 3."""
    threads = os.environ.get("ASGI_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        loop.set_default_executor(ThreadPoolExecutor(max_workers=int(threads)))
    if verbosity >= 3:
        loop.set_debug(True)
