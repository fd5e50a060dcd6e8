"""Scriptable fault injection on the relay: the faults file (``--faults FILE.yaml``) and its rules.

Theory of operation
-------------------
A faults file is a YAML document with one key, ``faults``, a list of faults;
each is a mapping with one key naming its kind:

``delay``
    ``{ms: N, from: requestor|acceptor|both, pdu: TYPE|[TYPES]}``: hold each
    matching PDU N milliseconds before relaying it (later PDUs of that
    direction wait behind it, so the order is kept).  Provokes the peers'
    timers: a DIMSE or ARTIM timeout (PS3.8 9.1.5), late responses.
``drop``
    ``{after: N, from: ..., how: fin|rst}``: after N PDUs of the named
    direction(s) have been relayed, close both connections (FIN, or RST with
    ``how: rst``).  Provokes Evt17, transport connection closed (PS3.8 9.2.3),
    an A-P-ABORT indication at both peers (AA-4).
``split``
    ``{bytes: K, from: ..., pdu: ..., gap_ms: G}``: send each matching PDU in
    writes of K bytes, G ms apart (default 1) with TCP_NODELAY, so each goes
    out in its own TCP segment.  Provokes the receiver's stream reassembly
    (PS3.8 9.3.1: a PDU may arrive in any number of segments).
``corrupt``
    ``{offset: X, value: V, pdu: TYPE, from: ..., nth: N}``: set byte X of
    the N-th matching PDU (default the first) to V.  Provokes the receiver's
    answer per PS3.8 Table 9-10: an undecodable PDU is Evt19 (AA-8: A-ABORT
    source 2), a reject of the association (PS3.8 9.3.4), etc.

``from`` defaults to ``both``, ``pdu`` to any type; PDU types are named as
the standard does (``A-ASSOCIATE-RQ``, ``P-DATA-TF`` ...).  :func:`load_faults`
checks the file and reports every problem as ``file:line: what``.  A
:class:`FaultPlan` is shared by the associations; each association gets its
own :class:`FaultState` (counters) and a log of what was applied where,
which the report shows.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomconf.scenario.loader import Located, SourceError, SourceErrors, load_yaml
from dicomconf.ul import constants as C

KINDS = ("delay", "drop", "split", "corrupt")
DIRECTIONS = ("requestor", "acceptor", "both")
_TYPES = {name: code for code, name in C.PDU_NAMES.items()}
_KEYS = {
    "delay": {"ms": True, "from": False, "pdu": False},
    "drop": {"after": True, "from": False, "how": False},
    "split": {"bytes": True, "from": False, "pdu": False, "gap_ms": False},
    "corrupt": {"offset": True, "value": True, "from": False, "pdu": False, "nth": False},
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault of the file (see the module docstring); ``line``: where it is written."""

    kind: str
    line: int | None
    sides: frozenset[str]  # the senders whose PDUs it applies to
    types: frozenset[int] | None  # PDU types; None: any
    amount: int = 0  # delay ms, drop after, split bytes, corrupt offset
    value: int = 0  # corrupt: the byte written
    nth: int = 1  # corrupt: which matching PDU
    gap_ms: float = 1.0  # split
    reset: bool = False  # drop: RST rather than FIN

    def applies(self, side: str, pdu_type: int) -> bool:
        return side in self.sides and (self.types is None or pdu_type in self.types)

    def describe(self) -> str:
        where = "from " + (" and ".join(sorted(self.sides)) if len(self.sides) == 1 else "both sides")
        types = "" if self.types is None else " " + ",".join(C.PDU_NAMES[t] for t in sorted(self.types))
        what = {"delay": f"delay{types} PDUs {self.amount} ms",
                "drop": f"drop the connection ({'RST' if self.reset else 'FIN'}) after {self.amount} PDU(s)",
                "split": f"split{types} PDUs into {self.amount}-byte segments",
                "corrupt": f"set byte {self.amount} of{types or ' the'} PDU #{self.nth} to {self.value:#04x}"}[self.kind]
        line = f" (line {self.line})" if self.line else ""
        return f"{what} {where}{line}"


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The faults of a file, checked."""

    faults: tuple[Fault, ...] = ()
    source: str | None = None

    def __bool__(self) -> bool:
        return bool(self.faults)

    def touches(self, side: str) -> bool:
        """Does any fault act on the PDUs ``side`` sends (the relay then frames them)?"""
        return any(side in f.sides for f in self.faults)

    def state(self) -> "FaultState":
        return FaultState(self)


@dataclass(slots=True)
class Action:
    """What the relay does with one PDU."""

    data: bytes
    delay_s: float = 0.0
    segment: int = 0  # write in pieces of this many bytes (0: at once)
    gap_s: float = 0.0
    corrupted: str | None = None  # the fault's description, when it altered the bytes
    drop_after: Fault | None = None  # close both connections once this PDU is written


@dataclass(slots=True)
class FaultState:
    """One association's counters and the log of faults applied."""

    plan: FaultPlan
    relayed: dict[str, int] = field(default_factory=lambda: {"requestor": 0, "acceptor": 0})
    matched: dict[int, int] = field(default_factory=dict)  # corrupt fault index -> matching PDUs seen
    applied: list[dict[str, Any]] = field(default_factory=list)

    def decide(self, side: str, pdu: bytes, number: int) -> Action:
        """The action for PDU ``number`` (of the association) sent by ``side``."""
        kind = pdu[0]
        act = Action(pdu)
        self.relayed[side] += 1
        for index, f in enumerate(self.plan.faults):
            if f.kind == "drop":
                count = sum(self.relayed[s] for s in f.sides)
                if side in f.sides and count == f.amount and act.drop_after is None:
                    act.drop_after = f
                    self._log(f, side, number, kind)
                continue
            if not f.applies(side, kind):
                continue
            if f.kind == "delay":
                act.delay_s += f.amount / 1000
            elif f.kind == "split":
                act.segment, act.gap_s = f.amount, f.gap_ms / 1000
            elif f.kind == "corrupt":
                seen = self.matched[index] = self.matched.get(index, 0) + 1
                if seen != f.nth:
                    continue
                if f.amount >= len(act.data):
                    self._log(f, side, number, kind, note=f"PDU is {len(act.data)} bytes: offset beyond it, not applied")
                    continue
                data = bytearray(act.data)
                before = data[f.amount]
                data[f.amount] = f.value
                act.data, act.corrupted = bytes(data), f.describe()
                self._log(f, side, number, kind, note=f"byte {f.amount} was {before:#04x}")
                continue
            self._log(f, side, number, kind)
        return act

    def _log(self, f: Fault, side: str, number: int, kind: int, note: str | None = None) -> None:
        entry = {"fault": f.describe(), "kind": f.kind, "from": side, "pdu": number,
                 "pdu_type": C.PDU_NAMES.get(kind, f"{kind:#04x}")}
        if note:
            entry["note"] = note
        self.applied.append(entry)


