"""The low-level SCU connection: say anything, at any moment (PS3.8 9.1, 9.3).

Theory of operation
-------------------
A :class:`Connection` is one TCP (optionally TLS) connection to the target,
wherever it is (a host name, an IPv4 or IPv6 address), driven from one thread with blocking calls and explicit timeouts.  It has
no state machine on purpose: a conformance harness must be able to send an
A-RELEASE-RQ before the association exists or half a PDU and then nothing.

Outbound, :meth:`Connection.send` writes bytes, a core PDU object or a crafted
scapy packet; :meth:`Connection.send_chunks` splits bytes into chosen pieces
with delays (segmentation tests).  Inbound, bytes are read only when the
caller asks (:meth:`receive_pdu`, :meth:`wait_closed`, and a non-blocking
drain before every send and before close), framed by the core's
:class:`~dicomconf.ul.framing.PDUReader` and decoded by the core's strict
codec.  A PDU that does not decode still comes back, as a :class:`Received`
whose ``pdu`` is None and whose ``error`` says why.

Every byte in both directions goes to a
:class:`~dicomconf.wire.capture.Conversation` (for the pcap), and every whole
PDU in both directions goes through one
:class:`~dicomconf.wire.findings.ConversationState`, so that the findings of a
received PDU can depend on what was negotiated.  Findings about the PDUs we
sent (deliberate violations, usually) are kept apart in ``sent_findings``.

The end of the connection is an exception, :class:`Closed` (``kind`` is
"closed" for an orderly FIN, "reset" for an RST), raised by every read after
it was seen; :class:`Silence` says nothing arrived within the timeout.
Every chunk is stamped with the time it crossed the socket on our side:
what we send with the time just before ``sendall`` hands it to the kernel
(so a reply is never stamped before the request that caused it), what we
receive with the kernel's arrival time (:mod:`dicomconf.scu.stamps`:
``SO_TIMESTAMPNS`` on Linux, else the time of the read), so a PDU that
arrived while nobody was reading is stamped when it arrived, in the capture
and in :attr:`Received.at`.

With TLS (PS3.15 B.1) the socket is a :class:`~dicomconf.scu.tls_channel.TLSChannel`:
``conversation`` records the TLS records as they were on the wire,
``decrypted`` (None without TLS) the DICOM stream inside them, and
``key_log`` holds the session's secrets in the NSS key log format, so the
wire capture can be decrypted (Wireshark, tshark).  Framing and findings see
the decrypted stream, as without TLS.

What a peer sends cannot make the harness hold memory without end.  The
framer refuses a PDU longer than the receive bound (:attr:`Connection.receive_bound`:
the larger of the Maximum Length we announced, header included, and
:data:`DEFAULT_RECEIVE_BOUND`, 64 MiB; an announced 0, "unlimited" by PS3.8
D.1, gets the default): such a PDU is handed out as soon as its header is
read, as an undecodable Received whose ``raw`` holds at most its first
:data:`PENDING_SHOWN` bytes, and the rest of its announced length is counted
and dropped as it arrives; framing goes on after it.  The bytes of an
incomplete PDU are held once, by the framer (``pending`` shows the first
:data:`PENDING_SHOWN` of them).  ``findings`` and ``passed_over`` keep their
first :data:`KEPT_AT_MOST` entries and count the rest (``left_out``), so a
peer streaming small PDUs through a long wait cannot grow them either.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from dicomconf.scu import stamps
from dicomconf.scu.target import check_host, check_port
from dicomconf.scu.tls_channel import TLSChannel, start_tls
from dicomconf.ul import constants as C
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.framing import HEADER_LENGTH, FramingError, PDUReader
from dicomconf.ul.pdu import PDU, decode_pdu, pdu_name
from dicomconf.wire.capture import Conversation
from dicomconf.wire.findings import ConversationState, Finding

RECV_SIZE = 256 * 1024
DRAIN_LIMIT = 4 * RECV_SIZE  # bytes read at most by one drain before a send or a close
DEFAULT_RECEIVE_BOUND = 64 * 1024 * 1024  # the longest PDU held whatever we announced (PS3.8 9.3.1, D.1)
PENDING_SHOWN = 64 * 1024  # bytes of an incomplete or refused PDU kept for reports
KEPT_AT_MOST = 1000  # entries of findings / passed_over kept; later ones are counted
_LINGER_RESET = struct.pack("ii", 1, 0)


class Closed(Exception):
    """The peer closed (``kind`` "closed") or reset (``kind`` "reset") the connection.

    ``at`` is the monotonic time it was noticed.
    """

    def __init__(self, kind: str, at: float) -> None:
        super().__init__(f"connection {'reset' if kind == 'reset' else 'closed'} by the peer")
        self.kind = kind
        self.at = at


class Silence(Exception):
    """Nothing (or not enough for a whole PDU, or for what the caller waits for) arrived within ``waited`` seconds."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"nothing arrived within {waited:.3f} s")
        self.waited = waited


