"""Broken reference SCPs for the retrieve scenarios: C-MOVE, C-GET and their C-CANCEL (see variant_kit).

Theory of operation
-------------------
Each variant wraps the reference SCP's C-MOVE and C-GET handlers
(:mod:`dicomconf.services.qr_retrieve`) so that one rule of PS3.4 C.4.2.3.1 or
C.4.3.3.1 is broken the way a real PACS might break it: a count off by one, a
sub-operation skipped but counted, the retrieve level widened, a list of UIDs
cut to its first, the counts left out of pending or final responses, failed
sub-operations reported as success.  ``retrieve-cancel-ignored`` drops the
C-CANCEL-RQ as it arrives (an ``inbound`` hook, :mod:`dicomconf.scp.hooks`),
as a PACS that never reads it would.  Each names the must-level scenarios that
must fail on it (tests/suite/test_suite_broken_variants.py runs them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from variant_kit import GETS, MOVES, PDUFilter, Variant, replacing, replies, rewriting

from dicomconf.scp.hooks import Hooks
from dicomconf.services.base import Exchange, Handler, Reply, Request, SubOperation
from dicomconf.ul import constants as C
from dicomconf.ul import dimse

RETRIEVES = MOVES + GETS
PENDING = (0xFF00, 0xFF01)
COMPLETED = "NumberOfCompletedSuboperations"
FAILED = "NumberOfFailedSuboperations"
WARNING = "NumberOfWarningSuboperations"
REMAINING = "NumberOfRemainingSuboperations"


def _final(reply: Reply) -> bool:
    return reply.status not in PENDING


def _fields(reply: Reply, **changes: Any) -> Reply:
    """``reply`` with command elements changed (None: removed)."""
    fields = {**reply.fields, **changes}
    return dataclasses.replace(reply, fields={k: v for k, v in fields.items() if v is not None})


def _with_identifier(original: Handler, change: Callable[[Dataset], None]) -> Handler:
    """A handler that serves ``original`` the request with its identifier changed by ``change``."""

    def handler(request: Request) -> Exchange:
        if request.dataset is None:
            return original(request)
        identifier = Dataset()
        identifier.update(request.dataset)
        change(identifier)
        return original(dataclasses.replace(request, dataset=identifier))

    return handler


# ---------------------------------------------------------------- the broken handlers


def completed_off_by_one(original: Handler) -> Handler:
    """The final response counts one completed sub-operation more than were performed (PS3.4 C.4.2.3.1,
    C.4.3.3.1: the final response shall indicate the number of Completed sub-operations)."""
    return rewriting(original, replies(lambda reply, request: _fields(
        reply, **{COMPLETED: int(reply.fields.get(COMPLETED, 0)) + 1}) if _final(reply) else reply))


def first_skipped_counted(original: Handler) -> Handler:
    """The first sub-operation is never sent, yet counted completed (PS3.4 C.4.2.3.1, C.4.3.3.1: C-STORE
    sub-operations for all stored SOP Instances the identifier names)."""

    def handler(request: Request) -> Exchange:
        exchange = original(request)
        sent: Any = None
        thrown: BaseException | None = None
        skipped = False
        while True:
            try:
                action = exchange.throw(thrown) if thrown is not None else exchange.send(sent)
            except StopIteration:
                return
            sent, thrown = None, None
            if isinstance(action, SubOperation) and not skipped:
                skipped, sent = True, 0x0000  # "completed", without a C-STORE
                continue
            try:
                sent = yield action
            except GeneratorExit:
                exchange.close()
                raise
            except Exception as exc:  # a C-CANCEL reaches the original handler
                thrown = exc

    return handler


def level_widened(original: Handler) -> Handler:
    """A SERIES or IMAGE level retrieve sends the whole study (PS3.4 C.4.2.3.1, C.4.3.3.1: the entities at the
    level of the retrieval, from the Unique Keys of the identifier)."""

    def widen(identifier: Dataset) -> None:
        if str(identifier.get("QueryRetrieveLevel", "")).strip() in ("SERIES", "IMAGE"):
            identifier.QueryRetrieveLevel = "STUDY"

    return _with_identifier(original, widen)


def uid_list_first_only(original: Handler) -> Handler:
    """A list of UIDs as the unique key is cut to its first UID (PS3.4 C.4.2.3.1, C.4.3.3.1: all instances
    related to the List of Study Instance UIDs ... or List of SOP Instance UIDs; C.2.2.2.2)."""

    def first(identifier: Dataset) -> None:
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            element = identifier.data_element(keyword) if keyword in identifier else None
            if element is not None and element.VM > 1:
                setattr(identifier, keyword, str(element.value[0]))

    return _with_identifier(original, first)


def pending_counts_dropped(original: Handler) -> Handler:
    """Pending responses carry no Number of Remaining Sub-operations (PS3.4 C.4.2.3.1, C.4.3.3.1: they shall
    indicate the Remaining, Completed, Failed and Warning sub-operations)."""
    return rewriting(original, replies(lambda reply, request: reply if _final(reply) else _fields(
        reply, **{REMAINING: None})))


def final_counts_dropped(original: Handler) -> Handler:
    """The final response carries no Completed, Failed or Warning count (PS3.4 C.4.2.3.1: it shall indicate
    them; C.4.3.3.1: a Canceled C-GET response shall contain them)."""
    return rewriting(original, replies(lambda reply, request: _fields(
        reply, **{COMPLETED: None, FAILED: None, WARNING: None}) if _final(reply) else reply))


def failures_reported_success(original: Handler) -> Handler:
    """Sub-operations that could not be performed are answered as success, counted completed (PS3.4 C.4.3.3.1:
    a sub-operation is Failed if the SCU did not offer an appropriate presentation context, D.3.3.4)."""

    def change(reply: Reply, request: Request) -> Reply:
        failed = int(reply.fields.get(FAILED, 0) or 0)
        if not _final(reply) or not failed:
            return reply
        done = int(reply.fields.get(COMPLETED, 0) or 0) + failed
        return _fields(Reply(0x0000, None, reply.fields), **{COMPLETED: done, FAILED: 0})

    return rewriting(original, replies(change))


# ---------------------------------------------------------------- C-CANCEL never read


def _is_cancel(pdu: bytes) -> bool:
    """Whether a whole PDU is a P-DATA-TF with a C-CANCEL-RQ command PDV (PS3.8 9.3.5, E.2)."""
    if pdu[:1] != bytes([C.P_DATA_TF]):
        return False
    pos = 6
    while pos + 6 <= len(pdu):
        length = int.from_bytes(pdu[pos:pos + 4], "big")
        header, value = pdu[pos + 5], pdu[pos + 6:pos + 4 + length]
        pos += 4 + length
        if header & C.MCH_COMMAND:
            try:
                command = read_dataset(DicomBytesIO(value), True, True)
            except Exception:
                continue  # a fragment of a longer command: not a C-CANCEL-RQ, which fits in one
            if command.get("CommandField") == dimse.C_CANCEL_RQ:
                return True
    return False


def cancel_ignored() -> Hooks:
    """A C-CANCEL-RQ is never read: the C-GET goes on to its end (PS3.4 C.4.3.3.1: the SCP shall interrupt
    all C-STORE sub-operation processing and return a status of Canceled)."""
    return Hooks(inbound=PDUFilter(lambda pdu, conn: b"" if _is_cancel(pdu) else pdu))


# ---------------------------------------------------------------- the table

COUNTED = (
    "services.move-study-to-harness", "services.move-series-to-harness", "services.get-study-with-role-selection",
    "services.move-patient-level", "services.move-study-uid-list", "services.move-image-uid-list",
    "services.move-final-counts", "services.get-patient-level", "services.get-series-level",
    "services.get-image-level",
)

def role_refused_but_used() -> Hooks:
    """The A-ASSOCIATE-AC refuses the SCP role the requestor proposed, yet the C-GET's C-STOREs still go to
    it on that SOP class (PS3.7 D.3.3.4: a role not accepted is not taken; PS3.4 C.4.3.2: the sub-operations
    need the requestor's SCP role)."""
    from dicomconf.ul.items import RoleSelection, UserInformation
    from dicomconf.ul.pdu import AAssociateAC

    def hook(primitive: Any, connection: Any) -> Any:
        if not isinstance(primitive, AAssociateAC) or primitive.user_information is None:
            return primitive
        subs = tuple(RoleSelection(s.sop_class_uid, s.scu_role, 0) if isinstance(s, RoleSelection) else s
                     for s in primitive.user_information.sub_items)
        return dataclasses.replace(primitive, user_information=UserInformation(subs))
    return Hooks(answer=hook)


VARIANTS: dict[str, Variant] = {
    "retrieve-role-refused-but-used": Variant(role_refused_but_used, (
        "services.get-study-with-role-selection", "services.get-patient-level", "services.get-series-level",
        "services.get-image-level", "services.get-pending-counts",
    )),
    "retrieve-completed-off-by-one": Variant(None, COUNTED + (
        "services.move-pending-counts", "services.get-pending-counts", "services.get-without-role-selection",
    ), handlers=replacing(RETRIEVES, completed_off_by_one)),
    "retrieve-first-skipped-counted": Variant(None, (
        "services.move-study-to-harness", "services.move-series-to-harness", "services.get-study-with-role-selection",
        "services.move-patient-level", "services.move-study-uid-list", "services.move-image-uid-list",
        "services.move-final-counts", "services.get-patient-level", "services.get-series-level",
        "services.get-image-level", "services.get-pending-counts",
    ), handlers=replacing(RETRIEVES, first_skipped_counted)),
    "retrieve-level-widened": Variant(None, (
        "services.move-series-to-harness", "services.move-image-uid-list", "services.get-image-level",
    ), handlers=replacing(RETRIEVES, level_widened)),
    "retrieve-uid-list-first-only": Variant(None, (
        "services.move-study-uid-list", "services.move-image-uid-list", "services.get-pending-counts",
    ), handlers=replacing(RETRIEVES, uid_list_first_only)),
    "retrieve-pending-counts-dropped": Variant(None, (
        "services.move-pending-counts", "services.get-pending-counts",
    ), handlers=replacing(RETRIEVES, pending_counts_dropped)),
    "retrieve-final-counts-dropped": Variant(None, (
        "services.move-final-counts", "services.get-image-level", "services.get-pending-counts",
        "services.get-cancel-after-first-store",
    ), handlers=replacing(RETRIEVES, final_counts_dropped)),
    "retrieve-failures-reported-success": Variant(None, (
        "services.get-without-role-selection",
    ), handlers=replacing(RETRIEVES, failures_reported_success)),
    "retrieve-cancel-ignored": Variant(cancel_ignored, ("services.get-cancel-after-first-store",)),
}
