# The ASGI lifespan protocol (spec 2.0 with state) end to end: startup before the first request,
# state visible in requests, shutdown on SIGTERM/SIGINT, --lifespan auto|on|off, and start-up
# failures that stop the server with the app's message and a non-zero exit status.
from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from apps.asgi_support import wait_marker
from conftest import ServerProcess, free_port

RunServer = Callable[..., ServerProcess]
StartServer = Callable[..., ServerProcess]


def env(markers: Path) -> dict[str, str]:
    return {"ASGI_TEST_MARKERS": str(markers)}


def get_state(server: ServerProcess) -> object:
    response = httpx.get(server.url + "/state", timeout=10)
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_and_shutdown_with_state(run_server: RunServer, tmp_path: Path, mode: str) -> None:
    server = run_server("asgi_lifespan:app", "--lifespan", mode, env=env(tmp_path))
    # Startup completed before the server said it was listening.
    assert (tmp_path / "startup").read_text() == "complete"
    assert json.loads((tmp_path / "lifespan.called").read_text()) == {
        "version": "3.0",
        "spec_version": "2.0",
    }
    assert get_state(server) == {"db": "connected", "pool": [1, 2, 3]}
    assert not (tmp_path / "shutdown").exists()
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert (tmp_path / "shutdown").read_text() == "complete"


def test_shutdown_runs_on_sigint(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server("asgi_lifespan:app", env=env(tmp_path))
    server.signal(signal.SIGINT)
    assert server.wait_exit() == 0
    assert (tmp_path / "shutdown").read_text() == "complete"


def test_lifespan_off_never_calls_the_app(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server("asgi_lifespan:app", "--lifespan", "off", env=env(tmp_path))
    response = httpx.get(server.url + "/", timeout=10)
    assert response.status_code == 200
    assert get_state(server) is None  # no lifespan, no state
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not (tmp_path / "lifespan.called").exists()
    assert not (tmp_path / "startup").exists()
    assert not (tmp_path / "shutdown").exists()


def test_auto_with_app_that_raises_runs_anyway(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server("asgi_lifespan:unsupported", "--lifespan", "auto", env=env(tmp_path))
    assert wait_marker(tmp_path, "lifespan.called") == "raising"
    response = httpx.get(server.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    server.wait_for(r"lifespan.*unsupported")
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0


def test_on_with_app_that_raises_exits_non_zero(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(
        "-p", str(free_port()), "--lifespan", "on", "asgi_lifespan:unsupported", env=env(tmp_path)
    )
    status = server.wait_exit()
    assert status != 0
    assert "unsupported scope type 'lifespan'" in server.output
    assert "Listening on" not in server.output


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_startup_failed_exits_non_zero_with_message(
    start_server: StartServer, tmp_path: Path, mode: str
) -> None:
    server = start_server(
        "-p", str(free_port()), "--lifespan", mode, "asgi_lifespan:startup_failed"
    )
    status = server.wait_exit()
    assert status != 0
    assert "database unreachable: xyzzy-42" in server.output
    assert "Listening on" not in server.output


@pytest.mark.parametrize("mode", ["auto", "on"])
def test_exception_during_startup_exits_non_zero(
    start_server: StartServer, tmp_path: Path, mode: str
) -> None:
    # The app took part in lifespan (it received lifespan.startup), so even with auto this is a
    # failed startup, not an app without lifespan support.
    server = start_server(
        "-p", str(free_port()), "--lifespan", mode, "asgi_lifespan:startup_raises"
    )
    status = server.wait_exit()
    assert status != 0
    assert "cannot connect to the cache: plugh-17" in server.output
    assert "Listening on" not in server.output


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_startup_failed_is_one_line(start_server: StartServer, loop: str) -> None:
    # The app reported its failure cleanly (and still waits in receive()): one line says so,
    # with no traceback and no complaint about a task left pending.
    server = start_server("-p", str(free_port()), "--loop", loop, "asgi_lifespan:startup_failed")
    assert server.wait_exit() != 0
    lines = server.output.strip().splitlines()
    assert len(lines) == 1, server.output
    assert "CRITICAL" in lines[0]
    assert "xyzzy-42" in lines[0]


def test_app_staying_in_lifespan_after_shutdown(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server("asgi_lifespan:lingering", env=env(tmp_path))
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert (tmp_path / "shutdown").read_text() == "complete"
    assert "Task was destroyed" not in server.output
    assert "Traceback" not in server.output


def test_shutdown_failed_is_logged(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server("asgi_lifespan:shutdown_failed", env=env(tmp_path))
    assert httpx.get(server.url + "/", timeout=10).status_code == 200
    server.signal(signal.SIGTERM)
    server.wait_exit()
    assert (tmp_path / "shutdown").read_text() == "failed"
    assert "could not flush: frob-99" in server.output


def test_auto_with_app_returning_at_once_runs(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server("asgi_lifespan:returns_at_once", env=env(tmp_path))
    assert wait_marker(tmp_path, "lifespan.called") == "returned"
    assert httpx.get(server.url + "/", timeout=10).status_code == 200
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0


def test_on_with_app_returning_at_once_exits_non_zero(start_server: StartServer) -> None:
    server = start_server(
        "-p", str(free_port()), "--lifespan", "on", "asgi_lifespan:returns_at_once"
    )
    assert server.wait_exit() != 0
    assert "before startup completed" in server.output
    assert "Listening on" not in server.output
