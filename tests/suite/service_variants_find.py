"""Broken reference SCPs for the C-FIND scenarios (PS3.4 C.2.2.2, C.4.1, C.6): each breaks one rule.

Theory of operation
-------------------
Every variant wraps the reference SCP's Patient Root and Study Root FIND handlers
(:data:`variant_kit.FINDS`) the way a real PACS gets the rule wrong, in one of three places:

* the request it reads (:func:`_reading`): the identifier or the accepted extended negotiation
  changed before the correct handler sees it, e.g. a UID list cut to its first UID, a lower-case
  ID folded to upper case, relational queries assumed whatever was negotiated;
* the pending identifiers it writes (:func:`_pendings`): a match dropped (wild cards taken
  literally, range ends excluded, an empty sequence item
  taken as "must have an item") or an identifier changed (Query/Retrieve Level left out,
  Specific Character Set left out, universal keys left empty);
* the statuses it sends (:func:`variant_kit.rewriting` directly): Success for each match,
  a failure for no match, no final response.

Names start with ``find-`` (unique across the three service tables); each factory's docstring
cites the clause it breaks, and each :class:`Variant` names the must-level scenarios that fail on it.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Callable

from pydicom import Dataset
from pydicom.dataelem import DataElement
from variant_kit import FINDS, Variant, replacing, replies, rewriting

from dicomconf.services.base import Reply, Request

PENDING = (0xFF00, 0xFF01)
_TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_RANGE_VRS = frozenset({"DA", "TM", "DT"})
# Unique Keys of the levels above each Query/Retrieve Level (PS3.4 C.6.1.1, C.6.2.1)
_ABOVE = {"PATIENT": (), "STUDY": ("PatientID",), "SERIES": ("PatientID", "StudyInstanceUID"),
          "IMAGE": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")}
_CHARSET = 0x00080005
_NOT_KEYS = frozenset({0x00080005, 0x00080052, 0x00080054})  # Specific Character Set, Q/R Level, Retrieve AE Title


# ---------------------------------------------------------------- building blocks


def _reading(change: Callable[[Request], Request]) -> Callable:
    """A ``make`` for :func:`variant_kit.replacing`: the correct handler, given ``change(request)``."""

    def make(original):
        return lambda request: original(change(request))

    return make


def _identifier(request: Request, change: Callable[[Dataset], None]) -> Request:
    """``request`` with a copy of its identifier passed through ``change`` (which edits it in place)."""
    if request.dataset is None:
        return request
    ds = copy.deepcopy(request.dataset)
    change(ds)
    return dataclasses.replace(request, dataset=ds)


def _pendings(change: Callable[[Dataset, Dataset], Dataset | None]) -> Callable:
    """A ``make``: the correct handler, each pending identifier passed through
    ``change(identifier, request identifier)``: a data set to send instead, or None to drop the match."""

    def on_reply(reply: Reply, request: Request) -> Reply | None:
        if reply.status not in PENDING or reply.dataset is None or request.dataset is None:
            return reply
        changed = change(copy.deepcopy(reply.dataset), request.dataset)
        return None if changed is None else dataclasses.replace(reply, dataset=changed)

    return lambda original: rewriting(original, replies(on_reply))


def _keys(request: Dataset, vrs: frozenset[str]) -> list[tuple[int, str]]:
    """(tag, value) of the request's single-valued keys of ``vrs`` that carry a value."""
    out = []
    for elem in request:
        if elem.VR in vrs and elem.VM == 1 and elem.value not in (None, ""):
            out.append((elem.tag, str(elem.value)))
    return out


def _value(identifier: Dataset, tag: int) -> str:
    elem = identifier.get(tag)
    return "" if elem is None or elem.value is None else str(elem.value).rstrip(" \0")


def _level(request: Dataset) -> str:
    elem = request.get(0x00080052)
    return "" if elem is None or elem.value is None else str(elem.value).strip().upper()


