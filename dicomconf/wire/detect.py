"""Is this TCP stream DICOM, and where does its next PDU start?

Theory of operation
-------------------
A DICOM Upper Layer stream is a sequence of PDUs, each a 6-byte header (PDU
type 01H-07H, a reserved byte, a 4-byte big-endian length) and that many
bytes (PS3.8 9.3.1).  Any TCP port may carry it, so a capture reader finds it
the way Wireshark's heuristic dissector does: by the shape of the bytes.

- :func:`plausible_header` checks one header: a known type, reserved byte 0,
  and a length that fits the type (4 for release, abort and reject PDUs; at
  least the fixed fields for A-ASSOCIATE-RQ/AC, whose protocol version has
  bit 0 set (PS3.8 9.3.2); a P-DATA-TF's first PDV inside the PDU with an odd
  context ID and a message control header below 4 (PS3.8 9.3.5, E.2)).
- :func:`association_start` checks the first bytes of a stream seen from its
  SYN: an A-ASSOCIATE-RQ whose AE title fields hold text and whose first item
  is the application context (PS3.8 9.3.2).
- :func:`find_pdu` scans held bytes for the first offset where a PDU starts,
  confirmed by its own structure (items or PDVs tile its body exactly) and by
  the next header right after it.  ``strict`` (deciding that a connection on
  an unknown port is DICOM at all) also requires, when no next header can
  confirm, that the candidate ends exactly where the stream ends.  The scan
  looks only at offsets where a type byte 01H-07H is followed by a zero byte
  (a regular expression, so non-DICOM bulk costs little) and resumes where it
  stopped when more bytes come.

Text protocols (HTTP, SMTP) never hold bytes 01H-07H followed by 00H where
headers are; TLS records start with 14H-18H; random bytes pass a header
check about once in 10^8 offsets and a confirmed pair practically never.
"""

from __future__ import annotations

import re
import struct

from dicomconf.ul import constants as C

# A PDU header found while resynchronising must announce at most this much.
RESYNC_MAX_PDU = 1 << 20
_CANDIDATE = re.compile(rb"[\x01-\x07]\x00", re.DOTALL)
_U32 = struct.Struct(">I")


def plausible_header(buf: bytes | bytearray | memoryview, pos: int) -> bool:
    """Could a PDU start at ``pos``?  (PS3.8 9.3.1; the fields each PDU type fixes.)"""
    if len(buf) - pos < 10:
        return False
    t, reserved = buf[pos], buf[pos + 1]
    (length,) = _U32.unpack_from(buf, pos + 2)
    if t not in C.PDU_NAMES or reserved:
        return False
    if t in (C.A_ASSOCIATE_RQ, C.A_ASSOCIATE_AC):
        return 68 <= length < (1 << 20) and bool(buf[pos + 7] & 1)
    if t == C.P_DATA_TF:
        (pdv,) = _U32.unpack_from(buf, pos + 6)
        return 2 <= pdv <= length - 4 and (len(buf) - pos < 12 or (buf[pos + 10] & 1 and buf[pos + 11] < 4))
    if t == C.A_ASSOCIATE_RJ:
        return length == 4 and buf[pos + 7] in C.RJ_RESULT_NAMES and buf[pos + 8] in C.RJ_SOURCE_NAMES
    if t == C.A_ABORT:
        return length == 4 and buf[pos + 8] in (C.ABORT_SOURCE_USER, C.ABORT_SOURCE_PROVIDER)
    return length == 4


def _tiles(buf: bytes | bytearray, pos: int, end: int, header: int, length_at: int, fmt: str) -> bool:
    """Do the items (PDVs) from ``pos`` tile ``[pos, end)`` exactly?"""
    size = struct.calcsize(fmt)
    while pos < end:
        if end - pos < header:
            return False
        pos += length_at + size + struct.unpack_from(fmt, buf, pos + length_at)[0]
    return pos == end


def _structure_ok(buf: bytes | bytearray, i: int, total: int) -> bool:
    """The candidate PDU at ``i`` (whole in ``buf``) has a body its items or PDVs tile."""
    if buf[i] == C.P_DATA_TF:
        return _tiles(buf, i + 6, i + total, 6, 0, ">I")
    if buf[i] in (C.A_ASSOCIATE_RQ, C.A_ASSOCIATE_AC):
        return _tiles(buf, i + 74, i + total, 4, 2, ">H")
    return True


def _ae_text(field: bytes | bytearray) -> bool:
    """An AE title field of the association PDUs: text of the default repertoire (PS3.5 6.2), NUL padding tolerated."""
    return all(b == 0 or 0x20 <= b < 0x7F for b in field)


def association_start(buf: bytes | bytearray, final: bool = False) -> bool | None:
    """Does a stream start with an A-ASSOCIATE-RQ (PS3.8 9.3.2)?  None: too few bytes yet to say.

    Beyond :func:`plausible_header`: both AE title fields hold text and the first item is the
    application context item (10H).  ``final``: no more bytes will come, so a short stream is a no.
    """
    if len(buf) < 10:
        return False if final or (buf and buf[0] != C.A_ASSOCIATE_RQ) else None
    if buf[0] != C.A_ASSOCIATE_RQ or not plausible_header(buf, 0):
        return False
    if len(buf) < 75:
        return False if final else None
    return _ae_text(buf[10:42]) and buf[74] == C.ITEM_APPLICATION_CONTEXT


def find_pdu(buf: bytes | bytearray, start: int = 0, final: bool = False,
             strict: bool = False) -> tuple[int | None, int]:
    """(offset of the first confirmed PDU, or None; where to resume the scan when more bytes come).

    A candidate is confirmed by its structure and the plausible header right after it.  With no
    bytes after it: at the stream's end (``final``) it is taken; so is one at offset 0 (where a
    segment began) unless ``strict``; ``strict`` takes it only if it ends exactly at the end.
    """
    n = len(buf)
    for match in _CANDIDATE.finditer(buf, start, max(start, n - 8)):
        i = match.start()
        if not plausible_header(buf, i):
            continue
        total = C.PDU_HEADER_LENGTH + _U32.unpack_from(buf, i + 2)[0]
        if total > RESYNC_MAX_PDU:
            continue
        if i + total > n:
            return None, i  # wait for the whole candidate
        if not _structure_ok(buf, i, total):
            continue
        if i + total + 10 > n:
            if strict:
                if final and i + total == n:
                    return i, i
                if final:
                    continue
                return None, i
            if final or i == 0:
                return i, i
            return None, i  # wait for the next header to confirm this one
        if not plausible_header(buf, i + total):
            continue
        return i, i
    return None, max(start, n - 9)


def resync_offset(buf: bytes | bytearray, final: bool = False) -> int | None:
    """The first offset where a PDU starts, confirmed by its own structure and the next header; None: wait."""
    return find_pdu(buf, 0, final)[0]
