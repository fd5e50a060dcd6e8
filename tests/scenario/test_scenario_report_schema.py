"""report.json follows its JSON Schema, and the Markdown summary says what the report says.

One run of both halves (an SCP-testing scenario that passes, one that fails, one SCU-testing
scenario against the embedded reference SCU) with a baseline and ``--summary-md``: the report
validates against ``dicomconf/report/report.schema.json``, the schema refuses what it must, and
the Markdown summary carries the verdict, the counts of the report and each failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = """\
- id: rep.passes
  title: The association is accepted and released
  clauses: [PS3.8 9.3.3]
  severity: must
  area: negotiation
  steps:
    - associate: {}
    - release: {}
- id: rep.fails
  title: Expects a rejection the reference SCP does not give
  clauses: [PS3.8 9.3.4]
  severity: must
  area: negotiation
  steps:
    - associate: {reply: {pdu: A-ASSOCIATE-RJ}}
"""


def _schema() -> dict:
    return json.loads(resources.files("dicomconf.report").joinpath("report.schema.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, str, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("report")
    (tmp / "s.yaml").write_text(SCENARIOS, encoding="utf-8")
    baseline = tmp / "baseline.yaml"
    baseline.write_text("scenarios:\n  rep.fails: {expected: failed, reason: the test wants it to fail}\n",
                        encoding="utf-8")
    argv = [sys.executable, "-m", "dicomconf.cli", "run", str(tmp / "s.yaml"),
            str(REPO / "scenarios" / "scu" / "dimse" / "store-failure-a700.yaml"), "-q",
            "--report-dir", str(tmp / "report"), "--baseline", str(baseline), "--summary-md", str(tmp / "summary.md")]
    proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=300)
    doc = json.loads((tmp / "report" / "report.json").read_text(encoding="utf-8"))
    return doc, (tmp / "summary.md").read_text(encoding="utf-8"), proc


def test_report_json_validates_against_its_schema(run):
    doc, _, proc = run
    assert proc.returncode == 0, proc.stdout[-3000:]
    jsonschema.validate(doc, _schema())
    assert doc["schema_version"] == 1
    roles = {s["id"]: (s["role"], s["tests"]) for s in doc["scenarios"]}
    assert roles == {"rep.passes": ("scu", "SCP"), "rep.fails": ("scu", "SCP"),
                     "scu.dimse.store-failure-a700": ("scp", "SCU")}


@pytest.mark.parametrize("break_it", [
    lambda d: d["scenarios"][0].update(outcome="maybe"),
    lambda d: d["scenarios"][0].update(surprise=1),
    lambda d: d.pop("schema_version"),
    lambda d: d["summary"].update(passed=-1),
])
def test_the_schema_refuses_what_is_not_a_report(run, break_it):
    doc = json.loads(json.dumps(run[0]))
    break_it(doc)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, _schema())


def test_the_markdown_summary_says_what_the_report_says(run):
    from dicomconf.report.model import counts_line
    from dicomconf.report.outcomes import OUTCOMES

    doc, md, _ = run
    assert md.startswith("## dicomconf: PASS") and "1 known failure(s) from the baseline" in md
    s = doc["summary"]
    assert "| " + " | ".join(str(s[o]) for o in OUTCOMES) + f" | {s['must_failed']} |" in md
    assert f"- {counts_line(doc)}" in md and "1 known" in counts_line(doc)
    assert "### Known failures (in the baseline)" in md and "- `rep.fails`" in md
    # the failures grouped by what went wrong: one row, with its scenario and clause
    assert "| must | expected A-ASSOCIATE-RJ, got A-ASSOCIATE-AC | `rep.fails` | PS3.8 9.3.4 |" in md
    assert "Full report: `report/report.html`" in md