class Kept(list):
    """A list that keeps its first ``limit`` items and counts the others in ``left_out``."""

    def __init__(self, limit: int = KEPT_AT_MOST) -> None:
        super().__init__()
        self.limit = limit
        self.left_out = 0

    def append(self, item: Any) -> None:
        if len(self) < self.limit:
            super().append(item)
        else:
            self.left_out += 1

    def extend(self, items: Any) -> None:
        for item in items:
            self.append(item)

    def __iadd__(self, items: Any) -> "Kept":
        self.extend(items)
        return self


@dataclass(frozen=True, slots=True)
class Received:
    """One whole PDU as it came from the peer (PS3.8 9.3.1 framing).

    ``pdu`` is the decoded PDU, or None when the core codec refused it, in
    which case ``error`` says why (and which A-ABORT it deserves).  A
    connection that closes in the middle of a PDU yields a last Received with
    the bytes that did arrive.
    """

    raw: bytes
    pdu: PDU | None
    error: RemoteProtocolError | None
    findings: tuple[Finding, ...]
    at: float

    @property
    def name(self) -> str:
        """The PDU's name ("A-ASSOCIATE-AC"), or "undecodable"."""
        return pdu_name(self.pdu) if self.pdu is not None else "undecodable"


_KNOWN_PDU_TYPES = frozenset(range(0x01, 0x08))  # A-ASSOCIATE-RQ (01H) to A-ABORT (07H): PS3.8 9.3.1
_LARGEST_NON_DATA_PDU = 1 << 20  # an association/release/abort PDU this long is not one


def _impossible_header(tail: bytes | bytearray) -> str | None:
    """Why the unframed bytes at the head of the stream cannot start a PDU, or None.

    An unknown PDU type cannot be framed at all; a PDU other than P-DATA-TF of a
    megabyte or more, or any PDU longer than 2**31 bytes, would be waited for
    forever by a framer that trusts the length.
    """
    if not tail:
        return None
    if tail[0] not in _KNOWN_PDU_TYPES:
        return f"not a DICOM PDU: unknown PDU type {tail[0]:#04x}"
    if len(tail) < 6:
        return None
    length = struct.unpack_from(">I", tail, 2)[0]
    if length >= 1 << 31 or (tail[0] != 0x04 and length >= _LARGEST_NON_DATA_PDU):
        return f"not a DICOM PDU: PDU type {tail[0]:#04x} with an impossible length of {length} bytes"
    return None


