"""Every resource of the reference SCP has a bound, and a failed store says why in its log line."""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import time
from pathlib import Path

import pytest
from scp_testkit import CT, IVRLE, RawClient, abort_fields, pdu

from dicomconf.scp.indexing import make_storage
from dicomconf.scp.config import ConfigError, SCPConfig, parse_size
from dicomconf.scp.storage import (
    INSTANCE_COST,
    STATUS_OUT_OF_RESOURCES,
    STATUS_SUCCESS,
    DirectoryStorage,
    FileSpool,
    MemoryStorage,
    StoredInstance,
)
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.pdu import PDV, PDataTF, decode_pdu

# The data sets stored here are raw bytes, not DICOM: these tests run without the index, which refuses
# what it cannot read (C000); the index has its own tests (tests/services).
RAW = {"index": "none"}

pytestmark = pytest.mark.network
MIB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scp_log():
    """Records of the ``dicomconf.scp`` logger, whatever the logging set-up of other tests did to its parents."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("dicomconf.scp")
    handler, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def _lines(records) -> list[str]:
    return [r.getMessage() for r in records]


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def _associated(port: int, sop_class: str = CT) -> RawClient:
    client = RawClient(port)
    assert client.associate(contexts=((1, sop_class, (IVRLE,)),))[0] == C.A_ASSOCIATE_AC
    return client


def _status(client: RawClient) -> int:
    assembler = dimse.MessageAssembler()
    while True:
        reply = client.recv_pdu(timeout=10)
        assert reply is not None and reply[0] == C.P_DATA_TF, f"expected P-DATA-TF, got {reply!r}"
        for msg in assembler.add_pdata(decode_pdu(pdu(reply[0], reply[1]))):
            return msg.status


def _store_pdus(uid: str, data: bytes, message_id: int = 1, sop_class: str = CT) -> list[bytes]:
    return dimse.fragment(dimse.c_store_rq(message_id, sop_class, uid, data=data), 16382)


def _store(client: RawClient, uid: str, size: int, message_id: int = 1) -> int:
    client.send(b"".join(_store_pdus(uid, bytes([message_id % 251]) * size, message_id)))
    return _status(client)


def _instance(uid: str, size: int) -> StoredInstance:
    return StoredInstance(CT, uid, IVRLE, bytes(size))


# ---------------------------------------------------------------- memory storage: the budget


def test_memory_storage_refuses_past_its_limit_and_remove_gives_memory_back():
    mem = MemoryStorage(limit=3 * MIB)
    assert mem.store(_instance("1.1", MIB)) == STATUS_SUCCESS
    assert mem.store(_instance("1.2", MIB)) == STATUS_SUCCESS
    assert mem.used == 2 * (MIB + INSTANCE_COST)
    assert mem.store(_instance("1.3", MIB)) == STATUS_OUT_OF_RESOURCES  # 3 MiB + 3 KiB > 3 MiB
    assert [i.sop_instance_uid for i in mem.instances] == ["1.1", "1.2"]
    assert mem.remove("1.1") == 1 and mem.used == MIB + INSTANCE_COST
    assert mem.store(_instance("1.3", MIB)) == STATUS_SUCCESS
    mem.clear()
    assert mem.used == 0 and mem.instances == []


def test_memory_storage_notices_instances_taken_out_of_its_list():
    """``ReferenceSCP.stored`` is the storage's own list: ``del``/``pop`` on it give the memory back too."""
    mem = MemoryStorage(limit=2 * MIB + 2 * INSTANCE_COST)
    assert mem.store(_instance("1.1", MIB)) == mem.store(_instance("1.2", MIB)) == STATUS_SUCCESS
    assert mem.store(_instance("1.3", MIB)) == STATUS_OUT_OF_RESOURCES
    del mem.instances[0]
    assert mem.store(_instance("1.3", MIB)) == STATUS_SUCCESS
    assert mem.used == 2 * (MIB + INSTANCE_COST)


