# A raw-frame WebSocket client (RFC 6455) for byte-exact end-to-end tests of the server.
#
# `WSClient` is a tests/rawhttp.py `RawClient` (every read bounded by a timeout) that does the
# opening handshake by hand (`handshake()` sends any request, `upgrade()` insists on a 101 with
# the right Sec-WebSocket-Accept) and then sends frames with arbitrary FIN/RSV bits, opcode,
# length and masking (`frame()`), so tests can send what a well-behaved client library never
# would. It reads frames back (`read_frame()`), whole messages (`read_message()`, answering
# pings on the way) and the server's close frame with its code and reason (`expect_close()`).
# `deflate()` compresses a message body for permessage-deflate (RFC 7692) by hand.
from __future__ import annotations

import base64
import hashlib
import os
import select
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from rawhttp import TIMEOUT, ConnectionClosed, RawClient, Response

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

CONTINUATION = 0x0
TEXT = 0x1
BINARY = 0x2
CLOSE = 0x8
PING = 0x9
PONG = 0xA


def new_key() -> str:
    """A fresh Sec-WebSocket-Key: base64 of 16 random bytes."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer `key` with (RFC 6455 4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def handshake_request(
    target: str = "/",
    *,
    key: str | None = None,
    version: str | None = "13",
    method: str = "GET",
    http_version: str = "HTTP/1.1",
    upgrade: str | None = "websocket",
    connection: str | None = "Upgrade",
    subprotocols: Iterable[str] = (),
    extensions: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> bytes:
    """An opening handshake request; pass None to leave a header out."""
    lines = [f"{method} {target} {http_version}", "Host: 127.0.0.1"]
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    protocols = list(subprotocols)
    if protocols:
        lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    mask_key: bytes | None = None,
) -> bytes:
    """One frame, byte-exact: `rsv` is the 3 RSV bits (0-7, RSV1 = 4), `opcode` any 4 bits."""
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0xF)])
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4) if mask_key is None else mask_key
    return bytes(head) + key + apply_mask(payload, key)


def apply_mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    as_int = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return as_int.to_bytes(len(payload), "big")


def close_payload(code: int | None = 1000, reason: str | bytes = b"") -> bytes:
    """The body of a close frame (empty when `code` is None)."""
    if code is None:
        return b""
    raw = reason.encode("utf-8") if isinstance(reason, str) else reason
    return struct.pack("!H", code) + raw


def deflate(data_chunks: Iterable[bytes]) -> bytes:
    """A permessage-deflate message body (RFC 7692 7.2.1): raw DEFLATE of the concatenated
    chunks, flushed, without the trailing 00 00 ff ff. Chunks keep big inputs out of memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [compressor.compress(chunk) for chunk in data_chunks]
    out.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    body = b"".join(out)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


