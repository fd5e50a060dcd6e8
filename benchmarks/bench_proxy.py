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

Each timed part through the proxy starts once the report of the previous
association is written (the proxy writes it after the fact, in a child
process; ``--overlap`` does not wait, so that work competes with the timed
parts as it would on a busy proxy).  ``--floor`` adds a do-nothing relay (``dicomconf proxy --relay-only``: the same
event loop and sockets, no capture, no checks) to the same rounds, the floor any
relay reaches on this machine; ``--profile FILE`` runs the proxy under cProfile.

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_scp_common import (  # the benchmarks' own port helpers
    free_port,
    wait_listening,
)

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateRQ, AReleaseRQ

CT = "1.2.840.10008.5.1.4.1.1.2"
IVRLE = C.IMPLICIT_VR_LITTLE_ENDIAN
MAX_PDU = 16382


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


def _wait_report(report_dir: str, associations: int, timeout: float = 120) -> float:
    """Seconds until the proxy's report.json counts ``associations`` (each is written after its association)."""
    import json

    t0 = time.monotonic()
    path = os.path.join(report_dir, "report.json")
    while time.monotonic() - t0 < timeout:
        try:
            with open(path, encoding="utf-8") as f:
                if json.load(f)["run"]["proxy"]["associations"] >= associations:
                    break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    return time.monotonic() - t0


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
    ap.add_argument("--overlap", action="store_true",
                    help="do not wait for the proxy's report of an association before the next one (by default "
                         "each timed part starts once the report, written after the fact, is done)")
    ap.add_argument("--floor", action="store_true",
                    help="also measure a do-nothing relay (dicomconf proxy --relay-only: no capture, no checks) "
                         "in the same rounds: what any relay on this machine reaches")
    ap.add_argument("--py-spy", metavar="FILE.txt",
                    help="sample the proxy (all threads) with py-spy during the rounds; collapsed stacks to FILE")
    ap.add_argument("--profile", metavar="FILE.prof",
                    help="run the proxy under cProfile and write its profile here (read it with pstats)")
    args = ap.parse_args()
    data = _dataset_bytes(args.size)
    streams = [b"".join(dimse.fragment(dimse.c_store_rq(i + 1, CT, INSTANCE, context_id=3, data=data),
                                       MAX_PDU)) for i in range(args.stores)]
    scp_port = free_port()
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            scp = subprocess.Popen([sys.executable, "-m", "dicomconf.cli", "scp", "--port", str(scp_port),
                                    "--storage", "discard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(scp)
            wait_listening(scp_port)
            prof = ["-m", "cProfile", "-o", args.profile] if args.profile else []

            def start_proxy(name: str, extra: list[str], pre: list[str]) -> int:
                px = subprocess.Popen([sys.executable, *pre, "-m", "dicomconf.cli", "proxy", "--listen",
                                       "127.0.0.1:0", "--to", f"127.0.0.1:{scp_port}", "--report-dir",
                                       os.path.join(tmp, name), "-q", *extra], stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
                procs.append(px)
                line = px.stdout.readline()
                return int(line.split("listening on ")[1].split(",")[0].rsplit(":", 1)[1])

            px_port = start_proxy("rep", args.proxy_args.split(), prof)
            spy = None
            if args.py_spy:
                spy = subprocess.Popen(["py-spy", "record", "-p", str(procs[-1].pid), "-r", "250", "--threads", "--subprocesses",
                                        "-f", "raw", "-o", args.py_spy], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                time.sleep(1)
            floor_port = start_proxy("floor", ["--relay-only"], []) if args.floor else None
            rows = []
            seen = [0]
            waits: list[float] = []

            def settled(took: float) -> float:
                """After an association through the proxy: wait until its report is written (unless --overlap)."""
                seen[0] += 1
                if not args.overlap:
                    waits.append(_wait_report(os.path.join(tmp, "rep"), seen[0]))
                return took

            for r in range(args.rounds):
                direct = store_round(scp_port, streams)
                proxied = settled(store_round(px_port, streams))
                floor = store_round(floor_port, streams) if floor_port else None
                e_direct = echo_round(scp_port, args.echoes)
                e_proxied = settled(echo_round(px_port, args.echoes))
                e_floor = echo_round(floor_port, args.echoes) if floor_port else None
                if r % 2:  # alternate which goes first
                    floor2 = store_round(floor_port, streams) if floor_port else None
                    proxied2 = settled(store_round(px_port, streams))
                    direct2 = store_round(scp_port, streams)
                    direct, proxied = (direct + direct2) / 2, (proxied + proxied2) / 2
                    floor = (floor + floor2) / 2 if floor_port else None
                rows.append((direct, proxied, e_direct, e_proxied, floor, e_floor))
            if spy is not None:  # stops sampling and writes its file on SIGINT
                os.kill(spy.pid, signal.SIGINT)
                spy.wait(60)
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
    floor_head = " floor ratio | floor added (us) |" if args.floor else ""
    print("| round | store direct (s) | store via proxy (s) | throughput ratio | echo direct (us) | echo via proxy (us) "
          f"| added (us) |{floor_head}")
    print("|---|---|---|---|---|---|---|" + ("---|---|" if args.floor else ""))
    ratios, added, f_ratios, f_added = [], [], [], []
    for i, (d, p, ed, ep, f, ef) in enumerate(rows, 1):
        ratios.append(d / p)
        added.append((ep - ed) * 1e6)
        extra = ""
        if f is not None:
            f_ratios.append(d / f)
            f_added.append((ef - ed) * 1e6)
            extra = f" {d / f:.2f} | {(ef - ed) * 1e6:.0f} |"
        print(f"| {i} | {d:.3f} ({mib / d:.0f} MiB/s) | {p:.3f} ({mib / p:.0f} MiB/s) | {d / p:.2f} | "
              f"{ed * 1e6:.0f} | {ep * 1e6:.0f} | {(ep - ed) * 1e6:.0f} |{extra}")
    extra = ""
    if f_ratios:
        extra = (f" {statistics.median(f_ratios):.2f} ({min(f_ratios):.2f}-{max(f_ratios):.2f}) | "
                 f"{statistics.median(f_added):.0f} ({min(f_added):.0f}-{max(f_added):.0f}) |")
    print(f"| median (min-max) | | | {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | | | "
          f"{statistics.median(added):.0f} ({min(added):.0f}-{max(added):.0f}) |{extra}")
    if waits:
        print(f"\nreport written after each association through the proxy (not timed above): median "
              f"{statistics.median(waits):.2f} s, max {max(waits):.2f} s after it ended")
    print(f"\ngoals: throughput ratio >= 0.8: {'met' if statistics.median(ratios) >= 0.8 else 'not met'}; "
          f"added echo round trip <= 200 us: {'met' if statistics.median(added) <= 200 else 'not met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
