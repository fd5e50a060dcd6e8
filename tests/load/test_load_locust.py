"""`dicomconf load` under Locust: headless CSV, failures by cause, master + 2 workers, timeouts under gevent."""

from __future__ import annotations

import csv
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# Only looked for, never imported here: importing Locust patches this process's sockets and threads (gevent).
if importlib.util.find_spec("locust") is None:
    pytest.skip("Locust is not installed (pip install '.[test]' or '.[load]')", allow_module_level=True)

from dicomconf.scp.config import SCPConfig  # noqa: E402
from dicomconf.scp.runtime import run_in_thread  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.network


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "dicomconf.cli", "load", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 90) -> str:
    """The process's output once it has ended; stopped by its own pid if it runs past ``timeout``."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"dicomconf load (pid {proc.pid}) did not end within {timeout}s:\n{out[-3000:]}")
    return out


def rows(prefix: Path, kind: str = "stats") -> list[dict]:
    with open(f"{prefix}_{kind}.csv", newline="") as f:
        return list(csv.DictReader(f))


def counts(prefix: Path) -> dict[tuple[str, str], tuple[int, int]]:
    return {(r["Type"], r["Name"]): (int(r["Request Count"]), int(r["Failure Count"])) for r in rows(prefix)
            if r["Type"]}


@pytest.fixture
def scp():
    handle = run_in_thread(SCPConfig(port=0, ae_titles=("LOAD-SCP",), require_called_ae=True, storage="memory",
                                     artim_timeout=2.0))
    yield handle
    handle.stop()


def test_headless_mix_writes_every_request_type_to_the_csv_with_no_failure(tmp_path, scp):
    spec = tmp_path / "mix.yaml"
    spec.write_text(f"""\
target: {{host: 127.0.0.1, port: {scp.port}, called_ae: LOAD-SCP}}
association: {{reuse: false, timeout: 5s}}
objects: [{{generate: {{sop_class: ct, size: 4KiB, count: 3}}}}]
tasks:
  - {{op: echo, weight: 2}}
  - {{op: store, count: 2}}
  - {{op: find, name: today, keys: {{PatientID: DICOMCONF-LOAD, StudyInstanceUID: ""}}}}
""")
    out = finish(start(tmp_path, str(spec), "--headless", "-u", "4", "-r", "4", "-t", "4s", "--csv",
                       str(tmp_path / "run"), "--only-summary"))
    got = counts(tmp_path / "run")
    for key in [("A-ASSOCIATE", "echo"), ("C-ECHO", "echo"), ("A-RELEASE", "echo"), ("A-ASSOCIATE", "store"),
                ("C-STORE", "store"), ("C-FIND", "today")]:
        assert got.get(key, (0, 0))[0] > 0, (key, got, out[-2000:])
    assert all(failed == 0 for _, failed in got.values()), (got, out[-2000:])
    assert got[("C-STORE", "store")][0] >= got[("A-ASSOCIATE", "store")][0]  # two objects per association
    assert len(scp.stored) >= got[("C-STORE", "store")][0] - 4  # the SCP saw them (the last may be cut by -t)
    assert rows(tmp_path / "run", "failures") == []


def test_a_rejecting_scp_shows_the_failures_by_reason(tmp_path, scp):
    spec = tmp_path / "wrong-ae.yaml"
    spec.write_text(f"target: {{host: 127.0.0.1, port: {scp.port}, called_ae: NOT-THE-SCP}}\n"
                    "tasks: [{op: echo}]\n")
    proc = start(tmp_path, str(spec), "--headless", "-u", "2", "-r", "2", "-t", "4s", "--csv", str(tmp_path / "rj"),
                 "--only-summary")
    out = finish(proc)
    assert proc.returncode == 1, out[-2000:]  # Locust's exit code when requests failed
    failures = rows(tmp_path / "rj", "failures")
    assert [(f["Method"], f["Name"], f["Error"]) for f in failures] == [  # noqa: E501 (one row: one cause)
        ("A-ASSOCIATE", "echo", "association rejected (1,1,7): rejected-permanent, called-AE-title-not-recognized")
    ], out[-3000:]
    assert int(failures[0]["Occurrences"]) > 0
    got = counts(tmp_path / "rj")
    assert got[("A-ASSOCIATE", "echo")][0] == got[("A-ASSOCIATE", "echo")][1] > 0
    assert ("C-ECHO", "echo") not in got  # no echo without an association


def test_a_silent_target_costs_each_user_its_timeout_not_the_process_its_progress(tmp_path):
    """Under gevent the SCU's socket timeouts still fire, and users wait at the same time: 6 users
    waiting 0.5 s each make about 12 attempts a second, where one blocking wait at a time would make 2."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)  # the kernel completes the TCP handshakes; no PDU ever comes back
    try:
        mute = tmp_path / "mute.yaml"
        mute.write_text(f"target: {{host: 127.0.0.1, port: {silent.getsockname()[1]}, called_ae: LOAD-SCP}}\n"
                        "association: {timeout: 500ms}\ntasks: [{op: echo, name: mute}]\n")
        finish(start(tmp_path, str(mute), "--headless", "-u", "6", "-r", "100", "-t", "3s", "--csv",
                     str(tmp_path / "mute"), "--only-summary"))
    finally:
        silent.close()
    failures = rows(tmp_path / "mute", "failures")
    assert [(f["Method"], f["Error"]) for f in failures] == [("A-ASSOCIATE", "no answer within 0.5s")]
    stats = {r["Type"]: r for r in rows(tmp_path / "mute") if r["Type"]}
    assert 450 <= float(stats["A-ASSOCIATE"]["Median Response Time"]) <= 1500
    assert int(stats["A-ASSOCIATE"]["Request Count"]) >= 15, stats  # blocking waits would give about 6
    assert "C-ECHO" not in stats


