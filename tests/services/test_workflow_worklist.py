"""Modality Worklist service: YAML and DICOM sources, SPS matching, return keys, statuses (PS3.4 K.6, K.4)."""

from __future__ import annotations

import textwrap

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicomconf.services import worklist as wl
from dicomconf.services.base import Cancel, Misbehaviour, Reply, Request
from dicomconf.ul.dimse import C_FIND_RQ

ITEMS = textwrap.dedent("""\
    - PatientName: Doe^Jane
      PatientID: P1
      AccessionNumber: ACC1
      StudyInstanceUID: 1.2.826.0.1.3680043.2.1125.7.1
      ScheduledProcedureStepSequence:
        - Modality: CT
          ScheduledStationAETitle: CT1
          ScheduledProcedureStepStartDate: 20261207
          ScheduledProcedureStepStartTime: "0900"
          ScheduledProcedureStepID: SPS1
        - Modality: CT
          ScheduledStationAETitle: CT2
          ScheduledProcedureStepStartDate: 20261209
          ScheduledProcedureStepStartTime: "1400"
          ScheduledProcedureStepID: SPS1B
    - PatientName: Roe^Richard
      PatientID: P2
      AccessionNumber: ACC2
      OtherPatientIDs: [X1, X2]
      ScheduledProcedureStepSequence:
        - Modality: MR
          ScheduledStationAETitle: MR1
          ScheduledProcedureStepStartDate: 20261208
          ScheduledProcedureStepStartTime: "1030"
          ScheduledProcedureStepID: SPS2
    """)


@pytest.fixture
def source(tmp_path) -> wl.WorklistSource:
    path = tmp_path / "worklist.yaml"
    path.write_text(ITEMS)
    return wl.WorklistSource(path)


def find(service: wl.WorklistService, identifier: Dataset | None) -> list[Reply]:
    return list(service.handle(Request(C_FIND_RQ, 1, wl.WORKLIST_SOP_CLASS, Dataset(), identifier)))


def query(**sps_keys) -> Dataset:
    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = ""
    step = Dataset()
    for keyword, value in sps_keys.items():
        setattr(step, keyword, value)
    ds.ScheduledProcedureStepSequence = [step]
    return ds


def test_sop_class_is_the_registry_one():
    assert wl.WORKLIST_SOP_CLASS == "1.2.840.10008.5.1.4.31"


def test_yaml_items_are_datasets(source):
    first, second = source.items()
    assert first.PatientName == "Doe^Jane"
    assert first.ScheduledProcedureStepSequence[1].ScheduledStationAETitle == "CT2"
    assert first.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate == "20261207"
    assert first.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "0900"
    assert list(second.OtherPatientIDs) == ["X1", "X2"]


@pytest.mark.parametrize("text, line, words", [
    ("- PatientName: A\n  NotAKeyword: 1\n", 2, "'NotAKeyword' is not a DICOM attribute keyword"),
    ("- PatientName: A\n  ScheduledProcedureStepSequence:\n    - ScheduledProcedureStepStartDate: 2026-13-01\n",
     3, "ScheduledProcedureStepStartDate (DA) '2026-13-01'"),
    ("- ScheduledProcedureStepSequence: CT\n", 1, "is a sequence: give a list of mappings"),
    ("- PatientID: P1\n- just text\n", 2, "item must be a mapping"),
    ("PatientID: P1\n", 1, "a worklist is a list of items"),
    ("- PatientID: [P1\n", 2, "YAML syntax error"),
    ("- PatientID: P1\n  PatientID: P2\n", 2, "PatientID given twice"),
    ("- ScheduledProcedureStepSequence:\n    - Modality: {a: 1}\n", 2, "not a mapping"),
    ("- ScheduledStationAETitle: ABCDEFGHIJKLMNOPQ\n", 1, "exceeds the maximum length"),
], ids=["unknown-keyword", "bad-date", "sequence-scalar", "item-not-mapping", "not-a-list", "syntax",
        "duplicate", "value-mapping", "ae-too-long"])
