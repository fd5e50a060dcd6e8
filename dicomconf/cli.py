"""The ``dicomconf`` command: one sub-command per face of the tool.

Each sub-command lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``; this module only wires
them together, importing each lazily so that ``dicomconf decode`` does not
pay for the SCP and the SCP does not import scapy.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from typing import NoReturn

from dicomconf import __version__

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("dicomconf.scenario.run_cli", "run the conformance scenarios against a target (or the reference SCP)"),
    "scenarios": ("dicomconf.scenario.library_cli", "list the scenario library, or export it to extend it"),
    "probe": ("dicomconf.probe.cli", "ask a target SCP what it does and write its profile"),
    "scp": ("dicomconf.scp.cli", "run the reference SCP"),
    "decode": ("dicomconf.wire.decode_cli", "decode the DICOM PDUs in a pcap / pcapng capture"),
    "proxy": ("dicomconf.proxy.cli", "relay a real SCU and SCP, judge both peers' PDUs, write a capture and a report"),
    "report": ("dicomconf.report.cli", "compare two runs' reports (diff), or render a report again (render)"),
    "table": ("dicomconf.table_cli", "print the PS3.8 Table 9-10 state transition table, or its coverage"),
    "load": ("dicomconf.load.cli", "load-test a target SCP with Locust (a YAML task mix; web UI, --headless, --master/--worker)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with a nearer error: the sub-command's own usage and the closest option name."""

    usage_exit = 2

    def error(self, message: str) -> NoReturn:
        known = [o for o in self._option_string_actions if o.startswith("--")]
        hints = []
        words = message.split(":", 1)[1].split() if message.startswith("unrecognized arguments") else []
        for word in words:
            if word.startswith("-") and word not in self._option_string_actions:
                close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6)
                if close:
                    hints.append(f"{word}: did you mean {close[0]}?")
        self.print_usage(sys.stderr)
        text = f"{self.prog}: error: {message}" + "".join(f"\n  {h}" for h in hints)
        self.exit(self.usage_exit, text + f"\n(see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _Parser(prog="dicomconf", description="DICOM network conformance harness")
    parser.add_argument("--version", action="version", version=f"dicomconf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    chosen_parser = parser
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            chosen_parser = p
            p.usage_exit = int(getattr(importlib.import_module(module), "USAGE_EXIT", 2))
            importlib.import_module(module).add_arguments(p)
    args, extra = parser.parse_known_args(argv)
    if extra:
        chosen_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(SUBCOMMANDS[args.command][0]).run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
