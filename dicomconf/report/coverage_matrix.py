"""PS3.8 Table 9-10 as a matrix of states × events, each cell marked with what this run found there.

Theory of operation
-------------------
A scenario names the cell of the state table it exercises in its clauses
(``PS3.8 9.2 Table 9-10 (Sta6, Evt19, AA-8)``, read by
:func:`dicomconf.scenario.coverage.parse_citation`).  :func:`matrices` lays
the table out twice, once per side of the system under test:

* "target as acceptor (SCP)": the scenarios in which dicomconf played the
  requestor (role ``scu``) cite acceptor-side cells; the cells a requestor can
  provoke are :data:`~dicomconf.scenario.coverage.PROVOKABLE`;
* "target as requestor (SCU)": the scenarios in which dicomconf played the
  acceptor (role ``scp``) cite requestor-side cells
  (:data:`~dicomconf.scenario.coverage.SCU_PROVOKABLE`).

A side is laid out only when scenarios of its role ran (were not all skipped).  Each cell is one of:
``blank`` (the table gives no action: an invalid event in that state),
``unprovokable`` (an action no scenario of this side can bring about from the
wire), ``not-exercised`` (provokable, but no scenario of this run cites it),
or the verdict of the scenarios citing it, the worst first: ``failed-must``,
``error``, ``failed-should``, ``flaky``, ``passed``, ``skipped``.  States and
events come from the core's literal table (:mod:`dicomconf.ul.fsm`), the
only copy of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dicomconf.scenario.coverage import (
    PROVOKABLE,
    SCU_PROVOKABLE,
    CitationError,
    parse_citation,
)
from dicomconf.ul.fsm import EVENTS, STATES, TRANSITIONS

# The verdict classes of a scenario, worst first: a cell shows the worst of its scenarios'.
VERDICTS = ("failed-must", "error", "failed-should", "flaky", "passed", "skipped")
# What each cell class means, in the order the legend lists them.
LEGEND = {
    "failed-must": "failed (must)",
    "error": "could not be played",
    "failed-should": "failed (should)",
    "flaky": "flaky",
    "passed": "passed",
    "skipped": "skipped",
    "not-exercised": "provokable, not exercised by this run",
    "unprovokable": "an action no scenario of this side can provoke",
    "blank": "no action: the event is invalid in that state",
}
SIDES = (
    ("scu", "target as acceptor (SCP)", PROVOKABLE),
    ("scp", "target as requestor (SCU)", SCU_PROVOKABLE),
)


def verdict_class(record: Mapping[str, Any]) -> str:
    """A scenario's verdict as the report's classes name it: failures split by severity."""
    outcome = record.get("outcome")
    if outcome == "failed":
        return "failed-should" if record.get("severity") == "should" else "failed-must"
    return str(outcome)


@dataclass(slots=True)
class Cell:
    state: str
    event: str
    action: str | None
    status: str
    scenarios: list[tuple[str, str]] = field(default_factory=list)  # (id, verdict class)

    @property
    def title(self) -> str:
        """The tooltip: the cell, its action and the scenarios citing it with their verdicts."""
        head = f"({self.state}, {self.event}"
        if self.action is None:
            return head + "): blank, an invalid event in this state"
        head += f", {self.action}): {LEGEND.get(self.status, self.status)}"
        if self.scenarios:
            head += "\n" + "\n".join(f"{sid}: {v}" for sid, v in self.scenarios)
        return head

    @property
    def ids(self) -> str:
        return " ".join(sid for sid, _ in self.scenarios)


@dataclass(slots=True)
class Matrix:
    role: str  # the role dicomconf played in the scenarios of this side
    title: str
    events: list[tuple[str, str]]  # (EvtN, what it is)
    rows: list[tuple[str, str, list[Cell]]]  # (StaN, what it is, one cell per event)
    counts: dict[str, int] = field(default_factory=dict)  # cell class -> cells
    scenarios: int = 0  # scenarios of this side that ran


def _cited(record: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    for clause in record.get("clauses") or ():
        try:
            citation = parse_citation(str(clause))
        except CitationError:  # a wrong citation is the library tests' to report
            continue
        if citation is not None:
            yield citation.cell


def matrix(records: Iterable[Mapping[str, Any]], role: str, title: str,
           provokable: frozenset[tuple[str, str]]) -> Matrix:
    """The matrix of one side from the records (report.json scenarios) of ``role``."""
    by_cell: dict[tuple[str, str], list[tuple[str, str]]] = {}
    count = 0
    for r in records:
        if (r.get("role") or "scu") != role:
            continue
        count += 1
        for cell in _cited(r):
            entry = (str(r["id"]), verdict_class(r))
            if entry not in by_cell.setdefault(cell, []):
                by_cell[cell].append(entry)
    rows = []
    counts: dict[str, int] = {}
    for state, what in STATES.items():
        cells = []
        for event in EVENTS:
            action = TRANSITIONS.get((state, event))
            cited = by_cell.get((state, event), [])
            if action is None:
                status = "blank"
            elif cited:
                status = min((v for _, v in cited), key=lambda v: VERDICTS.index(v) if v in VERDICTS else len(VERDICTS))
            elif (state, event) in provokable:
                status = "not-exercised"
            else:
                status = "unprovokable"
            counts[status] = counts.get(status, 0) + 1
            cells.append(Cell(state, event, action, status, sorted(cited)))
        rows.append((state, what, cells))
    return Matrix(role, title, list(EVENTS.items()), rows, counts, count)


def matrices(document: Mapping[str, Any]) -> list[Matrix]:
    """One matrix per side whose scenarios ran (see the module docstring)."""
    records = list(document.get("scenarios") or ())
    out = []
    for role, title, provokable in SIDES:
        if any((r.get("role") or "scu") == role and r.get("outcome") != "skipped" for r in records):
            out.append(matrix(records, role, title, provokable))
    return out
