"""The workflow scenarios (commitment, MPPS, worklist) and the embedded target's worklist.

The shipped scenarios of scenarios/qr/commitment.yaml, mpps.yaml and worklist.yaml are played by
the requestor's Runner against the embedded reference SCP; the should-level ones, which no broken
variant table maps, are checked here to fail when the SCP's handler is replaced by a wrong one.
The worklist the embedded SCP serves comes from the profile (PS3.4 K.6): the known set's, or the
profile's own ``worklist_items``.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest
import qr_play
from pydicom import Dataset

from dicomconf.scenario import qr_data
from dicomconf.scenario.engine import ScenarioFailure
from dicomconf.scenario.loader import SourceError
from dicomconf.scenario.model import load_file
from dicomconf.scenario.profile import Commitment, load_profile, reference_profile
from dicomconf.scenario.requestor import Runner
from dicomconf.services.base import Reply

QR = Path(__file__).resolve().parents[2] / "scenarios" / "qr"
COMMITMENT = "1.2.840.10008.1.20.1"
MPPS = "1.2.840.10008.3.1.2.3.3"
WORKLIST = "1.2.840.10008.5.1.4.31"
SCENARIOS = {e.scenario.id: e.scenario for name in ("commitment.yaml", "mpps.yaml", "worklist.yaml")
             for e in load_file(QR / name) if e.error is None}


start = qr_play.start


def play(embedded, scenario_id: str) -> Runner:
    return qr_play.play(embedded, SCENARIOS[scenario_id])


def fails(embedded, scenario_id: str) -> ScenarioFailure:
    with pytest.raises(ScenarioFailure) as caught:
        play(embedded, scenario_id)
    return caught.value


def wrap(embedded, uid, change):
    """Replace the SCP's handler of ``uid`` by one that yields ``change(action, request)`` for each action."""
    original = embedded[0].scp.handlers[uid]

    def handler(request):
        exchange = original(request)
        sent = None
        try:
            while True:
                action = exchange.send(sent)
                for out in change(action, request):
                    sent = yield out
        except StopIteration:
            return

    embedded[0].scp.handlers[uid] = handler


# ---------------------------------------------------------------- the embedded target's worklist


def test_reference_profile_claims_worklist_and_its_scp_serves_the_known_set():
    profile = reference_profile()
    assert profile.worklist is True
    config = profile.scp_config(port=0)
    assert "worklist" in config.services and WORKLIST in config.supported
    items = config.worklist_items
    assert [str(i.AccessionNumber) for i in items] == [s["accession"] for s in qr_data.template_view()["studies"]]
    step = items[0].ScheduledProcedureStepSequence[0]
    entry = qr_data.template_view()["worklist"][0]
    assert (step.ScheduledStationAETitle, step.Modality, step.ScheduledProcedureStepStartDate) == (
        entry["station_ae"], entry["modality"], entry["start_date"])


def test_worklist_items_carry_every_type1_return_key_with_a_value():
    for item in qr_data.worklist_items():
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "RequestedProcedureID"):
            assert str(item.get(keyword, "")), keyword
        step = item.ScheduledProcedureStepSequence[0]
        for keyword in ("ScheduledStationAETitle", "ScheduledProcedureStepStartDate", "ScheduledProcedureStepStartTime",
                        "Modality", "ScheduledProcedureStepID"):
            assert str(step.get(keyword, "")), keyword


def test_known_worklist_items_0_and_1_share_a_patient_and_differ_where_scenarios_match():
    first, second = qr_data.template_view()["worklist"][:2]
    assert first["patient_id"] == second["patient_id"]
    for key in ("station_ae", "modality", "start_date", "accession"):
        assert first[key] != second[key], key


def test_a_profile_without_the_worklist_claim_gives_the_scp_no_worklist():
    config = dataclasses.replace(reference_profile(), worklist=False).scp_config(port=0)
    assert "worklist" not in config.services and config.worklist_items is None


ITEMS = """
worklist: true
sop_classes: [worklist]
worklist_items:
  - {patient_id: RIS-P1, patient_name: RIS^ONE, study_uid: 1.2.3.1, accession: RISACC1, requested_procedure_id: RP1,
     sps_id: SPS1, station_ae: RIS-CT, modality: CT, start_date: "20270101", start_time: "0800"}
  - {patient_id: RIS-P1, patient_name: RIS^ONE, study_uid: 1.2.3.2, accession: RISACC2, requested_procedure_id: RP2,
     sps_id: SPS2, station_ae: RIS-MR, modality: MR, start_date: "20270102", start_time: "0900"}
"""


def test_profile_worklist_items_are_the_templates_and_what_its_scp_serves(tmp_path):
    path = tmp_path / "ris.yaml"
    path.write_text(ITEMS)
    profile = load_profile(path)
    assert profile.worklist_items[1]["accession"] == "RISACC2"
    view = qr_data.template_view_with(profile.worklist_items)
    assert view["worklist"][0]["station_ae"] == "RIS-CT" and view["studies"] == qr_data.template_view()["studies"]
    served = profile.scp_config(port=0).worklist_items
    assert [str(i.AccessionNumber) for i in served] == ["RISACC1", "RISACC2"]


