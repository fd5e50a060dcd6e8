"""What a whole DIMSE message breaks: command elements, data set, message IDs (PS3.7 9.3, 10.3; PS3.5 10).

Theory of operation
-------------------
:func:`check_message` takes one :class:`~dicomconf.ul.dimse.Message` as the
core's :class:`~dicomconf.ul.dimse.MessageAssembler` completes it, in either
direction, and returns one :class:`~dicomconf.ul.negotiation_check.Problem`
per rule broken.  The assembler has already refused what PS3.8 Annex E and
the command set's encoding forbid (fragment order, Command Group Length
(0000,0000) present and exact, Command Field and Command Data Set Type
present, a data set iff one is announced); what is left is the meaning:

* the elements each message's table in PS3.7 9.3 / 10.3 requires: those the
  service definition marks M for the request or the response (U, U(=) and C
  elements are not required), with a valid Priority;
* whether a data set may, must or must not follow, as each table says of
  Command Data Set Type (0000,0800), and for C-FIND-RSP only with a pending
  status (PS3.7 9.1.2.1.5);
* the data set decodes in the transfer syntax accepted for its presentation
  context (PS3.5 10): pydicom reads it, and each top-level element of an
  explicit VR syntax names a VR, since pydicom would quietly read implicit VR
  instead; encapsulated pixel data is read as bytes, never decompressed;
* a C-STORE-RQ's Affected SOP Class and Instance UIDs equal the SOP Class and
  SOP Instance UIDs of its data set (PS3.3 C.12.1.1.1);
* with an :class:`Outstanding` (one per association), the message IDs: no
  request reuses the ID of one of its sender's requests still outstanding,
  every response names an outstanding request of its peer, of the matching
  command, and repeats its Affected SOP Class (and, for C-STORE, Instance)
  UID if it includes one.  A request stays outstanding until its final
  response: pending responses (PS3.7 9.1.2, 9.1.3, 9.1.4) keep C-FIND,
  C-GET and C-MOVE open.  Uniqueness is checked among the sender's own
  requests: the peer's sub-operations (C-GET's C-STORE-RQs) count apart.

Every problem code lives once in :data:`PROBLEMS` with its clause and
severity: "must" where the standard says "shall" or marks the element M,
"should" otherwise.  A problem about a command's table names that table
(:data:`COMMANDS`) as its clause.  An unknown command field is judged only on
what every DIMSE message shares (message IDs, data set encoding).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

from pydicom.uid import UID
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR

from dicomconf.ul import dimse as D
from dicomconf.ul.dimse_codec import inflate
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.negotiation_check import MUST, SHOULD, Problem

# code -> (clause, severity); codes marked * take the clause of the command's table in COMMANDS.
PROBLEMS: dict[str, tuple[str, str]] = {
    "dimse.element-missing": ("PS3.7 9.3, 10.3", MUST),  # *
    "dimse.priority-invalid": ("PS3.7 9.3", MUST),  # *
    "dimse.data-set.unexpected": ("PS3.7 9.3", MUST),  # *
    "dimse.data-set.missing": ("PS3.7 9.3", MUST),  # *
    "dimse.data-set.not-pending": ("PS3.7 9.1.2.1.5", MUST),
    "dimse.data-set.pending-without-identifier": ("PS3.7 9.1.2.1.5", SHOULD),
    "dimse.data-set.encoding": ("PS3.5 10; PS3.8 7.1.1.13", MUST),
    "dimse.store.sop-class-mismatch": ("PS3.3 C.12.1.1.1", MUST),
    "dimse.store.sop-instance-mismatch": ("PS3.3 C.12.1.1.1", MUST),
    "dimse.message-id.duplicate": ("PS3.7 9.1.1.1.1, 10.1.1.1.1 (Message ID)", MUST),
    "dimse.response.unknown-request": ("PS3.7 9.3, 10.3", MUST),  # *
    "dimse.response.wrong-command": ("PS3.7 9.3, 10.3", MUST),  # *
    "dimse.response.sop-class-differs": ("PS3.7 9.1.1.1.3, 9.1.2.1.3, 9.1.3.1.3, 9.1.4.1.3, 9.1.5.1.3", MUST),
    "dimse.response.sop-instance-differs": ("PS3.7 9.1.1.1.4", MUST),
}

# What a command's message carries besides its command set (Command Data Set Type, PS3.7 9.3 / 10.3).
NONE, REQUIRED, ANY, PENDING_ONLY = "none", "required", "any", "pending only"

_RQ = ("MessageID",)
_RSP = ("MessageIDBeingRespondedTo", "Status")
_C_RQ = ("MessageID", "AffectedSOPClassUID", "Priority")
_REQUESTED = ("MessageID", "RequestedSOPClassUID", "RequestedSOPInstanceUID")

# command field -> (clause: the message's table, elements the service marks M, data set rule).
# Command Group Length, Command Field and Command Data Set Type, which every table lists as
# required by the protocol, are checked by the core's decoder before a message exists.
COMMANDS: dict[int, tuple[str, tuple[str, ...], str]] = {
    D.C_STORE_RQ: ("PS3.7 9.3.1.1 Table 9.3-1", _C_RQ + ("AffectedSOPInstanceUID",), REQUIRED),
    D.C_STORE_RSP: ("PS3.7 9.3.1.2 Table 9.3-2", _RSP, NONE),
    D.C_FIND_RQ: ("PS3.7 9.3.2.1 Table 9.3-3", _C_RQ, REQUIRED),
    D.C_FIND_RSP: ("PS3.7 9.3.2.2 Table 9.3-4", _RSP, PENDING_ONLY),
    D.C_CANCEL_RQ: ("PS3.7 9.3.2.3 Table 9.3-5 (9.3-8, 9.3-11)", ("MessageIDBeingRespondedTo",), NONE),
    D.C_GET_RQ: ("PS3.7 9.3.3.1 Table 9.3-6", _C_RQ, REQUIRED),
    D.C_GET_RSP: ("PS3.7 9.3.3.2 Table 9.3-7", _RSP, ANY),
    D.C_MOVE_RQ: ("PS3.7 9.3.4.1 Table 9.3-9", _C_RQ + ("MoveDestination",), REQUIRED),
    D.C_MOVE_RSP: ("PS3.7 9.3.4.2 Table 9.3-10", _RSP, ANY),
    D.C_ECHO_RQ: ("PS3.7 9.3.5.1 Table 9.3-12", ("MessageID", "AffectedSOPClassUID"), NONE),
    D.C_ECHO_RSP: ("PS3.7 9.3.5.2 Table 9.3-13", _RSP, NONE),
    D.N_EVENT_REPORT_RQ: (
        "PS3.7 10.3.1.1 Table 10.3-1", _RQ + ("AffectedSOPClassUID", "AffectedSOPInstanceUID", "EventTypeID"), ANY
    ),
    D.N_EVENT_REPORT_RSP: ("PS3.7 10.3.1.2 Table 10.3-2", _RSP, ANY),
    D.N_GET_RQ: ("PS3.7 10.3.2.1 Table 10.3-3", _REQUESTED, ANY),
    D.N_GET_RSP: ("PS3.7 10.3.2.2 Table 10.3-4", _RSP, ANY),
    D.N_SET_RQ: ("PS3.7 10.3.3.1 Table 10.3-5", _REQUESTED, ANY),
    D.N_SET_RSP: ("PS3.7 10.3.3.2 Table 10.3-6", _RSP, ANY),
    D.N_ACTION_RQ: ("PS3.7 10.3.4.1 Table 10.3-7", _REQUESTED + ("ActionTypeID",), ANY),
    D.N_ACTION_RSP: ("PS3.7 10.3.4.2 Table 10.3-8", _RSP, ANY),
    D.N_CREATE_RQ: ("PS3.7 10.3.5.1 Table 10.3-9", _RQ + ("AffectedSOPClassUID",), ANY),
    D.N_CREATE_RSP: ("PS3.7 10.3.5.2 Table 10.3-10", _RSP, ANY),
    D.N_DELETE_RQ: ("PS3.7 10.3.6.1 Table 10.3-11", _REQUESTED, ANY),
    D.N_DELETE_RSP: ("PS3.7 10.3.6.2 Table 10.3-12", _RSP, ANY),
}

# Requests answered by several responses, the last one not pending (PS3.7 7.5.3.2).
_MULTIPLE_RESPONSES = frozenset({D.C_FIND_RQ, D.C_GET_RQ, D.C_MOVE_RQ})
# DIMSE-C responses, whose Affected SOP Class UID is U(=) (PS3.7 9.1.1.1.3, 9.1.2.1.3 ...).
_C_RESPONSES = frozenset({D.C_STORE_RSP, D.C_FIND_RSP, D.C_GET_RSP, D.C_MOVE_RSP, D.C_ECHO_RSP})
# Requests whose response may carry an Affected SOP Instance UID equal to the request's (PS3.7 9.1.1.1.4).
_INSTANCE_ECHOED = frozenset({D.C_STORE_RQ})
# Priority (0000,0700) "shall be set to" MEDIUM, HIGH or LOW (PS3.7 Tables 9.3-1, 9.3-3, 9.3-6, 9.3-9).
_PRIORITIES = frozenset({D.PRIORITY_MEDIUM, D.PRIORITY_HIGH, D.PRIORITY_LOW})
# Element keywords that Message answers itself (the rest need the decoded command Dataset).
_PROPERTIES = {
    "MessageID": "message_id",
    "MessageIDBeingRespondedTo": "message_id_being_responded_to",
    "Status": "status",
    "AffectedSOPClassUID": "affected_sop_class_uid",
    "AffectedSOPInstanceUID": "affected_sop_instance_uid",
    "RequestedSOPClassUID": "requested_sop_class_uid",
    "Priority": "priority",
}
# Explicit VRs as they appear on the wire, and those with a 4-byte length (PS3.5 7.1.2), from pydicom.
_VRS = frozenset(v.value.encode("ascii") for v in VR if len(v.value) == 2)
_LONG_VRS = frozenset(v.value.encode("ascii") for v in EXPLICIT_VR_LENGTH_32)


def _problem(code: str, message: str, clause: str | None = None) -> Problem:
    default, severity = PROBLEMS[code]
    return Problem(code, clause or default, severity, message)


def _value(message: D.Message, keyword: str) -> Any:
    """The value of a command element, None when absent or empty."""
    prop = _PROPERTIES.get(keyword)
    value = getattr(message, prop) if prop is not None else message.command.get(keyword)
    return None if value == "" else value


def _number(value: Any) -> int | None:
    """A US or UL command value, None when absent or not one number (a value of VM 2, say)."""
    return value if isinstance(value, int) else None


def _hex(value: Any) -> str:
    return f"{value:04X}H" if isinstance(value, int) else repr(value)


# --------------------------------------------------------------------------
# One message


def check_message(
    message: D.Message,
    transfer_syntax: str | None = None,
    outstanding: Outstanding | None = None,
    *,
    from_requestor: bool = True,
) -> list[Problem]:
    """Every way ``message`` breaks PS3.7; an empty list when it breaks none.

    ``transfer_syntax`` is the one accepted for the message's presentation
    context (None: the data set is not decoded).  ``outstanding``, when
    given, is the association's :class:`Outstanding`: the message is checked
    against it and recorded there; ``from_requestor`` says which side sent it.
    """
    out = _check_command(message)
    out += _check_data(message, transfer_syntax)
    if outstanding is not None:
        out += outstanding.note(message, from_requestor)
    return out


def _check_command(message: D.Message) -> list[Problem]:
    rule = COMMANDS.get(message.command_field)
    if rule is None:
        return []
    clause, required, data_rule = rule
    name = message.name
    out = [
        _problem("dimse.element-missing", f"{name} lacks {keyword}, which its table requires (M)", clause)
        for keyword in required
        if _value(message, keyword) is None
    ]
    if "Priority" in required:
        priority = _value(message, "Priority")
        if priority is not None and _number(priority) not in _PRIORITIES:
            out.append(_problem("dimse.priority-invalid", f"{name} has Priority {_hex(priority)}, not LOW (0002H), "
                                "MEDIUM (0000H) or HIGH (0001H)", clause))
    present = message.has_data_set
    if data_rule == NONE and present:
        out.append(_problem("dimse.data-set.unexpected", f"{name} has Command Data Set Type "
                            f"{_hex(message.data_set_type)} and a data set; it shall be 0101H", clause))
    elif data_rule == REQUIRED and not present:
        out.append(_problem("dimse.data-set.missing",
                            f"{name} has Command Data Set Type 0101H (no data set); it shall carry one", clause))
    elif data_rule == PENDING_ONLY:
        status = _number(message.status)
        if status is not None:
            pending = D.status_meaning(message.command_field, status)[0] == "pending"
            if present and not pending:
                out.append(_problem("dimse.data-set.not-pending",
                                    f"{name} with status {_hex(status)} carries an identifier, which is sent only "
                                    "with a pending status"))
            elif pending and not present:
                out.append(_problem("dimse.data-set.pending-without-identifier",
                                    f"{name} with pending status {_hex(status)} carries no identifier"))
    return out


def _check_data(message: D.Message, transfer_syntax: str | None) -> list[Problem]:
    if transfer_syntax is None or not message.has_data_set:
        return []
    data = message.data
    if data is None:
        return []  # written to a sink or dropped: not held here
    uid = UID(transfer_syntax)
    try:
        implicit = uid.is_implicit_VR
    except ValueError:
        return []  # a transfer syntax pydicom does not know: nothing to judge with
    try:
        if not implicit:
            _check_explicit_vrs(data, uid)
        ds = D.decode_dataset(data, transfer_syntax)
    except LocalProtocolError:
        return []
    except (RemoteProtocolError, ValueError) as exc:
        why = exc.message if isinstance(exc, RemoteProtocolError) else f"data set is not in {uid.name or uid}: {exc}"
        return [_problem("dimse.data-set.encoding", f"{message.name} on presentation context {message.context_id}, "
                                                    f"accepted with {uid.name or uid}: {why}")]
    if message.command_field != D.C_STORE_RQ:
        return []
    out = []
    for keyword, attribute, code in (
        ("AffectedSOPClassUID", "SOPClassUID", "dimse.store.sop-class-mismatch"),
        ("AffectedSOPInstanceUID", "SOPInstanceUID", "dimse.store.sop-instance-mismatch"),
    ):
        commanded, encoded = _value(message, keyword), ds.get(attribute)
        if commanded is not None and encoded is not None and str(encoded) != commanded:
            out.append(_problem(code, f"C-STORE-RQ {keyword} {commanded} differs from the data set's "
                                      f"{attribute} {encoded}"))
    return out


def _check_explicit_vrs(data: bytes, uid: UID) -> None:
    """Raise ValueError at the first top-level element of an explicit VR data set whose VR is no VR (PS3.5 7.1.2).

    The walk stops at the first undefined length, which pydicom then delimits;
    lengths that overrun are left to :func:`~dicomconf.ul.dimse.decode_dataset`.
    """
    raw = data
    if uid.is_deflated:
        try:
            raw = inflate(data)
        except (zlib.error, ValueError):
            return  # decode_dataset says why
    order = "<" if uid.is_little_endian else ">"
    pos, end = 0, len(raw)
    while end - pos >= 8:
        vr = bytes(raw[pos + 4 : pos + 6])
        if vr not in _VRS:
            group, element = struct.unpack_from(order + "HH", raw, pos)
            raise ValueError(f"element ({group:04X},{element:04X}) at offset {pos} has no explicit VR "
                             f"(bytes {vr.hex()}): implicit VR encoding?")
        if vr in _LONG_VRS:
            if end - pos < 12:
                return
            (length,) = struct.unpack_from(order + "I", raw, pos + 8)
            head = 12
        else:
            (length,) = struct.unpack_from(order + "H", raw, pos + 6)
            head = 8
        if length == 0xFFFFFFFF:
            return
        pos += head + length


# --------------------------------------------------------------------------
# Message IDs over an association

# Requests open under one Message ID past which the bookkeeping gives up (a peer repeating one ID).
_MAX_SAME_ID = 256


@dataclass(slots=True)
class _Request:
    command_field: int
    sop_class: str | None
    sop_instance: str | None


class Outstanding:
    """The requests of one association not yet finally answered, per sending side (PS3.7 9.1, 10.1).

    ``note`` checks a message against them and records it.  When some of
    the association's messages could not be read (broken fragments, a PDV on
    a context not accepted, P-DATA before the association), the record may
    be wrong: :meth:`lost` stops the message-ID checks for the rest of the
    association rather than report what the traffic may not break.
    """

    __slots__ = ("_open", "reliable")

    def __init__(self) -> None:
        self._open: dict[bool, dict[int, list[_Request]]] = {True: {}, False: {}}
        self.reliable = True

    def lost(self) -> None:
        """Some DIMSE traffic of this association was not seen whole: judge message IDs no more."""
        self.reliable = False
        self._open = {True: {}, False: {}}

    def open_ids(self, from_requestor: bool) -> list[int]:
        """Message IDs of the requests this side sent that await a final response, in ID order."""
        return sorted(i for i, reqs in self._open[from_requestor].items() if reqs)

    def note(self, message: D.Message, from_requestor: bool) -> list[Problem]:
        """Check ``message`` (sent by the requestor side or not) against the open requests; record it."""
        if not self.reliable:
            return []
        cf = message.command_field
        if cf == D.C_CANCEL_RQ:
            return []  # it may cross the final response on the wire: nothing to match
        if message.is_response:
            return self._response(message, from_requestor)
        return self._request(message, from_requestor)

    def _request(self, message: D.Message, from_requestor: bool) -> list[Problem]:
        mid = _number(message.message_id)
        if mid is None:
            self.lost()  # its response cannot name it; the missing element is reported on its own
            return []
        mine = self._open[from_requestor]
        out = []
        if mine.get(mid):
            out.append(_problem("dimse.message-id.duplicate",
                                f"{message.name} uses Message ID {mid}, the ID of a "
                                f"{D.COMMAND_FIELDS.get(mine[mid][0].command_field, 'request')} still outstanding"))
        if len(mine.get(mid, ())) >= _MAX_SAME_ID:
            self.lost()
            return out
        uid = message.affected_sop_class_uid or message.requested_sop_class_uid or None
        instance = message.affected_sop_instance_uid or None
        mine.setdefault(mid, []).append(_Request(message.command_field, uid, instance))
        return out

    def _response(self, message: D.Message, from_requestor: bool) -> list[Problem]:
        mid = _number(message.message_id_being_responded_to)
        if mid is None:
            return []  # reported as a missing element
        cf = message.command_field
        clause = COMMANDS[cf][0] if cf in COMMANDS else None
        theirs = self._open[not from_requestor]
        waiting = theirs.get(mid)
        if not waiting:
            return [_problem("dimse.response.unknown-request",
                             f"{message.name} answers Message ID {mid}, which names no outstanding request "
                             "of the peer", clause)]
        request = waiting[0]
        out = []
        if request.command_field in COMMANDS and request.command_field | 0x8000 != cf:
            out.append(_problem("dimse.response.wrong-command",
                                f"{message.name} answers Message ID {mid}, a "
                                f"{D.COMMAND_FIELDS[request.command_field]}", clause))
        elif cf in _C_RESPONSES:  # DIMSE-C: U(=) elements repeat the request's
            sop_class = message.affected_sop_class_uid or None  # an empty value is no value
            if sop_class is not None and request.sop_class is not None and sop_class != request.sop_class:
                out.append(_problem("dimse.response.sop-class-differs",
                                    f"{message.name} has Affected SOP Class UID {sop_class}, the request "
                                    f"{request.sop_class}"))
            instance = message.affected_sop_instance_uid or None
            if (request.command_field in _INSTANCE_ECHOED and instance is not None
                    and request.sop_instance is not None and instance != request.sop_instance):
                out.append(_problem("dimse.response.sop-instance-differs",
                                    f"{message.name} has Affected SOP Instance UID {instance}, the request "
                                    f"{request.sop_instance}"))
        status = _number(message.status)
        pending = status is not None and D.status_meaning(cf, status)[0] == "pending"
        if not (pending and request.command_field in _MULTIPLE_RESPONSES):
            waiting.pop(0)
            if not waiting:
                del theirs[mid]
        return out


__all__ = ["ANY", "COMMANDS", "NONE", "PENDING_ONLY", "PROBLEMS", "REQUIRED", "Outstanding", "check_message"]
