"""Waiting scenarios played early, side by side (dicomconf.plugin_overlap): same verdicts, order and reports.

The end-to-end tests run pytest in a subprocess over a tiny scenario set in ``tmp_path``
against the embedded reference SCP (loopback, free ports), once with the overlap (the
default) and once without, and compare.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import report, run_pytest, write  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The subprocess imports dicomconf from this checkout, whatever the editable install points at."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))

HEAD = """\
  clauses: [PS3.8 9.1.5]
  severity: must
  area: timers
"""

SLEEP = 1.5  # seconds each sleeping scenario waits

SCENARIOS = f"""\
- id: ov.quick-first
  title: a scenario that does not wait
{HEAD}  steps:
    - associate:
    - echo:
    - release:
- id: ov.artim-closes
  title: a silent connection is closed at ARTIM expiry, not at once
{HEAD}  requires: {{timers.artim: {{max: 120}}}}
  steps:
    - connect:
    - expect: {{silence: "{{profile.artim / 2}}s"}}
    - expect: {{closed: true, within: "{{profile.artim + 5}}s"}}
- id: ov.artim-outlived
  title: a check that the connection outlives ARTIM three times over, which the SCP must break
{HEAD}  requires: {{timers.artim: {{max: 120}}}}
  steps:
    - connect:
    - expect: {{silence: "{{profile.artim * 3}}s"}}
- id: ov.sleep-a
  title: sleeps inside an association
{HEAD}  steps:
    - associate:
    - sleep: {SLEEP}s
    - echo:
    - release:
- id: ov.quick-middle
  title: another scenario that does not wait
{HEAD}  steps:
    - associate:
    - release:
- id: ov.sleep-b
  title: sleeps inside an association
{HEAD}  steps:
    - associate:
    - sleep: {SLEEP}s
    - echo:
    - release:
- id: ov.sleep-c
  title: sleeps inside an association
{HEAD}  steps:
    - associate:
    - sleep: {SLEEP}s
    - echo:
    - release:
"""

EXPECTED = {
    "ov.quick-first": "passed",
    "ov.artim-closes": "passed",
    "ov.artim-outlived": "failed",
    "ov.sleep-a": "passed",
    "ov.quick-middle": "passed",
    "ov.sleep-b": "passed",
    "ov.sleep-c": "passed",
}
WAITING = ("ov.artim-closes", "ov.artim-outlived", "ov.sleep-a", "ov.sleep-b", "ov.sleep-c")


def _run(tmp_path: Path, name: str, *args: str) -> tuple[dict, Path]:
    write(tmp_path / "scenarios" / "overlap.yaml", SCENARIOS)
    out = tmp_path / name
    proc = run_pytest(tmp_path, "scenarios", "-q", "--report-dir", str(out), "--junitxml", str(out / "junit.xml"),
                      *args)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one must-level failure
    return report(out), out


def _entries(tmp_path: Path) -> list:
    from dicomconf.scenario.model import load_file

    return load_file(write(tmp_path / "scenarios" / "overlap.yaml", SCENARIOS))


def test_waits_reads_the_steps(tmp_path: Path) -> None:
    from dicomconf.plugin_overlap import waits

    entries = _entries(tmp_path)
    got = {e.scenario.id: waits(e.scenario) for e in entries}
    assert got == {sid: sid in WAITING for sid in EXPECTED}


def test_overlap_keeps_verdicts_order_reports_and_saves_time(tmp_path: Path) -> None:
    doc, out = _run(tmp_path, "overlap")
    records = doc["scenarios"]
    assert sorted(r["id"] for r in records) == sorted(EXPECTED)
    assert {r["id"]: r["outcome"] for r in records} == EXPECTED
    by_id = {r["id"]: r for r in records}
    failed = by_id["ov.artim-outlived"]
    assert "(expect)" in failed["failure"]["step"] and "silence" in failed["failure"]["text"]
    # the timer check kept its power: closed after half ARTIM (not at once), before three ARTIMs
    assert 0.5 <= by_id["ov.artim-closes"]["duration_s"] < 3 * 1 + 2
    for record in records:
        assert record["pcap"] and (out / record["pcap"]).exists(), record["id"]
        assert record["steps"], record["id"]
    waited = sum(by_id[s]["duration_s"] for s in WAITING)
    assert waited >= 3 * SLEEP
    assert doc["run"]["duration_s"] < waited - SLEEP  # the waiting scenarios overlapped
    cases = {c.get("name"): c for c in ET.parse(out / "junit.xml").getroot().iter("testcase")}
    assert list(cases) == list(EXPECTED)  # each item reported in its place, not when its play ended
    assert [n for n, c in cases.items() if c.find("failure") is not None] == ["ov.artim-outlived"]


def test_overlap_off_gives_the_same_verdicts(tmp_path: Path) -> None:
    doc, _ = _run(tmp_path, "serial", "--dicomconf-overlap", "0")
    assert {r["id"]: r["outcome"] for r in doc["scenarios"]} == EXPECTED
    by_id = {r["id"]: r for r in doc["scenarios"]}
    assert doc["run"]["duration_s"] >= sum(by_id[s]["duration_s"] for s in WAITING)  # one after another


def test_a_rerun_plays_the_scenario_again_in_its_item(tmp_path: Path) -> None:
    doc, out = _run(tmp_path, "reruns", "--reruns", "1")
    by_id = {r["id"]: r for r in doc["scenarios"]}
    failed = by_id["ov.artim-outlived"]
    assert failed["outcome"] == "failed" and failed["attempts"] == 2
    assert failed["first_failure"]["pcap"] and (out / failed["first_failure"]["pcap"]).exists()
    assert all(by_id[s]["attempts"] == 1 for s in EXPECTED if s != "ov.artim-outlived")


def test_overlap_stays_off_for_a_named_target_a_named_scu_and_xdist(tmp_path: Path) -> None:
    from dicomconf.plugin_overlap import Overlap
    from dicomconf.scenario.profile import reference_profile

    entry = next(e for e in _entries(tmp_path) if e.scenario.id == "ov.sleep-a")
    item = SimpleNamespace(entry=entry, nodeid="x")

    def overlap(target=None, mode="embedded", **option):
        opts = {"dicomconf_overlap": None, "collectonly": False, "numprocesses": None, **option}
        side = SimpleNamespace(skip_reason=lambda s: None, mode=mode)
        state = SimpleNamespace(target_address=target, scu_side=side, profile=reference_profile())
        o = Overlap(SimpleNamespace(option=SimpleNamespace(**opts)), state)
        o.base_profile = state.profile
        return o

    assert overlap().active() and overlap().eligible(item)
    assert not overlap(target=("127.0.0.1", 104)).eligible(item)  # a user's SCP: one scenario at a time
    assert not overlap(numprocesses=2).active()
    assert not overlap(dicomconf_overlap=0).active()
    assert not overlap(collectonly=True).active()
    scu_entry = SimpleNamespace(scenario=dataclasses.replace(entry.scenario, role="scp"), error=None)
    scu_item = SimpleNamespace(entry=scu_entry, nodeid="y")
    assert overlap().eligible(scu_item) and not overlap(mode="command").eligible(scu_item)
