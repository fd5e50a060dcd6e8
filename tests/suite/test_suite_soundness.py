"""The shipped conformance suite (``scenarios/``) is sound.

Every scenario file validates (the JSON Schema, then the loader's own
checks), ids are unique, the suite has at least 30 scenarios, every area the
product promises is covered by the scenarios named in ``REQUIRED``, every
PS3.8 Table 9-10 cell a scenario cites is the cell the standard (our literal
table) holds, and a scenario that computes a bound from a profile value
says so in ``requires`` so that a target claiming no such value skips it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from dicomconf.scenario.loader import load_yaml
from dicomconf.scenario.model import AREAS, load_file
from dicomconf.ul.fsm import TRANSITIONS

REPO = Path(__file__).resolve().parents[2]
SCENARIO_DIR = REPO / "scenarios"
FILES = sorted(SCENARIO_DIR.rglob("*.yaml"))

# What the suite must cover (the product card's areas), by scenario id.
REQUIRED: dict[str, tuple[str, ...]] = {
    "connection queueing": (
        "connection.queued-connections-served-in-order",
        "connection.idle-first-connection",
        "connection.stalled-partial-rq-does-not-block",
        "connection.parallel-associations",
        "connection.association-limit-rejects-transient",
    ),
    "association negotiation": (
        "negotiation.verification-accepted",
        "negotiation.called-ae-not-recognized",
        "negotiation.calling-ae-not-recognized",
        "negotiation.protocol-version-3-accepted",
        "negotiation.protocol-version-bit0-clear-rejected",
        "negotiation.unknown-application-context",
        "negotiation.unsupported-abstract-syntax-result-3",
        "negotiation.unsupported-transfer-syntax-result-4",
        "negotiation.transfer-syntax-chosen-from-proposed",
        "negotiation.context-ids-echoed",
        "negotiation.our-small-max-length-honoured-echo",
        "negotiation.ac-implementation-class-uid-present",
        "negotiation.nonzero-reserved-fields-accepted",
        "negotiation.called-ae-leading-spaces-not-significant",
    ),
    "role selection": (
        "roles.no-proposal-no-role-item",
        "roles.scu-only-proposal-never-grants-scp",
        "roles.scp-only-proposal-never-grants-scu",
        "roles.scp-role-granted-when-claimed",
    ),
    "malformed PDUs": (
        "malformed.unknown-pdu-type-in-association",
        "malformed.unknown-pdu-type-no-body-in-association",
        "malformed.unknown-pdu-type-before-association",
        "malformed.unknown-pdu-type-no-body-before-association",
        "malformed.truncated-associate-rq-closed-by-artim",
        "malformed.associate-rq-length-below-fixed-fields",
        "malformed.associate-rq-item-overruns-pdu",
        "malformed.pdv-overruns-pdata-tf",
        "malformed.pdata-before-association",
        "malformed.second-associate-rq",
        "malformed.pdv-on-unaccepted-context",
    ),
    "release and abort": (
        "release-abort.release-answered",
        "release-abort.a-abort-closes-transport",
        "release-abort.nothing-after-release-rp",
        "release-abort.pdata-after-release-rp-ignored",
    ),
    "timers": ("timers.artim-closes-silent-connection", "release-abort.artim-closes-after-release-rp"),
    "DIMSE": ("dimse.echo", "dimse.store-ct", "dimse.unrecognised-command-status-0211"),
    "TLS": ("tls.echo",),
}

# Profile values a step may compute a bound from, and the requires key that
# makes a target claiming no value (null) skip the scenario instead of
# erroring.
GUARDED = {"artim": "timers.artim", "idle": "timers.idle", "max_associations": "max_associations"}


_CELL = re.compile(r"\((Sta\d+),\s*(Evt\d+),\s*([A-Z]{2}-\d+)\)")
_PROFILE_REF = re.compile(r"\{[^{}]*\bprofile\.(?:timers\.)?([a-z_]+)")


def _entries():
    for path in FILES:
        yield from ((path, e) for e in load_file(path))


ENTRIES = list(_entries())
SCENARIOS = [e.scenario for _p, e in ENTRIES if e.scenario is not None]


def test_scenario_files_exist():
    assert len(FILES) >= 10, f"only {len(FILES)} scenario files under {SCENARIO_DIR}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SCENARIO_DIR)))
def test_file_validates_against_schema(path):
    schema = json.loads(
        resources.files("dicomconf.scenario").joinpath("scenario.schema.json").read_text(encoding="utf-8")
    )
    doc = load_yaml(path).value
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, f"{path}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:3])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SCENARIO_DIR)))
def test_file_loads_without_errors(path):
    bad = [str(e.error) for e in load_file(path) if e.error is not None]
    assert not bad, "\n".join(bad)


def test_ids_unique():
    counts = Counter(s.id for s in SCENARIOS)
    assert not [i for i, n in counts.items() if n > 1], counts.most_common(3)


def test_at_least_thirty_scenarios():
    assert len(SCENARIOS) >= 30


def test_every_area_has_a_scenario():
    covered = {s.area for s in SCENARIOS}
    assert set(AREAS) <= covered, f"areas without a scenario: {sorted(set(AREAS) - covered)}"


@pytest.mark.parametrize("topic", sorted(REQUIRED))
def test_required_topic_covered(topic):
    ids = {s.id for s in SCENARIOS}
    missing = [i for i in REQUIRED[topic] if i not in ids]
    assert not missing, f"{topic}: no scenario {missing}"


def test_ids_carry_their_area():
    """``area.name``, and ``scu.area.name`` for a scenario that tests an SCU (role scp)."""
    wrong = [s.id for s in SCENARIOS
             if not s.id.startswith(f"scu.{s.area}." if s.role == "scp" else f"{s.area}.")]
    assert not wrong, f"ids whose prefix is not their area: {wrong}"
    assert sum(s.role == "scp" for s in SCENARIOS) >= 40


def test_cited_table_9_10_cells_exist():
    """A clause '(Sta6, Evt19, AA-8)' names the action PS3.8 Table 9-10 gives that cell."""
    wrong = []
    for s in SCENARIOS:
        for clause in s.clauses:
            for state, event, action in _CELL.findall(clause):
                actual = TRANSITIONS.get((state, event))
                if actual is None or str(actual) != action:
                    wrong.append(f"{s.id}: {clause} (table: {actual})")
    assert not wrong, "\n".join(wrong)


def test_severity_and_clause_form():
    for s in SCENARIOS:
        assert s.severity in ("must", "should"), s.id
        assert all(c.startswith("PS3.") for c in s.clauses), s.id


def test_profile_bounds_are_guarded_by_requires():
    """A step computing a bound from {profile.artim} etc. needs `requires` on that field."""
    found = set()
    for path, entry in ENTRIES:
        if entry.scenario is None:
            continue
        text = json.dumps(entry.raw.get("steps"))
        for name in set(_PROFILE_REF.findall(text)) & set(GUARDED):
            if GUARDED[name] not in entry.scenario.requires and name not in entry.scenario.requires:
                found.add((entry.scenario.id, name))
    assert not found, f"unguarded profile bounds: {sorted(found)}"


def _pdv_data(value):
    """Every ``data:`` hex string of a PDV crafted in a step tree."""
    if isinstance(value, dict):
        for key, sub in value.items():
            if key == "pdvs" and isinstance(sub, list):
                yield from (p["data"] for p in sub if isinstance(p, dict) and isinstance(p.get("data"), str))
            else:
                yield from _pdv_data(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from _pdv_data(sub)


def test_legal_scenarios_send_even_fragments():
    """PS3.8 E.1: every message fragment has an even number of bytes; only malformed/fsm scenarios break it."""
    odd = []
    for _path, entry in ENTRIES:
        s = entry.scenario
        if s is None or s.area in ("malformed", "fsm"):
            continue
        for data in _pdv_data(entry.raw.get("steps")):
            n = len(re.sub(r"[\s:_]", "", data)) // 2
            if n % 2:
                odd.append(f"{s.id}: {n}-byte fragment")
    assert not odd, odd


# UIDs under this root are never a real SOP class or transfer syntax: the
# suite offers them on purpose to provoke a rejection.
_UNKNOWN_UID_ROOT = "1.2.826.0.1.3680043.2.1143.99."


def _named_sop_classes(steps):
    """SOP classes a scenario proposes or stores, by the name or UID it writes."""
    for step in steps or ():
        kind, args = next(iter(step.items()))
        if kind == "parallel":
            for branch in args:
                yield from _named_sop_classes(branch)
        elif kind == "repeat":
            yield from _named_sop_classes(args["steps"])
        elif kind == "associate" and isinstance(args, dict):
            for c in args.get("contexts") or ():
                yield c["abstract_syntax"] if isinstance(c, dict) else c
        elif kind == "store":
            yield (args or {}).get("sop_class", "ct")


def test_sop_classes_beyond_verification_are_required():
    """A scenario proposing a SOP class other than Verification says so in `requires` (else it would
    fail, not skip, on a Verification-only target)."""
    from dicomconf.scu.client import resolve_uid

    verification = resolve_uid("verification")
    missing = []
    for _path, entry in ENTRIES:
        s = entry.scenario
        if s is None:
            continue
        required = {resolve_uid(x) for x in s.requires.get("sop_classes", ())}
        required |= {resolve_uid(k.split(".", 1)[1]) for k in s.requires if k.startswith("roles.")}
        for name in _named_sop_classes(entry.raw.get("steps")):
            uid = resolve_uid(name) if not str(name).startswith(_UNKNOWN_UID_ROOT) else None
            if uid is not None and uid != verification and uid not in required:
                missing.append(f"{s.id}: {name}")
    assert not missing, missing
