"""End to end without a network: a requestor and an acceptor Association wired back to back."""

from __future__ import annotations

import os

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.association import ASSOCIATE_PDU_BOUND, Association
from dicomconf.ul.errors import LocalProtocolError
from dicomconf.ul.events import (
    Aborted,
    AssociateAccepted,
    AssociateRejected,
    AssociateRequested,
    ConnectionClosed,
    MessageReceived,
    PDUReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import (
    PDV,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    decode_pdu,
)

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPL = UserInformation((MaximumLength(0), ImplementationClassUID("1.2.826.0.1.3680043.9.9999")))


def user_info(max_length: int) -> UserInformation:
    return UserInformation((MaximumLength(max_length), ImplementationClassUID("1.2.826.0.1.3680043.9.9999")))


def rq(max_length: int = 16382) -> AAssociateRQ:
    return AAssociateRQ(
        "ACCEPTOR",
        "REQUESTOR",
        (
            PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),
            PresentationContextRQ(3, CT_IMAGE, (EXPLICIT_LE, C.IMPLICIT_VR_LITTLE_ENDIAN)),
            PresentationContextRQ(5, "1.2.840.10008.5.1.4.1.1.4", (C.IMPLICIT_VR_LITTLE_ENDIAN,)),
        ),
        user_info(max_length),
    )


def ac(max_length: int = 16382) -> AAssociateAC:
    return AAssociateAC(
        "ACCEPTOR",
        "REQUESTOR",
        (
            PresentationContextAC(1, C.PC_ACCEPTANCE, C.IMPLICIT_VR_LITTLE_ENDIAN),
            PresentationContextAC(3, C.PC_ACCEPTANCE, EXPLICIT_LE),
            PresentationContextAC(5, C.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, None),
        ),
        user_info(max_length),
    )


def pdus(data: bytes) -> list:
    return [decode_pdu(p) for p in PDUReader().feed(data)]


def kinds(events) -> list[type]:
    return [type(e) for e in events if not isinstance(e, PDUReceived)]


class Pair:
    """A requestor and an acceptor joined by an in-memory 'wire' that delivers in chunks of ``chunk`` bytes."""

    def __init__(self, req_max: int = 16382, acc_max: int = 16382, chunk: int | None = None) -> None:
        self.req = Association("requestor", max_pdu_length=req_max)
        self.acc = Association("acceptor", max_pdu_length=acc_max)
        self.req_max, self.acc_max, self.chunk = req_max, acc_max, chunk
        self.wire: list[bytes] = []  # everything written, both directions, for inspection

    def deliver(self, data: bytes, to: Association) -> list:
        self.wire.append(data)
        if not self.chunk:
            return to.receive_data(data)
        events = []
        for i in range(0, len(data), self.chunk):
            events += to.receive_data(data[i : i + self.chunk])
        return events

    def associate(self) -> None:
        assert self.req.send(rq(self.req_max)) == b""
        assert self.req.state == "Sta4"
        self.acc.connection_made()
        self.req.connection_made()
        ev = self.deliver(self.req.data_to_send(), self.acc)
        assert kinds(ev) == [AssociateRequested] and self.acc.state == "Sta3"
        assert not self.acc.artim_running
        ev = self.deliver(self.acc.send(ac(self.acc_max)), self.req)
        assert kinds(ev) == [AssociateAccepted]
        assert self.req.state == self.acc.state == "Sta6"

    def release(self) -> None:
        ev = self.deliver(self.req.send(AReleaseRQ()), self.acc)
        assert kinds(ev) == [ReleaseRequested] and self.acc.state == "Sta8"
        ev = self.deliver(self.acc.send(AReleaseRP()), self.req)
        assert kinds(ev) == [ReleaseConfirmed, ConnectionClosed]
        assert self.req.state == "Sta1" and self.req.should_close
        assert self.acc.state == "Sta13" and self.acc.artim_running and not self.acc.should_close
        assert kinds(self.acc.connection_lost()) == [ConnectionClosed]
        assert self.acc.state == "Sta1" and not self.acc.artim_running


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_associate_echo_release(chunk):
    p = Pair(chunk=chunk)
    p.associate()
    for a in (p.req, p.acc):
        assert a.accepted_contexts == {
            1: (C.VERIFICATION_SOP_CLASS, C.IMPLICIT_VR_LITTLE_ENDIAN),
            3: (CT_IMAGE, EXPLICIT_LE),
        }
        assert a.peer_max_pdu_length == 16382
    ev = p.deliver(p.req.send(dimse.c_echo_rq(1)), p.acc)
    (msg,) = [e.message for e in ev if isinstance(e, MessageReceived)]
    assert msg.name == "C-ECHO-RQ" and msg.message_id == 1 and msg.context_id == 1
    ev = p.deliver(p.acc.send(dimse.c_echo_rsp(msg)), p.req)
    (rsp,) = [e.message for e in ev if isinstance(e, MessageReceived)]
    assert rsp.name == "C-ECHO-RSP" and rsp.message_id_being_responded_to == 1 and rsp.status == 0
    p.release()


