"""``dicomconf probe``: find out what a target SCP does and write its profile.

:mod:`dicomconf.probe.session` talks to the target (counted, gentle
associations), :mod:`dicomconf.probe.probe` asks one question per profile
field, :mod:`dicomconf.probe.writer` writes the commented YAML and
:mod:`dicomconf.probe.cli` is the sub-command.  See ``docs/probe.md``.
"""

from dicomconf.probe.probe import ProbeOptions, ProbeResult, run_probe
from dicomconf.probe.session import Session, Unreachable
from dicomconf.probe.writer import render

__all__ = ["ProbeOptions", "ProbeResult", "Session", "Unreachable", "render", "run_probe"]
