"""``dicomconf run``: the conformance scenarios for people who do not think in pytest.

Theory of operation
-------------------
The sub-command takes the plugin's options, finds the scenarios, and runs
pytest in-process over them with the dicomconf plugin, JUnit XML written to
``<report dir>/junit.xml``, and returns pytest's exit code (0: every must
scenario passed; 1: a must scenario failed, or a should scenario with
``--strict``; 2-4: usage or internal errors).

Which scenarios: the directories or files given as arguments; otherwise
``./scenarios`` when the current directory has one; otherwise the
``scenarios/`` directory next to the installed package, which exists in a
source checkout installed editable (``pip install -e .``).  A regular
(non-editable) install does not ship the scenario files: pass a directory.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

PLUGIN = "dicomconf.pytest_plugin"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="SCENARIOS",
                        help="scenario directories or files (default: ./scenarios or the checkout's scenarios/)")
    parser.add_argument("--target", metavar="HOST[:PORT]",
                        help="the SCP under test: a host name, IPv4 or [IPv6] address, port 104 unless given "
                             "(default: the profile's target, else the embedded reference SCP)")
    parser.add_argument("--called-ae", help="called AE title (default: the profile's ae_title)")
    parser.add_argument("--calling-ae", help="calling AE title (default: the profile's calling_ae)")
    parser.add_argument("--profile", metavar="FILE", help="target profile (YAML)")
    parser.add_argument("--report-dir", metavar="DIR",
                        help="where reports go (default: reports/<timestamp>, with reports/latest)")
    parser.add_argument("--strict", action="store_true", help="should-level failures fail the run too")
    parser.add_argument("-n", "--workers", metavar="N", help="run scenarios in N processes (pytest-xdist), or 'auto'")
    parser.add_argument("-k", dest="keyword", metavar="EXPR", help="only scenarios whose id matches EXPR (pytest -k)")
    parser.add_argument("-q", "--quiet", action="store_true", help="less output")
    tls = parser.add_argument_group("TLS (PS3.15 B.1); each overrides the profile's tls section")
    tls.add_argument("--tls-port", type=int, metavar="N", help="the target's TLS port")
    tls.add_argument("--tls-ca", metavar="FILE",
                     help="CA certificates that verify the target (default: the system's trust store)")
    tls.add_argument("--tls-cert", metavar="FILE", help="our client certificate (PEM)")
    tls.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert (PEM)")
    tls.add_argument("--tls-server-name", metavar="NAME",
                     help="the host name the target's certificate must carry (default: the target's host)")
    tls.add_argument("--tls-insecure", action="store_true",
                     help="do not verify the target's certificate or host name (recorded in the report)")


def default_scenarios(cwd: Path | None = None) -> Path | None:
    """``./scenarios``, else the checkout's ``scenarios/`` beside the package, else None."""
    cwd = cwd or Path.cwd()
    here = cwd / "scenarios"
    if here.is_dir():
        return here
    beside = Path(__file__).resolve().parents[2] / "scenarios"
    return beside if beside.is_dir() else None


def pytest_args(args: argparse.Namespace) -> list[str] | str:
    """The pytest command line for ``args``, or a usage message."""
    paths = [Path(p) for p in args.paths] if args.paths else []
    if not paths:
        found = default_scenarios()
        if found is None:
            return ("no scenarios found: give a scenarios directory (a non-editable install does not ship "
                    "the scenario files)")
        paths = [found]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        return f"no such file or directory: {', '.join(missing)}"
    report_dir = args.report_dir or str(Path("reports") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    # The pytest11 entry point has the module's own name, so this is a no-op where it is installed.
    out = [*(str(p) for p in paths), "-p", PLUGIN]
    out += ["-p", "no:cacheprovider", f"--junitxml={Path(report_dir) / 'junit.xml'}", "-o", "junit_family=xunit2",
            "--report-dir", report_dir]
    for flag, value in (("--target", args.target), ("--called-ae", args.called_ae),
                        ("--calling-ae", args.calling_ae), ("--profile", args.profile),
                        ("--tls-port", args.tls_port), ("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert),
                        ("--tls-key", args.tls_key), ("--tls-server-name", args.tls_server_name)):
        if value is not None:
            out += [flag, str(value)]
    if args.tls_insecure:
        out.append("--tls-insecure")
    if args.strict:
        out.append("--dicomconf-strict")
    if args.workers:
        out += ["-n", str(args.workers)]
    if args.keyword:
        out += ["-k", args.keyword]
    out.append("-q" if args.quiet else "-rfEs")
    if args.report_dir is None:
        out.append("--dicomconf-link-latest")
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    import pytest

    argv = pytest_args(args)
    if isinstance(argv, str):
        print(f"dicomconf run: {argv}", file=sys.stderr)
        return 2
    return int(pytest.main(argv))
