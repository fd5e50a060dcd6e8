"""The scenario library that ships with dicomconf, and users' own scenario directories.

Theory of operation
-------------------
The suite's YAML files live at the top level of the source tree
(``scenarios/``); ``pyproject.toml`` installs that directory as the package
``dicomconf.scenarios``, so a wheel, an editable install and a checkout all
read the same files.  :func:`shipped` finds them through
:mod:`importlib.resources` (a real directory for every install that pytest can
collect from; ``None`` when the package is not there or is inside a zip).

:func:`scenario_files` lists the scenario files under a directory the way the
pytest plugin collects them (``*.yaml`` / ``*.yml``, names starting with
``_`` left out); :func:`catalogue` loads them into :class:`Info` records (id,
title, area, severity, disruptive, ``file:line``) for ``dicomconf scenarios
list`` and for the check that no scenario id is defined twice in one run
(:func:`duplicate_ids`).  :func:`export` copies the shipped library into a
directory for a team to extend, refusing to overwrite a file unless asked.

Only the standard library is imported at module level: the pytest plugin
imports this module in every pytest run.
"""

from __future__ import annotations

import importlib.resources
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

PACKAGE = "dicomconf.scenarios"
SCENARIO_SUFFIXES = (".yaml", ".yml")


def shipped() -> Path | None:
    """The directory of the installed scenario library, or None when there is none on disk."""
    try:
        root = importlib.resources.files(PACKAGE)
    except ModuleNotFoundError:
        return None
    return root if isinstance(root, Path) and root.is_dir() else None


def is_scenario_file(path: Path) -> bool:
    """A file the pytest plugin collects as scenarios (when it lies in a scenario directory)."""
    return path.suffix in SCENARIO_SUFFIXES and not path.name.startswith("_")


def scenario_files(path: str | Path) -> list[Path]:
    """``path`` itself when it is a file; else every scenario file below it, sorted
    (directories whose name starts with ``.`` are passed over, as pytest does)."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    out = []
    for file in sorted(path.rglob("*")):
        parts = file.relative_to(path).parts[:-1]
        if file.is_file() and is_scenario_file(file) and not any(p.startswith(".") for p in parts):
            out.append(file)
    return out


@dataclass(frozen=True, slots=True)
class Info:
    """What ``dicomconf scenarios list`` shows of one scenario; ``error`` is set when it is invalid."""

    id: str
    title: str
    area: str
    severity: str
    disruptive: bool
    clauses: tuple[str, ...]
    file: str
    line: int
    error: str | None = None
    role: str = "scu"  # the role dicomconf plays: scu (tests an SCP) or scp (tests an SCU)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def as_dict(self) -> dict:
        out = asdict(self)
        out["clauses"] = list(self.clauses)
        return out


def catalogue(paths: Iterable[str | Path]) -> list[Info]:
    """One :class:`Info` per scenario in the files under ``paths`` (each file read once)."""
    from dicomconf.scenario.model import load_file

    seen: set[Path] = set()
    out: list[Info] = []
    for path in paths:
        for file in scenario_files(path):
            key = file.resolve()
            if key in seen:
                continue
            seen.add(key)
            for entry in load_file(file):
                sc = entry.scenario
                if sc is not None:
                    out.append(Info(sc.id, sc.title, sc.area, sc.severity, sc.disruptive, sc.clauses,
                                    str(file), entry.line, role=sc.role))
                    continue
                raw = entry.raw
                out.append(Info(entry.name, str(raw.get("title", "")), str(raw.get("area", "")),
                                str(raw.get("severity", "")), raw.get("disruptive") is True, (),
                                str(file), entry.line, str(entry.error),
                                role="scp" if raw.get("role") == "scp" else "scu"))
    return out


def duplicate_ids(infos: Iterable[Info]) -> dict[str, list[Info]]:
    """Scenario ids defined more than once, each with every place that defines it."""
    by_id: dict[str, list[Info]] = {}
    for info in infos:
        by_id.setdefault(info.id, []).append(info)
    return {i: found for i, found in by_id.items() if len(found) > 1}


class ExportError(Exception):
    """``export`` cannot proceed (one line for the user)."""


def export(dest: str | Path, force: bool = False, source: str | Path | None = None) -> list[Path]:
    """Copy the scenario files of ``source`` (default: the shipped library) into ``dest``,
    keeping their sub-directories; returns the files written.

    Refuses (ExportError, nothing written) when a file to write exists, unless ``force``.
    """
    root = Path(source) if source is not None else shipped()
    if root is None:
        raise ExportError(f"the scenario library ({PACKAGE}) is not installed as files on disk")
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"{dest} exists and is not a directory")
    pairs = [(f, dest / f.relative_to(root)) for f in scenario_files(root)]
    if not force:
        existing = [str(to) for _, to in pairs if to.exists()]
        if existing:
            more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
            raise ExportError(f"{existing[0]}{more} already exist; use --force to overwrite")
    for src, to in pairs:
        to.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, to)
    return [to for _, to in pairs]
