# WebSocket over HTTP/2 (RFC 8441), end to end on both event loops, served by tests/apps/ws_app.py
# (the app of the HTTP/1.1 WebSocket tests). The client is `H2WebSocket` below, on top of
# tests/h2client.py: an extended CONNECT (`:method CONNECT`, `:protocol websocket`, RFC 8441 4)
# on one stream, answered 200, then RFC 6455 frames (masked, as a client must) in that stream's
# DATA frames; END_STREAM stands for the TCP FIN (RFC 8441 5). Covered: the server announces
# SETTINGS_ENABLE_CONNECT_PROTOCOL = 1; echo of text and binary messages up to 1 MiB, fragmented
# ones, ping/pong, frames sent in the same write as the CONNECT (before the accept);
# subprotocol and permessage-deflate negotiation; the websocket scope; refusals (403 for a
# close before accept, the websocket.http.response denial extension, 400 for a missing or
# wrong Sec-WebSocket-Version); the closing handshake both ways; 1011 for an app
# that fails; RST_STREAM as a 1006 disconnect while the connection serves on; WebSockets and
# requests multiplexed on one connection; 1009 over --websocket-max-message-size; backpressure
# both ways through the stream windows; SIGTERM (close 1001, GOAWAY, exit); the access log.
from __future__ import annotations

import hashlib
import json
import re
import signal
import struct
import time
import uuid
import zlib
from collections.abc import Callable, Iterator

import h2.exceptions
import pytest
from h2.settings import SettingCodes

from conftest import ServerProcess
from h2client import H2Client, StreamResult
from rawhttp import events, progress, release, serve, wait_stalled
from wsraw import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Frame,
    apply_mask,
    close_payload,
    fragmented,
    frame,
)

APP = "ws_app:app"
RunServer = Callable[..., ServerProcess]
PRINT = {"WS_APP_PRINT": "1"}
CANCEL = 0x8
NO_ERROR = 0x0
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
MESSAGE = 65536
RSS_GROWTH_LIMIT_KIB = 32 * 1024
WS_LINE = re.compile(
    r"^(?P<client>127\.0\.0\.1:\d+) - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2}\] "
    r'"(?P<action>WS[A-Z]+) (?P<path>[^"]*)" - -$'
)


def pump_for(client: H2Client, seconds: float, condition: Callable[[], bool]) -> bool:
    """Read (and dispatch) until `condition()` holds or `seconds` have passed: whether it holds.
    (H2Client.pump waits up to the client's whole timeout in each read.)"""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        client._read_once(deadline)
    return True


class StreamOver(Exception):
    """The server ended or reset the WebSocket's stream before a complete frame."""


