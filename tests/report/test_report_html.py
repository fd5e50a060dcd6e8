"""report.html from the one model of the run (dicomconf.report.html_report), checked on its markup.

What a browser makes of it is tests/report/test_report_browser.py's; here: escaping, order,
grouping, self-containment, relative paths, the baseline's view, and pages for unusual runs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from markupsafe import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))

from domkit import parse  # noqa: E402

from dicomconf import exitcodes  # noqa: E402
from dicomconf.report import model  # noqa: E402
from dicomconf.report.html_report import clause_url, render_html  # noqa: E402

RUN = {"target": "127.0.0.1:11112", "profile": {"name": "pacs", "source": "pacs.yaml"},
       "start": "2026-01-01T00:00:00+00:00", "duration_s": 12.5, "strict": False,
       "exit_status": exitcodes.FAILURES}


def _record(sid, outcome="passed", severity="must", area="fsm", failure=None, **more):
    return {"id": sid, "title": f"title of {sid}", "clauses": ["PS3.8 9.3.8"], "severity": severity, "area": area,
            "outcome": outcome, "duration_s": 0.1, "findings": [], "pcap": None, "file": None, "failure": failure,
            "skip_reason": None, "role": "scu", "tests": "SCP", "nodeid": sid, **more}


def _abort_failure(path="/abs/where/scenarios/x.yaml"):
    return {"step": f"{path}:12 (expect)", "message": "source: expected 2, got 0 (awaiting A-ABORT)",
            "expected": '{"pdu": "A-ABORT", "source": 2} within 5s on main', "came": "A-ABORT source 0",
            "finding": None, "text": "source: expected 2, got 0\nstep: ...\nexpected: ...\ncame: ..."}


def _doc(tmp_path, records, run=None, deselected=()):
    return model.build_document(tmp_path, {**RUN, **(run or {})}, records, deselected)


def test_every_value_is_escaped(tmp_path):
    hostile = '<script>alert("x")</script>'
    failure = {**_abort_failure(), "message": f"got </pre>{hostile}", "came": "<img src=x onerror=alert(1)>"}
    doc = _doc(tmp_path, [_record("evil.one", "failed", failure=failure, title=hostile,
                                  requirement='shall <b>"quote"</b> & more', clauses=[hostile])],
               run={"target": "<b>pacs</b>", "profile": {"name": hostile, "source": "p"}})
    html = render_html(doc, tmp_path)
    assert hostile not in html and "<img src=x" not in html and "<b>pacs" not in html and '<b>"quote' not in html
    dom = parse(html)
    assert hostile in dom.by_id("s-evil.one").find("span", cls="title").text  # shown as text
    assert dom.by_id("s-evil.one").find("q").text == 'shall <b>"quote"</b> & more'
    assert "<img src=x onerror=alert(1)>" in dom.by_id("s-evil.one").find("div", cls="failure").text
    assert html.count("<script") == 1 and "<script>\n(function" in html  # only the page's own


def test_the_page_fetches_nothing(tiny_run):
    html = (tiny_run / "report.html").read_text()
    dom = parse(html)
    assert not [el for el in dom.iter() if "src" in el.attrs]  # no script, image, frame or media source
    assert not dom.find_all("link") and "@import" not in html and "url(" not in html
    external = [el.attrs["href"] for el in dom.iter() if re.match(r"(?i)\s*(https?:)?//", el.attrs.get("href", ""))]
    assert external and all(h.startswith("https://dicom.nema.org/") for h in external)
    assert all(el.tag == "a" for el in dom.iter() if el.attrs.get("href", "").startswith("https:"))


def test_paths_are_relative_to_the_report(tiny_run, tiny_document):
    html = (tiny_run / "report.html").read_text()
    assert str(tiny_run.parent) not in html  # no absolute path of the run's directory
    dom = parse(html)
    card = dom.by_id("s-tiny.echo-store")
    assert card.find("a", href="pcap/tiny.echo-store.pcap") is not None
    assert card.find("a", href="../scenarios/tiny.yaml") is not None
    fail = dom.by_id("s-tiny.release-must-fails-1").find("div", cls="failure")
    assert "../scenarios/tiny.yaml:19 (expect)" in fail.text


def test_failures_group_by_deviation_must_first_and_print_each_failure_once(tmp_path):
    records = [_record(f"fsm.abort-{i}", "failed", failure=_abort_failure()) for i in range(5)]
    records += [_record("conn.slow", "failed", "should", "connection",
                        failure={**_abort_failure(), "message": "expected a PDU, got nothing within 1s",
                                 "expected": '{"pdu": "A-ASSOCIATE-AC"} within 1s on main'})]
    records += [_record("conn.slow-2", "failed", "should", "connection",
                        failure={**_abort_failure(), "message": "expected a PDU, got nothing within 3s",
                                 "expected": '{"pdu": "A-ASSOCIATE-AC"} within 3s on main'})]
    records += [_record("fsm.ok"), _record("fsm.error", "error", failure={"message": "could not be played",
                                                                           "text": "Traceback (long)"})]
    html = render_html(_doc(tmp_path, records), tmp_path)
    dom = parse(html)
    groups = dom.by_id("failures").find_all("li", cls="group")
    assert [g.attrs["data-severity"] for g in groups] == ["must", "must", "should"]
    assert "5 scenario(s)" in groups[0].text and "source: expected 2, got 0" in groups[0].text  # one line, not five
    assert "2 scenario(s)" in groups[2].text  # "within 1s" and "within 3s" are one deviation
    assert "ERROR" in groups[1].text
    # step, expected and came: once per failing scenario (in its card), never in the groups
    assert html.count(escape('{"pdu": "A-ABORT", "source": 2} within 5s on main')) == 5
    assert html.count(escape('{"pdu": "A-ASSOCIATE-AC"} within 1s')) == 1
    assert html.count(escape('{"pdu": "A-ASSOCIATE-AC"} within 3s')) == 1
    assert html.count("abs/where/scenarios/x.yaml:12 (expect)") == 7 and ">/abs/where" not in html  # relative
    assert "Traceback (long)" in html  # an error without structured fields keeps pytest's text
    assert "step: ..." not in html  # but a structured failure's text is not printed again
    # must and should look different: their own classes and labels
    assert groups[0].find("span", cls="b-must").text == "MUST"
    assert groups[2].find("span", cls="b-should").text == "SHOULD"
    # within an area, the worst first
    fsm = [a.attrs["data-id"] for a in dom.find("section", cls="area", data_area="fsm").find_all("article")]
    assert fsm[:5] == [f"fsm.abort-{i}" for i in range(5)] and fsm[5:] == ["fsm.error", "fsm.ok"]
    badges = dom.by_id("s-conn.slow").find("div", cls="head").text
    assert "FAILED (SHOULD)" in badges and "FAILED (SHOULD)" != dom.by_id("s-fsm.abort-0").find("span").text


def test_the_baseline_view_puts_what_changed_first_and_mutes_the_known(tmp_path):
    records = [_record("a.new", "failed", failure=_abort_failure()),
               _record("b.known", "failed", failure={**_abort_failure(), "message": "other deviation"}),
               _record("c.stale")]
    baseline = {"file": "pacs-baseline.yaml", "known": ["b.known"], "new": ["a.new"], "stale": ["c.stale"],
                "unknown": [], "expired": [], "conforms": False}
    doc = _doc(tmp_path, records, run={"baseline": baseline})
    dom = parse(render_html(doc, tmp_path))
    text = dom.by_id("failures").text
    assert text.index("Changed since the baseline") < text.index("New failures") < text.index("Stale") \
        < text.index("Known failures")
    assert dom.by_id("sec-new").text.startswith("New failures (not in the baseline) (1 scenario(s)")
    known = dom.by_id("s-b.known")
    assert "known" in known.classes and known.find("span", cls="b-known").text == "known"
    assert dom.by_id("s-a.new").attrs["data-tags"] == "failed-must new"
    assert "stale" in dom.by_id("s-c.stale").attrs["data-tags"]
    counts = {a.attrs["data-count"]: a.find("b").text for a in dom.find_all("a") if "data-count" in a.attrs}
    assert counts["new"] == "1" and counts["known"] == "1" and counts["stale"] == "1"
    assert dom.by_id("counts").text == model.counts_line(doc)


def test_an_unreachable_target_reads_not_run(tmp_path):
    run = {"exit_status": exitcodes.TARGET_UNREACHABLE,
           "preflight": {"ok": False, "message": "127.0.0.1:9 refused the connection", "cause": "refused"}}
    dom = parse(render_html(_doc(tmp_path, [], run=run), tmp_path))
    assert dom.by_id("verdict").text == "NOT RUN"
    assert "not reached, no scenario run: 127.0.0.1:9 refused the connection" in dom.find("table", cls="facts").text


def test_flaky_scu_skipped_and_unreadable_pcaps_render(tmp_path):
    (tmp_path / "pcap").mkdir()
    (tmp_path / "pcap" / "bad.pcap").write_bytes(b"\x00" * 3)
    records = [
        _record("f.flaky", "flaky", attempts=2,
                first_failure={**_abort_failure(), "outcome": "failed",  # as dicomconf.reruns records it
                               "pcap": str(tmp_path / "pcap/f.1.pcap")}),
        _record("s.skip", "skipped", skip_reason="the profile says no user identity"),
        _record("u.scu", "failed", role="scp", tests="SCU", failure=_abort_failure(),
                pcap=str(tmp_path / "pcap/bad.pcap"),
                scu={"command": "storescu {host} {port}", "exit_status": 1, "output": "E: <oops>"}),
    ]
    html = render_html(_doc(tmp_path, records), tmp_path)
    dom = parse(html)
    flaky = dom.by_id("s-f.flaky").text
    assert "passed on attempt 2, after a failure" in flaky and "source: expected 2, got 0" in flaky
    assert dom.by_id("s-f.flaky").find("a", href="pcap/f.1.pcap") is not None
    assert "skipped: the profile says no user identity" in dom.by_id("s-s.skip").text
    scu = dom.by_id("s-u.scu")
    assert "storescu {host} {port}, exit status 1" in scu.text and escape("E: <oops>") in html
    assert "bad.pcap is not a pcap or pcapng capture" in scu.find("p", cls="notice").text
    assert scu.find("svg", cls="ladder").attrs["data-pdus"] == "0"
    assert render_html(_doc(tmp_path, records), None).count('<svg class="ladder"') == 0  # no directory: no pcaps


def test_left_out_and_target_lines(tmp_path):
    gone = [{"id": "d.storm", "title": "a storm", "area": "connection", "severity": "should",
             "disruptive": True, "file": None, "reason": "disruptive: left out by --gentle"}]
    run = {"target_lost": {"at_scenario": "x.two", "at": "12:00", "message": "refused", "cause": "refused"},
           "tls": {"port": 2762, "verified": False, "insecure": True}}
    html = render_html(_doc(tmp_path, [_record("x.two", "error")], run=run, deselected=gone), tmp_path)
    assert "left out (1)" in html and "d.storm" in html and "disruptive: left out by --gentle" in html
    assert "stopped answering at scenario <code>x.two</code>" in html
    assert "port 2762: certificate and host name NOT verified (--tls-insecure)" in html


def test_clause_urls_point_at_the_standards_section_or_table():
    base = "https://dicom.nema.org/medical/dicom/current/output/html/"
    assert clause_url("PS3.8 9.3.2.2 Table 9-13") == base + "part08.html#table_9-13"
    assert clause_url("PS3.8 9.2 Table 9-10 (Sta6, Evt19, AA-8)") == base + "part08.html#table_9-10"
    assert clause_url("PS3.7 9.3.5.2 Table 9.3-13") == base + "part07.html#table_9.3-13"
    assert clause_url("PS3.7 D.3.3.4") == base + "part07.html#sect_D.3.3.4"
    assert clause_url("PS3.8 9.3.8") == base + "part08.html#sect_9.3.8"
    assert clause_url("PS3.15 B.1") == base + "part15.html#sect_B.1"
    assert clause_url("PS3.8 E") == base + "part08.html#chapter_E"
    assert clause_url("RFC 793") is None


def test_the_steps_as_played_are_listed_with_the_failing_one_marked(tiny_run, tiny_document):
    dom = parse((tiny_run / "report.html").read_text())
    card = dom.by_id("s-tiny.release-must-fails-1")
    rows = card.find("table", cls="steps").find_all("tr")[1:]
    played = {s["id"]: s for s in tiny_document["scenarios"]}["tiny.release-must-fails-1"]["steps"]
    assert [r.find_all("td")[2].text.strip() for r in rows] == [s["kind"] for s in played] == \
        ["associate", "send", "expect"]
    assert [r.attrs["class"] for r in rows] == ["ok", "ok", "failed"]
    assert "open" in card.find("details", cls="steps").attrs  # a failure's steps are shown open
    assert "open" not in dom.by_id("s-tiny.echo-store").find("details", cls="steps").attrs
