"""Profiles and scenario files that help the user: every error at once (file:line, key, what is
wrong, what is allowed), durations in profiles, SOP class and transfer syntax names, the
``target`` section, and which scenarios a missing profile field skips."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from pydicom.uid import UID_dictionary

from dicomconf.scenario.expr import ExpressionError, duration
from dicomconf.scenario.loader import SourceError, SourceErrors, load_yaml_text
from dicomconf.scenario.model import load_file
from dicomconf.scenario.profile import (
    Profile,
    TargetSettings,
    Timers,
    load_profile,
    name_problem,
    reference_profile,
    skipped_by_missing_fields,
    unmet,
)
from dicomconf.scu.client import CONTEXT_ALIASES

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import run_pytest, write  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?P<key>[^:]+): (?P<rest>.+)$")


def _schema(name: str) -> dict:
    return json.loads(resources.files("dicomconf.scenario").joinpath(name).read_text(encoding="utf-8"))


def _profile_errors(tmp_path: Path, text: str) -> tuple[Path, SourceError]:
    path = tmp_path / "pacs.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(SourceError) as exc:
        load_profile(path)
    return path, exc.value


def _lines(error: SourceError) -> list[tuple[int, str, str]]:
    """(line, key, rest) of every line of an error's text, checking the file:line: key: form."""
    out = []
    for text in str(error).splitlines():
        m = LINE.match(text)
        assert m, text
        out.append((int(m["line"]), m["key"], m["rest"]))
    return out


# ---------------------------------------------------------------- SourceErrors


def test_source_errors_keep_source_error_working_and_list_every_error():
    a = SourceError("f.yaml", 7, "b: second")
    b = SourceError("f.yaml", 2, "a: first")
    merged = SourceErrors.merge([a, b, SourceError("f.yaml", 7, "b: second")])
    assert isinstance(merged, SourceErrors) and isinstance(merged, SourceError)
    assert merged.errors == (b, a)  # ordered by line, the duplicate dropped
    assert str(merged) == "f.yaml:2: a: first\nf.yaml:7: b: second"
    assert (merged.file, merged.line) == ("f.yaml", 2)
    assert merged.message == "a: first (and 1 more error)"
    assert SourceErrors.merge([a]) is a
    assert SourceErrors.merge([]) is None
    nested = SourceErrors.merge([merged, SourceError("f.yaml", 1, "z: zeroth")])
    assert [e.line for e in nested.errors] == [1, 2, 7]


def test_every_duplicate_key_is_listed():
    with pytest.raises(SourceErrors) as exc:
        load_yaml_text("a: 1\na: 2\nb:\n  c: 1\n  c: 2\n", "dup.yaml")
    assert str(exc.value) == "dup.yaml:2: duplicate key 'a'\ndup.yaml:5: duplicate key 'c'"


# ---------------------------------------------------------------- profiles: every error at once


def test_profile_reports_every_error_in_line_order(tmp_path):
    path, error = _profile_errors(tmp_path, """\
        name: pacs
        ae_titel: PACS
        timers:
          artim: soon
          idle: 2m
        sop_classes: [cat, ct, 5]
        max_associations: 0
        tls: {insecure: maybe}
        """)
    assert isinstance(error, SourceErrors)
    assert all(e.file == str(path) for e in error.errors)
    found = _lines(error)
    assert [(line, key) for line, key, _ in found] == [
        (2, "ae_titel"),
        (4, "timers.artim"),
        (6, "sop_classes[0]"),
        (6, "sop_classes[2]"),
        (7, "max_associations"),
        (8, "tls.insecure"),
    ]
    rest = {key: text for _, key, text in found}
    assert rest["ae_titel"].startswith("unknown key 'ae_titel' (did you mean 'ae_title'?); allowed: ae_title,")
    assert rest["timers.artim"].startswith("got 'soon'; expected ARTIM timeout")
    assert "30s, 500ms, 2m" in rest["timers.artim"]
    assert rest["sop_classes[0]"].startswith("unknown SOP class 'cat' (did you mean 'ct'?); allowed: ")
    assert rest["sop_classes[2]"].startswith("got 5; expected a SOP class")
    assert "1 or more" in rest["max_associations"]
    assert rest["tls.insecure"].startswith("got 'maybe'; expected true or false")


@pytest.mark.parametrize("title, ok", [("PACS", True), ("pacs-01", True), (" PACS ", True), ("A\\B", False),
                                       ("        ", False), ("SEVENTEEN-LETTERS", False)])
