# The raw-frame client of tests/wsraw.py checked against an independent implementation: the
# `websockets` library's own server, in this process. If these fail, the WebSocket end-to-end
# tests cannot be trusted (whatever laurelin does), so they run first and without laurelin.
from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

import wsraw
from wsraw import BINARY, CLOSE, PING, PONG, TEXT, WSClient


def echo_handler(connection: ServerConnection) -> None:
    try:
        for message in connection:
            if message == "close-4321":
                connection.close(4321, "asked to")
                return
            connection.send(message)
    except ConnectionClosed:
        pass


@pytest.fixture(scope="module")
def reference() -> Iterator[Server]:
    with serve(echo_handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server
        server.shutdown()
        thread.join(10)


@pytest.fixture(scope="module")
def reference_deflate() -> Iterator[Server]:
    with serve(echo_handler, "127.0.0.1", 0, max_size=1000) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server
        server.shutdown()
        thread.join(10)


def port_of(server: Server) -> int:
    return int(server.socket.getsockname()[1])


def test_accept_key_matches_rfc_example() -> None:
    # RFC 6455 section 1.3.
    assert wsraw.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_frame_encoding_matches_rfc_examples() -> None:
    # RFC 6455 section 5.7.
    assert wsraw.frame(TEXT, b"Hello", mask=False) == bytes.fromhex("810548656c6c6f")
    masked = wsraw.frame(TEXT, b"Hello", mask_key=bytes.fromhex("37fa213d"))
    assert masked == bytes.fromhex("818537fa213d7f9f4d5158")
    assert wsraw.frame(TEXT, b"Hel", fin=False, mask=False) == bytes.fromhex("010348656c")
    assert wsraw.frame(PING, b"Hello", mask=False) == bytes.fromhex("890548656c6c6f")
    assert wsraw.frame(BINARY, b"x" * 256, mask=False)[:4] == bytes.fromhex("827e0100")
    assert wsraw.frame(BINARY, b"x" * 65536, mask=False)[:10] == bytes.fromhex(
        "827f0000000000010000"
    )


def test_handshake_and_echo(reference: Server) -> None:
    with wsraw.connect(port_of(reference), "/") as ws:
        ws.send_text("héllo")
        assert ws.read_text() == "héllo"
        ws.send_binary(b"\x00\xff" * 40000)
        assert ws.read_binary() == b"\x00\xff" * 40000
        ws.send_text("in three parts", fragments=3)
        assert ws.read_text() == "in three parts"
        ws.send_text("", fragments=1)
        assert ws.read_text() == ""
        assert ws.close_handshake(1000, "bye") == (1000, "bye")


def test_ping_gets_pong(reference: Server) -> None:
    with wsraw.connect(port_of(reference), "/") as ws:
        ws.send_frame(PING, b"are you there")
        pong = ws.read_frame()
        assert (pong.opcode, pong.payload) == (PONG, b"are you there")


def test_server_close_is_read_with_code_and_reason(reference: Server) -> None:
    with wsraw.connect(port_of(reference), "/") as ws:
        ws.send_text("close-4321")
        assert ws.expect_close() == (4321, "asked to")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (wsraw.frame(TEXT, b"unmasked", mask=False), 1002),
        (wsraw.frame(0x3, b"reserved opcode"), 1002),
        (wsraw.frame(TEXT, b"rsv", rsv=2), 1002),
        (wsraw.frame(TEXT, b"\xff\xfe"), 1007),
        (wsraw.frame(CLOSE, wsraw.close_payload(999)), 1002),
        (wsraw.frame(PING, b"x" * 126), 1002),
        (wsraw.frame(0x0, b"orphan continuation"), 1002),
        (wsraw.frame(PING, b"fragmented", fin=False), 1002),
    ],
    ids=["unmasked", "opcode", "rsv", "utf8", "close-999", "ping-126", "continuation", "frag-ping"],
)
def test_protocol_errors_as_a_reference_server_sees_them(
    reference: Server, raw: bytes, code: int
) -> None:
    """The same byte sequences the laurelin tests send get these codes from `websockets`."""
    with wsraw.connect(port_of(reference), "/") as ws:
        ws.send(raw)
        assert ws.expect_close()[0] == code


def test_deflate_bomb_payload_is_valid_permessage_deflate(reference_deflate: Server) -> None:
    """wsraw.deflate() makes what a permessage-deflate server inflates: a small body gets
    echoed, a bomb gets 1009 from a server with max_size=1000."""
    extensions = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
    port = port_of(reference_deflate)
    with wsraw.connect(port, "/", extensions=extensions) as ws:
        assert ws.deflate
        ws.send_frame(TEXT, wsraw.deflate([b"small"]), rsv=4)
        assert ws.read_text() == "small"
    with wsraw.connect(port, "/", extensions=extensions) as ws:
        ws.send_frame(BINARY, wsraw.deflate([b"\0" * 65536] * 16), rsv=4)
        assert ws.expect_close()[0] == 1009


def test_websockets_client_helper(reference: Server) -> None:
    with wsraw.client(f"ws://127.0.0.1:{port_of(reference)}/") as ws:
        ws.send("library")
        assert ws.recv(10) == "library"


def test_client_sees_eof_as_connection_closed() -> None:
    """read_eof_or_close() returns None when the peer closes without a close frame."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = WSClient(listener.getsockname()[1])
        conn, _ = listener.accept()
        conn.close()
        assert client.read_eof_or_close(5) is None
        client.close()
