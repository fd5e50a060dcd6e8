"""The harness's receive side holds bounded memory whatever a peer sends (PS3.8 9.3.1, D.1).

- A PDU announcing more than the receive bound (the larger of our announced
  Maximum Length and ``DEFAULT_RECEIVE_BOUND``) comes out at once as an
  undecodable Received; its body is dropped as it arrives (a real peer on
  127.0.0.1 announcing 1 GiB then streaming zeros), and framing goes on after it.
- An incomplete PDU under the bound is held once (by the framer), not twice.
- ``findings`` and ``passed_over`` keep their first ``KEPT_AT_MOST`` entries.
- A capture past its byte bound writes pcap records with incl_len < orig_len,
  TCP sequence numbers that count every byte, and a bounded file.
- The reference SCU's C-FIND ends against an acceptor that answers "pending" for ever.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import time
import tracemalloc

import pytest

from dicomconf.scu import connection as connection_module
from dicomconf.scu.connection import KEPT_AT_MOST, PENDING_SHOWN, Connection, Silence
from dicomconf.ul import constants as C
from dicomconf.ul.pdu import PDV, AAbort, PDataTF
from dicomconf.wire.capture import Conversation, write_pcap

from .test_scu_hostile_peer import (
    EndlessSocket,
    associated_scu,
    connection,
    data_fragments,
)

MiB = 1024 * 1024


class ScriptedSocket(EndlessSocket):
    """Hands out ``chunks`` one per recv, then nothing (would block)."""

    def __init__(self, chunks) -> None:
        super().__init__(b"")
        self.chunks = list(chunks)

    def recv(self, size: int) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        raise BlockingIOError()


def header(pdu_type: int, length: int) -> bytes:
    return struct.pack(">BBI", pdu_type, 0, length)


def received_all(conn: Connection) -> list:
    out = []
    while True:
        try:
            out.append(conn.receive_pdu(0))
        except Silence:
            return out


# ---------------------------------------------------------------- the receive bound


def test_a_peer_announcing_1_gib_gets_an_error_at_once_and_its_bytes_are_not_held():
    listener = socket.create_server(("127.0.0.1", 0))
    port, stop, streamed = listener.getsockname()[1], threading.Event(), [0]

    def peer() -> None:
        sock, _ = listener.accept()
        zeros = b"\x00" * (256 * 1024)
        with sock:
            try:
                sock.sendall(header(C.P_DATA_TF, 1 << 30))
                while not stop.is_set() and streamed[0] < 200 * MiB:
                    sock.sendall(zeros)
                    streamed[0] += len(zeros)
            except OSError:
                pass

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    try:
        conn = Connection.open("127.0.0.1", port, timeout=5)
        conn.conversation.max_bytes = MiB  # the capture's own bound is tested below
        first = conn.receive_pdu(5)
        assert first.pdu is None and first.error is not None
        assert "above the harness's receive bound" in str(first.error)
        assert "PS3.8 9.3.1" in first.error.clause and "D.1" in first.error.clause
        assert first.error.reason == C.ABORT_REASON_INVALID_PARAMETER_VALUE
        assert len(first.raw) <= PENDING_SHOWN
        tracemalloc.start()
        try:
            try:
                conn.wait_closed(3)  # the zeros keep coming (200 MiB, then a close): read, counted, dropped
            except Silence:
                pass
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        conn.reset()
    finally:
        stop.set()
        listener.close()
        thread.join(5)
    assert streamed[0] > 8 * MiB  # the peer did stream (far more than is held)
    assert peak < 8 * MiB, f"{peak / MiB:.1f} MiB traced while reading a refused PDU's body"
    assert conn.pending == b"" and conn._reader.buffered == 0


@pytest.mark.parametrize("chunking", ["whole", "byte by byte"])
def test_framing_goes_on_after_a_refused_pdu(chunking):
    abort = AAbort(C.ABORT_SOURCE_PROVIDER, 1).encode()
    stream = header(C.P_DATA_TF, 10_000) + b"\x01" * 10_000 + abort
    chunks = [stream] if chunking == "whole" else [stream[i:i + 1] for i in range(len(stream))]
    conn = connection(ScriptedSocket(chunks))
    conn.default_receive_bound = 4096
    got = []
    for _ in range(len(chunks) + 1):
        got += received_all(conn)
    assert [r.name for r in got] == ["undecodable", "A-ABORT"]
    assert "above the harness's receive bound of 4090" in str(got[0].error)
    assert got[0].raw.startswith(header(C.P_DATA_TF, 10_000))


def test_the_bound_is_our_announced_maximum_length_when_larger():
    from dicomconf.scu.client import SCU

    sock = ScriptedSocket([])
    conn = connection(sock)
    conn.default_receive_bound = 1024
    assert conn.receive_bound == 1024  # nothing announced yet
    scu = SCU(conn, max_pdu_length=16382)
    sock.chunks = [b""]  # no answer: the RQ is sent and observed
    sock.chunks = []
    with pytest.raises(Silence):
        scu.associate(["verification"], timeout=0)
    assert conn.receive_bound == 16382 + 6
    legal = PDataTF((PDV(1, 0x00, b"\x00" * 10_000),)).encode()
    over = PDataTF((PDV(1, 0x00, b"\x00" * 20_000),)).encode()
    sock.chunks = [legal, over]
    got = received_all(conn) + received_all(conn)
    assert got[0].pdu is not None  # under our Maximum Length: decoded as usual
    assert got[1].pdu is None and "receive bound of 16382" in str(got[1].error)


def test_an_incomplete_pdu_is_held_once():
    # 24 MiB of a PDU announcing 32 MiB (under the 64 MiB default bound): the framer holds it;
    # before, a second copy of every byte was kept for ``pending``.
    chunk = b"\x00" * connection_module.RECV_SIZE
    sock = ScriptedSocket([header(C.P_DATA_TF, 32 * MiB)] + [chunk] * (24 * MiB // len(chunk)))
    conn = Connection(sock, Conversation(sock.getsockname(), sock.getpeername(), max_bytes=0), timeout=1)
    tracemalloc.start()
    try:
        with pytest.raises(Silence):
            conn.receive_pdu(0.5)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert conn._reader.buffered == 24 * MiB + 6
    assert len(conn.pending) == PENDING_SHOWN
    assert peak < 24 * MiB * 1.25, f"{peak / MiB:.1f} MiB traced for 24 MiB held"


def test_passed_over_and_findings_keep_a_bounded_number():
    sock = EndlessSocket(data_fragments())  # P-DATA-TF before any association: a finding each
    conn = connection(sock)
    with pytest.raises(Silence):
        conn.wait_closed(0.3)
    assert len(conn.passed_over) == KEPT_AT_MOST and conn.passed_over.left_out > 0
    assert len(conn.findings) == KEPT_AT_MOST and conn.findings.left_out > 0


# ---------------------------------------------------------------- the capture's bound


def pcap_records(path):
    """(captured length, original length, bytes) of each Enhanced Packet Block of a pcapng file."""
    data = path.read_bytes()
    pos, out = 0, []
    while pos < len(data):
        block_type, block_len = struct.unpack_from("<II", data, pos)
        if block_type == 6:  # Enhanced Packet Block
            _iface, _ts_high, _ts_low, incl, orig = struct.unpack_from("<IIIII", data, pos + 8)
            out.append((incl, orig, data[pos + 28:pos + 28 + incl]))
        pos += block_len
    return out


def test_a_capture_past_its_bound_keeps_lengths_and_sequence_numbers(tmp_path):
    conv = Conversation(("127.0.0.1", 40000), ("127.0.0.1", 104), max_bytes=100_000)
    conv.opened(1.0)
    conv.client_sent(b"\x01" * 1000, 1.1)
    for i in range(200):  # 20 MB from the server, far past the bound: runs become one event
        conv.server_sent(b"\x02" * 100_000, 1.2 + i / 1000)
    conv.client_sent(b"\x05" * 10, 2.0)
    conv.closed("client", 2.1)
    assert conv.kept == 100_000 and conv.left_out == 20_001_010 - 100_000
    assert len(conv.events) < 10
    pcap = tmp_path / "cut.pcap"
    write_pcap(pcap, [conv])
    records = pcap_records(pcap)
    assert any(incl < orig for incl, orig, _ in records)
    assert pcap.stat().st_size < 100_000 + 400 * 100  # kept bytes plus one header per segment
    seqs: dict[int, list[tuple[int, int]]] = {}
    for incl, orig, frame in records:
        sport = struct.unpack_from("!H", frame, 34)[0]
        seq = struct.unpack_from("!I", frame, 38)[0]
        payload = orig - 54
        if payload:
            seqs.setdefault(sport, []).append((seq, payload))
    for segments in seqs.values():  # each segment starts where the previous one ended
        for (seq, length), (nxt, _) in zip(segments, segments[1:]):
            assert nxt == (seq + length) & 0xFFFFFFFF
    server = seqs[104]
    assert sum(length for _, length in server) == 20_000_000
    from dicomconf.wire.pcapread import read_pdus

    list(read_pdus(pcap, ports=[104]))  # the reader takes cut records without an error


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_opens_a_cut_capture(tmp_path):
    conv = Conversation(("127.0.0.1", 40000), ("127.0.0.1", 104), max_bytes=1000)
    conv.opened(1.0)
    conv.client_sent(b"\x01" * 5000, 1.1)
    conv.server_sent(b"\x02" * 200_000, 1.2)
    conv.closed("client", 2.0)
    pcap = tmp_path / "cut.pcap"
    write_pcap(pcap, [conv])
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.cap_len", "-e", "frame.len",
                          "-e", "tcp.len"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [tuple(int(x) for x in line.split("\t")) for line in out.stdout.splitlines()]
    assert len(rows) == len(pcap_records(pcap))
    assert any(cap < length for cap, length, _ in rows)
    assert sum(tcp for *_, tcp in rows) == 205_000  # TCP lengths count every byte sent


# ---------------------------------------------------------------- C-FIND pending for ever


def pending_find_responses(count: int = 50) -> bytes:
    from pydicom import Dataset

    from dicomconf.ul import dimse

    command = Dataset()
    command.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
    command.CommandField = 0x8020  # C-FIND-RSP
    command.MessageIDBeingRespondedTo = 1
    command.CommandDataSetType = dimse.NO_DATA_SET
    command.Status = 0xFF00
    pdv = PDV(1, C.MCH_COMMAND | C.MCH_LAST, dimse.encode_command(command))
    return PDataTF((pdv,)).encode() * count


@pytest.mark.parametrize("bound", ["max_pending", "find_timeout"])
def test_reference_scu_find_against_endless_pending_ends(bound):
    from dicomconf.scu.app import FAILED, Ended, Job, ReferenceSCU

    job = Job("127.0.0.1", 104, "find", dimse_timeout=1.0)
    if bound == "max_pending":
        job.max_pending = 500
    else:
        job.find_timeout = 0.3
    app = ReferenceSCU(job)
    sock = EndlessSocket(pending_find_responses())
    app.scu = associated_scu(sock)
    app.scu.accepted = {1: ("1.2.840.10008.5.1.4.1.2.2.1", C.IMPLICIT_VR_LITTLE_ENDIAN)}
    from dicomconf.ul import dimse

    app.scu._assembler = dimse.MessageAssembler({1})
    app.conn = app.scu.connection
    app.check_received = lambda: None  # no A-ASSOCIATE exchange on this socket: the findings would say so
    box: dict = {}

    def run() -> None:
        start = time.monotonic()
        try:
            app.find()
        except BaseException as exc:
            box["raised"] = exc
        box["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(15)
    assert not thread.is_alive(), "the C-FIND is still reading pending responses"
    assert isinstance(box.get("raised"), Ended), box.get("raised")
    assert box["raised"].status == FAILED and "gave up" in str(box["raised"])
    assert bound in str(box["raised"]) or "after 0.3s" in str(box["raised"])
    assert bytes(sock.sent).endswith(AAbort(C.ABORT_SOURCE_USER, 0).encode())
