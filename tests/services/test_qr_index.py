"""The SQLite index: rows and counts, atomic stores with their files, crash recovery, --load."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from pydicom import Dataset

from dicomconf.scp.config import SCPConfig
from dicomconf.scp.indexing import attach_index
from dicomconf.scp.storage import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_SUCCESS,
    DirectoryStorage,
    MemoryStorage,
    StorageSetupError,
    StoredInstance,
)
from dicomconf.scp.indexing import make_storage
from dicomconf.services.index import SCHEMA_VERSION, Index, IndexFileError
from dicomconf.services.matching import values_of
from dicomconf.ul import constants as C
from dicomconf.ul.dimse_codec import encode_dataset

sys.path.insert(0, os.path.dirname(__file__))
import qr_kit

EVRLE = "1.2.840.10008.1.2.1"


def _directory(tmp_path, index: str = "default") -> DirectoryStorage:
    return make_storage(SCPConfig(storage="directory", storage_dir=str(tmp_path / "store"), index=index))


def _store(storage, ds: Dataset) -> int:
    """A C-STORE as the server makes it: the data set bytes through the backend's spool."""
    instance = StoredInstance(ds.SOPClassUID, ds.SOPInstanceUID, EVRLE, b"", "TESTSCU")
    spool = storage.open(instance)
    spool.write(encode_dataset(ds, EVRLE))
    spool.end()
    return spool.commit()


def _files(storage: DirectoryStorage) -> list[str]:
    return sorted(n for n in os.listdir(storage.directory) if not n.startswith("index.sqlite"))


def test_counts_are_kept_on_insert_and_removal():
    index = Index()
    qr_kit.add(index, qr_kit.instance(1, study="1.1", series="1.1.1", modality="CT"))
    qr_kit.add(index, qr_kit.instance(2, study="1.1", series="1.1.1", modality="CT"))
    qr_kit.add(index, qr_kit.instance(1, study="1.1", series="1.1.2", modality="MR", sop_class=qr_kit.MR))
    qr_kit.add(index, qr_kit.instance(1, study="1.2", series="1.2.1", modality="CT"))
    counts = {"NumberOfStudyRelatedSeries": "", "NumberOfStudyRelatedInstances": "", "ModalitiesInStudy": "",
              "SOPClassesInStudy": ""}
    (study,) = index.find("STUDY", qr_kit.query(None, StudyInstanceUID="1.1", **counts))
    assert study.NumberOfStudyRelatedSeries == 2 and study.NumberOfStudyRelatedInstances == 3
    assert values_of(study["ModalitiesInStudy"]) == ["CT", "MR"]
    assert values_of(study["SOPClassesInStudy"]) == [qr_kit.CT, qr_kit.MR]
    (patient,) = index.find("PATIENT", qr_kit.query(None, PatientID="P1", NumberOfPatientRelatedStudies="",
                                                    NumberOfPatientRelatedSeries="",
                                                    NumberOfPatientRelatedInstances=""))
    assert (patient.NumberOfPatientRelatedStudies, patient.NumberOfPatientRelatedSeries,
            patient.NumberOfPatientRelatedInstances) == (2, 3, 4)
    assert index.remove("1.1.2.1")  # the MR series' only instance
    (study,) = index.find("STUDY", qr_kit.query(None, StudyInstanceUID="1.1", **counts))
    assert study.NumberOfStudyRelatedSeries == 1 and values_of(study["ModalitiesInStudy"]) == ["CT"]
    assert index.count("SERIES") == 2
    for uid in ("1.1.1.1", "1.1.1.2", "1.2.1.1"):
        index.remove(uid)
    assert [index.count(level) for level in ("PATIENT", "STUDY", "SERIES", "IMAGE")] == [0, 0, 0, 0]


