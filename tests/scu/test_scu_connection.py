"""The raw SCU connection against scripted loopback peers (PS3.8 9.1, 9.3.1)."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomconf.scu.connection import Closed, Connection, Silence
from dicomconf.ul import constants as C
from dicomconf.ul.pdu import AAbort, AReleaseRP, AReleaseRQ

RELEASE_RP = AReleaseRP().encode()
ABORT = AAbort(C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_UNEXPECTED_PDU).encode()


def hold(peer, seconds=3.0):
    """Keep the connection open, silent, until the client goes away."""
    peer.sock.settimeout(seconds)
    try:
        while peer.sock.recv(4096):
            pass
    except (socket.timeout, ConnectionResetError):
        pass


def test_bad_port_is_a_clear_error():
    with pytest.raises(ValueError, match="TCP port"):
        Connection.open("127.0.0.1", 70000)


def test_localhost_name_is_accepted(tiny_server):
    server = tiny_server(lambda peer: peer.recv_pdu())
    with Connection.open("localhost", server.port, timeout=2) as conn:
        conn.send(AReleaseRQ())
        assert server.join() == AReleaseRQ().encode()


def test_receive_pdu_times_out_with_silence(tiny_server):
    server = tiny_server(lambda peer: (peer.send(RELEASE_RP[:3]), hold(peer)))
    conn = Connection.open("127.0.0.1", server.port)
    start = time.monotonic()
    with pytest.raises(Silence) as info:
        conn.receive_pdu(0.3)  # three bytes of a header are not a PDU
    assert info.value.waited == 0.3
    assert time.monotonic() - start >= 0.29
    assert conn.is_open
    conn.close()
    server.join()


def test_pdus_then_orderly_close(tiny_server):
    server = tiny_server(lambda peer: peer.send(RELEASE_RP + ABORT))  # both in one segment, then FIN
    conn = Connection.open("127.0.0.1", server.port)
    first, second = conn.receive_pdu(2), conn.receive_pdu(2)
    assert first.pdu == AReleaseRP() and first.raw == RELEASE_RP and first.error is None
    assert second.pdu == AAbort(2, 2) and second.at >= first.at
    with pytest.raises(Closed) as info:
        conn.receive_pdu(2)
    assert info.value.kind == "closed"
    assert conn.wait_closed(0.1) == "closed"
    with pytest.raises(Closed):
        conn.receive_pdu(0.1)  # every later read says the same
    assert not conn.is_open
    server.join()
    conn.close()
    kinds = [(e.kind, e.side) for e in conn.conversation.events]
    assert kinds[0] == ("open", "client") and ("close", "server") in kinds
    assert conn.conversation.sent("server") == RELEASE_RP + ABORT


def test_pdu_split_over_many_segments_is_reassembled(tiny_server):
    def dribble(peer):
        for i in range(len(ABORT)):
            peer.send(ABORT[i : i + 1])
            time.sleep(0.005)
        hold(peer)

    server = tiny_server(dribble)
    conn = Connection.open("127.0.0.1", server.port)
    received = conn.receive_pdu(3)
    assert received.pdu == AAbort(2, 2) and received.raw == ABORT
    conn.close()
    server.join()


def test_peer_reset_is_reported_as_reset(tiny_server):
    def reset(peer):
        peer.recv_pdu()
        peer.reset()

    server = tiny_server(reset)
    conn = Connection.open("127.0.0.1", server.port)
    conn.send(AReleaseRQ())
    with pytest.raises(Closed) as info:
        conn.receive_pdu(3)
    assert info.value.kind == "reset"
    assert conn.wait_closed(0.1) == "reset"
    server.join()
    assert conn.conversation.events[-1].kind == "reset" and conn.conversation.events[-1].side == "server"
    conn.close()


def test_wait_closed_after_peer_closes_passes_over_pdus(tiny_server):
    server = tiny_server(lambda peer: (peer.recv_pdu(), time.sleep(0.2), peer.send(ABORT)))
    conn = Connection.open("127.0.0.1", server.port)
    conn.send(AReleaseRQ())
    start = time.monotonic()
    assert conn.wait_closed(5) == "closed"
    assert time.monotonic() - start >= 0.15
    assert [r.pdu for r in conn.passed_over] == [AAbort(2, 2)]
    server.join()
    conn.close()


def test_wait_closed_raises_silence_while_open(tiny_server):
    server = tiny_server(hold)
    conn = Connection.open("127.0.0.1", server.port)
    with pytest.raises(Silence):
        conn.wait_closed(0.2)
    conn.close()
    server.join()


def test_undecodable_and_incomplete_pdus_still_come_back(tiny_server):
    unknown = bytes.fromhex("08 00 00000004 00000000")
    server = tiny_server(lambda peer: peer.send(unknown + RELEASE_RP[:7]))
    conn = Connection.open("127.0.0.1", server.port)
    bad = conn.receive_pdu(2)
    assert bad.pdu is None and bad.raw == unknown
    assert bad.error.reason == C.ABORT_REASON_UNRECOGNIZED_PDU
    cut = conn.receive_pdu(2)  # the connection closed seven bytes into a ten-byte PDU
    assert cut.pdu is None and cut.raw == RELEASE_RP[:7] and "incomplete" in cut.error.message
    with pytest.raises(Closed):
        conn.receive_pdu(1)
    server.join()
    conn.close()


def test_send_accepts_bytes_pdus_and_scapy_packets(tiny_server):
    from scapy.contrib.dicom import DICOM, A_RELEASE_RQ

    server = tiny_server(lambda peer: [peer.recv_pdu() for _ in range(3)])
    conn = Connection.open("127.0.0.1", server.port)
    conn.send(AReleaseRQ())
    conn.send(RELEASE_RP)
    conn.send(DICOM() / A_RELEASE_RQ())
    assert server.join() == [AReleaseRQ().encode(), RELEASE_RP, AReleaseRQ().encode()]
    with pytest.raises(TypeError, match="cannot send"):
        conn.send(12345)
    conn.close()


def test_send_chunks_sends_each_piece_separately(tiny_server):
    def collect(peer):
        pieces = []
        while True:
            chunk = peer.sock.recv(4096)
            if not chunk:
                return pieces
            pieces.append(chunk)

    data = bytes(range(30))
    server = tiny_server(collect)
    conn = Connection.open("127.0.0.1", server.port)
    conn.send_chunks(data, 7, delay=0.05)
    conn.send_chunks(data, [1, 5], delay=0.05)
    conn.close()
    pieces = server.join()
    assert b"".join(pieces) == data + data
    assert len(pieces) >= 4  # the delays keep the pieces apart on the wire
    sent = [len(e.data) for e in conn.conversation.events if e.kind == "data"]
    assert sent == [7, 7, 7, 7, 2, 1, 5, 24]
    with pytest.raises(ValueError):
        conn.send_chunks(data, 0)


def test_close_sends_fin_and_reset_sends_rst(tiny_server):
    def read_until_end(peer):
        try:
            while peer.sock.recv(4096):
                pass
            return "closed"
        except ConnectionResetError:
            return "reset"

    server = tiny_server(read_until_end)
    conn = Connection.open("127.0.0.1", server.port)
    conn.send(AReleaseRQ())
    conn.close()
    conn.close()  # idempotent
    assert server.join() == "closed"
    assert conn.conversation.events[-1].kind == "close"

    server = tiny_server(read_until_end)
    conn = Connection.open("127.0.0.1", server.port)
    conn.send(AReleaseRQ())
    time.sleep(0.05)
    conn.reset()
    assert server.join() == "reset"
    assert conn.conversation.events[-1].kind == "reset" and conn.conversation.events[-1].side == "client"
    with pytest.raises(OSError, match="already reset"):
        conn.send(AReleaseRQ())


def test_close_reads_pending_data_first_so_the_peer_sees_a_fin(tiny_server):
    """Unread data at close() would make the kernel send an RST instead of a FIN."""

    def chatty(peer):
        peer.send(RELEASE_RP * 50)
        time.sleep(0.2)
        try:
            while peer.sock.recv(4096):
                pass
            return "closed"
        except ConnectionResetError:
            return "reset"

    server = tiny_server(chatty)
    conn = Connection.open("127.0.0.1", server.port)
    time.sleep(0.1)
    conn.close()
    assert server.join() == "closed"
    assert conn.conversation.sent("server") == RELEASE_RP * 50


def test_tls_connection_to_a_tls_peer(tiny_server, tls_pair):
    def tls_echo(peer):
        rq = peer.recv_pdu()
        peer.send(RELEASE_RP)
        return rq

    server = tiny_server(tls_echo, ssl_context=tls_pair.server)
    conn = Connection.open("127.0.0.1", server.port, tls=tls_pair.client)
    conn.send(AReleaseRQ())
    assert conn.receive_pdu(3).pdu == AReleaseRP()
    assert conn.sock.version() is not None  # really TLS
    assert server.join() == AReleaseRQ().encode()
    conn.close()
    assert conn.decrypted.sent("client") == AReleaseRQ().encode()  # the DICOM inside the TLS records
    assert conn.conversation.sent("client")[:2] == b"\x16\x03"  # the wire: a TLS handshake record first


def test_findings_of_received_pdus_are_kept(tiny_server):
    server = tiny_server(lambda peer: (peer.send(bytes.fromhex("08 00 00000004 00000000") + RELEASE_RP), hold(peer)))
    conn = Connection.open("127.0.0.1", server.port)
    bad, rp = conn.receive_pdu(2), conn.receive_pdu(2)
    assert "pdu.unknown-type" in [f.code for f in bad.findings]
    assert rp.findings  # an A-RELEASE-RP before any association is out of sequence
    assert conn.findings == list(bad.findings) + list(rp.findings)
    conn.close()
    server.join()


def test_zero_timeout_still_returns_what_already_arrived(tiny_server):
    server = tiny_server(lambda peer: (peer.send(RELEASE_RP), hold(peer)))
    conn = Connection.open("127.0.0.1", server.port)
    time.sleep(0.2)
    assert conn.receive_pdu(0).pdu == AReleaseRP()
    with pytest.raises(Silence):
        conn.receive_pdu(0)
    conn.close()
    server.join()


def test_ipv6_loopback(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    listener = socket.socket(socket.AF_INET6)
    try:
        listener.bind(("::1", 0))
    except OSError as exc:
        listener.close()
        pytest.skip(f"::1 is not configured here: {exc}")
    listener.listen(1)
    try:
        conn = Connection.open("::1", listener.getsockname()[1], timeout=2)
        accepted, _ = listener.accept()
        conn.send(AReleaseRQ())
        assert accepted.recv(100) == AReleaseRQ().encode()
        accepted.close()
        assert conn.wait_closed(2) == "closed"
        conn.close()
        assert conn.conversation.server[0] == "::1"
    finally:
        listener.close()


def test_sending_to_a_peer_that_went_away_raises_closed(tiny_server):
    server = tiny_server(lambda peer: None)  # accept, then close at once
    conn = Connection.open("127.0.0.1", server.port)
    server.join()
    with pytest.raises(Closed):
        for _ in range(50):  # the first writes may still be accepted by the kernel
            conn.send(AReleaseRQ())
            time.sleep(0.01)
    assert not conn.is_open
    conn.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_any_bytes_from_the_peer_come_back_as_received_pdus(chunks):
    """Whatever the peer sends, every byte comes back in a Received and nothing escapes but Closed."""
    from dicomconf.wire.capture import Conversation

    ours, theirs = socket.socketpair()
    conn = Connection(ours, Conversation(("127.0.0.1", 50000), ("127.0.0.1", 104)), timeout=2)
    for chunk in chunks:
        theirs.sendall(chunk)
    theirs.close()
    got = []
    with pytest.raises(Closed):
        while True:
            got.append(conn.receive_pdu(2))
    assert b"".join(r.raw for r in got) == b"".join(chunks)
    assert all((r.pdu is None) == (r.error is not None) for r in got)
    assert conn.conversation.sent("server") == b"".join(chunks)
    conn.close()


@pytest.mark.parametrize(
    "garbage, says",
    [
        (bytes.fromhex("09 00 00010000 01020304"), "unknown PDU type 0x09"),  # would wait for 64 KiB
        (bytes.fromhex("05 00 7fffffff 00000000"), "impossible length of 2147483647"),
        (bytes.fromhex("02 00 00200000 00"), "impossible length of 2097152"),
    ],
)
def test_bytes_that_cannot_be_a_pdu_come_out_at_once(tiny_server, garbage, says):
    """PS3.8 9.3.1: such bytes are reported when they arrive, with their offset, not as silence."""
    server = tiny_server(lambda peer: (peer.send(RELEASE_RP + garbage), hold(peer)))
    with Connection.open("127.0.0.1", server.port, timeout=2) as conn:
        first = conn.receive_pdu(2)
        assert first.pdu == AReleaseRP()
        t0 = time.monotonic()
        bad = conn.receive_pdu(5)
        assert time.monotonic() - t0 < 1
        assert bad.pdu is None and says in str(bad.error)
        assert f"at byte {len(RELEASE_RP)} of the stream" in str(bad.error)
        assert bad.raw == garbage
    server.join()


def test_an_incomplete_pdu_is_pending_while_silent(tiny_server):
    server = tiny_server(lambda peer: (peer.send(RELEASE_RP[:3]), hold(peer, 1.0)))
    with Connection.open("127.0.0.1", server.port, timeout=2) as conn:
        with pytest.raises(Silence):
            conn.receive_pdu(0.3)
        assert conn.pending == RELEASE_RP[:3]
    server.join()


def test_half_close_ends_our_side_and_still_reads(tiny_server):
    def peer(p):
        assert p.recv_pdu() == AReleaseRQ().encode()
        assert p.sock.recv(10) == b""  # our FIN
        p.send(RELEASE_RP)

    server = tiny_server(peer)
    with Connection.open("127.0.0.1", server.port, timeout=2) as conn:
        conn.send(AReleaseRQ())
        conn.shutdown_write()
        assert conn.receive_pdu(2).pdu == AReleaseRP()
        with pytest.raises(OSError):
            conn.send(AReleaseRQ())
    server.join()