def test_multi_fragment_store_respects_each_peers_maximum_length():
    p = Pair(req_max=40, acc_max=24)
    p.associate()
    assert p.req.peer_max_pdu_length == 24 and p.acc.peer_max_pdu_length == 40
    data = os.urandom(1000)
    store = dimse.c_store_rq(3, CT_IMAGE, "1.2.3.4", context_id=3, data=data)
    out = p.req.send(store)
    sent = pdus(out)
    assert len(sent) > 40
    assert all(isinstance(s, PDataTF) and sum(len(v.data) + 6 for v in s.pdvs) <= 24 for s in sent)
    ev = p.deliver(out, p.acc)
    (msg,) = [e.message for e in ev if isinstance(e, MessageReceived)]
    assert msg.name == "C-STORE-RQ" and msg.data == data and msg.affected_sop_instance_uid == "1.2.3.4"
    out = p.acc.send(dimse.c_store_rsp(msg, 0x0000))
    assert all(len(x) - 6 <= 40 for x in PDUReader().feed(out))
    ev = p.deliver(out, p.req)
    (rsp,) = [e.message for e in ev if isinstance(e, MessageReceived)]
    assert rsp.name == "C-STORE-RSP" and rsp.status == 0
    p.release()


def test_release_collision():
    p = Pair()
    p.associate()
    to_acc = p.req.send(AReleaseRQ())
    to_req = p.acc.send(AReleaseRQ())
    assert p.req.state == p.acc.state == "Sta7"
    assert kinds(p.req.receive_data(to_req)) == [ReleaseRequested] and p.req.state == "Sta9"
    assert kinds(p.acc.receive_data(to_acc)) == [ReleaseRequested] and p.acc.state == "Sta10"
    with pytest.raises(LocalProtocolError):
        p.acc.send(AReleaseRP())  # the acceptor side waits for the requestor's RP first (Sta10)
    rp1 = p.req.send(AReleaseRP())
    assert p.req.state == "Sta11"
    assert kinds(p.acc.receive_data(rp1)) == [ReleaseConfirmed] and p.acc.state == "Sta12"
    rp2 = p.acc.send(AReleaseRP())
    assert p.acc.state == "Sta13" and p.acc.artim_running
    assert kinds(p.req.receive_data(rp2)) == [ReleaseConfirmed, ConnectionClosed]
    assert p.req.state == "Sta1" and p.req.should_close
    assert kinds(p.acc.connection_lost()) == [ConnectionClosed] and p.acc.state == "Sta1"


def _to_sta(p: Pair, phase: str) -> tuple[Association, Association]:
    """Bring the pair to ``phase``; return (aborting side, other side)."""
    if phase == "Sta3":
        p.req.send(rq())
        p.acc.connection_made()
        p.req.connection_made()
        p.acc.receive_data(p.req.data_to_send())
        return p.acc, p.req
    if phase == "Sta5":
        p.req.send(rq())
        p.acc.connection_made()
        p.req.connection_made()
        p.acc.receive_data(p.req.data_to_send())
        return p.req, p.acc
    p.associate()
    if phase == "Sta6-req":
        return p.req, p.acc
    if phase == "Sta6-acc":
        return p.acc, p.req
    if phase == "Sta7":
        p.acc.receive_data(p.req.send(AReleaseRQ()))
        return p.req, p.acc
    if phase == "Sta8":
        p.acc.receive_data(p.req.send(AReleaseRQ()))
        return p.acc, p.req
    to_acc, to_req = p.req.send(AReleaseRQ()), p.acc.send(AReleaseRQ())
    p.req.receive_data(to_req)  # Sta9
    p.acc.receive_data(to_acc)  # Sta10
    if phase == "Sta9":
        return p.req, p.acc
    if phase == "Sta10":
        return p.acc, p.req
    rp = p.req.send(AReleaseRP())  # Sta11
    if phase == "Sta11":
        return p.req, p.acc
    p.acc.receive_data(rp)  # Sta12
    if phase == "Sta12":
        return p.acc, p.req
    raise AssertionError(phase)


