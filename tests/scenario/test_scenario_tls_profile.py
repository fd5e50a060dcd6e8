"""The TLS profile checks (PS3.15 B.10, B.12): the reference SCP passes them, weak servers fail them.

Theory of operation
-------------------
The scenarios of ``scenarios/tls/tls-profile.yaml`` are played in this
process by the requestor (:class:`dicomconf.scenario.requestor.Runner`)
against reference SCPs on 127.0.0.1 (free ports, each stopped by the test):
one configured as the profile defaults it (TLS 1.2+, the four ECDHE AES-GCM
suites), which must pass every check, and deliberately weak ones (TLS 1.0
allowed, NULL-encryption or anonymous suites accepted, no client
certificate asked for, a certificate for another name), each of which must
fail exactly the checks it breaks.  Offers this machine's OpenSSL cannot
make, a closed port and a listener that never answers the handshake make a
check inconclusive, never passed.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest

from dicomconf.scenario.engine import Inconclusive, ScenarioFailure, Target
from dicomconf.scenario.loader import SourceError
from dicomconf.scenario.model import load_file
from dicomconf.scenario.profile import Profile, TLSSettings
from dicomconf.scenario.requestor import Runner
from dicomconf.scp.config import SCPConfig
from dicomconf.scp.runtime import run_in_thread
from dicomconf.scp.tls import TLSConfig, server_context
from dicomconf.scu import tls as scu_tls
from dicomconf.scu.tls import client_context
from dicomconf.ul import tls_profile

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "scenarios" / "tls" / "tls-profile.yaml"
AE = "TLS-PROFILE"
CHECKS = ("tls.tls-1-0-refused", "tls.tls-1-1-refused", "tls.tls-1-2-supported", "tls.null-and-export-suites-refused",
          "tls.anonymous-suites-refused", "tls.certificate-valid-for-name", "tls.client-certificate-required")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Server certificates for loopback names and for another name only, and a client certificate."""
    certs_mod = pytest.importorskip("dicomconf.scenario.certs")
    base = tmp_path_factory.mktemp("tls-profile")
    try:
        made = {
            "server": certs_mod.self_signed(base, stem="server-"),
            "other": certs_mod.self_signed(base, ("pacs.example.test",), stem="other-"),
            "client": certs_mod.self_signed(base, ("dicomconf-scu",), stem="client-"),
        }
    except certs_mod.TLSUnavailable as exc:
        pytest.skip(str(exc))
    return made


@pytest.fixture(scope="module")
def scenarios():
    entries = load_file(LIBRARY)
    assert all(e.error is None for e in entries), [str(e.error) for e in entries if e.error]
    found = {e.scenario.id: e.scenario for e in entries}
    assert tuple(found) == CHECKS
    return found


class Server:
    """A reference SCP with a TLS listener on 127.0.0.1; ``stop`` ends it."""

    def __init__(self, certs: dict, *, cert: str = "server", **tls: object) -> None:
        server_cert, server_key = certs[cert]
        config = TLSConfig(cert=server_cert, key=server_key, port=0, **tls)  # type: ignore[arg-type]
        self.handle = run_in_thread(SCPConfig(port=0, ae_titles=(AE,), tls=config))
        self.server_cert = server_cert

    def stop(self) -> None:
        self.handle.stop()


