"""The reference SCP as a fake PACS/RIS, against real SCUs: pynetdicom and DCMTK (PS3.4 C, F.7, J, K).

One SCP per test (memory storage, its embedded index), on a free loopback port;
objects are stored with C-STORE first, then queried, moved, fetched, committed.
A move destination is a pynetdicom storage SCP on another free port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

sys.path.insert(0, os.path.dirname(__file__))
from qr_kit import instance  # noqa: E402

from dicomconf.scp.config import SCPConfig  # noqa: E402
from dicomconf.scp.runtime import run_in_thread  # noqa: E402

pynetdicom = pytest.importorskip("pynetdicom")
from pynetdicom import AE, build_role, evt  # noqa: E402
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation  # noqa: E402

pytestmark = pytest.mark.network

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
WORKLIST = "1.2.840.10008.5.1.4.31"
MPPS = "1.2.840.10008.3.1.2.3.3"
COMMITMENT = "1.2.840.10008.1.20.1"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"


def _objects() -> list[Dataset]:
    """Two patients, three studies, four series, six instances, with chosen names and dates."""
    out = [
        instance(1, patient="P1", name="Doe^Jane", study="1.2.3.1", series="1.2.3.1.1", date="20250102"),
        instance(2, patient="P1", name="Doe^Jane", study="1.2.3.1", series="1.2.3.1.1", date="20250102"),
        instance(1, patient="P1", name="Doe^Jane", study="1.2.3.1", series="1.2.3.1.2", modality="MR", sop_class=MR,
                 date="20250102"),
        instance(1, patient="P1", name="Doe^Jane", study="1.2.3.2", series="1.2.3.2.1", date="20250301"),
        instance(1, patient="P2", name="Roe^Rick", study="1.2.3.3", series="1.2.3.3.1", date="20240615"),
        instance(2, patient="P2", name="Roe^Rick", study="1.2.3.3", series="1.2.3.3.1", date="20240615"),
    ]
    for ds in out:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return out


def _ae(*contexts, title="QRSCU") -> AE:
    ae = AE(ae_title=title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 15
    for uid in contexts:
        ae.add_requested_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    return ae


class _Destination:
    """A pynetdicom storage SCP on a free loopback port: the far end of a C-MOVE (and a commitment report)."""

    def __init__(self, title="DEST"):
        self.received: list[Dataset] = []
        self.reports: list = []
        self.ae = AE(ae_title=title)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = 15
        for uid in (CT, MR):
            self.ae.add_supported_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        self.ae.add_supported_context(COMMITMENT, [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                                      scu_role=True, scp_role=True)
        handlers = [(evt.EVT_C_STORE, self._store), (evt.EVT_N_EVENT_REPORT, self._report)]
        self.server = self.ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = self.server.socket.getsockname()[1]

    def _store(self, event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return 0x0000

    def _report(self, event):
        self.reports.append((event.event_type, event.event_information))
        return 0x0000, None

    def close(self):
        self.server.shutdown()


@pytest.fixture
def destination():
    dest = _Destination()
    yield dest
    dest.close()


@pytest.fixture
def pacs(destination, tmp_path):
    worklist = tmp_path / "worklist.yaml"
    worklist.write_text(
        "- PatientName: Doe^Jane\n  PatientID: P1\n  AccessionNumber: ACC1\n"
        "  StudyInstanceUID: 1.2.3.9\n  ScheduledProcedureStepSequence:\n"
        "    - Modality: CT\n      ScheduledStationAETitle: CT1\n      ScheduledProcedureStepStartDate: '20261207'\n"
        "      ScheduledProcedureStepID: SPS1\n"
        "- PatientName: Roe^Rick\n  PatientID: P2\n  AccessionNumber: ACC2\n"
        "  StudyInstanceUID: 1.2.3.10\n  ScheduledProcedureStepSequence:\n"
        "    - Modality: MR\n      ScheduledStationAETitle: MR1\n      ScheduledProcedureStepStartDate: '20261208'\n"
        "      ScheduledProcedureStepID: SPS2\n")
    config = SCPConfig(port=0, artim_timeout=5.0, idle_timeout=30.0, move_destinations={"DEST": ("127.0.0.1", destination.port)},
                       worklist=str(worklist))
    handle = run_in_thread(config)
    objects = _objects()
    assoc = _ae(CT, MR).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    for ds in objects:
        assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    yield handle, objects
    handle.stop()


def _query(level, **keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def test_services_are_offered_by_default(pacs):
    handle, _ = pacs
    assert set(handle.scp.services.services) == {"find", "move", "get", "commitment", "mpps", "worklist"}


def test_pynetdicom_c_find_study_level_with_wild_card_and_date_range(pacs):
    handle, _ = pacs
    assoc = _ae(STUDY_FIND).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    found = [(str(ds.StudyInstanceUID), str(ds.PatientName), ds.NumberOfStudyRelatedInstances)
             for status, ds in assoc.send_c_find(_query("STUDY", PatientName="DOE*", StudyInstanceUID="",
                                                       NumberOfStudyRelatedInstances=None), STUDY_FIND)
             if status and status.Status in (0xFF00, 0xFF01)]
    ranged = [str(ds.StudyInstanceUID) for status, ds in
              assoc.send_c_find(_query("STUDY", StudyDate="20250101-20251231", StudyInstanceUID=""), STUDY_FIND)
              if status and status.Status == 0xFF00]
    assoc.release()
    assert found == [("1.2.3.1", "Doe^Jane", 3), ("1.2.3.2", "Doe^Jane", 1)]  # PN matched case-insensitively
    assert ranged == ["1.2.3.1", "1.2.3.2"]


def test_pynetdicom_c_find_hierarchical_error_and_patient_root(pacs):
    handle, _ = pacs
    assoc = _ae(STUDY_FIND, PATIENT_FIND).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    bad = [status.Status for status, _ in assoc.send_c_find(_query("SERIES", SeriesInstanceUID=""), STUDY_FIND)]
    patients = [str(ds.PatientID) for status, ds in
                assoc.send_c_find(_query("PATIENT", PatientID="", PatientName="R*"), PATIENT_FIND)
                if status and status.Status == 0xFF00]
    assoc.release()
    assert bad == [0xC000]  # the study's unique key is missing in a hierarchical query (PS3.4 C.4.1.2.1)
    assert patients == ["P2"]


def test_relational_queries_only_when_negotiated(pacs):
    handle, _ = pacs
    results = {}
    for relational in (0, 1):
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = STUDY_FIND
        item.service_class_application_information = bytes((relational,))
        assoc = _ae(STUDY_FIND).associate("127.0.0.1", handle.port, ae_title="DICOMCONF", ext_neg=[item])
        statuses = [status.Status for status, _ in
                    assoc.send_c_find(_query("SERIES", SeriesInstanceUID="", Modality="MR"), STUDY_FIND)]
        assoc.release()
        results[relational] = statuses
    assert results[0] == [0xC000]  # hierarchical: refused without the study's key
    assert results[1] == [0xFF00, 0x0000]  # relational: the one MR series


def test_pynetdicom_c_move_to_a_configured_destination(pacs, destination):
    handle, objects = pacs
    assoc = _ae(STUDY_MOVE).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    replies = [status for status, _ in assoc.send_c_move(_query("STUDY", StudyInstanceUID="1.2.3.1"), "DEST", STUDY_MOVE)]
    unknown = [status.Status for status, _ in
               assoc.send_c_move(_query("STUDY", StudyInstanceUID="1.2.3.1"), "NOWHERE", STUDY_MOVE)]
    assoc.release()
    assert replies[-1].Status == 0x0000 and replies[-1].NumberOfCompletedSuboperations == 3
    assert sorted(str(ds.SOPInstanceUID) for ds in destination.received) == \
        sorted(str(ds.SOPInstanceUID) for ds in objects if ds.StudyInstanceUID == "1.2.3.1")
    sent = {str(ds.SOPInstanceUID): ds for ds in objects}
    for ds in destination.received:  # the objects arrive as stored (bytes compared element by element)
        assert ds == sent[str(ds.SOPInstanceUID)]
    assert unknown == [0xA801]


def test_pynetdicom_c_get_with_role_selection(pacs):
    handle, _ = pacs
    received = []

    def on_store(event):
        received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = _ae(STUDY_GET, CT)
    assoc = ae.associate("127.0.0.1", handle.port, ae_title="DICOMCONF", ext_neg=[build_role(CT, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    replies = [status for status, _ in assoc.send_c_get(_query("SERIES", StudyInstanceUID="1.2.3.3",
                                                               SeriesInstanceUID="1.2.3.3.1"), STUDY_GET)]
    assoc.release()
    assert received == ["1.2.3.3.1.1", "1.2.3.3.1.2"]
    assert replies[-1].Status == 0x0000 and replies[-1].NumberOfCompletedSuboperations == 2


def test_c_get_without_role_selection_fails_every_sub_operation(pacs):
    handle, _ = pacs
    assoc = _ae(STUDY_GET, CT).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    replies = [status for status, _ in assoc.send_c_get(_query("SERIES", StudyInstanceUID="1.2.3.3",
                                                               SeriesInstanceUID="1.2.3.3.1"), STUDY_GET)]
    assoc.release()
    assert replies[-1].Status == 0xA702 and replies[-1].NumberOfFailedSuboperations == 2


def test_storage_commitment_same_association(pacs):
    handle, objects = pacs
    reports = []

    def on_report(event):
        reports.append((event.event_type, event.event_information))
        return 0x0000, None

    ae = _ae(COMMITMENT)
    assoc = ae.associate("127.0.0.1", handle.port, ae_title="DICOMCONF",
                         ext_neg=[build_role(COMMITMENT, scu_role=True, scp_role=True)],
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    action = Dataset()
    action.TransactionUID = "1.2.3.99"
    refs = []
    for sop_class, uid in [(CT, str(objects[0].SOPInstanceUID)), (CT, "1.2.3.404")]:
        item = Dataset()
        item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, uid
        refs.append(item)
    action.ReferencedSOPSequence = refs
    status, _ = assoc.send_n_action(action, 1, COMMITMENT, COMMITMENT_INSTANCE)
    deadline = time.monotonic() + 10
    while not reports and time.monotonic() < deadline:
        time.sleep(0.05)
    assoc.release()
    assert status.Status == 0x0000
    (event_type, info), = reports
    assert event_type == 2  # failures exist (PS3.4 J.3.3.1)
    assert [str(i.ReferencedSOPInstanceUID) for i in info.ReferencedSOPSequence] == [str(objects[0].SOPInstanceUID)]
    assert [(str(i.ReferencedSOPInstanceUID), i.FailureReason) for i in info.FailedSOPSequence] == [("1.2.3.404", 0x0112)]


def test_mpps_in_progress_then_completed_then_no_more(pacs):
    handle, _ = pacs
    assoc = _ae(MPPS).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    create = Dataset()
    create.PerformedProcedureStepStatus = "IN PROGRESS"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferencedPatientSequence",
                    "PerformedProcedureStepDescription", "PerformedProcedureTypeDescription",
                    "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime", "ProcedureCodeSequence",
                    "PerformedProtocolCodeSequence", "PerformedSeriesSequence", "StudyID", "PerformedStationName",
                    "PerformedLocation"):
        setattr(create, keyword, [] if keyword.endswith("Sequence") else "")
    create.PatientName, create.PatientID = "Doe^Jane", "P1"
    create.PerformedProcedureStepID = "PPS1"
    create.PerformedStationAETitle = "CT1"
    create.PerformedProcedureStepStartDate, create.PerformedProcedureStepStartTime = "20261207", "090000"
    create.Modality = "CT"
    sps = Dataset()
    for keyword in ("StudyInstanceUID", "AccessionNumber", "RequestedProcedureID", "ScheduledProcedureStepID",
                    "ScheduledProcedureStepDescription", "RequestedProcedureDescription",
                    "ReferencedStudySequence", "ScheduledProtocolCodeSequence"):
        setattr(sps, keyword, [] if keyword.endswith("Sequence") else "")
    sps.StudyInstanceUID = "1.2.3.9"
    create.ScheduledStepAttributesSequence = [sps]
    status, created = assoc.send_n_create(create, MPPS, "1.2.3.500")
    final = Dataset()
    final.PerformedProcedureStepStatus = "COMPLETED"
    final.PerformedProcedureStepEndDate, final.PerformedProcedureStepEndTime = "20261207", "093000"
    series = Dataset()
    series.PerformingPhysicianName = ""
    series.ProtocolName = "HEAD"
    series.OperatorsName = ""
    series.SeriesInstanceUID = "1.2.3.9.1"
    series.SeriesDescription = ""
    series.RetrieveAETitle = ""
    series.ReferencedImageSequence = []
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    final.PerformedSeriesSequence = [series]
    done, _ = assoc.send_n_set(final, MPPS, "1.2.3.500")
    again, _ = assoc.send_n_set(final, MPPS, "1.2.3.500")
    assoc.release()
    assert status.Status == 0x0000, status
    assert done.Status == 0x0000, done
    assert again.Status == 0x0110  # a final state may no longer be updated (PS3.4 F.7.2.2.3)
    assert handle.scp.services.mpps.status_of("1.2.3.500") == "COMPLETED"


def test_worklist_query_by_station_and_date(pacs):
    handle, _ = pacs
    query = Dataset()
    query.PatientName = ""
    query.AccessionNumber = ""
    item = Dataset()
    item.ScheduledStationAETitle = "CT1"
    item.ScheduledProcedureStepStartDate = "20261207"
    item.Modality = ""
    query.ScheduledProcedureStepSequence = [item]
    assoc = _ae(WORKLIST).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    found = [(str(ds.PatientName), str(ds.AccessionNumber), str(ds.ScheduledProcedureStepSequence[0].Modality))
             for status, ds in assoc.send_c_find(query, WORKLIST) if status and status.Status == 0xFF00]
    assoc.release()
    assert found == [("Doe^Jane", "ACC1", "CT")]


# ---------------------------------------------------------------- DCMTK SCUs

# DCMTK's, by path: pynetdicom installs apps of the same names on PATH
DCMTK = {name: f"/usr/bin/{name}" for name in ("findscu", "movescu", "getscu")}
needs_dcmtk = pytest.mark.skipif(not all(os.access(p, os.X_OK) for p in DCMTK.values()),
                                 reason="DCMTK findscu/movescu/getscu not installed (apt-get install dcmtk)")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_dcmtk
def test_dcmtk_findscu(pacs, tmp_path):
    handle, _ = pacs
    result = subprocess.run([DCMTK["findscu"], "-S", "-aec", "DICOMCONF", "-aet", "FINDSCU", "-k", "QueryRetrieveLevel=STUDY",
                             "-k", "PatientName=Roe*", "-k", "StudyInstanceUID", "-k", "StudyDate",
                             "-X", "-od", str(tmp_path), "127.0.0.1", str(handle.port)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answers = [dcmread(str(p)) for p in sorted(tmp_path.glob("rsp*.dcm"))]
    assert [(str(a.StudyInstanceUID), str(a.StudyDate)) for a in answers] == [("1.2.3.3", "20240615")]


@needs_dcmtk
def test_dcmtk_movescu_to_itself(tmp_path, destination):
    """movescu names itself as the destination (the harness's case: it receives the sub-operations)."""
    port = _free_port()
    config = SCPConfig(port=0, artim_timeout=5.0, move_destinations={"MOVESCU": ("127.0.0.1", port)})
    handle = run_in_thread(config)
    try:
        assoc = _ae(CT, MR).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
        objects = _objects()
        for ds in objects:
            assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        out = tmp_path / "moved"
        out.mkdir()
        result = subprocess.run([DCMTK["movescu"], "-S", "-aec", "DICOMCONF", "-aet", "MOVESCU", "-aem", "MOVESCU",
                                 "+P", str(port), "-od", str(out), "-k", "QueryRetrieveLevel=STUDY",
                                 "-k", "StudyInstanceUID=1.2.3.3", "127.0.0.1", str(handle.port)],
                                capture_output=True, text=True, timeout=60)
    finally:
        handle.stop()
    assert result.returncode == 0, result.stderr
    moved = sorted(str(dcmread(str(p)).SOPInstanceUID) for p in out.iterdir())
    assert moved == ["1.2.3.3.1.1", "1.2.3.3.1.2"]


@needs_dcmtk
def test_dcmtk_getscu(pacs, tmp_path):
    handle, _ = pacs
    out = tmp_path / "got"
    out.mkdir()
    result = subprocess.run([DCMTK["getscu"], "-S", "-aec", "DICOMCONF", "-aet", "GETSCU", "-od", str(out),
                             "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3.2",
                             "127.0.0.1", str(handle.port)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [str(dcmread(str(p)).SOPInstanceUID) for p in out.iterdir()] == ["1.2.3.2.1.1"]
