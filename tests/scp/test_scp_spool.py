"""Data sets stream to their file as they arrive, and no data set can grow the SCP without bound."""

from __future__ import annotations

import errno
import os
import time

import pytest
from scp_testkit import CT, IVRLE, RawClient

from dicomconf.scp.storage import (
    STATUS_OUT_OF_RESOURCES,
    STATUS_PROCESSING_FAILURE,
    DirectoryStorage,
    FileSpool,
    file_meta_bytes,
)
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.pdu import PDV, PDataTF, decode_pdu
from scp_testkit import pdu

# The data sets stored here are raw bytes, not DICOM: these tests run without the index, which refuses
# what it cannot read (C000); the index has its own tests (tests/services).
RAW = {"index": "none"}

pytestmark = pytest.mark.network
MIB = 1 << 20


def _associated(port: int) -> RawClient:
    client = RawClient(port)
    reply = client.associate(contexts=((1, CT, (IVRLE,)),))
    assert reply[0] == C.A_ASSOCIATE_AC
    return client


def _status(client: RawClient) -> int:
    assembler = dimse.MessageAssembler()
    while True:
        reply = client.recv_pdu(timeout=10)
        assert reply is not None and reply[0] == C.P_DATA_TF, f"expected P-DATA-TF, got {reply!r}"
        for msg in assembler.add_pdata(decode_pdu(pdu(reply[0], reply[1]))):
            return msg.status


def _store_pdus(uid: str, data: bytes, message_id: int = 1) -> list[bytes]:
    return dimse.fragment(dimse.c_store_rq(message_id, CT, uid, data=data), 16382)


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _part_appears(directory) -> bool:
    """A temporary ``.part`` file (a store being written) shows up in ``directory`` within the wait."""
    return _wait_for(lambda: any(n.endswith(".part") for n in _names(directory)))


