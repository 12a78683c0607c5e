# Shared fixtures: a real laurelin process on a real loopback socket.
#
# `run_server(app, *args)` starts `python -m laurelin` in a subprocess serving one of the apps in
# tests/apps (as "module:attr"), waits until it logs "Listening on", and returns a `ServerProcess`
# with its port, its output and helpers to stop it. Every server is stopped at test teardown.
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
APPS = TESTS / "apps"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A laurelin subprocess. Output (stdout+stderr merged) is collected in `output`."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "laurelin", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(APPS),
        )
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0
        self.host = "127.0.0.1"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self._lines.append(raw.decode("utf-8", "replace"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the output matches `pattern` (a regex); fail the test if it does not."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search("".join(self._lines))
                if match:
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"output never matched {pattern!r}; output so far:\n{''.join(self._lines)}"
                    )
                self._cond.wait(min(remaining, 0.1))

    def wait_listening(self, timeout: float = 10.0) -> None:
        match = self.wait_for(r"Listening on http://[^\s]*:(\d+)", timeout)
        self.port = int(match.group(1))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)

    def rss_kib(self) -> int:
        """Resident set size of the server process, from /proc."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


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
