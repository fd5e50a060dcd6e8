"""``--reruns N`` and the "flaky" verdict (dicomconf.reruns, dicomconf.scenario.baseline).

The end-to-end tests make a scenario flaky for real: a small pynetdicom SCP on 127.0.0.1,
started and stopped by each test, rejects the first A-ASSOCIATE-RQ whose calling AE title
starts with ``FLAKY`` (A-ASSOCIATE-RJ, PS3.8 9.3.4) and accepts every later one.  The run's
own checks (the pre-flight Verification association, the liveness check after a failure)
use another calling AE title, so only the scenario's first attempt is rejected.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import report, run_pytest, write  # noqa: E402

from dicomconf import exitcodes, reruns  # noqa: E402
from dicomconf.scenario.baseline import Entry, judge, load_baseline, write_baseline  # noqa: E402
from dicomconf.wire.pcapread import CapturedPDU, read_pdus  # noqa: E402

REPORT_SCHEMA = Path(reruns.__file__).parent / "report" / "report.schema.json"

FLAKY_SCP = """\
import sys, threading
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

seen, lock = set(), threading.Lock()

def on_requested(event):
    calling = event.assoc.requestor.primitive.calling_ae_title.strip()
    with lock:
        first = calling.startswith("FLAKY") and calling not in seen
        seen.add(calling)
    if first:  # rejected-transient, service-user, calling AE title not recognised
        event.assoc.acse.send_reject(0x02, 0x01, 0x03)
        event.assoc.kill()

ae = AE(ae_title="FLAKYSCP")
ae.add_supported_context(Verification)
server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_REQUESTED, on_requested)])
print(server.server_address[1], flush=True)
sys.stdin.read()
server.shutdown()
"""

SCENARIOS = """\
- id: rr.flaky
  title: Accepted, but only the second time
  clauses: [PS3.8 9.3.3]
  severity: must
  area: negotiation
  steps:
    - associate: {calling_ae: FLAKYSCU}
    - release: {}
- id: rr.fails
  title: Expects a rejection the target never gives
  clauses: [PS3.8 9.3.4]
  severity: must
  area: negotiation
  steps:
    - associate: {reply: {pdu: A-ASSOCIATE-RJ}}
- id: rr.invalid
  title: An invalid scenario, an error every time
  clauses: [PS3.8 9.3.3]
  severity: must
  area: negotiation
  steps:
    - associate: {within: soon}
- id: rr.passes
  title: Accepted every time
  clauses: [PS3.8 9.3.3]
  severity: should
  area: negotiation
  steps:
    - associate: {}
    - release: {}
