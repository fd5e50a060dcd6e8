"""The find step's status ranges and free Query/Retrieve Level (PS3.4 C.4.1.1.4, C.4.1.1.3.1).

A find ``status`` list may hold ranges ``{min, max}`` (the "Cxxx" of PS3.4 Table C.4-1), and
``level`` may be any code string, sent as is, so a scenario can ask for an unknown level and
accept any failure the standard allows.  Played by the requestor's Runner against the embedded
reference SCP (its FIND handler replaced where a test needs another answer), loopback only.
"""

from __future__ import annotations

import textwrap

import pytest
import qr_play

from dicomconf.scenario.engine import ScenarioFailure
from dicomconf.scenario.loader import SourceError
from dicomconf.scenario.requestor import Runner
from dicomconf.scenario.services_steps import _hex
from dicomconf.services.base import Reply

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
HEAD = """
id: services.test
title: a test scenario
clauses: [PS3.4 C.4.1]
severity: should
area: services
steps:
  - associate: {contexts: [ct, mr, study_find]}
  - store_set: {studies: [0]}
"""
FAILURES = "[0xA900, {min: 0xC000, max: 0xCFFF}]"


def _load(tmp_path, find: str):
    return qr_play.from_text(tmp_path, textwrap.dedent(HEAD) + textwrap.indent(textwrap.dedent(find), "  ")
                             + "  - release:\n")


def _play(embedded, tmp_path, find: str) -> Runner:
    return qr_play.play(embedded, _load(tmp_path, find))


def _find(level: str | None, status: str = FAILURES) -> str:
    line = f"    level: {level}\n" if level is not None else ""
    return ("- find:\n" + line + '    keys: {PatientID: "{set.patients[0].id}", StudyInstanceUID: null}\n'
            f"    status: {status}\n    matches: 0\n")


def test_hex_names_a_status_range():
    assert _hex({"min": 0xC000, "max": 0xCFFF}) == "0xc000..0xcfff"
    assert _hex([0xA900, {"min": 0xC000, "max": 0xCFFF}]) == "0xa900 or 0xc000..0xcfff"


def test_an_unknown_level_is_sent_and_its_refusal_matches_the_range(embedded, tmp_path):
    _play(embedded, tmp_path, _find("FRAME"))  # the reference SCP answers A900 (no such level, PS3.4 C.6.2.1)


def test_a_missing_level_is_refused(embedded, tmp_path):
    _play(embedded, tmp_path, _find(None))


def test_a_status_inside_the_range_passes(embedded, tmp_path):
    def refusing(request):
        yield Reply(0xC123, fields={"ErrorComment": "cannot"})

    embedded[0].scp.handlers[STUDY_FIND] = refusing
    _play(embedded, tmp_path, _find("STUDY"))


def test_a_status_outside_the_range_fails_naming_the_range(embedded, tmp_path):
    with pytest.raises(ScenarioFailure) as caught:
        _play(embedded, tmp_path, _find("STUDY", "[{min: 0xC000, max: 0xCFFF}]"))
    failure = caught.value
    assert "C-FIND final status 0x0000" in failure.message
    assert "0xc000..0xcfff" in failure.expected


@pytest.mark.parametrize("status, level", [
    ("[{min: 0xC000}]", "STUDY"),             # a range needs both ends
    ("[{min: 0xC000, max: 0xCFFF, x: 1}]", "STUDY"),
    (FAILURES, "frame"),                       # a level is a code string: upper case (PS3.5 CS)
    (FAILURES, "A LEVEL LONGER THAN 16"),
])
def test_a_bad_status_or_level_is_a_file_line_error(tmp_path, status, level):
    with pytest.raises(SourceError) as caught:
        _load(tmp_path, _find(level, status))
    assert "s.yaml:" in str(caught.value)
