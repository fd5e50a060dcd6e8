"""Playing service scenarios in-process against the embedded reference SCP, for the scenario tests.

Theory of operation
-------------------
:func:`start` starts the embedded target as the pytest plugin does (the reference SCP and the
harness's move listener); :func:`shipped` finds a scenario of ``scenarios/qr`` by id;
:func:`from_text` loads a scenario written in a test; :func:`play` runs one with the requestor's
Runner (the tests replace the SCP's handlers with wrong ones first, to see it fail).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dicomconf.scenario.model import load_file
from dicomconf.scenario.profile import reference_profile
from dicomconf.scenario.requestor import Runner
from dicomconf.scenario.target_setup import EmbeddedTarget, TargetOptions

QR = Path(__file__).resolve().parents[2] / "scenarios" / "qr"


def start(profile: Any = None) -> tuple[EmbeddedTarget, Any, Any]:
    emb = EmbeddedTarget()
    target, started = emb.start(TargetOptions(), profile or reference_profile())
    return emb, target, started


def shipped(sid: str) -> Any:
    """The shipped scenario ``sid`` of scenarios/qr."""
    for path in sorted(QR.glob("*.yaml")):
        for entry in load_file(path):
            if entry.scenario is not None and entry.scenario.id == sid:
                return entry.scenario
    raise LookupError(sid)


def from_text(tmp_path: Path, text: str) -> Any:
    """The first scenario of YAML ``text`` (written to ``tmp_path``); a scenario error is raised."""
    path = tmp_path / "s.yaml"
    path.write_text(text)
    entry = load_file(path)[0]
    if entry.error is not None:
        raise entry.error
    return entry.scenario


def play(embedded: tuple, scenario: Any, time_limit: float = 60) -> Runner:
    """Run ``scenario`` against the embedded target; a failure is raised (ScenarioFailure)."""
    emb, target, profile = embedded
    runner = Runner(scenario, profile, target)
    runner.listener = emb.listener
    runner.run(None, time_limit=time_limit)
    return runner
