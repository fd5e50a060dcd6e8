"""A Markdown summary of a run for CI job pages (``--summary-md FILE``), from the report.json document.

Theory of operation
-------------------
:func:`render_markdown` renders the same document ``report.json`` holds (so
its counts are the report's): a verdict line, what was tested, the counts,
the baseline's judgement when there was one (new failures first, then stale
entries, then known failures), the must-level failures and the should-level
ones, each with its clauses and the first line of why, and where the full
report is.  GitHub's ``$GITHUB_STEP_SUMMARY`` and GitLab's job summaries
render it as it is.
"""

from __future__ import annotations

from typing import Any

from dicomconf.report.outcomes import OUTCOMES, area_label


def _cell(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _why(s: dict[str, Any]) -> str:
    failure = s.get("failure") or {}
    return (failure.get("message") or "").splitlines()[0] if failure.get("message") else ""


def _verdict(run: dict[str, Any]) -> str:
    status = run.get("exit_status")
    if status == 0:
        return "PASS: the system under test conforms" + (" (known failures only)" if run.get("baseline") else "")
    if status == 6:
        return "NOT RUN: the target is unreachable"
    if status == 4:
        return "NOT RUN: usage or configuration error"
    return "FAIL"


def render_markdown(document: dict[str, Any], report_path: str = "report.html") -> str:
    run, summary, scenarios = document["run"], document["summary"], document["scenarios"]
    lines = [f"## dicomconf: {_verdict(run)}", ""]
    lines.append(f"- target: {_cell(run.get('target'))}" + (f"; SCU under test: {_cell(run['scu'])}" if run.get("scu") else ""))
    lines.append(f"- profile: {_cell((run.get('profile') or {}).get('name'))}")
    lines.append(f"- {run.get('duration_s')} s, exit status {run.get('exit_status')}")
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
    for severity, title in (("must", "Must-level failures"), ("should", "Should-level failures (reported)")):
        failed = [s for s in scenarios if s["outcome"] in ("failed", "error") and s.get("severity") == severity]
        if failed:
            lines += [f"### {title}", "", "| scenario | area | clauses | why |", "|---|---|---|---|"]
            lines += [f"| `{s['id']}` | {area_label(s)} | {_cell('; '.join(s.get('clauses') or []))} | {_cell(_why(s))} |"
                      for s in failed]
            lines.append("")
    lines.append(f"Full report: `{report_path}` (with a pcap per scenario).")
    return "\n".join(lines) + "\n"
