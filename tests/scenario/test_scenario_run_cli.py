"""``dicomconf run``: pytest in-process over a scenarios directory."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import outcomes, write  # noqa: E402

SCENARIOS = """\
- id: cli.echo
  title: echo through dicomconf run
  clauses: [PS3.7 9.1.5]
  severity: must
  area: dimse
  steps:
    - associate:
    - echo:
    - release:
- id: cli.should
  title: a should failure
  clauses: [PS3.8 9.1.5]
  severity: should
  area: timers
  steps:
    - connect:
    - expect: {closed: true, within: 100ms}
"""


def _run(cwd, *args):
    cmd = [sys.executable, "-m", "dicomconf.cli", "run", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_run_writes_reports_and_junit_and_honours_strict(tmp_path):
    write(tmp_path / "scenarios" / "cli.yaml", SCENARIOS)
    result = _run(tmp_path, "--report-dir", "out", "-q")  # ./scenarios is found by itself
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes(tmp_path / "out") == {"cli.echo": "passed", "cli.should": "failed"}
    cases = {c.get("name"): c for c in ET.parse(tmp_path / "out" / "junit.xml").getroot().iter("testcase")}
    assert {p.get("name"): p.get("value") for p in cases["cli.echo"].iter("property")}["severity"] == "must"

    result = _run(tmp_path, "scenarios", "--report-dir", "strict", "--strict", "-q")
    assert result.returncode == 1, result.stdout + result.stderr


def test_run_default_report_dir_links_latest(tmp_path):
    write(tmp_path / "scenarios" / "cli.yaml", SCENARIOS.split("- id: cli.should")[0])
    result = _run(tmp_path, "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and (latest / "junit.xml").exists() and outcomes(latest) == {"cli.echo": "passed"}


def test_run_usage_errors(tmp_path):
    result = _run(tmp_path, "nowhere")
    assert result.returncode == 4 and "no such file or directory: nowhere" in result.stderr
    write(tmp_path / "scenarios" / "cli.yaml", SCENARIOS)
    result = _run(tmp_path, "--target", "[198.51.100.1]:104")
    assert result.returncode == 4 and "brackets are only for IPv6 addresses" in result.stderr


def test_mistyped_option_shows_runs_usage_and_the_nearest_option(tmp_path):
    result = _run(tmp_path, "--targt", "127.0.0.1:104")
    assert result.returncode == 4
    assert result.stderr.startswith("usage: dicomconf run ")
    assert "dicomconf run: error: unrecognized arguments: --targt" in result.stderr
    assert "--targt: did you mean --target?" in result.stderr
    result = _run(tmp_path, "--gentel")
    assert result.returncode == 4 and "did you mean --gentle?" in result.stderr
