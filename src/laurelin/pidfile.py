# laurelin.pidfile — --pid FILE: the server's process id in a file, for init scripts and monitors.
#
# Written atomically (a temporary file in the same directory, renamed over the path), so a reader
# never sees a half-written number. While the server runs, the file is held with an exclusive
# flock(2): that, not the number in it, is what says "a laurelin server is using this file". A
# second server given the same path refuses to start (naming the process id inside); a file left
# behind by a server that died (no lock: the kernel drops it with the process) is stale and
# overwritten, even if its number now belongs to some unrelated process. On exit the file is
# removed only if it still holds our process id: a newer server may have taken the path since,
# and a forked worker leaving the `with` block must not remove its parent's file.
from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator


class PidFileError(Exception):
    """The pid file cannot be written, or another running laurelin holds it; str() is the
    one line to show."""


@contextlib.contextmanager
def pid_file(path: str | None) -> Iterator[None]:
    """Hold `path` as this process's pid file for the duration of the block (None: no file).

    Raises:
        PidFileError: on entry, when another running laurelin holds the file or it cannot be
            written.
    """
    if path is None:
        yield
        return
    holder = _write_locked(path)
    try:
        yield
    finally:
        _remove_if_ours(path, holder)


def _write_locked(path: str) -> int:
    """Write our pid to `path` atomically and lock it; return the open, locked descriptor."""
    _refuse_if_held(path)
    directory = os.path.dirname(path) or "."
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise PidFileError(f"--pid {path}: cannot write the pid file: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else can hold it
        os.write(fd, f"{os.getpid()}\n".encode())
        os.replace(temporary, path)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise PidFileError(f"--pid {path}: cannot write the pid file: {exc.strerror}") from None
    return fd


def _refuse_if_held(path: str) -> None:
    """PidFileError if a running laurelin holds `path` (its lock is taken)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO there must not block us
    except FileNotFoundError:
        return
    except OSError as exc:
        raise PidFileError(f"--pid {path}: cannot read the pid file: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            who = f"process {pid}" if pid is not None else "another process"
            raise PidFileError(
                f"--pid {path}: laurelin is already running as {who} (it holds the pid file); "
                "stop it first or choose another --pid file"
            ) from None
    finally:
        os.close(fd)  # also drops our shared lock: the file is stale and will be replaced


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 64, 0).decode("ascii", "replace").strip())
    except (OSError, ValueError):
        return None


def _remove_if_ours(path: str, holder: int) -> None:
    try:
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                ours = _read_pid(fd) == os.getpid()
            finally:
                os.close(fd)
            if ours:
                os.unlink(path)
    finally:
        os.close(holder)
