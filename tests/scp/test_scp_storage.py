"""Storage backends: atomic Part 10 files, failure statuses."""

from __future__ import annotations

import os

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomconf.scp.storage import (
    STATUS_OUT_OF_RESOURCES,
    STATUS_PROCESSING_FAILURE,
    STATUS_SUCCESS,
    DirectoryStorage,
    MemoryStorage,
    StoredInstance,
    file_name,
)
from dicomconf.ul import constants as C
from dicomconf.ul.dimse import encode_dataset

CT = "1.2.840.10008.5.1.4.1.1.2"


def instance(uid: str | None = None) -> StoredInstance:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = uid or generate_uid()
    ds.PatientName = "Test^Storage"
    data = encode_dataset(ds, ExplicitVRLittleEndian)
    return StoredInstance(CT, ds.SOPInstanceUID, ExplicitVRLittleEndian, data, "SENDER")


def make(tmp_path, **kw) -> DirectoryStorage:
    return DirectoryStorage(str(tmp_path), implementation_class_uid=C.IMPLEMENTATION_CLASS_UID,
                            implementation_version_name=C.IMPLEMENTATION_VERSION_NAME, **kw)


@pytest.mark.parametrize("fsync", [False, True])
def test_directory_writes_a_readable_part10_file(tmp_path, fsync):
    store = make(tmp_path, fsync=fsync)
    inst = instance()
    assert store.store(inst) == STATUS_SUCCESS
    path = store.path_for(inst.sop_instance_uid)
    assert os.listdir(tmp_path) == [os.path.basename(path)]
    ds = pydicom.dcmread(path)
    assert ds.file_meta.MediaStorageSOPInstanceUID == inst.sop_instance_uid
    assert ds.file_meta.MediaStorageSOPClassUID == CT
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.SourceApplicationEntityTitle == "SENDER"
    assert ds.PatientName == "Test^Storage"
    raw = open(path, "rb").read()
    assert raw[128:132] == b"DICM" and raw.endswith(inst.data)


def test_failed_write_leaves_nothing_and_answers_a_failure(tmp_path, monkeypatch):
    store = make(tmp_path)
    real_replace = os.replace

    def broken(*a, **k):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "replace", broken)
    assert store.store(instance()) == STATUS_PROCESSING_FAILURE
    monkeypatch.setattr(os, "replace", real_replace)
    assert os.listdir(tmp_path) == []


def test_full_disk_is_out_of_resources(tmp_path, monkeypatch):
    import errno

    store = make(tmp_path)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    store.fsync = True
    assert store.store(instance()) == STATUS_OUT_OF_RESOURCES
    assert os.listdir(tmp_path) == []


def test_unsafe_uid_does_not_escape_the_directory(tmp_path):
    store = make(tmp_path)
    name = file_name("../../etc/passwd")
    assert "/" not in name and name.endswith(".dcm")
    assert os.path.dirname(store.path_for("../x")) == str(tmp_path)


def test_memory_keeps_arrival_order():
    mem = MemoryStorage()
    a, b = instance(), instance()
    assert mem.store(a) == mem.store(b) == STATUS_SUCCESS
    assert mem.instances == [a, b]


@pytest.mark.parametrize("version, source", [("DICOMCONF_010", "SENDER"), ("ODD_NAME", "ODDAE"), ("V1", "")])
def test_file_meta_equals_pydicoms_encoder(version, source):
    from pydicom.dataset import FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    from dicomconf.scp.storage import file_meta_bytes

    uid = "1.2.3.4.5"  # odd length: padded with NUL
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = CT
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = C.IMPLEMENTATION_CLASS_UID
    if version:
        meta.ImplementationVersionName = version
    if source:
        meta.SourceApplicationEntityTitle = source
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_file_meta_info(buf, meta, enforce_standard=True)
    ours = file_meta_bytes(CT, uid, ExplicitVRLittleEndian, C.IMPLEMENTATION_CLASS_UID, version, source)
    assert ours == bytes(128) + b"DICM" + buf.getvalue()


def test_no_temporary_file_survives_a_failed_fsync(tmp_path, monkeypatch):
    store = make(tmp_path, fsync=True)

    def broken(fd):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", broken)
    assert store.store(instance()) == STATUS_PROCESSING_FAILURE
    assert os.listdir(tmp_path) == []
