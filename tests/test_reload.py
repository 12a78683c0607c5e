# --reload end to end (issue 6): an edited file restarts the server with the new code; a syntax
# error keeps the watcher alive and the server serves again once it is fixed; --reload-include
# and --reload-exclude choose the files; the polling fallback sees changes without watchfiles.
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cli_process import Launched, launcher, laurelin_argv
from conftest import free_port
from laurelin.config import Config
from laurelin.supervisor import reload as reload_module
from laurelin.supervisor.reload import ReloadFilter

pytestmark = pytest.mark.timeout(60)

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": b"{version}"}})
"""


@pytest.fixture
def launch() -> Iterator[Callable[..., Launched]]:
    yield from launcher()


def write_app(path: Path, version: str) -> None:
    path.write_text(APP.format(version=version))


def serving_count(proc: Launched) -> int:
    return len(re.findall(r"Worker process \[\d+\] is serving", proc.stderr))


def wait_serving(proc: Launched, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while serving_count(proc) < count:
        assert time.monotonic() < deadline, proc.output
        assert proc.proc.poll() is None, proc.output
        time.sleep(0.05)


def body(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=10).text


def start_reloading(launch: Callable[..., Launched], tmp_path: Path, *args: str) -> Launched:
    port = free_port()
    proc = launch(
        laurelin_argv(
            "-p", str(port), "--reload", "--reload-dir", str(tmp_path), "--app-dir",
            str(tmp_path), *args, "reloaded:app",
        )
    )  # fmt: skip
    proc.port = port
    wait_serving(proc, 1)
    proc.wait_for("Watching for file changes", "stderr")
    time.sleep(0.3)  # the watcher is set up just after it says so
    return proc


def test_edit_restarts_with_the_new_code(launch: Callable[..., Launched], tmp_path: Path) -> None:
    app_file = tmp_path / "reloaded.py"
    write_app(app_file, "one")
    proc = start_reloading(launch, tmp_path)
    assert body(proc.port) == "one"
    write_app(app_file, "two")
    proc.wait_for(r"Changes detected in .*reloaded\.py: reloading", "stderr")
    wait_serving(proc, 2)
    assert body(proc.port) == "two"
    assert proc.terminate() == 0


def test_syntax_error_keeps_watching_and_recovers(
    launch: Callable[..., Launched], tmp_path: Path
) -> None:
    app_file = tmp_path / "reloaded.py"
    write_app(app_file, "one")
    proc = start_reloading(launch, tmp_path)
    app_file.write_text("async def app(scope, receive, send)\n    pass\n")  # no colon
    proc.wait_for(r"could not start \(exit code 1\): waiting for a file change", "stderr")
    assert proc.proc.poll() is None  # the parent keeps watching
    # The parent keeps the listener: a client waits in its queue for the fixed code.
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"http://127.0.0.1:{proc.port}/", timeout=1)
    write_app(app_file, "three")
    wait_serving(proc, 2)
    assert body(proc.port) == "three"
    assert proc.terminate() == 0


def test_include_and_exclude_globs(launch: Callable[..., Launched], tmp_path: Path) -> None:
    app_file = tmp_path / "reloaded.py"
    write_app(app_file, "one")
    (tmp_path / "ignored.py").write_text("")
    (tmp_path / "page.html").write_text("")
    proc = start_reloading(
        launch, tmp_path, "--reload-include", "*.html", "--reload-exclude", "ignored.py"
    )
    (tmp_path / "ignored.py").write_text("x = 1\n")
    time.sleep(1.5)
    assert "Changes detected" not in proc.stderr
    (tmp_path / "page.html").write_text("<p>changed</p>")
    proc.wait_for(r"Changes detected in .*page\.html", "stderr")
    wait_serving(proc, 2)
    assert proc.terminate() == 0


def test_reload_filter_rules(tmp_path: Path) -> None:
    config = Config(
        app="x", reload_dirs=(str(tmp_path),), reload_excludes=("skip_*.py",), reload=True
    )
    watched = ReloadFilter(config)
    assert watched.wanted(str(tmp_path / "app.py"))
    assert watched.wanted(str(tmp_path / "pkg" / "mod.py"))
    assert not watched.wanted(str(tmp_path / "notes.txt"))
    assert not watched.wanted(str(tmp_path / "skip_me.py"))
    assert not watched.wanted(str(tmp_path / "__pycache__" / "app.py"))
    assert not watched.wanted(str(tmp_path / ".venv" / "lib" / "x.py"))
    assert not watched.wanted("/elsewhere/app.py")


def test_polling_sees_changes_without_watchfiles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback when watchfiles is not installed: modification times every half second."""
    monkeypatch.setattr(reload_module, "POLL_SECONDS", 0.05)
    target = tmp_path / "mod.py"
    target.write_text("a = 1\n")
    config = Config(app="x", reload_dirs=(str(tmp_path),), reload=True)

    async def first_change() -> set[str]:
        changes = reload_module._poll(ReloadFilter(config))
        task = asyncio.ensure_future(changes.__anext__())
        await asyncio.sleep(0.2)
        time.sleep(0.01)
        target.write_text("a = 2\n")
        (tmp_path / "new.py").write_text("")
        result = await asyncio.wait_for(task, 5)
        await changes.aclose()
        return result

    changed = asyncio.run(first_change())
    assert {str(target), str(tmp_path / "new.py")} <= changed
