# Unit tests for the pure functions of laurelin.asgi.proxy: which peers are trusted proxies
# (--forwarded-allow-ips), which hop of a forwarding chain is the client, and RFC 7239 parsing.
from __future__ import annotations

import pytest

from laurelin.asgi.proxy import (
    ProxyTrust,
    parse_forwarded,
    pick_client,
    pick_index,
    split_host_port,
)

DEFAULT = "127.0.0.1,::1,unix"


@pytest.mark.parametrize(
    ("spec", "host", "trusted"),
    [
        (DEFAULT, "127.0.0.1", True),
        (DEFAULT, "::1", True),
        (DEFAULT, "0:0:0:0:0:0:0:1", True),  # another spelling of ::1
        (DEFAULT, "[::1]", True),
        (DEFAULT, "127.0.0.2", False),
        (DEFAULT, "10.0.0.1", False),
        (DEFAULT, None, True),  # a Unix-socket peer
        ("127.0.0.1", None, False),
        ("unix", None, True),
        ("unix", "127.0.0.1", False),
        ("10.0.0.1", "127.0.0.1", False),
        ("10.0.0.1", "10.0.0.1", True),
        ("10.0.0.0/8", "10.200.3.4", True),
        ("10.0.0.0/8", "11.0.0.1", False),
        ("10.0.0.1/8", "10.9.9.9", True),  # host bits set: still the network
        ("2001:db8::/32", "2001:db8:1::5", True),
        ("2001:db8::/32", "2001:db9::5", False),
        ("2001:DB8::1", "2001:db8:0::1", True),
        (" 10.0.0.1 , 10.0.0.2 ", "10.0.0.2", True),
        ("*", "203.0.113.9", True),
        ("*", None, True),
        ("", "127.0.0.1", False),
        ("10.0.0.0/8", "not-an-address", False),
        ("proxy.internal", "proxy.internal", True),
    ],
)
def test_trusts(spec: str, host: str | None, trusted: bool) -> None:
    assert ProxyTrust(spec).trusts(host) is trusted