# ------------------------------------------------------------------ loading


def _int(doc: Located, path: tuple, value: Any, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise doc.error(path, f"{what} must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"{low}-{high}" if high is not None else f"{low} or more"
        raise doc.error(path, f"{what} {value} is out of range ({bound})")
    return value


def _sides(doc: Located, path: tuple, value: Any) -> frozenset[str]:
    if value is None:
        return frozenset({"requestor", "acceptor"})
    if value not in DIRECTIONS:
        raise doc.error(path, f"from: {value!r} is not one of {', '.join(DIRECTIONS)}")
    return frozenset({"requestor", "acceptor"}) if value == "both" else frozenset({value})


def _types(doc: Located, path: tuple, value: Any) -> frozenset[int] | None:
    if value is None or value == "any":
        return None
    names = value if isinstance(value, list) else [value]
    out = set()
    for i, name in enumerate(names):
        where = path + (i,) if isinstance(value, list) else path
        if not isinstance(name, str) or name.upper() not in _TYPES:
            close = difflib.get_close_matches(str(name).upper(), list(_TYPES), n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (one of {', '.join(_TYPES)})"
            raise doc.error(where, f"pdu: {name!r} is not a PDU type{hint}")
        out.add(_TYPES[name.upper()])
    return frozenset(out)


def _fault(doc: Located, i: int, raw: Any) -> Fault:
    path = ("faults", i)
    if not isinstance(raw, dict) or len(raw) != 1:
        raise doc.error(path, f"a fault is a mapping with one key, its kind ({', '.join(KINDS)})")
    kind, spec = next(iter(raw.items()))
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; one of {', '.join(KINDS)}"
        raise doc.error(path + (kind,), f"unknown fault {kind!r}{hint}")
    p = path + (kind,)
    if not isinstance(spec, dict):
        raise doc.error(p, f"{kind}: expected a mapping of {', '.join(_KEYS[kind])}")
    for key in spec:
        if key not in _KEYS[kind]:
            close = difflib.get_close_matches(str(key), list(_KEYS[kind]), n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; {kind} takes {', '.join(_KEYS[kind])}"
            raise doc.error(p + (key,), f"{kind}: unknown key {key!r}{hint}")
    for key, required in _KEYS[kind].items():
        if required and key not in spec:
            raise doc.error(p, f"{kind}: {key} is required")
    line = doc.line_of(p)
    sides = _sides(doc, p + ("from",), spec.get("from"))
    types = _types(doc, p + ("pdu",), spec.get("pdu")) if kind != "drop" else None
    if kind == "delay":
        return Fault(kind, line, sides, types, _int(doc, p + ("ms",), spec["ms"], "ms", 0, 600_000))
    if kind == "drop":
        how = spec.get("how", "fin")
        if how not in ("fin", "rst"):
            raise doc.error(p + ("how",), f"how: {how!r} is not fin or rst")
        return Fault(kind, line, sides, None, _int(doc, p + ("after",), spec["after"], "after", 1),
                     reset=how == "rst")
    if kind == "split":
        gap = spec.get("gap_ms", 1)
        if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not 0 <= gap <= 10_000:
            raise doc.error(p + ("gap_ms",), f"gap_ms must be a number of milliseconds 0-10000, not {gap!r}")
        return Fault(kind, line, sides, types, _int(doc, p + ("bytes",), spec["bytes"], "bytes", 1),
                     gap_ms=float(gap))
    return Fault(kind, line, sides, types, _int(doc, p + ("offset",), spec["offset"], "offset", 0),
                 value=_int(doc, p + ("value",), spec["value"], "value", 0, 255),
                 nth=_int(doc, p + ("nth",), spec.get("nth", 1), "nth", 1))


def load_faults(path: str | Path) -> FaultPlan:
    """The faults file at ``path``, checked; every problem a :class:`SourceError` (``file:line: what``)."""
    doc = load_yaml(path)
    if not isinstance(doc.value, dict) or "faults" not in doc.value:
        raise SourceError(path, doc.line_of(()), "expected a mapping with the key 'faults' (a list of faults)")
    extra = [k for k in doc.value if k != "faults"]
    if extra:
        raise doc.error((extra[0],), f"unknown key {extra[0]!r}; the file holds only 'faults'")
    raw = doc.value["faults"]
    if not isinstance(raw, list):
        raise doc.error(("faults",), "faults: expected a list of faults")
    errors: list[SourceError] = []
    faults = []
    for i, item in enumerate(raw):
        try:
            faults.append(_fault(doc, i, item))
        except SourceError as exc:
            errors.append(exc)
    error = SourceErrors.merge(errors)
    if error is not None:
        raise error
    return FaultPlan(tuple(faults), str(path))


__all__ = ["Action", "Fault", "FaultPlan", "FaultState", "load_faults", "KINDS"]
