# The simplest end-to-end check: laurelin starts, answers httpx, and stops on SIGTERM with 0.
from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import httpx

import wsraw
from conftest import ServerProcess


def test_hello_and_clean_exit(run_server: Callable[..., ServerProcess]) -> None:
    server = run_server("basic:app")
    response = httpx.get(server.url + "/")
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.headers["server"] == "laurelin"
    assert "date" in response.headers
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0


def test_demo_app_serves_its_page_and_websocket_echo(
    run_server: Callable[..., ServerProcess],
) -> None:
    """`make demo` serves examples/hello.py: its page, and the WebSocket echo the page uses."""
    examples = Path(__file__).parent.parent / "examples"
    server = run_server("hello:app", "--app-dir", str(examples))
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert "new WebSocket" in page.text
    with wsraw.client(f"ws://127.0.0.1:{server.port}/ws") as ws:
        ws.send("hi")
        assert ws.recv() == "hi"
