"""The fake SCP's listening socket: accept now, later, or never (PS3.8 9.1.2).

Theory of operation
-------------------
A :class:`Listener` binds where it is told (any host name or address, ``::``
for every IPv6 and, where the OS allows, IPv4 address; port 0 picks a free
one) with a backlog, so a connection the SCU opens is completed by the kernel
and waits in the listen queue until :meth:`Listener.accept` takes it.  That
is how an acceptor that is slow to accept looks from the requestor's side:
its TCP connection is established and its A-ASSOCIATE-RQ sits unread.

:meth:`accept` waits (bounded) until a connection is queued, optionally
leaves it there ``delay`` seconds more, takes it and returns it as a
:class:`~dicomconf.scu.connection.Connection` seen from the acceptor's side,
the capture stamped from the moment it was seen queued.  With a TLS context
the server side of the handshake is made on accept (PS3.15 B.1), over the
plain socket (:class:`~dicomconf.scu.tls_channel.TLSChannel`), so the capture
holds the TLS records as they were on the wire and the connection's
``key_log`` the session's secrets; if the handshake fails the socket is
closed and the error (``ssl.SSLError``, ``OSError``) raised.  :meth:`close`
wakes a waiting ``accept`` (it then raises :class:`ListenerClosed`).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time

from dicomconf.scu.connection import Connection
from dicomconf.scu.target import format_hostport


class ListenerClosed(OSError):
    """The listener was closed while a step waited for a connection."""


class NoConnection(Exception):
    """No connection came within the time given."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"no connection within {waited:g}s")
        self.waited = waited


class Listener:
    """A listening socket for the fake SCP; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, backlog: int = 64,
                 tls: ssl.SSLContext | None = None) -> None:
        if host == "::" and socket.has_dualstack_ipv6():
            self.sock = socket.create_server(("::", port), family=socket.AF_INET6, backlog=backlog,
                                             dualstack_ipv6=True)
        else:
            infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, address = infos[0]
            self.sock = socket.create_server(address, family=family, backlog=backlog)
        self.tls = tls
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._closed = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()

    @property
    def address(self) -> str:
        return format_hostport(self.host, self.port)

    def connect_host(self) -> str:
        """The address a local SCU connects to: the bound one, or loopback for a wildcard."""
        if self.host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if self.host == "::":
            return "::1"
        return self.host

    def accept(self, within: float, *, delay: float = 0.0, timeout: float = 10.0) -> Connection:
        """The next connection (see the module docstring); raises :class:`NoConnection`."""
        deadline = time.monotonic() + within
        while True:
            if self._closed.is_set():
                raise ListenerClosed("the listener was closed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoConnection(within)
            try:
                ready, _, _ = select.select([self.sock, self._wake_r], [], [], remaining)
            except (OSError, ValueError):  # closed under us by close() on another thread
                if self._closed.is_set():
                    raise ListenerClosed("the listener was closed") from None
                raise
            if self.sock in ready:
                break
        seen = time.time()
        if delay > 0 and self._closed.wait(delay):
            raise ListenerClosed("the listener was closed")
        try:
            sock, _ = self.sock.accept()
        except (OSError, ValueError):
            if self._closed.is_set():
                raise ListenerClosed("the listener was closed") from None
            raise
        self.accepted += 1
        if self.tls is not None:
            sock.settimeout(timeout)
        return Connection.accepted(sock, timeout=timeout, opened_at=seen, tls=self.tls)

    def pending(self) -> bool:
        """True if a connection is waiting in the listen queue now."""
        if self._closed.is_set():
            return False
        ready, _, _ = select.select([self.sock], [], [], 0)
        return bool(ready)

    def close(self) -> None:
        """Stop listening; a waiting :meth:`accept` raises :class:`ListenerClosed`.  Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
