# Apps that fail, end to end: an exception before http.response.start is a 500 (Daphne's HTML
# page, the traceback in the server's log, nothing of it sent to the client); after it, the
# connection ends so that the truncated body cannot pass for a complete one; an app that returns
# without responding is a 500, one that returns mid-response is aborted. The server keeps serving.
from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from apps.asgi_support import connect, read_response, request, serving
from conftest import ServerProcess

APP = "asgi_app:app"

_tokens = iter(range(10**6))


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serving(APP) as proc:
        yield proc


def token() -> str:
    return f"tok{next(_tokens)}x"


def get(server: ServerProcess, target: str, version: str = "1.1") -> bytes:
    return f"GET {target} HTTP/{version}\r\nHost: t\r\n\r\n".encode()


def assert_still_serving(server: ServerProcess) -> None:
    response = httpx.get(server.url + "/", timeout=10)
    assert response.status_code == 200
    assert response.text == "Hello, world!"


def assert_500_page(status: int | None, ctype: str | None, body: bytes) -> None:
    assert status == 500
    assert ctype == "text/html; charset=utf-8"
    assert b"<html" in body.lower()
    assert b"500 Internal Server Error" in body


def test_exception_before_start_gives_500_and_logs_traceback(server: ServerProcess) -> None:
    tok = token()
    response = httpx.get(f"{server.url}/raise-before-start?token={tok}", timeout=10)
    assert_500_page(response.status_code, response.headers.get("content-type"), response.content)
    assert response.headers["content-length"] == str(len(response.content))
    # Nothing of the exception reaches the client.
    assert tok.encode() not in response.content
    assert b"ValueError" not in response.content
    server.wait_for(
        rf"Traceback \(most recent call last\):(.|\n)*asgi_app\.py(.|\n)*"
        rf"ValueError: boom before start {tok}"
    )
    assert_still_serving(server)


def test_500_keeps_the_connection_usable(server: ServerProcess) -> None:
    with connect(server.port) as sock:
        sock.sendall(get(server, f"/raise-before-start?token={token()}"))
        first = read_response(sock)
        sock.sendall(get(server, "/"))
        second = read_response(sock)
    assert_500_page(first.status, first.header("content-type"), first.body)
    assert first.complete
    assert second.status == 200
    assert second.body == b"Hello, world!"


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_exception_after_start_ends_the_connection(server: ServerProcess, framing: str) -> None:
    tok = token()
    response = request(
        server.port, get(server, f"/raise-after-start?framing={framing}&token={tok}")
    )
    assert response.status == 200
    assert not response.complete
    assert response.closed
    if framing == "length":
        assert response.header("content-length") == "1000"
        assert len(response.body) < 1000
    else:
        assert response.header("transfer-encoding") == "chunked"
        assert b"\r\n0\r\n\r\n" not in response.raw  # the last chunk is never sent
    server.wait_for(rf"Traceback(.|\n)*ValueError: boom after start {tok}")
    assert_still_serving(server)


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_exception_after_start_is_an_error_for_httpx(server: ServerProcess, framing: str) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/raise-after-start?framing={framing}", timeout=10)
    assert_still_serving(server)


@pytest.mark.parametrize("target", ["/raise-after-start", "/return-mid-response"])
def test_failure_mid_body_of_close_delimited_response_is_not_a_clean_close(
    server: ServerProcess, target: str
) -> None:
    response = request(server.port, get(server, target, version="1.0"))
    assert response.status == 200
    assert response.header("content-length") is None
    assert not response.complete  # i.e. the connection was reset, not closed cleanly


def test_return_without_response_gives_500(server: ServerProcess) -> None:
    response = request(server.port, get(server, "/return-without-response"))
    assert_500_page(response.status, response.header("content-type"), response.body)
    assert response.complete
    server.wait_for(r"returned without starting a response: GET /return-without-response")
    assert_still_serving(server)


@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_return_mid_response_aborts(server: ServerProcess, framing: str) -> None:
    response = request(server.port, get(server, f"/return-mid-response?framing={framing}"))
    assert response.status == 200
    assert not response.complete
    assert response.closed
    assert b"\r\n0\r\n\r\n" not in response.raw
    server.wait_for(r"returned before completing its response: GET /return-mid-response")
    assert_still_serving(server)


def test_many_failures_in_a_row(server: ServerProcess) -> None:
    targets = [
        "/raise-before-start",
        "/raise-after-start",
        "/return-without-response",
        "/return-mid-response?framing=length",
    ] * 5
    for target in targets:
        request(server.port, get(server, target))
    assert_still_serving(server)
    # One log line per failure, and never an error from the server's own machinery.
    assert not re.search(
        r"Error parsing request|Exception in callback|Task exception", server.output
    )
