"""TLS driven over a plain socket, so a capture holds the records as they were on the wire
(PS3.15 B.1, B.10, B.12).

Theory of operation
-------------------
An ``ssl.SSLSocket`` hides the TLS records: what the harness reads from it
is already decrypted.  A :class:`TLSChannel` runs the same TLS session with
``SSLContext.wrap_bio`` (an ``ssl.SSLObject`` between two ``ssl.MemoryBIO``)
over the plain TCP socket: every byte that crosses the socket, TLS records
of the handshake, application data and alerts alike, is handed to
``on_wire(outbound, data, time)`` before (inbound) or after (outbound) it
is fed to or taken from OpenSSL, while the caller sees the decrypted stream
as before.  Inbound bytes are read with :mod:`dicomconf.scu.stamps`, so both
the records and the plaintext they carried are stamped with the kernel's
arrival time; outbound ones with the time just before ``sendall``.

The channel behaves like the ``SSLSocket`` it replaces, as far as
:class:`~dicomconf.scu.connection.Connection` and its callers can tell:
``recv`` returns the next decrypted bytes, ``b""`` at the peer's close_notify
or at a TCP close (a "ragged" EOF, suppressed as ``SSLSocket`` does), raises
``TimeoutError`` when nothing decrypts within the timeout set by
``settimeout``, ``BlockingIOError`` for a poll (timeout 0) that finds
nothing; ``ConnectionResetError`` and ``ssl.SSLError`` pass through.  No
close_notify is sent when the connection closes (``SSLSocket.close`` sends
none either).  The handshake raises what ``wrap_socket`` raises
(``ssl.SSLCertVerificationError``, ``ssl.SSLError``, ``ssl.SSLEOFError``
when the peer closes, ``TimeoutError`` when it does not finish within the
timeout); an alert OpenSSL wrote for the peer is sent first.
``version()``, ``cipher()``, ``getpeercert()`` are the session's;
``shutdown``, ``close``, ``setsockopt``, ``getsockname`` ... the socket's.

Key logs.  Wireshark decrypts a capture given the session secrets in the NSS
key log format (``SSLKEYLOGFILE``: ``LABEL <client random> <secret>``).
OpenSSL writes them only through a context's ``keylog_filename``, for every
session of the context.  :func:`key_log_source` points a context without one
at this process's private file (created 0600 in the temporary directory,
removed at exit; a context that already has one, e.g. from
``SSLKEYLOGFILE``, keeps it), and after the handshake the channel takes the
lines of its own session, found by the client random of the ClientHello it
sent or received, into :attr:`TLSChannel.key_lines` (both ends of a session
played in this process find the same lines).  The private file is emptied
once it passes :data:`KEY_LOG_LIMIT` bytes at a moment when no handshake
that writes to it is under way (each channel counts itself in before its
context can write a line and out when it has taken its lines or failed), so
a long run of TLS associations, such as ``dicomconf load``, does not grow it
without end; a file the user named is never touched.
"""

from __future__ import annotations

import atexit
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from dicomconf.scu import stamps

RECV_SIZE = 256 * 1024
WRITE_PIECE = 256 * 1024  # plaintext encrypted and sent at a time, so a large send is not held twice
_HELLO_RANDOM = slice(11, 43)  # record header (5), handshake header (4), legacy_version (2), random (32)
_KEPT_SESSIONS = 4096  # sessions of a key log file whose lines wait to be claimed
KEY_LOG_LIMIT = 1 << 20  # bytes of the private key log past which it is emptied (module docstring)

WireHook = Callable[[bool, bytes, float], None]


