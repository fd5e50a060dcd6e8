"""``dicomconf probe`` against the reference SCP in three configurations, field by field.

Each test starts the reference SCP in this process from a known
:class:`SCPConfig`, probes it, loads what the probe wrote with
``load_profile`` and checks every field against what the configuration
makes the SCP do (computed from the configuration, never written out by
hand): AE title checks, SOP classes and transfer syntaxes, roles, maximum
length, user identity, the asynchronous operations window, TLS, the
association limit and the timers.  The configurations differ in every one
of those.
"""

from __future__ import annotations

import re
import time

import pytest
from pydicom import uid as U

from dicomconf.probe.probe import GENTLE_MAX, SOP_CLASSES, TRANSFER_SYNTAXES
from dicomconf.scenario.profile import load_profile, reference_profile
from dicomconf.scp.config import SCPConfig, TLSConfig
from dicomconf.scu.client import resolve_uid
from dicomconf.ul.negotiation import DEFAULT_ROLES, default_supported

pytestmark = pytest.mark.network

ASKED_SOP = {resolve_uid(n) for n in SOP_CLASSES}
ASKED_TS = set(TRANSFER_SYNTAXES)


def _uids(names, what="SOP class"):
    return {resolve_uid(n, what=what) for n in names}


def _is_storage(uid: str) -> bool:
    """Verification aside, the core's default SOP classes are the storage ones (PS3.4 B.5)."""
    return uid != resolve_uid("verification") and uid in default_supported()


def assert_matches(got, cfg: SCPConfig, *, port: int, policy, tls_port=None, users=None, limits=False, timers=False):
    """Every field of the probed profile ``got`` against what ``cfg`` makes the reference SCP answer
    (``policy``: the SCP's acceptor policy, which adds the contexts and roles of its services)."""
    assert got.target is not None and (got.target.host, got.target.port) == ("127.0.0.1", port)
    assert got.target.tls_port == tls_port
    assert got.ae_title == cfg.ae_titles[0]
    assert got.checks_called_ae is cfg.require_called_ae
    assert got.checks_calling_ae is (cfg.allowed_calling_aes is not None)
    supported = {a: set(t) for a, t in policy.supported.items() if a in ASKED_SOP}
    assert _uids(got.sop_classes) == set(supported)
    storage = [a for a in supported if _is_storage(a)]
    common = set.intersection(*(supported[a] for a in storage)) & ASKED_TS
    assert _uids(got.transfer_syntaxes, "transfer syntax") == common
    want_roles = {}
    for sop in storage:
        scu, scp = policy.roles.get(sop, DEFAULT_ROLES)
        want_roles[sop] = tuple(r for r, ok in (("scu", scu), ("scp", scp)) if ok)
    assert {resolve_uid(k): tuple(v) for k, v in got.roles.items()} == want_roles
    assert got.max_pdu_length == cfg.max_pdu_length
    assert got.user_identity is (cfg.users is not None)
    assert dict(got.users) == (users or {})
    assert got.async_window == (tuple(cfg.async_window) if cfg.async_window else None)
    assert got.tls.enabled is cfg.tls.enabled
    if cfg.tls.enabled:
        assert got.tls.port == tls_port
        assert got.tls.client_cert_required is cfg.tls.require_client_cert
    assert got.max_associations == (cfg.max_associations if limits else None)
    if timers:
        assert got.timers.artim == pytest.approx(cfg.artim_timeout, abs=0.5)
        assert got.timers.idle == pytest.approx(cfg.idle_timeout, abs=0.5)
    else:
        assert (got.timers.artim, got.timers.idle) == (None, None)


def assert_commented(text: str) -> None:
    """Every line of the profile is a comment or carries one (how the value was found)."""
    for line in text.splitlines():
        assert line.lstrip().startswith("#") or " # " in line, line


def settled(handle, within: float = 3.0) -> bool:
    """True once the SCP holds no association: every one the probe opened was ended (it sees closes a
    moment after the probe made them)."""
    deadline = time.monotonic() + within
    while handle.scp.active and time.monotonic() < deadline:
        time.sleep(0.01)
    return handle.scp.active == 0


def _gentle_count(text: str) -> int:
    return int(re.search(r"\((\d+) gentle", text).group(1))