# ---------------------------------------------------------------- matching (PS3.4 C.2.2.2)


def wildcard_literal() -> Callable:
    """PS3.4 C.2.2.2.4: "*" and "?" in a text key compared as plain characters, so a match must hold
    the very string asked for (a PACS that passes the key to an SQL ``=``)."""

    def change(found: Dataset, request: Dataset) -> Dataset | None:
        for tag, asked in _keys(request, _TEXT_VRS):
            if ("*" in asked or "?" in asked) and _value(found, tag) != asked:
                return None
        return found

    return _pendings(change)


def range_bounds_exclusive() -> Callable:
    """PS3.4 C.2.2.2.5.1-C.2.2.2.5.2: date and time ranges taken with their ends excluded
    (``<`` and ``>`` where the standard says "inclusive", "prior to and including", "<date1> and subsequent")."""

    def change(found: Dataset, request: Dataset) -> Dataset | None:
        for tag, asked in _keys(request, _RANGE_VRS):
            if "-" in asked:
                low, _, high = (part.strip() for part in asked.partition("-"))
                have = _value(found, tag)
                if have and have in (low, high):
                    return None
        return found

    return _pendings(change)


def range_literal() -> Callable:
    """PS3.4 C.2.2.2.5: Range Matching not supported: "<date1>-<date2>" compared as a single value,
    so no stored date matches it."""

    def change(found: Dataset, request: Dataset) -> Dataset | None:
        for tag, asked in _keys(request, _RANGE_VRS):
            if "-" in asked and _value(found, tag) != asked:
                return None
        return found

    return _pendings(change)


def uid_list_first_only() -> Callable:
    """PS3.4 C.2.2.2.2, C.2.2.1.1: a List of UID key reduced to its first UID (a PACS that reads
    a UI key as one value), so the other UIDs of the list generate no match."""

    def first(ds: Dataset) -> None:
        for elem in ds:
            if elem.VR == "UI" and elem.VM > 1:
                elem.value = elem.value[0]

    return _reading(lambda request: _identifier(request, first))


def case_insensitive() -> Callable:
    """PS3.4 C.2.2.2.1: Single Value Matching of LO, SH, CS and AE keys made case-insensitive (a
    database collation that folds case), simulated by folding the request's value to upper case."""

    def fold(ds: Dataset) -> None:
        for elem in ds:
            if elem.VR in ("AE", "CS", "LO", "SH") and isinstance(elem.value, str):
                elem.value = elem.value.upper()

    return _reading(lambda request: _identifier(request, fold))


def patient_id_not_matched() -> Callable:
    """PS3.4 C.2.2.1.2, C.2.2.2.1: Patient ID, a Required Key, not supported for matching: its value is
    ignored (as if zero length) and every patient's entities match; the stored value still comes back."""

    def ignore(ds: Dataset) -> None:
        elem = ds.get(0x00100020)
        if elem is not None and elem.value and not any(c in str(elem.value) for c in "*?"):
            elem.value = ""

    return _reading(lambda request: _identifier(request, ignore))


def combined_datetime_always() -> Callable:
    """PS3.4 C.2.2.2.5.4, C.4.1.3.2: a Date range and a Time range always joined into one date-time
    range, as if combined datetime matching (byte 2 of C.5.1.1) had been negotiated."""

    def force(request: Request) -> Request:
        extended = bytearray(request.extended.ljust(2, b"\0"))
        extended[1] = 1
        return dataclasses.replace(request, extended=bytes(extended))

    return _reading(force)


def sequence_key_required() -> Callable:
    """PS3.4 C.2.2.2.6: a sequence key with an empty item taken as "the entity must have an item" instead
    of matching every entity (a PACS that joins the sequence's table with an inner join)."""

    def change(found: Dataset, request: Dataset) -> Dataset | None:
        for elem in request:
            if elem.VR == "SQ" and elem.value and (elem.tag not in found or not found[elem.tag].value):
                return None
        return found

    return _pendings(change)


