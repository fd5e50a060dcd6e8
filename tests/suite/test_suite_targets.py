"""The suite skips what a target does not claim, and the target scripts start and stop by pid.

``test_claims_nothing_profile_only_passes_or_skips`` runs every shipped
scenario against the embedded reference SCP configured from a profile that
claims nothing optional (no timers, no association limit, no AE checks,
Verification only): each scenario must pass or skip, never fail or error,
because ``requires`` must name every claim a scenario depends on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGETS = REPO / "scripts" / "targets" / "targets.py"

CLAIMS_NOTHING = """\
name: claims nothing
ae_title: MINIMAL-SCP
timers: {artim: null, idle: null}
sop_classes: [verification]
transfer_syntaxes: [ImplicitVRLittleEndian]
max_associations: null
"""


def _targets():
    spec = importlib.util.spec_from_file_location("dicomconf_targets_script", TARGETS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _run_embedded(profile: Path, report: Path) -> tuple[dict[str, str], str]:
    """Outcome per scenario id of the SCP half of the suite against the embedded SCP configured from
    ``profile`` (the SCU half, scenarios/scu, does not depend on a target profile)."""
    argv = [sys.executable, "-m", "pytest", str(REPO / "scenarios"), "--ignore", str(REPO / "scenarios" / "scu"),
            *_targets().plugin_args(),
            "-q", "-p", "no:cacheprovider", "--profile", str(profile), "--report-dir", str(report)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    return {s["id"]: s["outcome"] for s in data["scenarios"]}, proc.stdout[-3000:]


def test_claims_nothing_profile_only_passes_or_skips(tmp_path):
    profile = tmp_path / "minimal.yaml"
    profile.write_text(CLAIMS_NOTHING, encoding="utf-8")
    outcomes, out = _run_embedded(profile, tmp_path / "report")
    assert len(outcomes) >= 30, out
    bad = {i for i, o in outcomes.items() if o not in ("passed", "skipped")}
    assert not bad, f"neither passed nor skipped: {sorted(bad)}\n{out}"
    skipped = {i for i, o in outcomes.items() if o == "skipped"}
    assert "timers.artim-closes-silent-connection" in skipped
    assert "connection.association-limit-rejects-transient" in skipped
    assert "negotiation.called-ae-not-recognized" in skipped


@pytest.mark.parametrize("kind", ["pynetdicom", "dcmtk"])
def test_reference_scp_with_a_target_profile_passes_everything_it_runs(kind, tmp_path):
    """The reference SCP, configured from a third-party target's profile, passes every scenario that
    profile does not skip: the target's failures (docs/conformance-results.md) are the target's own,
    not an artefact of what its profile claims."""
    outcomes, out = _run_embedded(REPO / "scripts" / "targets" / f"{kind}.profile.yaml", tmp_path / "report")
    bad = {i: o for i, o in outcomes.items() if o not in ("passed", "skipped")}
    assert not bad, f"{bad}\n{out}"
    assert sum(o == "passed" for o in outcomes.values()) >= 30


@pytest.mark.parametrize("kind", ["pynetdicom", "dcmtk"])
def test_start_and_stop_by_pid(kind):
    if kind == "dcmtk" and not os.access("/usr/bin/storescp", os.X_OK):
        pytest.skip("DCMTK's /usr/bin/storescp is not installed (Debian package dcmtk)")
    targets = _targets()
    pid, port = targets.start(kind)
    state = json.loads((targets.STATE_DIR / f"{pid}.json").read_text(encoding="utf-8"))
    try:
        assert _alive(pid)
        assert targets.listening(port)
        assert Path(state["workdir"]).is_dir()
    finally:
        targets.stop(pid)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
    assert not Path(state["workdir"]).exists()
    assert not (targets.STATE_DIR / f"{pid}.json").exists()


def test_command_line_prints_pid_and_port():
    out = subprocess.run([sys.executable, str(TARGETS), "start", "pynetdicom"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    pid, port = int(out[0]), int(out[1])
    try:
        assert _targets().listening(port)
    finally:
        subprocess.run([sys.executable, str(TARGETS), "stop", str(pid)], check=True, timeout=60)
    assert not _targets().listening(port)


def test_stop_refuses_a_process_it_did_not_start():
    with pytest.raises(SystemExit, match="not started by this script"):
        _targets().stop(os.getpid())


def test_unknown_target_is_a_clear_error():
    proc = subprocess.run([sys.executable, str(TARGETS), "start", "orthanc"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("kind", ["pynetdicom", "dcmtk"])
def test_target_profiles_match_how_the_script_starts_them(kind, tmp_path):
    from dicomconf.scenario.profile import load_profile

    if kind == "dcmtk" and not os.access("/usr/bin/storescp", os.X_OK):
        pytest.skip("DCMTK's /usr/bin/storescp is not installed (Debian package dcmtk)")
    targets = _targets()
    profile = load_profile(REPO / "scripts" / "targets" / f"{kind}.profile.yaml")
    argv, _env = targets.command(kind, 11112, tmp_path, targets.AE_TITLE)
    assert argv[argv.index("-aet") + 1] == profile.ae_title
    assert argv[argv.index("-ta") + 1] == str(int(profile.timers.artim))
    if kind == "dcmtk":
        # storescp -td does not end an idle association (its 60 s socket timeout does, with no
        # A-ABORT): the profile claims no idle timer (see scripts/targets/dcmtk.profile.yaml).
        assert profile.timers.idle is None
        assert argv[argv.index("-td") + 1] == str(targets.DIMSE_TIMEOUT)
    else:
        assert argv[argv.index("-td") + 1] == str(int(profile.timers.idle))


def test_port_in_use_is_a_clear_error_and_leaves_nothing(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, str(TARGETS), "start", "pynetdicom", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "before listening" in proc.stderr
    assert "Traceback" not in proc.stderr
    state_dir = _targets().STATE_DIR
    left = [f for f in state_dir.glob("*.json") if json.loads(f.read_text(encoding="utf-8"))["port"] == port] \
        if state_dir.exists() else []
    assert not left, left