class H2WebSocket:
    """One RFC 8441 WebSocket on a stream of an H2Client (reads bounded by its timeout)."""

    def __init__(self, client: H2Client, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.deflate = False
        self.pongs: list[bytes] = []  # payloads of the pongs read_message() skipped
        self._inflater = zlib.decompressobj(-15)
        self._compressor: zlib._Compress | None = None

    @property
    def result(self) -> StreamResult:
        return self.client.streams[self.stream_id]

    def negotiated(self) -> None:
        """Take the agreed extensions from the 200 response (permessage-deflate, RFC 7692)."""
        offer = (self.result.header(b"sec-websocket-extensions") or b"").decode()
        if "permessage-deflate" not in offer:
            return
        self.deflate = True
        bits = re.search(r"client_max_window_bits=(\d+)", offer)
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, -int(bits[1]) if bits else -15)

    # -- sending ---------------------------------------------------------------------------------

    def send(self, data: bytes, end_stream: bool = False) -> None:
        """Write `data` into the stream as the server's windows allow (reading meanwhile)."""
        conn = self.client.conn
        view = memoryview(data)
        deadline = time.monotonic() + self.client.timeout
        while view:
            window = min(
                conn.local_flow_control_window(self.stream_id), conn.max_outbound_frame_size
            )
            if window <= 0:
                opened = pump_for(
                    self.client,
                    deadline - time.monotonic(),
                    lambda: conn.local_flow_control_window(self.stream_id) > 0,
                )
                assert opened, "the server never opened its window"
                continue
            piece, view = bytes(view[:window]), view[window:]
            conn.send_data(self.stream_id, piece, end_stream=end_stream and not view)
            self.client.flush()
        if end_stream and not data:
            self.end()

    def send_until_blocked(self, data: bytes, limit: int) -> tuple[int, bytes]:
        """Send `data` over and over until the stream's window stays shut for 2 s (the server
        has stopped crediting it). Returns the copies begun and the unsent rest of the last
        one. Fails past `limit` bytes."""
        conn = self.client.conn
        sent = copies = 0
        pending = memoryview(b"")
        while True:
            if not pending:
                assert sent < limit, f"the server took {sent} bytes and never stopped"
                pending = memoryview(data)
                copies += 1
            window = min(
                conn.local_flow_control_window(self.stream_id), conn.max_outbound_frame_size
            )
            if window <= 0:
                pump_for(
                    self.client, 2.0, lambda: conn.local_flow_control_window(self.stream_id) > 0
                )
                if conn.local_flow_control_window(self.stream_id) <= 0:
                    return copies, bytes(pending)
                continue
            piece, pending = bytes(pending[:window]), pending[window:]
            conn.send_data(self.stream_id, piece)
            self.client.flush()
            sent += len(piece)

    def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: object) -> None:
        self.send(frame(opcode, payload, **kwargs))  # type: ignore[arg-type]

    def send_text(self, text: str, fragments: int = 1) -> None:
        self.send(fragmented(TEXT, text.encode(), fragments))

    def send_binary(self, data: bytes, fragments: int = 1) -> None:
        self.send(fragmented(BINARY, data, fragments))

    def send_compressed(self, opcode: int, data: bytes) -> None:
        """One permessage-deflate message: RSV1 and the raw DEFLATE body (RFC 7692 7.2.1)."""
        assert self._compressor is not None, "permessage-deflate was not agreed"
        body = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        assert body.endswith(b"\x00\x00\xff\xff")
        self.send_frame(opcode, body[:-4], rsv=4)

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        self.send_frame(CLOSE, close_payload(code, reason))

    def end(self) -> None:
        """END_STREAM from our side (the client's FIN), unless the stream is already gone."""
        try:
            self.client.conn.end_stream(self.stream_id)
        except h2.exceptions.ProtocolError:
            return
        self.client.flush()

    def reset(self, code: int = CANCEL) -> None:
        self.client.reset(self.stream_id, code)

    # -- receiving -------------------------------------------------------------------------------

    def _frame_size(self) -> int | None:
        """The size of the complete frame at the start of the received data, if it is there."""
        body = self.result.body
        if len(body) < 2:
            return None
        length = body[1] & 0x7F
        head = 2
        if length == 126:
            head = 4
            if len(body) < head:
                return None
            length = struct.unpack_from("!H", body, 2)[0]
        elif length == 127:
            head = 10
            if len(body) < head:
                return None
            length = struct.unpack_from("!Q", body, 2)[0]
        if body[1] & 0x80:
            head += 4
        total = int(head + length)
        return total if len(body) >= total else None

    def read_frame(self) -> Frame:
        """The next frame from the server (which must not mask it: RFC 6455 5.1)."""
        result = self.result
        self.client.pump(
            lambda: self._frame_size() is not None or result.done, what="a WebSocket frame"
        )
        size = self._frame_size()
        if size is None:
            raise StreamOver(f"stream ended (reset={result.reset}) with {bytes(result.body)!r}")
        raw = bytes(result.body[:size])
        del result.body[:size]
        first, second = raw[0], raw[1]
        head = {126: 4, 127: 10}.get(second & 0x7F, 2)
        masked = bool(second & 0x80)
        payload = raw[head + 4 :] if masked else raw[head:]
        if masked:
            payload = apply_mask(payload, raw[head : head + 4])
        received = Frame(bool(first & 0x80), (first >> 4) & 7, first & 0xF, payload, masked)
        assert not masked, f"the server masked a frame: {received}"
        return received

    def read_message(self) -> Frame:
        """The next whole data message (fragments joined, permessage-deflate undone, RSV of
        its first frame kept); a close frame is returned as it is. Pings are answered, pongs
        remembered in `pongs`."""
        parts: list[bytes] = []
        first: Frame | None = None
        while True:
            current = self.read_frame()
            if current.opcode == CLOSE:
                return current
            if current.opcode == PING:
                self.send_frame(PONG, current.payload)
                continue
            if current.opcode == PONG:
                self.pongs.append(current.payload)
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
                    payload = self._inflater.decompress(payload + b"\x00\x00\xff\xff")
                return Frame(True, first.rsv, first.opcode, payload)

    def read_text(self) -> str:
        message = self.read_message()
        assert message.opcode == TEXT, message
        return message.text

    def read_binary(self) -> bytes:
        message = self.read_message()
        assert message.opcode == BINARY, message
        return message.payload

    def expect_close(self, reply: bool = True) -> tuple[int | None, str]:
        """Read until the server's close frame (skipping data messages), answer it (with
        `reply`), wait for the server's END_STREAM, then end our side. Returns (code, reason)."""
        while True:
            message = self.read_message()
            if message.opcode == CLOSE:
                break
        code, reason = message.close_code, message.close_reason
        if reply:
            self.send_close(code if code not in (None, 1005, 1006, 1015) else 1000)
        result = self.result
        self.client.pump(lambda: result.done, what="the server's END_STREAM after its close")
        assert result.ended and result.reset is None, result
        assert not result.body, f"data after the close frame: {bytes(result.body)!r}"
        self.end()
        return code, reason

    def close_handshake(self, code: int = 1000, reason: str = "") -> tuple[int | None, str]:
        """Client-initiated close: ours, then the server's answer and END_STREAM."""
        self.send_close(code, reason)
        return self.expect_close(reply=False)


