# The `laurelin` command line: Daphne's flags and defaults, laurelin's own options (each shown to
# take effect on a running server), --help, --version, usage errors (exit 2) and docs/cli.md.
from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli_process import APPS, laurelin_argv
from conftest import ServerProcess, free_port
from laurelin import __version__
from laurelin.cli import build_parser, parse_config
from laurelin.config import DAPHNE_LOG_FORMAT, GROUPS, Config, env_name, option_fields
from laurelin.docgen import render

ROOT = Path(__file__).parent.parent
APP = "cli_app:application"


def parse(*argv: str) -> Config:
    """parse_config with an empty environment, so the test machine's LAURELIN_* cannot leak in."""
    return parse_config([*argv], environ={})


def reset_on_close(sock: socket.socket) -> None:
    """Make close() abort the connection (RST), as a client that crashes or is killed does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, then read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# -- Daphne's command line ------------------------------------------------------------------------


def test_defaults_are_daphnes() -> None:
    config = parse(APP)
    assert config.app == APP
    assert (config.host, config.port, config.unix_socket, config.fd) == (None, None, None, None)
    assert config.endpoints == ()
    assert config.websocket_timeout == 86400
    assert config.websocket_connect_timeout == 5
    assert config.ping_interval == 20
    assert config.ping_timeout == 30
    assert config.websocket_max_message_size == 1048576
    assert config.websocket_max_frame_size == 1048576
    assert config.http_timeout is None
    assert config.application_close_timeout == 10
    assert config.root_path == ""
    assert config.proxy_headers is False
    assert config.proxy_headers_host is None
    assert config.proxy_headers_port is None
    assert config.no_server_name is False
    assert config.verbosity == 1
    assert config.access_log is None
    assert config.log_fmt == "%(asctime)-15s %(levelname)-8s %(message)s" == DAPHNE_LOG_FORMAT


def test_server_name_default_is_laurelin_not_daphne() -> None:
    assert parse(APP).server_name == "laurelin"


def test_laurelin_option_defaults() -> None:
    config = parse(APP)
    assert config.app_dir == "."
    assert config.factory is False
    assert config.lifespan == "auto"
    assert config.loop == "auto"
    assert config.headers == ()
    assert config.date_header is True
    assert config.timeout_keep_alive == 5
    assert config.header_read_timeout == 30
    assert config.limit_max_body_size is None
    assert config.limit_request_head_size == 65536
    assert config.limit_request_headers == 100
    assert config.graceful_timeout == 30
    assert config.forwarded_allow_ips is None
    assert config.no_access_log is False
    assert config.log_config is None


DAPHNE_FLAGS: list[tuple[list[str], str, Any]] = [
    (["-p", "8001"], "port", 8001),
    (["--port", "8001"], "port", 8001),
    (["-b", "0.0.0.0"], "host", "0.0.0.0"),
    (["--bind", "::1"], "host", "::1"),
    (["-u", "/tmp/daphne.sock"], "unix_socket", "/tmp/daphne.sock"),
    (["--unix-socket", "/tmp/daphne.sock"], "unix_socket", "/tmp/daphne.sock"),
    (["--fd", "5"], "fd", 5),
    (["-e", "tcp:port=8001"], "endpoints", ("tcp:port=8001",)),
    (
        ["--endpoint", "tcp:8001", "-e", "unix:/tmp/s"],
        "endpoints",
        ("tcp:8001", "unix:/tmp/s"),
    ),
    (["--websocket_timeout", "60"], "websocket_timeout", 60),
    (["--websocket_timeout", "-1"], "websocket_timeout", None),
    (["--websocket_connect_timeout", "3"], "websocket_connect_timeout", 3),
    (["--websocket_connect_timeout", "-1"], "websocket_connect_timeout", None),
    (["--ping-interval", "5"], "ping_interval", 5),
    (["--ping-timeout", "7"], "ping_timeout", 7),
    (["--websocket-max-message-size", "2048"], "websocket_max_message_size", 2048),
    (["--websocket-max-message-size", "0"], "websocket_max_message_size", None),
    (["--websocket-max-frame-size", "4096"], "websocket_max_frame_size", 4096),
    (["--websocket-max-frame-size", "0"], "websocket_max_frame_size", None),
    (["-t", "30"], "http_timeout", 30),
    (["--http-timeout", "2.5"], "http_timeout", 2.5),
    (["--application-close-timeout", "2"], "application_close_timeout", 2),
    (["--root-path", "/prefix"], "root_path", "/prefix"),
    (["--proxy-headers"], "proxy_headers", True),
    (["--proxy-headers", "--proxy-headers-host", "X-Real-IP"], "proxy_headers_host", "X-Real-IP"),
    (
        ["--proxy-headers", "--proxy-headers-port", "X-Real-Port"],
        "proxy_headers_port",
        "X-Real-Port",
    ),
    (["-s", "edge"], "server_name", "edge"),
    (["--server-name", "edge"], "server_name", "edge"),
    (["--no-server-name"], "no_server_name", True),
    (["-v", "0"], "verbosity", 0),
    (["--verbosity", "3"], "verbosity", 3),
    (["--access-log", "-"], "access_log", "-"),
    (["--access-log", "/var/log/access.log"], "access_log", "/var/log/access.log"),
    (["--log-fmt", "%(message)s"], "log_fmt", "%(message)s"),
]


@pytest.mark.parametrize(("argv", "name", "expected"), DAPHNE_FLAGS)
def test_daphne_flag_is_accepted(argv: list[str], name: str, expected: Any) -> None:
    assert getattr(parse(*argv, APP), name) == expected


LAURELIN_FLAGS: list[tuple[list[str], str, Any]] = [
    (["--app-dir", "src"], "app_dir", "src"),
    (["--factory"], "factory", True),
    (["--lifespan", "on"], "lifespan", "on"),
    (["--lifespan", "off"], "lifespan", "off"),
    (["--loop", "asyncio"], "loop", "asyncio"),
    (["--loop", "uvloop"], "loop", "uvloop"),
    (["--header", "X-A:1", "--header", "X-B: two"], "headers", ("X-A:1", "X-B: two")),
    (["--no-date-header"], "date_header", False),
    (["--timeout-keep-alive", "0.5"], "timeout_keep_alive", 0.5),
    (["--header-read-timeout", "12"], "header_read_timeout", 12),
    (["--limit-max-body-size", "1000"], "limit_max_body_size", 1000),
    (["--limit-max-body-size", "0"], "limit_max_body_size", None),
    (["--limit-request-head-size", "8192"], "limit_request_head_size", 8192),
    (["--limit-request-headers", "20"], "limit_request_headers", 20),
    (["--graceful-timeout", "3"], "graceful_timeout", 3),
    (["--forwarded-allow-ips", "10.0.0.0/8,unix"], "forwarded_allow_ips", "10.0.0.0/8,unix"),
    (["--forwarded-allow-ips", "*"], "forwarded_allow_ips", "*"),
    (["--no-access-log"], "no_access_log", True),
    (["--log-config", "logging.json"], "log_config", "logging.json"),
    (["--backlog", "64"], "backlog", 64),
    (["--websocket-timeout", "9"], "websocket_timeout", 9),
    (["--websocket-connect-timeout", "9"], "websocket_connect_timeout", 9),
]


@pytest.mark.parametrize(("argv", "name", "expected"), LAURELIN_FLAGS)
def test_laurelin_option_is_accepted(argv: list[str], name: str, expected: Any) -> None:
    assert getattr(parse(*argv, APP), name) == expected


def test_every_config_option_has_a_cli_flag_or_is_the_application() -> None:
    for f in option_fields():
        assert f.metadata["flags"] or f.name == "app", f.name


def test_daphne_full_command_line_starts_and_takes_effect(
    run_server: Callable[..., ServerProcess],
) -> None:
    port = free_port()
    server = run_server(
        APP,
        "-b", "127.0.0.1", "-p", str(port),
        "--websocket_timeout", "60", "--websocket_connect_timeout", "3",
        "--ping-interval", "10", "--ping-timeout", "10",
        "--websocket-max-message-size", "65536", "--websocket-max-frame-size", "65536",
        "-t", "30", "--application-close-timeout", "5",
        "--root-path", "/mounted",
        "--proxy-headers", "--proxy-headers-host", "X-Real-IP",
        "--proxy-headers-port", "X-Real-Port",
        "-s", "daphne-compatible", "--access-log", "-", "-v", "1",
        "--log-fmt", "%(levelname)s %(message)s",
    )  # fmt: skip
    assert server.port == port
    response = httpx.get(
        server.url + "/scope", headers={"X-Real-IP": "203.0.113.7", "X-Real-Port": "4711"}
    )
    scope = response.json()
    assert response.headers["server"] == "daphne-compatible"
    assert scope["root_path"] == "/mounted"
    assert scope["client"] == ["203.0.113.7", 4711]
    server.wait_for(r"(?m)^INFO Listening on")


# -- laurelin's options, end to end ---------------------------------------------------------------


def test_repeated_header_option_adds_each_header_to_every_response(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "--header", "X-Frame-Options:DENY", "--header", "X-Team: web platform")
    for path in ("/", "/scope"):
        response = httpx.get(server.url + path)
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-team"] == "web platform"


def test_date_header_sent_by_default_and_dropped_with_no_date_header(
    run_server: Callable[..., ServerProcess],
) -> None:
    assert "date" in httpx.get(run_server(APP).url).headers
    assert "date" not in httpx.get(run_server(APP, "--no-date-header").url).headers


def test_server_header_follows_server_name_flags(
    run_server: Callable[..., ServerProcess],
) -> None:
    assert httpx.get(run_server(APP).url).headers["server"] == "laurelin"
    assert httpx.get(run_server(APP, "-s", "edge/1.0").url).headers["server"] == "edge/1.0"
    assert "server" not in httpx.get(run_server(APP, "--no-server-name").url).headers


def test_app_dir_is_searched_for_the_application(
    run_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    (tmp_path / "cli_elsewhere.py").write_text(
        "async def served(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'from app-dir'})\n"
    )
    server = run_server("cli_elsewhere:served", "--app-dir", str(tmp_path))
    assert httpx.get(server.url).text == "from app-dir"


def test_factory_flag_calls_the_factory(run_server: Callable[..., ServerProcess]) -> None:
    server = run_server("cli_app:make_app", "--factory")
    assert httpx.get(server.url).text == "cli ok"


def test_lifespan_auto_runs_startup_and_shares_state(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP)
    assert httpx.get(server.url + "/scope").json()["state"] == {"lifespan": "ran"}


def test_lifespan_off_never_calls_the_app_with_lifespan(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "--lifespan", "off")
    assert httpx.get(server.url + "/scope").json()["state"] in (None, {})


def test_lifespan_auto_serves_an_app_without_lifespan_support(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server("cli_app:no_lifespan_app")
    assert httpx.get(server.url).text == "cli ok"


def test_lifespan_on_requires_lifespan_support(start_server: Callable[..., ServerProcess]) -> None:
    server = start_server("-p", str(free_port()), "--lifespan", "on", "cli_app:no_lifespan_app")
    assert server.wait_exit() != 0
    assert "unsupported scope type 'lifespan'" in server.output


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_loop_option_chooses_the_event_loop(
    run_server: Callable[..., ServerProcess], loop: str
) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    server = run_server(APP, "--loop", loop)
    assert httpx.get(server.url + "/loop").json()["module"].split(".")[0] == loop


def test_default_loop_serves_on_this_python(run_server: Callable[..., ServerProcess]) -> None:
    assert httpx.get(run_server(APP, "--loop", "auto").url).text == "cli ok"


def test_timeout_keep_alive_closes_an_idle_connection(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "--timeout-keep-alive", "0.2")
    # Well under the 5 s default: only the option can make the server close this soon.
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while b"cli ok" not in received:
            received += sock.recv(65536)
        assert sock.recv(65536) == b""  # EOF: the server closed the idle connection


def test_header_read_timeout_answers_408_to_a_slow_head(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "--header-read-timeout", "0.2")
    reply = raw_exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n", timeout=5)
    assert reply.startswith(b"HTTP/1.1 408 ")


def test_limit_max_body_size_refuses_larger_bodies_with_413(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "--limit-max-body-size", "10")
    assert httpx.post(server.url + "/body", content=b"x" * 10).text == "10"
    assert httpx.post(server.url + "/body", content=b"x" * 100).status_code == 413


def test_limit_request_head_size_refuses_a_larger_head_with_431(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "--limit-request-head-size", "2048")
    assert httpx.get(server.url, headers={"X-Big": "y" * 1000}).status_code == 200
    assert httpx.get(server.url, headers={"X-Big": "y" * 4000}).status_code == 431


def test_limit_request_headers_refuses_more_fields_with_431(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "--limit-request-headers", "5")
    few = b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nConnection: close\r\n\r\n"
    many = (
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(10))
        + b"Connection: close\r\n\r\n"
    )
    assert raw_exchange(server.port, few).startswith(b"HTTP/1.1 200 ")
    assert raw_exchange(server.port, many).startswith(b"HTTP/1.1 431 ")


def test_graceful_timeout_bounds_the_drain_of_a_slow_request(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "--graceful-timeout", "0.5")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    with sock:
        sock.sendall(b"GET /slow?60 HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for("slow request started")
        reader_done = threading.Event()
        received: list[bytes] = []

        def read_all() -> None:
            try:
                while chunk := sock.recv(65536):
                    received.append(chunk)
            except OSError:
                pass
            reader_done.set()

        threading.Thread(target=read_all, daemon=True).start()
        server.signal(signal.SIGTERM)
        # With the 30 s default the drain would outlast this wait: only the option ends it.
        assert server.wait_exit(timeout=15) == 0
        assert reader_done.wait(10)
    assert b"slow done" not in b"".join(received)


def test_forwarded_allow_ips_decides_whose_proxy_headers_count(
    run_server: Callable[..., ServerProcess],
) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Port": "1234"}
    trusted = run_server(APP, "--proxy-headers")
    assert httpx.get(trusted.url + "/scope", headers=forwarded).json()["client"] == [
        "203.0.113.9",
        1234,
    ]
    untrusted = run_server(APP, "--proxy-headers", "--forwarded-allow-ips", "10.1.2.3")
    client = httpx.get(untrusted.url + "/scope", headers=forwarded).json()["client"]
    assert client[0] == "127.0.0.1"


def test_forwarded_allow_ips_unix_trusts_unix_socket_peers(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    path = tmp_path / "proxy.sock"
    server = start_server("-u", str(path), "--proxy-headers", APP)
    server.wait_for("Listening on unix:")
    transport = httpx.HTTPTransport(uds=str(path))
    with httpx.Client(transport=transport) as client:
        scope = client.get(
            "http://localhost/scope", headers={"X-Forwarded-For": "198.51.100.4"}
        ).json()
    assert scope["client"][0] == "198.51.100.4"


def test_http_timeout_answers_503_when_the_app_is_too_slow(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "-t", "0.3")
    assert httpx.get(server.url + "/slow?30", timeout=20).status_code == 503


def test_application_close_timeout_cancels_an_app_whose_client_left(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "--application-close-timeout", "0.2")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /slow?60 HTTP/1.1\r\nHost: x\r\n\r\n")
        server.wait_for("slow request started")
        reset_on_close(sock)
    # Shorter than the 10 s default: only the option explains a cancellation this soon.
    server.wait_for("after the client disconnected; cancelling", timeout=5)


def test_asgi_threads_sizes_the_default_thread_pool(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, env={"ASGI_THREADS": "2"})
    assert httpx.get(server.url + "/threads", timeout=20).text in ("1", "2")


def test_proxy_headers_are_ignored_without_the_flag(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP)
    scope = httpx.get(server.url + "/scope", headers={"X-Forwarded-For": "203.0.113.9"}).json()
    assert scope["client"][0] == "127.0.0.1"


# -- --help and --version -------------------------------------------------------------------------


def used_groups() -> list[str]:
    """The --help groups that have options, in their declared order."""
    return [g for g in GROUPS if any(f.metadata["group"] == g for f in option_fields())]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run laurelin to completion (for arguments that make it exit at once)."""
    return subprocess.run(
        laurelin_argv(*args),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=APPS,
        env={**_clean_env(), "COLUMNS": "80", **(env or {})},
    )


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LAURELIN_")}


