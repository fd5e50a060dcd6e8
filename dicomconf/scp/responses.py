"""Pre-encoded DIMSE responses for the SCP's hot path (PS3.7 9.3.1.2, 9.3.5.2, E.1).

Theory of operation
-------------------
Encoding a command set through a pydicom ``Dataset`` costs about 100 µs,
more than the rest of an echo.  The SCP's responses have a fixed shape
(a few UI and US elements of group 0000), so :func:`response_pdata` writes
the implicit VR little endian bytes directly with ``struct`` and wraps them
in one P-DATA-TF with one PDV, which the core's
:class:`~dicomconf.ul.association.Association` sends like any message.

Tags come from pydicom's data dictionary (one mapping per fact); the tests
check the bytes against :func:`dicomconf.ul.dimse.encode_command` element for
element.  A response that would not fit the peer's Maximum Length in one PDV
returns None, and the caller falls back to the general path, which fragments.
"""

from __future__ import annotations

import functools
import struct

from pydicom.datadict import tag_for_keyword

from dicomconf.ul import constants as C
from dicomconf.ul.dimse import NO_DATA_SET
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
) -> bytes:
    """A response command set without data set, elements in tag order, group length first (PS3.7 E.1)."""
    field_h, responded_h, data_set_h, status_h = _US_HEADERS
    body = _FOUR_US.pack(field_h, command_field, responded_h, message_id, data_set_h, NO_DATA_SET, status_h, status)
    if sop_class_uid:
        body = _sop_class_element(sop_class_uid) + body
    if sop_instance_uid:
        body += _ui(_SOP_INSTANCE, sop_instance_uid)
    return _GROUP_LENGTH_ELEMENT.pack(_GROUP_LENGTH[0], _GROUP_LENGTH[1], 4, len(body)) + body


def response_pdata(context_id: int, command: bytes, peer_max_pdu_length: int) -> PDataTF | None:
    """One P-DATA-TF carrying ``command`` as a single last command fragment, if it fits (PS3.8 D.1.1)."""
    if peer_max_pdu_length and len(command) + _PDV_OVERHEAD > peer_max_pdu_length:
        return None
    return PDataTF((PDV(context_id, C.MCH_COMMAND | C.MCH_LAST, command),))
