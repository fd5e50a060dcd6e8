"""The suite skips what a target does not claim, and the target scripts start and stop by pid.

``test_claims_nothing_profile_only_passes_or_skips`` runs every shipped
scenario against the embedded reference SCP configured from a profile that
claims nothing optional (no timers, no association limit, no AE checks,
Verification only): each scenario must pass or skip, never fail or error,
because ``requires`` must name every claim a scenario depends on.  The same
control with each third-party target's profile (the storage SCPs and the
Query/Retrieve SCPs ``dcmqrscp`` and ``qrscp``) shows that the failures
docs/conformance-results.md lists are the targets' own.
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
KINDS = ("pynetdicom", "dcmtk", "dcmqrscp", "qrscp")

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


def _need(kind: str) -> None:
    """Skip, with the reason, when what target ``kind`` runs is not installed here."""
    if kind == "dcmtk" and not os.access("/usr/bin/storescp", os.X_OK):
        pytest.skip("DCMTK's /usr/bin/storescp is not installed (Debian package dcmtk)")
    if kind == "dcmqrscp" and not os.access("/usr/bin/dcmqrscp", os.X_OK):
        pytest.skip("DCMTK's /usr/bin/dcmqrscp is not installed (Debian package dcmtk)")
    if kind == "qrscp" and importlib.util.find_spec("sqlalchemy") is None:
        pytest.skip("pynetdicom's qrscp needs sqlalchemy, which is not installed")


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


@pytest.mark.parametrize("kind", KINDS)
def test_reference_scp_with_a_target_profile_passes_everything_it_runs(kind, tmp_path):
    """The reference SCP, configured from a third-party target's profile, passes every scenario that
    profile does not skip: the target's failures (docs/conformance-results.md) are the target's own,
    not an artefact of what its profile claims."""
    outcomes, out = _run_embedded(REPO / "scripts" / "targets" / f"{kind}.profile.yaml", tmp_path / "report")
    bad = {i: o for i, o in outcomes.items() if o not in ("passed", "skipped")}
    assert not bad, f"{bad}\n{out}"
    assert sum(o == "passed" for o in outcomes.values()) >= 30
    if kind in ("dcmqrscp", "qrscp"):
        # the Q/R claims are in force: the services scenarios run, not only skip
        ran = [i for i, o in outcomes.items() if i.startswith("services.") and o == "passed"]
        assert len(ran) >= 10, out
        assert outcomes.get("services.move-study-to-harness") == "passed", out


@pytest.mark.parametrize("kind", KINDS)
def test_start_and_stop_by_pid(kind):
    _need(kind)
    targets = _targets()
    pid, port = targets.start(kind)
    state = json.loads((targets.STATE_DIR / f"{pid}.json").read_text(encoding="utf-8"))
    forked: list[int] = []
    held = None
    try:
        assert _alive(pid)
        assert targets.listening(port)
        assert Path(state["workdir"]).is_dir()
        if kind in targets.QR_KINDS:
            _check_run_profile(targets, pid, kind, state)
        if kind == "dcmqrscp":  # stop ends the process it forked for an association still open
            held, forked = _hold_association(targets, pid, port)
    finally:
        targets.stop(pid)
    try:
        deadline = time.monotonic() + 5
        while any(map(_alive, (pid, *forked))) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
        assert not any(map(_alive, forked)), forked
    finally:
        if held is not None:
            held.close()
    assert not Path(state["workdir"]).exists()
    assert not (targets.STATE_DIR / f"{pid}.json").exists()


def _check_run_profile(targets, pid: int, kind: str, state: dict) -> None:
    """The profile of this start names the move destination port its configuration gives the target."""
    from dicomconf.scenario.profile import load_profile

    path = targets.run_profile(pid, kind)
    assert path.parent == Path(state["workdir"])
    md = load_profile(path).query_retrieve.move_destination
    assert (md.ae_title, md.host, md.port) == (targets.MOVE_AE, "127.0.0.1", state["move_port"])
    config = (Path(state["workdir"]) / ("dcmqrscp.cfg" if kind == "dcmqrscp" else "qrscp.ini")).read_text()
    if kind == "dcmqrscp":
        assert f"({targets.MOVE_AE}, 127.0.0.1, {md.port})" in config
    else:
        assert f"[{targets.MOVE_AE}]\naddress: 127.0.0.1\nport: {md.port}\n" in config


def _hold_association(targets, pid: int, port: int):
    """Open an association with dcmqrscp and keep it: (the socket, the ids of the processes it forked)."""
    import socket

    from dicomconf.ul import constants as C
    from dicomconf.ul.items import (
        ImplementationClassUID,
        MaximumLength,
        PresentationContextRQ,
        UserInformation,
    )
    from dicomconf.ul.pdu import AAssociateRQ

    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    rq = AAssociateRQ(targets.AE_TITLE, "DICOMCONF-SCU", (PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),),
                      UserInformation((MaximumLength(16382), ImplementationClassUID(C.IMPLEMENTATION_CLASS_UID))))
    held.sendall(rq.encode())
    assert held.recv(1)[:1] == b"\x02"  # A-ASSOCIATE-AC
    deadline = time.monotonic() + 5
    while not (forked := [c for c in targets._children(pid) if _alive(c)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert forked, "dcmqrscp forked no process for the association"
    return held, forked


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

    _need(kind)
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


def test_qr_target_profiles_match_their_configuration(tmp_path):
    """What the dcmqrscp and qrscp profiles claim is what targets.py configures (one place per fact)."""
    from dicomconf.scenario.profile import load_profile

    targets = _targets()
    for kind in targets.QR_KINDS:
        _need(kind)
        profile = load_profile(REPO / "scripts" / "targets" / f"{kind}.profile.yaml")
        workdir = tmp_path / kind
        workdir.mkdir()
        argv, _env = targets.command(kind, 11112, workdir, targets.AE_TITLE, 11113)
        assert profile.ae_title == targets.AE_TITLE
        assert profile.query_retrieve.move_destination.ae_title == targets.MOVE_AE
        assert profile.commitment.report is None and not profile.mpps
        if kind == "dcmqrscp":
            config = (workdir / "dcmqrscp.cfg").read_text()
            assert argv[argv.index("-ta") + 1] == str(int(profile.timers.artim))
            assert f"MaxAssociations = {profile.max_associations}\n" in config
            assert f"MaxPDUSize = {profile.max_pdu_length}\n" in config
            assert f"\n{profile.ae_title} {workdir / 'area'} RW " in config
            assert "(DICOMCONF-MOVE, 127.0.0.1, 11113)" in config
            # no association negotiation profile: it accepts storage contexts with the proposed roles
            assert "-xf" not in argv
            assert {name: set(r) for name, r in profile.roles.items()} == {n: {"scu", "scp"} for n in ("ct", "mr", "sc")}
        else:
            config = (workdir / "qrscp.ini").read_text()
            assert f"ae_title: {profile.ae_title}\n" in config
            assert f"acse_timeout: {int(profile.timers.artim)}\n" in config
            assert f"network_timeout: {int(profile.timers.idle)}\n" in config
            assert f"max_pdu: {profile.max_pdu_length}\n" in config
            assert "[DICOMCONF-MOVE]\naddress: 127.0.0.1\nport: 11113\n" in config


def test_qr_targets_command_line_prints_the_run_profile():
    _need("qrscp")
    out = subprocess.run([sys.executable, str(TARGETS), "start", "qrscp", "--move-port", "0"], capture_output=True,
                         text=True, timeout=60, check=True).stdout.split()
    pid, port, profile = int(out[0]), int(out[1]), Path(out[2])
    try:
        assert _targets().listening(port)
        assert profile.is_file() and "move_destination" in profile.read_text()
    finally:
        subprocess.run([sys.executable, str(TARGETS), "stop", str(pid)], check=True, timeout=60)
    assert not profile.exists()
