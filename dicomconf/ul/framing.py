"""Stream framing: bytes in any chunking become whole PDUs (PS3.8 9.3.1).

Theory of operation
-------------------
Every PDU starts with a six-byte header whose last four bytes give the length
of what follows.  :class:`PDUReader` accumulates bytes until a whole PDU is
present and hands it out as one buffer; several PDUs in one chunk come out
together, one PDU spread over many chunks comes out once complete.

Zero copy where possible: a PDU that lies wholly inside the chunk given to
:meth:`PDUReader.feed` is returned as a ``memoryview`` slice of that chunk
(the caller must not mutate the chunk while it holds the PDU).  Only a PDU
that straddles chunks is assembled, once, into a new ``bytes``.

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


class PDUReader:
    """Incremental PDU framer.

    ``max_pdu_length`` bounds the whole PDU (header included); None means no
    bound.  After an error the reader is poisoned: every further ``feed``
    raises the same error.
    """

    __slots__ = ("max_pdu_length", "_pending", "_need", "_error")

    def __init__(self, max_pdu_length: int | None = None) -> None:
        self.max_pdu_length = max_pdu_length
        self._pending = bytearray()
        self._need = 0  # total length of the PDU being assembled in _pending (0: unknown yet)
        self._error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole PDU."""
        return len(self._pending)

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
            self._pending.clear()
            raise self._error
        return total

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes | memoryview]:
        """Add ``data``; return every PDU completed by it, in order."""
        if self._error is not None:
            raise self._error
        out: list[bytes | memoryview] = []
        view = memoryview(data)
        pos, end = 0, len(view)
        pending = self._pending
        if pending:
            # Finish the straddling PDU first.
            if not self._need:
                take = min(HEADER_LENGTH - len(pending), end)
                pending += view[:take]
                pos = take
                if len(pending) < HEADER_LENGTH:
                    return out
                pdu_type, length = _HEADER.unpack_from(pending)
                self._need = self._check(pdu_type, length)
            take = min(self._need - len(pending), end - pos)
            pending += view[pos : pos + take]
            pos += take
            if len(pending) < self._need:
                return out
            out.append(bytes(pending))
            pending.clear()
            self._need = 0
        unpack = _HEADER.unpack_from
        while end - pos >= HEADER_LENGTH:
            pdu_type, length = unpack(view, pos)
            total = self._check(pdu_type, length)
            if pos + total > end:
                break
            out.append(view[pos : pos + total])
            pos += total
        if pos < end:
            pending += view[pos:]
            if len(pending) >= HEADER_LENGTH:
                pdu_type, length = _HEADER.unpack_from(pending)
                self._need = self._check(pdu_type, length)
        return out
