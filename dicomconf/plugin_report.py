"""What the pytest plugin writes at the end of a run: the reports and the terminal's summary.

Theory of operation
-------------------
:func:`write_run_report` describes the run (target, profiles, the SCU under
test, TLS, pre-flight, a target lost mid-run, the baseline's judgement, the
exit status) and hands it with the records to :mod:`dicomconf.report`, which
builds the one document every output renders; the document is kept on the
plugin's state so the terminal says what the reports say.
:func:`terminal_summary` prints the conformance table by area, the scenarios
left out, the failures grouped by what went wrong, the should-level failures,
the flaky ones, the baseline's account, and the verdict line.
"""

from __future__ import annotations

import time
from typing import Any

from dicomconf import reruns


def write_run_report(state: Any, deselected: list[dict[str, Any]], exit_status: int) -> None:
    """report.json and report.html for the run (also when the target never answered)."""
    from dicomconf.report import write_reports

    lost = sorted((r["target_lost"] for r in state.records if r.get("target_lost")), key=lambda x: x["at"])
    # the SCU under test, when SCU-testing scenarios were collected (under xdist the controller makes its own)
    scu_side = state.scu_side if any(r.get("role") == "scp" for r in state.records) else None
    side = scu_side if scu_side is not None and scu_side.source is not None else None
    option = state.config.option
    run = {
        "target": state.target_text or "embedded reference SCP",
        "scu": side.describe() if side is not None else None,
        "scu_profile": {"name": side.profile.name, "source": side.profile.source} if side is not None else None,
        "profile": {"name": state.profile.name, "source": state.profile.source},
        "start": state.started,
        "duration_s": round(time.monotonic() - state.t0, 3),
        "strict": state.strict,
        "exit_status": exit_status,
        "tls": state.tls_summary(),
        "preflight": state.preflight.as_dict() if state.preflight else None,
        "target_lost": lost[0] if lost else None,
        "baseline": ({"file": option.dicomconf_baseline, **state.judgement.as_dict()}
                     if state.judgement is not None else None),
    }
    summary_md = state.config.invocation_params.dir / option.dicomconf_summary_md if option.dicomconf_summary_md else None
    state.written = state.report_dir
    state.document = write_reports(state.report_dir, run, state.records,
                                   latest=option.report_dir is None or option.dicomconf_link_latest,
                                   deselected=deselected, summary_md=summary_md)


def terminal_summary(terminalreporter: Any, state: Any, deselected: list[dict[str, Any]]) -> None:
    """The dicomconf sections at the end of pytest's terminal output."""
    from dicomconf.report import area_table, left_out_lines
    from dicomconf.report.terminal import group_lines, verdict_line

    write = terminalreporter.write_line
    terminalreporter.section("dicomconf conformance by area")
    for line in area_table(state.records):
        write(line)
    if deselected:
        terminalreporter.section("scenarios left out (not run, no verdict)", sep="-")
        for line in left_out_lines(deselected):
            write(line)
    if state.document is not None and state.document.get("failure_groups"):
        terminalreporter.section("failures by what went wrong (must-level first)", sep="-")
        for line in group_lines(state.document):
            write(line)
    should = [r for r in state.records if r["outcome"] == "failed" and r["severity"] == "should"]
    if should and not state.strict:
        terminalreporter.section("should-level failures (reported; they fail the run only with --strict)", sep="-")
        for r in should:
            write((r.get("failure") or {}).get("text") or r["id"])
        write(f"{len(state.should_failed)} should-level failure(s) reported; they fail the run only with --strict")
    reruns.terminal_section(terminalreporter, state.records)
    if state.judgement is not None:
        terminalreporter.section(f"baseline ({state.config.option.dicomconf_baseline})", sep="-")
        for line in state.judgement.lines():
            write(line)
    if state.baseline_written:
        write("baseline written: {} ({} known failure(s))".format(*state.baseline_written))
    if state.document is not None:
        write(verdict_line(state.document), bold=True)
    if state.written:
        write(f"reports: {state.written}")
