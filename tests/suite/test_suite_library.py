"""The scenario library ships in the wheel, and an installed wheel runs the whole suite.

The wheel is built (``pip wheel --no-deps``) from a copy of the sources in a
temporary directory, so the checkout gets no ``build/`` directory.  It is
installed into a fresh virtual environment that sees the system's packages
(``--system-site-packages``: no dependency is downloaded); the checkout is
installed editable in the same system packages, so the test checks that the
environment's own copy is what runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dicomconf.scenario.library import catalogue

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "dicomconf", "scenarios")


def _env() -> dict[str, str]:
    drop = ("PYTEST_XDIST", "PYTEST_CURRENT", "PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert result.returncode == 0, f"{' '.join(map(str, argv))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], cwd=src)
    (built,) = dist.glob("dicomconf-*.whl")
    return built


def _source_files() -> set[str]:
    """What the wheel must hold: every module and data file of the package, and the library."""
    out = set()
    for path in (REPO / "dicomconf").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".json", ".yaml") and "__pycache__" not in path.parts:
            out.add(str(path.relative_to(REPO)))
    for path in (REPO / "scenarios").rglob("*"):
        if path.is_file() and path.suffix in (".py", ".yaml", ".yml") and "__pycache__" not in path.parts:
            out.add("dicomconf/" + str(path.relative_to(REPO)))
    return out


def test_wheel_holds_every_module_and_the_scenario_library(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_files() - names)
    assert not missing, (f"not in the wheel: {missing[:10]} (a new sub-package of dicomconf goes into "
                         "[tool.setuptools] packages in pyproject.toml)")
    library = {n for n in names if n.startswith("dicomconf/scenarios/") and n.endswith(".yaml")}
    assert len(library) == len(list((REPO / "scenarios").rglob("*.yaml")))
    assert not any(n.startswith("scenarios/") for n in names), "the library must not be a top-level package"


def test_installed_wheel_runs_the_whole_library_from_an_empty_directory(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], cwd=tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()

    code = "import dicomconf, dicomconf.scenario.library as l; print(dicomconf.__file__); print(l.shipped())"
    where = _run([str(python), "-c", code], cwd=empty).stdout.split()
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=empty).stdout.strip())
    assert Path(where[0]).is_relative_to(site) and Path(where[1]) == site / "dicomconf" / "scenarios", where

    out = tmp_path / "report"
    result = subprocess.run([str(bindir / "dicomconf"), "run", "-q", "-n", "2", "--report-dir", str(out)],
                            cwd=empty, capture_output=True, text=True, timeout=600, env=_env())
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    ran = {s["id"]: s for s in doc["scenarios"]}
    want = {i.id for i in catalogue([REPO / "scenarios"])}
    assert set(ran) == want, f"{sorted(want ^ set(ran))[:10]}\n{result.stdout[-3000:]}"
    # report.json's paths are relative to the report directory
    assert all((out / s["file"].rsplit(":", 1)[0]).resolve().is_relative_to(site.resolve()) for s in ran.values()), \
        "the scenarios did not come from the installed wheel"
    bad = {i: s["outcome"] for i, s in ran.items() if s["outcome"] == "error"
           or (s["outcome"] == "failed" and s["severity"] == "must")}
    assert not bad, f"{bad}\n{result.stdout[-3000:]}"
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