def test_optional_attributes_come_back_and_bulk_data_does_not():
    index = Index()
    ds = qr_kit.instance(1, StudyDescription="Head", PatientComments="note", ImageComments="c")
    ds.PixelData = b"\x00" * 64
    ds.add_new(0x00091010, "OB", b"\x01\x02")
    qr_kit.add(index, ds)
    q = qr_kit.query(None, ImageComments="", StudyDescription="", PatientComments="", PixelData=b"")
    q.add_new(0x00091010, "OB", b"")
    (image,) = index.find("IMAGE", q)
    assert image.StudyDescription == "Head" and image.PatientComments == "note" and image.ImageComments == "c"
    assert "PixelData" not in image and 0x00091010 not in image
    assert "PatientName" not in image  # only the keys asked for


def test_a_data_set_without_study_uid_is_refused():
    index = Index()
    ds = qr_kit.instance(1)
    del ds.StudyInstanceUID
    from dicomconf.services.index import UnindexableError

    with pytest.raises(UnindexableError, match="Study Instance UID"):
        qr_kit.add(index, ds)
    assert index.count("IMAGE") == 0


def test_file_index_has_schema_version_and_wal(tmp_path):
    path = str(tmp_path / "i.sqlite")
    Index(path).close()
    index = Index(path)
    assert index.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert index.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    index.db.execute("PRAGMA user_version=99")
    index.close()
    with pytest.raises(IndexFileError, match="schema version 99"):
        Index(path)


# ------------------------------------------------------------------ atomicity


def test_store_writes_file_and_row_together(tmp_path):
    storage = _directory(tmp_path)
    ds = qr_kit.instance(1)
    assert _store(storage, ds) == STATUS_SUCCESS
    located = storage.index.locate(ds.SOPInstanceUID)
    assert located is not None and located.path == storage.path_for(ds.SOPInstanceUID)
    assert os.path.isfile(located.path) and located.transfer_syntax == EVRLE and located.size > 0
    assert _files(storage) == [os.path.basename(located.path)]


def test_unreadable_data_set_fails_c000_with_neither_row_nor_file(tmp_path):
    storage = _directory(tmp_path)
    instance = StoredInstance(qr_kit.CT, "1.2.3.9", EVRLE, b"", "TESTSCU")
    spool = storage.open(instance)
    spool.write(bytes(range(256)) * 8)  # not a data set
    spool.end()
    assert spool.commit() == STATUS_CANNOT_UNDERSTAND and "index" in spool.cause
    assert _files(storage) == [] and storage.index.count("IMAGE") == 0


def test_rename_failure_rolls_back_the_row(tmp_path, monkeypatch):
    """Window: rows inserted, then os.replace fails: no row, no file, no temporary file."""
    storage = _directory(tmp_path)

    def fail(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("dicomconf.scp.storage.os.replace", fail)
    assert _store(storage, qr_kit.instance(1)) == 0x0110
    assert storage.index.count("IMAGE") == 0 and _files(storage) == []


class _FailingCommit:
    """The index's connection, whose COMMIT fails (a full disk at the worst moment)."""

    def __init__(self, db) -> None:
        self.db = db

    def execute(self, sql, *args):
        if sql == "COMMIT":
            import sqlite3

            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)


def test_commit_failure_after_rename_removes_the_file(tmp_path):
    """Window: the file is in place, then COMMIT fails: the file goes, the row was never there."""
    storage = _directory(tmp_path)
    storage.index.db = _FailingCommit(storage.index.db)
    assert _store(storage, qr_kit.instance(1)) == 0x0110
    storage.index.db = storage.index.db.db
    assert storage.index.count("IMAGE") == 0 and _files(storage) == []


def test_reconcile_fixes_every_crash_window(tmp_path):
    storage = _directory(tmp_path)
    kept, orphan_row = qr_kit.instance(1), qr_kit.instance(2)
    assert _store(storage, kept) == _store(storage, orphan_row) == STATUS_SUCCESS
    os.unlink(storage.path_for(orphan_row.SOPInstanceUID))  # a row without its file
    orphan_file = qr_kit.instance(3)  # a file without its row: renamed, crash before COMMIT
    qr_kit.write_part10(orphan_file, storage.path_for(orphan_file.SOPInstanceUID))
    spool = storage.open(StoredInstance(qr_kit.CT, "1.2.3.77", EVRLE, b""))
    spool.write(b"\x00" * 300_000)  # a temporary file left by a crash mid-write
    temporary = spool.tmp
    assert temporary and os.path.exists(temporary)
    storage.index.close()
    again = _directory(tmp_path)  # the restart: reconcile
    uids = {c.SOPInstanceUID for c in again.index.find("IMAGE", qr_kit.query(None, SOPInstanceUID=""))}
    assert uids == {kept.SOPInstanceUID, orphan_file.SOPInstanceUID}
    assert not os.path.exists(temporary)
    assert sorted(_files(again)) == sorted(os.path.basename(again.path_for(u)) for u in uids)