def test_ae_titles_follow_ps3_5(tmp_path, title, ok):
    """PS3.5 6.2 AE: 16 characters at most, no backslash, not all spaces; case is kept."""
    path = tmp_path / "ae.yaml"
    path.write_text(f"name: ae\nae_title: {json.dumps(title)}\n")
    if ok:
        assert load_profile(path).ae_title == title
    else:
        with pytest.raises(SourceError, match="ae_title"):
            load_profile(path)


def test_a_good_profile_loads_and_states_what_it_gave(tmp_path):
    path = tmp_path / "pacs.yaml"
    path.write_text("ae_title: PACS\ntimers: {artim: 30s}\nsop_classes: [CT, CTImageStorage, 1.2.3.4]\n")
    p = load_profile(path)
    assert p.ae_title == "PACS" and p.timers == Timers(artim=30.0, idle=None)
    assert p.sop_classes == ("CT", "CTImageStorage", "1.2.3.4")
    assert {"ae_title", "timers", "timers.artim", "sop_classes"} <= p.given
    assert "timers.idle" not in p.given and "checks_called_ae" not in p.given


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    "written, seconds",
    [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1.5s", 1.5), (30, 30.0), (2.5, 2.5), ("45", 45.0), (None, None)],
)
def test_profile_timers_are_durations_as_scenarios_write_them(tmp_path, written, seconds):
    path = tmp_path / "pacs.yaml"
    path.write_text(f"timers:\n  artim: {json.dumps(written)}\n  idle: {json.dumps(written)}\n")
    p = load_profile(path)
    assert p.artim == seconds and p.idle == seconds
    if written is not None:
        assert p.artim == duration(written)  # the scenarios' own parser


@pytest.mark.parametrize("written", ["30x", "soon", "-5s", "5 s s", True, [30], -1])
def test_bad_profile_durations_are_refused_with_the_line(tmp_path, written):
    _, error = _profile_errors(tmp_path, f"name: x\ntimers:\n  idle: {json.dumps(written)}\n")
    assert [(line, key) for line, key, _ in _lines(error)] == [(3, "timers.idle")]


@pytest.mark.parametrize(
    "text", ["5s", "500ms", "2m", "3min", "1.5s", ".5s", "7", " 5 s ", "5x", "s", "-1s", "5 ms m", "1e3s", ""]
)
def test_duration_patterns_in_the_schemas_agree_with_the_parser(text):
    """The schemas carry the duration grammar for editors; the parser is the one that reads it."""
    timers = _schema("profile.schema.json")["properties"]["timers"]["properties"]
    profile_pattern = timers["artim"]["anyOf"][1]["pattern"]
    assert timers["idle"]["anyOf"][1]["pattern"] == profile_pattern
    scenario_pattern = _schema("scenario.schema.json")["$defs"]["duration"]["anyOf"][1]["pattern"]
    try:
        duration(text)
        parses = True
    except ExpressionError:
        parses = False
    assert bool(re.search(profile_pattern, text)) == parses
    assert bool(re.search(scenario_pattern, text)) == parses


# ---------------------------------------------------------------- names


def test_unknown_names_are_refused_with_the_nearest_name(tmp_path):
    _, error = _profile_errors(tmp_path, """\
        sop_classes:
          - verification
          - cat
          - CTImageStorag
          - ImplicitVRLittleEndian
        transfer_syntaxes: [ExplicitVRLittleEndia, ct, 1.2.840.10008.1.2]
        roles:
          mrr: [scu]
          mr: [scx]
        """)
    found = {key: (line, rest) for line, key, rest in _lines(error)}
    assert set(found) == {"sop_classes[1]", "sop_classes[2]", "sop_classes[3]", "transfer_syntaxes[0]",
                          "transfer_syntaxes[1]", "roles.mrr", "roles.mr[0]"}
    assert found["sop_classes[1]"][0] == 3 and "did you mean 'ct'?" in found["sop_classes[1]"][1]
    assert "did you mean 'CTImageStorage'?" in found["sop_classes[2]"][1]
    assert "(a Transfer Syntax), not a SOP class" in found["sop_classes[3]"][1]
    assert "did you mean 'ExplicitVRLittleEndian'?" in found["transfer_syntaxes[0]"][1]
    assert "(a SOP Class), not a transfer syntax" in found["transfer_syntaxes[1]"][1]
    assert found["roles.mrr"][0] == 8 and "did you mean 'mr'?" in found["roles.mrr"][1]
    assert "expected scu or scp" in found["roles.mr[0]"][1]
    # what is allowed: every short name, keywords, dotted UIDs
    allowed = found["sop_classes[1]"][1].split("; allowed: ", 1)[1]
    assert all(name in allowed for name in CONTEXT_ALIASES)
    assert "pydicom UID keyword" in allowed and "dotted UID" in allowed


