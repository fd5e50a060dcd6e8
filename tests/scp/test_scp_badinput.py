"""Bad input over raw sockets: each case gets the answer PS3.8 Table 9-10 prescribes, in bounded time."""

from __future__ import annotations

import resource
import struct

import pytest
from scp_testkit import CT, IVRLE, RELEASE_RQ, RawClient, abort_fields, associate_rq, echo_rq, pdu

from dicomconf.ul import constants as C
from dicomconf.ul.pdu import PDV, PDataTF

# The data sets stored here are raw bytes, not DICOM: these tests run without the index, which refuses
# what it cannot read (C000); the index has its own tests (tests/services).
RAW = {"index": "none"}

ARTIM = 1.0
IDLE = 1.5
MARGIN = 1.5
pytestmark = pytest.mark.network


def associated(port: int, **kw) -> RawClient:
    client = RawClient(port)
    reply = client.associate(**kw)
    assert reply[0] == C.A_ASSOCIATE_AC, f"expected A-ASSOCIATE-AC, got {reply[0]:#04x}"
    return client


def assert_still_serving(port: int) -> None:
    with associated(port) as client:
        assert client.echo() == 0x0000


@pytest.fixture
def server(scp_factory):
    return scp_factory(**RAW, artim_timeout=ARTIM, idle_timeout=IDLE)


# ---------------------------------------------------------------- Sta2: before the A-ASSOCIATE-RQ

STA2_CASES = {
    "unknown PDU type with body": pdu(0x08, bytes(4)),
    "unknown PDU type without body": pdu(0x08),
    "unknown PDU type 0x00": pdu(0x00, bytes(10)),
    "P-DATA before association": PDataTF((PDV(1, 3, b"\x00" * 8),)).encode(),
    "A-RELEASE-RQ before association": RELEASE_RQ,
    "A-ASSOCIATE-RQ too short for its fixed fields": pdu(C.A_ASSOCIATE_RQ, bytes(10)),
    "A-ASSOCIATE-AC sent to an acceptor": pdu(C.A_ASSOCIATE_AC, associate_rq()[6:]),
}


@pytest.mark.parametrize("case", sorted(STA2_CASES))
def test_sta2_bad_pdu_is_aborted_then_closed(server, case):
    """Sta2, Evt3-Evt19 other than Evt6: AA-1 (A-ABORT, ARTIM, Sta13), then the transport closes."""
    with RawClient(server.port) as client:
        client.send(STA2_CASES[case])
        abort_fields(client.recv_pdu(timeout=MARGIN))
        assert client.wait_closed(ARTIM + MARGIN) is not None, "not closed after ARTIM"
    assert_still_serving(server.port)


def test_item_overrunning_its_pdu_is_aborted(server):
    rq = bytearray(associate_rq())
    # First item after the 68 fixed bytes is the application context: claim 0x7FFF bytes.
    struct.pack_into(">H", rq, 6 + 68 + 2, 0x7FFF)
    with RawClient(server.port) as client:
        client.send(bytes(rq))
        abort_fields(client.recv_pdu(timeout=MARGIN))
        assert client.wait_closed(ARTIM + MARGIN) is not None


def test_huge_length_claim_before_association_is_refused_without_allocating(scp_factory):
    handle = scp_factory(**RAW, artim_timeout=5.0, idle_timeout=IDLE)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with RawClient(handle.port) as client:
        client.send(struct.pack(">BBI", C.A_ASSOCIATE_RQ, 0, 0xFFFFFFFF) + bytes(64))
        source, reason = abort_fields(client.recv_pdu(timeout=MARGIN))  # long before ARTIM (5 s)
        assert client.wait_closed(5.0 + MARGIN) is not None
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: < 64 MiB grown
    assert_still_serving(handle.port)


def test_partial_rq_then_silence_is_closed_by_artim(server):
    with RawClient(server.port) as client:
        client.send(associate_rq()[:20])
        elapsed = client.wait_closed(ARTIM + MARGIN)
        assert elapsed is not None and elapsed >= ARTIM * 0.8