def test_help_lists_every_option_in_its_group_with_its_env_var() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    text = result.stdout
    positions = [text.index(f"\n{group}:\n") for group in used_groups()]
    assert positions == sorted(positions), "groups appear in the declared order"
    for f in option_fields():
        for flag in f.metadata["flags"]:
            assert flag in text, flag
        assert (env_name(f.name) in text) == f.metadata["env"], f.name
    assert "%(asctime)-15s %(levelname)-8s %(message)s" in " ".join(text.split())


def test_help_fits_an_80_column_terminal() -> None:
    lines = run_cli("--help").stdout.splitlines()
    assert [line for line in lines if len(line) > 80] == []


def test_version_prints_the_package_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"laurelin {__version__}"


# -- usage errors ---------------------------------------------------------------------------------


USAGE_ERRORS: list[tuple[list[str], str]] = [
    (["--proxy-headers-host", "X-Real-IP", APP], "--proxy-headers-host needs --proxy-headers"),
    (["--proxy-headers-port", "X-Real-Port", APP], "--proxy-headers-port needs --proxy-headers"),
    (["--header", "no-colon", APP], "expected NAME:VALUE"),
    (["--header", ":value-without-name", APP], "expected NAME:VALUE"),
    (["--header", "Bad Name:1", APP], "expected NAME:VALUE"),
    (["--header", "X-A:one\rX-Injected: 1", APP], "CR, LF or NUL"),
    (["-s", "server\nX-Injected: 1", APP], "CR, LF or NUL"),
    (["-s", "laurelin ☃", APP], "Latin-1"),
    (["--lifespan", "sometimes", APP], "'sometimes' is not one of auto, on, off"),
    (["--loop", "tokio", APP], "'tokio' is not one of auto, asyncio, uvloop"),
    (["-v", "4", APP], "'4' is not one of 0, 1, 2, 3"),
    (["-p", "http", APP], "argument -p/--port"),
    (["-p", "70000", APP], "not a TCP port"),
    (["-p", "-1", APP], "not a TCP port"),
    (["--fd", "-3", APP], "not a file descriptor"),
    (["--timeout-keep-alive", "-1", APP], "0 or more"),
    (["--limit-request-headers", "0", APP], "1 or more"),
    (["--forwarded-allow-ips", "10.0.0.0/33", APP], "not an IP network"),
    (["--no-such-option", APP], "unrecognized arguments: --no-such-option"),
    ([], "the ASGI application is required"),
]


