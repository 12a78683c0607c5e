# Graceful shutdown end to end: on SIGTERM (or one SIGINT) the server stops accepting, closes idle
# keep-alive connections, lets in-flight requests finish (up to --graceful-timeout, then cancels
# them), and exits 0; a second SIGINT exits at once. Every server here is its own process.
from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from apps.asgi_support import connect, read_response, read_to_close, wait_marker
from conftest import ServerProcess

RunServer = Callable[..., ServerProcess]
APP = "asgi_app:app"


def env(markers: Path) -> dict[str, str]:
    return {"ASGI_TEST_MARKERS": str(markers)}


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def start_slow(server: ServerProcess, markers: Path, name: str, seconds: float) -> socket.socket:
    """A request in flight: its app has started and sleeps `seconds`."""
    sock = connect(server.port, timeout=30)
    sock.sendall(get(f"/slow?seconds={seconds}&token={name}"))
    wait_marker(markers, f"{name}.started")
    return sock


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sigterm_lets_in_flight_request_finish(
    run_server: RunServer, tmp_path: Path, loop: str
) -> None:
    server = run_server(APP, "--loop", loop, env=env(tmp_path))
    sock = start_slow(server, tmp_path, "inflight", 2)
    server.signal(signal.SIGTERM)
    server.wait_for(r"Waiting for \d+ connection")
    # The listener is closed as soon as the drain starts: new clients are refused.
    assert_refused(server.port)
    response = read_response(sock)
    sock.close()
    assert response.status == 200
    assert response.body == b"slow done"
    assert response.complete
    assert response.header("connection") == "close"
    assert server.wait_exit() == 0
    assert not (tmp_path / "inflight.cancelled").exists()


def test_idle_keep_alive_connections_closed_promptly(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server(APP, "--timeout-keep-alive", "60", env=env(tmp_path))
    idle = connect(server.port)
    idle.sendall(get("/"))
    assert read_response(idle).status == 200
    busy = start_slow(server, tmp_path, "busy", 6)
    server.signal(signal.SIGTERM)
    # The idle connection is closed long before the busy request (6 s) ends and the server
    # exits, and long before its keep-alive timeout (60 s).
    idle.settimeout(4)
    assert read_to_close(idle) == b""
    idle.close()
    response = read_response(busy)
    busy.close()
    assert response.status == 200
    assert server.wait_exit() == 0


def test_keep_alive_connection_in_flight_gets_connection_close(
    run_server: RunServer, tmp_path: Path
) -> None:
    server = run_server(APP, env=env(tmp_path))
    sock = connect(server.port, timeout=30)
    sock.sendall(get("/"))
    assert read_response(sock).status == 200
    sock.sendall(get("/slow?seconds=1&token=second"))
    wait_marker(tmp_path, "second.started")
    server.signal(signal.SIGTERM)
    response = read_response(sock)
    assert response.status == 200
    assert response.header("connection") == "close"
    # ... and the server closes the connection after it.
    assert read_to_close(sock) == b""
    sock.close()
    assert server.wait_exit() == 0


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_graceful_timeout_cancels_the_app(run_server: RunServer, tmp_path: Path, loop: str) -> None:
    server = run_server(APP, "--loop", loop, "--graceful-timeout", "1", env=env(tmp_path))
    sock = start_slow(server, tmp_path, "long", 30)
    server.signal(signal.SIGTERM)
    # Bounded well below the request's 30 s: the server gives up on it after about 1 s.
    status = server.wait_exit(timeout=10)
    assert wait_marker(tmp_path, "long.cancelled", timeout=1) == "CancelledError"
    assert not (tmp_path / "long.finished").exists()
    assert status == 0
    assert "Graceful timeout" in server.output
    response = read_response(sock)
    sock.close()
    assert not (response.status == 200 and response.complete)


def test_work_after_the_response_finishes_before_exit(
    run_server: RunServer, tmp_path: Path
) -> None:
    """An app still running after its response (a background task, a consumer's disconnect())
    is waited for within --graceful-timeout, not destroyed with the event loop."""
    server = run_server(APP, env=env(tmp_path))
    sock = connect(server.port, timeout=30)
    sock.sendall(get("/work-after-response?seconds=1.5&token=bg"))
    assert read_response(sock).body == b"answered"
    sock.close()
    wait_marker(tmp_path, "bg.started")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=10) == 0
    assert (tmp_path / "bg.finished").exists()
    assert "Waiting for 1 application call(s) to finish" in server.output
    assert "Task was destroyed" not in server.output


def test_work_after_the_response_is_cancelled_at_the_graceful_timeout(
    run_server: RunServer, tmp_path: Path
) -> None:
    server = run_server(APP, "--graceful-timeout", "1", env=env(tmp_path))
    sock = connect(server.port, timeout=30)
    sock.sendall(get("/work-after-response?seconds=30&token=bg"))
    assert read_response(sock).body == b"answered"
    sock.close()
    wait_marker(tmp_path, "bg.started")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=10) == 0
    assert wait_marker(tmp_path, "bg.cancelled", timeout=1) == "CancelledError"
    assert "Graceful timeout: cancelling 1 application call(s)" in server.output
    assert "Task was destroyed" not in server.output


def test_sigint_once_is_graceful(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server(APP, env=env(tmp_path))
    sock = start_slow(server, tmp_path, "sigint", 1)
    server.signal(signal.SIGINT)
    response = read_response(sock)
    sock.close()
    assert response.status == 200
    assert response.body == b"slow done"
    assert server.wait_exit() == 0
    assert "Received SIGINT" in server.output


def test_second_sigint_exits_at_once(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server(APP, env=env(tmp_path))
    sock = start_slow(server, tmp_path, "stuck", 30)
    server.signal(signal.SIGINT)
    server.wait_for(r"Received SIGINT: shutting down gracefully")
    server.wait_for(r"Waiting for \d+ connection")
    server.signal(signal.SIGINT)
    # Without the second interrupt this would wait for the request (30 s) or the default
    # --graceful-timeout (30 s).
    try:
        status = server.wait_exit(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("a second SIGINT did not stop the server")
    assert status != 0
    sock.close()
    assert not (tmp_path / "stuck.finished").exists()


def test_sigint_after_sigterm_exits_at_once(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server(APP, env=env(tmp_path))
    sock = start_slow(server, tmp_path, "stuck", 30)
    server.signal(signal.SIGTERM)
    server.wait_for(r"Waiting for \d+ connection")
    server.signal(signal.SIGINT)  # Ctrl-C while draining: the user wants out now
    try:
        status = server.wait_exit(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("SIGINT during a SIGTERM drain did not stop the server")
    assert status != 0
    sock.close()


def test_second_sigterm_stays_graceful(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server(APP, env=env(tmp_path))
    sock = start_slow(server, tmp_path, "twice", 1)
    server.signal(signal.SIGTERM)
    server.wait_for(r"Waiting for \d+ connection")
    server.signal(signal.SIGTERM)
    response = read_response(sock)
    sock.close()
    assert response.status == 200
    assert response.body == b"slow done"
    assert server.wait_exit() == 0


def test_sigterm_when_idle_exits_zero(run_server: RunServer, tmp_path: Path) -> None:
    server = run_server(APP, env=env(tmp_path))
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=10) == 0
    assert_refused(server.port)
