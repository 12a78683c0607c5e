# laurelin — an ASGI server: HTTP/1.1, Daphne's command line, full ASGI 3.
"""laurelin: a fast, safe ASGI server that runs anything Daphne or Uvicorn runs."""

__version__ = "0.1.0"

from laurelin.config import Config

__all__ = ["Config", "__version__"]
