"""scapy layers for the DICOM Upper Layer, fixed where ``scapy.contrib.dicom`` is wrong.

Theory of operation
-------------------
``scapy.contrib.dicom`` models every PDU, item and sub-item of PS3.8 and is
used as is where it is right.  Where it is wrong (measured with scapy 2.8.0,
design notes section 5) this module subclasses, never edits or copies it,
and the upstream classes stay untouched for anyone else in the process:

* User Identity (58H) drops the secondary-field length unless the type is 2;
  PS3.7 D.3.3.7.1 says the length is always present.  :class:`UserIdentity`.
* Lists are capped (256 PDVs, 64 / 8 sub-items per presentation context, 32
  user-information sub-items, 256 variable items) and a legal PDU past a cap
  collapses into Raw.  Every list here is uncapped.
* Items are dispatched through a hard-coded table to the upstream classes, so
  a fixed sub-item class would never be reached: :class:`VariableItem`
  dispatches to ours.
* Only TCP ports 104 and 11112 are bound, there is no ``tcp_reassemble`` and
  several PDUs in one segment yield only the first.  We frame each direction's
  byte stream ourselves (:class:`dicomconf.ul.framing.PDUReader`) on any port
  and hand scapy whole PDUs (:func:`dissect`); :class:`PDU` also offers
  ``tcp_reassemble`` for use with scapy's ``TCPSession``.
* Its DIMSE classes ignore tags when dissecting; command sets are decoded with
  pydicom instead (:mod:`dicomconf.wire.dissect`).

Each defect is pinned by a test in ``tests/wire/test_wire_upstream_defects.py``
that fails, saying the workaround can go, once upstream fixes it.
"""

from __future__ import annotations

import struct

from scapy.contrib import dicom as up
from scapy.fields import FieldLenField, PacketListField, StrLenField
from scapy.packet import Packet, Raw

from dicomconf.ul import constants as C

UNCAPPED = 1 << 31


class VariableItem(up.DICOMVariableItem):
    """Item / sub-item header (PS3.8 9.3.2) dispatching to this module's classes."""

    name = "DICOM Variable Item"

    def guess_payload_class(self, payload: bytes) -> type:
        return ITEM_CLASSES.get(self.item_type, up.DICOMGenericItem)


def _uncapped(fields: list, item_cls: type) -> list:
    """Copy ``fields`` with every PacketListField uncapped and made of ``item_cls``."""
    out = []
    for f in fields:
        if isinstance(f, PacketListField):
            f = PacketListField(f.name, [], item_cls, max_count=UNCAPPED, length_from=f.length_from)
        out.append(f)
    return out


class PresentationContextRQ(up.DICOMPresentationContextRQ):
    """Presentation Context Item 20H (PS3.8 9.3.2.2), any number of sub-items."""

    fields_desc = _uncapped(up.DICOMPresentationContextRQ.fields_desc, VariableItem)


class PresentationContextAC(up.DICOMPresentationContextAC):
    """Presentation Context Item 21H (PS3.8 9.3.3.2), any number of sub-items."""

    fields_desc = _uncapped(up.DICOMPresentationContextAC.fields_desc, VariableItem)


class UserInformation(up.DICOMUserInformation):
    """User Information Item 50H (PS3.8 9.3.2.3), any number of sub-items."""

    fields_desc = _uncapped(up.DICOMUserInformation.fields_desc, VariableItem)


class UserIdentity(up.DICOMUserIdentity):
    """User Identity Negotiation Sub-Item 58H (PS3.7 D.3.3.7.1): the secondary-field length is always there."""

    fields_desc = [
        *up.DICOMUserIdentity.fields_desc[:4],
        FieldLenField("secondary_field_length", None, length_of="secondary_field", fmt="!H"),
        StrLenField("secondary_field", b"", length_from=lambda pkt: pkt.secondary_field_length),
    ]


ITEM_CLASSES: dict[int, type] = {
    C.ITEM_APPLICATION_CONTEXT: up.DICOMApplicationContext,
    C.ITEM_PRESENTATION_CONTEXT_RQ: PresentationContextRQ,
    C.ITEM_PRESENTATION_CONTEXT_AC: PresentationContextAC,
    C.ITEM_ABSTRACT_SYNTAX: up.DICOMAbstractSyntax,
    C.ITEM_TRANSFER_SYNTAX: up.DICOMTransferSyntax,
    C.ITEM_USER_INFORMATION: UserInformation,
    C.SUB_MAXIMUM_LENGTH: up.DICOMMaximumLength,
    C.SUB_IMPLEMENTATION_CLASS_UID: up.DICOMImplementationClassUID,
    C.SUB_ASYNCHRONOUS_OPERATIONS_WINDOW: up.DICOMAsyncOperationsWindow,
    C.SUB_ROLE_SELECTION: up.DICOMSCPSCURoleSelection,
    C.SUB_IMPLEMENTATION_VERSION_NAME: up.DICOMImplementationVersionName,
    C.SUB_SOP_CLASS_EXTENDED_NEGOTIATION: up.DICOMSOPClassExtendedNegotiation,
    C.SUB_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION: up.DICOMSOPClassCommonExtendedNegotiation,
    C.SUB_USER_IDENTITY_RQ: UserIdentity,
    C.SUB_USER_IDENTITY_AC: up.DICOMUserIdentityResponse,
}


class A_ASSOCIATE_RQ(up.A_ASSOCIATE_RQ):
    """A-ASSOCIATE-RQ (PS3.8 9.3.2)."""

    fields_desc = _uncapped(up.A_ASSOCIATE_RQ.fields_desc, VariableItem)


class A_ASSOCIATE_AC(up.A_ASSOCIATE_AC):
    """A-ASSOCIATE-AC (PS3.8 9.3.3)."""

    fields_desc = _uncapped(up.A_ASSOCIATE_AC.fields_desc, VariableItem)

    def answers(self, other: Packet) -> bool:
        return isinstance(other, up.A_ASSOCIATE_RQ)


class P_DATA_TF(up.P_DATA_TF):
    """P-DATA-TF (PS3.8 9.3.5), any number of PDVs."""

    fields_desc = _uncapped(up.P_DATA_TF.fields_desc, up.PresentationDataValueItem)


PDU_CLASSES: dict[int, type] = {
    C.A_ASSOCIATE_RQ: A_ASSOCIATE_RQ,
    C.A_ASSOCIATE_AC: A_ASSOCIATE_AC,
    C.A_ASSOCIATE_RJ: up.A_ASSOCIATE_RJ,
    C.P_DATA_TF: P_DATA_TF,
    C.A_RELEASE_RQ: up.A_RELEASE_RQ,
    C.A_RELEASE_RP: up.A_RELEASE_RP,
    C.A_ABORT: up.A_ABORT,
}


class PDU(up.DICOM):
    """The PDU header (PS3.8 9.3.1), dispatching to this module's PDU classes."""

    name = "DICOM UL"

    def guess_payload_class(self, payload: bytes) -> type:
        return PDU_CLASSES.get(self.pdu_type, Raw)

    @classmethod
    def tcp_reassemble(cls, data: bytes, metadata: dict, session: object) -> "PDU | None":
        """For scapy's TCPSession: wait until a whole PDU is there."""
        if len(data) < C.PDU_HEADER_LENGTH:
            return None
        (length,) = struct.unpack_from(">I", data, 2)
        if len(data) < C.PDU_HEADER_LENGTH + length:
            return None
        return cls(data)


def dissect(pdu: bytes) -> PDU:
    """One whole PDU (as the framing yields it) dissected by scapy, lists uncapped."""
    return PDU(bytes(pdu))
