"""The harness against a hostile target: it ends within its timeouts and never crashes (PS3.8 9.1.5, 9.2).

The target is the fuzzing fake SCP of ``benchmarks/fuzzing_scp.py``: random
bytes, mutated A-ASSOCIATE-ACs and -RJs, bad P-DATA-TF, silence, a peer that
does not read, resets, half PDUs, A-ABORTs, its own A-RELEASE-RQ, answers
dripped a byte at a time, P-DATA-TF floods without end and a PDU that never
completes.  Against each, the reference SCU (``dicomconf.scu.app``, in
process and as a command) and the scriptable SCU's client API must end
within their timeouts with an outcome they document (exit status 0-2, the
client's exceptions), and ``dicomconf run`` must end with exit status 0 or
1, no traceback and no scenario in error of its own making; expectations
that wait for what a flood never sends end at their deadline.
"""

from __future__ import annotations

import concurrent.futures
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import fuzz_live  # noqa: E402
import hostile  # noqa: E402
from fuzzing_scp import BEHAVIOURS, FuzzingSCP  # noqa: E402

from dicomconf.scu.app import Job, perform  # noqa: E402

TIMEOUT = 0.5  # every timeout of the SCU under test
BOUND = 8 * TIMEOUT + 5  # its timeouts, an abort and a close, and a loaded machine
# Exit statuses a behaviour leaves no choice about (the reference SCU's: 0 done, 1 refused, 2 no association).
STATUS = {"honest": {0}, "trailing-garbage": {0}, "deaf": {2}, "silence": {2}, "half-pdu": {2}, "drip": {2},
          "flood-data": {2}, "flood-release": {2}, "endless-pdu": {2}, "abort": {2}, "mutated-rj": {2},
          "release-rq": {1}}
PROFILE = fuzz_live.PROFILE


@pytest.fixture(scope="module")
def store_file(tmp_path_factory) -> str:
    return fuzz_live.write_store_file(str(tmp_path_factory.mktemp("data") / "ct.dcm"), 0.25)


@pytest.fixture
def servers():
    started: list[FuzzingSCP] = []

    def start(*behaviours: str, seed: int = 16) -> FuzzingSCP:
        server = FuzzingSCP(seed, behaviours)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def timed(fn, *args):
    start = time.monotonic()
    return fn(*args), time.monotonic() - start


def app_job(port: int, op: str, file: str) -> tuple[int, list[str]]:
    return perform(Job("127.0.0.1", port, op, file=file if op == "store" else None, connect_timeout=TIMEOUT,
                       association_timeout=TIMEOUT, dimse_timeout=TIMEOUT, release_timeout=TIMEOUT))


def test_reference_scu_and_client_api_against_every_behaviour(servers, store_file):
    ports = {b: servers(b).port for b in BEHAVIOURS}
    jobs = {(b, op): None for b in BEHAVIOURS for op in ("echo", "store", "api")}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {
            key: pool.submit(timed, fuzz_live.job_api, ports[key[0]], TIMEOUT, store_file) if key[1] == "api"
            else pool.submit(timed, app_job, ports[key[0]], key[1], store_file)
            for key in jobs
        }
        for key, future in futures.items():
            jobs[key] = future.result(timeout=BOUND * len(jobs))
    for (behaviour, op), (result, seconds) in jobs.items():
        assert seconds < BOUND, (behaviour, op, seconds)
        if op == "api":
            outcome, detail = result
            assert outcome != "crash", (behaviour, detail)
            continue
        status, lines = result
        assert status in STATUS.get(behaviour, {0, 1, 2}), (behaviour, op, status, lines)
        assert not any("internal error" in line for line in lines), (behaviour, op, lines)
    assert jobs[("honest", "api")][0][0] == "completed"


def test_reference_scu_command_against_floods_and_garbage(servers):
    behaviours = ("flood-data", "endless-pdu", "random", "mutated-ac")
    ports = [servers(b).port for b in behaviours]
    with concurrent.futures.ThreadPoolExecutor(len(ports)) as pool:
        results = list(pool.map(lambda p: timed(fuzz_live.job_command, p, TIMEOUT, BOUND + 5), ports))
    for behaviour, ((outcome, detail), seconds) in zip(behaviours, results):
        assert outcome.startswith("exit "), (behaviour, outcome, detail)
        assert seconds < BOUND + 5, (behaviour, seconds)


