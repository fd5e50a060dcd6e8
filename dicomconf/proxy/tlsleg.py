"""TLS on one leg of the relay: terminated towards the requestor, originated towards the acceptor.

Theory of operation
-------------------
PS3.15 B.1 carries the Upper Layer over TLS; the proxy ends the requestor's
TLS connection and opens its own to the acceptor (either leg may be TLS, or
both).  A :class:`TLSLeg` runs one side's TLS in memory: an ``ssl.SSLObject``
over two ``ssl.MemoryBIO`` (the ``ssl`` module's sans-IO form), so the relay
keeps reading and writing the raw bytes itself and sees the TLS records as
they were on the wire.  :meth:`TLSLeg.feed` takes the raw bytes read from the
socket and returns the plaintext they complete (the handshake runs inside);
:meth:`TLSLeg.send` encrypts plaintext, or holds it until the handshake is
done; :meth:`TLSLeg.close` sends close_notify.  Every raw write goes through
``write_raw``, which the relay points at the transport and the leg's capture
(:mod:`dicomconf.wire.capture`); the session secrets go to the context's key
log (``SSLContext.keylog_filename``, NSS key log format), from which
:func:`keys_for` picks the lines of one connection by its ClientHello's
random (RFC 8446 4.1.2, RFC 5246 7.4.1.2), so that Wireshark and tshark
decrypt that capture.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

READ_SIZE = 256 * 1024
_HANDSHAKE, _CLIENT_HELLO = 22, 1  # TLS record content type, handshake message type


class TLSError(Exception):
    """The TLS of a leg failed (handshake refused, bad record): one line saying why."""


class TLSLeg:
    """One side's TLS connection, in memory (see the module docstring)."""

    def __init__(self, ctx: ssl.SSLContext, server_side: bool, write_raw: Callable[[bytes], None],
                 server_hostname: str | None = None) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_side=server_side,
                                server_hostname=None if server_side else server_hostname)
        self.server_side = server_side
        self.write_raw = write_raw
        self.ready = False
        self.held: list[bytes] = []  # plaintext to send once the handshake is done
        self.closing = False
        self.client_hello = bytearray()  # the first raw bytes from the client, until its random is known
        self.random: bytes | None = None
        self.version: str | None = None  # negotiated (kept: unwrap forgets it)
        self.cipher: str | None = None

    def start(self) -> None:
        """The client side speaks first: its ClientHello."""
        self._handshake()

    def feed(self, raw: bytes) -> list[bytes]:
        """Raw bytes read from the socket; the plaintext they complete (raises :class:`TLSError`)."""
        if self.server_side and self.random is None:
            self._note_hello(raw)
        self.incoming.write(raw)
        out: list[bytes] = []
        if not self.ready:
            self._handshake()
            if not self.ready:
                return out
        while True:
            try:
                data = self.obj.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify: the plaintext stream ended
                break
            except ssl.SSLError as exc:
                raise TLSError(_why(exc)) from None
            if not data:
                break
            out.append(data)
        self._flush()
        return out

    def feed_eof(self) -> None:
        self.incoming.write_eof()

    def send(self, data: bytes) -> None:
        """Encrypt ``data`` and write it (held until the handshake is done)."""
        if not self.ready:
            self.held.append(bytes(data))
            return
        try:
            self.obj.write(data)
        except ssl.SSLError as exc:
            raise TLSError(_why(exc)) from None
        self._flush()

    def close(self) -> None:
        """Send close_notify (RFC 8446 6.1); the peer's is not awaited."""
        if self.closing or not self.ready:
            return
        self.closing = True
        try:
            self.obj.unwrap()
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        self._flush()

    def describe(self) -> dict[str, object]:
        """Version and suite negotiated, for the report."""
        return {"version": self.version, "cipher": self.cipher,
                "client_random": self.random.hex() if self.random else None}

    def _handshake(self) -> None:
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._flush()  # the alert, if OpenSSL made one
            raise TLSError(_why(exc)) from None
        self.ready = True
        self.version = self.obj.version()
        cipher = self.obj.cipher()
        self.cipher = cipher[0] if cipher else None
        self._flush()
        held, self.held = self.held, []
        for data in held:
            self.send(data)

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            if not self.server_side and self.random is None:
                self._note_hello(data)
            self.write_raw(data)

    def _note_hello(self, raw: bytes) -> None:
        """The client random of the ClientHello (record header 5, handshake header 4, version 2)."""
        self.client_hello += raw[:64]
        hello = self.client_hello
        if len(hello) >= 43:
            if hello[0] == _HANDSHAKE and hello[5] == _CLIENT_HELLO:
                self.random = bytes(hello[11:43])
            else:
                self.random = b""


def _why(exc: ssl.SSLError) -> str:
    return getattr(exc, "verify_message", None) or exc.reason or str(exc)


def keys_for(keylog: Path, randoms: list[bytes]) -> str:
    """The lines of an NSS key log file that belong to the connections of ``randoms`` (their ClientHello randoms)."""
    wanted = {r.hex() for r in randoms if r}
    if not wanted or not keylog.exists():
        return ""
    out = []
    for line in keylog.read_text(encoding="ascii", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].lower() in wanted:
            out.append(line)
    return "\n".join(out) + ("\n" if out else "")


__all__ = ["READ_SIZE", "TLSError", "TLSLeg", "keys_for"]
