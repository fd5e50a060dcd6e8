"""The SCU under test, three ways (dicomconf.scenario.scu_sources, scu_side): as a user runs them.

A device on the network (``--scu-listen`` alone) is played by the reference SCU started by the
test when the terminal says what to trigger; a command that never ends is stopped by its process
id; bad options are usage errors (exit 4) before anything runs; a run that names only one system
under test skips the other half with the reason.  Loopback only, free ports.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dicomconf import exitcodes

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[2]
SCU = REPO / "scenarios" / "scu"
A700 = SCU / "dimse" / "store-failure-a700.yaml"
PROFILE = """\
name: a device
calling_ae: MODALITY
called_ae: PACS
operations: [echo, store]
timeouts: {connect: 3, association: 3, dimse: 3, release: 3}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path: Path, *args: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, dict | None]:
    report = tmp_path / "report"
    argv = [sys.executable, "-m", "dicomconf.cli", "run", *args, "--report-dir", str(report)]
    proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    path = report / "report.json"
    return proc, json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_device_on_the_network_is_told_what_to_send(tmp_path: Path):
    """--scu-listen alone: the terminal says what to trigger, where and to which AE; the device
    (here the reference SCU, started when the line appears) is judged like any SCU."""
    port = _free_port()
    profile = tmp_path / "device.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    report = tmp_path / "report"
    argv = [sys.executable, "-m", "dicomconf.cli", "run", str(A700), "--scu-listen", f"127.0.0.1:{port}",
            "--scu-profile", str(profile), "--scu-wait", "20", "--report-dir", str(report)]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    told = threading.Event()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "now (waiting up to" in line:
                told.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert told.wait(60), "".join(lines)
        said = next(line for line in lines if "now (waiting up to" in line)
        assert "scu.dimse.store-failure-a700" in said and "a C-STORE" in said
        assert f"to AE PACS at 127.0.0.1:{port}" in said
        from dicomconf.scenario.scu_sources import write_object
        from dicomconf.scu.app import Job, perform

        image = write_object(tmp_path / "image.dcm")
        status, output = perform(Job("127.0.0.1", port, "store", "PACS", "MODALITY", str(image)))
        assert status == 1 and "store status 0xa700" in output, (output, "".join(lines))
        assert proc.wait(60) == exitcodes.CONFORMS
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(5)
    doc = json.loads((report / "report.json").read_text(encoding="utf-8"))
    (record,) = doc["scenarios"]
    assert record["outcome"] == "passed" and record["scu"]["mode"] == "device"
    assert doc["run"]["scu"] == f"a device sending to 127.0.0.1:{port}"


def test_a_command_that_never_ends_is_stopped_by_its_process_id(tmp_path: Path):
    proc, doc = _run(tmp_path, str(A700), "--scu-command", "sleep 300", "--scu-wait", "1",
                     "--scu-profile", str(_profile(tmp_path)))
    (record,) = doc["scenarios"]
    assert record["outcome"] == "error" and "did not connect" in record["failure"]["message"]
    scu = record["scu"]
    assert scu["command"] == "sleep 300" and scu["stopped"].startswith("terminated")
    assert scu["exit_status"] == -15 and not _alive(scu["pid"])
    assert proc.returncode == 1


def _profile(tmp_path: Path) -> Path:
    path = tmp_path / "scu.yaml"
    path.write_text(PROFILE, encoding="utf-8")
    return path


@pytest.mark.parametrize("command, said", [
    ("no-such-program-here {host} {port}", "no program 'no-such-program-here'"),
    ("/bin/echo {hots}", "unknown placeholder {hots}"),
    ("/bin/echo {host", "expected '}'"),
])
def test_a_bad_command_is_a_usage_error_before_anything_runs(tmp_path: Path, command: str, said: str):
    proc, doc = _run(tmp_path, str(A700), "--scu-command", command)
    assert proc.returncode == exitcodes.USAGE_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert said in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_bad_scu_profile_is_a_usage_error_with_its_line(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\noperations: [echo, fax]\ntimeouts: {dimse: soon}\n", encoding="utf-8")
    proc, _ = _run(tmp_path, str(A700), "--scu-profile", str(bad))
    out = proc.stdout + proc.stderr
    assert proc.returncode == exitcodes.USAGE_ERROR, out[-2000:]
    assert f"{bad}:2" in out and f"{bad}:3" in out and "Traceback" not in out


def test_one_system_under_test_named_skips_the_other_half(tmp_path: Path):
    """Only an SCU named: the SCP-testing scenarios skip with the reason, and vice versa."""
    scp_scenario = REPO / "scenarios" / "dimse" / "echo.yaml"
    proc, doc = _run(tmp_path, str(A700), str(scp_scenario), "--scu-command",
                     f"{sys.executable} -m dicomconf.scu.app store {{host}} {{port}} {{file}} --called-ae {{called_ae}}",
                     "--scu-profile", str(_profile(tmp_path)))
    outcomes = {r["id"]: r for r in doc["scenarios"]}
    assert outcomes["scu.dimse.store-failure-a700"]["outcome"] == "passed", proc.stdout[-3000:]
    skipped = outcomes["dimse.echo"]
    assert skipped["outcome"] == "skipped" and "no target SCP named" in skipped["skip_reason"]

    (tmp_path / "two").mkdir()
    from dicomconf.scp.runtime import run_in_thread
    from dicomconf.scenario.profile import reference_profile

    handle = run_in_thread(reference_profile().scp_config(port=0))
    try:
        proc, doc = _run(tmp_path / "two", str(A700), str(scp_scenario), "--target", f"127.0.0.1:{handle.port}",
                         "--called-ae", "DICOMCONF-SCP")
    finally:
        handle.stop()
    outcomes = {r["id"]: r for r in doc["scenarios"]}
    assert outcomes["dimse.echo"]["outcome"] == "passed", proc.stdout[-3000:]
    skipped = outcomes["scu.dimse.store-failure-a700"]
    assert skipped["outcome"] == "skipped" and "no SCU under test" in skipped["skip_reason"]


def test_a_device_is_waited_for_one_scenario_at_a_time(tmp_path: Path):
    proc, _ = _run(tmp_path, str(A700), "--scu-listen", f"127.0.0.1:{_free_port()}", "-n", "2")
    assert proc.returncode == exitcodes.USAGE_ERROR, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "run it without -n" in proc.stdout + proc.stderr
