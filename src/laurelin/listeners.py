# laurelin.listeners — where the server listens: parse every way of saying it, open the sockets.
#
# Sources, all combinable: -b/-p (IPv4, IPv6 with or without brackets, host names), -u (Unix
# socket), --fd (an inherited listening descriptor), -e (Daphne's Twisted-style endpoint strings:
# tcp:, tcp6:, unix:, fd:, and ssl: with its own key and certificate) and systemd socket
# activation (LISTEN_FDS/LISTEN_PID, descriptors from 3). With none of them: 127.0.0.1:8000.
# --ssl-certfile puts TLS on every listener that has no ssl: files of its own.
# A failure to listen is `ListenError`, whose text is Daphne's CRITICAL line plus a hint.
from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from laurelin.config import Config, port_number
from laurelin.tls import TLSFiles, config_files

SD_LISTEN_FDS_START = 3


class ListenError(Exception):
    """A listener could not be opened; str() is the line to log."""


class EndpointError(ValueError):
    """An endpoint string (-e) is malformed or names an unsupported kind."""


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """One place to listen: kind is "tcp", "unix" or "fd"."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    mode: int | None = None
    fd: int = -1
    v6only: bool = True
    """For the IPv6 wildcard "::": False makes it dual-stack (IPv4 too), as Daphne's is on Linux."""
    tls: TLSFiles | None = None

    def describe(self) -> str:
        """Human-readable address, as used in log lines."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "fd":
            return f"fd:{self.fd}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _split_endpoint(text: str) -> list[str]:
    """Split on unescaped ':' (Twisted endpoint syntax: '\\:' is a literal colon)."""
    parts, current, chars = [], [], iter(text)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_endpoint(text: str) -> ListenSpec:
    """Parse one Daphne/Twisted endpoint string.

    Raises:
        EndpointError: with a message naming the endpoint and what is wrong.
    """
    kind, *args = _split_endpoint(text)
    positional = [a for a in args if "=" not in a]
    named = dict(a.split("=", 1) for a in args if "=" in a)
    try:
        if kind in ("tcp", "tcp6"):
            port = port_number(named.get("port") or positional[0])
            host = named.get("interface", "::" if kind == "tcp6" else "0.0.0.0")
            return ListenSpec("tcp", host=_strip_brackets(host), port=port)
        if kind == "unix":
            path = named.get("address") or positional[0]
            mode = int(named["mode"], 8) if "mode" in named else None
            return ListenSpec("unix", path=path, mode=mode)
        if kind == "fd":
            return ListenSpec("fd", fd=int(named.get("fileno") or positional[0]))
        if kind == "ssl":
            port = port_number(named.get("port") or positional[0])
            host = named.get("interface", "0.0.0.0")
            key = named["privateKey"]
            # Twisted: certKey defaults to the privateKey file (one PEM holding both).
            files = TLSFiles(named.get("certKey", key), key, chain=named.get("extraCertChain"))
            return ListenSpec("tcp", host=_strip_brackets(host), port=port, tls=files)
    except KeyError:
        raise EndpointError(f"Invalid endpoint {text!r}: ssl: needs privateKey=FILE") from None
    except (IndexError, ValueError):
        raise EndpointError(f"Invalid endpoint {text!r}: missing or malformed value") from None
    raise EndpointError(
        f"Endpoint {text!r}: unsupported endpoint type {kind!r} (laurelin understands tcp:, "
        "tcp6:, unix:, fd: and ssl:)"
    )


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def systemd_fds(environ: Mapping[str, str] | None = None) -> list[int]:
    """Descriptors passed by systemd socket activation to this process (sd_listen_fds(3))."""
    environ = os.environ if environ is None else environ
    try:
        count = int(environ.get("LISTEN_FDS", "0"))
        pid = int(environ.get("LISTEN_PID", str(os.getpid())))
    except ValueError:
        return []
    if count <= 0 or pid != os.getpid():
        return []
    return list(range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count))


def listen_specs(config: Config, environ: Mapping[str, str] | None = None) -> list[ListenSpec]:
    """Every listener the configuration asks for (Daphne's defaults when it asks for none).

    Raises:
        EndpointError: an -e string is malformed or unsupported.
    """
    specs: list[ListenSpec] = []
    if config.host is not None or config.port is not None:
        host = _strip_brackets(config.host) if config.host is not None else "127.0.0.1"
        specs.append(
            ListenSpec("tcp", host=host, port=8000 if config.port is None else config.port)
        )
    if config.unix_socket:
        specs.append(ListenSpec("unix", path=config.unix_socket))
    if config.fd is not None:
        specs.append(ListenSpec("fd", fd=config.fd))
    specs.extend(parse_endpoint(text) for text in config.endpoints)
    specs.extend(ListenSpec("fd", fd=fd) for fd in systemd_fds(environ))
    if not specs:
        specs.append(ListenSpec("tcp", host="127.0.0.1", port=8000))
    files = config_files(config)
    if files is not None:
        specs = [spec if spec.tls else dataclasses.replace(spec, tls=files) for spec in specs]
    return [_with_stack(spec, specs) for spec in specs]


def _is_wildcard(host: str, version: int) -> bool:
    if host == "" and version == 4:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == version and address.is_unspecified


def _with_stack(spec: ListenSpec, specs: list[ListenSpec]) -> ListenSpec:
    # Daphne (Twisted) leaves an IPv6 socket on "::" dual-stack, so `-b ::` also answers IPv4
    # clients on Linux. Only when "0.0.0.0" is asked for on the same port as well must "::" be
    # IPv6-only, or the two would collide.
    if spec.kind != "tcp" or not _is_wildcard(spec.host, 6):
        return spec
    ipv4_too = any(
        other.kind == "tcp" and other.port == spec.port and _is_wildcard(other.host, 4)
        for other in specs
    )
    return spec if ipv4_too else dataclasses.replace(spec, v6only=False)


def open_listener(spec: ListenSpec, backlog: int, reuse_port: bool = False) -> socket.socket:
    """Create, bind and listen (TCP with SO_REUSEPORT when asked: one socket per worker).

    Raises:
        ListenError: Daphne's "Listen failure" line with a hint.
    """
    try:
        if spec.kind == "tcp":
            return _open_tcp(spec, backlog, reuse_port)
        if spec.kind == "unix":
            return _open_unix(spec, backlog)
        return _adopt_fd(spec, backlog)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ListenError(
            f"Listen failure: Couldn't listen on {spec.describe()} {reason}{_hint(spec, exc)}"
        ) from None


def _hint(spec: ListenSpec, exc: OSError) -> str:
    import errno

    if exc.errno == errno.EADDRINUSE:
        if spec.kind == "tcp":
            return (
                f" (another process is using port {spec.port}: stop it, or choose another port "
                "with -p/--port)"
            )
        return " (remove the stale socket file or choose another path with -u)"
    if exc.errno == errno.EACCES and spec.kind == "tcp" and spec.port < 1024:
        return " (ports below 1024 need privileges: use a port of 1024 or more)"
    if exc.errno == errno.EBADF:
        return " (the descriptor is not open in this process)"
    return ""


def _open_tcp(spec: ListenSpec, backlog: int, reuse_port: bool = False) -> socket.socket:
    infos = socket.getaddrinfo(
        spec.host or None, spec.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(spec.v6only))
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _open_unix(spec: ListenSpec, backlog: int) -> socket.socket:
    path = spec.path
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale: nobody is listening on it
            else:
                raise OSError(98, "Address already in use")
            finally:
                probe.close()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if spec.mode is not None:
            os.chmod(path, spec.mode)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _adopt_fd(spec: ListenSpec, backlog: int) -> socket.socket:
    sock = socket.socket(fileno=spec.fd)
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise OSError(88, "not a stream socket")
    with contextlib.suppress(OSError):  # already listening, as handed over
        sock.listen(backlog)
    sock.setblocking(False)
    return sock


def describe_socket(sock: socket.socket, tls: bool = False) -> str:
    """Address a listening socket is bound to, for the start-up log."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name}" + (" (TLS)" if tls else "")
    host, port = name[0], name[1]
    scheme = "https" if tls else "http"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"
