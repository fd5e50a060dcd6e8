"""One model of a run, which every output renders: report.json, HTML, Markdown, the terminal.

Theory of operation
-------------------
:func:`build_document` turns what the pytest plugin gathered (a description of
the run, one record per scenario, the scenarios left out) into the document
that ``report.json`` holds (schema: ``report.schema.json``).  Everything the
outputs show is that document or is derived from it here, once, so that no
two outputs can count differently:

* :func:`summarize` gives the counts: one per outcome (:data:`OUTCOMES`),
  the failures split by severity (``must_failed`` + ``should_failed`` =
  ``failed``; an ``error``, a scenario that could not be played, fails the
  run whatever its severity), and, against a baseline, ``known``, ``new`` and
  ``stale``;
* :func:`verdict` reads the run's exit status (:mod:`dicomconf.exitcodes`),
  the one place the verdict is decided, and words it;
* :func:`failure_groups` groups the failures by what went wrong (the finding,
  or the deviation between what a step expected and what came), so that one
  defect of the target showing in five scenarios reads as one line with five
  scenarios; must-level groups come first;
* :func:`area_matrix` counts outcomes per area and severity;
* :func:`baseline_status` says, per scenario, whether the baseline knew its
  failure (``known``), did not (``new``) or expected a failure that did not
  come (``stale``).

Paths in the document (pcaps, scenario files) are relative to the report
directory, so the directory can be archived and moved as a whole and its
links still open.
"""

from __future__ import annotations

import json
import os
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from dicomconf.report.outcomes import OUTCOMES, area_label

SCHEMA_VERSION = 1  # report.schema.json in this package describes it
_PACKAGES = ("dicomconf", "pydicom", "scapy", "pytest", "pytest-xdist", "pytest-rerunfailures")

Document = dict[str, Any]


def versions() -> dict[str, str | None]:
    """The versions of Python and of the packages a verdict depends on."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def relative(path: str | None, base: Path) -> str | None:
    """``path`` relative to ``base`` (``../`` where needed); ``None`` stays ``None``."""
    if not path:
        return None
    try:
        return os.path.relpath(Path(path).resolve(), Path(base).resolve())
    except ValueError:  # another drive (Windows)
        return str(path)


def _relative_location(location: str | None, base: Path) -> str | None:
    """``file:line`` with the file made relative to ``base``."""
    if not location:
        return location
    file, sep, line = location.rpartition(":")
    if not sep or not line.isdigit():
        return relative(location, base)
    return f"{relative(file, base)}:{line}"


def left_out(deselected: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The scenarios left out of the run (deselected), one entry per scenario, sorted like the results."""
    unique = {d.get("nodeid") or d["id"]: d for d in deselected}
    return [{k: v for k, v in d.items() if k != "nodeid"}
            for d in sorted(unique.values(), key=lambda d: (d["area"], d["id"], d.get("nodeid", "")))]


def _failing(record: Mapping[str, Any]) -> bool:
    return record["outcome"] in ("failed", "error")


def summarize(records: Iterable[Mapping[str, Any]], baseline: Mapping[str, Any] | None = None) -> dict[str, int]:
    """The counts every output shows: per outcome, failures per severity, and the baseline's verdicts."""
    records = list(records)
    out = {o: sum(1 for r in records if r["outcome"] == o) for o in OUTCOMES}
    for level in ("must", "should"):
        out[f"{level}_failed"] = sum(1 for r in records if r["outcome"] == "failed" and r.get("severity") == level)
    for key in ("known", "new", "stale"):
        out[key] = len((baseline or {}).get(key) or ())
    return out


def _relative_failure(failure: Mapping[str, Any] | None, base: Path) -> Mapping[str, Any] | None:
    """A failure with its step (``path:line (kind)``) and pcap relative to ``base``."""
    if not isinstance(failure, Mapping):
        return failure
    out = dict(failure)
    step = out.get("step")
    if isinstance(step, str) and " (" in step:
        where, _, kind = step.partition(" (")
        out["step"] = f"{_relative_location(where, base)} ({kind}"
    if out.get("pcap"):
        out["pcap"] = relative(out["pcap"], base)
    return out


