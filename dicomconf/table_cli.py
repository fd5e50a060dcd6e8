"""``dicomconf table``: print PS3.8 Table 9-10 from :data:`dicomconf.ul.fsm.TRANSITIONS`, or its coverage.

Theory of operation
-------------------
Rows are states, columns events (``--events-as-rows`` gives the standard's
own layout); each cell holds the action, blank for an invalid event.
``--legend`` adds what each state, event and action means.

``--coverage [SCENARIOS...]`` prints instead, for every acceptor-side cell a
requestor can provoke (:data:`dicomconf.scenario.coverage.PROVOKABLE`), the
action and the ids of the scenarios that cite it (``-`` for none), then the
cells without a scenario, the cells cited outside that set and every wrong
citation with its ``file:line``.  The scenarios are the shipped library's
unless paths are given.  The exit code is 0 when every provokable cell is
cited and no citation is wrong, else 1; a missing path is a usage error.

The sub-command lives in the faces layer because it reads both the core's
table (``ul``) and the scenarios (``scenario``); the core imports neither.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys

from dicomconf.ul.fsm import ACTIONS, EVENTS, STATES, TRANSITIONS

FORMATS = ("text", "markdown", "csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="text", help="output format (default: text)")
    parser.add_argument(
        "--events-as-rows", action="store_true", help="one row per event, as PS3.8 prints it (default: per state)"
    )
    parser.add_argument("--legend", action="store_true", help="also list the states, events and actions")
    parser.add_argument(
        "--coverage", action="store_true",
        help="print which scenarios cite each cell a requestor can provoke (PS3.8 9.2 Table 9-10)",
    )
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIOS",
        help="with --coverage: scenario directories or files (default: the shipped library)",
    )


def grid(events_as_rows: bool = False) -> list[list[str]]:
    """The table as rows of strings, header row first; blank cells are ''."""
    rows_keys, cols_keys = (list(EVENTS), list(STATES)) if events_as_rows else (list(STATES), list(EVENTS))
    out = [[""] + cols_keys]
    for r in rows_keys:
        cells = []
        for c in cols_keys:
            key = (c, r) if events_as_rows else (r, c)
            cells.append(TRANSITIONS.get(key, ""))
        out.append([r] + cells)
    return out


def render(rows: list[list[str]], fmt: str) -> str:
    if fmt == "csv":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        return buf.getvalue()
    if fmt == "markdown":
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "---|" * len(rows[0]))
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows) + "\n"


def legend() -> str:
    parts = ["States (PS3.8 9.2.1):"]
    parts += [f"  {k:<6} {v}" for k, v in STATES.items()]
    parts.append("Events (PS3.8 9.2.3):")
    parts += [f"  {k:<6} {v}" for k, v in EVENTS.items()]
    parts.append("Actions (PS3.8 9.2.2):")
    parts += [f"  {k:<6} {a.definition}; next state {' or '.join(a.next_states)}" for k, a in ACTIONS.items()]
    return "\n".join(parts) + "\n"


def _usage(message: str) -> int:
    from dicomconf.exitcodes import USAGE_ERROR

    print(f"dicomconf table: {message}", file=sys.stderr)
    return USAGE_ERROR


def _cell(cell: tuple[str, str]) -> str:
    return f"({cell[0]}, {cell[1]}, {TRANSITIONS[cell]})"


def coverage_report(paths: list[str], fmt: str = "text") -> tuple[str, bool]:
    """The coverage of Table 9-10 by the scenarios under ``paths`` as text, and whether it is
    complete: the acceptor-side cells by the scenarios that test an SCP, then (when there are
    any) the requestor-side cells by those that test an SCU."""
    from pathlib import Path

    from dicomconf.scenario.coverage import compute
    from dicomconf.scenario.library import catalogue

    infos = catalogue([Path(p) for p in paths])
    out, complete = [], True
    for tests in ("SCP", "SCU"):
        cov = compute(infos, tests)
        if tests == "SCU" and not cov.scenarios:
            continue
        complete = complete and cov.complete
        text = render(cov.rows(), fmt)
        if fmt != "text":
            out.append(text)
            continue
        side = "acceptor" if tests == "SCP" else "requestor"
        cited = len(cov.provokable) - len(cov.uncovered)
        lines = [f"{cited} of {len(cov.provokable)} provokable {side}-side cells cited by {cov.scenarios} "
                 f"scenarios that test an {tests}"]
        if cov.uncovered:
            lines.append("no scenario cites: " + ", ".join(_cell(c) for c in cov.uncovered))
        if cov.outside:
            lines.append(f"also cited (not provokable by the {'requestor' if tests == 'SCP' else 'acceptor'}): "
                         + ", ".join(f"{_cell(c)} {' '.join(cov.citing(c))}" for c in cov.outside))
        for bad in cov.wrong:
            lines.append(f"wrong citation: {bad.where}: {bad.scenario}: {bad.message}")
        for bad in cov.incomplete:
            lines.append(f"incomplete citation (cites no cell): {bad.where}: {bad.scenario}: {bad.message}")
        out.append(f"{tests} side ({side}-side cells)\n" + text + "\n" + "\n".join(lines) + "\n")
    return "\n".join(out), complete


def run(args: argparse.Namespace) -> int:
    paths = list(getattr(args, "scenarios", None) or [])
    if getattr(args, "coverage", False):
        from pathlib import Path

        from dicomconf.scenario.library import shipped

        missing = [p for p in paths if not Path(p).exists()]
        if missing:
            return _usage(f"no such file or directory: {', '.join(missing)}")
        if not paths:
            library = shipped()
            if library is None:
                return _usage("the scenario library (dicomconf.scenarios) is not installed as files on disk")
            paths = [str(library)]
        text, complete = coverage_report(paths, getattr(args, "format", "text"))
        sys.stdout.write(text)
        return 0 if complete else 1
    if paths:
        return _usage(f"scenario paths ({' '.join(paths)}) are read only with --coverage")
    text = render(grid(getattr(args, "events_as_rows", False)), getattr(args, "format", "text"))
    if getattr(args, "legend", False):
        text += "\n" + legend()
    sys.stdout.write(text)
    return 0