def test_truncated_pdu_then_peer_close_leaves_server_serving(server):
    with RawClient(server.port) as client:
        client.send(associate_rq()[:40])
    assert_still_serving(server.port)


# ---------------------------------------------------------------- Sta6: association established


@pytest.mark.parametrize("body", [bytes(4), b""], ids=["with body", "without body"])
def test_sta6_unknown_pdu_is_aa8_unrecognized(server, body):
    """Sta6, Evt19: AA-8, A-ABORT source 2 (service-provider), reason 1 (unrecognized PDU)."""
    with associated(server.port) as client:
        client.send(pdu(0x0A, body))
        assert abort_fields(client.recv_pdu(timeout=MARGIN)) == (C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_UNRECOGNIZED_PDU)
        assert client.wait_closed(ARTIM + MARGIN) is not None


def test_second_associate_rq_is_aa8_unexpected(server):
    """Sta6, Evt6: AA-8, A-ABORT source 2, reason 2 (unexpected PDU)."""
    with associated(server.port) as client:
        client.send(associate_rq())
        assert abort_fields(client.recv_pdu(timeout=MARGIN)) == (C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_UNEXPECTED_PDU)
        assert client.wait_closed(ARTIM + MARGIN) is not None


def test_pdv_on_unaccepted_context_is_aborted(server):
    with associated(server.port) as client:
        client.send(echo_rq(context_id=3))
        source, _reason = abort_fields(client.recv_pdu(timeout=MARGIN))
        assert source == C.ABORT_SOURCE_PROVIDER
        assert client.wait_closed(ARTIM + MARGIN) is not None


def test_pdata_above_announced_maximum_is_aborted(scp_factory):
    handle = scp_factory(**RAW, artim_timeout=ARTIM, idle_timeout=IDLE, max_pdu_length=4096)
    with associated(handle.port, contexts=((1, CT, (IVRLE,)),)) as client:
        client.send(PDataTF((PDV(1, 0, bytes(8000)),)).encode())
        source, _reason = abort_fields(client.recv_pdu(timeout=MARGIN))
        assert source == C.ABORT_SOURCE_PROVIDER
        assert client.wait_closed(ARTIM + MARGIN) is not None


def test_huge_length_claim_in_sta6_is_aborted_at_once(server):
    with associated(server.port) as client:
        client.send(struct.pack(">BBI", C.P_DATA_TF, 0, 0xFFFFFFFF) + bytes(16))
        source, _reason = abort_fields(client.recv_pdu(timeout=0.8))
        assert source == C.ABORT_SOURCE_PROVIDER


def test_partial_pdu_then_silence_is_closed_by_idle_timer(server):
    with associated(server.port) as client:
        client.send(echo_rq()[:9])
        elapsed = client.wait_closed(IDLE + ARTIM + MARGIN)
        assert elapsed is not None and elapsed >= IDLE * 0.8


def test_client_that_never_closes_after_release_is_closed_by_artim(server):
    """After A-RELEASE-RP the acceptor waits in Sta13 with ARTIM (PS3.8 9.2.3)."""
    with associated(server.port) as client:
        client.send(RELEASE_RQ)
        reply = client.recv_pdu()
        assert reply is not None and reply[0] == C.A_RELEASE_RP
        elapsed = client.wait_closed(ARTIM + MARGIN)
        assert elapsed is not None


def test_client_that_never_closes_after_reject_is_closed_by_artim(server):
    with RawClient(server.port) as client:
        reply = client.associate(called="SOMEBODYELSE")
        assert reply[0] == C.A_ASSOCIATE_RJ
        assert tuple(reply[1][1:4]) == (C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_USER, C.RJ_USER_CALLED_AE_NOT_RECOGNIZED)
        assert client.wait_closed(ARTIM + MARGIN) is not None


