"""Scenario and profile validation: file:line, the offending key, what was expected."""

from __future__ import annotations

import json
import textwrap
from importlib import resources

import jsonschema
import pytest

from dicomconf.scenario.loader import SourceError
from dicomconf.scenario.model import STEP_KINDS, load_file
from dicomconf.scenario.profile import Profile, load_profile, reference_profile, unmet

HEAD = """\
id: t.x
title: a title
clauses: [PS3.8 9.3.1]
severity: must
area: fsm
"""


def _one(tmp_path, body: str):
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + textwrap.dedent(body))
    entries = load_file(path)
    assert len(entries) == 1
    return path, entries[0]


def test_schema_is_valid_and_lists_every_step_kind():
    schema = json.loads(resources.files("dicomconf.scenario").joinpath("scenario.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$defs"]["step"]["propertyNames"]["enum"] == list(STEP_KINDS)


def test_valid_scenario_keeps_step_lines(tmp_path):
    _, entry = _one(tmp_path, """\
    steps:
      - connect: {as: a}
      - expect:
          any:
            - {pdu: A-ABORT, source: 2}
            - {closed: true}
          within: 5s
      - parallel:
          - - sleep: 1s
          - - sleep: 2s
    """)
    assert entry.error is None
    sc = entry.scenario
    assert [(s.kind, s.line) for s in sc.steps] == [("connect", 7), ("expect", 8), ("parallel", 13)]
    assert [[s.line for s in b] for b in sc.steps[2].branches] == [[14], [15]]
    assert sc.steps[1].line_of("within") == 12


@pytest.mark.parametrize(
    "body, line, fragments",
    [
        ("steps:\n  - expect: {pdu: A-ABORT, within: 5x}\n", 7, ["steps[0].expect.within", "'5x'", "a duration"]),
        ("steps:\n  - sleep: 1s\n  - bogus: {}\n", 8, ["steps[1].bogus", "unknown key", "connect, associate"]),
        ("steps:\n  - echo:\n      within: 1s\n      colour: red\n", 9, ["steps[0].echo.colour", "allowed: on, status, within"]),
        ("steps:\n  - expect:\n      pdu: A-ABORT\n      sorce: 2\n", 9, ["steps[0].expect.sorce", "A-ABORT has no field", "source"]),
        ("steps:\n  - expect: {within: 2s}\n", 7, ["steps[0].expect", "exactly one of pdu, any, closed"]),
        ("requires: {checks_caled_ae: true}\nsteps:\n  - sleep: 1s\n", 6, ["requires.checks_caled_ae", "not a profile field"]),
        ("steps: []\n", 6, ["steps", "a list of steps"]),
        ("steps:\n  - send: {on: main}\n", 7, ["steps[0].send", "raw"]),
    ],
)
def test_errors_name_file_line_key_and_expectation(tmp_path, body, line, fragments):
    path, entry = _one(tmp_path, body)
    assert entry.scenario is None
    assert entry.error.file == str(path)
    assert entry.error.line == line, str(entry.error)
    text = str(entry.error)
    assert text.startswith(f"{path}:{line}: ")
    for fragment in fragments:
        assert fragment in text


def test_missing_required_field_and_bad_enum(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("id: t.y\ntitle: t\nclauses: [PS3.8 9.3]\nseverity: may\narea: fsm\nsteps:\n  - sleep: 1s\n")
    (entry,) = load_file(path)
    assert entry.error.line == 4 and "severity" in str(entry.error) and "must or should" in str(entry.error)
    path.write_text("id: t.y\ntitle: t\nseverity: must\narea: fsm\nsteps:\n  - sleep: 1s\n")
    (entry,) = load_file(path)
    assert "'clauses' is a required property" in str(entry.error)


def test_list_file_fails_only_the_bad_scenario(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(
        "- id: good.one\n  title: t\n  clauses: [PS3.8 9.3]\n  severity: must\n  area: fsm\n  steps:\n    - sleep: 1s\n"
        "- id: bad.two\n  title: t\n  clauses: [PS3.8 9.3]\n  severity: must\n  area: fsm\n  steps:\n    - sleep: never\n"
    )
    good, bad = load_file(path)
    assert good.name == "good.one" and good.scenario is not None and good.error is None
    assert bad.name == "bad.two" and bad.scenario is None
    assert bad.error.line == 14 and "steps[0].sleep" in str(bad.error)


def test_yaml_error_gives_one_failing_entry(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: x\nsteps: [\n")
    (entry,) = load_file(path)
    assert entry.name == "broken" and entry.error is not None and "YAML" in str(entry.error)


def test_reference_profile_and_requires():
    p = reference_profile()
    assert p.checks_called_ae and p.timers.artim == p.artim
    assert unmet(p, {"checks_called_ae": True}) is None
    assert unmet(p, {"checks_called_ae": False}) == "target checks the called AE title"
    assert unmet(Profile(), {"checks_called_ae": True}) == "target does not check the called AE title"
    assert unmet(p, {"timers.artim": {"max": p.artim}}) is None
    assert "above" in unmet(p, {"timers.artim": {"max": p.artim - 1}})
    assert "not known" in unmet(Profile(), {"timers.idle": {"min": 1}})
    assert unmet(p, {"sop_classes": ["ct", "CTImageStorage", "1.2.840.10008.5.1.4.1.1.2"]}) is None
    assert "XRayAngiographicImageStorage" in unmet(p, {"sop_classes": ["XRayAngiographicImageStorage"]})
    assert unmet(p, {"roles.mr": ["scu", "scp"]}) is None
    assert "scp role" in unmet(p, {"roles.ct": ["scp"]})


def test_reference_profile_configures_the_reference_scp_alike():
    p = reference_profile()
    cfg = p.scp_config(port=0)
    assert cfg.ae_titles == (p.ae_title,)
    assert cfg.require_called_ae is p.checks_called_ae
    assert cfg.allowed_calling_aes == (p.calling_ae,)
    assert cfg.max_associations == p.max_associations
    assert cfg.artim_timeout == p.timers.artim and cfg.idle_timeout == p.timers.idle


def test_bad_profile_reports_file_and_line(tmp_path):
    path = tmp_path / "target.yaml"
    path.write_text("name: pacs\nae_title: PACS\ntimers:\n  artim: soon\n")
    with pytest.raises(SourceError) as exc:
        load_profile(path)
    assert str(exc.value).startswith(f"{path}:4: timers.artim: got 'soon'")
    path.write_text("name: pacs\nae_titel: PACS\n")
    with pytest.raises(SourceError, match=r":2: ae_titel: unknown key"):
        load_profile(path)
    path.write_text("ae_title: THIS-TITLE-IS-TOO-LONG\n")
    with pytest.raises(SourceError, match=r":1: ae_title: .*1-16 characters"):
        load_profile(path)


def test_profile_paths_are_relative_to_the_profile(tmp_path):
    path = tmp_path / "target.yaml"
    path.write_text("tls: {enabled: true, port: 2762, ca: ca.pem}\nmax_associations: 4\n")
    p = load_profile(path)
    assert p.tls.ca == str(tmp_path / "ca.pem") and p.tls.port == 2762 and p.max_associations == 4
