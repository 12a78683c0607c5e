# TLS end to end, for HTTP/1.1 and WebSocket over it. --ssl-certfile/--ssl-keyfile turn every
# listener into https (logged as "Listening on https://..."); Daphne's ssl: endpoint serves TLS on
# its own port next to a plain one, with an extraCertChain. The scope says "https"/"wss" and
# carries the ASGI `tls` extension (server certificate, client certificate chain and name, TLS
# version and IANA cipher suite id), absent on plain connections. ALPN picks h2 (http/1.1 with
# --http 1); client
# certificates are required (2) or optional (1) against --ssl-ca-certs; --ssl-ciphers limits
# TLS 1.2 suites; an encrypted key opens with --ssl-keyfile-password. A silent or stalled client is
# dropped after --ssl-handshake-timeout, plain HTTP sent to a TLS port is dropped, and neither
# stops the server. Start-up failures (missing files, wrong password) are one line and exit 1,
# --ssl-keyfile without --ssl-certfile is a usage error. Certificates come from trustme; every
# client trusts only the test CA and talks to 127.0.0.1.
from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import wsraw
from cli_process import Launched, run_to_exit
from conftest import ServerProcess, free_port
from rawhttp import TIMEOUT, ConnectionClosed, RawClient, build

APP = "tls_app:app"
PASSWORD = "correct horse battery staple"
CLIENT_NAME = "laurelin test client"
TLS_KEYS = {
    "server_cert",
    "client_cert_chain",
    "client_cert_name",
    "client_cert_error",
    "tls_version",
    "cipher_suite",
}
TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
# IANA ids of the TLS 1.3 suites, and of two TLS 1.2 ECDSA suites (trustme keys are ECDSA).
TLS13_SUITES = {0x1301, 0x1302, 0x1303}
ECDHE_ECDSA_AES128_GCM_SHA256 = 0xC02B
ECDHE_ECDSA_AES256_GCM_SHA384 = 0xC02C


# -- certificates ---------------------------------------------------------------------------------


@dataclass
class PKI:
    """Certificates made by trustme, written as PEM files for the server's options."""

    ca_file: Path  # the test CA, the only one clients trust
    server: trustme.LeafCert  # for 127.0.0.1 and localhost, issued by the test CA
    cert_file: Path
    key_file: Path
    combined_file: Path  # certificate and key in one file
    encrypted_key_file: Path  # key_file encrypted with PASSWORD
    client: trustme.LeafCert  # a client certificate issued by the test CA
    stranger: trustme.LeafCert  # a client certificate issued by another CA
    leaf: trustme.LeafCert  # a server certificate issued by an intermediate of the test CA
    leaf_file: Path  # that certificate alone
    leaf_key_file: Path
    chain_file: Path  # the intermediate CA's certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("127.0.0.1", "localhost")
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSWORD.encode()),
    )

    def write(name: str, data: bytes) -> Path:
        path = directory / name
        path.write_bytes(data)
        return path

    server_pem = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    return PKI(
        ca_file=write("ca.pem", ca.cert_pem.bytes()),
        server=server,
        cert_file=write("cert.pem", server_pem),
        key_file=write("key.pem", server.private_key_pem.bytes()),
        combined_file=write("combined.pem", server_pem + server.private_key_pem.bytes()),
        encrypted_key_file=write("encrypted-key.pem", encrypted),
        client=ca.issue_cert("client.example", common_name=CLIENT_NAME),
        stranger=trustme.CA().issue_cert("client.example", common_name=CLIENT_NAME),
        leaf=leaf,
        leaf_file=write("leaf.pem", leaf.cert_chain_pems[0].bytes()),
        leaf_key_file=write("leaf-key.pem", leaf.private_key_pem.bytes()),
        chain_file=write("chain.pem", b"".join(b.bytes() for b in leaf.cert_chain_pems[1:])),
    )


def ssl_args(pki: PKI) -> list[str]:
    return ["--ssl-certfile", str(pki.cert_file), "--ssl-keyfile", str(pki.key_file)]


def der(pem: str | bytes) -> bytes:
    """A PEM certificate in DER, to compare certificates whatever their PEM line layout."""
    raw = pem.encode("ascii") if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificate(raw).public_bytes(serialization.Encoding.DER)


def leaf_der(cert: trustme.LeafCert) -> bytes:
    return der(cert.cert_chain_pems[0].bytes())