def test_peer_abort_mid_store_stores_nothing(scp_factory, tmp_path):
    handle = scp_factory(**RAW, storage="directory", storage_dir=str(tmp_path))
    from dicomconf.ul import dimse

    msg = dimse.c_store_rq(1, CT, "1.2.3.4.5", context_id=1, data=bytes(20000))
    pdus = dimse.fragment(msg, 4096)
    with associated(handle.port, contexts=((1, CT, (IVRLE,)),)) as client:
        client.send(b"".join(pdus[:-1]))
        client.send(pdu(C.A_ABORT, bytes(4)))
        assert client.wait_closed(MARGIN) is not None
    assert list(tmp_path.iterdir()) == []
    assert handle.stored == []


def test_stop_finishes_an_in_flight_store(scp_factory, tmp_path, monkeypatch):
    """stop() lets a store being written finish and answer before it closes the association."""
    import threading
    import time

    from dicomconf.scp.storage import STATUS_SUCCESS, FileSpool
    from dicomconf.ul import dimse
    from dicomconf.ul.pdu import decode_pdu

    handle = scp_factory(**RAW, storage="directory", storage_dir=str(tmp_path), fsync=True)
    real_commit, started = FileSpool.commit, threading.Event()

    def slow_commit(spool):
        started.set()
        time.sleep(0.5)
        return real_commit(spool)

    monkeypatch.setattr(FileSpool, "commit", slow_commit)
    msg = dimse.c_store_rq(1, CT, "1.2.3.4.6", context_id=1, data=bytes(1000))
    with associated(handle.port, contexts=((1, CT, (IVRLE,)),)) as client:
        client.send(b"".join(dimse.fragment(msg, 16384)))
        assert started.wait(5)
        stopper = threading.Thread(target=handle.stop)
        stopper.start()
        reply = client.recv_pdu(timeout=5)
        assert reply is not None and reply[0] == C.P_DATA_TF
        rsp = dimse.MessageAssembler().add_pdata(decode_pdu(pdu(reply[0], reply[1])))[0]
        assert rsp.status == STATUS_SUCCESS
        stopper.join(10)
        assert client.wait_closed(5) is not None
    assert [p.name for p in tmp_path.iterdir()] == ["1.2.3.4.6.dcm"]


def test_ac_carries_window_identity_and_implementation(scp_factory):
    """PS3.7 D.3.3.2-D.3.3.3: implementation class UID / version name, asynchronous operations window."""
    from dicomconf.ul.items import AsynchronousOperationsWindow
    from dicomconf.ul.pdu import decode_pdu

    handle = scp_factory(**RAW, async_window=(3, 2), implementation_version_name="TESTVER", max_pdu_length=8192)
    with RawClient(handle.port) as client:
        reply = client.associate(extra_sub_items=(AsynchronousOperationsWindow(5, 5),))
        ac = decode_pdu(pdu(reply[0], reply[1]))
    ui = ac.user_information
    assert ui.implementation_class_uid == C.IMPLEMENTATION_CLASS_UID
    assert ui.implementation_version_name == "TESTVER"
    assert ui.maximum_length == 8192
    window = ui.asynchronous_operations_window
    assert (window.maximum_number_operations_invoked, window.maximum_number_operations_performed) == (3, 2)


def test_store_on_a_context_of_another_sop_class_is_refused(scp):
    """The command's Affected SOP Class must be the context's abstract syntax: 0122 otherwise."""
    from dicomconf.ul import dimse
    from dicomconf.ul.pdu import decode_pdu

    mr = "1.2.840.10008.5.1.4.1.1.4"
    msg = dimse.c_store_rq(1, mr, "1.2.3.4.7", context_id=1, data=bytes(100))
    with associated(scp.port, contexts=((1, CT, (IVRLE,)),)) as client:
        client.send(b"".join(dimse.fragment(msg, 16384)))
        reply = client.recv_pdu()
        rsp = dimse.MessageAssembler().add_pdata(decode_pdu(pdu(reply[0], reply[1])))[0]
    assert rsp.status == 0x0122
    assert scp.stored == []
