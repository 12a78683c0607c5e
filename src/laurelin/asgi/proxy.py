# laurelin.asgi.proxy — which peers are trusted proxies, and what their headers say.
#
# `--forwarded-allow-ips` lists trusted peers: addresses, networks, "unix" (Unix-socket peers)
# or "*". From a trusted peer, with `--proxy-headers`, the client address, port and scheme come
# from X-Forwarded-For / -Port / -Proto (or the header names given by --proxy-headers-host/-port)
# or from RFC 7239 `Forwarded`. The client is the rightmost address that is not itself a trusted
# proxy: a client cannot spoof its address by sending its own X-Forwarded-For through a proxy
# that appends. With "*" every hop is trusted and the leftmost entry wins, as in Daphne.
from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Whose proxy headers are believed when --forwarded-allow-ips is not given.
DEFAULT_TRUSTED_PROXIES = "127.0.0.1,::1,unix"


class ProxyTrust:
    """The set of peers whose proxy headers are believed."""

    __slots__ = ("_hosts", "_networks", "trust_all", "trust_unix")

    def __init__(self, spec: str) -> None:
        self.trust_all = False
        self.trust_unix = False
        self._hosts: set[str] = set()
        self._networks: list[Network] = []
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            if item == "*":
                self.trust_all = True
            elif item == "unix":
                self.trust_unix = True
            elif "/" in item:
                self._networks.append(ipaddress.ip_network(item, strict=False))
            else:
                self._hosts.add(_normalise(item))

    def trusts(self, host: str | None) -> bool:
        """Whether a peer at `host` (None for a Unix-socket peer) is a trusted proxy."""
        if self.trust_all:
            return True
        if host is None:
            return self.trust_unix
        host = _normalise(host)
        if host in self._hosts:
            return True
        if not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


def _normalise(host: str) -> str:
    """The address part of `host` in canonical form: "[::1]:80" -> "::1", "1.2.3.4:80" ->
    "1.2.3.4", an IPv4-mapped IPv6 address (a dual-stack socket's IPv4 peer) -> the IPv4 one."""
    host = host.strip()
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    elif host.count(":") == 1:
        host = host.partition(":")[0]  # an RFC 7239 node with a port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def pick_index(addresses: Sequence[str], trust: ProxyTrust) -> int | None:
    """Index of the client among proxy hops listed left (origin) to right (nearest): the
    rightmost hop that is not a trusted proxy (the leftmost if all are, or with "*"). Empty
    entries are skipped; None if there is none."""
    hops = [index for index, address in enumerate(addresses) if address.strip()]
    if not hops:
        return None
    if trust.trust_all:
        return hops[0]
    for index in reversed(hops):
        if not trust.trusts(addresses[index]):
            return index
    return hops[0]


def pick_client(addresses: Sequence[str], trust: ProxyTrust) -> str | None:
    """The client among proxy hops listed left (origin) to right (nearest); see pick_index."""
    index = pick_index(addresses, trust)
    return None if index is None else addresses[index].strip()


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """Parse an RFC 7239 `Forwarded` field value into one dict per element, lower-cased keys."""
    elements = []
    for element in _split_outside_quotes(value, ","):
        pairs: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            key, sep, val = pair.partition("=")
            if not sep:
                continue
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1].replace('\\"', '"')
            pairs[key.strip().lower()] = val
        if pairs:
            elements.append(pairs)
    return elements


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def split_host_port(node: str) -> tuple[str, int | None]:
    """Split an RFC 7239 node ("1.2.3.4:80", "[::1]:80", "::1", "unknown") into host and port."""
    node = node.strip()
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isascii() and port.isdigit() else None
    if node.count(":") == 1:
        host, _, port = node.partition(":")
        # isascii(): str.isdigit() takes "²" for a digit, and int() does not.
        return host, int(port) if port.isascii() and port.isdigit() else None
    return node, None
