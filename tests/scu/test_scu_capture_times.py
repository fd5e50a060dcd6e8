"""Every PDU in a capture is stamped when it crossed the socket on our side, not when a step read it
(PS3.8 9.3: the capture shows the conversation as it happened)."""

from __future__ import annotations

import itertools
import socket
import sys
import time

import pytest
from scapy.layers.inet import TCP
from scapy.utils import rdpcap

from dicomconf.scenario.listener import Listener
from dicomconf.scu import stamps
from dicomconf.scu.connection import Connection
from dicomconf.ul.pdu import AReleaseRP, AReleaseRQ
from dicomconf.wire.capture import write_pcap

RELEASE_RP = AReleaseRP().encode()
RELEASE_RQ = AReleaseRQ().encode()
LATE = 0.5  # the step reads this long after the PDU arrived
NEAR = 0.2  # tolerance for "at the same moment" on a loaded two-core machine: far below LATE


def _payload_times(path, port: int, towards_port: bool) -> list[tuple[float, bytes]]:
    """(time, payload) of the frames with a payload sent to (or from) ``port``."""
    out = []
    for pkt in rdpcap(str(path)):
        if TCP in pkt and bytes(pkt[TCP].payload) and (pkt[TCP].dport == port) == towards_port:
            out.append((float(pkt.time), bytes(pkt[TCP].payload)))
    return out


def _hold(peer, seconds=5.0):
    peer.sock.settimeout(seconds)
    try:
        while peer.sock.recv(4096):
            pass
    except OSError:  # a timeout too
        pass


def test_kernel_stamps_are_available_here():
    if not sys.platform.startswith("linux"):
        pytest.skip("kernel receive timestamps are read on Linux only; elsewhere the read time is used")
    with socket.create_server(("127.0.0.1", 0)) as server:
        b = socket.create_connection(server.getsockname()[:2], timeout=5)
        a, _ = server.accept()
    with a, b:
        assert stamps.enable(a)
        b.sendall(b"x")
        sent = time.time()
        time.sleep(LATE)
        data, at = stamps.recv(a, 10, True)
        assert data == b"x" and abs(at - sent) < NEAR


def _answer_then_hold(sent_at: list[float]):
    """A peer that answers the A-RELEASE-RQ (noting when) and then holds the connection open."""

    def answer_then_wait(peer):
        peer.recv_pdu()
        sent_at.append(time.time())
        peer.send(RELEASE_RP)
        _hold(peer)

    return answer_then_wait


def test_a_pdu_read_late_is_stamped_when_it_arrived(tiny_server, tmp_path):
    sent_at: list[float] = []
    answer_then_wait = _answer_then_hold(sent_at)
    server = tiny_server(answer_then_wait)
    conn = Connection.open("127.0.0.1", server.port, timeout=5)
    before_send = time.time()
    conn.send(AReleaseRQ())
    after_send = time.time()
    time.sleep(LATE)  # the scenario sleeps: the A-RELEASE-RP waits in the kernel
    read_mono, read_wall = time.monotonic(), time.time()
    received = conn.receive_pdu(3)
    assert received.pdu == AReleaseRP()
    conn.close()
    server.join()

    # The Received and the conversation carry the arrival, not the read.
    assert read_mono - received.at > LATE - NEAR
    (ours,) = [e for e in conn.conversation.events if e.kind == "data" and e.side == "client"]
    (theirs,) = [e for e in conn.conversation.events if e.kind == "data" and e.side == "server"]
    assert before_send <= ours.ts <= after_send  # stamped just before sendall
    assert abs(theirs.ts - sent_at[0]) < NEAR and read_wall - theirs.ts > LATE - NEAR

    # ... and so does the pcap, in the order things happened on the wire.
    path = tmp_path / "late.pcap"
    write_pcap(path, [conn.conversation])
    (rq,) = _payload_times(path, server.port, towards_port=True)
    (rp,) = _payload_times(path, server.port, towards_port=False)
    assert rq[1] == RELEASE_RQ and rp[1] == RELEASE_RP
    assert abs(rp[0] - sent_at[0]) < NEAR and read_wall - rp[0] > LATE - NEAR
    assert rq[0] <= rp[0]


def test_the_fake_scp_stamps_what_the_scu_sent_when_it_arrived(tmp_path):
    with Listener("127.0.0.1", 0) as listener:
        client = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
        with client:
            conn = listener.accept(5)
            sent = time.time()
            client.sendall(RELEASE_RQ)
            time.sleep(LATE)
            read_wall = time.time()
            assert conn.receive_pdu(3).pdu == AReleaseRQ()
            conn.send(AReleaseRP())
            assert client.recv(100) == RELEASE_RP
            conn.close()
    (from_scu,) = [e for e in conn.conversation.events if e.kind == "data" and e.side == "client"]
    assert abs(from_scu.ts - sent) < NEAR and read_wall - from_scu.ts > LATE - NEAR
    path = tmp_path / "acceptor.pcap"
    write_pcap(path, [conn.conversation])
    (rq,) = _payload_times(path, listener.port, towards_port=True)
    assert rq[1] == RELEASE_RQ and abs(rq[0] - sent) < NEAR


def test_tls_records_and_their_pdus_are_stamped_when_they_arrived(tiny_server, tls_pair):
    sent_at: list[float] = []
    answer_then_wait = _answer_then_hold(sent_at)
    server = tiny_server(answer_then_wait, ssl_context=tls_pair.server)
    conn = Connection.open("127.0.0.1", server.port, tls=tls_pair.client, timeout=5)
    conn.send(AReleaseRQ())
    time.sleep(LATE)
    read_wall = time.time()
    assert conn.receive_pdu(3).pdu == AReleaseRP()
    conn.close()
    server.join()
    (plain,) = [e for e in conn.decrypted.events if e.kind == "data" and e.side == "server"]
    assert plain.data == RELEASE_RP
    assert abs(plain.ts - sent_at[0]) < NEAR and read_wall - plain.ts > LATE - NEAR
    after_request = [e for e in conn.conversation.events
                     if e.kind == "data" and e.side == "server" and e.ts >= sent_at[0] - 0.05]
    assert after_request and all(read_wall - e.ts > LATE - NEAR for e in after_request)


def test_a_reply_is_never_stamped_before_its_request(tiny_server):
    """Sent bytes are stamped before sendall, received ones by the kernel: on loopback the reply
    arrives within microseconds, and must still come after the request in the capture."""

    def echo_back(peer):
        for _ in range(20):
            peer.recv_pdu()
            peer.send(RELEASE_RP)
        _hold(peer, 2)

    server = tiny_server(echo_back)
    conn = Connection.open("127.0.0.1", server.port, timeout=5)
    for _ in range(20):
        conn.send(AReleaseRQ())
        conn.receive_pdu(3)
    conn.close()
    server.join()
    data = [e for e in conn.conversation.events if e.kind == "data"]
    assert [e.side for e in data] == ["client", "server"] * 20
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(data))


def test_pdus_read_late_keep_their_own_arrival_times(tiny_server):
    """Two PDUs sent 0.3 s apart, the second read 0.3 s after it came, keep 0.3 s between them."""

    def two_apart(peer):
        peer.send(RELEASE_RP)
        time.sleep(0.3)
        peer.send(RELEASE_RP)
        _hold(peer, 2)

    server = tiny_server(two_apart)
    conn = Connection.open("127.0.0.1", server.port, timeout=5)
    first = conn.receive_pdu(3)
    time.sleep(0.6)
    second = conn.receive_pdu(3)
    conn.close()
    server.join()
    assert 0.3 - NEAR / 2 < second.at - first.at < 0.3 + NEAR
