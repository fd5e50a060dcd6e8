"""TLS against a named target verifies the chain and the host name (PS3.15 B.1, RFC 6125).

The reference SCP serves TLS on loopback with certificates made for the test:
one for ``localhost``/127.0.0.1/::1, one for another name only.  The client
context of ``dicomconf.scu.tls`` must accept the first, refuse the second
unless told the name the certificate is for (``server_name``), refuse both
without the CA, and accept anything only when ``insecure``.
"""

from __future__ import annotations

import ssl

import pytest

from dicomconf.scenario.certs import self_signed
from dicomconf.scp.config import SCPConfig
from dicomconf.scp.runtime import run_in_thread
from dicomconf.scp.tls import TLSConfig
from dicomconf.scu.client import SCU
from dicomconf.scu.connection import Connection
from dicomconf.scu.tls import client_context

OTHER_NAME = "pacs.example.test"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two TLS listeners: certificate for loopback names, and for OTHER_NAME only."""
    base = tmp_path_factory.mktemp("tls")
    made = {}
    handles = []
    try:
        for label, names in (("loopback", ("localhost", "127.0.0.1", "::1")), ("other", (OTHER_NAME,))):
            cert, key = self_signed(base, names, stem=f"{label}-")
            handle = run_in_thread(SCPConfig(port=0, ae_titles=("TLS-SCP",), tls=TLSConfig(cert=cert, key=key, port=0)))
            handles.append(handle)
            made[label] = (handle.tls_port, cert)
        yield made
    finally:
        for handle in handles:
            handle.stop()


def _echo(port: int, ctx: ssl.SSLContext, host: str = "127.0.0.1", server_name: str | None = None) -> int:
    with Connection.open(host, port, tls=ctx, timeout=5, server_name=server_name) as conn:
        scu = SCU(conn, calling_ae="TLS-SCU", called_ae="TLS-SCP")
        scu.associate(["verification"])
        status = scu.echo()
        scu.release()
    return status


def test_chain_and_host_name_verified(servers):
    port, cert = servers["loopback"]
    ctx = client_context(ca=cert)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert _echo(port, ctx, "127.0.0.1") == 0
    assert _echo(port, ctx, "localhost") == 0


def test_certificate_for_another_name_is_refused(servers):
    port, cert = servers["other"]
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch|hostname mismatch"):
        _echo(port, client_context(ca=cert), "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _echo(port, client_context(ca=cert), "localhost")


def test_server_name_names_the_certificate(servers):
    port, cert = servers["other"]
    assert _echo(port, client_context(ca=cert), "127.0.0.1", server_name=OTHER_NAME) == 0


def test_unknown_issuer_is_refused(servers):
    port, _ = servers["loopback"]
    with pytest.raises(ssl.SSLCertVerificationError, match="self.signed|unable to get local issuer"):
        _echo(port, client_context(), "127.0.0.1")


def test_insecure_accepts_anything(servers):
    for label in ("loopback", "other"):
        port, _ = servers[label]
        ctx = client_context(insecure=True)
        assert not ctx.check_hostname and ctx.verify_mode == ssl.CERT_NONE
        assert _echo(port, ctx, "127.0.0.1") == 0


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot load the CA file"):
        client_context(ca=str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ValueError, match="cannot load the client certificate"):
        client_context(cert=str(junk), key=str(junk))
    with pytest.raises(ValueError, match="both --tls-cert and --tls-key"):
        client_context(cert=str(junk))
