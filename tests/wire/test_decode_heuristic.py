"""``dicomconf decode`` finds DICOM by content on any port, resynchronises mid-stream, and takes
nothing else for DICOM: HTTP, TLS records and random bytes are not reported (PS3.8 9.3.1)."""

from __future__ import annotations

import json
import random
import struct

import pytest

from dicomconf.cli import main
from dicomconf.ul import constants as C
from dicomconf.wire import detect
from dicomconf.wire.capture import Conversation
from dicomconf.wire.craft import build_pdu
from dicomconf.wire.pcapread import CapturedPDU, StreamNote, read_pdus

ECHO_RQ = [build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"command": {"CommandField": "C-ECHO-RQ", "MessageID": i}}]})
           for i in range(4)]
ECHO_RSP = [build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"command": {
    "CommandField": "C-ECHO-RSP", "MessageIDBeingRespondedTo": i, "Status": 0}}]}) for i in range(4)]
RQ = build_pdu({"pdu": "A-ASSOCIATE-RQ", "calling_ae_title": "MODALITY", "called_ae_title": "PACS"})
AC = build_pdu({"pdu": "A-ASSOCIATE-AC", "calling_ae_title": "MODALITY", "called_ae_title": "PACS"})
RELEASE_RQ, RELEASE_RP = build_pdu({"pdu": "A-RELEASE-RQ"}), build_pdu({"pdu": "A-RELEASE-RP"})


def classic_pcap(path, records):
    """A classic pcap of (ts, frame) records: no section comments, so no port hints."""
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for ts, frame in records:
            fh.write(struct.pack("<IIII", int(ts), int(round(ts % 1 * 1e6)), len(frame), len(frame)) + frame)
    return path


def dicom_conversation(port=6000, chunk=20):
    """RQ, AC, three C-ECHO round trips (requests cut into ``chunk``-byte segments), release."""
    conv = Conversation(("127.0.0.1", 41000), ("127.0.0.1", port))
    t = 100.0
    conv.opened(t)
    steps = [("client", RQ), ("server", AC)]
    for i in (1, 2, 3):
        steps += [("client", ECHO_RQ[i]), ("server", ECHO_RSP[i])]
    steps += [("client", RELEASE_RQ), ("server", RELEASE_RP)]
    for side, pdu in steps:
        t += 0.01
        if side == "client":
            for pos in range(0, len(pdu), chunk):
                conv.client_sent(pdu[pos : pos + chunk], t)
        else:
            conv.server_sent(pdu, t)
    conv.closed("client", t + 0.01)
    return conv


def _frames(conv):
    return [(ts, frame) for ts, frame in conv.frames()]


def _payload(frame: bytes) -> bytes:
    return frame[14 + 20 + 20 :]


