# A WebSocket request reaching a Channels ProtocolTypeRouter that has no "websocket" entry: the
# app's ValueError is logged with a one-line hint naming the fix, the client's handshake is
# refused (500), and HTTP keeps working. Through the laurelin command (production) and through
# `manage.py runserver` (where a Channels user meets it first); another ValueError gets no hint.
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

import wsraw
from cli_process import Launched, laurelin_argv
from conftest import free_port
from runserver_process import DJ_TESTS, chat_copy, start_runserver, write_settings

HINT = (
    '(hint: your ProtocolTypeRouter has no "websocket" entry: add "websocket": '
    "URLRouter(websocket_urlpatterns) to it in your asgi.py)"
)
ROUTER_ERROR = "ValueError: No application configured for scope type 'websocket'"


def refused_status(port: int, path: str) -> int:
    with pytest.raises(InvalidStatus) as refused:
        wsraw.client(f"ws://127.0.0.1:{port}{path}")
    return refused.value.response.status_code


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[Launched]:
    argv = laurelin_argv(
        "-p", str(free_port()), "--app-dir", str(DJ_TESTS), "runserver_router:with_another_failure"
    )
    proc = Launched(argv, env={"PYTHONDONTWRITEBYTECODE": "1"}, cwd=tmp_path)
    try:
        proc.wait_listening(timeout=30)
        yield proc
    finally:
        proc.stop()


def test_the_laurelin_command_logs_the_routers_error_with_the_fix(cli_server: Launched) -> None:
    port = cli_server.port
    assert refused_status(port, "/ws/chat/lobby/") == 500
    line = cli_server.wait_for(r"^.*Exception in ASGI app: WebSocket /ws/chat/lobby/.*$", "stderr")
    assert line.group(0).endswith(f"Exception in ASGI app: WebSocket /ws/chat/lobby/ {HINT}")
    cli_server.wait_for(f"^{re.escape(ROUTER_ERROR)}$", "stderr")
    # Another failure is logged as it is: the hint is for the router's mistake only.
    assert refused_status(port, "/other") == 500
    other = cli_server.wait_for(r"^.*Exception in ASGI app: WebSocket /other.*$", "stderr")
    assert "hint" not in other.group(0)
    assert httpx.get(f"{cli_server.url}/", trust_env=False, timeout=10).text == "http only"


def test_runserver_logs_the_routers_error_with_the_fix(tmp_path: Path) -> None:
    project = chat_copy(tmp_path)
    settings = write_settings(
        project, "router_settings", 'ASGI_APPLICATION = "runserver_router.application"\n'
    )
    server = start_runserver(project, "--settings", settings, "--noreload")
    try:
        assert refused_status(server.port, "/ws/chat/lobby/") == 500
        line = "Exception in ASGI app: WebSocket /ws/chat/lobby/ " + HINT
        server.wait_for(f"^{re.escape(line)}$", "stderr")
        server.wait_for(f"^{re.escape(ROUTER_ERROR)}$", "stderr")
    finally:
        server.stop()
