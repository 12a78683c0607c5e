# laurelin.protocols.ws_handshake — the WebSocket opening handshake (RFC 6455 4.2, RFC 7692).
#
# Owns checking an HTTP/1.1 upgrade request (method, version, Sec-WebSocket-Key and -Version:
# a bad one is a 400, with `Sec-WebSocket-Version: 13` when the version is what is wrong), the
# subprotocols the client offers (for the scope), the 101 response head, and building the
# `websockets` sans-I/O framing already OPEN with the extensions agreed (permessage-deflate,
# its decompression bounded by the message size limit). The frames themselves are
# protocols/websocket.py's.
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from dataclasses import dataclass

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import enable_server_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from laurelin.asgi.http import TOKEN
from laurelin.asgi.scope import BadRequest

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_VERSION_HEADER = [(b"sec-websocket-version", b"13")]

# The framing library logs every closed connection at INFO and each frame at DEBUG; its logger
# is kept quiet, our own lines say what matters.
_frames_logger = logging.getLogger("laurelin.websocket.frames")
_frames_logger.setLevel(logging.WARNING)


class Framing(ServerProtocol):
    """The `websockets` server framing, with one change: a close frame in the middle of a
    fragmented message closes normally. RFC 6455 5.4 lets control frames come between
    fragments, and a close ends the message unfinished; the library would fail with 1002
    (Autobahn case 7.1.5 expects the close to be echoed)."""

    def recv_frame(self, frame: Frame) -> None:
        if frame.opcode is Opcode.CLOSE:
            self.current_size = None
        super().recv_frame(frame)


class BadHandshake(BadRequest):
    """An upgrade request that breaks RFC 6455 4.2.1: a 400 (with `headers`)."""

    def __init__(self, reason: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(reason, 400, headers)


def is_websocket_upgrade(upgrade: bytes) -> bool:
    """Whether an Upgrade header value asks for the WebSocket protocol."""
    return any(token.strip().lower() == b"websocket" for token in upgrade.split(b","))


def check_upgrade(method: str, http_version: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    """Check a WebSocket upgrade request; return its Sec-WebSocket-Key.

    Raises:
        BadHandshake: not GET, not HTTP/1.1, or a missing or malformed key or version.
    """
    if method != "GET":
        raise BadHandshake(f"WebSocket upgrade with method {method}: GET is required")
    if http_version != "1.1":
        raise BadHandshake("WebSocket upgrade needs HTTP/1.1")
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            raise BadHandshake("WebSocket upgrade request with a body")
    keys = [value for name, value in headers if name == b"sec-websocket-key"]
    versions = [value for name, value in headers if name == b"sec-websocket-version"]
    if len(versions) != 1 or versions[0].strip() != b"13":
        raise BadHandshake("WebSocket upgrade without Sec-WebSocket-Version: 13", _VERSION_HEADER)
    if len(keys) != 1:
        raise BadHandshake("WebSocket upgrade needs exactly one Sec-WebSocket-Key")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 16:
        raise BadHandshake("Sec-WebSocket-Key is not 16 bytes in base64")
    return key


def offered_subprotocols(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """The subprotocols in Sec-WebSocket-Protocol, in the client's order. Only tokens are
    offered (RFC 6455 4.1): an app could not accept anything else."""
    offered: list[str] = []
    for name, value in headers:
        if name == b"sec-websocket-protocol":
            for item in value.split(b","):
                token = item.strip()
                if TOKEN.fullmatch(token):
                    offered.append(token.decode("ascii"))
    return offered


def accept_value(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


@dataclass(frozen=True, slots=True)
class FramingSettings:
    """How every WebSocket of one server frames: limits and extensions, built once."""

    max_message_size: int | None = 1 << 20
    max_frame_size: int | None = 1 << 20
    per_message_deflate: bool = True

    def extension_factories(self) -> list[ServerExtensionFactory]:
        """The extensions offered to clients (RFC 7692 with websockets' memory-saving defaults:
        12-bit windows and memLevel 5)."""
        return list(enable_server_permessage_deflate(None)) if self.per_message_deflate else []


def open_framing(
    settings: FramingSettings, headers: list[tuple[bytes, bytes]]
) -> tuple[Framing, bytes | None]:
    """The framing for a WebSocket about to be accepted, already OPEN, and the
    Sec-WebSocket-Extensions response value (None when no extension was agreed).

    Raises:
        BadHandshake: the client's extension offer is malformed.
    """
    framing = Framing(
        extensions=settings.extension_factories(),
        state=OPEN,
        max_size=(settings.max_message_size, settings.max_frame_size),
        logger=_frames_logger,
    )
    offers = Headers()
    for name, value in headers:
        if name == b"sec-websocket-extensions":
            offers["Sec-WebSocket-Extensions"] = value.decode("latin-1")
    if not offers or not settings.per_message_deflate:
        return framing, None
    try:
        response, extensions = framing.process_extensions(offers)
    except InvalidHandshake as exc:
        raise BadHandshake(f"Sec-WebSocket-Extensions: {exc}") from None
    framing.extensions = extensions
    return framing, response.encode("latin-1") if response is not None else None


def response_head(
    key: bytes,
    subprotocol: str | None,
    extensions: bytes | None,
    default_lines: bytes,
    app_headers: list[tuple[bytes, bytes]],
) -> bytes:
    """The 101 Switching Protocols head that completes the handshake."""
    parts = [
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: ",
        accept_value(key),
        b"\r\n",
    ]
    if extensions is not None:
        parts += (b"sec-websocket-extensions: ", extensions, b"\r\n")
    if subprotocol is not None:
        parts += (b"sec-websocket-protocol: ", subprotocol.encode(), b"\r\n")
    parts.append(default_lines)  # Server, Date, --header: those the app did not set itself
    for name, value in app_headers:
        if name not in HANDSHAKE_HEADERS:
            parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


# Headers the handshake sets itself; the app's copies would contradict them.
HANDSHAKE_HEADERS = frozenset(
    {
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"content-length",
        b"transfer-encoding",
    }
)
