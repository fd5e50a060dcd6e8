"""The service steps (store_set, find, move, get, commit, mpps): each passes on a right answer and fails on a wrong one.

Scenarios are played by the requestor's Runner against the embedded reference SCP (started
as the plugin starts it, with the harness's move listener), whose handlers a test replaces
with wrong ones before the scenario associates.
"""

from __future__ import annotations

import textwrap

import pytest
import qr_play
from pydicom import Dataset

from dicomconf.scenario import qr_data
from dicomconf.scenario.engine import ScenarioFailure
from dicomconf.scenario.loader import SourceError
from dicomconf.scenario.model import load_file
from dicomconf.scenario.requestor import Runner
from dicomconf.services.base import Misbehaviour, Reply

STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
COMMITMENT = "1.2.840.10008.1.20.1"
MPPS = "1.2.840.10008.3.1.2.3.3"
VIEW = qr_data.template_view()
HEAD = """
id: services.test
title: a test scenario
clauses: [PS3.4 C.4]
severity: should
area: services
steps:
"""


def scenario(tmp_path, steps: str):
    return qr_play.from_text(tmp_path, textwrap.dedent(HEAD) + textwrap.indent(textwrap.dedent(steps), "  "))


def play(embedded, tmp_path, steps: str) -> Runner:
    return qr_play.play(embedded, scenario(tmp_path, steps))


def fails(embedded, tmp_path, steps: str) -> ScenarioFailure:
    with pytest.raises(ScenarioFailure) as caught:
        play(embedded, tmp_path, steps)
    return caught.value


def rewriting(original, change):
    """A handler that answers as ``original`` with each Reply passed through ``change``."""

    def handler(request):
        exchange = original(request)
        value = None
        try:
            while True:
                action = exchange.send(value)
                value = yield change(action) if isinstance(action, Reply) else action
        except StopIteration:
            return

    return handler


def refusing(status: int):
    def handler(request):
        yield Misbehaviour(fail_status=status).refusal()

    return handler


STORE = """
- associate: {contexts: [ct, mr, study_find, patient_find, study_move, study_get, storage_commitment, mpps],
              roles: {mr: {scu: 1, scp: 1}}}
- store_set:
"""
FIND = STORE + """
- find:
    level: STUDY
    keys: {PatientID: "DCONF-QR-*", StudyDate: "20250101-20251231", StudyInstanceUID: null}
    matches: 2
    returns: [{StudyInstanceUID: "{set.studies[0].uid}"}, {StudyInstanceUID: "{set.studies[2].uid}"}]
    each: {PatientID: {any: ["{set.patients[0].id}", "{set.patients[1].id}"]}}
    keys_returned: exact
    save: {first: matches.0.StudyInstanceUID, n: count}
- release:
"""


# ---------------------------------------------------------------- store_set


def test_store_set_stores_every_instance(embedded, tmp_path):
    play(embedded, tmp_path, STORE + "- release:\n")
    emb = embedded[0]
    uids = {s.sop_instance_uid for s in emb.scp.stored}
    assert {i["uid"] for i in VIEW["instances"]} <= uids


def test_store_set_fails_naming_the_instance_refused(embedded, tmp_path):
    import dataclasses

    from dicomconf.scp.runtime import run_in_thread

    _emb, target, profile = embedded
    full = profile.scp_config(port=0).replace(memory_storage_limit=1)  # every C-STORE answers A700
    handle = run_in_thread(full)
    try:
        runner = Runner(scenario(tmp_path, STORE), profile, dataclasses.replace(target, port=handle.port))
        with pytest.raises(ScenarioFailure) as caught:
            runner.run(None, time_limit=30)
    finally:
        handle.stop()
    failure = caught.value
    assert "C-STORE of " + VIEW["instances"][0]["uid"] in failure.message and "0xa700" in failure.message


def test_store_set_without_the_storage_context_fails(embedded, tmp_path):
    failure = fails(embedded, tmp_path, "- associate: {contexts: [ct]}\n- store_set:\n")
    assert "no accepted presentation context" in failure.message


# ---------------------------------------------------------------- find


def test_find_passes_on_the_right_answer_and_saves(embedded, tmp_path):
    runner = play(embedded, tmp_path, FIND)
    assert runner.saved["n"] == 2
    assert runner.saved["first"] in (VIEW["studies"][0]["uid"], VIEW["studies"][2]["uid"])


