# laurelin.supervisor.workers — the parent of worker processes (--workers, --reload,
# --max-requests). It knows nothing of HTTP.
#
# The parent opens every listener once and starts each worker as a fresh interpreter
# (running supervisor/worker.py's main()) that inherits them, so every
# worker accepts from the same sockets (or, with --reuse-port, opens its own TCP listeners).
# The parent never imports the app. It watches each worker over a control socket: "R" when
# it serves, "!" answering the health probe it sends every second or so, "M" when it has served
# its --max-requests; end of file when it exits. Then:
# - a worker that dies is logged with its exit code or signal and replaced; one that does not
#   answer within --worker-healthcheck-timeout is killed (SIGKILL) and replaced;
# - SIGHUP (and --max-requests, and --reload's file changes) replace workers one at a time,
#   the new one serving before the old one drains, so no request is refused or cut;
# - SIGTTIN / SIGTTOU add / remove a worker;
# - SIGTERM or SIGINT drain every worker (each runs its lifespan shutdown) and exit 0; a second
#   SIGINT kills them and exits at once.
# A worker that cannot start (an import error, a failed lifespan startup) before any worker has
# served stops the parent with its exit status; under --reload the parent waits for the next
# change instead.
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from typing import Any

from laurelin.config import Config, check_combination
from laurelin.listeners import EndpointError, ListenError, ListenSpec, listen_specs
from laurelin.supervisor.reload import watch_changes
from laurelin.supervisor.single import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    open_listeners,
    remove_unix_sockets,
    server_tls,
)
from laurelin.supervisor.worker import PROBE, READY, RETIRE, SPEC_ENV, WORKER_CODE, spec_json
from laurelin.tls import TLSError

logger = logging.getLogger("laurelin.error")

# Seconds a stopped worker gets beyond --graceful-timeout (for its lifespan shutdown) before it
# is killed.
STOP_MARGIN = 10.0
# Restarting workers that keep failing to start: wait this long between attempts.
RESPAWN_BACKOFF = 1.0
# Seconds a worker has to start serving (import the app, run lifespan startup); then it is
# killed and counted as a start-up failure.
BOOT_TIMEOUT = 120.0


class Worker:
    """One worker process, as its parent sees it."""

    def __init__(self, proc: subprocess.Popen[bytes], control: socket.socket) -> None:
        self.proc = proc
        self.control = control
        self.ready = False
        self.stopping = False  # sent SIGTERM: its exit is expected
        self.retire_asked = False
        self.started = time.monotonic()
        self.probe_sent: float | None = None  # an unanswered health probe, since when
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.ready_event = asyncio.Event()
        self.pidfd = -1

    @property
    def pid(self) -> int:
        return self.proc.pid


