"""The per-target reader/writer lock (dicomconf.scenario.exclusive), exercised by real processes.

Each holder is a separate Python process that takes the lock (shared or
exclusive), prints when it got it and when it let it go (``time.monotonic``,
one clock for every process on the machine), and exits.  The tests read those
intervals: a disruptive (exclusive) holder overlaps nobody, gentle (shared)
holders overlap each other, and a disruptive scenario waiting behind a
never-ending stream of overlapping gentle ones gets the lock as soon as the
ones already running finish.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import run_pytest, write  # noqa: E402

from dicomconf.scenario import exclusive  # noqa: E402

pytestmark = pytest.mark.skipif(exclusive.fcntl is None, reason="the lock needs fcntl.flock (POSIX)")

HOLDER = """
import sys, time
from dicomconf.scenario.exclusive import hold
directory, label, mode, seconds, rounds, pause = sys.argv[1:7]
for _ in range(int(rounds)):
    with hold(("127.0.0.1", 11112), mode == "exclusive", directory):
        print(label, "acquired", repr(time.monotonic()), flush=True)
        time.sleep(float(seconds))
        print(label, "released", repr(time.monotonic()), flush=True)
    time.sleep(float(pause))
"""


class Holders:
    """Lock-holding processes started by a test; each is stopped by its own pid."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.procs: list[subprocess.Popen] = []

    def start(self, label: str, mode: str, seconds: float, rounds: int = 1, pause: float = 0.0) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(self.directory), label, mode, str(seconds), str(rounds), str(pause)],
            stdout=subprocess.PIPE, text=True,
        )
        proc.label = label  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    @staticmethod
    def wait_acquired(proc: subprocess.Popen, timeout: float = 20.0) -> float:
        """Block until ``proc`` reports its first acquisition; return when it did."""
        deadline = time.monotonic() + timeout
        line = proc.stdout.readline()
        assert line and time.monotonic() < deadline, f"{proc.label} never acquired the lock"
        _, what, at = line.split()
        assert what == "acquired"
        proc.first = float(at)  # type: ignore[attr-defined]
        return float(at)

    def intervals(self, timeout: float = 60.0) -> dict[str, list[tuple[float, float]]]:
        """Wait for every process; return each label's (acquired, released) intervals."""
        out: dict[str, list[tuple[float, float]]] = {}
        for proc in self.procs:
            rest, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, f"{proc.label} exited with {proc.returncode}"
            events = []
            if getattr(proc, "first", None) is not None:
                events.append(("acquired", proc.first))
            for line in rest.splitlines():
                _, what, at = line.split()
                events.append((what, float(at)))
            pairs = [(events[i][1], events[i + 1][1]) for i in range(0, len(events), 2)]
            assert all(events[i][0] == "acquired" and events[i + 1][0] == "released" for i in range(0, len(events), 2))
            out[proc.label] = pairs
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, 9)
                proc.wait()


@pytest.fixture
def holders(tmp_path):
    h = Holders(tmp_path / "locks")
    yield h
    h.stop()


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_disruptive_holder_excludes_gentle_ones_and_other_disruptive_ones(holders):
    writer = holders.start("writer", "exclusive", 1.0)
    holders.wait_acquired(writer)
    holders.start("gentle1", "shared", 0.2)
    holders.start("gentle2", "shared", 0.2)
    holders.start("writer2", "exclusive", 0.2)
    spans = holders.intervals()
    (w,) = spans["writer"]
    for label in ("gentle1", "gentle2", "writer2"):
        (other,) = spans[label]
        assert other[0] >= w[1], f"{label} got the lock at {other[0]:.3f}, before the writer let go at {w[1]:.3f}"
    (w2,) = spans["writer2"]
    assert not _overlap(w2, spans["gentle1"][0]) and not _overlap(w2, spans["gentle2"][0])


def test_gentle_holders_share_the_lock(holders):
    first = holders.start("gentle1", "shared", 1.5)
    second = holders.start("gentle2", "shared", 1.5)
    holders.wait_acquired(first)
    holders.wait_acquired(second)
    spans = holders.intervals()
    assert _overlap(spans["gentle1"][0], spans["gentle2"][0]), spans


