# Proxy headers end to end: --proxy-headers, --proxy-headers-host/-port, --forwarded-allow-ips,
# X-Forwarded-For/-Port/-Proto and RFC 7239 Forwarded, as the app sees them in `client` and
# `scheme`. Requests from 127.0.0.2 stand for a peer that is not a trusted proxy.
from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from apps.asgi_support import request, serving
from conftest import ServerProcess

APP = "asgi_app:app"
UNTRUSTED_SOURCE = "127.0.0.2"


def _server(*args: str) -> Iterator[ServerProcess]:
    with serving(APP, *args) as proc:
        yield proc


@pytest.fixture(scope="module")
def plain() -> Iterator[ServerProcess]:
    yield from _server()


@pytest.fixture(scope="module")
def proxied() -> Iterator[ServerProcess]:
    yield from _server("--proxy-headers")


@pytest.fixture(scope="module")
def custom_names() -> Iterator[ServerProcess]:
    yield from _server(
        "--proxy-headers",
        "--proxy-headers-host",
        "X-Real-IP",
        "--proxy-headers-port",
        "X-Real-Port",
    )


@pytest.fixture(scope="module")
def other_proxy() -> Iterator[ServerProcess]:
    yield from _server("--proxy-headers", "--forwarded-allow-ips", "10.0.0.1")


@pytest.fixture(scope="module")
def trust_all() -> Iterator[ServerProcess]:
    yield from _server("--proxy-headers", "--forwarded-allow-ips", "*")


@pytest.fixture(scope="module")
def trust_network() -> Iterator[ServerProcess]:
    yield from _server("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1,198.51.100.0/24")


def scope_with(
    server: ServerProcess, headers: list[tuple[str, str]], source: str | None = None
) -> dict[str, Any]:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    response = request(
        server.port, f"GET /scope HTTP/1.1\r\nHost: t\r\n{head}\r\n".encode(), source=source
    )
    assert response.status == 200, response.raw
    scope: dict[str, Any] = json.loads(response.body)
    # Whatever the headers say, the app gets a (host, port) tuple.
    assert scope["types"]["client"] == "tuple"
    assert [type(part).__name__ for part in scope["client"]] == ["str", "int"]
    return scope


XFF = [
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Port", "4443"),
    ("X-Forwarded-Proto", "https"),
]


def test_ignored_without_proxy_headers(plain: ServerProcess) -> None:
    scope = scope_with(plain, [*XFF, ("Forwarded", "for=198.51.100.9;proto=https")])
    assert scope["client"][0] == "127.0.0.1"
    assert scope["client"][1] != 4443
    assert scope["scheme"] == "http"
    # Not acted on, but not hidden from the app either.
    assert ["x-forwarded-for", "203.0.113.7"] in scope["headers"]


def test_x_forwarded_from_trusted_loopback(proxied: ServerProcess) -> None:
    scope = scope_with(proxied, XFF)
    assert scope["client"] == ["203.0.113.7", 4443]
    assert scope["scheme"] == "https"


def test_x_forwarded_for_without_port_gives_port_0(proxied: ServerProcess) -> None:
    scope = scope_with(proxied, [("X-Forwarded-For", "203.0.113.7")])
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "http"


def test_x_forwarded_for_ipv6(proxied: ServerProcess) -> None:
    scope = scope_with(proxied, [("X-Forwarded-For", "2001:db8::7")])
    assert scope["client"] == ["2001:db8::7", 0]


def test_x_forwarded_proto_alone_sets_scheme(proxied: ServerProcess) -> None:
    scope = scope_with(proxied, [("X-Forwarded-Proto", "HTTPS")])
    assert scope["scheme"] == "https"
    assert scope["client"][0] == "127.0.0.1"


def test_unknown_scheme_is_ignored(proxied: ServerProcess) -> None:
    scope = scope_with(
        proxied, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "gopher")]
    )
    assert scope["scheme"] == "http"
    assert scope["client"] == ["203.0.113.7", 0]


def test_x_forwarded_ignored_from_untrusted_peer(proxied: ServerProcess) -> None:
    scope = scope_with(proxied, [*XFF, ("Forwarded", "for=198.51.100.9")], source=UNTRUSTED_SOURCE)
    assert scope["client"][0] == UNTRUSTED_SOURCE
    assert scope["scheme"] == "http"


def test_multiple_hops_client_is_rightmost_untrusted(proxied: ServerProcess) -> None:
    scope = scope_with(
        proxied, [("X-Forwarded-For", "198.51.100.66, 203.0.113.7, 198.51.100.2, 127.0.0.1")]
    )
    assert scope["client"] == ["198.51.100.2", 0]


def test_multiple_hops_in_repeated_header_fields(proxied: ServerProcess) -> None:
    scope = scope_with(
        proxied, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "198.51.100.2, ::1")]
    )
    assert scope["client"] == ["198.51.100.2", 0]


