"""Pre-encoded DIMSE responses for the SCP's hot path (PS3.7 9.3.1.2, 9.3.5.2, E.1).

Theory of operation
-------------------
Encoding a command set through a pydicom ``Dataset`` costs about 100 µs,
more than the rest of an echo.  The SCP's responses have a fixed shape
(a few UI and US elements of group 0000), so :func:`response_pdata` writes
the implicit VR little endian bytes directly with ``struct`` and wraps them
in one P-DATA-TF with one PDV, which the core's
:class:`~dicomconf.ul.association.Association` sends like any message.

The same approach writes the Q/R services' command sets
(:mod:`dicomconf.scp.service_driver`): :func:`response_command` with a data
set following (a pending C-FIND-RSP) or with the sub-operation counts (C-MOVE
and C-GET responses, PS3.7 9.3.3.2, 9.3.4.2), and
:func:`store_request_command` for a sub-operation's C-STORE-RQ with its Move
Originator (PS3.7 9.3.1.1).

Tags come from pydicom's data dictionary (one mapping per fact); the tests
check the bytes against :func:`dicomconf.ul.dimse.encode_command` element for
element.  A response that would not fit the peer's Maximum Length in one PDV
returns None, and the caller falls back to the general path, which fragments.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.dimse import C_STORE_RQ, DATA_SET_PRESENT, NO_DATA_SET
from dicomconf.ul.pdu import PDV, PDataTF

_ELEMENT = struct.Struct("<HHI")
_PDV_OVERHEAD = 6  # PDV item length (4), context ID (1), message control header (1): PS3.8 9.3.5.1


def _tag(keyword: str) -> tuple[int, int]:
    tag = tag_for_keyword(keyword)
    assert tag is not None and tag >> 16 == 0x0000, keyword
    return 0x0000, tag & 0xFFFF


_GROUP_LENGTH = _tag("CommandGroupLength")
_SOP_CLASS = _tag("AffectedSOPClassUID")
_COMMAND_FIELD = _tag("CommandField")
_RESPONDED_TO = _tag("MessageIDBeingRespondedTo")
_DATA_SET_TYPE = _tag("CommandDataSetType")
_STATUS = _tag("Status")
_SOP_INSTANCE = _tag("AffectedSOPInstanceUID")
_MESSAGE_ID = _tag("MessageID")
_PRIORITY = _tag("Priority")
_MOVE_ORIGINATOR_AE = _tag("MoveOriginatorApplicationEntityTitle")
_MOVE_ORIGINATOR_ID = _tag("MoveOriginatorMessageID")
# Number of Remaining, Completed, Failed and Warning Sub-operations: four US elements in tag order (PS3.7 E.1)
_COUNT_HEADERS = tuple(_ELEMENT.pack(*_tag(k), 2) for k in (
    "NumberOfRemainingSuboperations", "NumberOfCompletedSuboperations", "NumberOfFailedSuboperations",
    "NumberOfWarningSuboperations"))
_FOUR_COUNTS = struct.Struct("<8sH8sH8sH8sH")
_US = struct.Struct("<HHIH")


def _ui(tag: tuple[int, int], uid: str) -> bytes:
    raw = uid.encode("ascii")
    if len(raw) & 1:
        raw += b"\x00"  # UI values are padded with a NUL to even length (PS3.5 6.2)
    return _ELEMENT.pack(tag[0], tag[1], len(raw)) + raw


@functools.lru_cache(maxsize=256, typed=True)
def _sop_class_element(uid: str) -> bytes:
    """Affected SOP Class UID, kept per UID (a pure function of a str; a UID that fails raises each time)."""
    return _ui(_SOP_CLASS, uid)


# Command Field, Message ID Being Responded To, Command Data Set Type and Status: four US elements,
# consecutive in tag order between the SOP class and SOP instance UIDs, each its 8-byte header and value.
_FOUR_US = struct.Struct("<8sH8sH8sH8sH")
_US_HEADERS = tuple(_ELEMENT.pack(*tag, 2) for tag in (_COMMAND_FIELD, _RESPONDED_TO, _DATA_SET_TYPE, _STATUS))
_GROUP_LENGTH_ELEMENT = struct.Struct("<HHII")


def response_command(
    command_field: int,
    message_id: int,
    status: int,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
    *,
    data_set: bool = False,
    counts: tuple[int | None, ...] | None = None,
) -> bytes:
    """A response command set, elements in tag order, group length first (PS3.7 E.1).

    ``data_set``: Command Data Set Type says a data set follows (a C-FIND-RSP's identifier,
    PS3.7 9.3.2.2); ``counts``: Number of Remaining, Completed, Failed and Warning
    Sub-operations (PS3.7 9.3.3.2, 9.3.4.2), each left out when None.
    """
    field_h, responded_h, data_set_h, status_h = _US_HEADERS
    body = _FOUR_US.pack(field_h, command_field, responded_h, message_id, data_set_h,
                         DATA_SET_PRESENT if data_set else NO_DATA_SET, status_h, status)
    if sop_class_uid:
        body = _sop_class_element(sop_class_uid) + body
    if sop_instance_uid:
        body += _ui(_SOP_INSTANCE, sop_instance_uid)
    if counts is not None:
        if None in counts:
            body += b"".join(h + struct.pack("<H", n) for h, n in zip(_COUNT_HEADERS, counts) if n is not None)
        else:
            body += _FOUR_COUNTS.pack(*(x for pair in zip(_COUNT_HEADERS, counts) for x in pair))
    return _GROUP_LENGTH_ELEMENT.pack(_GROUP_LENGTH[0], _GROUP_LENGTH[1], 4, len(body)) + body


def _ae(tag: tuple[int, int], title: str) -> bytes:
    raw = title.encode("ascii")
    if len(raw) & 1:
        raw += b" "  # AE values are padded with a space to even length (PS3.5 6.2)
    return _ELEMENT.pack(tag[0], tag[1], len(raw)) + raw


def store_request_command(
    sop_class_uid: str,
    sop_instance_uid: str,
    message_id: int,
    priority: int,
    move_originator: tuple[str, int] | None = None,
) -> bytes:
    """A C-STORE-RQ command set with a data set (PS3.7 9.3.1.1), in tag order, group length first.

    ``move_originator``: the Move Originator Application Entity Title and Message ID of the
    C-MOVE a sub-operation serves (0000,1030), (0000,1031).
    """
    field_h = _US_HEADERS[0]
    body = (_sop_class_element(sop_class_uid) + field_h + struct.pack("<H", C_STORE_RQ)
            + _US.pack(*_MESSAGE_ID, 2, message_id) + _US.pack(*_PRIORITY, 2, priority)
            + _US_HEADERS[2] + struct.pack("<H", DATA_SET_PRESENT) + _ui(_SOP_INSTANCE, sop_instance_uid))
    if move_originator is not None:
        body += _ae(_MOVE_ORIGINATOR_AE, move_originator[0]) + _US.pack(*_MOVE_ORIGINATOR_ID, 2, move_originator[1])
    return _GROUP_LENGTH_ELEMENT.pack(_GROUP_LENGTH[0], _GROUP_LENGTH[1], 4, len(body)) + body


def response_pdata(context_id: int, command: bytes, peer_max_pdu_length: int) -> PDataTF | None:
    """One P-DATA-TF carrying ``command`` as a single last command fragment, if it fits (PS3.8 D.1.1)."""
    if peer_max_pdu_length and len(command) + _PDV_OVERHEAD > peer_max_pdu_length:
        return None
    return PDataTF((PDV(context_id, C.MCH_COMMAND | C.MCH_LAST, command),))


def store_rq_dataset(sub: Any, message_id: int) -> Dataset:
    """A C-STORE-RQ command set for a sub-operation (PS3.7 9.3.1.1), as a Dataset: the general path."""
    command = Dataset()
    command.AffectedSOPClassUID = sub.sop_class_uid
    command.CommandField = dimse.C_STORE_RQ
    command.MessageID = message_id
    command.Priority = dimse.PRIORITY_MEDIUM
    command.CommandDataSetType = dimse.DATA_SET_PRESENT
    command.AffectedSOPInstanceUID = sub.sop_instance_uid
    return command


def event_report_rq_dataset(event: Any, message_id: int) -> Dataset:
    """An N-EVENT-REPORT-RQ command set (PS3.7 10.3.1.1)."""
    command = Dataset()
    command.AffectedSOPClassUID = event.sop_class_uid
    command.CommandField = dimse.N_EVENT_REPORT_RQ
    command.MessageID = message_id
    command.CommandDataSetType = dimse.NO_DATA_SET if event.dataset is None else dimse.DATA_SET_PRESENT
    command.AffectedSOPInstanceUID = event.sop_instance_uid
    command.EventTypeID = event.event_type_id
    return command
