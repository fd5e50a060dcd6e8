"""TLS on either leg of the proxy (PS3.15 B.1): terminated and re-originated, captures with key logs."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys

import pytest
from proxy_testkit import proxy, report_of
from pynetdicom import AE
from scp_testkit import CT, IVRLE, make_certificates, make_dataset, start, with_syntax

from dicomconf.scp.config import TLSConfig
from dicomconf.ul import constants as C
from dicomconf.wire.pcapread import read_frames, read_pdus, tcp_segments


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    try:
        return make_certificates(str(tmp_path_factory.mktemp("certs")))
    except RuntimeError as exc:  # neither the cryptography package nor the openssl command
        pytest.skip(str(exc))


@pytest.fixture
def tls_scp(certs):
    scp = start(tls=TLSConfig(cert=certs["server"], key=certs["server_key"], port=0))
    try:
        yield scp
    finally:
        scp.stop()


def _associate(port: int, tls_ctx: ssl.SSLContext | None, store: bool = True) -> None:
    ae = AE(ae_title="TLSSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(C.VERIFICATION_SOP_CLASS)
    ae.add_requested_context(CT, [IVRLE])
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOMCONF",
                         tls_args=(tls_ctx, "localhost") if tls_ctx else None)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    if store:
        assert assoc.send_c_store(with_syntax(make_dataset(0, size=30_000), IVRLE)).Status == 0
    assoc.release()


def _scu_context(certs) -> ssl.SSLContext:
    return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certs["ca"])


def _tls_to(certs) -> list[str]:
    return ["--tls-to", "--tls-to-ca", certs["ca"], "--tls-to-server-name", "localhost"]


def _tls_listen(certs) -> list[str]:
    return ["--tls-listen-cert", certs["server"], "--tls-listen-key", certs["server_key"]]


def _records(pcap) -> bytes:
    """Every TCP payload byte of a capture, both directions."""
    return b"".join(s.payload for s in tcp_segments(read_frames(pcap)) if getattr(s, "payload", b""))


def test_tls_scu_through_tls_proxy_to_tls_scp(tls_scp, certs, tmp_path):
    rep = tmp_path / "rep"
    with proxy(tls_scp.tls_port, rep, "--count", "1", *_tls_listen(certs), *_tls_to(certs)) as px:
        _associate(px.port, _scu_context(certs))
        assert px.wait() == 0, px.out
    assert len(tls_scp.stored) == 1
    doc = report_of(rep)
    [case] = doc["scenarios"]
    assert case["outcome"] == "passed", case["failure"]
    ops = {op["command"]: op["status"] for op in case["association"]["operations"]}
    assert ops == {"C-ECHO": 0, "C-STORE": 0}  # judged from the decrypted bytes
    assert case["pcap"].endswith("association-0001.decrypted.pcap")
    tls = case["association"]["tls"]
    assert set(tls) == {"requestor", "acceptor"}
    for leg in tls.values():
        assert leg["version"] in ("TLSv1.2", "TLSv1.3") and leg["cipher"], leg
        raw = _records(rep / leg["pcap"])
        assert raw[:1] == b"\x16" and raw[5:6] == b"\x01"  # a TLS record: handshake, ClientHello first
        assert b"1.2.840.10008.1.1" not in raw  # the verification SOP class travels encrypted
        keys = (rep / leg["keys"]).read_text()
        assert leg["client_random"] in keys.lower() and ("CLIENT_TRAFFIC_SECRET_0" in keys or "CLIENT_RANDOM" in keys)
    decrypted = [p.data for p in read_pdus(rep / case["pcap"]) if hasattr(p, "data")]
    assert any(b"1.2.840.10008.1.1" in d for d in decrypted)
    assert doc["run"]["proxy"]["tls"]["acceptor_leg"]["verified"] is True


def test_plain_scu_through_proxy_to_tls_scp(tls_scp, certs, tmp_path):
    rep = tmp_path / "rep"
    with proxy(tls_scp.tls_port, rep, "--count", "1", *_tls_to(certs)) as px:
        _associate(px.port, None, store=False)
        assert px.wait() == 0, px.out
    [case] = report_of(rep)["scenarios"]
    assert case["outcome"] == "passed", case["failure"]
    assert list(case["association"]["tls"]) == ["acceptor"]
    assert [op["command"] for op in case["association"]["operations"]] == ["C-ECHO"]


def test_scp_certificate_not_verified_is_an_error_naming_tls(tls_scp, certs, tmp_path):
    rep = tmp_path / "rep"
    # no --tls-to-ca: the throwaway CA is not in the system's trust store
    with proxy(tls_scp.tls_port, rep, "--count", "1", "--tls-to", "--tls-to-server-name", "localhost") as px:
        ae = AE(ae_title="TLSSCU")
        ae.acse_timeout = ae.network_timeout = 5
        ae.add_requested_context(C.VERIFICATION_SOP_CLASS)
        assert not ae.associate("127.0.0.1", px.port, ae_title="DICOMCONF").is_established
        assert px.wait() == 1, px.out
    [case] = report_of(rep)["scenarios"]
    assert case["outcome"] == "error"
    assert "TLS with the acceptor failed" in case["failure"]["message"]
    assert "certificate" in case["failure"]["message"]


@pytest.mark.parametrize("args, words", [
    (["--tls-listen-cert", "x.pem"], "needs both --tls-listen-cert and --tls-listen-key"),
    (["--tls-to-ca", "ca.pem"], "--tls-to-ca needs --tls-to"),
    (["--tls-to", "--tls-to-cert", "c.pem"], "needs both --tls-to-cert and --tls-to-key"),
    (["--tls-listen-cert", "/nonexistent.pem", "--tls-listen-key", "/nonexistent.key"], "--tls-listen-cert"),
    (["--tls-to", "--tls-to-ca", "/nonexistent-ca.pem"], "/nonexistent-ca.pem"),
])
def test_bad_tls_options_are_one_line_usage_errors(args, words, tmp_path):
    done = subprocess.run([sys.executable, "-m", "dicomconf.cli", "proxy", "--listen", "0", "--to", "127.0.0.1:104",
                           "--report-dir", str(tmp_path / "r"), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 4
    assert "Traceback" not in done.stderr and words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _tshark() -> str | None:
    return shutil.which("tshark") or ("/usr/bin/tshark" if os.access("/usr/bin/tshark", os.X_OK) else None)


def _rsa_key(path) -> str:
    """Any RSA key: Wireshark 4.0's "RSA keys list" entry is its way to name the protocol inside TLS on a port."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return str(path)