def _record_entry(record: Mapping[str, Any], report_dir: Path) -> dict[str, Any]:
    entry = {k: v for k, v in record.items() if k != "nodeid"}
    entry["pcap"] = relative(record.get("pcap"), report_dir)
    entry["file"] = _relative_location(record.get("file"), report_dir)
    entry["failure"] = _relative_failure(record.get("failure"), report_dir)
    if "first_failure" in entry:
        entry["first_failure"] = _relative_failure(entry["first_failure"], report_dir)
    return entry


def build_document(report_dir: Path, run: Mapping[str, Any], records: Iterable[Mapping[str, Any]],
                   deselected: Iterable[Mapping[str, Any]] = ()) -> Document:
    """The report.json document of a run (see :mod:`dicomconf.report`)."""
    report_dir = Path(report_dir)
    records = list(records)
    scenarios = [_record_entry(r, report_dir)
                 for r in sorted(records, key=lambda r: (r["area"], r["id"], r.get("nodeid", "")))]
    gone = left_out(deselected)
    for d in gone:
        d["file"] = _relative_location(d.get("file"), report_dir)
    run = {**run, "versions": versions()}
    for key in ("profile", "scu_profile"):  # a profile's file, like every other path, relative to the report
        if isinstance(run.get(key), Mapping) and run[key].get("source") and Path(str(run[key]["source"])).is_absolute():
            run[key] = {**run[key], "source": relative(run[key]["source"], report_dir)}
    summary = {**summarize(records, run.get("baseline")), "deselected": len(gone)}
    document: Document = {"schema_version": SCHEMA_VERSION, "run": run, "summary": summary,
                          "scenarios": scenarios, "deselected": gone}
    document["failure_groups"] = failure_groups(document)
    return document


# ---------------------------------------------------------------------- verdict


def verdict(document: Mapping[str, Any]) -> tuple[str, str]:
    """``(word, sentence)`` for the run, from its exit status (:mod:`dicomconf.exitcodes`)."""
    from dicomconf import exitcodes

    run, summary = document["run"], document["summary"]
    status = run.get("exit_status")
    pre = run.get("preflight")
    if pre and not pre.get("ok"):
        return "NOT RUN", f"the target was not reached, no scenario was run: {pre.get('message')}"
    if status == exitcodes.CONFORMS:
        known = summary.get("known", 0)
        extra = f", with {known} known failure(s) from the baseline" if known else ""
        should = summary.get("should_failed", 0)
        extra += f"; {should} should-level failure(s) reported" if should and not run.get("strict") else ""
        return "PASS", f"the system under test conforms{extra}"
    if status == exitcodes.FAILURES:
        if run.get("baseline"):
            b = run["baseline"]
            parts = [f"{len(b.get(k) or ())} {k}" for k in ("new", "stale", "unknown", "expired") if b.get(k)]
            return "FAIL", "set against the baseline: " + ", ".join(parts or ["not conforming"])
        failing = summary.get("must_failed", 0) + (summary.get("should_failed", 0) if run.get("strict") else 0)
        parts = [f"{failing} {'must- or should-level' if run.get('strict') else 'must-level'} failure(s)"]
        if summary.get("error"):
            parts.append(f"{summary['error']} scenario(s) that could not be played")
        return "FAIL", ", ".join(parts)
    meaning = exitcodes.MEANINGS.get(status, f"exit status {status}")
    return "NOT RUN" if status in (exitcodes.USAGE_ERROR, exitcodes.NO_SCENARIOS,
                                   exitcodes.TARGET_UNREACHABLE) else "ERROR", meaning


def counts_line(document: Mapping[str, Any]) -> str:
    """The counts in one line, the same words in every output: ``13 failed (9 must, 4 should), ...``."""
    s = document["summary"]
    parts = [f"{s.get('passed', 0)} passed"]
    if s.get("failed"):
        parts.append(f"{s['failed']} failed ({s.get('must_failed', 0)} must, {s.get('should_failed', 0)} should)")
    else:
        parts.append("0 failed")
    if s.get("error"):
        parts.append(f"{s['error']} error")
    for key in ("known", "new", "stale"):
        if document["run"].get("baseline") is not None:
            parts.append(f"{s.get(key, 0)} {key}")
    for key, word in (("flaky", "flaky"), ("skipped", "skipped"), ("deselected", "left out")):
        if s.get(key):
            parts.append(f"{s[key]} {word}")
    return ", ".join(parts)


