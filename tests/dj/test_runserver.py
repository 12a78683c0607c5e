# `manage.py runserver` with laurelin in INSTALLED_APPS, on a copy of the chat example, as a
# developer runs it (a subprocess, Django's autoreloader on unless a test says --noreload).
# Covered: the banner; an HTTP page, a static file (ASGIStaticFilesHandler), h2c and a WebSocket
# chat round trip; the request lines in Daphne's runserver format on the django.channels.server
# logger; Ctrl-C (exit 0, WebSockets closed with 1001); autoreload after a view is edited (the
# next request sees the change); --noasgi (Django's WSGI server); --nostatic and --insecure;
# FORCE_SCRIPT_NAME as root_path; --http_timeout, --websocket_handshake_timeout and the
# DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE setting; a clear CommandError for a missing or wrong
# ASGI_APPLICATION (and, under the autoreloader, recovery once the setting is fixed); Django's
# line for a port already in use.
from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection

import wsraw
from conftest import free_port
from runserver_process import Runserver, chat_copy, start_runserver, wait_until, write_settings

RECV_TIMEOUT = 10.0


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return chat_copy(tmp_path)


@pytest.fixture
def runserver() -> Iterator[Callable[..., Runserver]]:
    """Start runserver (see runserver_process.start_runserver); every one is stopped after."""
    started: list[Runserver] = []

    def start(project: Path, *args: str, **kwargs: object) -> Runserver:
        proc = start_runserver(project, *args, **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def http(server: Runserver, **kwargs: object) -> httpx.Client:
    kwargs.setdefault("timeout", 10.0)
    return httpx.Client(base_url=server.url, trust_env=False, **kwargs)  # type: ignore[arg-type]


def join(server: Runserver, path: str, **kwargs: object) -> ClientConnection:
    """A `websockets` client on `path`, with the Origin a browser on the site would send."""
    kwargs.setdefault("origin", server.url)
    return wsraw.client(f"ws://127.0.0.1:{server.port}{path}", **kwargs)


def say(ws: ClientConnection, message: str) -> None:
    ws.send(json.dumps({"message": message}))


def heard(ws: ClientConnection) -> str:
    data = ws.recv(RECV_TIMEOUT)
    assert isinstance(data, str), data
    return str(json.loads(data)["message"])


def close_code(ws: ClientConnection) -> int | None:
    """The close code the server sent `ws` (waits for the close, at most RECV_TIMEOUT)."""
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(RECV_TIMEOUT)
    return closed.value.rcvd.code if closed.value.rcvd else None


def log_line(server: Runserver, pattern: str) -> str:
    """Wait for a whole line of runserver's stderr matching `pattern`."""
    return server.wait_for(rf"^{pattern}$", "stderr").group(0)


def test_serves_http_static_h2c_and_websocket_with_daphne_log_lines(
    project: Path, runserver: Callable[..., Runserver]
) -> None:
    server = runserver(project)
    out = server.stdout
    assert "Performing system checks..." in out
    assert re.search(r"Django version \S+, using settings 'mysite.settings'", out)
    assert f"development server at http://127.0.0.1:{server.port}/" in out
    assert "Quit the server with CONTROL-C." in out

    with http(server) as client:
        page = client.get("/chat/lobby/")
        assert page.status_code == 200
        assert '<script id="room-name" type="application/json">"lobby"</script>' in page.text
        static = client.get("/static/chat/room.js")
        assert static.status_code == 200
        assert static.content == (project / "chat" / "static" / "chat" / "room.js").read_bytes()
        assert client.get("/static/chat/missing.js").status_code == 404
    with http(server, http1=False, http2=True) as h2c:
        page = h2c.get("/chat/h2room/")
        assert page.http_version == "HTTP/2"
        assert page.status_code == 200
        assert '"h2room"' in page.text

    with join(server, "/ws/chat/den/") as alice, join(server, "/ws/chat/den/") as bob:
        say(alice, "hello from alice")
        assert heard(bob) == "hello from alice"
        assert heard(alice) == "hello from alice"
    with pytest.raises(InvalidStatus) as refused:
        join(server, "/ws/chat/den/", origin="http://evil.example")
    assert refused.value.response.status_code == 403

    client_address = r"\[127\.0\.0\.1:\d+\]"
    timed = r"\[\d+\.\d\d, 127\.0\.0\.1:\d+\]"
    log_line(server, rf"HTTP GET /chat/lobby/ 200 {timed}")
    log_line(server, rf"HTTP GET /static/chat/room\.js 200 {timed}")
    log_line(server, rf"HTTP GET /static/chat/missing\.js 404 {timed}")
    log_line(server, rf"HTTP GET /chat/h2room/ 200 {timed}")
    for event in ("HANDSHAKING", "CONNECT", "DISCONNECT", "REJECT"):
        log_line(server, rf"WebSocket {event} /ws/chat/den/ {client_address}")

    # Ctrl-C in the terminal: the autoreloader's parent and child both stop, with status 0.
    server.interrupt()
    assert server.wait_exit(15) == 0
    assert "Traceback" not in server.output, server.output


def test_ctrl_c_without_the_reloader_closes_websockets_with_1001_and_exits_0(
    project: Path, runserver: Callable[..., Runserver]
) -> None:
    server = runserver(project, "--noreload")
    with join(server, "/ws/chat/quit/") as ws:
        say(ws, "still here")
        assert heard(ws) == "still here"
        server.interrupt()
        assert close_code(ws) == 1001
    assert server.wait_exit(15) == 0
    log_line(server, r"WebSocket DISCONNECT /ws/chat/quit/ \[127\.0\.0\.1:\d+\]")
    assert "Traceback" not in server.output, server.output


def edit_until(path: Path, text: str, done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Write `text` to `path`, then wait until `done()`. The file's time is moved on every two
    seconds: a write that lands before the autoreloader's first look is otherwise never seen."""
    path.write_text(text, encoding="utf-8")
    deadline = time.monotonic() + timeout
    bumped = time.monotonic()
    while not done():
        now = time.monotonic()
        if now > deadline:
            raise AssertionError(f"the edit of {path.name} was never picked up")
        if now - bumped > 2.0:
            stamp = time.time()
            os.utime(path, (stamp, stamp))
            bumped = now
        time.sleep(0.2)


def answers(server: Runserver, path: str, needle: str) -> Callable[[], bool]:
    """Whether GET `path` now answers with a body containing `needle` (False while down)."""

    def check() -> bool:
        try:
            with http(server, timeout=2.0) as client:
                return needle in client.get(path).text
        except httpx.HTTPError:
            return False

    return check


def test_autoreload_serves_an_edited_view(
    project: Path, runserver: Callable[..., Runserver]
) -> None:
    server = runserver(project)
    with http(server) as client:
        assert "edited lobby" not in client.get("/").text
    views = project / "chat" / "views.py"
    source = views.read_text(encoding="utf-8")
    edited = source.replace(
        'return render(request, "chat/index.html")', 'return HttpResponse("edited lobby")'
    )
    assert edited != source
    with join(server, "/ws/chat/reload/") as ws:
        edit_until(views, edited, answers(server, "/", "edited lobby"))
        # The process that served it drained on its way out: the WebSocket got 1001.
        assert close_code(ws) == 1001
    assert re.search(r"views\.py changed, reloading\.", server.stderr)
    assert len(re.findall(r"Starting ASGI/laurelin version", server.stdout)) >= 2
    # The consumer's disconnect() ran in the exiting process (it needs the thread pool).
    log_line(server, r"WebSocket DISCONNECT /ws/chat/reload/ \[127\.0\.0\.1:\d+\]")
    assert "Traceback" not in server.stderr, server.stderr


def test_noasgi_runs_djangos_wsgi_server(
    project: Path, runserver: Callable[..., Runserver]
) -> None:
    port = free_port()
    server = runserver(project, "--noasgi", "--noreload", addrport=f"127.0.0.1:{port}", wait=False)
    server.port = port
    server.wait_for(rf"development server at http://127\.0\.0\.1:{port}/", "stdout", 30)
    assert "laurelin" not in server.stdout
    wait_until(answers(server, "/chat/lobby/", '"lobby"'), 15, "the WSGI server to answer")
    with http(server) as client:
        assert client.get("/static/chat/room.js").status_code == 200  # staticfiles' handler
    with pytest.raises(InvalidStatus):
        join(server, "/ws/chat/den/")  # no WebSocket in WSGI
    server.wait_for(r'"GET /chat/lobby/ HTTP/1\.1" 200', "stderr")
    assert "HTTP GET /chat/lobby/" not in server.stderr


@pytest.mark.parametrize(
    ("args", "debug", "served"),
    [
        ((), "1", True),
        (("--nostatic",), "1", False),
        ((), "0", False),
        (("--insecure",), "0", True),
    ],
    ids=["debug", "nostatic", "no-debug", "insecure"],
)
def test_static_files_follow_debug_nostatic_and_insecure(
    project: Path,
    runserver: Callable[..., Runserver],
    args: tuple[str, ...],
    debug: str,
    served: bool,
) -> None:
    server = runserver(project, "--noreload", *args, env={"DJANGO_DEBUG": debug})
    with http(server) as client:
        response = client.get("/static/chat/room.js")
    assert response.status_code == (200 if served else 404)


def test_force_script_name_timeout_flags_and_daphnes_size_setting(
    project: Path, runserver: Callable[..., Runserver]
) -> None:
    settings = write_settings(
        project,
        "echo_settings",
        """
        ASGI_APPLICATION = "runserver_echo.application"
        FORCE_SCRIPT_NAME = "/prefix"
        DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE = 1000
        """,
    )
    server = runserver(
        project,
        "--settings",
        settings,
        "--noreload",
        "--http_timeout",
        "1",
        "--websocket_handshake_timeout",
        "1",
    )
    with http(server) as client:
        shown = client.get("/prefix/hello").json()
        assert shown["root_path"] == "/prefix"
        assert client.get("/prefix/slow").status_code == 503
    # The line shows how long the request took: the --http_timeout of 1 s.
    line = log_line(server, r"HTTP GET /prefix/slow 503 \[\d+\.\d\d, 127\.0\.0\.1:\d+\]")
    assert float(line.split("[")[1].split(",")[0]) >= 1.0
    with pytest.raises(InvalidStatus) as refused:
        join(server, "/prefix/ws/slow")
    assert refused.value.response.status_code == 403
    with join(server, "/prefix/ws/echo") as ws:
        ws.send("echo me")
        assert ws.recv(RECV_TIMEOUT) == "echo me"
        ws.send("x" * 1001)  # over Daphne's setting, which runserver honours as Daphne's does
        assert close_code(ws) == 1009


@pytest.mark.parametrize(
    ("body", "reloader", "message"),
    [
        (
            "del ASGI_APPLICATION\n",
            True,
            "CommandError: You have not set ASGI_APPLICATION, which is needed to run the "
            'server: name your ASGI application in your settings, e.g. ASGI_APPLICATION = "',
        ),
        (
            'ASGI_APPLICATION = "mysite"\n',
            True,
            "CommandError: ASGI_APPLICATION = 'mysite' is not a dotted path to an ASGI "
            "application: write module.path.attribute",
        ),
        (
            'ASGI_APPLICATION = "mysite.nothere.application"\n',
            False,
            "CommandError: ASGI_APPLICATION = 'mysite.nothere.application': there is no module "
            "'mysite.nothere' (no module named 'mysite.nothere'); check the setting",
        ),
        (
            'ASGI_APPLICATION = "mysite.asgi.app"\n',
            False,
            "CommandError: ASGI_APPLICATION = 'mysite.asgi.app': module 'mysite.asgi' has no "
            "attribute 'app' (it has: application, django_asgi_app)",
        ),
        (
            'ASGI_APPLICATION = "mysite.settings.DEBUG"\n',
            False,
            "CommandError: ASGI_APPLICATION = 'mysite.settings.DEBUG' is not an ASGI "
            "application: it is a bool, not a callable",
        ),
    ],
    ids=["missing", "not-dotted", "no-module", "no-attribute", "not-callable"],
)
def test_a_missing_or_wrong_asgi_application_is_a_command_error(
    project: Path,
    runserver: Callable[..., Runserver],
    body: str,
    reloader: bool,
    message: str,
) -> None:
    settings = write_settings(project, "wrong_settings", body)
    args = ("--settings", settings) if reloader else ("--settings", settings, "--noreload")
    server = runserver(project, *args, wait=False)
    assert server.wait_exit(30) == 1
    assert message in server.stderr
    assert "Traceback" not in server.stderr, server.stderr
    assert "Starting ASGI/laurelin" not in server.stdout


def test_under_the_reloader_a_wrong_setting_waits_for_the_fix(
    project: Path, runserver: Callable[..., Runserver]
) -> None:
    settings = write_settings(
        project, "typo_settings", 'ASGI_APPLICATION = "mysite.asgi.aplication"\n'
    )
    server = runserver(project, "--settings", settings, wait=False)
    server.wait_for(
        r"^CommandError: ASGI_APPLICATION = 'mysite\.asgi\.aplication': module 'mysite\.asgi' "
        r"has no attribute 'aplication'",
        "stderr",
        30,
    )
    assert server.proc.poll() is None  # still watching for changes
    fixed = (project / f"{settings}.py").read_text().replace("aplication", "application")
    edit_until(project / f"{settings}.py", fixed, lambda: "Starting ASGI" in server.stdout)
    server.wait_banner()
    with http(server) as client:
        assert client.get("/chat/lobby/").status_code == 200


def test_a_port_in_use_is_djangos_one_line_error(
    project: Path, runserver: Callable[..., Runserver]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = runserver(project, "--noreload", addrport=f"127.0.0.1:{port}", wait=False)
        assert server.wait_exit(30) == 1
    assert "Error: That port is already in use." in server.stderr
    assert "Traceback" not in server.stderr, server.stderr
