"""The C-FIND fast path (dicomconf.services.find_wire) answers the same data sets as the general path.

A differential test: random index rows (ASCII and not, odd and even lengths,
empty values, numbers), random requested keys at a random level, in implicit
and explicit VR little endian.  Every pending the fast path writes is the
general path's identifier byte for byte, and decodes to the same data set
(PS3.4 C.4.1.3.1.2, PS3.5 7.1).
"""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset

from dicomconf.services.base import Reply, Request
from dicomconf.services.find_wire import (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    EncodedReply,
    layout,
)
from dicomconf.services.index import COLUMNS, LEVELS, Index
from dicomconf.services.qr_find import (
    PATIENT_ROOT_FIND,
    STUDY_ROOT_FIND,
    FindOptions,
    QueryRetrieveFind,
)
from dicomconf.ul import dimse

sys.path.insert(0, os.path.dirname(__file__))
from qr_kit import add

CT, MR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
ASCII = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz0123456789 ^-."
WIDE = ASCII + "éÖß山"


def _text(alphabet: str, max_size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, max_size=max_size).map(str.strip)


_RECORD = st.fixed_dictionaries({
    "patient": st.integers(0, 2),
    "study": st.integers(0, 2),
    "series": st.integers(0, 1),
    "PatientName": _text(WIDE, 12),
    "PatientBirthDate": st.sampled_from(["", "19700101", "20011231"]),
    "PatientSex": st.sampled_from(["", "F", "M", "O"]),
    "StudyDate": st.sampled_from(["", "20250101", "20250615", "20251231"]),
    "StudyTime": st.sampled_from(["", "1015", "101500", "101500.123", "235959.999999"]),
    "AccessionNumber": _text(ASCII, 7),
    "StudyID": _text(ASCII, 5),
    "StudyDescription": _text(WIDE, 13),
    "ReferringPhysicianName": _text(ASCII, 11),
    "Modality": st.sampled_from(["", "CT", "MR", "OT"]),
    "SeriesNumber": st.none() | st.integers(-5, 99999),
    "SeriesDate": st.sampled_from(["", "20250102"]),
    "SeriesTime": st.sampled_from(["", "0930", "093000.5"]),
    "InstanceNumber": st.none() | st.integers(0, 1000),
    "SOPClassUID": st.sampled_from([CT, MR]),
})


def _dataset(n: int, record: dict) -> Dataset:
    ds = Dataset()
    patient, study, series = record["patient"], record["study"], record["series"]
    ds.StudyInstanceUID = f"1.2.{patient}.{study}"
    ds.SeriesInstanceUID = f"1.2.{patient}.{study}.{series}"
    ds.SOPInstanceUID = f"1.2.{patient}.{study}.{series}.{n + 1}"
    for keyword, value in record.items():
        if keyword in ("patient", "study", "series") or value in ("", None):
            continue
        setattr(ds, keyword, value)
    ds.PatientID = f"ID{patient}"  # a study stays with one patient (the index keeps the first)
    return ds


def _keys(level: str) -> list[str]:
    depth = LEVELS.index(level)
    return sorted(k for k, c in COLUMNS.items() if LEVELS.index(c.level) <= depth)


@st.composite
def _query(draw):
    level = draw(st.sampled_from(LEVELS))
    keys = draw(st.lists(st.sampled_from(_keys(level)), min_size=1, max_size=8, unique=True))
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword in keys:
        column = COLUMNS[keyword]
        value = ""
        if not column.count and column.style not in ("python", "int"):
            value = draw(st.sampled_from(["", "", "", "*"]
                                         + (["20250101-20250630"] if column.style == "date" else [])
                                         + (["A*", "*e*"] if column.style == "pn" else [])))
        setattr(identifier, keyword, value)
    if draw(st.booleans()):
        identifier.RetrieveAETitle = ""
    return level, identifier, draw(st.sampled_from([IMPLICIT_VR_LE, EXPLICIT_VR_LE]))


def _request(identifier: Dataset, transfer_syntax: str, sop_class: str = PATIENT_ROOT_FIND,
             relational: bool = True) -> Request:
    wire = dimse.decode_dataset(dimse.encode_dataset(identifier, transfer_syntax), transfer_syntax)  # as received
    command = Dataset()
    command.AffectedSOPClassUID = sop_class
    command.CommandField = 0x0020
    command.MessageID = 1
    return Request(0x0020, 1, sop_class, command, wire, transfer_syntax=transfer_syntax, called_ae="DICOMCONF",
                   extended=b"\x01" if relational else b"")


