"""The retrieve checks of the move and get steps (final_counts, pending_counts, cancel_after_stores), and the
shipped retrieve scenarios of severity should, each failing against a reference SCP whose handler is wrong.

The shipped scenarios are played by the requestor's Runner against the embedded reference SCP (with the
harness's move listener); a test replaces the C-MOVE or C-GET handler before the scenario associates.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import qr_play
from pydicom import Dataset

from dicomconf.scenario import qr_data
from dicomconf.scenario.engine import ScenarioFailure
from dicomconf.services.base import Cancel, Reply

QR = Path(__file__).resolve().parents[2] / "scenarios" / "qr"
PATIENT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
REMAINING = "NumberOfRemainingSuboperations"
COUNTS = ("NumberOfCompletedSuboperations", "NumberOfFailedSuboperations", "NumberOfWarningSuboperations")


def play(embedded, sid: str) -> None:
    qr_play.play(embedded, qr_play.shipped(sid))


def fails(embedded, sid: str) -> str:
    with pytest.raises(ScenarioFailure) as caught:
        play(embedded, sid)
    return caught.value.message


def replacing(embedded, uid: str, change):
    """Serve ``uid`` with the original handler's replies passed through ``change(reply, n)`` (n: the
    reply's index; None drops it); sub-operation statuses and a C-CANCEL still reach the original."""
    scp = embedded[0].scp
    original = scp.handlers[uid]

    def handler(request):
        exchange = original(request)
        value, thrown, n = None, None, 0
        while True:
            try:
                action = exchange.throw(thrown) if thrown is not None else exchange.send(value)
            except StopIteration:
                return
            value, thrown = None, None
            if isinstance(action, Reply):
                action, n = change(action, n), n + 1
                if action is None:
                    continue
            try:
                value = yield action
            except Cancel as exc:  # a C-CANCEL-RQ (PS3.7 9.3.2.3) reaches the original handler
                thrown = exc

    scp.handlers[uid] = handler


def with_fields(reply: Reply, **fields) -> Reply:
    merged = {**reply.fields, **fields}
    return dataclasses.replace(reply, fields={k: v for k, v in merged.items() if v is not None})


def is_final(reply: Reply) -> bool:
    return reply.status not in (0xFF00, 0xFF01)


# ---------------------------------------------------------------- final_counts


def test_final_counts_passes_on_the_reference(embedded):
    play(embedded, "services.move-final-counts")


def test_final_counts_fails_when_the_final_response_has_no_counts(embedded):
    replacing(embedded, STUDY_MOVE, lambda r, n: with_fields(r, **dict.fromkeys(COUNTS)) if is_final(r) else r)
    message = fails(embedded, "services.move-final-counts")
    assert "the final response does not give the number of completed, failed, warning" in message
    assert "PS3.4 C.4.2.3.1" in message


def test_final_counts_fails_when_a_success_says_sub_operations_remain(embedded):
    replacing(embedded, STUDY_MOVE, lambda r, n: with_fields(r, **{REMAINING: 2}) if is_final(r) else r)
    assert "says 2 sub-operations remain" in fails(embedded, "services.move-final-counts")


# ---------------------------------------------------------------- pending_counts


def test_pending_counts_fails_when_a_pending_response_lacks_remaining(embedded):
    replacing(embedded, PATIENT_MOVE, lambda r, n: r if is_final(r) else with_fields(r, **{REMAINING: None}))
    assert "pending response 1 does not give the number of remaining" in fails(embedded, "services.move-pending-counts")


def test_pending_counts_fails_when_the_counts_do_not_add_up(embedded):
    def grow(reply, n):
        if is_final(reply) or n != 2:
            return reply
        return with_fields(reply, **{REMAINING: reply.fields[REMAINING] + 1})  # the third pending: one more

    replacing(embedded, PATIENT_MOVE, grow)
    assert "pending response 3 does not follow from the one before" in fails(embedded, "services.move-pending-counts")


def test_pending_counts_fails_when_the_final_total_differs(embedded):
    replacing(embedded, STUDY_GET, lambda r, n: with_fields(r, NumberOfWarningSuboperations=1) if is_final(r) else r)
    message = fails(embedded, "services.get-pending-counts")
    assert "the pending responses counted 4 sub-operations, the final response 5" in message


def test_pending_counts_passes_without_pending_responses(embedded):
    """Pending responses are optional (PS3.4 C.4.2.3.1): a target that sends none passes."""
    replacing(embedded, PATIENT_MOVE, lambda r, n: r if is_final(r) else None)
    play(embedded, "services.move-pending-counts")


# ---------------------------------------------------------------- cancel_after_stores


def test_cancel_after_stores_cancels_before_answering_that_store(embedded):
    from dicomconf.scu import services
    from dicomconf.scu.client import SCU
    from dicomconf.scu.connection import Connection

    _emb, target, profile = embedded
    play(embedded, "services.get-cancel-after-first-store")  # stores studies 1 and 3, FE00 after one store
    scu = SCU(Connection.open("127.0.0.1", target.port, timeout=5), called_ae=profile.ae_title,
              calling_ae=profile.calling_ae)
    scu.associate(["mr", "study-get"], roles={"mr": (1, 1)})
    try:
        view = qr_data.template_view()
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = [view["studies"][1]["uid"], view["studies"][3]["uid"]]
        outcome = services.get(scu, "study-get", identifier, within=30, cancel_after_stores=2)
    finally:
        scu.release()
    assert outcome.cancelled and outcome.status == 0xFE00
    assert len(outcome.arrivals) == 2 and outcome.completed == 2
    assert outcome.remaining == 2  # the two sub-operations not initiated (PS3.4 C.4.3.3.1)


# ---------------------------------------------------------------- should-level scenarios against wrong SCPs


def refusing(embedded, uid: str, status: int, **fields) -> None:
    def handler(request):
        yield Reply(status, fields=fields)

    embedded[0].scp.handlers[uid] = handler


def test_move_matches_nothing_fails_against_a_refusal(embedded):
    play(embedded, "services.move-matches-nothing")
    refusing(embedded, STUDY_MOVE, 0xC000)
    assert "C-MOVE final status 0xc000" in fails(embedded, "services.move-matches-nothing")


@pytest.mark.parametrize("sid", ["services.move-missing-unique-key", "services.move-unknown-level"])
def test_a_bad_identifier_fails_against_an_scp_that_answers_success(embedded, sid):
    play(embedded, sid)
    refusing(embedded, STUDY_MOVE, 0x0000, **dict.fromkeys(COUNTS, 0))
    assert "C-MOVE final status 0x0000" in fails(embedded, sid)


def test_move_unknown_destination_fails_against_an_scp_that_answers_success(embedded):
    refusing(embedded, STUDY_MOVE, 0x0000, **dict.fromkeys(COUNTS, 0))
    assert "C-MOVE final status 0x0000" in fails(embedded, "services.move-unknown-destination")


def test_move_cancel_fails_when_the_final_response_has_no_counts(embedded):
    play(embedded, "services.move-cancel-during-pendings")
    replacing(embedded, PATIENT_MOVE, lambda r, n: with_fields(r, **dict.fromkeys(COUNTS)) if is_final(r) else r)
    assert "the final response does not give the number of" in fails(embedded, "services.move-cancel-during-pendings")
