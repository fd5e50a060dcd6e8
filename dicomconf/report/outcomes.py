"""The verdicts a scenario can have, in the order every report shows them.

``passed`` only when the target was seen doing what the scenario expects;
``failed`` when it did something else; ``skipped`` when the profile does not
meet the scenario's ``requires``; ``error`` when the scenario could not be
played (invalid, or the target stopped answering before it).  The JSON, HTML
and terminal reports import this one tuple.
"""

OUTCOMES = ("passed", "failed", "skipped", "error")
