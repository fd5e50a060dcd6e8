"""Which cells of PS3.8 Table 9-10 the scenarios exercise: ``dicomconf table --coverage``.

Theory of operation
-------------------
A scenario says which cell of the state table it exercises in its
``clauses``, as ``"PS3.8 9.2 Table 9-10 (Sta13, Evt6, AA-7)"``: the state,
the event and the action the table gives for that cell.  :func:`parse_citation`
reads one clause: a clause that does not mention Table 9-10 is no citation
(``None``); one that does must name a state, an event and an action that
agree with the core's literal table (:data:`dicomconf.ul.fsm.TRANSITIONS`,
the only copy of the table); anything else raises :class:`CitationError`
saying what is wrong (an incomplete citation, an unknown name, a blank cell,
or an action the table does not give there).

:data:`PROVOKABLE` is the set of acceptor-side cells that a requestor can
bring about from the wire (PS3.8 9.2.3):

* Sta2 (connection open, no A-ASSOCIATE-RQ yet), Sta6 (association
  established) and Sta13 (after the acceptor's A-ASSOCIATE-RJ, A-RELEASE-RP or
  A-ABORT), each with every event a received PDU or the requestor's close
  causes: Evt3, 4, 6, 10, 12, 13, 16, 17 and 19;
* Evt18 (ARTIM expired) where ARTIM runs: Sta2 and Sta13;
* Sta3 and Sta8, the states in which the acceptor waits for its own user
  (its answer to an A-ASSOCIATE-RQ, to an A-RELEASE-RQ).  A requestor reaches
  them by sending a PDU right behind the RQ; whether the target is still in
  Sta3 (Sta8) when it reads that PDU, or has answered first and moved to Sta6
  (Sta13), depends on the target's timing, which a scenario does not control.
  So only the cells whose answer the requestor sees the same in both states
  count (:data:`OBSERVED`): in Sta3 every PDU event but Evt10 and Evt12
  (A-ABORT, or a close for Evt16, as in Sta6; a P-DATA-TF or A-RELEASE-RQ
  would be answered in Sta6); in Sta8 Evt6 and Evt19 (AA-8 there, AA-7 in
  Sta13: an A-ABORT either way) and Evt16 (a close either way).  Evt17 in
  Sta3 or Sta8 leaves nothing for the requestor to see, so it is not counted.

:data:`SCU_PROVOKABLE` is the same for scenarios that test an SCU (``role:
scp``): the requestor-side cells that the acceptor (our fake SCP) brings about
from the wire and whose action it can see.  The requestor waits for the AC in
Sta5, is in the association in Sta6, waits for the A-RELEASE-RP in Sta7 and,
after a release collision, in Sta11; in each, every PDU the acceptor can send
and its close are events (Evt3, 4, 6, 10, 12, 13, 16, 19), and each action is
seen by the acceptor (:data:`SEEN_BY_ACCEPTOR`: an A-ABORT for AA-8, a close
for AE-4, AA-3, AR-3, an A-RELEASE-RP for AR-2 and AR-8, the association going
on for AE-3, DT-2 and AR-6).  Evt17 (the acceptor's own close, AA-4) leaves
nothing to see; in Sta11 only Evt13 is counted (the state is reached only
through a collision, whose other cells the Sta7 ones already show).

:func:`compute` takes scenarios (:class:`dicomconf.scenario.library.Info`)
and returns a :class:`Coverage`: per provokable cell the ids of the scenarios
citing it, the cells cited outside that set, and every wrong citation with
its ``file:line`` (an incomplete one, naming the table but no whole cell, is
listed apart: it cites nothing, but claims nothing false either).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dicomconf.ul.fsm import EVENTS, STATES, TRANSITIONS

_TABLE = re.compile(r"\bTable\s+9-10\b(?:\s*\(([^)]*)\))?")

# PS3.8 9.2.3: the events a requestor causes at the acceptor (a PDU it sends, or its close).
REQUESTOR_EVENTS: tuple[str, ...] = ("Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16", "Evt17", "Evt19")
# States where the acceptor waits on its own user, and the state it is in once it has answered.
PIPELINED_STATES: dict[str, str] = {"Sta3": "Sta6", "Sta8": "Sta13"}

# What a requestor sees of an acceptor's action (PS3.8 9.2.2, Tables 9-6 to 9-9); None: nothing.
OBSERVED: dict[str, str | None] = {
    "AE-6": "A-ASSOCIATE-AC or -RJ",
    "DT-2": "the message's answer",
    "AR-2": "A-RELEASE-RP",
    "AA-1": "A-ABORT",
    "AA-7": "A-ABORT",
    "AA-8": "A-ABORT",
    "AA-2": "close",
    "AA-3": "close",
    "AA-4": None,
    "AA-5": None,
    "AA-6": None,
    "AR-5": None,
}


# What an acceptor sees of a requestor's action (PS3.8 9.2.2, Tables 9-6 to 9-9).
SEEN_BY_ACCEPTOR: dict[str, str] = {
    "AE-3": "the association goes on",
    "AE-4": "close",
    "AA-3": "close",
    "AA-8": "A-ABORT",
    "DT-2": "the association goes on",
    "AR-2": "A-RELEASE-RP",
    "AR-3": "close",
    "AR-6": "the release goes on",
    "AR-8": "A-RELEASE-RP",
}
# PS3.8 9.2.3: the events an acceptor causes at the requestor (a PDU it sends, or its close).
ACCEPTOR_EVENTS: tuple[str, ...] = ("Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16", "Evt19")


def _scu_provokable() -> frozenset[tuple[str, str]]:
    cells = {(s, e) for s in ("Sta5", "Sta6", "Sta7") for e in ACCEPTOR_EVENTS} | {("Sta11", "Evt13")}
    unseen = sorted(c for c in cells if TRANSITIONS.get(c) not in SEEN_BY_ACCEPTOR)
    if unseen:
        raise AssertionError(f"cells counted whose action an acceptor cannot see: {unseen}")
    return frozenset(cells)


def _provokable() -> frozenset[tuple[str, str]]:
    cells = {(s, e) for s in ("Sta2", "Sta6", "Sta13") for e in REQUESTOR_EVENTS}
    cells |= {(s, "Evt18") for s in ("Sta2", "Sta13")}
    for state, answered in PIPELINED_STATES.items():
        for event in REQUESTOR_EVENTS:
            seen = OBSERVED.get(TRANSITIONS[(state, event)])
            if seen is not None and seen == OBSERVED.get(TRANSITIONS[(answered, event)]):
                cells.add((state, event))
    missing = sorted(c for c in cells if c not in TRANSITIONS)
    if missing:  # the table fills every connected state's PDU cells (dicomconf.ul.fsm)
        raise AssertionError(f"blank cells counted as provokable: {missing}")
    return frozenset(cells)


# The acceptor-side cells of Table 9-10 that a requestor can provoke (see the module docstring).
PROVOKABLE: frozenset[tuple[str, str]] = _provokable()
# The requestor-side cells an acceptor can provoke and see (scenarios that test an SCU).
SCU_PROVOKABLE: frozenset[tuple[str, str]] = _scu_provokable()


def _order(cell: tuple[str, str]) -> tuple[int, int]:
    return int(cell[0][3:]), int(cell[1][3:])


class CitationError(ValueError):
    """A clause that cites Table 9-10 wrongly; the message says how (one line).

    ``incomplete`` is true when the clause names the table but not a whole
    cell (``Table 9-10 (Sta13)``): it cites no cell, rather than a wrong one.
    """

    def __init__(self, message: str, incomplete: bool = False) -> None:
        super().__init__(message)
        self.incomplete = incomplete


@dataclass(frozen=True, slots=True)
class Citation:
    """One cell of PS3.8 Table 9-10 named by a clause, with the action the table gives it."""

    state: str
    event: str
    action: str

    @property
    def cell(self) -> tuple[str, str]:
        return self.state, self.event


def parse_citation(clause: str) -> Citation | None:
    """The cell ``clause`` cites as ``Table 9-10 (StaN, EvtM, ACTION)``; None when it cites no cell.

    Raises :class:`CitationError` when the clause names Table 9-10 but not a
    state, an event and an action, when a name is not one of PS3.8 9.2's, when
    the cell is blank (an invalid event in that state), or when the table
    gives the cell another action.
    """
    found = _TABLE.search(clause)
    if found is None:
        return None
    inside = found.group(1)
    parts = [p.strip() for p in inside.split(",")] if inside is not None else []
    if len(parts) != 3 or not all(parts):
        raise CitationError(
            f"{clause!r}: a Table 9-10 citation names the state, the event and the action: (StaN, EvtM, ACTION)",
            incomplete=True,
        )
    state, event, action = parts
    if state not in STATES:
        raise CitationError(f"{clause!r}: no state {state!r} in PS3.8 9.2.1 (Sta1 .. Sta13)")
    if event not in EVENTS:
        raise CitationError(f"{clause!r}: no event {event!r} in PS3.8 9.2.3 (Evt1 .. Evt19)")
    expected = TRANSITIONS.get((state, event))
    if expected is None:
        raise CitationError(f"{clause!r}: ({state}, {event}) is a blank cell of Table 9-10 (an invalid event)")
    if action != expected:
        raise CitationError(f"{clause!r}: Table 9-10 gives ({state}, {event}) the action {expected}, not {action}")
    return Citation(state, event, action)


@dataclass(frozen=True, slots=True)
class WrongCitation:
    """A scenario's clause that cites Table 9-10 wrongly."""

    scenario: str
    where: str  # file:line of the scenario
    message: str
    incomplete: bool = False  # names the table but no whole cell (CitationError.incomplete)


