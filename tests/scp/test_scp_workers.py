"""``dicomconf scp --workers N``: one port, a shared association limit, shared storage, no orphans."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from scp_testkit import CT, IVRLE, RELEASE_RQ, RawClient, make_dataset, stored_names

from dicomconf.scp.storage import INDEX_FILE, file_name
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.dimse_codec import encode_dataset
from dicomconf.ul.pdu import decode_pdu

pytestmark = pytest.mark.network

LISTENING = re.compile(r"dicomconf scp listening on 127\.0\.0\.1:(\d+) with (\d+) workers \(pids ([\d, ]+)\)")


class Workers:
    """``dicomconf scp --workers N`` as a subprocess: its port and its workers' pids."""

    def __init__(self, *args: str, workers: int = 2) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dicomconf.cli", "scp", "--port", "0", "--workers", str(workers), *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )
        self.early: list[str] = []
        while True:
            line = self.proc.stderr.readline()
            if not line:
                self.stop()
                raise AssertionError("the server exited before listening:\n" + "".join(self.early))
            self.early.append(line)
            match = LISTENING.search(line)
            if match:
                break
        self.port = int(match.group(1))
        assert int(match.group(2)) == workers
        self.pids = [int(p) for p in match.group(3).split(", ")]
        assert len(set(self.pids)) == workers
        self.err = ""

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Signal the parent by its pid and wait for it and the end of stderr; all of stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, rest = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # the parent, or a worker left behind, still holds stderr
            rest = ""
        self.err = "".join(self.early) + (rest or "")
        return self.err

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.pids:  # a failed test leaves nothing running either
            if _running(pid):
                os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _gone(pids: list[int], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_running(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


def _status(client: RawClient) -> int:
    assembler = dimse.MessageAssembler()
    while True:
        reply = client.recv_pdu()
        assert reply is not None and reply[0] == C.P_DATA_TF, reply
        for msg in assembler.add_pdata(decode_pdu(bytes([reply[0], 0]) + len(reply[1]).to_bytes(4, "big") + reply[1])):
            return msg.status


def _store_once(port: int, index: int) -> str:
    """One association, one C-STORE of a distinct instance, release; its SOP Instance UID."""
    ds = make_dataset(index, size=4096)
    data = encode_dataset(ds, IVRLE)
    with RawClient(port) as client:
        assert client.associate(contexts=((1, CT, (IVRLE,)),))[0] == C.A_ASSOCIATE_AC
        for pdu in dimse.fragment(dimse.c_store_rq(1, CT, ds.SOPInstanceUID, data=data), 16382):
            client.send(pdu)
        assert _status(client) == 0
        client.send(RELEASE_RQ)
        assert client.recv_pdu()[0] == C.A_RELEASE_RP
    return str(ds.SOPInstanceUID)


def _workers_of(err: str, pattern: str) -> set[str]:
    """The worker pids whose log lines match ``pattern``."""
    return set(re.findall(r"worker \d+/\d+ pid (\d+): .*" + pattern, err))


def test_workers_share_one_port_and_every_store_lands_with_its_own_file_and_row(tmp_path):
    store = tmp_path / "store"
    with Workers("--storage", "directory", "--storage-dir", str(store)) as server:
        uids = [_store_once(server.port, i) for i in range(40)]
        err = server.stop()
    assert server.proc.returncode == 0, err
    served = _workers_of(err, r"outcome=released")
    assert served == {str(pid) for pid in server.pids}, err  # both workers accepted on the one port
    assert stored_names(store) == sorted(file_name(uid) for uid in uids)  # 40 files, none temporary
    with sqlite3.connect(store / INDEX_FILE) as db:
        rows = db.execute("SELECT sop_uid, path FROM instance").fetchall()
    assert sorted(rows) == sorted((uid, str(store / file_name(uid))) for uid in uids)


def test_the_association_limit_holds_across_workers(tmp_path):
    cfg = tmp_path / "scp.yaml"
    cfg.write_text("max_associations: 2\nstorage: discard\n")
    with Workers("--config", str(cfg)) as server:
        held = [RawClient(server.port) for _ in range(2)]
        try:
            for client in held:
                assert client.associate()[0] == C.A_ASSOCIATE_AC
            for _ in range(20):  # spread over both workers by the kernel
                with RawClient(server.port) as extra:
                    kind, body = extra.associate()
                    assert kind == C.A_ASSOCIATE_RJ
                    assert (body[2], body[3]) == (C.RJ_SOURCE_PRESENTATION, C.RJ_PRESENTATION_LOCAL_LIMIT_EXCEEDED)
            held[0].send(RELEASE_RQ)
            assert held[0].recv_pdu()[0] == C.A_RELEASE_RP
            held[0].close()
            deadline, accepted = time.monotonic() + 5, False
            while not accepted and time.monotonic() < deadline:  # the slot frees once the server has closed
                with RawClient(server.port) as again:
                    accepted = again.associate()[0] == C.A_ASSOCIATE_AC
                    if accepted:
                        again.send(RELEASE_RQ)
                        again.recv_pdu()
            assert accepted
        finally:
            for client in held:
                client.close()
        err = server.stop()
    rejecting = _workers_of(err, r"outcome=rejected \(rejected-transient, local-limit-exceeded\)")
    assert rejecting == {str(pid) for pid in server.pids}, err  # each worker counted the other's associations


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_parent_signal_stops_every_worker(sig):
    with Workers("--storage", "discard") as server, RawClient(server.port) as client:
        assert client.associate()[0] == C.A_ASSOCIATE_AC
        server.stop(sig)
        assert client.wait_closed(5) is not None
    assert server.proc.returncode == 0, server.err
    assert _gone(server.pids), server.err


def test_workers_do_not_outlive_a_killed_parent():
    with Workers("--storage", "discard") as server:
        server.stop(signal.SIGKILL)
        assert _gone(server.pids)  # PR_SET_PDEATHSIG: the kernel told them


def test_workers_refuse_memory_storage():
    result = subprocess.run([sys.executable, "-m", "dicomconf.cli", "scp", "--port", "0", "--workers", "2"],
                            check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        ("dicomconf scp: <command line>:0: --workers needs directory or discard storage: "
         "memory storage would be one per worker process"),
    ]


def test_workers_on_a_taken_port_fail_in_one_line():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "dicomconf.cli", "scp", "--port", str(port), "--workers", "2",
                                 "--storage", "discard"], check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