def connect_failure(exc: BaseException, timeout: float) -> tuple[str, str]:
    """Why :meth:`Connection.open` failed: a cause keyword (``resolve``, ``refused``,
    ``connect``, ``tls``) and a phrase that follows the target's address in a message."""
    if isinstance(exc, socket.gaierror):
        return "resolve", f"does not resolve ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "refused the connection: nothing listens on that port"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "connect", f"did not accept a TCP connection within {timeout:g}s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls", f"TLS certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return "tls", f"TLS handshake failed: {exc.reason or exc}"
    return "connect", f"could not be connected to: {getattr(exc, 'strerror', None) or exc}"


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    encode = getattr(data, "encode", None)
    if callable(encode) and hasattr(data, "pdu_type"):
        return encode()
    if hasattr(data, "__bytes__") and not isinstance(data, (str, int)):
        return bytes(data)  # a scapy Packet, or anything that knows its bytes
    raise TypeError(f"cannot send a {type(data).__name__}: give bytes, a dicomconf PDU or a scapy packet")


class Connection:
    """One connection to the target; see the module docstring."""

    def __init__(
        self, sock: socket.socket, conversation: Conversation, timeout: float = 10.0, *, peer_requests: bool = False
    ) -> None:
        self.sock = sock
        # Which side we are: the requestor that connected (the default), or the acceptor of a
        # connection the peer opened (:meth:`accepted`); findings and the capture follow it.
        self.peer_requests = peer_requests
        self._us, self._them = ("server", "client") if peer_requests else ("client", "server")
        self.timeout = timeout
        self.local = sock.getsockname()[:2]
        self.peer = sock.getpeername()[:2]
        self.conversation = conversation
        self.findings: Kept = Kept()
        self.sent_findings: Kept = Kept()
        self.passed_over: Kept = Kept()
        self._state = ConversationState(data_sets_of=(peer_requests,))  # the peer's data sets, not ours
        self.default_receive_bound = DEFAULT_RECEIVE_BOUND
        self._reader = PDUReader(DEFAULT_RECEIVE_BOUND)
        self._out_reader = PDUReader()
        self._tail = bytearray()  # the first PENDING_SHOWN bytes of the incomplete PDU the framer holds
        self._skip = 0  # bytes of a PDU above the receive bound still to come (dropped)
        self.pdus_received = 0  # PDUs from the peer that decoded: it spoke DICOM on this connection
        self._offset = 0  # bytes of the peer's stream handed out so far
        self._garbage = False  # the stream stopped being PDUs (see _not_a_pdu)
        self._write_shut = False  # shutdown_write() was called
        self._ready: deque[Received] = deque()
        self._end: Closed | None = None
        self._local_end: str | None = None
        self._last_at = 0.0  # Received.at never goes back
        self._stamp: float | None = None  # the time and the conversation of the next _record
        self._into = conversation
        self.decrypted: Conversation | None = None  # the DICOM stream inside TLS (see the module docstring)
        self.key_log: list[str] = []
        if isinstance(sock, TLSChannel):
            conversation.tls = True
            self.decrypted = Conversation(conversation.client, conversation.server)
            for event in conversation.events:
                if event.kind == "open":
                    self.decrypted.opened(event.ts)
            self.key_log = list(sock.key_lines)
            sock.on_wire = self._wire
            self._stamped = False
        else:
            self._stamped = stamps.enable(sock)

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        timeout: float = 10.0,
        server_name: str | None = None,
    ) -> "Connection":
        """Connect to ``host``:``port``, optionally with TLS (PS3.15 B.1).

        ``host`` is a host name or a literal IPv4/IPv6 address; a name is
        resolved and every address it resolves to is tried in order until
        one accepts (``socket.create_connection``).  With TLS, the name
        checked against the target's certificate (and sent as SNI) is
        ``server_name`` when given, else ``host``, unless the context does not
        check host names.
        """
        host = check_host(host, "target host")
        port = check_port(port)
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            peer = sock.getpeername()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            local = sock.getsockname()
            conversation = Conversation(client=(local[0], local[1]), server=(peer[0], peer[1]))
            conversation.opened()
            if tls is not None:
                name = (server_name or host) if tls.check_hostname else None
                sock = start_tls(sock, tls, conversation, "client", timeout, server_hostname=name)
        except BaseException:
            sock.close()
            raise
        return cls(sock, conversation, timeout)

    @classmethod
    def accepted(cls, sock: socket.socket, *, timeout: float = 10.0, opened_at: float | None = None,
                 tls: ssl.SSLContext | None = None) -> "Connection":
        """Wrap a connection a peer opened to us (PS3.8 9.1.2: we are the acceptor, the peer the
        requestor): what it sends is checked by the requestor's rules, what we send by the
        acceptor's, and the capture shows the peer as the TCP client.  With ``tls`` the server
        side of the handshake is made first (PS3.15 B.1); if it fails the socket is closed and
        the error raised."""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        peer, local = sock.getpeername(), sock.getsockname()
        conversation = Conversation(client=(peer[0], peer[1]), server=(local[0], local[1]))
        conversation.opened(opened_at)
        if tls is not None:
            try:
                sock = start_tls(sock, tls, conversation, "server", timeout)
            except BaseException:
                sock.close()
                raise
        return cls(sock, conversation, timeout, peer_requests=True)

    def shutdown_write(self) -> None:
        """End our sending side only (a FIN, TCP half-close); what the peer sends is still read
        (PS3.8 9.1.1 relies on RFC 793, where a half-closed connection still carries the other
        direction).  Later sends raise OSError."""
        if self._local_end is not None:
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._write_shut = True

    def peer_ended(self) -> str | None:
        """Read what has already arrived (without waiting) and say whether the peer has
        ended the connection: "closed" (FIN), "reset" (RST), or None."""
        if self._end is None and self._local_end is None:
            try:
                self._drain()
            except OSError:
                pass
        return self._end.kind if self._end is not None else None

    @property
    def pending(self) -> bytes:
        """The bytes of an incomplete PDU received so far (PS3.8 9.3.1), for reports: at most
        the first :data:`PENDING_SHOWN` of them."""
        return bytes(self._tail)

    @property
    def receive_bound(self) -> int:
        """The longest whole PDU this connection holds (PS3.8 9.3.1, D.1): the Maximum Length we
        announced plus the PDU header, or ``default_receive_bound`` if that is larger or we
        announced 0 (unlimited) or nothing yet."""
        ours = self._state.limit_for(self.peer_requests)  # what the receiver of the peer's PDUs (we) announced
        return max(self.default_receive_bound, (ours or 0) + HEADER_LENGTH)

    @property
    def is_open(self) -> bool:
        """False once either side closed or reset the connection."""
        return self._end is None and self._local_end is None

    # ---------------------------------------------------------------- sending

    def send(self, data: Any) -> None:
        """Send bytes, a PDU object (its ``encode()``) or a scapy packet (its bytes), as they are.

        Raises :class:`Closed` if the peer has reset the connection (or
        closed it and the write fails), ``TimeoutError`` if the peer stopped
        reading and the bytes could not be written within the connection's
        ``timeout``.
        """
        self._write(_as_bytes(data))

    def send_chunks(self, data: bytes, sizes: int | list[int], delay: float = 0.0) -> None:
        """Send ``data`` in pieces, sleeping ``delay`` seconds between pieces.

        ``sizes`` is one size (every piece, the last one shorter) or a list of
        sizes; bytes left after the list go as one last piece.  TCP_NODELAY is
        set, so with a delay each piece normally travels in its own segment.
        """
        data = _as_bytes(data)
        if isinstance(sizes, int):
            if sizes < 1:
                raise ValueError("chunk size must be at least 1")
            pieces = [data[i : i + sizes] for i in range(0, len(data), sizes)]
        else:
            if any((not isinstance(s, int)) or s < 1 for s in sizes):
                raise ValueError(f"chunk sizes must be positive integers, got {sizes!r}")
            pieces, pos = [], 0
            for size in sizes:
                if pos >= len(data):
                    break
                pieces.append(data[pos : pos + size])
                pos += size
            if pos < len(data):
                pieces.append(data[pos:])
        for i, piece in enumerate(pieces):
            if i and delay > 0:
                time.sleep(delay)
            self._write(piece)

    def _write(self, data: bytes) -> None:
        if self._local_end is not None:
            raise OSError(f"this connection was already {self._local_end} locally")
        if self._write_shut:
            raise OSError("our sending side of this connection was already shut down (half-close)")
        self._drain()
        if self._end is not None and self._end.kind == "reset":
            raise self._end
        at = time.time()  # just before the kernel has it: see the module docstring
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as exc:
            if self._end is None:
                self._peer_ended("reset" if isinstance(exc, ConnectionResetError) else "closed")
            raise self._end from exc  # type: ignore[misc]
        self._capture(self._us, data, at, self.decrypted)
        self._observe_sent(data)

    def _wire(self, outbound: bool, data: bytes, at: float) -> None:
        """The TLS channel's report of raw bytes on the socket: the records, for the capture."""
        self._capture(self._us if outbound else self._them, data, at, None)

    def _capture(self, side: str, data: bytes, at: float, into: Conversation | None) -> None:
        self._stamp, self._into = at, into or self.conversation
        self._record(side, data)

    def _record(self, side: str, data: bytes) -> None:
        """Add what ``side`` sent to the capture (the conversation and time :meth:`_capture`
        chose); a subclass that keeps no capture overrides this."""
        if side == "client":
            self._into.client_sent(data, self._stamp)
        else:
            self._into.server_sent(data, self._stamp)

    def _observe_sent(self, data: bytes) -> None:
        try:
            pdus = self._out_reader.feed(data)
        except RemoteProtocolError:
            return  # our own stream stopped framing; nothing more to observe
        for pdu in pdus:
            self.sent_findings.extend(self._state.observe(bytes(pdu), not self.peer_requests))

    # ---------------------------------------------------------------- receiving

    def receive_pdu(self, timeout: float) -> Received:
        """Return the next whole PDU from the peer (PS3.8 9.3.1).

        Raises :class:`Silence` if no whole PDU arrives within ``timeout``
        seconds, :class:`Closed` once the peer has closed or reset (after every
        PDU that arrived before it has been returned).
        """
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self._end is not None:
                raise self._end
            remaining = deadline - time.monotonic()
            self._read(max(remaining, 0.0))
            # Past the deadline one poll is made and no more, so bytes that never make a whole
            # PDU (a length that lies, then a stream without end) cannot hold the caller.
            if remaining <= 0 and not self._ready and self._end is None:
                raise Silence(timeout)
        return self._ready.popleft()

    def wait_closed(self, timeout: float) -> str:
        """Wait for the peer to end the connection; return "closed" (FIN) or "reset" (RST).

        PDUs that arrive meanwhile do not stop the wait: they are checked as
        usual (``findings``) and appended to ``passed_over``.  Raises
        :class:`Silence` if the connection is still open after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while True:
            while self._ready:
                self.passed_over.append(self._ready.popleft())
            if self._end is not None:
                return self._end.kind
            remaining = deadline - time.monotonic()
            self._read(max(remaining, 0.0))
            if remaining <= 0 and self._end is None:  # a peer that keeps sending does not extend the wait
                while self._ready:
                    self.passed_over.append(self._ready.popleft())
                raise Silence(timeout)

    def _read(self, timeout: float) -> bool:
        """One recv with ``timeout`` (0: poll); False if nothing was there."""
        if self._local_end is not None:
            raise OSError(f"this connection was already {self._local_end} locally")
        try:
            self.sock.settimeout(timeout if timeout > 0 else 0.0)
            if self.decrypted is not None:
                data, arrived = self.sock.recv_stamped(RECV_SIZE)
            else:
                data, arrived = stamps.recv(self.sock, RECV_SIZE, self._stamped)
        except (socket.timeout, BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except ConnectionResetError:
            self._peer_ended("reset")
            return True
        except ssl.SSLError:
            self._peer_ended("closed")
            return True
        if not data:
            self._peer_ended("closed")
            return True
        self._capture(self._them, data, arrived, self.decrypted)
        # Received.at is monotonic: the arrival time, moved to that clock (and never going back).
        self._last_at = max(self._last_at, min(time.monotonic() - (time.time() - arrived), time.monotonic()))
        self._take(data, self._last_at)
        return True

    def _drain(self) -> None:
        """Read what has already arrived, without waiting: at most :data:`DRAIN_LIMIT` bytes' worth of
        reads, so that a peer sending without end cannot hold a send or a close."""
        for _ in range(DRAIN_LIMIT // RECV_SIZE):
            if self._end is not None or not self._read(0):
                return

    def _take(self, data: bytes, at: float) -> None:
        if self._garbage:
            self._not_a_pdu(bytes(data), at, "more bytes after what was not a DICOM PDU")
            return
        view = memoryview(data)
        if self._skip:  # the rest of a PDU above the receive bound: counted, not kept
            dropped = min(self._skip, len(view))
            self._skip -= dropped
            self._offset += dropped
            view = view[dropped:]
            if not view:
                return
        start = self._offset + self._reader.buffered  # the stream position of view[0]
        self._reader.max_pdu_length = self.receive_bound
        try:
            pdus, refused = self._reader.feed(view), False
        except FramingError as exc:
            pdus, refused = exc.completed, True
        for raw in pdus:
            raw = bytes(raw)
            self._offset += len(raw)
            self._ready.append(self._received(raw, at))
        if refused:
            self._refuse(view, start, at)
            return
        self._keep_pending(view, start)
        why = _impossible_header(self._tail)
        if why is not None:
            raw = bytes(self._tail)
            self._offset += self._reader.buffered - len(raw)  # bytes held beyond what is shown
            self._tail.clear()
            self._reader = PDUReader()
            self._garbage = True
            self._not_a_pdu(raw, at, why)

    def _keep_pending(self, view: memoryview, start: int) -> None:
        """Keep the first :data:`PENDING_SHOWN` bytes of the PDU the framer is still waiting for
        (it starts at stream position ``self._offset``: everything before it was handed out)."""
        held = self._reader.buffered
        if not held:
            self._tail.clear()
        elif self._offset >= start:  # it starts in this chunk: its bytes are the chunk's last ``held``
            self._tail = bytearray(view[len(view) - held :][:PENDING_SHOWN])
        elif len(self._tail) < PENDING_SHOWN:  # it goes on from an earlier chunk
            self._tail += view[: PENDING_SHOWN - len(self._tail)]

    def _refuse(self, view: memoryview, start: int, at: float) -> None:
        """The framer refused a header announcing more than :attr:`receive_bound` (PS3.8 9.3.1,
        D.1): hand the PDU out now, undecodable, with its first bytes, and drop the rest of its
        announced length as it comes."""
        bound = self._reader.max_pdu_length or 0
        begin = self._offset - start  # where the refused PDU starts in view (< 0: its header began earlier)
        head = bytes(view[begin:]) if begin >= 0 else bytes(self._tail[:-begin]) + bytes(view)
        self._reader = PDUReader(bound)
        self._tail.clear()
        why = _impossible_header(head)
        if why is not None:
            self._garbage = True
            self._not_a_pdu(head, at, why)
            return
        pdu_type, length = head[0], struct.unpack_from(">I", head, 2)[0]
        total = length + HEADER_LENGTH
        error = RemoteProtocolError(
            f"PDU type {pdu_type:#04x} announces a length of {length} bytes, above the harness's receive bound "
            f"of {bound - HEADER_LENGTH} (the larger of the Maximum Length we announced and "
            f"{self.default_receive_bound - HEADER_LENGTH}); its bytes are counted, not kept "
            f"(at byte {self._offset} of the stream)",
            "PS3.8 9.3.1, D.1", reason=C.ABORT_REASON_INVALID_PARAMETER_VALUE, offset=self._offset,
        )
        findings: tuple[Finding, ...] = ()
        ours = self._state.limit_for(self.peer_requests)
        if pdu_type == C.P_DATA_TF and ours and length > ours:
            findings = (Finding("pdata.exceeds-max-length", "PS3.8 D.1.1", "must", 2,
                                f"P-DATA-TF variable field of {length} bytes exceeds the peer's maximum length {ours}"),)
            self.findings.extend(findings)
        self._ready.append(Received(head[:PENDING_SHOWN], None, error, findings, at))
        if len(head) >= total:  # the whole refused PDU is in this chunk: frame what follows it
            self._offset += total
            if len(head) > total:
                self._take(head[total:], at)
        else:
            self._offset += len(head)
            self._skip = total - len(head)

    def _not_a_pdu(self, raw: bytes, at: float, why: str) -> None:
        """Bytes that cannot be (the start of) a PDU (PS3.8 9.3.1): handed out at once as an
        undecodable Received, so a caller sees them now rather than as silence at its deadline;
        the stream cannot be framed after them, so every later chunk comes out the same way."""
        error = RemoteProtocolError(f"{why} (at byte {self._offset} of the stream)", "PS3.8 9.3.1",
                                    offset=self._offset)
        self._offset += len(raw)
        findings = tuple(self._state.observe(raw, self.peer_requests)) if raw else ()
        self.findings.extend(findings)
        self._ready.append(Received(raw, None, error, findings, at))

    def _received(self, raw: bytes, at: float) -> Received:
        pdu: PDU | None = None
        error: RemoteProtocolError | None = None
        try:
            pdu = decode_pdu(raw)
        except RemoteProtocolError as exc:
            error = exc
        findings = tuple(self._state.observe(raw, self.peer_requests))
        self.findings.extend(findings)
        if pdu is not None:
            self.pdus_received += 1
        return Received(raw, pdu, error, findings, at)

    def _peer_ended(self, kind: str) -> None:
        at = time.monotonic()
        held = self._reader.buffered if not self._garbage else 0
        if held:
            raw = bytes(self._tail)
            self._tail.clear()
            self._reader = PDUReader()
            shown = f" (the first {len(raw)} kept)" if len(raw) < held else ""
            error = RemoteProtocolError(
                f"connection {kind} after {held} byte(s) of an incomplete PDU{shown}", "PS3.8 9.3.1"
            )
            findings = tuple(self._state.observe(raw, self.peer_requests))
            self.findings.extend(findings)
            self._ready.append(Received(raw, None, error, findings, at))
        self._ended(kind, self._them)
        self._end = Closed(kind, at)

    # ---------------------------------------------------------------- ending

    def close(self) -> None:
        """Close in order (FIN).  What already arrived is read first, so the
        kernel does not answer unread data with an RST.  Idempotent."""
        if self._local_end is not None:
            return
        if self._end is None:
            try:
                self._drain()
            except OSError:
                pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._local_end = "closed"
        if self._end is None or self._end.kind == "closed":
            self._ended("closed", self._us)

    def reset(self) -> None:
        """Abort the TCP connection with an RST (SO_LINGER on, zero timeout).  Idempotent."""
        if self._local_end is not None:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
        self.sock.close()
        self._local_end = "reset"
        if self._end is None:
            self._ended("reset", self._us)

    def _ended(self, kind: str, by: str) -> None:
        """The FIN or RST of ``by``, in the capture and in the decrypted copy."""
        for conv in (self.conversation, self.decrypted):
            if conv is not None:
                (conv.reset if kind == "reset" else conv.closed)(by=by)

    def __enter__(self) -> "Connection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._local_end or (self._end.kind if self._end else "open")
        return f"<Connection {self.local} -> {self.peer} {state}>"
