# The ASGI HTTP messages end to end: what receive() gives the app (the body in parts with
# more_body, then http.disconnect when the client goes or once the response is complete), the
# rules send() enforces (a clear RuntimeError inside the app for the wrong message, type or
# order; an OSError once the client has gone), what the client gets then, and ASGI 2 apps.
from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apps.asgi_support import (
    close_with_reset,
    connect,
    request,
    serving,
    wait_marker,
)
from conftest import ServerProcess

APP = "asgi_app:app"


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def server(markers: Path) -> Iterator[ServerProcess]:
    # A short graceful timeout: apps left waiting by a failing test must not slow the teardown.
    with serving(APP, "--graceful-timeout", "2", env={"ASGI_TEST_MARKERS": str(markers)}) as proc:
        yield proc


_tokens = iter(range(10**6))


def token(name: str) -> str:
    return f"{name}-{next(_tokens)}"


def recv_until(sock: socket.socket, buf: bytearray, needle: bytes) -> None:
    """Read into `buf` until it contains `needle` (bounded by the socket timeout)."""
    while needle not in buf:
        data = sock.recv(65536)
        assert data, f"connection closed before {needle!r}; got {bytes(buf)!r}"
        buf += data


def assert_still_serving(server: ServerProcess) -> None:
    response = httpx.get(server.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == "Hello, world!"


# -- receive() -------------------------------------------------------------------------------


def test_body_parts_arrive_as_sent_with_more_body(server: ServerProcess) -> None:
    # Lock step: each chunk is sent only once the app has reported the previous one, so every
    # chunk is its own http.request message.
    with connect(server.port) as sock:
        buf = bytearray()
        sock.sendall(
            b"POST /parts HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        recv_until(sock, buf, b"http.request 5 True\n")
        sock.sendall(b"7\r\n, world\r\n")
        recv_until(sock, buf, b"http.request 7 True\n")
        sock.sendall(b"1\r\n!\r\n")
        recv_until(sock, buf, b"http.request 1 True\n")
        sock.sendall(b"0\r\n\r\n")
        recv_until(sock, buf, b"end\n")
    lines = re.findall(rb"http\.\w+ \d+ \w+\n", bytes(buf))
    assert lines == [
        b"http.request 5 True\n",
        b"http.request 7 True\n",
        b"http.request 1 True\n",
        b"http.request 0 False\n",
    ]


def test_large_body_in_several_parts(server: ServerProcess) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: more than the server buffers before the app reads
    response = httpx.post(server.url + "/parts", content=body, timeout=30)
    assert response.status_code == 200
    lines = [line.split() for line in response.text.splitlines()]
    assert lines[-1] == ["end"]
    parts = lines[:-1]
    assert len(parts) >= 2
    assert all(kind == "http.request" for kind, _, _ in parts)
    assert [more for _, _, more in parts] == ["True"] * (len(parts) - 1) + ["False"]
    assert sum(int(size) for _, size, _ in parts) == len(body)


def test_large_body_reaches_the_app_intact(server: ServerProcess) -> None:
    body = bytes(range(256)) * 4096 + b"tail"
    response = httpx.post(server.url + "/echo", content=body, timeout=30)
    assert response.status_code == 200
    assert response.content == body


def test_request_without_body_is_one_empty_message(server: ServerProcess) -> None:
    response = httpx.get(server.url + "/parts", timeout=10)
    assert response.text == "http.request 0 False\nend\n"


def _wait_in_receive(server: ServerProcess, markers: Path, name: str) -> tuple[socket.socket, str]:
    tok = token(name)
    sock = connect(server.port)
    head = f"POST /wait-disconnect?token={tok} HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
    sock.sendall(head.encode() + b"\r\nabc")
    assert wait_marker(markers, f"{tok}.waiting") == "3"
    time.sleep(0.2)
    # receive() after the whole body blocks while the client is still there.
    assert not (markers / f"{tok}.after").exists()
    return sock, tok


def test_receive_after_body_gives_disconnect_on_reset(server: ServerProcess, markers: Path) -> None:
    sock, tok = _wait_in_receive(server, markers, "rst")
    close_with_reset(sock)
    assert wait_marker(markers, f"{tok}.after", timeout=5) == "http.disconnect"
    assert_still_serving(server)


def test_receive_after_body_gives_disconnect_on_close(server: ServerProcess, markers: Path) -> None:
    sock, tok = _wait_in_receive(server, markers, "fin")
    sock.close()
    assert wait_marker(markers, f"{tok}.after", timeout=5) == "http.disconnect"


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_disconnect_in_the_middle_of_the_body(
    server: ServerProcess, markers: Path, close: str
) -> None:
    tok = token(f"mid-{close}")
    sock = connect(server.port)
    head = f"POST /record-receive?token={tok} HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n"
    sock.sendall(head.encode() + b"\r\nabc")
    wait_until_text(markers, f"{tok}.progress", '["http.request 3 True"]')
    if close == "rst":
        close_with_reset(sock)
    else:
        sock.close()
    seen = json.loads(wait_marker(markers, f"{tok}.done", timeout=5))
    assert seen == ["http.request 3 True", "http.disconnect 0 False"]
    assert_still_serving(server)


def wait_until_text(markers: Path, name: str, text: str) -> None:
    wait_marker(markers, name)
    deadline = time.monotonic() + 10
    while (markers / name).read_text() != text:
        assert time.monotonic() < deadline, (markers / name).read_text()
        time.sleep(0.02)


def test_receive_after_response_complete_gives_disconnect(
    server: ServerProcess, markers: Path
) -> None:
    tok = token("after")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.post(f"/after-response?token={tok}", content=b"xyz")
        assert response.status_code == 200
        assert response.text == "done"
        # The client is still connected (keep-alive), yet the exchange is over.
        assert wait_marker(markers, f"{tok}.after", timeout=5) == "http.disconnect"
        assert client.get("/").status_code == 200


# -- send() rules ------------------------------------------------------------------------------

# case: words the RuntimeError's message must contain
BEFORE_START = {
    "body-before-start": ["'http.response.body'", "'http.response.start'"],
    "unknown-type": ["http.response.bogus"],
    "no-type": ["type"],
    "websocket-type": ["websocket.accept"],
    "status-str": ["status", "'200'"],
    "status-missing": ["status"],
    "headers-str": ["bytes", "x-name"],
    "header-value-str": ["bytes", "x-name"],
    "header-crlf": ["x-name"],
}
AFTER_START = {
    "start-twice": ["'http.response.start'"],
    "body-str": ["bytes", "str"],
}
AFTER_COMPLETE = {
    "after-complete": ["'http.response.body'"],
    "start-after-complete": ["'http.response.start'"],
}


def _send_error(server: ServerProcess, case: str) -> tuple[str, bytes]:
    tok = token(case)
    data = f"GET /send-error?case={case}&token={tok} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
    return tok, data


def _check_raised(markers: Path, tok: str, words: list[str], server: ServerProcess) -> None:
    raised = json.loads(wait_marker(markers, tok))
    assert raised["type"] == "RuntimeError", raised
    for word in words:
        assert word in raised["message"], raised
    # The app let it propagate: the server logs it with its traceback.
    server.wait_for(re.escape(f"RuntimeError: {raised['message']}"))


@pytest.mark.parametrize("case", sorted(BEFORE_START))
def test_send_error_before_response_start_gives_500(
    server: ServerProcess, markers: Path, case: str
) -> None:
    tok, data = _send_error(server, case)
    response = request(server.port, data)
    _check_raised(markers, tok, BEFORE_START[case], server)
    assert response.status == 500
    assert response.complete
    assert response.header("content-type") == "text/html; charset=utf-8"
    assert b"x-injected" not in response.raw.lower()
    assert_still_serving(server)


@pytest.mark.parametrize("case", sorted(AFTER_START))
def test_send_error_after_response_start_aborts(
    server: ServerProcess, markers: Path, case: str
) -> None:
    tok, data = _send_error(server, case)
    response = request(server.port, data)
    _check_raised(markers, tok, AFTER_START[case], server)
    # No response the client could take for a complete one.
    assert response.closed
    assert not (response.status == 200 and response.complete), response.raw
    assert_still_serving(server)


@pytest.mark.parametrize("case", sorted(AFTER_COMPLETE))
def test_send_after_response_complete_raises(
    server: ServerProcess, markers: Path, case: str
) -> None:
    tok, data = _send_error(server, case)
    response = request(server.port, data)
    assert response.status == 200
    assert response.complete
    assert response.body == b"complete"
    _check_raised(markers, tok, AFTER_COMPLETE[case], server)
    assert_still_serving(server)


def test_send_after_client_disconnect_raises_oserror(server: ServerProcess, markers: Path) -> None:
    tok, data = _send_error(server, "after-disconnect")
    with connect(server.port) as sock:
        sock.sendall(data)
        buf = bytearray()
        recv_until(sock, buf, b"xxxx")  # the response has started streaming
    raised = json.loads(wait_marker(markers, tok, timeout=15))
    assert raised["oserror"] is True, raised
    assert_still_serving(server)


def test_send_after_client_reset_raises_oserror(server: ServerProcess, markers: Path) -> None:
    tok, data = _send_error(server, "after-disconnect")
    sock = connect(server.port)
    sock.sendall(data)
    buf = bytearray()
    recv_until(sock, buf, b"xxxx")
    close_with_reset(sock)
    raised = json.loads(wait_marker(markers, tok, timeout=15))
    assert raised["oserror"] is True, raised
    assert_still_serving(server)


# -- ASGI 2 ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asgi2_server() -> Iterator[ServerProcess]:
    with serving("asgi_asgi2:Application") as proc:
        yield proc


def test_asgi2_application(asgi2_server: ServerProcess) -> None:
    with httpx.Client(base_url=asgi2_server.url, timeout=10) as client:
        get = client.get("/some/path")
        post = client.post("/upload", content=b"payload bytes")
    assert get.status_code == 200
    assert get.json() == {
        "style": "asgi2",
        "type": "http",
        "method": "GET",
        "path": "/some/path",
        "body": "",
    }
    assert post.json()["body"] == "payload bytes"
    assert post.json()["method"] == "POST"