@pytest.mark.skipif(_tshark() is None, reason="tshark is not installed")
def test_tshark_decodes_the_dicom_inside_a_tls_leg_only_with_the_key_log(tls_scp, certs, tmp_path):
    rep = tmp_path / "rep"
    with proxy(tls_scp.tls_port, rep, "--count", "1", *_tls_listen(certs), *_tls_to(certs)) as px:
        _associate(px.port, _scu_context(certs), store=False)
        assert px.wait() == 0, px.out
    [case] = report_of(rep)["scenarios"]
    rsa_key = _rsa_key(tmp_path / "any-rsa.key")
    for side, leg in case["association"]["tls"].items():
        port = tls_scp.tls_port if side == "acceptor" else px.port
        # TLS on the port, and DICOM inside it (the RSA key itself decrypts nothing: the suites are ECDHE)
        base = [_tshark(), "-r", str(rep / leg["pcap"]), "-d", f"tcp.port=={port},tls",
                "-o", f'uat:ssl_keys:"127.0.0.1","{port}","dicom","{rsa_key}",""']

        def pdu_types(*extra: str, base: list = base) -> set[int]:
            done = subprocess.run([*base, *extra, "-T", "fields", "-e", "dicom.pdu.type"],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return {int(t, 0) for line in done.stdout.split() for t in line.split(",") if t}

        with_keys = pdu_types("-o", f"tls.keylog_file:{rep / leg['keys']}")
        assert {1, 2, 4, 5, 6} <= with_keys, (side, with_keys)
        assert pdu_types() == set(), side  # without the key log: TLS records only


def test_faults_apply_to_the_plaintext_of_a_tls_leg(tls_scp, certs, tmp_path):
    faults = tmp_path / "faults.yaml"
    faults.write_text("faults:\n  - split: {bytes: 7, from: requestor, pdu: A-ASSOCIATE-RQ}\n")
    rep = tmp_path / "rep"
    with proxy(tls_scp.tls_port, rep, "--count", "1", "--faults", str(faults), *_tls_to(certs)) as px:
        _associate(px.port, None, store=False)  # the SCP reassembled the RQ from 7-byte TLS records
        assert px.wait() == 0, px.out
    [case] = report_of(rep)["scenarios"]
    assert case["outcome"] == "passed", case["failure"]
    assert [a["kind"] for a in case["association"]["faults_applied"]] == ["split"]
    # each 7-byte piece went out as its own TLS record (application data, 23) on the acceptor leg
    raw = _records(rep / case["association"]["tls"]["acceptor"]["pcap"])
    assert raw.count(b"\x17\x03\x03") >= 10


def test_required_client_certificate_on_the_requestor_leg(reference_scp, certs, tmp_path):
    rep = tmp_path / "rep"
    listen = [*_tls_listen(certs), "--tls-listen-ca", certs["ca"], "--tls-require-client-cert"]
    with proxy(reference_scp.port, rep, "--count", "2", *listen) as px:
        with_cert = _scu_context(certs)
        with_cert.load_cert_chain(certs["client"], certs["client_key"])
        _associate(px.port, with_cert, store=False)
        ae = AE(ae_title="TLSSCU")
        ae.acse_timeout = ae.network_timeout = 5
        ae.add_requested_context(C.VERIFICATION_SOP_CLASS)
        assert not ae.associate("127.0.0.1", px.port, ae_title="DICOMCONF",
                                tls_args=(_scu_context(certs), "localhost")).is_established
        assert px.wait() == 1, px.out
    cases = sorted(report_of(rep)["scenarios"], key=lambda c: c["id"])
    assert [c["outcome"] for c in cases] == ["passed", "error"], [c["failure"] for c in cases]
    assert "TLS with the requestor failed" in cases[1]["failure"]["message"]
