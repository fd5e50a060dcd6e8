"""``dicomconf scp``: starts, logs one line per association, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from scp_testkit import RELEASE_RQ, RawClient

from dicomconf.ul import constants as C

pytestmark = pytest.mark.network


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dicomconf.cli", "scp", *args],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )


def test_cli_serves_logs_and_stops_on_sigterm(tmp_path):
    cfg = tmp_path / "scp.yaml"
    cfg.write_text("ae_titles: [FILEAE]\nartim_timeout: 2\n")
    proc = _spawn("--config", str(cfg), "--port", "0", "--ae", "CLIAE", "-v")
    try:
        line = proc.stderr.readline()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        with RawClient(int(match.group(1))) as client:
            assert client.associate(called="CLIAE")[0] == C.A_ASSOCIATE_AC
            assert client.echo() == 0
            client.send(RELEASE_RQ)
            assert client.recv_pdu()[0] == C.A_RELEASE_RP
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert re.search(r"calling='TESTSCU' called='CLIAE' contexts=1/1 accepted outcome=released", err), err
    assert "A-ASSOCIATE-RQ" in err  # the -v PDU trace


def test_cli_bad_config_fails_with_file_and_line(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("port: 104\nmax_pdu_length: lots\n")
    result = subprocess.run([sys.executable, "-m", "dicomconf.cli", "scp", "--config", str(cfg)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"{cfg}:2: max_pdu_length must be an integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_port_in_use_is_a_clear_error():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dicomconf.cli", "scp", "--port", str(sock.getsockname()[1])],
            capture_output=True, text=True, timeout=30, env={**os.environ},
        )
    finally:
        sock.close()
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "Traceback" not in result.stderr


def _echo_through(host: str, port: int) -> int:
    from dicomconf.scu.client import SCU
    from dicomconf.scu.connection import Connection

    with Connection.open(host, port, timeout=5) as conn:
        scu = SCU(conn, calling_ae="DUALSCU", called_ae="DICOMCONF")
        scu.associate(["verification"])
        status = scu.echo()
        scu.release()
    return status


@pytest.mark.parametrize("host, reach", [("::", ("::1", "127.0.0.1")), ("::1", ("::1",)), ("127.0.0.1", ("127.0.0.1",))])
def test_cli_listens_on_ipv6_and_dual_stack(host, reach):
    """``--host ::`` is one dual-stack listener (IPv6 and IPv4 peers); ``::1`` is IPv6 alone."""
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    if host == "::" and not socket.has_dualstack_ipv6():
        pytest.skip("this OS has no dual-stack IPv6 sockets")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as exc:
        pytest.skip(f"::1 is not configured here: {exc}")
    proc = _spawn("--host", host, "--port", "0")
    try:
        line = proc.stderr.readline()
        shown = f"[{host}]" if ":" in host else host
        match = re.search(rf"listening on {re.escape(shown)}:(\d+)", line)
        assert match, line
        port = int(match.group(1))
        for address in reach:
            assert _echo_through(address, port) == 0
        if host == "::1":
            with pytest.raises(OSError):
                _echo_through("127.0.0.1", port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0
