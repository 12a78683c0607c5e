# The Autobahn TestSuite harness. Owns: the Python 2.7 `wstest` environment (.venv-autobahn/,
# built with virtualenv from .venv-autobahn-tools/), starting and stopping the server under test
# (laurelin serving compliance/echo.py unless --server-cmd says otherwise), running wstest's
# fuzzingclient against it, and turning compliance/reports/servers/index.json into counts and an
# exit status. Stdlib only; run it with the project's Python 3: `make compliance`.
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "compliance"
TEMPLATE = HERE / "fuzzingclient.json"
REPORTS = HERE / "reports"
OUTDIR = REPORTS / "servers"
TOOLS_VENV = ROOT / ".venv-autobahn-tools"
WSTEST_VENV = ROOT / ".venv-autobahn"
STAMP_NAME = ".autobahn-installed"
DEFAULT_PYTHON2 = Path.home() / ".pyenv" / "versions" / "2.7.18" / "bin" / "python"
FULL_SET = 517  # what "*" selects in autobahntestsuite 25.10.1

# virtualenv 20.22 dropped support for creating Python 2 environments.
VIRTUALENV_PIN = "virtualenv==20.21.1"
# autobahntestsuite is Python 2 code pinned to autobahn 0.10.9. Everything is pinned (the result
# of `pip freeze` on a working install) because pip 20.3 on Python 2 uses the legacy resolver,
# which otherwise picks versions that conflict with autobahntestsuite's own pins (incremental,
# six, zope.interface). autobahn's [accelerate] extra (wsaccel, ujson) does masking and UTF-8
# validation in C, which the big-message cases (9.*) need to finish in reasonable time.
WSTEST_PINS = (
    "setuptools==44.0.0",
    "autobahntestsuite==25.10.1",
    "autobahn[twisted,accelerate]==0.10.9",
    "Twisted==19.10.0",
    "txaio==2.1.0",
    "attrs==21.4.0",
    "Automat==22.10.0",
    "cffi==1.15.1",
    "constantly==15.1.0",
    "cryptography==3.3.2",
    "enum34==1.1.10",
    "hyperlink==21.0.0",
    "idna==2.10",
    "incremental==16.10.1",
    "ipaddress==1.0.23",
    "Jinja2==2.11.3",
    "klein==17.10.0",
    "linecache2==1.0.0",
    "MarkupSafe==1.1.1",
    "pyasn1==0.5.1",
    "pyasn1-modules==0.3.0",
    "pycparser==2.21",
    "PyHamcrest==1.10.1",
    "pyOpenSSL==19.1.0",
    "service-identity==18.1.0",
    "six==1.16.0",
    "traceback2==1.4.0",
    "typing==3.10.0.0",
    "ujson==2.0.3",
    "unittest2==1.1.0",
    "Werkzeug==1.0.1",
    "wsaccel==0.6.6",
    "zope.interface==4.6.0",
)

# Runs under the wstest venv's Python 2: expands the spec's case patterns exactly as wstest will,
# so the harness knows which cases to expect in index.json (and rejects unknown case ids, on which
# wstest would crash mid-run).
RESOLVE_CASES = r"""
import json, sys
from autobahntestsuite.case import CaseSetname, CaseBasename, Cases, CaseCategories, \
    CaseSubCategories
from autobahntestsuite.caseset import CaseSet
spec = json.load(open(sys.argv[1]))
cs = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
patterns = spec["cases"] + spec.get("exclude-cases", [])
unknown = [p for p in patterns if "*" not in p and p not in cs.CasesIndices]
ids = [] if unknown else cs.parseSpecCases(spec)
described = [[i, cs.caseClassToPrettyDescription(Cases[cs.CasesIndices[i] - 1])] for i in ids]
json.dump({"unknown": unknown, "cases": described}, sys.stdout)
"""

BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
CLOSE_BEHAVIORS = ("OK", "INFORMATIONAL", "UNCLEAN", "WRONG CODE", "FAILED BY CLIENT", "FAILED")
RUNNING_CASE = re.compile(r"Running test case ID (\S+) for agent")
HEARTBEAT_SECONDS = 60.0

