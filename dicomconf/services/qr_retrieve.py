"""C-MOVE and C-GET for the Patient Root and Study Root Query/Retrieve Information Models (PS3.4 C.4.2, C.4.3).

Theory of operation
-------------------
:class:`QueryRetrieveMove` and :class:`QueryRetrieveGet` are handlers in the
sense of :mod:`dicomconf.services.base`.  For one request they:

1. read the identifier (PS3.4 C.4.2.2.1, C.4.3.2.1): the Query/Retrieve
   Level, the unique key of that level (one UID, or a list of UIDs; PatientID
   at the PATIENT level) and, unless relational retrieval was negotiated
   (PS3.4 C.5.1.1, extended negotiation byte 1), a single unique key for each
   level above; other keys are not matched (C.4.2.1.4.1 says the SCU sends
   none, and a lenient acceptor ignores them);
2. find the instances below those entities in the index;
3. yield one :class:`~dicomconf.services.base.SubOperation` per instance
   (C-MOVE: to the Move Destination, which must be a configured AE; C-GET: on
   the same association), counting each C-STORE's status: 0000 completed,
   Bxxx warning, anything else (or not attempted) failed (PS3.4 C.4.2.3.1);
4. after each sub-operation but the last, a Pending reply (FF00) with the
   Number of Remaining, Completed, Failed and Warning Sub-operations;
5. the final reply: 0000 when all completed, B000 when one or more failed or
   warned, A702 when none could be performed; the Failed SOP Instance UID
   List (0008,0058) in the identifier when any failed (C.4.2.1.3.1).

Statuses before any sub-operation (PS3.4 Table C.4-2 and C.4-3):

==========================================================  ======
the request                                                  status
==========================================================  ======
no identifier; unknown level; no unique key at the level     A900
hierarchical retrieve without a single unique key above      C000
unknown Move Destination (C-MOVE only)                       A801
the index fails                                              A701
==========================================================  ======

A C-CANCEL (``Cancel`` thrown at a yield) ends with FE00, the counts so far,
the Number of Remaining Sub-operations and the Failed SOP Instance UID List
of those that failed or were not attempted.  Scripted misbehaviour is the
common :class:`~dicomconf.services.base.Misbehaviour`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Container

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.uid import UID_dictionary

from dicomconf.services.base import Cancel, Exchange, Misbehaviour, Refused, Reply, Request, SubOperation, error_comment
from dicomconf.services.index import LEVELS, UNIQUE_KEY, Index, Located
from dicomconf.services.matching import key_kind, text_of
from dicomconf.services.qr_find import RELATIONAL_BYTE, negotiated

STATUS_SUCCESS = 0x0000
STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_WARNING = 0xB000  # sub-operations complete, one or more failures or warnings
STATUS_UNABLE_TO_CALCULATE = 0xA701  # out of resources: unable to calculate number of matches
STATUS_UNABLE_TO_PERFORM = 0xA702  # out of resources: unable to perform sub-operations
STATUS_DESTINATION_UNKNOWN = 0xA801
STATUS_IDENTIFIER_MISMATCH = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000

_BY_KEYWORD = {v[4]: uid for uid, v in UID_dictionary.items() if v[4]}
PATIENT_ROOT_MOVE = _BY_KEYWORD["PatientRootQueryRetrieveInformationModelMove"]
STUDY_ROOT_MOVE = _BY_KEYWORD["StudyRootQueryRetrieveInformationModelMove"]
PATIENT_ROOT_GET = _BY_KEYWORD["PatientRootQueryRetrieveInformationModelGet"]
STUDY_ROOT_GET = _BY_KEYWORD["StudyRootQueryRetrieveInformationModelGet"]
MOVE_LEVELS = {PATIENT_ROOT_MOVE: LEVELS, STUDY_ROOT_MOVE: LEVELS[1:]}
GET_LEVELS = {PATIENT_ROOT_GET: LEVELS, STUDY_ROOT_GET: LEVELS[1:]}

_QR_LEVEL = 0x00080052


@dataclass(frozen=True)
class RetrieveOptions:
    """Scripted misbehaviour, and the bound on the instances one request may retrieve."""

    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)
    max_instances: int = 100_000  # more matches: A701, nothing sent (PS3.4 Table C.4-2)


class _Retrieve:
    """What C-MOVE and C-GET share; ``levels`` maps the SOP classes to their models' levels."""

    levels: dict[str, tuple[str, ...]] = {}
    name = "C-GET"

    def __init__(self, index: Index, options: RetrieveOptions | None = None) -> None:
        self.index = index
        self.options = options or RetrieveOptions()

    @property
    def sop_classes(self) -> tuple[str, ...]:
        return tuple(self.levels)

    def __call__(self, request: Request) -> Exchange:
        return self.handle(request)

    def destination(self, request: Request) -> tuple[str | None, Reply | None]:
        return None, None

    def handle(self, request: Request) -> Exchange:
        """The exchange for one retrieve request (PS3.4 C.4.2.3, C.4.3.3)."""
        shape = self.options.misbehaviour.shape
        refusal = self.options.misbehaviour.refusal()
        if refusal is not None:
            yield refusal
            return
        destination, refused = self.destination(request)
        if refused is None:
            try:
                instances = self._instances(request)
            except Refused as exc:
                refused = exc.reply
            except sqlite3.Error as exc:
                refused = Reply(STATUS_UNABLE_TO_CALCULATE, fields={"ErrorComment": error_comment(f"index: {exc}")})
        if refused is not None:
            yield shape(refused)
            return
        completed = failed = warning = 0
        failed_uids: list[str] = []
        total = len(instances)
        try:
            for done, found in enumerate(instances, 1):
                status = yield SubOperation(found.sop_class_uid, found.sop_instance_uid, found.path or "",
                                            destination=destination)
                if status == 0x0000:
                    completed += 1
                elif status is not None and status >> 12 == 0xB:
                    warning += 1
                else:
                    failed += 1
                    failed_uids.append(found.sop_instance_uid)
                if done < total:
                    yield shape(Reply(STATUS_PENDING, fields=_counts(completed, failed, warning, total - done)))
        except Cancel:
            not_sent = [i.sop_instance_uid for i in instances[completed + failed + warning:]]
            yield shape(Reply(STATUS_CANCEL, _failed_list(failed_uids + not_sent),
                              _counts(completed, failed, warning, total - completed - failed - warning)))
            return
        if failed and not completed and not warning:
            status = STATUS_UNABLE_TO_PERFORM
        elif failed or warning:
            status = STATUS_WARNING
        else:
            status = STATUS_SUCCESS
        try:
            yield shape(Reply(status, _failed_list(failed_uids) if failed else None,
                              _counts(completed, failed, warning)))
        except Cancel:
            return  # the last sub-operation had ended: the final reply is already given

    def _instances(self, request: Request) -> list[Located]:
        """The stored instances the identifier names (PS3.4 C.4.2.2.1): checked, found, located."""
        levels = self.levels.get(request.sop_class_uid)
        if levels is None:
            raise Refused(STATUS_UNABLE_TO_PROCESS, f"{request.sop_class_uid} is not a {self.name} SOP class")
        identifier = request.dataset
        if identifier is None:
            raise Refused(STATUS_IDENTIFIER_MISMATCH, f"the {self.name}-RQ has no identifier")
        level = text_of(identifier.get(_QR_LEVEL).value if _QR_LEVEL in identifier else "").strip().upper()
        if level not in levels:
            what = "no Query/Retrieve Level" if not level else f"Query/Retrieve Level {level!r} is not one of " \
                f"{', '.join(levels)} of this model (PS3.4 C.6)"
            raise Refused(STATUS_IDENTIFIER_MISMATCH, what, _QR_LEVEL)
        keys = Dataset()
        keyword = UNIQUE_KEY[level]
        elem = identifier.get(tag_for_keyword(keyword))
        if elem is None or key_kind(elem) not in ("single", "uid_list"):
            raise Refused(STATUS_IDENTIFIER_MISMATCH, f"the unique key {keyword} of the {level} level is "
                           f"{'missing' if elem is None else 'not a value or a list of UIDs'} (PS3.4 C.4.2.2.1)",
                           tag_for_keyword(keyword))
        keys.add(elem)
        relational = negotiated(request.extended, RELATIONAL_BYTE)
        for above in levels[: levels.index(level)]:
            above_key = UNIQUE_KEY[above]
            above_elem = identifier.get(tag_for_keyword(above_key))
            if above_elem is not None and key_kind(above_elem) == "single":
                keys.add(above_elem)
            elif not relational:
                raise Refused(STATUS_UNABLE_TO_PROCESS, f"hierarchical retrieve at {level}: the unique key "
                               f"{above_key} of the {above} level has no single value (PS3.4 C.4.2.2.1; "
                               "relational retrieval was not negotiated)", tag_for_keyword(above_key))
        found: list[Located] = []
        for candidate in self.index.find("IMAGE", keys):
            located = self.index.locate(str(candidate.SOPInstanceUID))
            if located is not None:
                found.append(located)
                if len(found) > self.options.max_instances:
                    raise Refused(STATUS_UNABLE_TO_CALCULATE, f"more than {self.options.max_instances} instances "
                                   "match: retrieve a smaller set")
        return found


