"""``dicomconf report``: work with reports already written.

* ``dicomconf report diff OLD NEW``: the scenarios whose verdict changed
  between two runs (:mod:`dicomconf.report.diff`); OLD and NEW are
  report.json files or report directories.  Exit status 1 when a scenario
  regressed or fails for another reason, 0 otherwise, 4 when OLD or NEW is
  not a report.
* ``dicomconf report render DIR``: write ``report.html`` (and, with
  ``--summary-md FILE``, the Markdown summary) again from ``DIR/report.json``,
  e.g. after upgrading dicomconf, or for a report.json copied out of CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dicomconf import exitcodes

USAGE_EXIT = exitcodes.USAGE_ERROR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="report_command", metavar="ACTION", required=True)
    diff = sub.add_parser("diff", help="the scenarios whose verdict changed between two runs",
                          description="the scenarios whose verdict changed between two runs "
                                      "(exit 1 when one regressed or fails differently)")
    diff.add_argument("old", metavar="OLD", help="report.json or report directory of the earlier run")
    diff.add_argument("new", metavar="NEW", help="report.json or report directory of the later run")
    diff.add_argument("--json", action="store_true", help="print the differences as JSON")
    render = sub.add_parser("render", help="write report.html again from a report directory's report.json")
    render.add_argument("dir", metavar="DIR", help="a report directory (or its report.json)")
    render.add_argument("--summary-md", metavar="FILE", help="also write the Markdown summary to FILE")
    for p in (diff, render):  # a usage error is 4, as for every other sub-command
        p.usage_exit = USAGE_EXIT  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> int:
    from dicomconf.report.diff import ReportError, compare, load, render

    try:
        if args.report_command == "diff":
            diff = compare(load(args.old), load(args.new))
            if args.json:
                print(json.dumps(diff.as_dict(), indent=2))
            else:
                print("\n".join(render(diff)))
            return exitcodes.FAILURES if diff.worse else exitcodes.CONFORMS
        from dicomconf.report.json_report import write_document
        from dicomconf.report.model import failure_groups

        document = load(args.dir)
        document["failure_groups"] = failure_groups(document)  # derived: as this version groups them
        where = Path(args.dir)
        where = where if where.is_dir() else where.parent
        write_document(where, document, Path(args.summary_md) if args.summary_md else None)
        print(f"written: {where / 'report.html'}" + (f", {args.summary_md}" if args.summary_md else ""))
        return exitcodes.CONFORMS
    except ReportError as exc:
        print(f"dicomconf report: {exc}", file=sys.stderr)
        return exitcodes.USAGE_ERROR
    except OSError as exc:
        print(f"dicomconf report: {exc}", file=sys.stderr)
        return exitcodes.USAGE_ERROR
