"""The plugin takes what collection built out of the cycle collector's sweeps (dicomconf.plugin_options.freeze_heap)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from dicomconf.plugin_options import freeze_heap

REPO = Path(__file__).resolve().parents[2]


def test_freeze_then_the_next_session_gives_it_back():
    before = gc.get_freeze_count()
    try:
        freeze_heap(True)
        frozen = gc.get_freeze_count()
        assert frozen > before
        freeze_heap(False)  # a later session that collects no scenario: nothing stays frozen by us
        assert gc.get_freeze_count() == 0
        freeze_heap(True)
        freeze_heap(True)  # a later session with scenarios: unfrozen, then frozen again (not piled up)
        assert gc.get_freeze_count() > 0
    finally:
        freeze_heap(False)
    assert gc.get_freeze_count() == 0


PROBE = """
import gc, sys, pytest
class Probe:
    def pytest_runtestloop(self, session):
        print("FROZEN", gc.get_freeze_count(), flush=True)
sys.exit(pytest.main([*sys.argv[1:], "-p", "no:cacheprovider", "-q", "--co"], plugins=[Probe()]))
"""


def _frozen(*args: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    line = next(x for x in out.stdout.splitlines() if x.startswith("FROZEN"))
    return int(line.split()[1])


def test_a_run_with_scenarios_freezes_one_without_does_not():
    assert _frozen(str(REPO / "scenarios" / "fsm")) > 0
    assert _frozen(str(REPO / "tests" / "suite" / "test_suite_gc_freeze.py")) == 0