def test_master_and_two_workers_on_loopback_sum_both_workers_requests(tmp_path, scp):
    """Each worker reads its own load file (as on its own machine); distinct task names show that the
    master's statistics hold both workers' requests."""
    for n in (1, 2):
        (tmp_path / f"w{n}.yaml").write_text(f"target: {{host: 127.0.0.1, port: {scp.port}, called_ae: LOAD-SCP}}\n"
                                             f"tasks: [{{op: echo, name: worker{n}}}]\n")
    port = free_port()
    master = start(tmp_path, str(tmp_path / "w1.yaml"), "--master", "--headless", "-u", "4", "-r", "4", "-t", "4s",
                   "--expect-workers", "2", "--expect-workers-max-wait", "40", "--master-bind-host", "127.0.0.1",
                   "--master-bind-port", str(port), "--csv", str(tmp_path / "dist"), "--only-summary")
    workers = [start(tmp_path, str(tmp_path / f"w{n}.yaml"), "--worker", "--master-host", "127.0.0.1",
                     "--master-port", str(port)) for n in (1, 2)]
    try:
        out = finish(master, timeout=120)
    finally:
        for worker in workers:
            finish(worker, timeout=30)
    assert master.returncode == 0, out[-3000:]
    got = counts(tmp_path / "dist")
    for n in (1, 2):
        assert got.get(("C-ECHO", f"worker{n}"), (0, 0))[0] > 0, (got, out[-2000:])
        assert got[("A-ASSOCIATE", f"worker{n}")][1] == 0


def _certificates(directory: Path) -> dict[str, str]:
    """A throwaway CA with server and client certificates (the SCP tests' helper)."""
    sys.path.insert(0, str(ROOT / "tests" / "scp"))
    try:
        import scp_testkit
    finally:
        sys.path.pop(0)
    directory.mkdir()
    try:
        return scp_testkit.make_certificates(str(directory))
    except RuntimeError as exc:  # neither the cryptography package nor the openssl command
        pytest.skip(str(exc))


def test_tls_target_with_a_client_certificate_and_a_wrong_ca_refused(tmp_path):
    """PS3.15 B.1: the users run over TLS with a client certificate, which the SCP requires; users
    without one, or trusting a CA that did not sign the server's certificate, fail every
    A-ASSOCIATE, and no C-ECHO is counted for them."""
    from dicomconf.scp.config import TLSConfig

    certs = _certificates(tmp_path / "certs")
    other = _certificates(tmp_path / "other")
    handle = run_in_thread(SCPConfig(port=0, ae_titles=("LOAD-SCP",), require_called_ae=True, storage="memory",
                                     tls=TLSConfig(cert=certs["server"], key=certs["server_key"], ca=certs["ca"],
                                                   require_client_cert=True, port=0)))
    try:
        mine = f", cert: {certs['client']}, key: {certs['client_key']}"
        for name, ca, cert in (("good", certs["ca"], mine), ("wrong", other["ca"], mine), ("nocert", certs["ca"], "")):
            (tmp_path / f"{name}.yaml").write_text(
                f"target: {{host: 127.0.0.1, port: {handle.tls_port}, called_ae: LOAD-SCP,\n"
                f"         tls: {{ca: {ca}{cert}, server_name: localhost}}}}\n"
                "association: {reuse: false, timeout: 5s}\n"
                "objects: [{generate: {sop_class: ct, size: 4KiB, count: 2}}]\n"
                f"tasks: [{{op: echo, name: {name}}}, {{op: store, name: {name}-store}}]\n")
            finish(start(tmp_path, str(tmp_path / f"{name}.yaml"), "--headless", "-u", "2", "-r", "2", "-t", "3s",
                         "--csv", str(tmp_path / name), "--only-summary"))
        good = counts(tmp_path / "good")
        assert good.get(("C-ECHO", "good"), (0, 0))[0] > 0, good
        assert good.get(("C-STORE", "good-store"), (0, 0))[0] > 0, good
        assert all(failed == 0 for _, failed in good.values()), (good, rows(tmp_path / "good", "failures"))
        assert len(handle.stored) >= good[("C-STORE", "good-store")][0] - 2
        wrong = rows(tmp_path / "wrong", "failures")
        assert wrong and all(f["Method"] == "A-ASSOCIATE" for f in wrong), wrong
        assert any("certificate verification failed" in f["Error"] for f in wrong), wrong
        nocert = rows(tmp_path / "nocert", "failures")
        assert nocert and all(f["Method"] == "A-ASSOCIATE" for f in nocert), nocert
        for name in ("wrong", "nocert"):
            got = counts(tmp_path / name)
            assert got[("A-ASSOCIATE", name)][0] == got[("A-ASSOCIATE", name)][1] > 0, got
            assert not any(t == "C-ECHO" for t, _ in got), got
    finally:
        handle.stop()
