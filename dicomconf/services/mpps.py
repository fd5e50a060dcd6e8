"""Modality Performed Procedure Step SOP Class as a service: N-CREATE and N-SET (PS3.4 F.7).

Theory of operation
-------------------
A modality tells the information system what it is doing: it creates a
Performed Procedure Step with N-CREATE, status "IN PROGRESS" (PS3.4
F.7.2.1), updates it with N-SET while it is in progress and ends it with an
N-SET to "COMPLETED" or "DISCONTINUED" (PS3.4 F.7.2.2), after which the
instance may no longer be updated (PS3.4 F.7.2.2.3, Table F.7.2-2).

:class:`MPPSService` keeps the instances in memory, in a dict bounded by
``max_instances`` (past it N-CREATE answers 0213 Resource limitation,
PS3.7 10.1.5.1.6), and ``handle(request)`` is the service handler of
:mod:`dicomconf.services.base`: it yields one :class:`Reply`.

What an SCU must send is Table F.7.2-1, written once below as
:data:`RULES`: for each attribute its N-CREATE type (1: present with a
value, 2: present, may be empty, 3: optional), whether N-SET may carry it
(``None``: "Not allowed"), and its Final State type (what must hold when the
status becomes COMPLETED or DISCONTINUED).  Sequences carry the rules of
their items.  Each violation earns the status PS3.7 gives for it:

========================================  ======  =====================================
violation                                  status  clause
========================================  ======  =====================================
type 1 or 2 attribute absent               0120    PS3.7 10.1.5.1.6, Annex C (missing attribute)
type 1 attribute empty                     0121    PS3.7 Annex C (missing attribute value)
N-CREATE status other than IN PROGRESS     0106    PS3.4 F.7.2.1.3 (with an Attribute List)
status not an enumerated value             0106    PS3.3 C.4.14 (Enumerated Values)
Affected SOP Instance UID already exists   0111    PS3.7 10.1.5.1.6 (duplicate SOP instance)
N-SET of an attribute "Not allowed"        0105    Table F.7.2-1, PS3.7 10.1.3.1.9
N-SET of an unknown instance               0112    PS3.7 10.1.3.1.9 (no such SOP instance)
N-SET after COMPLETED / DISCONTINUED       0110    PS3.4 F.7.2.2.3, Table F.7.2-2 (Error ID A710)
final N-SET without its Final State keys   0120/1  Table F.7.2-1 "Final State", Note 2
instance store full                        0213    PS3.7 10.1.5.1.6 (resource limitation)
========================================  ======  =====================================

Failures carry an Error Comment (0000,0902); 0105, 0120 and 0121 list the
tags in Attribute Identifier List (0000,1005); 0106 returns the offending
attributes as the response's data set (the "Attribute List" of F.7.2.1.3).
A request refused changes nothing.  A scenario's :class:`Misbehaviour`
(status, delay, abort) shapes the reply.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.uid import UID_dictionary, generate_uid

from dicomconf.services.base import Exchange, Misbehaviour, Reply, Request
from dicomconf.ul.dimse import N_CREATE_RQ, N_SET_RQ

__all__ = [
    "COMPLETED",
    "DEFAULT_MAX_INSTANCES",
    "DISCONTINUED",
    "DUPLICATE_SOP_INSTANCE",
    "ERROR_ID_NO_LONGER_UPDATABLE",
    "INVALID_ATTRIBUTE_VALUE",
    "IN_PROGRESS",
    "MISSING_ATTRIBUTE",
    "MISSING_ATTRIBUTE_VALUE",
    "MPPS_SOP_CLASS",
    "NO_SUCH_ATTRIBUTE",
    "NO_SUCH_SOP_CLASS",
    "NO_SUCH_SOP_INSTANCE",
    "PROCESSING_FAILURE",
    "RESOURCE_LIMITATION",
    "RULES",
    "SUCCESS",
    "UNRECOGNIZED_OPERATION",
    "MPPSService",
    "Rule",
]

MPPS_SOP_CLASS = next(uid for uid, entry in UID_dictionary.items() if entry[4] == "ModalityPerformedProcedureStep")

# Performed Procedure Step Status (0040,0252), Enumerated Values (PS3.3 C.4.14).
IN_PROGRESS = "IN PROGRESS"
COMPLETED = "COMPLETED"
DISCONTINUED = "DISCONTINUED"
FINAL_STATES = frozenset({COMPLETED, DISCONTINUED})

# N-CREATE / N-SET statuses (PS3.7 10.1.5.1.6, 10.1.3.1.9; meanings in PS3.7 Annex C).
SUCCESS = 0x0000
NO_SUCH_ATTRIBUTE = 0x0105
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_SOP_INSTANCE = 0x0112
NO_SUCH_SOP_CLASS = 0x0118
MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121
UNRECOGNIZED_OPERATION = 0x0211
RESOURCE_LIMITATION = 0x0213
# PS3.4 F.7.2.2.4 Table F.7.2-2: N-SET on a step no longer IN PROGRESS.
ERROR_ID_NO_LONGER_UPDATABLE = 0xA710
NO_LONGER_UPDATABLE = "Performed Procedure Step Object may no longer be updated"

DEFAULT_MAX_INSTANCES = 10_000


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of PS3.4 Table F.7.2-1.

    ``create``: the N-CREATE type ("1", "2", "3"; a "1C" is checked as "3").
    ``set``: the N-SET type, None where the table says "Not allowed".
    ``final``: the Final State type ("1", "2") or None when the table gives none.
    ``items``: the rules of the sequence's items (their N-CREATE and N-SET
    types are the same in the table, and they apply whenever an item is sent).
    """

    keyword: str
    create: str
    set: str | None = None
    final: str | None = None
    items: tuple[Rule, ...] = ()

    @property
    def tag(self) -> int:
        return tag_for_keyword(self.keyword)


