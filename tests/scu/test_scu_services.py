"""The SCU's service operations (dicomconf.scu.services) against the reference SCP on 127.0.0.1.

Each operation is run against a reference SCP in this process (memory storage, its index,
move destinations pointing at the harness's listener) holding the known data set; the
bounds are checked against handlers that never end.
"""

from __future__ import annotations

import time

import pytest
from pydicom import Dataset

from dicomconf.scenario import qr_data
from dicomconf.scenario.move_listener import MoveListener
from dicomconf.scp.config import SCPConfig
from dicomconf.scp.runtime import run_in_thread
from dicomconf.scu import services
from dicomconf.scu.client import SCU
from dicomconf.scu.connection import Connection
from dicomconf.services.base import Cancel, Reply
from dicomconf.ul import dimse

CONTEXTS = ["verification", "ct", "mr", "study-find", "patient-find", "study-move", "study-get",
            "storage-commitment", "mpps"]
VIEW = qr_data.template_view()


@pytest.fixture
def listener():
    lst = MoveListener("DCONF-TEST-MOVE").start()
    yield lst
    lst.stop()


def _pacs(listener, **extra):
    config = SCPConfig(port=0, ae_titles=("PACS",), storage="memory", artim_timeout=2.0, idle_timeout=10.0,
                       move_destinations={"DCONF-TEST-MOVE": ("127.0.0.1", listener.port)}, **extra)
    return run_in_thread(config)


@pytest.fixture
def pacs(listener):
    handle = _pacs(listener)
    yield handle
    handle.stop()


def connect(handle, roles=None) -> SCU:
    scu = SCU(Connection.open("127.0.0.1", handle.port, timeout=5), called_ae="PACS")
    scu.associate(CONTEXTS, roles=roles or {"mr": (1, 1)})
    return scu


def stored(handle, roles=None) -> SCU:
    scu = connect(handle, roles)
    for instance in qr_data.instances():
        assert scu.store(instance.dataset) == 0
    return scu


