"""The report directory: ``report.json``, ``report.html``, the Markdown summary, ``latest``.

Each format renders the one document :func:`dicomconf.report.model.build_document`
makes; a new format is a new module with a ``render_*(document)`` function
and one line here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from dicomconf.report.model import Document, build_document


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


def _write(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all (a reader never sees half a report)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_document(report_dir: Path, document: Document, summary_md: Path | None = None) -> None:
    """Render ``document`` into ``report_dir`` (and ``summary_md``, if given)."""
    from dicomconf.report.html_report import render_html

    _write(report_dir / "report.json", json.dumps(document, indent=2, default=str) + "\n")
    _write(report_dir / "report.html", render_html(document, report_dir))
    if summary_md is not None:
        from dicomconf.report.markdown import render_markdown

        summary_md = Path(summary_md)
        summary_md.parent.mkdir(parents=True, exist_ok=True)
        html = os.path.relpath(report_dir / "report.html", summary_md.resolve().parent)
        _write(summary_md, render_markdown(document, html))


def write_reports(report_dir: Path, run: dict[str, Any], records: list[dict[str, Any]], latest: bool = False,
                  deselected: Iterable[dict[str, Any]] = (), summary_md: Path | None = None) -> Document:
    """Write report.json and report.html into ``report_dir``; return the document they render.

    ``deselected``: the scenarios left out of the run, each with its ``reason``; ``summary_md``: a
    file to write the Markdown summary to as well (:mod:`dicomconf.report.markdown`).
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    document = build_document(report_dir, run, records, deselected)
    from dicomconf.report.ladder import identify

    document["run"]["identity"] = identify(document, report_dir)  # from the captures: what the AC/RQ announced
    write_document(report_dir, document, summary_md)
    if latest:
        _link_latest(report_dir)
    return document