_REF = (Rule("ReferencedSOPClassUID", "1"), Rule("ReferencedSOPInstanceUID", "1"))
_CODE = (Rule("CodeValue", "3"), Rule("CodingSchemeDesignator", "3"), Rule("CodeMeaning", "3"))

# PS3.4 Table F.7.2-1 (SOP Common, Performed Procedure Step Relationship, Information, Image Acquisition
# Results).  Attributes the table does not list ("all other attributes ... 3/3") are accepted as they come.
RULES: tuple[Rule, ...] = (
    Rule("SpecificCharacterSet", "3", "3"),
    Rule("SOPClassUID", "3"),
    Rule("SOPInstanceUID", "3"),
    Rule("ScheduledStepAttributesSequence", "1", items=(
        Rule("StudyInstanceUID", "1"),
        Rule("ReferencedStudySequence", "2", items=_REF),
        Rule("AccessionNumber", "2"),
        Rule("RequestedProcedureID", "2"),
        Rule("RequestedProcedureDescription", "2"),
        Rule("ScheduledProcedureStepID", "2"),
        Rule("ScheduledProcedureStepDescription", "2"),
        Rule("ScheduledProtocolCodeSequence", "2", items=_CODE),
    )),
    Rule("PatientName", "2"),
    Rule("PatientID", "2"),
    Rule("PatientBirthDate", "2"),
    Rule("PatientSex", "2"),
    Rule("ReferencedPatientSequence", "2", items=_REF),
    Rule("PerformedStationAETitle", "1"),
    Rule("PerformedStationName", "2"),
    Rule("PerformedLocation", "2"),
    Rule("PerformedProcedureStepStartDate", "1"),
    Rule("PerformedProcedureStepStartTime", "1"),
    Rule("PerformedProcedureStepStatus", "1", "3", "1"),
    Rule("PerformedProcedureStepID", "1"),
    Rule("PerformedProcedureStepDescription", "2", "3"),
    Rule("PerformedProcedureTypeDescription", "2", "3"),
    Rule("ProcedureCodeSequence", "2", "3", items=_CODE),
    Rule("PerformedProcedureStepEndDate", "2", "3", "1"),
    Rule("PerformedProcedureStepEndTime", "2", "3", "1"),
    Rule("CommentsOnThePerformedProcedureStep", "3", "3"),
    Rule("PerformedProcedureStepDiscontinuationReasonCodeSequence", "3", "3", items=_CODE),
    Rule("Modality", "1"),
    Rule("StudyID", "2"),
    Rule("PerformedProtocolCodeSequence", "2", "3", items=_CODE),
    # Note 2 of the table: the Performed Series Sequence may not be empty at the final N-SET.
    Rule("PerformedSeriesSequence", "2", "3", "1", items=(
        Rule("PerformingPhysicianName", "2"),
        Rule("ProtocolName", "1"),
        Rule("OperatorsName", "2"),
        Rule("SeriesInstanceUID", "1"),
        Rule("SeriesDescription", "2"),
        Rule("RetrieveAETitle", "2"),
        Rule("ReferencedImageSequence", "2", items=_REF),
        Rule("ReferencedNonImageCompositeSOPInstanceSequence", "2", items=_REF),
    )),
)