# -- clients --------------------------------------------------------------------------------------


def client_context(
    pki: PKI,
    cert: trustme.LeafCert | None = None,
    tls12_ciphers: str | None = None,
) -> ssl.SSLContext:
    """A client context trusting only the test CA; it presents `cert` if given, and with
    `tls12_ciphers` it speaks TLS 1.2 at most with those cipher suites."""
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if cert is not None:
        cert.configure_cert(context)
    if tls12_ciphers is not None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(tls12_ciphers)
    return context


class TLSClient(RawClient):
    """A tests/rawhttp.py RawClient over TLS (the handshake is done in the constructor)."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float = TIMEOUT) -> None:
        super().__init__(port, timeout=timeout)
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname="127.0.0.1")
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> TLSClient:
        return self

    @property
    def tls(self) -> ssl.SSLSocket:
        assert isinstance(self.sock, ssl.SSLSocket)
        return self.sock

    def scope(self) -> dict[str, Any]:
        """The scope tests/apps/tls_app.py saw for a GET /scope on this connection."""
        response = self.request(build("GET", "/scope"))
        assert response.status == 200, response.raw[:500]
        scope: dict[str, Any] = response.json()
        return scope


def tls_extension(scope: dict[str, Any]) -> dict[str, Any]:
    extensions = scope.get("extensions") or {}
    assert "tls" in extensions, scope
    tls: dict[str, Any] = extensions["tls"]
    assert set(tls) >= TLS_KEYS, tls
    return tls


def cipher_id(context: ssl.SSLContext, name: str) -> int:
    """The IANA id of the cipher suite OpenSSL calls `name` (OpenSSL's id is 0x0300XXXX)."""
    for cipher in context.get_ciphers():
        if cipher["name"] == name:
            return int(cipher["id"]) & 0xFFFF
    raise AssertionError(f"{name} is not among the client's cipher suites")


def https_get(port: int, context: ssl.SSLContext, path: str = "/") -> httpx.Response:
    with httpx.Client(verify=context, trust_env=False, timeout=TIMEOUT) as client:
        return client.get(f"https://127.0.0.1:{port}{path}")


def assert_refused(port: int, context: ssl.SSLContext) -> None:
    """The TLS handshake fails, or the first read after it does (where TLS 1.3 reports a
    refused client certificate): the request gets no response. A timeout is not a refusal."""
    try:
        with TLSClient(port, context) as client:
            client.send(build("GET", "/"))
            response = client.read_response()
    except (ssl.SSLError, ConnectionError, ConnectionClosed):
        return
    raise AssertionError(f"the server answered: {response.raw[:300]!r}")


# -- servers --------------------------------------------------------------------------------------


def wait_listening(server: ServerProcess, scheme: str, port: int) -> None:
    server.wait_for(rf"Listening on {scheme}://127\.0\.0\.1:{port}\b", "stderr")


def serve_tls(
    start_server: Callable[..., ServerProcess], *args: str, app: str = APP
) -> ServerProcess:
    """laurelin with `args` on a free port (-p), once it logged its https:// address."""
    port = free_port()
    server = start_server("-p", str(port), *args, app)
    wait_listening(server, "https", port)
    server.port = port
    return server


def two_ports() -> tuple[int, int]:
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def assert_one_line_failure(result: Launched, *named: str) -> str:
    """Exit status 1 after exactly one line (no traceback) that contains every `named`."""
    assert result.proc.returncode == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


# -- serving https --------------------------------------------------------------------------------


def test_https_serves_the_app_and_logs_an_https_address(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    server = serve_tls(start_server, *ssl_args(pki), app="basic:app")
    response = https_get(server.port, client_context(pki))
    assert response.status_code == 200
    assert response.text == "Hello, world!"
    assert response.http_version == "HTTP/1.1"
    assert "Listening on http://" not in server.stderr


def _tls_exchange_then_fin(port: int, context: ssl.SSLContext, request: bytes) -> bytes:
    """Over TLS: send `request`, then a TCP FIN without close_notify (SSLSocket.shutdown
    cannot do that and keep reading), then read what comes back until the server closes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)

    def pump() -> bool:
        """Ciphertext out, then ciphertext in; False at the server's EOF."""
        if outgoing.pending:
            sock.sendall(outgoing.read())
        data = sock.recv(65536)
        if not data:
            incoming.write_eof()
            return False
        incoming.write(data)
        return True

    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                assert pump(), "closed during the handshake"
        tls.write(request)
        sock.sendall(outgoing.read())
        sock.shutdown(socket.SHUT_WR)
        received = b""
        open_ = True
        while True:
            try:
                received += tls.read(65536)
            except ssl.SSLWantReadError:
                if not open_:
                    break
                open_ = pump()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
        return received
    finally:
        sock.close()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_request_then_fin_without_close_notify(
    start_server: Callable[..., ServerProcess], pki: PKI, loop: str
) -> None:
    """A client that half-closes right after its request still gets the response (a plain
    TCP FIN, no TLS close_notify: the TLS layer shuts down on it)."""
    if loop == "uvloop" and sys.version_info < (3, 12):
        # Without eager tasks the app answers in a later callback, and uvloop's TLS layer has
        # shut down on the bare FIN by then: the answer is lost, with or without this
        # server's write batch (so before it too). Python 3.12+ answers in the read callback.
        pytest.skip("uvloop's TLS drops a reply that comes after a bare FIN (Python < 3.12)")
    server = serve_tls(start_server, *ssl_args(pki), "--loop", loop, app="basic:app")
    received = _tls_exchange_then_fin(server.port, client_context(pki), build("GET", "/"))
    assert received.startswith(b"HTTP/1.1 200 OK\r\n"), received
    assert received.endswith(b"Hello, world!"), received


def test_http_scope_has_https_and_the_tls_extension(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    server = serve_tls(start_server, *ssl_args(pki))
    context = client_context(pki)
    with TLSClient(server.port, context) as client:
        scope = client.scope()
        version, cipher = client.tls.version(), client.tls.cipher()
    assert scope["type"] == "http"
    assert scope["scheme"] == "https"
    tls = tls_extension(scope)
    assert tls["server_cert"] is not None, "the server has its certificate: it should be given"
    assert der(tls["server_cert"]) == leaf_der(pki.server)
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert version == "TLSv1.3"  # Python's and OpenSSL's defaults on both sides
    assert tls["tls_version"] == 0x0304
    assert cipher is not None
    assert tls["cipher_suite"] == cipher_id(context, cipher[0])
    assert tls["cipher_suite"] in TLS13_SUITES


def test_tls12_version_and_cipher_suite_ids(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    server = serve_tls(start_server, *ssl_args(pki))
    context = client_context(pki, tls12_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    with TLSClient(server.port, context) as client:
        tls = tls_extension(client.scope())
        assert client.tls.version() == "TLSv1.2"
    assert tls["tls_version"] == 0x0303
    assert tls["cipher_suite"] == ECDHE_ECDSA_AES128_GCM_SHA256


def test_alpn_selects_h2_when_offered(start_server: Callable[..., ServerProcess], pki: PKI) -> None:
    server = serve_tls(start_server, *ssl_args(pki))
    context = client_context(pki)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with TLSClient(server.port, context) as client:
        assert client.tls.selected_alpn_protocol() == "h2"


def test_alpn_selects_http11_when_http2_is_off(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    server = serve_tls(start_server, *ssl_args(pki), "--http", "1")
    context = client_context(pki)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with TLSClient(server.port, context) as client:
        assert client.tls.selected_alpn_protocol() == "http/1.1"
        response = client.request(build("GET", "/"))
        assert response.status == 200
        assert response.body == b"tls app"
        assert client.request(build("GET", "/")).body == b"tls app"  # kept alive over TLS


def test_websocket_over_tls(start_server: Callable[..., ServerProcess], pki: PKI) -> None:
    server = serve_tls(start_server, *ssl_args(pki))
    url = f"wss://127.0.0.1:{server.port}/chat"
    with wsraw.client(url, ssl=client_context(pki)) as ws:
        scope = json.loads(ws.recv())
        ws.send("over tls")
        assert ws.recv() == "over tls"
        ws.send(b"\x00\x01\xff" * 1000)
        assert ws.recv() == b"\x00\x01\xff" * 1000
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "wss"
    tls = tls_extension(scope)
    assert tls["tls_version"] in TLS_VERSIONS.values()
    assert tls["client_cert_chain"] == []
    # The server goes on serving HTTP after the WebSocket is gone.
    assert https_get(server.port, client_context(pki)).text == "tls app"


def test_certfile_holding_the_key_needs_no_keyfile(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    """--ssl-keyfile's help: "The certificate's private key (PEM), unless --ssl-certfile holds
    it too"."""
    server = serve_tls(start_server, "--ssl-certfile", str(pki.combined_file))
    assert https_get(server.port, client_context(pki)).text == "tls app"


def test_ssl_certfile_makes_every_tcp_listener_tls(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    port, other = two_ports()
    server = start_server(
        "-p", str(port), "-e", f"tcp:{other}:interface=127.0.0.1", *ssl_args(pki), APP
    )
    wait_listening(server, "https", port)
    wait_listening(server, "https", other)
    for each in (port, other):
        with TLSClient(each, client_context(pki)) as client:
            assert client.scope()["scheme"] == "https"
    assert "Listening on http://" not in server.stderr


# -- Daphne's ssl: endpoint -----------------------------------------------------------------------


def test_ssl_endpoint_next_to_a_plain_endpoint(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    tls_port, plain_port = two_ports()
    server = start_server(
        "-e",
        f"ssl:{tls_port}:privateKey={pki.key_file}:certKey={pki.cert_file}:interface=127.0.0.1",
        "-e",
        f"tcp:{plain_port}:interface=127.0.0.1",
        APP,
    )
    wait_listening(server, "https", tls_port)
    wait_listening(server, "http", plain_port)

    with TLSClient(tls_port, client_context(pki)) as client:
        tls_scope = client.scope()
    assert tls_scope["scheme"] == "https"
    assert der(tls_extension(tls_scope)["server_cert"]) == leaf_der(pki.server)
    with wsraw.client(f"wss://127.0.0.1:{tls_port}/", ssl=client_context(pki)) as ws:
        wss_scope = json.loads(ws.recv())
    assert wss_scope["scheme"] == "wss"
    tls_extension(wss_scope)

    with RawClient(plain_port) as plain:
        plain_scope = plain.request(build("GET", "/scope")).json()
    assert plain_scope["scheme"] == "http"
    assert "tls" not in (plain_scope.get("extensions") or {})
    with wsraw.client(f"ws://127.0.0.1:{plain_port}/") as ws:
        ws_scope = json.loads(ws.recv())
    assert ws_scope["scheme"] == "ws"
    assert "tls" not in (ws_scope.get("extensions") or {})
    assert_refused(plain_port, client_context(pki))  # the plain port does not speak TLS


def test_ssl_endpoint_sends_its_extra_cert_chain(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    """The leaf is issued by an intermediate CA the client does not have: it verifies only when
    the server sends the intermediate (extraCertChain). Each ssl: endpoint has its own chain."""
    with_chain, without_chain = two_ports()
    base = f"privateKey={pki.leaf_key_file}:certKey={pki.leaf_file}:interface=127.0.0.1"
    server = start_server(
        "-e",
        f"ssl:{with_chain}:{base}:extraCertChain={pki.chain_file}",
        "-e",
        f"ssl:{without_chain}:{base}",
        APP,
    )
    wait_listening(server, "https", with_chain)
    wait_listening(server, "https", without_chain)
    with TLSClient(with_chain, client_context(pki)) as client:
        tls = tls_extension(client.scope())
    assert der(tls["server_cert"]) == leaf_der(pki.leaf)
    with pytest.raises(ssl.SSLCertVerificationError):
        TLSClient(without_chain, client_context(pki))


# -- client certificates --------------------------------------------------------------------------


def test_required_client_certificate(start_server: Callable[..., ServerProcess], pki: PKI) -> None:
    server = serve_tls(
        start_server, *ssl_args(pki), "--ssl-ca-certs", str(pki.ca_file), "--ssl-cert-reqs", "2"
    )
    assert_refused(server.port, client_context(pki))  # no certificate
    assert_refused(server.port, client_context(pki, pki.stranger))  # from another CA
    with TLSClient(server.port, client_context(pki, pki.client)) as client:
        tls = tls_extension(client.scope())
    chain = tls["client_cert_chain"]
    assert chain, tls
    assert all(isinstance(pem, str) for pem in chain)
    assert der(chain[0]) == leaf_der(pki.client)
    assert f"CN={CLIENT_NAME}" in tls["client_cert_name"]
    assert tls["client_cert_error"] is None
    assert server.proc.poll() is None
    assert "Traceback" not in server.output


def test_optional_client_certificate(start_server: Callable[..., ServerProcess], pki: PKI) -> None:
    server = serve_tls(
        start_server, *ssl_args(pki), "--ssl-ca-certs", str(pki.ca_file), "--ssl-cert-reqs", "1"
    )
    with TLSClient(server.port, client_context(pki)) as client:
        anonymous = tls_extension(client.scope())
    assert anonymous["client_cert_chain"] == []
    assert anonymous["client_cert_name"] is None
    with TLSClient(server.port, client_context(pki, pki.client)) as client:
        named = tls_extension(client.scope())
    assert der(named["client_cert_chain"][0]) == leaf_der(pki.client)
    assert f"CN={CLIENT_NAME}" in named["client_cert_name"]
    assert named["client_cert_error"] is None


def test_client_certificate_over_wss(start_server: Callable[..., ServerProcess], pki: PKI) -> None:
    server = serve_tls(
        start_server, *ssl_args(pki), "--ssl-ca-certs", str(pki.ca_file), "--ssl-cert-reqs", "2"
    )
    url = f"wss://127.0.0.1:{server.port}/"
    with wsraw.client(url, ssl=client_context(pki, pki.client)) as ws:
        tls = tls_extension(json.loads(ws.recv()))
    assert der(tls["client_cert_chain"][0]) == leaf_der(pki.client)


# -- ciphers and keys -----------------------------------------------------------------------------


def test_ssl_ciphers_limits_the_tls12_cipher_suites(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    server = serve_tls(
        start_server, *ssl_args(pki), "--ssl-ciphers", "ECDHE-ECDSA-AES256-GCM-SHA384"
    )
    defaults = client_context(pki, tls12_ciphers="DEFAULT")
    with TLSClient(server.port, defaults) as client:
        tls = tls_extension(client.scope())
    assert tls["tls_version"] == 0x0303
    assert tls["cipher_suite"] == ECDHE_ECDSA_AES256_GCM_SHA384
    assert_refused(server.port, client_context(pki, tls12_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    assert https_get(server.port, client_context(pki)).status_code == 200


def test_encrypted_key_opens_with_its_password(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    server = serve_tls(
        start_server,
        "--ssl-certfile",
        str(pki.cert_file),
        "--ssl-keyfile",
        str(pki.encrypted_key_file),
        "--ssl-keyfile-password",
        PASSWORD,
    )
    assert https_get(server.port, client_context(pki)).text == "tls app"


def test_wrong_key_password_is_one_line_and_exit_1(pki: PKI) -> None:
    result = run_to_exit(
        "-p",
        str(free_port()),
        "--ssl-certfile",
        str(pki.cert_file),
        "--ssl-keyfile",
        str(pki.encrypted_key_file),
        "--ssl-keyfile-password",
        "not the password",
        APP,
    )
    line = assert_one_line_failure(result, str(pki.encrypted_key_file))
    assert "password" in line.lower()
    assert "not the password" not in line  # the password is not logged


@pytest.mark.parametrize("missing", ["certfile", "keyfile", "ca-certs"])
def test_missing_tls_file_is_one_line_naming_it_and_exit_1(
    pki: PKI, tmp_path: Path, missing: str
) -> None:
    absent = tmp_path / f"no-such-{missing}.pem"
    cert = absent if missing == "certfile" else pki.cert_file
    key = absent if missing == "keyfile" else pki.key_file
    args = ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]
    if missing == "ca-certs":
        args += ["--ssl-ca-certs", str(absent), "--ssl-cert-reqs", "2"]
    result = run_to_exit("-p", str(free_port()), *args, APP)
    assert_one_line_failure(result, str(absent))


def test_key_of_another_certificate_is_one_line_and_exit_1(pki: PKI) -> None:
    args = ["--ssl-certfile", str(pki.cert_file), "--ssl-keyfile", str(pki.leaf_key_file)]
    result = run_to_exit("-p", str(free_port()), *args, APP)
    assert_one_line_failure(result, str(pki.cert_file), str(pki.leaf_key_file))


def test_missing_file_of_an_ssl_endpoint_is_one_line_and_exit_1(pki: PKI, tmp_path: Path) -> None:
    absent = tmp_path / "no-such-key.pem"
    endpoint = f"ssl:{free_port()}:privateKey={absent}:certKey={pki.cert_file}"
    result = run_to_exit("-e", endpoint + ":interface=127.0.0.1", APP)
    assert_one_line_failure(result, str(absent))


def test_certfile_without_a_key_anywhere_is_refused(pki: PKI) -> None:
    """cert.pem holds no key and no --ssl-keyfile is given: a start-up failure naming the
    certificate file (or, if the option check catches it, a usage error)."""
    result = run_to_exit("-p", str(free_port()), "--ssl-certfile", str(pki.cert_file), APP)
    assert "Traceback" not in result.output
    if result.proc.returncode == 2:
        assert "--ssl-keyfile" in result.stderr.splitlines()[-1]
    else:
        line = assert_one_line_failure(result, str(pki.cert_file))
        assert "key" in line.lower()  # the problem: no private key


def test_unknown_cipher_string_is_refused_without_traceback(pki: PKI) -> None:
    result = run_to_exit(
        "-p", str(free_port()), *ssl_args(pki), "--ssl-ciphers", "NO-SUCH-CIPHER", APP
    )
    assert result.proc.returncode in (1, 2), result.output
    assert "Traceback" not in result.output
    assert "NO-SUCH-CIPHER" in result.output or "--ssl-ciphers" in result.output
    if result.proc.returncode == 1:
        assert_one_line_failure(result)


def test_keyfile_without_certfile_is_a_usage_error(pki: PKI) -> None:
    result = run_to_exit("--ssl-keyfile", str(pki.key_file), APP)
    assert result.proc.returncode == 2, result.output
    assert result.stderr.startswith("usage: laurelin")
    last = result.stderr.splitlines()[-1]
    assert last.startswith("laurelin: error: ")
    assert "--ssl-certfile" in last
    assert "Traceback" not in result.output


# -- clients that do not finish a handshake -------------------------------------------------------


def client_hello(pki: PKI) -> bytes:
    """The first flight of a TLS client: what a client that then stalls has sent."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_context(pki).wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16"  # a handshake record
    return hello


def test_silent_and_stalled_clients_are_dropped_after_the_handshake_timeout(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    server = serve_tls(start_server, *ssl_args(pki), "--ssl-handshake-timeout", "0.5")
    with RawClient(server.port) as silent:
        assert silent.wait_closed(TIMEOUT) == b""  # TimeoutError if it is never dropped
    with RawClient(server.port) as stalled:
        stalled.send(client_hello(pki))
        stalled.wait_closed(TIMEOUT)  # the server's first flight, then the close
    assert https_get(server.port, client_context(pki)).text == "tls app"
    assert server.proc.poll() is None
    assert "Traceback" not in server.output


def test_a_pending_handshake_does_not_hold_up_other_clients(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    server = serve_tls(start_server, *ssl_args(pki))  # the default handshake timeout (10 s)
    with RawClient(server.port), RawClient(server.port) as stalled:  # one silent, one stalled
        stalled.send(client_hello(pki))
        assert https_get(server.port, client_context(pki)).text == "tls app"
        with wsraw.client(f"wss://127.0.0.1:{server.port}/", ssl=client_context(pki)) as ws:
            ws.recv()
            ws.send("still here")
            assert ws.recv() == "still here"


def test_plain_http_to_a_tls_port_is_dropped(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    server = serve_tls(start_server, *ssl_args(pki))
    with RawClient(server.port) as plain:
        plain.send(build("GET", "/"))
        answer = plain.wait_closed(TIMEOUT)  # TimeoutError if the server keeps it open
    assert not answer.startswith(b"HTTP/"), answer
    assert b"tls app" not in answer
    assert https_get(server.port, client_context(pki)).text == "tls app"
    assert server.proc.poll() is None
    assert "Traceback" not in server.output


# -- another client -------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_gets_the_body_over_https(
    start_server: Callable[..., ServerProcess], pki: PKI
) -> None:
    server = serve_tls(start_server, *ssl_args(pki), app="basic:app")
    command = [
        "curl",
        "--silent",
        "--show-error",
        "--noproxy",
        "*",
        "--max-time",
        "10",
        "--cacert",
        str(pki.ca_file),
        "--write-out",
        "\n%{http_version}",
        f"https://127.0.0.1:{server.port}/",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    body, _, version = result.stdout.rpartition("\n")
    assert body == "Hello, world!"
    assert version == "2"  # curl offers h2 by ALPN, and gets it