class TLSChannel:
    """A TLS session over the plain socket ``sock``; see the module docstring."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None, on_wire: WireHook | None = None) -> None:
        self.raw = sock
        self.server_side = server_side
        self.on_wire = on_wire
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._keylog = key_log_source(context, handshaking=True)
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self._stamped = stamps.enable(sock)
        self._timeout: float | None = sock.gettimeout()
        self._send_timeout = self._timeout if self._timeout is None or self._timeout > 0 else None
        self._hello = bytearray()  # the first bytes of the ClientHello (sent, or received by a server)
        self.client_random: bytes | None = None
        self.key_lines: list[str] = []
        self.last_arrival = time.time()  # when the latest raw bytes arrived

    # ------------------------------------------------------------------ handshake

    def handshake(self, timeout: float | None) -> None:
        """Run the TLS handshake (PS3.15 B.1) within ``timeout`` seconds (None: no bound)."""
        try:
            self._handshake(timeout)
        finally:
            keylog, self._keylog = self._keylog, None
            if keylog is not None:
                self.key_lines = _claim(keylog, self.client_random if self._ssl.version() else None)

    def _handshake(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                if not self._fill(deadline, handshake=True):
                    raise TimeoutError(f"the TLS handshake did not finish within {timeout:g}s") from None
                continue
            except ssl.SSLError:
                try:
                    self._flush()  # the alert OpenSSL wrote for the peer
                except OSError:
                    pass
                raise
            break
        self._flush()

    # ------------------------------------------------------------------ the decrypted stream

    def recv_stamped(self, size: int) -> tuple[bytes, float]:
        """The next decrypted bytes (at most ``size``) and the arrival time of the record that
        completed them; ``b""`` once the peer closed.  Waits as ``settimeout`` said."""
        poll = self._timeout is not None and self._timeout <= 0
        deadline = None if self._timeout is None or poll else time.monotonic() + self._timeout
        while True:
            try:
                data = self._ssl.read(size)
            except ssl.SSLWantReadError:
                self._flush()
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):  # a close, with or without close_notify
                return b"", self.last_arrival
            else:
                self._flush()  # what OpenSSL owes the peer after reading (a key update ...)
                return data, self.last_arrival
            if self._incoming.eof:
                return b"", self.last_arrival
            if poll:
                self.raw.settimeout(0.0)
                self._take(*stamps.recv(self.raw, RECV_SIZE, self._stamped))
            elif not self._fill(deadline):
                raise TimeoutError("timed out")

    def recv(self, size: int) -> bytes:
        return self.recv_stamped(size)[0]

    def sendall(self, data: bytes) -> None:
        """Encrypt ``data`` and send the records (raises what ``socket.sendall`` raises)."""
        view = memoryview(data)
        for pos in range(0, len(view), WRITE_PIECE):
            piece = view[pos : pos + WRITE_PIECE]
            while piece:
                piece = piece[self._ssl.write(piece):]
            self._flush()

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    # ------------------------------------------------------------------ the socket underneath

    def _flush(self) -> None:
        data = self._outgoing.read()
        if not data:
            return
        self._note_hello(data, outbound=True)
        at = time.time()
        self.raw.settimeout(self._send_timeout)  # a poll that must answer (a key update) still sends
        self.raw.sendall(data)
        if self.on_wire is not None:
            self.on_wire(True, data, at)

    def _fill(self, deadline: float | None, handshake: bool = False) -> bool:
        """Read raw bytes into OpenSSL; False if the deadline passed first (an EOF counts as bytes)."""
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        if self._incoming.eof and handshake:
            raise ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol")
        self.raw.settimeout(remaining)
        try:
            data, at = stamps.recv(self.raw, RECV_SIZE, self._stamped)
        except TimeoutError:
            return False
        self._take(data, at)
        return True

    def _take(self, data: bytes, at: float) -> None:
        if not data:
            self._incoming.write_eof()
            return
        self.last_arrival = at
        self._note_hello(data, outbound=False)
        if self.on_wire is not None:
            self.on_wire(False, data, at)
        self._incoming.write(data)

    def _note_hello(self, data: bytes, outbound: bool) -> None:
        """Keep the ClientHello's client random: the key log's name for this session."""
        if self.client_random is not None or outbound == self.server_side or len(self._hello) >= 43:
            return
        self._hello += data[: 43 - len(self._hello)]
        if len(self._hello) >= 43 and self._hello[0] == 0x16 and self._hello[5] == 0x01:
            self.client_random = bytes(self._hello[_HELLO_RANDOM])

    def settimeout(self, value: float | None) -> None:
        self._timeout = value
        if value is None or value > 0:
            self._send_timeout = value
        self.raw.settimeout(value)

    def gettimeout(self) -> float | None:
        return self._timeout

    def shutdown(self, how: int) -> None:
        self.raw.shutdown(how)

    def close(self) -> None:
        self.raw.close()

    def setsockopt(self, *args: Any) -> None:
        self.raw.setsockopt(*args)

    def getsockname(self) -> Any:
        return self.raw.getsockname()

    def getpeername(self) -> Any:
        return self.raw.getpeername()

    def fileno(self) -> int:
        return self.raw.fileno()

    # ------------------------------------------------------------------ the session

    def version(self) -> str | None:
        return self._ssl.version()

    def cipher(self) -> tuple[str, str, int] | None:
        return self._ssl.cipher()

    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._ssl.getpeercert(binary_form)

    def selected_alpn_protocol(self) -> str | None:
        return self._ssl.selected_alpn_protocol()

    def __repr__(self) -> str:
        return f"<TLSChannel {self.version() or 'handshaking'} over {self.raw!r}>"


def start_tls(sock: socket.socket, context: ssl.SSLContext, conversation: Any, us: str, timeout: float | None,
              server_hostname: str | None = None) -> TLSChannel:
    """Make the TLS handshake on ``sock`` as ``us`` ("client" or "server"), its records added to
    ``conversation`` (a :class:`~dicomconf.wire.capture.Conversation`); the channel is returned
    ready, or the handshake's error raised (PS3.15 B.1)."""
    them = "server" if us == "client" else "client"

    def record(outbound: bool, data: bytes, at: float) -> None:
        side = us if outbound else them
        (conversation.client_sent if side == "client" else conversation.server_sent)(data, at)

    channel = TLSChannel(sock, context, server_side=us == "server", server_hostname=server_hostname,
                         on_wire=record)
    channel.settimeout(timeout)
    channel.handshake(timeout)
    return channel


