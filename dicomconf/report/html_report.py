"""``report.html``: one self-contained page that renders the run's one model (report.json).

Theory of operation
-------------------
:func:`render_html` renders the document :func:`dicomconf.report.model.build_document`
makes, with the Jinja2 template ``templates/report.html.j2`` (autoescaped:
every value from a scenario, a target or a capture is text, never markup).
Counts, the verdict, the failure groups, the area × severity matrix and the
baseline's judgement all come from :mod:`dicomconf.report.model`, so the page
says what the terminal and report.json say.  What the page adds is read here:

* the order: the header (verdict, target and what it calls itself, counts
  that link to filters), the failures grouped by deviation (must-level groups
  first; against a baseline, the new failures and the stale entries first:
  "changed since the baseline", then the known ones, muted), the area ×
  severity matrix, PS3.8 Table 9-10 as states × events
  (:mod:`dicomconf.report.coverage_matrix`), the scenarios, the scenarios
  left out.  Scenarios are grouped by area; within an area the failing ones
  come first, worst first (must-level failures, errors, should-level
  failures, flaky), then the passed and the skipped.  Each failure's step,
  expectation and observation are printed once, in its scenario;
* each scenario's conversation as a ladder diagram in inline SVG
  (:mod:`dicomconf.report.ladder`), each PDU linked to its decoded fields and
  hex dump;
* clauses linked to the standard's online text (:func:`clause_url`), paths
  relative to the report directory;
* filtering by verdict, baseline status, area and Table 9-10 cell in plain
  JavaScript inside the page; the filter state also lives in the URL hash
  (``#filter=failed-must,new&area=dimse``), so a link or a bookmark opens
  the page filtered.

Nothing is fetched: no script, style sheet, image or font comes from
outside the file (it is opened on hospital networks); links to the standard
are plain ``<a href>``, followed only when clicked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from dicomconf.report import ladder as ladder_mod
from dicomconf.report import model
from dicomconf.report.coverage_matrix import LEGEND, VERDICTS, matrices, verdict_class
from dicomconf.report.outcomes import OUTCOMES, area_label
from dicomconf.scenario.engine import TRACE_LIMIT
from dicomconf.wire.capture import decrypted_path, key_log_path

TEMPLATES = Path(__file__).with_name("templates")
STANDARD = "https://dicom.nema.org/medical/dicom/current/output/html/part{part:02d}.html#{anchor}"
_CLAUSE = re.compile(r"\bPS\s?3\.(\d+)\s+([A-Z](?:\.\d+)*|\d+(?:\.\d+)*)(?:\s+Table\s+([A-Z0-9][\w.]*-\d+))?")
# The verdict classes as the page words them, in the order of its filter buttons.
VERDICT_WORDS = {"failed-must": "failed (must)", "failed-should": "failed (should)", "error": "error",
                 "flaky": "flaky", "passed": "passed", "skipped": "skipped"}
BASELINE_WORDS = {"new": "new", "stale": "stale", "known": "known"}


def clause_url(clause: str) -> str | None:
    """The standard's online text for a clause (``PS3.8 9.3.2.2 Table 9-13``): its table, else its section."""
    m = _CLAUSE.search(clause)
    if m is None:
        return None
    part, section, table = int(m.group(1)), m.group(2), m.group(3)
    if table:
        anchor = f"table_{table}"
    elif "." in section:
        anchor = f"sect_{section}"
    else:
        anchor = f"chapter_{section}"
    return STANDARD.format(part=part, anchor=anchor)


def _file_href(location: str | None) -> str | None:
    if not location:
        return None
    file, sep, line = location.rpartition(":")
    return file if sep and line.isdigit() else location


def _duration(seconds: Any) -> str:
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    return f"{int(s // 60)} min {s % 60:.0f} s"


def _ladder(s: Mapping[str, Any], report_dir: Path | None) -> dict[str, Any] | None:
    """The ladder of a scenario's capture; over TLS, of its decrypted copy (the wire capture holds
    TLS records: dicomconf.wire.capture.decrypted_path), with links to it and to the key log."""
    if not s.get("pcap") or report_dir is None:
        return None
    path = report_dir / s["pcap"]
    decrypted, keys = decrypted_path(path), key_log_path(path)
    tls = decrypted.exists()
    lad = ladder_mod.read_ladder(decrypted if tls else path, s.get("role") or "scu")
    links = {"decrypted": str(Path(s["pcap"]).with_name(decrypted.name)),
             "key_log": str(Path(s["pcap"]).with_name(keys.name)) if keys.exists() else None} if tls else None
    return {"ladder": lad, "layout": ladder_mod.layout(lad), "tls": links}


def _scenario(s: Mapping[str, Any], status: Mapping[str, str], report_dir: Path | None) -> dict[str, Any]:
    vclass = verdict_class(s)
    failure = dict(s.get("failure") or {})
    if failure:  # its step and pcap are relative to the report already (model.build_document)
        structured = any(failure.get(k) for k in ("step", "expected", "came", "finding"))
        # pytest's text repeats the structured fields; it is shown only when they are missing
        failure["extra"] = None if structured or failure.get("text") == failure.get("message") else failure.get("text")
    first = s.get("first_failure") or None
    tags = [vclass] + ([status[s["id"]]] if s["id"] in status else [])
    return {"s": s, "v": vclass, "b": status.get(s["id"]), "tags": " ".join(tags), "area": area_label(s),
            "failure": failure or None, "first": first, "file_href": _file_href(s.get("file")),
            "clauses": [(c, clause_url(c)) for c in s.get("clauses") or ()],
            "conv": _ladder(s, report_dir), "steps": s.get("steps") or []}


