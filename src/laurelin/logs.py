# laurelin.logs — logging set-up (-v, --log-fmt, --log-config) and the access log.
#
# Server messages go through the "laurelin.error" logger to stderr in Daphne's format. The access
# log is Daphne's line (`ip:port - - [27/Nov/2026:10:00:00] "GET /path?q" 200 1234`) written
# through the "laurelin.access" logger: to stdout at -v 1 and up, to --access-log FILE when given,
# nowhere with --no-access-log. Anything a client controls is escaped before it reaches a log
# line, so a request cannot forge lines (log injection, CVE-2020-7694). An `AccessSink` may take
# the access records instead (Django's runserver writes them in Daphne's runserver format).
from __future__ import annotations

import json
import logging
import logging.config
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from laurelin.config import Config

error_logger = logging.getLogger("laurelin.error")
access_logger = logging.getLogger("laurelin.access")

_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


def configure_logging(config: Config) -> None:
    """Apply -v, --log-fmt, --access-log and then --log-config (which may override them).

    Raises:
        ValueError: the access log cannot be opened or the --log-config file is unusable (one
            line, naming the file).
    """
    level = _LEVELS.get(config.verbosity, logging.DEBUG)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_laurelin", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(config.log_fmt))
    handler._laurelin = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    error_logger.setLevel(level)

    for old in list(access_logger.handlers):
        access_logger.removeHandler(old)
        old.close()
    access_logger.propagate = False
    target = config.access_log
    if config.no_access_log:
        target = None
    elif target is None and config.verbosity >= 1:
        target = "-"
    if target is None:
        access_logger.setLevel(logging.CRITICAL + 1)
    else:
        access_handler: logging.Handler
        if target == "-":
            access_handler = logging.StreamHandler(sys.stdout)
        else:
            try:
                access_handler = logging.FileHandler(target, encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"--access-log {target}: {exc.strerror or exc}") from None
        access_handler.setFormatter(logging.Formatter("%(message)s"))
        access_logger.addHandler(access_handler)
        access_logger.setLevel(logging.INFO)
    if config.log_config:
        load_log_config(config.log_config)


def load_log_config(path: str) -> None:
    """Apply a logging configuration file: dictConfig JSON or YAML, or fileConfig INI.

    Raises:
        ValueError: the file cannot be read or understood (one line, naming the file).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--log-config {path}: {exc.strerror or exc}") from None
    suffix = file.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError(
                f"--log-config {path}: YAML needs PyYAML (pip install 'laurelin[yaml]')"
            ) from None
    try:
        if suffix == ".json":
            _dict_config(json.loads(text))
        elif suffix in (".yaml", ".yml"):
            _dict_config(yaml.safe_load(text))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except Exception as exc:
        # Parser and dictConfig messages span lines; the user gets one.
        reason = " ".join(str(exc).split())
        raise ValueError(f"--log-config {path}: {type(exc).__name__}: {reason}") from None


def _dict_config(data: Any) -> None:
    if not isinstance(data, dict):
        raise TypeError("expected a mapping with a 'version' key (logging dictConfig schema)")
    # As with the .ini form: loggers the file does not name (laurelin's own, the app's) keep
    # working unless the file says otherwise; dictConfig's own default would silence them.
    data.setdefault("disable_existing_loggers", False)
    logging.config.dictConfig(data)


def escape(text: str) -> str:
    """Make client-controlled text safe for a one-line log record."""
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii").replace('"', '\\"')


class _Clock:
    __slots__ = ("second", "text")

    def __init__(self) -> None:
        self.second = -1
        self.text = ""


_clock = _Clock()


def log_date() -> str:
    """Daphne's access-log timestamp (27/Nov/2026:10:00:00), computed once a second."""
    now = int(time.time())
    if now != _clock.second:
        _clock.second = now
        _clock.text = time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime(now))
    return _clock.text


def format_client(client: tuple[str, int] | None) -> str:
    """ip:port as Daphne prints it (the unix-socket peer has no address)."""
    if client is None:
        return "unix"
    return f"{client[0]}:{client[1]}"


class AccessSink(Protocol):
    """Where access records go instead of the "laurelin.access" line (see `set_access_sink`).

    Client-controlled text (method, target, path) arrives already escaped.
    """

    def http(
        self,
        client: tuple[str, int] | None,
        method: str,
        target: str,
        status: int,
        size: int,
        duration: float,
    ) -> None:
        """One completed HTTP response; `duration` in seconds since the request arrived."""

    def websocket(self, client: tuple[str, int] | None, action: str, path: str) -> None:
        """One WebSocket event: WSCONNECTING, WSCONNECT, WSREJECT or WSDISCONNECT."""


_sink: AccessSink | None = None


def set_access_sink(sink: AccessSink | None) -> None:
    """Send every access record to `sink` (None: back to the "laurelin.access" line).

    Installing a sink turns the access log on (the "laurelin.access" logger goes to INFO), so
    the server, which asks `access_logger.isEnabledFor(INFO)` once at start-up, reports records:
    install it before the server starts.
    """
    global _sink
    _sink = sink
    if sink is not None:
        access_logger.disabled = False
        access_logger.setLevel(logging.INFO)


def log_access(
    client: tuple[str, int] | None,
    method: str,
    target: str,
    status: int,
    size: int,
    *,
    duration: float = 0.0,
) -> None:
    """Write one access-log line (callers check `access_logger.isEnabledFor(INFO)` first).

    `duration` (seconds from the request's arrival to its response's end) is shown only by an
    access sink (Daphne's runserver line has it; its access-log line does not).
    """
    sink = _sink
    if sink is not None:
        sink.http(client, escape(method), escape(target), status, size, duration)
        return
    access_logger.info(
        '%s - - [%s] "%s %s" %d %d',
        format_client(client),
        log_date(),
        escape(method),
        escape(target),
        status,
        size,
    )


def log_websocket(client: tuple[str, int] | None, action: str, path: str) -> None:
    """Write one WebSocket access-log line (callers check `access_logger.isEnabledFor(INFO)`).

    `action` is WSCONNECTING, WSCONNECT, WSREJECT or WSDISCONNECT, as in Daphne's access log.
    """
    sink = _sink
    if sink is not None:
        sink.websocket(client, action, escape(path))
        return
    access_logger.info(
        '%s - - [%s] "%s %s" - -', format_client(client), log_date(), action, escape(path)
    )