def test_find_fails_on_a_wrong_status(embedded, tmp_path):
    embedded[0].scp.handlers[STUDY_FIND] = refusing(0xC000)
    failure = fails(embedded, tmp_path, FIND)
    assert "C-FIND final status 0xc000" in failure.message and "PS3.4 C.4.1.1.4" in failure.message


def test_find_fails_when_a_match_is_missing(embedded, tmp_path):
    original = embedded[0].scp.handlers[STUDY_FIND]
    state = {"n": 0}

    def drop_first(reply):
        if reply.status == 0xFF00:
            state["n"] += 1
            if state["n"] == 1:
                return Reply(0xFF00, _study("1.2.3.999"))
        return reply

    embedded[0].scp.handlers[STUDY_FIND] = rewriting(original, drop_first)
    failure = fails(embedded, tmp_path, FIND)
    assert "identifiers returned" in failure.message


def _study(uid: str, **extra) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = VIEW["patients"][0]["id"]
    ds.StudyDate = "20250314"
    ds.StudyInstanceUID = uid
    for k, v in extra.items():
        setattr(ds, k, v)
    return ds


def test_find_fails_on_a_wrong_count(embedded, tmp_path):
    original = embedded[0].scp.handlers[STUDY_FIND]

    def one_more(reply):
        return reply

    def handler(request):
        yield Reply(0xFF00, _study(VIEW["studies"][0]["uid"]))
        yield from rewriting(original, one_more)(request)

    embedded[0].scp.handlers[STUDY_FIND] = handler
    failure = fails(embedded, tmp_path, FIND)
    assert failure.message.startswith("matches:") and "got 3" in failure.message


def test_find_keys_returned_exact_fails_on_an_extra_key(embedded, tmp_path):
    original = embedded[0].scp.handlers[STUDY_FIND]

    def extra(reply):
        if reply.status == 0xFF00 and reply.dataset is not None:
            ds = Dataset(reply.dataset)
            ds.StudyDescription = "NOT ASKED"
            return Reply(reply.status, ds, reply.fields)
        return reply

    embedded[0].scp.handlers[STUDY_FIND] = rewriting(original, extra)
    failure = fails(embedded, tmp_path, FIND)
    assert "not requested StudyDescription" in failure.message and "PS3.4 C.4.1.1.3.2" in failure.message


def test_find_each_fails_on_an_identifier_outside_it(embedded, tmp_path):
    steps = FIND.replace('each: {PatientID: {any: ["{set.patients[0].id}", "{set.patients[1].id}"]}}',
                         'each: {PatientID: "{set.patients[0].id}"}')
    failure = fails(embedded, tmp_path, steps)
    assert "identifier" in failure.message and "PatientID" in failure.message


def test_find_cancel_after_expects_cancel_status(embedded, tmp_path):
    def endless(request):
        from dicomconf.services.base import Cancel

        n = 0
        try:
            while True:
                n += 1
                yield Reply(0xFF00, _study(f"1.2.3.{n}"), delay=0.01)
        except Cancel:
            yield Reply(0xFE00)

    embedded[0].scp.handlers[STUDY_FIND] = endless
    play(embedded, tmp_path, STORE + "- find: {level: STUDY, keys: {StudyInstanceUID: null}, cancel_after: 2, "
                                     "matches: {min: 2, max: 20}}\n- release:\n")
    embedded[0].scp.handlers[STUDY_FIND] = refusing(0)  # ends at once with 0000: the default FE00 is not met
    failure = fails(embedded, tmp_path, STORE + "- find: {level: STUDY, keys: {StudyInstanceUID: null}, "
                                                "cancel_after: 2}\n")
    assert "status 0x0000" in failure.message or "final status 0x0000" in failure.message


# ---------------------------------------------------------------- move, get

MOVE = STORE + """
- move:
    level: STUDY
    keys: {StudyInstanceUID: "{set.studies[0].uid}"}
    completed: "{set.studies[0].instances}"
    failed: 0
    warning: 0
    arrive: "{set.studies[0].instance_uids}"
- release:
"""


def test_move_passes_on_the_right_answer(embedded, tmp_path):
    play(embedded, tmp_path, MOVE)
    assert len(embedded[0].listener.stored) == VIEW["studies"][0]["instances"]


