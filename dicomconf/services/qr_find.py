"""C-FIND for the Patient Root and Study Root Query/Retrieve Information Models (PS3.4 C.4.1, C.6.1, C.6.2).

Theory of operation
-------------------
:class:`QueryRetrieveFind` is a handler in the sense of
:mod:`dicomconf.services.base`: ``handle(request)`` returns a generator that
yields one Pending reply (FF00, or FF01 when a key was not supported) per
match, each carrying exactly the keys the identifier asked for (their values,
or empty), the Query/Retrieve Level, Retrieve AE Title when asked for, and
Specific Character Set ``ISO_IR 192`` when a value needs more than ASCII;
then the final reply, 0000.  Matches come in the index's insertion order.

Checks before any match (PS3.4 C.4.1.1.4 statuses, C.4.1.2.1):

=====================================================  ======  =============================
the request                                             status  with
=====================================================  ======  =============================
no identifier; no or unknown Query/Retrieve Level       A900    Offending Element, Error Comment
(Study Root has no PATIENT level, C.6.2)
a key of a level below the query level                  A900    Offending Element, Error Comment
hierarchical query (C.4.1.2.1) without a single value   C000    Offending Element, Error Comment
for the unique key of a level above
the index fails (SQLite error)                          A700    Error Comment
a C-CANCEL (``Cancel`` thrown at a yield)               FE00    -
=====================================================  ======  =============================

Relational queries (C.4.1.2.2) are allowed only when the SOP class's
extended negotiation accepted them: byte 1 of the service-class-application-
information (PS3.4 C.5.1.1); then the unique keys above the level are not
required.  Byte 2, combined date and time range matching (C.2.2.2.5.1), joins
a Date key and its Time key.  A key the index cannot place at a level
(a private or unknown attribute, at a level above IMAGE) is not supported:
it is returned empty and the pendings say FF01.

Two paths give the same answers.  :meth:`QueryRetrieveFind.handle` builds
each pending identifier as a pydicom data set (the candidate of
:meth:`~dicomconf.services.index.Index.find`, then the requested keys);
:meth:`QueryRetrieveFind.encoded`, which the reference SCP's driver calls,
writes it straight from the index row when
:func:`~dicomconf.services.find_wire.layout` allows (every key a column, the
SQL deciding, little endian, no misbehaviour scripted) and yields
:class:`~dicomconf.services.find_wire.EncodedReply` for it; a row with a
value the fast path does not write takes the general path.

Misbehaviour for scenarios: :class:`FindOptions` carries a
:class:`~dicomconf.services.base.Misbehaviour` (a failure status instead of
any match, a delay before each reply, an A-ABORT instead of the first one)
and ``abort_after`` (an A-ABORT in place of the pending after that many).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.uid import UID_dictionary

from dicomconf.services import find_wire
from dicomconf.services.base import Cancel, Exchange, Misbehaviour, Refused, Reply, Request, error_comment
from dicomconf.services.find_wire import EncodedReply, Layout
from dicomconf.services.index import (
    COLUMNS,
    LEVELS,
    SERIES_KEYWORDS,
    STUDY_KEYWORDS,
    UNIQUE_KEY,
    Index,
    level_of,
)
from dicomconf.services.index_query import Query
from dicomconf.services.matching import NOT_KEYS, key_kind, text_of

STATUS_SUCCESS = 0x0000
STATUS_PENDING = 0xFF00
STATUS_PENDING_WARNING = 0xFF01  # optional keys not supported (PS3.4 C.4.1.1.4)
STATUS_CANCEL = 0xFE00
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_IDENTIFIER_MISMATCH = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000

_BY_KEYWORD = {v[4]: uid for uid, v in UID_dictionary.items() if v[4]}
PATIENT_ROOT_FIND = _BY_KEYWORD["PatientRootQueryRetrieveInformationModelFind"]
STUDY_ROOT_FIND = _BY_KEYWORD["StudyRootQueryRetrieveInformationModelFind"]
# the levels of each information model (PS3.4 C.6.1.1, C.6.2.1)
MODEL_LEVELS = {PATIENT_ROOT_FIND: LEVELS, STUDY_ROOT_FIND: LEVELS[1:]}
RELATIONAL_BYTE = 0  # service-class-application-information byte 1: relational queries (PS3.4 C.5.1.1)
COMBINED_DATETIME_BYTE = 1  # byte 2: combined date and time range matching

_QR_LEVEL = 0x00080052
_RETRIEVE_AE = 0x00080054
_CHARSET = 0x00080005


@dataclass(frozen=True)
class FindOptions:
    """How the handler answers: the Retrieve AE Title it names, and scripted misbehaviour."""

    retrieve_ae: str | None = None  # None: the called AE title of the request
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)
    abort_after: int | None = None  # A-ABORT in place of the pending after this many


def _known_level(keyword: str, group: int) -> str | None:
    """The level the index keeps an attribute at, or None when it is only an instance's by default."""
    if keyword in COLUMNS or keyword in STUDY_KEYWORDS or keyword in SERIES_KEYWORDS or group == 0x0010:
        return level_of(keyword, group)
    return None


