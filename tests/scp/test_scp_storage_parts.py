"""Storage from received fragments: the same bytes as from the joined data set (PS3.10 7.1)."""

from __future__ import annotations

import dataclasses

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scp_testkit import CT, IVRLE, RawClient

from dicomconf.scp.storage import STATUS_SUCCESS, DirectoryStorage, MemoryStorage, StoredInstance
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.dimse import encode_dataset

# The data sets stored here are raw bytes, not DICOM: these tests run without the index, which refuses
# what it cannot read (C000); the index has its own tests (tests/services).
RAW = {"index": "none"}


def _instance() -> StoredInstance:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Parts^Test"
    ds.PatientComments = "x" * 5000
    return StoredInstance(CT, ds.SOPInstanceUID, ExplicitVRLittleEndian, encode_dataset(ds, ExplicitVRLittleEndian))


def _pieces(data: bytes, size: int) -> list[memoryview]:
    view = memoryview(data)
    return [view[i : i + size] for i in range(0, len(view), size)]


def test_directory_file_from_parts_equals_file_from_bytes(tmp_path):
    store = DirectoryStorage(str(tmp_path / "a"), implementation_class_uid=C.IMPLEMENTATION_CLASS_UID)
    whole = _instance()
    assert store.store(whole) == STATUS_SUCCESS
    expected = open(store.path_for(whole.sop_instance_uid), "rb").read()
    other = DirectoryStorage(str(tmp_path / "b"), implementation_class_uid=C.IMPLEMENTATION_CLASS_UID)
    empty = dataclasses.replace(whole, data=b"")
    assert other.store(empty, _pieces(whole.data, 777)) == STATUS_SUCCESS
    assert open(other.path_for(whole.sop_instance_uid), "rb").read() == expected


def test_memory_storage_joins_parts():
    store = MemoryStorage()
    whole = _instance()
    assert store.store(dataclasses.replace(whole, data=b""), _pieces(whole.data, 100)) == STATUS_SUCCESS
    assert store.instances == [whole]


def test_scp_writes_a_fragmented_store_byte_for_byte(scp_factory, tmp_path):
    """End to end at a small PDU size: many data set fragments, one file with the data set untouched."""
    handle = scp_factory(**RAW, storage="directory", storage_dir=str(tmp_path))
    whole = _instance()
    msg = dimse.c_store_rq(1, CT, whole.sop_instance_uid, data=whole.data)
    with RawClient(handle.port) as client:
        reply = client.associate(contexts=((1, CT, (IVRLE,)),), max_pdu=4096)
        assert reply[0] == C.A_ASSOCIATE_AC
        client.send(b"".join(dimse.fragment(msg, 1024)))
        rsp = client.recv_pdu()
        assert rsp is not None and rsp[0] == C.P_DATA_TF
    path = tmp_path / f"{whole.sop_instance_uid}.dcm"
    assert path.read_bytes().endswith(whole.data)


def test_memory_storage_keeps_bytes_even_from_one_view():
    store = MemoryStorage()
    whole = _instance()
    store.store(dataclasses.replace(whole, data=b""), (memoryview(whole.data),))
    assert type(store.instances[0].data) is bytes and store.instances[0] == whole


def test_scp_memory_storage_keeps_bytes_of_a_fragmented_store(scp_factory):
    handle = scp_factory(**RAW)
    whole = _instance()
    msg = dimse.c_store_rq(1, CT, whole.sop_instance_uid, data=whole.data)
    with RawClient(handle.port) as client:
        assert client.associate(contexts=((1, CT, (IVRLE,)),), max_pdu=4096)[0] == C.A_ASSOCIATE_AC
        client.send(b"".join(dimse.fragment(msg, 1024)))
        assert client.recv_pdu()[0] == C.P_DATA_TF
    assert [type(i.data) for i in handle.stored] == [bytes] and handle.stored[0].data == whole.data
