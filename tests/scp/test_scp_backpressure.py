"""A peer that sends requests and never reads the answers cannot grow the SCP's write buffer."""

from __future__ import annotations

import socket
import time

import pytest
from scp_testkit import RawClient, echo_rq

from dicomconf.ul import constants as C

pytestmark = pytest.mark.network


def _count_answers(sock: socket.socket, wanted: int, timeout: float = 20.0) -> int:
    """Read P-DATA-TF answers (each echo answer is one PDU with a last command fragment) until ``wanted``."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    buf, answered = bytearray(), 0
    while answered < wanted:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        pos = 0
        while len(buf) - pos >= 6:
            length = int.from_bytes(buf[pos + 2 : pos + 6], "big")
            if len(buf) - pos < 6 + length:
                break
            assert buf[pos] == C.P_DATA_TF, f"expected P-DATA-TF answers, got PDU type {buf[pos]:#04x}: {bytes(buf[pos:pos + 10]).hex()} after {answered}"
            if buf[pos + 11] & 0x03 == 0x03:  # last command fragment
                answered += 1
            pos += 6 + length
        del buf[:pos]
    return answered


def _write_buffer(handle) -> int:
    def sizes() -> int:
        return max((c.transport.get_write_buffer_size() for c in handle.scp._connections if c.transport), default=0)

    return handle.call(sizes)


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_requests_without_reading_stop_being_read(event_loop):
    if event_loop == "uvloop":
        pytest.importorskip("uvloop", reason="uvloop is not installed (it is a dependency except on Windows)")
    from dicomconf.scp.runtime import run_in_thread
    from scp_testkit import config

    handle = run_in_thread(config(idle_timeout=30.0), event_loop=event_loop)
    try:
        client = RawClient(handle.port)
        assert client.associate()[0] == C.A_ASSOCIATE_AC
        request = echo_rq() * 100
        client.sock.setblocking(False)
        sent, deadline = 0, time.monotonic() + 10
        stalled_since = None
        while time.monotonic() < deadline:  # write until the SCP stops taking requests for a while
            try:
                sent += client.sock.send(request[sent % len(request) :])  # the stream stays whole PDUs
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.5:
                    break
                time.sleep(0.01)
        assert stalled_since is not None, "the SCP kept reading requests whose answers nobody read"
        # Answers waiting in our buffer stay within the high-water mark (64 KiB) plus the answers to one
        # read of requests (256 KiB of C-ECHO-RQs answer with about 330 KB), not the megabytes sent.
        assert _write_buffer(handle) < 1024 * 1024
        requests = sent // len(echo_rq())
        assert requests > 1000
        # Every whole request is answered once the client reads: nothing was dropped.
        assert _count_answers(client.sock, requests) == requests
        client.close()
    finally:
        handle.stop()
