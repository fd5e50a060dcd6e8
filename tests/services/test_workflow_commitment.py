"""Storage Commitment Push Model service: N-ACTION checks and the N-EVENT-REPORT result (PS3.4 J.3)."""

from __future__ import annotations

import pytest
from pydicom import Dataset

from dicomconf.services import commitment as sc
from dicomconf.services.base import EventReport, Misbehaviour, Reply, Request
from dicomconf.ul.dimse import N_ACTION_RQ, N_CREATE_RQ

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
STORED = {"1.2.3.1": CT, "1.2.3.2": CT, "1.2.3.3": MR}


def drive(service: sc.CommitmentService, request: Request, answer: int | None = 0) -> list:
    """Run an exchange as a driver would: send back ``answer`` for each event report."""
    exchange = service.handle(request)
    actions = []
    try:
        action = next(exchange)
        while True:
            actions.append(action)
            action = exchange.send(answer if isinstance(action, EventReport) else None)
    except StopIteration:
        pass
    return actions


def action_rq(refs: list[tuple[str, str]] | None, *, transaction: str | None = "1.2.9.1", action_type: int = 1,
              instance: str = sc.COMMITMENT_SOP_INSTANCE, sop_class: str = sc.COMMITMENT_SOP_CLASS,
              command_field: int = N_ACTION_RQ) -> Request:
    command = Dataset()
    command.ActionTypeID = action_type
    ds = Dataset()
    if transaction is not None:
        ds.TransactionUID = transaction
    if refs is not None:
        items = []
        for sop_class_uid, sop_instance_uid in refs:
            item = Dataset()
            if sop_class_uid:
                item.ReferencedSOPClassUID = sop_class_uid
            if sop_instance_uid:
                item.ReferencedSOPInstanceUID = sop_instance_uid
            items.append(item)
        ds.ReferencedSOPSequence = items
    return Request(command_field, 7, sop_class, command, ds, instance)


def refs_of(seq) -> list[str]:
    return [item.ReferencedSOPInstanceUID for item in seq]


def test_uids_are_the_registry_ones():
    assert sc.COMMITMENT_SOP_CLASS == "1.2.840.10008.1.20.1"
    assert sc.COMMITMENT_SOP_INSTANCE == "1.2.840.10008.1.20.1.1"


def test_all_stored_is_event_1():
    service = sc.CommitmentService(STORED.get)
    actions = drive(service, action_rq([(CT, "1.2.3.1"), (CT, "1.2.3.2")]))
    assert len(actions) == 2
    reply, event = actions
    assert isinstance(reply, Reply) and reply.status == 0
    assert reply.fields["ActionTypeID"] == 1 and reply.fields["AffectedSOPInstanceUID"] == sc.COMMITMENT_SOP_INSTANCE
    assert isinstance(event, EventReport)
    assert event.event_type_id == sc.EVENT_ALL_SUCCEEDED == 1
    assert event.sop_class_uid == sc.COMMITMENT_SOP_CLASS and event.sop_instance_uid == sc.COMMITMENT_SOP_INSTANCE
    assert event.to is None
    assert event.dataset.TransactionUID == "1.2.9.1"
    assert refs_of(event.dataset.ReferencedSOPSequence) == ["1.2.3.1", "1.2.3.2"]
    assert "FailedSOPSequence" not in event.dataset
    assert service.reports == [("1.2.9.1", 1, 0)]


def test_failures_are_event_2_with_reasons():
    def lookup(uid):
        if uid == "1.2.3.666":
            raise OSError("index down")
        return STORED.get(uid)

    service = sc.CommitmentService(lookup)
    refs = [(CT, "1.2.3.1"), (CT, "1.2.3.404"), (CT, "1.2.3.3"), (CT, "1.2.3.666")]
    _, event = drive(service, action_rq(refs), answer=None)
    assert event.event_type_id == sc.EVENT_FAILURES_EXIST == 2
    assert refs_of(event.dataset.ReferencedSOPSequence) == ["1.2.3.1"]
    failed = {item.ReferencedSOPInstanceUID: item.FailureReason for item in event.dataset.FailedSOPSequence}
    assert failed == {"1.2.3.404": 0x0112, "1.2.3.3": 0x0119, "1.2.3.666": 0x0110}
    assert all(item.ReferencedSOPClassUID == CT for item in event.dataset.FailedSOPSequence)
    assert service.reports == [("1.2.9.1", 2, None)]