def test_builtin_reference_profile_with_tls_user_limits_and_timers(reference, probe, certs):
    """The embedded target's own configuration: AE titles checked (case matters), four SOP classes, two
    transfer syntaxes, CT SCU / MR SCU+SCP roles, a user, a 4/4 window, TLS, three associations, 2 s / 4 s."""
    cert, key, *_ = certs
    profile = reference_profile()
    cfg = profile.scp_config(port=0, tls_port=0, cert=cert, key=key)
    handle = reference(cfg)
    user = min(profile.users)
    got = probe("--target", f"127.0.0.1:{handle.port}", "--called-ae", profile.ae_title,
                "--tls-port", str(handle.tls_port), "--tls-ca", cert,
                "--user", f"{user}:{profile.users[user]}", "--limits", "--timers")
    assert got.code == 0, got.stderr
    loaded = load_profile(got.path)
    assert_matches(loaded, cfg, port=handle.port, policy=handle.scp.policy, tls_port=handle.tls_port,
                   users={user: profile.users[user]},
                   limits=True, timers=True)
    assert loaded.tls.ca == cert
    assert_commented(got.text)
    assert re.search(r"^checks_called_ae: true .*case matters", got.text, re.M)
    assert re.search(r"^name: .*DICOMCONF_010", got.text, re.M)
    # What the hand-written built-in profile claims, the probe found too.
    for key in ("ae_title", "calling_ae", "checks_called_ae", "checks_calling_ae", "max_associations",
                "max_pdu_length", "user_identity", "users", "async_window"):
        assert getattr(loaded, key) == getattr(profile, key), key
    assert _uids(loaded.sop_classes) == _uids(profile.sop_classes)
    assert {k: v for k, v in loaded.roles.items() if k in profile.roles} == dict(profile.roles)
    assert _gentle_count(got.text) <= GENTLE_MAX
    assert settled(handle)


def test_open_reference_with_mixed_syntaxes_roles_and_no_identity_check(reference, probe):
    """No AE title checks, unlimited maximum length, per-class transfer syntaxes (the profile's are those
    every storage class takes), an SCP-only role for US, identity accepted unchecked, no window, no TLS,
    no association limit up to --limit-max."""
    implicit, explicit = U.ImplicitVRLittleEndian, U.ExplicitVRLittleEndian
    cfg = SCPConfig(
        port=0,
        ae_titles=("OPEN-SCP",),
        require_called_ae=False,
        supported={
            resolve_uid("verification"): (implicit,),
            resolve_uid("ct"): (implicit, explicit, U.JPEGBaseline8Bit),
            resolve_uid("us"): (explicit, implicit),
            resolve_uid("study-find"): (implicit,),
        },
        roles={resolve_uid("us"): (False, True)},
        max_pdu_length=0,
        storage="discard",
    )
    handle = reference(cfg)
    got = probe("--target", f"127.0.0.1:{handle.port}", "--called-ae", "OPEN-SCP", "--limits", "--limit-max", "4")
    assert got.code == 0, got.stderr
    loaded = load_profile(got.path)
    assert_matches(loaded, cfg, port=handle.port, policy=handle.scp.policy, limits=True)
    assert_commented(got.text)
    assert re.search(r"^  # ct also accepts JPEGBaseline8Bit", got.text, re.M)
    assert re.search(r"^max_associations: null .*all accepted", got.text, re.M)
    assert re.search(r"^user_identity: false .*accepted with a User Identity sub-item \(59H\)", got.text, re.M)
    assert re.search(r"^async_window: null ", got.text, re.M)
    assert settled(handle)


def test_strict_reference_with_client_certificates_and_a_small_limit(reference, probe, certs):
    """Called AE title checked but not the calling one, every storage class with every transfer syntax,
    a 32 KiB maximum length, a user without passcode, a 2/3 window, TLS requiring a client certificate,
    an association limit of 2."""
    cert, key, client_cert, client_key = certs
    cfg = SCPConfig(
        port=0,
        ae_titles=("PACS",),
        require_called_ae=True,
        max_pdu_length=32768,
        users={"alice": None},
        async_window=(2, 3),
        max_associations=2,
        storage="discard",
        tls=TLSConfig(cert=cert, key=key, ca=client_cert, require_client_cert=True, port=0),
    )
    handle = reference(cfg)
    got = probe("--target", f"127.0.0.1:{handle.port}", "--called-ae", "PACS",
                "--tls-port", str(handle.tls_port), "--tls-ca", cert, "--tls-cert", client_cert,
                "--tls-key", client_key, "--user", "alice", "--limits")
    assert got.code == 0, got.stderr
    loaded = load_profile(got.path)
    assert_matches(loaded, cfg, port=handle.port, policy=handle.scp.policy, tls_port=handle.tls_port,
                   users={"alice": None}, limits=True)
    assert (loaded.tls.cert, loaded.tls.key) == (client_cert, client_key)
    assert_commented(got.text)
    assert len(loaded.sop_classes) == sum(u in handle.scp.policy.supported for u in ASKED_SOP)
    assert re.search(r"^max_associations: 2 .*\(2, 3, 2\)", got.text, re.M)
    assert _gentle_count(got.text) <= GENTLE_MAX
    assert settled(handle)
