"""IHE Scheduled Workflow, the acquisition modality's DICOM side, through the service handlers.

Worklist query (PS3.4 K.6) → MPPS N-CREATE IN PROGRESS (F.7.2.1) → C-STOREs (here: entries in the
dict the commitment lookup reads) → MPPS N-SET COMPLETED (F.7.2.2) → Storage Commitment (J.3).
"""

from __future__ import annotations

from pydicom import Dataset

from dicomconf.services import commitment as sc
from dicomconf.services import mpps
from dicomconf.services import worklist as wl
from dicomconf.services.base import EventReport, Reply, Request
from dicomconf.ul.dimse import C_FIND_RQ, N_ACTION_RQ, N_CREATE_RQ, N_SET_RQ

CT = "1.2.840.10008.5.1.4.1.1.2"

WORKLIST = """\
- PatientName: Doe^Jane
  PatientID: P1
  PatientBirthDate: 19700101
  PatientSex: F
  AccessionNumber: ACC1
  RequestedProcedureID: RP1
  RequestedProcedureDescription: CT head
  StudyInstanceUID: 1.2.826.0.1.3680043.2.1125.5.1
  ScheduledProcedureStepSequence:
    - Modality: CT
      ScheduledStationAETitle: CT1
      ScheduledProcedureStepStartDate: 20261207
      ScheduledProcedureStepID: SPS1
      ScheduledProcedureStepDescription: Head without contrast
- PatientName: Roe^Richard
  PatientID: P2
  AccessionNumber: ACC2
  StudyInstanceUID: 1.2.826.0.1.3680043.2.1125.5.2
  ScheduledProcedureStepSequence:
    - Modality: MR
      ScheduledStationAETitle: MR1
      ScheduledProcedureStepStartDate: 20261207
      ScheduledProcedureStepID: SPS2
"""


def only(actions):
    actions = list(actions)
    assert len(actions) == 1 and isinstance(actions[0], Reply)
    return actions[0]


def test_scheduled_workflow(tmp_path):
    path = tmp_path / "worklist.yaml"
    path.write_text(WORKLIST)
    worklist = wl.WorklistService(wl.WorklistSource(path))
    performed = mpps.MPPSService()
    archive: dict[str, str] = {}
    commit = sc.CommitmentService(archive.get)

    # 1. The modality CT1 asks for today's work.
    q = Dataset()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
                    "RequestedProcedureID", "RequestedProcedureDescription", "StudyInstanceUID"):
        setattr(q, keyword, "")
    step_keys = Dataset()
    step_keys.ScheduledStationAETitle = "CT1"
    step_keys.ScheduledProcedureStepStartDate = "20261207"
    step_keys.Modality = "CT"
    step_keys.ScheduledProcedureStepID = ""
    step_keys.ScheduledProcedureStepDescription = ""
    q.ScheduledProcedureStepSequence = [step_keys]
    replies = list(worklist.handle(Request(C_FIND_RQ, 1, wl.WORKLIST_SOP_CLASS, Dataset(), q)))
    assert [r.status for r in replies] == [0xFF00, 0x0000]
    item = replies[0].dataset
    assert item.PatientID == "P1"
    sps = item.ScheduledProcedureStepSequence[0]

    # 2. It starts the step: MPPS N-CREATE, IN PROGRESS, built from the worklist item.
    create = Dataset()
    scheduled = Dataset()
    scheduled.StudyInstanceUID = item.StudyInstanceUID
    scheduled.ReferencedStudySequence = []
    scheduled.AccessionNumber = item.AccessionNumber
    scheduled.RequestedProcedureID = item.RequestedProcedureID
    scheduled.RequestedProcedureDescription = item.RequestedProcedureDescription
    scheduled.ScheduledProcedureStepID = sps.ScheduledProcedureStepID
    scheduled.ScheduledProcedureStepDescription = sps.ScheduledProcedureStepDescription
    scheduled.ScheduledProtocolCodeSequence = []
    create.ScheduledStepAttributesSequence = [scheduled]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        setattr(create, keyword, item.get(keyword))
    create.ReferencedPatientSequence = []
    create.PerformedStationAETitle = "CT1"
    create.PerformedStationName = ""
    create.PerformedLocation = ""
    create.PerformedProcedureStepStartDate = "20261207"
    create.PerformedProcedureStepStartTime = "091500"
    create.PerformedProcedureStepStatus = "IN PROGRESS"
    create.PerformedProcedureStepID = "PPS-1"
    create.PerformedProcedureStepDescription = ""
    create.PerformedProcedureTypeDescription = ""
    create.ProcedureCodeSequence = []
    create.PerformedProcedureStepEndDate = ""
    create.PerformedProcedureStepEndTime = ""
    create.Modality = "CT"
    create.StudyID = ""
    create.PerformedProtocolCodeSequence = []
    create.PerformedSeriesSequence = []
    reply = only(performed.handle(Request(N_CREATE_RQ, 2, mpps.MPPS_SOP_CLASS, Dataset(), create, None)))
    assert reply.status == 0
    pps_uid = reply.fields["AffectedSOPInstanceUID"]
    assert performed.status_of(pps_uid) == "IN PROGRESS"

    # 3. It acquires and stores three images.
    images = [f"1.2.826.0.1.3680043.2.1125.5.1.1.{n}" for n in range(3)]
    for uid in images:
        archive[uid] = CT

    # 4. It completes the step, naming the series and its images.
    series = Dataset()
    series.PerformingPhysicianName = ""
    series.ProtocolName = "Head"
    series.OperatorsName = ""
    series.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.5.1.1"
    series.SeriesDescription = ""
    series.RetrieveAETitle = ""
    refs = []
    for uid in images:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT
        ref.ReferencedSOPInstanceUID = uid
        refs.append(ref)
    series.ReferencedImageSequence = refs
    series.ReferencedNonImageCompositeSOPInstanceSequence = []
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    done.PerformedProcedureStepEndDate = "20261207"
    done.PerformedProcedureStepEndTime = "093000"
    done.PerformedSeriesSequence = [series]
    reply = only(performed.handle(Request(N_SET_RQ, 3, mpps.MPPS_SOP_CLASS, Dataset(), done, pps_uid)))
    assert reply.status == 0
    assert performed.status_of(pps_uid) == "COMPLETED"

    # 5. It asks for commitment of what it stored.
    command = Dataset()
    command.ActionTypeID = 1
    info = Dataset()
    info.TransactionUID = "1.2.826.0.1.3680043.2.1125.5.9"
    info.ReferencedSOPSequence = [ref for ref in refs]
    exchange = commit.handle(Request(N_ACTION_RQ, 4, sc.COMMITMENT_SOP_CLASS, command, info,
                                     sc.COMMITMENT_SOP_INSTANCE))
    assert next(exchange).status == 0
    event = exchange.send(None)
    assert isinstance(event, EventReport) and event.event_type_id == 1
    assert [i.ReferencedSOPInstanceUID for i in event.dataset.ReferencedSOPSequence] == images
    try:
        exchange.send(0)
    except StopIteration:
        pass
    assert commit.reports == [(info.TransactionUID, 1, 0)]

    # 6. The step is closed: a late correction is refused as PS3.4 F.7.2.2.3 says.
    late = Dataset()
    late.PerformedProcedureStepDescription = "late"
    reply = only(performed.handle(Request(N_SET_RQ, 5, mpps.MPPS_SOP_CLASS, Dataset(), late, pps_uid)))
    assert (reply.status, reply.fields["ErrorID"]) == (0x0110, 0xA710)
