"""Storage Commitment Push Model as a service: N-ACTION, then N-EVENT-REPORT (PS3.4 J.3).

Theory of operation
-------------------
An SCU that has stored instances asks the SCP to commit to keeping them: an
N-ACTION-RQ, Action Type ID 1 "Request Storage Commitment", on the
well-known SOP Instance 1.2.840.10008.1.20.1.1 (PS3.4 J.3.2, J.3.5), whose
Action Information holds a Transaction UID and a Referenced SOP Sequence
(Table J.3-1).  The SCP answers the N-ACTION-RSP at once, saying only that
it has the request (J.3.2.1.3), and later tells the result in an
N-EVENT-REPORT-RQ: Event Type ID 1 when every instance is committed, 2 when
failures exist, with the committed references in Referenced SOP Sequence
and the others in Failed SOP Sequence, each with a Failure Reason (J.3.3.1,
Table J.3-2; reasons PS3.3 C.14.1.1).

:class:`CommitmentService` is the handler of :mod:`dicomconf.services.base`:
``handle(request)`` yields the N-ACTION-RSP :class:`Reply`, then one
:class:`EventReport` (``to=None``: on this association; an AE title: on a new
association to it, J.3.3.1, which the SCP's configuration decides through
:class:`CommitmentOptions`).  Whether an instance is stored is the
``lookup(sop_instance_uid) -> sop_class_uid | None`` it is given (the index
of the reference SCP; a dict's ``get`` in tests):

===================================================  ==========================
the request                                          the answer
===================================================  ==========================
not the well-known SOP Instance                      N-ACTION-RSP 0112 (PS3.7 10.1.4.1.10)
Action Type ID other than 1                          N-ACTION-RSP 0123 (no such action)
no Action Information, Transaction UID, Referenced   N-ACTION-RSP 0115 (invalid argument value)
SOP Sequence, or an item without both UIDs
an instance not stored                               Failure Reason 0112 (no such object instance)
stored under another SOP class                       Failure Reason 0119 (class / instance conflict)
the lookup fails                                     Failure Reason 0110 (processing failure)
a Transaction UID already used                       Failure Reason 0131 (duplicate transaction UID)
===================================================  ==========================

A scenario's misbehaviour is :class:`CommitmentOptions`: a failure status
for the N-ACTION-RSP, delay, abort (the common :class:`Misbehaviour`), and
``fail_all`` / ``fail_uids`` (reported failed with ``failure_reason`` though
stored), ``report=False`` (never send the event report), ``report_to``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pydicom import Dataset
from pydicom.uid import UID_dictionary

from dicomconf.services.base import EventReport, Exchange, Misbehaviour, Reply, Request
from dicomconf.ul.dimse import N_ACTION_RQ

__all__ = [
    "CLASS_INSTANCE_CONFLICT",
    "COMMITMENT_SOP_CLASS",
    "COMMITMENT_SOP_INSTANCE",
    "DUPLICATE_TRANSACTION_UID",
    "EVENT_ALL_SUCCEEDED",
    "EVENT_FAILURES_EXIST",
    "INVALID_ARGUMENT_VALUE",
    "NO_SUCH_ACTION_TYPE",
    "NO_SUCH_OBJECT_INSTANCE",
    "NO_SUCH_SOP_CLASS",
    "NO_SUCH_SOP_INSTANCE",
    "PROCESSING_FAILURE",
    "REQUEST_STORAGE_COMMITMENT",
    "SUCCESS",
    "UNRECOGNIZED_OPERATION",
    "CommitmentOptions",
    "CommitmentService",
    "Lookup",
]

_BY_KEYWORD = {entry[4]: uid for uid, entry in UID_dictionary.items() if entry[4] in (
    "StorageCommitmentPushModel", "StorageCommitmentPushModelInstance")}
COMMITMENT_SOP_CLASS = _BY_KEYWORD["StorageCommitmentPushModel"]
# PS3.4 J.3.5: the well-known SOP Instance every N-ACTION and N-EVENT-REPORT names.
COMMITMENT_SOP_INSTANCE = _BY_KEYWORD["StorageCommitmentPushModelInstance"]

REQUEST_STORAGE_COMMITMENT = 1  # Action Type ID, PS3.4 J.3.2.1.1
EVENT_ALL_SUCCEEDED = 1  # Event Type ID, PS3.4 J.3.3.1.1
EVENT_FAILURES_EXIST = 2

# N-ACTION-RSP statuses (PS3.7 10.1.4.1.10; meanings PS3.7 Annex C).
SUCCESS = 0x0000
NO_SUCH_SOP_INSTANCE = 0x0112
INVALID_ARGUMENT_VALUE = 0x0115
NO_SUCH_SOP_CLASS = 0x0118
NO_SUCH_ACTION_TYPE = 0x0123
UNRECOGNIZED_OPERATION = 0x0211

# Failure Reason (0008,1197) values, PS3.3 C.14.1.1.
PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
DUPLICATE_TRANSACTION_UID = 0x0131

Lookup = Callable[[str], "str | None"]

# Transaction UIDs remembered for the duplicate check (oldest forgotten first).
_REMEMBERED_TRANSACTIONS = 10_000


@dataclass(frozen=True, slots=True)
class CommitmentOptions:
    """How the SCP answers commitment requests: the configuration's and the scenario's choices.

    ``report_to``: None sends the N-EVENT-REPORT on the requesting association;
    an AE title sends it on a new association to that AE (PS3.4 J.3.3.1).
    ``fail_all`` / ``fail_uids`` report those instances failed with
    ``failure_reason`` even when stored; ``report=False`` sends no event at all;
    ``retrieve_ae`` adds Retrieve AE Title (0008,0054) to the result (Table J.3-2).
    """

    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)
    report_to: str | None = None
    report: bool = True
    fail_all: bool = False
    fail_uids: frozenset[str] = frozenset()
    failure_reason: int = PROCESSING_FAILURE
    retrieve_ae: str | None = None


class CommitmentService:
    """The Storage Commitment Push Model SCP (PS3.4 J.3) over a ``lookup`` of stored instances."""

    def __init__(self, lookup: Lookup, options: CommitmentOptions | None = None) -> None:
        self.lookup = lookup
        self.options = options or CommitmentOptions()
        self._transactions: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        # (Transaction UID, Event Type ID, N-EVENT-REPORT-RSP status or None), for scenarios to inspect.
        self.reports: list[tuple[str, int, int | None]] = []

    def handle(self, request: Request) -> Exchange:
        """N-ACTION-RQ → N-ACTION-RSP, then the N-EVENT-REPORT with the result (PS3.4 J.3.2, J.3.3)."""
        options = self.options
        refusal = options.misbehaviour.refusal()
        if refusal is not None:
            yield refusal
            return
        status, comment, references, transaction = self._check(request)
        fields: dict = {"AffectedSOPInstanceUID": COMMITMENT_SOP_INSTANCE}
        if status != SUCCESS:
            fields["ErrorComment"] = comment[:64]
            yield options.misbehaviour.shape(Reply(status, None, fields))
            return
        fields["ActionTypeID"] = REQUEST_STORAGE_COMMITMENT
        yield options.misbehaviour.shape(Reply(SUCCESS, None, fields))
        if not options.report:
            return
        event_type, result = self.result(transaction, references)
        answer = yield EventReport(COMMITMENT_SOP_CLASS, COMMITMENT_SOP_INSTANCE, event_type, result,
                                   to=options.report_to)
        self.reports.append((transaction, event_type, answer))

    def _check(self, request: Request) -> tuple[int, str, list[tuple[str, str]], str]:
        """The N-ACTION-RSP status for ``request`` (PS3.4 J.3.2.1.3), with the references it names."""
        if request.command_field != N_ACTION_RQ:
            return UNRECOGNIZED_OPERATION, "Storage Commitment takes N-ACTION", [], ""
        if request.sop_class_uid != COMMITMENT_SOP_CLASS:
            return NO_SUCH_SOP_CLASS, f"not the Storage Commitment SOP class: {request.sop_class_uid}", [], ""
        if request.sop_instance_uid != COMMITMENT_SOP_INSTANCE:
            return NO_SUCH_SOP_INSTANCE, f"not the well-known instance: {request.sop_instance_uid}", [], ""
        action = request.command.get("ActionTypeID")
        if action != REQUEST_STORAGE_COMMITMENT:
            return NO_SUCH_ACTION_TYPE, f"Action Type ID {action} (only 1 is defined)", [], ""
        ds = request.dataset
        if ds is None:
            return INVALID_ARGUMENT_VALUE, "no Action Information", [], ""
        transaction = str(ds.get("TransactionUID", "") or "")
        if not transaction:
            return INVALID_ARGUMENT_VALUE, "no Transaction UID (0008,1195)", [], ""
        items = ds.get("ReferencedSOPSequence")
        if not items:
            return INVALID_ARGUMENT_VALUE, "no Referenced SOP Sequence (0008,1199)", [], ""
        references: list[tuple[str, str]] = []
        for n, item in enumerate(items):
            sop_class = str(item.get("ReferencedSOPClassUID", "") or "")
            sop_instance = str(item.get("ReferencedSOPInstanceUID", "") or "")
            if not sop_class or not sop_instance:
                return INVALID_ARGUMENT_VALUE, f"Referenced SOP Sequence item {n + 1} lacks a UID", [], ""
            references.append((sop_class, sop_instance))
        return SUCCESS, "", references, transaction

    def result(self, transaction: str, references: list[tuple[str, str]]) -> tuple[int, Dataset]:
        """The Event Type ID and Event Information for one request (PS3.4 J.3.3.1.1, Table J.3-2)."""
        options = self.options
        with self._lock:
            duplicate = transaction in self._transactions
            self._transactions[transaction] = None
            while len(self._transactions) > _REMEMBERED_TRANSACTIONS:
                self._transactions.popitem(last=False)
        committed: list[Dataset] = []
        failed: list[Dataset] = []
        for sop_class, sop_instance in references:
            reason = DUPLICATE_TRANSACTION_UID if duplicate else self._reason(sop_class, sop_instance)
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_instance
            if reason is None:
                committed.append(item)
            else:
                item.FailureReason = reason
                failed.append(item)
        info = Dataset()
        info.TransactionUID = transaction
        if options.retrieve_ae and committed:
            info.RetrieveAETitle = options.retrieve_ae
        if committed:
            info.ReferencedSOPSequence = committed
        if failed:
            info.FailedSOPSequence = failed
        return (EVENT_FAILURES_EXIST if failed else EVENT_ALL_SUCCEEDED), info

    def _reason(self, sop_class: str, sop_instance: str) -> int | None:
        """None when committed, else the Failure Reason (PS3.3 C.14.1.1)."""
        options = self.options
        if options.fail_all or sop_instance in options.fail_uids:
            return options.failure_reason
        try:
            stored_class = self.lookup(sop_instance)
        except Exception:  # noqa: BLE001 - any fault of the index is this item's processing failure
            return PROCESSING_FAILURE
        if stored_class is None:
            return NO_SUCH_OBJECT_INSTANCE
        if str(stored_class) != sop_class:
            return CLASS_INSTANCE_CONFLICT
        return None
