"""``dicomconf table``: print PS3.8 Table 9-10 from :data:`dicomconf.ul.fsm.TRANSITIONS`.

Rows are states, columns events (``--events-as-rows`` gives the standard's
own layout); each cell holds the action, blank for an invalid event.
``--legend`` adds what each state, event and action means.
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


def run(args: argparse.Namespace) -> int:
    text = render(grid(getattr(args, "events_as_rows", False)), getattr(args, "format", "text"))
    if getattr(args, "legend", False):
        text += "\n" + legend()
    sys.stdout.write(text)
    return 0
