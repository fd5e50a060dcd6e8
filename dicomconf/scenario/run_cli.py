"""``dicomconf run``: the conformance scenarios for people who do not think in pytest.

Theory of operation
-------------------
The sub-command takes the plugin's options, finds the scenarios, and runs
pytest in-process over them with the dicomconf plugin, JUnit XML written to
``<report dir>/junit.xml``, and returns pytest's exit code, with the
plugin's additions (:mod:`dicomconf.exitcodes`: 0 conforms, 1 conformance
failures, 4 usage or configuration error, 6 target unreachable, ...); its own
usage errors (a mistyped option, a missing path) are 4 as well.

Which scenarios: the directories or files given as arguments replace the
default library, which is ``./scenarios`` when the current directory has one
(a checkout, or a library exported with ``dicomconf scenarios export``), else
the library installed with the package (:mod:`dicomconf.scenario.library`).
Each ``--scenarios DIR`` adds a directory of the user's own beside them; a
scenario id defined in two of those sources is a usage error, never a
scenario run twice.  Directories are expanded into their scenario files on
pytest's command line, so a directory of any name is collected.
``--gentle`` leaves out the scenarios marked ``disruptive`` (pytest
``-m "not disruptive"``); the reports list them as left out.  ``--reruns N``
(pytest-rerunfailures' option, passed through) plays a failed scenario again;
one that passes on a rerun is reported as flaky (:mod:`dicomconf.reruns`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from dicomconf import exitcodes

PLUGIN = "dicomconf.pytest_plugin"
USAGE_EXIT = exitcodes.USAGE_ERROR  # a bad option or path: the same code as pytest's usage error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="SCENARIOS",
                        help="scenario directories or files to run instead of the default library "
                             "(./scenarios if there is one, else the library installed with dicomconf)")
    parser.add_argument("--target", metavar="HOST[:PORT]",
                        help="the SCP under test: a host name, IPv4 or [IPv6] address, port 104 unless given "
                             "(default: the profile's target, else the embedded reference SCP)")
    parser.add_argument("--called-ae", help="called AE title (default: the profile's ae_title)")
    parser.add_argument("--calling-ae", help="calling AE title (default: the profile's calling_ae)")
    parser.add_argument("--profile", metavar="FILE", help="target profile (YAML)")
    parser.add_argument("--report-dir", metavar="DIR",
                        help="where reports go (default: reports/<timestamp>, with reports/latest)")
    parser.add_argument("--strict", action="store_true", help="should-level failures fail the run too")
    parser.add_argument("--baseline", metavar="FILE",
                        help="known failures (YAML): only new failures, stale, unknown or expired entries fail the run")
    parser.add_argument("--allow-stale", action="store_true",
                        help="with --baseline: stale, unknown or expired entries are reported, not failed")
    parser.add_argument("--summary-md", metavar="FILE",
                        help="also write a Markdown summary (for CI job summary pages, e.g. $GITHUB_STEP_SUMMARY)")
    parser.add_argument("--write-baseline", metavar="FILE",
                        help="write this run's failures as a baseline (keeping the reasons of an existing FILE)")
    parser.add_argument("--reruns", type=_reruns, metavar="N",
                        help="play a failed or errored scenario up to N more times; one that passes on a rerun "
                             "is reported as flaky (pytest-rerunfailures)")
    parser.add_argument("--reruns-delay", type=float, metavar="SECONDS", help="wait this long before each rerun")
    parser.add_argument("-n", "--workers", metavar="N", help="run scenarios in N processes (pytest-xdist), or 'auto'")
    parser.add_argument("-k", dest="keyword", metavar="EXPR", help="only scenarios whose id matches EXPR (pytest -k)")
    parser.add_argument("--scenarios", dest="extra_scenarios", action="append", default=[], metavar="DIR",
                        help="a directory (or file) of your own scenarios, run beside the library; repeatable")
    parser.add_argument("--gentle", action="store_true",
                        help="leave out the disruptive scenarios (for a target other people use)")
    parser.add_argument("-q", "--quiet", action="store_true", help="less output")
    parser.add_argument("--scenario-timeout", type=float, metavar="SECONDS",
                        help="time limit of each scenario (default: 120 s plus twice the profile's longest timer)")
    parser.add_argument("--target-timeout", type=float, metavar="SECONDS",
                        help="how long the target may take to accept a connection and answer the first "
                             "A-ASSOCIATE-RQ before the run stops as unreachable (default 5)")
    scu = parser.add_argument_group("the SCU under test (scenarios in scenarios/scu/; default: the embedded "
                                    "reference SCU when no --target is given)")
    scu.add_argument("--scu-command", metavar="CMD",
                     help="start CMD for each SCU-testing scenario; placeholders {host} {port} {called_ae} "
                          "{calling_ae} {file} (a DICOM object written for the scenario)")
    scu.add_argument("--scu-listen", metavar="HOST[:PORT]",
                     help="where the fake SCP listens; alone: wait for a device on the network that sends there")
    scu.add_argument("--scu-profile", metavar="FILE", help="what the SCU under test claims (YAML)")
    scu.add_argument("--scu-wait", type=float, metavar="SECONDS",
                     help="how long each scenario waits for the SCU to connect (default 30, 120 for a device)")
    tls = parser.add_argument_group("TLS (PS3.15 B.1); each overrides the profile's tls section")
    tls.add_argument("--tls-port", type=int, metavar="N", help="the target's TLS port")
    tls.add_argument("--tls-ca", metavar="FILE",
                     help="CA certificates that verify the target (default: the system's trust store)")
    tls.add_argument("--tls-cert", metavar="FILE", help="our client certificate (PEM)")
    tls.add_argument("--tls-key", metavar="FILE", help="the key of --tls-cert (PEM)")
    tls.add_argument("--tls-server-name", metavar="NAME",
                     help="the host name the target's certificate must carry (default: the target's host)")
    tls.add_argument("--tls-ciphers", metavar="LIST",
                     help="the TLS 1.2 suites we offer, an OpenSSL cipher string (default: BCP 195's, PS3.15 B.12)")
    tls.add_argument("--tls-insecure", action="store_true",
                     help="do not verify the target's certificate or host name (recorded in the report)")


def _reruns(text: str) -> int:
    """``--reruns``: a whole number, 0 or more (argparse reports anything else as a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def default_scenarios(cwd: Path | None = None) -> Path | None:
    """``./scenarios``, else the library installed with the package, else None."""
    from dicomconf.scenario.library import shipped

    cwd = cwd or Path.cwd()
    here = cwd / "scenarios"
    if here.is_dir():
        return here
    return shipped()


def scenario_files(args: argparse.Namespace) -> list[Path] | str:
    """The scenario files to run (see the module docstring), or a usage message."""
    from dicomconf.scenario.library import catalogue, duplicate_ids
    from dicomconf.scenario.library import scenario_files as files_under

    sources = [Path(p) for p in args.paths]
    if not sources:
        found = default_scenarios()
        if found is None:
            return "no scenarios found: the scenario library is not installed; give a scenarios directory"
        sources = [found]
    sources += [Path(p) for p in getattr(args, "extra_scenarios", None) or ()]
    missing = [str(p) for p in sources if not p.exists()]
    if missing:
        return f"no such file or directory: {', '.join(missing)}"
    files: dict[Path, Path] = {}
    for source in sources:
        found_here = files_under(source)
        if not found_here:
            return f"no scenario files (*.yaml, *.yml) in {source}"
        for file in found_here:
            files.setdefault(file.resolve(), file)
    if len(sources) > 1:
        twice = duplicate_ids(catalogue(files.values()))
        if twice:
            first = min(twice)
            where = " and ".join(i.where for i in twice[first])
            more = f" ({len(twice) - 1} more id(s) defined twice)" if len(twice) > 1 else ""
            return f"scenario id {first!r} is defined twice: {where}{more}; give your scenario another id"
    return list(files.values())


def pytest_args(args: argparse.Namespace) -> list[str] | str:
    """The pytest command line for ``args``, or a usage message."""
    paths = scenario_files(args)
    if isinstance(paths, str):
        return paths
    report_dir = args.report_dir or str(Path("reports") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    # The pytest11 entry point has the module's own name, so this is a no-op where it is installed.
    out = [*(str(p) for p in paths), "-p", PLUGIN]
    # junit_logging: the pcap's [[ATTACHMENT|path]] line goes to <system-out> (plugin_options.junit_extras)
    out += ["-p", "no:cacheprovider", f"--junitxml={Path(report_dir) / 'junit.xml'}", "-o", "junit_family=xunit2",
            "-o", "junit_logging=system-out", "--report-dir", report_dir]
    for flag, value in (("--target", args.target), ("--called-ae", args.called_ae),
                        ("--calling-ae", args.calling_ae), ("--profile", args.profile),
                        ("--tls-port", args.tls_port), ("--tls-ca", args.tls_ca), ("--tls-cert", args.tls_cert),
                        ("--tls-key", args.tls_key), ("--tls-server-name", args.tls_server_name),
                        ("--tls-ciphers", getattr(args, "tls_ciphers", None)),
                        ("--target-timeout", args.target_timeout), ("--scenario-timeout", args.scenario_timeout),
                        ("--scu-command", getattr(args, "scu_command", None)), ("--scu-listen", getattr(args, "scu_listen", None)),
                        ("--scu-profile", getattr(args, "scu_profile", None)), ("--scu-wait", getattr(args, "scu_wait", None)),
                        ("--dicomconf-baseline", getattr(args, "baseline", None)),
                        ("--dicomconf-summary-md", getattr(args, "summary_md", None)),
                        ("--dicomconf-write-baseline", getattr(args, "write_baseline", None)),
                        ("--reruns", getattr(args, "reruns", None)), ("--reruns-delay", getattr(args, "reruns_delay", None))):
        if value is not None:
            out += [flag, str(value)]
    if args.tls_insecure:
        out.append("--tls-insecure")
    if args.strict:
        out.append("--dicomconf-strict")
    if getattr(args, "allow_stale", False):
        out.append("--dicomconf-allow-stale")
    if args.workers:
        out += ["-n", str(args.workers)]
    if args.keyword:
        out += ["-k", args.keyword]
    if getattr(args, "gentle", False):
        out += ["-m", "not disruptive"]
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
        return USAGE_EXIT
    return int(pytest.main(argv))