# ---------------------------------------------------------------------- grouping


_PREFIXES = re.compile(r"^(?:alternative \d+: |the association did not go as expected: |C-[A-Z]+(?:-RQ)?: )+")
_WITHIN = re.compile(r"\bwithin \d+(?:\.\d+)?s\b")


def deviation(failure: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """``(what went wrong, clause)`` of a failure, worded the same for every scenario that shows it.

    A finding is its code (its message names the values of one PDU); a failed
    expectation is its message with the parts that vary between scenarios (an
    alternative's number, a wait's length) taken out.
    """
    if not failure:
        return "no failure recorded", None
    finding = failure.get("finding")
    if finding:
        return f"{finding['code']}: {finding['message']}", finding.get("clause")
    first = (failure.get("message") or "").splitlines()[0] if failure.get("message") else "failed"
    text = _WITHIN.sub("within its time", _PREFIXES.sub("", first))
    kind = _expected_kind(failure.get("expected"))
    if kind and kind not in text:  # "expected a PDU, got nothing" says nothing of which PDU
        text += f" (awaiting {kind})"
    return text, None


def _expected_kind(expected: str | None) -> str | None:
    """What an expectation waited for, without its parameters: a PDU type, ``A-ABORT``, ``close``."""
    if not expected:
        return None
    head = re.split(r" within | on ", expected, maxsplit=1)[0].strip()
    try:
        spec = json.loads(head)
    except ValueError:
        return head or None
    if isinstance(spec, dict) and isinstance(spec.get("any"), list) and spec["any"]:
        spec = spec["any"][0]
    if not isinstance(spec, dict):
        return None
    if "pdu" in spec:
        return str(spec["pdu"])
    if "aborted" in spec:
        return "A-ABORT"
    if "closed" in spec:
        return "close"
    return next(iter(spec), None)


def failure_groups(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The failures grouped by deviation, must-level groups first, then the larger groups.

    Each group: ``deviation``, ``clause`` (the finding's, if one), ``severity`` (``must`` if any of
    its scenarios is must-level), ``scenarios`` (ids), ``clauses`` (those the scenarios cite),
    ``new`` (how many of its scenarios the baseline did not know; all of them without a baseline).
    """
    status = baseline_status(document)
    groups: dict[tuple[str, str | None], dict[str, Any]] = {}
    for s in document["scenarios"]:
        if not _failing(s):
            continue
        text, clause = deviation(s.get("failure"))
        if (s.get("failure") or {}).get("finding"):
            key = (s["failure"]["finding"]["code"], clause)
        else:
            key = (text, None)
        g = groups.setdefault(key, {"deviation": text, "clause": clause, "severity": "should",
                                    "scenarios": [], "clauses": [], "new": 0})
        g["scenarios"].append(s["id"])
        if s.get("severity") == "must":
            g["severity"] = "must"
        for c in s.get("clauses") or ():
            if c not in g["clauses"]:
                g["clauses"].append(c)
        if status.get(s["id"]) != "known":
            g["new"] += 1
    return sorted(groups.values(), key=lambda g: (g["severity"] != "must", -g["new"], -len(g["scenarios"]),
                                                  g["deviation"]))


def baseline_status(document: Mapping[str, Any]) -> dict[str, str]:
    """Scenario id -> ``known``, ``new`` or ``stale`` as the run's baseline judged it (empty without one)."""
    baseline = document["run"].get("baseline") or {}
    out: dict[str, str] = {}
    for key in ("known", "new", "stale"):
        for sid in baseline.get(key) or ():
            out[sid] = key
    return out


def area_matrix(document: Mapping[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    """Area (as reports show it) -> severity -> outcome -> count."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for s in document["scenarios"]:
        cell = out.setdefault(area_label(s), {}).setdefault(s.get("severity") or "must", {o: 0 for o in OUTCOMES})
        cell[s["outcome"]] = cell.get(s["outcome"], 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (kv[0].startswith("scu."), kv[0])))
