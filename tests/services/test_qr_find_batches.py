"""A large C-FIND through the reference SCP: framing, the event loop kept free, C-CANCEL between batches.

The SCP writes pending C-FIND-RSPs a batch at a time and lets its event loop
run between batches (dicomconf.scp.service_driver): another association's
C-ECHO is answered during a 10,000-match C-FIND, and a C-CANCEL-RQ that
arrives with the C-FIND-RQ ends it with Cancel (FE00) after the first batch
(PS3.7 9.3.2.3).  Each pending is one P-DATA-TF with a command PDV and a data
PDV, never longer than the requestor's Maximum Length (PS3.8 9.3.5, D.1.1);
a Maximum Length too small for that gives fragmented responses instead.
All on 127.0.0.1, a raw client reading PDUs as they come.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import types

import pytest
from pydicom import Dataset

from dicomconf.scp.service_driver import BATCH
from dicomconf.services.index import Index
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.dimse_codec import read_command
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateRQ

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
EXPLICIT = "1.2.840.10008.1.2.1"
STUDIES = 10_000


class RawClient:
    """One association with Study Root FIND (context 1) and Verification (context 3), PDUs read whole."""

    def __init__(self, port: int, max_pdu: int = 16384) -> None:
        contexts = (PresentationContextRQ(1, STUDY_ROOT_FIND, (EXPLICIT,)),
                    PresentationContextRQ(3, C.VERIFICATION_SOP_CLASS, (C.IMPLICIT_VR_LITTLE_ENDIAN,)))
        info = UserInformation((MaximumLength(max_pdu), ImplementationClassUID("1.2.826.0.1.3680043.10.1")))
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.sock.sendall(AAssociateRQ("DICOMCONF", "BATCHSCU", contexts, info).encode())
        assert self.pdu()[0] == C.A_ASSOCIATE_AC

    def pdu(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 6:
                end = 6 + int.from_bytes(self.buf[2:6], "big")
                if len(self.buf) >= end:
                    pdu = bytes(self.buf[:end])
                    del self.buf[:end]
                    return pdu[0], pdu[6:]
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def request(self, context: int, field: int, message_id: int, sop_class: str, data: bytes | None = None) -> bytes:
        command = Dataset()
        command.AffectedSOPClassUID = sop_class
        command.CommandField = field
        command.MessageID = message_id
        if field != dimse.C_ECHO_RQ:
            command.Priority = 0
        command.CommandDataSetType = dimse.NO_DATA_SET if data is None else dimse.DATA_SET_PRESENT
        return b"".join(dimse.fragment(dimse.Message(context, command, data), 16384))

    def responses(self, on_first=None):
        """Read to the final response: (pending count, final status, PDU sizes, PDVs per pending PDU)."""
        pendings, sizes, pdvs_per_pdu, command = 0, [], [], bytearray()
        while True:
            kind, body = self.pdu()
            assert kind == C.P_DATA_TF
            sizes.append(len(body))
            pos, count = 0, 0
            while pos < len(body):
                length, header = int.from_bytes(body[pos:pos + 4], "big"), body[pos + 5]
                count += 1
                if header & 0x01:
                    command += body[pos + 6:pos + 4 + length]
                    if header & 0x02:
                        status = _status(bytes(command))
                        command.clear()
                        if status not in (0xFF00, 0xFF01):
                            return pendings, status, sizes, pdvs_per_pdu
                        pendings += 1
                        if pendings == 1 and on_first is not None:
                            on_first()
                pos += 4 + length
            pdvs_per_pdu.append(count)

    def close(self) -> None:
        self.sock.close()


def _status(command: bytes) -> int:
    values = read_command(command)  # the core's fast reader; pydicom for anything else
    if values is not None and 0x0900 in values:
        return int(values[0x0900])
    return int(dimse.decode_command(command).Status)


def _identifier(dates: str = "20250101-20251231") -> bytes:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Name*"
    ds.StudyDate = dates
    ds.PatientID = ""
    ds.StudyInstanceUID = ""
    ds.AccessionNumber = ""
    return dimse.encode_dataset(ds, EXPLICIT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scp(tmp_path_factory):
    """``dicomconf scp`` in its own process (its event loop alone in it) over 10,000 synthesized studies."""
    storage = tmp_path_factory.mktemp("batches")
    index_file = str(storage / "index.sqlite")
    index = Index(index_file)
    index.synthesize(STUDIES, 1, 1)
    index.close()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dicomconf.cli", "scp", "--port", str(port), "--ae", "DICOMCONF",
                             "--storage", "directory", "--storage-dir", str(storage), "--index", index_file],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dicomconf scp did not listen: {proc.stderr.read().decode()[-500:]}")
                time.sleep(0.05)
        yield types.SimpleNamespace(port=port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_every_match_one_pdu_under_max_length_and_an_echo_answered_meanwhile(scp):
    finder, echoer = RawClient(scp.port), RawClient(scp.port)
    try:
        t0 = time.perf_counter()
        finder.sock.sendall(finder.request(1, dimse.C_FIND_RQ, 7, STUDY_ROOT_FIND, _identifier()))
        time.sleep(0.02)  # the SCP is answering the C-FIND by now (10,000 matches take longer)
        t1 = time.perf_counter()
        echoer.sock.sendall(echoer.request(3, dimse.C_ECHO_RQ, 1, C.VERIFICATION_SOP_CLASS))
        kind, body = echoer.pdu()
        echo_seconds = time.perf_counter() - t1
        assert kind == C.P_DATA_TF and _status(body[6:]) == 0
        pendings, status, sizes, pdvs = finder.responses()
        find_seconds = time.perf_counter() - t0
    finally:
        finder.close()
        echoer.close()
    assert (pendings, status) == (STUDIES, 0x0000)
    assert max(sizes) <= 16384
    assert pdvs[:-1] == [2] * (len(pdvs) - 1)  # every pending: its command and its identifier in one PDU
    print(f"echo {echo_seconds * 1e3:.1f} ms during a C-FIND of {STUDIES} matches ({find_seconds * 1e3:.1f} ms)")
    # The echo waits for a batch of the C-FIND at most, not for the rest of it (written in one go,
    # the 10,000 pendings held the event loop for about 100 ms here and the echo waited that long).
    assert echo_seconds < find_seconds / 6


def test_c_cancel_with_the_request_ends_it_after_the_first_batch(scp):
    client = RawClient(scp.port)
    try:
        find = client.request(1, dimse.C_FIND_RQ, 9, STUDY_ROOT_FIND, _identifier())
        cancel = Dataset()
        cancel.CommandField = dimse.C_CANCEL_RQ
        cancel.MessageIDBeingRespondedTo = 9
        cancel.CommandDataSetType = dimse.NO_DATA_SET
        client.sock.sendall(find + b"".join(dimse.fragment(dimse.Message(1, cancel), 16384)))
        pendings, status, _, _ = client.responses()
    finally:
        client.close()
    assert status == 0xFE00
    assert 0 < pendings <= BATCH


def test_a_maximum_length_too_small_for_one_pdu_gives_fragments(scp):
    answers = {}
    for max_pdu in (16384, 128):
        client = RawClient(scp.port, max_pdu=max_pdu)
        try:
            client.sock.sendall(client.request(1, dimse.C_FIND_RQ, 3, STUDY_ROOT_FIND, _identifier("20250101-20250103")))
            answers[max_pdu] = client.responses()
        finally:
            client.close()
    pendings, status, sizes, pdvs = answers[128]
    assert status == 0x0000 and pendings == answers[16384][0] > 100
    assert max(sizes) <= 128 and max(pdvs) == 1  # the general path: one fragment per PDU
