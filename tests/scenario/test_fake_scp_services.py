"""The fake SCP's ``serve: {service: ...}``: the reference SCP's own handlers answer the SCU under test.

Theory of operation
-------------------
Each test starts a :class:`~dicomconf.scenario.fake_scp.FakeSCP` on 127.0.0.1,
port 0, with a script whose ``serve`` step names a service, and plays an SCU
against it: dicomconf's own (:mod:`dicomconf.scu.services`), DCMTK's
``/usr/bin/findscu`` (worklist ``-W``, Study Root ``-S``; skipped with the
reason when DCMTK is missing) and pynetdicom's (MPPS N-CREATE/N-SET, Storage
Commitment N-ACTION with the N-EVENT-REPORT on the same association, a
worklist query through the ``dicomconf_fake_scp`` fixture).  The answers are
compared with the known data set (:mod:`dicomconf.scenario.qr_data`) and with
what the same handlers give when called directly, and every scripted
misbehaviour (a refusal with its Error Comment, a delay, an A-ABORT at once
or after N pendings, response changes, fragmentation) is checked where the
SCU sees it: on the wire.  Every fake SCP is stopped by the test (``with``
or the fixture), every DCMTK process ends on its own timeouts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread

from dicomconf.scenario import qr_data
from dicomconf.scenario.answers import AnswerError
from dicomconf.scenario.fake_scp import FakeSCP
from dicomconf.scenario.fake_services import data_index, parse_destinations
from dicomconf.scenario.loader import SourceError
from dicomconf.scu import services as S
from dicomconf.scu.client import SCU, Aborted
from dicomconf.scu.connection import Closed, Connection
from dicomconf.services.base import Request
from dicomconf.services.qr_find import STUDY_ROOT_FIND, QueryRetrieveFind
from dicomconf.services.worklist import (
    WORKLIST_SOP_CLASS,
    WorklistService,
    WorklistSource,
)
from dicomconf.ul import dimse

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))
from test_workflow_mpps import completion, in_progress  # noqa: E402  (the N-CREATE/N-SET attribute lists)

pytestmark = pytest.mark.network

SET = qr_data.template_view()
STUDY_GET = "StudyRootQueryRetrieveInformationModelGet"
STUDY_MOVE = "StudyRootQueryRetrieveInformationModelMove"
FINDSCU = "/usr/bin/findscu"


def script(serve: str, after: str = "- release: {}") -> str:
    return f"- associate: {{}}\n- serve: {serve}\n{after}\n"


def connect(scp: FakeSCP, contexts: list, roles: dict | None = None, max_pdu_length: int = 16382) -> SCU:
    scu = SCU(Connection.open(scp.host, scp.port, timeout=5), calling_ae="TEST-SCU", called_ae=scp.ae_title,
              max_pdu_length=max_pdu_length)
    scu.associate(contexts, roles=roles, timeout=5)
    return scu


def study_query(**keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def worklist_query(station: str = "") -> Dataset:
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = ""
    ds.AccessionNumber = ""
    step = Dataset()
    step.ScheduledStationAETitle = station
    step.Modality = ""
    step.ScheduledProcedureStepStartDate = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def direct(handler, sop_class: str, identifier: Dataset) -> list[Dataset]:
    """What the handler answers when called directly: the pending identifiers."""
    request = Request(dimse.C_FIND_RQ, 1, sop_class, Dataset(), identifier, called_ae="DICOMCONF")
    return [reply.dataset for reply in handler(request) if reply.status in (0xFF00, 0xFF01)]


def find_rq(scu: SCU, sop_class: str, identifier: Dataset) -> dimse.Message:
    context_id = scu.context_for(sop_class)
    command = Dataset()
    command.AffectedSOPClassUID = sop_class
    command.CommandField = dimse.C_FIND_RQ
    command.MessageID = 7
    command.Priority = 0
    command.CommandDataSetType = dimse.DATA_SET_PRESENT
    return dimse.Message(context_id, command, dimse.encode_dataset(identifier, scu.accepted[context_id][1]))


def responses_until_end(scu: SCU, request: dimse.Message, within: float = 10.0) -> tuple[list[dimse.Message], str]:
    """Every response to ``request`` and how the exchange ended: "final" or "aborted"."""
    scu.send_message(request)
    out: list[dimse.Message] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            msg = scu.receive_message(deadline - time.monotonic())
        except Aborted:
            return out, "aborted"
        out.append(msg)
        if msg.status not in (0xFF00, 0xFF01):
            return out, "final"
    raise AssertionError(f"no end within {within}s: {[m.status for m in out]}")


# ---------------------------------------------------------------- each service answered right


def test_study_root_find_gives_the_handlers_matches_from_the_known_set():
    identifier = study_query(PatientID=SET["patients"][0]["id"], StudyDate="")
    with FakeSCP(script("{service: find}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        outcome = S.find(scu, "StudyRootQueryRetrieveInformationModelFind", identifier, within=10)
        scu.release()
        result = scp.wait(10)
    result.assert_conforms()
    assert outcome.status == 0x0000
    got = [(str(m.StudyInstanceUID), str(m.StudyDate)) for m in outcome.matches]
    assert got == [(s["uid"], s["date"]) for s in SET["studies"] if s["patient"] == 0]
    expected = direct(QueryRetrieveFind(data_index("known")), STUDY_ROOT_FIND, identifier)
    assert [m.to_json_dict() for m in outcome.matches] == [e.to_json_dict() for e in expected]
    assert result.messages[0].name == "C-FIND-RQ" and result.datasets[0].PatientID == SET["patients"][0]["id"]


def test_worklist_find_gives_the_known_worklist_matched_by_station():
    identifier = worklist_query(station="DCONF-MR1")
    with FakeSCP(script("{service: worklist}")) as scp:
        scu = connect(scp, ["worklist"])
        outcome = S.find(scu, "worklist", identifier, within=10)
        scu.release()
        scp.wait(10).assert_conforms()
    assert outcome.status == 0x0000
    accessions = sorted(str(m.AccessionNumber) for m in outcome.matches)
    assert accessions == ["DCONFACC02", "DCONFACC04"]  # the two MR studies' steps, at DCONF-MR1
    served = WorklistService(WorklistSource(items=qr_data.worklist_items())).matches(identifier)
    assert [m.to_json_dict() for m in outcome.matches] == [s.to_json_dict() for s in served]


def test_data_none_answers_from_an_empty_index():
    with FakeSCP(script("{service: find, data: none}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        outcome = S.find(scu, "StudyRootQueryRetrieveInformationModelFind", study_query(PatientID="*"), within=10)
        scu.release()
        scp.wait(10).assert_conforms()
    assert outcome.status == 0x0000 and outcome.matches == []


def test_get_sends_the_study_on_the_same_association_and_counts_it():
    study = SET["studies"][0]
    with FakeSCP(script("{service: get}")) as scp:
        scu = connect(scp, [STUDY_GET, "CTImageStorage"], roles={"CTImageStorage": (1, 1)})
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = study["uid"]
        outcome = S.get(scu, STUDY_GET, ident, within=10)
        scu.release()
        result = scp.wait(10)
    result.assert_conforms()
    assert (outcome.status, outcome.completed, outcome.failed) == (0x0000, study["instances"], 0)
    assert [a.sop_instance for a in outcome.arrivals] == study["instance_uids"]
    for arrival in outcome.arrivals:
        assert arrival.data == qr_data.encoded(qr_data.by_uid(arrival.sop_instance), arrival.transfer_syntax)
    assert [m.name for m in result.messages].count("C-STORE-RSP") == study["instances"]


def test_get_without_the_scp_role_fails_every_sub_operation():
    """No role selection: the C-STOREs cannot be sent (PS3.7 D.3.3.4), so none is performed: A702."""
    study = SET["studies"][3]
    with FakeSCP(script("{service: get}")) as scp:
        scu = connect(scp, [STUDY_GET, "MRImageStorage"])
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = study["uid"]
        outcome = S.get(scu, STUDY_GET, ident, within=10)
        scu.release()
        scp.wait(10).assert_conforms()
    assert (outcome.status, outcome.completed, outcome.failed) == (0xA702, 0, study["instances"])
    assert outcome.arrivals == [] and sorted(outcome.failed_uids) == sorted(study["instance_uids"])


def test_move_stores_to_the_named_destination_with_the_move_originator():
    study = SET["studies"][2]
    with FakeSCP(script(f"{{count: {study['instances']}}}"), ae_title="DEST") as dest:
        serve = f"{{service: move, count: 2, destinations: {{DEST: '127.0.0.1:{dest.port}'}}}}"
        with FakeSCP(script(serve)) as scp:
            scu = connect(scp, [STUDY_MOVE])
            ident = Dataset()
            ident.QueryRetrieveLevel = "STUDY"
            ident.StudyInstanceUID = study["uid"]
            outcome = S.move(scu, STUDY_MOVE, ident, "DEST", within=10)
            unknown = S.move(scu, STUDY_MOVE, ident, "NOWHERE", within=10)
            scu.release()
            scp.wait(10).assert_conforms()
        arrived = dest.wait(10)
    arrived.assert_conforms()
    assert (outcome.status, outcome.completed, outcome.failed) == (0x0000, study["instances"], 0)
    stores = [m for m in arrived.messages if m.name == "C-STORE-RQ"]
    assert sorted(m.affected_sop_instance_uid for m in stores) == sorted(study["instance_uids"])
    assert {str(m.command.MoveOriginatorApplicationEntityTitle).strip() for m in stores} == {"TEST-SCU"}
    assert all(ds.SOPInstanceUID == m.affected_sop_instance_uid for ds, m in zip(arrived.datasets, stores))
    assert unknown.status == 0xA801 and "NOWHERE" in unknown.error_comment  # not among the destinations


def test_move_to_an_unknown_destination_is_a801():
    with FakeSCP(script("{service: move, destinations: {DEST: '127.0.0.1:9'}}")) as scp:
        scu = connect(scp, [STUDY_MOVE])
        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = SET["studies"][0]["uid"]
        outcome = S.move(scu, STUDY_MOVE, ident, "ELSEWHERE", within=10)
        scu.release()
        scp.wait(10).assert_conforms()
    assert outcome.status == 0xA801 and "ELSEWHERE" in outcome.error_comment


def test_mpps_create_then_complete_with_pynetdicom():
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityPerformedProcedureStep

    uid = "1.2.826.0.1.3680043.2.1125.17.5"
    with FakeSCP(script("{service: mpps, count: 3}")) as scp:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(ModalityPerformedProcedureStep)
        assoc = ae.associate(scp.host, scp.port, ae_title=scp.ae_title)
        assert assoc.is_established
        created, _ = assoc.send_n_create(in_progress(), ModalityPerformedProcedureStep, uid)
        completed, _ = assoc.send_n_set(completion(), ModalityPerformedProcedureStep, uid)
        again, _ = assoc.send_n_set(completion("DISCONTINUED"), ModalityPerformedProcedureStep, uid)
        assoc.release()
        scp.wait(10).assert_conforms()
    assert (created.Status, completed.Status) == (0x0000, 0x0000)
    assert again.Status == 0x0110  # no update once COMPLETED (PS3.4 F.7.2.2.3): the real service's answer


def test_commitment_action_and_event_report_on_the_same_association_with_pynetdicom():
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StorageCommitmentPushModel

    reports: list[Dataset] = []

    def on_report(event):
        reports.append(event.event_information)
        return 0x0000, None

    info = Dataset()
    info.TransactionUID = "1.2.826.0.1.3680043.2.1125.17.6"
    items = []
    for uid, sop_class in [(i["uid"], i["sop_class"]) for i in SET["instances"][:2]] + [("1.2.3.99", "1.2.3")]:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = uid
        items.append(item)
    info.ReferencedSOPSequence = items
    with FakeSCP(script("{service: commitment}")) as scp:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(StorageCommitmentPushModel)
        assoc = ae.associate(scp.host, scp.port, ae_title=scp.ae_title,
                             evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
        assert assoc.is_established
        status, _ = assoc.send_n_action(info, 1, StorageCommitmentPushModel, "1.2.840.10008.1.20.1.1")
        deadline = time.monotonic() + 10
        while not reports and time.monotonic() < deadline:
            time.sleep(0.05)
        assoc.release()
        result = scp.wait(10)
    result.assert_conforms()
    assert status.Status == 0x0000 and len(reports) == 1
    assert [str(i.ReferencedSOPInstanceUID) for i in reports[0].ReferencedSOPSequence] == [
        i["uid"] for i in SET["instances"][:2]]
    assert [(str(i.ReferencedSOPInstanceUID), i.FailureReason) for i in reports[0].FailedSOPSequence] == [
        ("1.2.3.99", 0x0112)]
    assert "N-EVENT-REPORT-RSP" in [m.name for m in result.messages]


# ---------------------------------------------------------------- DCMTK findscu


def _findscu(scp: FakeSCP, out: Path, *args: str) -> subprocess.CompletedProcess:
    out.mkdir()
    return subprocess.run([FINDSCU, "-aec", scp.ae_title, "-aet", "FINDSCU", "-to", "5", "-ta", "5", "-td", "5",
                           "-X", "-od", str(out), *args, scp.host, str(scp.port)],
                          capture_output=True, text=True, timeout=60, env={"TCP_NODELAY": "1", "PATH": "/usr/bin"},
                          check=False)


@pytest.mark.skipif(not Path(FINDSCU).exists(), reason="DCMTK findscu (Debian package dcmtk) is not installed")
def test_dcmtk_findscu_worklist(tmp_path: Path):
    with FakeSCP(script("{service: worklist}")) as scp:
        proc = _findscu(scp, tmp_path / "rsp", "-W", "-k", "PatientID", "-k", "AccessionNumber",
                        "-k", "ScheduledProcedureStepSequence[0].Modality=CT",
                        "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle")
        result = scp.wait(20)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result.assert_conforms()
    found = sorted((str(ds.AccessionNumber), str(ds.ScheduledProcedureStepSequence[0].ScheduledStationAETitle))
                   for ds in map(dcmread, sorted((tmp_path / "rsp").glob("rsp*.dcm"))))
    assert found == [("DCONFACC01", "DCONF-CT1"), ("DCONFACC03", "DCONF-CT2")]


@pytest.mark.skipif(not Path(FINDSCU).exists(), reason="DCMTK findscu (Debian package dcmtk) is not installed")
def test_dcmtk_findscu_study_root(tmp_path: Path):
    with FakeSCP(script("{service: find}")) as scp:
        proc = _findscu(scp, tmp_path / "rsp", "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=DCONF-QR-*",
                        "-k", "StudyInstanceUID", "-k", "AccessionNumber")
        result = scp.wait(20)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result.assert_conforms()
    found = sorted(str(ds.AccessionNumber) for ds in map(dcmread, sorted((tmp_path / "rsp").glob("rsp*.dcm"))))
    assert found == sorted(s["accession"] for s in SET["studies"])


# ---------------------------------------------------------------- misbehaviour, seen on the wire


def test_status_with_error_comment_refuses_without_matches():
    with FakeSCP(script("{service: find, status: 0xA700, error_comment: index on fire}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        responses, end = responses_until_end(scu, find_rq(scu, STUDY_ROOT_FIND, study_query(PatientID="*")))
        scu.release()
        scp.wait(10).assert_conforms()
    assert end == "final" and len(responses) == 1
    assert responses[0].status == 0xA700 and responses[0].command.ErrorComment == "index on fire"


def test_delay_holds_each_response():
    with FakeSCP(script("{service: find, delay: 300ms}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        started = time.monotonic()
        responses, end = responses_until_end(scu, find_rq(scu, STUDY_ROOT_FIND, study_query(PatientID="*")))
        took = time.monotonic() - started
        scu.release()
        scp.wait(10).assert_conforms()
    assert end == "final" and len(responses) == len(SET["studies"]) + 1
    assert took >= 0.3 * len(responses) - 0.05, took


def test_abort_replaces_the_first_response():
    with FakeSCP(script("{service: worklist, abort: {source: 2, reason: 0}}", "- expect: {closed: true}")) as scp:
        scu = connect(scp, ["worklist"])
        responses, end = responses_until_end(scu, find_rq(scu, WORKLIST_SOP_CLASS, worklist_query()))
        scu.connection.close()
        scp.wait(10).assert_conforms()
    assert (end, responses) == ("aborted", [])
    assert scu.last_received.pdu.source == 2


def test_abort_after_sends_that_many_pendings_then_an_abort():
    with FakeSCP(script("{service: find, abort_after: 2}", "- expect: {closed: true}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        responses, end = responses_until_end(scu, find_rq(scu, STUDY_ROOT_FIND, study_query(PatientID="*")))
        scu.connection.close()
        scp.wait(10).assert_conforms()
    assert end == "aborted" and [r.status for r in responses] == [0xFF00, 0xFF00]


def test_response_changes_and_fragmenting_apply_to_every_response():
    with FakeSCP(script("{service: find, response: {ErrorComment: changed}, max_pdu_length: 64}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        before = scu.connection.pdus_received
        responses, end = responses_until_end(scu, find_rq(scu, STUDY_ROOT_FIND, study_query(PatientID="*")))
        pdus = scu.connection.pdus_received - before
        scu.release()
        scp.wait(10)
    assert end == "final" and len(responses) == len(SET["studies"]) + 1
    assert all(r.command.ErrorComment == "changed" for r in responses)
    assert pdus > 2 * len(responses)  # each command set alone is longer than 64 bytes: several PDUs each


def test_a_cancel_between_pendings_ends_with_fe00():
    with FakeSCP(script("{service: find, delay: 200ms, cancel: true}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        outcome = S.find(scu, "StudyRootQueryRetrieveInformationModelFind", study_query(PatientID="*"),
                         within=10, cancel_after=1)
        scu.release()
        scp.wait(10).assert_conforms()
    assert outcome.status == 0xFE00 and len(outcome.matches) < len(SET["studies"])


def test_cancel_required_fails_an_scu_that_does_not_cancel():
    with FakeSCP(script("{service: find, cancel: true}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        with pytest.raises(Closed):  # the pendings ran out without a C-CANCEL-RQ: the fake SCP fails the run
            S.find(scu, "StudyRootQueryRetrieveInformationModelFind", study_query(PatientID="*"), within=5)
        result = scp.wait(10)
    assert not result.passed and "did not cancel its C-FIND-RQ" in str(result.failure)
    assert f"during the {len(SET['studies'])} pending response(s)" in str(result.failure)


def test_a_request_of_another_service_fails_the_step():
    with FakeSCP(script("{service: worklist}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        with pytest.raises(Closed):  # the fake SCP fails the run and closes
            S.find(scu, "StudyRootQueryRetrieveInformationModelFind", study_query(PatientID="*"), within=5)
        result = scp.wait(15)
    assert not result.passed and "not a request of the worklist service" in str(result.failure)


# ---------------------------------------------------------------- script errors


def test_pending_with_service_is_refused_with_the_place():
    with FakeSCP(script("{service: find, pending: [{PatientID: X}]}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        with pytest.raises(Closed):  # the script error ends the run
            S.find(scu, "StudyRootQueryRetrieveInformationModelFind", study_query(PatientID="*"), within=3)
        with pytest.raises(SourceError) as err:
            scp.wait(15)
    assert "<script>:2" in str(err.value) and "pending cannot go with service" in str(err.value)


def test_unknown_service_and_bad_destination_are_named():
    with pytest.raises(SourceError) as err:
        FakeSCP(script("{service: storage}"))
    assert "service" in str(err.value) and "find" in str(err.value)
    assert parse_destinations({"A": "[::1]:104", "B": "h:1"}) == {"A": ("::1", 104), "B": ("h", 1)}
    with pytest.raises(AnswerError) as bad:
        parse_destinations({"A": "nowhere"})
    assert bad.value.key == "destinations.A"


# ---------------------------------------------------------------- the fixture, as a modality team writes it


def test_fixture_worklist_query_from_a_modality(dicomconf_fake_scp):
    from pynetdicom import AE
    from pynetdicom.sop_class import ModalityWorklistInformationFind

    scp = dicomconf_fake_scp("""
        - associate: {request: {calling_ae_title: CT01}}
        - serve: {request: {command_name: C-FIND-RQ}, service: worklist}
        - release: {}
    """)
    ae = AE(ae_title="CT01")
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate(scp.host, scp.port, ae_title=scp.ae_title)
    assert assoc.is_established
    patients = [str(ident.PatientID) for status, ident in assoc.send_c_find(
        worklist_query(station="DCONF-CT1"), ModalityWorklistInformationFind) if status.Status == 0xFF00]
    assoc.release()
    scp.wait(10).assert_conforms()
    assert patients == [SET["patients"][0]["id"]]


def test_a_cancel_ends_the_scripted_delay_and_is_answered_at_once():
    """The C-CANCEL-RQ that comes while a reply is held by ``delay`` ends the wait: FE00 follows the
    cancel without another delay (PS3.4 C.4.1.3.1: the SCP interrupts the matching)."""
    with FakeSCP(script("{service: find, delay: 1500ms, cancel: true}")) as scp:
        scu = connect(scp, ["StudyRootQueryRetrieveInformationModelFind"])
        started = time.monotonic()
        outcome = S.find(scu, "StudyRootQueryRetrieveInformationModelFind", study_query(PatientID="*"),
                         within=10, cancel_after=1)
        took = time.monotonic() - started
        scu.release()
        scp.wait(10).assert_conforms()
    assert outcome.status == 0xFE00 and len(outcome.matches) == 1
    assert 1.5 <= took < 2.5, took  # the first pending after one delay; the cancel's answer without another
