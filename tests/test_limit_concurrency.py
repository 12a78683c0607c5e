# --limit-concurrency N: past N slots in use a new request gets 503 at once (never a queue), and
# once the slow requests are done new ones are served again. A slot is a connection (HTTP/1.1,
# WebSocket, HTTP/2) or an HTTP/2 stream beyond its connection's first (docs/cli.md).
#
# The slow requests are POSTs whose body the test holds back: the app answers once the body has
# ended, so a request stays in flight exactly as long as the test wants, with no sleeps. A
# connection is known to be counted once it has had a response.
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from conftest import ServerProcess
from h2client import H2Client
from rawhttp import RawClient, Response, build

LIMIT_APP = """
async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    size, more = 0, True
    while more:  # the whole body first: a held-back body keeps the request in flight
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"size %d" % size})
"""
WARNING = "Concurrency limit reached (--limit-concurrency {}): answering 503"


@pytest.fixture
def limited(
    run_server: Callable[..., ServerProcess], tmp_path: Path
) -> Callable[..., ServerProcess]:
    """Start the test app with the given --limit-concurrency (and other arguments)."""
    (tmp_path / "limit_app.py").write_text(LIMIT_APP)

    def start(limit: int, *args: str) -> ServerProcess:
        return run_server(
            "limit_app:app",
            "--app-dir", str(tmp_path), "--lifespan", "off",
            "--limit-concurrency", str(limit), *args,
        )  # fmt: skip

    return start


class Held:
    """An HTTP/1.1 connection, counted by the server, with a POST in flight (body held back)."""

    def __init__(self, port: int) -> None:
        self.client = RawClient(port)
        assert self.client.request(build()).status == 200  # served: the server counts it
        self.client.send(
            build("POST", "/", [("Transfer-Encoding", "chunked"), ("Connection", "close")])
            + b"3\r\nabc\r\n"
        )

    def finish(self) -> Response:
        """End the body: the app answers, then the server closes the connection."""
        self.client.send(b"0\r\n\r\n")
        response = self.client.read_response()
        self.client.wait_closed()
        self.client.close()
        return response


@pytest.fixture
def held() -> Iterator[Callable[[int, int], list[Held]]]:
    made: list[Held] = []

    def hold(port: int, count: int) -> list[Held]:
        new = [Held(port) for _ in range(count)]
        made.extend(new)
        return new

    yield hold
    for one in made:
        one.client.close()


def refused_at_once(port: int, data: bytes | None = None) -> Response:
    """A new connection's request, which must be answered (not queued) and then closed."""
    with RawClient(port) as client:
        client.send(data or build())
        response = client.read_response()
        client.wait_closed()
    return response


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_http1_request_past_the_limit_gets_503_at_once_then_is_served_again(
    limited: Callable[..., ServerProcess], held: Callable[[int, int], list[Held]], loop: str
) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    server = limited(2, "--loop", loop)
    slow = held(server.port, 2)
    response = refused_at_once(server.port)  # read with a deadline: a queued request fails
    assert response.status == 503
    assert response.header("connection") == "close"
    assert b"503 Service Unavailable" in response.body
    for one in slow:
        assert one.finish().body == b"size 3"
    assert httpx.get(server.url).status_code == 200
    server.wait_for(re.escape(WARNING.format(2)))


def test_the_slow_requests_are_unharmed_by_refusals(
    limited: Callable[..., ServerProcess], held: Callable[[int, int], list[Held]]
) -> None:
    server = limited(1)
    (slow,) = held(server.port, 1)
    for _ in range(3):
        assert refused_at_once(server.port).status == 503
    assert slow.finish().body == b"size 3"
    assert server.output.count(WARNING.format(1)) == 1  # a flood of refusals: one warning


def test_an_admitted_keep_alive_connection_keeps_being_served(
    limited: Callable[..., ServerProcess], held: Callable[[int, int], list[Held]]
) -> None:
    # A connection takes one slot however many requests it carries, one at a time.
    server = limited(2)
    with RawClient(server.port) as idle:
        assert idle.request(build()).status == 200
        (slow,) = held(server.port, 1)
        assert refused_at_once(server.port).status == 503
        assert idle.request(build("POST", body=b"hello")).body == b"size 5"
        slow.finish()