def test_a_capture_joined_inside_a_pdu_is_resynchronised_and_says_where(tmp_path, capsys):
    frames = _frames(dicom_conversation())
    # join in the middle of the first C-ECHO-RQ: its first 20-byte segment is not in the capture
    first_echo = next(i for i, (_t, f) in enumerate(frames) if _payload(f).startswith(ECHO_RQ[1][:20]))
    kept = frames[first_echo + 1 :]
    path = classic_pcap(tmp_path / "mid.pcap", kept)
    header_frame = 1 + next(i for i, (_t, f) in enumerate(kept) if _payload(f) == ECHO_RQ[2][:20])
    skipped = len(ECHO_RQ[1]) - 20

    got = list(read_pdus(path))
    pdus = [r for r in got if isinstance(r, CapturedPDU)]
    assert [p.data for p in pdus if p.from_client] == [ECHO_RQ[2], ECHO_RQ[3], RELEASE_RQ]
    assert [p.data for p in pdus if not p.from_client] == [ECHO_RSP[1], ECHO_RSP[2], ECHO_RSP[3], RELEASE_RP]
    notes = [r for r in got if isinstance(r, StreamNote)]
    assert [(n.frame, n.offset, n.skipped) for n in notes] == [(header_frame, skipped, skipped)]
    # each PDU carries the (1-based) number of the frame that completed it
    assert all(_payload(kept[p.frame - 1][1]) and p.data.endswith(_payload(kept[p.frame - 1][1])) for p in pdus)

    assert main(["decode", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"resynchronised: skipped {skipped} byte(s)" in out and f"frame {header_frame}" in out
    assert "C-ECHO-RSP to=1" in out and "C-ECHO-RQ id=2" in out and "A-RELEASE-RP" in out
    assert main(["decode", "--json", str(path)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    note = next(r for r in records if r["record"] == "note")
    assert (note["frame"], note["offset"], note["skipped"]) == (header_frame, skipped, skipped)
    assert note["src"] == "127.0.0.1:41000"


def test_a_capture_joined_between_pdus_on_any_port_needs_no_option(tmp_path, capsys):
    frames = _frames(dicom_conversation(port=47001, chunk=1000))
    path = classic_pcap(tmp_path / "between.pcap", frames[5:])  # no handshake, RQ or AC
    assert main(["decode", str(path)]) == 0
    out = capsys.readouterr().out
    assert "resynchronised" not in out
    assert out.count("C-ECHO-RQ") == 3 and out.count("C-ECHO-RSP") == 3
    assert "127.0.0.1:47001" in out


def _tls_records(rng: random.Random, size: int) -> bytes:
    """A TLS 1.2 handshake record and application data records of random ciphertext."""
    out = bytearray(b"\x16\x03\x01\x00\xc8" + rng.randbytes(200))
    while len(out) < size:
        body = rng.randbytes(rng.randint(100, 16384))
        out += b"\x17\x03\x03" + struct.pack(">H", len(body)) + body
    return bytes(out)


def _http(rng: random.Random, size: int) -> tuple[bytes, bytes]:
    body = rng.randbytes(size)  # a gzip'd download is random bytes too
    return (b"GET /study/1.2.3 HTTP/1.1\r\nHost: pacs\r\nAccept: */*\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode() + body)


def _non_dicom(kind: str, seed: int, port: int) -> Conversation:
    rng = random.Random(seed)
    conv = Conversation(("127.0.0.1", 42000 + seed), ("127.0.0.1", port))
    conv.opened(1.0)
    if kind == "http":
        request, response = _http(rng, 300_000)
    elif kind == "tls":
        request, response = _tls_records(rng, 20_000), _tls_records(rng, 300_000)
    else:
        request, response = rng.randbytes(50_000), rng.randbytes(300_000)
    for pos in range(0, len(request), 1448):
        conv.client_sent(request[pos : pos + 1448], 1.1)
    for pos in range(0, len(response), 1448):
        conv.server_sent(response[pos : pos + 1448], 1.2)
    conv.closed("client", 1.3)
    return conv


@pytest.mark.parametrize("kind", ["http", "tls", "random"])
@pytest.mark.parametrize("joined", [False, True], ids=["from-syn", "mid-stream"])
def test_non_dicom_tcp_is_not_reported(tmp_path, capsys, kind, joined):
    frames = []
    for seed in range(4):
        conv_frames = _frames(_non_dicom(kind, seed, 8000 + seed))
        frames += conv_frames[3 + 5 * joined :] if joined else conv_frames
    path = classic_pcap(tmp_path / f"{kind}.pcap", sorted(frames, key=lambda f: f[0]))
    assert [r for r in read_pdus(path)] == []
    assert main(["decode", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no DICOM PDUs found" in captured.err


def test_random_streams_of_many_seeds_give_no_pdu():
    from dicomconf.wire.pcapread import Segment, StreamDecoder

    for seed in range(40):
        rng = random.Random(1000 + seed)
        dec = StreamDecoder()
        data = rng.randbytes(65536)
        out = []
        for pos in range(0, len(data), 1460):  # joined mid-stream: no SYN
            out += dec.feed(Segment(0.0, ("10.0.0.1", 5000), ("10.0.0.2", 6000), 7 + pos, 0x18,
                                    data[pos : pos + 1460], 1 + pos // 1460))
        out += dec.finish()
        assert out == [], seed


def test_dicom_among_other_traffic_is_the_only_thing_reported(tmp_path, capsys):
    frames = _frames(_non_dicom("tls", 1, 443)) + _frames(_non_dicom("http", 2, 80))
    frames += _frames(dicom_conversation(port=33333, chunk=1000))[5:]
    path = classic_pcap(tmp_path / "mixed.pcap", sorted(frames, key=lambda f: f[0]))
    assert main(["decode", "--json", str(path)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pdus = [r for r in records if r["record"] == "pdu"]
    assert {p["dst"] for p in pdus} | {p["src"] for p in pdus} == {"127.0.0.1:41000", "127.0.0.1:33333"}
    assert len(pdus) == 8  # 3 echo pairs and the release


def test_port_is_a_hint_for_what_the_heuristic_would_not_pick(tmp_path, capsys):
    conv = Conversation(("127.0.0.1", 41001), ("127.0.0.1", 5555))
    conv.opened(1.0)
    conv.client_sent(bytes.fromhex("01 00 0000000a 0001 0000 41414141 4141"), 1.1)  # too short an RQ
    conv.server_sent(build_pdu({"pdu": "A-ABORT", "source": 0}), 1.2)
    conv.closed("server", 1.3)
    path = classic_pcap(tmp_path / "short.pcap", _frames(conv))
    assert main(["decode", str(path)]) == 1
    assert "no DICOM PDUs found" in capsys.readouterr().err
    assert main(["decode", str(path), "--port", "5555"]) == 0
    out = capsys.readouterr().out
    assert "A-ASSOCIATE-RQ len=10 (malformed" in out and "assoc.too-short" in out and "A-ABORT" in out


def test_association_start_checks_ae_titles_and_the_first_item():
    assert detect.association_start(RQ) is True
    assert detect.association_start(RQ[:40]) is None  # wait for more
    assert detect.association_start(RQ[:40], final=True) is False
    binary_ae = RQ[:10] + b"\x01\x02" + RQ[12:]
    assert detect.association_start(binary_ae) is False
    no_app_context = RQ[:74] + bytes((C.ITEM_PRESENTATION_CONTEXT_RQ,)) + RQ[75:]
    assert detect.association_start(no_app_context) is False
    assert detect.association_start(b"GET / HTTP/1.1\r\n") is False


def test_find_pdu_strict_needs_confirmation_and_resumes():
    stream = b"\x99" * 7 + ECHO_RQ[1] + ECHO_RQ[2]
    assert detect.find_pdu(stream, strict=True)[0] == 7
    # one PDU and nothing after it: strict waits, and at the end takes it only if it ends there
    assert detect.find_pdu(b"\x99" * 7 + ECHO_RQ[1], strict=True) == (None, 7)
    assert detect.find_pdu(b"\x99" * 7 + ECHO_RQ[1], final=True, strict=True)[0] == 7
    assert detect.find_pdu(b"\x99" * 7 + ECHO_RQ[1] + b"\x99" * 5, final=True, strict=True)[0] is None
    # the scan resumes where it stopped: nothing before it is looked at again
    held = bytearray(b"\x55" * 5000)
    found, resume = detect.find_pdu(held)
    assert found is None and resume == len(held) - 9
    held += ECHO_RQ[1] + ECHO_RQ[2]
    assert detect.find_pdu(held, resume)[0] == 5000
