"""dicomconf's own captures are pcapng naming their DICOM ports and scenario in comments, which
tshark reads and ``dicomconf decode`` takes as its port hint: a scenario's capture decodes with no
option even when its stream does not start with an A-ASSOCIATE-RQ."""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from dicomconf.cli import main
from dicomconf.wire.capture import (
    Conversation,
    capture_comment,
    ports_in_comment,
    write_pcap,
)
from dicomconf.wire.craft import build_pdu
from dicomconf.wire.pcapread import CapturedPDU, capture_hints, read_frames, read_pdus

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (Debian package tshark)")
SCENARIO = "malformed.associate-rq-length-below-fixed-fields"
LENGTHS = Path(__file__).resolve().parents[2] / "scenarios" / "malformed" / "lengths.yaml"


def _blocks(path):
    """(block type, body) of every pcapng block of ``path``."""
    data = path.read_bytes()
    pos, out = 0, []
    while pos < len(data):
        btype, length = struct.unpack_from("<II", data, pos)
        out.append((btype, data[pos + 8 : pos + length - 4]))
        pos += length
    return out


def _two_conversations():
    a = Conversation(("127.0.0.1", 40001), ("127.0.0.1", 2104))
    a.opened(5.0)
    a.client_sent(bytes.fromhex("04 00 00000006 00000002 0103"), 5.1)  # a P-DATA-TF first: no association start
    a.closed("client", 5.2)
    b = Conversation(("::1", 40002), ("::1", 11113))
    b.opened(5.05)
    b.client_sent(build_pdu({"pdu": "A-RELEASE-RQ"}), 5.15)
    b.closed("client", 5.25)
    return a, b


def test_the_capture_is_pcapng_with_its_ports_and_name_in_comments(tmp_path):
    path = tmp_path / "some.scenario-id.pcap"
    write_pcap(path, _two_conversations())
    blocks = _blocks(path)
    assert blocks[0][0] == 0x0A0D0D0A and blocks[1][0] == 1 and {b for b, _ in blocks[2:]} == {6}
    ports, comments = capture_hints(path)
    assert ports == {2104, 11113}
    assert comments == ["dicomconf capture some.scenario-id: DICOM on TCP ports 2104, 11113"]
    named = tmp_path / "named.pcap"
    write_pcap(named, _two_conversations()[:1], name="scu.store.basic")
    assert capture_hints(named) == (frozenset({2104}), ["dicomconf capture scu.store.basic: DICOM on TCP port 2104"])
    # the frames are what the classic writer wrote: Ethernet, in time order
    times = [ts for ts, _link, _frame in read_frames(path)]
    assert times == sorted(times) and len(times) == 14


def test_comment_round_trip_and_no_port_from_other_text():
    assert ports_in_comment(capture_comment("x", [104])) == {104}
    assert ports_in_comment(capture_comment("x", [11112, 104, 104])) == {104, 11112}
    assert ports_in_comment("a capture of port 104") == set()


def test_decode_takes_the_comment_as_its_port_hint(tmp_path, capsys):
    path = tmp_path / "c.pcap"
    write_pcap(path, _two_conversations())
    assert main(["decode", str(path)]) == 0
    out = capsys.readouterr().out
    assert "P-DATA-TF ctx=1 CMD+LAST" in out and "A-RELEASE-RQ" in out
    pdus = [p for p in read_pdus(path) if isinstance(p, CapturedPDU)]
    assert [p.data[0] for p in pdus] == [4, 5]


@needs_tshark
def test_tshark_reads_the_comments_and_the_dicom(tmp_path):
    path = tmp_path / "c.pcap"
    write_pcap(path, _two_conversations())
    info = subprocess.run([TSHARK, "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "frame.comment",
                           "-d", "tcp.port==11113,dicom", "-e", "dicom.pdu.type"],
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stderr
    rows = [line.split("\t") for line in info.stdout.splitlines()]
    assert len(rows) == 14
    comments = [r[1] for r in rows if r[1]]
    assert comments == ["dicomconf connection 1: 127.0.0.1:40001 -> 127.0.0.1:2104, DICOM on TCP port 2104",
                        "dicomconf connection 2: [::1]:40002 -> [::1]:11113, DICOM on TCP port 11113"]
    assert [r[2] for r in rows if r[2]] == ["0x05"]
    capinfos = shutil.which("capinfos")
    if capinfos:
        head = subprocess.run([capinfos, str(path)], capture_output=True, text=True, timeout=60).stdout
        assert "pcapng" in head and "DICOM on TCP ports 2104, 11113" in head


def test_a_scenario_capture_without_association_start_decodes_with_no_option(tmp_path):
    """The scenario sends a 10-byte A-ASSOCIATE-RQ: no heuristic takes that for an association
    start, yet its capture decodes with no option, and the HTML report's ladder reads it."""
    from dicomconf.report.ladder import read_ladder

    rep = tmp_path / "rep"
    run = subprocess.run([sys.executable, "-m", "dicomconf.cli", "run", str(LENGTHS),
                          "-k", "associate-rq-length-below-fixed-fields", "--report-dir", str(rep), "-q"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    pcap = rep / "pcap" / f"{SCENARIO}.pcap"
    ports, comments = capture_hints(pcap)
    assert len(ports) == 1 and comments and SCENARIO in comments[0]
    first = next(p for p in read_pdus(pcap) if isinstance(p, CapturedPDU))
    assert first.data[:6] == bytes.fromhex("01 00 0000000a")
    decode = subprocess.run([sys.executable, "-m", "dicomconf.cli", "decode", str(pcap)],
                            capture_output=True, text=True, timeout=120)
    assert decode.returncode == 0, decode.stderr
    assert "A-ASSOCIATE-RQ len=10 (malformed" in decode.stdout and "A-ABORT" in decode.stdout
    assert "assoc.too-short" in decode.stdout
    ladder = read_ladder(pcap)
    assert [r.name for r in ladder.rows if r.kind == "pdu"][:2] == ["A-ASSOCIATE-RQ", "A-ABORT"]
    if TSHARK:
        port = next(iter(ports))
        seen = subprocess.run([TSHARK, "-r", str(pcap), "-d", f"tcp.port=={port},dicom", "-T", "fields",
                               "-e", "dicom.pdu.type"], capture_output=True, text=True, timeout=60)
        assert seen.returncode == 0 and seen.stdout.split() == ["0x01", "0x07"]


def test_a_capture_with_only_part_of_a_pdu_says_so(tmp_path, capsys):
    conv = Conversation(("127.0.0.1", 40003), ("127.0.0.1", 2105))
    conv.opened(1.0)
    conv.client_sent(build_pdu({"pdu": "A-ASSOCIATE-RQ"})[:100], 1.1)  # the scenario's peer never gets the rest
    conv.closed("server", 2.0)
    write_pcap(tmp_path / "cut.pcap", [conv])
    silent = Conversation(("127.0.0.1", 40004), ("127.0.0.1", 2106))
    silent.opened(1.0)
    silent.closed("server", 2.0)
    write_pcap(tmp_path / "silent.pcap", [silent])
    assert main(["decode", str(tmp_path / "cut.pcap")]) == 1
    captured = capsys.readouterr()
    assert "incomplete PDU at the end of the stream (100 byte(s))" in " ".join(captured.out.split())
    assert "no whole DICOM PDU" in captured.err and "see the note above" in captured.err
    assert main(["decode", str(tmp_path / "silent.pcap")]) == 1
    assert "its DICOM connections carried no PDU" in capsys.readouterr().err
