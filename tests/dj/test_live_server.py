# Live-server testing: laurelin.testing.LaurelinProcess (Daphne's DaphneProcess API) and
# laurelin.django.testing.LaurelinLiveServerTestCase.
#
# LaurelinProcess directly, under the "fork" and "spawn" start methods, with tests/apps/
# testing_app.py: it reports its port once serving, builds the app and runs setup() in the child
# before serving, raises in the parent what failed in the child (app import, setup, teardown, a
# port in use) with the child's traceback, drains in-flight requests and runs teardown on
# terminate(), exits when its parent dies, and takes Daphne's Server keyword names.
# The Django test case on a small plain-Django project written to tmp_path (no Channels): the
# server process reads the test database and the test's ALLOWED_HOSTS (fork and spawn), a broken
# ASGI_APPLICATION fails the class set-up with the server's traceback, an in-memory SQLite test
# database is refused with the fix. And the chat example's own suite (examples/chat/chat/tests,
# `manage.py test chat`, headless Chromium included), which must pass with every expected test
# run, none silently skipped.
from __future__ import annotations

import contextlib
import importlib.util
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps import testing_app
from apps.asgi_support import wait_marker, wait_until
from cli_process import listening_socket
from conftest import free_port
from laurelin.testing import LaurelinProcess, LiveServerError

TESTS = Path(__file__).resolve().parent.parent
EXAMPLE = TESTS.parent / "examples" / "chat"
DAPHNE_INSTALLED = importlib.util.find_spec("daphne") is not None


