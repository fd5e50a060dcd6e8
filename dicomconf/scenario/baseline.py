"""Baselines: the failures a target is known to have, so CI fails only on what is new.

Theory of operation
-------------------
A baseline file (``baseline.schema.json``) maps scenario ids to what is
expected of them: ``failed``, ``error`` or ``flaky`` (either way, or
passing), with a ``reason`` and optionally a ``ticket`` and an ``expires``
date.  :func:`load_baseline` validates it like a scenario file (every problem,
``file:line``).  :func:`judge` sets each record of a run against it:

* a failure (a must-level one, or any with ``strict``) listed with that
  outcome (or as flaky) is **known**: reported, it does not fail the run;
* a failure not listed, or listed with the other outcome, is **new**;
* a listed scenario that passed is **stale** (an unexpected pass: take it out
  of the baseline), unless it is listed as flaky;
* a **flaky** record (it passed on a rerun, :mod:`dicomconf.reruns`) listed with
  any expectation is known; not listed, it is reported as **flaky** and does
  not fail the run (it passed within the reruns allowed);
* an entry whose scenario was not collected in the run is **unknown**, and
  one past its ``expires`` date **expired**.

The run conforms when nothing is new and, unless ``allow_stale``, nothing is
stale, unknown or expired (:attr:`Judgement.conforms`).  :func:`write_baseline`
writes the failures of a run as a baseline (a flaky record as ``expected:
flaky``), keeping what an existing file says of each entry it keeps (reason,
ticket, expires), and keeping an existing ``flaky`` entry whose scenario
passed this time.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from dicomconf.scenario.loader import SourceErrors, load_yaml
from dicomconf.scenario.validation import dotted, schema_errors

EXPECTED = ("failed", "error", "flaky")


@dataclass(frozen=True, slots=True)
class Entry:
    """What a baseline says of one scenario."""

    expected: str
    reason: str
    ticket: str | None = None
    expires: _dt.date | None = None


@dataclass
class Judgement:
    """A run set against a baseline: scenario ids by verdict, and whether the run conforms."""

    known: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    flaky: list[str] = field(default_factory=list)  # passed on a rerun, not in the baseline: reported only
    allow_stale: bool = False

    @property
    def conforms(self) -> bool:
        return not self.new and (self.allow_stale or not (self.stale or self.unknown or self.expired))

    def as_dict(self) -> dict[str, Any]:
        return {"known": self.known, "new": self.new, "stale": self.stale, "unknown": self.unknown,
                "expired": self.expired, "flaky": self.flaky, "allow_stale": self.allow_stale,
                "conforms": self.conforms}

    def lines(self) -> list[str]:
        """The terminal's account of it."""
        out = [f"{len(self.known)} known failure(s) (in the baseline), {len(self.new)} new"]
        for label, ids, hint in (
            ("new failure", self.new, "not in the baseline: this fails the run"),
            ("stale", self.stale, "passed: remove it from the baseline"),
            ("unknown entry", self.unknown, "no such scenario in this run: remove it from the baseline"),
            ("expired entry", self.expired, "past its expires date: look at it again"),
            ("flaky", self.flaky, "passed on a rerun, not in the baseline: reported, it does not fail the run"),
        ):
            out += [f"  {label}: {i} ({hint})" for i in ids]
        if self.allow_stale and (self.stale or self.unknown or self.expired):
            out.append("  (--allow-stale: stale, unknown and expired entries do not fail the run)")
        return out


def _date(value: Any) -> _dt.date | None:
    if value is None or isinstance(value, _dt.date):
        return value
    return _dt.date.fromisoformat(str(value))


def load_baseline(path: str | Path) -> dict[str, Entry]:
    """The entries of a baseline file; every problem at once as a SourceError (``file:line``)."""
    doc = load_yaml(Path(path))
    problems = schema_errors(doc, "baseline.schema.json")
    data = doc.value if isinstance(doc.value, Mapping) else {}
    scenarios = data.get("scenarios") if isinstance(data.get("scenarios"), Mapping) else {}
    for sid, entry in scenarios.items():
        where = ("scenarios", sid, "expires")
        if isinstance(entry, Mapping) and entry.get("expires") is not None:
            try:
                _date(entry["expires"])
            except ValueError:
                problems.append((where, doc.error(where, f"{dotted(where)}: got {entry['expires']!r}; "
                                                         "expected a date, YYYY-MM-DD")))
    problems.sort(key=lambda item: doc.position(item[0]))
    error = SourceErrors.merge(e for _, e in problems)
    if error is not None:
        raise error
    return {str(sid): Entry(e["expected"], e["reason"], None if e.get("ticket") is None else str(e["ticket"]),
                            _date(e.get("expires")))
            for sid, e in scenarios.items()}


