"""The terminal summary (``pytest_terminal_summary``): one line per area, the scenarios left out, the
failures grouped by what went wrong, and the verdict line, worded as the other reports word them."""

from __future__ import annotations

from typing import Any, Iterable

from dicomconf.report.model import baseline_status, counts_line, verdict
from dicomconf.report.outcomes import OUTCOMES, area_label


def verdict_line(document: dict[str, Any]) -> str:
    """The run's verdict and counts, worded as report.html and the Markdown summary word them."""
    word, sentence = verdict(document)
    return f"dicomconf: {word}: {sentence}; {counts_line(document)}"


def group_lines(document: dict[str, Any], limit: int = 6) -> list[str]:
    """One line per failure group (:func:`dicomconf.report.model.failure_groups`): severity, what went
    wrong, how many scenarios, the first ``limit`` of them by id."""
    status = baseline_status(document)
    lines = []
    for g in document.get("failure_groups") or ():
        ids = [f"{i} (known)" if status.get(i) == "known" else i for i in g["scenarios"]]
        more = f", and {len(ids) - limit} more" if len(ids) > limit else ""
        lines.append(f"[{g['severity']}] {g['deviation']}" + (f" [{g['clause']}]" if g["clause"] else ""))
        lines.append(f"    {len(ids)} scenario(s): {', '.join(ids[:limit])}{more}")
    return lines


def area_table(records: Iterable[dict[str, Any]]) -> list[str]:
    """Aligned lines: area (SCU-testing areas as ``scu.<area>``), a count per outcome, the failed ids."""
    by_area: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_area.setdefault(area_label(r), []).append(r)
    width = max([len(a) for a in by_area] + [4])
    lines = [f"{'area':<{width}}  " + "  ".join(f"{o:>7}" for o in OUTCOMES)]
    for area in sorted(by_area, key=lambda a: (a.startswith("scu."), a)):
        rs = by_area[area]
        counts = "  ".join(f"{sum(1 for r in rs if r['outcome'] == o):>7}" for o in OUTCOMES)
        bad = sorted(f"{r['id']} ({r['severity']})" for r in rs if r["outcome"] in ("failed", "error"))
        lines.append(f"{area:<{width}}  {counts}" + (f"   {', '.join(bad)}" if bad else ""))
    return lines


def left_out_lines(deselected: Iterable[dict[str, Any]], limit: int = 30) -> list[str]:
    """The scenarios left out of the run, grouped under each reason: ``  id (area, severity)``;
    a reason that leaves out more than ``limit`` (a narrow ``-k``) gets its count alone, except the
    disruptive scenarios ``--gentle`` leaves out, which a user wants to see by name."""
    from dicomconf.report.model import left_out

    by_reason: dict[str, list[dict[str, Any]]] = {}
    for d in left_out(deselected):
        by_reason.setdefault(d.get("reason") or "deselected", []).append(d)
    lines = []
    for reason, ds in sorted(by_reason.items()):
        lines.append(f"{len(ds)} left out: {reason}")
        if len(ds) > limit and not reason.startswith("disruptive:"):  # --gentle's list is always shown
            lines.append("  (listed in report.json and report.html)")
            continue
        lines.extend(f"  {d['id']} ({d['area']}, {d['severity']})" for d in ds)
    return lines
