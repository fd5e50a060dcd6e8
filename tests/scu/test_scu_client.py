"""The high-level SCU against pynetdicom's SCP and scripted peers (PS3.8 7, PS3.7 9)."""

from __future__ import annotations

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomconf.scu.client import (
    CONTEXT_ALIASES,
    SCU,
    Aborted,
    NotNegotiated,
    Rejected,
    UnexpectedReply,
    build_contexts,
    load_dataset,
    resolve_uid,
)
from dicomconf.scu.connection import Connection, Silence
from dicomconf.ul import constants as C
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.items import (
    MaximumLength,
    PresentationContextAC,
    RoleSelection,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAbort, AAssociateAC, AReleaseRP, AReleaseRQ, PDataTF, decode_pdu
from dicomconf.wire import craft

CT_FILE = get_testdata_file("CT_small.dcm")


def open_scu(peer, **kwargs) -> SCU:
    return SCU(Connection.open("127.0.0.1", peer.port, timeout=5), **kwargs)


def client_pdus(conn: Connection) -> list:
    return [decode_pdu(bytes(p)) for p in PDUReader().feed(conn.conversation.sent("client"))]


# ---------------------------------------------------------------- naming and building


def test_every_alias_names_a_registered_uid():
    for alias in CONTEXT_ALIASES:
        assert resolve_uid(alias).startswith("1.2.840.10008.")
    assert resolve_uid("ct") == resolve_uid("CTImageStorage") == CTImageStorage
    assert resolve_uid("1.2.3.4") == "1.2.3.4"
    with pytest.raises(ValueError, match="unknown SOP class 'no-such-thing'"):
        resolve_uid("no-such-thing")


def test_contexts_from_names_uids_and_pairs():
    contexts = build_contexts(["verification", (CTImageStorage, ["ExplicitVRLittleEndian"]), "1.2.3"])
    assert [pc.context_id for pc in contexts] == [1, 3, 5]
    assert contexts[0].abstract_syntax == C.VERIFICATION_SOP_CLASS
    assert contexts[0].transfer_syntaxes == (ImplicitVRLittleEndian, ExplicitVRLittleEndian)
    assert contexts[1].transfer_syntaxes == (ExplicitVRLittleEndian,)
    assert contexts[2].abstract_syntax == "1.2.3"
    with pytest.raises(ValueError, match="presentation context"):
        build_contexts([42])


def test_build_rq_carries_every_negotiation_item_and_overrides():
    scu = SCU.__new__(SCU)
    SCU.__init__(scu, connection=None, calling_ae="ME", called_ae="YOU", max_pdu_length=4096)
    rq = scu.build_rq(
        ["ct"],
        roles={"ct": (1, 1)},
        user_identity={"type": 2, "primary": "alice", "secondary": "secret", "positive_response": True},
        async_window=(3, 2),
        extended={"ct": b"\x01"},
        overrides={"protocol_version": 3, "calling_ae_title": "OTHER"},
    )
    back = decode_pdu(rq.encode())
    ui = back.user_information
    assert back.protocol_version == 3 and back.calling_ae_title == "OTHER" and back.called_ae_title == "YOU"
    assert ui.maximum_length == 4096 and ui.implementation_class_uid == C.IMPLEMENTATION_CLASS_UID
    assert ui.role_selections == (RoleSelection(CTImageStorage, 1, 1),)
    assert ui.user_identity == UserIdentityRQ(2, b"alice", b"secret", 1)
    assert ui.asynchronous_operations_window.maximum_number_operations_invoked == 3
    assert ui.extended_negotiations[0].service_class_application_information == b"\x01"
    with pytest.raises(ValueError, match="unknown A-ASSOCIATE-RQ field"):
        scu.build_rq(overrides={"colour": 1})


# ---------------------------------------------------------------- against pynetdicom


def test_associate_echo_release(pynetdicom_scp):
    peer = pynetdicom_scp()
    scu = open_scu(peer)
    ac = scu.associate(["verification", "ct", "1.2.3.4.5"])
    assert isinstance(ac, AAssociateAC)
    assert scu.accepted == {1: (C.VERIFICATION_SOP_CLASS, ImplicitVRLittleEndian), 3: (CTImageStorage, ImplicitVRLittleEndian)}
    assert scu.peer_max_pdu_length == 16382
    assert scu.echo() == 0x0000
    assert scu.echo() == 0x0000
    scu.release()
    assert not scu.connection.is_open
    assert peer.wait_for("released")
    assert [type(p).__name__ for p in client_pdus(scu.connection)] == [
        "AAssociateRQ", "PDataTF", "PDataTF", "AReleaseRQ"
    ]


def test_store_in_many_fragments_to_a_small_max_pdu(pynetdicom_scp):
    peer = pynetdicom_scp(max_pdu=1024)
    scu = open_scu(peer)
    scu.associate(["ct"])
    assert scu.peer_max_pdu_length == 1024
    assert scu.store(CT_FILE) == 0x0000
    scu.release()
    pdatas = [p for p in client_pdus(scu.connection) if isinstance(p, PDataTF)]
    assert len(pdatas) > 30  # 39 kB of data set in 1 kB fragments
    assert all(len(p.encode()) - 6 <= 1024 for p in pdatas)
    original = dcmread(CT_FILE)
    (stored,) = peer.stored
    assert stored.SOPInstanceUID == original.SOPInstanceUID
    assert stored.PixelData == original.PixelData
    assert set(stored.keys()) == set(original.keys())


def test_store_without_an_accepted_context_is_a_clear_error(pynetdicom_scp):
    peer = pynetdicom_scp()
    scu = open_scu(peer)
    scu.associate(["verification"])
    with pytest.raises(NotNegotiated, match="CT Image Storage"):
        scu.store(CT_FILE)
    with pytest.raises(ValueError, match="Part 10"):
        scu.store(b"not a dicom file")
    with pytest.raises(ValueError, match="cannot read"):
        scu.store("/nonexistent/file.dcm")
    scu.release()


def test_wrong_called_ae_is_rejected(pynetdicom_scp):
    peer = pynetdicom_scp()
    scu = open_scu(peer, called_ae="WRONG-AE")
    with pytest.raises(Rejected, match="called-AE-title-not-recognized") as info:
        scu.associate()
    rj = info.value.pdu
    assert info.value.received.raw == rj.encode() and scu.last_received is info.value.received
    assert (rj.result, rj.source, rj.reason) == (C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_USER, C.RJ_USER_CALLED_AE_NOT_RECOGNIZED)
    assert not scu.connection.is_open  # closed at once: the acceptor need not wait for ARTIM


def test_overridden_protocol_version_is_rejected(pynetdicom_scp):
    peer = pynetdicom_scp()
    scu = open_scu(peer)
    with pytest.raises(Rejected) as info:
        scu.associate(overrides={"protocol_version": 0x0002})  # bit 0 clear (PS3.8 9.3.2)
    assert (info.value.pdu.source, info.value.pdu.reason) == (
        C.RJ_SOURCE_ACSE, C.RJ_ACSE_PROTOCOL_VERSION_NOT_SUPPORTED
    )


def test_abort_reaches_the_peer(pynetdicom_scp):
    peer = pynetdicom_scp()
    scu = open_scu(peer)
    scu.associate()
    scu.abort()
    assert peer.wait_for("aborted")
    assert client_pdus(scu.connection)[-1] == AAbort(0, 0)
    assert not scu.connection.is_open


def test_crafted_unknown_pdu_is_answered_with_a_provider_abort(pynetdicom_scp):
    peer = pynetdicom_scp()
    scu = open_scu(peer)
    scu.associate()
    scu.connection.send(craft.build_pdu({"raw": "08 00 00000004 00000000"}))  # PDU type 08h does not exist
    received = scu.connection.receive_pdu(5)
    assert isinstance(received.pdu, AAbort)
    assert received.pdu.source == C.ABORT_SOURCE_PROVIDER  # AA-8 (PS3.8 Table 9-10, Sta6 Evt19)
    # pynetdicom then waits in Sta13 and does not close by itself: we close (AA-2 on its side).
    with pytest.raises(Silence):
        scu.connection.wait_closed(0.3)
    scu.connection.close()
    assert peer.wait_for("conn-close")


def test_unexpected_associate_rq_is_answered_with_a_provider_abort(pynetdicom_scp):
    peer = pynetdicom_scp()
    scu = open_scu(peer)
    scu.associate()
    with pytest.raises(Aborted) as info:
        scu.connection.send(craft.build_pdu({"pdu": "A-ASSOCIATE-RQ"}))  # not allowed in Sta6
        scu.receive_message(5)
    assert info.value.pdu.source == C.ABORT_SOURCE_PROVIDER
    assert info.value.received.pdu == info.value.pdu and info.value.received.findings == ()
    scu.connection.close()


def test_receive_message_times_out_with_silence(pynetdicom_scp):
    peer = pynetdicom_scp()
    scu = open_scu(peer)
    scu.associate()
    with pytest.raises(Silence):
        scu.receive_message(0.2)
    scu.release()


# ---------------------------------------------------------------- scripted peers


def test_release_collision_is_answered(tiny_server):
    ac = AAssociateAC(
        "ANY-SCP",
        "DICOMCONF-SCU",
        (PresentationContextAC(1, C.PC_ACCEPTANCE, ImplicitVRLittleEndian),),
        UserInformation((MaximumLength(0),)),
    )

    def collide(peer):
        peer.recv_pdu()  # A-ASSOCIATE-RQ
        peer.send(ac.encode())
        assert decode_pdu(peer.recv_pdu()) == AReleaseRQ()
        peer.send(AReleaseRQ().encode())
        reply = decode_pdu(peer.recv_pdu())
        peer.send(AReleaseRP().encode())
        return reply

    server = tiny_server(collide)
    scu = SCU(Connection.open("127.0.0.1", server.port))
    scu.associate()
    assert scu.peer_max_pdu_length == 0 and scu.accepted == {1: (C.VERIFICATION_SOP_CLASS, ImplicitVRLittleEndian)}
    scu.release()
    assert server.join() == AReleaseRP()
    assert not scu.connection.is_open


def test_part10_bytes_go_out_unchanged_when_the_syntaxes_agree():
    ds, raw, ts = load_dataset(open(CT_FILE, "rb").read())
    assert ts == ExplicitVRLittleEndian
    with open(CT_FILE, "rb") as f:
        assert f.read().endswith(raw)
    assert len(raw) > 30000 and ds.SOPClassUID == CTImageStorage


def test_unexpected_reply_to_associate(tiny_server):
    server = tiny_server(lambda peer: (peer.recv_pdu(), peer.send(AReleaseRP().encode()), peer.recv_exactly(1)))
    scu = SCU(Connection.open("127.0.0.1", server.port))
    with pytest.raises(UnexpectedReply, match="expected A-ASSOCIATE-AC, received A-RELEASE-RP") as info:
        scu.associate()
    assert info.value.received.pdu == AReleaseRP()
    scu.connection.send(b"x")
    server.join()
    scu.connection.close()


def test_store_a_dataset_object_encoded_in_the_accepted_syntax(pynetdicom_scp):
    peer = pynetdicom_scp()
    scu = open_scu(peer)
    scu.associate([("ct", [ExplicitVRLittleEndian]), ("mr", [ExplicitVRLittleEndian])])
    original = dcmread(CT_FILE)
    del original.file_meta  # a bare Dataset: no transfer syntax of its own
    assert scu.store(original) == 0x0000
    (stored,) = peer.stored
    assert stored.PixelData == original.PixelData and stored.PatientName == original.PatientName
    # The harness may send on a context that does not fit (the MR one); pynetdicom lets it pass.
    scu.store(CT_FILE, context_id=3)
    scu.release()
    pdatas = [p for p in client_pdus(scu.connection) if isinstance(p, PDataTF)]
    assert {pdv.context_id for pdv in pdatas[0].pdvs} == {1}
    assert {pdv.context_id for pdv in pdatas[-1].pdvs} == {3}


def test_a_file_with_a_wrong_meta_group_length_is_encoded_again():
    data = bytearray(open(CT_FILE, "rb").read())
    assert data[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    data[140:144] = (int.from_bytes(data[140:144], "little") - 10).to_bytes(4, "little")  # ten bytes short
    ds, raw, ts = load_dataset(bytes(data))
    assert raw is None and ts == ExplicitVRLittleEndian and ds.SOPClassUID == CTImageStorage