def test_nothing_committed_has_no_referenced_sop_sequence():
    _, event = drive(sc.CommitmentService(STORED.get), action_rq([(CT, "9.9")]))
    assert event.event_type_id == 2
    assert "ReferencedSOPSequence" not in event.dataset
    assert event.dataset.FailedSOPSequence[0].FailureReason == sc.NO_SUCH_OBJECT_INSTANCE


@pytest.mark.parametrize("request_, status", [
    (action_rq([(CT, "1.2.3.1")], transaction=None), sc.INVALID_ARGUMENT_VALUE),
    (action_rq([(CT, "1.2.3.1")], transaction=""), sc.INVALID_ARGUMENT_VALUE),
    (action_rq(None), sc.INVALID_ARGUMENT_VALUE),
    (action_rq([]), sc.INVALID_ARGUMENT_VALUE),
    (action_rq([(CT, "")]), sc.INVALID_ARGUMENT_VALUE),
    (action_rq([("", "1.2.3.1")]), sc.INVALID_ARGUMENT_VALUE),
    (action_rq([(CT, "1.2.3.1")], action_type=2), sc.NO_SUCH_ACTION_TYPE),
    (action_rq([(CT, "1.2.3.1")], instance="1.2.3.4"), sc.NO_SUCH_SOP_INSTANCE),
    (action_rq([(CT, "1.2.3.1")], sop_class=CT), sc.NO_SUCH_SOP_CLASS),
    (action_rq([(CT, "1.2.3.1")], command_field=N_CREATE_RQ), sc.UNRECOGNIZED_OPERATION),
], ids=["no-transaction", "empty-transaction", "no-sequence", "empty-sequence", "no-instance-uid",
        "no-class-uid", "action-type-2", "not-well-known", "wrong-class", "not-n-action"])
def test_malformed_n_action(request_, status):
    service = sc.CommitmentService(STORED.get)
    actions = drive(service, request_)
    assert len(actions) == 1, "a refused request has no event report"
    assert actions[0].status == status
    assert actions[0].fields["ErrorComment"]
    assert service.reports == []


def test_no_action_information_at_all():
    request = Request(N_ACTION_RQ, 1, sc.COMMITMENT_SOP_CLASS, action_rq(None).command, None,
                      sc.COMMITMENT_SOP_INSTANCE)
    assert [a.status for a in drive(sc.CommitmentService(STORED.get), request)] == [0x0115]


def test_duplicate_transaction_uid_fails_every_item():
    service = sc.CommitmentService(STORED.get)
    drive(service, action_rq([(CT, "1.2.3.1")], transaction="1.2.9.7"))
    _, event = drive(service, action_rq([(CT, "1.2.3.1")], transaction="1.2.9.7"))
    assert event.event_type_id == 2
    assert event.dataset.FailedSOPSequence[0].FailureReason == sc.DUPLICATE_TRANSACTION_UID == 0x0131


def test_options_fail_uids_fail_all_report_to_and_no_report():
    refs = [(CT, "1.2.3.1"), (CT, "1.2.3.2")]
    service = sc.CommitmentService(STORED.get, sc.CommitmentOptions(fail_uids=frozenset({"1.2.3.2"}),
                                                                    report_to="MODALITY", retrieve_ae="PACS"))
    _, event = drive(service, action_rq(refs))
    assert event.to == "MODALITY"
    assert event.event_type_id == 2 and event.dataset.RetrieveAETitle == "PACS"
    assert [i.FailureReason for i in event.dataset.FailedSOPSequence] == [sc.PROCESSING_FAILURE]
    service = sc.CommitmentService(STORED.get, sc.CommitmentOptions(fail_all=True, failure_reason=0x0213))
    _, event = drive(service, action_rq(refs))
    assert [i.FailureReason for i in event.dataset.FailedSOPSequence] == [0x0213, 0x0213]
    service = sc.CommitmentService(STORED.get, sc.CommitmentOptions(report=False))
    actions = drive(service, action_rq(refs))
    assert [type(a) for a in actions] == [Reply] and actions[0].status == 0


def test_misbehaviour_refuses_delays_aborts():
    options = sc.CommitmentOptions(misbehaviour=Misbehaviour(fail_status=0x0213))
    actions = drive(sc.CommitmentService(STORED.get, options), action_rq([(CT, "1.2.3.1")]))
    assert [a.status for a in actions] == [0x0213]
    options = sc.CommitmentOptions(misbehaviour=Misbehaviour(delay=2.0, abort=True))
    reply, event = drive(sc.CommitmentService(STORED.get, options), action_rq([(CT, "1.2.3.1")]))
    assert reply.delay == 2.0 and reply.abort and event.event_type_id == 1
