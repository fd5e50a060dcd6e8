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
