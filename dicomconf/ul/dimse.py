"""DIMSE messages over P-DATA-TF: assembly, fragmentation, command sets (PS3.7, PS3.8 Annex E).

Theory of operation
-------------------
A DIMSE message (PS3.7 6.3) is a command set, optionally followed by a data
set, sent on one presentation context as a sequence of PDVs (PS3.8 9.3.5.1).
Each PDV carries a message control header (PS3.8 E.2): bit 0 says command
(1) or data set (0) fragment, bit 1 says last fragment of that part.

Inbound, :class:`MessageAssembler` takes PDVs one at a time, in the order
they arrived, and returns a :class:`Message` when one is complete.  It checks
what Annex E and PS3.7 require of the fragment sequence: the command comes
first, every fragment of a message is on one presentation context, the data
set follows iff Command Data Set Type (0000,0800) says so, and nothing of a
message follows its last fragment.  A violation raises
:class:`RemoteProtocolError` naming the clause and the A-ABORT reason.

The command set is decoded with pydicom (implicit VR little endian, PS3.7
6.3.1).  The data set is kept as the bytes that came, in the context's
transfer syntax, and decoded only when :meth:`Message.dataset` is asked.
Data set fragments are held as read-only memoryviews into the received
PDUs (a fragment of a writable buffer is copied, because the driver may reuse
it; so is one under 1 KiB, so that small views never pin large buffers) and
joined once, when the last fragment arrives.

Outbound, :func:`fragment` turns a message into P-DATA-TF PDUs, one PDV
each, whose variable field never exceeds the peer's Maximum Length (PS3.8
D.1.1; 0 means unlimited).  The data set is sliced, never copied, until each
PDU's bytes are joined.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from io import BytesIO

from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from dicomconf.ul import constants as C
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.pdu import PDV, PDataTF

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

    Checks that every element is in group 0000, that the elements tile the
    bytes exactly, that Command Group Length (0000,0000) comes first and equals
    the length of the rest, and that Command Field (0000,0100) and Command Data
    Set Type (0000,0800) are present.  Any fault: :class:`RemoteProtocolError`
    with A-ABORT reason 6.
    """
    raw = bytes(data)
    clause = "PS3.7 6.3.1, E.1"
    pos, end = 0, len(raw)
    while pos < end:
        if end - pos < 8:
            raise _invalid(f"{end - pos} trailing byte(s) in the command set", clause, pos)
        group, _element, length = _ELEMENT_HEADER.unpack_from(raw, pos)
        if group != 0x0000:
            raise _invalid(f"command set element in group {group:04X}, not 0000", clause, pos)
        if length == 0xFFFFFFFF or pos + 8 + length > end:
            raise _invalid(f"command element length {length:#x} overruns the command set", clause, pos + 4)
        pos += 8 + length
    if end < 12 or raw[:8] != b"\x00\x00\x00\x00\x04\x00\x00\x00":
        raise _invalid("the command set does not start with Command Group Length (0000,0000) UL", clause, 0)
    (group_length,) = struct.unpack_from("<I", raw, 8)
    if group_length != end - 12:
        raise _invalid(
            f"Command Group Length is {group_length}, but {end - 12} byte(s) follow it", clause, 8
        )
    try:
        ds = read_dataset(BytesIO(raw), True, True)
        for elem in ds:  # convert every raw element now, so a bad value fails here
            _ = elem.value
    except Exception as exc:
        raise _invalid(f"command set cannot be decoded: {exc}", clause, None) from exc
    for keyword in ("CommandField", "CommandDataSetType"):
        value = ds.get(keyword)
        if not isinstance(value, int):
            raise _invalid(f"command set lacks a valid {keyword}", clause, None)
    return ds


def _invalid(message: str, clause: str, offset: int | None) -> RemoteProtocolError:
    return RemoteProtocolError(message, clause, reason=C.ABORT_REASON_INVALID_PARAMETER_VALUE, offset=offset)


def _unexpected(message: str, clause: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, clause, reason=C.ABORT_REASON_UNEXPECTED_PARAMETER)


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
        elif raw[pos + 4 : pos + 6] in _LONG_VRS:
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