def test_move_fails_on_wrong_counts(embedded, tmp_path):
    original = embedded[0].scp.handlers[STUDY_MOVE]

    def wrong(reply):
        if reply.status == 0:
            return Reply(0, reply.dataset, {**reply.fields, "NumberOfCompletedSuboperations": 3})
        return reply

    embedded[0].scp.handlers[STUDY_MOVE] = rewriting(original, wrong)
    failure = fails(embedded, tmp_path, MOVE)
    assert "completed sub-operations" in failure.message and "PS3.4 C.4.2.1.3.1" in failure.message


def test_move_fails_when_nothing_arrives(embedded, tmp_path):
    original = embedded[0].scp.handlers[STUDY_MOVE]

    def handler(request):  # claims success without one sub-operation
        yield Reply(0, fields={"NumberOfCompletedSuboperations": VIEW["studies"][0]["instances"],
                               "NumberOfFailedSuboperations": 0, "NumberOfWarningSuboperations": 0})

    embedded[0].scp.handlers[STUDY_MOVE] = handler
    failure = fails(embedded, tmp_path, MOVE)
    assert "other instances arrived than expected" in failure.message
    del original


def test_move_fails_on_a_wrong_status(embedded, tmp_path):
    embedded[0].scp.handlers[STUDY_MOVE] = refusing(0xA801)
    failure = fails(embedded, tmp_path, MOVE)
    assert "C-MOVE final status 0xa801" in failure.message


def test_get_same_bytes_fails_when_an_instance_comes_back_changed(embedded, tmp_path):
    from dicomconf.scu.client import SCU
    from dicomconf.scu.connection import Connection

    _emb, target, profile = embedded
    study = VIEW["studies"][3]
    steps = f"""
- associate: {{contexts: [mr, study_get], roles: {{mr: {{scu: 1, scp: 1}}}}}}
- get: {{level: STUDY, keys: {{StudyInstanceUID: "{study['uid']}"}}, completed: {study['instances']},
        arrive: {study['instances']}}}
- release:
"""
    scu = SCU(Connection.open("127.0.0.1", target.port, timeout=5), called_ae=profile.ae_title,
              calling_ae=profile.calling_ae)
    scu.associate(["mr"])
    for instance in qr_data.instances([3]):
        ds = instance.dataset
        if instance.uid == study["instance_uids"][0]:
            ds.PatientName = "DCONF^CHANGED"  # a PACS that coerced the name
        assert scu.store(ds) == 0
    scu.release()
    failure = fails(embedded, tmp_path, steps)
    assert f"instance {study['instance_uids'][0]} did not arrive as it was stored" in failure.message
    assert "PatientName" in failure.message
    play(embedded, tmp_path, steps.replace("arrive:", "same_bytes: false, arrive:"))


# ---------------------------------------------------------------- commit

COMMIT = STORE + """
- commit: {instances: set, event: 1, committed: "{set.count.instance}", failed: [], report: same,
           save: {event: event, committed: committed}}
- release:
"""


def test_commit_passes_and_fails_on_a_wrong_event(embedded, tmp_path):
    runner = play(embedded, tmp_path, COMMIT)
    assert runner.saved == {"event": 1, "committed": 12}
    from dicomconf.services.commitment import CommitmentOptions, CommitmentService

    service = CommitmentService(lambda uid: None, CommitmentOptions())  # commits nothing: every instance fails
    embedded[0].scp.handlers[COMMITMENT] = service.handle
    failure = fails(embedded, tmp_path, COMMIT)
    assert "Event Type ID" in failure.message and "PS3.4 J.3.3.1.1" in failure.message


def test_commit_unknown_instances_fail_with_their_reason(embedded, tmp_path):
    play(embedded, tmp_path, STORE + """
- commit:
    instances: {set: [0], unknown: 1}
    event: 2
    committed: 4
    failed: [{sop_instance: "{set.root}.99.1", reason: 0x0112}]
""")
    failure = fails(embedded, tmp_path, STORE + """
- commit: {instances: {set: [0], unknown: 1}, event: 2, failed: [{sop_instance: "{set.root}.99.1", reason: 0x0110}]}
""")
    assert "Failed SOP Sequence" in failure.message


def test_commit_without_a_report_fails_at_report_within(embedded, tmp_path):
    from dicomconf.services.commitment import CommitmentOptions, CommitmentService

    emb = embedded[0]
    lookup = lambda uid: qr_data.SOP_CLASSES["CT"]  # noqa: E731
    emb.scp.handlers[COMMITMENT] = CommitmentService(lookup, CommitmentOptions(report=False)).handle
    failure = fails(embedded, tmp_path, COMMIT.replace("report: same", "report: any, report_within: 1s"))
    assert "no Storage Commitment N-EVENT-REPORT on either association within 1s" in failure.message


