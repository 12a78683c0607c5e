# The mistakes Django Channels users make when they point laurelin at their project, each met by
# one readable line with the fix, exit status 1 and no traceback. Each test writes a small broken
# project into tmp_path (a real Django + Channels project: settings, asgi.py, a chat app) and runs
# the laurelin CLI against it. Covered: the project package not found (from --app-dir or the
# working directory; found one level down), a file path given for the module, a dependency the
# project imports is missing, an app in INSTALLED_APPS that is not installed ("daphne" above
# all), DJANGO_SETTINGS_MODULE naming no module or not set, models imported before
# django.setup(), a module without `application` (what it does have), a package given for its
# asgi module, and get_asgi_application without the call. The well-formed project serves.
from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from cli_process import Launched, laurelin_argv

SETTINGS = """\
SECRET_KEY = "test"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = {apps!r}
ROOT_URLCONF = "mysite.urls"
DATABASES = {{}}
CHANNEL_LAYERS = {{"default": {{"BACKEND": "channels.layers.InMemoryChannelLayer"}}}}
USE_TZ = True
"""

URLS = """\
from django.http import HttpResponse
from django.urls import path

urlpatterns = [path("", lambda request: HttpResponse("project ok"))]
"""

# The Channels tutorial's asgi.py, in the right order.
GOOD_ASGI = """\
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {"http": django_asgi_app, "websocket": URLRouter(websocket_urlpatterns)}
)
"""

CHAT_MODELS = """\
from django.db import models


class Message(models.Model):
    text = models.TextField()
"""

CHAT_CONSUMERS = """\
from channels.generic.websocket import WebsocketConsumer

from chat.models import Message


class ChatConsumer(WebsocketConsumer):
    model = Message
"""

CHAT_ROUTING = """\
from django.urls import path

from chat.consumers import ChatConsumer

websocket_urlpatterns = [path("ws/chat/", ChatConsumer.as_asgi())]
"""


