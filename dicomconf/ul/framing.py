"""Stream framing: bytes in any chunking become whole PDUs (PS3.8 9.3.1).

Theory of operation
-------------------
Every PDU starts with a six-byte header whose last four bytes give the length
of what follows.  :class:`PDUReader` accumulates bytes until a whole PDU is
present and hands it out as one buffer; several PDUs in one chunk come out
together, one PDU spread over many chunks comes out once complete.

Zero copy where possible: a PDU that lies wholly inside the chunk given to
:meth:`PDUReader.feed` is returned as a ``memoryview`` slice of that chunk
(the caller must not mutate the chunk while it holds the PDU).  A PDU that
straddles chunks is kept as a list of pieces (read-only slices of ``bytes``
chunks, copies of writable ones, small pieces gathered into one bytearray) and
joined once, into a new ``bytes``, when its last byte arrives.  Nothing is allocated from the announced length, so a
lying header costs no memory.

A length above ``max_pdu_length`` (the largest whole PDU the reader accepts,
header included) is refused as soon as the header is read, before any of the
body is buffered: :class:`RemoteProtocolError` with A-ABORT reason 6.
"""

from __future__ import annotations

import struct

from dicomconf.ul import constants as C
from dicomconf.ul.errors import RemoteProtocolError

_HEADER = struct.Struct(">BxI")
HEADER_LENGTH = C.PDU_HEADER_LENGTH
_SMALL_PIECE = 4096  # pieces shorter than this are copied together rather than held one by one


class FramingError(RemoteProtocolError):
    """A refused PDU header; ``completed`` lists the whole PDUs read before it."""

    def __init__(self, error: RemoteProtocolError, completed: list) -> None:
        super().__init__(error.message, error.clause, reason=error.reason, source=error.source, offset=error.offset)
        self.completed = completed


class PDUReader:
    """Incremental PDU framer (PS3.8 9.3.1).

    ``max_pdu_length`` bounds the whole PDU (header included); None means no
    bound.  After an error the reader is poisoned: every further ``feed``
    raises the same error.
    """

    __slots__ = ("max_pdu_length", "_head", "_parts", "_have", "_need", "_error")

    def __init__(self, max_pdu_length: int | None = None) -> None:
        self.max_pdu_length = max_pdu_length
        self._head = bytearray()  # the first bytes of a PDU whose header is not complete yet
        self._parts: list[bytes | bytearray | memoryview] = []  # pieces of a PDU whose header is known
        self._have = 0  # bytes in _parts
        self._need = 0  # total length of the PDU in _parts (0: none)
        self._error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole PDU."""
        return len(self._head) + self._have

    def _check(self, pdu_type: int, length: int) -> int:
        total = length + HEADER_LENGTH
        if self.max_pdu_length is not None and total > self.max_pdu_length:
            self._error = RemoteProtocolError(
                f"PDU type {pdu_type:#04x} announces length {length}, above the limit of "
                f"{self.max_pdu_length - HEADER_LENGTH}",
                "PS3.8 9.3.1, D.1",
                reason=C.ABORT_REASON_INVALID_PARAMETER_VALUE,
                offset=2,
            )
            self._head.clear()
            self._parts.clear()
            self._have = self._need = 0
            raise self._error
        return total

    def _append(self, piece: memoryview) -> None:
        """Hold a piece of the straddling PDU.

        A large slice of an immutable chunk is held as it is; a writable chunk
        may be reused by the caller, so it is copied; small pieces are gathered
        into one bytearray, so a peer trickling bytes costs no per-piece overhead.
        """
        parts = self._parts
        if len(piece) < _SMALL_PIECE:
            if parts and type(parts[-1]) is bytearray:
                parts[-1] += piece
            else:
                parts.append(bytearray(piece))
        else:
            parts.append(piece if piece.readonly else bytes(piece))
        self._have += len(piece)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | memoryview]:
        """Add ``data``; return every PDU completed by it, in order.

        A refused length raises :class:`FramingError`, whose ``completed``
        holds the whole PDUs that preceded the bad header in the same call,
        so that a driver can act on them before it aborts.
        """
        out: list[bytes | memoryview] = []
        try:
            if self._error is not None:
                raise self._error
            view = memoryview(data)
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            pos, end = 0, len(view)
            head = self._head
            if head:
                take = min(HEADER_LENGTH - len(head), end)
                head += view[:take]
                pos = take
                if len(head) < HEADER_LENGTH:
                    return out
                pdu_type, length = _HEADER.unpack_from(head)
                self._need = self._check(pdu_type, length)
                with memoryview(head) as header:
                    self._append(header)  # under _SMALL_PIECE: copied, so head may be reused
                head.clear()
            if self._need:
                take = min(self._need - self._have, end - pos)
                if take:
                    self._append(view[pos : pos + take])
                    pos += take
                if self._have < self._need:
                    return out
                out.append(b"".join(self._parts))
                self._parts.clear()
                self._have = self._need = 0
            unpack = _HEADER.unpack_from
            while end - pos >= HEADER_LENGTH:
                pdu_type, length = unpack(view, pos)
                total = length + HEADER_LENGTH
                if self.max_pdu_length is not None and total > self.max_pdu_length:
                    self._check(pdu_type, length)
                if pos + total > end:
                    self._need = total
                    self._append(view[pos:])
                    return out
                out.append(view[pos : pos + total])
                pos += total
            if pos < end:
                head += view[pos:]
        except RemoteProtocolError as exc:
            raise FramingError(exc, out) from None
        return out