def test_directory_store_is_written_while_it_arrives(scp_factory, tmp_path):
    """Half a data set in: a temporary file holds most of it, no final file exists; complete: renamed."""
    handle = scp_factory(**RAW, storage="directory", storage_dir=str(tmp_path))
    data = bytes(range(256)) * (4 * 1024)  # 1 MiB
    pdus = _store_pdus("1.2.3.50", data)
    with _associated(handle.port) as client:
        client.send(b"".join(pdus[: len(pdus) // 2]))
        assert _part_appears(tmp_path), _names(tmp_path)
        (part,) = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
        assert _wait_for(lambda: part.stat().st_size >= 256 * 1024)
        assert not (tmp_path / "1.2.3.50.dcm").exists()
        client.send(b"".join(pdus[len(pdus) // 2 :]))
        assert _status(client) == 0
    assert _names(tmp_path) == ["1.2.3.50.dcm"]
    head = file_meta_bytes(CT, "1.2.3.50", IVRLE, C.IMPLEMENTATION_CLASS_UID, C.IMPLEMENTATION_VERSION_NAME, "TESTSCU")
    assert (tmp_path / "1.2.3.50.dcm").read_bytes() == head + data


def test_connection_lost_mid_data_set_leaves_nothing(scp_factory, tmp_path):
    handle = scp_factory(**RAW, storage="directory", storage_dir=str(tmp_path))
    pdus = _store_pdus("1.2.3.51", bytes(MIB))
    with _associated(handle.port) as client:
        client.send(b"".join(pdus[:40]))
        assert _part_appears(tmp_path)
    assert _wait_for(lambda: _names(tmp_path) == []), _names(tmp_path)
    assert handle.stored == []


def test_stop_mid_data_set_leaves_nothing(scp_factory, tmp_path):
    handle = scp_factory(**RAW, storage="directory", storage_dir=str(tmp_path))
    pdus = _store_pdus("1.2.3.52", bytes(MIB))
    with _associated(handle.port) as client:
        client.send(b"".join(pdus[:40]))
        assert _part_appears(tmp_path)
        handle.stop()
        assert client.wait_closed(5) is not None
    assert _names(tmp_path) == []


@pytest.mark.parametrize("storage", ["directory", "memory", "discard"])
def test_data_set_over_the_bound_answers_a700_and_the_association_goes_on(scp_factory, tmp_path, storage):
    """PS3.4 B.2.3: Refused, out of resources; nothing kept; the next store on the association succeeds."""
    extra = {"storage_dir": str(tmp_path)} if storage == "directory" else {}
    handle = scp_factory(**RAW, storage=storage, max_dataset_length=100_000, **extra)
    with _associated(handle.port) as client:
        client.send(b"".join(_store_pdus("1.2.3.53", bytes(300_000))))
        assert _status(client) == STATUS_OUT_OF_RESOURCES
        client.send(b"".join(_store_pdus("1.2.3.54", b"\x07" * 100_000, message_id=2)))
        assert _status(client) == 0
    assert [i.sop_instance_uid for i in handle.stored] == ["1.2.3.54"]
    if storage == "directory":
        assert _names(tmp_path) == ["1.2.3.54.dcm"]
    elif storage == "memory":
        assert handle.stored[0].data == b"\x07" * 100_000


def test_endless_data_set_into_memory_does_not_grow_the_server(scp_factory):
    """A peer sending data set fragments without end: the held bytes stay within the bound."""
    handle = scp_factory(**RAW, storage="memory", max_dataset_length=MIB)
    command = dimse.encode_command(dimse.c_store_rq(1, CT, "1.2.3.55").command)
    chunk = PDataTF((PDV(1, 0, bytes(16000)),)).encode()
    with _associated(handle.port) as client:
        client.send(PDataTF((PDV(1, C.MCH_COMMAND | C.MCH_LAST, command),)).encode())
        for _ in range(400):  # 6.4 MB, over six times the bound
            client.send(chunk)
        client.send(PDataTF((PDV(1, C.MCH_LAST, b"end"),)).encode())
        assert _status(client) == STATUS_OUT_OF_RESOURCES
        (conn,) = handle.call(lambda: list(handle.scp._connections))
        held = handle.call(lambda: sum(map(len, conn.assoc._assembler._parts)))
        assert held == 0
    assert handle.stored == []


def test_spool_write_failure_answers_and_removes_its_file(tmp_path, monkeypatch):
    storage = DirectoryStorage(str(tmp_path), implementation_class_uid="1.2.3")
    spool = FileSpool(storage, storage.path_for("1.2.3.56"), b"HEAD")
    spool.write(bytes(300_000))  # flushed: the temporary file exists
    assert any(n.endswith(".part") for n in _names(tmp_path))

    def full(fd, buffers):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "writev", full)
    spool.write(bytes(300_000))
    monkeypatch.undo()
    spool.write(b"more")  # ignored after the failure
    spool.end()
    assert spool.commit() == STATUS_OUT_OF_RESOURCES
    assert _names(tmp_path) == []


def test_spool_commit_failure_is_a_processing_failure(tmp_path):
    storage = DirectoryStorage(str(tmp_path), implementation_class_uid="1.2.3")
    spool = FileSpool(storage, os.path.join(str(tmp_path), "missing-dir", "x.dcm"), b"HEAD")
    spool.write(b"data")
    spool.end()
    assert spool.commit() == STATUS_PROCESSING_FAILURE
    assert _names(tmp_path) == []  # the temporary file is gone too


def test_more_pieces_than_one_writev_takes(tmp_path):
    """Thousands of tiny fragments (below IOV_MAX per call) make the same file."""
    storage = DirectoryStorage(str(tmp_path), implementation_class_uid="1.2.3")
    parts = [bytes([i % 251]) * 7 for i in range(5000)]
    assert storage.write_atomic(storage.path_for("1.2.3.57"), (b"HEAD", *parts)) == 0
    assert (tmp_path / "1.2.3.57.dcm").read_bytes() == b"HEAD" + b"".join(parts)


def test_config_bound_from_yaml(tmp_path):
    from dicomconf.scp.config import ConfigError, SCPConfig

    path = tmp_path / "scp.yaml"
    path.write_text("storage: memory\nmax_dataset_length: 1048576\n")
    assert SCPConfig.from_yaml(path).max_dataset_length == MIB
    path.write_text("storage: memory\nmax_dataset_length: -1\n")
    with pytest.raises(ConfigError, match=r"scp.yaml:2: max_dataset_length must be an integer"):
        SCPConfig.from_yaml(path)
    path.write_text("max_dataset_length: null\n")
    assert SCPConfig.from_yaml(path).max_dataset_length is None