# ---------------------------------------------------------------- hierarchy and negotiation (PS3.4 C.4.1.3)


def relational_always() -> Callable:
    """PS3.4 C.4.1.3.2: relational queries performed although not negotiated: the Unique Keys of the
    levels above may be missing and keys of any level match (byte 1 of C.5.1.1 taken as 1)."""

    def force(request: Request) -> Request:
        extended = bytearray(request.extended.ljust(1, b"\0"))
        extended[0] = 1
        return dataclasses.replace(request, extended=bytes(extended))

    return _reading(force)


def relational_never() -> Callable:
    """PS3.4 C.4.1.3.2.1: relational queries agreed in the A-ASSOCIATE-AC but the query still run
    hierarchically (a PACS that echoes the extended negotiation without acting on it)."""
    return _reading(lambda request: dataclasses.replace(request, extended=b""))


def unknown_level_as_study() -> Callable:
    """PS3.4 C.4.1.3.1, C.4.1.1.3.1: a missing or unknown Query/Retrieve Level answered as a STUDY-level
    query instead of with a failure status (a lenient PACS defaulting the level)."""

    def default(ds: Dataset) -> None:
        if _level(ds) not in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
            ds.QueryRetrieveLevel = "STUDY"

    return _reading(lambda request: _identifier(request, default))


# ---------------------------------------------------------------- response identifiers (PS3.4 C.4.1.1.3.2)


def level_not_returned() -> Callable:
    """PS3.4 C.4.1.1.3.2: pending identifiers without the Query/Retrieve Level (0008,0052)."""

    def change(found: Dataset, request: Dataset) -> Dataset:
        if 0x00080052 in found:
            del found[0x00080052]
        return found

    return _pendings(change)


def higher_unique_keys_not_returned() -> Callable:
    """PS3.4 C.4.1.3.1.1: pending identifiers without the Unique Keys of the levels above the query
    level (a PACS that returns only the keys of the level it searched)."""

    def change(found: Dataset, request: Dataset) -> Dataset:
        for keyword in _ABOVE.get(_level(request), ()):
            if keyword in found:
                delattr(found, keyword)
        return found

    return _pendings(change)


def universal_keys_empty() -> Callable:
    """PS3.4 C.4.1.1.3.2, C.2.2.2.3: the keys asked with zero length come back zero length although
    the entity has a value (a PACS that returns only the keys it matched on)."""

    def change(found: Dataset, request: Dataset) -> Dataset:
        for elem in request:
            if elem.tag in found and elem.VR != "SQ" and elem.value in (None, "") and elem.tag not in _NOT_KEYS:
                found[elem.tag].value = None
        return found

    return _pendings(change)


def charset_not_returned() -> Callable:
    """PS3.4 C.4.1.1.3.2: Specific Character Set left out of a pending identifier whose values are
    UTF-8 (the bytes sent as they are stored, the character set forgotten)."""

    def change(found: Dataset, request: Dataset) -> Dataset:
        if _CHARSET not in found:
            return found
        out = Dataset()
        for elem in found:
            if elem.tag == _CHARSET:
                continue
            if isinstance(elem.value, str) and not elem.value.isascii():
                out.add(DataElement(elem.tag, elem.VR, elem.value.encode("utf-8")))
            else:
                out.add(elem)
        return out

    return _pendings(change)


# ---------------------------------------------------------------- statuses (PS3.4 C.4.1.3.1, C.4.1.1.4)


def _statuses(change: Callable[[Reply, list], Reply | None]) -> Callable:
    """A ``make``: the correct handler with each reply passed through ``change(reply, seen)``
    (``seen``: the statuses of the replies before it)."""

    def make(original):
        def handler(request: Request):
            seen: list[int] = []

            def on_reply(reply: Reply, _request: Request) -> Reply | None:
                out = change(reply, seen)
                seen.append(reply.status)
                return out

            return rewriting(original, replies(on_reply))(request)

        return handler

    return make


