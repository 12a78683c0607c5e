# WebSocket messages between app and client (ASGI WebSocket spec 2.5), end to end on both event
# loops: websocket.connect first, text and bytes both ways (empty ones too), receive messages with
# exactly one of text/bytes, fragmented messages reassembled, client pings answered, close codes
# and reasons both ways (1005 for a close frame without code, 1006 for a dropped connection), the
# websocket.http.response denial extension, a close before accept as 403, and what happens when
# the app misbehaves: raising before accept (500) or after (1011 and a traceback), sending after
# close (RuntimeError), sending before accept (implicit accept), returning without closing.
from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wsraw
from conftest import ServerProcess
from rawhttp import RawClient, events, serve
from wsraw import BINARY, PING, PONG, TEXT

APP = "ws_app:app"


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve(APP, "--loop", request.param) as proc:
        yield proc


def new_tag() -> str:
    return uuid.uuid4().hex


def url(server: ServerProcess, target: str) -> str:
    return f"ws://127.0.0.1:{server.port}{target}"


def last_event(server: ServerProcess, tag: str, want: str, timeout: float = 10.0) -> str:
    found = events(server, tag, want, timeout)
    matching = [event for event in found if event.startswith(tuple(want.split("|")))]
    assert matching, found
    return matching[-1]


# -- echo ------------------------------------------------------------------------------------------


def test_text_and_bytes_round_trip(server: ServerProcess) -> None:
    with wsraw.client(url(server, "/echo")) as ws:
        ws.send("héllo wörld ✓")
        assert ws.recv(10) == "héllo wörld ✓"
        ws.send(b"\x00\x01\xfe\xff")
        assert ws.recv(10) == b"\x00\x01\xfe\xff"
        for index in range(50):
            ws.send(f"message {index}")
        assert [ws.recv(10) for _ in range(50)] == [f"message {i}" for i in range(50)]


