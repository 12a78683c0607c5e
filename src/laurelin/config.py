# laurelin.config — every server option, declared once.
#
# Rule: an option exists only as a field of `Config`. Its metadata (flags, help, group, choices)
# is what the command line (cli.py), the environment (LAURELIN_<NAME>), the TOML config file
# (--config), the keywords of laurelin.run() and docs/cli.md are built from, so they cannot
# drift apart. Config is data: derived objects (sockets, SSL contexts,
# the loaded app, encoded headers) are built at start-up elsewhere and never written back here.
from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "LAURELIN_"
# The worker count Heroku, Render and gunicorn users already set; LAURELIN_WORKERS wins over it.
WEB_CONCURRENCY = "WEB_CONCURRENCY"
# Options that only the command line (or LAURELIN_CONFIG_FILE) gives: a config file cannot name
# another config file, and --print-config is an action, not a setting.
COMMAND_LINE_ONLY = frozenset({"config_file", "print_config"})
DAPHNE_LOG_FORMAT = "%(asctime)-15s %(levelname)-8s %(message)s"

GROUPS = (
    "Application",
    "Listening",
    "TLS",
    "HTTP",
    "HTTP/2",
    "Limits and timeouts",
    "Proxies",
    "WebSocket",
    "Logging",
    "Process",
)


def opt(
    default: Any,
    *flags: str,
    help: str,
    group: str,
    kind: str = "value",
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
    parse: Callable[[str], Any] | None = None,
    env: bool = True,
) -> Any:
    """Declare a Config field together with its command-line and environment surface.

    Args:
        default: The default value (immutable: tuples, not lists).
        flags: Command-line flags; the first long one names the option in docs.
        help: One line for `--help` and docs/cli.md.
        group: The `--help` section.
        kind: "value", "flag" (store_true), "append" (repeatable) or "negate" (store_false).
        choices: Allowed values, if the option is an enumeration.
        metavar: How the value is shown in `--help`.
        parse: Converts the text from the command line or environment to the field type.
        env: Whether LAURELIN_<NAME> may set it.
    """
    meta = {
        "flags": flags,
        "help": help,
        "group": group,
        "kind": kind,
        "choices": tuple(choices) if choices else None,
        "metavar": metavar,
        "parse": parse,
        "env": env,
    }
    return field(default=default, metadata=meta)


def optional_timeout(text: str) -> float | None:
    """Parse a timeout where 0, a negative number, "", "none" or "off" mean "no limit" (Daphne
    reads --http-timeout 0 so)."""
    value = optional_float(text)
    return None if value is None or value <= 0 else value


def optional_float(text: str) -> float | None:
    """Parse a float where "", "none" or a negative number mean "no limit"."""
    if text.strip().lower() in ("", "none", "off"):
        return None
    value = float(text)
    return None if value < 0 else value


def optional_int(text: str) -> int | None:
    """Parse an int where "", "none" or 0 / a negative number mean "no limit"."""
    if text.strip().lower() in ("", "none", "off"):
        return None
    value = int(text)
    return None if value <= 0 else value


def port_number(text: str) -> int:
    """Parse a TCP port: 0 (any free port) to 65535."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{text!r} is not a TCP port (0-65535)")
    return value


def file_descriptor(text: str) -> int:
    """Parse a file descriptor number (0 or more)."""
    value = int(text)
    if value < 0:
        raise ValueError(f"{text!r} is not a file descriptor (0 or more)")
    return value


def seconds(text: str) -> float:
    """Parse a duration in seconds that cannot be negative."""
    value = float(text)
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def data_rate(text: str) -> float:
    """Parse a rate in bytes per second; 0 turns the minimum off."""
    value = float(text)
    if not 0 <= value < float("inf"):  # also refuses NaN
        raise ValueError(f"{text!r} is not a rate in bytes per second (0 or more)")
    return value


def non_negative_int(text: str) -> int:
    """Parse a count that may be 0 but not negative."""
    value = int(text)
    if value < 0:
        raise ValueError(f"{text!r} must be 0 or more")
    return value


def positive_int(text: str) -> int:
    """Parse a count or size that must be at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"{text!r} must be 1 or more")
    return value


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def header_value(text: str) -> str:
    """Check a response header value given on the command line (RFC 9110 5.5).

    CR, LF and NUL would let the value end the header line and forge others; anything outside
    Latin-1 cannot be sent on the wire.
    """
    if any(char in text for char in "\r\n\0"):
        raise ValueError(f"{text!r}: a header value cannot contain CR, LF or NUL")
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{text!r}: a header value must be Latin-1 text") from None
    return text


