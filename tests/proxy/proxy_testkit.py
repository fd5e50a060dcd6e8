"""Helpers for the proxy's tests: the proxy as a process, a recording tap, raw PDUs, the SCPs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scp"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scp_testkit import DCMTK, dcmtk_env, have_dcmtk, start  # noqa: E402

__all__ = ["DCMTK", "dcmtk_env", "have_dcmtk", "start", "proxy", "Tap", "report_of", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProxyProcess:
    def __init__(self, proc: subprocess.Popen, port: int, report_dir: Path) -> None:
        self.proc, self.port, self.report_dir = proc, port, report_dir
        self.out = ""

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM by its pid, then wait; the proxy writes its report and exits."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate()
        self.out += out + err
        return self.proc.returncode

    def wait(self, timeout: float = 30) -> int:
        out, err = self.proc.communicate(timeout=timeout)
        self.out += out + err
        return self.proc.returncode


@contextmanager
def proxy(to_port: int, report_dir: Path, *extra: str):
    """``dicomconf proxy --listen 127.0.0.1:0 --to 127.0.0.1:TO_PORT``; stopped by its pid at the end."""
    cmd = [sys.executable, "-m", "dicomconf.cli", "proxy", "--listen", "127.0.0.1:0",
           "--to", f"127.0.0.1:{to_port}", "--report-dir", str(report_dir), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p = None
    try:
        line = proc.stdout.readline()
        if "listening on" not in line:
            raise AssertionError(f"the proxy did not start: {line}{proc.stderr.read()}")
        port = int(line.split("listening on ")[1].split(",")[0].rsplit(":", 1)[1])
        p = ProxyProcess(proc, port, report_dir)
        yield p
    finally:
        if proc.poll() is None:
            (p.stop() if p is not None else (os.kill(proc.pid, signal.SIGKILL), proc.wait()))


def report_of(report_dir: Path) -> dict:
    return json.loads((Path(report_dir) / "report.json").read_text())


class Tap:
    """A recording TCP forwarder on 127.0.0.1 (threads): what each end sent, byte for byte."""

    def __init__(self, to_port: int) -> None:
        self.to_port = to_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.client = bytearray()  # what the connecting side sent
        self.server = bytearray()
        self.threads: list[threading.Thread] = []
        self.done = threading.Event()
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self) -> None:
        try:
            down, _ = self.sock.accept()
        except OSError:
            return
        up = socket.create_connection(("127.0.0.1", self.to_port))
        for s in (down, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        a = threading.Thread(target=self._pump, args=(down, up, self.client), daemon=True)
        b = threading.Thread(target=self._pump, args=(up, down, self.server), daemon=True)
        self.threads = [a, b]
        a.start()
        b.start()
        a.join()
        b.join()
        for s in (down, up):
            s.close()
        self.done.set()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, into: bytearray) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            into += data
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self, timeout: float = 10) -> None:
        self.done.wait(timeout)
        self.sock.close()