PHASES = ["Sta3", "Sta5", "Sta6-req", "Sta6-acc", "Sta7", "Sta8", "Sta9", "Sta10", "Sta11", "Sta12"]


@pytest.mark.parametrize("phase", PHASES)
def test_user_abort_in_every_phase(phase):
    p = Pair()
    me, peer = _to_sta(p, phase)
    assert me.state == phase.split("-")[0]
    out = me.send(AAbort())
    assert pdus(out) == [AAbort(C.ABORT_SOURCE_USER, 0)]
    assert me.state == "Sta13" and me.artim_running and not me.should_close
    ev = peer.receive_data(out)
    assert [e for e in ev if isinstance(e, Aborted)] == [Aborted(0, 0, True)]  # AA-3 in whatever state the peer is
    assert peer.state == "Sta1" and peer.should_close and kinds(ev)[-1] is ConnectionClosed
    assert kinds(me.connection_lost()) == [ConnectionClosed] and me.state == "Sta1" and not me.artim_running


def test_abort_before_the_connection_completes():
    a = Association("requestor")
    a.send(rq())
    assert a.send(AAbort()) == b""
    assert a.state == "Sta1" and a.should_close
    assert a.connection_lost() == [] and a.receive_data(b"late") == []


@pytest.mark.parametrize("phase", PHASES)
def test_provider_abort_on_unrecognised_pdu_in_every_phase(phase):
    p = Pair()
    me, peer = _to_sta(p, phase)
    ev = me.receive_data(bytes.fromhex("0a 00 00000002 0000"))
    assert [e for e in ev if isinstance(e, Aborted)][0].source == C.ABORT_SOURCE_PROVIDER
    out = me.data_to_send()
    assert pdus(out) == [AAbort(C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_UNRECOGNIZED_PDU)]
    assert me.state == "Sta13" and me.artim_running and me.error.reason == C.ABORT_REASON_UNRECOGNIZED_PDU
    ev = peer.receive_data(out)
    assert [e for e in ev if isinstance(e, Aborted)] == [Aborted(2, 1, True)]
    assert kinds(me.timer_expired()) == [ConnectionClosed] and me.should_close and not me.artim_running


def test_peer_connection_loss_is_a_provider_abort():
    p = Pair()
    p.associate()
    assert kinds(p.acc.connection_lost()) == [Aborted, ConnectionClosed]
    assert p.acc.connection_lost() == []


def test_artim_expiry_in_sta2():
    a = Association("acceptor")
    a.connection_made()
    assert a.state == "Sta2" and a.artim_running
    assert kinds(a.timer_expired()) == [ConnectionClosed]
    assert a.state == "Sta1" and a.should_close and not a.artim_running and a.data_to_send() == b""


def test_reject_then_artim_expiry_in_sta13():
    p = Pair()
    _to_sta(p, "Sta3")
    rj = AAssociateRJ(C.RJ_RESULT_TRANSIENT, C.RJ_SOURCE_PRESENTATION, C.RJ_PRESENTATION_TEMPORARY_CONGESTION)
    out = p.acc.send(rj)
    assert pdus(out) == [rj] and p.acc.state == "Sta13" and p.acc.artim_running
    ev = p.req.receive_data(out)
    assert [e for e in ev if isinstance(e, AssociateRejected)] == [AssociateRejected(rj)]
    assert p.req.state == "Sta1" and p.req.should_close
    assert kinds(p.acc.timer_expired()) == [ConnectionClosed] and p.acc.should_close


def test_provider_check_rejects_in_ae6():
    rj = AAssociateRJ(C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_ACSE, C.RJ_ACSE_PROTOCOL_VERSION_NOT_SUPPORTED)
    a = Association("acceptor", provider_check=lambda r: rj if not r.protocol_version & 1 else None)
    a.connection_made()
    bad = AAssociateRQ("A", "B", rq().presentation_contexts, IMPL, protocol_version=2)
    ev = a.receive_data(bad.encode())
    assert kinds(ev) == [] and a.state == "Sta13" and a.artim_running
    assert pdus(a.data_to_send()) == [rj]


def test_requestor_connected_before_its_request():
    a = Association("requestor")
    assert a.connection_made() == []
    out = a.send(rq())
    assert pdus(out) == [rq()] and a.state == "Sta5"


def test_sta2_garbage_is_answered_with_a_user_source_abort():
    a = Association("acceptor")
    a.connection_made()
    a.receive_data(bytes.fromhex("04 00 00000000"))  # a P-DATA-TF with no PDV: invalid
    assert pdus(a.data_to_send()) == [AAbort(C.ABORT_SOURCE_USER, 0)]
    assert a.state == "Sta13" and a.artim_running and a.error.reason == C.ABORT_REASON_INVALID_PARAMETER_VALUE