def write_project(
    root: Path,
    asgi: str = GOOD_ASGI,
    apps: tuple[str, ...] = ("chat", "django.contrib.contenttypes", "django.contrib.auth"),
) -> Path:
    """A Django + Channels project in `root`: mysite/ (settings, urls, asgi) and chat/ (a model,
    a consumer, its routing). Returns `root`."""
    files = {
        "mysite/__init__.py": "",
        "mysite/settings.py": SETTINGS.format(apps=list(apps)),
        "mysite/urls.py": URLS,
        "mysite/asgi.py": asgi,
        "chat/__init__.py": "",
        "chat/models.py": CHAT_MODELS,
        "chat/consumers.py": CHAT_CONSUMERS,
        "chat/routing.py": CHAT_ROUTING,
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Launched:
    """Run laurelin from `cwd` until it exits by itself."""
    proc = Launched(
        laurelin_argv("-p", "0", *args),
        env={"PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
        cwd=cwd,
    )
    try:
        proc.wait_exit(30)
    finally:
        proc.stop()
    return proc


def the_line(proc: Launched) -> str:
    """The one CRITICAL line a start-up mistake gets: exit 1, nothing else, no traceback."""
    assert proc.proc.returncode == 1, proc.output
    assert "Traceback" not in proc.output, proc.output
    lines = proc.output.strip().splitlines()
    assert len(lines) == 1, proc.output
    assert " CRITICAL " in lines[0], lines[0]
    return lines[0].partition(" CRITICAL ")[2].strip()


@pytest.fixture(autouse=True)
def no_settings_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    # The projects choose their settings themselves (asgi.py's setdefault, or not at all).
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)


def test_the_well_formed_project_serves(tmp_path: Path) -> None:
    """The control: every other test breaks exactly one thing in this project."""
    write_project(tmp_path)
    proc = Launched(
        laurelin_argv("-p", "0", "mysite.asgi:application"),
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        cwd=tmp_path,
    )
    try:
        proc.wait_listening(30)
        assert httpx.get(f"{proc.url}/").text == "project ok"
    finally:
        proc.stop()


# -- the module cannot be found --------------------------------------------------------------------


def test_project_one_directory_down_says_which_app_dir(tmp_path: Path) -> None:
    project = write_project(tmp_path / "src")
    line = the_line(run_cli(tmp_path, "mysite.asgi:application"))
    assert line == (
        f"Could not import module 'mysite.asgi': no module named 'mysite' in {tmp_path}, but "
        f"'mysite' is in {project}: use --app-dir {project} (or run laurelin from there)"
    )


def test_project_two_directories_down_via_app_dir(tmp_path: Path) -> None:
    project = write_project(tmp_path / "examples" / "chat")
    (tmp_path / "elsewhere").mkdir()
    line = the_line(
        run_cli(tmp_path / "elsewhere", "--app-dir", str(tmp_path), "mysite.asgi:application")
    )
    assert f"use --app-dir {project}" in line


def test_project_nowhere_names_directory_app_dir_and_pythonpath(tmp_path: Path) -> None:
    line = the_line(run_cli(tmp_path, "nosuchproject.asgi:application"))
    assert line == (
        f"Could not import module 'nosuchproject.asgi' (no module named 'nosuchproject' found "
        f"from directory {tmp_path}, nor on PYTHONPATH); check the module path, the directory "
        "you run laurelin from, or use --app-dir"
    )


def test_missing_asgi_module_in_an_existing_package(tmp_path: Path) -> None:
    write_project(tmp_path)
    (tmp_path / "mysite" / "asgi.py").unlink()
    line = the_line(run_cli(tmp_path, "mysite.asgi:application"))
    assert "no module named 'mysite.asgi' found from directory" in line


@pytest.mark.parametrize(
    ("given", "fix"),
    [
        ("mysite/asgi.py", "laurelin mysite.asgi:application"),
        ("./mysite/asgi.py", "laurelin mysite.asgi:application"),
        ("mysite/asgi", "laurelin mysite.asgi:application"),
        ("site/mysite/asgi.py", "laurelin --app-dir site mysite.asgi:application"),
    ],
)
def test_file_path_instead_of_module_path(tmp_path: Path, given: str, fix: str) -> None:
    write_project(tmp_path)
    write_project(tmp_path / "site")
    line = the_line(run_cli(tmp_path, f"{given}:application"))
    assert line == f"{given!r} is a file path; laurelin takes a dotted module path: {fix}"


def test_missing_dependency_names_the_importing_line(tmp_path: Path) -> None:
    asgi = "import os\nimport channels_redis_not_installed_here\n" + GOOD_ASGI
    write_project(tmp_path, asgi=asgi)
    line = the_line(run_cli(tmp_path, "mysite.asgi:application"))
    assert line.startswith(
        "Error importing 'mysite.asgi': No module named 'channels_redis_not_installed_here' "
        "(imported by mysite/asgi.py line 2: import channels_redis_not_installed_here): "
        "a module it imports is missing; install it into this environment ("
    )
    assert line.endswith(") or fix PYTHONPATH")


# Makes `import daphne` fail in the laurelin process as if Daphne were not installed (the test
# extras install it, for Channels' own live-server test case).
HIDE_DAPHNE = """\
import sys


class HideDaphne:
    def find_spec(self, name, path=None, target=None):
        if name == "daphne" or name.startswith("daphne."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, HideDaphne())
"""


def test_daphne_left_in_installed_apps(tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", apps=("daphne", "chat"))
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_DAPHNE)
    pythonpath = os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))
    result = run_cli(project, "mysite.asgi:application", env={"PYTHONPATH": pythonpath})
    assert the_line(result) == (
        "Error importing 'mysite.asgi': 'daphne' is in INSTALLED_APPS but is not installed: "
        "laurelin takes its place, so put 'laurelin' there instead of 'daphne'"
    )


def test_app_in_installed_apps_not_installed(tmp_path: Path) -> None:
    write_project(tmp_path, apps=("chatt", "django.contrib.contenttypes"))
    line = the_line(run_cli(tmp_path, "mysite.asgi:application"))
    assert line.startswith(
        "Error importing 'mysite.asgi': 'chatt' is in INSTALLED_APPS but cannot be imported: "
    )
    assert "fix INSTALLED_APPS" in line


# -- Django settings -------------------------------------------------------------------------------