def open_ws(
    client: H2Client,
    path: str,
    *,
    version: str | None = "13",
    subprotocols: tuple[str, ...] = (),
    extensions: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> H2WebSocket:
    """Send an extended CONNECT for `path` and wait for the response head (or the stream's
    end); pass version=None to leave Sec-WebSocket-Version out."""
    stream_id = client.conn.get_next_available_stream_id()
    fields = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", b"127.0.0.1"),
    ]
    if version is not None:
        fields.append((b"sec-websocket-version", version.encode()))
    if subprotocols:
        fields.append((b"sec-websocket-protocol", ", ".join(subprotocols).encode()))
    if extensions is not None:
        fields.append((b"sec-websocket-extensions", extensions.encode()))
    fields += [(name.lower().encode(), value.encode()) for name, value in headers or []]
    client.streams[stream_id] = StreamResult(stream_id)
    client.conn.send_headers(stream_id, fields)
    client.flush()
    ws = H2WebSocket(client, stream_id)
    result = ws.result
    client.pump(lambda: result.status is not None or result.done, what=f"the answer to {path}")
    ws.negotiated()
    return ws


def connect(client: H2Client, path: str, **kwargs: object) -> H2WebSocket:
    """An accepted WebSocket: the extended CONNECT answered 200."""
    ws = open_ws(client, path, **kwargs)  # type: ignore[arg-type]
    result = ws.result
    assert result.status == 200, (result.status, result.headers, bytes(result.body), result.reset)
    assert not result.done, result
    return ws


def refused(client: H2Client, path: str, **kwargs: object) -> StreamResult:
    """A WebSocket the server answers with an HTTP response: the complete stream."""
    ws = open_ws(client, path, **kwargs)  # type: ignore[arg-type]
    result = client.response(ws.stream_id)
    assert result.status is not None and result.status != 200, result
    assert result.ended, result
    return result


