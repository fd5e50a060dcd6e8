"""TLS captures hold the records as they were on the wire, with a key log that decrypts them
(PS3.15 B.1), and a decrypted copy that says so."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.utils import rdpcap

from dicomconf.cli import main
from dicomconf.scenario.engine import Target
from dicomconf.scenario.listener import Listener
from dicomconf.scenario.model import load_file
from dicomconf.scenario.profile import Profile, TLSSettings
from dicomconf.scenario.requestor import Runner
from dicomconf.scp.config import SCPConfig
from dicomconf.scp.runtime import run_in_thread
from dicomconf.scp.tls import TLSConfig
from dicomconf.scu.client import SCU
from dicomconf.scu.connection import Closed, Connection, connect_failure
from dicomconf.scu.tls import client_context
from dicomconf.ul.pdu import AReleaseRP, AReleaseRQ
from dicomconf.wire import capture
from dicomconf.wire.pcapread import capture_hints

REPO = Path(__file__).resolve().parents[2]
AE = "TLS-CAPTURE"
KEY_LINE = re.compile(r"^[A-Z_0-9]+ [0-9a-f]{64} [0-9a-f]+$")
DICOM_PDU_TYPES = {"0x01", "0x02", "0x04", "0x05", "0x06"}  # RQ, AC, P-DATA, RELEASE RQ/RP


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    certs_mod = pytest.importorskip("dicomconf.scenario.certs")
    try:
        return certs_mod.self_signed(tmp_path_factory.mktemp("tls-capture"))
    except certs_mod.TLSUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def scp(certs):
    """The reference SCP with a TLS listener on 127.0.0.1, stopped at teardown."""
    cert, key = certs
    handle = run_in_thread(SCPConfig(port=0, ae_titles=(AE,), artim_timeout=1.0, idle_timeout=5.0,
                                     tls=TLSConfig(cert=str(cert), key=str(key), port=0)))
    yield handle
    handle.stop()


def _payloads(path: Path, port: int) -> list[tuple[bool, bytes]]:
    """(sent to ``port``, payload) of every frame with a TCP payload."""
    return [(pkt[TCP].dport == port, bytes(pkt[TCP].payload)) for pkt in rdpcap(str(path))
            if TCP in pkt and bytes(pkt[TCP].payload)]


def _client_random(path: Path, port: int) -> str:
    hello = next(p for to_server, p in _payloads(path, port) if to_server)
    assert hello[0] == 0x16 and hello[5] == 0x01  # a handshake record carrying a ClientHello
    return hello[11:43].hex()


def _tshark_pdu_types(pcap: Path, port: int, keys: Path | None, rsa_key: Path) -> set[str]:
    """The DICOM PDU types tshark finds in ``pcap`` with TLS on ``port``, decrypting with ``keys``.

    Wireshark has no Decode As from a TLS port to DICOM; its TLS "RSA keys list" still binds a
    port to the protocol inside TLS (a key file must load, it is not used with a key log)."""
    args = ["tshark", "-n", "-r", str(pcap), "-d", f"tcp.port=={port},tls",
            "-o", f"tls.keys_list:0.0.0.0,{port},dicom,{rsa_key}",
            "-T", "fields", "-e", "dicom.pdu.type"]
    if keys is not None:
        args[4:4] = ["-o", f"tls.keylog_file:{keys}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    return {t for line in out.split() for t in line.split(",") if t}


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory) -> Path:
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    from cryptography.hazmat.primitives import serialization

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("tshark") / "unused-rsa.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return path


def _check_tshark(pcap: Path, port: int, keys: Path, rsa_key: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed: the independent decryption is not checked")
    assert DICOM_PDU_TYPES <= _tshark_pdu_types(pcap, port, keys, rsa_key)
    assert _tshark_pdu_types(pcap, port, None, rsa_key) == set()  # without the key log: only TLS


def test_tls_scenario_writes_the_wire_a_key_log_and_a_decrypted_copy(scp, certs, tmp_path, rsa_key, capsys):
    cert, _key = certs
    (entry,) = load_file(REPO / "scenarios" / "tls" / "echo-over-tls.yaml")
    ctx = client_context(ca=str(cert))
    target = Target("127.0.0.1", scp.port, scp.tls_port, ctx, "test SCP", AE, "TLS-SCU")
    profile = Profile(ae_title=AE, calling_ae="TLS-SCU",
                      tls=TLSSettings(enabled=True, port=scp.tls_port, ca=str(cert)))
    pcap = tmp_path / "tls.echo.pcap"
    (tmp_path / "tls.echo.keys").write_text("stale")
    Runner(entry.scenario, profile, target).run(pcap, time_limit=30)

    # The wire: TLS records only; the DICOM inside is not readable.
    payloads = _payloads(pcap, scp.tls_port)
    assert payloads[0][0] and payloads[0][1][:2] == b"\x16\x03"
    assert all(p[0] in (0x14, 0x15, 0x16, 0x17) for _, p in payloads)  # TLS record content types
    assert not any(AE.encode() in p for _, p in payloads)
    ports, comments = capture_hints(pcap)
    assert ports == frozenset() and f"DICOM over TLS on TCP port {scp.tls_port}" in comments[0]

    # The key log beside it: NSS format, the session of the ClientHello in the capture.
    keys = capture.key_log_path(pcap)
    assert keys.name == "tls.echo.keys"
    lines = [line for line in keys.read_text().splitlines() if not line.startswith("#")]
    assert lines and all(KEY_LINE.match(line) for line in lines)
    assert {line.split()[1] for line in lines} == {_client_random(pcap, scp.tls_port)}

    # The decrypted copy: named and commented as such, decoded with no option.
    copy = capture.decrypted_path(pcap)
    assert copy.name == "tls.echo.decrypted.pcap"
    ports, comments = capture_hints(copy)
    assert ports == {scp.tls_port} and "decrypted copy, not the wire" in comments[0]
    assert _payloads(copy, scp.tls_port)[0][1][0] == 0x01  # an A-ASSOCIATE-RQ, in clear
    capsys.readouterr()
    assert main(["decode", str(copy)]) == 0
    out = capsys.readouterr().out
    for name in ("A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "C-ECHO-RQ", "C-ECHO-RSP", "A-RELEASE-RQ", "A-RELEASE-RP"):
        assert name in out

    _check_tshark(pcap, scp.tls_port, keys, rsa_key)


def test_tls_1_2_session_against_the_reference_scp_is_decrypted_by_tshark(scp, certs, tmp_path, rsa_key):
    cert, _key = certs
    ctx = client_context(ca=str(cert))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    conn = Connection.open("127.0.0.1", scp.tls_port, tls=ctx, timeout=5)
    assert conn.sock.version() == "TLSv1.2"
    scu = SCU(conn, called_ae=AE)
    scu.associate()
    assert scu.echo() == 0x0000
    scu.release()
    conn.close()
    assert [line.split()[0] for line in conn.key_log] == ["CLIENT_RANDOM"]
    pcap = tmp_path / "direct.pcap"
    capture.write_pcap(pcap, [conn.conversation])
    capture.write_key_log(capture.key_log_path(pcap), conn.key_log)
    assert conn.conversation.sent("client")[:2] == b"\x16\x03"
    assert conn.decrypted.sent("client")[0] == 0x01  # the findings and framing saw the DICOM stream
    assert conn.findings == [] and conn.pdus_received == 3  # AC, C-ECHO-RSP, RP
    _check_tshark(pcap, scp.tls_port, capture.key_log_path(pcap), rsa_key)


def test_the_fake_scp_records_its_tls_accept_too(certs):
    cert, key = certs
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    accepted: list = []
    with Listener("127.0.0.1", 0, tls=server_ctx) as listener:
        thread = threading.Thread(target=lambda: accepted.append(listener.accept(5)), daemon=True)
        thread.start()
        client = Connection.open("127.0.0.1", listener.port, tls=client_context(ca=str(cert)), timeout=5)
        thread.join(10)
        (server,) = accepted
        client.send(AReleaseRQ())
        assert server.receive_pdu(3).pdu == AReleaseRQ()
        server.send(AReleaseRP())
        assert client.receive_pdu(3).pdu == AReleaseRP()
        client.close()
        assert server.wait_closed(3) == "closed"
        server.close()
    assert server.conversation.tls and server.conversation.sent("client")[:2] == b"\x16\x03"
    assert server.conversation.sent("client") == client.conversation.sent("client")  # the same records
    assert server.decrypted.sent("client") == AReleaseRQ().encode()
    assert server.key_log and set(server.key_log) == set(client.key_log)


def test_certificate_errors_and_timeouts_read_as_before(certs, tmp_path):
    cert, key = certs
    other_cert, _ = pytest.importorskip("dicomconf.scenario.certs").self_signed(tmp_path, stem="other-")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(str(cert), str(key))
    with Listener("127.0.0.1", 0, tls=server_ctx) as listener:
        errors: list = []

        def accept() -> None:
            try:
                listener.accept(5)
            except (OSError, ssl.SSLError) as exc:
                errors.append(exc)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            Connection.open("127.0.0.1", listener.port, tls=client_context(ca=str(other_cert)), timeout=5)
        thread.join(10)
        assert connect_failure(info.value, 5)[0] == "tls"
        assert "certificate verification failed" in connect_failure(info.value, 5)[1]
        assert errors and isinstance(errors[0], ssl.SSLError)  # our alert reached the server

    with Listener("127.0.0.1", 0) as silent, pytest.raises(TimeoutError):  # TCP accepted, no ServerHello
        Connection.open("127.0.0.1", silent.port, tls=client_context(ca=str(cert)), timeout=0.5)


@pytest.mark.parametrize("close_notify", [True, False], ids=["close_notify", "tcp-close-only"])
def test_a_peer_that_closes_is_seen_closed_over_tls(tiny_server, tls_pair, close_notify):
    def close_at_once(peer):
        peer.recv_pdu()
        if close_notify:  # close_notify first (its wait for ours ends at the timeout: we send none, as before)
            peer.sock.settimeout(0.5)
            try:
                peer.sock.unwrap()
            except OSError:
                pass

    server = tiny_server(close_at_once, ssl_context=tls_pair.server)
    conn = Connection.open("127.0.0.1", server.port, tls=tls_pair.client, timeout=5)
    conn.send(AReleaseRQ())
    server.join()
    with pytest.raises(Closed) as info:
        conn.receive_pdu(3)
    assert info.value.kind == "closed"
    conn.close()
    assert [e.kind for e in conn.decrypted.events][-2:] == ["close", "close"]


def test_the_report_draws_a_tls_scenario_from_its_decrypted_copy_and_decode_points_there(scp, certs, tmp_path,
                                                                                          capsys):
    """The wire capture holds TLS records: the HTML report's ladder reads the decrypted copy (and links
    it and the key log); `dicomconf decode` on the wire capture names the copy instead of finding nothing."""
    from dicomconf.report import model
    from dicomconf.report.html_report import _ladder, render_html

    cert, _key = certs
    (entry,) = load_file(REPO / "scenarios" / "tls" / "echo-over-tls.yaml")
    target = Target("127.0.0.1", scp.port, scp.tls_port, client_context(ca=str(cert)), "test SCP", AE, "TLS-SCU")
    profile = Profile(ae_title=AE, calling_ae="TLS-SCU", tls=TLSSettings(enabled=True, port=scp.tls_port, ca=str(cert)))
    (tmp_path / "pcap").mkdir()
    pcap = tmp_path / "pcap" / "tls.echo.pcap"
    Runner(entry.scenario, profile, target).run(pcap, time_limit=30)

    conv = _ladder({"pcap": "pcap/tls.echo.pcap", "role": "scu"}, tmp_path)
    names = [row.name for row in conv["ladder"].rows if row.kind == "pdu"]
    assert names[0] == "A-ASSOCIATE-RQ" and "A-RELEASE-RP" in names, names
    assert conv["tls"] == {"decrypted": "pcap/tls.echo.decrypted.pcap", "key_log": "pcap/tls.echo.keys"}
    record = {"id": "tls.echo", "title": "echo over TLS", "clauses": ["PS3.15 B.1"], "severity": "must",
              "area": "tls", "outcome": "passed", "duration_s": 0.1, "findings": [], "pcap": str(pcap), "file": None,
              "failure": None, "skip_reason": None, "role": "scu", "tests": "SCP", "nodeid": "tls.echo"}
    run = {"target": "127.0.0.1", "profile": {"name": "p", "source": "p.yaml"}, "start": "2026-01-01T00:00:00+00:00",
           "duration_s": 1.0, "strict": False, "exit_status": 0}
    page = render_html(model.build_document(tmp_path, run, [record], ()), tmp_path)
    assert 'href="pcap/tls.echo.decrypted.pcap">decrypted pcap</a>' in page
    assert 'href="pcap/tls.echo.keys">TLS key log</a>' in page and "drawn from the decrypted copy" in page
    capture.decrypted_path(pcap).unlink()  # without the copy: the wire, whose TLS records draw no PDU
    bare = _ladder({"pcap": "pcap/tls.echo.pcap", "role": "scu"}, tmp_path)
    assert bare["tls"] is None and not [row for row in bare["ladder"].rows if row.kind == "pdu"]

    Runner(entry.scenario, profile, target).run(pcap, time_limit=30)
    capsys.readouterr()
    assert main(["decode", str(pcap)]) == 1
    err = capsys.readouterr().err
    assert "holds DICOM over TLS" in err and str(capture.decrypted_path(pcap)) in err
    assert str(capture.key_log_path(pcap)) in err
