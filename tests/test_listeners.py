# Where laurelin listens: -b/-p defaults as Daphne's, IPv6, Unix sockets (and their mode), an
# inherited --fd, Daphne endpoint strings, several listeners at once, systemd socket activation,
# and the one-line failures (busy address, ssl: files missing, bad endpoints). Each is checked
# on a real socket with a real client.
from __future__ import annotations

import os
import re
import socket
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cli_process import (
    Launched,
    free_port_v4_and_v6,
    ipv6_loopback_available,
    launcher,
    laurelin_argv,
    listening_socket,
    run_to_exit,
)
from conftest import ServerProcess, free_port
from laurelin.cli import parse_config
from laurelin.listeners import (
    EndpointError,
    ListenSpec,
    listen_specs,
    parse_endpoint,
    systemd_fds,
)

APP = "cli_app:application"
needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")

# Sets LISTEN_PID to its own pid (kept across exec), moves the socket to fd 3 as systemd does,
# then becomes laurelin: what `systemd-socket-activate` would do.
SYSTEMD_WRAPPER = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.execv(sys.executable, [sys.executable, "-m", "laurelin", *sys.argv[2:]])
"""


@pytest.fixture
def launch() -> Iterator[Callable[..., Launched]]:
    yield from launcher()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory for Unix socket paths (sun_path is limited to 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="laurelin-") as name:
        yield Path(name)


def specs(*argv: str, environ: dict[str, str] | None = None) -> list[ListenSpec]:
    return listen_specs(parse_config([*argv, APP], environ={}), environ or {})


def uds_get(path: Path, url_path: str = "/") -> httpx.Response:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path))) as client:
        return client.get("http://localhost" + url_path)


# -- defaults: Daphne's rules ---------------------------------------------------------------------


def test_no_listener_options_mean_127_0_0_1_port_8000() -> None:
    assert specs() == [ListenSpec("tcp", host="127.0.0.1", port=8000)]


def test_only_bind_means_port_8000() -> None:
    assert specs("-b", "0.0.0.0") == [ListenSpec("tcp", host="0.0.0.0", port=8000)]


def test_only_port_means_127_0_0_1() -> None:
    assert specs("-p", "8123") == [ListenSpec("tcp", host="127.0.0.1", port=8123)]


def test_bracketed_ipv6_bind_is_unwrapped() -> None:
    assert specs("-b", "[::1]", "-p", "8123")[0].host == "::1"


def test_any_other_listener_replaces_the_default() -> None:
    assert specs("-u", "/tmp/x.sock") == [ListenSpec("unix", path="/tmp/x.sock")]
    assert specs("--fd", "7") == [ListenSpec("fd", fd=7)]
    assert [s.kind for s in specs("-e", "tcp:9000")] == ["tcp"]


def port_8000_outcome(server: Launched) -> str:
    """Either it listens on 127.0.0.1:8000 or that address is taken (by another test or app)."""
    match = server.wait_for(
        r"Listening on http://127\.0\.0\.1:8000\b|"
        r"Couldn't listen on 127\.0\.0\.1:8000 Address already in use",
        "stderr",
    )
    return match.group(0)


@pytest.mark.parametrize("argv", [[], ["-b", "127.0.0.1"]], ids=["no-options", "only-bind"])
def test_default_port_8000_end_to_end(launch: Callable[..., Launched], argv: list[str]) -> None:
    # Port 8000 may be busy on a developer's machine: both outcomes show the address chosen.
    server = launch(laurelin_argv(*argv, APP))
    if port_8000_outcome(server).startswith("Listening"):
        assert httpx.get("http://127.0.0.1:8000/").status_code == 200
    else:
        assert server.wait_exit() == 1


def test_only_port_listens_on_127_0_0_1(run_server: Callable[..., ServerProcess]) -> None:
    port = free_port()
    server = run_server(APP, "-p", str(port))
    server.wait_for(rf"Listening on http://127\.0\.0\.1:{port}\b")
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "cli ok"


# -- IPv6 -----------------------------------------------------------------------------------------


@needs_ipv6
@pytest.mark.parametrize("address", ["::1", "[::1]"])
def test_ipv6_bind_address(launch: Callable[..., Launched], address: str) -> None:
    server = launch(laurelin_argv("-b", address, "-p", "0", APP))
    server.wait_listening()
    assert server.host == "::1"
    assert httpx.get(f"http://[::1]:{server.port}/").text == "cli ok"


@needs_ipv6
def test_ipv6_wildcard_also_answers_ipv4_like_daphne(launch: Callable[..., Launched]) -> None:
    if Path("/proc/sys/net/ipv6/bindv6only").read_text().strip() == "1":
        pytest.skip("this host makes IPv6 sockets IPv6-only")
    server = launch(laurelin_argv("-b", "::", "-p", "0", APP))
    port = server.wait_listening()
    assert httpx.get(f"http://[::1]:{port}/").text == "cli ok"
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "cli ok"


@needs_ipv6
def test_ipv4_and_ipv6_wildcards_on_one_port_combine(launch: Callable[..., Launched]) -> None:
    port = free_port_v4_and_v6()
    server = launch(
        laurelin_argv(
            "-e", f"tcp:port={port}:interface=0.0.0.0",
            "-e", f"tcp6:port={port}:interface=\\:\\:",
            APP,
        )
    )  # fmt: skip
    server.wait_for(rf"Listening on http://\[::\]:{port}\b", "stderr")
    server.wait_for(rf"Listening on http://0\.0\.0\.0:{port}\b", "stderr")
    assert httpx.get(f"http://[::1]:{port}/").text == "cli ok"
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "cli ok"


# -- Unix sockets ---------------------------------------------------------------------------------


def test_unix_socket_serves_and_is_removed_on_exit(
    launch: Callable[..., Launched], short_tmp: Path
) -> None:
    path = short_tmp / "app.sock"
    server = launch(laurelin_argv("-u", str(path), APP))
    server.wait_for(rf"Listening on unix:{re.escape(str(path))}", "stderr")
    assert stat.S_ISSOCK(path.stat().st_mode)
    assert uds_get(path).text == "cli ok"
    assert server.terminate() == 0
    assert not path.exists()


def test_unix_socket_client_is_logged_and_scoped(
    launch: Callable[..., Launched], short_tmp: Path
) -> None:
    path = short_tmp / "app.sock"
    server = launch(laurelin_argv("-u", str(path), APP))
    server.wait_for("Listening on unix:", "stderr")
    scope = uds_get(path, "/scope").json()
    assert scope["server"][0] == str(path)
    server.wait_for(r'"GET /scope" 200 \d+', "stdout")


def test_stale_unix_socket_file_is_replaced(
    launch: Callable[..., Launched], short_tmp: Path
) -> None:
    path = short_tmp / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays; nobody listens on it any more
    server = launch(laurelin_argv("-u", str(path), APP))
    server.wait_for("Listening on unix:", "stderr")
    assert uds_get(path).text == "cli ok"


def test_unix_socket_in_use_is_a_listen_failure(
    launch: Callable[..., Launched], short_tmp: Path
) -> None:
    path = short_tmp / "busy.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as holder:
        holder.bind(str(path))
        holder.listen(1)
        result = run_to_exit("-u", str(path), APP)
        assert result.proc.returncode == 1
        assert f"Couldn't listen on unix:{path} Address already in use" in result.stderr
        assert path.exists(), "a live socket must never be unlinked"


@pytest.mark.parametrize(
    ("template", "mode"),
    [("unix:{path}:mode=660", 0o660), ("unix:address={path}:mode=600", 0o600)],
)
def test_unix_endpoint_mode_sets_the_socket_permissions(
    launch: Callable[..., Launched], short_tmp: Path, template: str, mode: int
) -> None:
    path = short_tmp / "mode.sock"
    server = launch(laurelin_argv("-e", template.format(path=path), APP))
    server.wait_for("Listening on unix:", "stderr")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert uds_get(path).text == "cli ok"


# -- inherited descriptors ------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["--fd", "-e fd:fileno="])
def test_inherited_listening_socket_is_adopted(launch: Callable[..., Launched], style: str) -> None:
    with listening_socket() as sock:
        fd = sock.fileno()
        port = sock.getsockname()[1]
        argv = ["--fd", str(fd)] if style == "--fd" else ["-e", f"fd:fileno={fd}"]
        server = launch(laurelin_argv(*argv, APP), pass_fds=[fd])
        assert server.wait_listening() == port
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "cli ok"


def test_fd_that_is_not_open_is_a_listen_failure() -> None:
    result = run_to_exit("--fd", "250", APP)
    assert result.proc.returncode == 1
    assert "Couldn't listen on fd:250 Bad file descriptor" in result.stderr
    assert "Traceback" not in result.output


def test_systemd_socket_activation(launch: Callable[..., Launched]) -> None:
    with listening_socket() as sock:
        fd = sock.fileno()
        port = sock.getsockname()[1]
        argv = [sys.executable, "-c", SYSTEMD_WRAPPER, str(fd), APP]
        server = launch(argv, pass_fds=[fd])
        assert server.wait_listening() == port
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "cli ok"
        # Only the activated socket: no default 127.0.0.1:8000 listener besides it.
        assert server.stderr.count("Listening on") == 1


def test_systemd_descriptors_for_another_process_are_ignored() -> None:
    other = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid() + 1)}
    assert systemd_fds(other) == []
    mine = {"LISTEN_FDS": "2", "LISTEN_PID": str(os.getpid())}
    assert systemd_fds(mine) == [3, 4]
    assert [s.fd for s in specs(environ=mine)] == [3, 4]


# -- endpoint strings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tcp:8001", ListenSpec("tcp", host="0.0.0.0", port=8001)),
        ("tcp:port=8001:interface=127.0.0.1", ListenSpec("tcp", host="127.0.0.1", port=8001)),
        ("tcp6:port=8001:interface=\\:\\:1", ListenSpec("tcp", host="::1", port=8001)),
        ("tcp6:8001", ListenSpec("tcp", host="::", port=8001)),
        ("unix:/run/app.sock", ListenSpec("unix", path="/run/app.sock")),
        ("unix:/run/app.sock:mode=660", ListenSpec("unix", path="/run/app.sock", mode=0o660)),
        ("unix:address=/run/a.sock:mode=600", ListenSpec("unix", path="/run/a.sock", mode=0o600)),
        ("fd:fileno=3", ListenSpec("fd", fd=3)),
        ("fd:4", ListenSpec("fd", fd=4)),
    ],
)
def test_endpoint_strings_parse_as_twisted_does(text: str, expected: ListenSpec) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ssl:443:certKey=cert.pem", "ssl: needs privateKey=FILE"),
        ("tcp:port=http", "missing or malformed"),
        ("tcp:port=70000", "missing or malformed"),
        ("tcp", "missing or malformed"),
        ("unix:/x:mode=999", "missing or malformed"),
        ("fd:fileno=three", "missing or malformed"),
        ("systemd:domain=INET:index=0", "unsupported endpoint type 'systemd'"),
    ],
)
def test_bad_endpoint_strings_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(EndpointError, match=re.escape(message)):
        parse_endpoint(text)


def test_tcp_endpoint_end_to_end(launch: Callable[..., Launched]) -> None:
    port = free_port()
    server = launch(laurelin_argv("-e", f"tcp:port={port}:interface=127.0.0.1", APP))
    assert server.wait_listening() == port
    assert httpx.get(f"http://127.0.0.1:{port}/").text == "cli ok"


@needs_ipv6
def test_tcp6_endpoint_end_to_end(launch: Callable[..., Launched]) -> None:
    server = launch(laurelin_argv("-e", "tcp6:port=0:interface=\\:\\:1", APP))
    port = server.wait_listening()
    assert server.host == "::1"
    assert httpx.get(f"http://[::1]:{port}/").text == "cli ok"


def test_ssl_endpoint_with_missing_files_is_one_clear_line_and_exit_1() -> None:
    result = run_to_exit("-e", "ssl:8443:privateKey=no-such-key.pem:certKey=no-such.pem", APP)
    assert result.proc.returncode == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "CRITICAL" in lines[0]
    assert "no-such.pem" in lines[0]


def test_several_listeners_at_once(launch: Callable[..., Launched], short_tmp: Path) -> None:
    port = free_port()
    path = short_tmp / "multi.sock"
    server = launch(
        laurelin_argv(
            "-p", str(port),
            "-u", str(path),
            "-e", "tcp:port=0:interface=127.0.0.1",
            APP,
        )
    )  # fmt: skip
    server.wait_for(r"(Listening on .*\n.*){3}", "stderr")
    ports = [int(p) for p in re.findall(r"Listening on http://127\.0\.0\.1:(\d+)", server.stderr)]
    assert port in ports
    assert len(ports) == 2
    for each in ports:
        assert httpx.get(f"http://127.0.0.1:{each}/").text == "cli ok"
    assert uds_get(path).text == "cli ok"


# -- failures -------------------------------------------------------------------------------------


def test_busy_address_is_one_critical_line_with_a_hint_and_exit_1() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        result = run_to_exit("-p", str(port), APP)
    assert result.proc.returncode == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert re.search(
        rf"CRITICAL +Listen failure: Couldn't listen on 127\.0\.0\.1:{port} Address already in use",
        lines[0],
    )
    assert "-p/--port" in lines[0]


def test_unknown_host_name_is_a_listen_failure() -> None:
    result = run_to_exit("-b", "no-such-host.invalid", "-p", "0", APP)
    assert result.proc.returncode == 1
    assert "Couldn't listen on no-such-host.invalid:0" in result.output
    assert "Traceback" not in result.output
