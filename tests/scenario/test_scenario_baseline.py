"""Baselines of known failures (dicomconf.scenario.baseline): judged, written, and gating a run.

The end-to-end test plays a small scenario file against the embedded reference SCP with
``dicomconf run``, as a CI job would: a baseline written from a failing run makes the next run
conform; a new failure, a deleted entry, and a baselined scenario that now passes each fail it.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dicomconf import exitcodes
from dicomconf.scenario.baseline import Entry, judge, load_baseline, write_baseline
from dicomconf.scenario.loader import SourceError


def _r(sid: str, outcome: str, severity: str = "must") -> dict:
    return {"id": sid, "outcome": outcome, "severity": severity, "failure": {"message": f"{sid} broke it"}}


def test_judge_sorts_every_outcome():
    entries = {
        "a.known": Entry("failed", "r"),
        "b.error-known": Entry("error", "r"),
        "c.stale": Entry("failed", "r"),
        "d.flaky-pass": Entry("flaky", "r"),
        "e.flaky-fail": Entry("flaky", "r"),
        "f.wrong-outcome": Entry("error", "r"),
        "g.gone": Entry("failed", "r"),
        "h.expired": Entry("failed", "r", expires=dt.date(2020, 1, 1)),
    }
    records = [_r("a.known", "failed"), _r("b.error-known", "error"), _r("c.stale", "passed"),
               _r("d.flaky-pass", "passed"), _r("e.flaky-fail", "failed"), _r("f.wrong-outcome", "failed"),
               _r("h.expired", "failed"), _r("i.new", "failed"), _r("j.should", "failed", "should"),
               _r("k.skipped", "skipped")]
    j = judge(records, entries, today=dt.date(2026, 12, 7))
    assert j.known == ["a.known", "b.error-known", "e.flaky-fail", "h.expired"]
    assert j.new == ["f.wrong-outcome", "i.new"]  # a should-level failure is not new unless strict
    assert j.stale == ["c.stale"] and j.unknown == ["g.gone"] and j.expired == ["h.expired"]
    assert not j.conforms
    assert judge(records, entries, strict=True).new == ["f.wrong-outcome", "i.new", "j.should"]


def test_a_run_with_only_known_failures_conforms_and_stale_entries_can_be_allowed():
    entries = {"a": Entry("failed", "r"), "b": Entry("failed", "r")}
    assert judge([_r("a", "failed"), _r("b", "failed")], entries).conforms
    stale = judge([_r("a", "failed"), _r("b", "passed")], entries)
    assert not stale.conforms and stale.stale == ["b"]
    assert judge([_r("a", "failed"), _r("b", "passed")], entries, allow_stale=True).conforms
    assert any("remove it from the baseline" in line for line in stale.lines())


def test_a_bad_baseline_names_every_problem_with_its_line(tmp_path: Path):
    bad = tmp_path / "b.yaml"
    bad.write_text("scenarios:\n  x.one: {expected: broken, reason: r}\n  x.two: {expected: failed}\n"
                   "  x.three: {expected: failed, reason: r, expires: someday}\n", encoding="utf-8")
    with pytest.raises(SourceError) as info:
        load_baseline(bad)
    text = str(info.value)
    assert f"{bad}:2" in text and f"{bad}:3" in text and f"{bad}:4" in text
    assert "YYYY-MM-DD" in text


def test_written_baselines_keep_what_the_old_file_said(tmp_path: Path):
    path = tmp_path / "baseline.yaml"
    assert write_baseline(path, [_r("a", "failed"), _r("b", "error"), _r("c", "passed"),
                                 _r("d", "failed", "should")], target="a PACS") == 2
    entries = load_baseline(path)
    assert set(entries) == {"a", "b"} and entries["b"].expected == "error" and entries["a"].reason == "a broke it"
    keep = {"a": Entry("flaky", "a known race", "PACS-12", dt.date(2027, 1, 31))}
    write_baseline(path, [_r("a", "failed")], keep=keep)
    assert load_baseline(path)["a"] == Entry("flaky", "a known race", "PACS-12", dt.date(2027, 1, 31))


def test_rewriting_a_baseline_file_keeps_its_target_line(tmp_path: Path):
    from dicomconf.scenario.baseline import update_baseline

    path = tmp_path / "baseline.yaml"
    update_baseline(path, [_r("a", "failed")], "127.0.0.1:40000")
    assert yaml.safe_load(path.read_text())["target"] == "127.0.0.1:40000"
    path.write_text(path.read_text().replace("127.0.0.1:40000", "ACME PACS 7.2 (test system)"))
    assert update_baseline(path, [_r("a", "failed"), _r("b", "failed")], "127.0.0.1:40001") == 2
    assert yaml.safe_load(path.read_text())["target"] == "ACME PACS 7.2 (test system)"


SCENARIOS = """\
- id: base.passes
  title: The association is accepted and released
  clauses: [PS3.8 9.3.3]
  severity: must
  area: negotiation
  steps:
    - associate: {}
    - release: {}
