"""Shared pieces of the reference SCP benchmarks: servers as subprocesses, a fast raw client."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from dicomconf.ul import constants as C  # noqa: E402
from dicomconf.ul import dimse  # noqa: E402
from dicomconf.ul.items import ImplementationClassUID, MaximumLength, PresentationContextRQ, UserInformation  # noqa: E402
from dicomconf.ul.pdu import AAssociateRQ, AReleaseRQ  # noqa: E402

STORESCP = "/usr/bin/storescp"
STORESCU = "/usr/bin/storescu"
ECHOSCU = "/usr/bin/echoscu"
CT = "1.2.840.10008.5.1.4.1.1.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Server:
    """A server subprocess on 127.0.0.1, stopped by its own process id."""

    def __init__(self, argv: list[str], port: int, env: dict | None = None, cwd: str | None = None) -> None:
        self.port = port
        self.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=cwd,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(port)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# Runs dicomconf.cli from the source tree in argv[1] instead of the installed (editable) package.
_FROM_TREE = (
    "import runpy, sys; tree = sys.argv.pop(1); "
    "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
    "sys.path.insert(0, tree); runpy.run_module('dicomconf.cli', run_name='__main__', alter_sys=True)"
)


def dicomconf_scp(port: int, *extra: str, config: str | None = None, tree: str | None = None) -> Server:
    """``dicomconf scp``; with ``tree``, the code of that source tree (e.g. ``git archive`` of a commit)."""
    runner = ["-m", "dicomconf.cli"] if tree is None else ["-c", _FROM_TREE, os.path.abspath(tree)]
    argv = [sys.executable, *runner, "scp", "--port", str(port), *extra]
    if config:
        argv += ["--config", config]
    return Server(argv, port)


def pynetdicom_echoscp(port: int) -> Server:
    return Server([sys.executable, "-m", "pynetdicom", "echoscp", str(port), "-ba", "127.0.0.1"], port)


def dcmtk_storescp(port: int, directory: str | None = None, max_pdu: int | None = None) -> Server:
    argv = [STORESCP, "-aet", "DICOMCONF"]
    if max_pdu:
        argv += ["-pdu", str(max_pdu)]
    if directory:
        argv += ["-od", directory]
    else:
        argv += ["--ignore"]
    return Server(argv + [str(port)], port, env={"TCP_NODELAY": "1"})


def associate_rq(contexts=((1, C.VERIFICATION_SOP_CLASS, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),), max_pdu=16384) -> bytes:
    pcs = tuple(PresentationContextRQ(cid, a, tuple(ts)) for cid, a, ts in contexts)
    ui = UserInformation((MaximumLength(max_pdu), ImplementationClassUID("1.2.3.4")))
    return AAssociateRQ("DICOMCONF", "BENCHSCU", pcs, ui).encode()


ECHO_RQ = b"".join(dimse.fragment(dimse.c_echo_rq(1), 16384))
RELEASE_RQ = AReleaseRQ().encode()


class Reader:
    """Reads whole PDUs from a blocking socket."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def pdu(self) -> tuple[int, bytes]:
        buf = self.buf
        while len(buf) < 6:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        pdu_type, _, length = struct.unpack_from(">BBI", buf)
        while len(buf) < 6 + length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        body = bytes(buf[6 : 6 + length])
        del buf[: 6 + length]
        return pdu_type, body


def echo_cycle(port: int, rq: bytes) -> None:
    """Connect, associate, C-ECHO, release, close: one raw-socket cycle with pre-encoded PDUs."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    r = Reader(sock)
    try:
        sock.sendall(rq)
        t, _ = r.pdu()
        if t != C.A_ASSOCIATE_AC:
            raise RuntimeError(f"association not accepted (PDU {t:#04x})")
        sock.sendall(ECHO_RQ)
        while True:
            t, body = r.pdu()
            if t != C.P_DATA_TF:
                raise RuntimeError(f"expected P-DATA-TF, got {t:#04x}")
            if body[5] & 0x03 == 0x03:  # last command fragment
                break
        sock.sendall(RELEASE_RQ)
        t, _ = r.pdu()
        if t != C.A_RELEASE_RP:
            raise RuntimeError(f"expected A-RELEASE-RP, got {t:#04x}")
    finally:
        sock.close()


def tmpdir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix)


def rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
