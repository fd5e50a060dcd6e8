"""Real traffic through the recording relay: pcaps tshark reads cleanly, and our decoder agrees with tshark.

pynetdicom's SCU talks to pynetdicom's SCP (association, C-ECHO, C-STORE in
several fragments at a 2 KiB max PDU, release); DCMTK's echoscu / storescu
talk to the same SCP.  Every conversation goes through :class:`Relay`, which
records it; the pcap is written with :func:`write_pcap`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from dicomconf.wire import dissect
from dicomconf.wire.capture import write_pcap
from dicomconf.wire.findings import ConversationState
from dicomconf.wire.pcapread import CapturedPDU, read_pdus

from .conftest import ct_dataset, pynetdicom_session, run_tshark  # type: ignore[import-not-found]

pytestmark = pytest.mark.network

DCMTK_ECHOSCU = "/usr/bin/echoscu"
DCMTK_STORESCU = "/usr/bin/storescu"
_DIMSE = re.compile(r"\b([CN]-[A-Z]+(?:-[A-Z]+)?-(?:RQ|RSP))\b")


def _expert_errors(tshark: str, path, port: int) -> str:
    out = run_tshark(tshark, "-r", str(path), "-d", f"tcp.port=={port},dicom", "-q", "-z", "expert")
    bad = [line for line in out.splitlines() if "Malformed" in line or "Error" in line.split("(")[0]]
    return "\n".join(bad)


def _ours(path) -> list[CapturedPDU]:
    return [r for r in read_pdus(path) if isinstance(r, CapturedPDU)]


def _findings(pdus: list[CapturedPDU]) -> list:
    states: dict[int, ConversationState] = {}
    found = []
    for p in pdus:
        state = states.setdefault(p.connection, ConversationState())
        found += [(dissect.summary(p.data), f) for f in state.observe(p.data, p.from_client)]
    return found


@pytest.fixture
def pynetdicom_capture(tmp_path, relay_factory, pynetdicom_scp):
    relay = relay_factory(pynetdicom_scp.server_address[1])
    pynetdicom_session(relay.port, stores=2)
    relay.wait_idle()
    path = tmp_path / "pynetdicom.pcap"
    write_pcap(path, relay.conversations)
    return path, relay.port


def test_pcap_of_real_traffic_has_no_tshark_expert_errors(tshark, pynetdicom_capture):
    path, port = pynetdicom_capture
    assert _expert_errors(tshark, path, port) == ""


def test_decoder_agrees_with_tshark_on_every_pdu(tshark, pynetdicom_capture):
    path, port = pynetdicom_capture
    rows = run_tshark(tshark, "-r", str(path), "-d", f"tcp.port=={port},dicom", "-T", "fields", "-E", "separator=|",
                      "-e", "dicom.pdu.type", "-e", "dicom.pdu.len", "-e", "dicom.pctx.id", "-e", "dicom.pdv.ctx",
                      "-e", "dicom.pdv.flags", "-e", "_ws.col.Info")
    t_types, t_lens, t_pctx, t_pdv_ctx, t_flags, t_dimse = [], [], [], [], [], []
    for row in rows.splitlines():
        types, lens, pctx, pdv_ctx, flags, info = row.split("|", 5)
        if not types:
            continue
        t_types += [int(x, 16) for x in types.split(",")]
        t_lens += [int(x) for x in lens.split(",")]
        t_pctx += [int(x, 16) for x in pctx.split(",") if x]
        t_pdv_ctx += [int(x) for x in pdv_ctx.split(",") if x]
        t_flags += [int(x, 16) for x in flags.split(",") if x]
        t_dimse += _DIMSE.findall(info)
    ours = _ours(path)
    fields = [dissect.fields(p.data) for p in ours]
    assert [f["type"] for f in fields] == t_types
    assert [f["length"] for f in fields] == t_lens
    assert [pc["context_id"] for f in fields for pc in f.get("presentation_contexts", [])] == t_pctx
    pdvs = [v for f in fields for v in f.get("pdvs", [])]
    assert [v["context_id"] for v in pdvs] == t_pdv_ctx
    assert [(2 if v["last"] else 0) | (1 if v["command"] else 0) for v in pdvs] == t_flags
    assert [v["dimse"] for v in pdvs if "dimse" in v] == t_dimse
    # the scenario really had what the test is about: fragments of one C-STORE data set
    assert t_dimse.count("C-STORE-RQ") == 2 and t_flags.count(0) >= 4
    assert {1, 2, 4, 5, 6} <= set(t_types)


def test_legal_pynetdicom_traffic_has_no_findings(pynetdicom_capture):
    path, _port = pynetdicom_capture
    pdus = _ours(path)
    assert len(pdus) > 10
    assert _findings(pdus) == []


def test_decode_cli_json_on_real_traffic(pynetdicom_capture, capsys):
    from dicomconf.cli import main

    path, _port = pynetdicom_capture
    assert main(["decode", str(path), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["pdu"] == "A-ASSOCIATE-RQ" and lines[0]["direction"] == "requestor->acceptor"
    assert lines[1]["pdu"] == "A-ASSOCIATE-AC" and lines[1]["maximum_length"] == 2048
    assert all(line["findings"] == [] for line in lines)


def test_decode_cli_datasets_on_real_traffic(pynetdicom_capture, capsys):
    from dicomconf.cli import main

    path, _port = pynetdicom_capture
    assert main(["decode", str(path), "--datasets"]) == 0
    out = capsys.readouterr().out
    assert out.count("data set of C-STORE-RQ (") == 2
    assert "Wire^Test" in out and "Pixel Data" in out


def _dcmtk_env():
    return {**os.environ, "TCP_NODELAY": "1"}


@pytest.mark.skipif(not (os.path.exists(DCMTK_ECHOSCU) and os.path.exists(DCMTK_STORESCU)),
                    reason="DCMTK echoscu/storescu not installed")
def test_dcmtk_scu_traffic_is_legal_and_tshark_clean(tmp_path, relay_factory, pynetdicom_scp):
    relay = relay_factory(pynetdicom_scp.server_address[1])
    common = ["-aet", "DCMTKSCU", "-aec", "PYNETSCP", "127.0.0.1", str(relay.port)]
    subprocess.run([DCMTK_ECHOSCU, *common], check=True, env=_dcmtk_env(), timeout=30, capture_output=True)
    dcm = tmp_path / "ct.dcm"
    ct_dataset().save_as(dcm, enforce_file_format=True)
    subprocess.run([DCMTK_STORESCU, *common, str(dcm)], check=True, env=_dcmtk_env(), timeout=30,
                   capture_output=True)
    relay.wait_idle()
    path = tmp_path / "dcmtk.pcap"
    write_pcap(path, relay.conversations)
    pdus = _ours(path)
    kinds = {dissect.fields(p.data)["pdu"] for p in pdus}
    assert {"A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "P-DATA-TF", "A-RELEASE-RQ", "A-RELEASE-RP"} <= kinds
    assert len({p.connection for p in pdus}) == 2
    assert _findings(pdus) == []
    if shutil.which("tshark"):
        assert _expert_errors(shutil.which("tshark"), path, relay.port) == ""


DCMTK_STORESCP = "/usr/bin/storescp"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not os.path.exists(DCMTK_STORESCP), reason="DCMTK storescp not installed")
def test_dcmtk_storescp_answers_are_legal_and_agree_with_tshark(tmp_path, relay_factory, tshark):
    import socket
    import time

    port = _free_port()
    out_dir = tmp_path / "in"
    out_dir.mkdir()
    proc = subprocess.Popen([DCMTK_STORESCP, "-aet", "PYNETSCP", "-od", str(out_dir), str(port)],
                            env=_dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("storescp did not start listening")
                time.sleep(0.05)
        relay = relay_factory(port)
        pynetdicom_session(relay.port, stores=1)
        relay.wait_idle()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    path = tmp_path / "storescp.pcap"
    write_pcap(path, [c for c in relay.conversations if c.sent("client")])
    pdus = _ours(path)
    answers = [dissect.fields(p.data) for p in pdus if not p.from_client]
    assert [a["pdu"] for a in answers] == ["A-ASSOCIATE-AC", "P-DATA-TF", "P-DATA-TF", "A-RELEASE-RP"]
    assert [a["pdvs"][0].get("dimse") for a in answers[1:3]] == ["C-ECHO-RSP", "C-STORE-RSP"]
    assert _findings(pdus) == []
    assert _expert_errors(tshark, path, relay.port) == ""
    types = run_tshark(tshark, "-r", str(path), "-d", f"tcp.port=={relay.port},dicom", "-T", "fields",
                       "-e", "dicom.pdu.type")
    assert [int(x, 16) for line in types.split() for x in line.split(",") if x] == [p.data[0] for p in pdus]


def test_real_loopback_capture_with_dumpcap(tmp_path):
    """A pcapng written by Wireshark's dumpcap on lo (not by us) decodes PDU for PDU."""
    import time

    dumpcap = shutil.which("dumpcap")
    if dumpcap is None:
        pytest.skip("dumpcap is not installed")
    pytest.importorskip("pynetdicom")
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    port = _free_port()
    path = tmp_path / "lo.pcapng"
    proc = subprocess.Popen([dumpcap, "-i", "lo", "-f", f"tcp port {port}", "-w", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        started = proc.stderr.readline()  # "Capturing on 'Loopback: lo'" once it listens, or an error
        if "Capturing on" not in started:
            proc.kill()
            pytest.skip(f"dumpcap cannot capture on lo here: {started.strip() or proc.stderr.read()}")
        # "Capturing on" comes before the filter is live: probe (refused connections) until packets are counted.
        import select
        import socket

        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                pass
            ready, _, _ = select.select([proc.stderr], [], [], 0.2)
            if ready and "Packets" in proc.stderr.readline():
                break
            if time.monotonic() > deadline:
                pytest.skip("dumpcap never saw the probe packets on lo")
        scp = AE(ae_title="LOSCP")
        scp.add_supported_context(Verification)
        server = scp.start_server(("127.0.0.1", port), block=False)
        try:
            scu = AE(ae_title="LOSCU")
            scu.add_requested_context(Verification)
            assoc = scu.associate("127.0.0.1", port, ae_title="LOSCP")
            assert assoc.is_established and assoc.send_c_echo().Status == 0
            assoc.release()
        finally:
            server.shutdown()
        time.sleep(0.5)  # let dumpcap write the last packets
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    pdus = _ours(path)
    assert [dissect.fields(p.data)["pdu"] for p in pdus] == [
        "A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "P-DATA-TF", "P-DATA-TF", "A-RELEASE-RQ", "A-RELEASE-RP"]
    assert _findings(pdus) == []
