"""Target addresses as users write them: ``HOST:PORT``, ``HOST``, ``[IPv6]:PORT``.

Theory of operation
-------------------
A DICOM SCP lives wherever its owner put it: a host name on a hospital LAN, an
IPv4 or IPv6 address, a TLS peer.  :func:`parse_target` turns what a user
typed into an :class:`Address` and checks only the syntax; it resolves
nothing and refuses no address.  A host name is resolved when the connection
is made (:meth:`dicomconf.scu.connection.Connection.open`, which tries every
address the name resolves to, in the resolver's order, as
``socket.create_connection`` does).

Accepted forms::

    pacs.hospital.lan:104    pacs.hospital.lan    (port 104, DICOM's registered port)
    192.0.2.10:11112         192.0.2.10
    [2001:db8::10]:11112     [2001:db8::10]       2001:db8::10    fe80::1%eth0
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from dataclasses import dataclass

DEFAULT_PORT = 104  # the well-known DICOM port (PS3.8 9.1.1)

# RFC 1123 host names: letters, digits and hyphens in dot-separated labels; an
# underscore is tolerated (some LANs use it) and a trailing dot is allowed.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")


@dataclass(frozen=True, slots=True)
class Address:
    """A target: ``host`` (name or literal address, IPv6 without brackets) and TCP ``port``."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)


def format_hostport(host: str, port: int) -> str:
    """``host:port``, with brackets around an IPv6 literal (``[::1]:104``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_host(host: str, what: str = "host") -> str:
    """Return ``host`` if it is a host name or a literal IPv4/IPv6 address, else raise ValueError."""
    if not isinstance(host, str) or not host:
        raise ValueError(f"{what} is empty")
    literal = host.split("%", 1)[0] if ":" in host else host
    try:
        ipaddress.ip_address(literal)
        return host
    except ValueError:
        pass
    if ":" in host:
        raise ValueError(f"{what} {host!r} is not a valid IPv6 address")
    if len(host) > 253 or not _HOSTNAME.match(host):
        raise ValueError(f"{what} {host!r} is not a host name or an IP address")
    return host


def check_port(port: object, what: str = "port") -> int:
    """Return ``port`` as an int if it is a TCP port number (1-65535), else raise ValueError."""
    if isinstance(port, bool) or not isinstance(port, int):
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        else:
            raise ValueError(f"{what} {port!r} is not a TCP port number (1-65535)")
    if not 0 < port < 65536:
        raise ValueError(f"{what} {port} is not a TCP port number (1-65535)")
    return port


def parse_target(text: str, default_port: int = DEFAULT_PORT) -> Address:
    """Parse ``HOST:PORT``, ``HOST``, ``[IPv6]:PORT``, ``[IPv6]`` or a bare IPv6 address.

    Raises ValueError with a message that names the text and the expected forms.
    """
    forms = "expected HOST:PORT, HOST, IPv4:PORT or [IPv6]:PORT (e.g. pacs.example.org:104)"
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"target is empty; {forms}")
    raw = text.strip()
    try:
        if raw.startswith("["):
            end = raw.find("]")
            if end < 0:
                raise ValueError("'[' without ']'")
            host, rest = raw[1:end], raw[end + 1 :]
            if rest and not rest.startswith(":"):
                raise ValueError(f"unexpected {rest!r} after ']'")
            port = check_port(rest[1:]) if rest else default_port
            if ":" not in host:
                raise ValueError("brackets are only for IPv6 addresses")
        elif raw.count(":") > 1:
            host, port = raw, default_port  # a bare IPv6 address: no port can be told apart
        else:
            host, sep, port_text = raw.partition(":")
            port = check_port(port_text) if sep else default_port
        return Address(check_host(host), port)
    except ValueError as exc:
        raise ValueError(f"target {text!r}: {exc}; {forms}") from None


def resolve_within(host: str, port: int, timeout: float) -> str | None:
    """None when ``host`` resolves within ``timeout`` seconds, else why not (one phrase).

    ``getaddrinfo`` has no timeout of its own and a resolver that cannot reach its server
    can hang for long: the lookup runs in a daemon thread and is abandoned at the deadline.
    """
    box: list[BaseException | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            box.append(None)
        except (OSError, UnicodeError) as exc:
            box.append(exc)

    worker = threading.Thread(target=lookup, name="dicomconf-resolve", daemon=True)
    worker.start()
    worker.join(timeout)
    if not box:
        return f"the name {host!r} did not resolve within {timeout:g}s"
    if box[0] is not None:
        return f"the name {host!r} does not resolve: {getattr(box[0], 'strerror', None) or box[0]}"
    return None


__all__ = ["Address", "DEFAULT_PORT", "parse_target", "format_hostport", "check_host", "check_port",
           "resolve_within"]
