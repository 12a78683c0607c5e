# `manage.py runserver` (laurelin's) as a process under test, on a copy of the chat example.
#
# `chat_copy(tmp)` copies examples/chat into a temporary directory (so a test may edit it, and no
# database or bytecode lands in the repository); `write_settings()` adds a settings module there
# that changes the example's. `Runserver` starts `python manage.py runserver ARGS` in a session of
# its own, so that `interrupt()` is what Ctrl-C in a terminal is (SIGINT to the whole process
# group: the autoreloader's parent and the child serving) and `stop()` leaves nothing behind.
# Output handling and bounded waits come from tests/cli_process.py.
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from cli_process import Launched
from conftest import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "chat"
DJ_TESTS = Path(__file__).resolve().parent
BANNER = r"Starting ASGI/laurelin version \S+ development server at http://([^\s/]+):(\d+)/"


def chat_copy(tmp: Path) -> Path:
    """A fresh copy of the chat example in `tmp`/chat, without bytecode or databases."""
    project = tmp / "chat"
    shutil.copytree(
        EXAMPLE,
        project,
        ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3", "staticfiles"),
    )
    return project


def write_settings(project: Path, name: str, body: str) -> str:
    """Write settings module `name` into `project`: the example's settings, then `body`."""
    text = "from mysite.settings import *  # noqa: F403\n\n" + textwrap.dedent(body)
    (project / f"{name}.py").write_text(text, encoding="utf-8")
    return name


def project_env(project: Path, **extra: str) -> dict[str, str]:
    """The environment of the example in `project`: a database there, the in-memory layer, and
    tests/dj on the path for the fixture apps (runserver_echo, runserver_router)."""
    env = {
        "CHAT_DATABASE": str(project / "db.sqlite3"),
        "REDIS_URL": "",
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        "PYTHONPATH": os.pathsep.join([str(project), str(DJ_TESTS)]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "DJANGO_COLORS": "nocolor",
    }
    env.update(extra)
    return env


class Runserver(Launched):
    """`python manage.py runserver ARGS` in `project`, leader of its own process group."""

    def __init__(self, project: Path, *args: str, env: dict[str, str] | None = None) -> None:
        # setsid(1) execs in place (the child of Popen is no group leader), so proc.pid is
        # Python's and the new group's id.
        argv = ["setsid", sys.executable, "manage.py", "runserver", *args]
        super().__init__(argv, env=project_env(project, **(env or {})), cwd=project)

    def wait_banner(self, timeout: float = 30.0) -> int:
        """Wait for the "Starting ASGI/laurelin ..." line; remember and return the port."""
        match = self.wait_for(BANNER, "stdout", timeout)
        self.host = match.group(1).strip("[]")
        self.port = int(match.group(2))
        return self.port

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to every process of the group, as a terminal sends it."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def stop(self) -> None:
        """End the whole group whatever state it is in (SIGTERM, then SIGKILL)."""
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        # The reloader's child may outlive its parent by a moment: make sure it is gone.
        self._signal_group(signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(5)
        for reader in self._readers:
            reader.join(5)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)


def start_runserver(
    project: Path,
    *args: str,
    addrport: str | None = None,
    env: dict[str, str] | None = None,
    wait: bool = True,
) -> Runserver:
    """Start `runserver ADDRPORT ARGS` (a free port of 127.0.0.1 unless `addrport` is given)
    and, with `wait`, wait for its banner. The caller stops it (see the `runserver` fixtures)."""
    if addrport is None:
        addrport = f"127.0.0.1:{free_port()}"
    proc = Runserver(project, addrport, *args, env=env)
    if wait:
        try:
            proc.wait_banner()
        except BaseException:
            proc.stop()
            raise
    return proc


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate()` every 0.1 s until it is true; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