def negotiated(extended: bytes, byte: int) -> bool:
    """Whether byte ``byte`` (0-based) of the service-class-application-information is 1 (PS3.4 C.5.1.1)."""
    return len(extended) > byte and extended[byte] == 1


class QueryRetrieveFind:
    """The C-FIND SCP of the Patient Root and Study Root models over an :class:`Index` (PS3.4 C.4.1.3; the requests it checks against C.4.1.2, the SCU's rules)."""

    sop_classes = tuple(MODEL_LEVELS)

    def __init__(self, index: Index, options: FindOptions | None = None) -> None:
        self.index = index
        self.options = options or FindOptions()

    def __call__(self, request: Request) -> Exchange:
        return self.handle(request)

    def handle(self, request: Request, *, encoded: bool = False) -> Exchange:
        """The exchange for one C-FIND-RQ (PS3.7 9.1.2): pendings per match, then the final reply.

        ``encoded``: pendings the fast path can write come as
        :class:`~dicomconf.services.find_wire.EncodedReply` (see :meth:`encoded`).
        """
        shape = self.options.misbehaviour.shape
        refusal = self.options.misbehaviour.refusal()
        if refusal is not None:
            yield refusal
            return
        try:
            plan = self._plan(request)
        except Refused as refused:
            yield shape(refused.reply)
            return
        sent = 0
        try:
            fast = self._layout(plan, request) if encoded else None
            if fast is not None:
                query, wire = fast
                for row in self.index.rows(query):
                    data = wire.encode(row)
                    if data is None:  # a value the fast path leaves to pydicom
                        yield Reply(plan.pending, self._response(plan, query.candidate(row), request))
                    else:
                        yield EncodedReply(plan.pending, data)
            else:
                for candidate in self.index.find(plan.level, plan.match, combine_datetime=plan.combined):
                    reply = Reply(plan.pending, self._response(plan, candidate, request))
                    if self.options.abort_after is not None and sent >= self.options.abort_after:
                        yield Reply(plan.pending, abort=True)
                        return
                    yield shape(reply)
                    sent += 1
        except Cancel:
            yield shape(Reply(STATUS_CANCEL))
            return
        except sqlite3.Error as exc:
            yield shape(Reply(STATUS_OUT_OF_RESOURCES, fields={"ErrorComment": error_comment(f"index: {exc}")}))
            return
        try:
            yield shape(Reply(STATUS_SUCCESS))
        except Cancel:  # a C-CANCEL after the last match: the final reply is already given
            return

    def encoded(self, request: Request) -> Exchange:
        """:meth:`handle` for a driver that takes :class:`~dicomconf.services.find_wire.EncodedReply`.

        The same replies, in the same order; a pending whose identifier the fast path
        (:mod:`dicomconf.services.find_wire`) can write comes as its bytes instead of a data set.
        Scripted misbehaviour always takes the general path.
        """
        return self.handle(request, encoded=True)

    def _layout(self, plan: _Plan, request: Request) -> tuple[Query, Layout] | None:
        """The index query and the fast path's layout for ``plan``, or None for the general path."""
        options = self.options
        if options.abort_after is not None or options.misbehaviour != Misbehaviour() or plan.pending != STATUS_PENDING:
            return None
        query = self.index.query(plan.level, plan.match, combine_datetime=plan.combined)
        wire = find_wire.layout(plan.identifier, query, plan.level, options.retrieve_ae or request.called_ae or "",
                                request.transfer_syntax)
        return None if wire is None else (query, wire)

    # -------------------------------------------------------------- checks

    def _plan(self, request: Request) -> _Plan:
        levels = MODEL_LEVELS.get(request.sop_class_uid)
        if levels is None:
            raise Refused(STATUS_UNABLE_TO_PROCESS, f"{request.sop_class_uid} is not a Q/R FIND SOP class")
        identifier = request.dataset
        if identifier is None:
            raise Refused(STATUS_IDENTIFIER_MISMATCH, "the C-FIND-RQ has no identifier")
        level = text_of(identifier.get(_QR_LEVEL).value if _QR_LEVEL in identifier else "").strip().upper()
        if level not in levels:
            what = "no Query/Retrieve Level" if not level else f"Query/Retrieve Level {level!r} is not one of " \
                f"{', '.join(levels)} of this model (PS3.4 C.6)"
            raise Refused(STATUS_IDENTIFIER_MISMATCH, what, _QR_LEVEL)
        relational = negotiated(request.extended, RELATIONAL_BYTE)
        depth = LEVELS.index(level)
        match = Dataset()
        unsupported = False
        for elem in identifier:
            if elem.tag in NOT_KEYS or elem.tag.element == 0:
                continue
            known = _known_level(elem.keyword, elem.tag.group)
            if known is None:
                known = "IMAGE" if level == "IMAGE" else None
            if known is None:
                unsupported = True  # returned empty, not matched (FF01)
                continue
            if LEVELS.index(known) > depth:
                raise Refused(STATUS_IDENTIFIER_MISMATCH, f"{elem.keyword or elem.tag} is a key of the {known} "
                               f"level, below the query level {level} (PS3.4 C.4.1.2.1)", elem.tag)
            match.add(elem)
        if not relational:
            for above in levels[: levels.index(level)]:
                keyword = UNIQUE_KEY[above]
                elem = identifier.get(tag_for_keyword(keyword))
                if elem is None or key_kind(elem) != "single":
                    how = "is missing" if elem is None else "has no single value"
                    raise Refused(STATUS_UNABLE_TO_PROCESS,
                                   f"hierarchical query at {level}: the unique key {keyword} of the {above} level "
                                   f"{how} (PS3.4 C.4.1.2.1; relational queries were not negotiated)",
                                   tag_for_keyword(keyword))
        return _Plan(level, match, identifier, STATUS_PENDING_WARNING if unsupported else STATUS_PENDING,
                     negotiated(request.extended, COMBINED_DATETIME_BYTE))

    # -------------------------------------------------------------- responses

    def _response(self, plan: _Plan, candidate: Dataset, request: Request) -> Dataset:
        """The identifier of one match: the requested keys, with values where the candidate has them."""
        out = Dataset()
        for elem in plan.identifier:
            tag = elem.tag
            if tag == _CHARSET or tag.element == 0:
                continue
            if tag == _QR_LEVEL:
                out.add(DataElement(tag, "CS", plan.level))
            elif tag == _RETRIEVE_AE:
                out.add(DataElement(tag, "AE", self.options.retrieve_ae or request.called_ae or ""))
            elif tag in candidate:
                out.add(_requested(elem, candidate[tag]))
            else:
                out.add(DataElement(tag, elem.VR, [] if elem.VR == "SQ" else None))
        if _needs_unicode(out):
            out.SpecificCharacterSet = "ISO_IR 192"
        return out