def test_name_problem_resolves_through_resolve_uid():
    assert name_problem("ct") is None and name_problem("CT") is None
    assert name_problem("CTImageStorage") is None and name_problem("1.2.840.10008.5.1.4.1.1.2") is None
    assert name_problem("1.2.3.4.5") is None  # a private SOP class UID
    assert name_problem("NoSuchImageStorage").startswith("unknown SOP class 'NoSuchImageStorage'")
    assert name_problem("JPEGBaseline8Bit", "transfer syntax") is None
    assert name_problem("1.2.840.10008.1.2", "SOP class").startswith("'1.2.840.10008.1.2' is Implicit VR Little Endian")
    assert name_problem("JPEGBaseline", "transfer syntax").startswith("unknown transfer syntax 'JPEGBaseline'")


def _pydicom_transfer_syntaxes() -> list[str]:
    """pydicom's own transfer syntax keywords, read in a fresh interpreter: importing pynetdicom
    (other tests do) adds entries to pydicom's UID dictionary in this process."""
    code = ("import json; from dicomconf.scenario.profile import transfer_syntax_keywords as k; "
            "print(json.dumps(list(k())))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_schema_lists_the_names_of_context_aliases_and_pydicom():
    props = _schema("profile.schema.json")["properties"]
    sop_items = props["sop_classes"]["items"]["anyOf"]
    assert sop_items[0]["enum"] == list(CONTEXT_ALIASES)
    ts_items = props["transfer_syntaxes"]["items"]["anyOf"]
    assert ts_items[0]["enum"] == _pydicom_transfer_syntaxes()
    for keyword in ts_items[0]["enum"]:
        uid = next(u for u, entry in UID_dictionary.items() if entry[4] == keyword)
        assert UID_dictionary[uid][1] == "Transfer Syntax"
    jsonschema.Draft202012Validator.check_schema(_schema("profile.schema.json"))


def test_docs_list_the_same_names():
    text = (REPO / "docs" / "scenarios.md").read_text()
    sop = text.split("<!-- sop-class-names -->", 1)[1].split("<!-- /sop-class-names -->", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|$", sop, re.M)
    assert rows == list(CONTEXT_ALIASES.items())
    ts = text.split("<!-- transfer-syntax-names -->", 1)[1].split("<!-- /transfer-syntax-names -->", 1)[0]
    assert re.findall(r"`([^`]+)`", ts) == _pydicom_transfer_syntaxes()


def test_scenario_requires_names_are_checked(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""\
        id: t.names
        title: t
        clauses: [PS3.8 9.3]
        severity: must
        area: negotiation
        requires:
          sop_classes: [ct, cat]
          roles.mrr: [scp]
          checks_caled_ae: true
        steps:
          - sleep: 1ms
        """))
    (entry,) = load_file(path)
    found = {key: (line, rest) for line, key, rest in _lines(entry.error)}
    assert found["requires.sop_classes[1]"][0] == 7 and "did you mean 'ct'?" in found["requires.sop_classes[1]"][1]
    assert found["requires.roles.mrr"][0] == 8 and "did you mean 'mr'?" in found["requires.roles.mrr"][1]
    assert found["requires.checks_caled_ae"][1].startswith("not a profile field (did you mean 'checks_called_ae'?)")


# ---------------------------------------------------------------- the target section


def test_target_section(tmp_path):
    path = tmp_path / "pacs.yaml"
    path.write_text("target:\n  host: pacs.hospital.lan\n")
    p = load_profile(path)
    assert p.target == TargetSettings("pacs.hospital.lan", 104, None)
    assert p.tls.port is None and not p.tls.enabled

    path.write_text("target: {host: '[2001:db8::10]', port: 11112, tls_port: 2762}\n")
    p = load_profile(path)
    assert p.target == TargetSettings("2001:db8::10", 11112, 2762)
    assert p.tls.port == 2762 and p.tls.enabled  # a TLS port given is a TLS listener
    assert {"tls.port", "tls.enabled"} <= p.given

    path.write_text("target: {host: 192.0.2.10, tls_port: 2762}\ntls: {port: 2762, enabled: false}\n")
    p = load_profile(path)
    assert p.target.tls_port == p.tls.port == 2762 and not p.tls.enabled  # said the same twice: fine

    path.write_text("target: {host: 192.0.2.10}\ntls: {port: 2762}\n")
    p = load_profile(path)
    assert p.target.tls_port == p.tls.port == 2762  # the older spelling fills the one value

    path.write_text("tls: {port: 2762, insecure: true, server_name: pacs.example.org}\n")
    p = load_profile(path)
    assert p.target is None and p.tls.port == 2762 and p.tls.insecure and p.tls.server_name == "pacs.example.org"
    assert not Profile().tls.insecure and Profile().tls.server_name is None and Profile().target is None


def test_target_errors(tmp_path):
    _, error = _profile_errors(tmp_path, """\
        name: x
        target:
          host: pacs:104
          port: 70000
          tls_port: 2762
        tls:
          port: 11112
        """)
    found = [(line, key) for line, key, _ in _lines(error)]
    assert found == [(3, "target.host"), (4, "target.port"), (5, "target.tls_port")]
    text = str(error)
    assert "the port goes in target.port" in text and "1-65535" in text
    assert "target.tls_port: 2762 differs from tls.port 11112 (line 7)" in text
    _, error = _profile_errors(tmp_path, "target: {port: 104}\n")
    assert _lines(error) == [(1, "target", "'host' is a required property")]


# ---------------------------------------------------------------- scenario files


SCENARIOS = """\
- id: good.one
  title: t
  clauses: [PS3.8 9.3]
  severity: must
  area: fsm
  steps:
    - sleep: 1ms
- id: bad.two
  title: t
  clauses: [PS3.8 9.3]
  severity: mustt
  area: fsm
  steps:
    - expect: {pdu: A-ABORT, sorce: 2, within: 5x}
    - sleep: never
    - expect:
        any:
          - {pdu: A-ABORT, reasn: 1}
          - {closed: true}
    - bogus: {}
"""


def test_a_bad_scenario_shows_all_its_errors_and_fails_alone(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(SCENARIOS)
    good, bad = load_file(path)
    assert good.scenario is not None and good.error is None
    assert bad.scenario is None and isinstance(bad.error, SourceErrors)
    found = [(line, key) for line, key, _ in _lines(bad.error)]
    assert found == [
        (11, "severity"),
        (14, "steps[0].expect.within"),
        (15, "steps[1].sleep"),
        (18, "steps[2].expect.any[0].reasn"),  # a check after the schema, in line order with the schema's
        (20, "steps[3].bogus"),
    ]
    text = str(bad.error)
    assert "got 'mustt' (did you mean 'must'?); expected must or should" in text
    # model checks skip a step the schema already refused (steps[0] has a bad within) ...
    assert "sorce" not in text
    # ... and run on the others
    assert "A-ABORT has no field 'reasn' (did you mean 'reason'?)" in text


def test_model_checks_collect_every_problem_of_a_valid_structure(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""\
        id: t.model
        title: t
        clauses: [PS3.8 9.3]
        severity: must
        area: fsm
        steps:
          - expect:
              pdu: A-ABORT
              sorce: 2
              reasn: 1
          - expect: {within: 2s}
          - parallel:
              - - expect: {pdu: A-ASSOCIATE-RJ, reson: 1}
              - - sleep: 1ms
        """))
    (entry,) = load_file(path)
    assert [(line, key) for line, key, _ in _lines(entry.error)] == [
        (9, "steps[0].expect.sorce"),
        (10, "steps[0].expect.reasn"),
        (11, "steps[1].expect"),
        (13, "steps[2].parallel[0][0].expect.reson"),
    ]


# ---------------------------------------------------------------- what a missing field skips


def _scenarios(tmp_path: Path, requires: dict[str, str]) -> list:
    text = ""
    for sid, req in requires.items():
        severity = "should" if sid.endswith("should") else "must"
        text += (f"- id: {sid}\n  title: t\n  clauses: [PS3.8 9.3]\n  severity: {severity}\n  area: fsm\n"
                 f"  requires: {req}\n  steps:\n    - sleep: 1ms\n")
    path = tmp_path / "req.yaml"
    path.write_text(text)
    entries = load_file(path)
    assert all(e.error is None for e in entries), [str(e.error) for e in entries]
    return [e.scenario for e in entries]


REQUIRES = {
    "a.artim": "{timers.artim: {max: 60}}",
    "b.artim-should": "{artim: {min: 1}}",
    "c.called": "{checks_called_ae: true}",
    "d.not-called": "{checks_called_ae: false}",
    "e.limit": "{max_associations: {min: 2}}",
    "f.tls": "{tls: true}",
    "g.roles": "{roles.mr: [scp]}",
    "h.ct": "{sop_classes: [ct]}",
}


def test_missing_fields_name_the_scenarios_they_skip(tmp_path):
    scenarios = _scenarios(tmp_path, REQUIRES)
    path = tmp_path / "pacs.yaml"
    path.write_text("name: pacs\nmax_associations: null\n")
    lines = skipped_by_missing_fields(load_profile(path), scenarios)
    assert lines == [
        "profile checks_called_ae is not given (taken as false): 1 scenario skipped, 1 must-level (c.called)",
        "profile max_associations is null (unknown): 1 scenario skipped, 1 must-level (e.limit)",
        "profile roles is not given: 1 scenario skipped, 1 must-level (g.roles)",
        "profile sop_classes is not given (taken as verification): 1 scenario skipped, 1 must-level (h.ct)",
        "profile timers.artim is not given: 2 scenarios skipped, 1 must-level (a.artim, b.artim-should)",
        "profile tls.enabled is not given (taken as false): 1 scenario skipped, 1 must-level (f.tls)",
    ]


def test_stated_fields_are_claims_not_gaps(tmp_path):
    scenarios = _scenarios(tmp_path, REQUIRES)
    path = tmp_path / "pacs.yaml"
    path.write_text(textwrap.dedent("""\
        checks_called_ae: false
        timers: {artim: 90s}
        max_associations: 1
        sop_classes: [verification]
        roles: {ct: [scu]}
        target: {host: pacs, tls_port: 2762}
        """))
    p = load_profile(path)
    # the others are skipped, each by what the profile says
    assert [s.id for s in scenarios if unmet(p, s.requires) is None] == ["b.artim-should", "d.not-called", "f.tls"]
    assert skipped_by_missing_fields(p, scenarios) == []
    # a profile built in code states what it sets
    assert skipped_by_missing_fields(Profile(checks_called_ae=True, timers=Timers(artim=5)), scenarios[:3]) == []


def test_the_reference_profile_leaves_no_field_the_shipped_suite_needs_open():
    scenarios = [e.scenario for f in sorted((REPO / "scenarios").rglob("*.yaml")) for e in load_file(f)]
    assert scenarios and all(s is not None for s in scenarios)
    assert skipped_by_missing_fields(reference_profile(), scenarios) == []
    gaps = skipped_by_missing_fields(Profile(), scenarios)
    assert any(line.startswith("profile timers.artim is not given: ") for line in gaps)


PLUGIN_SCENARIOS = """\
- id: gap.artim
  title: needs the ARTIM timeout
  clauses: [PS3.8 9.1.5]
  severity: must
  area: timers
  requires: {timers.artim: {max: 60}}
  steps:
    - sleep: 1ms
- id: gap.none
  title: needs nothing
  clauses: [PS3.8 9.3]
  severity: should
  area: fsm
  steps:
    - sleep: 1ms
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_the_run_prints_what_a_missing_field_skips_before_the_first_scenario(tmp_path, workers):
    write(tmp_path / "scenarios" / "gaps.yaml", PLUGIN_SCENARIOS)
    write(tmp_path / "open.yaml", "name: open\ntimers: {idle: 5s}\n")
    result = run_pytest(tmp_path, "scenarios", "--profile", "open.yaml", "--report-dir", "rep", *workers)
    out = result.stdout
    line = "profile timers.artim is not given: 1 scenario skipped, 1 must-level (gap.artim)"
    assert out.count(line) == 1, out + result.stderr
    assert "leaves fields open" in out
    assert out.index(line) < out.index("dicomconf conformance by area"), out

    write(tmp_path / "stated.yaml", "name: stated\ntimers: {artim: 10s, idle: 5s}\n")
    result = run_pytest(tmp_path, "scenarios", "--profile", "stated.yaml", "--report-dir", "rep2", *workers)
    assert "leaves fields open" not in result.stdout and "gap.artim" not in result.stdout, result.stdout
