"""``dicomconf decode``: text, -v, --json, --port, and clear errors for bad captures."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest

from dicomconf.cli import main
from dicomconf.wire.capture import Conversation, write_pcap
from dicomconf.wire.craft import build_pdu

ECHO = {"CommandField": "C-ECHO-RQ", "MessageID": 5}
ECHO_RSP = {"CommandField": "C-ECHO-RSP", "MessageIDBeingRespondedTo": 5, "Status": 0x0122}


def unwrap(text: str) -> list[str]:
    """The output's lines with the continuation lines of wrapped ones joined back."""
    lines: list[str] = []
    for line in text.splitlines():
        if lines and line.startswith("        ") and not line.lstrip().startswith("!"):
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def _capture(path, server_port=4242, session=None, open_=True):
    conv = Conversation(("127.0.0.1", 40123), ("127.0.0.1", server_port))
    if open_:
        conv.opened(10.0)
    session = session or [
        ("client", {"pdu": "A-ASSOCIATE-RQ", "calling_ae_title": "ME", "called_ae_title": "PACS"}),
        ("server", {"pdu": "A-ASSOCIATE-AC", "calling_ae_title": "ME", "called_ae_title": "PACS"}),
        ("client", {"pdu": "P-DATA-TF", "pdvs": [{"command": ECHO}]}),
        ("server", {"pdu": "P-DATA-TF", "pdvs": [{"command": ECHO_RSP}]}),
        ("client", {"pdu": "P-DATA-TF", "pdvs": [{"context_id": 3, "command": ECHO}]}),
        ("client", {"pdu": "A-RELEASE-RQ"}),
        ("server", {"pdu": "A-ABORT", "source": 2, "reason": 2}),
    ]
    t = 10.0
    for side, spec in session:
        t += 0.5
        (conv.client_sent if side == "client" else conv.server_sent)(build_pdu(spec), t)
    conv.closed("server", t)
    write_pcap(path, [conv])
    return path


def test_one_line_per_pdu_with_summary_and_findings(tmp_path, capsys):
    path = _capture(tmp_path / "c.pcap")
    assert main(["decode", str(path)]) == 0
    out = unwrap(capsys.readouterr().out)
    pdu_lines = [line for line in out if " -> " in line and line.split()[0].isdigit()]
    assert len(pdu_lines) == 7
    assert "A-ASSOCIATE-RQ ME -> PACS contexts 1:Verification" in pdu_lines[0]
    # Wireshark's frame number (SYN, SYN/ACK, ACK come first), then the time since the first packet
    assert pdu_lines[0].split()[:2] == ["4", "0.500000"]
    assert "#1 127.0.0.1:40123 -> 127.0.0.1:4242" in pdu_lines[0]
    assert "A-ASSOCIATE-AC ME <- PACS contexts 1:acceptance[ImplicitVRLittleEndian]" in pdu_lines[1]
    assert "ctx=1 CMD+LAST" in pdu_lines[2] and "C-ECHO-RQ id=5 Verification" in pdu_lines[2]
    assert "C-ECHO-RSP to=5" in pdu_lines[3] and "status=0x0122 failure" in pdu_lines[3]
    assert "!! 1 must" in pdu_lines[4]
    assert any("pdv.context-not-accepted" in line and "PS3.8 9.3.5.1" in line for line in out)
    assert "A-ABORT source DICOM UL service-provider" in pdu_lines[6] and "unexpected-PDU" in pdu_lines[6]


