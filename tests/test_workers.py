# The process model end to end (issue 6): --workers, replacement of dead and hung workers,
# SIGHUP / --max-requests replacing workers with no failed request under load, SIGTTIN /
# SIGTTOU, SIGTERM draining, --reuse-port. Real processes, real signals, real loopback clients.
# tests/apps/pid_app.py answers with the serving process's pid.
from __future__ import annotations

import http.client
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cli_process import Launched, launcher, laurelin_argv, listening_socket
from conftest import free_port

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def launch() -> Iterator[Callable[..., Launched]]:
    yield from launcher()


def start(
    launch: Callable[..., Launched], *args: str, env: dict[str, str] | None = None
) -> Launched:
    port = free_port()
    proc = launch(laurelin_argv("-p", str(port), *args, "pid_app:app"), env=env)
    proc.port = port
    return proc


def serving(proc: Launched, count: int, timeout: float = 20.0) -> None:
    """Wait until `count` workers have said they serve."""
    deadline = time.monotonic() + timeout
    while len(re.findall(r"Worker process \[\d+\] is serving", proc.stderr)) < count:
        assert time.monotonic() < deadline, proc.output
        assert proc.proc.poll() is None, proc.output
        time.sleep(0.05)


def get_pid(port: int, path: str = "/", timeout: float = 10.0) -> int:
    """One request on a new connection; the pid that answered."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        assert response.status == 200
        return int(response.read())
    finally:
        conn.close()


def pids_seen(port: int, requests: int = 60) -> set[int]:
    return {get_pid(port) for _ in range(requests)}


def worker_pids(proc: Launched) -> set[int]:
    """Pids of the parent's live children."""
    children = Path(f"/proc/{proc.proc.pid}/task/{proc.proc.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Hammer:
    """Clients sending requests back to back until stopped; every failure is recorded.

    Half use a new connection per request, half keep their connection alive (and, like any
    HTTP client, open a new one after the server says `Connection: close`)."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i % 2 == 0,), daemon=True)
            for i in range(threads)
        ]

    def _record(self, pid: int | None, failure: str | None = None) -> None:
        with self._lock:
            if failure is not None:
                self.failures.append(failure)
            else:
                self.ok += 1
                assert pid is not None
                self.pids.add(pid)

    def _run(self, keep_alive: bool) -> None:
        url = f"http://127.0.0.1:{self.port}/"
        if keep_alive:
            with httpx.Client(timeout=10) as client:
                while not self._stop.is_set():
                    try:
                        response = client.get(url)
                        assert response.status_code == 200, response.status_code
                        self._record(int(response.text))
                    except Exception as exc:  # every failure counts, whatever it is
                        self._record(None, f"keep-alive: {exc!r}")
        else:
            while not self._stop.is_set():
                try:
                    self._record(get_pid(self.port))
                except Exception as exc:
                    self._record(None, f"new connection: {exc!r}")

    def __enter__(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def test_workers_all_serve(launch: Callable[..., Launched]) -> None:
    proc = start(launch, "--workers", "3")
    serving(proc, 3)
    children = worker_pids(proc)
    assert len(children) == 3
    seen = pids_seen(proc.port, 150)
    assert seen <= children
    assert len(seen) >= 2, seen  # the kernel spreads accepts; three is usual, two at least
    assert proc.terminate() == 0
    assert proc.stderr.count("Listening on") == 3


def test_web_concurrency_sets_workers(launch: Callable[..., Launched]) -> None:
    proc = start(launch, env={"WEB_CONCURRENCY": "2"})
    serving(proc, 2)
    assert len(worker_pids(proc)) == 2
    assert proc.terminate() == 0


def test_killed_worker_is_replaced(launch: Callable[..., Launched]) -> None:
    proc = start(launch, "--workers", "2")
    serving(proc, 2)
    before = worker_pids(proc)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    proc.wait_for(rf"Worker process \[{victim}\] died \(killed by signal SIGKILL\)", "stderr")
    serving(proc, 3)
    wait_until(lambda: len(worker_pids(proc)) == 2, what="two workers again")
    after = worker_pids(proc)
    assert victim not in after
    # The listener survived: every request is still answered, by the live workers only.
    assert pids_seen(proc.port, 40) <= after
    assert proc.terminate() == 0


def test_hung_worker_is_killed_and_replaced(launch: Callable[..., Launched]) -> None:
    proc = start(launch, "--workers", "2", "--worker-healthcheck-timeout", "1")
    serving(proc, 2)
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=20)
    conn.request("GET", "/block?seconds=15")  # blocks one worker's event loop
    proc.wait_for(
        r"Worker process \[(\d+)\] did not answer the health check in 1.0s: killing it",
        "stderr",
        timeout=15,
    )
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        conn.getresponse().read()
    conn.close()
    proc.wait_for(r"died \(killed by signal SIGKILL\): starting a new one", "stderr")
    serving(proc, 3)
    assert len(pids_seen(proc.port, 20)) >= 1
    assert proc.terminate() == 0


def test_sighup_replaces_every_worker_without_a_failed_request(
    launch: Callable[..., Launched],
) -> None:
    proc = start(launch, "--workers", "2")
    serving(proc, 2)
    old = worker_pids(proc)
    with Hammer(proc.port) as hammer:
        time.sleep(0.5)
        proc.signal(signal.SIGHUP)
        serving(proc, 4)
        wait_until(lambda: not (worker_pids(proc) & old), what="the old workers to exit")
        time.sleep(0.5)
    new = worker_pids(proc)
    assert len(new) == 2 and not (new & old)
    assert hammer.failures == [], hammer.failures[:5]
    assert hammer.ok > 50
    assert new <= hammer.pids  # the new workers served the hammer too
    assert proc.stderr.count("stopped (exit code 0)") == 2
    assert proc.terminate() == 0


def test_max_requests_recycles_without_a_failed_request(launch: Callable[..., Launched]) -> None:
    proc = start(launch, "--workers", "1", "--max-requests", "40", "--max-requests-jitter", "5")
    serving(proc, 1)
    first = worker_pids(proc)
    with Hammer(proc.port, threads=2) as hammer:
        wait_until(lambda: len(hammer.pids) >= 3, what="three generations of workers serving")
    assert hammer.failures == [], hammer.failures[:5]
    assert proc.stderr.count("served its --max-requests: replacing it") >= 2
    assert not (worker_pids(proc) & first)
    assert proc.terminate() == 0


def test_sigttin_and_sigttou_change_the_worker_count(launch: Callable[..., Launched]) -> None:
    proc = start(launch, "--workers", "2")
    serving(proc, 2)
    proc.signal(signal.SIGTTIN)
    serving(proc, 3)
    wait_until(lambda: len(worker_pids(proc)) == 3, what="three workers")
    # One at a time: two identical signals sent back to back may arrive as one.
    proc.signal(signal.SIGTTOU)
    wait_until(lambda: len(worker_pids(proc)) == 2, what="two workers")
    proc.signal(signal.SIGTTOU)
    wait_until(lambda: len(worker_pids(proc)) == 1, what="one worker")
    proc.signal(signal.SIGTTOU)  # the last one stays
    proc.wait_for("keeping the last worker", "stderr")
    assert len(worker_pids(proc)) == 1
    assert len(pids_seen(proc.port, 10)) == 1
    assert proc.terminate() == 0


def test_sigterm_drains_in_flight_requests(launch: Callable[..., Launched], tmp_path: Path) -> None:
    log = tmp_path / "lifespan.log"
    proc = start(launch, "--workers", "2", env={"PID_APP_LOG": str(log)})
    serving(proc, 2)
    results: list[int] = []
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            results.append(get_pid(proc.port, "/slow?seconds=1.5"))
        except BaseException as exc:
            errors.append(exc)

    children = worker_pids(proc)
    threads = [threading.Thread(target=slow) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    proc.signal(signal.SIGTERM)
    for thread in threads:
        thread.join(20)
    assert errors == []
    assert len(results) == 4
    assert set(results) <= children
    assert proc.wait_exit(20) == 0
    # Each worker ran its lifespan shutdown, after its requests were answered.
    lines = log.read_text().splitlines()
    assert sorted(lines) == sorted(f"shutdown {pid}" for pid in children)


def test_second_sigint_exits_at_once(launch: Callable[..., Launched]) -> None:
    proc = start(launch, "--workers", "2", "--graceful-timeout", "30")
    serving(proc, 2)
    children = worker_pids(proc)
    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=20)
    conn.request("GET", "/slow?seconds=20")
    time.sleep(0.3)
    proc.signal(signal.SIGINT)
    proc.wait_for("stopping the workers gracefully", "stderr")
    proc.signal(signal.SIGINT)
    assert proc.wait_exit(10) == 1
    conn.close()
    for pid in children:
        wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 10, f"worker {pid} gone")


def test_worker_that_cannot_start_stops_the_parent(launch: Callable[..., Launched]) -> None:
    port = free_port()
    proc = launch(laurelin_argv("-p", str(port), "--workers", "2", "no_such_module:app"))
    assert proc.wait_exit(20) == 1
    assert "Could not import module 'no_such_module'" in proc.stderr
    assert "could not start (exit code 1): stopping" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_reload_and_workers_do_not_combine(launch: Callable[..., Launched]) -> None:
    proc = start(launch, "--workers", "2", "--reload")
    assert proc.wait_exit(10) == 2
    assert "--reload and --workers > 1 cannot be combined" in proc.stderr


def test_reuse_port_workers_each_listen(launch: Callable[..., Launched]) -> None:
    proc = start(launch, "--workers", "2", "--reuse-port")
    serving(proc, 2)
    seen = pids_seen(proc.port, 100)
    assert seen <= worker_pids(proc)
    assert len(seen) == 2
    assert proc.terminate() == 0


def test_reuse_port_needs_a_fixed_port(launch: Callable[..., Launched]) -> None:
    proc = launch(laurelin_argv("-p", "0", "--workers", "2", "--reuse-port", "pid_app:app"))
    assert proc.wait_exit(10) == 2
    assert "--reuse-port needs a fixed port" in proc.stderr


def test_workers_share_a_unix_socket(launch: Callable[..., Launched], tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    proc = launch(laurelin_argv("-u", str(path), "--workers", "2", "pid_app:app"))
    serving(proc, 2)
    transport = httpx.HTTPTransport(uds=str(path))
    seen = set()
    for _ in range(40):
        with httpx.Client(transport=transport) as client:
            seen.add(int(client.get("http://x/", headers={"Connection": "close"}).text))
    assert seen <= worker_pids(proc)
    assert proc.terminate() == 0
    assert not path.exists()


# Two sockets as systemd passes them (fds 3 and 4, LISTEN_FDS=2), then laurelin with workers.
SYSTEMD_TWO = """
import os, sys
a, b = int(sys.argv[1]), int(sys.argv[2])
os.dup2(a, 3)
os.dup2(b, 4)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "2"
os.execv(sys.executable, [sys.executable, "-m", "laurelin", *sys.argv[3:]])
"""


def test_workers_serve_socket_activated_listeners(launch: Callable[..., Launched]) -> None:
    with listening_socket() as first, listening_socket() as second:
        fds = [first.fileno(), second.fileno()]
        argv = [sys.executable, "-c", SYSTEMD_TWO, *map(str, fds), "--workers", "2", "pid_app:app"]
        proc = launch(argv, pass_fds=fds)
        serving(proc, 2)
        for sock in (first, second):
            port = sock.getsockname()[1]
            assert pids_seen(port, 20) <= worker_pids(proc)
        assert proc.terminate() == 0


def test_a_worker_whose_app_forked_is_still_replaced_and_stopped(
    launch: Callable[..., Launched],
) -> None:
    """The forked child keeps the worker's end of the control socket open: the parent watches
    the process itself, so a death is seen and SIGTERM does not wait for the child."""
    port = free_port()
    proc = launch(laurelin_argv("-p", str(port), "--workers", "2", "forking_app:app"))
    proc.port = port
    serving(proc, 2)
    victim = min(worker_pids(proc))
    os.kill(victim, signal.SIGKILL)
    proc.wait_for(rf"Worker process \[{victim}\] died \(killed by signal SIGKILL\)", "stderr")
    serving(proc, 3)
    # The parent exits promptly, not after the 20 s the forked children sleep (they keep the
    # output pipes open, so the process itself is waited for, not its output).
    proc.signal(signal.SIGTERM)
    assert proc.proc.wait(timeout=10) == 0


def test_a_worker_dying_during_sighup_is_replaced_too(launch: Callable[..., Launched]) -> None:
    proc = start(launch, "--workers", "2")
    serving(proc, 2)
    old = worker_pids(proc)
    proc.signal(signal.SIGHUP)
    proc.wait_for(r"replacing the workers one by one", "stderr")
    os.kill(max(old), signal.SIGKILL)  # the one not being replaced first, most likely
    wait_until(
        lambda: len(worker_pids(proc)) == 2 and not (worker_pids(proc) & old),
        what="two new workers",
    )
    time.sleep(1.5)  # nothing more is started or stopped
    assert len(worker_pids(proc)) == 2
    assert proc.terminate() == 0


def test_a_paused_process_group_is_not_killed_by_the_health_check(
    launch: Callable[..., Launched],
) -> None:
    """Ctrl-Z then fg, a paused container: every probe looks late at once. That is not a hung
    worker: the parent probes afresh."""
    proc = start(launch, "--workers", "2", "--worker-healthcheck-timeout", "1")
    serving(proc, 2)
    everyone = [proc.proc.pid, *worker_pids(proc)]
    for pid in everyone:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(3)
    for pid in everyone:
        os.kill(pid, signal.SIGCONT)
    time.sleep(2.5)
    assert "did not answer the health check" not in proc.stderr
    assert len(pids_seen(proc.port, 10)) >= 1
    assert proc.terminate() == 0


def test_reload_dir_that_does_not_exist_is_a_clear_error(launch: Callable[..., Launched]) -> None:
    proc = start(launch, "--reload", "--reload-dir", "/no/such/dir")
    assert proc.wait_exit(10) == 2
    assert "--reload-dir /no/such/dir: no such directory" in proc.stderr


def test_workers_share_an_adopted_descriptor_and_an_endpoint(
    launch: Callable[..., Launched], tmp_path: Path
) -> None:
    """--fd and -e listeners are opened (or adopted) once by the parent, like -b/-p and -u."""
    path = tmp_path / "e.sock"
    with listening_socket() as sock:
        fd = sock.fileno()
        argv = laurelin_argv("--fd", str(fd), "-e", f"unix:{path}", "--workers", "2", "pid_app:app")
        proc = launch(argv, pass_fds=[fd])
        serving(proc, 2)
        assert pids_seen(sock.getsockname()[1], 20) <= worker_pids(proc)
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport) as client:
            assert int(client.get("http://x/").text) in worker_pids(proc)
        assert proc.terminate() == 0


def test_limit_max_requests_is_max_requests(launch: Callable[..., Launched]) -> None:
    """Uvicorn's spelling works the same."""
    proc = start(launch, "--limit-max-requests", "5")
    serving(proc, 1)
    first = worker_pids(proc)
    for _ in range(12):
        get_pid(proc.port)
    proc.wait_for("served its --max-requests: replacing it", "stderr")
    wait_until(lambda: bool(worker_pids(proc)) and not (worker_pids(proc) & first), what="recycle")
    assert proc.terminate() == 0
