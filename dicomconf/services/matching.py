"""Attribute matching of C-FIND identifiers against stored attributes (PS3.4 C.2.2.2).

Theory of operation
-------------------
A C-FIND identifier is a data set whose elements are *keys*: each says how
the same attribute of a candidate must look for the candidate to match
(PS3.4 C.2.2.2).  :func:`key_kind` classifies one key by its value and VR
into one of the matching kinds of the standard:

======================  =====================================================
``universal``           empty value (C.2.2.2.3), or a wild card value that
                        is only ``*`` (C.2.2.2.4): matches anything
``empty``               the value ``""`` (C.2.2.2.1.1): matches a candidate
                        whose attribute is absent or zero length
``single``              one value (C.2.2.2.1); PN compared without regard
                        to case (the latitude C.2.2.2.1 gives PN), every
                        other VR case-sensitively; IS/DS numerically
``wildcard``            ``*`` and ``?`` in a string VR other than DA, DT,
                        TM, UI and the number VRs (C.2.2.2.4)
``uid_list``            backslash-separated UIDs (C.2.2.2.2)
``range``               ``a-b``, ``-b``, ``a-`` on DA, TM, DT (C.2.2.2.5)
``sequence``            a sequence with one item of keys (C.2.2.2.6): a
                        candidate item must match every key of that item
======================  =====================================================

A candidate attribute with several values matches when one of them does.
Times and date-times are compared in a normal form (:func:`normal_time`,
:func:`normal_datetime`): a lower bound is padded with zeros, an upper bound
to the end of the precision it gives (``-1100`` takes 11:00:59.999999);
time zone offsets are not applied.  Combined date and time range matching
(C.2.2.2.5.1, agreed by extended negotiation, PS3.4 C.5.1.1) joins a Date
key and its Time key into one date-time range when the caller asks for it.

The same keys translate to SQL over the index's columns (:func:`sql_condition`):
parameters only, wild cards through ``GLOB`` with ``[`` escaped, PN on a
case-folded column, times on their normal form.  A key the SQL cannot express
gives None and is left to the Python predicate, :func:`match_dataset`, which
the index applies after its SQL pre-filter; a differential test keeps the two
agreeing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydicom import Dataset
from pydicom.dataelem import DataElement

NOT_WILDCARD_VRS = frozenset({"DA", "DT", "TM", "UI", "IS", "DS", "SS", "US", "SL", "UL", "FL", "FD", "SV", "UV", "AT"})
NUMBER_VRS = frozenset({"IS", "DS", "SS", "US", "SL", "UL", "FL", "FD", "SV", "UV"})
RANGE_VRS = frozenset({"DA", "TM", "DT"})
NOT_KEYS = frozenset({0x00080005, 0x00080052, 0x00080054})  # Specific Character Set, Q/R Level, Retrieve AE
# C.2.2.2.5.1: the Date key that may join each Time key into one date-time range
DATE_OF_TIME = {"StudyTime": "StudyDate", "SeriesTime": "SeriesDate", "ContentTime": "ContentDate",
                "AcquisitionTime": "AcquisitionDate", "PatientBirthTime": "PatientBirthDate",
                "ScheduledProcedureStepStartTime": "ScheduledProcedureStepStartDate",
                "PerformedProcedureStepStartTime": "PerformedProcedureStepStartDate"}


def text_of(value: Any) -> str:
    """The value of an element as the string it was encoded as (values joined by backslash)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(text_of(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def values_of(elem: DataElement | None) -> list[str]:
    """Each value of a candidate element as a string; [] when absent or empty."""
    if elem is None or elem.value is None:
        return []
    value = elem.value
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [text_of(v) for v in value if text_of(v) != ""]
    text = text_of(value)
    return [text] if text != "" else []


def key_kind(elem: DataElement) -> str:
    """The C.2.2.2 matching kind of one identifier key (see the module table)."""
    if elem.VR == "SQ":
        items = elem.value or []
        if not items or all(e.value in (None, "", []) for item in items for e in item):
            return "universal"
        return "sequence"
    text = text_of(elem.value)
    if text == "":
        return "universal"
    if text == '""':
        return "empty"
    if elem.VR == "UI" and "\\" in text:
        return "uid_list"
    if elem.VR in RANGE_VRS and "-" in text.strip() and not (elem.VR == "DT" and _dt_has_offset_only(text)):
        return "range"
    if elem.VR not in NOT_WILDCARD_VRS and ("*" in text or "?" in text):
        return "universal" if set(text) == {"*"} else "wildcard"
    return "single"


def _dt_has_offset_only(text: str) -> bool:
    """A DT single value with a negative UTC offset (``20200101120000-0500``) is not a range."""
    return bool(re.fullmatch(r"\d{4,21}(\.\d{1,6})?[+-]\d{4}", text.strip()))


# ------------------------------------------------------------------ normal forms


def fold(text: str) -> str:
    """PN comparison form: case-folded (PS3.4 C.2.2.2.1 lets PN matching ignore case)."""
    return text.casefold()


def normal_time(text: str, upper: bool = False) -> str | None:
    """``HHMMSS.FFFFFF`` of a TM value (PS3.5 6.2), padded to its end when ``upper``; None if not a time."""
    text = text.strip().replace(":", "")
    m = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text)
    if not m:
        return None
    hh, mm, ss, frac = m.groups()
    fill = "59" if upper else "00"
    if frac is None:
        frac = "999999" if upper else "000000"
    elif upper:
        frac = frac.ljust(6, "9")
    else:
        frac = frac.ljust(6, "0")
    return f"{hh}{mm or fill}{ss or fill}.{frac}"


def normal_date(text: str) -> str | None:
    text = text.strip().replace(".", "")
    return text if re.fullmatch(r"\d{8}", text) else None


def normal_datetime(text: str, upper: bool = False) -> str | None:
    """``YYYYMMDDHHMMSS.FFFFFF`` of a DT value, the UTC offset dropped; padded to its end when ``upper``."""
    text = re.sub(r"[+-]\d{4}$", "", text.strip())
    m = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(\d{2}(?:\d{2}(?:\d{2})?)?(?:\.\d{1,6})?)?", text)
    if not m:
        return None
    year, month, day, time = m.groups()
    date = year + (month or ("12" if upper else "01")) + (day or ("31" if upper else "01"))
    if time is None:
        time = "235959.999999" if upper else "000000.000000"
    else:
        time = normal_time(time, upper) or ""
    return date + time


def _normal(vr: str, text: str, upper: bool = False) -> str | None:
    if vr == "DA":
        return normal_date(text)
    if vr == "TM":
        return normal_time(text, upper)
    return normal_datetime(text, upper)


def range_bounds(vr: str, text: str) -> tuple[str | None, str | None] | None:
    """The normal-form bounds of a DA/TM/DT range key (PS3.4 C.2.2.2.5); None when malformed."""
    if vr == "DT":
        m = re.fullmatch(r"\s*(\d[\d.+]*(?:[+-]\d{4})?)?\s*-\s*(\d[\d.+]*(?:[+-]\d{4})?)?\s*", text)
        low_text, high_text = (m.group(1), m.group(2)) if m else (None, None)
        if not m:
            return None
    else:
        low_text, _, high_text = text.partition("-")
        low_text, high_text = low_text.strip() or None, high_text.strip() or None
    if low_text is None and high_text is None:
        return None
    low = _normal(vr, low_text) if low_text else None
    high = _normal(vr, high_text, upper=True) if high_text else None
    if (low_text and low is None) or (high_text and high is None):
        return None
    return low, high


def stored_form(vr: str, text: str) -> str:
    """The form in which the index keeps a value of ``vr`` for comparison (see :func:`sql_condition`)."""
    if vr == "PN":
        return fold(text)
    if vr in RANGE_VRS:
        return _normal(vr, text) or text
    return text


# ------------------------------------------------------------------ predicate


def wildcard_regex(pattern: str) -> re.Pattern:
    """``*`` any run of characters, ``?`` one character, everything else literal (PS3.4 C.2.2.2.4)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def match_value(kind: str, vr: str, key_text: str, values: list[str]) -> bool:
    """Whether candidate ``values`` (strings; [] when absent or empty) match one non-sequence key."""
    if kind == "universal":
        return True
    if kind == "empty":
        return not values
    if kind == "uid_list":
        wanted = {u.strip() for u in key_text.split("\\")}
        return any(v.strip() in wanted for v in values)
    if kind == "range":
        bounds = range_bounds(vr, key_text)
        if bounds is None:
            return False
        low, high = bounds
        for v in values:
            n = _normal(vr, v)
            if n is not None and (low is None or n >= low) and (high is None or n <= high):
                return True
        return False
    if kind == "wildcard":
        pattern = wildcard_regex(fold(key_text) if vr == "PN" else key_text)
        return any(pattern.fullmatch(fold(v) if vr == "PN" else v) for v in values)
    # single value
    if vr == "PN":
        return any(fold(v) == fold(key_text) for v in values)
    if vr in NUMBER_VRS:
        want = _number(key_text)
        return want is not None and any(_number(v) == want for v in values)
    if vr in RANGE_VRS:
        want = _normal(vr, key_text)
        return want is not None and any(_normal(vr, v) == want for v in values)
    if vr == "UI":
        return any(v.strip() == key_text.strip() for v in values)
    return any(v == key_text for v in values)


def match_element(key: DataElement, candidate: Dataset) -> bool:
    """One key against a candidate (PS3.4 C.2.2.2); a sequence key recurses into the candidate's items."""
    kind = key_kind(key)
    if kind == "universal":
        return True
    got = candidate.get(key.tag)
    if kind == "sequence":
        item_keys = key.value[0]
        items = got.value if got is not None and got.VR == "SQ" and got.value else []
        return any(match_dataset(item_keys, item) for item in items)
    if kind == "empty":
        return not values_of(got) if got is None or got.VR != "SQ" else not got.value
    if got is not None and got.VR == "SQ":
        return False
    return match_value(kind, key.VR, text_of(key.value), values_of(got))


def match_dataset(identifier: Dataset, candidate: Dataset, *, combine_datetime: bool = False) -> bool:
    """True when ``candidate`` matches every key of ``identifier`` (PS3.4 C.2.2.2).

    Specific Character Set, Query/Retrieve Level and Retrieve AE Title are not
    keys and are skipped, as are group lengths.  With ``combine_datetime``
    (C.2.2.2.5.1, negotiated) a Date key and its Time key that are both ranges
    or single values are matched as one date-time range.
    """
    joined = _combined_pairs(identifier) if combine_datetime else {}
    skip = {tag for pair in joined.values() for tag in pair}
    for key in identifier:
        if key.tag in NOT_KEYS or key.tag.element == 0 or key.tag in skip:
            continue
        if not match_element(key, candidate):
            return False
    for date_key, time_key in joined.values():
        if not _match_combined(identifier[date_key], identifier[time_key], candidate):
            return False
    return True


def _combined_pairs(identifier: Dataset) -> dict[str, tuple]:
    pairs = {}
    for time_kw, date_kw in DATE_OF_TIME.items():
        if time_kw in identifier and date_kw in identifier:
            d, t = identifier[date_kw], identifier[time_kw]
            if key_kind(d) in ("range", "single") and key_kind(t) in ("range", "single"):
                pairs[time_kw] = (d.tag, t.tag)
    return pairs


def _match_combined(date_key: DataElement, time_key: DataElement, candidate: Dataset) -> bool:
    """C.2.2.2.5.1: Date ``D1-D2`` with Time ``T1-T2`` is the one range from D1T1 to D2T2."""

    def ends(text: str) -> tuple[str, str]:
        low, sep, high = text.partition("-")
        return (low.strip(), high.strip()) if sep else (text.strip(), text.strip())

    d_low, d_high = ends(text_of(date_key.value))
    t_low, t_high = ends(text_of(time_key.value))
    low = high = None
    if d_low:
        low = (normal_date(d_low) or "~") + ((normal_time(t_low) or "~") if t_low else "000000.000000")
    if d_high:
        high = (normal_date(d_high) or "") + ((normal_time(t_high, upper=True) or "") if t_high else "235959.999999")
    times = values_of(candidate.get(time_key.tag)) or [""]
    for d in values_of(candidate.get(date_key.tag)):
        for t in times:
            date = normal_date(d)
            if date is None:
                continue
            n = date + ((normal_time(t) or "000000.000000") if t else "000000.000000")
            if (low is None or n >= low) and (high is None or n <= high):
                return True
    return False


# ------------------------------------------------------------------ SQL


def glob_pattern(pattern: str) -> str:
    """A wild card key as a SQLite GLOB pattern: ``*`` and ``?`` kept, ``[`` made literal."""
    return pattern.replace("[", "[[]")


def sql_condition(key: DataElement, column: str, style: str) -> tuple[str, list] | None:
    """The SQL for one key over ``column`` (holding :func:`stored_form` values), or None to leave it to Python.

    ``style`` is how the index keeps the column: ``text``, ``pn`` (case-folded),
    ``time``/``date``/``datetime`` (normal form), ``int``, ``uid``; ``python``
    columns (several values in one) are never translated.
    """
    if style == "python" or key.VR == "SQ":
        return None
    kind = key_kind(key)
    text = text_of(key.value)
    if kind == "universal":
        return "", []
    if kind == "empty":
        return f"({column} IS NULL OR {column} = '')", []
    if kind == "uid_list":
        uids = sorted({u.strip() for u in text.split("\\")})
        return f"{column} IN ({','.join('?' * len(uids))})", uids
    if kind == "range":
        bounds = range_bounds(key.VR, text)
        if bounds is None:
            return "0", []
        low, high = bounds
        parts, params = [], []
        if low is not None:
            parts.append(f"{column} >= ?")
            params.append(low)
        if high is not None:
            parts.append(f"{column} <= ?")
            params.append(high)
        return " AND ".join(parts), params
    if kind == "wildcard":
        return f"{column} GLOB ?", [glob_pattern(fold(text) if style == "pn" else text)]
    if style == "int":
        number = _number(text)
        return (f"{column} = ?", [number]) if number is not None else ("0", [])
    if style in ("time", "date", "datetime"):
        value = _normal(key.VR, text)
        return (f"{column} = ?", [value]) if value is not None else ("0", [])
    if style == "pn":
        return f"{column} = ?", [fold(text)]
    if style == "uid":
        return f"{column} = ?", [text.strip()]
    return f"{column} = ?", [text]


def keys_of(identifier: Dataset) -> Iterable[DataElement]:
    """The matching keys of an identifier: every element but group lengths and the non-key ones."""
    return (e for e in identifier if e.tag not in NOT_KEYS and e.tag.element != 0)


__all__ = [
    "fold",
    "key_kind",
    "keys_of",
    "match_dataset",
    "match_element",
    "match_value",
    "normal_date",
    "normal_datetime",
    "normal_time",
    "range_bounds",
    "sql_condition",
    "stored_form",
    "text_of",
    "values_of",
]
