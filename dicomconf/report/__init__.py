"""Conformance reports: ``report.json``, ``report.html`` and the terminal summary.

Theory of operation
-------------------
The pytest plugin hands over one record per scenario (id, title, clauses,
severity, area, disruptive, outcome, duration, findings, pcap, failure), one
per scenario left out of the run (deselected, with the reason) and a
description of the run.  :func:`write_reports` writes ``report.json`` (the machine-readable
verdict, schema below) and ``report.html`` (self-contained, no script) into
the report directory, and points ``reports/latest`` at it when asked.
:func:`area_table` gives the terminal summary lines, one per area, and
:func:`left_out_lines` those that list the scenarios left out.

``report.json``::

    {"schema_version": 1,
     "run": {"target", "profile": {"name", "source"}, "versions": {...},
             "start", "duration_s", "strict", "exit_status"},
     "summary": {"passed": n, "failed": n, "skipped": n, "error": n,
                 "must_failed": n, "should_failed": n, "deselected": n},
     "scenarios": [{"id", "title", "clauses", "severity", "area", "disruptive",
                    "outcome", "duration_s", "findings", "pcap", "file",
                    "failure", "skip_reason"}, ...],
     "deselected": [{"id", "title", "clauses", "severity", "area",
                     "disruptive", "file", "reason"}, ...]}

``report.schema.json`` (in this package) is its JSON Schema.  ``run`` also holds ``scu`` and
``scu_profile`` (the SCU under test, when SCU-testing scenarios ran) and ``baseline`` (the run set
against ``--baseline``: known, new, stale, unknown, expired, conforms); each scenario also has
``role``, ``tests`` and ``scu``.  ``deselected`` lists the scenarios that were collected but left out of the
run (``dicomconf run --gentle``, ``-m``, ``-k``), each with why.

Paths to pcaps are relative to the report directory, so the directory can be
archived and moved as a whole.
"""

from __future__ import annotations

from dicomconf.report.json_report import OUTCOMES, left_out, summarize, write_reports
from dicomconf.report.terminal import area_table, left_out_lines

__all__ = ["OUTCOMES", "area_table", "left_out", "left_out_lines", "summarize", "write_reports"]