@pytest.fixture
def serve(certs):
    servers: list[Server] = []

    def start(**tls: object) -> Server:
        server = Server(certs, **tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _target(server: Server, certs: dict, *, insecure: bool = False, tls_port: int | None = None) -> Target:
    client_cert, client_key = certs["client"]
    ctx = client_context(ca=server.server_cert, cert=client_cert, key=client_key, insecure=insecure)
    port = server.handle.tls_port if tls_port is None else tls_port
    return Target("127.0.0.1", server.handle.port, port, ctx, "test SCP", AE, "TLS-SCU")


def _profile(server: Server, certs: dict) -> Profile:
    client_cert, client_key = certs["client"]
    tls = TLSSettings(enabled=True, port=server.handle.tls_port, ca=server.server_cert, cert=client_cert,
                      key=client_key, client_cert_required=True)
    return Profile(ae_title=AE, calling_ae="TLS-SCU", tls=tls)


def _play(scenario, server: Server, certs: dict, **target: object) -> tuple[str, str, Runner]:
    """Play one scenario: ("passed" | "failed" | "inconclusive", message, the runner)."""
    runner = Runner(scenario, _profile(server, certs), _target(server, certs, **target))  # type: ignore[arg-type]
    try:
        runner.run(None, time_limit=30)
    except ScenarioFailure as exc:
        return "failed", exc.render(), runner
    except Inconclusive as exc:
        return "inconclusive", str(exc), runner
    return "passed", "", runner


def _verdicts(scenarios: dict, server: Server, certs: dict, **target: object) -> dict[str, tuple[str, str]]:
    out = {}
    for sid, scenario in scenarios.items():
        verdict, message, _ = _play(scenario, server, certs, **target)
        out[sid] = (verdict, message)
    return out


# ---------------------------------------------------------------- the profile's contexts


def test_server_and_client_contexts_follow_the_profile(certs):
    cert, key = certs["server"]
    for ctx in (server_context(TLSConfig(cert=cert, key=key, port=0)), client_context(ca=cert)):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert tls_profile.tls12_suites(ctx) == [openssl for _, openssl in tls_profile.CIPHER_SUITES]
        assert ctx.options & ssl.OP_NO_COMPRESSION and ctx.options & ssl.OP_NO_RENEGOTIATION
    server = server_context(TLSConfig(cert=cert, key=key, port=0))
    assert server.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    loose = client_context(ca=cert, ciphers="ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256")
    assert tls_profile.tls12_suites(loose) == ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"]
    with pytest.raises(ValueError, match="selects no cipher suite"):
        client_context(ca=cert, ciphers="NO-SUCH-SUITE")


def test_profile_ciphers_reach_the_client_context(tmp_path, certs):
    from dicomconf.scenario.profile import load_profile
    from dicomconf.scenario.target_setup import TargetOptions, TargetSetupError, client_tls

    cert, _ = certs["server"]
    path = tmp_path / "p.yaml"
    path.write_text(f"tls: {{port: 2762, ca: {cert}, ciphers: ECDHE-ECDSA-AES256-GCM-SHA384}}\n")
    ctx = client_tls(TargetOptions(), load_profile(path))
    assert tls_profile.tls12_suites(ctx) == ["ECDHE-ECDSA-AES256-GCM-SHA384"]
    path.write_text(f"tls: {{port: 2762, ca: {cert}, ciphers: NO-SUCH-SUITE}}\n")
    with pytest.raises(TargetSetupError, match="TLS: the cipher list 'NO-SUCH-SUITE' selects no cipher suite"):
        client_tls(TargetOptions(), load_profile(path))


# ---------------------------------------------------------------- the reference SCP


def test_reference_scp_passes_every_check(scenarios, serve, certs):
    server = serve(ca=certs["client"][0], require_client_cert=True)
    verdicts = _verdicts(scenarios, server, certs)
    assert verdicts == {sid: ("passed", "") for sid in CHECKS}


def test_refusals_say_what_was_offered_and_how_it_was_refused(scenarios, serve, certs):
    server = serve(ca=certs["client"][0], require_client_cert=True)
    verdict, _, runner = _play(scenarios["tls.null-and-export-suites-refused"], server, certs)
    assert verdict == "passed"
    line = runner.trace[-1]["what"]
    assert "offered TLSv1.2 only" in line and "NULL" in line and "handshake refused" in line
    if not scu_tls._suites("EXP"):  # OpenSSL >= 1.1.0 has no export suites: the report says so
        assert "EXP: no such suite in this OpenSSL" in line
    # TLS 1.3: the missing client certificate is refused after the client's Finished
    verdict, _, runner = _play(scenarios["tls.client-certificate-required"], server, certs)
    assert verdict == "passed"
    assert "no client certificate" in runner.trace[-1]["what"]
    assert "handshake refused" in runner.trace[-1]["what"]


# ---------------------------------------------------------------- weak servers


# name: (the weak server's TLS settings, {check that must fail: what its failure names});
# "client_ca": the server asks for a client certificate that our client certificate passes.
WEAK = {
    "tls-1.0-and-1.1-allowed": ({"min_version": "TLSv1", "ciphers": "DEFAULT:@SECLEVEL=0", "client_ca": True},
                                {"tls.tls-1-0-refused": "TLSv1,", "tls.tls-1-1-refused": "TLSv1.1,"}),
    "null-encryption-accepted": ({"ciphers": f"{tls_profile.CIPHERS}:eNULL:@SECLEVEL=0", "client_ca": True},
                                 {"tls.null-and-export-suites-refused": "NULL"}),
    # a server that asks for a client certificate cannot choose an anonymous suite: this one asks none;
    # AECDH-NULL-SHA (anonymous and unencrypted) is left out, or the NULL check fails too, rightly
    "anonymous-accepted": ({"ciphers": f"{tls_profile.CIPHERS}:aNULL:!eNULL:@SECLEVEL=0"},
                           {"tls.anonymous-suites-refused": "AECDH",
                            "tls.client-certificate-required": "TLSv1.3"}),
    "no-client-certificate-asked": ({}, {"tls.client-certificate-required": "TLSv1.3"}),
}


@pytest.mark.parametrize("name", list(WEAK))
def test_weak_server_fails_exactly_the_checks_it_breaks(name, scenarios, serve, certs):
    tls, failing = dict(WEAK[name][0]), WEAK[name][1]
    if tls.pop("client_ca", False):
        tls.update(ca=certs["client"][0], require_client_cert=True)
    server = serve(**tls)
    verdicts = _verdicts(scenarios, server, certs)
    for sid in CHECKS:
        verdict, message = verdicts[sid]
        if sid in failing:
            assert verdict == "failed", (sid, verdicts[sid])
            assert "completed a TLS handshake it should refuse" in message and failing[sid] in message, message
        else:
            assert verdict == "passed", (sid, verdicts[sid])


def test_certificate_for_another_name_fails_and_an_insecure_run_cannot_say(scenarios, serve, certs):
    server = serve(cert="other")
    verdict, message, _ = _play(scenarios["tls.certificate-valid-for-name"], server, certs)
    assert verdict == "failed" and "IP address mismatch" in message
    verdict, message, _ = _play(scenarios["tls.certificate-valid-for-name"], server, certs, insecure=True)
    assert verdict == "inconclusive" and "does not verify the target's certificate" in message


# ---------------------------------------------------------------- what proves nothing


def test_offers_this_openssl_cannot_make_are_inconclusive(scenarios, serve, certs, monkeypatch):
    server = serve()
    monkeypatch.setattr(ssl, "HAS_TLSv1", False)
    verdict, message, _ = _play(scenarios["tls.tls-1-0-refused"], server, certs)
    assert verdict == "inconclusive" and "cannot offer TLSv1.0" in message
    if scu_tls._suites("EXP"):
        pytest.skip("this OpenSSL still has export suites")
    with pytest.raises(scu_tls.ProbeUnavailable, match="no cipher suite for EXP"):
        scu_tls.variant(_target(server, certs).tls_context, ciphers="EXP")


def test_closed_port_and_silent_listener_are_inconclusive(scenarios, serve, certs):
    server = serve()
    closed = socket.create_server(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    scenario = scenarios["tls.tls-1-0-refused"]
    probe = scenario.steps[-1]
    runner = Runner(scenario, _profile(server, certs), _target(server, certs, tls_port=closed_port))
    with pytest.raises(Inconclusive, match="no TCP connection"):
        runner.run_steps((probe,), {})

    silent = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        step = type(probe)(probe.kind, {**probe.args, "within": "300ms"}, probe.file, probe.line, probe.path)
        runner = Runner(scenario, _profile(server, certs), _target(server, certs, tls_port=silent.getsockname()[1]))
        with pytest.raises(Inconclusive, match="neither completed nor refused"):
            runner.run_steps((step,), {})
    finally:
        stop.set()
        thread.join()
        silent.close()
        for conn in held:
            conn.close()


def test_a_context_not_made_by_client_context_cannot_be_varied(scenarios, serve, certs):
    server = serve()
    target = _target(server, certs)
    plain = Target(target.host, target.port, target.tls_port, ssl.create_default_context(), "plain", AE, "TLS-SCU")
    runner = Runner(scenarios["tls.tls-1-0-refused"], _profile(server, certs), plain)
    with pytest.raises(Inconclusive, match="not made by dicomconf.scu.tls.client_context"):
        runner.run_steps((scenarios["tls.tls-1-0-refused"].steps[-1],), {})


# ---------------------------------------------------------------- the step's schema


@pytest.mark.parametrize("step, message", [
    ("connect: {refused: true}", "refuses a TLS handshake"),
    ("connect: {tls: {version: TLSv9}, refused: true}", "TLSv9"),
    ("connect: {tls: false, refused: true}", "give tls: true or a TLS offer"),
    ("connect: {tls: {cipher: NULL}}", "cipher"),
    ("connect: {tls: true, refused: false}", "refused"),
])
def test_bad_tls_offers_are_scenario_errors_with_their_line(tmp_path, step, message):
    path = tmp_path / "bad.yaml"
    path.write_text("id: tls.bad\ntitle: a bad offer\nclauses: [PS3.15 B.12]\nseverity: should\narea: tls\n"
                    f"steps:\n  - connect: {{tls: true}}\n  - {step}\n")
    (entry,) = load_file(path)
    assert entry.error is not None and isinstance(entry.error, SourceError)
    text = str(entry.error)
    assert f"{path}:8" in text and message in text, text
