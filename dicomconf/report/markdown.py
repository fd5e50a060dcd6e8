"""A Markdown summary of a run for CI job pages (``--summary-md FILE``), from the report.json document.

Theory of operation
-------------------
:func:`render_markdown` renders the same document ``report.json`` holds, through
:mod:`dicomconf.report.model` (so its verdict and counts are the report's):
a verdict line, what was tested, the counts, the baseline's judgement when
there was one (new failures first, then stale entries, then known failures),
the failures grouped by what went wrong (must-level groups first), each group
with its scenarios, and where the full report is.  GitHub's ``$GITHUB_STEP_SUMMARY`` and GitLab's job summaries
render it as it is.
"""

from __future__ import annotations

from typing import Any

from dicomconf.report.model import counts_line, verdict
from dicomconf.report.outcomes import OUTCOMES


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _why(s: dict[str, Any]) -> str:
    failure = s.get("failure") or {}
    return (failure.get("message") or "").splitlines()[0] if failure.get("message") else ""


def render_markdown(document: dict[str, Any], report_path: str = "report.html") -> str:
    run, summary, scenarios = document["run"], document["summary"], document["scenarios"]
    word, sentence = verdict(document)
    lines = [f"## dicomconf: {word}: {_cell(sentence)}", ""]
    lines.append(f"- target: {_cell(run.get('target'))}" + (f"; SCU under test: {_cell(run['scu'])}" if run.get("scu") else ""))
    lines.append(f"- profile: {_cell((run.get('profile') or {}).get('name'))}")
    lines.append(f"- {run.get('duration_s')} s, exit status {run.get('exit_status')}")
    lines.append(f"- {counts_line(document)}")
    lines += ["", "| " + " | ".join(OUTCOMES) + " | must failed | should failed |",
              "|" + "---|" * (len(OUTCOMES) + 2),
              "| " + " | ".join(str(summary.get(o, 0)) for o in OUTCOMES)
              + f" | {summary.get('must_failed', 0)} | {summary.get('should_failed', 0)} |", ""]
    by_id = {s["id"]: s for s in scenarios}
    baseline = run.get("baseline")
    if baseline:
        for key, title in (("new", "New failures (not in the baseline)"), ("stale", "Stale: passed, remove from the baseline"),
                           ("unknown", "Baseline entries for scenarios not run"), ("expired", "Expired baseline entries"),
                           ("known", "Known failures (in the baseline)")):
            if baseline.get(key):
                lines += [f"### {title}", ""]
                lines += [f"- `{i}` {_cell(_why(by_id.get(i, {})))}" for i in baseline[key]]
                lines.append("")
    groups = document.get("failure_groups") or []
    if groups:
        lines += ["### Failures by what went wrong", "", "| severity | what went wrong | scenarios | clauses |",
                  "|---|---|---|---|"]
        for g in groups:
            clause = g["clause"] or "; ".join(g["clauses"][:3]) + (" ..." if len(g["clauses"]) > 3 else "")
            ids = ", ".join(f"`{i}`" for i in g["scenarios"])
            lines.append(f"| {g['severity']} | {_cell(g['deviation'])} | {ids} | {_cell(clause)} |")
        lines.append("")
    lines.append(f"Full report: `{report_path}` (with a pcap per scenario).")
    return "\n".join(lines) + "\n"
