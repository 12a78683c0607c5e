# laurelin.protocols.http2_headers — checking an HTTP/2 request's header list (RFC 9113 8.2, 8.3).
#
# h2's own inbound validation is switched off (it walks every byte of every field in Python and
# cost more than the rest of a request); this module applies the same rules in one pass over the
# fields, with a cache of names already seen to be valid. A request that breaks them is
# malformed (RFC 9113 8.1.1: a stream error of type PROTOCOL_ERROR). Also here: Daphne's rules
# (names with "_" dropped, \x85 in a value a 400), the Host header taken from :authority when
# the client sent none, and cookie crumbs joined back into one field (8.2.3).
from __future__ import annotations

import re

from laurelin.asgi.scope import CONNECTION_SPECIFIC, HOST_VALUE, METHOD, BadRequest

# RFC 9113 8.2.2: HTTP/1.1 connection-specific fields are malformed in HTTP/2.
# RFC 9113 8.2.1: no 0x00-0x20, no uppercase, no 0x7f-0xff, and no colon (but pseudo-headers').
_NAME = re.compile(rb"[^\x00-\x20A-Z:\x7f-\xff]+")
# RFC 9112 3.2: no space or control character in a request target (bytes above 0x7f get
# Daphne's 400 from the scope).
_PATH_BAD = re.compile(rb"[\x00-\x20\x7f]")
_VALID_NAMES: set[bytes] = set()
_VALID_NAMES_MAX = 4096
_CR, _LF, _NUL, _SP, _HTAB, _NEL, _UNDERSCORE = 13, 10, 0, 32, 9, 0x85, ord("_")


class Malformed(Exception):
    """The request breaks RFC 9113 8.1.1: reset the stream with PROTOCOL_ERROR."""


class RequestHead:
    """The pseudo-headers and regular fields of one request."""

    __slots__ = (
        "authority",
        "content_length",
        "fields",
        "intermediary",
        "method",
        "path",
        "protocol",
        "scheme",
    )

    def __init__(self) -> None:
        self.method = b""
        self.scheme = b""
        self.authority = b""
        self.path = b""
        self.protocol = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        # A Daphne-Root-Path or proxy header was seen: the scope must look at the fields.
        self.intermediary = False


def parse_request(
    headers: list[tuple[bytes, bytes]], notable: frozenset[bytes], max_fields: int
) -> RequestHead:
    """Check a request's header list and split it.

    Raises:
        Malformed: a rule of RFC 9113 8.2 or 8.3 is broken.
        BadRequest: Daphne's \\x85 rule (400), or more than `max_fields` fields (431).
    """
    head = RequestHead()
    fields = head.fields
    valid = _VALID_NAMES
    regular = False
    dropped = 0
    host: bytes | None = None
    cookies: list[bytes] | None = None
    for name, value in headers:
        if value and (
            _CR in value
            or _LF in value
            or _NUL in value
            or value[0] == _SP
            or value[0] == _HTAB
            or value[-1] == _SP
            or value[-1] == _HTAB
        ):
            raise Malformed(f"invalid characters in the value of {name!r}")
        if name[:1] == b":":
            if regular:
                raise Malformed(f"pseudo-header {name!r} after a regular field")
            _pseudo(head, name, value)
            continue
        regular = True
        if name not in valid:
            if _NAME.fullmatch(name) is None:
                raise Malformed(f"invalid header name {name!r}")
            if len(valid) >= _VALID_NAMES_MAX:
                valid.clear()
            valid.add(name)
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific header {name!r}")
        if _NEL in value:
            raise BadRequest("control character in a header value")
        if _UNDERSCORE in name:
            dropped += 1  # Daphne (CVE-2015-0219): "_" names could pose as "-" ones
            continue
        if name in notable:
            if name == b"host":
                if host is not None or HOST_VALUE.fullmatch(value) is None:
                    raise Malformed("invalid or repeated host header")
                host = value
            elif name == b"te":
                if value != b"trailers":
                    raise Malformed("te other than trailers")
            elif name != b"expect":
                head.intermediary = True
        elif name == b"cookie":
            if cookies is None:
                cookies = [value]
                fields.append((name, value))
            else:
                cookies.append(value)
            continue
        elif name == b"content-length":
            if not (value.isascii() and value.isdigit()) or (
                head.content_length is not None and head.content_length != int(value)
            ):
                raise Malformed(f"invalid content-length {value!r}")
            head.content_length = int(value)
        fields.append((name, value))
    _check_pseudo(head)
    if len(fields) + dropped > max_fields:
        raise BadRequest("too many header fields", 431)
    if head.authority:
        if host is None:
            fields.append((b"host", head.authority))
        elif host != head.authority:
            raise Malformed("host and :authority differ")
    if cookies is not None and len(cookies) > 1:
        joined = b"; ".join(cookies)
        fields[:] = [(n, joined if n == b"cookie" else v) for n, v in fields]
    return head


def _pseudo(head: RequestHead, name: bytes, value: bytes) -> None:
    if name == b":method":
        if head.method:
            raise Malformed("repeated :method")
        head.method = value
    elif name == b":path":
        if head.path:
            raise Malformed("repeated :path")
        head.path = value
    elif name == b":scheme":
        if head.scheme:
            raise Malformed("repeated :scheme")
        head.scheme = value
    elif name == b":authority":
        if head.authority:
            raise Malformed("repeated :authority")
        head.authority = value
    elif name == b":protocol":
        if head.protocol:
            raise Malformed("repeated :protocol")
        head.protocol = value
    else:
        raise Malformed(f"unknown pseudo-header {name!r}")


def _check_pseudo(head: RequestHead) -> None:
    """RFC 9113 8.3.1 and RFC 8441 4: which pseudo-headers a request must (not) have, and what
    their values may be (the rules HTTP/1.1's parser applies to the request line and Host)."""
    if not head.method:
        raise Malformed("no :method")
    if METHOD.fullmatch(head.method) is None:
        raise Malformed(f"invalid :method {head.method!r}")
    if head.path and _PATH_BAD.search(head.path) is not None:
        raise Malformed("space or control character in :path")
    if head.authority and HOST_VALUE.fullmatch(head.authority) is None:
        raise Malformed(f"invalid :authority {head.authority!r}")
    if head.method == b"CONNECT":
        if not head.authority:
            raise Malformed("CONNECT without :authority")
        if head.protocol:
            if not head.scheme or not head.path:
                raise Malformed("extended CONNECT without :scheme or :path")
        elif head.scheme or head.path:
            raise Malformed("CONNECT with :scheme or :path")
        return
    if head.protocol:
        raise Malformed(":protocol outside CONNECT")
    if not head.scheme or not head.path:
        raise Malformed("no :scheme or :path")