# --------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class Message:
    """One DIMSE message (PS3.7 6.3, 9.3): command set, and data set bytes or None."""

    context_id: int
    command: Dataset
    data: bytes | None = None

    @property
    def command_field(self) -> int:
        return int(self.command.CommandField)

    @property
    def name(self) -> str:
        cf = self.command_field
        return COMMAND_FIELDS.get(cf, f"unknown command {cf:#06x}")

    @property
    def message_id(self) -> int | None:
        return self.command.get("MessageID")

    @property
    def message_id_being_responded_to(self) -> int | None:
        return self.command.get("MessageIDBeingRespondedTo")

    @property
    def status(self) -> int | None:
        return self.command.get("Status")

    @property
    def affected_sop_class_uid(self) -> str | None:
        value = self.command.get("AffectedSOPClassUID")
        return None if value is None else str(value)

    @property
    def affected_sop_instance_uid(self) -> str | None:
        value = self.command.get("AffectedSOPInstanceUID")
        return None if value is None else str(value)

    @property
    def has_data_set(self) -> bool:
        """What Command Data Set Type (0000,0800) announces (PS3.7 E.1)."""
        return self.command.get("CommandDataSetType", NO_DATA_SET) != NO_DATA_SET

    @property
    def is_response(self) -> bool:
        return bool(self.command_field & 0x8000)

    def dataset(self, transfer_syntax: str) -> Dataset:
        """Decode the data set bytes with the context's ``transfer_syntax`` (PS3.5 10).

        A message without data set, or a transfer syntax pydicom does not
        know, is our misuse (:class:`LocalProtocolError`); bytes that do not
        decode are the peer's (:class:`RemoteProtocolError`, reason 6).
        """
        if self.data is None:
            raise LocalProtocolError(f"{self.name} carries no data set")
        uid = _transfer_syntax(transfer_syntax)
        try:
            raw = self.data
            if uid.is_deflated:
                raw = zlib.decompress(raw, -zlib.MAX_WBITS)
            _check_top_level(raw, uid.is_implicit_VR, uid.is_little_endian)
            ds = read_dataset(BytesIO(raw), uid.is_implicit_VR, uid.is_little_endian)
            for elem in ds.iterall():
                _ = elem.value
        except Exception as exc:
            raise _invalid(f"data set does not decode as {uid.name or uid}: {exc}", "PS3.7 6.3.1", None) from exc
        return ds


# --------------------------------------------------------------------------
# Inbound: PDVs -> messages (PS3.8 Annex E)

_IDLE, _COMMAND, _DATA = 0, 1, 2
# Fragments shorter than this are copied rather than held as views, so a peer sending
# tiny PDVs cannot make the assembler pin whole receive chunks for a few bytes each.
_SMALL_FRAGMENT = 1024


