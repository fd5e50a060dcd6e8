"""No false passes on the SCU side: SCUs that never speak DICOM pass no SCU-testing scenario.

Theory of operation
-------------------
``dicomconf run scenarios/scu`` is run as a user would run it, with
``--scu-command`` naming a null SCU, a profile that claims everything (all
operations, one-second timeouts, cancels, a calling AE title) so that no
scenario is skipped for want of a claim, and ``--scu-wait 2`` (four workers
for the SCU that never connects, whose every scenario waits that long).  Two null
SCUs: ``true`` (never connects) and a one-line Python program that connects
to the fake SCP and closes at once.  Whatever the library holds under
``scenarios/scu`` (every area, both halves of the SCU suite), the JSON report
must list every scenario and no verdict *passed*; the run fails (exit status
1).  The fake SCPs listen on 127.0.0.1 only; each command is stopped by the
run.  Both runs go at once (they mostly wait), within about two minutes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dicomconf.scenario.model import load_file

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[2]
SCU_SCENARIOS = REPO / "scenarios" / "scu"
PROFILE = """\
name: an SCU that claims everything
calling_ae: NULL-SCU
called_ae: DICOMCONF
operations: [echo, store, find]
max_pdu_length: 16382
timeouts: {connect: 1, association: 1, dimse: 1, release: 1}
cancels: true
user_identity: false
retries: false
"""
CONNECT_AND_CLOSE = (f"{sys.executable} -c "
                     "\"import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2]))).close()\" "
                     "{host} {port}")
# name -> (command, workers): the SCU that never connects makes every scenario wait out --scu-wait
NULL_SCUS = {"never-connects": ("true", "4"), "connects-and-closes": (CONNECT_AND_CLOSE, "1")}


def _ids() -> set[str]:
    return {e.scenario.id for p in SCU_SCENARIOS.rglob("*.yaml") for e in load_file(p) if e.scenario is not None}


def _start(tmp_path: Path, name: str, command: str, workers: str) -> tuple[subprocess.Popen, Path]:
    profile = tmp_path / "null-scu.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    report = tmp_path / name
    argv = [sys.executable, "-m", "dicomconf.cli", "run", str(SCU_SCENARIOS), "-q", "--scu-command", command,
            "--scu-profile", str(profile), "--scu-wait", "2", "--report-dir", str(report), "-n", workers]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, report


def test_null_scus_pass_no_scu_scenario(tmp_path: Path):
    expected = _ids()
    assert len(expected) >= 23, "the SCU-testing library is missing"
    t0 = time.monotonic()
    runs = {name: _start(tmp_path, name, *how) for name, how in NULL_SCUS.items()}
    outputs = {}
    try:
        for name, (proc, _report) in runs.items():
            outputs[name], _ = proc.communicate(timeout=400)
    finally:
        for proc, _report in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    took = time.monotonic() - t0
    for name, (proc, report_dir) in runs.items():
        tail = outputs[name][-3000:]
        report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
        outcomes = {s["id"]: s["outcome"] for s in report["scenarios"]}
        assert set(outcomes) == expected, (name, sorted(expected ^ set(outcomes)), tail)
        passed = sorted(i for i, o in outcomes.items() if o == "passed")
        assert not passed, (name, passed, tail)
        skipped = sorted(i for i, o in outcomes.items() if o == "skipped")
        assert not skipped, (name, "the profile claims everything, nothing may be skipped", skipped)
        assert proc.returncode == 1, (name, proc.returncode, tail)
    assert took < 180, took
