"""The scenario library: ``dicomconf scenarios list/export`` and ``dicomconf run --scenarios``.

The installed library is found through importlib.resources (the editable
install of this checkout maps ``dicomconf.scenarios`` onto ``scenarios/``);
every command runs in an empty temporary directory, so nothing comes from a
``./scenarios`` in the current directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import REPO, report, write  # noqa: E402

from dicomconf.scenario.library import catalogue, shipped  # noqa: E402
from dicomconf.scenario.run_cli import USAGE_EXIT  # noqa: E402

LIBRARY = REPO / "scenarios"

MINE = """\
id: site.extra-echo
title: our own scenario, run beside the library
clauses: [PS3.7 9.1.5]
severity: must
area: dimse
steps:
  - associate:
  - echo:
  - release:
"""


def _dicomconf(cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    return subprocess.run([sys.executable, "-m", "dicomconf.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def _library_ids() -> dict[str, bool]:
    """id -> disruptive, read from the checkout's scenarios/ directly."""
    return {i.id: i.disruptive for i in catalogue([LIBRARY])}


def test_installed_library_is_the_checkouts_scenarios_directory():
    assert shipped() is not None and shipped().resolve() == LIBRARY.resolve()


def test_list_prints_every_scenario_with_its_mark(tmp_path):
    ids = _library_ids()
    result = _dicomconf(tmp_path, "scenarios", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["id", "severity", "area", "disruptive", "title"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    assert set(rows) == set(ids)
    for sid, disruptive in ids.items():
        assert rows[sid][3] == ("yes" if disruptive else "-"), rows[sid]
    assert rows["dimse.echo"][1:3] == ["must", "dimse"]
    assert lines[-1].startswith(f"{len(ids)} scenarios ({sum(ids.values())} disruptive)")


def test_list_json(tmp_path):
    ids = _library_ids()
    result = _dicomconf(tmp_path, "scenarios", "list", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    got = {s["id"]: s for s in doc["scenarios"]}
    assert {i: s["disruptive"] for i, s in got.items()} == ids
    echo = got["dimse.echo"]
    assert echo["severity"] == "must" and echo["area"] == "dimse" and echo["title"] and echo["clauses"]
    assert echo["file"].endswith("echo.yaml") and echo["error"] is None


def test_list_shows_invalid_scenarios_with_their_line(tmp_path):
    write(tmp_path / "mine" / "bad.yaml", MINE.replace("severity: must", "severity: maybe"))
    result = _dicomconf(tmp_path, "scenarios", "list", "mine")
    assert result.returncode == 1
    assert "INVALID" in result.stdout and "bad.yaml:" in result.stdout and "severity" in result.stdout
    result = _dicomconf(tmp_path, "scenarios", "list", "nowhere")
    assert result.returncode != 0 and "no such file or directory: nowhere" in result.stderr


def test_export_copies_the_library_and_refuses_to_overwrite(tmp_path):
    result = _dicomconf(tmp_path, "scenarios", "export", "ours")
    assert result.returncode == 0, result.stderr
    want = sorted(str(p.relative_to(LIBRARY)) for p in LIBRARY.rglob("*.yaml"))
    got = sorted(str(p.relative_to(tmp_path / "ours")) for p in (tmp_path / "ours").rglob("*"))
    got = [g for g in got if not (tmp_path / "ours" / g).is_dir()]
    assert got == want
    echo = tmp_path / "ours" / "dimse" / "echo.yaml"
    assert echo.read_bytes() == (LIBRARY / "dimse" / "echo.yaml").read_bytes()

    echo.write_text("# our edit\n")
    result = _dicomconf(tmp_path, "scenarios", "export", "ours")
    assert result.returncode != 0 and "--force" in result.stderr and "already exist" in result.stderr
    assert echo.read_text() == "# our edit\n"  # nothing written

    result = _dicomconf(tmp_path, "scenarios", "export", "ours", "--force")
    assert result.returncode == 0, result.stderr
    assert echo.read_bytes() == (LIBRARY / "dimse" / "echo.yaml").read_bytes()


def test_run_scenarios_dir_adds_to_the_library(tmp_path):
    write(tmp_path / "mine" / "extra.yaml", MINE)  # a directory not named "scenarios"
    result = _dicomconf(tmp_path, "run", "--scenarios", "mine", "--report-dir", "out", "-q",
                        "-k", "site.extra-echo or dimse.echo-response-fields")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = report(tmp_path / "out")
    ran = {s["id"]: s["outcome"] for s in doc["scenarios"]}
    assert ran == {"site.extra-echo": "passed", "dimse.echo-response-fields": "passed"}
    # Everything else of the shipped library was collected too, and left out by -k.
    left = {d["id"] for d in doc["deselected"]}
    assert left == set(_library_ids()) - {"dimse.echo-response-fields"}
    assert all(d["reason"] == "deselected by -k 'site.extra-echo or dimse.echo-response-fields'"
               for d in doc["deselected"])


def test_run_paths_replace_the_library(tmp_path):
    write(tmp_path / "mine" / "extra.yaml", MINE)
    result = _dicomconf(tmp_path, "run", "mine", "--report-dir", "out", "-q")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = report(tmp_path / "out")
    assert [s["id"] for s in doc["scenarios"]] == ["site.extra-echo"] and doc["deselected"] == []


def test_run_refuses_an_id_defined_in_the_library_and_in_a_users_directory(tmp_path):
    write(tmp_path / "mine" / "dup.yaml", MINE.replace("site.extra-echo", "dimse.echo"))
    result = _dicomconf(tmp_path, "run", "--scenarios", "mine", "--report-dir", "out", "-q")
    assert result.returncode == USAGE_EXIT, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "scenario id 'dimse.echo' is defined twice" in result.stderr
    assert f"{LIBRARY / 'dimse' / 'echo.yaml'}:1 and mine/dup.yaml:1" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing ran


def test_run_scenarios_dir_without_scenario_files_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    result = _dicomconf(tmp_path, "run", "--scenarios", "empty")
    assert result.returncode == USAGE_EXIT and "no scenario files (*.yaml, *.yml) in empty" in result.stderr