def dicomconf_run(tmp_path: Path, port: int, *args: str) -> tuple[subprocess.CompletedProcess, float, dict]:
    (tmp_path / "profile.yaml").write_text(PROFILE)
    argv = [sys.executable, "-m", "dicomconf.cli", "run", *args, "--target", f"127.0.0.1:{port}",
            "--profile", str(tmp_path / "profile.yaml"), "--report-dir", str(tmp_path / "report"), "-q",
            "--scenario-timeout", "60"]
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=tmp_path, env=hostile.tree_env())
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    return done, time.monotonic() - start, report


def test_dicomconf_run_against_a_fuzzing_target(servers, tmp_path):
    # (the floods are the next test's: a flooded scenario costs its timeout and the report of every PDU)
    fuzz = servers("random", "mutated-ac", "mutated-rj", "bad-pdata", "reset", "abort", "release-rq",
                   "trailing-garbage", "endless-pdu")
    fuzz.honest_next(1)  # the check that the target is there at all
    done, seconds, report = dicomconf_run(
        tmp_path, fuzz.port, str(REPO / "scenarios"),
        "-k", "dimse.echo or dimse.store-ct or release-abort.release-answered or negotiation.verification-accepted")
    output = done.stdout + done.stderr
    assert done.returncode in (0, 1), output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert fuzz_live.harness_errors(str(tmp_path / "report" / "report.json")) == []
    ran = [s for s in report["scenarios"] if s["outcome"] != "skipped"]
    assert len(ran) >= 4 and sum(fuzz.used.values()) > len(ran), [(s["id"], s["outcome"], s["duration_s"]) for s in ran]
    assert seconds < 90


FLOODED = """
- id: hostile.until-ends-at-its-deadline
  title: Passing over what does not match ends at the deadline, however much keeps coming
  clauses: [PS3.8 9.3.5]
  severity: must
  area: dimse
  steps:
    - associate:
    - send: {pdu: P-DATA-TF, pdvs: [{context_id: 1, command: {CommandField: C-ECHO-RQ, MessageID: 1}}]}
    - expect: {pdu: A-RELEASE-RP, until: true, within: 0.5s}
- id: hostile.skip-ends-at-its-deadline
  title: Skipped PDUs do not extend the wait
  clauses: [PS3.8 9.3.5]
  severity: must
  area: dimse
  steps:
    - associate:
    - send: {pdu: P-DATA-TF, pdvs: [{context_id: 1, command: {CommandField: C-ECHO-RQ, MessageID: 1}}]}
    - expect: {pdu: A-ABORT, skip: [P-DATA-TF], within: 0.5s}
- id: hostile.message-ends-at-its-deadline
  title: A DIMSE message whose data set never ends is waited for no longer than the deadline
  clauses: [PS3.8 9.3.5, PS3.8 Annex E]
  severity: must
  area: dimse
  steps:
    - associate:
    - send: {pdu: P-DATA-TF, pdvs: [{context_id: 1, command: {CommandField: C-ECHO-RQ, MessageID: 1}}]}
    - expect: {pdu: P-DATA-TF, command_name: C-ECHO-RSP, within: 0.5s}
"""


def test_expectations_end_at_their_deadline_against_a_flood(servers, tmp_path):
    fuzz = servers("flood-data")  # after the C-ECHO-RQ: a response whose data set never ends, as fast as we read
    fuzz.honest_next(1)
    (tmp_path / "flooded.yaml").write_text(FLOODED)
    done, seconds, report = dicomconf_run(tmp_path, fuzz.port, str(tmp_path / "flooded.yaml"))
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert "Traceback" not in output
    scenarios = {s["id"]: s for s in report["scenarios"]}
    assert len(scenarios) == 3
    for sid, s in scenarios.items():
        message = s["failure"]["message"]
        assert s["outcome"] == "failed" and "time limit" not in message, (sid, message[:500])
        assert s["duration_s"] < 0.5 + BOUND, (sid, s["duration_s"])
    message = scenarios["hostile.message-ends-at-its-deadline"]["failure"]["message"]
    assert "of a DIMSE message that was not complete" in message and " more" in message
    assert len(message) < 20_000  # the PDUs that made up the wait are listed first and last, not all
    assert seconds < 60
