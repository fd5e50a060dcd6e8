"""Exit codes of ``dicomconf run`` and of ``pytest`` with the dicomconf plugin (one table).

0 to 5 are pytest's own (``pytest.ExitCode``), so a CI job reads the same number
whichever way it runs the suite; 6 is the plugin's.
"""

from __future__ import annotations

CONFORMS = 0  # every must-level scenario passed or was skipped (should-level failures reported)
FAILURES = 1  # a must-level scenario failed (or a should-level one under --strict)
INTERRUPTED = 2  # interrupted (Ctrl-C)
INTERNAL_ERROR = 3  # a fault of dicomconf or pytest itself
USAGE_ERROR = 4  # bad option, profile or target configuration (e.g. an AE title the target rejects)
NO_SCENARIOS = 5  # nothing was selected to run
TARGET_UNREACHABLE = 6  # the target did not answer in DICOM before the first scenario

MEANINGS: dict[int, str] = {
    CONFORMS: "the target conforms (should-level failures, if any, are reported)",
    FAILURES: "conformance failures: a must-level scenario failed (or a should-level one with --strict)",
    INTERRUPTED: "interrupted",
    INTERNAL_ERROR: "internal error",
    USAGE_ERROR: "usage or configuration error (option, profile, scenario path, AE title the target rejects)",
    NO_SCENARIOS: "no scenario was selected",
    TARGET_UNREACHABLE: "the target is unreachable (name, connection, no DICOM answer, TLS handshake)",
}
