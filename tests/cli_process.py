# A laurelin process under full control, for the tests conftest's ServerProcess cannot express.
#
# `ServerProcess` merges stdout and stderr and runs only `python -m laurelin ARGS`. `Launched`
# keeps the two streams apart (the access log goes to stdout, server messages to stderr), can
# hand listening sockets to the child (pass_fds) and can run any command line (a wrapper that
# execs laurelin, for systemd socket activation). Every wait is bounded; `launcher()` backs a
# fixture that stops whatever it started.
from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

APPS = Path(__file__).parent / "apps"
LISTENING = re.compile(r"Listening on https?://(\[[^\]]+\]|[^\s:]+):(\d+)")


def laurelin_argv(*args: str) -> list[str]:
    """The command line that runs laurelin with `args` under the test interpreter."""
    return [sys.executable, "-m", "laurelin", *args]


class Launched:
    """A child process whose stdout and stderr are collected separately (and merged)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        pass_fds: Sequence[int] = (),
        cwd: Path = APPS,
    ) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.pop("LISTEN_FDS", None)
        full_env.pop("LISTEN_PID", None)
        if env:
            full_env.update(env)
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=str(cwd),
            pass_fds=tuple(pass_fds),
        )
        self._cond = threading.Condition()
        self._text: dict[str, list[str]] = {"stdout": [], "stderr": [], "output": []}
        self._readers = [
            threading.Thread(target=self._read, args=(name,), daemon=True)
            for name in ("stdout", "stderr")
        ]
        for reader in self._readers:
            reader.start()
        self.port = 0
        self.host = "127.0.0.1"

    def _read(self, name: str) -> None:
        stream = self.proc.stdout if name == "stdout" else self.proc.stderr
        assert stream is not None
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            with self._cond:
                self._text[name].append(line)
                self._text["output"].append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def text(self, stream: str = "output") -> str:
        """What the process wrote so far to "stdout", "stderr" or either ("output")."""
        with self._cond:
            return "".join(self._text[stream])

    @property
    def stdout(self) -> str:
        return self.text("stdout")

    @property
    def stderr(self) -> str:
        return self.text("stderr")

    @property
    def output(self) -> str:
        return self.text("output")

    def _finished(self) -> bool:
        return self.proc.poll() is not None and not any(r.is_alive() for r in self._readers)

    def wait_for(
        self, pattern: str, stream: str = "output", timeout: float = 10.0
    ) -> re.Match[str]:
        """Wait until `stream` matches the regex `pattern`; fail the test if it never does."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search("".join(self._text[stream]))
                if match:
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._finished():
                    raise AssertionError(
                        f"{stream} never matched {pattern!r}; output so far:\n"
                        + "".join(self._text["output"])
                    )
                self._cond.wait(min(remaining, 0.1))

    def wait_listening(self, timeout: float = 10.0) -> int:
        """Wait for the "Listening on http(s)://..." line; remember and return its port."""
        match = self.wait_for(LISTENING.pattern, "stderr", timeout)
        self.host = match.group(1).strip("[]")
        self.port = int(match.group(2))
        return self.port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 15.0) -> int:
        """Wait for the process to end and for its output to be read completely."""
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def terminate(self) -> int:
        """SIGTERM, then wait for the exit status (the graceful path)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit()

    def stop(self) -> None:
        """Stop the process whatever state it is in."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for reader in self._readers:
            reader.join(5)


def launcher() -> Iterator[Callable[..., Launched]]:
    """Body of a `launch` fixture: start processes with `launch(argv, ...)`, all stopped after."""
    started: list[Launched] = []

    def launch(argv: Sequence[str], **kwargs: object) -> Launched:
        proc = Launched(argv, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield launch
    for proc in started:
        proc.stop()


def run_to_exit(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> Launched:
    """Run laurelin with `args` until it exits by itself (start-up failures, --help)."""
    proc = Launched(laurelin_argv(*args), env=env)
    try:
        proc.wait_exit(timeout)
    finally:
        proc.stop()
    return proc


def listening_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A bound, listening, inheritable TCP socket to hand to laurelin (--fd, systemd)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(16)
    sock.set_inheritable(True)
    return sock


def ipv6_loopback_available() -> bool:
    """Whether this machine can listen on ::1."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


# Ports handed to test servers come from below the kernel's ephemeral range: a port from
# inside it (what binding port 0 gives) can be taken, between the check and the server's own
# bind, as the source port of a client connection some test running alongside opens, and the
# server then fails with "Address already in use".
_FIRST_TEST_PORT = 10000


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def unused_port() -> int:
    """A port free on 127.0.0.1 now, outside the ephemeral range when there is room."""
    low = _ephemeral_low()
    if low - _FIRST_TEST_PORT >= 1000:
        for _ in range(100):
            port = random.randrange(_FIRST_TEST_PORT, low)
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_v4_and_v6() -> int:
    """A port free on both 127.0.0.1 and ::1 (for a test that listens on both)."""
    for _ in range(50):
        port = unused_port()
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock6:
                sock6.bind(("::1", port))
        except OSError:
            continue
        return port
    raise AssertionError("no port free on both 127.0.0.1 and ::1")
