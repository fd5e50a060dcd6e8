"""Coverage of PS3.8 Table 9-10 by the scenarios: the citation parser, the provokable cells,
the suite's coverage and ``dicomconf table --coverage``."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomconf.cli import main
from dicomconf.scenario.coverage import (
    PROVOKABLE,
    CitationError,
    compute,
    parse_citation,
)
from dicomconf.scenario.library import catalogue
from dicomconf.ul.fsm import TRANSITIONS

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.fixture(scope="module")
def library():
    return catalogue([LIBRARY])


# --------------------------------------------------------------------------
# The parser


def test_a_whole_citation_names_its_cell():
    c = parse_citation("PS3.8 9.2 Table 9-10 (Sta13, Evt6, AA-7)")
    assert (c.state, c.event, c.action, c.cell) == ("Sta13", "Evt6", "AA-7", ("Sta13", "Evt6"))
    assert parse_citation("PS3.8 9.2.3 Table 9-10 ( Sta2 ,Evt18,  AA-2 )").cell == ("Sta2", "Evt18")


@pytest.mark.parametrize("clause", ["PS3.8 9.3.8 Table 9-26", "PS3.8 9.2 Table 9-9 (AA-1)", "PS3.7 D.3.3.4"])
def test_other_clauses_cite_no_cell(clause):
    assert parse_citation(clause) is None


@pytest.mark.parametrize(
    "clause, said",
    [
        ("PS3.8 9.2 Table 9-10 (Sta13, Evt6, AA-6)", "gives (Sta13, Evt6) the action AA-7, not AA-6"),
        ("PS3.8 9.2 Table 9-10 (Sta6, Evt19, AA-1)", "gives (Sta6, Evt19) the action AA-8, not AA-1"),
        ("PS3.8 9.2 Table 9-10 (Sta1, Evt10, AA-1)", "blank cell"),
        ("PS3.8 9.2 Table 9-10 (Sta14, Evt10, AA-8)", "no state 'Sta14'"),
        ("PS3.8 9.2 Table 9-10 (Sta6, Evt20, AA-8)", "no event 'Evt20'"),
    ],
)
def test_a_citation_the_table_contradicts_is_refused(clause, said):
    with pytest.raises(CitationError, match=r"\(|no ") as info:
        parse_citation(clause)
    assert said in str(info.value)
    assert not info.value.incomplete


@pytest.mark.parametrize(
    "clause", ["PS3.8 9.2 Table 9-10 (Sta13)", "PS3.8 9.2 Table 9-10 (Sta6, Evt19)", "PS3.8 9.2 Table 9-10"]
)
def test_a_citation_without_state_event_and_action_is_incomplete(clause):
    with pytest.raises(CitationError, match="names the state, the event and the action") as info:
        parse_citation(clause)
    assert info.value.incomplete


# --------------------------------------------------------------------------
# The provokable cells


def test_provokable_cells_are_the_requestors_reach():
    rows = {("Sta2", e) for e in ("Evt3", "Evt4", "Evt6", "Evt10", "Evt12", "Evt13", "Evt16", "Evt17", "Evt18", "Evt19")}
    rows |= {("Sta13", e) for s, e in rows}
    rows |= {("Sta6", e) for s, e in rows if e != "Evt18"}  # no ARTIM in Sta6
    sta3 = {("Sta3", e) for e in ("Evt3", "Evt4", "Evt6", "Evt13", "Evt16", "Evt19")}
    sta8 = {("Sta8", e) for e in ("Evt6", "Evt16", "Evt19")}
    assert PROVOKABLE == rows | sta3 | sta8
    assert len(PROVOKABLE) == 38
    # Sta3/Sta8 cells answered differently once the target has answered (Sta6/Sta13) are left out.
    assert TRANSITIONS[("Sta3", "Evt10")] != TRANSITIONS[("Sta6", "Evt10")] and ("Sta3", "Evt10") not in PROVOKABLE
    assert ("Sta8", "Evt10") not in PROVOKABLE and ("Sta3", "Evt17") not in PROVOKABLE


def test_compute_counts_citations_and_reports_wrong_ones():
    class Info:
        def __init__(self, id, clauses):
            self.id, self.clauses, self.where = id, clauses, f"x.yaml:{len(id)}"

    cov = compute([
        Info("a", ["PS3.8 9.2 Table 9-10 (Sta2, Evt3, AA-1)", "PS3.8 9.3.8"]),
        Info("b", ["PS3.8 9.2 Table 9-10 (Sta2, Evt3, AA-1)", "PS3.8 9.2 Table 9-10 (Sta6, Evt9, DT-1)"]),
        Info("c", ["PS3.8 9.2 Table 9-10 (Sta13, Evt3, AA-8)", "PS3.8 9.2 Table 9-10 (Sta13)"]),
    ])
    assert cov.scenarios == 3
    assert cov.citing(("Sta2", "Evt3")) == ["a", "b"]
    assert cov.outside == [("Sta6", "Evt9")]
    assert ("Sta13", "Evt3") in cov.uncovered and ("Sta2", "Evt3") not in cov.uncovered
    assert [(w.scenario, w.where) for w in cov.wrong] == [("c", "x.yaml:1")]
    assert "AA-6, not AA-8" in cov.wrong[0].message
    assert [w.scenario for w in cov.incomplete] == ["c"]
    assert not cov.complete
    rows = cov.rows()
    assert rows[0] == ["state", "event", "action", "scenarios"] and len(rows) == 1 + len(PROVOKABLE)
    assert ["Sta2", "Evt3", "AA-1", "a b"] in rows and ["Sta13", "Evt3", "AA-6", "-"] in rows


# --------------------------------------------------------------------------
# The suite


@pytest.mark.parametrize("tests", ["SCP", "SCU"])
def test_every_provokable_cell_is_cited_by_a_scenario(library, tests):
    cov = compute([i for i in library if not i.error], tests)
    assert cov.scenarios >= 80
    missing = ", ".join(f"({s}, {e}, {TRANSITIONS[(s, e)]})" for s, e in cov.uncovered)
    assert not missing, f"no scenario that tests an {tests} cites these cells of PS3.8 Table 9-10: {missing}"


@pytest.mark.parametrize("tests", ["SCP", "SCU"])
def test_no_scenario_cites_a_cell_wrongly(library, tests):
    cov = compute(library, tests)
    assert not cov.wrong, "\n".join(f"{w.where}: {w.scenario}: {w.message}" for w in cov.wrong)
    assert not cov.incomplete, "\n".join(f"{w.where}: {w.scenario}: {w.message}" for w in cov.incomplete)


# --------------------------------------------------------------------------
# dicomconf table --coverage


def test_cli_coverage_of_the_library(capsys):
    assert main(["table", "--coverage", str(LIBRARY)]) == 0
    out = capsys.readouterr().out
    assert f"{len(PROVOKABLE)} of {len(PROVOKABLE)} provokable acceptor-side cells cited" in out
    line = next(ln for ln in out.splitlines() if ln.split()[:3] == ["Sta13", "Evt6", "AA-7"])
    assert "release-abort.associate-rq-after-release-rp-aborted" in line.split()


def test_cli_coverage_reports_wrong_and_missing_cells(tmp_path, capsys):
    (tmp_path / "x.yaml").write_text(
        "id: x.one\ntitle: t\nseverity: must\narea: fsm\n"
        'clauses: ["PS3.8 9.2 Table 9-10 (Sta2, Evt4, AA-8)", "PS3.8 9.2 Table 9-10 (Sta2, Evt12, AA-1)"]\n'
        "steps:\n  - connect:\n"
    )
    assert main(["table", "--coverage", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "1 of 38 provokable acceptor-side cells cited by 1 scenarios that test an SCP" in out
    assert "(Sta13, Evt6, AA-7)" in out.split("no scenario cites:")[1]
    assert f"wrong citation: {tmp_path / 'x.yaml'}:1: x.one:" in out and "AA-1, not AA-8" in out
    assert main(["table", "--coverage", "--format", "csv", str(tmp_path)]) == 1
    assert "Sta2,Evt12,AA-1,x.one" in capsys.readouterr().out.splitlines()


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["table", "--coverage", str(tmp_path / "missing")]) == 4
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["table", str(tmp_path)]) == 4
    assert "only with --coverage" in capsys.readouterr().err


def test_cli_table_still_prints_the_table(capsys):
    assert main(["table"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["Evt1", "Evt2"]
    assert out[6].split()[0] == "Sta6" and "DT-2" in out[6].split()


# the SCU side: requestor-side cells an acceptor (the fake SCP) provokes and sees


def test_scu_side_cells_are_the_requestor_states_an_acceptor_drives():
    from dicomconf.scenario.coverage import SCU_PROVOKABLE

    assert len(SCU_PROVOKABLE) == 25
    assert {s for s, _ in SCU_PROVOKABLE} == {"Sta5", "Sta6", "Sta7", "Sta11"}
    assert ("Sta5", "Evt4") in SCU_PROVOKABLE and TRANSITIONS[("Sta5", "Evt4")] == "AE-4"
    assert not any(e == "Evt17" for _, e in SCU_PROVOKABLE)  # the acceptor's own close: nothing to see
    assert ("Sta11", "Evt19") not in SCU_PROVOKABLE and ("Sta11", "Evt13") in SCU_PROVOKABLE


def test_scu_scenarios_count_on_their_own_side_only(tmp_path, capsys):
    (tmp_path / "scu.yaml").write_text(
        "id: scu.x\ntitle: t\nrole: scp\nseverity: must\narea: reject-abort\n"
        'clauses: ["PS3.8 9.2 Table 9-10 (Sta5, Evt4, AE-4)"]\n'
        "steps:\n  - associate: {reject: {result: 1, source: 1, reason: 1}}\n"
    )
    (tmp_path / "scp.yaml").write_text(
        "id: x.one\ntitle: t\nseverity: must\narea: fsm\n"
        'clauses: ["PS3.8 9.2 Table 9-10 (Sta2, Evt12, AA-1)"]\nsteps:\n  - connect:\n'
    )
    assert main(["table", "--coverage", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    scp_part, scu_part = out.split("SCU side")
    assert "1 of 38 provokable acceptor-side cells cited by 1 scenarios that test an SCP" in scp_part
    assert "1 of 25 provokable requestor-side cells cited by 1 scenarios that test an SCU" in scu_part
    assert "scu.x" not in scp_part and "x.one" not in scu_part
