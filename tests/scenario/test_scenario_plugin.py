"""The pytest plugin end to end: every step kind against the reference SCP, reports, verdicts, exit codes.

Each test runs pytest in a subprocess over a tiny scenario set in ``tmp_path``.
"""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import FakeTarget, outcomes, report, run_pytest, write  # noqa: E402

HEAD = """\
  clauses: [PS3.8 9.3]
  severity: must
"""

STEP_KINDS = """\
- id: steps.associate-echo-release
  title: associate with overrides, echo, store, release
  area: dimse
{head}  steps:
    - associate:
        contexts: [verification, ct, {{abstract_syntax: mr, transfer_syntaxes: [ImplicitVRLittleEndian]}}]
        max_pdu_length: 32768
        overrides: {{protocol_version: 3}}          # only bit 0 is tested on receipt
        accepted: [verification, ct, mr]
        save: {{peer_max: maximum_length, impl: implementation_class_uid}}
    - echo: {{status: "{{0 if peer_max > 0 and impl else 1}}", within: 2s}}   # saved values in a template
    - store: {{sop_class: ct, attributes: {{PatientName: "A^B"}}, status: [0, 0xB000]}}
    - store: {{file: ct.dcm, status: 0}}
    - release: {{within: 2s}}
- id: steps.send-expect
  title: crafted and raw PDUs, chunks, alternatives, closed
  area: malformed
{head}  steps:
    - connect: {{as: [one, two]}}
    - send: {{on: two, pdu: A-RELEASE-RQ}}          # Sta2, Evt12: AA-1
    - expect: {{on: two, any: [{{aborted: true}}, {{closed: true}}], within: 2s}}
    - close: {{on: two, reset: true}}
    - send:
        on: one
        pdu: A-ASSOCIATE-RQ
        called_ae_title: "{{target.called_ae}}"
        calling_ae_title: "{{target.calling_ae}}"
        chunks: 16
        delay: 5ms
    - expect:
        on: one
        pdu: A-ASSOCIATE-AC
        presentation_contexts: [{{result: 0}}]
        save: {{ctx: presentation_contexts.0.context_id}}
    - send: {{on: one, raw: "08 00 00000004 00000000"}}
    - expect:
        on: one
        any:
          - {{pdu: A-RELEASE-RP}}
          - {{aborted: {{source: 2, reason: [0, 1]}}}}
        within: 2s
    - expect: {{on: one, closed: true, within: "{{profile.artim + 3}}s"}}
- id: steps.parallel-repeat-sleep-abort
  title: parallel branches, repeat with templated names, sleep, silence, abort
  area: connection
{head}  steps:
    - repeat:
        times: "{{profile.max_associations - 1}}"
        steps:
          - connect: {{as: "c{{index}}"}}
          - associate: {{on: "c{{index}}"}}
    - parallel:
        - - echo: {{on: c1}}
          - sleep: 50ms
          - echo: {{on: c1}}
        - - echo: {{on: c2}}
          - expect: {{on: c2, silence: 100ms}}
    - abort: {{on: c1}}
    - release: {{on: c2}}
"""

VERDICTS = """\
- id: verdict.must-fails
  title: a must expectation the reference SCP does not meet
  area: release-abort
{head}  steps:
    - associate:
    - send: {{pdu: A-RELEASE-RQ}}
    - expect: {{pdu: A-ABORT, source: 2, within: 2s}}
- id: verdict.should-fails
  title: a should expectation that fails
  area: release-abort
  clauses: [PS3.8 9.3.7]
  severity: should
  steps:
    - connect:
    - expect: {{pdu: A-ASSOCIATE-AC, within: 100ms}}
- id: verdict.skipped
  title: needs a target that does not check the called AE title
  area: negotiation
  requires: {{checks_called_ae: false}}
{head}  steps:
    - associate:
- id: verdict.invalid
  title: a malformed scenario fails alone
  area: fsm
{head}  steps:
    - expect: {{pdu: A-ABORT, within: soon}}
"""