def _counts(record: Mapping[str, Any], strict: bool) -> bool:
    """Whether a failed, error or flaky record is the baseline's business at all (a should-level
    failure or flaky pass is not, unless strict)."""
    if record["outcome"] == "error":
        return True
    return record["outcome"] in ("failed", "flaky") and (strict or record.get("severity") != "should")


def judge(records: Iterable[Mapping[str, Any]], entries: Mapping[str, Entry], *, collected: Iterable[str] = (),
          strict: bool = False, allow_stale: bool = False, today: _dt.date | None = None) -> Judgement:
    """Set a run's records against a baseline (see the module docstring).  ``collected``: the ids the
    run collected (records and scenarios left out), so an entry is unknown only if none of them is it."""
    today = today or _dt.date.today()
    out = Judgement(allow_stale=allow_stale)
    seen = set(collected)
    for r in records:
        sid, outcome = r["id"], r["outcome"]
        seen.add(sid)
        entry = entries.get(sid)
        if outcome in ("failed", "error") and _counts(r, strict):
            if entry is not None and entry.expected in (outcome, "flaky"):
                out.known.append(sid)
            else:
                out.new.append(sid)
        elif outcome == "flaky" and _counts(r, strict):
            (out.known if entry is not None else out.flaky).append(sid)
        elif outcome == "passed" and entry is not None and entry.expected != "flaky":
            out.stale.append(sid)
    out.unknown = sorted(sid for sid in entries if sid not in seen)
    out.expired = sorted(sid for sid, e in entries.items() if e.expires is not None and e.expires < today)
    for ids in (out.known, out.new, out.stale, out.flaky):
        ids.sort()
    return out


def write_baseline(path: str | Path, records: Iterable[Mapping[str, Any]], *, target: str | None = None,
                   strict: bool = False, keep: Mapping[str, Entry] | None = None) -> int:
    """Write the failures of a run as a baseline at ``path``; return how many entries.  What
    ``keep`` (an existing baseline) says of an entry it also lists is kept."""
    keep = keep or {}
    scenarios: dict[str, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: r["id"]):
        old = keep.get(r["id"])
        if old is not None and old.expected == "flaky" and r["outcome"] == "passed":
            scenarios[r["id"]] = _entry_of(old)  # flaky: passing this time says nothing new
            continue
        if r["outcome"] not in ("failed", "error", "flaky") or not _counts(r, strict):
            continue
        failure = r.get("failure") or r.get("first_failure") or {}
        flaky = r["outcome"] == "flaky" or old is not None and old.expected == "flaky"
        entry: dict[str, Any] = {"expected": "flaky" if flaky else r["outcome"],
                                 "reason": old.reason if old else (failure.get("message") or r["outcome"])}
        if old is not None and old.ticket:
            entry["ticket"] = old.ticket
        if old is not None and old.expires:
            entry["expires"] = old.expires.isoformat()
        scenarios[r["id"]] = entry
    document: dict[str, Any] = {}
    if target:
        document["target"] = target
    document["scenarios"] = scenarios
    text = ("# dicomconf baseline: the failures this target is known to have (docs/scenarios.md, Baselines).\n"
            "# Give each a reason worth reading; a scenario listed here that passes makes the run fail as stale.\n")
    Path(path).write_text(text + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100),
                          encoding="utf-8")
    return len(scenarios)


def _entry_of(entry: Entry) -> dict[str, Any]:
    """An entry as the file writes it."""
    out: dict[str, Any] = {"expected": entry.expected, "reason": entry.reason}
    if entry.ticket:
        out["ticket"] = entry.ticket
    if entry.expires:
        out["expires"] = entry.expires.isoformat()
    return out


def update_baseline(path: str | Path, records: Iterable[Mapping[str, Any]], target: str | None,
                    strict: bool = False) -> int:
    """``--write-baseline``: :func:`write_baseline` at ``path``, keeping what the file there already
    says of the entries it keeps, and its ``target`` line (a file that does not load is replaced)."""
    from dicomconf.scenario.loader import SourceError

    keep = None
    if Path(path).exists():
        try:
            keep = load_baseline(path)
            # the file's own description of its target (a name people wrote) outlives the address
            target = (yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}).get("target") or target
        except SourceError:
            keep = None
    return write_baseline(path, records, target=target or "embedded reference SCP", strict=strict, keep=keep)
