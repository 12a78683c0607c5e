# Logging as Daphne users know it: the access-log line on stdout at -v 1 (none at -v 0),
# --access-log FILE / -, --no-access-log, --log-fmt, the -v levels, --log-config in JSON, YAML and
# INI (and one line when it is broken), and no forged log lines from what a client sends.
from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cli_process import Launched, launcher, laurelin_argv, listening_socket, run_to_exit

APP = "cli_app:application"
ACCESS_LINE = re.compile(
    r"^(?P<client>127\.0\.0\.1:\d+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<size>\d+)$'
)
DAPHNE_LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} (?P<level>[A-Z]+) +")


@pytest.fixture
def launch() -> Iterator[Callable[..., Launched]]:
    yield from launcher()


@pytest.fixture
def serve(launch: Callable[..., Launched]) -> Callable[..., Launched]:
    """Start laurelin on a socket the test already listens on, so readiness needs no log line."""

    def start(*args: str) -> Launched:
        sock = listening_socket()
        fd = sock.fileno()
        server = launch(laurelin_argv("--fd", str(fd), *args), pass_fds=[fd])
        server.port = sock.getsockname()[1]
        sock.close()  # the child holds its own copy; connections queue until it accepts
        return server

    return start


def get(server: Launched, path: str = "/") -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=10)


