# The WebSocket opening handshake (RFC 6455 4.2) and the `websocket` scope (ASGI WebSocket spec
# 2.5), end to end: a valid upgrade gets 101 with the right Sec-WebSocket-Accept, bad handshakes
# get 400 without the app being called, `Upgrade: websocket` without `Connection: upgrade` is a
# plain HTTP request, the app's subprotocol and extra headers reach the 101, and the scope has
# every key (scheme "wss" behind a trusted proxy that says https, lifespan state, the
# websocket.http.response extension, no "method").
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import wsraw
from conftest import ServerProcess
from rawhttp import RawClient, build, events, serve

APP = "ws_app:app"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serve(APP) as proc:
        yield proc


@pytest.fixture(scope="module")
def proxied() -> Iterator[ServerProcess]:
    with serve(APP, "--proxy-headers", "--root-path", "/base") as proc:
        yield proc


def new_tag() -> str:
    return uuid.uuid4().hex


def app_was_not_called(server: ServerProcess, tag: str) -> None:
    """The app recorded nothing for `tag` before a later plain request with the same tag."""
    with RawClient(server.port) as client:
        assert client.request(build("GET", f"/after?tag={tag}")).status == 200
    assert events(server, tag, "scope:http") == ["scope:http"]


def scope_of(server: ServerProcess, target: str, **kwargs: Any) -> dict[str, Any]:
    with wsraw.connect(server.port, target, **kwargs) as ws:
        scope: dict[str, Any] = json.loads(ws.read_text())
        ws.close_handshake()
    return scope


# -- the opening handshake -------------------------------------------------------------------------


def test_valid_upgrade_gets_101_with_accept_key(server: ServerProcess) -> None:
    tag = new_tag()
    with wsraw.WSClient(server.port) as ws:
        response = ws.handshake(f"/echo?tag={tag}", key="dGhlIHNhbXBsZSBub25jZQ==")
        assert response.status == 101, response.raw
        assert response.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert (response.header("upgrade") or "").lower() == "websocket"
        assert "upgrade" in (response.header("connection") or "").lower()
        assert response.header("content-length") is None
        assert response.header("transfer-encoding") is None
        ws.send_text("over the upgraded connection")
        assert ws.read_text() == "over the upgraded connection"
        assert ws.close_handshake() == (1000, "")
    assert events(server, tag, "disconnect")[:3] == [
        "scope:websocket",
        "first:websocket.connect",
        "accepted",
    ]


@pytest.mark.parametrize(
    ("upgrade", "connection"),
    [("WebSocket", "Upgrade"), ("websocket", "keep-alive, Upgrade"), ("WEBSOCKET", "upgrade")],
)
def test_header_tokens_are_case_insensitive_lists(
    server: ServerProcess, upgrade: str, connection: str
) -> None:
    """Browsers send `Connection: keep-alive, Upgrade` (Firefox); token case does not matter."""
    with wsraw.connect(server.port, "/echo", upgrade=upgrade, connection=connection) as ws:
        ws.send_text("ok")
        assert ws.read_text() == "ok"


BAD_HANDSHAKES: dict[str, dict[str, Any]] = {
    "no-key": {"key": None},
    "key-not-base64": {"key": "not base64!!"},
    "key-15-bytes": {"key": "AAAAAAAAAAAAAAAAAAAA"},
    "key-17-bytes": {"key": "AAAAAAAAAAAAAAAAAAAAAAA="},
    "key-empty": {"key": ""},
    "post": {"method": "POST"},
    "put": {"method": "PUT"},
    "http-1.0": {"http_version": "HTTP/1.0"},
}


@pytest.mark.parametrize("kind", list(BAD_HANDSHAKES))
def test_bad_handshake_gets_400_and_the_app_is_not_called(server: ServerProcess, kind: str) -> None:
    tag = new_tag()
    options = dict(BAD_HANDSHAKES[kind])
    key = options.pop("key", wsraw.new_key())
    with RawClient(server.port) as client:
        if key == "":
            request = wsraw.handshake_request(f"/echo?tag={tag}", **options)
            request = request.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Key: \r\n\r\n")
        else:
            request = wsraw.handshake_request(f"/echo?tag={tag}", key=key, **options)
        response = client.request(request)
        assert response.status == 400, response.raw
        assert response.header("sec-websocket-accept") is None
    app_was_not_called(server, tag)