def test_yaml_errors_say_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(wl.WorklistError) as info:
        wl.WorklistSource(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert words in message
    assert "\n" not in message and "Traceback" not in message


def test_unreadable_source(tmp_path):
    with pytest.raises(wl.WorklistError, match="cannot read"):
        wl.WorklistSource(tmp_path / "missing.yaml")


def test_reload_sees_changes_and_keeps_items_on_error(tmp_path):
    path = tmp_path / "worklist.yaml"
    path.write_text("- PatientID: P1\n")
    source = wl.WorklistSource(path)
    path.write_text("- PatientID: P1\n- PatientID: P2\n")
    assert len(source.items()) == 1, "loaded once, not on every query"
    assert source.reload() == 2
    path.write_text("- Nope: 1\n")
    with pytest.raises(wl.WorklistError, match=":1: "):
        source.reload()
    assert [i.PatientID for i in source.items()] == ["P1", "P2"]


def test_directory_of_dicom_files(tmp_path):
    for n in range(2):
        ds = Dataset()
        ds.PatientID = f"D{n}"
        step = Dataset()
        step.Modality = "US"
        ds.ScheduledProcedureStepSequence = [step]
        if n == 0:  # a Part 10 file
            ds.SOPClassUID = wl.WORKLIST_SOP_CLASS
            ds.SOPInstanceUID = "1.2.826.0.1.3680043.2.1125.7.9"
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.save_as(tmp_path / f"item{n}.dcm", enforce_file_format=True)
        else:  # a bare data set, implicit VR little endian
            ds.save_as(tmp_path / f"item{n}.wl", implicit_vr=True, little_endian=True)
    (tmp_path / ".hidden").write_text("not dicom")
    service = wl.WorklistService(wl.WorklistSource(tmp_path))
    replies = find(service, query(Modality="US"))
    assert [r.dataset.PatientID for r in replies[:-1]] == ["D0", "D1"]
    (tmp_path / "junk.dcm").write_text("not dicom either")
    with pytest.raises(wl.WorklistError, match="junk.dcm: not a DICOM file"):
        wl.WorklistSource(tmp_path)


def test_match_on_modality_inside_the_sps(source):
    replies = find(wl.WorklistService(source), query(Modality="MR"))
    assert [r.status for r in replies] == [wl.PENDING, wl.SUCCESS]
    assert replies[0].dataset.PatientID == "P2"


def test_match_on_station_ae_returns_only_matching_steps(source):
    replies = find(wl.WorklistService(source), query(ScheduledStationAETitle="CT2", ScheduledProcedureStepID=""))
    assert [r.status for r in replies] == [0xFF00, 0x0000]
    steps = replies[0].dataset.ScheduledProcedureStepSequence
    assert [s.ScheduledProcedureStepID for s in steps] == ["SPS1B"]


def test_match_on_date_range_and_single_date(source):
    service = wl.WorklistService(source)
    ids = lambda replies: sorted(r.dataset.PatientID for r in replies if r.status == wl.PENDING)
    assert ids(find(service, query(ScheduledProcedureStepStartDate="20261208-20261209"))) == ["P1", "P2"]
    assert ids(find(service, query(ScheduledProcedureStepStartDate="20261208"))) == ["P2"]
    assert ids(find(service, query(ScheduledProcedureStepStartDate="-20261207"))) == ["P1"]
    assert ids(find(service, query(ScheduledProcedureStepStartDate="20261210-"))) == []
    assert ids(find(service, query(Modality="CT", ScheduledStationAETitle="MR1"))) == []


def test_match_on_top_level_keys(source):
    ds = Dataset()
    ds.PatientName = "roe*"
    ds.AccessionNumber = ""
    replies = find(wl.WorklistService(source), ds)
    assert [r.dataset.AccessionNumber for r in replies if r.status == wl.PENDING] == ["ACC2"]


def test_return_keys_exactly_as_requested(source):
    ds = query(Modality="MR", ScheduledProcedureStepStartTime="", ScheduledPerformingPhysicianName="")
    ds.RequestedProcedureDescription = ""
    answer = find(wl.WorklistService(source), ds)[0].dataset
    assert sorted(e.keyword for e in answer) == ["PatientID", "PatientName", "RequestedProcedureDescription",
                                                 "ScheduledProcedureStepSequence"]
    assert answer.RequestedProcedureDescription in ("", None)
    step = answer.ScheduledProcedureStepSequence[0]
    assert sorted(e.keyword for e in step) == ["Modality", "ScheduledPerformingPhysicianName",
                                               "ScheduledProcedureStepStartTime"]
    assert step.ScheduledProcedureStepStartTime == "1030"


def test_empty_sps_item_returns_whole_steps(source):
    answer = find(wl.WorklistService(source), query())[0].dataset
    step = answer.ScheduledProcedureStepSequence[0]
    assert step.ScheduledStationAETitle == "CT1" and step.ScheduledProcedureStepID == "SPS1"
    assert len(answer.ScheduledProcedureStepSequence) == 2


def test_cancel_is_fe00(source):
    exchange = wl.WorklistService(source).handle(Request(C_FIND_RQ, 1, wl.WORKLIST_SOP_CLASS, Dataset(), query()))
    first = next(exchange)
    assert first.status == wl.PENDING
    final = exchange.throw(Cancel())
    assert final.status == wl.CANCEL == 0xFE00
    with pytest.raises(StopIteration):
        next(exchange)


def test_bad_identifiers_are_a900(source):
    service = wl.WorklistService(source)
    assert [r.status for r in find(service, None)] == [wl.IDENTIFIER_DOES_NOT_MATCH]
    two = query(Modality="CT")
    two.ScheduledProcedureStepSequence.append(Dataset())
    replies = find(service, two)
    assert [r.status for r in replies] == [0xA900] and "more than one item" in replies[0].fields["ErrorComment"]


def test_fault_while_matching_is_c000(source, monkeypatch):
    def broken(identifier, candidate):
        raise RuntimeError("matcher broke")

    monkeypatch.setattr(wl, "match_dataset", broken)
    replies = find(wl.WorklistService(source), query())
    assert [r.status for r in replies] == [wl.UNABLE_TO_PROCESS]


def test_misbehaviour(source):
    service = wl.WorklistService(source, misbehaviour=Misbehaviour(fail_status=0xA700))
    assert [r.status for r in find(service, query())] == [0xA700]
    service.misbehaviour = Misbehaviour(delay=0.25)
    replies = find(service, query())
    assert [r.status for r in replies] == [0xFF00, 0xFF00, 0x0000]
    assert all(r.delay == 0.25 for r in replies)


def test_specific_character_set_travels_with_the_item(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_text("- SpecificCharacterSet: ISO_IR 100\n  PatientName: Müller^Jörg\n- PatientName: Plain\n")
    service = wl.WorklistService(wl.WorklistSource(path))
    ds = Dataset()
    ds.PatientName = ""
    first, second = (r.dataset for r in find(service, ds)[:-1])
    assert first.SpecificCharacterSet == "ISO_IR 100" and first.PatientName == "Müller^Jörg"
    assert "SpecificCharacterSet" not in second
    ds.SpecificCharacterSet = ""
    second = find(service, ds)[1].dataset
    assert "SpecificCharacterSet" in second and second.SpecificCharacterSet in ("", None)