Popen = subprocess.Popen[bytes]


class HarnessError(Exception):
    """Something kept the suite from running to a verdict (setup, server start, timeout)."""


def say(text: str) -> None:
    print(f"[autobahn] {text}", flush=True)


# --- the wstest environment -------------------------------------------------------------------


def stamp_matches(venv: Path, expected: str, needed: Path) -> bool:
    """Whether venv was fully built for this fingerprint and still has the program needed."""
    stamp = venv / STAMP_NAME
    return needed.exists() and stamp.is_file() and stamp.read_text() == expected


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest() + "\n"


def run_step(cmd: list[str], what: str, env: dict[str, str] | None = None) -> None:
    say(f"{what}: {shlex.join(cmd)}")
    result = subprocess.run(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        raise HarnessError(f"{what} failed (exit {result.returncode})")


def python2_env() -> dict[str, str]:
    """The environment for everything that runs under Python 2: no Python 3 paths leak in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONIOENCODING="utf-8",
        PYTHONWARNINGS="ignore",  # cryptography's and pip's "Python 2 is unsupported" noise
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_PYTHON_VERSION_WARNING="1",
    )
    return env


def ensure_tools_venv() -> Path:
    """A small Python 3 venv holding the last virtualenv that can still make Python 2 venvs."""
    virtualenv = TOOLS_VENV / "bin" / "virtualenv"
    stamp = fingerprint(VIRTUALENV_PIN, sys.base_prefix, sys.version)
    if stamp_matches(TOOLS_VENV, stamp, virtualenv):
        return virtualenv
    shutil.rmtree(TOOLS_VENV, ignore_errors=True)
    run_step([sys.executable, "-m", "venv", str(TOOLS_VENV)], "creating the tools venv")
    pip = str(TOOLS_VENV / "bin" / "pip")
    run_step(
        [pip, "install", "-q", "--disable-pip-version-check", VIRTUALENV_PIN],
        "installing virtualenv",
    )
    (TOOLS_VENV / STAMP_NAME).write_text(stamp)
    return virtualenv


def ensure_wstest(python2: Path) -> Path:
    """The Python 2.7 venv with wstest, built once and reused while its pins are unchanged."""
    wstest = WSTEST_VENV / "bin" / "wstest"
    stamp = fingerprint(str(python2), *WSTEST_PINS)
    if stamp_matches(WSTEST_VENV, stamp, wstest):
        return wstest
    if not python2.is_file():
        raise HarnessError(
            f"no Python 2.7 at {python2}: pass --python2 or set AUTOBAHN_PYTHON2 "
            "(autobahntestsuite runs only on Python 2.7)"
        )
    virtualenv = ensure_tools_venv()
    shutil.rmtree(WSTEST_VENV, ignore_errors=True)
    run_step(
        [
            str(virtualenv),
            "--quiet",
            "--no-periodic-update",
            "--app-data",
            str(TOOLS_VENV / "app-data"),
            "--python",
            str(python2),
            str(WSTEST_VENV),
        ],
        "creating the Python 2.7 venv",
        env=python2_env(),
    )
    pip = str(WSTEST_VENV / "bin" / "pip")
    run_step([pip, "install", "-q", *WSTEST_PINS], "installing wstest", env=python2_env())
    run_step([pip, "check"], "checking the wstest venv", env=python2_env())
    (WSTEST_VENV / STAMP_NAME).write_text(stamp)
    return wstest


# --- the spec and the cases it selects --------------------------------------------------------


@dataclass
class Selection:
    cases: list[str]
    descriptions: dict[str, str]


def write_spec(args: argparse.Namespace, agent: str, port: int) -> Path:
    spec: dict[str, Any] = json.loads(TEMPLATE.read_text())
    server: dict[str, Any] = dict(spec["servers"][0]) if spec.get("servers") else {}
    server.update(agent=agent, url=f"ws://127.0.0.1:{port}")
    spec["servers"] = [server]
    spec["outdir"] = str(OUTDIR)
    if args.cases:
        spec["cases"] = args.cases
    if args.exclude:
        spec["exclude-cases"] = list(spec.get("exclude-cases", [])) + args.exclude
    path = REPORTS / "fuzzingclient.json"
    path.write_text(json.dumps(spec, indent=3) + "\n")
    return path


def resolve_cases(wstest: Path, spec_path: Path) -> Selection:
    python2 = wstest.parent / "python"
    result = subprocess.run(
        [str(python2), "-c", RESOLVE_CASES, str(spec_path)],
        cwd=REPORTS,
        env=python2_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise HarnessError(f"could not expand the case patterns:\n{result.stderr.strip()}")
    answer = json.loads(result.stdout)
    if answer["unknown"]:
        raise HarnessError(f"no such case: {', '.join(answer['unknown'])}")
    if not answer["cases"]:
        raise HarnessError("the case patterns select no case")
    return Selection(
        cases=[case for case, _ in answer["cases"]],
        descriptions=dict((case, text) for case, text in answer["cases"]),
    )


# --- the server under test --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(args: argparse.Namespace, port: int) -> list[str]:
    if args.server_cmd:
        return shlex.split(args.server_cmd.replace("{port}", str(port)))
    return [
        sys.executable,
        "-m",
        "laurelin",
        "--app-dir",
        str(ROOT),
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "-v",
        "0",
        # Cases 9.x send messages of up to 16 MiB (in frames of up to 16 MiB, or in thousands
        # of tiny fragments): the limits are raised above that, as a deployment expecting such
        # messages would. Everything else runs with the defaults.
        "--websocket-max-message-size",
        str(64 << 20),
        "--websocket-max-frame-size",
        str(64 << 20),
        "compliance.echo:app",
    ]


def agent_name(args: argparse.Namespace) -> str:
    """The agent name used in the reports: --agent, else laurelin, else the server's program."""
    if args.agent:
        return str(args.agent)
    if not args.server_cmd:
        return "laurelin"
    words = shlex.split(args.server_cmd)
    name = Path(words[0]).name
    if name.startswith("python") and "-m" in words[:-1]:
        name = words[words.index("-m") + 1]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name) or "server"