@pytest.fixture(scope="module", params=["uvloop", "asyncio"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    with serve(APP, "--loop", request.param) as proc:
        yield proc


@pytest.fixture
def client(server: ServerProcess) -> Iterator[H2Client]:
    with H2Client(server.port) as h2_client:
        yield h2_client


def new_tag() -> str:
    return uuid.uuid4().hex


def last_event(server: ServerProcess, tag: str, want: str, timeout: float = 10.0) -> str:
    found = events(server, tag, want, timeout)
    matching = [event for event in found if event.startswith(tuple(want.split("|")))]
    assert matching, found
    return matching[-1]


# -- the handshake ---------------------------------------------------------------------------------


def test_server_announces_extended_connect(client: H2Client) -> None:
    """RFC 8441 3: SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 in the server's SETTINGS."""
    assert client.setting(SettingCodes.ENABLE_CONNECT_PROTOCOL) == 1


def test_accept_is_200_and_the_stream_stays_open(server: ServerProcess, client: H2Client) -> None:
    tag = new_tag()
    ws = connect(client, f"/echo?tag={tag}")
    headers = dict(ws.result.headers)
    # RFC 8441 5: no Sec-WebSocket-Accept (no key was sent), no HTTP/1.1 upgrade fields.
    for name in (b"sec-websocket-accept", b"upgrade", b"connection", b"content-length"):
        assert name not in headers, ws.result.headers
    assert b"sec-websocket-extensions" not in headers  # none offered
    assert b"sec-websocket-protocol" not in headers
    ws.send_text("hello over h2")
    assert ws.read_text() == "hello over h2"
    assert ws.close_handshake() == (1000, "")
    found = events(server, tag, "disconnect")
    assert found[:3] == ["scope:websocket", "first:websocket.connect", "accepted"], found
    assert found[-1] == "disconnect:1000:", found


def test_app_headers_on_accept(client: H2Client) -> None:
    ws = connect(client, "/echo?h=x-accepted:yes;set-cookie:a%3Db")
    assert ws.result.header(b"x-accepted") == b"yes"
    assert ws.result.header(b"set-cookie") == b"a=b"
    ws.close_handshake()


def test_subprotocol_chosen_by_the_app(server: ServerProcess, client: H2Client) -> None:
    ws = connect(client, "/echo?subprotocol=first", subprotocols=("chat.v2", "chat.v1"))
    assert ws.result.header(b"sec-websocket-protocol") == b"chat.v2"
    ws.close_handshake()
    ws = connect(client, "/echo?subprotocol=chat.v1", subprotocols=("chat.v2", "chat.v1"))
    assert ws.result.header(b"sec-websocket-protocol") == b"chat.v1"
    ws.close_handshake()
    # Offered but none chosen: no Sec-WebSocket-Protocol in the answer.
    ws = connect(client, "/echo", subprotocols=("chat.v2",))
    assert ws.result.header(b"sec-websocket-protocol") is None
    ws.close_handshake()


def test_scope_of_an_h2_websocket(client: H2Client) -> None:
    ws = connect(
        client,
        "/scope/a%20b?x=1&y=%C3%A9",
        subprotocols=("one", "two"),
        headers=[("x-custom", "custom value"), ("origin", "http://example.test")],
    )
    scope = json.loads(ws.read_text())
    assert scope["type"] == "websocket"
    assert scope["http_version"] == "2"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/scope/a b"
    assert scope["raw_path"] == "/scope/a%20b"
    assert scope["query_string"] == "x=1&y=%C3%A9"
    assert scope["subprotocols"] == ["one", "two"]
    assert "method" not in scope
    assert "websocket.http.response" in scope["extensions"]
    headers = [tuple(pair) for pair in scope["headers"]]
    assert ("x-custom", "custom value") in headers
    assert ("origin", "http://example.test") in headers
    assert ("sec-websocket-version", "13") in headers
    assert ("host", "127.0.0.1") in headers  # from :authority
    assert not [name for name, _ in headers if name.startswith(":")], headers
    assert scope["server"][0] == "127.0.0.1"
    assert scope["client"][0] == "127.0.0.1"
    ws.close_handshake()


@pytest.mark.parametrize("version", [None, "8", "13, 8", ""])
def test_missing_or_wrong_websocket_version_is_400(client: H2Client, version: str | None) -> None:
    result = refused(client, "/echo", version=version)
    assert result.status == 400, result
    assert result.header(b"sec-websocket-version") == b"13"
    # The connection serves on.
    assert connect(client, "/echo").close_handshake() == (1000, "")


def test_close_before_accept_is_403(server: ServerProcess, client: H2Client) -> None:
    tag = new_tag()
    result = refused(client, f"/reject?tag={tag}")
    assert result.status == 403, result
    assert client.get("/plain").status == 200
    found = events(server, tag, "disconnect")
    assert "rejected" in found, found
    # As over HTTP/1.1: after the refusal the app's receive() gives websocket.disconnect.
    assert found[-1].startswith("disconnect:"), found


def test_denial_response_status_headers_and_body(server: ServerProcess, client: H2Client) -> None:
    tag = new_tag()
    result = refused(client, f"/deny?tag={tag}&status=401&body=no%20entry&h=x-why:token&parts=3")
    assert result.status == 401
    assert bytes(result.body) == b"no entry"
    assert result.header(b"x-why") == b"token"
    assert result.header(b"content-type") == b"text/plain"
    assert client.get("/plain").status == 200
    found = events(server, tag, "disconnect")
    assert found[:4] == [
        "scope:websocket",
        "first:websocket.connect",
        "extension:True",
        "denied",
    ], found
    assert found[-1].startswith("disconnect:"), found


def test_exception_before_accept_is_500(server: ServerProcess, client: H2Client) -> None:
    assert refused(client, "/raise-before-accept").status == 500
    server.wait_for("ws_app failed before accept", "stderr")


# -- messages --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [5, MESSAGE, 1 << 20], ids=["small", "64KiB", "1MiB"])
def test_text_and_binary_echo(client: H2Client, size: int) -> None:
    ws = connect(client, "/echo")
    # Multi-byte characters, at most `size` bytes of UTF-8 (the server's default limit is 1 MiB).
    text = ("héllo ✓ " * (size // 8 + 1)).encode()[:size].decode("utf-8", "ignore")
    ws.send_text(text)
    assert ws.read_text() == text
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    ws.send_binary(data)
    assert ws.read_binary() == data
    assert ws.close_handshake() == (1000, "")


def test_empty_messages(client: H2Client) -> None:
    ws = connect(client, "/echo")
    ws.send_text("")
    message = ws.read_message()
    assert (message.opcode, message.payload) == (TEXT, b"")
    ws.send_binary(b"")
    message = ws.read_message()
    assert (message.opcode, message.payload) == (BINARY, b"")
    ws.close_handshake()


def test_many_messages_in_order(client: H2Client) -> None:
    ws = connect(client, "/echo")
    ws.send(b"".join(frame(TEXT, f"message {i}".encode()) for i in range(200)))
    assert [ws.read_text() for _ in range(200)] == [f"message {i}" for i in range(200)]
    ws.close_handshake()


def test_frames_sent_with_the_extended_connect_reach_the_app(
    server: ServerProcess, client: H2Client
) -> None:
    """RFC 8441 lets a client send WebSocket frames right behind its extended CONNECT, before
    the server's 200: frames in the same write as the request are kept for the app and
    delivered once it has accepted, in order, before what comes later."""
    tag = new_tag()
    stream_id = client.conn.get_next_available_stream_id()
    client.streams[stream_id] = StreamResult(stream_id)
    fields = [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", f"/echo?tag={tag}".encode()),
        (b":authority", b"127.0.0.1"),
        (b"sec-websocket-version", b"13"),
    ]
    client.conn.send_headers(stream_id, fields)
    client.conn.send_data(stream_id, frame(TEXT, b"early") + frame(BINARY, b"\x00\x01\x02"))
    client.flush()  # the request and both frames in one write
    ws = H2WebSocket(client, stream_id)
    result = ws.result
    client.pump(lambda: result.status is not None or result.done, what="the answer")
    assert result.status == 200, result
    assert ws.read_text() == "early"
    assert ws.read_binary() == b"\x00\x01\x02"
    ws.send_text("later")
    assert ws.read_text() == "later"
    assert ws.close_handshake() == (1000, "")
    found = events(server, tag, "disconnect")
    assert found[:3] == ["scope:websocket", "first:websocket.connect", "accepted"], found


def test_fragmented_messages_with_a_ping_between_fragments(client: H2Client) -> None:
    ws = connect(client, "/echo")
    ws.send_text("fragmented text message ✓", fragments=4)
    assert ws.read_text() == "fragmented text message ✓"
    data = bytes(range(256)) * 1024
    ws.send_binary(data, fragments=7)
    assert ws.read_binary() == data
    # RFC 6455 5.4: control frames may come between the fragments of a message.
    ws.send(
        frame(TEXT, b"first ", fin=False)
        + frame(PING, b"in between")
        + frame(CONTINUATION, b"second ", fin=False)
        + frame(CONTINUATION, b"third", fin=True)
    )
    assert ws.read_text() == "first second third"
    assert ws.pongs == [b"in between"]
    ws.close_handshake()


def test_ping_is_answered_with_its_payload(client: H2Client) -> None:
    ws = connect(client, "/echo")
    ws.send_frame(PING, b"are you there")
    pong = ws.read_frame()
    assert (pong.opcode, pong.payload, pong.fin) == (PONG, b"are you there", True)
    ws.send_frame(PING)
    pong = ws.read_frame()
    assert (pong.opcode, pong.payload) == (PONG, b"")
    ws.close_handshake()


def test_permessage_deflate_negotiated_and_working(client: H2Client) -> None:
    ws = connect(client, "/echo", extensions=DEFLATE_OFFER)
    agreed = ws.result.header(b"sec-websocket-extensions")
    assert agreed is not None and agreed.startswith(b"permessage-deflate"), ws.result.headers
    assert ws.deflate
    text = "compress me, compress me again ✓ " * 2000
    ws.send_compressed(TEXT, text.encode())
    echoed = ws.read_message()
    assert (echoed.opcode, echoed.payload.decode()) == (TEXT, text)
    assert echoed.rsv & 4, "the server's answer was not compressed"
    data = bytes(range(256)) * 1024
    ws.send_compressed(BINARY, data)
    echoed = ws.read_message()
    assert (echoed.opcode, echoed.payload) == (BINARY, data)
    # Uncompressed messages stay allowed (RSV1 clear).
    ws.send_text("plain")
    assert ws.read_text() == "plain"
    # Context takeover: the same text again compresses against what came before.
    ws.send_compressed(TEXT, text.encode())
    assert ws.read_text() == text
    assert ws.close_handshake() == (1000, "")


def test_app_closes_with_code_and_reason(server: ServerProcess, client: H2Client) -> None:
    tag = new_tag()
    ws = connect(client, f"/close?tag={tag}&code=4001&reason=custom%20reason&first=1")
    ws.send_text("one message first")
    assert ws.expect_close() == (4001, "custom reason")
    found = events(server, tag, "disconnect")
    assert "text:17" in found and "closed" in found, found
    assert found[-1] == "disconnect:4001:custom reason", found
    assert client.get("/plain").status == 200


def test_client_close_is_echoed_and_the_stream_ended(
    server: ServerProcess, client: H2Client
) -> None:
    tag = new_tag()
    ws = connect(client, f"/echo?tag={tag}")
    assert ws.close_handshake(1000, "bye") == (1000, "bye")
    assert last_event(server, tag, "disconnect") == "disconnect:1000:bye"
    # The connection serves on, and the finished stream was not reset afterwards.
    assert client.get("/plain").status == 200
    assert ws.result.reset is None


def test_client_close_with_another_code(server: ServerProcess, client: H2Client) -> None:
    tag = new_tag()
    ws = connect(client, f"/echo?tag={tag}")
    assert ws.close_handshake(4321, "going") == (4321, "going")
    assert last_event(server, tag, "disconnect") == "disconnect:4321:going"


def test_exception_after_accept_is_1011(server: ServerProcess, client: H2Client) -> None:
    tag = new_tag()
    ws = connect(client, f"/raise-after-accept?tag={tag}&first=1")
    ws.send_text("trigger")
    code, _ = ws.expect_close()
    assert code == 1011
    server.wait_for("ws_app failed after accept", "stderr")
    assert client.get("/plain").status == 200


def test_app_returning_without_close_closes_with_1000(client: H2Client) -> None:
    ws = connect(client, "/return-without-close")
    assert ws.read_text() == "bye"
    assert ws.expect_close()[0] == 1000


def test_client_reset_is_a_1006_disconnect(server: ServerProcess, client: H2Client) -> None:
    """RST_STREAM drops the WebSocket alone: its app gets websocket.disconnect 1006 (RFC 6455
    7.1.5: no close frame), and the same connection serves on."""
    tag = new_tag()
    ws = connect(client, f"/echo?tag={tag}")
    other = connect(client, "/echo")
    ws.send_text("before the reset")
    assert ws.read_text() == "before the reset"
    ws.reset(CANCEL)
    # The side channel over the same connection tells what the app got.
    result = client.get(f"/events?tag={tag}&want=disconnect&timeout=10")
    assert result.status == 200
    found = json.loads(result.body)
    assert found[-1] == "disconnect:1006:", found
    other.send_text("still here")
    assert other.read_text() == "still here"
    assert other.close_handshake() == (1000, "")
    assert client.get("/plain").status == 200


def test_app_send_after_reset_learns_of_the_disconnect(
    server: ServerProcess, client: H2Client
) -> None:
    tag = new_tag()
    ws = connect(client, f"/after-disconnect?tag={tag}")
    last_event(server, tag, "accepted")
    ws.reset(CANCEL)
    found = events(server, tag, "raised|sent")
    assert "disconnect:1006:" in found, found
    assert found[-1] == "raised:ClientDisconnected:True", found


# -- limits ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited() -> Iterator[ServerProcess]:
    with serve(APP, "--websocket-max-message-size", "65536") as proc:
        yield proc


@pytest.mark.parametrize("fragments", [1, 3])
def test_message_over_the_size_limit_is_1009(limited: ServerProcess, fragments: int) -> None:
    tag = new_tag()
    with H2Client(limited.port) as h2_client:
        ws = connect(h2_client, f"/record?tag={tag}")
        ws.send_binary(b"x" * 65536)  # at the limit: fine
        assert last_event(limited, tag, "bytes") == "bytes:65536"
        ws.send_binary(b"y" * 65537, fragments=fragments)
        assert ws.expect_close()[0] == 1009
        assert last_event(limited, tag, "disconnect").startswith("disconnect:1009:")
        assert h2_client.get("/plain").status == 200


# -- several at once on one connection -------------------------------------------------------------


def test_websockets_and_requests_multiplexed(server: ServerProcess, client: H2Client) -> None:
    sockets = [connect(client, f"/echo?n={index}") for index in range(6)]
    requests = [client.request(f"/plain/{index}") for index in range(6)]
    for round_ in range(3):
        for index, ws in enumerate(sockets):
            ws.send_text(f"ws {index} round {round_}")
            ws.send_binary(bytes([index]) * (1000 * (index + 1)))
    for index, stream_id in enumerate(requests):
        result = client.response(stream_id)
        assert (result.status, bytes(result.body)) == (200, f"http GET /plain/{index}".encode())
    for round_ in range(3):
        for index, ws in enumerate(sockets):
            assert ws.read_text() == f"ws {index} round {round_}"
            assert ws.read_binary() == bytes([index]) * (1000 * (index + 1))
    # Large messages on two WebSockets at once interleave without mixing up.
    big = [hashlib.sha256(bytes([i])).digest() * 16384 for i in range(2)]
    sockets[0].send_binary(big[0])
    sockets[1].send_binary(big[1])
    assert sockets[1].read_binary() == big[1]
    assert sockets[0].read_binary() == big[0]
    for ws in sockets:
        assert ws.close_handshake() == (1000, "")
    assert client.get("/plain").status == 200


def test_connection_outlives_more_websockets_than_its_stream_limit(
    run_server: RunServer,
) -> None:
    """Closed WebSocket streams no longer count against SETTINGS_MAX_CONCURRENT_STREAMS
    (RFC 9113 5.1.2: only open and half-closed streams count)."""
    server = run_server(APP, "--h2-max-concurrent-streams", "3")
    with H2Client(server.port) as h2_client:
        for index in range(8):
            ws = connect(h2_client, f"/echo?n={index}")
            ws.send_text(f"number {index}")
            assert ws.read_text() == f"number {index}"
            assert ws.close_handshake() == (1000, "")
        for _ in range(4):
            other = connect(h2_client, "/echo")
            other.reset(CANCEL)
        result = h2_client.get("/plain")
        assert (result.status, result.reset) == (200, None)


def test_refused_websockets_do_not_hold_their_streams(run_server: RunServer) -> None:
    """A refused WebSocket's stream is over once its response is out: the app gets
    websocket.disconnect and returns, and the stream stops counting against
    SETTINGS_MAX_CONCURRENT_STREAMS."""
    server = run_server(APP, "--h2-max-concurrent-streams", "2")
    with H2Client(server.port) as h2_client:
        for index in range(3):
            tag = new_tag()
            assert refused(h2_client, f"/reject?tag={tag}").status == 403
            assert last_event(server, tag, "disconnect").startswith("disconnect:")
            tag = new_tag()
            assert refused(h2_client, f"/deny?tag={tag}&status=401").status == 401
            assert last_event(server, tag, "disconnect").startswith("disconnect:")
            result = h2_client.get(f"/plain/{index}")
            assert (result.status, result.reset) == (200, None)


# -- flow control ----------------------------------------------------------------------------------


def test_client_that_does_not_credit_the_window_blocks_the_app(server: ServerProcess) -> None:
    """The app floods; the client grants no window: the app's send() blocks, the server's memory
    stays bounded, and once the client reads again every message arrives in order."""
    tag = new_tag()
    count = 1024  # 64 MiB the app would send if nothing held it back
    before = server.rss_kib()
    with H2Client(server.port, auto_window=False, timeout=30) as h2_client:
        ws = connect(h2_client, f"/flood?tag={tag}&size={MESSAGE}&count={count}")
        stalled = wait_stalled(server, tag)
        assert stalled["sent"] < count * MESSAGE // 4, stalled
        grown = server.rss_kib() - before
        assert grown < RSS_GROWTH_LIMIT_KIB, f"server RSS grew by {grown} KiB while stalled"
        assert not progress(server, tag)["done"]
        # Read again: credit what came, and everything from now on.
        h2_client.auto_window = True
        h2_client.credit(ws.stream_id, len(ws.result.body))
        for index in range(count):
            data = ws.read_binary()
            assert len(data) == MESSAGE
            assert int.from_bytes(data[:8], "big") == index
        assert ws.read_text() == "done"
        assert progress(server, tag)["done"]
        assert ws.close_handshake() == (1000, "")
    assert last_event(server, tag, "disconnect") == "disconnect:1000:"


def test_app_that_never_receives_stops_crediting_the_stream(server: ServerProcess) -> None:
    """The app does not call receive(): the server stops opening the stream's window (the
    client cannot make it buffer more), and once the app reads, every message arrives."""
    tag = new_tag()
    payload = bytes(range(256)) * (MESSAGE // 256)
    with H2Client(server.port, timeout=30) as h2_client:
        ws = connect(h2_client, f"/never-receive?tag={tag}")
        last_event(server, tag, "accepted")
        before = server.rss_kib()
        frames, rest = ws.send_until_blocked(frame(BINARY, payload), limit=64 << 20)
        grown = server.rss_kib() - before
        assert grown < RSS_GROWTH_LIMIT_KIB, f"server RSS grew by {grown} KiB"
        # Other streams are not held up by this one.
        assert h2_client.get("/plain").status == 200
        release(server, tag)
        ws.send(rest)
        ws.send_frame(TEXT, b"end")
        assert ws.read_text() == f"received:{frames}:{frames * MESSAGE}"
        ws.send_text("and then echo")
        assert ws.read_text() == "and then echo"
        assert ws.close_handshake() == (1000, "")


# -- shutdown and logging --------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_sigterm_closes_the_websocket_with_1001_then_the_connection(
    run_server: RunServer, loop: str
) -> None:
    server = run_server(APP, "--loop", loop, env=PRINT)
    tag = new_tag()
    with H2Client(server.port, timeout=15) as h2_client:
        ws = connect(h2_client, f"/echo?tag={tag}")
        ws.send_text("before")
        assert ws.read_text() == "before"
        server.signal(signal.SIGTERM)
        code, _ = ws.expect_close()
        assert code == 1001
        goaway = h2_client.wait_goaway()
        assert goaway.error_code == NO_ERROR
        # The WebSocket's stream was taken in: GOAWAY's last stream id covers it.
        assert goaway.last_stream_id is not None and goaway.last_stream_id >= ws.stream_id
        h2_client.wait_closed()
    server.wait_for(f"ws_app event {tag} disconnect:1001:", "stderr", timeout=15)
    assert server.wait_exit() == 0


def test_access_log_lines(run_server: RunServer) -> None:
    server = run_server(APP)
    with H2Client(server.port) as h2_client:
        ws = connect(h2_client, "/echo")
        client_port = h2_client.sock.getsockname()[1]
        server.wait_for(r'"WSCONNECT /echo" - -$', "stdout")
        ws.send_text("logged")
        assert ws.read_text() == "logged"
        ws.close_handshake()
        server.wait_for(r'"WSDISCONNECT /echo" - -$', "stdout")
        assert refused(h2_client, "/reject").status == 403
        server.wait_for(r'"WSREJECT /reject" - -$', "stdout")
    lines = [m for m in map(WS_LINE.match, server.stdout.splitlines()) if m is not None]
    assert [(m["action"], m["path"]) for m in lines] == [
        ("WSCONNECTING", "/echo"),
        ("WSCONNECT", "/echo"),
        ("WSDISCONNECT", "/echo"),
        ("WSCONNECTING", "/reject"),
        ("WSREJECT", "/reject"),
    ], server.stdout
    assert {m["client"] for m in lines} == {f"127.0.0.1:{client_port}"}
