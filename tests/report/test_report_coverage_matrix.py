"""PS3.8 Table 9-10 as states × events with this run's verdicts (dicomconf.report.coverage_matrix)."""

from __future__ import annotations

from dicomconf.report.coverage_matrix import matrices, verdict_class
from dicomconf.scenario.coverage import PROVOKABLE, SCU_PROVOKABLE
from dicomconf.ul.fsm import EVENTS, STATES, TRANSITIONS


def _rec(sid, outcome, clauses, severity="must", role="scu"):
    return {"id": sid, "outcome": outcome, "severity": severity, "role": role, "clauses": clauses}


def _cells(m):
    return {(c.state, c.event): c for _, _, cells in m.rows for c in cells}


def test_cells_carry_the_worst_verdict_of_the_scenarios_citing_them():
    doc = {"scenarios": [
        _rec("a", "passed", ["PS3.8 9.2 Table 9-10 (Sta6, Evt19, AA-8)", "PS3.8 9.3.1"]),
        _rec("b", "failed", ["PS3.8 9.2 Table 9-10 (Sta6, Evt19, AA-8)"], "should"),
        _rec("c", "failed", ["PS3.8 9.2 Table 9-10 (Sta2, Evt3, AA-1)"]),
        _rec("d", "skipped", ["PS3.8 9.2 Table 9-10 (Sta13, Evt6, AA-7)"]),
        _rec("e", "error", ["PS3.8 9.2 Table 9-10 (Sta2, Evt18, AA-2)"], "should"),
        _rec("f", "passed", ["PS3.8 9.2 Table 9-10 (Sta6, Evt19, AR-1)"]),  # a wrong citation cites nothing
        _rec("g", "flaky", ["PS3.8 9.2 Table 9-10 (Sta13, Evt17, AR-5)"]),
    ]}
    (m,) = matrices(doc)  # no SCU-testing scenario ran: one side only
    assert m.role == "scu" and m.title == "target as acceptor (SCP)" and m.scenarios == 7
    cells = _cells(m)
    assert len(m.rows) == len(STATES) and all(len(cs) == len(EVENTS) for _, _, cs in m.rows)
    assert cells[("Sta6", "Evt19")].status == "failed-should"
    assert cells[("Sta6", "Evt19")].scenarios == [("a", "passed"), ("b", "failed-should")]
    assert cells[("Sta6", "Evt19")].title == "(Sta6, Evt19, AA-8): failed (should)\na: passed\nb: failed-should"
    assert cells[("Sta2", "Evt3")].status == "failed-must"
    assert cells[("Sta13", "Evt6")].status == "skipped"
    assert cells[("Sta2", "Evt18")].status == "error"
    assert cells[("Sta13", "Evt17")].status == "flaky"
    # the rest: blank where the table has no action; provokable but not exercised; nothing can provoke it
    assert cells[("Sta1", "Evt3")].status == "blank" and cells[("Sta1", "Evt3")].action is None
    assert cells[("Sta6", "Evt4")].status == "not-exercised" and ("Sta6", "Evt4") in PROVOKABLE
    assert cells[("Sta9", "Evt3")].status == "unprovokable" and TRANSITIONS[("Sta9", "Evt3")] == "AA-8"
    assert m.counts["blank"] == len(STATES) * len(EVENTS) - len(TRANSITIONS)
    assert m.counts["not-exercised"] == len(PROVOKABLE) - 5


def test_each_side_is_laid_out_only_when_its_scenarios_ran():
    scu_side = _rec("s", "passed", ["PS3.8 9.2 Table 9-10 (Sta7, Evt13, AR-3)"], role="scp")
    (m,) = matrices({"scenarios": [scu_side]})
    assert m.title == "target as requestor (SCU)" and _cells(m)[("Sta7", "Evt13")].status == "passed"
    assert _cells(m)[("Sta5", "Evt4")].status == "not-exercised" and ("Sta5", "Evt4") in SCU_PROVOKABLE
    both = matrices({"scenarios": [scu_side, _rec("t", "passed", [])]})
    assert [x.role for x in both] == ["scu", "scp"]
    assert matrices({"scenarios": [{**scu_side, "outcome": "skipped"}]}) == []  # all skipped: nothing ran
    assert matrices({"scenarios": []}) == []


def test_verdict_class_splits_failures_by_severity():
    assert verdict_class({"outcome": "failed", "severity": "must"}) == "failed-must"
    assert verdict_class({"outcome": "failed", "severity": "should"}) == "failed-should"
    assert verdict_class({"outcome": "error", "severity": "should"}) == "error"
    assert verdict_class({"outcome": "passed"}) == "passed"
