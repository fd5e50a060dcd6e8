"""PS3.4 C.2.2.2 matching: each kind as the Python predicate, and SQL agreeing with it (differential)."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import Dataset

from dicomconf.services.index import Index

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")
from dicomconf.services.matching import (
    key_kind,
    match_dataset,
    normal_time,
    range_bounds,
)

sys.path.insert(0, os.path.dirname(__file__))
import qr_kit


def _ds(**kw) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


CANDIDATE = _ds(PatientName="Doe^Jane", PatientID="P1", StudyDate="20250102", StudyTime="101530",
                StudyInstanceUID="1.2.3", Modality="CT", AccessionNumber="A[1]", SeriesNumber="7",
                ModalitiesInStudy=["CT", "MR"],
                ReferencedStudySequence=[_ds(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1",
                                             ReferencedSOPInstanceUID="9.9")])


@pytest.mark.parametrize("keys, kind, matches", [
    ({"PatientID": ""}, "universal", True),
    ({"PatientName": "*"}, "universal", True),
    ({"PatientID": "P1"}, "single", True),
    ({"PatientID": "p1"}, "single", False),                 # case-sensitive outside PN
    ({"PatientName": "doe^jane"}, "single", True),          # PN: case-insensitive (our choice, C.2.2.2.1)
    ({"PatientName": "Doe^J*"}, "wildcard", True),
    ({"PatientName": "D?e^Jane"}, "wildcard", True),
    ({"PatientName": "Do^*"}, "wildcard", False),
    ({"AccessionNumber": "A[1]"}, "single", True),
    ({"AccessionNumber": "A[*"}, "wildcard", True),
    ({"StudyInstanceUID": "1.2.*"}, "single", False),       # no wild card on UIDs (C.2.2.2.4)
    ({"StudyInstanceUID": "9.9\\1.2.3"}, "uid_list", True),
    ({"StudyInstanceUID": "9.9\\9.8"}, "uid_list", False),
    ({"StudyDate": "20250101-20250102"}, "range", True),
    ({"StudyDate": "-20250101"}, "range", False),
    ({"StudyDate": "20250102-"}, "range", True),
    ({"StudyDate": "2025010*"}, "single", False),           # no wild card on dates
    ({"StudyTime": "1015-1015"}, "range", True),            # 1015 as an upper bound takes 10:15:59.999999
    ({"StudyTime": "1016-"}, "range", False),
    ({"SeriesNumber": "07"}, "single", True),                # IS compared as a number
    ({"Modality": '""'}, "empty", False),
    ({"PatientSex": '""'}, "empty", True),                    # absent: matches the empty-value key
    ({"ModalitiesInStudy": "MR"}, "single", True),           # several values: one matching is enough
])
def test_each_kind(keys, kind, matches):
    q = _ds(**keys)
    (elem,) = list(q)
    assert key_kind(elem) == kind
    assert match_dataset(q, CANDIDATE) is matches


def test_sequence_matching():
    """C.2.2.2.6: one item of keys; a candidate item must match all of them."""
    good = _ds(ReferencedStudySequence=[_ds(ReferencedSOPInstanceUID="9.9")])
    bad = _ds(ReferencedStudySequence=[_ds(ReferencedSOPInstanceUID="9.8")])
    universal = _ds(ReferencedStudySequence=[_ds(ReferencedSOPInstanceUID="")])
    assert key_kind(good.ReferencedStudySequence and good["ReferencedStudySequence"]) == "sequence"
    assert match_dataset(good, CANDIDATE) and not match_dataset(bad, CANDIDATE)
    assert match_dataset(universal, CANDIDATE)
    assert not match_dataset(good, _ds(PatientID="P1"))


def test_combined_date_time_range():
    """C.2.2.2.5.1: 20250101-20250102 with 2000-1000 is one range from Jan 1 20:00 to Jan 2 10:00."""
    q = _ds(StudyDate="20250101-20250102", StudyTime="2000-1000")
    inside = _ds(StudyDate="20250101", StudyTime="230000")
    outside = _ds(StudyDate="20250102", StudyTime="110000")
    assert match_dataset(q, inside, combine_datetime=True)
    assert not match_dataset(q, inside)  # separately, 23:00 is not within 20:00-10:00
    assert not match_dataset(q, outside, combine_datetime=True)


def test_normal_forms():
    assert normal_time("10") == "100000.000000"
    assert normal_time("10", upper=True) == "105959.999999"
    assert normal_time("1015.5", upper=True) == "101559.599999"
    assert range_bounds("DA", "20250101-") == ("20250101", None)
    assert range_bounds("DA", "2025-01") is None


# ------------------------------------------------------------------ differential: SQL == predicate

NAMES = ["Doe^Jane", "doe^jane", "DOE^JOHN", "Sm[i]th^A", "", "Müller^Ä"]
DATES = ["20250101", "20250102", "20250103", ""]
TIMES = ["10", "1015", "101530", "101530.25", "23", ""]
MODALITIES = ["CT", "MR", "ct", ""]
ACCESSIONS = ["A1", "A12", "B1", "a1", ""]


def _key(values: list[str], *, wildcard: bool, ranges: bool, uid: bool = False):
    alphabet = st.sampled_from(["A", "a", "1", "*", "?", "[", "D", "o", "e", "^", "J", "ü"])
    kinds = [st.just(""), st.just('""'), st.sampled_from([v for v in values if v])]
    if wildcard:
        kinds.append(st.text(alphabet, min_size=1, max_size=5))
    if ranges:
        bound = st.sampled_from([v for v in values if v])
        kinds.append(st.tuples(st.one_of(st.just(""), bound), st.one_of(st.just(""), bound)).filter(any).map("-".join))
    if uid:
        kinds.append(st.lists(st.sampled_from([v for v in values if v]), min_size=2, max_size=3).map("\\".join))
    return st.one_of(*kinds)


ROW = st.fixed_dictionaries({
    "name": st.sampled_from(NAMES), "date": st.sampled_from(DATES), "time": st.sampled_from(TIMES),
    "modality": st.sampled_from(MODALITIES), "accession": st.sampled_from(ACCESSIONS),
})
UIDS = [f"1.2.9.{i}" for i in range(8)]
QUERY = st.fixed_dictionaries({
    "PatientName": _key(NAMES, wildcard=True, ranges=False),
    "StudyDate": _key(DATES, wildcard=False, ranges=True),
    "StudyTime": _key(TIMES, wildcard=False, ranges=True),
    "Modality": _key(MODALITIES, wildcard=True, ranges=False),
    "AccessionNumber": _key(ACCESSIONS, wildcard=True, ranges=False),
    "StudyInstanceUID": _key(UIDS, wildcard=False, ranges=False, uid=True),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, min_size=1, max_size=8), keys=QUERY)
def test_sql_agrees_with_the_predicate(rows, keys):
    index = Index()
    stored = []
    for n, row in enumerate(rows):
        ds = qr_kit.instance(n, patient=f"P{n}", name=row["name"], study=UIDS[n], modality=row["modality"],
                             date=row["date"], time=row["time"], accession=row["accession"])
        qr_kit.add(index, ds)
        stored.append(ds)
    for keyword in list(keys):
        q = _ds(**{keyword: keys[keyword]})
        by_sql = {c.SeriesInstanceUID for c in index.find("SERIES", q, sql_only=True)}
        by_python = {ds.SeriesInstanceUID for ds in stored if match_dataset(q, ds)}
        assert by_sql == by_python, (keyword, keys[keyword])
    q = _ds(**keys, SeriesInstanceUID="")
    full = {c.SeriesInstanceUID for c in index.find("SERIES", q)}
    assert full == {ds.SeriesInstanceUID for ds in stored if match_dataset(q, ds)}