@pytest.fixture(params=["fork", "spawn"])
def start_method(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test under this multiprocessing start method (restored afterwards)."""
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method(request.param, force=True)
    yield str(request.param)
    multiprocessing.set_start_method(before, force=True)


@pytest.fixture
def launch() -> Iterator[Callable[..., LaurelinProcess]]:
    """Create and start LaurelinProcesses; any still running at teardown is stopped."""
    started: list[LaurelinProcess] = []

    def start(*args: Any, **kwargs: Any) -> LaurelinProcess:
        process = LaurelinProcess(*args, **kwargs)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        with contextlib.suppress(LiveServerError):
            process.stop(10.0)


def state(process: LaurelinProcess, **kwargs: Any) -> dict[str, Any]:
    response = httpx.get(f"{process.url}/state", timeout=10.0, **kwargs)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5.0).close()
    except ConnectionRefusedError:
        return True
    return False


# -- LaurelinProcess ------------------------------------------------------------------------


def test_serves_on_a_free_port_after_setup_in_the_child(
    start_method: str, launch: Callable[..., LaurelinProcess]
) -> None:
    process = launch("127.0.0.1", testing_app.get_application, setup=testing_app.record_setup)
    port = process.wait_ready()
    assert port > 0
    assert process.port.value == port
    assert process.ready.is_set()
    seen = state(process)
    # The app was built and setup() ran in the serving process, before the first request.
    assert seen["pid"] == process.pid != os.getpid()
    assert seen["built_in"] == seen["setup_in"] == process.pid
    assert "setup_in" not in testing_app.STATE
    process.stop()
    assert process.exitcode == 0
    assert refused(port)


def test_channels_way_of_driving_it() -> None:
    # What ChannelsLiveServerTestCase does with its ProtocolServerProcess, and nothing more.
    process = LaurelinProcess("localhost", testing_app.get_application, port=free_port())
    process.start()
    try:
        assert process.ready.wait(timeout=30)
        port = process.port.value
        assert port == process.config.port
        assert state(process)["pid"] == process.pid
    finally:
        process.terminate()
        process.join(30)
    assert process.exitcode == 0
    assert process.errors.empty()
    assert refused(port)


def test_as_a_context_manager() -> None:
    with LaurelinProcess("127.0.0.1", testing_app.get_application) as process:
        assert process.url == f"http://127.0.0.1:{process.port.value}"
        assert state(process)["pid"] == process.pid
    assert process.exitcode == 0
    assert refused(process.port.value)


def test_stop_lets_requests_finish_then_runs_teardown(
    tmp_path: Path, launch: Callable[..., LaurelinProcess]
) -> None:
    marker = tmp_path / "teardown"
    process = launch(
        "127.0.0.1",
        testing_app.get_application,
        setup=testing_app.record_setup,
        teardown=partial(testing_app.write_marker, str(marker)),
    )
    process.wait_ready()
    responses: list[httpx.Response] = []
    arrived = tmp_path / "arrived"
    url = f"{process.url}/slow?seconds=1&marker={arrived}"
    client = threading.Thread(target=lambda: responses.append(httpx.get(url, timeout=20.0)))
    client.start()
    wait_marker(tmp_path, "arrived")
    assert not marker.exists()
    process.stop()
    client.join(20)
    assert [(r.status_code, r.text) for r in responses] == [(200, "slow done")]
    assert marker.read_text() == str(process.pid)
    assert process.exitcode == 0


@pytest.mark.parametrize(
    ("factory", "setup", "error"),
    [
        (
            testing_app.get_missing_application,
            None,
            "ModuleNotFoundError: No module named 'no_such_module_for_laurelin_tests'",
        ),
        (testing_app.get_application, testing_app.failing_setup, "ValueError: setup failed"),
        # An exception the parent could not rebuild arrives as its type and message.
        (testing_app.get_application, testing_app.unpicklable_setup, "TwoArgumentError: one"),
    ],
    ids=["app-import", "setup", "unpicklable"],
)
def test_a_failure_before_serving_is_raised_in_the_parent(
    start_method: str,
    launch: Callable[..., LaurelinProcess],
    factory: Callable[[], Any],
    setup: Callable[[], None] | None,
    error: str,
) -> None:
    process = launch("127.0.0.1", factory, setup=setup)
    with pytest.raises(LiveServerError) as raised:
        process.wait_ready()
    message = str(raised.value)
    assert message.startswith(f"The live server process failed: {error}"), message
    assert "Traceback in the server process:" in message
    assert (setup or factory).__name__ in message  # the child's traceback reaches the test
    assert not process.is_alive()
    assert not process.ready.is_set()


def test_a_failing_teardown_is_raised_by_stop(launch: Callable[..., LaurelinProcess]) -> None:
    process = launch(
        "127.0.0.1",
        testing_app.get_application,
        setup=testing_app.record_setup,
        teardown=testing_app.failing_teardown,
    )
    process.wait_ready()
    with pytest.raises(LiveServerError, match="RuntimeError: teardown failed on purpose"):
        process.stop()
    assert not process.is_alive()


def test_a_port_in_use_is_a_clear_error(launch: Callable[..., LaurelinProcess]) -> None:
    with listening_socket() as taken:
        port = taken.getsockname()[1]
        process = launch("127.0.0.1", testing_app.get_application, port=port)
        with pytest.raises(LiveServerError) as raised:
            process.wait_ready()
    first_line = str(raised.value).splitlines()[0]
    assert first_line == (
        f"The live server process failed: cannot listen on 127.0.0.1:{port}: Address already "
        "in use (another process is using that port: leave port=None to get a free one)"
    )


def test_takes_daphnes_server_keywords(launch: Callable[..., LaurelinProcess]) -> None:
    kwargs = {
        "proxy_forwarded_address_header": "X-Real-IP",
        "request_buffer_size": 4096,
        "http_timeout": 0.5,
    }
    process = launch("127.0.0.1", testing_app.get_application, kwargs=kwargs)
    process.wait_ready()
    assert state(process, headers={"X-Real-IP": "10.1.2.3"})["client"][0] == "10.1.2.3"
    assert httpx.get(f"{process.url}/slow?seconds=5", timeout=10.0).status_code == 503


def test_an_unknown_keyword_is_refused_in_the_parent() -> None:
    with pytest.raises(TypeError, match="unknown server option 'http_timout'"):
        LaurelinProcess("127.0.0.1", testing_app.get_application, kwargs={"http_timout": 1})


ORPHAN = """
import sys
from apps import testing_app
from laurelin.testing import LaurelinProcess
process = LaurelinProcess("127.0.0.1", testing_app.get_application)
process.start()
print(process.pid, process.wait_ready(), flush=True)
sys.stdin.read()
"""


def exited(pid: int) -> bool:
    """Whether `pid` (not our child) has exited: gone, or a zombie nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_exits_when_its_parent_dies() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN],
        cwd=TESTS,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        pid, port = map(int, parent.stdout.readline().split())
        assert not exited(pid)
    finally:
        parent.kill()  # SIGKILL: no atexit, no terminate(): the server is on its own
        parent.wait(10)
    try:
        wait_until(lambda: exited(pid), "the orphaned server exits", timeout=20.0)
    finally:
        if not exited(pid):
            os.kill(pid, signal.SIGKILL)
    assert refused(port)


