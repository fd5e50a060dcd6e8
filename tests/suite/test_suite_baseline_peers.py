"""Baselines against real SCPs: pynetdicom's and DCMTK's storescp, on 127.0.0.1.

Theory of operation
-------------------
Each peer is started by ``scripts/targets/targets.py`` on a free port and
stopped by its process id when the test ends.  A small subset of the library
(:data:`SUBSET`: one must-level failure on either peer, a scenario that a
profile edit makes fail, and one that passes) is run against it in a
subprocess, pynetdicom through ``dicomconf run`` and DCMTK through ``pytest``
with the plugin's ``--dicomconf-*`` options, so both faces are covered:

1. with ``--write-baseline`` (exit 1: the failures, no baseline yet);
2. with that baseline: exit 0, the failures *known*;
3. with a profile claiming an AE-title check the peer does not make: the
   called-AE scenario runs, fails, and is *new* (exit 1);
4. with one entry deleted from the baseline: that failure is *new* (exit 1);
5. with an entry for a scenario that passes (what a fixed target looks like):
   *stale* (exit 1), and exit 0 with ``--allow-stale``.

Every verdict is read back from ``report.json`` (``run.exit_status``,
``run.baseline``), beside the process's exit status.  A fast test checks the
shipped baselines (``scripts/targets/*.baseline.yaml``): they load, name only
scenarios of the library, and each reason says what the target does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dicomconf.exitcodes import CONFORMS, FAILURES

REPO = Path(__file__).resolve().parents[2]
TARGETS_DIR = REPO / "scripts" / "targets"
SCENARIOS = REPO / "scenarios"
DCMTK_STORESCP = "/usr/bin/storescp"

# The files and -k expression of the subset (a few seconds against either peer).
FILES = ("malformed/lengths.yaml", "negotiation/protocol-version.yaml", "negotiation/called-ae-unknown.yaml")
SUBSET = "release-rq-wrong-length or protocol-version or called-ae-not-recognized"
FAILS_ON_BOTH = "malformed.release-rq-wrong-length"  # both answer a 2-byte A-RELEASE-RQ with A-RELEASE-RP
NEEDS_AE_CHECK = "negotiation.called-ae-not-recognized"  # requires checks_called_ae; neither checks
PASSES_ON_BOTH = "negotiation.protocol-version-bit0-clear-rejected"


def _targets():
    spec = importlib.util.spec_from_file_location("dicomconf_targets_script", TARGETS_DIR / "targets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def peer(request):
    """(kind, port) of a freshly started target; stopped by its process id afterwards."""
    kind = request.param
    if kind == "dcmtk" and not os.access(DCMTK_STORESCP, os.X_OK):
        pytest.skip(f"DCMTK's {DCMTK_STORESCP} is not installed (Debian package dcmtk)")
    targets = _targets()
    pid, port = targets.start(kind)
    try:
        yield kind, port
    finally:
        targets.stop(pid)


class Runner:
    """Runs the subset against one peer: ``dicomconf run`` (pynetdicom) or ``pytest`` (DCMTK)."""

    def __init__(self, kind: str, port: int, tmp: Path) -> None:
        self.kind, self.port, self.tmp, self.runs = kind, port, tmp, 0
        self.cli = kind == "pynetdicom"

    def __call__(self, *, profile: Path | None = None, baseline: Path | None = None, write: Path | None = None,
                 allow_stale: bool = False) -> tuple[int, dict]:
        self.runs += 1
        report = self.tmp / f"report-{self.runs}"
        profile = profile or TARGETS_DIR / f"{self.kind}.profile.yaml"
        common = [*(str(SCENARIOS / f) for f in FILES), "--target", f"127.0.0.1:{self.port}",
                  "--profile", str(profile), "--called-ae", "ANY-SCP", "-k", SUBSET, "--report-dir", str(report)]
        prefix = "--" if self.cli else "--dicomconf-"
        if self.cli:
            argv = [sys.executable, "-m", "dicomconf.cli", "run", *common, "-q"]
        else:
            argv = [sys.executable, "-m", "pytest", *common, "-p", "dicomconf.pytest_plugin", "-p", "no:cacheprovider",
                    "-q"]
        if baseline is not None:
            argv += [f"{prefix}baseline", str(baseline)]
        if write is not None:
            argv += [f"{prefix}write-baseline", str(write)]
        if allow_stale:
            argv.append(f"{prefix}allow-stale")
        proc = subprocess.run(argv, cwd=self.tmp, capture_output=True, text=True, timeout=120)
        out = proc.stdout[-3000:] + proc.stderr[-2000:]
        assert (report / "report.json").is_file(), out
        doc = json.loads((report / "report.json").read_text(encoding="utf-8"))
        assert doc["run"]["exit_status"] == proc.returncode, out
        doc["output"] = out
        return proc.returncode, doc


def _edit(path: Path, dest: Path, change) -> Path:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data["scenarios"])
    dest.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return dest


@pytest.mark.network
@pytest.mark.parametrize("peer", ["pynetdicom", "dcmtk"], indirect=True)
def test_baseline_verdicts_against_a_real_peer(peer, tmp_path):
    kind, port = peer
    run = Runner(kind, port, tmp_path)

    # 1. the baseline written by a first run holds its must-level failures
    written = tmp_path / "baseline.yaml"
    code, doc = run(write=written)
    outcomes = {s["id"]: s["outcome"] for s in doc["scenarios"]}
    must_failed = {s["id"] for s in doc["scenarios"] if s["outcome"] == "failed" and s["severity"] == "must"}
    assert code == FAILURES and FAILS_ON_BOTH in must_failed, doc["output"]
    assert outcomes[NEEDS_AE_CHECK] == "skipped" and outcomes[PASSES_ON_BOTH] == "passed", outcomes
    entries = yaml.safe_load(written.read_text(encoding="utf-8"))["scenarios"]
    assert set(entries) == must_failed, entries

    # 2. the same run against it conforms: every failure is known
    code, doc = run(baseline=written)
    judged = doc["run"]["baseline"]
    assert code == CONFORMS, doc["output"]
    assert judged["conforms"] is True and sorted(judged["known"]) == sorted(must_failed), judged
    assert judged["new"] == [] and judged["stale"] == [], judged

    # 3. a profile claiming an AE-title check the peer does not make: a new failure
    original = (TARGETS_DIR / f"{kind}.profile.yaml").read_text(encoding="utf-8")
    assert "checks_called_ae: false" in original
    edited = tmp_path / "claims-ae-check.yaml"
    edited.write_text(original.replace("checks_called_ae: false", "checks_called_ae: true"), encoding="utf-8")
    code, doc = run(profile=edited, baseline=written)
    judged = doc["run"]["baseline"]
    assert code == FAILURES, doc["output"]
    assert judged["conforms"] is False and judged["new"] == [NEEDS_AE_CHECK], judged
    assert sorted(judged["known"]) == sorted(must_failed), judged

    # 4. an entry deleted from the baseline: that failure is new
    deleted = _edit(written, tmp_path / "deleted.yaml", lambda s: s.pop(FAILS_ON_BOTH))
    code, doc = run(baseline=deleted)
    judged = doc["run"]["baseline"]
    assert code == FAILURES, doc["output"]
    assert judged["new"] == [FAILS_ON_BOTH] and FAILS_ON_BOTH not in judged["known"], judged

    # 5. a baselined scenario that passes (the target got fixed): stale; --allow-stale lets it through
    fixed = _edit(written, tmp_path / "fixed.yaml",
                  lambda s: s.update({PASSES_ON_BOTH: {"expected": "failed", "reason": "rejected version 1"}}))
    code, doc = run(baseline=fixed)
    judged = doc["run"]["baseline"]
    assert code == FAILURES, doc["output"]
    assert judged["stale"] == [PASSES_ON_BOTH] and judged["new"] == [] and judged["conforms"] is False, judged
    code, doc = run(baseline=fixed, allow_stale=True)
    judged = doc["run"]["baseline"]
    assert code == CONFORMS, doc["output"]
    assert judged["stale"] == [PASSES_ON_BOTH] and judged["conforms"] is True, judged


@pytest.mark.parametrize("kind", ["pynetdicom", "dcmtk"])
def test_shipped_baselines_load_and_name_library_scenarios(kind):
    from dicomconf.scenario.baseline import load_baseline
    from dicomconf.scenario.library import catalogue

    entries = load_baseline(TARGETS_DIR / f"{kind}.baseline.yaml")
    library = {info.id: info for info in catalogue([SCENARIOS])}
    assert len(entries) >= 5
    assert set(entries) <= set(library), sorted(set(entries) - set(library))
    for sid, entry in entries.items():
        # a hand-written reason: what the target does and the clause, or why the verdict varies
        if entry.expected == "flaky":
            assert entry.reason.startswith("fails in some runs: "), (sid, entry.reason)
        else:
            assert "PS3." in entry.reason and "\n" not in entry.reason, (sid, entry.reason)
        if entry.expected == "failed":  # a should-level failure does not fail a run: no entry needed
            assert library[sid].severity == "must", sid
