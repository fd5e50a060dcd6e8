"""``dicomconf scenarios``: list the scenario library, or export it for a team to extend.

Theory of operation
-------------------
``dicomconf scenarios list [PATHS...] [--json]`` prints one line per scenario
(id, severity, area, whether it is disruptive, title) of the shipped library
(:func:`dicomconf.scenario.library.shipped`) or of the directories and files
given; ``--json`` prints the same as one JSON document.  An invalid scenario
is listed with its ``file:line`` error and makes the exit code 1; a usage
problem (a missing path, an export that would overwrite) is the usage-error
code of :mod:`dicomconf.exitcodes`, with one line on stderr.

``dicomconf scenarios export DIR [--force]`` copies the shipped library's
YAML files into ``DIR`` (sub-directories kept) and refuses, writing nothing,
when one of them would overwrite an existing file unless ``--force``.  The
copy runs beside the shipped library with ``dicomconf run --scenarios DIR``
once its ids are changed, or instead of it with ``dicomconf run DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    p = sub.add_parser("list", help="list scenarios: id, severity, area, disruptive, title",
                       description="List the shipped scenario library, or the scenarios under PATHS.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="scenario directories or files (default: the shipped library)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = sub.add_parser("export", help="copy the shipped scenario library into DIR",
                       description="Copy the shipped scenario library into DIR for a team to extend.")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--force", action="store_true", help="overwrite files that already exist")


def _error(message: str) -> int:
    from dicomconf.exitcodes import USAGE_ERROR

    print(f"dicomconf scenarios: {message}", file=sys.stderr)
    return USAGE_ERROR


def _list(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dicomconf.scenario.library import catalogue, shipped

    if args.paths:
        roots = [Path(p) for p in args.paths]
        missing = [str(p) for p in roots if not p.exists()]
        if missing:
            return _error(f"no such file or directory: {', '.join(missing)}")
    else:
        library = shipped()
        if library is None:
            return _error("the scenario library (dicomconf.scenarios) is not installed as files on disk")
        roots = [library]
    infos = catalogue(roots)
    bad = [i for i in infos if i.error]
    if args.json:
        document = {"sources": [str(r) for r in roots], "scenarios": [i.as_dict() for i in infos]}
        print(json.dumps(document, indent=2))
        return 1 if bad else 0
    width = max([len(i.id) for i in infos] + [2])
    area_width = max([len(i.area) for i in infos] + [4])
    print(f"{'id':<{width}}  severity  {'area':<{area_width}}  disruptive  title")
    for i in infos:
        flag = "yes" if i.disruptive else "-"
        title = f"INVALID: {i.error}" if i.error else i.title
        print(f"{i.id:<{width}}  {i.severity:<8}  {i.area:<{area_width}}  {flag:<10}  {title}")
    disruptive = sum(1 for i in infos if i.disruptive)
    where = ", ".join(str(r) for r in roots)
    print(f"{len(infos)} scenarios ({disruptive} disruptive{f', {len(bad)} invalid' if bad else ''}) in {where}")
    return 1 if bad else 0


def _export(args: argparse.Namespace) -> int:
    from dicomconf.scenario.library import ExportError, export

    try:
        written = export(args.dir, force=args.force)
    except (ExportError, OSError) as exc:
        return _error(f"export: {exc}")
    print(f"{len(written)} scenario files written to {args.dir}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _list(args)
    if args.action == "export":
        return _export(args)
    return _error("choose an action: list or export (dicomconf scenarios -h)")
