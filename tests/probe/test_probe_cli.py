"""``dicomconf probe`` as a command: unreachable targets, refusals, usage errors, standard output, TLS failures.

The command runs in a subprocess (its exit code and its standard error are what a user sees); the
targets are in this process: the reference SCP, a listener that never accepts, a port nothing
listens on.  Only 127.0.0.1 and a name under ``.invalid`` (RFC 6761: never resolves) are used.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import yaml

from dicomconf.exitcodes import TARGET_UNREACHABLE
from dicomconf.scenario.profile import reference_profile
from dicomconf.scp.config import SCPConfig

pytestmark = pytest.mark.network


def run_probe(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dicomconf.cli", "probe", *args], capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.monotonic() - start


def one_clean_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_closed_port_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc, took = run_probe("--target", f"127.0.0.1:{port}", "--called-ae", "ANY-SCP")
    assert proc.returncode == TARGET_UNREACHABLE
    assert "refused" in one_clean_line(proc.stderr)
    assert proc.stdout == ""
    assert took < 15


def test_unresolvable_name_is_unreachable():
    proc, took = run_probe("--target", "no-such-target.invalid:104", "--called-ae", "ANY-SCP")
    assert proc.returncode == TARGET_UNREACHABLE
    line = one_clean_line(proc.stderr)
    assert "no-such-target.invalid" in line and "resolve" in line
    assert took < 15


def test_listener_that_never_answers_is_unreachable_within_15_s():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # the kernel completes the handshake; nobody ever accepts or answers
        port = listener.getsockname()[1]
        proc, took = run_probe("--target", f"127.0.0.1:{port}", "--called-ae", "ANY-SCP")
    assert proc.returncode == TARGET_UNREACHABLE
    assert "no A-ASSOCIATE-AC or -RJ within 10 s" in one_clean_line(proc.stderr)
    assert took < 15


def test_wrong_called_ae_is_refused_with_advice(reference):
    handle = reference(SCPConfig(port=0, ae_titles=("RIGHT-AE",), storage="discard"))
    proc, _ = run_probe("--target", f"127.0.0.1:{handle.port}", "--called-ae", "WRONG-AE")
    assert proc.returncode == 1
    line = one_clean_line(proc.stderr)
    assert "(1, 1, 7)" in line and "--called-ae" in line


@pytest.mark.parametrize("args, says", [
    (["--target", "127.0.0.1:99999", "--called-ae", "X"], "--target"),
    (["--target", "127.0.0.1:104", "--called-ae", "A" * 17], "longer than 16"),
    (["--target", "127.0.0.1:104", "--called-ae", "   "], "all spaces"),
    (["--target", "127.0.0.1:104", "--called-ae", "X", "--tls-ca", "ca.pem"], "needs --tls-port"),
    (["--target", "127.0.0.1:104", "--called-ae", "X", "--limit-max", "3"], "--limit-max needs --limits"),
    (["--target", "127.0.0.1:104", "--called-ae", "X", "--tls-port", "2762", "--tls-ca", "/no/such/ca.pem"],
     "/no/such/ca.pem"),
    (["--target", "127.0.0.1:104", "--called-ae", "X", "--tls-port", "2762", "--tls-cert", "c.pem"], "--tls-key"),
])
def test_usage_errors_are_one_line_and_exit_4(args, says):
    proc, _ = run_probe(*args)
    assert proc.returncode == 4
    assert says in one_clean_line(proc.stderr)


def test_without_output_the_profile_goes_to_stdout_and_loads(reference, tmp_path):
    from dicomconf.scenario.profile import load_profile

    profile = reference_profile()
    handle = reference(profile.scp_config(port=0))
    proc, _ = run_probe("--target", f"127.0.0.1:{handle.port}", "--called-ae", profile.ae_title)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    data = yaml.safe_load(proc.stdout)
    assert data["ae_title"] == profile.ae_title and data["target"]["port"] == handle.port
    (tmp_path / "p.yaml").write_text(proc.stdout, encoding="utf-8")
    assert load_profile(tmp_path / "p.yaml").checks_called_ae is True


def test_tls_that_cannot_be_verified_is_reported_not_claimed(reference, probe, certs):
    """A certificate the probe cannot verify (no --tls-ca for a self-signed one): tls.enabled is false and
    the comment says why; with --tls-insecure the same listener is found, and the profile says insecure."""
    from dicomconf.scenario.profile import load_profile
    from dicomconf.scp.config import TLSConfig

    cert, key, *_ = certs
    handle = reference(SCPConfig(port=0, ae_titles=("TLS-SCP",), storage="discard",
                                 tls=TLSConfig(cert=cert, key=key, port=0)))
    base = ("--target", f"127.0.0.1:{handle.port}", "--called-ae", "TLS-SCP", "--tls-port", str(handle.tls_port))
    refused = probe(*base)
    assert refused.code == 0, refused.stderr
    assert load_profile(refused.path).tls.enabled is False
    assert "certificate verif" in refused.text
    insecure = probe(*base, "--tls-insecure")
    loaded = load_profile(insecure.path)
    assert (loaded.tls.enabled, loaded.tls.insecure, loaded.tls.port) == (True, True, handle.tls_port)


def test_ipv6_loopback_target(reference, probe):
    from dicomconf.scenario.profile import load_profile

    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    handle = reference(SCPConfig(host="::1", port=0, ae_titles=("V6-SCP",), storage="discard"))
    got = probe("--target", f"[::1]:{handle.port}", "--called-ae", "V6-SCP")
    assert got.code == 0, got.stderr
    loaded = load_profile(got.path)
    assert (loaded.target.host, loaded.target.port) == ("::1", handle.port)
    assert f"for [::1]:{handle.port}" in got.text
    assert loaded.checks_called_ae is True
