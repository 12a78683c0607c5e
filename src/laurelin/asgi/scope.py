# laurelin.asgi.scope — request rules shared by every HTTP version, and the `http` scope.
#
# Daphne's rules on the request line live here: non-ASCII bytes in the path or query are a 400;
# `Daphne-Root-Path` (URL-encoded) overrides --root-path and is removed from the headers. Proxy
# headers are applied through laurelin.asgi.proxy. Scope keys follow the ASGI HTTP spec 2.5.
# Daphne's header-field rules (names with "_" dropped, CVE-2015-0219; values with CTLs or \x85
# a 400, CVE-2026-44546) are applied by each wire adapter while it parses, where they cost least
# (protocols/http1.py: llhttp already refuses the CTLs, the adapter checks the rest).
from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from laurelin.asgi.context import ASGI_VERSION, PeerInfo, ServerContext
from laurelin.asgi.proxy import parse_forwarded, pick_client, pick_index, split_host_port

Headers = list[tuple[bytes, bytes]]

# RFC 9112 3.2 / RFC 3986 3.2.2: a Host value (HTTP/2: :authority), uri-host [ ":" port ].
HOST_VALUE = re.compile(rb"[A-Za-z0-9\-._~%!$&'()*+,;=:\[\]]*")
# RFC 9110 9.1: a method is a token.
METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# The scope's `method` of the common methods, without decoding them for every request.
KNOWN_METHODS = {
    m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")
}
# RFC 9110 7.6.1: fields about one connection, never forwarded across an HTTP/2 hop.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


class BadRequest(Exception):
    """The request breaks a rule: answer with `status` (400 unless said otherwise), adding
    `headers` to the error page."""

    def __init__(self, reason: str, status: int = 400, headers: Headers | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.headers = headers or []


def build_http_scope(
    ctx: ServerContext,
    peer: PeerInfo,
    method: str,
    http_version: str,
    raw_path: bytes,
    query_string: bytes,
    headers: Headers,
    extensions: dict[str, Any],
    intermediary: bool = True,
) -> dict[str, Any]:
    """Build the ASGI `http` scope for one request.

    `intermediary=False` tells that the wire adapter saw neither Daphne-Root-Path nor a proxy
    header while parsing, so the headers need no second look.

    Raises:
        BadRequest: the path or query string breaks Daphne's rules.
    """
    # The ASGI `path`: percent-decoded UTF-8. Non-ASCII raw bytes are a 400, as in Daphne.
    if not raw_path.isascii():
        raise BadRequest("non-ASCII bytes in the request path")
    path = raw_path.decode("ascii")
    if "%" in path:
        path = unquote(path)
    if not query_string.isascii():
        raise BadRequest("non-ASCII bytes in the query string")
    scheme = "https" if peer.tls else "http"
    client = peer.client
    root_path = ctx.root_path
    if intermediary and (peer.root_path_trusted or peer.proxy_trusted):
        headers, root_path, client, scheme = apply_intermediary_headers(
            ctx, peer, headers, root_path, client, scheme
        )
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": ASGI_VERSION.copy(),  # a dict per scope: what one app changes, no other sees
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": headers,
        "client": client,
        "server": peer.server,
        "extensions": extensions.copy(),
    }
    if ctx.state is not None:
        scope["state"] = ctx.state.copy()
    return scope


def websocket_scope(scope: dict[str, Any], subprotocols: list[str]) -> dict[str, Any]:
    """Turn the `http` scope of an upgrade request into its `websocket` scope (in place)."""
    scope["type"] = "websocket"
    scope["scheme"] = "wss" if scope["scheme"] in ("https", "wss") else "ws"
    del scope["method"]
    scope["subprotocols"] = subprotocols
    scope["extensions"]["websocket.http.response"] = {}
    return scope


def apply_intermediary_headers(
    ctx: ServerContext,
    peer: PeerInfo,
    headers: Headers,
    root_path: str,
    client: tuple[str, int] | None,
    scheme: str,
) -> tuple[Headers, str, tuple[str, int] | None, str]:
    """Honour Daphne-Root-Path and the proxy headers a trusted peer sent."""
    found: dict[bytes, bytes] = {}
    kept: Headers | None = None
    wanted = (
        (ctx.proxy_host_header, ctx.proxy_port_header, b"x-forwarded-proto", b"forwarded")
        if peer.proxy_trusted
        else ()
    )
    for index, (name, value) in enumerate(headers):
        if name == b"daphne-root-path":
            if kept is None:
                kept = headers[:index]
            if peer.root_path_trusted:
                root_path = unquote(value.decode("latin-1"))
            continue
        if kept is not None:
            kept.append((name, value))
        if name in wanted:
            # Repeated fields combine as a list (RFC 9110 5.3).
            found[name] = found[name] + b"," + value if name in found else value
    if kept is not None:
        headers = kept
    if not found:
        return headers, root_path, client, scheme
    client, scheme = _proxied_client(ctx, peer, found, client, scheme)
    return headers, root_path, client, scheme


def _proxied_client(
    ctx: ServerContext,
    peer: PeerInfo,
    found: dict[bytes, bytes],
    client: tuple[str, int] | None,
    scheme: str,
) -> tuple[tuple[str, int] | None, str]:
    forwarded = found.get(ctx.proxy_host_header)
    if forwarded is not None:
        host = pick_client(forwarded.decode("latin-1").split(","), ctx.trust)
        if host:
            port = 0
            raw_port = found.get(ctx.proxy_port_header)
            if raw_port is not None and raw_port.strip().isdigit():
                port = int(raw_port)
            client = (host, port)
        proto = found.get(b"x-forwarded-proto")
        if proto is not None:
            scheme = _scheme(proto.decode("latin-1").split(",")[0], scheme)
        return client, scheme
    rfc7239 = found.get(b"forwarded")
    if rfc7239 is not None:
        elements = parse_forwarded(rfc7239.decode("latin-1"))
        if not elements:
            return client, scheme
        nodes = [element.get("for", "") for element in elements]
        index = pick_index(nodes, ctx.trust)
        if index is not None:
            host, node_port = split_host_port(nodes[index])
            client = (host, node_port or 0)
        else:
            index = len(elements) - 1  # no `for` at all: what the nearest proxy says
        forwarded_proto = elements[index].get("proto")
        if forwarded_proto is not None:
            scheme = _scheme(forwarded_proto, scheme)
        return client, scheme
    proto = found.get(b"x-forwarded-proto")
    if proto is not None:
        scheme = _scheme(proto.decode("latin-1").split(",")[0], scheme)
    return client, scheme


def _scheme(value: str, default: str) -> str:
    value = value.strip().lower()
    return value if value in ("http", "https", "ws", "wss") else default
