"""TLS listener beside the plain one, with and without client certificates (PS3.15 B.1)."""

from __future__ import annotations

import ssl

import pytest

from dicomconf.scp.config import TLSConfig
from dicomconf.ul import constants as C

pynetdicom = pytest.importorskip("pynetdicom")
from pynetdicom import AE  # noqa: E402

pytestmark = pytest.mark.network


def _client_context(certs, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certs["ca"])
    if with_cert:
        ctx.load_cert_chain(certs["client"], certs["client_key"])
    return ctx


def _echo(port: int, tls_ctx: ssl.SSLContext | None) -> bool:
    a = AE(ae_title="TLSSCU")
    a.acse_timeout = a.dimse_timeout = a.network_timeout = 5
    a.add_requested_context(C.VERIFICATION_SOP_CLASS)
    assoc = a.associate("127.0.0.1", port, ae_title="DICOMCONF",
                        tls_args=(tls_ctx, "localhost") if tls_ctx else None)
    if not assoc.is_established:
        return False
    ok = assoc.send_c_echo().Status == 0x0000
    assoc.release()
    return ok


def test_tls_and_plain_listeners_side_by_side(scp_factory, certificates):
    handle = scp_factory(tls=TLSConfig(cert=certificates["server"], key=certificates["server_key"], port=0))
    assert handle.tls_port and handle.tls_port != handle.port
    assert _echo(handle.tls_port, _client_context(certificates, with_cert=False))
    assert _echo(handle.port, None)


def test_required_client_certificate(scp_factory, certificates):
    handle = scp_factory(tls=TLSConfig(cert=certificates["server"], key=certificates["server_key"],
                                       ca=certificates["ca"], require_client_cert=True, port=0))
    assert _echo(handle.tls_port, _client_context(certificates, with_cert=True))
    assert not _echo(handle.tls_port, _client_context(certificates, with_cert=False))
    # the failed handshake did not hurt the listener
    assert _echo(handle.tls_port, _client_context(certificates, with_cert=True))


def test_plain_bytes_on_the_tls_port_are_dropped(scp_factory, certificates):
    from scp_testkit import RawClient, associate_rq

    handle = scp_factory(tls=TLSConfig(cert=certificates["server"], key=certificates["server_key"], port=0))
    with RawClient(handle.tls_port) as client:
        client.send(associate_rq())
        assert client.wait_closed(5) is not None
    assert _echo(handle.tls_port, _client_context(certificates, with_cert=False))


def test_stalled_tls_handshake_is_closed_and_delays_nobody(scp_factory, certificates):
    from scp_testkit import RawClient

    handle = scp_factory(artim_timeout=1.0,
                         tls=TLSConfig(cert=certificates["server"], key=certificates["server_key"], port=0))
    with RawClient(handle.tls_port) as stalled:
        assert _echo(handle.tls_port, _client_context(certificates, with_cert=False))  # served meanwhile
        assert stalled.wait_closed(4.0) is not None, "a client that never finishes the handshake was kept"


def _config_file(tmp_path, certificates, extra: str):
    import shutil

    for name in ("server", "server_key"):
        shutil.copy(certificates[name], tmp_path / f"{name}.pem")
    path = tmp_path / "scp.yaml"
    path.write_text("tls:\n  cert: server.pem\n  key: server_key.pem\n  port: 0\n" + extra)
    return path


def _tls10_client() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def test_configuration_file_loosens_the_profile_for_old_clients(scp_factory, certificates, tmp_path):
    """tls.min_version / tls.ciphers let old TLS 1.0 modalities in; without them the profile refuses them."""
    from dicomconf.scp.config import SCPConfig

    loose = SCPConfig.from_yaml(str(_config_file(tmp_path, certificates,
                                                 "  min_version: TLSv1\n  ciphers: 'DEFAULT:@SECLEVEL=0'\n")))
    assert (loose.tls.min_version, loose.tls.ciphers) == ("TLSv1", "DEFAULT:@SECLEVEL=0")
    strict = scp_factory(tls=TLSConfig(cert=certificates["server"], key=certificates["server_key"], port=0))
    assert not _echo(strict.tls_port, _tls10_client())
    handle = scp_factory(tls=loose.tls)
    if not _echo(handle.tls_port, _tls10_client()):
        pytest.skip(f"this machine's OpenSSL ({ssl.OPENSSL_VERSION}) cannot make a TLS 1.0 handshake at all")
    assert _echo(handle.tls_port, _client_context(certificates, with_cert=False))  # TLS 1.2+ clients still served


@pytest.mark.parametrize("extra, line, words", [
    ("  min_version: TLSv0.9\n", 1, "unknown TLS version"),
    ("  ciphers: NO-SUCH-SUITE\n", 1, "selects no cipher suite"),
    ("  ciphers: 12\n", 5, "tls.ciphers must be a string"),
])
def test_bad_loosening_fails_with_file_and_line(certificates, tmp_path, extra, line, words):
    from dicomconf.scp.config import ConfigError, SCPConfig

    path = _config_file(tmp_path, certificates, extra)
    with pytest.raises(ConfigError) as info:
        SCPConfig.from_yaml(str(path))
    assert f"{path}:{line}" in str(info.value) and words in str(info.value)
