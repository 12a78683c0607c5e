# The chat example (examples/chat) served by the laurelin CLI as in production:
# `python -m laurelin --app-dir examples/chat mysite.asgi:application`, with a temporary
# CHAT_DATABASE and the in-memory channel layer. Covered: the lobby and a room page through
# Django (HTTP/1.1 and h2c); chat over WebSocket with the `websockets` client (everyone in a room
# receives a message, nobody in another room does; what is not a chat message is ignored and the
# socket stays open); Channels' AllowedHostsOriginValidator (a foreign or missing Origin is a 403
# handshake); the same chat over HTTP/2 WebSockets (RFC 8441), mixed with HTTP/1.1 clients.
# Static files are not served by the ASGI application itself (that is runserver's job in
# development and nginx's in production: docs/deployment.md), so they are left to the runserver
# tests. `chat_server()` is also what tests/dj/test_scaleout.py starts its processes with.
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.protocol import State
from websockets.sync.client import ClientConnection

import wsraw
from cli_process import Launched, laurelin_argv
from conftest import free_port
from h2client import H2Client
from test_http2_websocket import connect as h2_connect
from test_http2_websocket import refused as h2_refused

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat"
APP = "mysite.asgi:application"
RECV_TIMEOUT = 10.0


def chat_env(workdir: Path, redis_url: str = "") -> dict[str, str]:
    """The environment the example runs in: its settings, a database in `workdir`, no .pyc
    files written into the repository, the Redis layer only when `redis_url` is given."""
    return {
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        "CHAT_DATABASE": str(workdir / "chat.sqlite3"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "REDIS_URL": redis_url,
    }


def chat_server(workdir: Path, *args: str, redis_url: str = "") -> Launched:
    """Start laurelin serving the chat example on a free port (run from `workdir`, so nothing
    lands in the repository) and wait until it listens; the caller stops it."""
    argv = laurelin_argv("-p", str(free_port()), "--app-dir", str(EXAMPLE), *args, APP)
    proc = Launched(argv, env=chat_env(workdir, redis_url), cwd=workdir)
    try:
        proc.wait_listening(timeout=30)
    except BaseException:
        proc.stop()
        raise
    return proc


def origin(proc: Launched) -> str:
    return f"http://127.0.0.1:{proc.port}"


def join(proc: Launched, room: str, **kwargs: object) -> ClientConnection:
    """A `websockets` client in `room`, with the Origin a browser on the page would send."""
    kwargs.setdefault("origin", origin(proc))
    return wsraw.client(f"ws://127.0.0.1:{proc.port}/ws/chat/{room}/", **kwargs)


def say(ws: ClientConnection, message: str) -> None:
    ws.send(json.dumps({"message": message}))


def heard(ws: ClientConnection) -> str:
    """The next chat message `ws` receives, past announcements of clients leaving (fails after
    RECV_TIMEOUT)."""
    while True:
        data = ws.recv(RECV_TIMEOUT)
        assert isinstance(data, str), data
        event = json.loads(data)
        if not event.get("left"):
            return str(event["message"])


def heard_leave(ws: ClientConnection) -> None:
    """The next event `ws` receives says a client left the room."""
    data = ws.recv(RECV_TIMEOUT)
    assert isinstance(data, str), data
    assert json.loads(data) == {"left": True}


def new_room() -> str:
    return f"room-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launched]:
    proc = chat_server(tmp_path_factory.mktemp("chat"))
    try:
        yield proc
    finally:
        proc.stop()


# -- pages through Django --------------------------------------------------------------------------


def test_lobby_page(chat: Launched) -> None:
    response = httpx.get(f"{chat.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "What chat room would you like to enter?" in response.text
    assert httpx.get(f"{chat.url}/chat/").text == response.text


def test_room_page_names_its_room_and_script(chat: Launched) -> None:
    response = httpx.get(f"{chat.url}/chat/lobby-42/")
    assert response.status_code == 200
    assert '<script id="room-name" type="application/json">"lobby-42"</script>' in response.text
    assert '<script src="/static/chat/room.js"></script>' in response.text
    # Django's middleware ran (SecurityMiddleware's headers), not a bare handler.
    assert response.headers["x-content-type-options"] == "nosniff"


def test_unknown_page_is_djangos_404(chat: Launched) -> None:
    response = httpx.get(f"{chat.url}/chat/a/b/")
    assert response.status_code == 404
    assert "Page not found" in response.text  # DEBUG's technical 404


def test_pages_over_h2c(chat: Launched) -> None:
    with httpx.Client(http1=False, http2=True) as client:
        response = client.get(f"{chat.url}/chat/h2-room/")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 200
    assert '"h2-room"' in response.text


# -- chat over WebSocket (HTTP/1.1) ----------------------------------------------------------------


def test_everyone_in_the_room_hears_a_message_and_no_one_else(chat: Launched) -> None:
    room, elsewhere = new_room(), new_room()
    with join(chat, room) as alice, join(chat, room) as bob, join(chat, elsewhere) as carol:
        say(alice, "hello from alice")
        assert heard(alice) == "hello from alice"  # the sender is in the group too
        assert heard(bob) == "hello from alice"
        # Had carol been in alice's group, that message would already be queued for her (the
        # layer delivered it to bob): the first thing she hears must be her own.
        say(carol, "carol, alone")
        assert heard(carol) == "carol, alone"
        say(bob, "bob answers")
        assert heard(alice) == "bob answers"
        assert heard(bob) == "bob answers"


def test_what_is_not_a_chat_message_is_ignored_and_the_socket_stays_open(chat: Launched) -> None:
    room = new_room()
    with join(chat, room) as sender, join(chat, room) as listener:
        sender.send("this is not JSON")
        sender.send(json.dumps({"text": "no message key"}))
        sender.send(json.dumps(["a", "list"]))
        sender.send(b"\x00binary\xff")
        say(sender, "a real message")
        assert heard(listener) == "a real message"
        assert heard(sender) == "a real message"
        assert sender.protocol.state is State.OPEN
        assert listener.protocol.state is State.OPEN


def test_leaving_the_room_does_not_disturb_the_others(chat: Launched) -> None:
    room = new_room()
    with join(chat, room) as stays:
        with join(chat, room) as leaves:
            say(leaves, "bye")
            assert heard(stays) == "bye"
        say(stays, "still here")
        assert heard(stays) == "still here"


@pytest.mark.parametrize(
    "bad_origin",
    ["http://evil.example", "http://127.0.0.1.evil.example:8000", None],
    ids=["foreign", "suffix-trick", "missing"],
)
def test_origin_not_in_allowed_hosts_is_a_403_handshake(
    chat: Launched, bad_origin: str | None
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        join(chat, new_room(), origin=bad_origin)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_origin_of_an_allowed_host_is_accepted(chat: Launched, host: str) -> None:
    room = new_room()
    with join(chat, room, origin=f"http://{host}:{chat.port}") as ws:
        say(ws, f"from {host}")
        assert heard(ws) == f"from {host}"


# -- chat over WebSocket on HTTP/2 (RFC 8441) ------------------------------------------------------


@pytest.fixture
def h2(chat: Launched) -> Iterator[H2Client]:
    with H2Client(chat.port) as client:
        yield client


def test_chat_over_http2_websockets_reaches_http1_clients(chat: Launched, h2: H2Client) -> None:
    room = new_room()
    first = h2_connect(h2, f"/ws/chat/{room}/", headers=[("origin", origin(chat))])
    second = h2_connect(h2, f"/ws/chat/{room}/", headers=[("origin", origin(chat))])
    with join(chat, room) as http1:
        first.send_text(json.dumps({"message": "over h2"}))
        for ws in (first, second):
            assert json.loads(ws.read_text()) == {"message": "over h2"}
        assert heard(http1) == "over h2"
        say(http1, "over http/1.1")
        for ws in (first, second):
            assert json.loads(ws.read_text()) == {"message": "over http/1.1"}
        assert heard(http1) == "over http/1.1"
        first.send_text("not JSON")
        second.send_text(json.dumps({"message": "still open"}))
        assert heard(http1) == "still open"
        assert json.loads(first.read_text()) == {"message": "still open"}
    assert first.close_handshake()[0] == 1000
    assert second.close_handshake()[0] == 1000


def test_foreign_origin_over_http2_is_403(chat: Launched, h2: H2Client) -> None:
    result = h2_refused(h2, f"/ws/chat/{new_room()}/", headers=[("origin", "http://evil.example")])
    assert result.status == 403
    # The connection serves on: a page on the same connection.
    page = h2.get("/chat/after-403/")
    assert page.status == 200
    assert b'"after-403"' in page.body