CRASH_CHILD = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {kit!r})
    import qr_kit
    from dicomconf.scp.config import SCPConfig
    from dicomconf.scp.indexing import make_storage
    from dicomconf.scp.storage import StoredInstance
    from dicomconf.ul.dimse_codec import encode_dataset

    storage = make_storage(SCPConfig(storage="directory", storage_dir={store!r}, index="default"))
    real = storage.index.db

    class Crash:
        def execute(self, sql, *args):
            if sql == "COMMIT":
                os.kill(os.getpid(), signal.SIGKILL)  # killed between os.replace and COMMIT
            return real.execute(sql, *args)

    ds = qr_kit.instance(5)
    storage.index.db = Crash()
    spool = storage.open(StoredInstance(ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1", b""))
    spool.write(encode_dataset(ds, "1.2.840.10008.1.2.1"))
    spool.end()
    spool.commit()
""")


def test_killed_between_rename_and_commit_is_recovered(tmp_path):
    store = str(tmp_path / "store")
    child = subprocess.run([sys.executable, "-c", CRASH_CHILD.format(kit=os.path.dirname(__file__), store=store)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert child.returncode == -signal.SIGKILL, child.stderr
    uid = qr_kit.instance(5).SOPInstanceUID
    storage = _directory(tmp_path)
    assert os.path.isfile(storage.path_for(uid))
    located = storage.index.locate(uid)
    assert located is not None and located.path == storage.path_for(uid)


def test_memory_storage_indexes_and_reads_back():
    storage = make_storage(SCPConfig(storage="memory", index="default"))
    ds = qr_kit.instance(1)
    assert _store(storage, ds) == STATUS_SUCCESS
    assert _store(storage, ds) == STATUS_SUCCESS  # again: the later wins, one copy kept
    assert len(storage.instances) == 1 and storage.index.count("IMAGE") == 1
    assert storage.read(ds.SOPInstanceUID) == encode_dataset(ds, EVRLE)
    assert storage.index.locate(ds.SOPInstanceUID).path is None
    bad = StoredInstance(qr_kit.CT, "1.2.3.10", C.IMPLICIT_VR_LITTLE_ENDIAN, bytes(1000))
    assert storage.store(bad) == STATUS_CANNOT_UNDERSTAND and storage.read("1.2.3.10") is None
    storage.remove(ds.SOPInstanceUID)
    assert storage.index.count("IMAGE") == 0 and storage.read(ds.SOPInstanceUID) is None


# ------------------------------------------------------------------ --load


def _load_tree(tmp_path):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    qr_kit.write_part10(qr_kit.instance(1), src / "a.dcm")
    qr_kit.write_part10(qr_kit.instance(2), src / "nested" / "b")
    qr_kit.write_part10(qr_kit.instance(1, StudyDescription="later"), src / "nested" / "z.dcm")  # same UID
    (src / "notes.txt").write_text("not DICOM")
    (src / "nested" / "empty.dcm").write_bytes(b"")
    return src


def test_load_directory_storage_references_files_in_place(tmp_path, caplog):
    src = _load_tree(tmp_path)
    caplog.set_level("INFO", logger="dicomconf.services.index")
    storage = make_storage(SCPConfig(storage="directory", storage_dir=str(tmp_path / "store"), index="default",
                                     load=(str(src),)))
    images = list(storage.index.find("IMAGE", qr_kit.query(None, SOPInstanceUID="", StudyDescription="")))
    assert sorted(i.SOPInstanceUID for i in images) == ["1.2.3.1.1.1", "1.2.3.1.1.2"]
    assert storage.index.locate("1.2.3.1.1.1").path == str(src / "nested" / "z.dcm")  # the later file won
    assert [i.StudyDescription for i in images if i.SOPInstanceUID == "1.2.3.1.1.1"] == ["later"]
    assert _files(storage) == []  # nothing copied
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded"))
    assert "2 files not DICOM skipped" in line and "1 duplicates" in line


def test_load_into_memory_storage_and_its_limit(tmp_path):
    src = _load_tree(tmp_path)
    storage = make_storage(SCPConfig(storage="memory", index="default", load=(str(src),)))
    assert sorted(i.sop_instance_uid for i in storage.instances) == ["1.2.3.1.1.1", "1.2.3.1.1.2"]
    assert storage.read("1.2.3.1.1.2") is not None and storage.index.count("IMAGE") == 2
    with pytest.raises(StorageSetupError, match="memory storage limit"):
        make_storage(SCPConfig(storage="memory", index="default", load=(str(src),), memory_storage_limit=1500))


def test_load_needs_an_index(tmp_path):
    storage = MemoryStorage()
    with pytest.raises(StorageSetupError, match="needs an index"):
        attach_index(storage, "none", (str(tmp_path),))


def test_synthesize_fills_rows_with_counts():
    index = Index()
    index.synthesize(studies=5, series_per_study=2, instances_per_series=3)
    assert [index.count(level) for level in ("PATIENT", "STUDY", "SERIES", "IMAGE")] == [3, 5, 10, 30]
    studies = list(index.find("STUDY", qr_kit.query(None, StudyInstanceUID="", NumberOfStudyRelatedInstances="")))
    assert len(studies) == 5 and {s.NumberOfStudyRelatedInstances for s in studies} == {6}


def test_find_reads_page_after_page_in_insertion_order():
    index = Index()
    index.synthesize(studies=2, series_per_study=1, instances_per_series=1500)  # 3,000 rows: three pages
    images = list(index.find("IMAGE", qr_kit.query(None, SOPInstanceUID="", InstanceNumber="")))
    assert len(images) == 3000 and len({i.SOPInstanceUID for i in images}) == 3000
    assert [int(i.InstanceNumber) for i in images[:3]] == [1, 2, 3] and int(images[1500].InstanceNumber) == 1


def test_an_instance_naming_another_patient_for_a_known_study_is_refused_and_changes_nothing():
    """A study stays with its patient: an instance that names another Patient ID for it is C000,
    and neither patient's rows change (renaming would move the patient's other studies too)."""
    import qr_kit

    from dicomconf.ul.dimse_codec import encode_dataset as encode

    storage = make_storage(SCPConfig(storage="memory"))
    first = [qr_kit.instance(1, patient="P2", name="Two^Pat", study="1.2.3.2", series="1.2.3.2.1"),
             qr_kit.instance(1, patient="P1", name="One^Pat", study="1.2.3.1", series="1.2.3.1.1")]
    for ds in first:
        assert storage.store(StoredInstance(ds.SOPClassUID, ds.SOPInstanceUID, C.IMPLICIT_VR_LITTLE_ENDIAN,
                                            encode(ds, C.IMPLICIT_VR_LITTLE_ENDIAN))) == STATUS_SUCCESS
    for patient in ("P2", "P3"):  # an existing other patient, and a new one
        bad = qr_kit.instance(7, patient=patient, name="Other^Pat", study="1.2.3.1", series="1.2.3.1.1")
        status = storage.store(StoredInstance(bad.SOPClassUID, bad.SOPInstanceUID, C.IMPLICIT_VR_LITTLE_ENDIAN,
                                              encode(bad, C.IMPLICIT_VR_LITTLE_ENDIAN)))
        assert status == STATUS_CANNOT_UNDERSTAND and "belongs to patient 'P1'" in storage.cause
    query = Dataset()
    query.PatientID = ""
    query.PatientName = ""
    assert sorted((str(d.PatientID), str(d.PatientName)) for d in storage.index.find("PATIENT", query)) == \
        [("P1", "One^Pat"), ("P2", "Two^Pat")]
    assert storage.index.count("IMAGE") == 2