"""


@pytest.fixture
def flaky_scp(tmp_path: Path):
    """A function that starts a fresh flaky SCP and returns its port; each is stopped by its pid."""
    pytest.importorskip("pynetdicom")
    script = write(tmp_path / "flaky_scp.py", FLAKY_SCP)
    procs: list[subprocess.Popen] = []

    def start() -> int:
        proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        line = proc.stdout.readline().strip()
        assert line.isdigit(), f"the flaky SCP did not start: {line!r} {proc.stderr.read() if proc.poll() else ''}"
        return int(line)

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def _scenarios(tmp_path: Path, ids: tuple[str, ...]) -> Path:
    """The scenario file holding only ``ids`` (of SCENARIOS)."""
    blocks = {b.split("\n", 1)[0].strip(): "- id:" + b for b in SCENARIOS.split("- id:")[1:]}
    return write(tmp_path / "scenarios.yaml", "".join(blocks[i] for i in ids))


def _pytest(tmp_path: Path, port: int, name: str, *args: str) -> tuple[subprocess.CompletedProcess, dict, Path]:
    rep = tmp_path / name
    proc = run_pytest(tmp_path, "scenarios.yaml", "--target", f"127.0.0.1:{port}", "--called-ae", "ANY",
                      "--report-dir", str(rep), "-rR", *args, timeout=240)
    return proc, report(rep), rep


def _valid(doc: dict) -> None:
    import jsonschema

    jsonschema.validate(doc, json.loads(REPORT_SCHEMA.read_text(encoding="utf-8")))


def _replies(pcap: Path) -> list[int]:
    """The PDU types the target sent in a capture."""
    return [p.data[0] for p in read_pdus(pcap) if isinstance(p, CapturedPDU) and not p.from_client]


def _by_id(doc: dict) -> dict[str, dict]:
    return {s["id"]: s for s in doc["scenarios"]}


# ---------------------------------------------------------------------- end to end


@pytest.mark.network
def test_a_scenario_that_passes_on_a_rerun_is_flaky_and_keeps_its_first_failure(tmp_path: Path, flaky_scp):
    _scenarios(tmp_path, ("rr.flaky",))
    proc, doc, rep = _pytest(tmp_path, flaky_scp(), "rep", "--reruns", "2")
    out = proc.stdout + proc.stderr
    assert proc.returncode == exitcodes.CONFORMS, out[-3000:]
    _valid(doc)
    record = _by_id(doc)["rr.flaky"]
    assert record["outcome"] == "flaky" and record["attempts"] == 2 and record["failure"] is None
    first = record["first_failure"]
    assert first["outcome"] == "failed" and "A-ASSOCIATE-RJ" in first["message"], first
    assert doc["summary"]["flaky"] == 1 and doc["summary"]["passed"] == 0
    # both captures kept: the first attempt's (rejected) and the passing one's (accepted, released)
    attempt1, final = rep / first["pcap"], rep / record["pcap"]
    assert attempt1.name == "rr.flaky.attempt1.pcap" and final.name == "rr.flaky.pcap"
    assert _replies(attempt1) == [0x03] and _replies(final) == [0x02, 0x06]
    assert sorted(p.name for p in (rep / "pcap").iterdir()) == ["rr.flaky.attempt1.pcap", "rr.flaky.pcap"]
    assert str(attempt1) in first["text"]  # the failure's text names the capture where it now is
    assert "flaky scenarios (passed on a rerun)" in out
    assert "rr.flaky: passed on attempt 2; first failure: the association did not go as expected" in out
    assert "RERUN" in out


@pytest.mark.network
def test_an_invalid_scenario_is_not_played_again(tmp_path: Path, flaky_scp):
    _scenarios(tmp_path, ("rr.invalid",))
    proc, doc, rep = _pytest(tmp_path, flaky_scp(), "rep", "--reruns", "2")
    record = _by_id(doc)["rr.invalid"]
    assert record["outcome"] == "error" and record["attempts"] == 1, record
    assert "RERUN" not in proc.stdout and proc.returncode == exitcodes.FAILURES


@pytest.mark.network
def test_without_reruns_the_same_target_fails_the_run(tmp_path: Path, flaky_scp):
    _scenarios(tmp_path, ("rr.flaky",))
    proc, doc, rep = _pytest(tmp_path, flaky_scp(), "rep")
    assert proc.returncode == exitcodes.FAILURES, (proc.stdout + proc.stderr)[-3000:]
    _valid(doc)
    record = _by_id(doc)["rr.flaky"]
    assert record["outcome"] == "failed" and record["attempts"] == 1 and "first_failure" not in record
    assert "A-ASSOCIATE-RJ" in record["failure"]["message"]
    assert [p.name for p in (rep / "pcap").iterdir()] == ["rr.flaky.pcap"]
    assert "flaky scenarios" not in proc.stdout


@pytest.mark.network
def test_reruns_under_xdist_through_dicomconf_run_and_a_baseline(tmp_path: Path, flaky_scp):
    """-n 2 and dicomconf run --reruns: one flaky, one failing every attempt, one passing; the
    baseline written from it lists the flaky one as flaky; a baseline that does not list it
    reports it and still conforms."""
    scenarios = _scenarios(tmp_path, ("rr.flaky", "rr.fails", "rr.passes"))
    baseline = tmp_path / "baseline.yaml"

    def run(port: int, name: str, *args: str) -> tuple[subprocess.CompletedProcess, dict, Path]:
        rep = tmp_path / name
        argv = [sys.executable, "-m", "dicomconf.cli", "run", str(scenarios), "-n", "2", "--reruns", "1",
                "--target", f"127.0.0.1:{port}", "--called-ae", "ANY", "--report-dir", str(rep), *args]
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        return proc, report(rep), rep

    proc, doc, rep = run(flaky_scp(), "first", "--write-baseline", str(baseline))
    out = proc.stdout + proc.stderr
    assert proc.returncode == exitcodes.FAILURES, out[-3000:]
    _valid(doc)
    records = _by_id(doc)
    assert {i: (r["outcome"], r["attempts"]) for i, r in records.items()} == {
        "rr.flaky": ("flaky", 2), "rr.fails": ("failed", 2), "rr.passes": ("passed", 1)}
    flaky, fails = records["rr.flaky"], records["rr.fails"]
    assert "A-ASSOCIATE-RJ" in flaky["first_failure"]["message"]
    assert _replies(rep / flaky["first_failure"]["pcap"]) == [0x03]
    # failing every attempt: the last failure is the record's, the first one is kept with its capture
    assert fails["failure"] is not None and fails["first_failure"]["outcome"] == "failed"
    assert (rep / fails["first_failure"]["pcap"]).name == "rr.fails.attempt1.pcap"
    assert _replies(rep / fails["first_failure"]["pcap"]) == [0x02] == _replies(rep / fails["pcap"])[:1]
    assert "rr.flaky: passed on attempt 2" in out
    entries = load_baseline(baseline)
    assert {i: e.expected for i, e in entries.items()} == {"rr.flaky": "flaky", "rr.fails": "failed"}

    write(baseline, "scenarios:\n  rr.fails: {expected: failed, reason: known}\n")
    proc, doc, _ = run(flaky_scp(), "second", "--baseline", str(baseline))
    out = proc.stdout + proc.stderr
    assert proc.returncode == exitcodes.CONFORMS, out[-3000:]
    _valid(doc)
    judged = doc["run"]["baseline"]
    assert judged["known"] == ["rr.fails"] and judged["flaky"] == ["rr.flaky"] and judged["conforms"]
    assert "flaky: rr.flaky (passed on a rerun" in out


# ---------------------------------------------------------------------- records, without a network


def _report(outcome: str, record_outcome: str, rerun: int = 0, nodeid: str = "f.yaml::x",
            pcap: str | None = "/r/pcap/x.pcap") -> SimpleNamespace:
    """A test report as pytest-rerunfailures leaves it: ``outcome`` "rerun" for an attempt played again."""
    failure = None if record_outcome == "passed" else {"message": f"attempt {rerun + 1} broke",
                                                         "text": f"broke\npcap:     {pcap}"}
    record = {"id": "x", "nodeid": nodeid, "outcome": record_outcome, "pcap": pcap, "failure": failure,
              "severity": "must"}
    return SimpleNamespace(outcome=outcome, rerun=rerun, dicomconf=record)


def _config():
    return SimpleNamespace(stash=pytest.Stash())


def test_records_of_attempts_merge_into_one():
    config = _config()
    assert reruns.final_record(config, SimpleNamespace(outcome="passed")) is None  # not a scenario
    assert reruns.final_record(config, _report("rerun", "failed", 0)) is None
    assert reruns.final_record(config, _report("rerun", "error", 1, pcap=None)) is None
    kept = reruns.final_record(config, _report("passed", "passed", 2))
    assert kept["outcome"] == "flaky" and kept["attempts"] == 3 and kept["failure"] is None
    assert kept["first_failure"] == {"message": "attempt 1 broke", "text": "broke\npcap:     /r/pcap/x.attempt1.pcap",
                                     "outcome": "failed", "pcap": "/r/pcap/x.attempt1.pcap"}
    # the next scenario (and the same one in another session) starts clean
    assert reruns.final_record(config, _report("passed", "passed"))["attempts"] == 1
    assert "first_failure" not in reruns.final_record(config, _report("passed", "passed"))


def test_a_scenario_failing_every_attempt_stays_failed_and_attempts_do_not_mix():
    config = _config()
    reruns.final_record(config, _report("rerun", "error", 0, nodeid="a", pcap=None))
    reruns.final_record(config, _report("rerun", "failed", 0, nodeid="b"))
    b = reruns.final_record(config, _report("failed", "failed", 1, nodeid="b"))
    a = reruns.final_record(config, _report("passed", "passed", 1, nodeid="a"))
    assert (b["outcome"], b["attempts"], b["failure"]["message"]) == ("failed", 2, "attempt 2 broke")
    assert b["first_failure"]["message"] == "attempt 1 broke"
    assert (a["outcome"], a["attempts"], a["first_failure"]["outcome"], a["first_failure"]["pcap"]) == (
        "flaky", 2, "error", None)


def test_an_attempt_keeps_the_previous_attempts_capture(tmp_path: Path):
    pcap = tmp_path / "pcap" / "x.y.pcap"
    pcap.parent.mkdir()
    pcap.write_bytes(b"first")
    item = SimpleNamespace(pcap=str(pcap), findings=[1], steps=[2], target_lost={"at": "x"}, scu=None, duration_s=1.0)
    reruns.begin_attempt(item)  # no --reruns: nothing moves
    assert pcap.exists() and item.target_lost
    item.execution_count = 2
    reruns.begin_attempt(item)
    assert not pcap.exists() and (tmp_path / "pcap" / "x.y.attempt1.pcap").read_bytes() == b"first"
    assert item.pcap is None and item.findings == [] == item.steps and item.target_lost is None and item.duration_s == 0
    assert reruns.attempt_pcap("/r/pcap/a.pcap", 3) == "/r/pcap/a.attempt3.pcap"


def test_an_attempt_over_tls_keeps_the_key_log_and_the_decrypted_copy_with_its_capture(tmp_path: Path):
    folder = tmp_path / "pcap"
    folder.mkdir()
    for name, text in (("x.pcap", b"wire"), ("x.keys", b"keys"), ("x.decrypted.pcap", b"clear")):
        (folder / name).write_bytes(text)
    item = SimpleNamespace(pcap=str(folder / "x.pcap"), findings=[], steps=[], target_lost=None, scu=None,
                           duration_s=0.0, execution_count=2)
    reruns.begin_attempt(item)
    assert sorted(p.name for p in folder.iterdir()) == ["x.attempt1.decrypted.pcap", "x.attempt1.keys",
                                                        "x.attempt1.pcap"]
    assert (folder / "x.attempt1.keys").read_bytes() == b"keys"
    assert (folder / "x.attempt1.decrypted.pcap").read_bytes() == b"clear"


def test_flaky_lines_name_the_attempts_and_the_first_failure():
    records = [{"id": "b", "outcome": "flaky", "attempts": 3, "first_failure": {"message": "boom\nmore"}},
               {"id": "a", "outcome": "passed", "attempts": 1}]
    assert reruns.flaky_lines(records) == ["b: passed on attempt 3; first failure: boom"]


# ---------------------------------------------------------------------- baseline


def _r(sid: str, outcome: str, severity: str = "must") -> dict:
    record = {"id": sid, "outcome": outcome, "severity": severity, "failure": None}
    if outcome == "flaky":
        record["first_failure"] = {"message": f"{sid} broke once"}
    return record


def test_a_flaky_record_is_known_if_listed_at_all_and_never_fails_the_run():
    entries = {"a": Entry("failed", "r"), "b": Entry("error", "r"), "c": Entry("flaky", "r")}
    records = [_r("a", "flaky"), _r("b", "flaky"), _r("c", "flaky"), _r("e", "flaky"), _r("d", "flaky"),
               _r("s", "flaky", "should")]
    j = judge(records, entries, today=dt.date(2026, 12, 7))
    assert j.known == ["a", "b", "c"] and j.flaky == ["d", "e"] and j.new == [] and j.stale == []
    assert j.conforms and j.as_dict()["flaky"] == ["d", "e"]
    assert any(line.startswith("  flaky: d (passed on a rerun") for line in j.lines())
    assert judge(records, entries, strict=True).flaky == ["d", "e", "s"]  # should-level: only with strict


def test_a_flaky_record_is_written_as_flaky(tmp_path: Path):
    path = tmp_path / "baseline.yaml"
    assert write_baseline(path, [_r("a", "flaky"), _r("b", "failed"), _r("c", "passed"),
                                 _r("d", "flaky", "should")]) == 2
    entries = load_baseline(path)
    assert entries["a"].expected == "flaky" and entries["a"].reason == "a broke once"
    assert entries["b"].expected == "failed" and "d" not in entries


def test_rewriting_a_baseline_keeps_a_flaky_entry_whose_scenario_passed_this_time(tmp_path: Path):
    path = tmp_path / "baseline.yaml"
    keep = {"a": Entry("flaky", "fails in some runs: a race", ticket="T-1"), "b": Entry("failed", "was broken")}
    assert write_baseline(path, [_r("a", "passed"), _r("b", "passed"), _r("c", "failed")], keep=keep) == 2
    entries = load_baseline(path)
    assert entries["a"] == keep["a"] and "b" not in entries and entries["c"].expected == "failed"


def test_dicomconf_run_passes_reruns_to_pytest(tmp_path: Path):
    from dicomconf.scenario.run_cli import add_arguments, pytest_args

    write(tmp_path / "s.yaml", SCENARIOS)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = pytest_args(parser.parse_args([str(tmp_path / "s.yaml"), "--reruns", "2", "--reruns-delay", "0.5"]))
    assert argv[argv.index("--reruns") + 1] == "2" and argv[argv.index("--reruns-delay") + 1] == "0.5"
    assert "--reruns" not in pytest_args(parser.parse_args([str(tmp_path / "s.yaml")]))
    proc = subprocess.run([sys.executable, "-m", "dicomconf.cli", "run", "--reruns", "-1", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == exitcodes.USAGE_ERROR and "--reruns: expected 0 or more" in proc.stderr
    assert "Traceback" not in proc.stderr
