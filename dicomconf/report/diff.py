"""What changed between two runs: ``dicomconf report diff OLD NEW``.

Theory of operation
-------------------
:func:`load` reads a ``report.json`` (or the report directory holding one)
and checks it against ``report.schema.json``; anything else is a
:class:`ReportError` with one line saying why.  :func:`compare` sets the
scenarios of the two runs side by side by id and sorts every difference into
one kind, in the order a reader wants them:

* ``regressed``: passed (or flaky, or skipped) before, fails now;
* ``fixed``: failed before, passes now;
* ``fails differently``: fails in both, for another reason
  (:func:`dicomconf.report.model.deviation`);
* ``changed``: any other change of outcome (passed to skipped, failed to
  error, ...);
* ``added`` / ``removed``: in one run only.

Scenarios that kept their outcome (and their reason, when failing) are not
listed.  :func:`render` gives the text a terminal shows; ``--json`` gives the
same as JSON.  The exit status is 1 when a scenario regressed or fails
differently, 0 otherwise, so a CI step can gate on "nothing got worse".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from dicomconf.report.model import deviation

FAILING = ("failed", "error")
KINDS = ("regressed", "fails differently", "fixed", "changed", "added", "removed")


class ReportError(Exception):
    """A path that is not a report this version of dicomconf reads."""


def load(path: str | Path) -> dict[str, Any]:
    """The report.json at ``path`` (a file, or a report directory holding one), validated."""
    import jsonschema

    from dicomconf.report.model import SCHEMA_VERSION

    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    try:
        document = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no report.json there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{p}: cannot read it: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{p}:{exc.lineno}: not JSON: {exc.msg}") from None
    if not isinstance(document, dict) or document.get("schema_version") != SCHEMA_VERSION:
        version = document.get("schema_version") if isinstance(document, dict) else None
        raise ReportError(f"{p}: not a dicomconf report.json of schema_version {SCHEMA_VERSION} (found {version!r})")
    schema = json.loads((Path(__file__).parent / "report.schema.json").read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        where = "/".join(str(x) for x in error.absolute_path) or "(top)"
        raise ReportError(f"{p}: not a valid report.json at {where}: {error.message}")
    return document


@dataclass
class Change:
    """One scenario whose verdict differs between the two runs."""

    kind: str
    id: str
    severity: str
    old: str | None  # outcome in OLD (None: not in it)
    new: str | None
    why_old: str | None = None  # what went wrong, when it failed
    why_new: str | None = None


@dataclass
class Diff:
    old: Mapping[str, Any]
    new: Mapping[str, Any]
    changes: list[Change] = field(default_factory=list)

    @property
    def worse(self) -> bool:
        """A scenario regressed or fails for another reason."""
        return any(c.kind in ("regressed", "fails differently") for c in self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {"old": _describe(self.old), "new": _describe(self.new), "worse": self.worse,
                "changes": [c.__dict__ for c in self.changes]}


def _describe(document: Mapping[str, Any]) -> dict[str, Any]:
    run = document["run"]
    return {"target": run.get("target"), "start": run.get("start"), "exit_status": run.get("exit_status"),
            "summary": document["summary"]}


def _kind(old: str, new: str, why_old: str | None, why_new: str | None) -> str | None:
    if old == new:
        return "fails differently" if old in FAILING and why_old != why_new else None
    if new in FAILING and old in FAILING:
        return "changed"
    if new in FAILING and old in ("passed", "flaky", "skipped"):
        return "regressed"
    if old in FAILING and new in ("passed", "flaky"):
        return "fixed"
    return "changed"


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> Diff:
    """Every scenario whose verdict differs between ``old`` and ``new`` (see the module docstring)."""
    before = {s["id"]: s for s in old["scenarios"]}
    after = {s["id"]: s for s in new["scenarios"]}
    diff = Diff(old, new)
    for sid in sorted(before.keys() | after.keys()):
        a, b = before.get(sid), after.get(sid)
        why_a = deviation(a.get("failure"))[0] if a and a["outcome"] in FAILING else None
        why_b = deviation(b.get("failure"))[0] if b and b["outcome"] in FAILING else None
        if a is None:
            kind: str | None = "added"
        elif b is None:
            kind = "removed"
        else:
            kind = _kind(a["outcome"], b["outcome"], why_a, why_b)
        if kind is not None:
            diff.changes.append(Change(kind, sid, (b or a)["severity"], a and a["outcome"], b and b["outcome"],
                                       why_a, why_b))
    diff.changes.sort(key=lambda c: (KINDS.index(c.kind), c.severity != "must", c.id))
    return diff


def render(diff: Diff) -> list[str]:
    """The lines ``dicomconf report diff`` prints."""
    o, n = _describe(diff.old), _describe(diff.new)
    lines = [f"old: {o['target']}, {o['start']}, exit status {o['exit_status']}",
             f"new: {n['target']}, {n['start']}, exit status {n['exit_status']}"]
    counts = [f"{k} {o['summary'].get(k, 0)} -> {n['summary'].get(k, 0)}"
              for k in ("passed", "flaky", "failed", "must_failed", "should_failed", "error", "skipped")
              if o["summary"].get(k, 0) != n["summary"].get(k, 0)]
    lines.append("counts: " + (", ".join(counts) if counts else "unchanged"))
    if not diff.changes:
        lines.append("no scenario changed its verdict")
        return lines
    for kind in KINDS:
        group = [c for c in diff.changes if c.kind == kind]
        if not group:
            continue
        lines.append(f"{kind} ({len(group)}):")
        for c in group:
            lines.append(f"  {c.id} ({c.severity}): {c.old or '-'} -> {c.new or '-'}")
            if c.why_new and (kind != "changed" or c.why_old != c.why_new):
                lines.append(f"      now: {c.why_new}")
            if c.why_old and kind in ("fixed", "fails differently"):
                lines.append(f"      was: {c.why_old}")
    return lines