def raw_request(port: int, target: bytes) -> tuple[bytes, int]:
    """Send one request with a byte-exact target; return the reply and our local port."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        local_port = sock.getsockname()[1]
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks), local_port


def access_lines(text: str) -> list[re.Match[str]]:
    matches = [ACCESS_LINE.match(line) for line in text.splitlines()]
    assert all(matches), f"not an access-log line in:\n{text}"
    return [m for m in matches if m is not None]


# -- the access log -------------------------------------------------------------------------------


def test_access_line_is_daphnes_format_on_stdout(serve: Callable[..., Launched]) -> None:
    server = serve(APP)
    reply, local_port = raw_request(server.port, b"/path?q=1")
    assert reply.startswith(b"HTTP/1.1 200 ")
    match = server.wait_for(ACCESS_LINE.pattern, "stdout")
    assert match["client"] == f"127.0.0.1:{local_port}"
    assert match["request"] == "GET /path?q=1"
    assert (match["status"], match["size"]) == ("200", str(len("cli ok")))
    assert "GET /path" not in server.stderr


def test_access_line_counts_the_body_bytes_sent(serve: Callable[..., Launched]) -> None:
    server = serve(APP)
    body = get(server, "/scope").content
    match = server.wait_for(r'"GET /scope" 200 (\d+)', "stdout")
    assert int(match.group(1)) == len(body)


def test_no_access_log_at_verbosity_0(serve: Callable[..., Launched]) -> None:
    server = serve("-v", "0", APP)
    assert get(server, "/log").text == "logged"
    server.wait_for("cli_app warning message", "stderr")
    assert server.terminate() == 0
    assert server.stdout == ""
    assert " INFO " not in server.stderr


def test_access_log_dash_writes_stdout_even_at_verbosity_0(serve: Callable[..., Launched]) -> None:
    server = serve("-v", "0", "--access-log", "-", APP)
    get(server, "/dash")
    server.wait_for(r'"GET /dash" 200 6$', "stdout")


def test_access_log_file_receives_the_lines_instead_of_stdout(
    serve: Callable[..., Launched], tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    log.write_text("earlier line\n")
    server = serve("--access-log", str(log), APP)
    get(server, "/to-file")
    get(server, "/again")
    assert server.terminate() == 0
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line", "the file is appended to, as Daphne does"
    assert [m["request"] for m in access_lines("\n".join(lines[1:]))] == [
        "GET /to-file",
        "GET /again",
    ]
    assert server.stdout == ""


def test_no_access_log_flag_silences_it_whatever_the_verbosity(
    serve: Callable[..., Launched],
) -> None:
    server = serve("-v", "2", "--no-access-log", APP)
    get(server, "/log")
    server.wait_for("cli_app debug message", "stderr")
    assert server.terminate() == 0
    assert server.stdout == ""


def test_unwritable_access_log_is_one_line_and_exit_1(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "access.log"
    result = run_to_exit("--access-log", str(target), "-p", "0", APP)
    assert result.proc.returncode == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert str(target) in lines[0]
    assert "No such file or directory" in lines[0]


# -- server log lines -----------------------------------------------------------------------------


def test_server_log_lines_use_daphnes_format_on_stderr(launch: Callable[..., Launched]) -> None:
    server = launch(laurelin_argv("-p", "0", APP))
    server.wait_listening()
    line = next(line for line in server.stderr.splitlines() if "Listening on" in line)
    match = DAPHNE_LOG_LINE.match(line)
    assert match and match["level"] == "INFO"
    assert line[match.end() - 9 : match.end()] == "INFO     "  # %(levelname)-8s and a space
    assert "Listening on" not in server.stdout


def test_log_fmt_changes_the_server_line_format(launch: Callable[..., Launched]) -> None:
    server = launch(laurelin_argv("-p", "0", "--log-fmt", "[srv] %(levelname)s: %(message)s", APP))
    server.wait_for(r"(?m)^\[srv\] INFO: Listening on http://", "stderr")


@pytest.mark.parametrize(
    ("verbosity", "shown", "hidden"),
    [
        ("0", ["warning"], ["info", "debug"]),
        ("1", ["warning", "info"], ["debug"]),
        ("2", ["warning", "info", "debug"], []),
    ],
)
def test_verbosity_sets_the_log_level(
    serve: Callable[..., Launched], verbosity: str, shown: list[str], hidden: list[str]
) -> None:
    server = serve("-v", verbosity, APP)
    assert get(server, "/log").text == "logged"
    # The app logs debug, info, then warning: once the warning is out, the others would be too.
    server.wait_for("cli_app warning message", "stderr")
    for level in shown:
        assert f"cli_app {level} message" in server.stderr
    for level in hidden:
        assert f"cli_app {level} message" not in server.stderr


def test_verbosity_2_logs_why_a_request_was_refused(serve: Callable[..., Launched]) -> None:
    server = serve("-v", "2", APP)
    reply, _ = raw_request(server.port, b"/bad\x7fpath")
    assert reply.startswith(b"HTTP/1.1 400 ")
    server.wait_for(r"DEBUG +Refusing request with 400", "stderr")


@pytest.mark.parametrize(("verbosity", "debug"), [("2", False), ("3", True)])
def test_verbosity_3_turns_on_asyncio_debug(
    serve: Callable[..., Launched], verbosity: str, debug: bool
) -> None:
    server = serve("-v", verbosity, APP)
    assert get(server, "/loop").json()["debug"] is debug


# -- --log-config ---------------------------------------------------------------------------------


def dict_config(path: Path, marker: str) -> dict[str, object]:
    """A dictConfig that names only the root logger: laurelin's loggers must still reach it."""
    return {
        "version": 1,
        "formatters": {"marked": {"format": f"{marker} %(levelname)s %(name)s %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(path), "formatter": "marked"}
        },
        "root": {"level": "INFO", "handlers": ["file"]},
    }


def check_log_config(
    serve: Callable[..., Launched], config_file: Path, log: Path, marker: str
) -> None:
    server = serve("--log-config", str(config_file), APP)
    get(server, "/log")
    assert server.terminate() == 0
    text = log.read_text()
    assert f"{marker} INFO laurelin.error Listening on http://" in text
    assert f"{marker} WARNING cli_app cli_app warning message" in text
    assert f"{marker} INFO cli_app cli_app info message" in text
    assert "cli_app debug message" not in text


def test_log_config_json(serve: Callable[..., Launched], tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    config_file = tmp_path / "logging.json"
    config_file.write_text(json.dumps(dict_config(log, "JSONCFG")))
    check_log_config(serve, config_file, log, "JSONCFG")


def test_log_config_yaml(serve: Callable[..., Launched], tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    log = tmp_path / "server.log"
    config_file = tmp_path / "logging.yaml"
    config_file.write_text(yaml.safe_dump(dict_config(log, "YAMLCFG")))
    check_log_config(serve, config_file, log, "YAMLCFG")


def test_log_config_ini(serve: Callable[..., Launched], tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    config_file = tmp_path / "logging.ini"
    config_file.write_text(
        "[loggers]\nkeys=root\n\n"
        "[handlers]\nkeys=file\n\n"
        "[formatters]\nkeys=marked\n\n"
        "[logger_root]\nlevel=INFO\nhandlers=file\n\n"
        f"[handler_file]\nclass=FileHandler\nformatter=marked\nargs=({str(log)!r}, 'a')\n\n"
        "[formatter_marked]\nformat=INICFG %(levelname)s %(name)s %(message)s\n"
    )
    check_log_config(serve, config_file, log, "INICFG")


def test_log_config_can_route_the_access_log(
    serve: Callable[..., Launched], tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    config = {
        "version": 1,
        "formatters": {"bare": {"format": "ACCESS %(message)s"}},
        "handlers": {
            "file": {"class": "logging.FileHandler", "filename": str(log), "formatter": "bare"}
        },
        "loggers": {"laurelin.access": {"handlers": ["file"], "level": "INFO"}},
    }
    config_file = tmp_path / "logging.json"
    config_file.write_text(json.dumps(config))
    server = serve("--log-config", str(config_file), APP)
    get(server, "/routed")
    assert server.terminate() == 0
    assert re.search(
        r'^ACCESS 127\.0\.0\.1:\d+ - - \[.*\] "GET /routed" 200 6$', log.read_text(), re.M
    )
    assert "GET /routed" not in server.stdout


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "No such file or directory"),
        ("broken.json", "{not json", "JSONDecodeError"),
        ("list.json", "[1, 2]", "expected a mapping"),
        ("badclass.json", json.dumps({"version": 1, "handlers": {"h": {"class": "no.Such"}}}), "h"),
        ("broken.yaml", "version: 1\n  handlers: [", "broken.yaml"),
        ("broken.ini", "[loggers]\nkeys=root\n", "broken.ini"),
    ],
)
def test_bad_log_config_is_one_line_and_exit_1(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    result = run_to_exit("--log-config", str(path), "-p", "0", APP)
    assert result.proc.returncode == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"laurelin: --log-config {path}: ")
    assert message in lines[0]


# -- log injection --------------------------------------------------------------------------------

EVIL_TARGETS = [
    b'/a%0d%0aFORGED 127.0.0.1:1 - - [01/Jan/2026:00:00:00] "GET /x" 200 1',
    b"/q?x=%0A%0DFORGED",
    b"/%1b[31mFORGED",
    b"/a\rFORGED",
    b"/a\nFORGED",
    b"/a\x1bFORGED",
    b"/a\x85FORGED",
]


def test_client_text_never_forges_access_log_lines(serve: Callable[..., Launched]) -> None:
    server = serve(APP)
    for target in EVIL_TARGETS:
        raw_request(server.port, target.replace(b" ", b"%20").replace(b'"', b"%22"))
    get(server, "/last")
    server.wait_for(r'"GET /last" 200', "stdout")
    lines = server.stdout.splitlines()
    access_lines(server.stdout)  # every line is a complete access-log line
    assert not any(line.startswith("FORGED") for line in lines)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\x85]", server.stdout)


def test_client_text_never_forges_error_log_lines(serve: Callable[..., Launched]) -> None:
    server = serve(APP)
    forged = b"/raise%0d%0a2026-01-01 00:00:00,000 CRITICAL FORGED by the client"
    reply, _ = raw_request(server.port, forged.replace(b" ", b"%20"))
    assert reply.startswith(b"HTTP/1.1 500 ")
    server.wait_for("the app failed on purpose", "stderr")
    assert not any(
        "FORGED" in line and "CRITICAL" in line[:40] for line in server.stderr.splitlines()
    )
