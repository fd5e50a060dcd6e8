"""No false passes: the whole suite against targets that are not DICOM SCPs passes nothing, fast.

Null targets, all on 127.0.0.1 and stopped by the test: a closed port, a listener that closes
every connection at once, one that never answers, one that answers with 552 random bytes, one
that echoes back whatever it gets.  With the run's check before the first scenario
(:mod:`dicomconf.scenario.preflight`) each run stops at once; with that check turned off
(``--dicomconf-no-preflight``) the scenarios themselves meet the target, and still none may pass:
a scenario that saw no DICOM PDU from the target passes only if the target answers a
Verification association afterwards (:mod:`dicomconf.scenario.liveness`), a PDU sent after the
target closed makes the scenario inconclusive, and bytes that cannot be a PDU are reported at
once (PS3.8 9.3.1).  Each run must end within 30 s.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[2]
PROFILE = """\
name: a target that claims a lot
ae_title: NULL-SCP
checks_called_ae: true
checks_calling_ae: true
timers: {artim: 2, idle: 4}
sop_classes: [verification, ct, mr, sc]
max_associations: 3
max_pdu_length: 16382
"""


class NullTarget:
    """A listener that treats every connection with ``behaviour``: close, silent, random, echo."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            if self.behaviour == "close":
                conn.close()
                continue
            self.conns.append(conn)
            if self.behaviour == "random":
                conn.sendall(os.urandom(552))
            elif self.behaviour == "echo":
                threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()
        for conn in self.conns:
            conn.close()


def _run(tmp_path: Path, port: int, *extra: str) -> tuple[dict, float, subprocess.CompletedProcess]:
    (tmp_path / "null.yaml").write_text(PROFILE, encoding="utf-8")
    argv = [sys.executable, "-m", "pytest", str(REPO / "scenarios"), "-q", "-p", "no:cacheprovider",
            "--target", f"127.0.0.1:{port}", "--profile", str(tmp_path / "null.yaml"),
            "--report-dir", str(tmp_path / "report"), *extra]
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - t0
    report = json.loads((tmp_path / "report" / "report.json").read_text(encoding="utf-8"))
    return report, took, proc


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("behaviour", ["closed-port", "close", "silent", "random", "echo"])
def test_no_scenario_passes_and_the_run_stops_at_once(behaviour, tmp_path):
    target = None if behaviour == "closed-port" else NullTarget(behaviour)
    try:
        report, took, proc = _run(tmp_path, target.port if target else _closed_port())
    finally:
        if target is not None:
            target.stop()
    assert proc.returncode == 6, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert report["run"]["preflight"]["ok"] is False
    assert not [s["id"] for s in report["scenarios"] if s["outcome"] == "passed"]
    assert took < 30, took


@pytest.mark.parametrize("behaviour", ["closed-port", "close", "random", "echo"])
def test_without_the_early_stop_no_scenario_passes(behaviour, tmp_path):
    target = None if behaviour == "closed-port" else NullTarget(behaviour)
    try:
        report, took, proc = _run(tmp_path, target.port if target else _closed_port(), "--dicomconf-no-preflight")
    finally:
        if target is not None:
            target.stop()
    outcomes = {s["id"]: s["outcome"] for s in report["scenarios"]}
    assert len(outcomes) >= 90, proc.stdout[-2000:]
    passed = [i for i, o in outcomes.items() if o == "passed"]
    assert not passed, {i: s.get("failure") for s in report["scenarios"] for i in passed if s["id"] == i}
    assert proc.returncode == 1
    assert took < 30, took


@pytest.mark.parametrize("scenario", ["fsm.abort-before-association-closes"])
def test_a_scenario_that_expects_only_a_close_does_not_pass_a_listener_that_closes_everything(scenario, tmp_path):
    """Run alone (no earlier failure to stop the run), such a scenario must still not pass."""
    target = NullTarget("close")
    try:
        report, took, proc = _run(tmp_path, target.port, "--dicomconf-no-preflight", "-k", scenario)
    finally:
        target.stop()
    (only,) = report["scenarios"]
    assert only["id"] == scenario and only["outcome"] == "error", only
    assert "inconclusive" in only["failure"]["message"]
