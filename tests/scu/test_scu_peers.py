"""The SCU against DCMTK, over TLS, and what its captures contain."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import pytest

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from dicomconf.scu.client import SCU, load_dataset
from dicomconf.scu.connection import Connection
from dicomconf.ul.dimse import MessageAssembler
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.pdu import PDataTF, decode_pdu
from dicomconf.wire.capture import write_pcap

CT_FILE = get_testdata_file("CT_small.dcm")


def test_store_to_dcmtk_in_fragments_is_stored_byte_for_byte(dcmtk_storescp, tmp_path):
    source = dcmread(CT_FILE)
    del source[0xFFFCFFFC]  # DCMTK drops Data Set Trailing Padding when it writes (PS3.10 7.2)
    path = tmp_path / "ct.dcm"
    source.save_as(path, enforce_file_format=True)
    peer = dcmtk_storescp(max_pdu=4096)
    scu = SCU(Connection.open("127.0.0.1", peer.port), called_ae=peer.aet)
    scu.associate(["verification", ("ct", [ExplicitVRLittleEndian])])
    assert scu.peer_max_pdu_length == 4096
    assert scu.echo() == 0x0000
    assert scu.store(str(path)) == 0x0000
    scu.release()
    sent = [decode_pdu(bytes(p)) for p in PDUReader().feed(scu.connection.conversation.sent("client"))]
    pdatas = [p for p in sent if isinstance(p, PDataTF)]
    assert len(pdatas) >= 10 and all(len(p.encode()) - 6 <= 4096 for p in pdatas)
    assembler = MessageAssembler()
    messages = [m for p in pdatas for m in assembler.add_pdata(p)]
    assert [m.name for m in messages] == ["C-ECHO-RQ", "C-STORE-RQ"]
    assert scu.connection.findings == []  # DCMTK's replies break nothing
    (stored,) = glob.glob(os.path.join(peer.directory, "*"))
    _ds, ours, _ts = load_dataset(path)
    _ds, theirs, ts = load_dataset(stored)
    assert ts == ExplicitVRLittleEndian
    assert messages[1].data == ours  # the file's data set went out unchanged...
    assert theirs == ours  # ...and is what DCMTK wrote


def test_tls_association_with_pynetdicom(pynetdicom_scp, tls_pair):
    peer = pynetdicom_scp(ssl_context=tls_pair.server)
    conn = Connection.open("127.0.0.1", peer.port, tls=tls_pair.client)
    assert conn.sock.version() is not None
    scu = SCU(conn)
    scu.associate()
    assert scu.echo() == 0x0000
    scu.release()
    assert peer.wait_for("released")


def test_plain_connection_to_a_tls_peer_fails_cleanly(pynetdicom_scp, tls_pair):
    from dicomconf.scu.connection import Closed

    peer = pynetdicom_scp(ssl_context=tls_pair.server)
    scu = SCU(Connection.open("127.0.0.1", peer.port))
    with pytest.raises(Closed):
        scu.associate(timeout=5)


def test_conversation_pcap_has_both_directions(pynetdicom_scp, tmp_path):
    from scapy.layers.inet import TCP
    from scapy.utils import rdpcap

    peer = pynetdicom_scp()
    scu = SCU(Connection.open("127.0.0.1", peer.port))
    scu.associate()
    scu.echo()
    scu.release()
    path = tmp_path / "echo.pcap"
    write_pcap(path, [scu.connection.conversation])
    packets = rdpcap(str(path))
    to_server = b"".join(bytes(p[TCP].payload) for p in packets if TCP in p and p[TCP].dport == peer.port)
    to_client = b"".join(bytes(p[TCP].payload) for p in packets if TCP in p and p[TCP].sport == peer.port)
    assert to_server == scu.connection.conversation.sent("client") and len(to_server) > 300
    assert to_client == scu.connection.conversation.sent("server") and len(to_client) > 200
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed: the independent decode is not checked")
    out = subprocess.run(
        ["tshark", "-r", str(path), "-d", f"tcp.port=={peer.port},dicom", "-T", "fields", "-e", "dicom.pdu.type"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    types = [int(t, 16) if t.startswith("0x") else int(t) for line in out.split() for t in line.split(",")]
    assert types == [1, 2, 4, 4, 5, 6]
