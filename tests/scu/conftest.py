"""Peers for the SCU's tests, all on 127.0.0.1 and free ports; every one is stopped at teardown.

- ``pynetdicom_scp``: a pynetdicom AE started in-process (``start_server(block=False)``),
  recording what it saw.
- ``tiny_server``: a one-connection TCP server running a scripted handler in a thread.
- ``dcmtk_storescp``: DCMTK's ``/usr/bin/storescp`` in a subprocess, stopped by its pid.
- ``tls_pair``: a self-signed certificate and the server / client SSL contexts.
"""

from __future__ import annotations

import os
import socket
import ssl
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

from dicomconf.scenario.certs import self_signed

STORESCP = "/usr/bin/storescp"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"peer exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout} s")


# ---------------------------------------------------------------- pynetdicom


@dataclass
class PynetdicomPeer:
    port: int
    ae: object
    server: object
    stored: list = field(default_factory=list)
    events: list = field(default_factory=list)
    seen: threading.Condition = field(default_factory=threading.Condition)

    def note(self, name: str, value: object = None) -> None:
        with self.seen:
            self.events.append((name, value))
            self.seen.notify_all()

    def wait_for(self, name: str, timeout: float = 5.0) -> bool:
        with self.seen:
            return self.seen.wait_for(lambda: any(n == name for n, _ in self.events), timeout)


@pytest.fixture
def pynetdicom_scp():
    """Start pynetdicom SCPs (Verification, CT and MR storage; called AE checked)."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification

    peers: list[PynetdicomPeer] = []

    def start(
        *, ae_title: str = "ANY-SCP", max_pdu: int = 16382, artim: float = 10, ssl_context: ssl.SSLContext | None = None
    ):
        ae = AE(ae_title=ae_title)
        for sop in (Verification, CTImageStorage, MRImageStorage):
            ae.add_supported_context(sop)
        ae.require_called_aet = True
        ae.maximum_pdu_size = max_pdu
        ae.dimse_timeout = ae.network_timeout = 10
        ae.acse_timeout = artim  # pynetdicom's ARTIM
        peer = PynetdicomPeer(0, ae, None)

        def on_store(event):
            peer.stored.append(event.dataset)
            return 0x0000

        handlers = [
            (evt.EVT_C_STORE, on_store),
            (evt.EVT_ABORTED, lambda e: peer.note("aborted")),
            (evt.EVT_RELEASED, lambda e: peer.note("released")),
            (evt.EVT_CONN_CLOSE, lambda e: peer.note("conn-close")),
        ]
        peer.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers, ssl_context=ssl_context)
        peer.port = peer.server.server_address[1]
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.server.shutdown()


# ---------------------------------------------------------------- scripted TCP peer


class Peer:
    """The server side of one accepted connection, as a tiny server's handler sees it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv_exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError(f"peer closed after {len(out)} of {n} bytes")
            out += chunk
        return out

    def recv_pdu(self) -> bytes:
        head = self.recv_exactly(6)
        return head + self.recv_exactly(int.from_bytes(head[2:6], "big"))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reset(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class TinyServer:
    """Accepts one connection on 127.0.0.1 and runs ``handler(Peer)`` on it in a thread."""

    def __init__(self, handler, ssl_context: ssl.SSLContext | None = None) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.handler = handler
        self.ssl_context = ssl_context
        self.result: object = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            conn.settimeout(10)
            if self.ssl_context is not None:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
            with conn:
                self.result = self.handler(Peer(conn))
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float = 10.0) -> object:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError("tiny server handler still running")
        if self.error is not None:
            raise self.error
        return self.result

    def stop(self) -> None:
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def tiny_server():
    servers: list[TinyServer] = []

    def start(handler, ssl_context: ssl.SSLContext | None = None) -> TinyServer:
        server = TinyServer(handler, ssl_context)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------- DCMTK


@dataclass
class DcmtkPeer:
    port: int
    directory: str
    proc: subprocess.Popen
    aet: str


@pytest.fixture
def dcmtk_storescp(tmp_path):
    """Start DCMTK storescp (TCP_NODELAY=1) writing into a temporary directory; stopped by pid."""
    if not os.path.exists(STORESCP):
        pytest.skip(f"DCMTK storescp not installed at {STORESCP}")
    procs: list[subprocess.Popen] = []

    def start(*, aet: str = "STORE-SCP", max_pdu: int = 16384) -> DcmtkPeer:
        port = free_port()
        out = tmp_path / f"dcmtk-{port}"
        out.mkdir()
        env = dict(os.environ, TCP_NODELAY="1")
        proc = subprocess.Popen(
            [STORESCP, "-aet", aet, "-pdu", str(max_pdu), "-od", str(out), str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        wait_listening(port, proc)
        return DcmtkPeer(port, str(out), proc, aet)

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


# ---------------------------------------------------------------- TLS


@dataclass
class TLSPair:
    server: ssl.SSLContext
    client: ssl.SSLContext
    cert: str
    key: str


@pytest.fixture(scope="session")
def tls_pair(tmp_path_factory) -> TLSPair:
    """A self-signed certificate for 127.0.0.1 and the contexts that use and trust it."""
    cert_path, key_path = self_signed(tmp_path_factory.mktemp("tls"))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=cert_path)
    return TLSPair(server, client, cert_path, key_path)
