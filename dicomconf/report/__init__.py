"""Conformance reports: ``report.json``, ``report.html``, the Markdown summary and the terminal.

Theory of operation
-------------------
The pytest plugin hands over one record per scenario (id, title, clauses,
severity, area, role, outcome, duration, findings, the steps as played, pcap,
failure), one per scenario left out of the run (deselected, with the reason)
and a description of the run.  :mod:`dicomconf.report.model` turns them into
one document, the run's model, which every output renders and nothing else
counts: ``report.json`` is that document as it is (:mod:`.json_report`, which
also writes the directory), ``report.html`` (:mod:`.html_report`), the
Markdown summary for CI job pages (:mod:`.markdown`) and the terminal's lines
(:mod:`.terminal`) render it.  The imports go one way: every format imports
the model, the model imports none of them, and a new format is a new module.
``dicomconf report diff`` and ``dicomconf report render`` (:mod:`.cli`,
:mod:`.diff`) read written reports back.

``report.json``::

    {"schema_version": 1,
     "run": {"target", "profile": {"name", "source"}, "versions": {...},
             "start", "duration_s", "strict", "exit_status", "baseline", ...},
     "summary": {"passed": n, "flaky": n, "failed": n, "skipped": n, "error": n,
                 "must_failed": n, "should_failed": n, "known": n, "new": n,
                 "stale": n, "deselected": n},
     "scenarios": [{"id", "title", "clauses", "severity", "area", "role", "tests",
                    "outcome", "duration_s", "findings", "steps", "pcap", "file",
                    "failure", "skip_reason", ...}, ...],
     "deselected": [{"id", "title", "clauses", "severity", "area",
                     "disruptive", "file", "reason"}, ...],
     "failure_groups": [{"deviation", "clause", "severity", "scenarios",
                         "clauses", "new"}, ...]}

``report.schema.json`` (in this package) is its JSON Schema: a new field is
added to it first; a change of meaning raises ``schema_version``.  ``run``
also holds ``scu`` and ``scu_profile`` (the SCU under test, when SCU-testing
scenarios ran) and ``baseline`` (the run set against ``--baseline``: known,
new, stale, unknown, expired, conforms).  ``deselected`` lists the scenarios
that were collected but left out of the run (``dicomconf run --gentle``,
``-m``, ``-k``), each with why.

Paths (pcaps, scenario files, a failure's step) are relative to the report
directory, so the directory can be archived and moved as a whole.
"""

from __future__ import annotations

from dicomconf.report.json_report import write_reports
from dicomconf.report.model import left_out, summarize
from dicomconf.report.outcomes import OUTCOMES
from dicomconf.report.terminal import area_table, left_out_lines

__all__ = ["OUTCOMES", "area_table", "left_out", "left_out_lines", "summarize", "write_reports"]
