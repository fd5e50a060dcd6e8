"""``dicomconf probe`` against DCMTK's and pynetdicom's ``storescp``, field by field against the
hand-written ``scripts/targets/{dcmtk,pynetdicom}.profile.yaml``.

Both targets are started as ``scripts/targets/targets.py`` starts them and stopped by their process
id.  Where the hand-written profile claims less than the target does, the probed value is checked
against the target's own configuration instead (pynetdicom's, read from pynetdicom itself), and
where it claims what the target does not do, against what the target was seen to do:

- pynetdicom's ``storescp`` accepts every transfer syntax of pynetdicom's ``ALL_TRANSFER_SYNTAXES``
  (compressed ones included), not only the four the hand-written profile lists;
- both accept every storage SOP class, of which the hand-written profiles list three;
- DCMTK 3.6.7's ``storescp -td 6`` does not end an idle association after 6 s: it logs "setting
  network receive timeout to 60 seconds" at start and closes an idle association (TCP FIN, no
  A-ABORT) about 60 s after the A-ASSOCIATE-AC.  The probe here waits at most 15 s
  (``--timer-max 15``) and must find no idle timer within that time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomconf.probe.probe import SOP_CLASSES, TRANSFER_SYNTAXES
from dicomconf.scenario.profile import load_profile
from dicomconf.scu.client import resolve_uid
from dicomconf.ul.negotiation import default_supported

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[2]
ASKED_SOP = [resolve_uid(n) for n in SOP_CLASSES]
VERIFICATION = resolve_uid("verification")
STORAGE = {u for u in ASKED_SOP if u != VERIFICATION and u in default_supported()}


def _uids(names, what="SOP class"):
    return {resolve_uid(n, what=what) for n in names}


def _probe_and_load(probe, aet: str, port: int, *extra: str):
    got = probe("--target", f"127.0.0.1:{port}", "--called-ae", aet, "--limits", "--timers", *extra)
    assert got.code == 0, got.stderr
    return got, load_profile(got.path)


def _same_claims(probed, hand, *, skip: set[str]) -> None:
    """Fields that must equal the hand-written profile's (``skip`` are checked by the caller)."""
    for key in ("ae_title", "calling_ae", "checks_called_ae", "checks_calling_ae", "max_associations",
                "max_pdu_length", "user_identity", "users", "async_window"):
        if key not in skip:
            assert getattr(probed, key) == getattr(hand, key), key
    assert dict(probed.roles) == dict(hand.roles)
    assert probed.tls.enabled is hand.tls.enabled
    assert probed.timers.artim == pytest.approx(hand.timers.artim, abs=0.5)
    assert _uids(hand.sop_classes) <= _uids(probed.sop_classes)
    assert _uids(probed.sop_classes) == STORAGE | {VERIFICATION}


def test_dcmtk_storescp(third_party, targets, probe):
    _pid, port = third_party("dcmtk")
    got, probed = _probe_and_load(probe, targets.AE_TITLE, port, "--timer-max", "15")
    hand = load_profile(REPO / "scripts" / "targets" / "dcmtk.profile.yaml")
    _same_claims(probed, hand, skip=set())
    assert _uids(probed.transfer_syntaxes, "transfer syntax") == _uids(hand.transfer_syntaxes, "transfer syntax")
    assert probed.timers.idle is None  # no idle timer within 15 s (see the module docstring)
    assert "OFFIS_DCMTK" in probed.name
    assert "association 2 got no A-ASSOCIATE-AC or -RJ" in got.text  # one at a time: the next one waits


def test_pynetdicom_storescp(third_party, targets, probe):
    from pynetdicom._globals import ALL_TRANSFER_SYNTAXES

    _pid, port = third_party("pynetdicom")
    got, probed = _probe_and_load(probe, targets.AE_TITLE, port)
    hand = load_profile(REPO / "scripts" / "targets" / "pynetdicom.profile.yaml")
    _same_claims(probed, hand, skip=set())
    assert probed.timers.idle == pytest.approx(hand.timers.idle, abs=0.5)
    probed_ts = _uids(probed.transfer_syntaxes, "transfer syntax")
    assert _uids(hand.transfer_syntaxes, "transfer syntax") <= probed_ts
    assert probed_ts == set(TRANSFER_SYNTAXES) & set(ALL_TRANSFER_SYNTAXES)
    assert "PYNETDICOM" in probed.name
    assert "(2, 3, 2) local-limit-exceeded" in got.text
