"""No false failures: SCPs that do only what the standard allows fail no must-level scenario.

Each variant is the reference SCP with a hook (:mod:`dicomconf.scp.hooks`) that answers
differently but legally:

* ``fragmented``: every DIMSE message it sends is cut into 4-byte PDVs (even, PS3.8 E.1), two per
  P-DATA-TF, so a command set spans many PDUs and its fragments cut elements apart (PS3.8 9.3.5,
  9.3.5.1 and Annex E: any number of PDVs and PDUs within the peer's maximum length);
* ``ac-oddities``: the A-ASSOCIATE-AC lists the presentation contexts in reverse order (PS3.8
  9.3.3.2: the AC need not follow the RQ's order), a rejected context's transfer syntax sub-item
  names something else (Table 9-18: "not significant" when the result is not acceptance), the
  protocol version is 0x0003 (PS3.8 9.3.3, Table 9-17: only bit 0 is tested), and no
  Implementation Version Name is sent (PS3.7 D.3.3.2: optional);
* ``minimal-ac``: every optional user information sub-item is left out of the AC (role selection,
  asynchronous operations window, extended negotiation, version name: PS3.7 D.3.3), with a
  profile that claims none of them.

The shipped suite runs against each with a profile that says what it does; no must-level
scenario may fail.  All on 127.0.0.1; every SCP is stopped at the end.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dicomconf.scenario.profile import load_profile
from dicomconf.scp.hooks import Hooks
from dicomconf.scp.runtime import run_in_thread
from dicomconf.ul import constants as C
from dicomconf.ul.items import (
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    UserIdentityAC,
    UserInformation,
)
from dicomconf.ul.pdu import PDV, AAssociateAC, PDataTF

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "dicomconf" / "scenario" / "reference-profile.yaml"
FRAGMENT = 4  # bytes of each PDV (even, PS3.8 E.1): cuts every element of a command set apart


def fragmented(primitive, connection):
    """Every P-DATA-TF's PDVs cut into FRAGMENT-byte PDVs, two per P-DATA-TF."""
    if not isinstance(primitive, PDataTF):
        return primitive
    pdvs = []
    for pdv in primitive.pdvs:
        data = bytes(pdv.data)
        command = pdv.message_control_header & C.MCH_COMMAND
        pieces = [data[i:i + FRAGMENT] for i in range(0, len(data), FRAGMENT)] or [b""]
        for i, piece in enumerate(pieces):
            last = C.MCH_LAST if i == len(pieces) - 1 and pdv.message_control_header & C.MCH_LAST else 0
            pdvs.append(PDV(pdv.context_id, command | last, piece))
    return [PDataTF(tuple(pdvs[i:i + 2])) for i in range(0, len(pdvs), 2)]


def ac_oddities(primitive, connection):
    if not isinstance(primitive, AAssociateAC):
        return primitive
    contexts = tuple(
        pc if pc.result == C.PC_ACCEPTANCE else dataclasses.replace(pc, transfer_syntax="1.2.840.10008.1.2.4.50")
        for pc in reversed(primitive.presentation_contexts)
    )
    subs = tuple(s for s in primitive.user_information.sub_items if not isinstance(s, ImplementationVersionName))
    return dataclasses.replace(primitive, presentation_contexts=contexts, protocol_version=0x0003,
                               user_information=UserInformation(subs))


def minimal_ac(primitive, connection):
    if not isinstance(primitive, AAssociateAC):
        return primitive
    keep = (MaximumLength, ImplementationClassUID, UserIdentityAC)  # mandatory, or required when asked (D.3.3.7)
    subs = tuple(s for s in primitive.user_information.sub_items if isinstance(s, keep))
    return dataclasses.replace(primitive, user_information=UserInformation(subs))


def _profile(tmp_path: Path, name: str, **changes) -> Path:
    data = yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))
    data["name"] = f"reference SCP, {name} variant"
    data["tls"] = {"enabled": False}
    # A named target sends C-MOVE sub-operations to the port its configuration gives (scp_config
    # passes the profile's): a fixed free port, where each move scenario starts its own listener.
    data["query_retrieve"]["move_destination"]["port"] = _free_port()
    for key, value in changes.items():  # "a.b": a nested claim
        *parents, last = key.split(".")
        where = data
        for part in parents:
            where = where[part]
        where[last] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _suite(port: int, profile: Path, report: Path) -> list[dict]:
    argv = [sys.executable, "-m", "pytest", str(REPO / "scenarios"), "-q", "-p", "no:cacheprovider",
            "--target", f"127.0.0.1:{port}", "--profile", str(profile), "--report-dir", str(report)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert (report / "report.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((report / "report.json").read_text(encoding="utf-8"))["scenarios"]


VARIANTS = {
    "fragmented": (fragmented, {}),
    "ac-oddities": (ac_oddities, {}),
    # No optional sub-item answered: no roles, no asynchronous window, and no SOP Class Extended
    # Negotiation, so relational queries are never agreed (PS3.7 D.3.3.5; PS3.4 C.5.1.1).
    "minimal-ac": (minimal_ac, {"roles": {}, "async_window": None, "query_retrieve.relational": False}),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_a_legal_variant_fails_no_must_level_scenario(name, tmp_path):
    hook, changes = VARIANTS[name]
    profile_path = _profile(tmp_path, name, **changes)
    profile = load_profile(profile_path)
    handle = run_in_thread(profile.scp_config(port=0), hooks=Hooks(answer=hook))
    try:
        scenarios = _suite(handle.port, profile_path, tmp_path / "report")
    finally:
        handle.stop()
    wrong = {s["id"]: (s["failure"] or {}).get("message") for s in scenarios
             if s["severity"] == "must" and s["outcome"] in ("failed", "error")}
    assert not wrong, wrong
    assert sum(s["outcome"] == "passed" for s in scenarios) >= 60
