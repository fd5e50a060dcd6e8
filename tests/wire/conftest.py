"""Fixtures for the wire tests: a recording TCP relay, a pynetdicom SCP, tshark."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import pytest

from dicomconf.wire.capture import Conversation

TSHARK = shutil.which("tshark")


class Relay:
    """A loopback TCP relay that records every connection through it as a Conversation.

    Both halves are pumped by their own thread; each chunk is recorded with
    the time it was read, before it is forwarded, so the recorded order is the
    order the bytes crossed the relay.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conversations: list[Conversation] = []
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._closing:
            try:
                client, addr = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conv = Conversation(addr[:2], ("127.0.0.1", self.port))
            conv.opened()
            self.conversations.append(conv)
            lock = threading.Lock()
            closed: list[str] = []
            for src, dst, side in ((client, server, "client"), (server, client, "server")):
                t = threading.Thread(target=self._pump, args=(src, dst, side, conv, lock, closed), daemon=True)
                t.start()
                self._threads.append(t)

    @staticmethod
    def _pump(src, dst, side, conv, lock, closed) -> None:
        record = conv.client_sent if side == "client" else conv.server_sent
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                with lock:
                    if not closed:
                        conv.closed(side)
                    closed.append(side)
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with lock:
                record(data)
            try:
                dst.sendall(data)
            except OSError:
                return

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every connection has been closed by both sides."""
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        self._closing = True
        self.listener.close()
        self.wait_idle(5)


@pytest.fixture
def relay_factory():
    relays: list[Relay] = []

    def make(upstream_port: int) -> Relay:
        r = Relay(upstream_port)
        relays.append(r)
        return r

    yield make
    for r in relays:
        r.close()


@pytest.fixture
def pynetdicom_scp():
    """A pynetdicom Verification + Storage SCP on a free loopback port, small max PDU; stopped after the test."""
    pynetdicom = pytest.importorskip("pynetdicom")
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage, Verification

    ae = AE(ae_title="PYNETSCP")
    ae.maximum_pdu_size = 2048
    ae.add_supported_context(Verification)
    ae.add_supported_context(CTImageStorage)
    received = []

    def on_store(event):
        received.append(event.dataset)
        return 0x0000

    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    server.received = received
    yield server
    server.shutdown()
    del pynetdicom


def ct_dataset(size: int = 9000):
    """A small CT Image Storage data set whose pixel data needs several P-DATA-TF at 2 KiB."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Wire^Test"
    ds.PatientID = "W1"
    ds.Rows, ds.Columns = 1, size // 2
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation = 1, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(256)) * (size // 256) + bytes(size % 256)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def pynetdicom_session(port: int, stores: int = 1) -> None:
    """Associate, C-ECHO, C-STORE ``stores`` times, release — pynetdicom's SCU."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification

    ae = AE(ae_title="PYNETSCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="PYNETSCP")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0
    for _ in range(stores):
        assert assoc.send_c_store(ct_dataset()).Status == 0
    assoc.release()


@pytest.fixture(scope="session")
def tshark() -> str:
    if TSHARK is None:
        pytest.skip("tshark is not installed")
    return TSHARK


def run_tshark(tshark: str, *args: str) -> str:
    proc = subprocess.run([tshark, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
