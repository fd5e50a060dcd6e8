"""The C-FIND fast path: pending identifiers written straight from index rows (PS3.4 C.4.1.3.1.2, PS3.5 7).

Theory of operation
-------------------
The general path of :class:`~dicomconf.services.qr_find.QueryRetrieveFind`
builds a pydicom data set per match (the candidate, then the response with
the requested keys) and the driver encodes it: about 300 us per match.  In
the common case every requested key is an indexed column
(:data:`~dicomconf.services.index.COLUMNS`), the SQL alone decides the match
(:attr:`~dicomconf.services.index_query.Query.exact`) and the request's
transfer syntax is implicit or explicit VR little endian.  Then the response
identifier of a row is fixed in shape: the requested keys in ascending tag
order (PS3.5 7.1), each either a constant (Query/Retrieve Level, Retrieve AE
Title), the row's value of its column, or empty.  :func:`layout` prepares
that shape once per request and :meth:`Layout.encode` writes each row's
bytes: the element header (PS3.5 7.1.2 explicit VR with a 2-byte length,
7.1.3 implicit VR), the value as text (numbers in decimal, multiple values
as stored, separated by backslash) padded to even length with a space, or
a NUL for UI (PS3.5 6.2).

What the fast path does not take, it leaves to the general path, so the
answer is the same data set either way (a differential test decodes both):
any key without a column, a sequence, a key the Python predicate must
decide, another transfer syntax, a VR other than the short text ones
(per request: :func:`layout` gives None); a value that is not ASCII (the
general path adds Specific Character Set) or too long for a 2-byte length
(per row: :meth:`Layout.encode` gives None).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.datadict import dictionary_VR

from dicomconf.services.index_query import Query

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
# Text VRs with a 2-byte length in explicit VR (PS3.5 7.1.2, Table 7.1-1).
SHORT_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UI"})
_QR_LEVEL = 0x00080052
_RETRIEVE_AE = 0x00080054
_CHARSET = 0x00080005
_TAG = struct.Struct("<HH")


@dataclass(frozen=True, slots=True)
class EncodedReply:
    """A Pending C-FIND-RSP whose identifier is already encoded in the request's transfer syntax.

    Yielded by :meth:`~dicomconf.services.qr_find.QueryRetrieveFind.encoded` in place of a
    :class:`~dicomconf.services.base.Reply`; ``data`` is the identifier's bytes (PS3.7 9.1.2.1).
    """

    status: int
    data: bytes


def _element(tag: int, vr: str, raw: bytes, explicit: bool) -> bytes | None:
    """One element's bytes (``raw`` already padded to even length); None when the length does not fit."""
    head = _TAG.pack(tag >> 16, tag & 0xFFFF)
    if explicit:
        if len(raw) > 0xFFFF:
            return None
        return head + vr.encode("ascii") + len(raw).to_bytes(2, "little") + raw
    return head + len(raw).to_bytes(4, "little") + raw


def _padded(text: str, vr: str) -> bytes:
    raw = text.encode("ascii")
    if len(raw) & 1:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


class Layout:
    """The shape of one request's pending identifiers (see the module docstring)."""

    __slots__ = ("slots",)

    def __init__(self, slots: list[tuple]) -> None:
        # each slot: (None, constant bytes) or (row index, empty element bytes, header prefix, pad, explicit)
        self.slots = slots

    def encode(self, row: tuple) -> bytes | None:
        """The identifier of one index row, or None when the general path must write it."""
        parts = []
        append = parts.append
        for slot in self.slots:
            index = slot[0]
            if index is None:
                append(slot[1])
                continue
            value = row[index]
            if value is None or value == "":
                append(slot[1])
                continue
            kind = type(value)
            if kind is int:
                text = str(value)
            elif kind is str:
                text = value
                if not text.isascii():
                    return None
            else:
                return None
            raw = text.encode("ascii")
            if len(raw) & 1:
                raw += slot[3]
            n = len(raw)
            if slot[4]:
                if n > 0xFFFF:
                    return None
                append(slot[2] + n.to_bytes(2, "little") + raw)
            else:
                append(slot[2] + n.to_bytes(4, "little") + raw)
        return b"".join(parts)


@functools.cache
def _column_vr(keyword: str) -> str:
    """The VR an indexed column's value is returned with: the data dictionary's (as the general path)."""
    return dictionary_VR(keyword)


def layout(identifier: Dataset, query: Query, level: str, retrieve_ae: str, transfer_syntax: str) -> Layout | None:
    """The fast path's shape for a request, or None when the general path must answer it."""
    if transfer_syntax not in (IMPLICIT_VR_LE, EXPLICIT_VR_LE) or query.attrs or not query.exact:
        return None
    explicit = transfer_syntax == EXPLICIT_VR_LE
    position = {keyword: 1 + i for i, (keyword, _) in enumerate(query.cols)}
    slots: list[tuple] = []
    for elem in identifier:  # ascending tag order (pydicom keeps it so)
        tag = int(elem.tag)
        if tag == _CHARSET or tag & 0xFFFF == 0:
            continue
        if tag in (_QR_LEVEL, _RETRIEVE_AE):
            vr, text = ("CS", level) if tag == _QR_LEVEL else ("AE", retrieve_ae)
            if not text.isascii():
                return None
            raw = _element(tag, vr, _padded(text, vr), explicit)
            if raw is None:
                return None
            slots.append((None, raw))
            continue
        keyword = elem.keyword
        index = position.get(keyword)
        if index is None or elem.VR not in SHORT_TEXT_VRS:
            return None
        vr = _column_vr(keyword)
        if vr not in SHORT_TEXT_VRS:
            return None
        empty = _element(tag, elem.VR, b"", explicit)
        prefix = _TAG.pack(tag >> 16, tag & 0xFFFF) + (vr.encode("ascii") if explicit else b"")
        slots.append((index, empty, prefix, b"\x00" if vr == "UI" else b" ", explicit))
    return Layout(slots)


__all__ = ["EXPLICIT_VR_LE", "IMPLICIT_VR_LE", "EncodedReply", "Layout", "layout"]
