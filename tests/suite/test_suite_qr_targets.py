"""The Query/Retrieve scenarios against DCMTK's dcmqrscp and pynetdicom's qrscp give the documented verdicts.

Theory of operation
-------------------
Each peer is started by ``scripts/targets/targets.py`` (a free loopback port,
an empty storage area, the harness's move destination ``DICOMCONF-MOVE`` on a
port chosen at start and written into both the peer's configuration and the
run's profile) and stopped by its process id when the test ends.  The
services area (``scenarios/qr``) runs against it in a subprocess, one scenario
at a time, in 5-15 s; its verdicts are read back from ``report.json`` and
compared with docs/conformance-results.md ("Query/Retrieve: dcmqrscp and
pynetdicom qrscp"):

* the must-level failures are exactly the ``services.*`` entries of the
  peer's baseline (``scripts/targets/KIND.baseline.yaml``, one reason each);
* the should-level failures are exactly :data:`SHOULD_FAILURES`;
* everything else the profile does not skip passes, among it a C-MOVE to the
  harness and a C-FIND over what the scenarios stored (so the peer indexes
  what it receives and knows the move destination).

qrscp grants the SCP role for a storage class when it is proposed but keeps
the default SCU role without a role item, which a profile cannot claim (see
scripts/targets/qrscp.profile.yaml): its profile claims no role, and
:func:`test_qrscp_get_scenarios_with_the_scp_role_claimed` runs the C-GET
scenarios once more with ``roles.mr: [scp]`` added.  A peer that is not
installed (dcmqrscp, or sqlalchemy for qrscp) skips with the reason.
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

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[2]
TARGETS_DIR = REPO / "scripts" / "targets"
PEERS = ("dcmqrscp", "qrscp")

# The should-level failures of the services area (docs/conformance-results.md); the must-level
# ones are the services.* entries of scripts/targets/KIND.baseline.yaml.
SHOULD_FAILURES = {
    "dcmqrscp": {
        "services.move-missing-unique-key",  # moves by Patient ID alone (no identifier check without -XM)
    },
    "qrscp": {
        "services.find-non-ascii-name-wildcard",  # one pending response per instance, not per patient
        "services.find-patient-name-caret-only-family",
        "services.find-patient-name-wildcard",
        "services.find-returns-requested-keys",
        "services.move-missing-unique-key",  # moves by Patient ID alone
        "services.move-unknown-level",  # A801 (its handler's A900 taken for a destination)
    },
}
# qrscp with roles.mr: [scp] claimed: the C-GET scenarios that fail (list of UID matching breaks its
# database query: C413), of those the -k expression selects.
QRSCP_GET = "get"
QRSCP_GET_FAILURES = {"services.get-pending-counts", "services.get-cancel-after-first-store"}


def _targets():
    spec = importlib.util.spec_from_file_location("dicomconf_targets_script", TARGETS_DIR / "targets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _need(kind: str) -> None:
    if kind == "dcmqrscp" and not os.access("/usr/bin/dcmqrscp", os.X_OK):
        pytest.skip("DCMTK's /usr/bin/dcmqrscp is not installed (Debian package dcmtk)")
    if kind == "qrscp" and importlib.util.find_spec("sqlalchemy") is None:
        pytest.skip("pynetdicom's qrscp needs sqlalchemy, which is not installed")


@pytest.fixture
def peer(request):
    """(kind, port, run profile) of a freshly started Q/R peer; stopped by its process id afterwards."""
    kind = request.param
    _need(kind)
    targets = _targets()
    pid, port = targets.start(kind)
    try:
        yield kind, port, targets.run_profile(pid, kind)
    finally:
        targets.stop(pid)


def _services(port: int, profile: Path, report: Path, *extra: str) -> tuple[dict[str, str], dict[str, str], str]:
    """Run scenarios/qr against 127.0.0.1:``port``: (outcome per id, severity per id, the output's tail)."""
    argv = [sys.executable, "-m", "pytest", str(REPO / "scenarios" / "qr"), *_targets().plugin_args(),
            "-q", "-p", "no:cacheprovider", "--target", f"127.0.0.1:{port}", "--profile", str(profile),
            "--called-ae", _targets().AE_TITLE, "--report-dir", str(report), *extra]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert (report / "report.json").is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    scenarios = json.loads((report / "report.json").read_text(encoding="utf-8"))["scenarios"]
    outcomes = {s["id"]: s["outcome"] for s in scenarios}
    return outcomes, {s["id"]: s["severity"] for s in scenarios}, proc.stdout[-4000:]


def _documented_must_failures(kind: str) -> set[str]:
    from dicomconf.scenario.baseline import load_baseline

    entries = load_baseline(TARGETS_DIR / f"{kind}.baseline.yaml")
    return {sid for sid, entry in entries.items() if sid.startswith("services.") and entry.expected == "failed"}


@pytest.mark.parametrize("peer", PEERS, indirect=True)
def test_services_verdicts_are_the_documented_ones(peer, tmp_path):
    kind, port, profile = peer
    outcomes, severity, out = _services(port, profile, tmp_path / "report")
    failing = {sid for sid, outcome in outcomes.items() if outcome in ("failed", "error")}
    must = {sid for sid in failing if severity[sid] == "must"}
    assert must == _documented_must_failures(kind), out
    assert failing - must == SHOULD_FAILURES[kind], out
    passed = {sid for sid, outcome in outcomes.items() if outcome == "passed"}
    assert len(passed) >= 15, out
    # it knows the move destination, and it indexes what the scenarios stored into it
    assert {"services.move-study-to-harness", "services.move-unknown-destination"} <= passed, out
    assert "services.find-study-uid-list" in (passed if kind == "dcmqrscp" else must), out


def test_qrscp_get_scenarios_with_the_scp_role_claimed(tmp_path):
    _need("qrscp")
    targets = _targets()
    pid, port = targets.start("qrscp")
    try:
        data = yaml.safe_load(targets.run_profile(pid, "qrscp").read_text(encoding="utf-8"))
        data["roles"] = {"mr": ["scp"]}  # what it grants when a requestor proposes both roles
        profile = tmp_path / "qrscp-scp-role.yaml"
        profile.write_text(yaml.safe_dump(data), encoding="utf-8")
        outcomes, _severity, out = _services(port, profile, tmp_path / "report", "-k", QRSCP_GET)
    finally:
        targets.stop(pid)
    ran = {sid: outcome for sid, outcome in outcomes.items() if outcome != "skipped"}
    assert {sid for sid, outcome in ran.items() if outcome != "passed"} == QRSCP_GET_FAILURES, out
    assert ran.get("services.get-study-with-role-selection") == "passed", out
    assert len(ran) >= 4, out


@pytest.mark.parametrize("kind", PEERS)
def test_shipped_qr_baselines_load_and_name_library_scenarios(kind):
    from dicomconf.scenario.baseline import load_baseline
    from dicomconf.scenario.library import catalogue

    entries = load_baseline(TARGETS_DIR / f"{kind}.baseline.yaml")
    library = {info.id: info for info in catalogue([REPO / "scenarios"])}
    assert set(entries) <= set(library), sorted(set(entries) - set(library))
    assert len(entries) >= 10
    for sid, entry in entries.items():
        if entry.expected == "flaky":
            assert entry.reason.startswith("fails in some runs: "), (sid, entry.reason)
        else:  # a must-level failure, with what the target does and the clause it breaks
            assert library[sid].severity == "must", sid
            assert "PS3." in entry.reason and "\n" not in entry.reason, (sid, entry.reason)
    for sid in SHOULD_FAILURES[kind]:
        assert library[sid].severity == "should", sid