def _ct_file(path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName = "FILE^TEST"
    # the embedded SCP indexes what it stores: a study and a series to place the instance in (else C000)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.save_as(path, enforce_file_format=True)


def _suite(root):
    write(root / "scenarios" / "steps.yaml", STEP_KINDS.format(head=HEAD))
    _ct_file(root / "scenarios" / "ct.dcm")
    write(root / "scenarios" / "sub" / "verdicts.yaml", VERDICTS.format(head=HEAD))


EXPECTED = {
    "steps.associate-echo-release": "passed",
    "steps.send-expect": "passed",
    "steps.parallel-repeat-sleep-abort": "passed",
    "verdict.must-fails": "failed",
    "verdict.should-fails": "failed",
    "verdict.skipped": "skipped",
    "verdict.invalid": "error",
}


def test_every_step_kind_and_every_verdict_serial(tmp_path):
    _suite(tmp_path)
    result = run_pytest(tmp_path, "scenarios", "--report-dir", "rep", "--junitxml", "rep/junit.xml", "-rfEs",
                        "-o", "junit_logging=system-out")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert outcomes(tmp_path / "rep") == EXPECTED, out

    # the failure shows the step, what was expected, what came (summary and hex) and the pcap
    assert "MUST scenario verdict.must-fails (PS3.8 9.3) failed" in out
    assert "verdicts.yaml:9 (expect)" in out
    assert 'expected: {"pdu": "A-ABORT", "source": 2} within 2s on main' in out
    assert "hex: 06 00 00 00 00 04 00 00 00 00" in out
    assert str(tmp_path / "rep" / "pcap" / "verdict.must-fails.pcap") in out
    # the invalid scenario names its file:line and key; the other scenarios of its file still ran
    assert "verdicts.yaml:32: steps[0].expect.within: got 'soon'" in out
    # the skip says why, at the scenario's line
    assert "verdicts.yaml:18: target checks the called AE title" in out
    # should failures are labelled and explained
    assert "SHOULD-FAIL" in out or "should-failed" in out
    assert "fail the run only with --strict" in out

    doc = report(tmp_path / "rep")
    assert doc["run"]["target"] == "embedded reference SCP"
    assert doc["run"]["versions"]["pydicom"] and doc["run"]["start"] and doc["run"]["duration_s"] > 0
    assert doc["summary"]["must_failed"] == 1 and doc["summary"]["should_failed"] == 1
    by_id = {s["id"]: s for s in doc["scenarios"]}
    for s in by_id.values():
        assert set(s) >= {"id", "title", "clauses", "severity", "area", "outcome", "duration_s", "findings", "pcap"}
    passed = by_id["steps.send-expect"]
    assert passed["pcap"] == "pcap/steps.send-expect.pcap"
    assert (tmp_path / "rep" / passed["pcap"]).stat().st_size > 200
    assert by_id["verdict.must-fails"]["failure"]["step"].endswith("verdicts.yaml:9 (expect)")
    assert by_id["verdict.skipped"]["skip_reason"] == "target checks the called AE title"

    cases = {c.get("name"): c for c in ET.parse(tmp_path / "rep" / "junit.xml").getroot().iter("testcase")}
    props = [(p.get("name"), p.get("value")) for p in cases["verdict.should-fails"].iter("property")]
    assert props == [("id", "verdict.should-fails"), ("clauses", "PS3.8 9.3.7"), ("severity", "should"),
                     ("area", "release-abort"), ("role", "scu"), ("tests", "SCP"), ("clause", "PS3.8 9.3.7"),
                     ("pcap", "rep/pcap/verdict.should-fails.pcap")]
    # the pcap as an attachment line that Jenkins, GitLab and Azure DevOps pick up from <system-out>
    out_text = cases["verdict.must-fails"].find("system-out").text
    assert "[[ATTACHMENT|rep/pcap/verdict.must-fails.pcap]]" in out_text.splitlines(), out_text
    assert (tmp_path / "rep/pcap/verdict.must-fails.pcap").is_file()

    html = (tmp_path / "rep" / "report.html").read_text()
    assert "verdict.must-fails" in html and 'href="pcap/steps.send-expect.pcap"' in html
    assert not re.search(r"<(script|img|iframe|link)\b[^>]*\b(src|href)=", html)  # nothing fetched from elsewhere
    assert '<span class="verdict" id="verdict">FAIL</span>' in html


def test_xdist_gives_the_same_verdicts(tmp_path):
    _suite(tmp_path)
    result = run_pytest(tmp_path, "scenarios", "--report-dir", "rep", "-n", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert outcomes(tmp_path / "rep") == EXPECTED, result.stdout
    assert len(list((tmp_path / "rep" / "pcap").glob("*.pcap"))) == 5


SHOULD_ONLY = """\
- id: ok.echo
  title: echo
  area: dimse
{head}  steps:
    - associate:
    - echo:
    - release:
- id: should.fail
  title: a should failure
  area: timers
  clauses: [PS3.8 9.1.5]
  severity: should
  steps:
    - connect:
    - expect: {{closed: true, within: 100ms}}
"""


@pytest.mark.parametrize("flags, code", [((), 0), (("--dicomconf-strict",), 1), (("--strict",), 1)])
def test_should_failures_fail_the_run_only_when_strict(tmp_path, flags, code):
    write(tmp_path / "scenarios" / "s.yaml", SHOULD_ONLY.format(head=HEAD))
    result = run_pytest(tmp_path, "scenarios", "--report-dir", "rep", *flags)
    assert result.returncode == code, result.stdout + result.stderr
    assert outcomes(tmp_path / "rep") == {"ok.echo": "passed", "should.fail": "failed"}


FINDINGS = """\
- id: finding.fails-matched-expectation
  title: the reply matches but breaks a must clause
  area: malformed
{head}  steps:
    - connect:
    - send: {{pdu: A-ASSOCIATE-RQ}}
    - expect: {{pdu: A-ABORT}}
    - expect: {{reset: true, within: 2s}}
- id: finding.allowed
  title: the same, with the finding allowed
  area: malformed
  allow_findings: [abort.source-invalid]
{head}  steps:
    - connect:
    - send: {{pdu: A-ASSOCIATE-RQ}}
    - expect: {{aborted: {{source: 1}}}}
    - expect: {{reset: true, within: 2s}}
"""


def test_a_must_finding_fails_a_scenario_whose_expectation_matched(tmp_path):
    # A-ABORT with the reserved source 1 (PS3.8 9.3.8 Table 9-26), then an RST.
    fake = FakeTarget(bytes.fromhex("07 00 00000004 00 00 01 00"), end="reset")
    try:
        write(tmp_path / "scenarios" / "f.yaml", FINDINGS.format(head=HEAD))
        write(tmp_path / "fake.yaml", "name: fake\nae_title: FAKE\ntimers: {artim: 1}\n")
        result = run_pytest(tmp_path, "scenarios", "--report-dir", "rep", "--profile", "fake.yaml",
                            "--target", f"127.0.0.1:{fake.port}")
    finally:
        fake.stop()
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert outcomes(tmp_path / "rep") == {"finding.fails-matched-expectation": "failed", "finding.allowed": "passed"}
    assert "the target broke PS3.8 9.3.8 Table 9-26" in out
    assert "abort.source-invalid (PS3.8 9.3.8 Table 9-26, must)" in out
    doc = report(tmp_path / "rep")
    assert doc["run"]["target"] == f"127.0.0.1:{fake.port}" and doc["run"]["profile"]["name"] == "fake"
    allowed = {s["id"]: s for s in doc["scenarios"]}["finding.allowed"]["findings"]
    assert [(f["code"], f["allowed"]) for f in allowed] == [("abort.source-invalid", True)]


def test_inert_outside_scenarios_and_clear_usage_errors(tmp_path):
    write(tmp_path / "tests" / "test_plain.py", "def test_x():\n    assert True\n")
    write(tmp_path / "tests" / "data.yaml", "not: a scenario\n")
    result = run_pytest(tmp_path, "tests")
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout
    assert not (tmp_path / "reports").exists()

    result = run_pytest(tmp_path, "tests", "--target", "pacs host:104")
    assert result.returncode == 4 and "'pacs host' is not a host name or an IP address" in result.stderr
    result = run_pytest(tmp_path, "tests", "--target", "127.0.0.1:104", "--tls-port", "2762", "--tls-ca", "nowhere.pem")
    assert result.returncode == 4 and "cannot load the CA file 'nowhere.pem'" in result.stderr

    write(tmp_path / "bad-profile.yaml", "name: x\ntimers:\n  idle: later\n")
    result = run_pytest(tmp_path, "tests", "--profile", "bad-profile.yaml")
    assert result.returncode == 4
    assert "bad-profile.yaml:3: timers.idle: got 'later'" in result.stderr


def test_explicit_yaml_file_is_collected_and_latest_link(tmp_path):
    path = write(tmp_path / "elsewhere" / "one.yaml", SHOULD_ONLY.format(head=HEAD).split("- id: should.fail")[0])
    result = run_pytest(tmp_path, str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and outcomes(latest) == {"ok.echo": "passed"}