def pending_as_success() -> Callable:
    """PS3.4 C.4.1.3.1: each match sent with status Success (0000) instead of Pending, its identifier
    attached, and no final response after them."""

    def change(reply: Reply, seen: list) -> Reply | None:
        if reply.status in PENDING:
            return dataclasses.replace(reply, status=0x0000)
        return None if seen else reply

    return _statuses(change)


def no_match_as_failure() -> Callable:
    """PS3.4 C.4.1.3.1: a query with no match answered with a failure (C001) instead of Success."""

    def change(reply: Reply, seen: list) -> Reply:
        if reply.status == 0x0000 and not seen:
            return Reply(0xC001, fields={"ErrorComment": "no match"})
        return reply

    return _statuses(change)


def no_final_response() -> Callable:
    """PS3.4 C.4.1.3.1, PS3.7 9.1.2: the final Success response never sent (the pendings are)."""
    return _statuses(lambda reply, seen: None if reply.status == 0x0000 else reply)


def _find(make: Callable, *scenarios: str) -> Variant:
    return Variant(None, scenarios, handlers=replacing(FINDS, make))


VARIANTS: dict[str, Variant] = {
    "find-wildcard-literal": _find(wildcard_literal(), "services.find-study-wildcard",
                                   "services.find-accession-wildcard-star", "services.find-patient-root-every-level"),
    "find-range-bounds-exclusive": _find(range_bounds_exclusive(), "services.find-study-date-range-inclusive",
                                         "services.find-study-date-open-start", "services.find-study-date-open-end",
                                         "services.find-study-time-range"),
    "find-range-literal": _find(range_literal(), "services.find-study-date-range",
                                "services.find-study-date-range-inclusive", "services.find-study-time-range",
                                "services.find-date-time-ranges-apart-without-negotiation"),
    "find-sequence-key-required": _find(sequence_key_required(), "services.find-empty-sequence-key-matches-all"),
    "find-uid-list-first-only": _find(uid_list_first_only(), "services.find-study-uid-list"),
    "find-case-insensitive": _find(case_insensitive(), "services.find-single-value-case-sensitive"),
    "find-patient-id-not-matched": _find(patient_id_not_matched(), "services.find-patient-id-single-value"),
    "find-combined-datetime-always": _find(combined_datetime_always(),
                                           "services.find-date-time-ranges-apart-without-negotiation"),
    "find-relational-always": _find(relational_always(), "services.find-relational-not-negotiated",
                                    "services.find-missing-higher-unique-key-not-matched"),
    "find-relational-never": _find(relational_never(), "services.find-relational-when-negotiated"),
    "find-unknown-level-as-study": _find(unknown_level_as_study(), "services.find-unknown-or-missing-level-refused"),
    "find-level-not-returned": _find(level_not_returned(), "services.find-pending-identifier-level-and-unique-key",
                                     "services.find-study-root-series-hierarchical",
                                     "services.find-patient-root-every-level"),
    "find-higher-unique-keys-not-returned": _find(higher_unique_keys_not_returned(),
                                                  "services.find-study-root-series-hierarchical",
                                                  "services.find-patient-root-every-level"),
    "find-universal-keys-empty": _find(universal_keys_empty(), "services.find-universal-returns-values",
                                       "services.find-pending-identifier-level-and-unique-key"),
    "find-charset-not-returned": _find(charset_not_returned(), "services.find-non-ascii-patient-charset"),
    "find-pending-as-success": _find(pending_as_success(), "services.find-patient-id-single-value",
                                     "services.find-study-uid-list"),
    "find-no-match-as-failure": _find(no_match_as_failure(), "services.find-zero-matches-success"),
    "find-no-final-response": _find(no_final_response(), "services.find-zero-matches-success"),
}

__all__ = ["VARIANTS"]