def start_process(cmd: list[str], log_path: Path) -> Popen:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stopping it stops its children
        )


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def wait_for_port(port: int, server: Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = server.poll()
        if code is not None:
            raise HarnessError(
                f"the server exited with code {code} before listening; {log_path}:\n"
                + log_tail(log_path)
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise HarnessError(
                f"the server did not accept on 127.0.0.1:{port} within {timeout:g} s; "
                f"{log_path}:\n" + log_tail(log_path)
            )
        time.sleep(0.1)


def stop_process(proc: Popen | None, what: str, grace: float = 10.0) -> None:
    """SIGTERM the process group the harness started, then SIGKILL it if it lingers."""
    if proc is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            if sig == signal.SIGTERM:
                say(f"the {what} ignored SIGTERM for {grace:g} s: SIGKILL")
    proc.wait()


# --- running wstest ---------------------------------------------------------------------------


class Progress:
    """Follows wstest's "Running test case ID ..." lines, copying its output to a log file."""

    def __init__(self, stream: IO[bytes], log_path: Path) -> None:
        self.stream = stream
        self.log_path = log_path
        self.started = 0
        self.current = ""
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.follow, name="wstest-output", daemon=True)
        self.thread.start()

    def follow(self) -> None:
        with self.log_path.open("wb") as log:
            for raw in self.stream:
                log.write(raw)
                log.flush()
                match = RUNNING_CASE.search(raw.decode("utf-8", "replace"))
                if match:
                    with self.lock:
                        self.started += 1
                        self.current = match.group(1)

    def snapshot(self) -> tuple[int, str]:
        with self.lock:
            return self.started, self.current


def run_wstest(wstest: Path, spec_path: Path, total: int, timeout: float, server: Popen) -> int:
    cmd = [str(wstest), "-m", "fuzzingclient", "-s", str(spec_path)]
    say(f"wstest: {shlex.join(cmd)}")
    log_path = REPORTS / "wstest.log"
    proc = subprocess.Popen(
        cmd,
        cwd=REPORTS,
        env=python2_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        progress = Progress(proc.stdout, log_path)
        start = time.monotonic()
        last_group, last_said, server_gone = "", start, False
        while True:
            try:
                code = proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            started, current = progress.snapshot()
            group = current.split(".")[0] + ".*" if current else ""
            if group != last_group or now - last_said >= HEARTBEAT_SECONDS:
                if current:
                    say(f"case {current} ({started}/{total}, {now - start:.0f} s)")
                last_group, last_said = group, now
            if not server_gone and server.poll() is not None:
                server_gone = True
                say(f"the server exited with code {server.returncode} during the run")
            if now - start > timeout:
                raise HarnessError(
                    f"wstest did not finish within {timeout:g} s (at case {current or '-'}, "
                    f"{started}/{total}); wstest writes its reports only at the end. "
                    f"Log: {log_path}"
                )
        progress.thread.join(timeout=5.0)
        say(f"wstest exited with code {code} after {time.monotonic() - start:.0f} s")
        return code
    finally:
        stop_process(proc, "wstest", grace=5.0)


# --- the verdict ------------------------------------------------------------------------------


def counts_line(counter: Counter[str], order: tuple[str, ...]) -> str:
    names = list(order) + sorted(set(counter) - set(order))
    return "  ".join(f"{name} {counter.get(name, 0)}" for name in names)


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case.split("."))


def id_list(cases: list[str]) -> str:
    return ", ".join(sorted(cases, key=case_key))


def case_detail(report: dict[str, Any], key: str) -> str:
    text = re.sub(r"<[^>]+>", " ", str(report.get(key, "")))
    return " ".join(text.split())


def verdict(agent: str, selection: Selection) -> int:
    index_path = OUTDIR / "index.json"
    if not index_path.is_file():
        raise HarnessError(f"wstest wrote no {index_path}")
    index: dict[str, dict[str, dict[str, Any]]] = json.loads(index_path.read_text())
    results = index.get(agent, {})
    behaviors = Counter(str(r["behavior"]) for r in results.values())
    closes = Counter(str(r["behaviorClose"]) for r in results.values())
    print()
    print(f"Autobahn TestSuite, agent {agent}: {len(results)} of {len(selection.cases)} cases ran")
    print(f"  behavior:      {counts_line(behaviors, BEHAVIORS)}")
    print(f"  behaviorClose: {counts_line(closes, CLOSE_BEHAVIORS)}")

    for name in BEHAVIORS[1:4]:
        ids = [case for case, r in results.items() if r["behavior"] == name]
        if ids:
            print(f"  {name}: {id_list(ids)}")
    odd_closes = [
        f"{case} ({r['behaviorClose']})"
        for case, r in sorted(results.items(), key=lambda item: case_key(item[0]))
        if r["behaviorClose"] not in ("OK", "INFORMATIONAL")
    ]
    if odd_closes:
        print(f"  behaviorClose not OK: {', '.join(odd_closes)}")

    failed = sorted((c for c, r in results.items() if r["behavior"] == "FAILED"), key=case_key)
    if failed:
        print(f"\nFAILED cases ({len(failed)}):")
    for case in failed:
        report: dict[str, Any] = {}
        report_file = OUTDIR / str(results[case].get("reportfile", ""))
        if report_file.is_file():
            report = json.loads(report_file.read_text())
        description = selection.descriptions.get(case) or case_detail(report, "description")
        print(f"  {case}: {description}")
        for key in ("result", "resultClose"):
            detail = case_detail(report, key)
            if detail:
                print(f"      {key}: {detail}")

    missing = sorted(set(selection.cases) - set(results), key=case_key)
    unexpected = sorted(set(results) - set(selection.cases), key=case_key)
    if missing:
        print(f"\n{len(missing)} selected cases did not run: {id_list(missing)}")
    if unexpected:
        print(f"\n{len(unexpected)} cases ran that were not selected: {id_list(unexpected)}")
    ok = not failed and not missing and not unexpected
    print(f"\nverdict: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


# --- the command line -------------------------------------------------------------------------


def patterns(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the Autobahn TestSuite (wstest fuzzingclient) against laurelin.",
    )
    parser.add_argument(
        "--cases",
        type=patterns,
        action="extend",
        help="case patterns, comma-separated, e.g. '1.*,2.*,5.1' (default: all, '*')",
    )
    parser.add_argument(
        "--exclude",
        type=patterns,
        action="extend",
        help="case patterns to leave out, comma-separated, e.g. '9.*,12.*,13.*'",
    )
    parser.add_argument(
        "--server-cmd",
        help="run this server instead of laurelin; {port} is replaced by the port to listen on "
        "(127.0.0.1); it must serve compliance.echo:app",
    )
    parser.add_argument("--agent", help="the server's name in the reports")
    parser.add_argument(
        "--timeout",
        type=float,
        default=2700.0,
        help="seconds the whole wstest run may take (default: 2700)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=30.0,
        help="seconds the server may take to accept connections (default: 30)",
    )
    parser.add_argument(
        "--python2",
        type=Path,
        default=Path(os.environ.get("AUTOBAHN_PYTHON2", DEFAULT_PYTHON2)),
        help=f"the Python 2.7 for wstest's venv (default: $AUTOBAHN_PYTHON2 or {DEFAULT_PYTHON2})",
    )
    parser.add_argument(
        "--setup-only",
        action="store_true",
        help="only build the wstest venv (.venv-autobahn/), then exit",
    )
    return parser.parse_args(argv)


def on_sigterm(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the processes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        wstest = ensure_wstest(args.python2)
        if args.setup_only:
            say(f"wstest is ready: {wstest}")
            return 0
        REPORTS.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(OUTDIR, ignore_errors=True)  # never read a previous run's index.json
        agent = agent_name(args)
        port = free_port()
        spec_path = write_spec(args, agent, port)
        selection = resolve_cases(wstest, spec_path)
        everything = not args.cases and not args.exclude
        if everything and len(selection.cases) != FULL_SET:
            raise HarnessError(
                f"the full set should be {FULL_SET} cases, wstest selects {len(selection.cases)}"
            )
        say(f"{len(selection.cases)} cases selected; spec {spec_path}")
        return run(args, wstest, spec_path, agent, port, selection)
    except HarnessError as error:
        say(f"error: {error}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130


def run(
    args: argparse.Namespace,
    wstest: Path,
    spec_path: Path,
    agent: str,
    port: int,
    selection: Selection,
) -> int:
    cmd = server_command(args, port)
    server_log = REPORTS / "server.log"
    say(f"server: {shlex.join(cmd)}  (log: {server_log})")
    server = start_process(cmd, server_log)
    try:
        wait_for_port(port, server, server_log, args.startup_timeout)
        code = run_wstest(wstest, spec_path, len(selection.cases), args.timeout, server)
        if code != 0:
            say(f"wstest failed; {REPORTS / 'wstest.log'}:\n{log_tail(REPORTS / 'wstest.log')}")
        status = verdict(agent, selection)
        if server.poll() is not None:
            say(f"the server died during the run (code {server.returncode}); see {server_log}")
            status = 1
        return status if code == 0 else max(status, 1)
    except HarnessError as error:
        say(f"error: {error}")
        return 2
    finally:
        stop_process(server, "server")
        say("server stopped")
        report = OUTDIR / "index.html"
        if report.is_file():
            say(f"HTML report: {report}")
        else:
            say(f"no HTML report this time; logs are in {REPORTS}")


if __name__ == "__main__":
    sys.exit(main())
