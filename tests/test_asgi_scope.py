# The ASGI `http` scope (ASGI HTTP spec 2.5) as an app sees it, end to end: every key, its type,
# Daphne's request rules (`_` header names dropped, non-ASCII targets refused), --root-path and
# the Daphne-Root-Path header (trusted peers only once --forwarded-allow-ips is given), and the
# lifespan `state` copied into each request.
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from apps.asgi_support import connect, read_response, request, serving
from conftest import ServerProcess

APP = "asgi_app:app"
UNTRUSTED_SOURCE = "127.0.0.2"  # a loopback address that is not in the default trust list


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with serving(APP, "--root-path", "/base") as proc:
        yield proc


@pytest.fixture(scope="module")
def explicit_trust_server() -> Iterator[ServerProcess]:
    with serving(APP, "--root-path", "/base", "--forwarded-allow-ips", "127.0.0.1") as proc:
        yield proc


def get_scope(
    server: ServerProcess, target: str = "/scope", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = httpx.get(server.url + target, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    scope: dict[str, Any] = response.json()
    return scope


def raw_scope(server: ServerProcess, data: bytes, source: str | None = None) -> dict[str, Any]:
    response = request(server.port, data, source=source)
    assert response.status == 200, response.raw
    assert response.complete
    scope: dict[str, Any] = json.loads(response.body)
    return scope


def test_every_spec_key_is_present_with_its_type(server: ServerProcess) -> None:
    scope = get_scope(server, "/scope?x=1")
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == "/scope"
    assert scope["query_string"] == "x=1"
    assert scope["root_path"] == "/base"
    assert scope["types"] == {
        "type": "str",
        "asgi": "dict",
        "http_version": "str",
        "method": "str",
        "scheme": "str",
        "path": "str",
        "raw_path": "bytes",
        "query_string": "bytes",
        "root_path": "str",
        "headers": "list",
        "client": "tuple",
        "server": "tuple",
        "state": "dict",
        "extensions": "dict",
    }
    assert scope["asgi_types"] == {"version": "str", "spec_version": "str"}
    assert scope["header_types"] == ["bytes,bytes"]


def test_client_and_server_are_host_port_tuples(server: ServerProcess) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: t\r\n\r\n")
        response = read_response(sock)
        local = sock.getsockname()
    assert response.status == 200
    scope = json.loads(response.body)
    # Tuples in the scope (the app asserts it and reports the types); lists once in JSON.
    assert scope["types"]["client"] == scope["types"]["server"] == "tuple"
    assert scope["address_types"] == {"client": ["str", "int"], "server": ["str", "int"]}
    assert scope["client"] == [local[0], local[1]]
    assert scope["server"] == ["127.0.0.1", server.port]


def test_http_10_request(server: ServerProcess) -> None:
    scope = raw_scope(server, b"GET /scope?v=10 HTTP/1.0\r\n\r\n")
    assert scope["http_version"] == "1.0"
    assert scope["query_string"] == "v=10"


@pytest.mark.parametrize(
    ("version", "field", "kept_alive"),
    [
        (b"1.0", b"", False),
        (b"1.0", b"Connection: keep-alive\r\n", True),
        (b"1.0", b"Proxy-Connection: keep-alive\r\n", True),
        (b"1.1", b"", True),
        (b"1.1", b"Connection: close\r\n", False),
        (b"1.1", b"Proxy-Connection: close\r\n", False),
    ],
)
def test_http_version_whatever_the_connection_fields(
    server: ServerProcess, version: bytes, field: bytes, kept_alive: bool
) -> None:
    """The scope's http_version is the request line's, whether the Connection (or the
    Proxy-Connection) field keeps the connection alive or not; on a kept-alive connection,
    for every request."""
    head = b"GET /scope HTTP/" + version + b"\r\nHost: t\r\n" + field + b"\r\n"
    with connect(server.port) as sock:
        for _ in range(2 if kept_alive else 1):
            sock.sendall(head)
            response = read_response(sock)
            assert response.status == 200, response.raw
            assert json.loads(response.body)["http_version"] == version.decode()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_method(server: ServerProcess, method: str) -> None:
    response = httpx.request(method, server.url + "/scope", content=b"body", timeout=10)
    assert response.status_code == 200
    assert response.json()["method"] == method


def test_path_is_decoded_and_raw_path_is_as_sent(server: ServerProcess) -> None:
    scope = raw_scope(
        server,
        b"GET /scope/caf%C3%A9/a%2Fb%20c/%7Euser?x=%20y&z=%C3%A9 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    assert scope["path"] == "/scope/caf\u00e9/a/b c/~user"
    assert scope["raw_path"] == "/scope/caf%C3%A9/a%2Fb%20c/%7Euser"
    # The query string stays exactly as sent: bytes, still encoded, without the "?".
    assert scope["query_string"] == "x=%20y&z=%C3%A9"


@pytest.mark.parametrize(
    ("target", "query"),
    [
        (b"/scope", ""),
        (b"/scope?", ""),
        (b"/scope?a=1&a=2&b", "a=1&a=2&b"),
        (b"/scope?q=a?b", "q=a?b"),
    ],
)
def test_query_string(server: ServerProcess, target: bytes, query: str) -> None:
    scope = raw_scope(server, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert scope["query_string"] == query
    assert scope["path"] == "/scope"


def test_absolute_form_target(server: ServerProcess) -> None:
    scope = raw_scope(
        server, b"GET http://example.com/scope/abs?k=v HTTP/1.1\r\nHost: example.com\r\n\r\n"
    )
    assert scope["path"] == "/scope/abs"
    assert scope["raw_path"] == "/scope/abs"
    assert scope["query_string"] == "k=v"


@pytest.mark.parametrize("target", [b"/scope/caf\xc3\xa9", b"/scope?q=\xc3\xa9"])
def test_non_ascii_target_is_400(server: ServerProcess, target: bytes) -> None:
    response = request(server.port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    assert response.status == 400


def test_headers_lower_cased_in_order_with_underscore_names_dropped(server: ServerProcess) -> None:
    scope = raw_scope(
        server,
        b"GET /scope HTTP/1.1\r\n"
        b"Host: t\r\n"
        b"X-First: 1\r\n"
        b"X_Spoofed: evil\r\n"
        b"x-second: Two Words\r\n"
        b"X-FIRST: 3\r\n"
        b"X-Mixed-Case: MiXeD\r\n"
        b"\r\n",
    )
    assert scope["headers"] == [
        ["host", "t"],
        ["x-first", "1"],
        ["x-second", "Two Words"],
        ["x-first", "3"],
        ["x-mixed-case", "MiXeD"],
    ]


def test_header_names_the_same_on_every_request(server: ServerProcess) -> None:
    """Field names the server has seen before come from its name table: on a keep-alive
    connection every request still gets them lower-cased, "_" names still dropped, a Host in
    any spelling counted, and a proxy header (Daphne-Root-Path) still honoured."""
    head = (
        b"GET /scope HTTP/1.1\r\n"
        b"HOST: t\r\n"
        b"X-Table-Name: 1\r\n"
        b"X_Table_Spoofed: evil\r\n"
        b"Daphne-Root-Path: /mounted\r\n"
        b"\r\n"
    )
    with connect(server.port) as sock:
        for _ in range(3):
            sock.sendall(head)
            response = read_response(sock)
            assert response.status == 200, response.raw
            scope = json.loads(response.body)
            assert scope["headers"] == [["host", "t"], ["x-table-name", "1"]]
            assert scope["root_path"] == "/mounted"


def test_more_distinct_header_names_than_the_table_holds(server: ServerProcess) -> None:
    """Past the name table's size it starts over; every request still gets its own names."""
    with connect(server.port) as sock:
        for batch in range(7):
            names = [f"X-Batch{batch}-Field{index}" for index in range(90)]
            fields = "".join(f"{name}: {index}\r\n" for index, name in enumerate(names))
            sock.sendall(f"GET /scope HTTP/1.1\r\nHost: t\r\n{fields}\r\n".encode())
            response = read_response(sock)
            assert response.status == 200, response.raw
            expected = [["host", "t"]] + [[n.lower(), str(i)] for i, n in enumerate(names)]
            assert json.loads(response.body)["headers"] == expected


def test_header_value_bytes_are_kept(server: ServerProcess) -> None:
    scope = raw_scope(server, b"GET /scope HTTP/1.1\r\nHost: t\r\nX-Latin: caf\xe9\r\n\r\n")
    assert ["x-latin", "caf\xe9"] in scope["headers"]


def test_root_path_from_flag(server: ServerProcess) -> None:
    assert get_scope(server)["root_path"] == "/base"


def test_daphne_root_path_overrides_and_is_removed(server: ServerProcess) -> None:
    scope = get_scope(server, headers={"Daphne-Root-Path": "/my%20prefix/%C3%A9"})
    assert scope["root_path"] == "/my prefix/\u00e9"
    assert all(name != "daphne-root-path" for name, _ in scope["headers"])


def test_daphne_root_path_from_any_peer_by_default(server: ServerProcess) -> None:
    # Without --forwarded-allow-ips, Daphne's behaviour: every peer's header is honoured.
    scope = raw_scope(
        server,
        b"GET /scope HTTP/1.1\r\nHost: t\r\nDaphne-Root-Path: /from-anyone\r\n\r\n",
        source=UNTRUSTED_SOURCE,
    )
    assert scope["client"][0] == UNTRUSTED_SOURCE
    assert scope["root_path"] == "/from-anyone"


def test_daphne_root_path_from_trusted_peer_with_explicit_trust(
    explicit_trust_server: ServerProcess,
) -> None:
    scope = raw_scope(
        explicit_trust_server,
        b"GET /scope HTTP/1.1\r\nHost: t\r\nDaphne-Root-Path: /trusted\r\n\r\n",
    )
    assert scope["root_path"] == "/trusted"


def test_daphne_root_path_from_untrusted_peer_ignored_with_explicit_trust(
    explicit_trust_server: ServerProcess,
) -> None:
    scope = raw_scope(
        explicit_trust_server,
        b"GET /scope HTTP/1.1\r\nHost: t\r\nDaphne-Root-Path: /spoofed\r\n\r\n",
        source=UNTRUSTED_SOURCE,
    )
    assert scope["client"][0] == UNTRUSTED_SOURCE
    assert scope["root_path"] == "/base"


def test_state_is_a_copy_per_request(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        first = client.get("/state?token=first").json()
        second = client.get("/state?token=second").json()
    assert first == {"from_lifespan": "yes", "counter": 0}
    # The first request's changes to its state are not seen by the next request.
    assert second == {"from_lifespan": "yes", "counter": 0}


def test_scope_dicts_are_not_shared_between_requests(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/mutate-scope").status_code == 200
        scope = client.get("/scope").json()
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert "mutated" not in scope["extensions"]


def test_each_keep_alive_request_gets_its_own_scope(server: ServerProcess) -> None:
    with connect(server.port) as sock:
        sock.sendall(b"GET /scope/one?n=1 HTTP/1.1\r\nHost: t\r\n\r\n")
        first = read_response(sock)
        sock.sendall(b"POST /scope/two?n=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        second = read_response(sock)
        local = list(sock.getsockname())
    one, two = json.loads(first.body), json.loads(second.body)
    assert (one["method"], one["path"], one["query_string"]) == ("GET", "/scope/one", "n=1")
    assert (two["method"], two["path"], two["query_string"]) == ("POST", "/scope/two", "n=2")
    assert one["client"] == two["client"] == local


def test_daphne_root_path_untrusted_with_explicit_default_trust(
    run_server: Callable[..., ServerProcess],
) -> None:
    server = run_server(APP, "--forwarded-allow-ips", "127.0.0.1,::1,unix")
    scope = raw_scope(
        server,
        b"GET /scope HTTP/1.1\r\nHost: t\r\nDaphne-Root-Path: /spoofed\r\n\r\n",
        source=UNTRUSTED_SOURCE,
    )
    assert scope["root_path"] == ""