@pytest.mark.parametrize("version", [None, "8", "12", "14", "thirteen"])
def test_bad_version_gets_400_naming_version_13(server: ServerProcess, version: str | None) -> None:
    """RFC 6455 4.4: a version the server does not speak gets 400 and the versions it does."""
    tag = new_tag()
    with RawClient(server.port) as client:
        request = wsraw.handshake_request(f"/echo?tag={tag}", key=wsraw.new_key(), version=version)
        response = client.request(request)
    assert response.status == 400, response.raw
    assert response.header("sec-websocket-version") == "13"
    app_was_not_called(server, tag)


def test_upgrade_without_connection_upgrade_is_plain_http(server: ServerProcess) -> None:
    tag = new_tag()
    with RawClient(server.port) as client:
        request = wsraw.handshake_request(f"/echo?tag={tag}", key=wsraw.new_key(), connection=None)
        response = client.request(request)
    assert response.status == 200, response.raw
    assert response.body == b"http GET /echo"
    assert events(server, tag, "scope:")[0] == "scope:http"


def test_other_upgrade_tokens_are_plain_http(server: ServerProcess) -> None:
    tag = new_tag()
    with RawClient(server.port) as client:
        request = wsraw.handshake_request(f"/echo?tag={tag}", key=wsraw.new_key(), upgrade="h2c")
        response = client.request(request)
    assert response.status == 200, response.raw
    assert response.body == b"http GET /echo"


