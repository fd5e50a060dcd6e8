"""When the bytes of a PDU really arrived: the kernel's receive timestamps (PS3.8 9.1, 9.3).

Theory of operation
-------------------
A connection reads its peer's bytes only when a step asks for them, so the
time of the read says when the harness looked, not when the peer sent.  A
capture must show the second.  :func:`enable` asks the kernel to stamp every
segment it receives on the socket (``SO_TIMESTAMPNS``, or ``SO_TIMESTAMP``
where nanoseconds are refused: Linux), and :func:`recv` reads with
``recvmsg``, taking the stamp from the ancillary data (``SCM_TIMESTAMPNS`` /
``SCM_TIMESTAMP``).  For TCP that stamp is the arrival of the last segment
whose bytes the read returned, on the same clock as :func:`time.time`, so it
can be merged with the times of what we send.

Where the kernel gives no stamp (not Linux, a socket without ``recvmsg``, an
option refused, a read that brought no ancillary data) :func:`recv` falls
back to :func:`time.time` taken when the read returned: the older, weaker
meaning ("when it was read").

Linux stamps incoming packets only while some socket asks for it, and turns
that on (and off) in deferred work: packets that arrive just after the first
socket of the system asks still come unstamped.  So this module keeps one
unbound UDP socket with the option set for the life of the process
(:data:`_KEEPER`, made at import): from then on every connection's packets are
stamped from the first one.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import time

# Linux's values (asm-generic/socket.h); the socket module does not export them.  On Linux the
# SCM_ control message types equal the SO_ option numbers.
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@ll")  # struct timespec / struct timeval: seconds, then ns / µs
_DIVISOR = {SO_TIMESTAMPNS: 1e9, SO_TIMESTAMP: 1e6}
_LINUX = sys.platform.startswith("linux")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def _keeper() -> socket.socket | None:
    """An unbound UDP socket asking for receive stamps, kept open (see the module docstring)."""
    if not _LINUX or not _ANCILLARY:
        return None
    try:
        keeper = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return None
    try:
        keeper.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        keeper.close()
        return None
    return keeper


_KEEPER = _keeper()


def enable(sock: socket.socket) -> bool:
    """Ask the kernel to stamp what ``sock`` receives; True if it will (see the module docstring)."""
    if not _LINUX or not _ANCILLARY or isinstance(sock, ssl.SSLSocket) or not hasattr(sock, "recvmsg"):
        return False  # an SSLSocket has no recvmsg
    for option in (SO_TIMESTAMPNS, SO_TIMESTAMP):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, 1)
            return True
        except OSError:
            continue
    return False


def recv(sock: socket.socket, size: int, stamped: bool) -> tuple[bytes, float]:
    """Read at most ``size`` bytes: (bytes, arrival time on the :func:`time.time` clock).

    ``stamped`` says :func:`enable` succeeded on ``sock``.  Exceptions are those of
    ``socket.recv`` (a timeout, ``BlockingIOError`` for a poll, ``ConnectionResetError``);
    empty bytes mean the peer's FIN, stamped when it was read.
    """
    if not stamped:
        data = sock.recv(size)
        return data, time.time()
    data, ancillary, _flags, _address = sock.recvmsg(size, _ANCILLARY)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind in _DIVISOR and len(payload) >= _TIMESPEC.size:
            seconds, fraction = _TIMESPEC.unpack_from(payload)
            return data, seconds + fraction / _DIVISOR[kind]
    return data, time.time()


__all__ = ["enable", "recv"]
