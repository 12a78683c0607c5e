# laurelin.supervisor.worker — one worker process of --workers / --reload / --max-requests.
#
# The parent (supervisor/workers.py) starts a Python running `main()` below with the
# Config as JSON and the numbers of the listening descriptors it hands down in the environment
# variable LAURELIN_WORKER_SPEC, plus one end of a control socket. On that socket the worker says
# "R" once it is serving, answers every "?" health probe with "!" from its event loop (a blocked
# loop cannot answer, and gets killed), and adds "M" once it has served its --max-requests (the
# parent then replaces it the graceful way). SIGTERM drains it like a single server; SIGINT,
# SIGHUP, SIGTTIN and SIGTTOU are ignored: sent to the whole process group (Ctrl-C, a hangup),
# they are the parent's to act on. End of file on
# the control socket means the parent is gone: the worker drains and exits.
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from laurelin.config import Config, option_fields
from laurelin.listeners import ListenSpec
from laurelin.tls import TLSFiles

SPEC_ENV = "LAURELIN_WORKER_SPEC"
# How the parent runs a worker (not `-m`: the package imports this module first).
WORKER_CODE = "from laurelin.supervisor.worker import main; main()"
READY, PROBE, ANSWER, RETIRE = b"R", b"?", b"!", b"M"


def spec_json(config: Config, specs: list[ListenSpec], fds: list[int | None], control: int) -> str:
    """What the parent passes to a worker: the Config, the parent's listeners (as the parent
    found them: a worker's own environment has no LISTEN_FDS) with their fds (None: open your
    own, --reuse-port), and the control socket's fd."""
    values = {f.name: getattr(config, f.name) for f in option_fields()}
    listeners = [dataclasses.asdict(spec) for spec in specs]
    return json.dumps({"config": values, "specs": listeners, "fds": fds, "control": control})


def specs_from_json(items: list[dict[str, Any]]) -> list[ListenSpec]:
    """Rebuild spec_json's listeners."""
    specs = []
    for item in items:
        tls = item.pop("tls")
        specs.append(ListenSpec(**item, tls=TLSFiles(**tls) if tls is not None else None))
    return specs


def config_from_json(values: dict[str, Any]) -> Config:
    """Rebuild a Config from spec_json's form (JSON turns tuples into lists)."""
    fields = {f.name: f for f in option_fields()}
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if name in fields:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    return Config(**kwargs)


class ParentLink:
    """The worker's end of the control socket, served from the worker's event loop."""

    def __init__(
        self,
        sock: socket.socket,
        started: asyncio.Event,
        stop: asyncio.Event,
        max_requests: int | None,
        requests: Callable[[], int],
    ) -> None:
        self.sock = sock
        self.stop = stop
        self.max_requests = max_requests
        self.requests = requests  # app calls served so far
        self._retiring = False
        self._loop = asyncio.get_running_loop()
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._on_readable)
        self._announce = self._loop.create_task(self._announce_ready(started))

    async def _announce_ready(self, started: asyncio.Event) -> None:
        await started.wait()
        self._send(READY)

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.send(data)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # The parent is gone: nobody will replace or stop this worker; drain and exit.
            self._loop.remove_reader(self.sock.fileno())
            self.stop.set()
            return
        if PROBE in data:
            reply = ANSWER
            limit = self.max_requests
            if limit is not None and not self._retiring and self.requests() >= limit:
                self._retiring = True
                reply += RETIRE
            self._send(reply)

    def close(self) -> None:
        self._announce.cancel()
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


def max_requests_for(config: Config) -> int | None:
    """This worker's --max-requests, with its own --max-requests-jitter added."""
    if config.max_requests is None:
        return None
    jitter = max(config.max_requests_jitter, 0)
    return config.max_requests + (random.randint(0, jitter) if jitter else 0)


def main() -> None:
    """Entry point of a worker process (never run by hand)."""
    from laurelin.supervisor.single import run_worker

    raw = os.environ.pop(SPEC_ENV, None)
    if raw is None:
        print("laurelin.supervisor.worker: started without a worker spec", file=sys.stderr)
        sys.exit(2)
    spec = json.loads(raw)
    # Signals for the whole process group (Ctrl-C, a hangup, job control) are the parent's.
    # Handled by doing nothing rather than ignored: SIG_IGN would pass on to the processes
    # the app starts.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(signum, _ignore)
    control = socket.socket(fileno=spec["control"])
    os.set_inheritable(control.fileno(), False)  # not for the app's own child processes
    config = config_from_json(spec["config"])
    fds: list[int | None] = spec["fds"]
    for fd in fds:
        if fd is not None:
            os.set_inheritable(fd, False)  # the listeners are this process's, not its children's
    sys.exit(run_worker(config, specs_from_json(spec["specs"]), fds, control))


def _ignore(signum: int, frame: object) -> None:
    return None