def test_server_still_serves_http_on_other_connections(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo") as ws:
        with RawClient(server.port) as client:
            assert client.request(build("GET", "/plain")).body == b"http GET /plain"
        ws.send_text("still here")
        assert ws.read_text() == "still here"


# -- accept: subprotocol and headers ---------------------------------------------------------------


def test_subprotocol_chosen_by_the_app_is_in_the_101(server: ServerProcess) -> None:
    with wsraw.connect(
        server.port, "/echo?subprotocol=first", subprotocols=["chat.v2", "chat.v1"]
    ) as ws:
        assert ws.response is not None
        assert ws.response.header("sec-websocket-protocol") == "chat.v2"


def test_subprotocol_with_the_websockets_client(server: ServerProcess) -> None:
    url = f"ws://127.0.0.1:{server.port}/echo?subprotocol=first"
    with wsraw.client(url, subprotocols=["graphql-transport-ws", "graphql-ws"]) as ws:
        assert ws.subprotocol == "graphql-transport-ws"
        ws.send("query")
        assert ws.recv(10) == "query"


def test_no_subprotocol_header_when_the_app_chooses_none(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo", subprotocols=["chat.v1"]) as ws:
        assert ws.response is not None
        assert ws.response.header("sec-websocket-protocol") is None


def test_accept_headers_are_added_to_the_101(server: ServerProcess) -> None:
    target = "/echo?h=x-custom:yes;set-cookie:session=abc"
    with wsraw.connect(server.port, target) as ws:
        assert ws.response is not None
        assert ws.response.header("x-custom") == "yes"
        assert ws.response.get_all("set-cookie") == ["session=abc"]
        ws.send_text("after custom headers")
        assert ws.read_text() == "after custom headers"


def test_apps_server_header_replaces_ours_in_the_101(server: ServerProcess) -> None:
    with wsraw.connect(server.port, "/echo?h=server:custom") as ws:
        assert ws.response is not None
        assert ws.response.get_all("server") == ["custom"]


def test_subprotocol_the_client_did_not_offer_is_an_app_error(server: ServerProcess) -> None:
    """RFC 6455 4.1: the client would fail the connection; the app gets a RuntimeError at
    accept (an exception before accept: 500), and the error names the offered ones."""
    with wsraw.WSClient(server.port) as ws:
        response = ws.handshake("/echo?subprotocol=chat.v9", subprotocols=["chat.v1"])
        assert response.status == 500
    server.wait_for(r"subprotocol 'chat.v9' was not offered by the client", "stderr")


@pytest.mark.parametrize("status", ["103", "101"])
def test_denial_response_needs_a_final_status(server: ServerProcess, status: str) -> None:
    with wsraw.WSClient(server.port) as ws:
        response = ws.handshake(f"/deny?status={status}")
        assert response.status == 500
    server.wait_for(r"'websocket.http.response.start' needs an int status in 200-599", "stderr")


# -- the scope -------------------------------------------------------------------------------------


def test_scope_has_every_spec_key(server: ServerProcess) -> None:
    ws = wsraw.WSClient(server.port)
    with ws:
        ws.upgrade(
            "/scope/some%20where?x=1&y=%20",
            subprotocols=["one", "two"],
            headers=[("X-Custom", "Value One")],
        )
        local_port = ws.sock.getsockname()[1]
        scope: dict[str, Any] = json.loads(ws.read_text())
        ws.close_handshake()
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope/some where"
    assert scope["raw_path"] == "/scope/some%20where"
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["client"] == ["127.0.0.1", local_port]
    assert scope["server"] == ["127.0.0.1", server.port]
    assert scope["subprotocols"] == ["one", "two"]
    # The denial-response extension, and none of an HTTP response's (no early hints).
    assert scope["extensions"] == {"websocket.http.response": {}}
    assert "method" not in scope
    assert scope["state"] == {"from_lifespan": "yes"}
    headers = [tuple(pair) for pair in scope["headers"]]
    assert ("x-custom", "Value One") in headers
    assert ("sec-websocket-key", ws.key) in headers
    assert ("sec-websocket-version", "13") in headers
    assert ("upgrade", "websocket") in headers
    assert all(name == name.lower() for name, _ in headers)


def test_subprotocols_from_several_header_lines_in_order(server: ServerProcess) -> None:
    headers = [("Sec-WebSocket-Protocol", "a, b"), ("Sec-WebSocket-Protocol", "c")]
    scope = scope_of(server, "/scope", headers=headers)
    assert scope["subprotocols"] == ["a", "b", "c"]


def test_only_token_subprotocols_are_offered(server: ServerProcess) -> None:
    """RFC 6455 4.1: each subprotocol is a token. "a b" is not one, so the app is never
    offered a value it could not accept (found by the fuzzer)."""
    headers = [("Sec-WebSocket-Protocol", "a b, chat, x/y")]
    assert scope_of(server, "/scope", headers=headers)["subprotocols"] == ["chat"]


def test_no_subprotocols_is_an_empty_list(server: ServerProcess) -> None:
    assert scope_of(server, "/scope")["subprotocols"] == []


def test_each_connection_gets_its_own_state_copy(server: ServerProcess) -> None:
    first = scope_of(server, "/scope")
    second = scope_of(server, "/scope")
    assert first["state"] == second["state"] == {"from_lifespan": "yes"}


@pytest.mark.parametrize(
    ("proto", "scheme"), [(None, "ws"), ("https", "wss"), ("wss", "wss"), ("http", "ws")]
)
def test_scheme_behind_a_trusted_proxy(
    proxied: ServerProcess, proto: str | None, scheme: str
) -> None:
    headers = [("X-Forwarded-For", "203.0.113.7")]
    if proto is not None:
        headers.append(("X-Forwarded-Proto", proto))
    scope = scope_of(proxied, "/scope", headers=headers)
    assert scope["scheme"] == scheme
    assert scope["client"][0] == "203.0.113.7"
    assert scope["root_path"] == "/base"


def test_forwarded_proto_ignored_without_proxy_headers(server: ServerProcess) -> None:
    headers = [("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "203.0.113.7")]
    scope = scope_of(server, "/scope", headers=headers)
    assert scope["scheme"] == "ws"
    assert scope["client"][0] == "127.0.0.1"
