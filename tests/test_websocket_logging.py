# The WebSocket access log as Daphne writes it (stdout at the default -v 1): WSCONNECTING when the
# handshake arrives, WSCONNECT when the app accepts, WSREJECT when it refuses, WSDISCONNECT when
# the connection ends, each as `HOST:PORT - - [DD/Mon/YYYY:HH:MM:SS] "WSCONNECT /path" - -`.
from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest

import wsraw
from cli_process import Launched, launcher, laurelin_argv, listening_socket
from conftest import ServerProcess

APP = "ws_app:app"
RunServer = Callable[..., ServerProcess]
WS_LINE = re.compile(
    r"^(?P<client>127\.0\.0\.1:\d+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\] "
    r'"(?P<action>WS[A-Z]+) (?P<path>[^"]*)" - -$'
)


@pytest.fixture
def launch() -> Iterator[Callable[..., Launched]]:
    yield from launcher()


def ws_lines(server: ServerProcess) -> list[re.Match[str]]:
    found = [WS_LINE.match(line) for line in server.stdout.splitlines()]
    return [match for match in found if match is not None]


def test_connect_and_disconnect_lines(run_server: RunServer) -> None:
    server = run_server(APP)
    with wsraw.connect(server.port, "/echo") as ws:
        client = f"127.0.0.1:{ws.sock.getsockname()[1]}"
        server.wait_for(r'"WSCONNECT /echo" - -$', "stdout")
        ws.send_text("logged")
        assert ws.read_text() == "logged"
        ws.close_handshake()
    server.wait_for(r'"WSDISCONNECT /echo" - -$', "stdout")
    lines = ws_lines(server)
    assert [(m["action"], m["path"]) for m in lines] == [
        ("WSCONNECTING", "/echo"),
        ("WSCONNECT", "/echo"),
        ("WSDISCONNECT", "/echo"),
    ], server.stdout
    assert {m["client"] for m in lines} == {client}
    assert "WSCONNECT" not in server.stderr


def test_reject_line(run_server: RunServer) -> None:
    server = run_server(APP)
    with wsraw.WSClient(server.port) as ws:
        assert ws.handshake("/reject").status == 403
        ws.wait_closed()
    server.wait_for(r'"WSREJECT /reject" - -$', "stdout")
    actions = [m["action"] for m in ws_lines(server)]
    assert actions[0] == "WSCONNECTING", server.stdout
    assert "WSCONNECT" not in actions, server.stdout


def test_dropped_connection_is_logged_as_disconnect(run_server: RunServer) -> None:
    server = run_server(APP)
    ws = wsraw.connect(server.port, "/echo")
    server.wait_for(r'"WSCONNECT /echo" - -$', "stdout")
    ws.close(reset=True)
    server.wait_for(r'"WSDISCONNECT /echo" - -$', "stdout")


def test_no_websocket_lines_at_verbosity_0(launch: Callable[..., Launched]) -> None:
    # -v 0 logs no "Listening on": hand the server a socket that already listens.
    sock = listening_socket()
    fd = sock.fileno()
    server = launch(laurelin_argv("--fd", str(fd), "-v", "0", APP), pass_fds=[fd])
    port = sock.getsockname()[1]
    sock.close()
    with wsraw.connect(port, "/echo") as ws:
        ws.close_handshake()
    with wsraw.WSClient(port) as ws:
        assert ws.handshake("/reject").status == 403
    assert server.terminate() == 0
    assert "WS" not in server.stdout