@dataclass(slots=True)
class _Problem:
    """A violation found: its status, the tags concerned, a one-line comment."""

    status: int
    tags: list[int] = field(default_factory=list)
    comment: str = ""
    dataset: Dataset | None = None


def _empty(ds: Dataset, tag: int) -> bool:
    value = ds[tag].value
    return value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0)


def _check_types(ds: Dataset, rules: Iterable[Rule], column: str, where: str) -> _Problem | None:
    """Absent type 1/2 attributes → 0120, empty type 1 → 0121, recursing into sent items (Table F.7.2-1)."""
    missing: list[int] = []
    empty: list[int] = []
    names: list[str] = []
    for rule in rules:
        kind = getattr(rule, column) if column != "items" else rule.create
        tag = rule.tag
        if tag not in ds:
            if kind in ("1", "2"):
                missing.append(tag)
                names.append(where + rule.keyword)
            continue
        if kind == "1" and _empty(ds, tag):
            empty.append(tag)
            names.append(where + rule.keyword)
            continue
        if rule.items and ds[tag].VR == "SQ":
            for n, item in enumerate(ds[tag].value):
                inner = _check_types(item, rule.items, "items", f"{where}{rule.keyword}[{n}].")
                if inner is not None:
                    return inner
    if missing:
        return _Problem(MISSING_ATTRIBUTE, missing, "missing " + ", ".join(names))
    if empty:
        return _Problem(MISSING_ATTRIBUTE_VALUE, empty, "no value: " + ", ".join(names))
    return None


def _check_status_value(ds: Dataset, allowed: frozenset[str], why: str) -> _Problem | None:
    """Performed Procedure Step Status outside ``allowed`` → 0106 with the attribute as Attribute List."""
    value = ds.get("PerformedProcedureStepStatus")
    if value is None or str(value) in allowed:
        return None
    attr = Dataset()
    attr.PerformedProcedureStepStatus = value
    return _Problem(INVALID_ATTRIBUTE_VALUE, [tag_for_keyword("PerformedProcedureStepStatus")],
                    f"Performed Procedure Step Status {str(value)!r}: {why}", attr)