def _requested(key: DataElement, have: DataElement) -> DataElement:
    """A candidate's element as returned: a sequence keeps only the keys of the request's item (C.2.2.2.6)."""
    if key.VR != "SQ" or have.VR != "SQ" or not key.value or not len(key.value[0]):
        return have
    wanted = [e.tag for e in key.value[0]]
    items = []
    for item in have.value:
        kept = Dataset()
        for tag in wanted:
            if tag in item:
                kept.add(item[tag])
            else:
                kept.add(DataElement(tag, key.value[0][tag].VR, None))
        items.append(kept)
    return DataElement(have.tag, "SQ", items)


def _needs_unicode(ds: Dataset) -> bool:
    """Whether a value of ``ds`` (or of its sequence items) is not ASCII: Specific Character Set is needed."""
    for elem in ds:
        if elem.VR == "SQ":
            needs = any(_needs_unicode(item) for item in elem.value)
        else:
            needs = not text_of(elem.value).isascii()
        if needs:
            return True
    return False



@dataclass
class _Plan:
    level: str
    match: Dataset  # the keys to match
    identifier: Dataset  # the whole request, for the response's keys
    pending: int
    combined: bool



def handlers(index: Index, options: FindOptions | None = None) -> dict[str, QueryRetrieveFind]:
    """SOP class UID -> handler, for a driver's dispatch table."""
    handler = QueryRetrieveFind(index, options)
    return {uid: handler for uid in MODEL_LEVELS}


__all__ = [
    "MODEL_LEVELS",
    "PATIENT_ROOT_FIND",
    "STUDY_ROOT_FIND",
    "FindOptions",
    "QueryRetrieveFind",
    "handlers",
    "negotiated",
]