def inflate(payload: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


@dataclass
class Frame:
    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    masked: bool = False

    @property
    def close_code(self) -> int | None:
        """The status code of a close frame (None if it has no body)."""
        assert self.opcode == CLOSE, self
        if len(self.payload) < 2:
            return None
        return int(struct.unpack("!H", self.payload[:2])[0])

    @property
    def close_reason(self) -> str:
        assert self.opcode == CLOSE, self
        return self.payload[2:].decode("utf-8")

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")


class WSClient(RawClient):
    """A TCP connection that speaks WebSocket frame by frame (reads bounded by `timeout`)."""

    def __init__(
        self,
        port: int,
        host: str = "127.0.0.1",
        timeout: float = TIMEOUT,
        rcvbuf: int | None = None,
    ) -> None:
        super().__init__(port, host, timeout, rcvbuf)
        self.key = ""
        self.response: Response | None = None
        self.deflate = False
        self.pings: list[bytes] = []  # payloads of the pings read_message() answered

    def __enter__(self) -> WSClient:
        return self

    # -- handshake -------------------------------------------------------------------------------

    def handshake(self, target: str = "/", **kwargs: object) -> Response:
        """Send an opening handshake (see handshake_request) and read the response."""
        self.key = str(kwargs.pop("key", None) or new_key())
        self.send(handshake_request(target, key=self.key, **kwargs))  # type: ignore[arg-type]
        self.response = self.read_response()
        return self.response

    def upgrade(self, target: str = "/", **kwargs: object) -> Response:
        """A handshake that must succeed: 101, Upgrade/Connection and the right accept key."""
        response = self.handshake(target, **kwargs)
        assert response.status == 101, response.raw[:1000]
        assert (response.header("upgrade") or "").lower() == "websocket", response.raw
        connection = [t.strip().lower() for t in (response.header("connection") or "").split(",")]
        assert "upgrade" in connection, response.raw
        assert response.header("sec-websocket-accept") == accept_key(self.key), response.raw
        extensions = response.header("sec-websocket-extensions") or ""
        self.deflate = "permessage-deflate" in extensions
        return response

    # -- sending ---------------------------------------------------------------------------------

    def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: object) -> None:
        self.send(frame(opcode, payload, **kwargs))  # type: ignore[arg-type]

    def send_until_blocked(self, data: bytes, limit: int) -> tuple[int, int, bytes]:
        """Send `data` over and over until the socket stays unwritable for 2 s (the server has
        stopped reading). Returns the copies begun, the bytes sent and the unsent rest of the
        last copy. Fails past `limit` bytes."""
        sent = copies = 0
        pending = memoryview(b"")
        self.sock.setblocking(False)
        try:
            while True:
                if not pending:
                    assert sent < limit, f"the server read {sent} bytes and never stopped"
                    pending = memoryview(data)
                    copies += 1
                _, writable, _ = select.select([], [self.sock], [], 2.0)
                if not writable:
                    return copies, sent, bytes(pending)
                try:
                    written = self.sock.send(pending)
                except BlockingIOError:
                    continue
                pending = pending[written:]
                sent += written
        finally:
            self.sock.setblocking(True)
            self.sock.settimeout(self.timeout)

    def send_text(self, text: str | bytes, fragments: int = 1) -> None:
        """A text message (bytes are sent as they are, valid UTF-8 or not), optionally split
        into `fragments` frames."""
        raw = text.encode("utf-8") if isinstance(text, str) else text
        self.send(fragmented(TEXT, raw, fragments))

    def send_binary(self, data: bytes, fragments: int = 1) -> None:
        self.send(fragmented(BINARY, data, fragments))

    def send_close(self, code: int | None = 1000, reason: str | bytes = b"") -> bool:
        """Send a close frame; False if the server had already gone away."""
        return self.try_send(frame(CLOSE, close_payload(code, reason)))

    # -- receiving -------------------------------------------------------------------------------

    def read_frame(self, timeout: float | None = None) -> Frame:
        """The next frame from the server (which must not mask it: RFC 6455 5.1)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        consumed = bytearray()
        first, second = self._read_exact(2, deadline, consumed)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read_exact(2, deadline, consumed))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read_exact(8, deadline, consumed))[0]
        masked = bool(second & 0x80)
        key = self._read_exact(4, deadline, consumed) if masked else b""
        payload = self._read_exact(length, deadline, consumed)
        if masked:
            payload = apply_mask(payload, key)
        result = Frame(bool(first & 0x80), (first >> 4) & 7, first & 0xF, payload, masked)
        assert not masked, f"the server masked a frame: {result}"
        return result

    def read_message(self, timeout: float | None = None, answer_pings: bool = True) -> Frame:
        """The next whole data message (fragments joined, permessage-deflate undone) as one
        Frame; a close frame is returned as it is. Pings are answered (with `answer_pings`)
        and remembered in `pings`; pongs are skipped."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        parts: list[bytes] = []
        first: Frame | None = None
        while True:
            current = self.read_frame(max(deadline - time.monotonic(), 0.001))
            if current.opcode == CLOSE:
                return current
            if current.opcode == PING:
                self.pings.append(current.payload)
                if answer_pings:
                    self.try_send(frame(PONG, current.payload))
                continue
            if current.opcode == PONG:
                continue
            if first is None:
                assert current.opcode in (TEXT, BINARY), f"unexpected first frame {current}"
                first = current
            else:
                assert current.opcode == CONTINUATION, f"expected a continuation: {current}"
            parts.append(current.payload)
            if current.fin:
                payload = b"".join(parts)
                if first.rsv & 4:
                    assert self.deflate, "RSV1 set without permessage-deflate"
                    payload = inflate(payload)
                return Frame(True, 0, first.opcode, payload)

    def read_text(self, timeout: float | None = None) -> str:
        message = self.read_message(timeout)
        assert message.opcode == TEXT, message
        return message.text

    def read_binary(self, timeout: float | None = None) -> bytes:
        message = self.read_message(timeout)
        assert message.opcode == BINARY, message
        return message.payload

    def expect_close(
        self, timeout: float | None = None, reply: bool = True, skip_data: bool = True
    ) -> tuple[int | None, str]:
        """Read until the server's close frame (skipping data messages unless `skip_data` is
        False), answer it (with `reply`), and wait for the server to close the TCP connection.
        Returns the frame's (code, reason)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            message = self.read_message(max(deadline - time.monotonic(), 0.001))
            if message.opcode == CLOSE:
                break
            assert skip_data, f"a data message before the close frame: {message}"
        code, reason = message.close_code, message.close_reason
        if reply:
            self.send_close(code if code not in (None, 1005, 1006, 1015) else 1000)
        self.wait_closed(max(deadline - time.monotonic(), 1.0))
        return code, reason

    def close_handshake(self, code: int | None = 1000, reason: str = "") -> tuple[int | None, str]:
        """Client-initiated close: send ours, read the server's answer and the TCP close."""
        assert self.send_close(code, reason)
        return self.expect_close(reply=False)

    def read_eof_or_close(self, timeout: float | None = None) -> Frame | None:
        """A close frame, or None if the server closed the connection without sending one."""
        try:
            return self.read_message(timeout)
        except ConnectionClosed:
            return None


def fragmented(opcode: int, payload: bytes, fragments: int) -> bytes:
    """A message split into `fragments` frames (the first carries `opcode`, the rest are
    continuations); some fragments may be empty."""
    if fragments <= 1:
        return frame(opcode, payload)
    size = -(-len(payload) // fragments) if payload else 0
    out = []
    for index in range(fragments):
        piece = payload[index * size : (index + 1) * size]
        out.append(frame(opcode if index == 0 else CONTINUATION, piece, fin=index == fragments - 1))
    return b"".join(out)


def connect(port: int, target: str = "/", timeout: float = TIMEOUT, **kwargs: object) -> WSClient:
    """A WSClient that has completed the handshake for `target`."""
    client = WSClient(port, timeout=timeout, rcvbuf=kwargs.pop("rcvbuf", None))  # type: ignore[arg-type]
    try:
        client.upgrade(target, **kwargs)
    except BaseException:
        client.close()
        raise
    return client


def peak_rss_kib(pid: int) -> int:
    """The peak resident set size of process `pid` so far (VmHWM), from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def client(url: str, **kwargs: Any) -> ClientConnection:
    """A `websockets` (the library) sync client for `url`: no proxy from the environment,
    bounded open/close timeouts; other keyword arguments go to websockets.sync.client.connect."""
    options: dict[str, Any] = {"proxy": None, "open_timeout": TIMEOUT, "close_timeout": TIMEOUT}
    options.update(kwargs)
    connection: ClientConnection = ws_connect(url, **options)
    return connection
