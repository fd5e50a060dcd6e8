"""User information sub-items 51H-59H and presentation context items, both ways (PS3.8 D, PS3.7 D.3.3)."""

from __future__ import annotations

import struct

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.items import (
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UnknownSubItem,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
    decode_presentation_context_ac,
    decode_presentation_context_rq,
    decode_sub_item,
    decode_user_information,
)
from dicomconf.ul.pdu import AAssociateRQ, decode_pdu


def item(item_type: int, value: bytes, reserved: int = 0) -> bytes:
    return struct.pack(">BBH", item_type, reserved, len(value)) + value


def lp(value: bytes) -> bytes:
    """A field prefixed by its 2-byte length (PS3.7 D.3.3)."""
    return struct.pack(">H", len(value)) + value


CT = "1.2.840.10008.5.1.4.1.1.2"
STORAGE = "1.2.840.10008.4.2"

SUB_ITEMS = [
    ("51-max-length", MaximumLength(16384), item(0x51, struct.pack(">I", 16384))),
    ("51-unlimited", MaximumLength(0), item(0x51, bytes(4))),
    ("52-impl-class", ImplementationClassUID("1.2.826.0.1.3680043.9"), item(0x52, b"1.2.826.0.1.3680043.9")),
    ("53-async-window", AsynchronousOperationsWindow(5, 0), item(0x53, b"\x00\x05\x00\x00")),
    ("54-role", RoleSelection(CT, 0, 1), item(0x54, lp(CT.encode()) + b"\x00\x01")),
    ("55-impl-version", ImplementationVersionName("DCMTK_367"), item(0x55, b"DCMTK_367")),
    ("56-ext-neg", SOPClassExtendedNegotiation(CT, b"\x01\x00\x01"), item(0x56, lp(CT.encode()) + b"\x01\x00\x01")),
    ("56-ext-neg-empty-info", SOPClassExtendedNegotiation(CT, b""), item(0x56, lp(CT.encode()))),
    (
        "57-common-ext-neg-related",
        SOPClassCommonExtendedNegotiation(CT, STORAGE, ("1.2.3", "1.2.3.4")),
        item(0x57, lp(CT.encode()) + lp(STORAGE.encode()) + lp(lp(b"1.2.3") + lp(b"1.2.3.4"))),
    ),
    (
        "57-common-ext-neg-none-related",
        SOPClassCommonExtendedNegotiation(CT, STORAGE),
        item(0x57, lp(CT.encode()) + lp(STORAGE.encode()) + lp(b"")),
    ),
    (
        "57-version-byte-kept",
        SOPClassCommonExtendedNegotiation(CT, STORAGE, (), sub_item_version=1),
        item(0x57, lp(CT.encode()) + lp(STORAGE.encode()) + lp(b""), reserved=1),
    ),
    ("58-type1-username", UserIdentityRQ(1, b"alice"), item(0x58, b"\x01\x00" + lp(b"alice") + lp(b""))),
    (
        "58-type2-user-passcode",
        UserIdentityRQ(2, b"alice", b"s3cret", 1),
        item(0x58, b"\x02\x01" + lp(b"alice") + lp(b"s3cret")),
    ),
    ("58-type3-kerberos", UserIdentityRQ(3, bytes(range(200))), item(0x58, b"\x03\x00" + lp(bytes(range(200))) + lp(b""))),
    ("58-type4-saml", UserIdentityRQ(4, b"<saml/>", b"", 1), item(0x58, b"\x04\x01" + lp(b"<saml/>") + lp(b""))),
    ("58-type5-jwt", UserIdentityRQ(5, b"eyJ.a.b"), item(0x58, b"\x05\x00" + lp(b"eyJ.a.b") + lp(b""))),
    ("59-response", UserIdentityAC(b"ticket"), item(0x59, lp(b"ticket"))),
    ("59-empty-response", UserIdentityAC(), item(0x59, lp(b""))),
    ("unknown-5a", UnknownSubItem(0x5A, b"\x01\x02\x03"), item(0x5A, b"\x01\x02\x03")),
    ("unknown-ff-empty", UnknownSubItem(0xFF, b""), item(0xFF, b"")),
]


@pytest.mark.parametrize("obj, raw", [c[1:] for c in SUB_ITEMS], ids=[c[0] for c in SUB_ITEMS])
def test_sub_item_both_ways(obj, raw):
    assert obj.encode() == raw
    version = raw[1] if raw[0] == C.SUB_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION else 0
    assert decode_sub_item(raw[0], memoryview(raw)[4:], 4, version) == obj
    # inside a user information item, together with a neighbour on each side
    neighbours = MaximumLength(1).encode() + raw + ImplementationClassUID("1.2").encode()
    ui = decode_user_information(memoryview(neighbours), 0)
    assert ui.sub_items == (MaximumLength(1), obj, ImplementationClassUID("1.2"))
    assert ui.encode() == item(0x50, neighbours)