def _compare(handler: QueryRetrieveFind, request: Request) -> tuple[int, int]:
    """Both paths' replies, checked pairwise; (pendings, pendings the fast path wrote)."""
    general = list(handler.handle(request))
    fast = list(handler.encoded(request))
    assert [r.status for r in fast] == [r.status for r in general]
    written = 0
    for mine, theirs in zip(fast, general):
        assert isinstance(theirs, Reply)
        if isinstance(mine, EncodedReply):
            written += 1
            theirs_bytes = dimse.encode_dataset(theirs.dataset, request.transfer_syntax)
            assert mine.data == theirs_bytes
            decoded = dimse.decode_dataset(mine.data, request.transfer_syntax)
            assert decoded == dimse.decode_dataset(theirs_bytes, request.transfer_syntax)
            assert [e.tag for e in decoded] == [e.tag for e in theirs.dataset]
        else:
            assert mine.dataset == theirs.dataset and mine.fields == theirs.fields
    return len(general) - 1, written


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(_RECORD, min_size=1, max_size=8), query=_query())
def test_fast_path_bytes_decode_to_the_general_paths_data_sets(records, query):
    _, identifier, transfer_syntax = query
    index = Index(":memory:")
    try:
        for n, record in enumerate(records):
            add(index, _dataset(n, record))
        _compare(QueryRetrieveFind(index), _request(identifier, transfer_syntax))
    finally:
        index.close()


@pytest.fixture
def index():
    index = Index(":memory:")
    index.synthesize(30, 2, 2)
    yield index
    index.close()


def _study_query() -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "Name*"
    identifier.PatientID = ""
    identifier.StudyDate = "20250101-20251231"
    identifier.StudyTime = ""
    identifier.AccessionNumber = ""
    identifier.StudyID = ""
    identifier.StudyInstanceUID = ""
    identifier.ModalitiesInStudy = ""
    identifier.NumberOfStudyRelatedInstances = ""
    identifier.RetrieveAETitle = ""
    return identifier


@pytest.mark.parametrize("transfer_syntax", [IMPLICIT_VR_LE, EXPLICIT_VR_LE])
def test_common_study_query_takes_the_fast_path_for_every_match(index, transfer_syntax):
    pendings, written = _compare(QueryRetrieveFind(index),
                                 _request(_study_query(), transfer_syntax, STUDY_ROOT_FIND, relational=False))
    assert pendings == 30 and written == 30


def test_non_ascii_row_is_written_by_the_general_path_with_specific_character_set(index):
    from qr_kit import instance

    add(index, instance(1, patient="P9", name="Name^Jürgen", study="9.9", date="20250505"))
    handler = QueryRetrieveFind(index)
    replies = list(handler.encoded(_request(_study_query(), EXPLICIT_VR_LE, STUDY_ROOT_FIND, relational=False)))
    general = [r for r in replies if isinstance(r, Reply) and r.dataset is not None]
    assert len(general) == 1 and general[0].dataset.SpecificCharacterSet == "ISO_IR 192"
    assert str(general[0].dataset.PatientName) == "Name^Jürgen"
    assert sum(isinstance(r, EncodedReply) for r in replies) == 30


@pytest.mark.parametrize("change", ["big endian", "unsupported key", "sequence key", "misbehaviour", "abort_after",
                                    "predicate"])
def test_what_the_fast_path_leaves_to_the_general_path(index, change):
    identifier, transfer_syntax, options, extended = _study_query(), EXPLICIT_VR_LE, FindOptions(), b""
    if change == "big endian":
        transfer_syntax = "1.2.840.10008.1.2.2"
    elif change == "unsupported key":
        identifier.add_new(0x00091001, "LO", "")  # a private key: FF01, returned empty
    elif change == "sequence key":
        identifier.ProcedureCodeSequence = []
    elif change == "misbehaviour":
        from dicomconf.services.base import Misbehaviour
        options = FindOptions(misbehaviour=Misbehaviour(delay=0.01))
    elif change == "abort_after":
        options = FindOptions(abort_after=50)
    elif change == "predicate":
        extended = b"\x00\x01"  # combined date and time range matching: the Python predicate decides
    handler = QueryRetrieveFind(index, options)
    request = _request(identifier, transfer_syntax, STUDY_ROOT_FIND, relational=False)
    request = Request(**{**{f: getattr(request, f) for f in Request.__slots__}, "extended": extended})
    replies = list(handler.encoded(request))
    assert not any(isinstance(r, EncodedReply) for r in replies)
    assert len(replies) == 31 and replies[-1].status in (0x0000, 0xFF00, 0xFF01)
    assert [r.status for r in replies] == [r.status for r in handler.handle(request)]


def test_layout_refuses_a_key_without_a_column(index):
    identifier = _study_query()
    identifier.StudyDescription = ""  # a column: still fast
    query = index.query("STUDY", identifier)
    assert layout(identifier, query, "STUDY", "AE", EXPLICIT_VR_LE) is not None
    identifier.PatientComments = ""  # no column: the general path
    query = index.query("STUDY", identifier)
    assert layout(identifier, query, "STUDY", "AE", EXPLICIT_VR_LE) is None