def describe_exit(code: int) -> str:
    """'exit code 3' or 'killed by signal SIGKILL'."""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Arbiter:
    """Starts, watches, replaces and stops the worker processes."""

    def __init__(
        self, config: Config, specs: list[ListenSpec], sockets: list[socket.socket | None]
    ):
        self.config = config
        self.specs = specs
        self.sockets = sockets
        self.target = 1 if config.reload else config.workers
        self.workers: list[Worker] = []
        self.stopping = False
        self.served = False  # a worker has been ready at least once
        self.exit_status = EXIT_OK
        self.done = asyncio.Event()
        self._replacing = asyncio.Lock()
        self._interrupts = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- workers -------------------------------------------------------------------------------

    def spawn(self) -> Worker:
        """Start one worker process."""
        parent_end, child_end = socket.socketpair()
        fds = [sock.fileno() if sock is not None else None for sock in self.sockets]
        env = dict(os.environ)
        env[SPEC_ENV] = spec_json(self.config, self.specs, fds, child_end.fileno())
        if self.config.reload:
            # No .pyc written for the app: an edit within the second of the last import, of the
            # same size, would otherwise load the old code from a cache that looks current.
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("LISTEN_FDS", None)
        env.pop("LISTEN_PID", None)
        env.pop("LISTEN_FDNAMES", None)
        passed = [fd for fd in fds if fd is not None] + [child_end.fileno()]
        try:
            proc = subprocess.Popen([sys.executable, "-c", WORKER_CODE], env=env, pass_fds=passed)
        except OSError:
            parent_end.close()
            raise
        finally:
            child_end.close()
        parent_end.setblocking(False)
        worker = Worker(proc, parent_end)
        self.workers.append(worker)
        loop = asyncio.get_running_loop()
        loop.add_reader(parent_end.fileno(), self._on_control, worker)
        # The process's exit is watched itself: the control socket may outlive it (inherited by
        # a process the app forked).
        with contextlib.suppress(AttributeError, OSError):
            worker.pidfd = os.pidfd_open(proc.pid)
            loop.add_reader(worker.pidfd, self._on_exit, worker)
        logger.info("Started worker process [%d]", proc.pid)
        return worker

    def _on_exit(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(worker.pidfd)
        os.close(worker.pidfd)
        worker.pidfd = -1
        self._close_control(worker)
        code = worker.proc.wait()  # it has exited: no wait
        self._reaped(worker, code)

    def _close_control(self, worker: Worker) -> None:
        if worker.control.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(worker.control.fileno())
            worker.control.close()

    def _on_control(self, worker: Worker) -> None:
        try:
            data = worker.control.recv(256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if worker.pidfd < 0:  # no pidfd: the end of the socket is all there is to go by
                asyncio.get_running_loop().remove_reader(worker.control.fileno())
                self._track(self._reap(worker))
            else:
                self._close_control(worker)
            return
        worker.probe_sent = None
        if READY in data and not worker.ready:
            worker.ready = True
            worker.ready_event.set()
            self.served = True
            logger.info("Worker process [%d] is serving", worker.pid)
        if RETIRE in data and not worker.retire_asked and not worker.stopping:
            worker.retire_asked = True
            logger.info("Worker process [%d] served its --max-requests: replacing it", worker.pid)
            self._track(self._replace(worker))

    async def _reap(self, worker: Worker) -> None:
        """The worker closed its control socket: it is exiting; collect its status."""
        loop = asyncio.get_running_loop()
        code = worker.proc.poll()
        deadline = loop.time() + 5.0
        while code is None and loop.time() < deadline:
            await asyncio.sleep(0.01)
            code = worker.proc.poll()
        if code is None:
            worker.proc.kill()
            code = await loop.run_in_executor(None, worker.proc.wait)
        worker.control.close()
        self._reaped(worker, code)

    def _reaped(self, worker: Worker, code: int) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        worker.ready_event.set()  # anyone waiting for it to serve: it never will
        worker.exited.set_result(code)
        if worker.stopping or self.stopping:
            logger.info("Worker process [%d] stopped (%s)", worker.pid, describe_exit(code))
        elif not worker.ready:
            self._boot_failed(worker, code)
        else:
            logger.error(
                "Worker process [%d] died (%s): starting a new one", worker.pid, describe_exit(code)
            )
            self._fill()
        if self.stopping and not self.workers:
            self.done.set()

    def _boot_failed(self, worker: Worker, code: int) -> None:
        if self.config.reload:
            logger.error(
                "Worker process [%d] could not start (%s): waiting for a file change",
                worker.pid,
                describe_exit(code),
            )
            return
        if not self.served:
            logger.critical(
                "Worker process [%d] could not start (%s): stopping",
                worker.pid,
                describe_exit(code),
            )
            self.exit_status = code if code > 0 else EXIT_FAILURE
            self.stop()
            return
        logger.error(
            "Worker process [%d] could not start (%s): trying again in %ss",
            worker.pid,
            describe_exit(code),
            RESPAWN_BACKOFF,
        )
        asyncio.get_running_loop().call_later(RESPAWN_BACKOFF, self._fill)
        # (_fill starts one only if the worker count is short: a failed replacement is not.)

    def _fill(self) -> None:
        """Start workers until there are as many running (and not retiring) as wanted."""
        if self.stopping:
            return
        while len([w for w in self.workers if not w.stopping]) < self.target:
            try:
                self.spawn()
            except OSError as exc:  # out of processes, memory or descriptors: try again soon
                logger.error(
                    "Could not start a worker process (%s): trying again in %ss",
                    exc,
                    RESPAWN_BACKOFF,
                )
                asyncio.get_running_loop().call_later(RESPAWN_BACKOFF, self._fill)
                return

    def _stop_worker(self, worker: Worker) -> None:
        """Drain one worker (SIGTERM); killed if it has not exited in time."""
        if worker.stopping:
            return
        worker.stopping = True
        with contextlib.suppress(ProcessLookupError):
            worker.proc.send_signal(signal.SIGTERM)
        self._track(self._kill_late(worker))

    async def _kill_late(self, worker: Worker) -> None:
        timeout = self.config.graceful_timeout + STOP_MARGIN
        try:
            await asyncio.wait_for(asyncio.shield(worker.exited), timeout)
        except TimeoutError:
            logger.warning(
                "Worker process [%d] did not stop in %ss: killing it", worker.pid, timeout
            )
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()

    async def _replace(self, old: Worker) -> None:
        """A new worker first; once it serves, the old one drains."""
        async with self._replacing:
            if self.stopping or old.stopping or old not in self.workers:
                return
            new = self.spawn()
            await new.ready_event.wait()  # set when it serves, or exits (BOOT_TIMEOUT: _health)
            if not new.ready:
                if not self.stopping:
                    logger.error(
                        "Worker process [%d] was kept: its replacement could not start", old.pid
                    )
                return
            self._stop_worker(old)
            self._fill()  # a worker that died meanwhile is replaced too

    async def replace_all(self) -> None:
        """SIGHUP: every current worker replaced, one at a time."""
        for worker in list(self.workers):
            if not worker.stopping:
                await self._replace(worker)

    async def reload(self, changed: set[str]) -> None:
        """--reload: the old worker stops first (two versions of the code never serve side by
        side), then a new one starts."""
        names = ", ".join(sorted(os.path.relpath(p) for p in changed)[:3])
        logger.warning("Changes detected in %s: reloading", names)
        async with self._replacing:
            for worker in list(self.workers):
                self._stop_worker(worker)
                await worker.exited
            self._fill()

    # -- health --------------------------------------------------------------------------------

    async def _health(self) -> None:
        """Probe every serving worker; kill one whose probe stays unanswered for the timeout,
        or that has not started serving within BOOT_TIMEOUT. Not under --reload, where a
        developer may hold a worker in a debugger. A round that wakes late (the whole process
        group was stopped, the machine paused) probes afresh instead of killing."""
        timeout = self.config.worker_healthcheck_timeout
        interval = min(1.0, max(timeout / 4, 0.05)) if timeout else 1.0
        kills = bool(timeout) and not self.config.reload
        last = time.monotonic()
        while not self.stopping:
            await asyncio.sleep(interval)
            now = time.monotonic()
            late = now - last > interval + max(timeout / 2, 1.0)
            last = now
            for worker in list(self.workers):
                if worker.stopping:
                    continue
                if not worker.ready:
                    if kills and not late and now - worker.started > BOOT_TIMEOUT:
                        logger.error(
                            "Worker process [%d] did not start serving in %ss: killing it",
                            worker.pid,
                            BOOT_TIMEOUT,
                        )
                        worker.proc.kill()
                    continue
                sent = worker.probe_sent
                if sent is not None and not late:
                    if kills and now - sent > timeout:
                        logger.error(
                            "Worker process [%d] did not answer the health check in %ss: "
                            "killing it",
                            worker.pid,
                            timeout,
                        )
                        worker.probe_sent = None
                        worker.proc.kill()
                    continue
                worker.probe_sent = now
                with contextlib.suppress(OSError):
                    worker.control.send(PROBE)

    # -- signals -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Drain every worker; done is set once all have exited."""
        if self.stopping:
            return
        self.stopping = True
        for worker in list(self.workers):
            self._stop_worker(worker)
        if not self.workers:
            self.done.set()

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum in (signal.SIGINT, signal.SIGTERM):
            if signum == signal.SIGINT:
                self._interrupts += 1
            if self._interrupts >= 2:
                logger.warning("Second interrupt: killing the workers and exiting at once")
                for worker in self.workers:
                    with contextlib.suppress(ProcessLookupError):
                        worker.proc.kill()
                self.exit_status = EXIT_FAILURE
                self.done.set()
                return
            if not self.stopping:
                logger.info("Received %s: stopping the workers gracefully", name)
                self.stop()
        elif self.stopping:
            return
        elif signum == signal.SIGHUP:
            logger.info("Received SIGHUP: replacing the workers one by one")
            self._track(self.replace_all())
        elif signum == signal.SIGTTIN:
            self.target += 1
            logger.info("Received SIGTTIN: now %d worker(s)", self.target)
            self._fill()
        elif signum == signal.SIGTTOU:
            if self.target <= 1:
                logger.info("Received SIGTTOU: keeping the last worker")
                return
            self.target -= 1
            logger.info("Received SIGTTOU: now %d worker(s)", self.target)
            running = [w for w in self.workers if not w.stopping]
            if len(running) > self.target:
                self._stop_worker(running[0])  # the oldest

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- running -------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
        for signum in handled:
            loop.add_signal_handler(signum, self.on_signal, signum)
        mode = "reload" if self.config.reload else f"{self.target} worker(s)"
        logger.info("Started parent process [%d] (%s)", os.getpid(), mode)
        self._fill()
        health = loop.create_task(self._health())
        watcher = loop.create_task(self._watch()) if self.config.reload else None
        try:
            await self.done.wait()
        finally:
            health.cancel()
            if watcher is not None:
                watcher.cancel()
            for signum in handled:
                loop.remove_signal_handler(signum)
            for worker in self.workers:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.kill()
        logger.info("Stopped parent process [%d]", os.getpid())
        return self.exit_status

    async def _watch(self) -> None:
        dirs = ", ".join(self.config.reload_dirs or (os.getcwd(),))
        logger.info("Watching for file changes in %s", dirs)
        try:
            async for changed in watch_changes(self.config):
                if self.stopping:
                    return
                await self.reload(changed)
        except Exception as exc:
            # Nothing would reload any more: say so and stop rather than serve stale code.
            logger.critical("--reload: watching for file changes failed: %s", exc)
            self.exit_status = EXIT_FAILURE
            self.stop()


def _check(config: Config) -> str | None:
    try:
        check_combination(dataclasses.asdict(config))  # the command line's rules, for run()
    except ValueError as exc:
        return str(exc)
    for directory in config.reload_dirs if config.reload else ():
        if not os.path.isdir(directory):
            return f"--reload-dir {directory}: no such directory"
    return None


def run_workers(config: Config) -> int:
    """The parent process: open the listeners, run the Arbiter, return the exit status."""
    problem = _check(config)
    if problem:
        logger.critical("%s", problem)
        return EXIT_USAGE
    try:
        specs = listen_specs(config)
        server_tls(specs, config)  # bad certificate files: one line now, not one per worker
    except (EndpointError, TLSError) as exc:
        logger.critical("%s", exc)
        return EXIT_FAILURE
    shared = [spec for spec in specs if not (config.reuse_port and spec.kind == "tcp")]
    if config.reuse_port and any(s.kind == "tcp" and s.port == 0 for s in specs):
        logger.critical("--reuse-port needs a fixed port: every worker binds it on its own")
        return EXIT_USAGE
    try:
        opened = open_listeners(shared, config)
    except ListenError as exc:
        logger.critical("%s", exc)
        return EXIT_FAILURE
    it: Iterator[socket.socket] = iter(opened)
    sockets = [None if (config.reuse_port and s.kind == "tcp") else next(it) for s in specs]
    for sock in opened:
        os.set_inheritable(sock.fileno(), True)
    try:
        return asyncio.run(Arbiter(config, specs, sockets).run())
    finally:
        for sock in opened:
            sock.close()
        remove_unix_sockets([spec.path for spec in specs if spec.kind == "unix"])