def test_refused_request_with_a_body_is_answered(
    limited: Callable[..., ServerProcess], held: Callable[[int, int], list[Held]]
) -> None:
    server = limited(1)
    held(server.port, 1)
    response = refused_at_once(server.port, build("POST", body=b"x" * 100_000))
    assert response.status == 503


def test_websocket_handshake_past_the_limit_gets_503(
    limited: Callable[..., ServerProcess], held: Callable[[int, int], list[Held]]
) -> None:
    server = limited(1)
    (slow,) = held(server.port, 1)
    handshake = build(
        "GET",
        "/ws",
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    assert refused_at_once(server.port, handshake).status == 503
    slow.finish()
    with ws_connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_an_open_websocket_takes_a_slot(limited: Callable[..., ServerProcess], loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    server = limited(1, "--loop", loop)
    with ws_connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"  # accepted: counted
        assert refused_at_once(server.port).status == 503
    # close() waited for the server to close the connection: its slot is free.
    assert httpx.get(server.url).status_code == 200


def test_http2_streams_beyond_the_first_take_a_slot_each(
    limited: Callable[..., ServerProcess],
) -> None:
    server = limited(2)
    with H2Client(server.port) as client:
        first = client.request("/", method="POST", end_stream=False)
        second = client.request("/", method="POST", end_stream=False)
        refused = client.get("/")
        assert refused.status == 503
        assert b"503 Service Unavailable" in refused.body
        for stream_id in (first, second):
            client.send_body(stream_id, b"abcd")
            assert client.response(stream_id).body == b"size 4"
        assert client.get("/").status == 200  # the connection carries on
        # Two requests in flight on one connection fill the two slots, as two HTTP/1.1
        # connections would.
        third = client.request("/", method="POST", end_stream=False)
        assert client.get("/").status == 200  # the connection's slot plus one
        assert client.get("/").status == 200
        client.send_body(third, b"")
        assert client.response(third).status == 200


def test_http2_connection_past_the_limit_gets_503_on_its_stream(
    limited: Callable[..., ServerProcess], held: Callable[[int, int], list[Held]]
) -> None:
    server = limited(2)
    slow = held(server.port, 2)
    with H2Client(server.port) as client:
        assert client.get("/").status == 503
        for one in slow:
            one.finish()
        # The other connections have gone: this one's first stream now uses its own slot.
        assert client.get("/").status == 200


def test_http2_websocket_past_the_limit_gets_503(
    limited: Callable[..., ServerProcess],
) -> None:
    server = limited(1)
    with H2Client(server.port) as client:
        held_stream = client.request("/", method="POST", end_stream=False)
        refused = client.response(
            client.request(
                "/ws",
                method="CONNECT",
                headers=[(":protocol", "websocket"), ("sec-websocket-version", "13")],
                end_stream=False,
            )
        )
        assert refused.status == 503
        client.send_body(held_stream, b"")
        assert client.response(held_stream).status == 200


def test_without_the_option_there_is_no_limit(
    run_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    (tmp_path / "limit_app.py").write_text(LIMIT_APP)
    server = run_server("limit_app:app", "--app-dir", str(tmp_path), "--lifespan", "off")
    clients = [Held(server.port) for _ in range(20)]
    try:
        assert httpx.get(server.url).status_code == 200
        for one in clients:
            assert one.finish().body == b"size 3"
    finally:
        for one in clients:
            one.client.close()
    assert "Concurrency limit" not in server.output


@pytest.mark.parametrize("value", ["0", "-1"])
def test_zero_or_negative_means_no_limit(
    run_server: Callable[..., ServerProcess], tmp_path: Path, value: str
) -> None:
    (tmp_path / "limit_app.py").write_text(LIMIT_APP)
    server = run_server(
        "limit_app:app", "--app-dir", str(tmp_path), "--lifespan", "off",
        "--limit-concurrency", value,
    )  # fmt: skip
    with RawClient(server.port) as first, RawClient(server.port) as second:
        assert first.request(build()).status == 200
        assert second.request(build()).status == 200