def test_waiting_disruptive_scenario_is_not_starved_by_overlapping_gentle_ones(holders):
    # Three gentle processes, staggered, each taking the lock for 0.4 s twelve times with no
    # pause: from the start until about 5 s on, some gentle holder always holds it.
    gentle = [holders.start(f"gentle{i}", "shared", 0.4, rounds=12) for i in range(3)]
    holders.wait_acquired(gentle[0])
    time.sleep(0.15)
    for proc in gentle[1:]:
        holders.wait_acquired(proc)
    time.sleep(0.5)
    asked = time.monotonic()
    holders.start("writer", "exclusive", 0.3)
    spans = holders.intervals()
    (w,) = spans["writer"]
    # It waits only for the gentle holders already running (0.4 s each), not for the stream to end.
    assert w[0] - asked < 2.0, f"the disruptive holder waited {w[0] - asked:.2f}s"
    ends = max(end for label, pairs in spans.items() if label != "writer" for _, end in pairs)
    assert w[1] < ends, "the gentle stream should still be running when the writer is done"
    for label, pairs in spans.items():
        if label != "writer":
            assert not any(_overlap(w, p) for p in pairs), f"{label} held the lock with the writer"


def test_hold_without_an_external_target_is_no_lock(tmp_path):
    with exclusive.hold(None, True, tmp_path), exclusive.hold(None, True, tmp_path):  # a lock would deadlock
        pass
    assert not any(tmp_path.iterdir())


def test_lock_files_are_named_after_the_target():
    a = exclusive.TargetLock(exclusive.target_key(("PACS.example", 104)))
    b = exclusive.TargetLock(exclusive.target_key(("pacs.example", 104)))
    c = exclusive.TargetLock(exclusive.target_key(("pacs.example", 105)))
    assert a.main_path == b.main_path != c.main_path
    assert exclusive.target_key(("::1", 11112)) == "::1:11112"


@pytest.mark.parametrize(
    ("disruptive", "max_associations", "workers", "alone"),
    [
        (True, None, 1, True),
        (False, None, 4, False),  # limit unknown: gentle scenarios share
        (False, 10, 4, False),
        (False, 4, 4, False),
        (False, 1, 4, True),  # one association at a time: every scenario alone
        (False, 3, 4, True),
        (False, 1, 1, False),  # serial: nothing overlaps anyway
    ],
)
def test_runs_alone(disruptive, max_associations, workers, alone):
    assert exclusive.runs_alone(disruptive, max_associations, workers) is alone


# ---------------------------------------------------------------------- in the plugin

LOCK_SCENARIOS = "".join(
    f"""
- id: lock.{name}
  title: holds one connection to the target for a while
  clauses: [PS3.8 9.1.2]
  severity: should
  area: connection
  disruptive: {str(disruptive).lower()}
  steps:
    - send: {{raw: "{marker}"}}
    - sleep: {hold}
    - close:
"""
    for name, disruptive, marker, hold in
    [("disruptive1", True, "D1", "1s"), ("disruptive2", True, "D1", "1s")]
    + [(f"gentle{i}", False, "0A", "500ms") for i in range(9)]
)


class RecordingTarget:
    """A loopback listener that records, per connection, the first byte and when it was open.

    It answers an A-ASSOCIATE-RQ (the run's check that the target speaks DICOM) with an
    A-ASSOCIATE-RJ (permanent, service-user, no reason given, PS3.8 9.3.4) and closes.
    """

    RJ = bytes.fromhex("03 00 00000004 00 01 01 01".replace(" ", ""))

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.spans: list[tuple[int, float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        import threading

        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            opened = time.monotonic()
            t = threading.Thread(target=self._connection, args=(conn, opened), daemon=True)
            t.start()
            self._threads.append(t)

    def _connection(self, conn, opened: float) -> None:
        with conn:
            conn.settimeout(10)
            try:
                first = conn.recv(1)
                if first == b"\x01":
                    conn.sendall(self.RJ)
                    return
                while conn.recv(65536):
                    pass
            except OSError:
                return
            with self._lock:
                self.spans.append((first[0] if first else -1, opened, time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._accept.join(5)
        for t in self._threads:
            t.join(5)
        self.sock.close()


def test_plugin_runs_disruptive_scenarios_alone_under_xdist(tmp_path):
    write(tmp_path / "scenarios" / "lock.yaml", LOCK_SCENARIOS)
    target = RecordingTarget()
    try:
        result = run_pytest(tmp_path, "scenarios", "-n", "3", "--target", f"127.0.0.1:{target.port}",
                            "--report-dir", "out", timeout=180)
    finally:
        target.stop()
    assert "11 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
    disruptive = [(a, b) for first, a, b in target.spans if first == 0xD1]
    gentle = [(a, b) for first, a, b in target.spans if first == 0x0A]
    assert len(disruptive) == 2 and len(gentle) == 9, target.spans
    for d in disruptive:
        assert not any(_overlap(d, g) for g in gentle + [x for x in disruptive if x != d]), (d, target.spans)
    # The gentle scenarios did run side by side (so the run was parallel at all).
    assert any(_overlap(a, b) for i, a in enumerate(gentle) for b in gentle[i + 1:]), gentle
