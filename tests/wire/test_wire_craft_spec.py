"""Crafting: every field settable, lengths overridable, raw / append / truncate, clear errors."""

from __future__ import annotations

import struct

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul.dimse import decode_command
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.items import (
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAbort, AAssociateRJ, AAssociateRQ, PDataTF, decode_pdu
from dicomconf.wire.craft import CraftError, build_item, build_pdu, hex_bytes


def test_hex_bytes():
    assert hex_bytes("08 00 00000004 00000000") == bytes.fromhex("0800000000040000000000"[:20])
    assert hex_bytes("0x0a:0b") == b"\x0a\x0b"
    for bad in ("0g", "abc", 12):
        with pytest.raises(CraftError):
            hex_bytes(bad)


def test_default_rq_equals_core_encoding():
    expected = AAssociateRQ(
        "ANY-SCP", "DICOMCONF",
        (PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),),
        UserInformation((MaximumLength(16384), ImplementationClassUID(C.IMPLEMENTATION_CLASS_UID),
                         ImplementationVersionName(C.IMPLEMENTATION_VERSION_NAME))),
    ).encode()
    assert build_pdu({"pdu": "A-ASSOCIATE-RQ"}) == expected


def test_every_sub_item_round_trips_through_the_core():
    spec = {"pdu": "A-ASSOCIATE-RQ", "called_ae_title": "PACS", "calling_ae_title": "ME", "protocol_version": 1,
            "presentation_contexts": [{"context_id": 7, "abstract_syntax": "CTImageStorage",
                                       "transfer_syntaxes": ["ExplicitVRLittleEndian", "1.2.840.10008.1.2"]}],
            "user_information": [
                {"item": "maximum-length", "maximum_length": 1234},
                {"item": "implementation-class-uid", "implementation_class_uid": "1.2.3.4"},
                {"item": "asynchronous-operations-window", "maximum_number_operations_invoked": 3,
                 "maximum_number_operations_performed": 4},
                {"item": "role-selection", "sop_class_uid": "1.2.3", "scu_role": 0, "scp_role": 1},
                {"item": "sop-class-extended-negotiation", "sop_class_uid": "1.2.4",
                 "service_class_application_information": "0102"},
                {"item": "sop-class-common-extended-negotiation", "sop_class_uid": "1.2.5", "service_class_uid": "1.2",
                 "related_general_sop_class_uids": ["1.2.6"]},
                {"item": "user-identity", "user_identity_type": 2, "positive_response_requested": 1,
                 "primary_field": "bob", "secondary_field": {"hex": "0001"}},
            ]}
    p = decode_pdu(build_pdu(spec))
    assert (p.called_ae_title, p.calling_ae_title) == ("PACS", "ME")
    assert p.presentation_contexts == (
        PresentationContextRQ(7, "1.2.840.10008.5.1.4.1.1.2", ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")),)
    assert p.user_information.sub_items == (
        MaximumLength(1234), ImplementationClassUID("1.2.3.4"), AsynchronousOperationsWindow(3, 4),
        RoleSelection("1.2.3", 0, 1), SOPClassExtendedNegotiation("1.2.4", b"\x01\x02"),
        SOPClassCommonExtendedNegotiation("1.2.5", "1.2", ("1.2.6",)),
        UserIdentityRQ(2, b"bob", b"\x00\x01", 1))


def test_ac_rj_abort_pdata():
    ac = decode_pdu(build_pdu({"pdu": "A-ASSOCIATE-AC", "user_information": [
        {"item": "maximum-length"}, {"item": "user-identity-ac", "server_response": "tok"}]}))
    assert ac.user_information.user_identity_response == UserIdentityAC(b"tok")
    assert decode_pdu(build_pdu({"pdu": "A-ASSOCIATE-RJ", "result": 2, "source": 3, "reason": 1})) == \
        AAssociateRJ(2, 3, 1)
    assert decode_pdu(build_pdu({"pdu": "A-ABORT", "source": 2, "reason": 4})) == AAbort(2, 4)
    p = decode_pdu(build_pdu({"pdu": "P-DATA-TF", "pdvs": [
        {"context_id": 3, "command": {"CommandField": "C-ECHO-RQ", "MessageID": 9}},
        {"context_id": 3, "message_control_header": 2, "data": "abcd"}]}))
    assert isinstance(p, PDataTF) and [v.context_id for v in p.pdvs] == [3, 3]
    assert decode_command(p.pdvs[0].data).MessageID == 9
    assert bytes(p.pdvs[1].data) == b"\xab\xcd"


def test_unknown_pdu_type_with_body():
    assert build_pdu({"pdu": 0x08, "body": "00000000"}) == bytes.fromhex("08000000000400000000")
    assert build_pdu({"pdu": "0x09", "body": ""}) == bytes.fromhex("090000000000")


def test_pdu_level_overrides():
    base = build_pdu({"pdu": "A-RELEASE-RQ"})
    assert build_pdu({"pdu": "A-RELEASE-RQ", "length": 99})[2:6] == struct.pack(">I", 99)
    assert build_pdu({"pdu": "A-RELEASE-RQ", "reserved": 0xFF})[1] == 0xFF
    assert build_pdu({"pdu": "A-RELEASE-RQ", "append": "dead"}) == base + b"\xde\xad"
    assert build_pdu({"pdu": "A-RELEASE-RQ", "truncate": 3}) == base[:3]
    assert build_pdu({"raw": "05 00 00000004 00000000"}) == base
    assert build_pdu({"pdu": "A-RELEASE-RQ", "body": "0102"}) == bytes.fromhex("050000000002") + b"\x01\x02"
    with pytest.raises(RemoteProtocolError):
        decode_pdu(build_pdu({"pdu": "A-RELEASE-RQ", "length": 99}))


def test_item_level_overrides():
    item = build_item({"item": "maximum-length", "maximum_length": 5, "length": 9, "reserved": 3})
    assert item == bytes((0x51, 3, 0, 9)) + struct.pack(">I", 5)
    assert build_item({"item": 0x51, "raw": "ff"}) == b"\x51\x00\x00\x01\xff"
    assert build_item({"item": 0x99, "raw": "00"}) == b"\x99\x00\x00\x01\x00"
    pc = build_item({"item": "presentation-context-rq", "context_id": 2, "reserved_1": 1, "reserved_2": 2,
                     "reserved_3": 3, "transfer_syntaxes": [{"uid": "1.2", "length": 1}]})
    assert pc[4:8] == bytes((2, 1, 2, 3))
    assert pc.endswith(b"\x40\x00\x00\x011.2")
    ui = build_item({"item": "user-identity", "primary_field": "bob", "primary_field_length": 9,
                     "secondary_field_length": None})
    assert ui[4:] == b"\x01\x00\x00\x09bob"
    ae = build_pdu({"pdu": "A-ASSOCIATE-RQ", "called_ae_title": {"hex": "41" * 20}})
    assert ae[10:30] == b"A" * 20


@pytest.mark.parametrize("spec,key", [
    ({"pdu": "A-NOPE"}, "pdu"),
    ({}, "pdu"),
    ({"pdu": "A-ABORT", "sorce": 1}, "sorce"),
    ({"pdu": "A-ABORT", "source": 256}, "source"),
    ({"pdu": "A-ABORT", "append": "xyz"}, "append"),
    ({"pdu": "A-ABORT", "truncate": -1}, "truncate"),
    ({"pdu": 0x08}, "body"),
    ({"pdu": "A-ASSOCIATE-RQ", "called_ae_title": "X" * 17}, "called_ae_title"),
    ({"pdu": "A-ASSOCIATE-RQ", "presentation_contexts": [{"abstract_syntax": "NoSuchSOPClass"}]},
     "presentation_contexts[0].abstract_syntax.uid"),
    ({"pdu": "A-ASSOCIATE-RQ", "user_information": [{"item": "maximum-length", "maximum_length": -1}]},
     "user_information.sub_items[0].maximum_length"),
    ({"pdu": "A-ASSOCIATE-RQ", "user_information": [{"item": "bogus"}]}, "user_information.sub_items[0].item"),
    ({"pdu": "A-ASSOCIATE-RQ", "user_information": [{"item": 0x70}]}, "user_information.sub_items[0]"),
    ({"pdu": "P-DATA-TF", "pdvs": [{"command": {"NotAKeyword": 1}}]}, "pdvs[0].command.NotAKeyword"),
    ({"pdu": "P-DATA-TF", "pdvs": "oops"}, "pdvs"),
])
def test_errors_name_the_offending_key(spec, key):
    with pytest.raises(CraftError) as info:
        build_pdu(spec)
    assert info.value.key == key
    assert key in str(info.value)


def test_scapy_packet_of_a_crafted_pdu_can_be_edited():
    from dicomconf.wire import layers
    from dicomconf.wire.craft import scapy_pdu

    pkt = scapy_pdu({"pdu": "A-ASSOCIATE-RQ", "called_ae_title": "PACS"})
    rq = pkt[layers.A_ASSOCIATE_RQ]
    assert rq.called_ae_title.strip() == b"PACS"
    rq.called_ae_title = b"OTHER".ljust(16)
    rq.protocol_version = 3
    decoded = decode_pdu(bytes(pkt))
    assert decoded.called_ae_title == "OTHER" and decoded.protocol_version == 3
