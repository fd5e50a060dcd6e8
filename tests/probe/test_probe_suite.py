"""Suite verdicts with a probed profile equal those with the hand-written one.

For DCMTK's ``storescp`` and for the reference SCP (its built-in configuration, with TLS), the target
is probed with ``--limits --timers``, then the shipped suite runs against it (``pytest scenarios/
--target ... --profile ...`` in a subprocess) once with the hand-written profile and once with the
probed one, and the outcome of every scenario is compared.

Both must give identical verdicts.  (DCMTK 3.6.7 ends an idle association only after its 60 s
socket timeout, not after ``-td 6``: the hand-written profile says ``idle: null`` and the probe,
waiting at most 15 s here to keep the test short, finds no idle timer either.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dicomconf.scenario.profile import load_profile, reference_profile, unmet

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[2]


def suite(target: str, profile: Path, called_ae: str, report: Path) -> dict[str, str]:
    """Outcome per scenario id of the shipped suite against ``target`` with ``profile``."""
    argv = [sys.executable, "-m", "pytest", str(REPO / "scenarios"), "-p", "dicomconf.pytest_plugin", "-q",
            "-p", "no:cacheprovider", "--target", target, "--profile", str(profile), "--called-ae", called_ae,
            "--report-dir", str(report)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    path = report / "report.json"
    assert path.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(path.read_text(encoding="utf-8"))
    return {s["id"]: s["outcome"] for s in data["scenarios"]}


def requires_by_id() -> dict[str, dict]:
    """The ``requires`` of each scenario that tests an SCP (those that test an SCU name SCU profile
    fields, and skip alike in both runs: no SCU under test is named)."""
    out: dict[str, dict] = {}
    for path in (REPO / "scenarios").rglob("*.yaml"):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for scenario in doc if isinstance(doc, list) else [doc]:
            if scenario.get("role") != "scp":
                out[scenario["id"]] = scenario.get("requires") or {}
    return out


def compare(hand_path: Path, probed_path: Path, hand: dict[str, str], probed: dict[str, str]) -> set[str]:
    """Scenario ids whose outcome differs; each must be one exactly one of the two profiles skips."""
    assert set(hand) == set(probed) and len(hand) >= 30
    differ = {i for i in hand if hand[i] != probed[i]}
    hand_profile, probed_profile = load_profile(hand_path), load_profile(probed_path)
    requires = requires_by_id()
    explained = {i for i in hand if i in requires
                 and (unmet(hand_profile, requires[i]) is None) != (unmet(probed_profile, requires[i]) is None)}
    assert differ <= explained, {i: (hand[i], probed[i]) for i in differ - explained}
    return differ


def test_dcmtk_verdicts_probed_equal_hand_written(third_party, targets, probe, tmp_path):
    aet = targets.AE_TITLE
    pid, port = third_party("dcmtk")
    got = probe("--target", f"127.0.0.1:{port}", "--called-ae", aet, "--limits", "--timers", "--timer-max", "15")
    assert got.code == 0, got.stderr
    targets.stop(pid)
    hand_path = REPO / "scripts" / "targets" / "dcmtk.profile.yaml"
    outcomes = []
    for name, profile in (("hand", hand_path), ("probed", got.path)):
        pid, port = third_party("dcmtk")
        outcomes.append(suite(f"127.0.0.1:{port}", profile, aet, tmp_path / name))
        targets.stop(pid)
    assert compare(hand_path, got.path, *outcomes) == set()
    assert sum(o == "passed" for o in outcomes[1].values()) >= 30


def test_reference_verdicts_probed_equal_hand_written(reference, probe, certs, tmp_path):
    cert, key, *_ = certs
    profile = reference_profile()
    handle = reference(profile.scp_config(port=0, tls_port=0, cert=cert, key=key))
    user = min(profile.users)
    got = probe("--target", f"127.0.0.1:{handle.port}", "--called-ae", profile.ae_title,
                "--tls-port", str(handle.tls_port), "--tls-ca", cert, "--user", f"{user}:{profile.users[user]}",
                "--limits", "--timers")
    assert got.code == 0, got.stderr
    built_in = yaml.safe_load((REPO / "dicomconf" / "scenario" / "reference-profile.yaml").read_text(encoding="utf-8"))
    built_in["tls"] = {"enabled": True, "port": handle.tls_port, "ca": cert}
    # An external target sends C-MOVE sub-operations where its own configuration says; this SCP was
    # not told about the harness's listener, so the hand-written profile claims no C-MOVE here.
    built_in["query_retrieve"]["move"] = False
    hand_path = tmp_path / "hand.yaml"
    hand_path.write_text(yaml.safe_dump(built_in), encoding="utf-8")
    target = f"127.0.0.1:{handle.port}"
    hand = suite(target, hand_path, profile.ae_title, tmp_path / "hand")
    probed = suite(target, got.path, profile.ae_title, tmp_path / "probed")
    # The probe claims no services beyond echo and store (no query_retrieve, commitment, mpps or
    # worklist: a move destination is the user's setup, not something a probe can see), so the
    # scenarios that need those claims run on the hand-written profile only; every other verdict agrees.
    differ = compare(hand_path, got.path, hand, probed)
    services = {i for i, r in requires_by_id().items()
                if any(k.split(".")[0] in ("query_retrieve", "commitment", "mpps", "worklist") for k in r)}
    assert differ <= services and all(probed[i] == "skipped" for i in differ), {i: (hand[i], probed[i]) for i in differ}
    moving = {i for i in services if ".move" in i}
    # what the built-in profile does not claim (a commitment report on a new association) skips on both
    unclaimed = {i for i in services if unmet(load_profile(hand_path), requires_by_id()[i]) is not None} - moving
    assert all(hand[i] == probed[i] == "skipped" for i in unclaimed), {i: hand[i] for i in unclaimed}
    assert all(hand[i] == "passed" for i in services - moving - unclaimed), {
        i: hand[i] for i in services - moving - unclaimed if hand[i] != "passed"}
    assert all(hand[i] == probed[i] == "skipped" for i in moving)
    assert hand["tls.echo"] == "passed"
    assert sum(o == "passed" for o in probed.values()) >= 60