def test_commit_report_new_arrives_at_the_listener(embedded, tmp_path):
    from dicomconf.services.commitment import CommitmentOptions, CommitmentService

    emb, _target, profile = embedded
    ae = profile.query_retrieve.move_destination.ae_title
    index = emb.scp.storage.index

    def lookup(uid):
        located = index.locate(uid)
        return located.sop_class_uid if located is not None else None

    emb.scp.handlers[COMMITMENT] = CommitmentService(lookup, CommitmentOptions(report_to=ae)).handle
    runner = play(embedded, tmp_path, COMMIT.replace("report: same", "report: new").replace(
        "save: {event: event, committed: committed}", "save: {on: report}"))
    assert runner.saved["on"] == "new"
    failure = fails(embedded, tmp_path, COMMIT.replace("report: same", "report: same, report_within: 1s"))
    assert "on the requesting association" in failure.message


# ---------------------------------------------------------------- mpps

MPPS_STEPS = """
- associate: {contexts: [mpps]}
- mpps: {op: create, attributes: {PatientID: X}, status: 0x0120}
- mpps: {op: set, instance: 1.2.3.404, attributes: {PerformedProcedureStepStatus: COMPLETED}, status: 0x0112}
- release:
"""


def test_mpps_statuses_are_checked(embedded, tmp_path):
    play(embedded, tmp_path, MPPS_STEPS)
    embedded[0].scp.handlers[MPPS] = refusing(0x0110)
    failure = fails(embedded, tmp_path, MPPS_STEPS)
    assert "N-CREATE final status 0x0110" in failure.message and "PS3.4 F.7.2.1" in failure.message


def test_shipped_mpps_scenario_fails_against_an_scp_that_refuses_the_final_n_set(embedded, tmp_path):
    from pathlib import Path

    entry = load_file(Path(__file__).resolve().parents[2] / "scenarios" / "qr" / "mpps.yaml")[0]
    emb, target, profile = embedded
    original = emb.scp.handlers[MPPS]

    def handler(request):
        if request.command_field == 0x0120:  # N-SET
            yield Reply(0x0110)
        else:
            yield from original(request)

    emb.scp.handlers[MPPS] = handler
    runner = Runner(entry.scenario, profile, target)
    with pytest.raises(ScenarioFailure) as caught:
        runner.run(None, time_limit=30)
    assert "N-SET final status 0x0110" in caught.value.message


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize("step, key", [
    ("find: {level: STUDY, keyz: {}}", "keyz"),
    ("move: {level: STUDY, keys: {}, completd: 1}", "completd"),
    ("commit: {instances: set, evnt: 1}", "evnt"),
    ("mpps: {op: delete}", "op"),
    ("store_set: {study: [0]}", "study"),
    ("associate: {extended_negotiation: {study_find: [1, 300]}}", "extended_negotiation"),
])
def test_a_wrong_key_is_a_file_line_error(tmp_path, step, key):
    with pytest.raises(SourceError) as caught:
        scenario(tmp_path, "- associate:\n- " + step + "\n")
    text = str(caught.value)
    assert f"{tmp_path / 's.yaml'}:9" in text and key in text


def test_a_keyword_that_is_not_dicom_fails_at_its_line(embedded, tmp_path):
    with pytest.raises(SourceError) as caught:
        play(embedded, tmp_path, "- associate: {contexts: [study_find]}\n- find:\n    level: STUDY\n"
                                 "    keys: {PatientIDD: x}\n")
    assert "'PatientIDD' is not a DICOM keyword" in str(caught.value) and ":11:" in str(caught.value)


def test_extended_negotiation_is_proposed(embedded, tmp_path):
    runner = play(embedded, tmp_path, """
- associate:
    contexts: [study_find]
    extended_negotiation: {study_find: [1, 1]}
    reply: {pdu: A-ASSOCIATE-AC, extended_negotiations: [{sop_class_uid: "1.2.840.10008.5.1.4.1.2.2.1"}]}
- release:
""")
    rq = runner.scus["main"].rq
    sub = [s for s in rq.user_information.sub_items if type(s).__name__ == "SOPClassExtendedNegotiation"]
    assert [bytes(s.service_class_application_information) for s in sub] == [b"\x01\x01"]