class MPPSService:
    """The Modality Performed Procedure Step SCP (PS3.4 F.7) over an in-memory, bounded store.

    ``misbehaviour`` (a :class:`Misbehaviour`) scripts a failure status, a
    delay or an abort for every request; it may be replaced at any time.
    """

    def __init__(self, *, max_instances: int = DEFAULT_MAX_INSTANCES, misbehaviour: Misbehaviour | None = None) -> None:
        if max_instances < 1:
            raise ValueError("max_instances must be at least 1")
        self.max_instances = max_instances
        self.misbehaviour = misbehaviour or Misbehaviour()
        self._instances: dict[str, Dataset] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ inspection

    def instances(self) -> dict[str, Dataset]:
        """A snapshot of the instances: SOP Instance UID → a copy of its attributes."""
        with self._lock:
            return {uid: _copy(ds) for uid, ds in self._instances.items()}

    def status_of(self, sop_instance_uid: str) -> str | None:
        """The Performed Procedure Step Status of an instance, or None when there is no such instance."""
        with self._lock:
            ds = self._instances.get(sop_instance_uid)
            return None if ds is None else str(ds.get("PerformedProcedureStepStatus", ""))

    # ------------------------------------------------------------------ the handler

    def handle(self, request: Request) -> Exchange:
        """Answer one N-CREATE-RQ or N-SET-RQ with one Reply (PS3.7 10.1.5, 10.1.3)."""
        refusal = self.misbehaviour.refusal()
        if refusal is not None:
            yield refusal
            return
        if request.sop_class_uid != MPPS_SOP_CLASS:
            reply = _failure(_Problem(NO_SUCH_SOP_CLASS, comment=f"not the MPPS SOP class: {request.sop_class_uid}"))
        elif request.command_field == N_CREATE_RQ:
            reply = self._create(request)
        elif request.command_field == N_SET_RQ:
            reply = self._set(request)
        else:
            reply = _failure(_Problem(UNRECOGNIZED_OPERATION,
                                      comment=f"MPPS takes N-CREATE and N-SET, not 0x{request.command_field:04X}"))
        yield self.misbehaviour.shape(reply)

    def _create(self, request: Request) -> Reply:
        """N-CREATE (PS3.4 F.7.2.1): Table F.7.2-1's N-CREATE column, status IN PROGRESS, a new UID."""
        ds = request.dataset if request.dataset is not None else Dataset()
        problem = _check_types(ds, RULES, "create", "") or _check_status_value(
            ds, frozenset({IN_PROGRESS}), "N-CREATE accepts only IN PROGRESS (PS3.4 F.7.2.1.3)")
        if problem is not None:
            return _failure(problem)
        uid = request.sop_instance_uid or generate_uid()
        with self._lock:
            if uid in self._instances:
                return _failure(_Problem(DUPLICATE_SOP_INSTANCE, comment=f"SOP instance {uid} already exists"))
            if len(self._instances) >= self.max_instances:
                return _failure(_Problem(RESOURCE_LIMITATION,
                                         comment=f"the SCP holds {self.max_instances} MPPS instances already"))
            stored = _copy(ds)
            stored.SOPClassUID = MPPS_SOP_CLASS
            stored.SOPInstanceUID = uid
            self._instances[uid] = stored
            attribute_list = _copy(stored)
        return Reply(SUCCESS, attribute_list, {"AffectedSOPInstanceUID": uid})

    def _set(self, request: Request) -> Reply:
        """N-SET (PS3.4 F.7.2.2): only while IN PROGRESS, only attributes N-SET may carry, final-state keys."""
        uid = request.sop_instance_uid
        ds = request.dataset if request.dataset is not None else Dataset()
        fields = {"AffectedSOPInstanceUID": uid} if uid else {}
        with self._lock:
            stored = self._instances.get(uid or "")
            if stored is None:
                return _failure(_Problem(NO_SUCH_SOP_INSTANCE, comment=f"no MPPS instance {uid}"))
            if str(stored.get("PerformedProcedureStepStatus", "")) != IN_PROGRESS:
                return _failure(_Problem(PROCESSING_FAILURE, comment=NO_LONGER_UPDATABLE), error_id=True, fields=fields)
            problem = self._set_problem(ds, stored)
            if problem is not None:
                return _failure(problem, fields=fields)
            for element in ds:
                stored[element.tag] = element
        return Reply(SUCCESS, None, fields)

    @staticmethod
    def _set_problem(ds: Dataset, stored: Dataset) -> _Problem | None:
        by_tag = {rule.tag: rule for rule in RULES}
        refused = [el.tag for el in ds if el.tag in by_tag and by_tag[el.tag].set is None]
        if refused:
            names = ", ".join(by_tag[t].keyword for t in refused)
            return _Problem(NO_SUCH_ATTRIBUTE, refused, f"not allowed in N-SET (PS3.4 Table F.7.2-1): {names}")
        sent = [rule for rule in RULES if rule.tag in ds]
        problem = _check_types(ds, sent, "set", "") or _check_status_value(
            ds, frozenset({IN_PROGRESS, COMPLETED, DISCONTINUED}), "not an enumerated value (PS3.3 C.4.14)")
        if problem is not None:
            return problem
        if str(ds.get("PerformedProcedureStepStatus", "")) in FINAL_STATES:
            merged = _copy(stored)
            for element in ds:
                merged[element.tag] = element
            final = [rule for rule in RULES if rule.final]
            problem = _check_types(merged, final, "final", "")
            if problem is not None:
                problem.comment = "final state: " + problem.comment
            return problem
        return None


def _copy(ds: Dataset) -> Dataset:
    """A copy deep enough that a caller's edits never reach the store (sequences rebuilt)."""
    out = Dataset()
    for element in ds:
        if element.VR == "SQ":
            out.add_new(element.tag, "SQ", [_copy(item) for item in element.value])
        else:
            out.add_new(element.tag, element.VR, element.value)
    return out


def _failure(problem: _Problem, *, error_id: bool = False, fields: dict | None = None) -> Reply:
    """A failure Reply: Error Comment (LO, 64 chars), Attribute Identifier List for 0105/0120/0121."""
    out = dict(fields or {})
    out["ErrorComment"] = problem.comment[:64]
    if error_id:
        out["ErrorID"] = ERROR_ID_NO_LONGER_UPDATABLE
    if problem.tags and problem.status in (NO_SUCH_ATTRIBUTE, MISSING_ATTRIBUTE, MISSING_ATTRIBUTE_VALUE):
        out["AttributeIdentifierList"] = list(problem.tags)
    return Reply(problem.status, problem.dataset, out)
