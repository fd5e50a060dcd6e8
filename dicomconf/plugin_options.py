"""The pytest plugin's command-line options (:mod:`dicomconf.pytest_plugin`).

Theory of operation
-------------------
One group, ``dicomconf``: the SCP under test (``--target``, AE titles,
``--profile``, TLS), the SCU under test (``--scu-command``, ``--scu-listen``,
``--scu-profile``), reports and time limits.  ``dicomconf run`` passes its own
options through to these (:mod:`dicomconf.scenario.run_cli`).  Also the plugin's
small helpers that are not hooks (:func:`scenarios_of_node_ids`, :func:`terminal_line`,
:func:`freeze_heap`).
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path
from typing import Any

import pytest


def add_options(parser: pytest.Parser) -> None:
    """The dicomconf options of pytest (the same names as ``dicomconf run``'s)."""
    group = parser.getgroup("dicomconf", "dicomconf conformance scenarios")
    group.addoption("--target", metavar="HOST[:PORT]", default=None,
                    help="the SCP under test: a host name, IPv4 or [IPv6] address, port 104 unless given "
                         "(default: the profile's target, else the embedded reference SCP)")
    group.addoption("--called-ae", default=None, help="called AE title (default: the profile's ae_title)")
    group.addoption("--calling-ae", default=None, help="calling AE title (default: the profile's calling_ae)")
    group.addoption("--profile", metavar="FILE", default=None,
                    help="target profile (YAML); default: the embedded reference SCP's profile")
    group.addoption("--report-dir", metavar="DIR", default=None,
                    help="where reports and pcaps go (default: reports/<timestamp>, with reports/latest)")
    group.addoption("--dicomconf-link-latest", action="store_true", default=False, help=argparse.SUPPRESS)
    group.addoption("--dicomconf-no-preflight", action="store_true", default=False, help=argparse.SUPPRESS)
    group.addoption("--dicomconf-strict", action="store_true", default=False,
                    help="should-level failures fail the run (pytest's --strict does too)")
    group.addoption("--target-timeout", type=float, metavar="SECONDS", default=None,
                    help="how long the target may take to accept a connection and answer the first "
                         "A-ASSOCIATE-RQ before the run stops as unreachable (default 5)")
    group.addoption("--dicomconf-overlap", type=int, metavar="N", default=None,
                    help="play the scenarios that wait on timers early, N at a time, against private "
                         "embedded peers (default 24; 0: off; off under -n and for a named target or SCU)")
    group.addoption("--scenario-timeout", type=float, metavar="SECONDS", default=None,
                    help="time limit of each scenario (default: 120 s plus twice the profile's longest timer)")
    group.addoption("--tls-port", type=int, metavar="N", default=None,
                    help="the target's TLS port (PS3.15 B.1; default: the profile's)")
    group.addoption("--tls-ca", metavar="FILE", default=None,
                    help="CA certificates that verify the target (default: the profile's, else the system's)")
    group.addoption("--tls-cert", metavar="FILE", default=None, help="our client certificate (PEM)")
    group.addoption("--tls-key", metavar="FILE", default=None, help="the key of --tls-cert (PEM)")
    group.addoption("--tls-server-name", metavar="NAME", default=None,
                    help="the host name the target's certificate must carry (default: the target's host)")
    group.addoption("--tls-ciphers", metavar="LIST", default=None,
                    help="the TLS 1.2 suites we offer, an OpenSSL cipher string (default: the profile's, else "
                         "BCP 195's, PS3.15 B.12)")
    group.addoption("--tls-insecure", action="store_true", default=False,
                    help="do not verify the target's certificate or host name (recorded in the report)")
    group.addoption("--dicomconf-baseline", metavar="FILE", default=None,
                    help="known failures (YAML): only new failures, stale, unknown or expired entries fail the run")
    group.addoption("--dicomconf-allow-stale", action="store_true", default=False,
                    help="with a baseline: stale, unknown or expired entries are reported but do not fail the run")
    group.addoption("--dicomconf-summary-md", metavar="FILE", default=None,
                    help="also write a Markdown summary of the run (for CI job summary pages)")
    group.addoption("--dicomconf-write-baseline", metavar="FILE", default=None,
                    help="write this run's failures as a baseline (keeping what an existing FILE says of them)")
    group.addoption("--scu-command", metavar="CMD", default=None,
                    help="the SCU under test, started for each SCU-testing scenario; placeholders "
                         "{host} {port} {called_ae} {calling_ae} {file}")
    group.addoption("--scu-listen", metavar="HOST[:PORT]", default=None,
                    help="where the fake SCP listens for the SCU under test (alone: wait for a device "
                         "on the network configured to send there)")
    group.addoption("--scu-profile", metavar="FILE", default=None,
                    help="what the SCU under test claims (YAML); default: the embedded reference SCU's")
    group.addoption("--scu-wait", type=float, metavar="SECONDS", default=None,
                    help="how long each SCU-testing scenario waits for the SCU to connect "
                         "(default 30, 120 with --scu-listen alone)")


def scenarios_of_node_ids(config: pytest.Config, ids: list[str]) -> list[Any]:
    """The scenarios behind pytest-xdist node ids (the controller collects nothing itself): a node
    id's file is relative to the rootdir or, outside it, to an initial path or one of its parents;
    it is empty for a file named on the command line."""
    from dicomconf.scenario.library import SCENARIO_SUFFIXES
    from dicomconf.scenario.model import load_file

    wanted: dict[str, set[str]] = {}
    for nodeid in ids:
        file, sep, name = nodeid.partition("::")
        if sep and (not file or Path(file).suffix in SCENARIO_SUFFIXES):
            wanted.setdefault(file, set()).add(name)
    bases, named = [config.rootpath], []
    for arg in config.args:
        start = (config.invocation_params.dir / arg.split("::", 1)[0]).resolve()
        bases += [start, *start.parents]
        named += [start] if start.suffix in SCENARIO_SUFFIXES and start.is_file() else []
    scenarios = []
    for file, names in wanted.items():
        paths = named if not file else [next((b / file for b in bases if (b / file).is_file()), None)]
        for path in filter(None, paths):
            scenarios += [e.scenario for e in load_file(path) if e.scenario is not None and e.name in names]
    return scenarios


def terminal_line(config: pytest.Config, text: str) -> None:
    """Write a line to the terminal now, even from inside a running test (pytest captures what a
    test writes; this line is for the person at a device, --scu-listen alone)."""
    import contextlib

    terminal = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        if terminal is not None:
            terminal.write_line(text, yellow=True)
            terminal.flush()
        else:
            print(text, flush=True)


def junit_extras(item: pytest.Item, record: dict[str, Any]) -> None:
    """What JUnit XML readers pick up of a scenario: one ``clause`` property per clause cited, and
    the pcap as a ``pcap`` property and as an ``[[ATTACHMENT|path]]`` line of the test's output,
    the convention Jenkins' JUnit Attachments, GitLab and Azure DevOps read from
    ``<system-out>`` (written when ``junit_logging`` includes ``system-out``, as ``dicomconf run``
    sets it).  The path is relative to the directory pytest was started in when it lies below it
    (the CI job's workspace), absolute otherwise.  pytest's junitxml takes both from the item
    when the test's teardown is reported; an attempt rerun replaces the earlier attempt's."""
    item.user_properties[:] = [p for p in item.user_properties if p[0] not in ("clause", "pcap")]
    item.user_properties.extend(("clause", c) for c in record.get("clauses") or ())
    pcap = record.get("pcap")
    if pcap:
        here = item.config.invocation_params.dir.resolve()
        path = Path(pcap).resolve()
        if path.is_relative_to(here):
            path = path.relative_to(here)
        item.user_properties.append(("pcap", str(path)))
        item.add_report_section("call", "stdout", f"[[ATTACHMENT|{path}]]\n")


_FROZEN: list[bool] = []  # a session of this process froze the heap (freeze_heap)


def freeze_heap(scenarios: bool) -> None:
    """Take what start-up and collection built out of the cycle collector's sweeps (``gc.freeze``).

    The modules, the scenario models and the items live until the run ends; left to the collector,
    every full collection walks them again (and pytest collects several times over at exit).
    Called when collection is done: with ``scenarios`` true (the run holds scenario items) the heap
    is frozen; a later session in the same process (``pytest.main`` called again) first gives the
    collector back what an earlier one froze.
    """
    if _FROZEN:
        gc.unfreeze()
        _FROZEN.clear()
    if scenarios:
        gc.freeze()
        _FROZEN.append(True)