def test_raw_client_round_trip(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo") as ws:
        ws.send_text("raw text")
        assert ws.read_text() == "raw text"
        ws.send_binary(bytes(range(256)) * 300)
        assert ws.read_binary() == bytes(range(256)) * 300
        assert ws.close_handshake() == (1000, "")


def test_empty_messages_both_ways(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo?inspect=1") as ws:
        ws.send_text("")
        text = json.loads(ws.read_text())
        assert text["text"] == ""
        assert text["bytes"] in (None, "<absent>")
        ws.send_binary(b"")
        binary = json.loads(ws.read_text())
        assert binary["bytes"] == ""
        assert binary["text"] in (None, "<absent>")
    with wsraw.connect(server.port, "/echo") as ws:
        ws.send_text("")
        message = ws.read_message()
        assert (message.opcode, message.payload) == (TEXT, b"")
        ws.send_binary(b"")
        message = ws.read_message()
        assert (message.opcode, message.payload) == (BINARY, b"")


def test_receive_has_exactly_one_of_text_and_bytes(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo?inspect=1") as ws:
        ws.send_text("some text")
        info = json.loads(ws.read_text())
        assert info["text"] == "some text"
        assert info["bytes"] in (None, "<absent>")
        assert set(info["keys"]) <= {"type", "text", "bytes"}
        ws.send_binary(b"\x01\x02")
        info = json.loads(ws.read_text())
        assert info["bytes"] == "0102"
        assert info["text"] in (None, "<absent>")


def test_connect_is_the_first_message(server: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        ws.close_handshake()
    found = events(server, tag, "disconnect")
    assert found[:3] == ["scope:websocket", "first:websocket.connect", "accepted"], found


def test_frames_sent_with_the_handshake_are_not_lost(server: ServerProcess) -> None:
    """The first frames arrive in the same TCP segment as the request head."""
    with wsraw.WSClient(server.port) as ws:
        ws.key = wsraw.new_key()
        request = wsraw.handshake_request("/echo", key=ws.key)
        ws.send(request + wsraw.frame(TEXT, b"eager") + wsraw.frame(BINARY, b"eager too"))
        response = ws.read_response()
        assert response.status == 101, response.raw
        assert response.header("sec-websocket-accept") == wsraw.accept_key(ws.key)
        assert ws.read_text() == "eager"
        assert ws.read_binary() == b"eager too"


def test_frames_split_into_single_bytes(server: ServerProcess) -> None:
    """Every byte in its own TCP segment: headers, extended lengths and masks split anywhere."""
    with wsraw.connect(server.port, "/echo") as ws:
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = wsraw.frame(TEXT, b"a" * 300) + wsraw.frame(BINARY, b"b" * 5, fin=False)
        data += wsraw.frame(0, b"c" * 70000, fin=True)
        for index in range(0, 400):
            ws.send(data[index : index + 1])
        ws.send(data[400:])
        assert ws.read_text() == "a" * 300
        assert ws.read_binary() == b"b" * 5 + b"c" * 70000


def test_fragmented_message_is_reassembled(server: ServerProcess) -> None:
    payload = "".join(f"{index:04d}," for index in range(2000))
    with wsraw.connect(server.port, "/echo") as ws:
        ws.send_text(payload, fragments=100)
        assert ws.read_text() == payload
        ws.send_binary(payload.encode(), fragments=7)
        assert ws.read_binary() == payload.encode()


def test_fragments_with_empty_frames_and_split_utf8(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo") as ws:
        euro = "€".encode()  # three bytes, split across frames
        ws.send_frame(TEXT, b"price: " + euro[:1], fin=False)
        ws.send_frame(0, b"", fin=False)
        ws.send_frame(0, euro[1:2], fin=False)
        ws.send_frame(0, euro[2:] + b"5", fin=True)
        assert ws.read_text() == "price: €5"


def test_ping_between_fragments_is_answered_and_the_message_survives(
    server: ServerProcess,
) -> None:
    with wsraw.connect(server.port, "/echo") as ws:
        ws.send_frame(TEXT, b"first half, ", fin=False)
        ws.send_frame(PING, b"mid-message")
        pong = ws.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"mid-message")
        ws.send_frame(0, b"second half", fin=True)
        assert ws.read_text() == "first half, second half"


def test_ping_gets_pong_with_the_same_payload(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo") as ws:
        for payload in (b"", b"1234", b"x" * 125):
            ws.send_frame(PING, payload)
            pong = ws.read_frame()
            assert (pong.opcode, pong.payload, pong.fin) == (PONG, payload, True)


def test_unsolicited_pong_is_ignored(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo") as ws:
        ws.send_frame(PONG, b"heartbeat")
        ws.send_text("after pong")
        assert ws.read_text() == "after pong"


def test_websockets_client_ping(server: ServerProcess) -> None:
    with wsraw.client(url(server, "/echo")) as ws:
        assert ws.ping(b"library ping").wait(10)


def test_binary_message_of_a_megabyte_minus_one(server: ServerProcess) -> None:
    """Just under the default 1 MiB message limit goes through."""
    data = os.urandom((1 << 20) - 1)
    with wsraw.client(url(server, "/echo"), compression=None, max_size=None) as ws:
        ws.send(data)
        echoed = ws.recv(20)
    assert isinstance(echoed, bytes)
    assert hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()


# -- closing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, ""), (1001, "going away"), (4000, "see you"), (3999, "é")]
)
def test_client_close_code_and_reason_reach_the_app(
    server: ServerProcess, code: int, reason: str
) -> None:
    tag = new_tag()
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        ws.send_text("hello")
        assert ws.read_text() == "hello"
        reply_code, _ = ws.close_handshake(code, reason)
        assert reply_code is not None
    assert last_event(server, tag, "disconnect") == f"disconnect:{code}:{reason}"


def test_close_frame_without_code_is_1005(server: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.connect(server.port, f"/echo?tag={tag}") as ws:
        ws.close_handshake(None)
    assert last_event(server, tag, "disconnect").startswith("disconnect:1005:")


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_dropped_connection_is_1006(server: ServerProcess, how: str) -> None:
    tag = new_tag()
    ws = wsraw.connect(server.port, f"/echo?tag={tag}")
    ws.send_text("then gone")
    assert ws.read_text() == "then gone"
    ws.close(reset=how == "rst")
    assert last_event(server, tag, "disconnect").startswith("disconnect:1006:")


def test_websockets_client_close(server: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.client(url(server, f"/echo?tag={tag}")) as ws:
        ws.send("x")
        assert ws.recv(10) == "x"
        ws.close(4100, "library close")
    assert last_event(server, tag, "disconnect") == "disconnect:4100:library close"


@pytest.mark.parametrize(
    ("query", "code", "reason"),
    [
        ("", 1000, ""),
        ("&code=4001&reason=app%20says%20bye", 4001, "app says bye"),
        ("&code=1001", 1001, ""),
    ],
)
def test_app_close_reaches_the_client(
    server: ServerProcess, query: str, code: int, reason: str
) -> None:
    tag = new_tag()
    with wsraw.connect(server.port, f"/close?tag={tag}{query}") as ws:
        assert ws.expect_close(skip_data=False) == (code, reason)
    assert "closed" in events(server, tag, "closed")
    assert last_event(server, tag, "disconnect").startswith("disconnect:")


def test_app_close_after_a_message(server: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.connect(server.port, f"/close?tag={tag}&first=1&code=4002&reason=got%20it") as ws:
        ws.send_binary(b"one message")
        assert ws.expect_close(skip_data=False) == (4002, "got it")
    found = events(server, tag, "disconnect")
    assert "bytes:11" in found, found


def test_app_close_with_the_websockets_client(server: ServerProcess) -> None:
    with (
        wsraw.client(url(server, "/close?code=4003&reason=done")) as ws,
        pytest.raises(ConnectionClosed) as closed,
    ):
        ws.recv(10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4003, "done")


# -- refusing the connection -----------------------------------------------------------------------


def test_denial_response_with_status_headers_and_body(server: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.WSClient(server.port) as ws:
        response = ws.handshake(f"/deny?tag={tag}&status=401&body=no%20entry&h=x-why:token")
        assert response.status == 401, response.raw
        assert response.body == b"no entry"
        assert response.header("x-why") == "token"
        assert response.header("sec-websocket-accept") is None
        ws.wait_closed()
    found = events(server, tag, "disconnect")
    assert "extension:True" in found
    assert found[-1].startswith("disconnect:"), found


def test_denial_response_streamed_in_parts(server: ServerProcess) -> None:
    body = "abcdefghijklmnopqrstuvwxyz" * 10
    with wsraw.WSClient(server.port) as ws:
        response = ws.handshake(f"/deny?status=429&parts=5&body={body}")
        assert response.status == 429, response.raw
        assert response.body == body.encode()
        ws.wait_closed()


@pytest.mark.parametrize("status", [400, 404, 500, 503])
def test_denial_response_any_status(server: ServerProcess, status: int) -> None:
    with wsraw.WSClient(server.port) as ws:
        response = ws.handshake(f"/deny?status={status}&body=x")
        assert (response.status, response.body) == (status, b"x")


def test_denial_response_seen_by_the_websockets_client(server: ServerProcess) -> None:
    with (
        pytest.raises(InvalidStatus) as refused,
        wsraw.client(url(server, "/deny?status=401&body=login%20first")),
    ):
        pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.body == b"login first"


def test_close_before_accept_is_403(server: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.WSClient(server.port) as ws:
        response = ws.handshake(f"/reject?tag={tag}")
        assert response.status == 403, response.raw
        ws.wait_closed()
    found = events(server, tag, "disconnect")
    assert "rejected" in found
    assert found[-1].startswith("disconnect:"), found


# -- misbehaving apps ------------------------------------------------------------------------------


def test_exception_before_accept_is_500(server: ServerProcess) -> None:
    with wsraw.WSClient(server.port) as ws:
        response = ws.handshake("/raise-before-accept")
        assert response.status == 500, response.raw
        ws.wait_closed()
    server.wait_for("ws_app failed before accept", "stderr")


def test_exception_after_accept_is_1011(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/raise-after-accept?first=1") as ws:
        ws.send_text("trigger")
        assert ws.expect_close(skip_data=False)[0] == 1011
    server.wait_for(r"Traceback[\s\S]*RuntimeError: ws_app failed after accept", "stderr")


def test_send_after_close_raises_in_the_app(server: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.connect(server.port, f"/send-after-close?tag={tag}") as ws:
        assert ws.expect_close(skip_data=False) == (1000, "")
    assert last_event(server, tag, "raised|sent") == "raised:RuntimeError:True"


def test_send_after_the_client_disconnected_raises(server: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.connect(server.port, f"/after-disconnect?tag={tag}") as ws:
        ws.close_handshake(1000)
    assert last_event(server, tag, "raised|sent").startswith("raised:"), events(server, tag)


def test_send_before_accept_accepts_implicitly(server: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.connect(server.port, f"/send-before-accept?tag={tag}") as ws:
        assert ws.read_text() == "early"
        ws.send_text("and then")
        assert ws.read_text() == "and then"
        ws.close_handshake()


def test_return_without_close_closes_with_1000(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/return-without-close") as ws:
        assert ws.read_text() == "bye"
        assert ws.expect_close(skip_data=False) == (1000, "")


def test_return_without_accept_refuses_and_does_not_hang(server: ServerProcess) -> None:
    with wsraw.WSClient(server.port) as ws:
        response = ws.handshake("/return-without-accept")
        assert response.status in (403, 500), response.raw
        ws.wait_closed()


def test_server_keeps_serving_after_misbehaving_apps(server: ServerProcess) -> None:
    for target in ("/raise-before-accept", "/raise-after-accept", "/return-without-accept"):
        with wsraw.WSClient(server.port) as ws:
            ws.handshake(target)
    with wsraw.client(url(server, "/echo")) as ws:
        ws.send("still fine")
        assert ws.recv(10) == "still fine"
    with RawClient(server.port) as client:
        assert client.request(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n").status == 200


def test_many_connections_at_once(server: ServerProcess) -> None:
    clients = [wsraw.connect(server.port, f"/echo?n={index}") for index in range(50)]
    try:
        for index, ws in enumerate(clients):
            ws.send_text(f"from {index}")
        for index, ws in enumerate(clients):
            assert ws.read_text() == f"from {index}"
    finally:
        for ws in clients:
            ws.close()
