# The simplest end-to-end check: laurelin starts, answers httpx, and stops on SIGTERM with 0.
from __future__ import annotations

import signal
from collections.abc import Callable

import httpx

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
