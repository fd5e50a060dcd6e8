"""Scenario files: loading, validation and the scenario model.

Theory of operation
-------------------
A scenario file holds one scenario (a YAML mapping) or several (a YAML list
of mappings).  :func:`load_file` reads it with the line-keeping loader and
returns one :class:`Entry` per scenario: either a valid :class:`Scenario` or
the :class:`SourceError` that makes it invalid, so that a malformed scenario
fails only its own test item.  A file that is not YAML at all yields a single
failing entry.

Validation has two layers: the JSON Schema shipped as
``scenario.schema.json`` (structure, types, durations), then the checks a
schema cannot express (``requires`` names profile fields, an expectation's
fields exist on the PDU it names, SOP class and transfer syntax names in
``requires`` are known).  Both report ``file:line``, the offending key, what
is wrong and what is allowed, and both report *every* problem of a scenario
at once (a :class:`~dicomconf.scenario.loader.SourceErrors`, ordered by
line); the second layer checks the parts of the file the first accepted.

A :class:`Step` keeps its kind, its arguments, the file and line it came
from, its path in the file (for errors found only when it runs, such as a
template that names an unknown variable) and, for ``parallel`` and
``repeat``, its child steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomconf.scenario.loader import Located, SourceError, SourceErrors, load_yaml
from dicomconf.scenario.validation import dotted, schema_errors

STEP_KINDS = (
    "connect",
    "associate",
    "send",
    "expect",
    "echo",
    "store",
    "release",
    "abort",
    "close",
    "sleep",
    "parallel",
    "repeat",
    "store_set",  # the service steps (dicomconf.scenario.services_steps)
    "find",
    "move",
    "get",
    "commit",
    "mpps",
)
# Steps of a scenario in which dicomconf plays the fake SCP (role: scp; dicomconf.scenario.acceptor).
SCP_STEP_KINDS = (
    "accept",
    "associate",
    "serve",
    "release",
    "send",
    "expect",
    "abort",
    "close",
    "sleep",
    "parallel",
    "repeat",
)
ROLES = ("scu", "scp")  # the role dicomconf plays: scu tests an SCP, scp tests an SCU
SEVERITIES = ("must", "should")
AREAS = ("connection", "negotiation", "roles", "malformed", "fsm", "timers", "release-abort", "dimse", "tls",
         "services")
SCP_AREAS = ("connection", "negotiation", "reject-abort", "dimse", "max-length", "timers", "malformed", "release",
             "services")
OPERATIONS = ("echo", "store", "find", "any")  # what the SCU under test is asked to do
_EXPECT_CONTROL = {"on", "within", "save", "skip", "until", "any", "pdu", "closed", "reset", "aborted", "silence"}


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a scenario, located in its file."""

    kind: str
    args: Any
    file: str
    line: int
    path: tuple[Any, ...]
    key_lines: dict = field(default_factory=dict, compare=False, repr=False)
    branches: tuple[tuple["Step", ...], ...] = ()

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def line_of(self, *sub: Any) -> int:
        """The line of a key inside this step's arguments (``("within",)``)."""
        path = tuple(sub)
        while path:
            if path in self.key_lines:
                return self.key_lines[path]
            path = path[:-1]
        return self.line

    def error(self, message: str, *sub: Any) -> SourceError:
        key = dotted(self.path + (self.kind,) + tuple(sub))
        return SourceError(self.file, self.line_of(*sub), f"{key}: {message}")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated scenario (see ``docs/scenarios.md``)."""

    id: str
    title: str
    clauses: tuple[str, ...]
    severity: str
    area: str
    steps: tuple[Step, ...]
    file: str
    line: int
    requires: dict = field(default_factory=dict)
    allow_findings: tuple[str, ...] = ()
    description: str = ""
    disruptive: bool = False  # may disturb other users of the target (docs/scenarios.md, Disruptive scenarios)
    requirement: str = ""  # the normative sentence enforced, quoted from the standard (must-level scenarios)
    role: str = "scu"  # the role dicomconf plays (ROLES): scu tests an SCP, scp tests an SCU
    operation: str = "any"  # role scp: what the SCU under test is asked to do (OPERATIONS)

    @property
    def tests(self) -> str:
        """What the scenario tests: "SCP" (dicomconf plays the SCU) or "SCU"."""
        return "SCU" if self.role == "scp" else "SCP"


@dataclass(frozen=True, slots=True)
class Entry:
    """One scenario of a file: its name and either the scenario or why it is invalid."""

    name: str
    line: int
    scenario: Scenario | None = None
    error: SourceError | None = None
    raw: dict = field(default_factory=dict, compare=False)


def _steps(
    doc: Located, path: tuple[Any, ...], errors: list[SourceError], broken: tuple[tuple[Any, ...], ...] = (),
    kinds: tuple[str, ...] = STEP_KINDS,
) -> tuple[Step, ...]:
    """The steps at ``path``.  Each step whose part of the file has no schema error
    (``broken`` holds those errors' paths) is checked too; problems go to ``errors``."""
    out = []
    for i, raw in enumerate(_at(doc.value, path)):
        step_path = path + (i,)
        if not (isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in kinds):
            continue  # the schema has said what is wrong with it
        kind = next(iter(raw))
        args = raw[kind]
        prefix = step_path + (kind,)
        key_lines = {p[len(prefix) :]: ln for p, ln in doc.key_lines.items() if p[: len(prefix)] == prefix}
        branches: tuple[tuple[Step, ...], ...] = ()
        if kind == "parallel" and isinstance(args, list):
            branches = tuple(
                _steps(doc, prefix + (b,), errors, broken, kinds) for b in range(len(args)) if isinstance(args[b], list)
            )
        elif kind == "repeat" and isinstance(args, dict) and isinstance(args.get("steps"), list):
            branches = (_steps(doc, prefix + ("steps",), errors, broken, kinds),)
        step = Step(kind, args, doc.file, doc.line_of(prefix) or 0, step_path, key_lines, branches)
        if not any(p[: len(step_path)] == step_path for p in broken):
            errors.extend(_step_errors(step))
        out.append(step)
    return tuple(out)


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _expectation_errors(step: Step, spec: Any, sub: tuple[Any, ...]) -> list[SourceError]:
    from dicomconf.scenario.match import field_names
    from dicomconf.scenario.validation import suggest

    if not isinstance(spec, dict):
        return []
    errors: list[SourceError] = []
    for i, alt in enumerate(spec.get("any") or ()):
        errors += _expectation_errors(step, alt, sub + ("any", i))
    kinds = [k for k in ("pdu", "any", "closed", "reset", "aborted", "silence") if k in spec]
    if len(kinds) != 1:
        what = ", ".join(kinds) if kinds else "none"
        errors.append(step.error(
            f"an expectation needs exactly one of pdu, any, closed, reset, aborted, silence (found: {what})", *sub
        ))
    name = spec.get("pdu")
    fields = {k for k in spec if k not in _EXPECT_CONTROL}
    where: tuple[Any, ...] = sub
    if "aborted" in spec and isinstance(spec["aborted"], dict):
        name, fields, where = "A-ABORT", set(spec["aborted"]), sub + ("aborted",)
    elif fields and not isinstance(name, str):
        names = ", ".join(sorted(map(str, fields)))
        errors.append(step.error(f"field(s) {names} need a pdu name to match against", *sub))
    if isinstance(name, str):
        known = field_names(name)
        allowed = sorted(known - {"pdu_type"})
        for unknown in sorted(str(f) for f in fields if f not in known):
            errors.append(step.error(
                f"{name} has no field {unknown!r}{suggest(unknown, allowed)}; fields: {', '.join(allowed)}",
                *where,
                unknown,
            ))
    return errors


def _step_errors(step: Step) -> list[SourceError]:
    refused = step.kind == "connect" and isinstance(step.args, dict) and step.args.get("refused") is True
    if refused and step.args.get("tls") in (None, False):  # a refused handshake needs one (PS3.15 B.10, B.12)
        return [step.error("refused: true checks that the target refuses a TLS handshake: give tls: true "
                           "or a TLS offer ({version, ciphers, client_cert, verify})", "refused")]
    if step.kind == "expect":
        return _expectation_errors(step, step.args, ())
    if step.kind == "associate" and isinstance(step.args, dict) and "reply" in step.args:
        return _expectation_errors(step, step.args["reply"], ("reply",))
    if step.kind == "associate" and isinstance(step.args, dict) and isinstance(step.args.get("request"), dict):
        return _expectation_errors(step, {"pdu": "A-ASSOCIATE-RQ", **step.args["request"]}, ("request",))
    if step.kind == "serve" and isinstance(step.args, dict) and isinstance(step.args.get("request"), dict):
        return _expectation_errors(step, {"pdu": "P-DATA-TF", **step.args["request"]}, ("request",))
    return []


def scenario_from(doc: Located) -> Scenario:
    """The scenario in ``doc``, or every problem of it at once: the schema's
    errors and the checks after the schema, on the parts the schema accepted."""
    value = doc.value if isinstance(doc.value, dict) else {}
    scp = value.get("role") == "scp"
    if scp:
        from dicomconf.scenario.scu_profile import requires_problems
    else:
        from dicomconf.scenario.profile import requires_problems

    problems = schema_errors(doc, "scenario.schema.json", definition="scp_scenario" if scp else "scenario")
    errors = [error for _, error in problems]
    requires = value.get("requires") or {}
    if isinstance(requires, dict):
        for sub, message in requires_problems(requires):
            errors.append(doc.error(("requires",) + sub, f"{dotted(('requires',) + sub)}: {message}"))
    steps: tuple[Step, ...] = ()
    if isinstance(value.get("steps"), list):
        steps = _steps(doc, ("steps",), errors, tuple(p for p, _ in problems), SCP_STEP_KINDS if scp else STEP_KINDS)
    error = SourceErrors.merge(errors)
    if error is not None:
        raise error
    return Scenario(
        id=value["id"],
        title=value["title"],
        clauses=tuple(value["clauses"]),
        severity=value["severity"],
        area=value["area"],
        steps=steps,
        file=doc.file,
        line=doc.line_of(()) or 1,
        requires=dict(requires),
        allow_findings=tuple(value.get("allow_findings") or ()),
        description=value.get("description", ""),
        disruptive=bool(value.get("disruptive", False)),
        requirement=str(value.get("requirement") or ""),
        role="scp" if scp else "scu",
        operation=str(value.get("operation", "any")) if scp else "any",
    )


def _entry(doc: Located, index: int | None, fallback: str) -> Entry:
    value = doc.value
    name = value.get("id") if isinstance(value, dict) and isinstance(value.get("id"), str) else None
    name = name or (f"{fallback}[{index}]" if index is not None else fallback)
    line = doc.line_of(()) or 1
    try:
        return Entry(name, line, scenario=scenario_from(doc), raw=value if isinstance(value, dict) else {})
    except SourceError as exc:
        return Entry(name, line, error=exc, raw=value if isinstance(value, dict) else {})


def load_file(path: str | Path) -> list[Entry]:
    """Every scenario in ``path``, valid or not (see the module docstring)."""
    path = Path(path)
    try:
        doc = load_yaml(path)
    except SourceError as exc:
        return [Entry(path.stem, exc.line or 1, error=exc)]
    if isinstance(doc.value, list) and doc.value:
        return [_entry(doc.sub((i,)), i, path.stem) for i in range(len(doc.value))]
    if isinstance(doc.value, dict):
        return [_entry(doc, None, path.stem)]
    what = "empty" if doc.value is None else f"a {type(doc.value).__name__}"
    return [Entry(path.stem, 1, error=SourceError(str(path), 1, f"a scenario file holds a mapping (one scenario) or a list of them, not {what}"))]