def test_settings_module_that_does_not_exist(tmp_path: Path) -> None:
    write_project(tmp_path)
    env = {"DJANGO_SETTINGS_MODULE": "mysite.setings"}
    line = the_line(run_cli(tmp_path, "mysite.asgi:application", env=env))
    assert line == (
        "Error importing 'mysite.asgi': DJANGO_SETTINGS_MODULE is 'mysite.setings' but no "
        f"module named 'mysite.setings' can be imported from {tmp_path}: check its spelling "
        "and that its package is in --app-dir"
    )


def test_settings_not_configured_names_the_line_and_the_settings_module(tmp_path: Path) -> None:
    asgi = (
        "from django.core.asgi import get_asgi_application\n"
        "\n"
        "application = get_asgi_application()\n"
    )
    write_project(tmp_path, asgi=asgi)
    line = the_line(run_cli(tmp_path, "mysite.asgi:application"))
    assert line == (
        "Error importing 'mysite.asgi': Django settings are not configured (at mysite/asgi.py "
        "line 3: application = get_asgi_application()): set DJANGO_SETTINGS_MODULE (e.g. "
        'DJANGO_SETTINGS_MODULE=mysite.settings), or put os.environ.setdefault("DJANGO_'
        'SETTINGS_MODULE", "mysite.settings") at the top of your asgi.py, and call '
        "django.setup() (or get_asgi_application()) before importing models"
    )


def test_routing_imported_before_django_is_set_up(tmp_path: Path) -> None:
    # The classic asgi.py order mistake: consumers (and so models) imported first.
    asgi = (
        "import os\n"
        'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n'
        "from chat.routing import websocket_urlpatterns\n" + GOOD_ASGI
    )
    write_project(tmp_path, asgi=asgi)
    line = the_line(run_cli(tmp_path, "mysite.asgi:application"))
    assert line == (
        "Error importing 'mysite.asgi': Django apps aren't loaded yet (at mysite/asgi.py line 3: "
        "from chat.routing import websocket_urlpatterns): call django.setup() (or "
        "get_asgi_application()) in your asgi.py before importing consumers, routing or models"
    )


# -- the module is there, the application is not ---------------------------------------------------


def test_module_without_application_lists_what_looks_like_one(tmp_path: Path) -> None:
    write_project(tmp_path, asgi=GOOD_ASGI.replace("application = Protocol", "app = Protocol"))
    line = the_line(run_cli(tmp_path, "mysite.asgi:application"))
    # Not the imported get_asgi_application, ProtocolTypeRouter or URLRouter.
    assert (
        line == "Module 'mysite.asgi' has no attribute 'application'; it has: app, django_asgi_app"
    )


def test_router_under_another_name_is_listed(tmp_path: Path) -> None:
    asgi = GOOD_ASGI.replace("django_asgi_app", "django_http").replace("application =", "router =")
    write_project(tmp_path, asgi=asgi)
    line = the_line(run_cli(tmp_path, "mysite.asgi:application"))
    assert (
        line == "Module 'mysite.asgi' has no attribute 'application'; it has: django_http, router"
    )


def test_package_given_for_its_asgi_module(tmp_path: Path) -> None:
    write_project(tmp_path)
    line = the_line(run_cli(tmp_path, "mysite"))
    assert line == (
        "Module 'mysite' has no attribute 'application'; it is a package: did you mean "
        "mysite.asgi:application?"
    )


def test_module_with_nothing_like_an_app(tmp_path: Path) -> None:
    write_project(tmp_path)
    line = the_line(run_cli(tmp_path, "mysite.urls:application"))
    assert line == (
        "Module 'mysite.urls' has no attribute 'application', nor anything else that looks "
        "like an ASGI application"
    )


def test_get_asgi_application_without_the_call(tmp_path: Path) -> None:
    asgi = (
        "import os\n"
        'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n'
        "from django.core.asgi import get_asgi_application\n"
        "application = get_asgi_application\n"
    )
    write_project(tmp_path, asgi=asgi)
    line = the_line(run_cli(tmp_path, "mysite.asgi:application"))
    assert line == (
        "'mysite.asgi:application' is not an ASGI application: it cannot take (scope, receive, "
        "send); if it returns the app, call it in your module (application = "
        "get_asgi_application()) or pass --factory"
    )
