"""The shipped Q/R scenarios (scenarios/qr) through the plugin and ``dicomconf run``, embedded and named targets.

Against the embedded reference SCP the run starts the harness's move listener on a free
port and points the SCP's move destinations at it; against a named target (here a
reference SCP this test starts on 127.0.0.1, configured with the listener's AE and port
as a PACS would be) each scenario that needs the listener starts it on the profile's port
and runs alone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

from dicomconf.scp.config import SCPConfig
from dicomconf.scp.runtime import run_in_thread

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import REPO, outcomes, run_pytest  # noqa: E402

QR = REPO / "scenarios" / "qr"
IDS = {"services.find-study-wildcard", "services.find-study-date-range", "services.move-study-to-harness",
       "services.move-unknown-destination", "services.get-study-with-role-selection",
       "services.commit-stored-instances", "services.commit-unknown-instances-fail",
       "services.mpps-create-then-complete"}
# Scenarios the embedded SCP's profile does not claim what they need for: skipped in its run (the
# report on a new association needs commitment.report: new; test_scenario_qr_workflow.py plays it).
NOT_CLAIMED = {"services.commit-report-on-new-association": "skipped"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_qr_scenarios_pass_against_the_embedded_scp_with_two_processes(tmp_path):
    result = run_pytest(tmp_path, str(QR), "-n", "2", "--report-dir", str(tmp_path / "r"), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    got = outcomes(tmp_path / "r")
    assert IDS <= set(got)
    assert {k: v for k, v in got.items() if v != "passed"} == NOT_CLAIMED


def test_qr_scenarios_pass_through_dicomconf_run(tmp_path):
    cmd = [sys.executable, "-m", "dicomconf.cli", "run", str(QR), "--report-dir", str(tmp_path / "r")]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    got = outcomes(tmp_path / "r")
    assert IDS <= set(got) and {k: v for k, v in got.items() if v != "passed"} == NOT_CLAIMED


def test_move_and_commitment_against_a_named_target_use_the_profile_destination(tmp_path):
    port = _free_port()
    pacs = run_in_thread(SCPConfig(port=0, ae_titles=("DCONF-PACS",), storage="memory", artim_timeout=2.0,
                                   move_destinations={"DCONF-EXT-MOVE": ("127.0.0.1", port)},
                                   commitment_report_to="DCONF-EXT-MOVE"))
    try:
        profile = tmp_path / "pacs.yaml"
        profile.write_text(textwrap.dedent(f"""\
            ae_title: DCONF-PACS
            sop_classes: [verification, ct, mr, patient-find, study-find, patient-move, study-move, study-get,
                          storage-commitment]
            roles: {{mr: [scu, scp]}}
            query_retrieve:
              models: [patient, study]
              find: true
              move: true
              get: true
              matching: [wildcard, range]
              move_destination: {{ae_title: DCONF-EXT-MOVE, host: 127.0.0.1, port: {port}}}
            commitment: {{report: new}}
            """))
        result = run_pytest(tmp_path, str(QR / "move.yaml"), str(QR / "commitment.yaml"), str(QR / "mpps.yaml"),
                            "-n", "2", "--target", f"127.0.0.1:{pacs.port}", "--profile", str(profile),
                            "--report-dir", str(tmp_path / "r"), timeout=300)
        got = outcomes(tmp_path / "r")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
        assert got["services.move-study-to-harness"] == "passed"
        assert got["services.commit-stored-instances"] == "passed"  # the report came on a new association
        assert got["services.mpps-create-then-complete"] == "skipped"  # the profile claims no MPPS
    finally:
        pacs.stop()
