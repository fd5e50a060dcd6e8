"""Pins on the scapy.contrib.dicom defects dicomconf/wire/layers.py works around.

Each test asserts that the upstream defect is still there.  When one fails,
upstream has fixed it: the message says which workaround can go.
"""

from __future__ import annotations

import pytest
from scapy.contrib import dicom as up
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

from dicomconf.wire import layers
from dicomconf.wire.craft import build_pdu

RELEASE_RQ = build_pdu({"pdu": "A-RELEASE-RQ"})
RELEASE_RP = build_pdu({"pdu": "A-RELEASE-RP"})


def _fixed(what: str) -> str:
    return f"scapy.contrib.dicom now handles {what}: the workaround in dicomconf/wire/layers.py can go"


def test_upstream_binds_only_ports_104_and_11112():
    pkt = IP(bytes(IP() / TCP(sport=40000, dport=4242) / Raw(RELEASE_RQ)))
    assert up.DICOM not in pkt, _fixed("DICOM on any port")
    # ours: framing on any port, then whole PDUs to scapy
    assert layers.dissect(RELEASE_RQ).pdu_type == 5


def test_upstream_has_no_tcp_reassemble():
    assert not hasattr(up.DICOM, "tcp_reassemble"), _fixed("TCP reassembly (tcp_reassemble)")
    assert hasattr(layers.PDU, "tcp_reassemble")
    assert layers.PDU.tcp_reassemble(RELEASE_RQ[:5], {}, None) is None
    assert layers.PDU.tcp_reassemble(RELEASE_RQ, {}, None).pdu_type == 5


def test_upstream_parses_only_the_first_of_several_pdus_in_a_segment():
    pkt = IP(bytes(IP() / TCP(sport=40000, dport=104) / Raw(RELEASE_RQ + RELEASE_RP)))
    dicom_layers = [layer for layer in pkt.layers() if issubclass(layer, up.DICOM)]
    assert len(dicom_layers) == 1, _fixed("several PDUs in one segment")


def test_upstream_cuts_a_pdu_split_over_segments_silently():
    rq = build_pdu({"pdu": "A-ASSOCIATE-RQ"})
    pkt = IP(bytes(IP() / TCP(sport=40000, dport=104) / Raw(rq[:40])))
    assert up.DICOM in pkt and pkt[up.DICOM].length == len(rq) - 6, _fixed("PDUs split over segments")
    assert len(bytes(pkt[up.DICOM])) < len(rq)


def test_upstream_dimse_classes_ignore_tags():
    rsp = build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"command": {"CommandField": "C-ECHO-RSP",
                                                               "MessageIDBeingRespondedTo": 7, "Status": 0x0110}}]})
    command = rsp[12:]
    assert up.C_ECHO_RSP(command).status != 0x0110, _fixed("DIMSE dissection by tag")
    from dicomconf.wire.dissect import fast_command

    assert fast_command(command)["Status"] == 0x0110


def test_upstream_user_identity_type_1_omits_secondary_length():
    built = bytes(up.DICOMVariableItem() / up.DICOMUserIdentity(user_identity_type=1, primary_field=b"bob"))
    assert built[4:] == b"\x01\x00\x00\x03bob", _fixed("the user identity secondary-field length")
    ours = bytes(layers.VariableItem() / layers.UserIdentity(user_identity_type=1, primary_field=b"bob"))
    assert ours[4:] == b"\x01\x00\x00\x03bob\x00\x00"
    spec = build_pdu({"pdu": "A-ASSOCIATE-RQ", "user_information": [
        {"item": "maximum-length"}, {"item": "user-identity", "primary_field": "bob"}]})
    assert bytes(layers.dissect(spec)) == spec


@pytest.mark.parametrize("count", [300])
def test_upstream_list_limits_collapse_legal_pdus(count):
    pdata = build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"data": "00"}] * count})
    upstream = up.DICOM(pdata)
    assert up.P_DATA_TF not in upstream or len(upstream[up.P_DATA_TF].pdv_items) != count, _fixed("long PDV lists")
    ours = layers.dissect(pdata)
    assert len(ours[layers.P_DATA_TF].pdv_items) == count
    assert bytes(ours) == pdata


def test_upstream_user_information_capped_at_32_sub_items():
    subs = [{"item": "maximum-length"}, {"item": "implementation-class-uid"}]
    subs += [{"item": "role-selection", "sop_class_uid": f"1.2.3.{i}"} for i in range(40)]
    rq = build_pdu({"pdu": "A-ASSOCIATE-RQ", "user_information": subs})
    upstream = up.DICOM(rq)
    ui = [i for i in upstream[up.A_ASSOCIATE_RQ].variable_items if i.item_type == 0x50]
    assert not ui or up.DICOMUserInformation not in ui[0] or len(ui[0][up.DICOMUserInformation].sub_items) != 42, \
        _fixed("more than 32 user information sub-items")
    ours = layers.dissect(rq)
    ui = [i for i in ours[layers.A_ASSOCIATE_RQ].variable_items if i.item_type == 0x50][0]
    assert len(ui[layers.UserInformation].sub_items) == 42