def test_multiple_hops_with_trusted_network(trust_network: ServerProcess) -> None:
    scope = scope_with(
        trust_network, [("X-Forwarded-For", "203.0.113.7, 198.51.100.2, 198.51.100.3")]
    )
    assert scope["client"] == ["203.0.113.7", 0]


def test_all_hops_trusted_gives_leftmost(proxied: ServerProcess) -> None:
    scope = scope_with(proxied, [("X-Forwarded-For", "127.0.0.1, ::1")])
    assert scope["client"] == ["127.0.0.1", 0]


def test_trust_all_takes_leftmost_like_daphne(trust_all: ServerProcess) -> None:
    scope = scope_with(trust_all, [("X-Forwarded-For", "203.0.113.7, 198.51.100.2"), *XFF[1:]])
    assert scope["client"] == ["203.0.113.7", 4443]
    assert scope["scheme"] == "https"


def test_trust_all_trusts_any_peer(trust_all: ServerProcess) -> None:
    scope = scope_with(trust_all, XFF, source=UNTRUSTED_SOURCE)
    assert scope["client"] == ["203.0.113.7", 4443]


def test_untrusted_loopback_with_other_allow_ips(other_proxy: ServerProcess) -> None:
    scope = scope_with(other_proxy, [*XFF, ("Forwarded", "for=198.51.100.9;proto=https")])
    assert scope["client"][0] == "127.0.0.1"
    assert scope["client"][1] != 4443
    assert scope["scheme"] == "http"


def test_custom_header_names(custom_names: ServerProcess) -> None:
    scope = scope_with(
        custom_names,
        [("X-Real-IP", "203.0.113.7"), ("X-Real-Port", "8443"), ("X-Forwarded-Proto", "https")],
    )
    assert scope["client"] == ["203.0.113.7", 8443]
    assert scope["scheme"] == "https"


def test_custom_header_names_replace_the_defaults(custom_names: ServerProcess) -> None:
    scope = scope_with(
        custom_names, [("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-Port", "1")]
    )
    assert scope["client"][0] == "127.0.0.1"


def test_rfc7239_forwarded(proxied: ServerProcess) -> None:
    scope = scope_with(proxied, [("Forwarded", "for=203.0.113.7;proto=https;by=127.0.0.1")])
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"


def test_rfc7239_forwarded_ipv6_with_port(proxied: ServerProcess) -> None:
    scope = scope_with(proxied, [("Forwarded", 'for="[2001:db8::1]:4711";proto=https')])
    assert scope["client"] == ["2001:db8::1", 4711]
    assert scope["scheme"] == "https"


def test_rfc7239_forwarded_ipv4_with_port(proxied: ServerProcess) -> None:
    scope = scope_with(proxied, [("Forwarded", 'For="203.0.113.7:8080"')])
    assert scope["client"] == ["203.0.113.7", 8080]


def test_rfc7239_multiple_hops_take_the_chosen_hops_proto(proxied: ServerProcess) -> None:
    scope = scope_with(
        proxied,
        [("Forwarded", "for=203.0.113.7;proto=https, for=198.51.100.2;proto=http")],
    )
    assert scope["client"] == ["198.51.100.2", 0]
    assert scope["scheme"] == "http"


def test_rfc7239_trusted_hop_with_port_is_skipped(proxied: ServerProcess) -> None:
    scope = scope_with(
        proxied, [("Forwarded", 'for=203.0.113.7;proto=https, for="127.0.0.1:9000";proto=http')]
    )
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"


def test_rfc7239_proto_without_for(proxied: ServerProcess) -> None:
    scope = scope_with(proxied, [("Forwarded", "proto=https")])
    assert scope["scheme"] == "https"
    assert scope["client"][0] == "127.0.0.1"


def test_rfc7239_with_trust_all_takes_leftmost(trust_all: ServerProcess) -> None:
    scope = scope_with(
        trust_all,
        [("Forwarded", "for=203.0.113.7;proto=https, for=198.51.100.2;proto=http")],
    )
    assert scope["client"] == ["203.0.113.7", 0]
    assert scope["scheme"] == "https"


def test_x_forwarded_for_wins_over_forwarded(proxied: ServerProcess) -> None:
    scope = scope_with(
        proxied, [("Forwarded", "for=198.51.100.9"), ("X-Forwarded-For", "203.0.113.7")]
    )
    assert scope["client"] == ["203.0.113.7", 0]


def test_ipv4_peer_of_dual_stack_listener_is_loopback(
    run_server: Any,
) -> None:
    server: ServerProcess = run_server(APP, "-b", "::", "--proxy-headers")
    try:
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    except OSError:
        pytest.skip("the '::' listener is IPv6-only here")
    scope = scope_with(server, XFF)
    # The peer is ::ffff:127.0.0.1: loopback, so trusted by default.
    assert scope["client"] == ["203.0.113.7", 4443]
    assert scope["scheme"] == "https"