@pytest.mark.parametrize(("argv", "message"), USAGE_ERRORS)
def test_usage_error_exits_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["--proxy-headers-host", "X-Real-IP", APP],
        ["--header", "no-colon", APP],
        ["--lifespan", "sometimes", APP],
    ],
)
def test_usage_error_from_the_command_exits_2_without_traceback(argv: list[str]) -> None:
    result = run_cli(*argv)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: laurelin")
    assert result.stderr.splitlines()[-1].startswith("laurelin: error: ")
    assert "Traceback" not in result.stderr


def test_parser_is_built_from_config_fields() -> None:
    parser = build_parser()
    dests = {action.dest for action in parser._actions}
    assert {f.name for f in option_fields()} <= dests


# -- docs/cli.md ----------------------------------------------------------------------------------


def test_docs_cli_md_is_the_generated_reference() -> None:
    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render(), (
        "docs/cli.md is stale: run `make docs`"
    )


def test_generated_reference_lists_every_option_env_var_and_group() -> None:
    text = render()
    for group in used_groups():
        assert f"\n## {group}\n" in text
    for f in option_fields():
        assert (f"`{env_name(f.name)}" in text) == f.metadata["env"], f.name
        for flag in f.metadata["flags"]:
            assert f"`{flag}" in text, flag


def test_docgen_module_prints_the_reference() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "laurelin.docgen"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout == render()


@pytest.mark.parametrize("value", ["0", "-1", "none"])
def test_http_timeout_zero_means_no_limit_as_in_daphne(value: str) -> None:
    assert parse_config(["-t", value, "app:application"]).http_timeout is None
    assert parse_config(["-t", "2.5", "app:application"]).http_timeout == 2.5
