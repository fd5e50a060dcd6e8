"""The run model every output renders (dicomconf.report.model), `dicomconf report diff` and `render`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from dicomconf import exitcodes
from dicomconf.report import model
from dicomconf.report.diff import ReportError, compare, load, render
from dicomconf.report.json_report import write_reports
from dicomconf.report.markdown import render_markdown
from dicomconf.report.terminal import group_lines, verdict_line

SCHEMA = json.loads((Path(model.__file__).parent / "report.schema.json").read_text())

ABORT_ANY = '{"any": [{"pdu": "A-ABORT", "source": 2, "reason": [0, 1]}]} within 5s on main'


def _record(sid, outcome="passed", severity="must", area="malformed", message=None, expected=None,
            finding=None, clauses=("PS3.8 9.3.8",), pcap=None, file="/x/s.yaml:3"):
    failure = None
    if outcome in ("failed", "error"):
        failure = {"step": f"{file} (expect)", "message": message, "expected": expected, "came": "A-ABORT",
                   "finding": finding, "text": message}
    return {"id": sid, "title": sid, "clauses": list(clauses), "severity": severity, "area": area,
            "disruptive": False, "requirement": "", "role": "scu", "tests": "SCP", "outcome": outcome,
            "duration_s": 0.1, "findings": [], "steps": [], "pcap": pcap, "file": file, "failure": failure,
            "skip_reason": None, "target_lost": None, "scu": None, "nodeid": f"n::{sid}"}


def _run(exit_status=1, baseline=None, strict=False):
    return {"target": "pacs.example:104", "profile": {"name": "p", "source": "p.yaml"}, "start": "2026-12-07T00:00:00",
            "duration_s": 1.0, "strict": strict, "exit_status": exit_status, "baseline": baseline}


def _records():
    """One defect (A-ABORT source 0 where AA-8 says 2) in five must-level scenarios, worded two ways;
    a finding in two; two should-level failures; passes and a skip."""
    out = [_record(f"m.source-{i}", "failed", message="source: expected 2, got 0",
                   expected='{"aborted": {"source": 2, "reason": [0, 1, 4]}} within 5s on main') for i in range(3)]
    out += [_record(f"m.alt-{i}", "failed", message="alternative 1: source: expected 2, got 0", expected=ABORT_ANY,
                    clauses=(f"PS3.8 9.2 Table 9-10 (Sta6, Evt19, AA-{i})",)) for i in range(2)]
    finding = {"code": "pdu-length-mismatch", "clause": "PS3.8 9.3.1", "severity": "must", "message": "says 10, has 12"}
    out += [_record(f"f.{i}", "failed", area="dimse", message="the target broke PS3.8 9.3.1", finding=finding)
            for i in range(2)]
    out += [_record(f"s.{i}", "failed", severity="should", area="timers", message="expected the connection to close, "
                    f"got nothing within {i + 5}s", expected='{"closed": true} within 8s') for i in range(2)]
    out += [_record("p.1"), _record("p.2", area="timers"), _record("k.1", "skipped")]
    return out


def test_one_defect_in_five_scenarios_is_one_group_and_must_groups_come_first():
    doc = model.build_document(Path("/tmp"), _run(), _records())
    groups = doc["failure_groups"]
    assert [len(g["scenarios"]) for g in groups] == [5, 2, 2]
    first = groups[0]
    assert first["severity"] == "must" and first["deviation"] == "source: expected 2, got 0 (awaiting A-ABORT)"
    assert set(first["scenarios"]) == {"m.source-0", "m.source-1", "m.source-2", "m.alt-0", "m.alt-1"}
    assert "PS3.8 9.2 Table 9-10 (Sta6, Evt19, AA-1)" in first["clauses"]
    by_finding = groups[1]
    assert by_finding["clause"] == "PS3.8 9.3.1" and by_finding["deviation"].startswith("pdu-length-mismatch")
    # the wait's length differs between the two should-level failures: still one group, and last
    assert groups[2]["severity"] == "should" and groups[2]["scenarios"] == ["s.0", "s.1"]
    assert groups[2]["deviation"] == "expected the connection to close, got nothing within its time"
    jsonschema.validate(doc, SCHEMA)
    # the terminal says the same, one defect a line, with its scenarios
    lines = group_lines(doc, limit=3)
    assert lines[0] == "[must] source: expected 2, got 0 (awaiting A-ABORT)"
    assert lines[1] == "    5 scenario(s): m.alt-0, m.alt-1, m.source-0, and 2 more"
    assert lines[2] == "[must] pdu-length-mismatch: says 10, has 12 [PS3.8 9.3.1]" and len(lines) == 6


def test_counts_are_the_same_words_in_every_output(tmp_path):
    records = _records()
    doc = write_reports(tmp_path, _run(), records)
    s = doc["summary"]
    assert (s["passed"], s["failed"], s["skipped"], s["error"]) == (2, 9, 1, 0)
    assert s["must_failed"] + s["should_failed"] == s["failed"] and s["must_failed"] == 7
    line = model.counts_line(doc)
    assert line == "2 passed, 9 failed (7 must, 2 should), 1 skipped"
    assert line in render_markdown(doc) and line in verdict_line(doc)
    assert json.loads((tmp_path / "report.json").read_text())["summary"] == s


@pytest.mark.parametrize("status,baseline,word,says", [
    (0, None, "PASS", "conforms"),
    (0, {"known": ["m.alt-0"], "new": [], "stale": []}, "PASS", "with 1 known failure(s) from the baseline"),
    (1, None, "FAIL", "7 must-level failure(s)"),
    (1, {"known": [], "new": ["m.alt-0"], "stale": ["p.1"]}, "FAIL", "1 new, 1 stale"),
    (4, None, "NOT RUN", "usage or configuration error"),
    (6, None, "NOT RUN", "unreachable"),
])
def test_the_verdict_is_read_from_the_exit_status(status, baseline, word, says):
    doc = model.build_document(Path("/tmp"), _run(status, baseline), _records())
    got_word, sentence = model.verdict(doc)
    assert got_word == word and says in sentence


def test_paths_are_relative_to_the_report_directory(tmp_path):
    (tmp_path / "scen").mkdir()
    yaml_file = tmp_path / "scen" / "s.yaml"
    yaml_file.write_text("x")
    pcap = tmp_path / "rep" / "pcap" / "f.pcap"
    pcap.parent.mkdir(parents=True)
    pcap.write_bytes(b"x")
    rec = _record("f", "failed", message="m", pcap=str(pcap), file=f"{yaml_file}:7")
    doc = model.build_document(tmp_path / "rep", _run(), [rec])
    s = doc["scenarios"][0]
    assert s["pcap"] == "pcap/f.pcap" and s["file"] == "../scen/s.yaml:7"
    assert s["failure"]["step"] == "../scen/s.yaml:7 (expect)"
    assert (tmp_path / "rep" / s["file"].rsplit(":", 1)[0]).resolve() == yaml_file.resolve()


def _doc(tmp_path, name, records, status=1):
    write_reports(tmp_path / name, _run(status), records)
    return tmp_path / name


def test_diff_sorts_every_change_into_one_kind(tmp_path):
    old = [_record("a.regress"), _record("b.fixed", "failed", message="x"), _record("c.same", "failed", message="x"),
           _record("d.other", "failed", message="came A"), _record("e.gone"), _record("f.skip", "skipped")]
    new = [_record("a.regress", "failed", message="y"), _record("b.fixed"), _record("c.same", "failed", message="x"),
           _record("d.other", "failed", message="came B"), _record("g.added"), _record("f.skip", "error", message="z")]
    d = compare(load(_doc(tmp_path, "old", old)), load(_doc(tmp_path, "new", new) / "report.json"))
    kinds = {c.id: c.kind for c in d.changes}
    assert kinds == {"a.regress": "regressed", "b.fixed": "fixed", "d.other": "fails differently",
                     "e.gone": "removed", "g.added": "added", "f.skip": "regressed"}
    assert d.worse
    text = "\n".join(render(d))
    assert "regressed (2):" in text and "  a.regress (must): passed -> failed" in text and "now: y" in text
    assert text.index("regressed") < text.index("fixed (1)")


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dicomconf.cli", "report", *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_report_cli_exit_codes_and_clear_errors(tmp_path):
    same = _doc(tmp_path, "a", [_record("x"), _record("y", "failed", message="m")])
    better = _doc(tmp_path, "b", [_record("x"), _record("y")])
    worse = _doc(tmp_path, "c", [_record("x", "failed", message="m"), _record("y", "failed", message="m")])
    assert _cli("diff", same, same).returncode == exitcodes.CONFORMS
    fixed = _cli("diff", same, better)
    assert fixed.returncode == exitcodes.CONFORMS and "fixed (1):" in fixed.stdout
    regressed = _cli("diff", same, worse, "--json")
    assert regressed.returncode == exitcodes.FAILURES
    assert json.loads(regressed.stdout)["changes"][0] == {
        "kind": "regressed", "id": "x", "severity": "must", "old": "passed", "new": "failed", "why_old": None,
        "why_new": "m"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1,\n "run": ')
    for args, says in (((tmp_path / "none", same), "no report.json there"), ((bad, same), "bad.json:2: not JSON"),
                       (("diff-only",), "usage")):
        result = _cli("diff", *args) if args[0] != "diff-only" else _cli("diff")
        assert result.returncode == exitcodes.USAGE_ERROR and "Traceback" not in result.stderr, result.stderr
        assert says in result.stderr
    not_ours = tmp_path / "other.json"
    not_ours.write_text('{"schema_version": 1, "run": {}, "summary": {}, "scenarios": [], "deselected": []}')
    with pytest.raises(ReportError, match="not a valid report.json at (run|summary)"):
        load(not_ours)


def test_report_render_writes_the_page_again(tmp_path):
    rep = _doc(tmp_path, "r", _records())
    (rep / "report.html").unlink()
    result = _cli("render", rep, "--summary-md", tmp_path / "s.md")
    assert result.returncode == 0, result.stderr
    assert "m.source-0" in (rep / "report.html").read_text() and "Failures by what went wrong" in (
        tmp_path / "s.md").read_text()
