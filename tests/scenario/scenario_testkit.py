"""Helpers for the scenario-engine tests: run pytest in a subprocess, a scripted fake target."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

PLUGIN = "dicomconf.pytest_plugin"
REPO = Path(__file__).resolve().parents[2]


def run_pytest(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m pytest`` in ``cwd`` with the plugin, no cache, no outer configuration."""
    cmd = [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider", "-p", "no:randomly",
           "-c", str(cwd / "pytest.ini"), "--rootdir", str(cwd), *args]
    (cwd / "pytest.ini").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def report(report_dir: Path) -> dict:
    return json.loads((report_dir / "report.json").read_text())


def outcomes(report_dir: Path) -> dict[str, str]:
    return {s["id"]: s["outcome"] for s in report(report_dir)["scenarios"]}


class FakeTarget:
    """A loopback TCP server that answers every connection from a script.

    For each connection it reads one whole PDU (header + length), sends
    ``reply`` (bytes), then ends the connection with ``end``: "close" (FIN),
    "reset" (RST) or "wait" (keeps it open until the client goes).
    """

    def __init__(self, reply: bytes, end: str = "close") -> None:
        self.reply, self.end = reply, end
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _read_pdu(self, conn: socket.socket) -> None:
        data = b""
        while len(data) < 6:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        need = 6 + struct.unpack(">I", data[2:6])[0]
        while len(data) < need:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    self._read_pdu(conn)
                    conn.sendall(self.reply)
                    if self.end == "reset":
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    elif self.end == "wait":
                        while conn.recv(65536):
                            pass
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