def test_all_sub_items_in_one_rq_and_properties():
    subs = tuple(obj for _, obj, _ in SUB_ITEMS)
    rq = AAssociateRQ("SCP", "SCU", (PresentationContextRQ(1, CT, ("1.2.840.10008.1.2",)),), UserInformation(subs))
    back = decode_pdu(rq.encode())
    assert back == rq
    ui = back.user_information
    assert ui.maximum_length == 16384
    assert ui.implementation_class_uid == "1.2.826.0.1.3680043.9"
    assert ui.implementation_version_name == "DCMTK_367"
    assert ui.asynchronous_operations_window == AsynchronousOperationsWindow(5, 0)
    assert ui.role_selections == (RoleSelection(CT, 0, 1),)
    assert len(ui.extended_negotiations) == 2 and len(ui.common_extended_negotiations) == 3
    assert ui.user_identity == UserIdentityRQ(1, b"alice")
    assert ui.user_identity_response == UserIdentityAC(b"ticket")
    empty = UserInformation()
    assert empty.maximum_length is None and empty.user_identity is None and empty.role_selections == ()


PRESENTATION = [
    ("rq", PresentationContextRQ(7, CT, ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")),
     item(0x20, b"\x07\x00\x00\x00" + item(0x30, CT.encode()) + item(0x40, b"1.2.840.10008.1.2")
          + item(0x40, b"1.2.840.10008.1.2.1"))),
    ("ac-accept", PresentationContextAC(7, 0, "1.2.840.10008.1.2"),
     item(0x21, b"\x07\x00\x00\x00" + item(0x40, b"1.2.840.10008.1.2"))),
    ("ac-reject-no-ts", PresentationContextAC(9, 3, None), item(0x21, b"\x09\x00\x03\x00")),
]


@pytest.mark.parametrize("obj, raw", [c[1:] for c in PRESENTATION], ids=[c[0] for c in PRESENTATION])
def test_presentation_context_both_ways(obj, raw):
    assert obj.encode() == raw
    decode = decode_presentation_context_rq if raw[0] == 0x20 else decode_presentation_context_ac
    assert decode(memoryview(raw)[4:], 4) == obj


def test_rejected_ac_context_ignores_its_sub_items():
    # PS3.8 9.3.3.2 Table 9-18: the transfer syntax of a rejected context is not significant.
    raw = b"\x05\x00\x04\x00" + item(0x40, b"1.2") + item(0x40, b"1.3") + item(0x55, b"x")
    assert decode_presentation_context_ac(memoryview(raw), 0) == PresentationContextAC(5, 4, "1.2")


R6 = C.ABORT_REASON_INVALID_PARAMETER_VALUE

MALFORMED_SUBS = [
    ("51-five-bytes", 0x51, bytes(5), 0),
    ("53-three-bytes", 0x53, bytes(3), 0),
    ("54-uid-length-overruns", 0x54, b"\x00\x09abc\x00\x01", 0),
    ("54-no-roles", 0x54, lp(CT.encode()), 2 + len(CT)),
    ("54-no-uid-length", 0x54, b"\x00", 0),
    ("56-uid-overruns", 0x56, b"\x00\x20" + b"1.2", 0),
    ("57-missing-service-class", 0x57, lp(CT.encode()), 2 + len(CT)),
    ("57-trailing", 0x57, lp(b"1") + lp(b"2") + lp(b"") + b"x", 8),
    ("57-related-cut", 0x57, lp(b"1") + lp(b"2") + lp(b"\x00\x05ab"), 8),
    ("58-too-short", 0x58, b"\x01", 0),
    ("58-no-secondary-length", 0x58, b"\x01\x00" + lp(b"alice"), 2 + 2 + 5),
    ("58-primary-overruns", 0x58, b"\x01\x00\x00\x10abc\x00\x00", 2),
    ("58-trailing", 0x58, b"\x01\x00" + lp(b"a") + lp(b"") + b"zz", 7),
    ("59-no-length", 0x59, b"", 0),
    ("59-trailing", 0x59, lp(b"ok") + b"!", 4),
]


@pytest.mark.parametrize("sub_type, value, offset", [c[1:] for c in MALFORMED_SUBS], ids=[c[0] for c in MALFORMED_SUBS])
def test_malformed_sub_item(sub_type, value, offset):
    base = 100
    with pytest.raises(RemoteProtocolError) as info:
        decode_sub_item(sub_type, memoryview(value), base)
    assert info.value.reason == R6
    assert info.value.offset == base + offset


def test_encoding_refuses_what_does_not_fit():
    with pytest.raises(LocalProtocolError):
        UnknownSubItem(0x5A, bytes(70000)).encode()
    with pytest.raises(LocalProtocolError):
        ImplementationVersionName("caf\u00e9\u20ac").encode()
    with pytest.raises(LocalProtocolError):
        SOPClassCommonExtendedNegotiation(CT, STORAGE, tuple(["1.2.3.4.5.6.7.8.9"] * 4000)).encode()
    with pytest.raises(LocalProtocolError):
        UserIdentityRQ(2, b"u", bytes(70000)).encode()
    with pytest.raises(LocalProtocolError):
        RoleSelection("1" * 70000, 1, 1).encode()


@pytest.mark.parametrize(
    "obj",
    [
        PresentationContextRQ(300, CT, ("1.2",)),
        PresentationContextAC(1, 256, "1.2"),
        MaximumLength(-1),
        MaximumLength(2**32),
        AsynchronousOperationsWindow(70000, 1),
        RoleSelection(CT, 2, 300),
        UserIdentityRQ(256, b"x"),
    ],
    ids=repr,
)
def test_fields_out_of_range_are_local_errors(obj):
    with pytest.raises(LocalProtocolError, match=type(obj).__name__):
        obj.encode()
