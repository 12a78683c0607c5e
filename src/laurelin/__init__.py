# laurelin — an ASGI server: HTTP/1.1, HTTP/2 and WebSocket, Daphne's command line, full ASGI 3.
#
# The public API: Config, run(), serve() and StartupError (docs/api.md). run(), serve() and
# StartupError live in laurelin.api and are imported on first use, so that `import laurelin`
# (and `laurelin --help`) does not load the server.
"""laurelin: a fast, safe ASGI server that runs anything Daphne or Uvicorn runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from laurelin.config import Config

if TYPE_CHECKING:
    from laurelin.api import StartupError, run, serve

__all__ = ["Config", "StartupError", "__version__", "run", "serve"]

_LAZY = frozenset({"StartupError", "run", "serve"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from laurelin import api

        return getattr(api, name)
    raise AttributeError(f"module 'laurelin' has no attribute {name!r}")
