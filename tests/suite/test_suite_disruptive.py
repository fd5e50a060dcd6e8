"""Disruptive scenarios: marked by one rule, left out by --gentle, and never run beside another.

``test_serial_and_parallel_verdicts_are_identical_against_dcmtk`` is the slow
one (two suite runs against DCMTK's single-process ``storescp``, about a
minute each): without the per-target lock of
:mod:`dicomconf.scenario.exclusive`, ``-n 4`` changes verdicts there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from dicomconf.scenario.library import catalogue
from dicomconf.scenario.model import load_file

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "scenarios"
TARGETS = REPO / "scripts" / "targets" / "targets.py"
STORESCP = "/usr/bin/storescp"
# Keys of a send step that make bytes no legal PDU has (docs/wire.md): raw PDU bytes, a PDU cut
# short or padded, a body for an arbitrary PDU type, and a length field overridden at any level
# (PDU, item, PDV).  An item's own ``raw`` value (an unknown user information sub-item) is legal.
MALFORMING_KEYS = {"raw", "truncate", "length", "append", "body"}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}


def _marks() -> dict[str, bool]:
    return {i.id: i.disruptive for i in catalogue([LIBRARY])}


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def _why_disruptive(raw: dict) -> list[str]:
    """What in a scenario's YAML makes it disruptive under the rule of docs/scenarios.md."""
    why = []
    connections = set()
    for step in raw["steps"]:
        (kind, args), = step.items()
        if kind in ("parallel", "repeat"):
            why.append(f"{kind}: several connections or associations")
        if isinstance(args, dict):
            for key in ("on", "as"):
                if key in args:
                    connections.update(args[key] if isinstance(args[key], list) else [args[key]])
            if kind == "send" and (MALFORMING_KEYS & set(args) or any(k == "length" for k in _walk(args))):
                why.append("send: malformed bytes")
    if len(connections) > 1:
        why.append(f"connections {sorted(map(str, connections))} held together")
    if any(isinstance(v, str) and ("profile.artim" in v or "profile.idle" in v) for v in _walk(raw["steps"])):
        why.append("waits for the target's timers")
    return why


def test_every_scenario_the_rule_names_is_marked_disruptive():
    unmarked = {}
    for file in sorted(LIBRARY.rglob("*.yaml")):
        for entry in load_file(file):
            assert entry.scenario is not None, entry.error
            if entry.scenario.role == "scp":
                continue  # tests an SCU: dicomconf's own fake SCP is what it "disturbs"
            why = _why_disruptive(entry.raw)
            if why and not entry.scenario.disruptive:
                unmarked[entry.scenario.id] = why
    assert not unmarked, f"mark these disruptive: true (docs/scenarios.md, Disruptive scenarios): {unmarked}"
    assert 0 < sum(_marks().values()) < len(_marks())


def test_marker_selects_the_marked_scenarios(tmp_path):
    marks = _marks()
    for expr, want in (("not disruptive", {i for i, d in marks.items() if not d}),
                       ("disruptive", {i for i, d in marks.items() if d})):
        result = subprocess.run([sys.executable, "-m", "pytest", str(LIBRARY), "-p", "no:cacheprovider",
                                 "--collect-only", "-q", "-m", expr, "-W", "error::pytest.PytestUnknownMarkWarning"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120, env=_env())
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        got = {line.rsplit("::", 1)[1] for line in result.stdout.splitlines() if "::" in line}
        assert got == want, sorted(got ^ want)


def test_gentle_leaves_out_exactly_the_disruptive_scenarios(tmp_path):
    marks = _marks()
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "dicomconf.cli", "run", "--gentle", "-n", "2",
                             "--report-dir", str(out)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    ran = {s["id"] for s in doc["scenarios"]}
    left = {d["id"]: d for d in doc["deselected"]}
    assert ran == {i for i, d in marks.items() if not d}
    assert set(left) == {i for i, d in marks.items() if d}
    assert doc["summary"]["deselected"] == len(left)
    assert all(d["disruptive"] and d["reason"].startswith("disruptive:") and d["file"] for d in left.values())
    assert not any(s["disruptive"] for s in doc["scenarios"])
    html = (out / "report.html").read_text(encoding="utf-8")
    assert f"left out ({len(left)})" in html and all(i in html for i in left)
    assert f"{len(left)} left out: disruptive" in result.stdout
    assert all(f"  {i} (" in result.stdout for i in left)


def _targets():
    spec = importlib.util.spec_from_file_location("dicomconf_targets_script", TARGETS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _suite_against_dcmtk(report: Path, *extra: str) -> tuple[dict[str, str], str]:
    targets = _targets()
    pid, port = targets.start("dcmtk")
    try:
        argv = [sys.executable, "-m", "pytest", str(LIBRARY), *targets.plugin_args(), "-q", "-p", "no:cacheprovider",
                "--target", f"127.0.0.1:{port}", "--profile", str(TARGETS.parent / "dcmtk.profile.yaml"),
                "--called-ae", targets.AE_TITLE, "--report-dir", str(report), *extra]
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900, env=_env())
    finally:
        targets.stop(pid)
    doc = json.loads((report / "report.json").read_text(encoding="utf-8"))
    return {s["id"]: s["outcome"] for s in doc["scenarios"]}, proc.stdout[-3000:]


@pytest.mark.skipif(not os.access(STORESCP, os.X_OK), reason=f"{STORESCP} not found (Debian package dcmtk)")
def test_serial_and_parallel_verdicts_are_identical_against_dcmtk(tmp_path):
    serial, out1 = _suite_against_dcmtk(tmp_path / "serial")
    parallel, out4 = _suite_against_dcmtk(tmp_path / "n4", "-n", "4")
    assert len(serial) == len(_marks())
    assert sum(o == "passed" for o in serial.values()) >= 30, out1
    differ = {i: (serial.get(i), parallel.get(i)) for i in set(serial) | set(parallel) if serial.get(i) != parallel.get(i)}
    assert not differ, f"serial vs -n 4: {differ}\n{out4}"