def test_worklist_scenarios_follow_the_profile_items(tmp_path):
    path = tmp_path / "ris.yaml"
    path.write_text(textwrap.dedent(ITEMS))
    profile = dataclasses.replace(reference_profile(), worklist_items=load_profile(path).worklist_items)
    emb, target, started = start(profile)
    try:
        for sid in ("services.worklist-station-ae-matching", "services.worklist-start-date-range",
                    "services.worklist-query-without-sequence"):
            play((emb, target, started), sid)
    finally:
        emb.stop()


def test_a_worklist_item_without_a_required_key_is_a_located_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(ITEMS.replace("station_ae: RIS-MR, ", ""))
    with pytest.raises(SourceError) as caught:
        load_profile(path)
    assert "bad.yaml:" in str(caught.value) and "station_ae" in str(caught.value)


# ---------------------------------------------------------------- must-level scenarios pass


@pytest.mark.parametrize("sid", sorted(s for s, sc in SCENARIOS.items() if sc.severity == "must"
                                       and "commitment.report" not in (sc.requires or {})))
def test_must_level_workflow_scenarios_pass_against_the_embedded_scp(embedded, sid):
    play(embedded, sid)


def test_report_on_new_association_passes_when_the_scp_reports_there():
    profile = dataclasses.replace(reference_profile(), commitment=Commitment(report="new"))
    emb, target, started = start(profile)
    try:
        runner = play((emb, target, started), "services.commit-report-on-new-association")
        assert runner.saved["came_on"] == "new"
    finally:
        emb.stop()


# ---------------------------------------------------------------- should-level scenarios fail on a wrong SCP


def test_report_before_the_action_response_fails_response_first(embedded, monkeypatch):
    """A report that came while the N-ACTION-RSP was awaited is held by the SCU (dicomconf.scu.services);
    ``response_first`` fails on it.  (The reference SCP waits for each report's response, so the
    early report is put where the SCU keeps it.)"""
    from types import SimpleNamespace

    from dicomconf.scu import services

    play(embedded, "services.commit-action-response-before-report")
    real = services.n_action

    def report_came_first(scu, *args, **kwargs):
        answer = real(scu, *args, **kwargs)
        scu.held.append(SimpleNamespace(name="N-EVENT-REPORT-RQ"))
        return answer

    monkeypatch.setattr(services, "n_action", report_came_first)
    assert "before the N-ACTION-RSP" in fails(embedded, "services.commit-action-response-before-report").message


def test_class_instance_conflict_fails_when_the_scp_ignores_the_class(embedded):
    play(embedded, "services.commit-class-instance-conflict")
    embedded[0].scp.handlers[COMMITMENT].__self__.lookup = lambda uid: "1.2.840.10008.5.1.4.1.1.4"  # all "MR"
    assert "Event Type ID" in fails(embedded, "services.commit-class-instance-conflict").message


def _accepting(status):
    def change(action, request):
        if isinstance(action, Reply) and action.status == status:
            return [Reply(0x0000, None, {"AffectedSOPInstanceUID": request.sop_instance_uid or "1.2.3"})]
        return [action]
    return change


@pytest.mark.parametrize("sid,status", [
    ("services.mpps-create-missing-type1-refused", 0x0120),
    ("services.mpps-create-duplicate-instance-refused", 0x0111),
    ("services.mpps-set-unknown-instance-refused", 0x0112),
    ("services.mpps-set-create-only-attribute-refused", 0x0105),
])
def test_mpps_should_scenarios_fail_when_the_refusal_becomes_success(embedded, sid, status):
    play(embedded, sid)
    wrap(embedded, MPPS, _accepting(status))
    assert "final status 0x0000" in fails(embedded, sid).message


def test_universal_sequence_fails_when_the_steps_come_back_empty(embedded):
    play(embedded, "services.worklist-universal-sequence")

    def empty_steps(action, request):
        if isinstance(action, Reply) and action.dataset is not None and "ScheduledProcedureStepSequence" in action.dataset:
            ds = Dataset()
            for element in action.dataset:
                ds.add(element)
            ds.ScheduledProcedureStepSequence = []
            return [dataclasses.replace(action, dataset=ds)]
        return [action]

    wrap(embedded, WORKLIST, empty_steps)
    assert "identifiers returned" in fails(embedded, "services.worklist-universal-sequence").message


def test_zero_matches_fails_when_the_scp_answers_an_item_anyway(embedded):
    play(embedded, "services.worklist-zero-matches")
    item = qr_data.worklist_items()[0]

    def one_match(action, request):
        return [Reply(0xFF00, item), action] if isinstance(action, Reply) and action.status == 0 else [action]

    wrap(embedded, WORKLIST, one_match)
    assert "matches" in fails(embedded, "services.worklist-zero-matches").message
