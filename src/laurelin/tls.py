# laurelin.tls — TLS for the listeners: SSL contexts built once at start-up, and what the ASGI
# `tls` extension tells an app about each connection.
#
# A context comes from --ssl-* (applied to every listener) or from a Daphne `ssl:` endpoint (its
# own key and certificate). Bad paths, an unreadable key or a wrong password are `TLSError`, one
# line naming the file, never a traceback. ALPN offers h2 and http/1.1 (as --http allows).
from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

from laurelin.config import Config

# ALPN protocols offered, in order of preference, for each --http choice.
ALPN_PROTOCOLS = {"auto": ["h2", "http/1.1"], "1": ["http/1.1"], "2": ["h2"]}
# TLS versions as the ASGI TLS extension reports them (the protocol's own numbers).
_TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class TLSError(Exception):
    """TLS cannot be set up as configured; str() is the line to log."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """Where one listener's certificate and key are."""

    certfile: str
    keyfile: str | None = None
    password: str | None = None
    chain: str | None = None  # extra chain certificates (Daphne's extraCertChain)


def config_files(config: Config) -> TLSFiles | None:
    """The --ssl-* files, if TLS was asked for on the command line."""
    if not config.ssl_certfile:
        return None
    return TLSFiles(config.ssl_certfile, config.ssl_keyfile, config.ssl_keyfile_password)


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """A listener's SSL context and what the `tls` scope extension reports from it."""

    context: ssl.SSLContext
    server_cert: str | None  # PEM
    cipher_ids: dict[str, int]  # OpenSSL cipher name -> IANA cipher suite number


def build_server_tls(files: TLSFiles, config: Config) -> ServerTLS:
    """Load the certificate and key, and the client-certificate CAs, into a server context.

    Raises:
        TLSError: a file is missing or unreadable, the key does not match, or the password is
            wrong.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    password = files.password
    texts: dict[str, str] = {}
    for path, what in (
        (files.certfile, "certificate"),
        (files.keyfile, "key"),
        (files.chain, "chain"),
    ):
        if path is None:
            continue
        try:
            with open(path, encoding="ascii", errors="replace") as file:
                texts[what] = file.read()
        except OSError as exc:
            raise TLSError(f"Cannot read the TLS {what} file {path}: {exc.strerror}") from None
    key_text = texts["key"] if files.keyfile else texts["certificate"]
    try:
        if files.chain:
            # Daphne's extraCertChain: certificates sent after ours. load_cert_chain takes them
            # from the certificate file, so the two are joined in a private temporary file.
            with tempfile.NamedTemporaryFile("w", suffix=".pem", encoding="ascii") as joined:
                joined.write(texts["certificate"].rstrip("\n") + "\n" + texts["chain"])
                joined.flush()
                _load_cert_chain(context, joined.name, files.keyfile, password)
        else:
            _load_cert_chain(context, files.certfile, files.keyfile, password)
    except (ssl.SSLError, ValueError) as exc:
        raise TLSError(
            f"Cannot load the TLS certificate {files.certfile}"
            + (f" with the key {files.keyfile}" if files.keyfile else "")
            + f": {_reason(exc, password, key_text)}"
        ) from None
    if config.ssl_ca_certs:
        _load_verify(context, config.ssl_ca_certs, "--ssl-ca-certs")
    context.verify_mode = ssl.VerifyMode(config.ssl_cert_reqs)
    if config.ssl_ciphers:
        try:
            context.set_ciphers(config.ssl_ciphers)
        except ssl.SSLError:
            raise TLSError(f"--ssl-ciphers {config.ssl_ciphers!r}: no cipher matches") from None
    context.set_alpn_protocols(ALPN_PROTOCOLS[config.http])
    return ServerTLS(
        context=context,
        server_cert=_first_certificate(texts["certificate"]),
        cipher_ids={c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()},
    )


def _load_cert_chain(
    context: ssl.SSLContext, certfile: str, keyfile: str | None, password: str | None
) -> None:
    # Without a password, an empty one: OpenSSL would otherwise prompt on the terminal.
    context.load_cert_chain(certfile, keyfile, password=password or _no_password)


def _no_password() -> str:
    return ""


def _load_verify(context: ssl.SSLContext, path: str, what: str) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise TLSError(f"{what}: file not found: {path}") from None
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(f"{what}: cannot load certificates from {path}: {exc}") from None


def _reason(exc: Exception, password: str | None, key_text: str) -> str:
    """Say what is wrong in words (OpenSSL 3 says "PEM lib" for most of it)."""
    reason = getattr(exc, "reason", None) or str(exc)
    text = str(reason).lower().replace("_", " ")
    if "key values mismatch" in text:
        return "the key does not belong to the certificate"
    if "PRIVATE KEY" not in key_text:
        return "no private key found (give --ssl-keyfile, or put the key in the same file)"
    if "ENCRYPTED" in key_text:
        if password:
            return "wrong --ssl-keyfile-password"
        return "the key is encrypted: give --ssl-keyfile-password"
    return str(reason)


def _first_certificate(text: str) -> str | None:
    """The first certificate of a PEM text, as the `server_cert` of the tls extension."""
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end_marker = "-----END CERTIFICATE-----"
    end = text.find(end_marker, begin)
    if begin < 0 or end < 0:
        return None
    return text[begin : end + len(end_marker)] + "\n"


def tls_extension(tls: ServerTLS, ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    """The ASGI `tls` scope extension for one connection."""
    chain: list[str] = []
    name: str | None = None
    version = cipher = None
    if ssl_object is not None:
        der = ssl_object.getpeercert(binary_form=True)
        if der:
            chain.append(ssl.DER_cert_to_PEM_cert(der))
            name = _subject(ssl_object.getpeercert())
        version = _TLS_VERSIONS.get(ssl_object.version() or "")
        current = ssl_object.cipher()
        if current is not None:
            cipher = tls.cipher_ids.get(current[0])
    return {
        "server_cert": tls.server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": version,
        "cipher_suite": cipher,
    }


def _subject(cert: dict[str, Any] | None) -> str | None:
    """An RFC 4514 string for a certificate subject as `getpeercert()` gives it."""
    if not cert or "subject" not in cert:
        return None
    names = {
        "commonName": "CN",
        "organizationName": "O",
        "organizationalUnitName": "OU",
        "countryName": "C",
        "stateOrProvinceName": "ST",
        "localityName": "L",
        "emailAddress": "E",
    }
    parts = [
        f"{names.get(key, key)}={value}" for rdn in reversed(cert["subject"]) for key, value in rdn
    ]
    return ",".join(parts) or None
