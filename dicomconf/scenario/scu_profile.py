"""SCU profiles: what the SCU under test is and claims (``--scu-profile FILE``).

Theory of operation
-------------------
A scenario of ``role: scp`` tests an SCU: dicomconf plays a scripted fake SCP
and the SCU under test connects to it.  The SCU profile says what that SCU
claims: the AE titles it sends and calls, what it does when it runs
(``operations``: echo, store, find), the SOP classes and transfer syntaxes it
proposes, the maximum length it announces, and its timeouts, so a scenario can
bound how long the SCU may take to give up (``{profile.timeouts.association +
5}s``) and skip with a reason when the SCU does not claim what it needs
(``requires: {operations: [find]}``), as target profiles do for SCPs
(:mod:`dicomconf.scenario.profile`).

:func:`load_scu_profile` validates a file against ``scu-profile.schema.json``
and reports every problem with ``file:line``; the embedded reference SCU's
profile ships as ``reference-scu-profile.yaml``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from dicomconf.scenario.expr import ExpressionError, duration
from dicomconf.scenario.loader import Located, SourceErrors, load_yaml, load_yaml_text
from dicomconf.scenario.validation import dotted, schema_errors, suggest

REFERENCE_SCU_PROFILE = "reference-scu-profile.yaml"
OPERATIONS = ("echo", "store", "find")


@dataclass(frozen=True, slots=True)
class SCUTimeouts:
    """How long the SCU waits before it gives up, in seconds; None when not known."""

    connect: float | None = None
    association: float | None = None
    dimse: float | None = None
    release: float | None = None

    def longest(self, default: float = 30.0) -> float:
        known = [t for t in dataclasses.astuple(self) if t is not None]
        return max(known) if known else default


@dataclass(frozen=True, slots=True)
class SCUProfile:
    """An SCU profile (see ``docs/scenarios.md``, Testing an SCU)."""

    name: str = "unnamed SCU"
    calling_ae: str | None = None
    called_ae: str = "DICOMCONF"
    operations: tuple[str, ...] = ("echo",)
    sop_classes: tuple[str, ...] = ()
    transfer_syntaxes: tuple[str, ...] = ()
    max_pdu_length: int | None = None
    timeouts: SCUTimeouts = field(default_factory=SCUTimeouts)
    cancels: bool = False
    user_identity: bool = False
    retries: bool = False
    command: str | None = None  # how to run it (--scu-command overrides)
    source: str = "<defaults>"


_NOT_REQUIRABLE = ("source", "command")


def _field_names() -> list[str]:
    names: list[str] = []
    for f in dataclasses.fields(SCUProfile):
        if f.name in _NOT_REQUIRABLE:
            continue
        if f.name == "timeouts":
            names += [f"timeouts.{sub.name}" for sub in dataclasses.fields(SCUTimeouts)]
        names.append(f.name)
    return names


def _field(profile: SCUProfile, key: str) -> Any:
    value: Any = profile
    for part in key.split("."):
        if part.startswith("_") or not hasattr(value, part) or part in _NOT_REQUIRABLE:
            raise KeyError(key)
        value = getattr(value, part)
    return value


def requires_problems(requires: Mapping[Any, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """``(path inside requires, message)`` for every ``requires`` key of an SCU-testing
    scenario that names no SCU profile field."""
    probe = SCUProfile()
    out: list[tuple[tuple[Any, ...], str]] = []
    for key, want in requires.items():
        try:
            _field(probe, str(key))
        except KeyError:
            fields = _field_names()
            out.append(((key,), f"not an SCU profile field{suggest(str(key), fields)}; allowed: {', '.join(fields)}"))
            continue
        if key == "operations" and isinstance(want, list):
            for i, op in enumerate(want):
                if op not in OPERATIONS:
                    out.append(((key, i), f"unknown operation {op!r}; allowed: {', '.join(OPERATIONS)}"))
    return out


def unmet(profile: SCUProfile, requires: Mapping[str, Any]) -> str | None:
    """Why the SCU does not meet ``requires`` (a skip reason), or None.  Conditions are
    written as for target profiles: a value, ``{min, max}``, a list the field must contain,
    or true/false."""
    for key, want in requires.items():
        have = _field(profile, key)
        if isinstance(want, bool):
            if bool(have) != want:
                return f"the SCU's profile says {key}: {str(bool(have)).lower()} ({profile.source})"
        elif isinstance(want, Mapping):
            if have is None:
                return f"the SCU's {key} is not known (SCU profile {key})"
            if want.get("min") is not None and have < want["min"]:
                return f"the SCU's {key} {have} is below {want['min']}"
            if want.get("max") is not None and have > want["max"]:
                return f"the SCU's {key} {have} is above {want['max']}"
        elif isinstance(want, list):
            missing = [w for w in want if w not in (have or ())]
            if missing:
                what = "does not do" if key == "operations" else "does not claim"
                return f"the SCU {what} {', '.join(map(str, missing))} (SCU profile {key}: {list(have or ())})"
        elif have != want:
            return f"the SCU's {key} is {have!r}, not {want!r}"
    return None


def _checks(doc: Located, broken: tuple) -> list:
    data = doc.value if isinstance(doc.value, Mapping) else {}
    out = []
    timeouts = data.get("timeouts") if isinstance(data.get("timeouts"), Mapping) else {}
    for key, value in timeouts.items():
        path = ("timeouts", key)
        if value is None or any(b[: len(path)] == path for b in broken):
            continue
        try:
            duration(value)
        except ExpressionError as exc:
            out.append((path, doc.error(path, f"{dotted(path)}: {exc}; allowed: a duration (30s, 500ms, 2m) or null")))
    return out


def _from(doc: Located) -> SCUProfile:
    problems = schema_errors(doc, "scu-profile.schema.json")
    problems += _checks(doc, tuple(p for p, _ in problems))
    problems.sort(key=lambda item: doc.position(item[0]))
    error = SourceErrors.merge(e for _, e in problems)
    if error is not None:
        raise error
    data = dict(doc.value or {})
    timeouts = {k: None if v is None else duration(v) for k, v in (data.pop("timeouts", None) or {}).items()}
    for key in ("operations", "sop_classes", "transfer_syntaxes"):
        if key in data:
            data[key] = tuple(data[key])
    return SCUProfile(timeouts=SCUTimeouts(**timeouts), source=doc.file, **data)


def load_scu_profile(path: str | Path) -> SCUProfile:
    """Load and validate an SCU profile; :class:`~dicomconf.scenario.loader.SourceError` when it is bad."""
    return _from(load_yaml(Path(path)))


def reference_scu_profile() -> SCUProfile:
    """The built-in profile of the embedded reference SCU."""
    text = resources.files("dicomconf.scenario").joinpath(REFERENCE_SCU_PROFILE).read_text(encoding="utf-8")
    return _from(load_yaml_text(text, f"<built-in {REFERENCE_SCU_PROFILE}>"))
