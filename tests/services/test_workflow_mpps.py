"""Modality Performed Procedure Step service: N-CREATE / N-SET rules and statuses (PS3.4 F.7, PS3.7 10.1)."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.datadict import tag_for_keyword

from dicomconf.services import mpps
from dicomconf.services.base import Misbehaviour, Reply, Request
from dicomconf.ul.dimse import N_ACTION_RQ, N_CREATE_RQ, N_SET_RQ

CT = "1.2.840.10008.5.1.4.1.1.2"


def one_reply(service: mpps.MPPSService, request: Request) -> Reply:
    actions = list(service.handle(request))
    assert len(actions) == 1 and isinstance(actions[0], Reply)
    return actions[0]


def create_rq(ds: Dataset | None, uid: str | None = "1.2.826.0.1.3680043.2.1125.9.1") -> Request:
    return Request(N_CREATE_RQ, 1, mpps.MPPS_SOP_CLASS, Dataset(), ds, uid)


def set_rq(ds: Dataset, uid: str = "1.2.826.0.1.3680043.2.1125.9.1") -> Request:
    return Request(N_SET_RQ, 2, mpps.MPPS_SOP_CLASS, Dataset(), ds, uid)


def in_progress() -> Dataset:
    """An N-CREATE attribute list meeting Table F.7.2-1."""
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = "1.2.826.0.1.3680043.2.1125.9.2"
    step.ReferencedStudySequence = []
    step.AccessionNumber = "ACC1"
    step.RequestedProcedureID = "RP1"
    step.RequestedProcedureDescription = ""
    step.ScheduledProcedureStepID = "SPS1"
    step.ScheduledProcedureStepDescription = ""
    step.ScheduledProtocolCodeSequence = []
    ds.ScheduledStepAttributesSequence = [step]
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P1"
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.ReferencedPatientSequence = []
    ds.PerformedStationAETitle = "CT1"
    ds.PerformedStationName = ""
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = "20261207"
    ds.PerformedProcedureStepStartTime = "101500"
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepID = "PPS1"
    ds.PerformedProcedureStepDescription = ""
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = "CT"
    ds.StudyID = ""
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    return ds


def series(protocol: str | None = "Head") -> Dataset:
    item = Dataset()
    item.PerformingPhysicianName = ""
    if protocol is not None:
        item.ProtocolName = protocol
    item.OperatorsName = ""
    item.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1125.9.3"
    item.SeriesDescription = ""
    item.RetrieveAETitle = ""
    image = Dataset()
    image.ReferencedSOPClassUID = CT
    image.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.9.4"
    item.ReferencedImageSequence = [image]
    item.ReferencedNonImageCompositeSOPInstanceSequence = []
    return item


def completion(status: str = "COMPLETED") -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = "20261207"
    ds.PerformedProcedureStepEndTime = "103000"
    ds.PerformedSeriesSequence = [series()]
    return ds


@pytest.fixture
def service() -> mpps.MPPSService:
    return mpps.MPPSService()


def created(service: mpps.MPPSService) -> str:
    reply = one_reply(service, create_rq(in_progress()))
    assert reply.status == mpps.SUCCESS
    return reply.fields["AffectedSOPInstanceUID"]


def test_sop_class_is_the_registry_one():
    assert mpps.MPPS_SOP_CLASS == "1.2.840.10008.3.1.2.3.3"


def test_create_set_complete(service):
    uid = created(service)
    assert service.status_of(uid) == "IN PROGRESS"
    update = Dataset()
    update.PerformedProcedureStepDescription = "CT head"
    reply = one_reply(service, set_rq(update, uid))
    assert reply.status == mpps.SUCCESS
    assert service.instances()[uid].PerformedProcedureStepDescription == "CT head"
    reply = one_reply(service, set_rq(completion(), uid))
    assert reply.status == mpps.SUCCESS
    stored = service.instances()[uid]
    assert stored.PerformedProcedureStepStatus == "COMPLETED"
    assert stored.PerformedSeriesSequence[0].ProtocolName == "Head"
    assert stored.SOPClassUID == mpps.MPPS_SOP_CLASS and stored.SOPInstanceUID == uid


def test_create_without_uid_gets_one_from_the_scp(service):
    reply = one_reply(service, create_rq(in_progress(), uid=None))
    assert reply.status == mpps.SUCCESS
    uid = reply.fields["AffectedSOPInstanceUID"]
    assert uid and uid in service.instances()
    assert reply.dataset.SOPInstanceUID == uid


def test_instances_is_a_snapshot(service):
    uid = created(service)
    service.instances()[uid].PatientID = "changed"
    service.instances()[uid].ScheduledStepAttributesSequence[0].AccessionNumber = "changed"
    again = service.instances()[uid]
    assert again.PatientID == "P1" and again.ScheduledStepAttributesSequence[0].AccessionNumber == "ACC1"


@pytest.mark.parametrize("keyword", ["PerformedStationAETitle", "PerformedProcedureStepStartDate",
                                     "PerformedProcedureStepID", "Modality", "ScheduledStepAttributesSequence"])
def test_create_type1_absent_is_0120(service, keyword):
    ds = in_progress()
    delattr(ds, keyword)
    reply = one_reply(service, create_rq(ds))
    assert reply.status == mpps.MISSING_ATTRIBUTE == 0x0120
    assert reply.fields["AttributeIdentifierList"] == [tag_for_keyword(keyword)]
    assert service.instances() == {}


@pytest.mark.parametrize("keyword", ["PatientName", "PerformedProcedureStepEndDate", "PerformedSeriesSequence",
                                     "StudyID"])
def test_create_type2_absent_is_0120(service, keyword):
    ds = in_progress()
    delattr(ds, keyword)
    reply = one_reply(service, create_rq(ds))
    assert reply.status == 0x0120
    assert tag_for_keyword(keyword) in reply.fields["AttributeIdentifierList"]


@pytest.mark.parametrize("keyword", ["PerformedStationAETitle", "PerformedProcedureStepStartTime", "Modality"])
def test_create_type1_empty_is_0121(service, keyword):
    ds = in_progress()
    setattr(ds, keyword, "")
    reply = one_reply(service, create_rq(ds))
    assert reply.status == mpps.MISSING_ATTRIBUTE_VALUE == 0x0121
    assert reply.fields["AttributeIdentifierList"] == [tag_for_keyword(keyword)]


def test_create_type1_empty_sequence_is_0121(service):
    ds = in_progress()
    ds.ScheduledStepAttributesSequence = []
    assert one_reply(service, create_rq(ds)).status == 0x0121


def test_create_item_keys_are_checked(service):
    ds = in_progress()
    del ds.ScheduledStepAttributesSequence[0].StudyInstanceUID
    reply = one_reply(service, create_rq(ds))
    assert reply.status == 0x0120
    assert reply.fields["AttributeIdentifierList"] == [tag_for_keyword("StudyInstanceUID")]
    assert "ScheduledStepAttributesSequence[0].StudyInstanceUID" in reply.fields["ErrorComment"]


@pytest.mark.parametrize("status", ["COMPLETED", "DISCONTINUED", "SCHEDULED"])
def test_create_status_other_than_in_progress_is_0106_with_attribute_list(service, status):
    ds = in_progress()
    ds.PerformedProcedureStepStatus = status
    reply = one_reply(service, create_rq(ds))
    assert reply.status == mpps.INVALID_ATTRIBUTE_VALUE == 0x0106
    assert reply.dataset.PerformedProcedureStepStatus == status
    assert service.instances() == {}


def test_create_duplicate_is_0111(service):
    uid = created(service)
    reply = one_reply(service, create_rq(in_progress(), uid))
    assert reply.status == mpps.DUPLICATE_SOP_INSTANCE == 0x0111


def test_store_is_bounded_0213():
    service = mpps.MPPSService(max_instances=2)
    for n in range(2):
        assert one_reply(service, create_rq(in_progress(), f"1.2.3.{n}")).status == 0
    reply = one_reply(service, create_rq(in_progress(), "1.2.3.9"))
    assert reply.status == mpps.RESOURCE_LIMITATION == 0x0213
    assert len(service.instances()) == 2
    assert mpps.MPPSService().max_instances == mpps.DEFAULT_MAX_INSTANCES


def test_set_unknown_instance_is_0112(service):
    reply = one_reply(service, set_rq(completion(), "1.2.3.404"))
    assert reply.status == mpps.NO_SUCH_SOP_INSTANCE == 0x0112


@pytest.mark.parametrize("keyword,value", [
    ("PerformedProcedureStepStartDate", "20261208"), ("PatientID", "P2"), ("Modality", "MR"),
    ("PerformedStationAETitle", "OTHER"), ("SOPInstanceUID", "1.2.3"), ("SOPClassUID", "1.2.3"),
])
def test_set_not_allowed_attribute_is_0105(service, keyword, value):
    uid = created(service)
    update = Dataset()
    setattr(update, keyword, value)
    update.PerformedProcedureStepDescription = "changed"
    reply = one_reply(service, set_rq(update, uid))
    assert reply.status == mpps.NO_SUCH_ATTRIBUTE == 0x0105
    assert reply.fields["AttributeIdentifierList"] == [tag_for_keyword(keyword)]
    assert service.instances()[uid].PerformedProcedureStepDescription == ""  # nothing applied


@pytest.mark.parametrize("final", ["COMPLETED", "DISCONTINUED"])
def test_set_after_final_state_is_0110_a710(service, final):
    uid = created(service)
    assert one_reply(service, set_rq(completion(final), uid)).status == 0
    update = Dataset()
    update.PerformedProcedureStepDescription = "late"
    reply = one_reply(service, set_rq(update, uid))
    assert reply.status == mpps.PROCESSING_FAILURE == 0x0110
    assert reply.fields["ErrorID"] == 0xA710
    assert reply.fields["ErrorComment"] == "Performed Procedure Step Object may no longer be updated"
    back = Dataset()
    back.PerformedProcedureStepStatus = "IN PROGRESS"
    assert one_reply(service, set_rq(back, uid)).status == 0x0110
    assert service.status_of(uid) == final


def test_final_set_needs_end_date_and_time(service):
    uid = created(service)
    update = completion()
    update.PerformedProcedureStepEndTime = ""
    reply = one_reply(service, set_rq(update, uid))
    assert reply.status == 0x0121
    assert reply.fields["AttributeIdentifierList"] == [tag_for_keyword("PerformedProcedureStepEndTime")]
    assert service.status_of(uid) == "IN PROGRESS"


def test_final_set_uses_values_set_before(service):
    uid = created(service)
    early = Dataset()
    early.PerformedProcedureStepEndDate = "20261207"
    early.PerformedProcedureStepEndTime = "103000"
    early.PerformedSeriesSequence = [series()]
    assert one_reply(service, set_rq(early, uid)).status == 0
    done = Dataset()
    done.PerformedProcedureStepStatus = "COMPLETED"
    assert one_reply(service, set_rq(done, uid)).status == 0
    assert service.status_of(uid) == "COMPLETED"


def test_final_set_needs_a_performed_series(service):
    uid = created(service)
    update = completion()
    update.PerformedSeriesSequence = []
    reply = one_reply(service, set_rq(update, uid))
    assert reply.status == 0x0121
    assert reply.fields["AttributeIdentifierList"] == [tag_for_keyword("PerformedSeriesSequence")]
    assert service.status_of(uid) == "IN PROGRESS"


def test_series_item_keys_are_checked_in_n_set(service):
    uid = created(service)
    update = completion()
    update.PerformedSeriesSequence = [series(protocol=None)]
    reply = one_reply(service, set_rq(update, uid))
    assert reply.status == 0x0120
    assert reply.fields["AttributeIdentifierList"] == [tag_for_keyword("ProtocolName")]
    update.PerformedSeriesSequence = [series(protocol="")]
    assert one_reply(service, set_rq(update, uid)).status == 0x0121


def test_set_status_outside_the_enumeration_is_0106(service):
    uid = created(service)
    update = Dataset()
    update.PerformedProcedureStepStatus = "DONE"
    reply = one_reply(service, set_rq(update, uid))
    assert reply.status == 0x0106 and reply.dataset.PerformedProcedureStepStatus == "DONE"


def test_other_commands_and_classes(service):
    reply = one_reply(service, Request(N_ACTION_RQ, 3, mpps.MPPS_SOP_CLASS, Dataset(), None, "1.2.3"))
    assert reply.status == mpps.UNRECOGNIZED_OPERATION
    reply = one_reply(service, Request(N_CREATE_RQ, 3, CT, Dataset(), in_progress(), "1.2.3"))
    assert reply.status == mpps.NO_SUCH_SOP_CLASS and service.instances() == {}


def test_misbehaviour_status_delay_abort(service):
    service.misbehaviour = Misbehaviour(fail_status=0x0110, error_comment="scripted")
    reply = one_reply(service, create_rq(in_progress()))
    assert reply.status == 0x0110 and reply.fields["ErrorComment"] == "scripted"
    assert service.instances() == {}
    service.misbehaviour = Misbehaviour(delay=1.5, abort=True)
    reply = one_reply(service, create_rq(in_progress()))
    assert reply.status == 0 and reply.delay == 1.5 and reply.abort
