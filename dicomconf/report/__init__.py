"""Conformance reports: ``report.json``, ``report.html`` and the terminal summary.

Theory of operation
-------------------
The pytest plugin hands over one record per scenario (id, title, clauses,
severity, area, outcome, duration, findings, pcap, failure) and a description
of the run.  :func:`write_reports` writes ``report.json`` (the machine-readable
verdict, schema below) and ``report.html`` (self-contained, no script) into
the report directory, and points ``reports/latest`` at it when asked.
:func:`area_table` gives the terminal summary lines, one per area.

``report.json``::

    {"run": {"target", "profile": {"name", "source"}, "versions": {...},
             "start", "duration_s", "strict", "exit_status"},
     "summary": {"passed": n, "failed": n, "skipped": n, "error": n,
                 "must_failed": n, "should_failed": n},
     "scenarios": [{"id", "title", "clauses", "severity", "area", "outcome",
                    "duration_s", "findings", "pcap", "file", "failure",
                    "skip_reason"}, ...]}

Paths to pcaps are relative to the report directory, so the directory can be
archived and moved as a whole.
"""

from __future__ import annotations

from dicomconf.report.json_report import OUTCOMES, summarize, write_reports
from dicomconf.report.terminal import area_table

__all__ = ["OUTCOMES", "area_table", "summarize", "write_reports"]
