# laurelin.django.access — runserver's request lines, in Daphne's runserver format.
#
# Installed as the server's access sink (laurelin.logs.set_access_sink) by the runserver command,
# so projects' LOGGING settings for Daphne keep working: every line goes through the
# "django.channels.server" logger, HTTP as `HTTP GET /path 200 [0.01, 127.0.0.1:5000]` (INFO, 404
# and other 4xx WARNING, 5xx ERROR, coloured by Django's runserver style), WebSocket events as
# `WebSocket HANDSHAKING /ws/ [127.0.0.1:5000]` and CONNECT, REJECT, DISCONNECT (INFO). As in
# Daphne, the values are passed as a mapping, so filters and formatters see them in record.args.
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from laurelin.logs import format_client

logger = logging.getLogger("django.channels.server")

HTTP_LINE = "HTTP %(method)s %(path)s %(status)s [%(time_taken).2f, %(client)s]"
WEBSOCKET_VERBS = {
    "WSCONNECTING": "HANDSHAKING",
    "WSCONNECT": "CONNECT",
    "WSREJECT": "REJECT",
    "WSDISCONNECT": "DISCONNECT",
}


def _plain(text: str) -> str:
    return text


class RunserverAccessLog:
    """An access sink writing Daphne's runserver lines; `style` is the command's Django style."""

    def __init__(self, style: Any = None) -> None:
        self.style = style

    def _styled(self, status: int) -> tuple[int, Callable[[str], str]]:
        """The log level and the colour of a response line, chosen as Daphne chooses them."""
        style = self.style
        if 200 <= status < 300:
            return logging.INFO, getattr(style, "HTTP_SUCCESS", _plain)
        if 100 <= status < 200:
            return logging.INFO, getattr(style, "HTTP_INFO", _plain)
        if status == 304:
            return logging.INFO, getattr(style, "HTTP_NOT_MODIFIED", _plain)
        if 300 <= status < 400:
            return logging.INFO, getattr(style, "HTTP_REDIRECT", _plain)
        if status == 404:
            return logging.WARNING, getattr(style, "HTTP_NOT_FOUND", _plain)
        if 400 <= status < 500:
            return logging.WARNING, getattr(style, "HTTP_BAD_REQUEST", _plain)
        return logging.ERROR, getattr(style, "HTTP_SERVER_ERROR", _plain)

    def http(
        self,
        client: tuple[str, int] | None,
        method: str,
        target: str,
        status: int,
        size: int,
        duration: float,
    ) -> None:
        """One completed HTTP response."""
        level, colour = self._styled(status)
        if not logger.isEnabledFor(level):
            return
        details = {
            "method": method,
            "path": target,
            "status": status,
            "client": format_client(client),
            "time_taken": duration,
            "size": size,
        }
        logger.log(level, colour(HTTP_LINE), details)

    def websocket(self, client: tuple[str, int] | None, action: str, path: str) -> None:
        """One WebSocket event."""
        verb = WEBSOCKET_VERBS.get(action, action)
        logger.info(
            f"WebSocket {verb} %(path)s [%(client)s]",
            {"path": path, "client": format_client(client)},
        )