def test_pdata_above_our_maximum_length_is_aborted():
    p = Pair(acc_max=128)
    p.associate()
    big = dimse.c_store_rq(1, CT_IMAGE, "1.2.3", context_id=3, data=bytes(500))
    out = b"".join(dimse.fragment(big, 256))  # the requestor ignores the 128 announced
    ev = p.acc.receive_data(out)
    assert [e for e in ev if isinstance(e, Aborted)][0].error.clause.startswith("PS3.8 D.1.1")
    assert pdus(p.acc.data_to_send()) == [AAbort(C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_INVALID_PARAMETER_VALUE)]
    assert p.acc.state == "Sta13"


def test_pdv_on_a_context_not_accepted_is_aborted():
    p = Pair()
    p.associate()
    raw = PDataTF((PDV(5, C.MCH_COMMAND | C.MCH_LAST, dimse.encode_command(dimse.c_echo_rq(1).command)),)).encode()
    ev = p.acc.receive_data(raw)
    assert kinds(ev) == [Aborted] and p.acc.state == "Sta13"
    assert pdus(p.acc.data_to_send()) == [AAbort(C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_INVALID_PARAMETER_VALUE)]
    with pytest.raises(LocalProtocolError, match="not accepted"):
        p.req.send(dimse.c_echo_rq(2, context_id=5))


def test_absurd_length_refused_at_the_header():
    p = Pair()
    p.associate()
    ev = p.acc.receive_data(bytes.fromhex("04 00 ffffffff 00"))
    assert [e for e in ev if isinstance(e, Aborted)][0].reason == C.ABORT_REASON_INVALID_PARAMETER_VALUE
    assert pdus(p.acc.data_to_send()) == [AAbort(2, 6)]
    assert p.acc._reader.buffered == 0
    assert p.acc.receive_data(os.urandom(4096)) == [] and p.acc.data_to_send() == b""  # the rest is noise
    assert p.acc.state == "Sta13"


def test_pdus_before_an_absurd_length_in_the_same_chunk_are_indicated_first():
    p = Pair()
    p.associate()
    ev = p.acc.receive_data(AReleaseRQ().encode() + bytes.fromhex("04 00 ffffffff 00"))
    assert kinds(ev)[:2] == [ReleaseRequested, Aborted]
    assert pdus(p.acc.data_to_send()) == [AAbort(2, 6)]


def test_reader_limit_follows_what_we_announce():
    a = Association("acceptor", max_pdu_length=0)
    assert a._reader.max_pdu_length is None
    b = Association("acceptor")
    assert b._reader.max_pdu_length == ASSOCIATE_PDU_BOUND
    p = Pair(acc_max=4 * ASSOCIATE_PDU_BOUND)
    p.associate()
    assert p.acc._reader.max_pdu_length == 4 * ASSOCIATE_PDU_BOUND + 6


def test_unexpected_associate_rq_in_sta6():
    p = Pair()
    p.associate()
    ev = p.req.receive_data(rq().encode())
    assert kinds(ev) == [Aborted] and ev[-1].reason == C.ABORT_REASON_UNEXPECTED_PDU
    assert ev[-1].error is p.req.error and "(Sta6, Evt6)" in p.req.error.clause
    assert pdus(p.req.data_to_send()) == [AAbort(2, 2)]


def test_local_misuse():
    with pytest.raises(LocalProtocolError):
        Association("observer")
    a = Association("acceptor")
    with pytest.raises(LocalProtocolError, match="only the association-requestor"):
        a.send(rq())
    with pytest.raises(LocalProtocolError, match="no transport connection"):
        a.receive_data(b"\x01")
    with pytest.raises(LocalProtocolError, match="not a primitive"):
        a.send(b"raw bytes")
    with pytest.raises(LocalProtocolError, match="Table 9-10"):
        a.timer_expired()
    with pytest.raises(LocalProtocolError, match="Table 9-10"):
        a.connection_lost()


def test_several_pdus_in_one_chunk_and_trailing_bytes():
    p = Pair()
    p.associate()
    blob = p.req.send(dimse.c_echo_rq(1)) + p.req.send(dimse.c_echo_rq(2)) + p.req.send(AReleaseRQ())
    ev = p.acc.receive_data(blob + AAbort().encode()[:3])
    assert kinds(ev) == [MessageReceived, MessageReceived, ReleaseRequested]
    assert [e.message.message_id for e in ev if isinstance(e, MessageReceived)] == [1, 2]
    assert p.acc.state == "Sta8"