class MessageAssembler:
    """Turns PDVs, in arrival order, into :class:`Message` objects (PS3.8 E.1-E.2, PS3.7 6.3.1).

    ``accepted_contexts``, when given, is the set of presentation context IDs
    the association accepted; a PDV on any other ID is refused.  Without it,
    any odd ID 1-255 is taken.  After an error the assembler is poisoned:
    every further ``add`` raises the same error.
    """

    __slots__ = ("accepted_contexts", "_state", "_context", "_command", "_parts", "_error")

    def __init__(self, accepted_contexts: set[int] | frozenset[int] | None = None) -> None:
        self.accepted_contexts = None if accepted_contexts is None else frozenset(accepted_contexts)
        self._state = _IDLE
        self._context = 0
        self._command: Dataset | None = None
        self._parts: list[bytes | memoryview] = []
        self._error: RemoteProtocolError | None = None

    @property
    def in_progress(self) -> bool:
        """True while a message has started but is not complete."""
        return self._state != _IDLE

    def add(self, pdv: PDV) -> Message | None:
        """Take one PDV; return the message it completes, else None."""
        if self._error is not None:
            raise self._error
        try:
            return self._add(pdv)
        except RemoteProtocolError as exc:
            self._error = exc
            self._parts = []
            raise

    def add_pdata(self, pdata: PDataTF) -> list[Message]:
        """Take every PDV of a P-DATA-TF; return the messages completed."""
        out = []
        for pdv in pdata.pdvs:
            msg = self.add(pdv)
            if msg is not None:
                out.append(msg)
        return out

    def _add(self, pdv: PDV) -> Message | None:
        ctx = pdv.context_id
        mch = pdv.message_control_header
        is_command = mch & C.MCH_COMMAND
        is_last = mch & C.MCH_LAST
        state = self._state
        if state == _IDLE:
            if self.accepted_contexts is not None:
                if ctx not in self.accepted_contexts:
                    raise _invalid(f"PDV on presentation context {ctx}, which was not accepted", "PS3.8 9.3.5.1", None)
            elif not ctx & 1:
                raise _invalid(f"PDV on presentation context {ctx}: IDs are odd, 1-255", "PS3.8 9.3.2.2", None)
            if not is_command:
                raise _unexpected(
                    f"data set fragment on context {ctx} before any command fragment", "PS3.8 E.2, PS3.7 6.3.1"
                )
            self._context = ctx
            self._state = state = _COMMAND
        elif ctx != self._context:
            raise _unexpected(
                f"PDV on context {ctx} while a message on context {self._context} is incomplete",
                "PS3.8 E.1, PS3.7 6.3.1",
            )
        data = pdv.data
        if not isinstance(data, bytes):
            data = memoryview(data)
            if not data.readonly or len(data) < _SMALL_FRAGMENT:
                data = bytes(data)  # the driver may reuse a writable buffer; a small view would pin a big one
        if state == _COMMAND:
            if not is_command:
                raise _unexpected(
                    "data set fragment before the last command fragment", "PS3.8 E.2, PS3.7 6.3.1"
                )
            self._parts.append(data)
            if not is_last:
                return None
            command = decode_command(b"".join(self._parts))
            self._parts = []
            if command.CommandDataSetType == NO_DATA_SET:
                self._state = _IDLE
                return Message(ctx, command)
            self._command = command
            self._state = _DATA
            return None
        if is_command:
            raise _unexpected(
                f"command fragment on context {ctx} where the data set announced by Command Data Set Type "
                f"{self._command.CommandDataSetType:#06x} was due",  # type: ignore[union-attr]
                "PS3.7 6.3.1, E.1; PS3.8 E.2",
            )
        self._parts.append(data)
        if not is_last:
            return None
        parts, self._parts = self._parts, []
        body = parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)
        command, self._command = self._command, None
        self._state = _IDLE
        return Message(ctx, command, body)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Outbound: messages -> P-DATA-TF PDUs (PS3.8 9.3.5, E.2, D.1.1)

_PDATA_ONE_PDV = struct.Struct(">BBIIBB")  # PDU header + PDV item header + message control header
_PDATA_OVERHEAD = 6  # PDV item length (4), context ID (1), message control header (1)
_MAX_FRAGMENT = 0xFFFFFFFF - _PDATA_OVERHEAD


def _fragments(payload: bytes, limit: int) -> list[memoryview]:
    view = memoryview(payload)
    if not view:
        return [view]
    return [view[i : i + limit] for i in range(0, len(view), limit)]


def _limit(max_pdu_length: int) -> int:
    if max_pdu_length < 0:
        raise LocalProtocolError(f"maximum PDU length {max_pdu_length} is negative")
    if max_pdu_length == 0:
        return _MAX_FRAGMENT
    if max_pdu_length <= _PDATA_OVERHEAD:
        raise LocalProtocolError(
            f"a maximum PDU length of {max_pdu_length} leaves no room for a PDV's data (PS3.8 D.1.1)"
        )
    return min(max_pdu_length - _PDATA_OVERHEAD, _MAX_FRAGMENT)


def _check_data(message: Message) -> None:
    if "CommandDataSetType" not in message.command:
        raise LocalProtocolError(f"{message.name} lacks Command Data Set Type (0000,0800) (PS3.7 E.1)")
    if message.has_data_set != (message.data is not None):
        raise LocalProtocolError(
            f"{message.name}: Command Data Set Type {message.command.CommandDataSetType:#06x} "
            f"disagrees with data {'absent' if message.data is None else 'present'} (PS3.7 E.1)"
        )


def message_pdvs(message: Message, max_pdu_length: int) -> list[PDV]:
    """The PDVs of ``message``, each sized to fit one P-DATA-TF under ``max_pdu_length`` (PS3.8 E.2)."""
    _check_data(message)
    limit = _limit(max_pdu_length)
    ctx = message.context_id
    out: list[PDV] = []
    for payload, kind in ((encode_command(message.command), C.MCH_COMMAND), (message.data, 0)):
        if payload is None:
            continue
        pieces = _fragments(payload, limit)
        last = len(pieces) - 1
        out += [PDV(ctx, kind | (C.MCH_LAST if i == last else 0), p) for i, p in enumerate(pieces)]
    return out