def test_memory_spool_is_dropped_at_the_first_fragment_past_the_budget():
    """The data set is not buffered whole before the refusal: what was held goes back at once."""
    mem = MemoryStorage(limit=MIB)
    spool = mem.open(_instance("1.9", 0))
    spool.write(bytes(MIB // 2))
    assert mem.reserved == MIB // 2
    spool.write(bytes(MIB // 2))  # over the budget with the instance's own cost
    assert spool.status == STATUS_OUT_OF_RESOURCES and spool.parts == [] and mem.reserved == 0
    spool.write(bytes(10 * MIB))  # the rest is only counted
    assert mem.reserved == 0 and spool.length == 11 * MIB
    spool.end()
    assert spool.commit() == STATUS_OUT_OF_RESOURCES
    assert spool.cause == "memory storage limit 1 MiB reached"
    assert mem.instances == [] and mem.used == 0


def test_memory_spool_discarded_mid_data_set_gives_its_reservation_back():
    mem = MemoryStorage(limit=MIB)
    spool = mem.open(_instance("1.8", 0))
    spool.write(bytes(1000))
    assert mem.reserved == 1000
    spool.discard()
    assert mem.reserved == 0


def test_unbounded_memory_storage_only_when_asked(tmp_path):
    assert SCPConfig().memory_storage_limit == 256 * MIB
    assert make_storage(SCPConfig()).limit == 256 * MIB
    cfg = tmp_path / "scp.yaml"
    cfg.write_text("storage: memory\nmemory_storage_limit: null\n")
    assert make_storage(SCPConfig.from_yaml(cfg)).limit is None
    cfg.write_text("memory_storage_limit: 64 MiB\n")
    assert SCPConfig.from_yaml(cfg).memory_storage_limit == 64 * MIB
    cfg.write_text("storage: memory\nmemory_storage_limit: lots\n")
    with pytest.raises(ConfigError, match=r"scp\.yaml:2: memory_storage_limit: 'lots' is not a size"):
        SCPConfig.from_yaml(cfg)


def test_memory_limit_flag():
    import argparse

    from dicomconf.scp.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert SCPConfig().apply_args(parser.parse_args(["--memory-limit", "2GiB"])).memory_storage_limit == 2 << 30
    assert SCPConfig().apply_args(parser.parse_args(["--memory-limit", "none"])).memory_storage_limit is None
    with pytest.raises(ConfigError, match=r"--memory-limit: '12 apples' is not a size"):
        SCPConfig().apply_args(parser.parse_args(["--memory-limit", "12 apples"]))
    assert [parse_size(v) for v in ("1048576", "1 MiB", "1m", "1024k")] == [MIB] * 4


def test_scp_refuses_a700_at_the_memory_limit_and_logs_why(scp_factory, scp_log):
    """PS3.4 B.2.3: Refused, out of resources; the association goes on; removing an instance makes room."""
    handle = scp_factory(**RAW, storage="memory", memory_storage_limit=3 * MIB)
    with _associated(handle.port) as client:
        assert _store(client, "1.2.3.1", MIB, 1) == 0
        assert _store(client, "1.2.3.2", MIB, 2) == 0
        assert _store(client, "1.2.3.3", MIB, 3) == STATUS_OUT_OF_RESOURCES
        assert "C-STORE of 1.2.3.3 answered A700: memory storage limit 3 MiB reached" in " ".join(_lines(scp_log))
        assert [i.sop_instance_uid for i in handle.stored] == ["1.2.3.1", "1.2.3.2"]
        assert handle.call(lambda: handle.scp.storage.remove("1.2.3.1")) == 1
        assert _store(client, "1.2.3.3", MIB, 4) == 0
    assert [i.sop_instance_uid for i in handle.stored] == ["1.2.3.2", "1.2.3.3"]
    assert handle.scp.storage.used <= 3 * MIB


def test_scp_budget_is_shared_and_a_store_is_dropped_while_it_arrives(scp_factory):
    """Two associations storing at once: the second is dropped as soon as it passes what is left, not at its end."""
    handle = scp_factory(**RAW, storage="memory", memory_storage_limit=3 * MIB)
    first, second = _store_pdus("1.2.3.10", bytes(2 * MIB)), _store_pdus("1.2.3.11", bytes(2 * MIB))
    storage = handle.scp.storage
    with _associated(handle.port) as a, _associated(handle.port) as b:
        a.send(b"".join(first[:-1]))  # all but the last PDU: 2 MiB held, charged
        assert _wait_for(lambda: storage.reserved >= 2 * MIB - 16382)
        b.send(b"".join(second[:-1]))
        assert _wait_for(lambda: handle.call(lambda: [c.spool for c in handle.scp._connections
                                                      if c.spool is not None and c.spool.status]) != [])
        assert storage.reserved <= 2 * MIB  # only a's: b's fragments went back as soon as b could not fit
        b.send(second[-1])
        assert _status(b) == STATUS_OUT_OF_RESOURCES
        a.send(first[-1])
        assert _status(a) == 0
    assert [i.sop_instance_uid for i in handle.stored] == ["1.2.3.10"]
    assert storage.reserved == 0


def test_refused_store_holds_nothing_of_its_data_set(scp_factory):
    """A C-STORE refused for its SOP class (0122) is answered without keeping its data set, whatever its size."""
    handle = scp_factory(**RAW, storage="memory", max_dataset_length=None)
    mr = "1.2.840.10008.5.1.4.1.1.4"
    pdus = dimse.fragment(dimse.c_store_rq(1, mr, "1.2.3.20", data=bytes(3 * MIB)), 16382)
    with _associated(handle.port) as client:
        client.send(b"".join(pdus[:-1]))
        time.sleep(0.2)
        (conn,) = handle.call(lambda: list(handle.scp._connections))
        assert handle.call(lambda: sum(map(len, conn.assoc._assembler._parts))) == 0
        client.send(pdus[-1])
        assert _status(client) == 0x0122
    assert handle.stored == [] and handle.scp.storage.reserved == 0


# ---------------------------------------------------------------- causes in the log line


def test_data_set_too_large_is_logged_with_its_cause(scp_factory, scp_log):
    handle = scp_factory(**RAW, storage="discard", max_dataset_length=100_000)
    with _associated(handle.port) as client:
        assert _store(client, "1.2.3.30", 300_000) == STATUS_OUT_OF_RESOURCES
    assert any(re.search(r"C-STORE of 1\.2\.3\.30 answered A700: data set longer than max_dataset_length "
                         r"\(100000 bytes\)", line) for line in _lines(scp_log)), _lines(scp_log)


def test_full_disk_is_logged_with_its_cause(scp_factory, scp_log, tmp_path, monkeypatch):
    handle = scp_factory(**RAW, storage="directory", storage_dir=str(tmp_path))

    def full(fd, buffers):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "writev", full)  # the server runs on a thread of this process
    with _associated(handle.port) as client:
        assert _store(client, "1.2.3.31", 1000) == STATUS_OUT_OF_RESOURCES
    monkeypatch.undo()
    assert any("C-STORE of 1.2.3.31 answered A700: [Errno 28] No space left on device" in line
               for line in _lines(scp_log)), _lines(scp_log)
    assert [r.levelno for r in scp_log if "1.2.3.31" in r.getMessage()] == [logging.WARNING]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("code, status", [(errno.EDQUOT, 0xA700), (errno.EACCES, 0x0110)])
def test_quota_and_permission_causes(tmp_path, monkeypatch, code, status):
    storage = DirectoryStorage(str(tmp_path), implementation_class_uid="1.2.3")

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "open", refuse)
    spool = storage.open(_instance("1.2.3.32", 0))
    spool.write(bytes(300_000))  # past the flush size: the file is opened now
    spool.end()
    assert spool.commit() == status
    assert spool.cause == f"[Errno {code}] {os.strerror(code)}"


def test_refused_sop_class_is_logged_with_its_cause(scp_factory, scp_log):
    handle = scp_factory(**RAW)
    mr = "1.2.840.10008.5.1.4.1.1.4"
    with _associated(handle.port) as client:
        client.send(b"".join(_store_pdus("1.2.3.33", bytes(10), sop_class=mr)))
        assert _status(client) == 0x0122
    assert any(f"C-STORE of 1.2.3.33 answered 0122: SOP class {mr} is not the abstract syntax {CT} of context 1"
               in line for line in _lines(scp_log)), _lines(scp_log)


# ---------------------------------------------------------------- files and directories


def test_stored_files_are_private(scp_factory, tmp_path):
    """Patient data: files 0o600, directories the storage creates 0o700 (parents included)."""
    directory = tmp_path / "new" / "incoming"
    handle = scp_factory(**RAW, storage="directory", storage_dir=str(directory))
    with _associated(handle.port) as client:
        assert _store(client, "1.2.3.40", 100_000) == 0
    for path, mode in ((directory / "1.2.3.40.dcm", 0o600), (directory, 0o700), (tmp_path / "new", 0o700)):
        got = stat.S_IMODE(os.stat(path).st_mode)
        assert got & 0o077 == 0 and got & mode == mode & ~_umask(), (path, oct(got))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_file_spool_creates_private_temporary_files(tmp_path):
    storage = DirectoryStorage(str(tmp_path), implementation_class_uid="1.2.3")
    spool = FileSpool(storage, storage.path_for("1.2.3.41"), b"HEAD")
    spool.write(bytes(FileSpool.FLUSH_BYTES))
    (part,) = list(tmp_path.iterdir())
    assert stat.S_IMODE(part.stat().st_mode) & 0o077 == 0
    spool.discard()


# ---------------------------------------------------------------- connections, records


def test_connections_past_max_connections_are_closed_at_once(scp_factory, scp_log):
    handle = scp_factory(**RAW, max_connections=2)
    with _associated(handle.port, C.VERIFICATION_SOP_CLASS) as a, RawClient(handle.port) as b:
        assert _wait_for(lambda: handle.call(lambda: len(handle.scp._connections)) == 2)
        with RawClient(handle.port) as third:
            assert third.wait_closed(2) is not None
        assert handle.scp.refused == 1
        assert any("connections open (max_connections)" in line for line in _lines(scp_log))
        assert a.echo() == 0  # the open ones are served
        b.close()
        assert _wait_for(lambda: handle.call(lambda: len(handle.scp._connections)) == 1)
        with _associated(handle.port, C.VERIFICATION_SOP_CLASS) as again:
            assert again.echo() == 0


def test_max_connections_config(tmp_path):
    cfg = tmp_path / "scp.yaml"
    cfg.write_text("max_connections: 0\n")
    with pytest.raises(ConfigError, match=r"scp\.yaml:1: max_connections must be an integer 1-1000000"):
        SCPConfig.from_yaml(cfg)
    assert SCPConfig().max_connections == 2048


def test_records_of_stored_files_are_bounded(monkeypatch):
    """Directory and discard storage: ``stored`` lists the recent instances only (the files are the store)."""
    from dicomconf.scp import server as server_module
    from dicomconf.scp.server import ReferenceSCP

    monkeypatch.setattr(server_module, "RECORDS_KEPT", 5)
    scp = ReferenceSCP(SCPConfig(port=0, storage="discard"))
    for i in range(23):
        scp._record(_instance(f"1.2.3.{i}", 0))
    assert len(scp.stored) <= 10 and scp.stored[-1].sop_instance_uid == "1.2.3.22"


# ---------------------------------------------------------------- A-ABORT reasons: sent, and documented


def test_command_set_over_64_kib_is_aborted_with_reason_0(scp_factory):
    handle = scp_factory(**RAW)
    chunk = PDataTF((PDV(1, C.MCH_COMMAND, bytes(16000)),)).encode()
    with _associated(handle.port) as client:
        for _ in range(5):
            client.send(chunk)
        assert abort_fields(client.recv_pdu(timeout=3)) == (C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_NOT_SPECIFIED)


def test_data_set_fragment_before_a_command_is_aborted_with_reason_5(scp_factory):
    handle = scp_factory(**RAW)
    with _associated(handle.port) as client:
        client.send(PDataTF((PDV(1, C.MCH_LAST, bytes(10)),)).encode())
        assert abort_fields(client.recv_pdu(timeout=3)) == (C.ABORT_SOURCE_PROVIDER,
                                                            C.ABORT_REASON_UNEXPECTED_PARAMETER)


def test_idle_association_is_aborted_by_the_service_user_with_reason_0(scp_factory):
    handle = scp_factory(**RAW, idle_timeout=0.3)
    with _associated(handle.port) as client:
        assert abort_fields(client.recv_pdu(timeout=3)) == (C.ABORT_SOURCE_USER, C.ABORT_REASON_NOT_SPECIFIED)


def _reasons_in_code() -> set[int]:
    """Every A-ABORT reason the core's receive path and the SCP can produce, read from their source."""
    names = set()
    for path in [*(REPO / "dicomconf" / "ul").glob("*.py"), *(REPO / "dicomconf" / "scp").glob("*.py")]:
        if path.name == "constants.py":
            continue
        names |= set(re.findall(r"\bC\.(ABORT_REASON_[A-Z_]+)", path.read_text()))
    return {getattr(C, name) for name in names}


def _reasons_documented() -> set[int]:
    text = (REPO / "docs" / "scp.md").read_text()
    section = text.split("<!-- abort-reasons -->")[1].split("<!-- /abort-reasons -->")[0]
    return {int(n) for n in re.findall(r"^\s*\| (\d) \|", section, re.MULTILINE)}


def test_docs_list_every_abort_reason_the_server_sends():
    """docs/scp.md's table of A-ABORT reasons is the set the code can send, no more, no fewer."""
    assert _reasons_in_code() == _reasons_documented() == {0, 1, 2, 5, 6}