def query(level: str, **keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_find_collects_every_pending_identifier_and_the_final_status(pacs):
    scu = stored(pacs)
    outcome = services.find(scu, "study-find", query("STUDY", PatientID="DCONF-QR-*", StudyInstanceUID="",
                                                     StudyDate="20260101-20261231"), within=5)
    assert outcome.status == 0
    assert outcome.pending == 2 and len(outcome.matches) == 2
    assert sorted(str(m.StudyInstanceUID) for m in outcome.matches) == sorted(
        [VIEW["studies"][1]["uid"], VIEW["studies"][3]["uid"]])
    assert outcome.final is not None and outcome.final.status == 0
    scu.release()


def test_find_of_the_non_ascii_name_comes_back_decoded(pacs):
    scu = stored(pacs)
    name = VIEW["patients"][2]["name"]
    ident = query("PATIENT", PatientID=VIEW["patients"][2]["id"], PatientName="")
    outcome = services.find(scu, "patient-find", ident, within=5)
    assert outcome.status == 0 and [str(m.PatientName) for m in outcome.matches] == [name]
    scu.release()


def _endless(delay: float):
    """A C-FIND handler that never runs out of pending responses; FE00 when cancelled."""

    def handler(request):
        n = 0
        try:
            while True:
                n += 1
                ds = Dataset()
                ds.QueryRetrieveLevel = "STUDY"
                ds.StudyInstanceUID = f"1.2.3.{n}"
                yield Reply(0xFF00, ds, delay=delay)
        except Cancel:
            yield Reply(0xFE00)

    return handler


def test_find_cancel_after_sends_c_cancel_and_reads_the_cancel_status(pacs):
    pacs.scp.handlers["1.2.840.10008.5.1.4.1.2.2.1"] = _endless(0.02)
    scu = connect(pacs)
    outcome = services.find(scu, "study-find", query("STUDY", StudyInstanceUID=""), within=10, cancel_after=3)
    assert outcome.cancelled
    assert outcome.status == 0xFE00
    assert 3 <= outcome.pending < 50  # the cancel stopped the stream
    scu.release()


def test_endless_pendings_end_at_the_deadline_with_what_came_kept_within_the_bound(pacs):
    # A small delay lets the SCP's event loop breathe between pendings (its driver runs a handler's
    # zero-delay replies back to back); the stream is still endless and far faster than the deadline.
    pacs.scp.handlers["1.2.840.10008.5.1.4.1.2.2.1"] = _endless(0.002)
    scu = connect(pacs)
    t0 = time.monotonic()
    with pytest.raises(services.Unfinished) as caught:
        services.find(scu, "study-find", query("STUDY", StudyInstanceUID=""), within=1.0, max_responses=10)
    took = time.monotonic() - t0
    assert took < 3.0  # the deadline holds for the whole operation, not per message
    partial = caught.value.partial
    assert partial.status is None
    assert len(partial.responses) == 10 and len(partial.matches) == 10
    assert partial.pending > 10 and partial.dropped == partial.pending - 10
    scu.abort()


def test_move_counts_sub_operations_and_the_listener_receives_the_study(pacs, listener):
    scu = stored(pacs)
    study = VIEW["studies"][0]
    outcome = services.move(scu, "study-move", query("STUDY", StudyInstanceUID=study["uid"]), "DCONF-TEST-MOVE",
                            within=10)
    assert outcome.status == 0
    assert (outcome.completed, outcome.failed, outcome.warning) == (study["instances"], 0, 0)
    assert outcome.pending == study["instances"] - 1  # one pending after each sub-operation but the last
    assert outcome.remaining is None  # the final response carries no Number of Remaining Sub-operations
    arrived = listener.wait_stored(study["instances"], 2.0)
    assert sorted(s.sop_instance_uid for s in arrived) == sorted(study["instance_uids"])
    scu.release()


def test_move_to_an_unknown_destination_is_a801(pacs, listener):
    scu = stored(pacs)
    outcome = services.move(scu, "study-move", query("STUDY", StudyInstanceUID=VIEW["studies"][0]["uid"]),
                            "DCONF-NOWHERE", within=5)
    assert outcome.status == 0xA801
    assert listener.stored == []
    scu.release()


def test_get_serves_the_c_stores_and_keeps_their_bytes(pacs):
    scu = stored(pacs, roles={"mr": (1, 1)})
    study = VIEW["studies"][3]
    outcome = services.get(scu, "study-get", query("STUDY", StudyInstanceUID=study["uid"]), within=10)
    assert outcome.status == 0 and outcome.completed == study["instances"]
    assert sorted(a.sop_instance for a in outcome.arrivals) == sorted(study["instance_uids"])
    first = outcome.arrivals[0]
    ds = dimse.decode_dataset(first.data, first.transfer_syntax)
    assert str(ds.SOPInstanceUID) == first.sop_instance
    scu.release()


def test_get_keeps_at_most_max_arrivals_and_refuses_the_rest(pacs):
    scu = stored(pacs, roles={"mr": (1, 1)})
    study = VIEW["studies"][3]
    outcome = services.get(scu, "study-get", query("STUDY", StudyInstanceUID=study["uid"]), within=10,
                           max_arrivals=1)
    assert len(outcome.arrivals) == 1 and outcome.refused == study["instances"] - 1
    assert outcome.status == 0xB000 and outcome.failed == study["instances"] - 1
    scu.release()


def _commit_info(uids) -> Dataset:
    info = Dataset()
    info.TransactionUID = "1.2.826.0.1.3680043.10.1." + str(time.monotonic_ns())
    items = []
    for uid in uids:
        item = Dataset()
        item.ReferencedSOPClassUID = qr_data.SOP_CLASSES["CT"]
        item.ReferencedSOPInstanceUID = uid
        items.append(item)
    info.ReferencedSOPSequence = items
    return info


def test_commitment_report_on_the_same_association(pacs):
    scu = stored(pacs)
    known = VIEW["studies"][0]["instance_uids"][:2]
    info = _commit_info(known + ["1.2.3.4.404"])
    outcome = services.n_action(scu, "storage-commitment", "1.2.840.10008.1.20.1.1", 1, info, within=5)
    assert outcome.status == 0
    report = services.wait_event_report(scu, within=5)
    assert report.event_type == 2
    assert [str(i.ReferencedSOPInstanceUID) for i in report.dataset.FailedSOPSequence] == ["1.2.3.4.404"]
    assert int(report.dataset.FailedSOPSequence[0].FailureReason) == 0x0112
    assert sorted(str(i.ReferencedSOPInstanceUID) for i in report.dataset.ReferencedSOPSequence) == sorted(known)
    scu.release()


def test_commitment_report_on_a_new_association_reaches_the_listener(listener):
    handle = _pacs(listener, commitment_report_to="DCONF-TEST-MOVE")
    try:
        scu = stored(handle)
        info = _commit_info(VIEW["studies"][0]["instance_uids"])
        assert services.n_action(scu, "storage-commitment", "1.2.840.10008.1.20.1.1", 1, info, within=5).status == 0
        report = listener.wait_report(5.0)
        assert report is not None and report.event_type == 1
        assert str(report.dataset.TransactionUID) == str(info.TransactionUID)
        scu.release()
    finally:
        handle.stop()


def test_wait_event_report_ends_at_its_deadline(pacs):
    scu = connect(pacs)
    t0 = time.monotonic()
    with pytest.raises(services.Unfinished):
        services.wait_event_report(scu, within=0.5)
    assert time.monotonic() - t0 < 2.0
    scu.release()


def test_mpps_n_create_without_uid_then_n_set(pacs):
    scu = connect(pacs)
    outcome = services.n_create(scu, "mpps", Dataset(), within=5)
    assert outcome.status == 0x0120  # missing type 1/2 attributes (PS3.4 F.7.2.1)
    assert "PatientID" in outcome.error_comment
    unknown = services.n_set(scu, "mpps", "1.2.3.4.5.404", Dataset(), within=5)
    assert unknown.status == 0x0112
    scu.release()


def test_an_operation_without_its_context_is_not_negotiated(pacs):
    from dicomconf.scu.client import NotNegotiated

    scu = SCU(Connection.open("127.0.0.1", pacs.port, timeout=5), called_ae="PACS")
    scu.associate(["verification"])
    with pytest.raises(NotNegotiated):
        services.find(scu, "study-find", query("STUDY"), within=1)
    scu.release()


def test_move_cancel_after_ends_with_cancel_and_counts(pacs, listener):
    scu = stored(pacs)
    original = pacs.scp.handlers["1.2.840.10008.5.1.4.1.2.2.2"]

    def slow(request):  # the reference C-MOVE, each reply held 0.2 s: room for the C-CANCEL
        exchange = original(request)
        value = None
        try:
            while True:
                action = exchange.send(value)
                if isinstance(action, Reply):
                    action = Reply(action.status, action.dataset, action.fields, delay=0.2)
                try:
                    value = yield action
                except Cancel:
                    value = None
                    action = exchange.throw(Cancel())
                    yield action
                    return
        except StopIteration:
            return

    pacs.scp.handlers["1.2.840.10008.5.1.4.1.2.2.2"] = slow
    study = VIEW["studies"][0]
    outcome = services.move(scu, "study-move", query("STUDY", StudyInstanceUID=study["uid"]), "DCONF-TEST-MOVE",
                            within=10, cancel_after=1)
    assert outcome.cancelled and outcome.status == 0xFE00
    assert outcome.completed is not None and outcome.completed < study["instances"]
    assert outcome.remaining is not None and outcome.remaining > 0
    scu.release()