class QueryRetrieveMove(_Retrieve):
    """The C-MOVE SCP (PS3.4 C.4.2.3): sub-operations to a configured Move Destination."""

    levels = MOVE_LEVELS
    name = "C-MOVE"

    def __init__(self, index: Index, destinations: Container[str], options: RetrieveOptions | None = None) -> None:
        super().__init__(index, options)
        self.destinations = destinations

    def destination(self, request: Request) -> tuple[str | None, Reply | None]:
        """The Move Destination (0000,0600), or the A801 refusal of an unknown one (PS3.4 C.4.2.1.5)."""
        name = text_of(request.command.get("MoveDestination", "")).strip()
        if not name or name not in self.destinations:
            return None, Reply(STATUS_DESTINATION_UNKNOWN,
                               fields={"ErrorComment": error_comment(f"move destination {name!r} is not configured")})
        return name, None


class QueryRetrieveGet(_Retrieve):
    """The C-GET SCP (PS3.4 C.4.3.3): C-STOREs on the same association (PS3.7 D.3.3.4 roles)."""

    levels = GET_LEVELS
    name = "C-GET"


def _counts(completed: int, failed: int, warning: int, remaining: int | None = None) -> dict:
    """The sub-operation counts of a C-MOVE/C-GET response (PS3.7 9.3.4.2, 9.3.3.2)."""
    out = {"NumberOfCompletedSuboperations": completed, "NumberOfFailedSuboperations": failed,
           "NumberOfWarningSuboperations": warning}
    if remaining is not None:
        out["NumberOfRemainingSuboperations"] = remaining
    return out


def _failed_list(uids: list[str]) -> Dataset | None:
    """The identifier of a response with failures: Failed SOP Instance UID List (PS3.4 C.4.2.1.3.1)."""
    if not uids:
        return None
    ds = Dataset()
    ds.FailedSOPInstanceUIDList = uids if len(uids) > 1 else uids[0]
    return ds




def handlers(index: Index, destinations: Container[str], options: RetrieveOptions | None = None) -> dict:
    """SOP class UID -> handler for the four retrieve SOP classes, for a driver's dispatch table."""
    move = QueryRetrieveMove(index, destinations, options)
    get = QueryRetrieveGet(index, options)
    return {**{uid: move for uid in MOVE_LEVELS}, **{uid: get for uid in GET_LEVELS}}


__all__ = ["GET_LEVELS", "MOVE_LEVELS", "PATIENT_ROOT_GET", "PATIENT_ROOT_MOVE", "QueryRetrieveGet",
           "QueryRetrieveMove", "RetrieveOptions", "STUDY_ROOT_GET", "STUDY_ROOT_MOVE", "handlers"]
