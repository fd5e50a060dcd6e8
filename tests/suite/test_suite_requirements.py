"""Every must-level scenario names the "shall" it enforces, and the reports show it.

Theory of operation
-------------------
A scenario's ``requirement`` is a short quotation of the normative sentence of
the clause it cites (docs/scenarios.md, Severities and requirements).  The
first tests read the shipped library (``dicomconf.scenario.library.shipped``,
the checkout's ``scenarios/`` in an editable install) with the scenario
loader and fail, naming the scenarios and their files, when a must-level
scenario has no requirement, or one that neither contains "shall" nor quotes
an action of PS3.8 Table 9-9 (``AA-8: ...``: a cell of the normative state
table, PS3.8 9.2.3, is the rule there).  Should-level scenarios may carry one;
when they do it is checked the same way for form (a quotation, not a
placeholder).

The last test plays a tiny library of three scenarios against the embedded
reference SCP in a separate pytest process (loopback only, the SCP started and
stopped by the run itself) and checks that the requirement reaches
``report.json``, ``report.html`` (escaped, in the scenario's row), the JUnit
``requirement`` property and the failure text, and that a scenario without
one shows none.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from html import escape
from pathlib import Path

import pytest

from dicomconf.scenario.library import scenario_files, shipped
from dicomconf.scenario.model import Scenario, load_file

# "AA-8: Send A-ABORT PDU ...": the action a Table 9-10 cell names, quoted from Tables 9-6 to 9-9 (PS3.8 9.2.2).
_TABLE_ACTION = re.compile(r"\b(AE|DT|AR|AA)-\d{1,2}:\s+\S")


def _library() -> list[Scenario]:
    root = shipped()
    assert root is not None, "the scenario library (dicomconf.scenarios) is not installed as files on disk"
    out = []
    for path in scenario_files(root):
        out.extend(e.scenario for e in load_file(path) if e.scenario is not None)
    return out


def _states_a_rule(requirement: str) -> bool:
    return "shall" in requirement.lower() or bool(_TABLE_ACTION.search(requirement))


def test_the_library_has_must_and_should_scenarios():
    scenarios = _library()
    assert len(scenarios) >= 90
    assert {s.severity for s in scenarios} == {"must", "should"}


def test_every_must_level_scenario_quotes_the_shall_it_enforces():
    missing = [f"{s.id} ({s.file}:{s.line})" for s in _library()
               if s.severity == "must" and not _states_a_rule(s.requirement)]
    assert not missing, ("must-level scenarios without a requirement quoting a \"shall\" (or a Table 9-10 action) "
                         f"of the clause they cite: {missing}")


def test_a_requirement_is_a_quotation_with_its_clause_cited():
    for s in _library():
        if not s.requirement:
            continue
        assert len(s.requirement) >= 10 and s.requirement == s.requirement.strip(), s.id
        assert s.clauses, f"{s.id}: a requirement needs the clause it quotes in clauses"


def test_table_action_quotes_name_an_action_the_scenario_cites():
    """A requirement quoting AA-8 belongs to a scenario citing a Table 9-10 cell or Table 9-9 with AA-8."""
    for s in _library():
        for action in re.findall(r"\b((?:AE|DT|AR|AA)-\d{1,2}):", s.requirement):
            assert any(action in c for c in s.clauses), f"{s.id}: quotes {action} but cites {s.clauses}"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}


TINY = """\
- id: tiny.echo-passes
  title: C-ECHO answers success
  clauses: [PS3.7 9.3.5.2 Table 9.3-13]
  requirement: "Status: Indicates the status of the response. It shall have a value of Success. <&>"
  severity: must
  area: dimse
  steps:
    - associate: {contexts: [verification]}
    - echo: {status: 0}
    - release:

- id: tiny.echo-fails
  title: C-ECHO expected to answer a status the target never gives
  clauses: [PS3.8 7.2.2]
  requirement: "An accepting DICOM Application Entity shall always issue an A-RELEASE response primitive"
  severity: must
  area: dimse
  steps:
    - associate: {contexts: [verification]}
    - echo: {status: 0x0110}
    - release:

- id: tiny.no-requirement
  title: A should-level scenario without a requirement
  clauses: [PS3.8 9.3.7]
  severity: should
  area: release-abort
  steps:
    - associate: {contexts: [verification]}
    - release:
"""


def test_requirement_reaches_json_html_junit_and_failure_text(tmp_path):
    library = tmp_path / "scenarios"
    library.mkdir()
    (library / "tiny.yaml").write_text(textwrap.dedent(TINY), encoding="utf-8")
    report, junit = tmp_path / "report", tmp_path / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(library), "-q", "-p", "no:cacheprovider",
                           "--report-dir", str(report), f"--junitxml={junit}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, env=_env())
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]  # one must-level failure

    doc = json.loads((report / "report.json").read_text(encoding="utf-8"))
    by_id = {s["id"]: s for s in doc["scenarios"]}
    assert by_id["tiny.echo-passes"]["outcome"] == "passed", out[-3000:]
    assert by_id["tiny.echo-fails"]["outcome"] == "failed", out[-3000:]
    assert by_id["tiny.echo-passes"]["requirement"].endswith("It shall have a value of Success. <&>")
    assert by_id["tiny.echo-fails"]["requirement"].startswith("An accepting DICOM Application Entity shall")
    assert by_id["tiny.no-requirement"]["requirement"] == ""

    html = (report / "report.html").read_text(encoding="utf-8")
    row = re.search(r'<article class="scenario v-passed" id="s-tiny\.echo-passes".*?</article>', html, re.S)
    assert row and escape("It shall have a value of Success. <&>") in row.group(0)
    assert "<&>" not in html
    quiet = re.search(r'<article class="scenario v-passed" id="s-tiny\.no-requirement".*?</article>', html, re.S)
    assert quiet and 'class="requirement"' not in quiet.group(0)

    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    props = {name: {p.get("name"): p.get("value") for p in case.iter("property")} for name, case in cases.items()}
    assert props["tiny.echo-fails"]["requirement"].startswith("An accepting DICOM Application Entity shall")
    assert "requirement" not in props["tiny.no-requirement"]

    failure = by_id["tiny.echo-fails"]["failure"]["text"]
    assert "requirement: An accepting DICOM Application Entity shall always issue" in failure
    assert "requirement: An accepting DICOM Application Entity shall always issue" in proc.stdout