def test_imports_without_django() -> None:
    code = (
        "import sys; sys.modules['django'] = sys.modules['channels'] = None; "
        "import laurelin.testing; print('imported')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert (result.returncode, result.stdout) == (0, "imported\n"), result.stderr


# -- LaurelinLiveServerTestCase on a plain Django project ----------------------------------

PROJECT = {
    "liveproj_settings.py": """
import os
SECRET_KEY = "live-server-tests"
DEBUG = False
ALLOWED_HOSTS = []  # the test case adds its host, in the server process too
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "liveproj",
]
ROOT_URLCONF = "liveproj.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["LIVE_DB"],
        "TEST": {"NAME": os.environ["LIVE_TEST_DB"]} if "LIVE_TEST_DB" in os.environ else {},
    }
}
STATIC_URL = "static/"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
""",
    "liveproj/__init__.py": "",
    "liveproj/urls.py": """
from django.contrib.auth.models import User
from django.http import HttpResponse
from django.urls import path

def users(request):
    return HttpResponse(",".join(User.objects.values_list("username", flat=True)))

urlpatterns = [path("users/", users)]
""",
    "liveproj/tests.py": """
from urllib.request import urlopen

from django.contrib.auth.models import User
from django.test import override_settings

from laurelin.django.testing import LaurelinLiveServerTestCase


class ServerUsesTheTestDatabase(LaurelinLiveServerTestCase):
    def test_a_user_saved_here_is_seen_by_the_server(self):
        User.objects.create(username="alice")
        with urlopen(self.live_server_url + "/users/", timeout=10) as response:
            self.assertEqual(response.read(), b"alice")


@override_settings(ASGI_APPLICATION="nowhere.asgi.application")
class ServerThatCannotStart(LaurelinLiveServerTestCase):
    def test_never_runs(self):
        raise AssertionError("the class set-up should have failed")
""",
}


def run_django(
    cwd: Path,
    args: list[str],
    env: dict[str, str],
    start_method: str | None = None,
    timeout: float = 120.0,
) -> str:
    """`django-admin ARGS` in `cwd` on this interpreter (as `manage.py ARGS` there), under
    `start_method` if given; returns stdout and stderr merged. It runs in its own process group,
    so that all it started (server processes, a browser) is killed if it overruns `timeout`."""
    setup = f"multiprocessing.set_start_method({start_method!r}); " if start_method else ""
    code = (
        "import multiprocessing, sys; "
        + setup
        + "from django.core.management import execute_from_command_line; "
        "execute_from_command_line(['django-admin', *sys.argv[1:]])"
    )
    full_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise AssertionError(
            f"django-admin {' '.join(args)} overran {timeout}s:\n{output}"
        ) from None
    return output


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    for name, text in PROJECT.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    env = {
        "DJANGO_SETTINGS_MODULE": "liveproj_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "LIVE_DB": str(tmp_path / "never-used.sqlite3"),
        "LIVE_TEST_DB": str(tmp_path / "test.sqlite3"),
    }
    return tmp_path, env


def summary(output: str) -> tuple[int, str]:
    """How many tests unittest ran and its verdict line ("OK", "FAILED (errors=1)", ...)."""
    found = re.search(r"^Ran (\d+) tests? in [\d.]+s\n\n(.+)$", output, re.M)
    assert found is not None, output
    return int(found.group(1)), found.group(2)


def outcomes(output: str) -> dict[str, str]:
    """Test id -> "ok", "FAIL", "ERROR" or "skipped '...'", from unittest's -v 2 lines."""
    found = re.findall(r"^\w+ \(([\w.]+)\) \.\.\. (ok|FAIL|ERROR|skipped .*)$", output, re.M)
    return dict(found)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_the_server_process_uses_the_test_database_and_hosts(
    project: tuple[Path, dict[str, str]], method: str
) -> None:
    cwd, env = project
    label = "liveproj.tests.ServerUsesTheTestDatabase"
    output = run_django(cwd, ["test", label, "-v", "2", "--noinput"], env, start_method=method)
    assert outcomes(output) == {f"{label}.test_a_user_saved_here_is_seen_by_the_server": "ok"}
    assert summary(output) == (1, "OK"), output
    assert not (cwd / "never-used.sqlite3").exists()


def test_a_broken_application_fails_the_class_set_up_with_the_servers_traceback(
    project: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = project
    label = "liveproj.tests.ServerThatCannotStart"
    output = run_django(cwd, ["test", label, "-v", "2", "--noinput"], env)
    assert f"ERROR: setUpClass ({label})" in output, output
    assert (
        "LiveServerError: The live server process failed: ModuleNotFoundError: "
        "No module named 'nowhere'" in output
    )
    assert "Traceback in the server process:" in output
    assert "the class set-up should have failed" not in output
    assert summary(output) == (0, "FAILED (errors=1)"), output


def test_an_in_memory_test_database_is_refused_with_the_fix(
    project: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = project
    del env["LIVE_TEST_DB"]
    output = run_django(cwd, ["test", "liveproj.tests.ServerUsesTheTestDatabase"], env)
    assert (
        "ImproperlyConfigured: ServerUsesTheTestDatabase: the test database 'default' is an "
        "in-memory SQLite database, which the live server process cannot open: give it a file, "
        "DATABASES['default']['TEST']['NAME'] = 'path/to/test.sqlite3'" in output
    ), output


# -- the chat example's own tests ---------------------------------------------------------

LIVE = "chat.tests.test_live"
CHANNELS_SKIP = "skipped 'channels.testing needs daphne installed (it imports daphne.testing)'"
EXAMPLE_TESTS = {
    f"{LIVE}.LiveServerTests.test_pages_and_static_files_over_http": "ok",
    f"{LIVE}.LiveServerTests.test_chat_over_websocket": "ok",
    f"{LIVE}.LaurelinChatInTheBrowserTests.test_two_windows_in_a_room_see_each_others_messages": (
        "ok"
    ),
    # Channels' own test case can only be imported with Daphne installed (see test_live.py).
    f"{LIVE}.ChannelsChatInTheBrowserTests.test_two_windows_in_a_room_see_each_others_messages": (
        "ok" if DAPHNE_INSTALLED else CHANNELS_SKIP
    ),
}


def run_example_tests(tmp_path: Path, *labels: str, start_method: str | None = None) -> str:
    # Chromium leaves its singleton socket directories in TMPDIR: a directory of our own, with
    # a short path (a Unix socket path has at most 107 bytes, and tmp_path can be longer).
    chromium_tmp = tempfile.mkdtemp(prefix="lc-")
    env = {
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        "CHAT_DATABASE": str(tmp_path / "chat.sqlite3"),
        "TMPDIR": chromium_tmp,
    }
    args = ["test", *labels, "-v", "2", "--noinput"]
    try:
        return run_django(EXAMPLE, args, env, start_method=start_method, timeout=240.0)
    finally:
        shutil.rmtree(chromium_tmp, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_chat_examples_live_tests_pass_in_the_browser(tmp_path: Path) -> None:
    output = run_example_tests(tmp_path, "chat")
    found = outcomes(output)
    for test, outcome in EXAMPLE_TESTS.items():
        assert found.get(test) == outcome, f"{test}: {found.get(test)}\n{output}"
    ran, verdict = summary(output)
    # (From Python 3.12 on, unittest does not count skipped tests as run.)
    assert ran >= list(EXAMPLE_TESTS.values()).count("ok"), output
    assert verdict == ("OK" if DAPHNE_INSTALLED else "OK (skipped=1)"), output


@pytest.mark.timeout(180)
def test_the_chat_examples_live_server_under_spawn(tmp_path: Path) -> None:
    output = run_example_tests(tmp_path, f"{LIVE}.LiveServerTests", start_method="spawn")
    expected = {
        test: outcome for test, outcome in EXAMPLE_TESTS.items() if ".LiveServerTests." in test
    }
    assert outcomes(output) == expected, output
    assert summary(output) == (2, "OK"), output


def test_daphne_option_values_keep_their_meaning() -> None:
    """0 for http_timeout and the WebSocket sizes, and a negative websocket_timeout, mean no
    limit to Daphne: the same here (not a 0-byte limit or an instant timeout)."""
    from laurelin.testing import server_config

    config = server_config(
        "127.0.0.1",
        0,
        {
            "http_timeout": 0,
            "websocket_timeout": -1,
            "websocket_max_message_size": 0,
            "websocket_max_frame_size": 0,
            "websocket_handshake_timeout": 5,
        },
    )
    assert config.http_timeout is None
    assert config.websocket_timeout is None
    assert config.websocket_max_message_size is None
    assert config.websocket_max_frame_size is None
    assert config.websocket_connect_timeout == 5.0


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"ssl_certfile": "cert.pem"}, TypeError, "'ssl_certfile' is not supported"),
        ({"workers": 2}, TypeError, "'workers' is not supported"),
        ({"http_timeout": "5"}, ValueError, "http_timeout='5'"),
        ({"ping_interval": -3}, ValueError, "ping_interval=-3"),
    ],
)
def test_options_a_test_server_cannot_honour_are_refused(
    kwargs: dict[str, Any], error: type[Exception], text: str
) -> None:
    from laurelin.testing import server_config

    with pytest.raises(error, match=re.escape(text)):
        server_config("127.0.0.1", 0, kwargs)
