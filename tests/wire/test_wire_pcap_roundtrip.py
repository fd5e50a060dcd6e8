"""Capture writing and reading: synthesized TCP, reassembly (reordering, retransmission, mid-stream), pcapng."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import threading

import pytest
from scapy.utils import RawPcapWriter

from dicomconf.wire.capture import MAX_SEGMENT_PAYLOAD, Conversation, write_pcap
from dicomconf.wire.craft import build_pdu
from dicomconf.wire.pcapread import CaptureError, CapturedPDU, StreamNote, read_frames, read_pdus, tcp_segments

from .conftest import run_tshark  # type: ignore[import-not-found]

ECHO_RQ = build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"command": {"CommandField": "C-ECHO-RQ", "MessageID": 1}}]})
ECHO_RSP = build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"command": {"CommandField": "C-ECHO-RSP",
                                                                "MessageIDBeingRespondedTo": 1, "Status": 0}}]})
SESSION = [
    ("client", build_pdu({"pdu": "A-ASSOCIATE-RQ"})),
    ("server", build_pdu({"pdu": "A-ASSOCIATE-AC"})),
    ("client", ECHO_RQ), ("server", ECHO_RSP),
    ("client", ECHO_RQ), ("server", ECHO_RSP),
    ("client", build_pdu({"pdu": "A-RELEASE-RQ"})),
    ("server", build_pdu({"pdu": "A-RELEASE-RP"})),
]


def _conversation(client=("127.0.0.1", 40001), server=("127.0.0.1", 4242), session=SESSION, chunk=None):
    conv = Conversation(client, server)
    t = 100.0
    conv.opened(t)
    for side, pdu in session:
        t += 0.01
        send = conv.client_sent if side == "client" else conv.server_sent
        if chunk:
            for i in range(0, len(pdu), chunk):
                send(pdu[i : i + chunk], t)
        else:
            send(pdu, t)
    conv.closed("client", t + 0.01)
    return conv


def _pdus(path, **kw):
    return [r for r in read_pdus(path, **kw) if isinstance(r, CapturedPDU)]


def _write_frames(path, frames):
    with RawPcapWriter(str(path), linktype=1, snaplen=262144) as w:
        w.write_header(None)
        for ts, frame in frames:
            w.write_packet(frame, sec=int(ts), usec=int((ts % 1) * 1e6))


def _expected(session=SESSION):
    return [(side == "client", pdu) for side, pdu in session]


@pytest.mark.parametrize("client,server", [(("127.0.0.1", 40001), ("127.0.0.1", 4242)),
                                           (("::1", 40001), ("::1", 4242))])
def test_written_pcap_reads_back_pdu_for_pdu(tmp_path, client, server):
    path = tmp_path / "c.pcap"
    write_pcap(path, [_conversation(client, server)])
    got = _pdus(path)
    assert [(p.from_client, p.data) for p in got] == _expected()
    assert {p.src for p in got} == {client, server}
    assert [round(p.ts, 2) for p in got] == [round(100.0 + 0.01 * i, 2) for i in range(1, 9)]


def test_tcp_headers_are_consistent(tmp_path):
    path = tmp_path / "c.pcap"
    write_pcap(path, [_conversation()])
    segs = list(tcp_segments(read_frames(path)))
    assert [s.flags for s in segs[:3]] == [0x02, 0x12, 0x10]  # SYN, SYN/ACK, ACK
    assert segs[-3].flags & 0x01 and segs[-2].flags & 0x01  # FIN exchange
    nxt = {}
    for s in segs:
        if s.src in nxt:
            assert s.seq == nxt[s.src]
        nxt[s.src] = (s.seq + len(s.payload) + (1 if s.flags & 0x03 else 0)) & 0xFFFFFFFF


def test_large_pdu_is_split_into_segments_and_reassembled(tmp_path, request):
    big = build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"message_control_header": 0, "data": "ab" * 200_000}]})
    session = SESSION[:2] + [("client", big)] + SESSION[-2:]
    path = tmp_path / "big.pcap"
    write_pcap(path, [_conversation(session=session)])
    segs = [s for s in tcp_segments(read_frames(path)) if s.payload]
    assert max(len(s.payload) for s in segs) == MAX_SEGMENT_PAYLOAD
    assert [p.data for p in _pdus(path)] == [pdu for _s, pdu in session]
    if shutil.which("tshark"):
        out = run_tshark(shutil.which("tshark"), "-r", str(path), "-d", "tcp.port==4242,dicom", "-q", "-z", "expert")
        assert "Malformed" not in out and "Error" not in out
        lens = run_tshark(shutil.which("tshark"), "-r", str(path), "-d", "tcp.port==4242,dicom", "-T", "fields",
                          "-e", "dicom.pdu.len")
        assert [int(x) for x in lens.split() if x] == [len(p) - 6 for _s, p in session]


def test_ipv6_and_reset_are_tshark_clean(tmp_path, tshark):
    conv = Conversation(("::1", 40002), ("::1", 4242))
    conv.client_sent(SESSION[0][1], 1.0)  # no opened(): the handshake is synthesized
    conv.server_sent(build_pdu({"pdu": "A-ASSOCIATE-RJ"}), 1.1)
    conv.reset("server", 1.2)
    path = tmp_path / "v6.pcap"
    write_pcap(path, [conv])
    out = run_tshark(tshark, "-r", str(path), "-d", "tcp.port==4242,dicom", "-q", "-z", "expert")
    assert "Malformed" not in out
    assert "Connection establish request (SYN)" in out and "Connection reset (RST)" in out
    assert [p.data[0] for p in _pdus(path)] == [1, 3]


def test_byte_by_byte_segments(tmp_path):
    path = tmp_path / "bytes.pcap"
    write_pcap(path, [_conversation(chunk=1)])
    assert [(p.from_client, p.data) for p in _pdus(path)] == _expected()


def test_out_of_order_and_retransmitted_segments(tmp_path):
    frames = _conversation(chunk=7).frames()
    head, body, tail = frames[:3], frames[3:-3], frames[-3:]
    rng = random.Random(5)
    shuffled = list(body)
    for i in range(0, len(shuffled) - 4, 4):  # local reordering, as the network does
        window = shuffled[i : i + 4]
        rng.shuffle(window)
        shuffled[i : i + 4] = window
    shuffled += rng.sample(body, 25)  # late retransmissions of bytes already delivered
    shuffled.insert(10, body[30])  # an early retransmission too
    path = tmp_path / "ooo.pcap"
    _write_frames(path, head + shuffled + tail)
    assert [(p.from_client, p.data) for p in _pdus(path)] == _expected()


def test_capture_that_starts_mid_association(tmp_path):
    frames = _conversation().frames()
    path = tmp_path / "mid.pcap"
    _write_frames(path, frames[5:])  # no handshake, no RQ, no AC
    got = _pdus(path, ports=[4242])
    assert [p.data for p in got] == [pdu for _s, pdu in SESSION[2:]]
    # an unknown port and no association start: found by its PDU headers all the same
    assert [p.data for p in _pdus(path)] == [pdu for _s, pdu in SESSION[2:]]


def test_capture_that_starts_inside_a_pdu_resynchronises(tmp_path):
    frames = _conversation(chunk=5).frames()
    path = tmp_path / "mid2.pcap"
    # drop everything up to the middle of the first echo request
    start = next(i for i, (_ts, f) in enumerate(frames) if f.endswith(ECHO_RQ[10:15]))
    _write_frames(path, frames[start:])
    records = list(read_pdus(path, ports=[4242]))
    client = [r.data for r in records if isinstance(r, CapturedPDU) and r.from_client]
    server = [r.data for r in records if isinstance(r, CapturedPDU) and not r.from_client]
    # The direction joined inside a PDU resynchronises at the next PDU; the other is whole.
    assert client == [ECHO_RQ, SESSION[-2][1]]
    assert server == [ECHO_RSP, ECHO_RSP, SESSION[-1][1]]
    assert any(isinstance(r, StreamNote) and "skipped" in r.message for r in records)


def test_missing_segment_is_reported_and_the_stream_resynchronises(tmp_path):
    frames = _conversation(chunk=1000).frames()
    lost = next(i for i, (_ts, f) in enumerate(frames) if f.endswith(ECHO_RQ))  # the first echo request
    path = tmp_path / "gap.pcap"
    _write_frames(path, frames[:lost] + frames[lost + 1 :])
    records = list(read_pdus(path))
    got = [r.data for r in records if isinstance(r, CapturedPDU)]
    assert ECHO_RQ in got and got.count(ECHO_RQ) == 1 and got.count(ECHO_RSP) == 2
    assert any(isinstance(r, StreamNote) and "missing" in r.message for r in records)


def test_two_connections_interleaved(tmp_path):
    a = _conversation(client=("127.0.0.1", 50001))
    b = _conversation(client=("127.0.0.1", 50002))
    path = tmp_path / "two.pcap"
    write_pcap(path, [a, b])
    got = _pdus(path)
    assert sorted({p.connection for p in got}) == [1, 2]
    for n in (1, 2):
        assert [p.data for p in got if p.connection == n] == [pdu for _s, pdu in SESSION]


def test_conversation_is_thread_safe():
    conv = Conversation(("127.0.0.1", 1), ("127.0.0.1", 2))

    def send(side):
        for i in range(500):
            (conv.client_sent if side == "client" else conv.server_sent)(bytes([i % 256]))

    threads = [threading.Thread(target=send, args=(s,)) for s in ("client", "server", "client")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(conv.sent("client")) == 1000 and len(conv.sent("server")) == 500
    with pytest.raises(ValueError):
        conv.closed("nobody")


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (Wireshark) is not installed")
@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap"])
def test_pcapng_and_nanosecond_pcap(tmp_path, fmt):
    src = tmp_path / "c.pcap"
    write_pcap(src, [_conversation()])
    dst = tmp_path / f"c.{fmt}"
    subprocess.run(["editcap", "-F", fmt, str(src), str(dst)], check=True, capture_output=True)
    got = _pdus(dst)
    assert [(p.from_client, p.data) for p in got] == _expected()
    assert round(got[0].ts, 3) == 100.01


def test_unreadable_captures(tmp_path):
    with pytest.raises(CaptureError, match="cannot read"):
        list(read_pdus(tmp_path / "missing.pcap"))
    (tmp_path / "text.pcap").write_text("hello world")
    with pytest.raises(CaptureError, match="not a pcap"):
        list(read_pdus(tmp_path / "text.pcap"))
    path = tmp_path / "c.pcap"
    write_pcap(path, [_conversation()])
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CaptureError, match="truncated"):
        list(read_pdus(cut))
    (tmp_path / "header.pcap").write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)[:10])
    with pytest.raises(CaptureError, match="truncated"):
        list(read_pdus(tmp_path / "header.pcap"))


def test_half_close_keeps_data_sent_after_the_first_fin(tmp_path):
    conv = Conversation(("127.0.0.1", 40010), ("127.0.0.1", 4242))
    conv.opened(1.0)
    conv.client_sent(SESSION[0][1], 1.1)
    conv.server_sent(SESSION[1][1], 1.2)
    conv.client_sent(SESSION[-2][1], 1.3)
    conv.closed("client", 1.4)  # the requestor closes its side right after A-RELEASE-RQ
    conv.server_sent(SESSION[-1][1], 1.5)  # the A-RELEASE-RP still arrives
    conv.client_sent(b"ignored: after its own FIN", 1.55)
    conv.closed("server", 1.6)
    path = tmp_path / "half.pcap"
    write_pcap(path, [conv])
    got = _pdus(path)
    assert [p.data for p in got] == [SESSION[0][1], SESSION[1][1], SESSION[-2][1], SESSION[-1][1]]
    segs = list(tcp_segments(read_frames(path)))
    assert [(s.src[1], s.flags & 0x01) for s in segs if s.flags & 0x01] == [(40010, 1), (4242, 1)]
    assert not segs[-1].flags & 0x01 and segs[-1].src[1] == 40010  # the last ACK
    if shutil.which("tshark"):
        out = run_tshark(shutil.which("tshark"), "-r", str(path), "-d", "tcp.port==4242,dicom", "-q", "-z", "expert")
        assert "Malformed" not in out and "Warns" not in out
