"""The verdicts a scenario can have, in the order every report shows them.

``passed`` only when the target was seen doing what the scenario expects;
``flaky`` when it did so only on a rerun (``--reruns``, :mod:`dicomconf.reruns`);
``failed`` when it did something else; ``skipped`` when the profile does not
meet the scenario's ``requires``; ``error`` when the scenario could not be
played (invalid, or the target stopped answering before it).  The JSON, HTML
and terminal reports import this one tuple, and :func:`area_label`.
"""

from __future__ import annotations

from typing import Any

OUTCOMES = ("passed", "flaky", "failed", "skipped", "error")


def area_label(record: dict[str, Any]) -> str:
    """The area of a record as reports show it: SCU-testing areas (role scp) are ``scu.<area>``."""
    area = record.get("area") or "(none)"
    return f"scu.{area}" if record.get("role") == "scp" else area
