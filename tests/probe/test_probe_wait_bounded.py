"""``wait_for_end`` ends at its bound whatever the target sends (PS3.8 9.1.5, 9.3.5).

A peer thread on 127.0.0.1 accepts one connection and streams P-DATA-TF PDUs
(neither A-ABORT nor A-RELEASE-RQ) without pause; the wait must return None
within its bound plus a second, having kept a bounded number of what it
passed over.  The peer is stopped by the test.
"""

from __future__ import annotations

import socket
import threading
import time

from dicomconf.probe.session import wait_for_end
from dicomconf.scu.connection import KEPT_AT_MOST, Connection
from dicomconf.ul.pdu import PDV, PDataTF

BOUND = 0.5


class Flood:
    """Listens on 127.0.0.1, accepts one connection, sends ``chunk`` until stopped."""

    def __init__(self, chunk: bytes) -> None:
        self.chunk = chunk
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        sock, _ = self.listener.accept()
        with sock:
            try:
                while not self.stop.is_set():
                    sock.sendall(self.chunk)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


def test_wait_for_end_against_a_flood_of_pdata_returns_at_its_bound():
    flood = Flood(PDataTF((PDV(1, 0x00, b"\x00" * 64),)).encode() * 100)
    try:
        conn = Connection.open("127.0.0.1", flood.port, timeout=5)
        box: dict = {}

        def run() -> None:
            start = time.monotonic()
            box["end"] = wait_for_end(conn, BOUND)
            box["seconds"] = time.monotonic() - start

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(BOUND + 10)
        assert not thread.is_alive(), "wait_for_end still waiting 10 s past its bound"
        conn.reset()
    finally:
        flood.close()
    assert box["end"] is None
    assert box["seconds"] < BOUND + 1.0
    assert 0 < len(conn.passed_over) <= KEPT_AT_MOST  # what came was passed over, and kept within bounds
    assert conn.passed_over.left_out > 0  # a flood of 76-byte PDUs for 0.5 s is far more than that
