"""What ``dicomconf proxy`` costs: C-STORE throughput and C-ECHO round trip, through it and direct.

Theory of operation
-------------------
The reference SCP (``dicomconf scp --storage discard``) and the proxy
(``dicomconf proxy``, its report in a temporary directory) run as processes on
127.0.0.1; a raw blocking-socket SCU (pre-encoded PDUs, no DICOM work of its
own in the timed part) plays, in alternating rounds, the same work direct to
the SCP and through the proxy:

- store: one association, ``--stores`` (100) C-STOREs of a 1 MiB CT data set
  (implicit VR little endian), each waiting for its response (PS3.7 9.3.1);
  throughput ratio = direct time / proxied time (goal >= 0.8);
- echo: one association, ``--echoes`` C-ECHOs one after the other; the
  median round trip through the proxy minus the median direct (goal <= 200 us).

Prints a markdown table: per round and the median and spread (min-max).
Every process it starts it stops by its pid.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import generate_uid

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.items import ImplementationClassUID, MaximumLength, PresentationContextRQ, UserInformation
from dicomconf.ul.pdu import AAssociateRQ, AReleaseRQ

CT = "1.2.840.10008.5.1.4.1.1.2"
IVRLE = C.IMPLICIT_VR_LITTLE_ENDIAN
MAX_PDU = 16382


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


class Client:
    """A blocking SCU speaking pre-encoded PDUs."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        pcs = (PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (IVRLE,)), PresentationContextRQ(3, CT, (IVRLE,)))
        ui = UserInformation((MaximumLength(MAX_PDU), ImplementationClassUID("1.2.3.4")))
        self.sock.sendall(AAssociateRQ("DICOMCONF", "BENCH", pcs, ui).encode())
        kind, _ = self.pdu()
        assert kind == C.A_ASSOCIATE_AC, kind

    def pdu(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 6:
                kind, length = struct.unpack_from(">BxI", self.buf)
                if len(self.buf) >= 6 + length:
                    body = bytes(self.buf[6 : 6 + length])
                    del self.buf[: 6 + length]
                    return kind, body
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def exchange(self, stream: bytes) -> None:
        """Send a request; read until the last fragment of the response's command."""
        self.sock.sendall(stream)
        while True:
            kind, body = self.pdu()
            assert kind == C.P_DATA_TF, kind
            if body[5] & 0x03 == 0x03:  # command, last fragment (PS3.8 E.2)
                return

    def release(self) -> None:
        self.sock.sendall(AReleaseRQ().encode())
        self.pdu()
        self.sock.close()


INSTANCE = generate_uid()


def _dataset_bytes(size: int) -> bytes:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT, INSTANCE
    ds.PatientName, ds.PatientID, ds.Modality = "BENCH^PROXY", "BENCH", "CT"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 512, size // 1024, 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation, ds.PhotometricInterpretation = 1, 0, "MONOCHROME2"
    ds.PixelData = bytes(range(256)) * (size // 256)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    return fp.getvalue()


def store_round(port: int, streams: list[bytes]) -> float:
    c = Client(port)
    t0 = time.perf_counter()
    for s in streams:
        c.exchange(s)
    took = time.perf_counter() - t0
    c.release()
    return took


def echo_round(port: int, n: int) -> float:
    c = Client(port)
    stream = b"".join(dimse.fragment(dimse.c_echo_rq(1, context_id=1), MAX_PDU))
    for _ in range(20):
        c.exchange(stream)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.exchange(stream)
        times.append(time.perf_counter() - t0)
    c.release()
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stores", type=int, default=100)
    ap.add_argument("--size", type=int, default=1 << 20, help="bytes of pixel data per C-STORE")
    ap.add_argument("--echoes", type=int, default=500)
    ap.add_argument("--proxy-args", default="", help="extra options for dicomconf proxy (e.g. --no-data-set-checks)")
    args = ap.parse_args()
    data = _dataset_bytes(args.size)
    streams = [b"".join(dimse.fragment(dimse.c_store_rq(i + 1, CT, INSTANCE, context_id=3, data=data),
                                       MAX_PDU)) for i in range(args.stores)]
    scp_port = _free_port()
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            scp = subprocess.Popen([sys.executable, "-m", "dicomconf.cli", "scp", "--port", str(scp_port),
                                    "--storage", "discard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(scp)
            _wait_port(scp_port)
            px = subprocess.Popen([sys.executable, "-m", "dicomconf.cli", "proxy", "--listen", "127.0.0.1:0",
                                   "--to", f"127.0.0.1:{scp_port}", "--report-dir", os.path.join(tmp, "rep"), "-q",
                                   *args.proxy_args.split()], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
            procs.append(px)
            line = px.stdout.readline()
            px_port = int(line.split("listening on ")[1].split(",")[0].rsplit(":", 1)[1])
            rows = []
            for r in range(args.rounds):
                direct = store_round(scp_port, streams)
                proxied = store_round(px_port, streams)
                e_direct = echo_round(scp_port, args.echoes)
                e_proxied = echo_round(px_port, args.echoes)
                if r % 2:  # alternate which goes first
                    proxied2 = store_round(px_port, streams)
                    direct2 = store_round(scp_port, streams)
                    direct, proxied = (direct + direct2) / 2, (proxied + proxied2) / 2
                rows.append((direct, proxied, e_direct, e_proxied))
        finally:
            for p in procs:
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait()
    mib = args.stores * len(data) / (1 << 20)
    print(f"proxy benchmark: {args.stores} x {len(data) / (1 << 20):.2f} MiB C-STORE, {args.echoes} C-ECHOs per "
          f"round, {args.rounds} rounds, load {os.getloadavg()[0]:.2f}; proxy options: {args.proxy_args or '(none)'}\n")
    print("| round | store direct (s) | store via proxy (s) | throughput ratio | echo direct (us) | echo via proxy (us) | added (us) |")
    print("|---|---|---|---|---|---|---|")
    ratios, added = [], []
    for i, (d, p, ed, ep) in enumerate(rows, 1):
        ratios.append(d / p)
        added.append((ep - ed) * 1e6)
        print(f"| {i} | {d:.3f} ({mib / d:.0f} MiB/s) | {p:.3f} ({mib / p:.0f} MiB/s) | {d / p:.2f} | "
              f"{ed * 1e6:.0f} | {ep * 1e6:.0f} | {(ep - ed) * 1e6:.0f} |")
    print(f"| median (min-max) | | | {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | | | "
          f"{statistics.median(added):.0f} ({min(added):.0f}-{max(added):.0f}) |")
    print(f"\ngoals: throughput ratio >= 0.8: {'met' if statistics.median(ratios) >= 0.8 else 'not met'}; "
          f"added echo round trip <= 200 us: {'met' if statistics.median(added) <= 200 else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