def _groups(document: Mapping[str, Any], cards: Mapping[str, dict[str, Any]],
            status: Mapping[str, str]) -> list[dict[str, Any]]:
    """The failure sections: without a baseline one ("failures"); with one, new / known."""
    baseline = document["run"].get("baseline") is not None

    def pick(groups: list[dict[str, Any]], keep) -> list[dict[str, Any]]:
        out = []
        for g in groups:
            ids = [i for i in g["scenarios"] if keep(i)]
            if ids:
                vs = {cards[i]["v"] for i in ids if i in cards}
                out.append({**g, "ids": ids, "url": clause_url(g["clause"]) if g.get("clause") else None,
                            "kind": "error" if vs == {"error"} else g["severity"],
                            "must": any(cards[i]["s"].get("severity") == "must" for i in ids if i in cards)})
        return sorted(out, key=lambda g: not g["must"])

    groups = document.get("failure_groups") or model.failure_groups(document)
    if not baseline:
        return [{"key": "failures", "title": "Failures", "groups": pick(groups, lambda i: True), "muted": False}]
    return [
        {"key": "new", "title": "New failures (not in the baseline)",
         "groups": pick(groups, lambda i: status.get(i) != "known"), "muted": False},
        {"key": "known", "title": "Known failures (in the baseline)",
         "groups": pick(groups, lambda i: status.get(i) == "known"), "muted": True},
    ]


def _counts(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The header's count links: label, number, the filter it opens, its class."""
    s, run = document["summary"], document["run"]
    out = [{"label": "passed", "n": s.get("passed", 0), "filter": "passed", "cls": "passed"},
           {"label": "failed (must)", "n": s.get("must_failed", 0), "filter": "failed-must", "cls": "failed-must"},
           {"label": "failed (should)", "n": s.get("should_failed", 0), "filter": "failed-should",
            "cls": "failed-should"},
           {"label": "error", "n": s.get("error", 0), "filter": "error", "cls": "error"}]
    if run.get("baseline") is not None:
        out += [{"label": k, "n": s.get(k, 0), "filter": k, "cls": k} for k in ("new", "known", "stale")]
    out += [{"label": "flaky", "n": s.get("flaky", 0), "filter": "flaky", "cls": "flaky"},
            {"label": "skipped", "n": s.get("skipped", 0), "filter": "skipped", "cls": "skipped"},
            {"label": "left out", "n": s.get("deselected", 0), "filter": None, "cls": "skipped"}]
    return out


def context(document: Mapping[str, Any], report_dir: str | Path | None = None) -> dict[str, Any]:
    """Everything the template shows, from the document (and the pcaps under ``report_dir``)."""
    report_dir = Path(report_dir) if report_dir is not None else None
    run = document["run"]
    status = model.baseline_status(document)
    word, sentence = model.verdict(document)
    listed = [_scenario(s, status, report_dir) for s in document["scenarios"]]
    cards: dict[str, dict[str, Any]] = {}
    by_area: dict[str, list[dict[str, Any]]] = {area: [] for area in model.area_matrix(document)}  # its order
    for card in listed:
        cards.setdefault(card["s"]["id"], card)
        by_area.setdefault(card["area"], []).append(card)
    rank = {v: i for i, v in enumerate(VERDICTS)}
    areas = [(area, sorted(cs, key=lambda c: (rank.get(c["v"], len(rank)), c["s"]["id"])))
             for area, cs in by_area.items() if cs]
    identity = run.get("identity")
    if identity is None and report_dir is not None:
        identity = ladder_mod.identify(document, report_dir)
    stale = [cards[i] for i in (run.get("baseline") or {}).get("stale") or () if i in cards]
    profile = dict(run.get("profile") or {})
    return {
        "run": run, "summary": document["summary"], "profile": profile,
        "verdict": word, "sentence": sentence,
        "verdict_cls": {"PASS": "pass", "FAIL": "fail", "NOT RUN": "notrun"}.get(word, "error"),
        "counts_line": model.counts_line(document), "counts": _counts(document),
        "identity": identity or {}, "duration": _duration(run.get("duration_s")),
        "versions": ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items() if v),
        "sections": _groups(document, cards, status), "stale": stale,
        "area_matrix": model.area_matrix(document), "outcomes": OUTCOMES,
        "matrices": matrices(document), "legend": LEGEND,
        "areas": areas, "total": len(listed),
        "verdict_words": VERDICT_WORDS, "baseline_words": BASELINE_WORDS,
        "deselected": document.get("deselected") or [],
        "trace_limit": TRACE_LIMIT,
    }


@lru_cache(maxsize=1)
def _template():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.ChainableUndefined)
    env.filters["url"] = clause_url
    return env.get_template("report.html.j2")


def render_html(document: Mapping[str, Any], report_dir: str | Path | None = None) -> str:
    """The page for ``document``; ``report_dir`` (where report.json and the pcaps are) lets it read the pcaps."""
    return _template().render(**context(document, report_dir))
