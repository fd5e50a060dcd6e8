"""The ``dicomconf`` command: one sub-command per face of the tool.

Each sub-command lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``; this module only wires
them together, importing each lazily so that ``dicomconf decode`` does not
pay for the SCP and the SCP does not import scapy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dicomconf import __version__

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("dicomconf.scenario.run_cli", "run the conformance scenarios against a target (or the reference SCP)"),
    "scp": ("dicomconf.scp.cli", "run the reference SCP"),
    "decode": ("dicomconf.wire.decode_cli", "decode the DICOM PDUs in a pcap / pcapng capture"),
    "table": ("dicomconf.ul.table_cli", "print the PS3.8 Table 9-10 state transition table"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="dicomconf", description="DICOM network conformance harness")
    parser.add_argument("--version", action="version", version=f"dicomconf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(SUBCOMMANDS[args.command][0]).run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
