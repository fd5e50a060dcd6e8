"""``dicomconf decode``'s one-line view (user information sub-items, Wireshark's frame numbers,
wrapping) and its per-association summary in text and JSON (PS3.8 9.3.2-9.3.3, D; PS3.7 D.3.3, 9.3)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from dicomconf.cli import main
from dicomconf.wire.capture import Conversation, write_pcap
from dicomconf.wire.craft import build_pdu

TSHARK = shutil.which("tshark")
CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PORT = 4104

RQ_UI = [
    {"item": "maximum-length", "maximum_length": 32768},
    {"item": "implementation-class-uid", "implementation_class_uid": "1.2.3.4"},
    {"item": "asynchronous-operations-window", "maximum_number_operations_invoked": 3,
     "maximum_number_operations_performed": 1},
    {"item": "role-selection", "sop_class_uid": CT, "scu_role": 1, "scp_role": 1},
    {"item": "implementation-version-name", "implementation_version_name": "MODALITY_1"},
    {"item": "sop-class-extended-negotiation", "sop_class_uid": FIND,
     "service_class_application_information": "01"},
    {"item": "sop-class-common-extended-negotiation", "sop_class_uid": CT,
     "service_class_uid": "1.2.840.10008.4.2"},
    {"item": "user-identity", "user_identity_type": 3, "positive_response_requested": 1,
     "primary_field": "s3cret-kerberos-ticket"},
]
AC_UI = [
    {"item": "maximum-length", "maximum_length": 0},
    {"item": "implementation-class-uid", "implementation_class_uid": "1.2.3.5"},
    {"item": "role-selection", "sop_class_uid": CT, "scu_role": 1, "scp_role": 0},
    {"item": "user-identity-ac", "server_response": "secret-server-token"},
]


def _cmd(pdu_ctx, **command):
    return build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"context_id": pdu_ctx, "command": command}]})


def _session():
    rq = build_pdu({"pdu": "A-ASSOCIATE-RQ", "calling_ae_title": "MODALITY", "called_ae_title": "PACS",
                    "presentation_contexts": [
                        {"context_id": 1}, {"context_id": 3, "abstract_syntax": CT},
                        {"context_id": 5, "abstract_syntax": FIND}],
                    "user_information": RQ_UI})
    ac = build_pdu({"pdu": "A-ASSOCIATE-AC", "calling_ae_title": "MODALITY", "called_ae_title": "PACS",
                    "presentation_contexts": [
                        {"context_id": 1}, {"context_id": 3, "result": 3, "transfer_syntax": None},
                        {"context_id": 5}],
                    "user_information": AC_UI})
    return [
        (0.000, "client", rq[:100]), (0.001, "client", rq[100:]),  # the RQ in two segments
        (0.004, "server", ac),
        (0.010, "client", _cmd(1, CommandField="C-ECHO-RQ", MessageID=1)),
        (0.015, "server", _cmd(1, CommandField="C-ECHO-RSP", MessageIDBeingRespondedTo=1, Status=0)),
        (0.020, "client", _cmd(5, CommandField="C-FIND-RQ", MessageID=2, AffectedSOPClassUID=FIND)),
        (0.025, "server", _cmd(5, CommandField="C-FIND-RSP", MessageIDBeingRespondedTo=2, Status=0xFF00,
                               AffectedSOPClassUID=FIND)),
        (0.030, "server", _cmd(5, CommandField="C-FIND-RSP", MessageIDBeingRespondedTo=2, Status=0xFF00,
                               AffectedSOPClassUID=FIND)),
        (0.045, "server", _cmd(5, CommandField="C-FIND-RSP", MessageIDBeingRespondedTo=2, Status=0,
                               AffectedSOPClassUID=FIND)),
        (0.050, "client", _cmd(1, CommandField="C-ECHO-RQ", MessageID=3)),
        (0.060, "client", build_pdu({"pdu": "A-RELEASE-RQ"})),
        (0.061, "server", build_pdu({"pdu": "A-RELEASE-RP"})),
    ]


def _capture(path, session=None, end="close"):
    conv = Conversation(("127.0.0.1", 50505), ("127.0.0.1", PORT))
    conv.opened(1000.0)
    for dt, side, data in session or _session():
        (conv.client_sent if side == "client" else conv.server_sent)(data, 1000.0 + dt)
    if end == "close":
        conv.closed("client", 1000.1)
    elif end == "reset":
        conv.reset("server", 1000.1)
    write_pcap(path, [conv])
    return path


def _json(path, capsys):
    assert main(["decode", "--json", str(path)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_one_line_view_shows_user_information_compactly_and_no_secret(tmp_path, capsys):
    path = _capture(tmp_path / "a.pcap")
    assert main(["decode", str(path)]) == 0
    out = capsys.readouterr().out
    flat = " ".join(line.strip() for line in out.splitlines())
    for part in ("max=32768", "impl=1.2.3.4/MODALITY_1", "async=3/1", "role=CTImageStorage:scu1,scp1",
                 "identity=KerberosServiceticket+rsp", "ext=StudyRootQueryRetrieveInformationModelFind:1B",
                 "cext=CTImageStorage<Storage>", "max=0", "impl=1.2.3.5",
                 "role=CTImageStorage:scu1,scp0", "identity-rsp=19B"):
        assert part in flat, part
    assert "s3cret" not in out and "secret-server-token" not in out
    records = _json(path, capsys)
    rq = next(r for r in records if r.get("pdu") == "A-ASSOCIATE-RQ")
    ui = rq["user_information"]
    assert ui["asynchronous_operations_window"] == {"invoked": 3, "performed": 1}
    assert ui["role_selection"] == [{"sop_class_uid": CT, "scu_role": 1, "scp_role": 1}]
    assert ui["user_identity"] == {"type": 3, "positive_response_requested": True}
    assert "s3cret" not in json.dumps(records) and "secret-server-token" not in json.dumps(records)


def test_long_lines_wrap_at_100_columns_when_not_a_terminal(tmp_path, capsys):
    path = _capture(tmp_path / "a.pcap")
    assert main(["decode", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert any(line.startswith("        ") and not line.strip().startswith("!") for line in lines)  # continuations


@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (Debian package tshark)")
def test_frame_numbers_are_wiresharks(tmp_path, capsys):
    path = _capture(tmp_path / "a.pcap")
    ours = [(r["frame"], r["type"]) for r in _json(path, capsys) if r["record"] == "pdu"]
    proc = subprocess.run([TSHARK, "-r", str(path), "-d", f"tcp.port=={PORT},dicom", "-T", "fields",
                           "-e", "frame.number", "-e", "dicom.pdu.type"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    theirs = [(int(n), int(t, 0)) for n, t in (line.split("\t") for line in proc.stdout.splitlines()) if t]
    assert ours == theirs
    assert ours[0] == (5, 1)  # SYN, SYN/ACK, ACK, the RQ's first segment; the RQ completes in frame 5


def test_summary_block_in_text(tmp_path, capsys):
    path = _capture(tmp_path / "a.pcap")
    assert main(["decode", str(path)]) == 0
    out = capsys.readouterr().out
    block = out[out.index("== association #1"):]
    flat = " ".join(line.strip() for line in block.splitlines())
    assert "127.0.0.1:50505 (requestor) -> 127.0.0.1:4104 (acceptor)" in flat
    assert "AE titles: calling MODALITY, called PACS" in flat
    assert "context 1 Verification: acceptance, ImplicitVRLittleEndian" in flat
    assert "context 3 CTImageStorage: abstract-syntax-not-supported" in flat
    assert "context 5 StudyRootQueryRetrieveInformationModelFind: acceptance, ImplicitVRLittleEndian" in flat
    assert "C-ECHO id=1 Verification: status 0x0000 success, 5.000 ms" in flat
    assert "C-FIND id=2 StudyRootQueryRetrieveInformationModelFind: status 0x0000 success, 25.000 ms" in flat
    assert "(frames 9-12, 2 pending)" in flat and "(frames 7-8)" in flat
    assert "C-ECHO id=3 Verification: no final response" in flat
    assert "ended: released" in flat
    assert "findings: 0 must" in flat


def test_summary_as_json(tmp_path, capsys):
    records = _json(_capture(tmp_path / "a.pcap"), capsys)
    assert [r["record"] for r in records][-1] == "association"
    assoc = records[-1]
    assert assoc["requestor"] == "127.0.0.1:50505" and assoc["acceptor"] == f"127.0.0.1:{PORT}"
    assert (assoc["calling_ae_title"], assoc["called_ae_title"]) == ("MODALITY", "PACS")
    assert [(c["context_id"], c["result"]) for c in assoc["presentation_contexts"]] == [(1, 0), (3, 3), (5, 0)]
    ops = assoc["operations"]
    assert [(o["command"], o["message_id"], o["status"], o["pending_responses"]) for o in ops] == [
        ("C-ECHO", 1, 0, 0), ("C-FIND", 2, 0, 2), ("C-ECHO", 3, None, 0)]
    assert ops[0]["rtt_seconds"] == pytest.approx(0.005, abs=2e-6)
    assert ops[1]["rtt_seconds"] == pytest.approx(0.025, abs=2e-6)
    frames = {r["frame"]: r for r in records if r["record"] == "pdu"}
    assert frames[ops[1]["response_frame"]]["pdvs"][0]["Status"] == 0
    assert assoc["end"]["how"] == "release"
    assert assoc["acceptor_user_information"]["user_identity_response_length"] == 19


def test_abort_reset_and_rejection_endings(tmp_path, capsys):
    session = _session()[:5] + [(0.02, "client", build_pdu({"pdu": "P-DATA-TF", "pdvs": [{
        "context_id": 3, "command": {"CommandField": "C-STORE-RQ", "MessageID": 9,
                                     "AffectedSOPClassUID": CT}}]})),
        (0.03, "server", build_pdu({"pdu": "A-ABORT", "source": 2, "reason": 6}))]
    assoc = _json(_capture(tmp_path / "abort.pcap", session), capsys)[-1]
    assert assoc["end"]["how"] == "abort" and assoc["end"]["by"] == "acceptor"
    assert (assoc["end"]["source"], assoc["end"]["reason"]) == (2, 6)
    assert any(f["code"] == "pdv.context-not-accepted" and f["clause"] for f in assoc["findings"])
    assert main(["decode", str(tmp_path / "abort.pcap")]) == 0
    text = capsys.readouterr().out
    assert "ended: aborted by the acceptor" in text and "invalid-PDU-parameter" in " ".join(text.split())

    session = _session()[:5]
    assoc = _json(_capture(tmp_path / "reset.pcap", session, end="reset"), capsys)[-1]
    assert assoc["end"]["how"] == "connection closed" and assoc["end"]["tcp"] == "RST"
    assert assoc["end"]["by"] == "acceptor"

    session = [(0.0, "client", _session()[0][2] + _session()[1][2]),
               (0.01, "server", build_pdu({"pdu": "A-ASSOCIATE-RJ", "result": 1, "source": 1, "reason": 7}))]
    assoc = _json(_capture(tmp_path / "rj.pcap", session), capsys)[-1]
    assert assoc["end"]["how"] == "rejected" and "called-AE-title-not-recognized" in assoc["end"]["text"]
    assert [c["result"] for c in assoc["presentation_contexts"]] == [None, None, None]
