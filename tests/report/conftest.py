"""A small real run for the report tests: a few scenarios against the embedded reference SCP and SCU.

:func:`tiny_run` plays them once per session (in a pytest subprocess, as a user would) and gives the
report directory: report.json, report.html and a pcap per scenario.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scenario"))

from scenario_testkit import run_pytest, write  # noqa: E402

TINY = """\
- id: tiny.echo-store
  title: echo and store on one association
  clauses: [PS3.7 9.3.5, "PS3.8 9.2 Table 9-10 (Sta6, Evt10, DT-2)"]
  severity: must
  area: dimse
  steps:
    - associate: {contexts: [verification, ct]}
    - echo: {}
    - store: {sop_class: ct, status: 0}
    - release: {}
- id: tiny.release-must-fails-1
  title: a must expectation the reference SCP does not meet
  clauses: ["PS3.8 9.2 Table 9-10 (Sta6, Evt12, AR-2)"]
  severity: must
  area: release-abort
  steps:
    - associate: {}
    - send: {pdu: A-RELEASE-RQ}
    - expect: {pdu: A-ABORT, source: 2, within: 2s}
- id: tiny.release-must-fails-2
  title: the same deviation in a second scenario
  clauses: [PS3.8 9.3.7]
  severity: must
  area: release-abort
  steps:
    - associate: {contexts: [verification]}
    - send: {pdu: A-RELEASE-RQ}
    - expect: {pdu: A-ABORT, source: 2, within: 2s}
- id: tiny.should-fails
  title: a should expectation that fails
  clauses: ["PS3.8 9.2 Table 9-10 (Sta2, Evt18, AA-2)"]
  severity: should
  area: connection
  steps:
    - connect: {}
    - expect: {pdu: A-ASSOCIATE-AC, within: 100ms}
- id: tiny.skipped
  title: needs a target that does not check the called AE title
  clauses: [PS3.8 9.3.2]
  severity: must
  area: negotiation
  requires: {checks_called_ae: false}
  steps:
    - associate: {}
"""

TINY_SCU = """\
id: tiny.scu-release
title: the SCU under test releases normally
role: scp
operation: any
clauses: ["PS3.8 9.2 Table 9-10 (Sta7, Evt13, AR-3)"]
severity: must
area: release
steps:
  - associate: {}
  - serve: {}
  - release: {}
"""

# What the run gives, scenario by scenario.
EXPECTED = {
    "tiny.echo-store": "passed",
    "tiny.release-must-fails-1": "failed",
    "tiny.release-must-fails-2": "failed",
    "tiny.should-fails": "failed",
    "tiny.skipped": "skipped",
    "tiny.scu-release": "passed",
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The report directory of one real run of the tiny suite."""
    root = tmp_path_factory.mktemp("tiny")
    write(root / "scenarios" / "tiny.yaml", TINY)
    write(root / "scenarios" / "scu" / "tiny-scu.yaml", TINY_SCU)
    result = run_pytest(root, "scenarios", "--report-dir", "rep", "-p", "no:xdist")
    rep = root / "rep"
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    got = {s["id"]: s["outcome"] for s in json.loads((rep / "report.json").read_text())["scenarios"]}
    assert got == EXPECTED, result.stdout[-3000:]
    return rep


@pytest.fixture(scope="session")
def tiny_document(tiny_run) -> dict:
    return json.loads((tiny_run / "report.json").read_text())

