# Shared fixtures: a real laurelin process on a real loopback socket.
#
# `run_server(app, *args)` starts `python -m laurelin` in a subprocess serving one of the apps in
# tests/apps (as "module:attr"), waits until it logs "Listening on", and returns a `ServerProcess`
# with its port, its output and helpers to stop it. Every server is stopped at test teardown.
# `PeakRSS` samples a server's peak memory while a block runs, for the bounded-memory tests.
# The process machinery itself (output readers, bounded waits) is tests/cli_process.py.
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli_process import Launched, laurelin_argv, unused_port

TESTS = Path(__file__).parent
APPS = TESTS / "apps"


def free_port() -> int:
    """A port free on 127.0.0.1 for a test server (see cli_process.unused_port)."""
    return unused_port()


class ServerProcess(Launched):
    """`python -m laurelin ARGS` (see cli_process.Launched for waiting on and reading output)."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        super().__init__(laurelin_argv(*args), env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        """Resident set size of the server process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


class PeakRSS:
    """Samples the server's RSS in a thread while the block runs; `growth` is peak - start.
    A sample the process cannot give (it has just exited) is skipped."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.start = server.rss_kib()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, AssertionError):
                self.peak = max(self.peak, self.server.rss_kib())
            self._stop.wait(0.01)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(OSError, AssertionError):
            self.peak = max(self.peak, self.server.rss_kib())

    @property
    def growth(self) -> int:
        return self.peak - self.start


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    """Start laurelin with the given arguments (no listening wait); stopped at teardown."""
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        proc = ServerProcess(list(args), env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def run_server(
    start_server: Callable[..., ServerProcess],
) -> Callable[..., ServerProcess]:
    """Start laurelin serving `app` (e.g. "basic:app") on a free port and wait until it listens."""

    def run(app: str, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
        port_args = (
            []
            if any(a in ("-p", "--port", "-u", "--fd", "-e") for a in args)
            else [
                "-p",
                str(free_port()),
            ]
        )
        proc = start_server(*port_args, *args, app, env=env)
        proc.wait_listening()
        return proc

    return run
