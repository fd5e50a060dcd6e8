"""A target that dies mid-run: bounded scenarios, and the report says where it stopped answering.

The target here answers every A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ (alive,
speaking DICOM: PS3.8 9.3.4) for its first two connections (the run's
preflight check and the first scenario), then stops listening.  The second
scenario then fails, the check after it finds nobody listening, and the third
is not played: it ends as an error naming the scenario at which the target
stopped answering.  A scenario the target keeps waiting is ended by its time
limit.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import outcomes, run_pytest, write  # noqa: E402

from dicomconf.ul.pdu import AAssociateRJ  # noqa: E402

SCENARIOS = """\
- id: lost.1-first
  title: rejected while alive
  clauses: [PS3.8 9.3.4]
  severity: must
  area: negotiation
  steps:
    - associate: {reply: {pdu: A-ASSOCIATE-RJ}}
- id: lost.2-second
  title: the target is gone
  clauses: [PS3.8 9.3.4]
  severity: must
  area: negotiation
  steps:
    - associate: {reply: {pdu: A-ASSOCIATE-RJ}}
- id: lost.3-third
  title: never played
  clauses: [PS3.8 9.3.4]
  severity: must
  area: negotiation
  steps:
    - associate: {reply: {pdu: A-ASSOCIATE-RJ}}
"""


class DyingTarget:
    """Answers ``serve`` connections with an A-ASSOCIATE-RJ, then closes its listening socket."""

    def __init__(self, serve: int) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.serve = serve
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        reply = AAssociateRJ(1, 1, 1).encode()
        try:
            for _ in range(self.serve):
                conn, _ = self.sock.accept()
                with conn:
                    conn.settimeout(5)
                    head = conn.recv(6)
                    need = struct.unpack(">I", head[2:6])[0]
                    while need > 0:
                        need -= len(conn.recv(need))
                    conn.sendall(reply)
                    conn.recv(100)  # the requestor closes after an RJ (PS3.8 9.2, Sta13)
        finally:
            self.sock.close()

    def stop(self) -> None:
        self.sock.close()
        self.thread.join(5)


def test_target_that_dies_mid_run(tmp_path):
    write(tmp_path / "scenarios" / "lost.yaml", SCENARIOS)
    write(tmp_path / "profile.yaml", "name: dying\nae_title: DYING\n")
    target = DyingTarget(serve=2)
    try:
        result = run_pytest(tmp_path, "scenarios", "--target", f"127.0.0.1:{target.port}",
                            "--profile", "profile.yaml", "--report-dir", "rep", "-p", "no:xdist")
    finally:
        target.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert outcomes(tmp_path / "rep") == {"lost.1-first": "passed", "lost.2-second": "failed",
                                          "lost.3-third": "error"}
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    lost = doc["run"]["target_lost"]
    assert lost["at_scenario"] == "lost.2-second" and lost["cause"] == "refused"
    third = {s["id"]: s for s in doc["scenarios"]}["lost.3-third"]
    assert "not run: the target stopped answering at scenario lost.2-second" in third["failure"]["message"]
    assert "stopped answering at scenario <code>lost.2-second</code>" in (tmp_path / "rep" / "report.html").read_text()


def test_a_scenario_the_target_keeps_waiting_meets_its_time_limit(tmp_path):
    """Both a step blocked on the target and a sleep are ended by the limit."""
    write(tmp_path / "scenarios" / "slow.yaml", """\
        - id: slow.waits-for-the-target
          title: waits for an A-ABORT that never comes
          clauses: [PS3.8 9.1.5]
          severity: must
          area: timers
          steps:
            - associate:
            - expect: {pdu: A-ABORT, within: 60s}
        - id: slow.sleeps
          title: sleeps far longer than its limit
          clauses: [PS3.8 9.1.5]
          severity: must
          area: timers
          steps:
            - sleep: 60s
        """)
    write(tmp_path / "patient.yaml", "name: no idle timeout\nae_title: PATIENT\ntimers: {artim: 30, idle: null}\n")
    t0 = time.monotonic()
    result = run_pytest(tmp_path, "scenarios", "--profile", "patient.yaml", "--scenario-timeout", "2",
                        "--report-dir", "rep", "-p", "no:xdist")
    took = time.monotonic() - t0
    assert result.returncode == 1, result.stdout + result.stderr
    assert took < 30
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert {s["id"]: s["outcome"] for s in doc["scenarios"]} == {
        "slow.waits-for-the-target": "failed", "slow.sleeps": "failed"}
    for scenario in doc["scenarios"]:
        assert "did not finish within its time limit of 2s" in scenario["failure"]["message"]
        assert scenario["duration_s"] < 10