# ---------------------------------------------------------------------- key logs

_LOCK = threading.Lock()
_OWN: list[str] = []  # this process's private key log file, once made
_TAILS: dict[str, _Tail] = {}


class _Tail:
    """What was read so far of one key log file: the offset, the lines by client random, the handshakes
    under way that may write to it."""

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.sessions: dict[str, list[str]] = {}
        self.handshaking = 0


def key_log_source(context: ssl.SSLContext, handshaking: bool = False) -> str | None:
    """The file OpenSSL writes ``context``'s session secrets to, set to this process's own file
    if the context had none (see the module docstring); None where OpenSSL cannot log keys.
    ``handshaking``: a handshake on this context is about to start, and will :func:`_claim` its lines."""
    with _LOCK:
        try:
            name = context.keylog_filename
            if not name:
                if not _OWN:
                    fd, path = tempfile.mkstemp(prefix="dicomconf-", suffix=".keylog")
                    os.close(fd)
                    _OWN.append(path)
                    atexit.register(_remove, path)
                name = context.keylog_filename = _OWN[0]
        except (AttributeError, NotImplementedError, OSError, ValueError):
            return None
        name = os.fspath(name)
        tail = _TAILS.get(name)
        if tail is None:
            try:
                tail = _TAILS[name] = _Tail(os.path.getsize(name))
            except OSError:
                tail = _TAILS[name] = _Tail(0)
        tail.handshaking += handshaking
        return name


def _claim(path: str, client_random: bytes | None) -> list[str]:
    """The key log lines of the session whose ClientHello carried ``client_random`` (None: a handshake
    that failed, which takes none); the private file emptied when it is long and nobody handshakes."""
    with _LOCK:
        tail = _TAILS.setdefault(path, _Tail(0))
        tail.handshaking = max(0, tail.handshaking - 1)
        try:
            with open(path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() < tail.offset:  # truncated meanwhile: read it again from the start
                    tail.offset = 0
                fh.seek(tail.offset)
                chunk = fh.read()
        except OSError:
            return []
        end = chunk.rfind(b"\n") + 1
        tail.offset += end
        for line in chunk[:end].decode("ascii", "replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and not line.startswith("#"):
                lines = tail.sessions.setdefault(parts[1].lower(), [])
                if line.strip() not in lines:  # both ends in this process log the same secrets
                    lines.append(line.strip())
        while len(tail.sessions) > _KEPT_SESSIONS:  # the oldest sessions are forgotten
            del tail.sessions[next(iter(tail.sessions))]
        if (path in _OWN and not tail.handshaking and tail.offset >= KEY_LOG_LIMIT
                and end == len(chunk)):  # all of it read, and no handshake can be writing to it now
            try:
                os.truncate(path, 0)  # OpenSSL appends (mode "a"): its next line goes to the start
                tail.offset = 0
            except OSError:
                pass
        return list(tail.sessions.get(client_random.hex(), ())) if client_random is not None else []


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


__all__ = ["TLSChannel", "key_log_source", "start_tls"]
