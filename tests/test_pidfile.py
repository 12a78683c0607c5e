# --pid FILE: laurelin.pidfile on its own (written atomically, refused while another laurelin
# holds it, stale files replaced, removed on exit only while it is ours) and end to end (the
# server's pid in the file while it runs, gone after SIGTERM).
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ServerProcess, free_port
from laurelin.pidfile import PidFileError, pid_file

APP = "cli_app:application"


def holder_script(path: Path, *after: str) -> list[str]:
    """A Python process that holds `path` with pid_file(), says "held", runs `after` and then
    waits for its stdin to close."""
    code = textwrap.dedent(
        f"""
        import os, sys
        from laurelin.pidfile import pid_file
        with pid_file({str(path)!r}):
            print("held", flush=True)
            {"; ".join(after) or "pass"}
            sys.stdin.read()
        """
    )
    return [sys.executable, "-c", code]


@pytest.fixture
def holder() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a process that holds a pid file; it lets go when the test ends (or earlier)."""
    started: list[subprocess.Popen[str]] = []

    def start(path: Path, *after: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            holder_script(path, *after), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        started.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "held\n"
        return proc

    yield start
    for proc in started:
        release(proc)


def release(proc: subprocess.Popen[str]) -> str:
    """Close the holder's stdin: it leaves the `with` block and exits. Returns its output."""
    if proc.poll() is None:
        out, _ = proc.communicate("", timeout=10)
        return out
    return ""


def refusal(path: Path) -> str:
    """The PidFileError message for taking `path` (which must be refused)."""
    with pytest.raises(PidFileError) as refused, pid_file(str(path)):
        pytest.fail(f"took the pid file {path}, which had to be refused")
    return str(refused.value)


# -- the module -------------------------------------------------------------------------------


def test_no_path_means_no_file(tmp_path: Path) -> None:
    with pid_file(None):
        assert list(tmp_path.iterdir()) == []


def test_writes_our_pid_and_removes_it_on_exit(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    with pid_file(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"
        assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_removed_when_the_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    with pytest.raises(RuntimeError, match="boom"), pid_file(str(path)):
        raise RuntimeError("boom")
    assert not path.exists()


def test_a_relative_path_is_written_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pid_file("app.pid"):
        assert (tmp_path / "app.pid").read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / "app.pid").exists()


def test_file_is_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    with pid_file(str(path)):
        assert path.stat().st_mode & 0o044 == 0o044 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_stale_file_of_a_dead_process_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    path.write_text(dead.stdout)
    with pid_file(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


def test_file_naming_a_live_process_that_does_not_hold_it_is_stale(tmp_path: Path) -> None:
    # The number may belong to anything now (pids are reused): only the lock says laurelin.
    path = tmp_path / "app.pid"
    path.write_text(f"{os.getppid()}\n")
    with pid_file(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"


def test_garbage_in_a_stale_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    path.write_bytes(b"\xff not a pid")
    with pid_file(str(path)):
        assert path.read_text() == f"{os.getpid()}\n"


def test_refused_while_another_laurelin_holds_the_file(
    tmp_path: Path, holder: Callable[..., subprocess.Popen[str]]
) -> None:
    path = tmp_path / "app.pid"
    other = holder(path)
    assert refusal(path) == (
        f"--pid {path}: laurelin is already running as process {other.pid} (it holds the pid "
        "file); stop it first or choose another --pid file"
    )
    assert path.read_text() == f"{other.pid}\n"  # untouched
    release(other)
    assert not path.exists()  # the holder removed its own file
    with pid_file(str(path)):  # and now it is free
        assert path.read_text() == f"{os.getpid()}\n"


def test_refused_when_held_twice_in_one_process(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    with pid_file(str(path)):
        assert "already running as process" in refusal(path)
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


def test_refusal_when_the_holder_wrote_no_number(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    path.write_text("")
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert "already running as another process" in refusal(path)
    finally:
        os.close(fd)


def test_not_removed_when_another_process_has_taken_the_path(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    with pid_file(str(path)):
        path.unlink()
        path.write_text("4242\n")  # e.g. a newer server after someone removed ours
    assert path.read_text() == "4242\n"


def test_file_removed_by_someone_else_is_no_error(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    with pid_file(str(path)):
        path.unlink()
    assert not path.exists()


def test_a_forked_child_leaving_the_block_leaves_the_file(
    tmp_path: Path, holder: Callable[..., subprocess.Popen[str]]
) -> None:
    path = tmp_path / "app.pid"
    child_exits = (
        "pid = os.fork()\n"
        "            if pid == 0:\n"
        "                raise SystemExit(0)\n"  # the child unwinds the `with` block
        "            os.waitpid(pid, 0)\n"
        "            print('exists' if os.path.exists(" + repr(str(path)) + ") else 'gone', "
        "flush=True)"
    )
    other = holder(path, child_exits)
    assert other.stdout is not None
    assert other.stdout.readline() == "exists\n"
    assert "already running" in refusal(path)  # the child's exit did not drop the lock
    release(other)
    assert not path.exists()


@pytest.mark.parametrize(
    ("where", "reason"),
    [("missing/app.pid", "No such file or directory"), ("", "Is a directory")],
)
def test_unwritable_path_is_a_clear_error(tmp_path: Path, where: str, reason: str) -> None:
    path = tmp_path / where if where else tmp_path
    assert refusal(path).startswith(f"--pid {path}: cannot write the pid file: {reason}")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_unreadable_existing_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    path.symlink_to(path)  # a loop: open() fails whoever runs the test
    assert refusal(path) == (
        f"--pid {path}: cannot read the pid file: Too many levels of symbolic links"
    )


# -- end to end (the supervisor writes the file) ------------------------------------------------


def test_server_writes_its_pid_and_removes_it_on_sigterm(
    run_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    path = tmp_path / "laurelin.pid"
    server = run_server(APP, "--pid", str(path))
    assert path.read_text() == f"{server.pid}\n"
    assert httpx.get(server.url).status_code == 200
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
    assert not path.exists()


def test_second_server_with_the_same_pid_file_refuses_to_start(
    run_server: Callable[..., ServerProcess],
    start_server: Callable[..., ServerProcess],
    tmp_path: Path,
) -> None:
    path = tmp_path / "laurelin.pid"
    first = run_server(APP, "--pid", str(path))
    second = start_server("-p", str(free_port()), "--pid", str(path), APP)
    assert second.wait_exit() != 0
    assert f"laurelin is already running as process {first.pid}" in second.output
    assert "Traceback" not in second.output
    assert path.read_text() == f"{first.pid}\n"
    assert httpx.get(first.url).status_code == 200


def test_server_replaces_a_stale_pid_file(
    run_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    path = tmp_path / "laurelin.pid"
    path.write_text("999999\n")
    server = run_server(APP, "--pid", str(path))
    assert path.read_text() == f"{server.pid}\n"


def test_server_with_an_unwritable_pid_file_does_not_start(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    path = tmp_path / "missing" / "laurelin.pid"
    server = start_server("-p", str(free_port()), "--pid", str(path), APP)
    assert server.wait_exit() != 0
    assert f"--pid {path}: cannot write the pid file" in server.output
    assert "Listening on" not in server.output


def test_with_workers_the_file_holds_the_parents_pid(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    path = tmp_path / "laurelin.pid"
    server = start_server("-p", str(free_port()), "-w", "2", "--pid", str(path), APP)
    server.wait_listening(timeout=30)
    assert path.read_text() == f"{server.pid}\n"
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=60) == 0
    assert not path.exists()
