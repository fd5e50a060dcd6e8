"""C-MOVE and C-GET handlers over the index, driven directly (PS3.4 C.4.2, C.4.3; dicomconf.services.qr_retrieve)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydicom import Dataset

sys.path.insert(0, str(Path(__file__).parent))

from qr_kit import add, instance  # noqa: E402

from dicomconf.services.base import Cancel, Misbehaviour, Reply, Request, SubOperation  # noqa: E402
from dicomconf.services.index import Index  # noqa: E402
from dicomconf.services.qr_retrieve import (  # noqa: E402
    PATIENT_ROOT_MOVE,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    QueryRetrieveGet,
    QueryRetrieveMove,
    RetrieveOptions,
)

C_MOVE_RQ, C_GET_RQ = 0x0021, 0x0010


@pytest.fixture
def index():
    idx = Index(":memory:")
    for n in (1, 2, 3):
        add(idx, instance(n, study="1.2.3.1", series="1.2.3.1.1"))
    add(idx, instance(1, study="1.2.3.1", series="1.2.3.1.2", modality="MR"))
    add(idx, instance(1, patient="P2", name="Roe^Rick", study="1.2.3.2", series="1.2.3.2.1"))
    yield idx
    idx.close()


def _request(identifier: Dataset | None, sop_class=STUDY_ROOT_MOVE, destination="DEST", extended=b"") -> Request:
    command = Dataset()
    command.AffectedSOPClassUID = sop_class
    command.CommandField = C_GET_RQ if sop_class == STUDY_ROOT_GET else C_MOVE_RQ
    command.MessageID = 1
    if destination is not None:
        command.MoveDestination = destination
    return Request(command.CommandField, 1, sop_class, command, identifier, calling_ae="SCU", called_ae="DICOMCONF",
                   extended=extended)


def _identifier(level: str, **keys) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _run(handler, request, statuses=None, cancel_after=None):
    """Drive an exchange as the SCP's driver does: sub-operations answered from ``statuses`` (default 0000)."""
    exchange = handler(request)
    actions, value, n = [], None, 0
    statuses = list(statuses or [])
    try:
        action = next(exchange)
        while True:
            actions.append(action)
            if isinstance(action, SubOperation):
                n += 1
                value = statuses.pop(0) if statuses else 0x0000
                if cancel_after is not None and n == cancel_after:
                    exchange.send(value)  # the pending after it is superseded by the cancel
                    action = exchange.throw(Cancel())
                    continue
            else:
                value = None
            action = exchange.send(value)
    except StopIteration:
        pass
    return actions


def test_study_move_sends_each_instance_of_the_study_then_success(index):
    actions = _run(QueryRetrieveMove(index, {"DEST"}), _request(_identifier("STUDY", StudyInstanceUID="1.2.3.1")))
    subs = [a for a in actions if isinstance(a, SubOperation)]
    assert [s.sop_instance_uid for s in subs] == ["1.2.3.1.1.1", "1.2.3.1.1.2", "1.2.3.1.1.3", "1.2.3.1.2.1"]
    assert {s.destination for s in subs} == {"DEST"}
    pendings = [a for a in actions if isinstance(a, Reply) and a.status == 0xFF00]
    assert [p.fields["NumberOfRemainingSuboperations"] for p in pendings] == [3, 2, 1]
    final = actions[-1]
    assert final.status == 0x0000 and final.dataset is None
    assert final.fields["NumberOfCompletedSuboperations"] == 4 and "NumberOfRemainingSuboperations" not in final.fields


def test_series_and_image_levels_and_uid_lists(index):
    move = QueryRetrieveMove(index, {"DEST"})
    series = _run(move, _request(_identifier("SERIES", StudyInstanceUID="1.2.3.1", SeriesInstanceUID="1.2.3.1.2")))
    assert [a.sop_instance_uid for a in series if isinstance(a, SubOperation)] == ["1.2.3.1.2.1"]
    images = _run(move, _request(_identifier("IMAGE", StudyInstanceUID="1.2.3.1", SeriesInstanceUID="1.2.3.1.1",
                                             SOPInstanceUID="1.2.3.1.1.1\\1.2.3.1.1.3")))
    assert [a.sop_instance_uid for a in images if isinstance(a, SubOperation)] == ["1.2.3.1.1.1", "1.2.3.1.1.3"]


def test_patient_level_only_in_patient_root(index):
    patient = _run(QueryRetrieveMove(index, {"DEST"}),
                   _request(_identifier("PATIENT", PatientID="P2"), sop_class=PATIENT_ROOT_MOVE))
    assert [a.sop_instance_uid for a in patient if isinstance(a, SubOperation)] == ["1.2.3.2.1.1"]
    refused = _run(QueryRetrieveMove(index, {"DEST"}), _request(_identifier("PATIENT", PatientID="P2")))
    assert [a.status for a in refused] == [0xA900]


def test_failures_and_warnings_are_counted_and_listed(index):
    actions = _run(QueryRetrieveMove(index, {"DEST"}), _request(_identifier("STUDY", StudyInstanceUID="1.2.3.1")),
                   statuses=[0x0000, 0xA700, 0xB000, None])
    final = actions[-1]
    assert final.status == 0xB000
    assert (final.fields["NumberOfCompletedSuboperations"], final.fields["NumberOfFailedSuboperations"],
            final.fields["NumberOfWarningSuboperations"]) == (1, 2, 1)
    assert list(final.dataset.FailedSOPInstanceUIDList) == ["1.2.3.1.1.2", "1.2.3.1.2.1"]


def test_all_failed_is_unable_to_perform_sub_operations(index):
    actions = _run(QueryRetrieveGet(index), _request(_identifier("SERIES", StudyInstanceUID="1.2.3.1",
                                                                 SeriesInstanceUID="1.2.3.1.1"),
                                                     sop_class=STUDY_ROOT_GET, destination=None),
                   statuses=[None, None, None])
    assert actions[-1].status == 0xA702
    assert all(a.destination is None for a in actions if isinstance(a, SubOperation))


@pytest.mark.parametrize("identifier, status", [
    (None, 0xA900),
    (_identifier("STUDY"), 0xA900),  # no unique key at the level
    (_identifier("STUDY", StudyInstanceUID=""), 0xA900),  # universal matching is no unique key
    (_identifier("WORLD", StudyInstanceUID="1.2.3.1"), 0xA900),
    (_identifier("SERIES", SeriesInstanceUID="1.2.3.1.1"), 0xC000),  # hierarchical: the study's key is missing
])
def test_bad_identifiers(index, identifier, status):
    actions = _run(QueryRetrieveMove(index, {"DEST"}), _request(identifier))
    assert [a.status for a in actions] == [status]
    assert "ErrorComment" in actions[0].fields


def test_a_wild_card_patient_id_names_no_patient(index):
    actions = _run(QueryRetrieveMove(index, {"DEST"}), _request(_identifier("PATIENT", PatientID="P*"),
                                                                sop_class=PATIENT_ROOT_MOVE))
    assert [a.status for a in actions] == [0xA900]


def test_relational_retrieve_only_when_negotiated(index):
    identifier = _identifier("SERIES", SeriesInstanceUID="1.2.3.1.1")
    actions = _run(QueryRetrieveMove(index, {"DEST"}), _request(identifier, extended=b"\x01"))
    assert len([a for a in actions if isinstance(a, SubOperation)]) == 3 and actions[-1].status == 0


def test_unknown_destination_is_a801_and_nothing_moves(index):
    actions = _run(QueryRetrieveMove(index, {"DEST"}), _request(_identifier("STUDY", StudyInstanceUID="1.2.3.1"),
                                                                destination="ELSEWHERE"))
    assert [a.status for a in actions] == [0xA801]


def test_cancel_ends_with_fe00_counts_and_the_unsent(index):
    actions = _run(QueryRetrieveMove(index, {"DEST"}), _request(_identifier("STUDY", StudyInstanceUID="1.2.3.1")),
                   cancel_after=2)
    final = actions[-1]
    assert final.status == 0xFE00
    assert final.fields["NumberOfCompletedSuboperations"] == 2 and final.fields["NumberOfRemainingSuboperations"] == 2
    assert list(final.dataset.FailedSOPInstanceUIDList) == ["1.2.3.1.1.3", "1.2.3.1.2.1"]


def test_no_match_is_success_with_zero_counts(index):
    actions = _run(QueryRetrieveMove(index, {"DEST"}), _request(_identifier("STUDY", StudyInstanceUID="9.9")))
    assert len(actions) == 1 and actions[0].status == 0 and actions[0].fields["NumberOfCompletedSuboperations"] == 0


def test_more_matches_than_the_bound_is_a701(index):
    actions = _run(QueryRetrieveMove(index, {"DEST"}, RetrieveOptions(max_instances=2)),
                   _request(_identifier("STUDY", StudyInstanceUID="1.2.3.1")))
    assert [a.status for a in actions] == [0xA701]


def test_scripted_failure_status(index):
    options = RetrieveOptions(misbehaviour=Misbehaviour(fail_status=0xA702, error_comment="scripted"))
    actions = _run(QueryRetrieveMove(index, {"DEST"}, options), _request(_identifier("STUDY", StudyInstanceUID="1.2.3.1")))
    assert [(a.status, a.fields.get("ErrorComment")) for a in actions] == [(0xA702, "scripted")]