@pytest.mark.parametrize(
    ("spec", "host"),
    [
        (DEFAULT, "::ffff:127.0.0.1"),  # IPv4 peer of a dual-stack "::" listener
        ("10.0.0.0/8", "::ffff:10.1.2.3"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
    ],
)
def test_ipv4_mapped_addresses_are_their_ipv4_address(spec: str, host: str) -> None:
    assert ProxyTrust(spec).trusts(host)


@pytest.mark.parametrize(
    ("host", "trusted"),
    [("127.0.0.1:8080", True), ("[::1]:443", True), ("203.0.113.7:8080", False)],
)
def test_trusts_nodes_with_a_port(host: str, trusted: bool) -> None:
    # RFC 7239 nodes may carry a port; the port does not change who the hop is.
    assert ProxyTrust(DEFAULT).trusts(host) is trusted


def test_trust_flags() -> None:
    trust = ProxyTrust("*,unix")
    assert trust.trust_all and trust.trust_unix
    trust = ProxyTrust("127.0.0.1")
    assert not trust.trust_all and not trust.trust_unix


def test_bad_network_raises() -> None:
    with pytest.raises(ValueError):
        ProxyTrust("10.0.0.0/99")


@pytest.mark.parametrize(
    ("spec", "hops", "client"),
    [
        (DEFAULT, ["203.0.113.7"], "203.0.113.7"),
        (DEFAULT, [" 203.0.113.7 "], "203.0.113.7"),
        # The rightmost hop that is not a trusted proxy: a client cannot spoof its address by
        # sending its own X-Forwarded-For through a proxy that appends to it.
        (DEFAULT, ["198.51.100.66", "203.0.113.7"], "203.0.113.7"),
        (DEFAULT, ["203.0.113.7", "127.0.0.1"], "203.0.113.7"),
        (DEFAULT, ["203.0.113.7", "198.51.100.2", "127.0.0.1", "::1"], "198.51.100.2"),
        ("127.0.0.1,198.51.100.0/24", ["203.0.113.7", "198.51.100.2", "127.0.0.1"], "203.0.113.7"),
        # Every hop trusted: the leftmost (the origin as far as anyone knows).
        (DEFAULT, ["127.0.0.1", "::1"], "127.0.0.1"),
        # "*": Daphne's behaviour, the leftmost entry.
        ("*", ["203.0.113.7", "198.51.100.2", "10.0.0.1"], "203.0.113.7"),
        # Empty entries (",," or a trailing comma) are not hops.
        (DEFAULT, ["", "203.0.113.7", " ", "127.0.0.1", ""], "203.0.113.7"),
        ("*", ["", "203.0.113.7"], "203.0.113.7"),
    ],
)
def test_pick_client(spec: str, hops: list[str], client: str) -> None:
    assert pick_client(hops, ProxyTrust(spec)) == client


@pytest.mark.parametrize("hops", [[], [""], [" ", ""]])
def test_pick_client_without_hops(hops: list[str]) -> None:
    assert pick_client(hops, ProxyTrust(DEFAULT)) is None
    assert pick_index(hops, ProxyTrust(DEFAULT)) is None


def test_pick_index_counts_empty_entries() -> None:
    nodes = ["", "203.0.113.7", "127.0.0.1:80"]
    assert pick_index(nodes, ProxyTrust(DEFAULT)) == 1
    assert pick_index(nodes, ProxyTrust("*")) == 1
    assert pick_index(["127.0.0.1", "", "::1"], ProxyTrust(DEFAULT)) == 0


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (
            "for=192.0.2.60;proto=http;by=203.0.113.43",
            [{"for": "192.0.2.60", "proto": "http", "by": "203.0.113.43"}],
        ),
        ('for="[2001:db8:cafe::17]:4711"', [{"for": "[2001:db8:cafe::17]:4711"}]),
        ("for=192.0.2.43, for=198.51.100.17", [{"for": "192.0.2.43"}, {"for": "198.51.100.17"}]),
        ("For=192.0.2.43;PROTO=https", [{"for": "192.0.2.43", "proto": "https"}]),
        (" for = 192.0.2.43 ; proto = https ", [{"for": "192.0.2.43", "proto": "https"}]),
        # Separators inside a quoted string are not separators.
        ('for="a,b;c";proto=https', [{"for": "a,b;c", "proto": "https"}]),
        ('for="say \\"hi\\""', [{"for": 'say "hi"'}]),
        ("for=unknown", [{"for": "unknown"}]),
        ("for=_hidden, for=_SEVKISEK", [{"for": "_hidden"}, {"for": "_SEVKISEK"}]),
        ("proto=https", [{"proto": "https"}]),
        ("", []),
        ("garbage", []),
        (",,for=1.2.3.4,,", [{"for": "1.2.3.4"}]),
        ("for=1.2.3.4;garbage;proto=https", [{"for": "1.2.3.4", "proto": "https"}]),
    ],
)
def test_parse_forwarded(value: str, parsed: list[dict[str, str]]) -> None:
    assert parse_forwarded(value) == parsed


@pytest.mark.parametrize(
    ("node", "split"),
    [
        ("192.0.2.43", ("192.0.2.43", None)),
        ("192.0.2.43:8080", ("192.0.2.43", 8080)),
        ("[2001:db8::1]:4711", ("2001:db8::1", 4711)),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("2001:db8::1", ("2001:db8::1", None)),
        ("unknown", ("unknown", None)),
        ("_hidden:_port", ("_hidden", None)),
        (" 192.0.2.43:80 ", ("192.0.2.43", 80)),
        ("[2001:db8::1]:_obf", ("2001:db8::1", None)),
    ],
)
def test_split_host_port(node: str, split: tuple[str, int | None]) -> None:
    assert split_host_port(node) == split