- id: base.fails
  title: Expects a rejection the reference SCP does not give (so it fails)
  clauses: [PS3.8 9.3.4]
  severity: must
  area: negotiation
  steps:
    - associate: {reply: {pdu: A-ASSOCIATE-RJ}}
"""


def _run(tmp_path: Path, scenarios: Path, name: str, *args: str) -> tuple[int, dict, str]:
    report = tmp_path / name
    argv = [sys.executable, "-m", "dicomconf.cli", "run", str(scenarios), "-q", "--report-dir", str(report), *args]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    doc = json.loads((report / "report.json").read_text(encoding="utf-8"))
    return proc.returncode, doc, proc.stdout + proc.stderr


@pytest.mark.network
def test_a_ci_run_gates_on_new_failures_only(tmp_path: Path):
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text(SCENARIOS, encoding="utf-8")
    baseline = tmp_path / "baseline.yaml"
    code, _, out = _run(tmp_path, scenarios, "first", "--write-baseline", str(baseline))
    assert code == exitcodes.FAILURES and "baseline written" in out, out[-2000:]
    assert set(load_baseline(baseline)) == {"base.fails"}

    code, doc, out = _run(tmp_path, scenarios, "known", "--baseline", str(baseline))
    assert code == exitcodes.CONFORMS, out[-2000:]
    assert doc["run"]["baseline"]["known"] == ["base.fails"] and doc["run"]["baseline"]["conforms"]
    assert "1 known failure(s)" in out

    scenarios.write_text(SCENARIOS.replace("    - release: {}", "    - release: {within: 0s}\n    - expect: "
                                           "{pdu: A-ABORT, within: 1s}"), encoding="utf-8")
    code, doc, out = _run(tmp_path, scenarios, "new", "--baseline", str(baseline))
    assert code == exitcodes.FAILURES and doc["run"]["baseline"]["new"] == ["base.passes"], out[-2000:]
    assert "new failure: base.passes" in out
    scenarios.write_text(SCENARIOS, encoding="utf-8")

    empty = tmp_path / "empty.yaml"
    empty.write_text("scenarios: {}\n", encoding="utf-8")
    code, doc, _ = _run(tmp_path, scenarios, "deleted", "--baseline", str(empty))
    assert code == exitcodes.FAILURES and doc["run"]["baseline"]["new"] == ["base.fails"]

    scenarios.write_text(SCENARIOS.replace("{reply: {pdu: A-ASSOCIATE-RJ}}", "{}"), encoding="utf-8")
    code, doc, out = _run(tmp_path, scenarios, "stale", "--baseline", str(baseline))
    assert code == exitcodes.FAILURES and doc["run"]["baseline"]["stale"] == ["base.fails"], out[-2000:]
    assert "remove it from the baseline" in out
    code, _, _ = _run(tmp_path, scenarios, "allowed", "--baseline", str(baseline), "--allow-stale")
    assert code == exitcodes.CONFORMS


def test_a_bad_baseline_is_a_usage_error(tmp_path: Path):
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text(SCENARIOS, encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenarios:\n  base.fails: {expected: maybe, reason: r}\n", encoding="utf-8")
    argv = [sys.executable, "-m", "dicomconf.cli", "run", str(scenarios), "--baseline", str(bad)]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == exitcodes.USAGE_ERROR
    assert f"{bad}:2" in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr
