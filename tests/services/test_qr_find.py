"""The C-FIND handler (PS3.4 C.4.1) driven directly: keys returned, statuses, relational, cancel, misbehaviour."""

from __future__ import annotations

import os
import sys

import pytest

from dicomconf.services.base import Cancel, Misbehaviour
from dicomconf.services.index import Index
from dicomconf.services.matching import text_of
from dicomconf.services.qr_find import (
    PATIENT_ROOT_FIND,
    STUDY_ROOT_FIND,
    FindOptions,
    QueryRetrieveFind,
)

sys.path.insert(0, os.path.dirname(__file__))
import qr_kit
from qr_kit import find_request, query


@pytest.fixture
def index():
    index = Index()
    qr_kit.add(index, qr_kit.instance(1, study="1.1", series="1.1.1", date="20250101"))
    qr_kit.add(index, qr_kit.instance(2, study="1.1", series="1.1.1", date="20250101"))
    qr_kit.add(index, qr_kit.instance(1, study="1.1", series="1.1.2", modality="MR", date="20250101"))
    qr_kit.add(index, qr_kit.instance(1, patient="P2", name="Roe^Richard", study="2.1", date="20250301",
                                     StudyDescription="Knee"))
    return index


def run(handler, request):
    return list(handler.handle(request))


@pytest.mark.parametrize("model, level, keys, expect", [
    (PATIENT_ROOT_FIND, "PATIENT", {"PatientID": "", "PatientName": "*",
                                    "NumberOfPatientRelatedStudies": ""}, [("P1", "Doe^Jane", 1), ("P2", "Roe^Richard", 1)]),
    (PATIENT_ROOT_FIND, "STUDY", {"PatientID": "P1", "StudyInstanceUID": "", "ModalitiesInStudy": ""},
     [("P1", "1.1", ["CT", "MR"])]),
    (PATIENT_ROOT_FIND, "SERIES", {"PatientID": "P1", "StudyInstanceUID": "1.1", "SeriesInstanceUID": "",
                                   "NumberOfSeriesRelatedInstances": ""}, [("P1", "1.1", "1.1.1", 2), ("P1", "1.1", "1.1.2", 1)]),
    (PATIENT_ROOT_FIND, "IMAGE", {"PatientID": "P1", "StudyInstanceUID": "1.1", "SeriesInstanceUID": "1.1.1",
                                  "SOPInstanceUID": ""}, [("P1", "1.1", "1.1.1", "1.1.1.1"), ("P1", "1.1", "1.1.1", "1.1.1.2")]),
    (STUDY_ROOT_FIND, "STUDY", {"StudyDate": "20250201-", "PatientName": "", "StudyInstanceUID": "",
                                "StudyDescription": ""}, [("20250301", "Roe^Richard", "2.1", "Knee")]),
    (STUDY_ROOT_FIND, "SERIES", {"StudyInstanceUID": "1.1", "Modality": "MR", "SeriesInstanceUID": ""},
     [("1.1", "MR", "1.1.2")]),
    (STUDY_ROOT_FIND, "IMAGE", {"StudyInstanceUID": "2.1", "SeriesInstanceUID": "2.1.1", "SOPInstanceUID": ""},
     [("2.1", "2.1.1", "2.1.1.1")]),
])
def test_each_model_and_level_returns_exactly_the_requested_keys(index, model, level, keys, expect):
    replies = run(QueryRetrieveFind(index), find_request(query(level, **keys), model))
    assert [r.status for r in replies] == [0xFF00] * len(expect) + [0x0000]
    assert replies[-1].dataset is None
    for reply, values in zip(replies, expect):
        ds = reply.dataset
        assert [e.keyword for e in ds] == sorted(["QueryRetrieveLevel", *keys], key=lambda k: ds[k].tag)
        assert ds.QueryRetrieveLevel == level
        got = [text_of(ds[k].value) for k in keys if text_of(ds[k].value)]
        assert got == ["\\".join(v) if isinstance(v, list) else str(v) for v in values]


def test_a_key_without_a_value_in_the_match_comes_back_empty(index):
    (pending, final) = run(QueryRetrieveFind(index), find_request(
        query("STUDY", PatientID="P2", StudyInstanceUID="", AccessionNumber="",
              StudyComments="", OtherPatientIDsSequence=[])))
    ds = pending.dataset
    assert ds.AccessionNumber == "A1" and ds.StudyComments in ("", None) and ds.OtherPatientIDsSequence == []
    assert pending.status == 0xFF01 and final.status == 0  # Study Comments: a key the index cannot place


def test_retrieve_ae_and_specific_character_set(index):
    qr_kit.add(index, qr_kit.instance(1, patient="P3", name="Müller^Jürgen", study="3.1"))
    replies = run(QueryRetrieveFind(index, FindOptions(retrieve_ae="ARCHIVE")),
                  find_request(query("PATIENT", PatientID="P3", PatientName="", RetrieveAETitle="")))
    ds = replies[0].dataset
    assert ds.RetrieveAETitle == "ARCHIVE" and ds.SpecificCharacterSet == "ISO_IR 192"
    replies = run(QueryRetrieveFind(index), find_request(query("PATIENT", PatientID="P1", RetrieveAETitle="")))
    assert replies[0].dataset.RetrieveAETitle == "DICOMCONF" and "SpecificCharacterSet" not in replies[0].dataset


@pytest.mark.parametrize("model, identifier, status, offending", [
    (PATIENT_ROOT_FIND, None, 0xA900, None),
    (PATIENT_ROOT_FIND, query(None, PatientID=""), 0xA900, 0x00080052),
    (PATIENT_ROOT_FIND, query("FOO", PatientID=""), 0xA900, 0x00080052),
    (STUDY_ROOT_FIND, query("PATIENT", PatientID=""), 0xA900, 0x00080052),       # no PATIENT level in Study Root
    (PATIENT_ROOT_FIND, query("STUDY", PatientID="P1", Modality=""), 0xA900, 0x00080060),  # a SERIES key
    (PATIENT_ROOT_FIND, query("STUDY", StudyInstanceUID=""), 0xC000, 0x00100020),  # no Patient ID above
    (PATIENT_ROOT_FIND, query("STUDY", PatientID="P*"), 0xC000, 0x00100020),       # wild card on a unique key
    (STUDY_ROOT_FIND, query("IMAGE", StudyInstanceUID="1.1", SOPInstanceUID=""), 0xC000, 0x0020000E),
])
def test_refusals(index, model, identifier, status, offending):
    (reply,) = run(QueryRetrieveFind(index), find_request(identifier, model))
    assert reply.status == status and reply.fields["ErrorComment"]
    assert reply.fields.get("OffendingElement", [None]) == [offending]


def test_relational_only_when_negotiated(index):
    identifier = query("SERIES", Modality="MR", SeriesInstanceUID="")
    (refused,) = run(QueryRetrieveFind(index), find_request(identifier, STUDY_ROOT_FIND))
    assert refused.status == 0xC000
    replies = run(QueryRetrieveFind(index), find_request(identifier, STUDY_ROOT_FIND, extended=b"\x01"))
    assert [r.status for r in replies] == [0xFF00, 0x0000] and replies[0].dataset.SeriesInstanceUID == "1.1.2"
    (refused,) = run(QueryRetrieveFind(index), find_request(identifier, STUDY_ROOT_FIND, extended=b"\x00"))
    assert refused.status == 0xC000


def test_unsupported_key_gives_ff01(index):
    identifier = query("STUDY", PatientID="P1", StudyInstanceUID="")
    identifier.add_new(0x00091001, "LO", "x")
    replies = run(QueryRetrieveFind(index), find_request(identifier))
    assert [r.status for r in replies] == [0xFF01, 0x0000]
    assert replies[0].dataset[0x00091001].value in (None, "")


def test_cancel_gives_fe00(index):
    exchange = QueryRetrieveFind(index).handle(find_request(query("IMAGE", PatientID="P1", StudyInstanceUID="1.1",
                                                                  SeriesInstanceUID="1.1.1", SOPInstanceUID="")))
    assert next(exchange).status == 0xFF00
    assert exchange.throw(Cancel()).status == 0xFE00
    with pytest.raises(StopIteration):
        next(exchange)


def test_misbehaviour(index):
    identifier = query("PATIENT", PatientID="")
    (failed,) = run(QueryRetrieveFind(index, FindOptions(misbehaviour=Misbehaviour(fail_status=0xC123))),
                    find_request(identifier))
    assert failed.status == 0xC123
    slow = run(QueryRetrieveFind(index, FindOptions(misbehaviour=Misbehaviour(delay=0.5))), find_request(identifier))
    assert [r.delay for r in slow] == [0.5, 0.5, 0.5]
    aborted = run(QueryRetrieveFind(index, FindOptions(abort_after=1)), find_request(identifier))
    assert [r.abort for r in aborted] == [False, True]


def test_index_failure_is_a700(index):
    index.db.execute("DROP TABLE instance")
    (reply,) = run(QueryRetrieveFind(index), find_request(query("IMAGE", PatientID="P1", StudyInstanceUID="1.1",
                                                                 SeriesInstanceUID="1.1.1", SOPInstanceUID="")))
    assert reply.status == 0xA700