def header_field(text: str) -> str:
    """Check a NAME:VALUE response header (--header): NAME a token, VALUE a field value."""
    name, sep, value = text.partition(":")
    if not sep or _TOKEN.fullmatch(name.strip()) is None:
        raise ValueError(f"{text!r}: expected NAME:VALUE with NAME a header name")
    header_value(value)
    return text


def peer_list(text: str) -> str:
    """Check a --forwarded-allow-ips list: its networks must parse ("10.0.0.0/8")."""
    for item in text.split(","):
        item = item.strip()
        if "/" in item:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network") from None
    return text


def parse_bool(text: str) -> bool:
    """Parse a boolean from an environment variable."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything that shapes one laurelin server. Immutable; build a new one to change it."""

    app: str = opt(
        "",
        help="The ASGI application: module.path:attribute (module.path alone means :application).",
        group="Application",
        metavar="APPLICATION",
    )
    app_dir: str = opt(
        ".",
        "--app-dir",
        help="Directory put first on sys.path before the application is imported.",
        group="Application",
        metavar="DIR",
    )
    factory: bool = opt(
        False,
        "--factory",
        help="The application path names a factory: call it without arguments to get the app.",
        group="Application",
        kind="flag",
        parse=parse_bool,
    )
    lifespan: str = opt(
        "auto",
        "--lifespan",
        help="ASGI lifespan protocol: auto (use it if the app supports it), on (required), off.",
        group="Application",
        choices=("auto", "on", "off"),
    )
    root_path: str = opt(
        "",
        "--root-path",
        help="ASGI root_path: the prefix the app is mounted under (Daphne-Root-Path overrides it).",
        group="Application",
        metavar="PATH",
    )
    loop: str = opt(
        "auto",
        "--loop",
        help="Event loop: uvloop when installed (auto), asyncio, or uvloop.",
        group="Application",
        choices=("auto", "asyncio", "uvloop"),
    )

    host: str | None = opt(
        None,
        "-b",
        "--bind",
        help="Address to listen on (IPv4, IPv6 with or without brackets, or a host name). "
        "Alone: port 8000.",
        group="Listening",
        metavar="ADDRESS",
    )
    port: int | None = opt(
        None,
        "-p",
        "--port",
        help="TCP port to listen on. Alone: address 127.0.0.1. Neither -b, -p, -u, --fd nor -e: "
        "127.0.0.1:8000.",
        group="Listening",
        parse=port_number,
    )
    unix_socket: str | None = opt(
        None,
        "-u",
        "--unix-socket",
        help="Listen on this Unix socket path.",
        group="Listening",
        metavar="PATH",
    )
    fd: int | None = opt(
        None,
        "--fd",
        help="Adopt this already-listening file descriptor.",
        group="Listening",
        parse=file_descriptor,
    )
    endpoints: tuple[str, ...] = opt(
        (),
        "-e",
        "--endpoint",
        help="Daphne endpoint string, repeatable: tcp:port=8000:interface=0.0.0.0, "
        "tcp6:port=8000:interface=\\:\\:, unix:/path[:mode=660], fd:fileno=3, "
        "ssl:443:privateKey=key.pem:certKey=cert.pem[:extraCertChain=chain.pem].",
        group="Listening",
        kind="append",
        metavar="ENDPOINT",
    )
    ssl_certfile: str | None = opt(
        None,
        "--ssl-certfile",
        help="Serve TLS on every listener with this certificate (PEM; the chain may follow it).",
        group="TLS",
        metavar="PATH",
    )
    ssl_keyfile: str | None = opt(
        None,
        "--ssl-keyfile",
        help="The certificate's private key (PEM), unless --ssl-certfile holds it too.",
        group="TLS",
        metavar="PATH",
    )
    ssl_keyfile_password: str | None = opt(
        None,
        "--ssl-keyfile-password",
        help="Password of an encrypted --ssl-keyfile.",
        group="TLS",
        metavar="PASSWORD",
    )
    ssl_ca_certs: str | None = opt(
        None,
        "--ssl-ca-certs",
        help="CA certificates (PEM) that client certificates are checked against.",
        group="TLS",
        metavar="PATH",
    )
    ssl_cert_reqs: int = opt(
        0,
        "--ssl-cert-reqs",
        help="Client certificates: 0 not asked for, 1 optional, 2 required.",
        group="TLS",
        parse=int,
        choices=("0", "1", "2"),
    )
    ssl_ciphers: str | None = opt(
        None,
        "--ssl-ciphers",
        help="OpenSSL cipher list for TLS 1.2 and older (default: Python's secure defaults).",
        group="TLS",
        metavar="CIPHERS",
    )
    ssl_handshake_timeout: float = opt(
        10.0,
        "--ssl-handshake-timeout",
        help="Seconds a client has to complete the TLS handshake; then it is dropped.",
        group="TLS",
        parse=seconds,
        metavar="SECONDS",
    )
    backlog: int = opt(
        2048,
        "--backlog",
        help="Maximum number of pending connections in the listen queue.",
        group="Listening",
        parse=positive_int,
    )

    server_name: str = opt(
        "laurelin",
        "-s",
        "--server-name",
        help="Value of the Server response header.",
        group="HTTP",
        metavar="NAME",
        parse=header_value,
    )
    no_server_name: bool = opt(
        False,
        "--no-server-name",
        help="Send no Server response header.",
        group="HTTP",
        kind="flag",
        parse=parse_bool,
    )
    date_header: bool = opt(
        True,
        "--no-date-header",
        help="Send no Date response header (RFC 9110 asks for one; Daphne sends none).",
        group="HTTP",
        kind="negate",
        parse=parse_bool,
    )
    headers: tuple[str, ...] = opt(
        (),
        "--header",
        help="Default response header NAME:VALUE added to every response, repeatable.",
        group="HTTP",
        kind="append",
        metavar="NAME:VALUE",
        parse=header_field,
    )

    http: str = opt(
        "auto",
        "--http",
        help="HTTP versions served: auto (HTTP/1.1 and HTTP/2: ALPN h2 over TLS, prior "
        "knowledge or Upgrade: h2c in cleartext), 1 (HTTP/1.1 only) or 2 (HTTP/2 only).",
        group="HTTP/2",
        choices=("auto", "1", "2"),
    )
    h2_max_concurrent_streams: int = opt(
        100,
        "--h2-max-concurrent-streams",
        help="Streams one HTTP/2 connection may have open at once; more are refused "
        "(REFUSED_STREAM).",
        group="HTTP/2",
        parse=positive_int,
        metavar="COUNT",
    )
    h2_max_reset_streams: int = opt(
        1000,
        "--h2-max-reset-streams",
        help="Streams an HTTP/2 client may reset (or have refused) per 10 s; more is a rapid "
        "reset attack (CVE-2023-44487): GOAWAY ENHANCE_YOUR_CALM.",
        group="HTTP/2",
        parse=positive_int,
        metavar="COUNT",
    )
    h2_max_control_frames: int = opt(
        1000,
        "--h2-max-control-frames",
        help="PING, SETTINGS, PRIORITY, empty DATA and unknown frames an HTTP/2 client may send "
        "per 10 s; more is a flood: GOAWAY ENHANCE_YOUR_CALM.",
        group="HTTP/2",
        parse=positive_int,
        metavar="COUNT",
    )
    h2_flow_control_timeout: float = opt(
        30.0,
        "--h2-flow-control-timeout",
        help="Seconds an HTTP/2 response may wait for the client's flow-control window (or a "
        "client that does not read) before its stream is reset.",
        group="HTTP/2",
        parse=seconds,
        metavar="SECONDS",
    )

    http_timeout: float | None = opt(
        None,
        "-t",
        "--http-timeout",
        help="Seconds an app may take on an HTTP request: 503 if no response started, else the "
        "response is ended. Default (or 0): no limit.",
        group="Limits and timeouts",
        parse=optional_timeout,
        metavar="SECONDS",
    )
    application_close_timeout: float = opt(
        10.0,
        "--application-close-timeout",
        help="Seconds an app may keep running after its client disconnected before it is "
        "cancelled.",
        group="Limits and timeouts",
        parse=seconds,
        metavar="SECONDS",
    )
    timeout_keep_alive: float = opt(
        5.0,
        "--timeout-keep-alive",
        help="Seconds an idle keep-alive connection is kept open for its next request "
        "(HTTP/2: then GOAWAY).",
        group="Limits and timeouts",
        parse=seconds,
        metavar="SECONDS",
    )
    header_read_timeout: float = opt(
        30.0,
        "--header-read-timeout",
        help="Seconds a client has to send a complete request head; then 408 and close.",
        group="Limits and timeouts",
        parse=seconds,
        metavar="SECONDS",
    )
    min_request_body_rate: float = opt(
        240.0,
        "--min-request-body-rate",
        help="Slowest request body accepted, in bytes/s averaged over the time the server waits "
        "for it, from --data-rate-grace on: slower gets 408 and is closed (R.U.D.Y.). 0: off.",
        group="Limits and timeouts",
        parse=data_rate,
        metavar="BYTES_PER_S",
    )
    min_response_data_rate: float = opt(
        240.0,
        "--min-response-data-rate",
        help="Slowest a client may take what the server sends (responses, WebSocket messages), "
        "in bytes/s averaged over the time output waits for it, from --data-rate-grace on: a "
        "slower client is dropped. 0: off.",
        group="Limits and timeouts",
        parse=data_rate,
        metavar="BYTES_PER_S",
    )
    data_rate_grace: float = opt(
        5.0,
        "--data-rate-grace",
        help="Seconds of waiting on a client before the minimum data rates apply.",
        group="Limits and timeouts",
        parse=seconds,
        metavar="SECONDS",
    )
    limit_max_body_size: int | None = opt(
        None,
        "--limit-max-body-size",
        help="Largest request body in bytes; larger gets 413. Default: no limit (as Daphne).",
        group="Limits and timeouts",
        parse=optional_int,
        metavar="BYTES",
    )
    limit_request_head_size: int = opt(
        65536,
        "--limit-request-head-size",
        help="Largest request line plus headers in bytes; larger gets 431 (414 for the target). "
        "HTTP/2: the largest header list.",
        group="Limits and timeouts",
        parse=positive_int,
        metavar="BYTES",
    )
    limit_request_headers: int = opt(
        100,
        "--limit-request-headers",
        help="Most header fields in one request; more gets 431.",
        group="Limits and timeouts",
        parse=positive_int,
        metavar="COUNT",
    )
    graceful_timeout: float = opt(
        30.0,
        "--graceful-timeout",
        help="Seconds in-flight requests get to finish on shutdown before they are cancelled.",
        group="Limits and timeouts",
        parse=seconds,
        metavar="SECONDS",
    )
    limit_concurrency: int | None = opt(
        None,
        "--limit-concurrency",
        help="Most connections served at once, an HTTP/2 stream beyond its connection's first "
        "counting as one more; past it a new connection's request (or a new stream) gets 503 "
        "at once, never a queue. Default: no limit.",
        group="Limits and timeouts",
        parse=optional_int,
        metavar="COUNT",
    )

    proxy_headers: bool = opt(
        False,
        "--proxy-headers",
        help="Take client address and scheme from X-Forwarded-For/-Port/-Proto and Forwarded "
        "(RFC 7239), from trusted peers only.",
        group="Proxies",
        kind="flag",
        parse=parse_bool,
    )
    proxy_headers_host: str | None = opt(
        None,
        "--proxy-headers-host",
        help="Header to read the client address from instead of X-Forwarded-For "
        "(needs --proxy-headers).",
        group="Proxies",
        metavar="HEADER",
    )
    proxy_headers_port: str | None = opt(
        None,
        "--proxy-headers-port",
        help="Header to read the client port from instead of X-Forwarded-Port "
        "(needs --proxy-headers).",
        group="Proxies",
        metavar="HEADER",
    )
    forwarded_allow_ips: str | None = opt(
        None,
        "--forwarded-allow-ips",
        help="Comma-separated peers (addresses, networks, 'unix' for Unix-socket peers, '*' for "
        "all) whose proxy headers and Daphne-Root-Path are trusted. Default: proxy headers from "
        "127.0.0.1, ::1 and Unix-socket peers; Daphne-Root-Path from anyone, as Daphne.",
        group="Proxies",
        metavar="LIST",
        parse=peer_list,
    )

    websocket_timeout: float | None = opt(
        86400.0,
        "--websocket_timeout",
        "--websocket-timeout",
        help="Longest WebSocket lifetime in seconds, then the server closes it; -1: no limit.",
        group="WebSocket",
        parse=optional_float,
        metavar="SECONDS",
    )
    websocket_connect_timeout: float | None = opt(
        5.0,
        "--websocket_connect_timeout",
        "--websocket-connect-timeout",
        help="Seconds the app has to accept a WebSocket; then 403. -1: no limit.",
        group="WebSocket",
        parse=optional_float,
        metavar="SECONDS",
    )
    ping_interval: float = opt(
        20.0,
        "--ping-interval",
        help="Seconds without incoming WebSocket traffic before the server pings; 0: no pings.",
        group="WebSocket",
        parse=seconds,
        metavar="SECONDS",
    )
    ping_timeout: float = opt(
        30.0,
        "--ping-timeout",
        help="Seconds to wait for the pong before the WebSocket is closed (1011); 0: no limit.",
        group="WebSocket",
        parse=seconds,
        metavar="SECONDS",
    )
    websocket_max_message_size: int | None = opt(
        1048576,
        "--websocket-max-message-size",
        help="Largest incoming WebSocket message in bytes (0: no limit); larger: close 1009.",
        group="WebSocket",
        parse=optional_int,
        metavar="BYTES",
    )
    websocket_max_frame_size: int | None = opt(
        1048576,
        "--websocket-max-frame-size",
        help="Largest incoming WebSocket frame in bytes (0: no limit); larger: close 1009.",
        group="WebSocket",
        parse=optional_int,
        metavar="BYTES",
    )
    ws_per_message_deflate: bool = opt(
        True,
        "--ws-per-message-deflate",
        help="Agree to permessage-deflate compression (RFC 7692) when a client offers it: "
        "true or false.",
        group="WebSocket",
        parse=parse_bool,
        metavar="BOOL",
    )

    verbosity: int = opt(
        1,
        "-v",
        "--verbosity",
        help="0 warnings, 1 info and the access log on stdout, 2 debug, 3 debug + asyncio debug.",
        group="Logging",
        parse=int,
        choices=("0", "1", "2", "3"),
    )
    access_log: str | None = opt(
        None,
        "--access-log",
        help="Write the access log to this file ('-' for stdout). Default: stdout at -v 1 and up.",
        group="Logging",
        metavar="FILE",
    )
    no_access_log: bool = opt(
        False,
        "--no-access-log",
        help="Write no access log at all (whatever -v says).",
        group="Logging",
        kind="flag",
        parse=parse_bool,
    )
    log_fmt: str = opt(
        DAPHNE_LOG_FORMAT,
        "--log-fmt",
        help="Format of the server's log lines (Python logging %-style).",
        group="Logging",
        metavar="FORMAT",
    )
    log_config: str | None = opt(
        None,
        "--log-config",
        help="Logging configuration file: dictConfig as .json or .yaml, or fileConfig .ini.",
        group="Logging",
        metavar="FILE",
    )

    workers: int = opt(
        1,
        "-w",
        "--workers",
        help="Worker processes sharing the listeners (the WEB_CONCURRENCY environment variable "
        "sets it too). SIGHUP replaces them one by one, SIGTTIN / SIGTTOU add / remove one.",
        group="Process",
        parse=positive_int,
        metavar="COUNT",
    )
    reuse_port: bool = opt(
        False,
        "--reuse-port",
        help="Each worker opens its own TCP listeners with SO_REUSEPORT (the kernel spreads "
        "connections) instead of sharing the parent's.",
        group="Process",
        kind="flag",
        parse=parse_bool,
    )
    worker_healthcheck_timeout: float = opt(
        10.0,
        "--worker-healthcheck-timeout",
        help="Seconds a worker has to answer the parent's health check; then it is killed and "
        "replaced (0: never).",
        group="Process",
        parse=seconds,
        metavar="SECONDS",
    )
    max_requests: int | None = opt(
        None,
        "--max-requests",
        "--limit-max-requests",
        help="Replace a worker (gracefully) after it has served this many requests. Default: "
        "never.",
        group="Process",
        parse=optional_int,
        metavar="COUNT",
    )
    max_requests_jitter: int = opt(
        0,
        "--max-requests-jitter",
        help="Add a random 0..N to each worker's --max-requests, so workers do not all restart "
        "together.",
        group="Process",
        parse=non_negative_int,
        metavar="COUNT",
    )
    reload: bool = opt(
        False,
        "--reload",
        help="Development: restart the server when a watched file changes (watchfiles when "
        "installed, else polling). Not with --workers > 1.",
        group="Process",
        kind="flag",
        parse=parse_bool,
    )
    reload_dirs: tuple[str, ...] = opt(
        (),
        "--reload-dir",
        help="Directory to watch with --reload, repeatable. Default: the current directory.",
        group="Process",
        kind="append",
        metavar="DIR",
    )
    reload_includes: tuple[str, ...] = opt(
        (),
        "--reload-include",
        help="Glob of files whose changes restart the server, repeatable. Default: *.py.",
        group="Process",
        kind="append",
        metavar="GLOB",
    )
    reload_excludes: tuple[str, ...] = opt(
        (),
        "--reload-exclude",
        help="Glob of files never watched, repeatable (beside hidden files, __pycache__ and "
        "virtual environments).",
        group="Process",
        kind="append",
        metavar="GLOB",
    )
    pid_file: str | None = opt(
        None,
        "--pid",
        help="Write the server's (with --workers, the parent's) process id to this file; "
        "removed on exit.",
        group="Process",
        metavar="FILE",
    )
    config_file: str | None = opt(
        None,
        "--config",
        help="TOML file of options (keys are long flag names: workers = 4, ssl-certfile = ...). "
        "The environment and the command line override it.",
        group="Process",
        metavar="FILE",
    )
    print_config: bool = opt(
        False,
        "--print-config",
        help="Print the effective options (and where each came from) and exit.",
        group="Process",
        kind="flag",
        parse=parse_bool,
        env=False,
    )

    def with_changes(self, **changes: Any) -> Config:
        """Return a copy with some fields replaced (Config itself never changes)."""
        return dataclasses.replace(self, **changes)