def fragment(message: Message, max_pdu_length: int) -> list[bytes]:
    """Encode ``message`` as P-DATA-TF PDUs of one PDV each (PS3.8 9.3.5, E.2).

    The variable field of each PDU is at most ``max_pdu_length`` bytes (the
    peer's Maximum Length sub-item, PS3.8 D.1.1; 0 means unlimited).  The
    command fragments carry bit 0 set, the final fragment of the command and
    of the data set carries bit 1.
    """
    pack = _PDATA_ONE_PDV.pack
    out = []
    for pdv in message_pdvs(message, max_pdu_length):
        n = len(pdv.data)
        out.append(
            b"".join((pack(C.P_DATA_TF, 0, n + _PDATA_OVERHEAD, n + 2, pdv.context_id, pdv.message_control_header),
                      pdv.data))
        )
    return out


# --------------------------------------------------------------------------
# Builders (PS3.7 9.3.1 C-STORE, 9.3.5 C-ECHO)


def _command(command_field: int, sop_class_uid: str, data_set: bool) -> Dataset:
    ds = Dataset()
    ds.AffectedSOPClassUID = sop_class_uid
    ds.CommandField = command_field
    ds.CommandDataSetType = DATA_SET_PRESENT if data_set else NO_DATA_SET
    return ds


def c_echo_rq(message_id: int, *, context_id: int = 1, sop_class_uid: str = C.VERIFICATION_SOP_CLASS) -> Message:
    """C-ECHO-RQ (PS3.7 9.3.5.1)."""
    ds = _command(C_ECHO_RQ, sop_class_uid, False)
    ds.MessageID = message_id
    return Message(context_id, ds)


def c_echo_rsp(
    message_id_being_responded_to: int | Message,
    status: int = 0x0000,
    *,
    context_id: int | None = None,
    sop_class_uid: str | None = None,
) -> Message:
    """C-ECHO-RSP (PS3.7 9.3.5.2); pass the request Message to answer it on its context."""
    rq = message_id_being_responded_to if isinstance(message_id_being_responded_to, Message) else None
    msg_id = rq.message_id if rq is not None else message_id_being_responded_to
    if sop_class_uid is None:
        sop_class_uid = (rq.affected_sop_class_uid if rq is not None else None) or C.VERIFICATION_SOP_CLASS
    if context_id is None:
        context_id = rq.context_id if rq is not None else 1
    ds = _command(C_ECHO_RSP, sop_class_uid, False)
    ds.MessageIDBeingRespondedTo = msg_id
    ds.Status = status
    return Message(context_id, ds)


def c_store_rq(
    message_id: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    priority: int = PRIORITY_MEDIUM,
    move_originator: tuple[str, int] | None = None,
    *,
    context_id: int = 1,
    data: bytes | None = b"",
) -> Message:
    """C-STORE-RQ (PS3.7 9.3.1.1); ``move_originator`` is (AE title, message ID) of a C-MOVE."""
    ds = _command(C_STORE_RQ, sop_class_uid, True)
    ds.MessageID = message_id
    ds.Priority = priority
    ds.AffectedSOPInstanceUID = sop_instance_uid
    if move_originator is not None:
        ds.MoveOriginatorApplicationEntityTitle = move_originator[0]
        ds.MoveOriginatorMessageID = move_originator[1]
    return Message(context_id, ds, data)


def c_store_rsp(
    rq: Message | None = None,
    status: int = 0x0000,
    *,
    message_id_being_responded_to: int | None = None,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
    context_id: int | None = None,
    error_comment: str | None = None,
) -> Message:
    """C-STORE-RSP (PS3.7 9.3.1.2), answering ``rq`` or built from the fields given."""
    if rq is not None:
        message_id_being_responded_to = rq.message_id
        sop_class_uid = sop_class_uid or rq.affected_sop_class_uid
        sop_instance_uid = sop_instance_uid or rq.affected_sop_instance_uid
        context_id = rq.context_id if context_id is None else context_id
    if message_id_being_responded_to is None or sop_class_uid is None or sop_instance_uid is None:
        raise LocalProtocolError("C-STORE-RSP needs the request, or its message ID, SOP class and instance UIDs")
    ds = _command(C_STORE_RSP, sop_class_uid, False)
    ds.MessageIDBeingRespondedTo = message_id_being_responded_to
    ds.Status = status
    ds.AffectedSOPInstanceUID = sop_instance_uid
    if error_comment is not None:
        ds.ErrorComment = error_comment
    return Message(1 if context_id is None else context_id, ds)
