"""Broken reference SCPs for the workflow scenarios: Storage Commitment, MPPS, Modality Worklist (see variant_kit).

Theory of operation
-------------------
Each variant wraps the reference SCP's handler of one SOP class (PS3.4 J, F.7, K.6) so that it
breaks one rule the way a real PACS or RIS might: the commitment report loses its failed list or
its Transaction UID, an MPPS takes what it must refuse, a worklist ignores a key or leaves a
Type 1 return key empty.  The factory of each says which clause it breaks; ``VARIANTS`` names
the must-level scenarios of scenarios/qr/commitment.yaml, mpps.yaml and worklist.yaml that must
fail on it (tests/suite/test_suite_broken_variants.py runs them).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydicom import Dataset
from pydicom.uid import generate_uid
from variant_kit import (
    COMMITMENT,
    MPPS,
    WORKLIST,
    Variant,
    replacing,
    replies,
    rewriting,
)

from dicomconf.services.base import EventReport, Exchange, Handler, Reply, Request
from dicomconf.ul.dimse import N_CREATE_RQ, N_SET_RQ

_SPS = "ScheduledProcedureStepSequence"


def _copy(ds: Dataset | None) -> Dataset:
    out = Dataset()
    for element in ds or ():
        out.add(element)
    return out


def _reports(change):
    """A ``make`` for :func:`replacing`: the commitment handler with each N-EVENT-REPORT passed through ``change``."""
    return lambda original: rewriting(original, lambda action, request: change(action)
                                      if isinstance(action, EventReport) else action)


# ---------------------------------------------------------------- Storage Commitment (PS3.4 J.3)


def _without_failed_list(report: EventReport) -> EventReport:
    """Drops the Failed SOP Sequence from an event type 2 report: breaks PS3.4 J.3.3.1.2 ("This event shall
    include references to the failed SOP Instances together with ...")."""
    info = _copy(report.dataset)
    if "FailedSOPSequence" in info:
        del info.FailedSOPSequence
    return dataclasses.replace(report, dataset=info)


def _reason_processing_failure(report: EventReport) -> EventReport:
    """Reports every failure as 0110 Processing failure, unknown instances too: breaks PS3.3 C.14.1.1 (the values
    and semantics that "shall be used for the Failure Reason Attribute": 0112 No such object instance)."""
    info = _copy(report.dataset)
    for item in info.get("FailedSOPSequence") or ():
        item.FailureReason = 0x0110
    return dataclasses.replace(report, dataset=info)


def _transaction_uid_new(report: EventReport) -> EventReport:
    """Sends a Transaction UID of its own in the report: breaks PS3.4 J.3.3.1.2 ("The N-EVENT-REPORT shall include
    the same Transaction UID Attribute (0008,1195) value as contained in the initiating N-ACTION")."""
    info = _copy(report.dataset)
    info.TransactionUID = generate_uid()
    return dataclasses.replace(report, dataset=info)


def _transaction_uid_first(original: Handler) -> Handler:
    """Remembers the first Transaction UID it sees and reports every later request under it (a cached
    field): breaks PS3.4 J.3.3.1.2 for every request after the first."""
    first: list[str] = []

    def change(action: Any, request: Request) -> Any:
        if not isinstance(action, EventReport):
            return action
        info = _copy(action.dataset)
        if not first:
            first.append(str(info.TransactionUID))
        info.TransactionUID = first[0]
        return dataclasses.replace(action, dataset=info)

    return rewriting(original, change)


def _commits_nothing(report: EventReport) -> EventReport:
    """Reports every instance failed (0110) though stored: breaks PS3.4 J.3.3.1.2 (Event Type ID 1 and the
    references of "the successfully stored SOP Instances" when all are committed)."""
    info = _copy(report.dataset)
    failed = list(info.get("FailedSOPSequence") or ())
    for item in info.get("ReferencedSOPSequence") or ():
        item.FailureReason = 0x0110
        failed.append(item)
    if "ReferencedSOPSequence" in info:
        del info.ReferencedSOPSequence
    info.FailedSOPSequence = failed
    return dataclasses.replace(report, dataset=info, event_type_id=2)


# ---------------------------------------------------------------- MPPS (PS3.4 F.7)


def _create_any_status(original: Handler) -> Handler:
    """Takes an N-CREATE whatever its Performed Procedure Step Status (stores it as IN PROGRESS): breaks
    PS3.4 F.7.2.1.3 ("The SCP shall accept N-CREATE request primitives only if the value of ... is
    “IN PROGRESS”" and answer 0106 otherwise)."""

    def handler(request: Request) -> Exchange:
        if request.command_field == N_CREATE_RQ and request.dataset is not None:
            ds = _copy(request.dataset)
            ds.PerformedProcedureStepStatus = "IN PROGRESS"
            request = dataclasses.replace(request, dataset=ds)
        yield from original(request)

    return handler


def _set_after_final(reply: Reply, request: Request) -> Reply:
    """Answers Success to an N-SET of a step already COMPLETED or DISCONTINUED (as if it took it): breaks
    PS3.4 F.7.2.2.3 ("The SCP shall accept N-SET request primitives only if the value of the already
    existing attribute “Performed Procedure Step Status” (0040,0252) is “IN PROGRESS”")."""
    if request.command_field == N_SET_RQ and reply.status == 0x0110:
        return Reply(0x0000, None, {"AffectedSOPInstanceUID": request.sop_instance_uid})
    return reply


# ---------------------------------------------------------------- Modality Worklist (PS3.4 K.6)


def _identifier_changed(original: Handler, change) -> Handler:
    def handler(request: Request) -> Exchange:
        if request.dataset is not None:
            request = dataclasses.replace(request, dataset=change(_copy(request.dataset)))
        yield from original(request)

    return handler


def _sequence_keys_ignored(ds: Dataset) -> Dataset:
    """Takes every matching key inside the Scheduled Procedure Step Sequence as universal (returns it, matches
    nothing on it): breaks PS3.4 K.2.2.1.1.1 ("shall support matching based on values of all Required
    Matching Key Attributes"; Scheduled Station AE Title, Modality and Start Date are required keys)."""
    if _SPS in ds and ds[_SPS].value:
        item = _copy(ds[_SPS].value[0])
        for element in item:
            if element.VR != "SQ":
                element.value = ""
        ds[_SPS].value = [item]
    return ds


def _range_as_single_value(original: Handler) -> Handler:
    """Matches a Start Date range as one literal value, which no date equals: breaks PS3.4 K.2.2.1.1.1 with
    C.2.2.2.5 (a range "shall match all occurrences of dates that fall between <date1> and <date2>")."""

    def handler(request: Request) -> Exchange:
        steps = request.dataset.get(_SPS) if request.dataset is not None else None
        date = str(steps[0].get("ScheduledProcedureStepStartDate", "")) if steps else ""
        if "-" in date:
            yield Reply(0x0000)
            return
        yield from original(request)

    return handler


def _type1_keys_empty(reply: Reply, request: Request) -> Reply:
    """Returns Requested Procedure ID and the Scheduled Procedure Step ID empty (a RIS that does not keep
    them): breaks PS3.4 K.2.2.1.2 ("SCPs shall support Return Key Attributes ... according to the Data
    Element Type"; both are type 1 return keys in Table K.6-1)."""
    if reply.dataset is None or reply.status not in (0xFF00, 0xFF01):
        return reply
    ds = _copy(reply.dataset)
    if "RequestedProcedureID" in ds:
        ds.RequestedProcedureID = ""
    for item in ds.get(_SPS) or ():
        if "ScheduledProcedureStepID" in item:
            item.ScheduledProcedureStepID = ""
    return dataclasses.replace(reply, dataset=ds)


def _needs_sequence(original: Handler) -> Handler:
    """Refuses a query without a Scheduled Procedure Step Sequence key (A900): breaks PS3.4 K.2.2.1.1.1
    (matching on any subset of the required keys, Patient ID alone among them, Note 2)."""

    def handler(request: Request) -> Exchange:
        if request.dataset is None or _SPS not in request.dataset:
            yield Reply(0xA900, fields={"ErrorComment": "no Scheduled Procedure Step Sequence"})
            return
        yield from original(request)

    return handler


_COMMIT_MUST = ("services.commit-stored-instances", "services.commit-unknown-instances-fail",
                "services.commit-mixed-request-failure-reason", "services.commit-transaction-uid-echoed")

VARIANTS: dict[str, Variant] = {
    "workflow-commit-report-without-failed-list": Variant(None, (
        "services.commit-unknown-instances-fail", "services.commit-mixed-request-failure-reason",
    ), handlers=replacing((COMMITMENT,), _reports(_without_failed_list))),
    "workflow-commit-failure-reason-0110": Variant(None, (
        "services.commit-mixed-request-failure-reason",
    ), handlers=replacing((COMMITMENT,), _reports(_reason_processing_failure))),
    "workflow-commit-transaction-uid-not-echoed": Variant(None, _COMMIT_MUST,
                                                         handlers=replacing((COMMITMENT,), _reports(_transaction_uid_new))),
    "workflow-commit-transaction-uid-stale": Variant(None, ("services.commit-transaction-uid-echoed",),
                                                     handlers=replacing((COMMITMENT,), _transaction_uid_first)),
    "workflow-commit-nothing-committed": Variant(None, (
        "services.commit-stored-instances", "services.commit-transaction-uid-echoed",
    ), handlers=replacing((COMMITMENT,), _reports(_commits_nothing))),
    # Claims reports on a new association (commitment.report: new), sends them on the requesting one
    # (PS3.4 J.3.3.1.2: "An SCP shall be capable of issuing the N-EVENT-REPORT on a different association").
    "workflow-commit-report-only-on-same-association": Variant(None, (
        "services.commit-report-on-new-association",
    ), config={"commitment_report_to": None}, profile={"commitment": {"report": "new"}}),
    "workflow-mpps-create-any-status": Variant(None, ("services.mpps-create-not-in-progress-refused",),
                                               handlers=replacing((MPPS,), _create_any_status)),
    "workflow-mpps-set-after-final-state": Variant(None, (
        "services.mpps-create-then-complete", "services.mpps-discontinued-then-no-change",
    ), handlers=replacing((MPPS,), lambda original: rewriting(original, replies(_set_after_final)))),
    "workflow-worklist-sequence-keys-ignored": Variant(None, (
        "services.worklist-station-ae-matching", "services.worklist-modality-matching",
        "services.worklist-start-date-range",
    ), handlers=replacing((WORKLIST,), lambda original: _identifier_changed(original, _sequence_keys_ignored))),
    "workflow-worklist-range-as-single-value": Variant(None, ("services.worklist-start-date-range",),
                                                       handlers=replacing((WORKLIST,), _range_as_single_value)),
    "workflow-worklist-type1-return-keys-empty": Variant(None, ("services.worklist-type1-return-keys-have-values",),
                                                         handlers=replacing((WORKLIST,), lambda original: rewriting(
                                                             original, replies(_type1_keys_empty)))),
    "workflow-worklist-needs-sequence": Variant(None, ("services.worklist-query-without-sequence",),
                                                handlers=replacing((WORKLIST,), _needs_sequence)),
}
