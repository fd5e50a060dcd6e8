"""Fault injection on the relay: each kind provokes what it says; bad faults files and options are refused."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from scp_testkit import RawClient, abort_fields

from dicomconf.proxy.judge import StateTracker
from dicomconf.ul import constants as C
from dicomconf.wire.pcapread import Segment, read_frames, tcp_segments

from proxy_testkit import Tap, proxy, report_of


def _faults(tmp_path, text: str):
    path = tmp_path / "faults.yaml"
    path.write_text(text)
    return str(path)


def _echo_round_trip(port: int) -> float:
    with RawClient(port) as c:
        assert c.associate()[0] == C.A_ASSOCIATE_AC
        t0 = time.monotonic()
        assert c.echo() == 0
        took = time.monotonic() - t0
        c.send(bytes.fromhex("050000000004 00000000".replace(" ", "")))
        assert c.recv_pdu()[0] == C.A_RELEASE_RP
    return took


def test_no_faults_file_means_bytes_out_equal_bytes_in_and_delay_is_measured(reference_scp, tmp_path):
    near = Tap(reference_scp.port)
    with proxy(near.port, tmp_path / "plain", "--count", "1") as px:
        fast = _echo_round_trip(px.port)
        assert px.wait() == 0, px.out
    near.close()
    plan = _faults(tmp_path, "faults:\n  - delay: {ms: 150, from: requestor, pdu: P-DATA-TF}\n")
    with proxy(reference_scp.port, tmp_path / "slow", "--count", "1", "--faults", plan) as px:
        slow = _echo_round_trip(px.port)
        assert px.wait() == 0, px.out
    assert slow - fast >= 0.14, (fast, slow)
    [case] = report_of(tmp_path / "slow")["scenarios"]
    applied = case["association"]["faults_applied"]
    assert [a["kind"] for a in applied] == ["delay"] and applied[0]["pdu_type"] == "P-DATA-TF"
    assert report_of(tmp_path / "slow")["run"]["proxy"]["faults"] == [
        "delay P-DATA-TF PDUs 150 ms from requestor (line 2)"]


def test_drop_after_n_pdus_closes_both_connections(reference_scp, tmp_path):
    plan = _faults(tmp_path, "faults:\n  - drop: {after: 2}\n")  # the RQ and the AC
    with proxy(reference_scp.port, tmp_path / "rep", "--count", "1", "--faults", plan) as px:
        with RawClient(px.port) as c:
            assert c.associate()[0] == C.A_ASSOCIATE_AC
            assert c.wait_closed(5) is not None  # the proxy closed on the requestor
        assert px.wait() == 0, px.out
    [case] = report_of(tmp_path / "rep")["scenarios"]
    assert case["association"]["pdus"] == 2
    assert case["association"]["dropped_by_fault"].startswith("drop the connection (FIN) after 2 PDU(s)")


def test_split_reaches_the_receiver_whole_in_k_byte_segments(reference_scp, tmp_path):
    plan = _faults(tmp_path, "faults:\n  - split: {bytes: 7, from: requestor, pdu: A-ASSOCIATE-RQ}\n")
    with proxy(reference_scp.port, tmp_path / "rep", "--count", "1", "--faults", plan) as px:
        assert _echo_round_trip(px.port) < 5  # the SCP reassembled the RQ and answered
        assert px.wait() == 0, px.out
    [case] = report_of(tmp_path / "rep")["scenarios"]
    assert case["outcome"] == "passed"
    delivered = tmp_path / "rep" / case["association"]["delivered_pcap"]
    sizes = [len(s.payload) for s in tcp_segments(read_frames(delivered)) if isinstance(s, Segment) and s.payload]
    assert sizes[:10] == [7] * 10, sizes[:12]


def test_corrupt_pdu_type_is_answered_with_a_provider_abort(reference_scp, tmp_path):
    # P-DATA-TF (04H) rewritten as the undefined type 08H: Evt19 in Sta6, AA-8 (PS3.8 Table 9-10)
    plan = _faults(tmp_path, "faults:\n  - corrupt: {pdu: P-DATA-TF, from: requestor, offset: 0, value: 8}\n")
    with proxy(reference_scp.port, tmp_path / "rep", "--count", "1", "--faults", plan) as px:
        with RawClient(px.port) as c:
            assert c.associate()[0] == C.A_ASSOCIATE_AC
            from scp_testkit import echo_rq

            c.send(echo_rq())
            source, _reason = abort_fields(c.recv_pdu())
            assert source == C.ABORT_SOURCE_PROVIDER
        assert px.wait() == 0, px.out  # the altered PDU's findings do not count against the requestor
    [case] = report_of(tmp_path / "rep")["scenarios"]
    faulted = [f for f in case["findings"] if f.get("fault")]
    assert faulted and faulted[0]["code"] == "pdu.unknown-type"
    assert case["association"]["end"]["how"] == "abort"


@pytest.mark.parametrize("text, where, words", [
    ("faults:\n  - dely: {ms: 5}\n", ":2:", "did you mean delay"),
    ("faults:\n  - delay: {ms: 5}\n  - split: {bytes: 0}\n", ":3:", "out of range"),
    ("faults:\n  - corrupt: {offset: 1, value: 300}\n", ":2:", "value 300"),
    ("faults:\n  - delay: {ms: 5, pdu: P-DATA}\n", ":2:", "did you mean P-DATA-TF"),
    ("faults:\n  - drop: {after: 1, from: sideways}\n", ":2:", "from: 'sideways'"),
    ("faults: [\n", ":", "YAML syntax error"),
])
def test_a_bad_faults_file_is_one_file_line_error(tmp_path, text, where, words):
    path = _faults(tmp_path, text)
    done = subprocess.run([sys.executable, "-m", "dicomconf.cli", "proxy", "--listen", "0", "--to", "127.0.0.1:1",
                           "--faults", path], capture_output=True, text=True, timeout=30)
    assert done.returncode == 4
    assert "Traceback" not in done.stderr
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith(f"dicomconf proxy: {path}{where}") and words in done.stderr, done.stderr


@pytest.mark.parametrize("args, words", [
    (["--listen", "70000", "--to", "127.0.0.1:104"], "port 70000"),
    (["--listen", "0", "--to", "127.0.0.1"], "no port"),
    (["--listen", "0", "--to", "bad host!:104"], "not a host name"),
    (["--listen", "0", "--to", "127.0.0.1:104", "--count", "0"], "expected 1 or more"),
    (["--to", "127.0.0.1:104"], "--listen"),
])
def test_bad_options_are_one_line_usage_errors(args, words):
    done = subprocess.run([sys.executable, "-m", "dicomconf.cli", "proxy", *args],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode in (2, 4)
    assert done.returncode == 4
    assert "Traceback" not in done.stderr and words in done.stderr, done.stderr


def test_state_tracker_release_collision_and_abort_crossing_are_legal():
    t = StateTracker()
    for side, kind in (("requestor", C.A_ASSOCIATE_RQ), ("acceptor", C.A_ASSOCIATE_AC),
                       ("requestor", C.A_RELEASE_RQ), ("acceptor", C.A_RELEASE_RQ),  # crossed (PS3.8 9.2.7)
                       ("requestor", C.A_RELEASE_RP), ("acceptor", C.A_RELEASE_RP)):
        assert t.sent(side, kind, True) == [], (side, kind)
    t = StateTracker()
    for side, kind in (("requestor", C.A_ASSOCIATE_RQ), ("acceptor", C.A_ASSOCIATE_AC),
                       ("acceptor", C.A_ABORT), ("requestor", C.P_DATA_TF)):  # data crossing the abort
        assert t.sent(side, kind, True) == [], (side, kind)


def test_state_tracker_names_the_cell_of_a_pdu_out_of_place():
    t = StateTracker()
    assert t.sent("requestor", C.A_ASSOCIATE_RQ, True) == []
    [f] = t.sent("requestor", C.P_DATA_TF, True)  # before the AC
    assert f.code == "pdu.unexpected" and "(Sta5, Evt9)" in f.clause and "requestor" in f.message
    assert t.sent("acceptor", C.A_ASSOCIATE_AC, True) == []
    [f] = t.sent("requestor", C.A_ASSOCIATE_RQ, True)  # a second RQ in Sta6
    assert "Table 9-10" in f.clause
    [f] = t.sent("acceptor", C.A_RELEASE_RP, True)  # a release reply nobody asked for
    assert "acceptor" in f.message