@dataclass
class Coverage:
    """The cells cited by a set of scenarios (:func:`compute`)."""

    cited: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # every cited cell -> scenario ids
    wrong: list[WrongCitation] = field(default_factory=list)  # disagreeing, unknown or blank cells
    incomplete: list[WrongCitation] = field(default_factory=list)  # the table named without a whole cell
    scenarios: int = 0
    provokable: frozenset[tuple[str, str]] = PROVOKABLE  # the cells the scenarios' side can provoke

    def citing(self, cell: tuple[str, str]) -> list[str]:
        return self.cited.get(cell, [])

    @property
    def uncovered(self) -> list[tuple[str, str]]:
        """Provokable cells no scenario cites, in table order."""
        return sorted((c for c in self.provokable if not self.cited.get(c)), key=_order)

    @property
    def outside(self) -> list[tuple[str, str]]:
        """Cited cells that are not in :data:`PROVOKABLE`, in table order."""
        return sorted((c for c in self.cited if c not in self.provokable), key=_order)

    @property
    def complete(self) -> bool:
        return not self.uncovered and not self.wrong

    def rows(self) -> list[list[str]]:
        """Header, then one row per provokable cell: state, event, action, citing scenario ids."""
        out = [["state", "event", "action", "scenarios"]]
        for state, event in sorted(self.provokable, key=_order):
            ids = self.citing((state, event))
            out.append([state, event, TRANSITIONS[(state, event)], " ".join(ids) if ids else "-"])
        return out


def compute(infos: Iterable[Any], tests: str = "SCP") -> Coverage:
    """The coverage of Table 9-10 by the scenarios of ``infos`` (objects with ``id``, ``clauses``,
    ``where`` and ``role``) that test an SCP (``tests="SCP"``: acceptor-side cells) or an SCU
    (``"SCU"``: requestor-side cells)."""
    role = "scp" if tests == "SCU" else "scu"
    cov = Coverage(provokable=SCU_PROVOKABLE if tests == "SCU" else PROVOKABLE)
    for info in infos:
        if getattr(info, "role", "scu") != role:
            continue
        cov.scenarios += 1
        ident = info.id
        for clause in info.clauses:
            try:
                citation = parse_citation(clause)
            except CitationError as exc:
                bad = WrongCitation(ident, info.where, str(exc), exc.incomplete)
                (cov.incomplete if exc.incomplete else cov.wrong).append(bad)
                continue
            if citation is not None:
                ids = cov.cited.setdefault(citation.cell, [])
                if ident not in ids:
                    ids.append(ident)
    for ids in cov.cited.values():
        ids.sort()
    return cov
