"""``report.html``: one self-contained page, readable without scripts.

Every value is escaped; failures and findings sit in ``<details>`` elements,
which browsers open and close without JavaScript.  pcap links are relative to
the report directory.
"""

from __future__ import annotations

from html import escape
from typing import Any

from dicomconf.report.outcomes import OUTCOMES, area_label

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.passed{background:#e6f4e6}.failed{background:#fbe3e3}.skipped{background:#f4f4f4}.error{background:#fdf0d5}
pre{white-space:pre-wrap;margin:.3em 0;font-size:90%}
code{font-size:95%}
.requirement{font-size:90%;color:#444;margin:.2em 0}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _scenario_row(s: dict[str, Any]) -> str:
    details = []
    failure = s.get("failure")
    if failure:
        text = "\n".join(f"{k}: {v}" for k, v in failure.items() if v and k != "finding")
        if failure.get("finding"):
            f = failure["finding"]
            text += f"\nfinding: {f['code']} ({f['clause']}, {f['severity']}): {f['message']}"
        details.append(f"<details open><summary>failure</summary><pre>{_e(text)}</pre></details>")
    if s.get("skip_reason"):
        details.append(f"<div>skipped: {_e(s['skip_reason'])}</div>")
    if s.get("disruptive"):
        details.append("<div>disruptive: ran alone against the target</div>")
    scu = s.get("scu")
    if scu:  # how the SCU under test ran (SCU-testing scenarios)
        how = _e(scu.get("command") or scu.get("mode"))
        status = f", exit status {_e(scu['exit_status'])}" if scu.get("exit_status") is not None else ""
        stopped = f", {_e(scu['stopped'])}" if scu.get("stopped") else ""
        output = f"<pre>{_e(scu['output'])}</pre>" if scu.get("output") else ""
        details.append(f"<details><summary>SCU under test: {how}{status}{stopped}</summary>{output}</details>")
    findings = s.get("findings") or []
    if findings:
        items = "".join(
            f"<li><code>{_e(f['code'])}</code> ({_e(f['clause'])}, {_e(f['severity'])}"
            f"{', allowed' if f.get('allowed') else ''}, {_e(f.get('connection'))}): {_e(f['message'])}</li>"
            for f in findings
        )
        details.append(f"<details><summary>{len(findings)} finding(s)</summary><ul>{items}</ul></details>")
    pcap = f'<a href="{_e(s["pcap"])}">pcap</a>' if s.get("pcap") else ""
    # the normative sentence the scenario enforces, quoted from its clause (docs/scenarios.md)
    shall = f'<div class="requirement">requirement: <q>{_e(s["requirement"])}</q></div>' if s.get("requirement") else ""
    return (
        f'<tr class="{_e(s["outcome"])}"><td><code>{_e(s["id"])}</code><br>{_e(s["title"])}{shall}{"".join(details)}</td>'
        f"<td>{_e('; '.join(s['clauses']))}</td><td>{_e(s['severity'])}</td><td>{_e(s['outcome'])}</td>"
        f"<td>{s.get('duration_s', 0):.3f}</td><td>{pcap}</td></tr>"
    )


def _left_out_section(deselected: list[dict[str, Any]]) -> str:
    """The scenarios collected but left out of the run, with the reason of each."""
    if not deselected:
        return ""
    rows = "".join(
        f"<tr class=\"skipped\"><td><code>{_e(d['id'])}</code><br>{_e(d['title'])}</td><td>{_e(d['area'])}</td>"
        f"<td>{_e(d['severity'])}</td><td>{_e(d.get('reason'))}</td></tr>"
        for d in deselected
    )
    return (f"<h2>left out ({len(deselected)})</h2><p>Collected but not run: no verdict for these.</p>"
            f"<table><tr><th>scenario</th><th>area</th><th>severity</th><th>why</th></tr>{rows}</table>")


def _target_rows(run: dict[str, Any]) -> str:
    """What the run found of the target itself: unreachable, lost mid-run, TLS verification."""
    rows = []
    pre = run.get("preflight")
    if pre and not pre.get("ok"):
        hint = f"; {pre['hint']}" if pre.get("hint") else ""
        rows.append(f'<tr class="error"><th>target</th><td>not reached, no scenario run: '
                    f"{_e(pre.get('message'))}{_e(hint)} ({_e(pre.get('cause'))})</td></tr>")
    lost = run.get("target_lost")
    if lost:
        rows.append(f'<tr class="error"><th>target lost</th><td>stopped answering at scenario '
                    f"<code>{_e(lost.get('at_scenario'))}</code> ({_e(lost.get('at'))}): {_e(lost.get('message'))}; "
                    "later scenarios were not played while it did not answer</td></tr>")
    tls = run.get("tls")
    if tls:
        how = ("certificate and host name NOT verified (--tls-insecure)" if tls.get("insecure")
               else "certificate chain and host name verified")
        rows.append(f"<tr><th>TLS</th><td>port {_e(tls.get('port'))}: {how}</td></tr>")
    return "".join(rows)


def _verdict(run: dict[str, Any], summary: dict[str, Any]) -> str:
    pre = run.get("preflight")
    if pre and not pre.get("ok"):
        return "NOT RUN (target unreachable)"
    verdict = "FAIL" if summary.get("must_failed") or summary.get("error") else "PASS"
    if run.get("strict") and summary.get("should_failed"):
        verdict = "FAIL"
    return verdict


def render_html(document: dict[str, Any], report_dir: Any = None) -> str:
    run, summary, scenarios = document["run"], document["summary"], document["scenarios"]
    areas: dict[str, list[dict[str, Any]]] = {}
    for s in scenarios:
        areas.setdefault(area_label(s), []).append(s)
    overview = "".join(
        f"<tr><td>{_e(area)}</td>"
        + "".join(f"<td>{sum(1 for s in rs if s['outcome'] == o)}</td>" for o in OUTCOMES)
        + "</tr>"
        for area, rs in sorted(areas.items())
    )
    sections = []
    for area, rs in sorted(areas.items()):
        rows = "".join(_scenario_row(s) for s in rs)
        sections.append(
            f"<h2>{_e(area)}</h2><table><tr><th>scenario</th><th>clauses</th><th>severity</th>"
            f"<th>outcome</th><th>s</th><th>capture</th></tr>{rows}</table>"
        )
    versions = ", ".join(f"{k} {v}" for k, v in run.get("versions", {}).items() if v)
    verdict = _verdict(run, summary)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dicomconf report: {_e(run.get('target'))}</title>
<style>{_STYLE}</style></head><body>
<h1>dicomconf conformance report: {verdict}</h1>
<table>
<tr><th>target</th><td>{_e(run.get('target'))}</td></tr>
<tr><th>SCU under test</th><td>{_e(run.get('scu') or 'none')}</td></tr>
<tr><th>profile</th><td>{_e(run.get('profile', {}).get('name'))} ({_e(run.get('profile', {}).get('source'))})</td></tr>
<tr><th>start</th><td>{_e(run.get('start'))}</td></tr>
<tr><th>duration</th><td>{_e(run.get('duration_s'))} s</td></tr>
<tr><th>versions</th><td>{_e(versions)}</td></tr>
<tr><th>summary</th><td>{_e(', '.join(f'{v} {k}' for k, v in summary.items()))}</td></tr>
{_target_rows(run)}
</table>
<h2>by area</h2>
<table><tr><th>area</th>{''.join(f'<th>{o}</th>' for o in OUTCOMES)}</tr>{overview}</table>
{''.join(sections)}
{_left_out_section(document.get("deselected") or [])}
</body></html>
"""
