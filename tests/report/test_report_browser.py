"""report.html as people see it: rendered by headless chromium, checked on the DOM its script built.

The report comes from a real run (tests/report/conftest.py: a few scenarios against the embedded
reference SCP and SCU, two must-level failures with one deviation, one should-level failure).
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import CHROMIUM, SKIP_REASON, dump_dom, screenshot  # noqa: E402
from domkit import parse  # noqa: E402

from dicomconf.report import model  # noqa: E402
from dicomconf.wire.pcapread import CapturedPDU, read_pdus  # noqa: E402

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)


@pytest.fixture(scope="module")
def dom(tiny_run, tmp_path_factory):
    return parse(dump_dom(tiny_run / "report.html", profile=tmp_path_factory.mktemp("chromium")))


def test_header_shows_the_verdict_and_the_counts_of_the_model(dom, tiny_document):
    assert dom.by_id("verdict").text == "FAIL" == model.verdict(tiny_document)[0]
    assert dom.by_id("counts").text == model.counts_line(tiny_document) == \
        "2 passed, 3 failed (2 must, 1 should), 1 skipped"
    counts = {a.attrs["data-count"]: int(a.find("b").text) for a in dom.find_all("a") if "data-count" in a.attrs}
    assert counts["passed"] == 2 and counts["failed-must"] == 2 and counts["failed-should"] == 1
    assert counts["skipped"] == 1 and counts["error"] == 0
    facts = dom.find("table", cls="facts").text
    assert "embedded reference SCP" in facts and "Implementation Class UID" in facts
    from dicomconf.ul import constants as C

    assert C.IMPLEMENTATION_CLASS_UID in facts and C.IMPLEMENTATION_VERSION_NAME in facts


def test_one_ladder_per_scenario_with_an_arrow_per_pdu(dom, tiny_run, tiny_document):
    with_pcap = [s for s in tiny_document["scenarios"] if s["pcap"]]
    assert len(with_pcap) == 5  # all but the skipped one
    assert len(dom.find_all("svg", cls="ladder")) == len(with_pcap)
    for s in with_pcap:
        card = dom.by_id(f"s-{s['id']}")
        (svg,) = card.find_all("svg", cls="ladder")
        pdus = [p for p in read_pdus(tiny_run / s["pcap"]) if isinstance(p, CapturedPDU)]
        arrows = svg.find_all("g", cls="pdu")
        assert len(arrows) == len(pdus), s["id"]
        assert len(pdus) > 0 or s["id"] == "tiny.should-fails"  # that one connects and hears nothing
        # each arrow names its PDU type, and links to its decoded fields and hex dump
        from dicomconf.ul import constants as C

        for arrow, pdu in zip(arrows, pdus):
            assert arrow.find("tspan", cls="name").text == C.PDU_NAMES[pdu.data[0]]
        for n in range(1, len(pdus) + 1):
            details = dom.by_id(f"p-{s['id']}-{n}")
            assert details is not None and details.tag == "details" and "0000  " in details.text
    echo = dom.by_id("s-tiny.echo-store").find("svg", cls="ladder").text
    assert "C-ECHO-RQ id=1" in echo and "C-ECHO-RSP to=1 0x0000 success" in echo and "C-STORE-RSP" in echo


def test_coverage_matrix_marks_the_cited_cells_with_the_verdict(dom):
    def cell(role, state, event):
        table = dom.find("table", cls="cov", data_role=role)
        assert table is not None, role
        return table.find("td", data_cell=f"{state} {event}")

    assert cell("scu", "Sta6", "Evt10").attrs["data-status"] == "passed"
    assert cell("scu", "Sta6", "Evt12").attrs["data-status"] == "failed-must"
    assert cell("scu", "Sta2", "Evt18").attrs["data-status"] == "failed-should"
    assert "tiny.release-must-fails-1" in cell("scu", "Sta6", "Evt12").attrs["data-ids"]
    assert cell("scu", "Sta6", "Evt19").attrs["data-status"] == "not-exercised"  # provokable, not cited here
    assert cell("scu", "Sta1", "Evt1").attrs["data-status"] == "unprovokable"
    assert cell("scu", "Sta1", "Evt3") is None  # a blank cell of the table
    assert cell("scp", "Sta7", "Evt13").attrs["data-status"] == "passed"  # the SCU-testing side
    assert "AR-3" in cell("scp", "Sta7", "Evt13").text


def test_failures_come_first_grouped_must_before_should(dom):
    groups = dom.by_id("failures").find_all("li", cls="group")
    assert [g.attrs["data-severity"] for g in groups] == ["must", "should"]
    assert "2 scenario(s)" in groups[0].text and "expected A-ABORT, got A-RELEASE-RP" in groups[0].text


@pytest.mark.parametrize("fragment, shown", [
    ("filter=failed-must", {"tiny.release-must-fails-1", "tiny.release-must-fails-2"}),
    ("filter=failed", {"tiny.release-must-fails-1", "tiny.release-must-fails-2", "tiny.should-fails"}),
    ("filter=passed&area=scu.release", {"tiny.scu-release"}),
    ("cell=scu:Sta6:Evt12", {"tiny.release-must-fails-1"}),
])
def test_the_filter_is_applied_from_the_url(tiny_run, tmp_path, fragment, shown):
    page = parse(dump_dom(tiny_run / "report.html", fragment, profile=tmp_path / "profile"))
    cards = page.find_all("article", cls="scenario")
    assert len(cards) == 6
    assert {c.attrs["data-id"] for c in cards if "hidden" not in c.attrs} == shown
    assert page.find("body").attrs["data-shown"] == str(len(shown))
    assert page.by_id("shown").text == f"{len(shown)} of 6 shown"


def test_screenshot_is_written(tiny_run, tmp_path):
    png = screenshot(tiny_run / "report.html", tmp_path / "report.png", profile=tmp_path / "profile")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 1600) and len(data) > 30_000  # a page, not a blank image
