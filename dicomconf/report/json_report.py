"""``report.json`` and the report directory (see :mod:`dicomconf.report`)."""

from __future__ import annotations

import json
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from dicomconf.report.outcomes import OUTCOMES

_PACKAGES = ("dicomconf", "pydicom", "scapy", "pytest", "pytest-xdist")
SCHEMA_VERSION = 1  # report.schema.json in this package describes it


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    records = list(records)
    out = {o: sum(1 for r in records if r["outcome"] == o) for o in OUTCOMES}
    for level in ("must", "should"):
        out[f"{level}_failed"] = sum(1 for r in records if r["outcome"] == "failed" and r["severity"] == level)
    return out


def _relative(path: str | None, base: Path) -> str | None:
    if not path:
        return None
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return path


def _link_latest(report_dir: Path) -> None:
    """Point ``<parent>/latest`` at ``report_dir`` (a relative symlink, replaced atomically)."""
    latest = report_dir.parent / "latest"
    if latest.exists() and not latest.is_symlink():
        return  # a real directory named latest belongs to the user
    tmp = report_dir.parent / f".latest-{os.getpid()}"
    try:
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(report_dir.name, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError:
        pass


def left_out(deselected: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scenarios left out of the run (deselected), one entry per scenario, sorted like the results."""
    unique = {d.get("nodeid") or d["id"]: d for d in deselected}
    return [{k: v for k, v in d.items() if k != "nodeid"}
            for d in sorted(unique.values(), key=lambda d: (d["area"], d["id"], d.get("nodeid", "")))]


def write_reports(report_dir: Path, run: dict[str, Any], records: list[dict[str, Any]], latest: bool = False,
                  deselected: Iterable[dict[str, Any]] = (), summary_md: Path | None = None) -> Path:
    """Write report.json and report.html into ``report_dir``; return the directory.

    ``deselected``: the scenarios left out of the run, each with its ``reason``; ``summary_md``: a
    file to write the Markdown summary to as well (:mod:`dicomconf.report.markdown`).
    """
    from dicomconf.report.html_report import render_html

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    scenarios = []
    for r in sorted(records, key=lambda r: (r["area"], r["id"], r.get("nodeid", ""))):
        entry = {k: v for k, v in r.items() if k != "nodeid"}
        entry["pcap"] = _relative(r.get("pcap"), report_dir)
        scenarios.append(entry)
    deselected = left_out(deselected)
    summary = {**summarize(records), "deselected": len(deselected)}
    document = {"schema_version": SCHEMA_VERSION, "run": {**run, "versions": versions()}, "summary": summary,
                "scenarios": scenarios, "deselected": deselected}
    tmp = report_dir / "report.json.tmp"
    tmp.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, report_dir / "report.json")
    (report_dir / "report.html").write_text(render_html(document), encoding="utf-8")
    if summary_md is not None:
        from dicomconf.report.markdown import render_markdown

        summary_md = Path(summary_md)
        summary_md.parent.mkdir(parents=True, exist_ok=True)
        html = os.path.relpath(report_dir / "report.html", summary_md.resolve().parent)
        summary_md.write_text(render_markdown(document, html), encoding="utf-8")
    if latest:
        _link_latest(report_dir)
    return report_dir