def option_fields() -> tuple[dataclasses.Field[Any], ...]:
    """All Config fields, in declaration order."""
    return dataclasses.fields(Config)


def env_name(name: str) -> str:
    """The environment variable that sets field `name`."""
    return ENV_PREFIX + name.upper()


def env_usage(f: dataclasses.Field[Any]) -> str:
    """How the environment sets field `f`, as shown in help: LAURELIN_X, or with the flag value."""
    name = env_name(f.name)
    kind = f.metadata["kind"]
    if kind == "flag":
        return f"{name}=true"
    if kind == "negate":
        return f"{name}=false"
    return name


def convert(f: dataclasses.Field[Any], text: str) -> Any:
    """Convert one textual value (one command-line argument) to the field's type.

    For a repeatable option this is one item; `convert_env` handles a whole list.

    Raises:
        ValueError: the text is not a valid value, with a message saying why.
    """
    meta = f.metadata
    parse = meta["parse"]
    value = parse(text) if parse else text
    choices = meta["choices"]
    if choices and str(value) not in choices:
        raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
    return value


def convert_env(f: dataclasses.Field[Any], text: str) -> Any:
    """Convert an environment variable's text to the field's value.

    A repeatable option takes a comma-separated list there (LAURELIN_ENDPOINTS=a,b).

    Raises:
        ValueError: the text is not a valid value, with a message saying why.
    """
    if f.metadata["kind"] == "append":
        return tuple(convert(f, part) for part in text.split(",") if part)
    return convert(f, text)


