"""Reruns: one record per scenario however many attempts it took, and the "flaky" verdict.

Theory of operation
-------------------
``--reruns N`` (and ``--reruns-delay S``) belong to pytest-rerunfailures, which
dicomconf builds on rather than running a loop of its own.  That plugin plays a
failed or errored item again, up to N more times, inside the same
``pytest_runtest_protocol`` call of the same process (an xdist worker included).
Each attempt makes its own reports, so each attempt's report carries its own
scenario record (``report.dicomconf``, made by the plugin's
``pytest_runtest_makereport``).  An attempt that will be played again reaches
``pytest_runtest_logreport`` with ``report.outcome == "rerun"`` and
``report.rerun`` = the attempt's number less one; the last attempt's report has
its ordinary outcome.  Under pytest-xdist both attributes, and the record, travel
with the serialised report to the controller.

:func:`final_record` is the filter between those reports and the run's records
(:class:`~dicomconf.pytest_plugin.DicomconfState`): a rerun attempt's record is
held back, keyed by node id; the last attempt's record is the one kept, with

* ``attempts``: how many times the scenario was played (1 without a rerun);
* ``first_failure``: the first failed attempt's failure (message, step, what was
  expected and what came), its ``outcome`` (failed or error) and its ``pcap``;
* ``outcome`` ``"flaky"`` when the last attempt passed after a failed one: such a
  scenario never counts as passed, and it does not fail the run either (it passed
  within the reruns the user allowed); reports, the baseline and the terminal's
  "flaky scenarios" section name it.

Pcaps: every attempt writes ``pcap/<id>.pcap``.  Before an attempt after the
first starts, :func:`begin_attempt` renames the previous attempt's capture to
``pcap/<id>.attempt<k>.pcap`` (:func:`attempt_pcap`), so the first failure's
capture is never overwritten; the controller, which sees only the records,
derives the same name from the attempt's number.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from dicomconf.wire.capture import decrypted_path, key_log_path

_HELD = pytest.StashKey[dict]()  # nodeid -> records of the failed attempts that were played again
# what a scenario item learns from one attempt (ScenarioItem.runtest), made afresh for the next
_PER_ATTEMPT = {"pcap": lambda: None, "findings": list, "steps": list, "target_lost": lambda: None,
                "scu": lambda: None, "duration_s": float}


def attempt_pcap(pcap: str, attempt: int) -> str:
    """Where attempt ``attempt``'s capture is kept once a later attempt runs: ``x.pcap`` -> ``x.attempt<k>.pcap``."""
    path = Path(pcap)
    return str(path.with_name(f"{path.stem}.attempt{attempt}{path.suffix}"))


def begin_attempt(item: Any) -> None:
    """Before an attempt after the first: keep the previous attempt's pcap, forget its results.

    ``item.execution_count`` is pytest-rerunfailures' count of attempts, this one included;
    without ``--reruns`` it does not exist and nothing is done.
    """
    attempt = getattr(item, "execution_count", 1) or 1
    if attempt <= 1:
        return
    if item.pcap:  # the capture, and over TLS its key log and decrypted copy (dicomconf.wire.capture)
        kept = attempt_pcap(item.pcap, attempt - 1)
        for now, then in ((item.pcap, kept), (key_log_path(item.pcap), key_log_path(kept)),
                          (decrypted_path(item.pcap), decrypted_path(kept))):
            if os.path.exists(now):
                os.replace(now, then)
    for name, fresh in _PER_ATTEMPT.items():
        setattr(item, name, fresh())


def final_record(config: pytest.Config, report: pytest.TestReport) -> dict[str, Any] | None:
    """The record to keep for ``report``: None for a report without one and for an attempt that
    is played again (held until the last attempt); else the last attempt's record, merged with
    what the earlier attempts left (see the module docstring)."""
    record = getattr(report, "dicomconf", None)
    if record is None:
        return None
    held = config.stash.setdefault(_HELD, {})
    if report.outcome == "rerun":
        held.setdefault(record["nodeid"], []).append((getattr(report, "rerun", 0) + 1, record))
        return None
    earlier = held.pop(record["nodeid"], [])
    if not earlier:
        return {**record, "attempts": 1}
    out = {**record, "attempts": len(earlier) + 1}
    number, first = earlier[0]
    failure = dict(first.get("failure") or {})
    pcap = attempt_pcap(first["pcap"], number) if first.get("pcap") else None
    if pcap and failure.get("text"):  # the text was written before the capture was renamed
        failure["text"] = failure["text"].replace(first["pcap"], pcap)
    out["first_failure"] = {**failure, "outcome": first["outcome"], "pcap": pcap}
    if record["outcome"] == "passed":
        out["outcome"] = "flaky"
    return out


def flaky_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """One line per flaky record: its id, attempts, and the first line of its first failure."""
    lines = []
    for r in sorted((r for r in records if r["outcome"] == "flaky"), key=lambda r: r["id"]):
        first = r.get("first_failure") or {}
        message = (first.get("message") or first.get("text") or first.get("outcome") or "").strip()
        head = message.splitlines()[0] if message else "(no message)"
        lines.append(f"{r['id']}: passed on attempt {r['attempts']}; first failure: {head}")
    return lines


def terminal_section(terminalreporter: Any, records: Iterable[dict[str, Any]]) -> None:
    """The terminal's "flaky scenarios" section (nothing when no scenario was flaky)."""
    lines = flaky_lines(records)
    if lines:
        terminalreporter.section("flaky scenarios (passed on a rerun)", sep="-")
        for line in lines:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"{len(lines)} flaky scenario(s): reported, they do not fail the run")
