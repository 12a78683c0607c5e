# The timeouts that bound an app, end to end: --http-timeout (503 if the response has not
# started, else the connection is ended; the app is cancelled either way) and
# --application-close-timeout (an app still running that long after its client left is
# cancelled, and that is logged). Waits are bounded; nothing asserts how long anything took.
from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.asgi_support import (
    close_with_reset,
    connect,
    read_response,
    request,
    serving,
    wait_marker,
)
from conftest import ServerProcess

APP = "asgi_app:app"

_tokens = iter(range(10**6))


def token(name: str) -> str:
    return f"{name}-{next(_tokens)}"


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def http_timeout(markers: Path) -> Iterator[ServerProcess]:
    with serving(
        APP,
        "--http-timeout",
        "1",
        "--graceful-timeout",
        "2",
        env={"ASGI_TEST_MARKERS": str(markers)},
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def close_timeout(markers: Path) -> Iterator[ServerProcess]:
    with serving(
        APP,
        "--application-close-timeout",
        "1",
        "--graceful-timeout",
        "2",
        env={"ASGI_TEST_MARKERS": str(markers)},
    ) as proc:
        yield proc


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


# -- --http-timeout ----------------------------------------------------------------------------


def test_http_timeout_before_start_gives_503(http_timeout: ServerProcess, markers: Path) -> None:
    tok = token("503")
    response = request(http_timeout.port, get(f"/slow?seconds=8&token={tok}"))
    assert response.status == 503
    assert response.complete
    assert response.header("content-type") == "text/html; charset=utf-8"
    assert b"503" in response.body
    assert wait_marker(markers, f"{tok}.cancelled") == "CancelledError"
    http_timeout.wait_for(r"HTTP timeout after 1(\.0)?s: GET /slow")


def test_http_timeout_not_reached(http_timeout: ServerProcess, markers: Path) -> None:
    tok = token("fast")
    response = request(http_timeout.port, get(f"/slow?seconds=0.05&token={tok}"))
    assert response.status == 200
    assert response.body == b"slow done"
    assert wait_marker(markers, f"{tok}.finished") == "1"


def test_connection_usable_after_503(http_timeout: ServerProcess) -> None:
    with connect(http_timeout.port) as sock:
        sock.sendall(get(f"/slow?seconds=8&token={token('ka')}"))
        first = read_response(sock)
        sock.sendall(get("/"))
        second = read_response(sock)
    assert first.status == 503
    assert second.status == 200
    assert second.body == b"Hello, world!"


def test_http_timeout_after_start_ends_the_response(
    http_timeout: ServerProcess, markers: Path
) -> None:
    tok = token("stream")
    response = request(http_timeout.port, get(f"/slow-stream?seconds=8&token={tok}"))
    assert response.status == 200
    assert response.body.startswith(b"first part;")
    assert not response.complete
    assert response.closed
    assert b"last part" not in response.raw
    assert wait_marker(markers, f"{tok}.cancelled") == "CancelledError"


# -- --application-close-timeout ---------------------------------------------------------------


def _start_ignoring(server: ServerProcess, markers: Path) -> tuple[socket.socket, str]:
    tok = token("ignore")
    sock = connect(server.port)
    sock.sendall(get(f"/ignore-disconnect?token={tok}"))
    wait_marker(markers, f"{tok}.started")
    return sock, tok


def test_app_cancelled_after_close_timeout(close_timeout: ServerProcess, markers: Path) -> None:
    sock, tok = _start_ignoring(close_timeout, markers)
    close_with_reset(sock)
    # Cancelled about a second after the client left: well before its own 30 s, and before the
    # default --application-close-timeout of 10 s.
    assert wait_marker(markers, f"{tok}.cancelled", timeout=6) == "CancelledError"
    close_timeout.wait_for(
        r"still running 1(\.0)?s after the client disconnected; cancelling: GET /ignore-disconnect"
    )


def test_app_cancelled_after_close_timeout_on_clean_close(
    close_timeout: ServerProcess, markers: Path
) -> None:
    sock, tok = _start_ignoring(close_timeout, markers)
    sock.close()
    assert wait_marker(markers, f"{tok}.cancelled", timeout=6) == "CancelledError"


def test_app_finishing_in_time_is_not_cancelled(
    close_timeout: ServerProcess, markers: Path
) -> None:
    tok = token("quick")
    sock = connect(close_timeout.port)
    sock.sendall(get(f"/slow?seconds=0.2&token={tok}"))
    wait_marker(markers, f"{tok}.started")
    close_with_reset(sock)
    assert wait_marker(markers, f"{tok}.finished") == "1"
    time.sleep(0.1)
    assert not (markers / f"{tok}.cancelled").exists()


def test_close_timeout_does_not_apply_while_client_is_there(
    close_timeout: ServerProcess, markers: Path
) -> None:
    # A request longer than --application-close-timeout completes while its client waits.
    tok = token("long")
    response = request(close_timeout.port, get(f"/slow?seconds=1.5&token={tok}"))
    assert response.status == 200
    assert response.body == b"slow done"
    assert not (markers / f"{tok}.cancelled").exists()
