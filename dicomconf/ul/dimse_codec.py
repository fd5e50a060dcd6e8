"""DIMSE command sets and data sets: codec, command fields, status meanings (PS3.7 6.3, E; Annex C).

Theory of operation
-------------------
A command set is group 0000 encoded implicit VR little endian, opened by
Command Group Length (0000,0000) (PS3.7 6.3.1, E.1).  :func:`encode_command`
writes it with pydicom and computes the group length; :func:`decode_command`
walks the elements itself (framing, tag order, group length, VR from the
data dictionary or UN) and hands pydicom only values to convert, so a malformed command set is a :class:`RemoteProtocolError`
(reason 6) naming the offset, never a pydicom exception.

:func:`read_command` is the receive path's fast reader: with ``struct`` only,
it accepts the regular command sets (every element a US, UL or UI of the data
dictionary, single-valued, UIDs of digits and dots) and returns their values
by element number.  Anything else, malformed or merely unusual, gives None and
the caller takes :func:`decode_command`, which decides; so the fast reader
never accepts what pydicom's path rejects and never changes a value.

A data set travels in the presentation context's transfer syntax and is
decoded only on request (:func:`decode_dataset`), with pydicom; the top-level
elements are walked first because pydicom silently truncates an element
whose length runs past the end.

:data:`STATUS_TABLE` is the one mapping of status codes to meanings;
:func:`status_meaning` looks a code up for a given command.

Everything here is re-exported by :mod:`dicomconf.ul.dimse`.
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO

from pydicom import Dataset
from pydicom.datadict import DicomDictionary, dictionary_has_tag, dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from dicomconf.ul.errors import LocalProtocolError
from dicomconf.ul.items import invalid

# PS3.7 E.1 Table E.1-1: command field values.
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_GET_RQ = 0x0010
C_GET_RSP = 0x8010
C_FIND_RQ = 0x0020
C_FIND_RSP = 0x8020
C_MOVE_RQ = 0x0021
C_MOVE_RSP = 0x8021
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
N_EVENT_REPORT_RQ = 0x0100
N_EVENT_REPORT_RSP = 0x8100
N_GET_RQ = 0x0110
N_GET_RSP = 0x8110
N_SET_RQ = 0x0120
N_SET_RSP = 0x8120
N_ACTION_RQ = 0x0130
N_ACTION_RSP = 0x8130
N_CREATE_RQ = 0x0140
N_CREATE_RSP = 0x8140
N_DELETE_RQ = 0x0150
N_DELETE_RSP = 0x8150
C_CANCEL_RQ = 0x0FFF

COMMAND_FIELDS: dict[int, str] = {
    C_STORE_RQ: "C-STORE-RQ",
    C_STORE_RSP: "C-STORE-RSP",
    C_GET_RQ: "C-GET-RQ",
    C_GET_RSP: "C-GET-RSP",
    C_FIND_RQ: "C-FIND-RQ",
    C_FIND_RSP: "C-FIND-RSP",
    C_MOVE_RQ: "C-MOVE-RQ",
    C_MOVE_RSP: "C-MOVE-RSP",
    C_ECHO_RQ: "C-ECHO-RQ",
    C_ECHO_RSP: "C-ECHO-RSP",
    N_EVENT_REPORT_RQ: "N-EVENT-REPORT-RQ",
    N_EVENT_REPORT_RSP: "N-EVENT-REPORT-RSP",
    N_GET_RQ: "N-GET-RQ",
    N_GET_RSP: "N-GET-RSP",
    N_SET_RQ: "N-SET-RQ",
    N_SET_RSP: "N-SET-RSP",
    N_ACTION_RQ: "N-ACTION-RQ",
    N_ACTION_RSP: "N-ACTION-RSP",
    N_CREATE_RQ: "N-CREATE-RQ",
    N_CREATE_RSP: "N-CREATE-RSP",
    N_DELETE_RQ: "N-DELETE-RQ",
    N_DELETE_RSP: "N-DELETE-RSP",
    C_CANCEL_RQ: "C-CANCEL-RQ",
}
COMMAND_CODES: dict[str, int] = {name: code for code, name in COMMAND_FIELDS.items()}

# PS3.7 E.1: Command Data Set Type 0101H means "no data set"; any other value, present.
NO_DATA_SET = 0x0101
DATA_SET_PRESENT = 0x0000

# PS3.7 C.4.2.1.1 (Priority, 0000,0700).
PRIORITY_MEDIUM = 0x0000
PRIORITY_HIGH = 0x0001
PRIORITY_LOW = 0x0002

# Status (0000,0900) meanings, one table of (response command field or None for
# every service, first code, last code, category, meaning).  General codes:
# PS3.7 Annex C; C-STORE: PS3.4 B.2.3 Table B.2-1; C-FIND: PS3.4 C.4.1.1.4;
# C-MOVE: PS3.4 C.4.2.1.5; C-GET: PS3.4 C.4.3.1.4.  A command-specific row wins
# over a generic one, an exact code over a range.
STATUS_TABLE: tuple[tuple[int | None, int, int, str, str], ...] = (
    (None, 0x0000, 0x0000, "success", "Success"),
    (None, 0xFE00, 0xFE00, "cancel", "Cancel: operation terminated due to a cancel indication"),
    (None, 0xFF00, 0xFF00, "pending", "Pending: matches are continuing"),
    (None, 0xFF01, 0xFF01, "pending", "Pending: matches are continuing, optional keys not supported"),
    (None, 0x0001, 0x0001, "warning", "Warning: requested optional attributes are not supported"),
    (None, 0x0107, 0x0107, "warning", "Warning: attribute list error"),
    (None, 0x0116, 0x0116, "warning", "Warning: attribute value out of range"),
    (None, 0x0105, 0x0105, "failure", "Failure: no such attribute"),
    (None, 0x0106, 0x0106, "failure", "Failure: invalid attribute value"),
    (None, 0x0110, 0x0110, "failure", "Failure: processing failure"),
    (None, 0x0111, 0x0111, "failure", "Failure: duplicate SOP instance"),
    (None, 0x0112, 0x0112, "failure", "Failure: no such SOP instance"),
    (None, 0x0113, 0x0113, "failure", "Failure: no such event type"),
    (None, 0x0114, 0x0114, "failure", "Failure: no such argument"),
    (None, 0x0115, 0x0115, "failure", "Failure: invalid argument value"),
    (None, 0x0117, 0x0117, "failure", "Failure: invalid object instance"),
    (None, 0x0118, 0x0118, "failure", "Failure: no such SOP class"),
    (None, 0x0119, 0x0119, "failure", "Failure: class-instance conflict"),
    (None, 0x0120, 0x0120, "failure", "Failure: missing attribute"),
    (None, 0x0121, 0x0121, "failure", "Failure: missing attribute value"),
    (None, 0x0122, 0x0122, "failure", "Failure: refused: SOP class not supported"),
    (None, 0x0123, 0x0123, "failure", "Failure: no such action type"),
    (None, 0x0124, 0x0124, "failure", "Failure: refused: not authorized"),
    (None, 0x0210, 0x0210, "failure", "Failure: duplicate invocation"),
    (None, 0x0211, 0x0211, "failure", "Failure: unrecognized operation"),
    (None, 0x0212, 0x0212, "failure", "Failure: mistyped argument"),
    (None, 0x0213, 0x0213, "failure", "Failure: resource limitation"),
    (C_STORE_RSP, 0xA700, 0xA7FF, "failure", "Refused: out of resources"),
    (C_STORE_RSP, 0xA900, 0xA9FF, "failure", "Error: data set does not match SOP class"),
    (C_STORE_RSP, 0xC000, 0xCFFF, "failure", "Error: cannot understand"),
    (C_STORE_RSP, 0xB000, 0xB000, "warning", "Warning: coercion of data elements"),
    (C_STORE_RSP, 0xB007, 0xB007, "warning", "Warning: data set does not match SOP class"),
    (C_STORE_RSP, 0xB006, 0xB006, "warning", "Warning: elements discarded"),
    (C_FIND_RSP, 0xA700, 0xA700, "failure", "Refused: out of resources"),
    (C_FIND_RSP, 0xA900, 0xA900, "failure", "Error: identifier does not match SOP class"),
    (C_FIND_RSP, 0xC000, 0xCFFF, "failure", "Error: unable to process"),
    (C_MOVE_RSP, 0xA701, 0xA701, "failure", "Refused: out of resources, unable to calculate number of matches"),
    (C_MOVE_RSP, 0xA702, 0xA702, "failure", "Refused: out of resources, unable to perform sub-operations"),
    (C_MOVE_RSP, 0xA801, 0xA801, "failure", "Refused: move destination unknown"),
    (C_MOVE_RSP, 0xA900, 0xA900, "failure", "Error: identifier does not match SOP class"),
    (C_MOVE_RSP, 0xC000, 0xCFFF, "failure", "Error: unable to process"),
    (C_MOVE_RSP, 0xB000, 0xB000, "warning", "Warning: sub-operations complete, one or more failures"),
    (C_GET_RSP, 0xA701, 0xA701, "failure", "Refused: out of resources, unable to calculate number of matches"),
    (C_GET_RSP, 0xA702, 0xA702, "failure", "Refused: out of resources, unable to perform sub-operations"),
    (C_GET_RSP, 0xA900, 0xA900, "failure", "Error: identifier does not match SOP class"),
    (C_GET_RSP, 0xC000, 0xCFFF, "failure", "Error: unable to process"),
    (C_GET_RSP, 0xB000, 0xB000, "warning", "Warning: sub-operations complete, one or more failures"),
)


def status_meaning(command_field: int, status: int) -> tuple[str, str]:
    """Return (category, meaning) of ``status`` in a response ``command_field`` (PS3.7 Annex C).

    ``command_field`` may be given as the request's or the response's value.
    A code the table does not define comes back as ("unknown", ...), except
    that PS3.7 C.1-C.4 ranges still tell warning (Bxxx) from failure (Axxx, Cxxx).
    """
    rsp = command_field | 0x8000
    best: tuple[int, int, str, str] | None = None  # (specificity, width, category, meaning)
    for field_, low, high, category, meaning in STATUS_TABLE:
        if low <= status <= high and (field_ is None or field_ == rsp):
            rank = (0 if field_ is None else 2) + (1 if low == high else 0)
            if best is None or rank > best[0]:
                best = (rank, high - low, category, meaning)
    if best is not None:
        return best[2], best[3]
    name = COMMAND_FIELDS.get(rsp, f"command {rsp:#06x}")
    if 0xB000 <= status <= 0xBFFF:
        return "warning", f"Warning {status:#06x} (not defined for {name})"
    if 0xA000 <= status <= 0xAFFF or 0xC000 <= status <= 0xCFFF:
        return "failure", f"Failure {status:#06x} (not defined for {name})"
    return "unknown", f"status {status:#06x} is not defined for {name}"


# --------------------------------------------------------------------------
# Command sets (PS3.7 6.3.1, Annex E)

_GROUP_LENGTH = struct.Struct("<HHII")  # (0000,0000) UL, implicit VR: tag, length 4, value
_ELEMENT_HEADER = struct.Struct("<HHI")


def encode_command(ds: Dataset) -> bytes:
    """Encode a command set, implicit VR little endian, with Command Group Length (PS3.7 6.3.1, E.1).

    Any (0000,0000) in ``ds`` is ignored and recomputed.  An element outside
    group 0000 is our misuse: :class:`LocalProtocolError`.
    """
    body = Dataset()
    for elem in ds:
        if elem.tag.group != 0x0000:
            raise LocalProtocolError(f"command set element {elem.tag} is not in group 0000 (PS3.7 6.3.1)")
        if elem.tag != 0x00000000:
            body.add(elem)
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    try:
        write_dataset(fp, body)
    except Exception as exc:
        raise LocalProtocolError(f"command set cannot be encoded: {exc}") from exc
    value = fp.getvalue()
    return _GROUP_LENGTH.pack(0, 0, 4, len(value)) + value


def decode_command(data: bytes | memoryview) -> Dataset:
    """Decode a command set (implicit VR little endian, PS3.7 6.3.1).

    Checks that every element is in group 0000, in ascending tag order (PS3.5
    7.1), that the elements tile the bytes exactly, that Command Group Length (0000,0000) comes first and equals
    the length of the rest, and that Command Field (0000,0100) and Command Data
    Set Type (0000,0800) are present.  Any fault: :class:`RemoteProtocolError`
    with A-ABORT reason 6.
    """
    raw = bytes(data)
    clause = "PS3.7 6.3.1, E.1"
    elements: dict[int, RawDataElement] = {}
    previous = -1
    pos, end = 0, len(raw)
    while pos < end:
        if end - pos < 8:
            raise invalid(f"{end - pos} trailing byte(s) in the command set", clause, pos)
        group, element, length = _ELEMENT_HEADER.unpack_from(raw, pos)
        if group != 0x0000:
            raise invalid(f"command set element in group {group:04X}, not 0000", clause, pos)
        if length == 0xFFFFFFFF or pos + 8 + length > end:
            raise invalid(f"command element length {length:#x} overruns the command set", clause, pos + 4)
        if element <= previous:
            raise invalid(
                f"command element (0000,{element:04X}) is not in ascending tag order", "PS3.5 7.1; " + clause, pos
            )
        previous = element
        # Implicit VR: the VR comes from the data dictionary; an element it does not know is UN,
        # decided here so that pydicom has nothing to warn about.
        vr = dictionary_VR(element) if dictionary_has_tag(element) else "UN"
        elements[element] = RawDataElement(
            BaseTag(element), vr, length, raw[pos + 8 : pos + 8 + length], pos + 8, True, True
        )
        pos += 8 + length
    if end < 12 or raw[:8] != b"\x00\x00\x00\x00\x04\x00\x00\x00":
        raise invalid("the command set does not start with Command Group Length (0000,0000) UL", clause, 0)
    (group_length,) = struct.unpack_from("<I", raw, 8)
    if group_length != end - 12:
        raise invalid(
            f"Command Group Length is {group_length}, but {end - 12} byte(s) follow it", clause, 8
        )
    try:
        ds = Dataset(elements)
        for elem in ds:  # convert every raw element now, so a bad value fails here
            _ = elem.value
    except Exception as exc:
        raise invalid(f"command set cannot be decoded: {exc}", clause, None) from exc
    for keyword in ("CommandField", "CommandDataSetType"):
        value = ds.get(keyword)
        if not isinstance(value, int):
            raise invalid(f"command set lacks a valid {keyword}", clause, None)
    return ds


# Group 0000 elements the fast reader converts itself, by element number, from pydicom's dictionary.
_US, _UL, _UI = 1, 2, 3
_FAST_VRS: dict[int, int] = {
    tag: {"US": _US, "UL": _UL, "UI": _UI}[entry[0]]
    for tag, entry in DicomDictionary.items()
    if tag >> 16 == 0x0000 and tag and entry[0] in ("US", "UL", "UI")
}
_GROUP_LENGTH_HEAD = _GROUP_LENGTH.pack(0, 0, 4, 0)[:8]
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_UID_CHARACTERS = b"0123456789."


def read_command(data: bytes | memoryview) -> dict[int, int | str] | None:
    """Values of a regular command set by element number, or None (PS3.7 6.3.1, E.1; PS3.5 6.2, 7.1).

    Regular: Command Group Length (0000,0000) first and exact, then elements
    of group 0000 in ascending order tiling the bytes, each a dictionary US
    (2 bytes) or UL (4 bytes), or a UI of digits and dots (trailing NULs and
    spaces dropped, as pydicom does), with Command Field (0000,0100) and
    Command Data Set Type (0000,0800) present.  None means "not regular":
    :func:`decode_command` decides, and raises for what is malformed.
    """
    raw = data if type(data) is bytes else bytes(data)
    end = len(raw)
    if end < 12 or not raw.startswith(_GROUP_LENGTH_HEAD) or _U32(raw, 8)[0] != end - 12:
        return None
    values: dict[int, int | str] = {}
    unpack = _ELEMENT_HEADER.unpack_from
    fast = _FAST_VRS.get
    pos, previous = 12, 0
    while pos < end:
        if end - pos < 8:
            return None
        group, element, length = unpack(raw, pos)
        pos += 8
        stop = pos + length
        if group or element <= previous or stop > end:
            return None
        previous = element
        kind = fast(element)
        if kind == _US and length == 2:
            values[element] = _U16(raw, pos)[0]
        elif kind == _UL and length == 4:
            values[element] = _U32(raw, pos)[0]
        elif kind == _UI:
            uid = raw[pos:stop].rstrip(b"\x00 ")
            if not uid or uid.translate(None, _UID_CHARACTERS):
                return None
            values[element] = uid.decode("ascii")
        else:
            return None
        pos = stop
    if 0x0100 not in values or 0x0800 not in values:
        return None
    return values


def encode_dataset(ds: Dataset, transfer_syntax: str) -> bytes:
    """Encode a data set (no preamble, no file meta) in ``transfer_syntax`` (PS3.5 7, 10)."""
    uid = _transfer_syntax(transfer_syntax)
    fp = DicomBytesIO()
    fp.is_little_endian = uid.is_little_endian
    fp.is_implicit_VR = uid.is_implicit_VR
    try:
        write_dataset(fp, ds)
    except Exception as exc:
        raise LocalProtocolError(f"data set cannot be encoded in {uid}: {exc}") from exc
    raw = fp.getvalue()
    if uid.is_deflated:
        packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
        raw = packer.compress(raw) + packer.flush()
    return raw


def _transfer_syntax(transfer_syntax: str) -> UID:
    uid = UID(transfer_syntax)
    try:
        uid.is_implicit_VR, uid.is_little_endian  # noqa: B018 - raises for unknown syntaxes
    except (ValueError, AttributeError) as exc:
        raise LocalProtocolError(f"{transfer_syntax!r} is not a transfer syntax pydicom knows") from exc
    return uid


# PS3.5 7.1.2: explicit VRs whose length field is 4 bytes, after 2 reserved bytes.
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


def _check_top_level(raw: bytes, implicit: bool, little: bool) -> None:
    """Walk the top-level elements of defined length; one that overruns is an error (PS3.5 7.1).

    pydicom silently truncates such a value.  The walk stops at the first
    undefined length (a sequence or encapsulated pixel data), which pydicom
    itself delimits.
    """
    order = "<" if little else ">"
    pos, end = 0, len(raw)
    while pos < end:
        if end - pos < 8:
            raise ValueError(f"{end - pos} trailing byte(s) at offset {pos}")
        if implicit:
            (length,) = struct.unpack_from(order + "I", raw, pos + 4)
            head = 8
        elif bytes(raw[pos + 4 : pos + 6]) in _LONG_VRS:
            if end - pos < 12:
                raise ValueError(f"element header at offset {pos} is cut short")
            (length,) = struct.unpack_from(order + "I", raw, pos + 8)
            head = 12
        else:
            (length,) = struct.unpack_from(order + "H", raw, pos + 6)
            head = 8
        if length == 0xFFFFFFFF:
            return
        if pos + head + length > end:
            raise ValueError(f"element at offset {pos} has length {length}, past the end of the data set")
        pos += head + length


INFLATE_LIMIT = 256 << 20  # the most a deflated data set may inflate to (bytes): a bound on a zip bomb


def inflate(data: bytes | memoryview, limit: int = INFLATE_LIMIT) -> bytearray:
    """The bytes of a data set in Deflated Explicit VR Little Endian (PS3.5 A.5), inflated.

    Raises ``zlib.error`` for bytes that do not inflate and ``ValueError`` when they would inflate
    to more than ``limit`` bytes: deflate reaches about 1000:1, so without a bound a data set the
    size of one PDU could take a gigabyte.  Inflated 1 MiB at a time into one buffer, so the
    memory taken stays near what the data set holds.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    pending = bytes(data)
    while True:
        out += inflater.decompress(pending, 1 << 20)
        if len(out) > limit:
            raise ValueError(f"it inflates to more than {limit} bytes")
        pending = inflater.unconsumed_tail
        if not pending:
            break
    out += inflater.flush()  # all input taken: what zlib still holds is at most its window
    if len(out) > limit:
        raise ValueError(f"it inflates to more than {limit} bytes")
    return out


def decode_dataset(data: bytes | memoryview, transfer_syntax: str) -> Dataset:
    """Decode data set bytes in ``transfer_syntax`` (PS3.5 7, 10), every element converted.

    A transfer syntax pydicom does not know is our misuse
    (:class:`LocalProtocolError`); bytes that do not decode are the peer's
    (:class:`RemoteProtocolError`, reason 6).
    """
    uid = _transfer_syntax(transfer_syntax)
    try:
        raw = inflate(data) if uid.is_deflated else bytes(data)
        _check_top_level(raw, uid.is_implicit_VR, uid.is_little_endian)
        ds = read_dataset(BytesIO(raw), uid.is_implicit_VR, uid.is_little_endian)
        for elem in ds.iterall():
            _ = elem.value
    except Exception as exc:
        raise invalid(f"data set does not decode as {uid.name or uid}: {exc}", "PS3.7 6.3.1", None) from exc
    return ds