def from_environ(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Field values given by LAURELIN_<NAME> environment variables (and WEB_CONCURRENCY, for
    `workers` when LAURELIN_WORKERS is not set).

    Raises:
        ValueError: naming the variable whose value cannot be converted.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in option_fields():
        if not f.metadata["env"]:
            continue
        name = env_name(f.name)
        if name not in environ:
            continue
        try:
            values[f.name] = convert_env(f, environ[name])
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if "workers" not in values and WEB_CONCURRENCY in environ:
        text = environ[WEB_CONCURRENCY]
        try:
            values["workers"] = positive_int(text)
        except ValueError:
            raise ValueError(
                f"{WEB_CONCURRENCY}: expected a number of worker processes (1 or more), "
                f"got {text!r}"
            ) from None
    return values


# -- values given as data: the TOML config file and laurelin.run()'s keywords ---------------------


def option_key(name: str) -> str:
    """The canonical spelling of a config-file key: lower case with dashes ("ssl-certfile")."""
    return name.replace("_", "-")


def option_keys() -> dict[str, tuple[dataclasses.Field[Any], bool]]:
    """Every config-file key -> (its field, whether the key negates it).

    A key is a long flag without its dashes (`pid`, `ssl-certfile`, `no-date-header`) or a field
    name (`pid_file`, `date_header`); dashes and underscores are the same.
    """
    keys: dict[str, tuple[dataclasses.Field[Any], bool]] = {}
    for f in option_fields():
        keys[option_key(f.name)] = (f, False)
        for flag in f.metadata["flags"]:
            if flag.startswith("--"):
                keys[option_key(flag[2:])] = (f, f.metadata["kind"] == "negate")
    return keys


def _value_type(f: dataclasses.Field[Any]) -> str:
    """The kind of value the field takes: list, bool, int, float or str (its annotation)."""
    annotation = str(f.type)
    if annotation.startswith("tuple"):
        return "list"
    return annotation.removesuffix(" | None")


def _described(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def typed_value(f: dataclasses.Field[Any], value: Any, *, allow_none: bool = False) -> Any:
    """Check a value given as data (TOML, a keyword of laurelin.run()) for field `f` and convert
    it as its command-line text would be, so that the same rules and limits apply.

    `allow_none`: None is accepted where the field's type allows it (the Python API).

    Raises:
        ValueError: the value has the wrong type or is invalid, with a message saying why.
    """
    kind = _value_type(f)
    if value is None and allow_none and str(f.type).endswith("| None"):
        return None
    if kind == "list":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, got {_described(value)}")
        return tuple(convert(f, item) for item in value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {_described(value)}")
        return value
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    elif kind == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        expected = "a number"
    else:
        # `http = 2` reads as well as `http = "2"` where the choices are numbers.
        numeric_choice = f.metadata["choices"] and type(value) is int
        ok = isinstance(value, str) or bool(numeric_choice)
        expected = "a string"
    if not ok:
        raise ValueError(f"expected {expected}, got {_described(value)}")
    return convert(f, str(value))


def from_file_data(data: Mapping[str, Any]) -> dict[str, Any]:
    """Field values from a parsed config file (a TOML document's top-level table).

    Raises:
        ValueError: "KEY: why" for the first key that is not an option or has a bad value.
    """
    keys = option_keys()
    values: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, raw in data.items():
        found = keys.get(option_key(key))
        if found is None:
            raise ValueError(f"{key}: not a laurelin option{_did_you_mean(key, keys)}")
        f, negated = found
        if f.name in COMMAND_LINE_ONLY:
            raise ValueError(f"{key}: can only be given on the command line")
        if f.name in given_as:
            raise ValueError(f"{key}: the option is already set by {given_as[f.name]}")
        given_as[f.name] = key
        try:
            value = typed_value(f, raw)
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from None
        values[f.name] = not value if negated else value
    return values


def _did_you_mean(key: str, keys: Mapping[str, object]) -> str:
    import difflib  # only on this error path

    close = difflib.get_close_matches(option_key(key), list(keys), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def read_config_file(path: str) -> dict[str, Any]:
    """Field values from the TOML file at `path` (--config).

    Raises:
        ValueError: one line naming the file (and the key) and what is wrong.
    """
    import tomllib  # here, not at the top: `import laurelin` stays cheap

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the config file: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    try:
        return from_file_data(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def check_combination(values: Mapping[str, Any]) -> None:
    """The rules between options, whichever layer gave them (the application aside).

    Raises:
        ValueError: naming the option that needs another.
    """
    if not values.get("proxy_headers"):
        for name in ("proxy_headers_host", "proxy_headers_port"):
            if values.get(name):
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} needs --proxy-headers")
    if values.get("ssl_keyfile") and not values.get("ssl_certfile"):
        raise ValueError("--ssl-keyfile needs --ssl-certfile")
    if values.get("reload") and values.get("workers", 1) > 1:
        raise ValueError("--reload and --workers > 1 cannot be combined: reload runs one worker")
