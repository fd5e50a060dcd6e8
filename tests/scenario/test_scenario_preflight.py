"""A run against an unreachable or misconfigured target stops before the first scenario.

Closed port, unresolvable name, a listener that never answers, an AE title the
target rejects, a TLS certificate for another name: each ends ``dicomconf run``
quickly with one message, the documented exit code and a report that says why
(PS3.8 9.1.2, 9.3.4 Table 9-21; PS3.15 B.1).  Everything here is on loopback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import outcomes, write  # noqa: E402

from dicomconf import exitcodes  # noqa: E402
from dicomconf.scenario.certs import self_signed  # noqa: E402
from dicomconf.scp.config import SCPConfig  # noqa: E402
from dicomconf.scp.runtime import run_in_thread  # noqa: E402
from dicomconf.scp.tls import TLSConfig  # noqa: E402

ECHO = """\
- id: pre.echo
  title: echo
  clauses: [PS3.7 9.1.5]
  severity: must
  area: dimse
  steps:
    - associate:
    - echo:
    - release:
- id: pre.tls-echo
  title: echo over TLS
  clauses: [PS3.15 B.1]
  severity: must
  area: tls
  requires: {tls: true}
  steps:
    - connect: {tls: true}
    - associate:
    - echo:
    - release:
"""
PROFILE = "name: preflight target\nae_title: PRE-SCP\ncalling_ae: PRE-SCU\n"


def _run(cwd, *args, timeout=60):
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "dicomconf.cli", "run", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - t0


def _setup(tmp_path):
    write(tmp_path / "scenarios" / "pre.yaml", ECHO)
    write(tmp_path / "profile.yaml", PROFILE)


def _preflight(report_dir):
    return json.loads((report_dir / "report.json").read_text())["run"]["preflight"]


def _one_message(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "INTERNALERROR" not in result.stderr, result.stderr
    assert lines[0].startswith("dicomconf: no scenario was run: "), result.stderr
    assert len(lines) == 2 and lines[1].startswith("reports: "), result.stderr
    return lines[0]


def test_closed_port(tmp_path):
    _setup(tmp_path)
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result, took = _run(tmp_path, "--target", f"127.0.0.1:{port}", "--profile", "profile.yaml", "--report-dir", "r")
    assert result.returncode == exitcodes.TARGET_UNREACHABLE and took < 15
    assert "refused the connection" in _one_message(result)
    assert _preflight(tmp_path / "r")["cause"] == "refused"
    assert json.loads((tmp_path / "r" / "report.json").read_text())["scenarios"] == []
    html = (tmp_path / "r" / "report.html").read_text()
    assert '<span class="verdict" id="verdict">NOT RUN</span>' in html and "refused the connection" in html


def test_unresolvable_name(tmp_path):
    _setup(tmp_path)
    result, took = _run(tmp_path, "--target", "no-such-pacs.invalid:104", "--profile", "profile.yaml",
                        "--report-dir", "r")
    assert result.returncode == exitcodes.TARGET_UNREACHABLE and took < 15
    assert "'no-such-pacs.invalid' does not resolve" in _one_message(result)
    assert _preflight(tmp_path / "r")["cause"] == "resolve"


def test_listener_that_never_answers(tmp_path):
    _setup(tmp_path)
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    try:
        port = listener.getsockname()[1]
        result, took = _run(tmp_path, "--target", f"127.0.0.1:{port}", "--profile", "profile.yaml",
                            "--report-dir", "r", "-n", "2")
    finally:
        listener.close()
    assert result.returncode == exitcodes.TARGET_UNREACHABLE and took < 15, (took, result.stderr)
    assert "did not answer an A-ASSOCIATE-RQ within 5s" in _one_message(result)
    assert _preflight(tmp_path / "r")["cause"] == "no-answer"


@pytest.fixture
def checking_scp():
    handle = run_in_thread(SCPConfig(port=0, ae_titles=("PRE-SCP",), require_called_ae=True,
                                     allowed_calling_aes=("PRE-SCU",)))
    yield handle
    handle.stop()


def test_rejected_called_ae_suggests_the_option(tmp_path, checking_scp):
    _setup(tmp_path)
    target = f"127.0.0.1:{checking_scp.port}"
    result, _ = _run(tmp_path, "--target", target, "--profile", "profile.yaml", "--called-ae", "WRONG",
                     "--report-dir", "r")
    assert result.returncode == exitcodes.USAGE_ERROR
    line = _one_message(result)
    assert "the called AE title 'WRONG' is not recognised" in line and "(A-ASSOCIATE-RJ result 1, source 1, reason 7" in line
    assert "--called-ae" in line
    result, _ = _run(tmp_path, "--target", target, "--profile", "profile.yaml", "--calling-ae", "STRANGER",
                     "--report-dir", "r2")
    assert result.returncode == exitcodes.USAGE_ERROR and "--calling-ae" in _one_message(result)
    result, _ = _run(tmp_path, "--target", target, "--profile", "profile.yaml", "--report-dir", "ok", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes(tmp_path / "ok") == {"pre.echo": "passed", "pre.tls-echo": "skipped"}
    assert json.loads((tmp_path / "ok" / "report.json").read_text())["run"]["preflight"]["ok"] is True


@pytest.fixture
def tls_scp(tmp_path):
    cert, key = self_signed(tmp_path, ("pacs.example.test",), stem="other-")
    handle = run_in_thread(SCPConfig(port=0, ae_titles=("PRE-SCP",), tls=TLSConfig(cert=cert, key=key, port=0)))
    yield handle, cert
    handle.stop()


def test_tls_certificate_for_another_name(tmp_path, tls_scp):
    """Host names are verified by default; --tls-server-name and --tls-insecure are the user's way out."""
    handle, cert = tls_scp
    _setup(tmp_path)
    base = ["--target", f"127.0.0.1:{handle.port}", "--tls-port", str(handle.tls_port), "--profile", "profile.yaml"]
    result, took = _run(tmp_path, *base, "--tls-ca", cert, "--report-dir", "bad")
    assert result.returncode == exitcodes.TARGET_UNREACHABLE and took < 15
    line = _one_message(result)
    assert "the target's certificate was refused" in line and "mismatch" in line and "--tls-server-name" in line
    assert _preflight(tmp_path / "bad")["cause"] == "tls"

    result, _ = _run(tmp_path, *base, "--tls-ca", cert, "--tls-server-name", "pacs.example.test", "--report-dir",
                     "named", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes(tmp_path / "named") == {"pre.echo": "passed", "pre.tls-echo": "passed"}
    tls = json.loads((tmp_path / "named" / "report.json").read_text())["run"]["tls"]
    assert tls == {"port": handle.tls_port, "verified": True, "insecure": False}

    result, _ = _run(tmp_path, *base, "--tls-insecure", "--report-dir", "insecure", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcomes(tmp_path / "insecure")["pre.tls-echo"] == "passed"
    assert json.loads((tmp_path / "insecure" / "report.json").read_text())["run"]["tls"]["insecure"] is True
    assert "NOT verified (--tls-insecure)" in (tmp_path / "insecure" / "report.html").read_text()
    assert "certificate chain and host name verified" in (tmp_path / "named" / "report.html").read_text()


def test_the_target_may_live_in_the_profile_and_the_option_overrides_it(tmp_path, checking_scp):
    """``target: {host, port}`` in the profile is the target; ``--target`` wins over it."""
    _setup(tmp_path)
    write(tmp_path / "pacs.yaml", PROFILE + f"target: {{host: 127.0.0.1, port: {checking_scp.port}}}\n")
    result, _ = _run(tmp_path, "--profile", "pacs.yaml", "--report-dir", "from-profile", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads((tmp_path / "from-profile" / "report.json").read_text())
    assert doc["run"]["target"] == f"127.0.0.1:{checking_scp.port}"
    assert outcomes(tmp_path / "from-profile")["pre.echo"] == "passed"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    result, _ = _run(tmp_path, "--profile", "pacs.yaml", "--target", f"127.0.0.1:{closed}", "--report-dir", "flag")
    assert result.returncode == exitcodes.TARGET_UNREACHABLE and f"127.0.0.1:{closed} refused" in result.stderr


class _OldTLSServer:
    """A TLS listener of an old device: TLS 1.2 at most, one suite outside BCP 195; it closes after the handshake."""

    def __init__(self, tmp_path, *, maximum: str, ciphers: str) -> None:
        import ssl
        import threading
        import warnings

        cert, key = self_signed(tmp_path, ("localhost",), stem="old-")
        self.cert = cert
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.ctx.minimum_version = ssl.TLSVersion.TLSv1
            self.ctx.maximum_version = getattr(ssl.TLSVersion, maximum)
        self.ctx.set_ciphers(ciphers)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import ssl

        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.mark.parametrize("maximum, ciphers, words", [
    ("TLSv1_2", "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA", "--tls-ciphers widens"),
    ("TLSv1", "DEFAULT:@SECLEVEL=0", "only TLS 1.0/1.1, which the BCP 195 profiles forbid"),
])
def test_old_tls_target_gets_a_hint(tmp_path, checking_scp, maximum, ciphers, words):
    """A target whose TLS is older than BCP 195 stops the run with a hint that names the cause."""
    old = _OldTLSServer(tmp_path, maximum=maximum, ciphers=ciphers)
    try:
        _setup(tmp_path)
        base = ["--target", f"127.0.0.1:{checking_scp.port}", "--calling-ae", "PRE-SCU", "--tls-port",
                str(old.port), "--tls-insecure", "--profile", "profile.yaml"]
        result, took = _run(tmp_path, *base, "--report-dir", "bad")
        assert result.returncode == exitcodes.TARGET_UNREACHABLE and took < 15, result.stderr
        line = _one_message(result)
        assert "TLS handshake with" in line and words in line, line
        if maximum == "TLSv1_2":  # widening the suites we offer gets past the handshake
            result, _ = _run(tmp_path, *base, "--tls-ciphers", "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA", "--report-dir", "wide", "-q")
            assert result.returncode != exitcodes.TARGET_UNREACHABLE, result.stdout + result.stderr
            assert _preflight(tmp_path / "wide")["ok"] is True
    finally:
        old.close()