def test_json_stream(tmp_path, capsys):
    path = _capture(tmp_path / "c.pcap")
    assert main(["decode", "--json", str(path)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    objs = [o for o in records if o["record"] == "pdu"]
    assert [o["record"] for o in records if o["record"] != "pdu"] == ["association"]
    assert [o["frame"] for o in objs] == [4, 5, 6, 7, 8, 9, 10]
    assert [o["pdu"] for o in objs] == ["A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "P-DATA-TF", "P-DATA-TF", "P-DATA-TF",
                                        "A-RELEASE-RQ", "A-ABORT"]
    assert objs[0]["called_ae_title"] == "PACS" and objs[0]["direction"] == "requestor->acceptor"
    assert objs[3]["pdvs"][0]["dimse"] == "C-ECHO-RSP" and objs[3]["pdvs"][0]["Status"] == 0x0122
    assert objs[4]["findings"][0]["code"] == "pdv.context-not-accepted"
    assert objs[6]["source"] == 2 and objs[6]["reason"] == 2
    assert all(isinstance(o["time"], float) for o in objs)


def test_verbose_tree(tmp_path, capsys):
    path = _capture(tmp_path / "c.pcap")
    assert main(["decode", "-v", str(path)]) == 0
    out = capsys.readouterr().out
    assert "###[ DICOM UL ]###" in out and "called_ae_title" in out
    assert "PDV 0 command set: C-ECHO-RQ id=5" in out
    assert "(0000,0110) Message ID" in out


def test_unknown_port_detected_by_content_and_port_forced(tmp_path, capsys):
    path = _capture(tmp_path / "c.pcap", server_port=7777)
    assert main(["decode", str(path)]) == 0
    assert "A-ASSOCIATE-RQ" in capsys.readouterr().out
    # a stream that starts (SYN) with a P-DATA-TF is no association start: only the capture's own
    # comment (dicomconf wrote it, naming port 7777) or --port make it DICOM
    mid = _capture(tmp_path / "mid.pcap", server_port=7777, open_=False, session=[
        ("client", {"pdu": "P-DATA-TF", "pdvs": [{"command": ECHO}]}),
        ("server", {"pdu": "P-DATA-TF", "pdvs": [{"command": ECHO_RSP}]})])
    assert main(["decode", str(mid)]) == 0
    out = capsys.readouterr().out
    assert "C-ECHO-RQ id=5" in out and "C-ECHO-RSP to=5" in out
    plain = tmp_path / "plain.pcap"
    _classic_copy(mid, plain)
    assert main(["decode", str(plain)]) == 1
    assert "no DICOM PDUs found" in capsys.readouterr().err
    assert main(["decode", str(plain), "--port", "7777"]) == 0
    out = capsys.readouterr().out
    assert "C-ECHO-RQ id=5" in out and "C-ECHO-RSP to=5" in out


def _classic_copy(src, dst):
    """The frames of ``src`` in a classic pcap file: no comments, so no port hints."""
    from dicomconf.wire.pcapread import read_frames

    with open(dst, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for ts, _link, frame in read_frames(src):
            fh.write(struct.pack("<IIII", int(ts), int(round(ts % 1 * 1e6)), len(frame), len(frame)) + bytes(frame))


@pytest.mark.parametrize("content,message", [
    (None, "cannot read"),
    (b"", "not a pcap"),
    (b"this is not a capture at all", "not a pcap"),
])
def test_unreadable_files(tmp_path, capsys, content, message):
    path = tmp_path / "bad.pcap"
    if content is not None:
        path.write_bytes(content)
    assert main(["decode", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_truncated_capture_prints_what_it_can_then_fails(tmp_path, capsys):
    path = _capture(tmp_path / "c.pcap")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(path.read_bytes()[:-30])
    assert main(["decode", str(cut)]) == 1
    captured = capsys.readouterr()
    assert "A-ASSOCIATE-RQ" in captured.out
    assert "truncated capture" in captured.err


def test_capture_without_dicom(tmp_path, capsys):
    conv = Conversation(("127.0.0.1", 40000), ("127.0.0.1", 80))
    conv.opened(1.0)
    conv.client_sent(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1.1)
    conv.closed("client", 1.2)
    write_pcap(tmp_path / "ours.pcap", [conv])  # its comment would call port 80 DICOM: copy the frames only
    _classic_copy(tmp_path / "ours.pcap", tmp_path / "http.pcap")
    assert main(["decode", str(tmp_path / "http.pcap")]) == 1
    assert "no DICOM PDUs" in capsys.readouterr().err


def test_bad_port_and_no_traceback_from_the_real_command(tmp_path):
    assert main(["decode", str(tmp_path / "x.pcap"), "--port", "70000"]) == 2
    proc = subprocess.run([sys.executable, "-m", "dicomconf.cli", "decode", str(tmp_path / "nope.pcap")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "cannot read" in proc.stderr and "Traceback" not in proc.stderr


def test_fast_path_does_not_import_scapy(tmp_path):
    path = _capture(tmp_path / "c.pcap")
    code = ("import sys, io, contextlib; from dicomconf.cli import main; "
            f"out = io.StringIO(); ctx = contextlib.redirect_stdout(out); ctx.__enter__(); rc = main(['decode', {str(path)!r}]); "
            "ctx.__exit__(None, None, None); print(rc, any(m.startswith('scapy') for m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["0", "False"], proc.stderr
