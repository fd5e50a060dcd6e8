"""The pytest plugin's command-line options (:mod:`dicomconf.pytest_plugin`).

Theory of operation
-------------------
One group, ``dicomconf``: the SCP under test (``--target``, AE titles,
``--profile``, TLS), the SCU under test (``--scu-command``, ``--scu-listen``,
``--scu-profile``), reports and time limits.  ``dicomconf run`` passes its own
options through to these (:mod:`dicomconf.scenario.run_cli`).
"""

from __future__ import annotations

import argparse

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
    group.addoption("--tls-insecure", action="store_true", default=False,
                    help="do not verify the target's certificate or host name (recorded in the report)")
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
