"""Many modalities at once: C clients storing S MiB each, against dicomconf scp, DCMTK and pynetdicom.

An independent asyncio client (this process; every server is a subprocess on
127.0.0.1, stopped by its pid) runs C clients in parallel.  Each repeats, for
``--seconds``, one association: connect, A-ASSOCIATE-RQ, one C-STORE-RQ of an
S MiB CT instance sent as P-DATA-TF PDUs of the Maximum Length the server
announced in its A-ASSOCIATE-AC (PS3.8 D.1.1), A-RELEASE-RQ, close.  The
client reads and writes raw non-blocking sockets with its own minimal PDU
handling (``loop.sock_sendall`` sends the shared data set bytes without a
copy); the PDUs themselves are encoded once, before the clock starts.  Every
store has its own SOP Instance UID (patched into the pre-encoded bytes) and
each client its own patient, study and series, so a directory store writes a
new file and index row every time.

Reported per peer, clients and size: MiB/s and associations/s over the
window, p50 and p99 of an association's latency (connect to A-RELEASE-RP),
errors (anything but a status 0000 and a clean release), associations the
server rejected, the client's CPU (this process, ``resource.getrusage``, in %
of one core: **the client shares the machine's cores with the server**) and
the server's (its process and its children, from /proc).  Peers alternate
within each round (reversed every other round), so the ratios are paired per
round, as in bench_scp_echo.py.

Peers: ``directory`` (``dicomconf scp --storage directory``, its default
index), ``directory-noindex`` (the same with ``--index none``: the files
alone), ``directory-memindex`` (the index in memory, ``--index :memory:``:
what the index file's own writing costs; only when named in ``--peers``),
``discard`` (``--storage discard``), ``directory-wN`` and
``discard-wN`` (the same with ``--workers N``, when ``--workers N`` is
given), ``directory-base`` (``--base-tree DIR``: the directory peer run from
another source tree, e.g. ``git archive`` of the last commit, for a before/after
ratio paired per round), ``dcmtk`` (``storescp -od``, one process, TCP_NODELAY=1),
``dcmtk-fork`` (``storescp --fork -od``), ``dcmtk-ignore`` (``storescp
--ignore``: receives and stores nothing, so dcmtk / dcmtk-ignore is DCMTK's
own cost of writing files; only when named in ``--peers``), ``pynetdicom``
(``python -m pynetdicom storescp -od``; slow, so only in the first
``--pynetdicom-rounds`` rounds, for a third of ``--seconds`` and at the
smallest size only; an association it rejects is counted as rejected, and the
client waits 50 ms before it tries again).
``--echo-clients C`` adds associate + C-ECHO + release at C clients
(associations/s) for each peer.

    python benchmarks/bench_scp_concurrent.py [--clients 8,32,128] [--sizes 1,10] [--seconds 2]
        [--rounds 3] [--peers directory,discard,dcmtk,dcmtk-fork,pynetdicom] [--workers N]
        [--echo-clients 32] [--base-tree DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time

from bench_scp_common import (
    CT,
    ECHO_RQ,
    RELEASE_RQ,
    _FROM_TREE,
    STORESCP,
    Server,
    associate_rq,
    free_port,
)

from dicomconf.ul import constants as C
from dicomconf.ul import dimse

MIB = 1 << 20
ALL_PEERS = ("directory", "directory-noindex", "discard", "dcmtk", "dcmtk-fork", "pynetdicom")
EXTRA_PEERS = ("dcmtk-ignore", "directory-memindex")  # only when named in --peers (see the docstring)
BASE_TREE: str | None = None  # --base-tree: the source tree the directory-base peer runs
ASSOCIATION_TIMEOUT = 30.0  # s: an association that takes longer counts as an error (and ends)
REJECT_PAUSE = 0.05  # s a client waits after an A-ASSOCIATE-RJ before it tries again

# Fixed-length placeholders patched per client and per store (same length, so no length field changes).
UID_TEMPLATE = b"2.25.1000000000000000000000"  # SOP Instance UID: 2.25.1 + 8 run + 4 client + 9 counter
STUDY_TEMPLATE = b"2.25.20000000000000000"  # Study Instance UID: 2.25.2 + 8 run + 4 client + 4
SERIES_TEMPLATE = b"2.25.30000000000000000"
PATIENT_TEMPLATE = b"PAT00000"


# ---------------------------------------------------------------- the messages, encoded once


def dataset_bytes(size: int) -> bytes:
    """An indexable CT instance of ``size`` bytes, implicit VR little endian, with placeholder UIDs."""
    from pydicom import Dataset

    from dicomconf.ul.dimse_codec import encode_dataset

    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = UID_TEMPLATE.decode()
    ds.StudyInstanceUID = STUDY_TEMPLATE.decode()
    ds.SeriesInstanceUID = SERIES_TEMPLATE.decode()
    ds.PatientName = "Bench^Modality"
    ds.PatientID = PATIENT_TEMPLATE.decode()
    ds.Modality = "CT"
    ds.StudyDate = "20261207"
    ds.InstanceNumber = 1
    ds.Rows = ds.Columns = 512
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    head = encode_dataset(ds, C.IMPLICIT_VR_LITTLE_ENDIAN)
    pixels = (size - len(head) - 8) & ~1  # (7FE0,0010) tag and length, implicit VR; an even length
    return head + struct.pack("<HHI", 0x7FE0, 0x0010, pixels) + bytes(pixels)


class StoreStream:
    """The PDUs of one C-STORE at one Maximum Length: a small head patched per store, a shared tail."""

    def __init__(self, data: bytes, max_pdu: int) -> None:
        pdus = dimse.fragment(dimse.c_store_rq(1, CT, UID_TEMPLATE.decode(), data=data), max_pdu)
        cut = 0
        for i, pdu in enumerate(pdus):
            if pdu[11] & 0x01 == 0:  # the first PDU whose (only) PDV is a data set fragment
                cut = i + 1
                break
        self.head = b"".join(pdus[:cut])
        self.tail = memoryview(b"".join(pdus[cut:]))
        assert self.head.count(UID_TEMPLATE) == 2, "the SOP Instance UID must be in the command and the head"


def patched(head: bytes, client: int, run: int, n: int) -> bytes:
    """``head`` with this store's SOP Instance UID and this client's patient, study and series."""
    tag = b"%08d%04d" % (run, client)
    return (head.replace(UID_TEMPLATE, b"2.25.1" + tag + b"%09d" % n)
            .replace(STUDY_TEMPLATE, b"2.25.2" + tag + b"0000")
            .replace(SERIES_TEMPLATE, b"2.25.3" + tag + b"0000")
            .replace(PATIENT_TEMPLATE, b"PAT%05d" % client))


# ---------------------------------------------------------------- the client


class Rejected(Exception):
    """A-ASSOCIATE-RJ."""


class PDUReader:
    """Whole PDUs from a non-blocking socket, on the running loop."""

    __slots__ = ("buf", "loop", "sock")

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock, self.loop, self.buf = sock, loop, bytearray()

    async def pdu(self) -> tuple[int, bytes]:
        buf = self.buf
        while len(buf) < 6 or len(buf) < 6 + int.from_bytes(buf[2:6], "big"):
            chunk = await self.loop.sock_recv(self.sock, 65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            buf += chunk
        length = int.from_bytes(buf[2:6], "big")
        pdu_type, body = buf[0], bytes(buf[6:6 + length])
        del buf[:6 + length]
        return pdu_type, body


def ac_max_length(body: bytes) -> int:
    """Maximum Length (item 51H) of an A-ASSOCIATE-AC's User Information (PS3.8 9.3.3, D.1); 0 when absent."""
    pos = 68  # protocol version, reserved, called, calling, reserved (PS3.8 9.3.3)
    while pos + 4 <= len(body):
        item, length = body[pos], int.from_bytes(body[pos + 2:pos + 4], "big")
        if item == 0x50:
            sub, end = pos + 4, pos + 4 + length
            while sub + 4 <= end:
                kind, sub_len = body[sub], int.from_bytes(body[sub + 2:sub + 4], "big")
                if kind == 0x51:
                    return int.from_bytes(body[sub + 4:sub + 8], "big")
                sub += 4 + sub_len
        pos += 4 + length
    return 0


def command_status(command: bytes) -> int | None:
    """Status (0000,0900) of an implicit VR little endian command set (PS3.7 6.3.1, E.1)."""
    pos = 0
    while pos + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHI", command, pos)
        if (group, element) == (0x0000, 0x0900):
            return int.from_bytes(command[pos + 8:pos + 8 + length], "little")
        pos += 8 + length
    return None


class Tally:
    __slots__ = ("done", "errors", "kinds", "latencies", "rejected")

    def __init__(self) -> None:
        self.done = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.rejected = 0
        self.kinds: dict[str, int] = {}


async def association(loop, port: int, rq: bytes, send, tally: Tally) -> None:
    """One association: connect, associate, ``send(sock, reader, max_length)``, release, close."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        reader = PDUReader(sock, loop)
        await loop.sock_sendall(sock, rq)
        pdu_type, body = await reader.pdu()
        if pdu_type == C.A_ASSOCIATE_RJ:
            raise Rejected()
        if pdu_type != C.A_ASSOCIATE_AC:
            raise RuntimeError(f"PDU {pdu_type:#04x} instead of A-ASSOCIATE-AC")
        await send(sock, reader, ac_max_length(body))
        await loop.sock_sendall(sock, RELEASE_RQ)
        pdu_type, _ = await reader.pdu()
        if pdu_type != C.A_RELEASE_RP:
            raise RuntimeError(f"PDU {pdu_type:#04x} instead of A-RELEASE-RP")
    finally:
        sock.close()


async def read_response(reader: PDUReader) -> None:
    command = bytearray()
    while True:
        pdu_type, body = await reader.pdu()
        if pdu_type != C.P_DATA_TF:
            raise RuntimeError(f"PDU {pdu_type:#04x} instead of P-DATA-TF")
        command += body[6:]
        if body[5] & 0x03 == 0x03:  # the last fragment of a command (PS3.8 E.2)
            break
    status = command_status(bytes(command))
    if status != 0:
        raise RuntimeError(f"status {status:04X}" if status is not None else "no status")


async def client(index: int, port: int, kind: str, data: bytes | None, deadline: float, run: int,
                 streams: dict, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    counter = 0
    ctx = C.VERIFICATION_SOP_CLASS if kind == "echo" else CT
    rq = associate_rq(contexts=((1, ctx, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),))

    async def store(sock, reader, max_length):
        limit = max_length if 0 < max_length <= 1 << 20 else 1 << 20
        stream = streams.get(limit)
        if stream is None:
            stream = streams[limit] = StoreStream(data, limit)  # once per Maximum Length, before the clock
        await loop.sock_sendall(sock, patched(stream.head, index, run, counter))
        await loop.sock_sendall(sock, stream.tail)
        await read_response(reader)

    async def echo(sock, reader, max_length):
        await loop.sock_sendall(sock, ECHO_RQ)
        await read_response(reader)

    work = echo if kind == "echo" else store
    while time.perf_counter() < deadline:
        counter += 1
        start = time.perf_counter()
        try:
            await asyncio.wait_for(association(loop, port, rq, work, tally), ASSOCIATION_TIMEOUT)
        except Rejected:
            tally.rejected += 1
            await asyncio.sleep(REJECT_PAUSE)
            continue
        except Exception as exc:  # noqa: BLE001 - every failure is counted by kind, the run goes on
            tally.errors += 1
            key = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            tally.kinds[key[:80]] = tally.kinds.get(key[:80], 0) + 1
            await asyncio.sleep(REJECT_PAUSE)
            continue
        tally.latencies.append(time.perf_counter() - start)
        tally.done += 1


async def prepare(port: int, kind: str, data: bytes | None, streams: dict, run: int) -> None:
    """Two associations before the clock: the server warm, the PDUs for its Maximum Length encoded."""
    tally = Tally()
    await client(9999, port, kind, data, time.perf_counter() + 0.001, run, streams, tally)
    await client(9998, port, kind, data, time.perf_counter() + 0.001, run, streams, tally)


def cpu_of(pid: int) -> float:
    """CPU seconds of a process, its live descendants and its reaped children (/proc/PID/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                total += sum(cpu_of(int(child)) for child in f.read().split())
    except (OSError, ValueError):
        pass
    return total


def measure(port: int, server_pid: int, kind: str, clients: int, size: int, seconds: float, run: int) -> dict:
    data = dataset_bytes(size) if kind == "store" else None
    streams: dict = {}
    tallies = [Tally() for _ in range(clients)]

    async def main() -> float:
        await prepare(port, kind, data, streams, run)
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(client(i, port, kind, data, deadline, run, streams, t)
                               for i, t in enumerate(tallies)))
        return time.perf_counter() - start

    loop = asyncio.new_event_loop()
    try:
        cpu0, server0 = resource.getrusage(resource.RUSAGE_SELF), cpu_of(server_pid)
        elapsed = loop.run_until_complete(main())
        cpu1, server1 = resource.getrusage(resource.RUSAGE_SELF), cpu_of(server_pid)
    finally:
        loop.close()
    latencies = sorted(x for t in tallies for x in t.latencies)
    done = sum(t.done for t in tallies)
    kinds: dict[str, int] = {}
    for t in tallies:
        for k, v in t.kinds.items():
            kinds[k] = kinds.get(k, 0) + v
    client_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {
        "mib_s": done * size / MIB / elapsed if kind == "store" else 0.0,
        "assoc_s": done / elapsed,
        "p50": percentile(latencies, 0.50) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "errors": sum(t.errors for t in tallies),
        "rejected": sum(t.rejected for t in tallies),
        "kinds": kinds,
        "client_cpu": 100 * client_cpu / elapsed,
        "server_cpu": 100 * (server1 - server0) / elapsed,
        "done": done,
        "elapsed": elapsed,
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


# ---------------------------------------------------------------- the peers


def start_peer(name: str, port: int, out: str, workers: int) -> Server:
    if name.startswith(("directory", "discard")):
        runner = ["-m", "dicomconf.cli"]
        if name.endswith("-base"):
            runner = ["-c", _FROM_TREE, os.path.abspath(BASE_TREE or ".")]
        argv = [sys.executable, *runner, "scp", "--port", str(port)]
        if name.startswith("directory"):
            argv += ["--storage", "directory", "--storage-dir", out]
            if "-noindex" in name:
                argv += ["--index", "none"]
            if "-memindex" in name:
                argv += ["--index", ":memory:"]
        else:
            argv += ["--storage", "discard"]
        if "-w" in name:
            argv += ["--workers", str(workers)]
        return Server(argv, port)
    if name.startswith("dcmtk"):
        argv = [STORESCP, "-aet", "DICOMCONF", "-od", out] + (["--fork"] if name == "dcmtk-fork" else [])
        argv += ["--ignore"] if name == "dcmtk-ignore" else []
        return Server(argv + [str(port)], port, env={"TCP_NODELAY": "1"})
    if name == "pynetdicom":
        return Server([sys.executable, "-m", "pynetdicom", "storescp", str(port), "-ba", "127.0.0.1",
                       "-od", out], port)
    raise SystemExit(f"unknown peer {name!r}; known: {', '.join(ALL_PEERS)}, directory-wN, discard-wN")


def run_cell(name: str, kind: str, clients: int, size: int, seconds: float, workers: int, run: int) -> dict:
    out = tempfile.mkdtemp(prefix="bench-concurrent-")
    try:
        os.sync()  # no run pays for another's dirty pages
        port = free_port()
        with start_peer(name, port, out, workers) as server:
            result = measure(port, server.pid, kind, clients, size * MIB if kind == "store" else 0, seconds, run)
        return result
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ---------------------------------------------------------------- the report


def med(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(med(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def report(results: dict, args, peers: list[str], loads: list[tuple]) -> None:
    print()
    print(f"Command: `python benchmarks/bench_scp_concurrent.py {' '.join(sys.argv[1:])}`; "
          f"{args.rounds} rounds of {args.seconds:g} s per cell (pynetdicom: {args.pynetdicom_rounds} "
          f"round(s) of {max(1.0, args.seconds / 3):g} s, {min(args.sizes)} MiB only); load average (1 min) "
          f"{min(x[0] for x in loads):.2f}-{max(x[0] for x in loads):.2f} during the run; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores. The client shares the cores with "
          f"the server: every figure below is with the client's CPU (shown) on the same machine.")
    for size in args.sizes:
        print(f"\n**{size} MiB C-STORE** (median of rounds, min-max in brackets; p50/p99: latency of an "
              f"association, connect to A-RELEASE-RP, ms; CPU: % of one core; client on the same 2 cores)\n")
        print("| clients | peer | MiB/s | assoc/s | p50 ms | p99 ms | errors | rejected | client CPU % | server CPU % |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for clients in args.clients:
            for peer in peers:
                rows = results.get(("store", size, clients, peer))
                if not rows:
                    continue
                print(f"| {clients} | {peer} | {spread([r['mib_s'] for r in rows])} | "
                      f"{spread([r['assoc_s'] for r in rows])} | {spread([r['p50'] for r in rows], '{:.1f}')} | "
                      f"{spread([r['p99'] for r in rows], '{:.1f}')} | {sum(r['errors'] for r in rows)} | "
                      f"{sum(r['rejected'] for r in rows)} | {spread([r['client_cpu'] for r in rows])} | "
                      f"{spread([r['server_cpu'] for r in rows])} |")
        print(f"\nRatios of MiB/s, paired per round ({size} MiB):\n")
        print("| clients | ratio | per round | median | p99/p50 of the first |")
        print("|---|---|---|---|---|")
        for clients in args.clients:
            for ours, theirs in ratio_pairs(peers):
                a = results.get(("store", size, clients, ours), [])
                if theirs == "best DCMTK":
                    d1 = results.get(("store", size, clients, "dcmtk"), [])
                    d2 = results.get(("store", size, clients, "dcmtk-fork"), [])
                    b = [max(x["mib_s"], y["mib_s"]) for x, y in zip(d1, d2)]
                else:
                    b = [r["mib_s"] for r in results.get(("store", size, clients, theirs), [])]
                pairs = [(x["mib_s"], y) for x, y in zip(a, b) if y > 0]
                if not pairs:
                    continue
                ratios = [x / y for x, y in pairs]
                tails = [r["p99"] / r["p50"] for r in a if r["p50"] > 0]
                print(f"| {clients} | {ours} / {theirs} | {', '.join(f'{r:.2f}x' for r in ratios)} | "
                      f"{med(ratios):.2f}x | {max(tails) if tails else float('nan'):.1f}x (worst round) |")
        for clients in args.clients:
            for peer in peers:
                kinds: dict[str, int] = {}
                for r in results.get(("store", size, clients, peer), []):
                    for k, v in r["kinds"].items():
                        kinds[k] = kinds.get(k, 0) + v
                if kinds:
                    print(f"\nerrors, {size} MiB, {clients} clients, {peer}: {kinds}")
    if args.echo_clients:
        print(f"\n**Associate + C-ECHO + release, {args.echo_clients} clients** (client on the same 2 cores)\n")
        print("| peer | assoc/s | p50 ms | p99 ms | errors | rejected | client CPU % | server CPU % |")
        print("|---|---|---|---|---|---|---|---|")
        for peer in peers:
            rows = results.get(("echo", 0, args.echo_clients, peer))
            if rows:
                print(f"| {peer} | {spread([r['assoc_s'] for r in rows])} | {spread([r['p50'] for r in rows], '{:.2f}')} | "
                      f"{spread([r['p99'] for r in rows], '{:.2f}')} | {sum(r['errors'] for r in rows)} | "
                      f"{sum(r['rejected'] for r in rows)} | {spread([r['client_cpu'] for r in rows])} | "
                      f"{spread([r['server_cpu'] for r in rows])} |")


def ratio_pairs(peers: list[str]) -> list[tuple[str, str]]:
    ours = [p for p in peers if p.startswith("directory")]
    pairs = []
    for p in ours:
        discard = p.replace("directory", "discard")
        if discard in peers:
            pairs.append((p, discard))
        if ("-w" in p or p.endswith(("-base", "-noindex"))) and "discard" in peers:
            pairs.append((p, "discard"))
        if p + "-base" in peers:
            pairs.append((p, p + "-base"))
        if "dcmtk" in peers and "dcmtk-fork" in peers:
            pairs.append((p, "best DCMTK"))
        else:
            pairs += [(p, d) for d in ("dcmtk", "dcmtk-fork") if d in peers]
        if "pynetdicom" in peers:
            pairs.append((p, "pynetdicom"))
    if "dcmtk" in peers and "dcmtk-ignore" in peers:  # the peer's own cost of writing files
        pairs.append(("dcmtk", "dcmtk-ignore"))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda text: [int(x) for x in text.split(",") if x]
    parser.add_argument("--clients", type=ints, default=[8, 32, 128], help="concurrent clients, e.g. 8,32,128")
    parser.add_argument("--sizes", type=ints, default=[1, 10], help="object sizes in MiB, e.g. 1,10")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per cell")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", default=",".join(ALL_PEERS), help=f"of {', '.join(ALL_PEERS)}")
    parser.add_argument("--workers", type=int, default=0,
                        help="also run dicomconf scp --workers N (peers directory-wN, discard-wN)")
    parser.add_argument("--pynetdicom-rounds", dest="pynetdicom_rounds", type=int, default=1)
    parser.add_argument("--echo-clients", dest="echo_clients", type=int, default=32,
                        help="associate + C-ECHO + release at this many clients (0: none)")
    parser.add_argument("--base-tree", dest="base_tree",
                        help="also run the directory peer from this source tree (peer directory-base)")
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    if args.base_tree:
        global BASE_TREE
        BASE_TREE = args.base_tree
        if "directory" in peers:
            peers.insert(peers.index("directory") + 1, "directory-base")
    if args.workers:
        for base in ("discard", "directory"):
            if base in peers:
                peers.insert(peers.index(base) + 1, f"{base}-w{args.workers}")
    if not os.access(STORESCP, os.X_OK):
        peers = [p for p in peers if not p.startswith("dcmtk")]
        print(f"{STORESCP} missing: DCMTK peers left out", flush=True)
    began = time.monotonic()
    run = int(time.time()) % 100_000_000
    results: dict[tuple, list[dict]] = {}
    loads = [os.getloadavg()]
    cells = [("store", size, clients) for size in args.sizes for clients in args.clients]
    if args.echo_clients:
        cells.append(("echo", 0, args.echo_clients))
    for r in range(args.rounds):
        for kind, size, clients in cells:
            order = peers if r % 2 == 0 else peers[::-1]
            for peer in order:
                seconds = args.seconds
                if peer == "pynetdicom":
                    if r >= args.pynetdicom_rounds or (kind == "store" and size != min(args.sizes)):
                        continue
                    seconds = max(1.0, args.seconds / 3)
                run += 1
                res = run_cell(peer, kind, clients, size, seconds, args.workers, run)
                results.setdefault((kind, size, clients, peer), []).append(res)
                loads.append(os.getloadavg())
                what = f"{size} MiB x {clients}" if kind == "store" else f"echo x {clients}"
                print(f"round {r + 1}: {what:14s} {peer:14s} {res['mib_s']:8.1f} MiB/s {res['assoc_s']:8.1f} assoc/s "
                      f"p50 {res['p50']:8.2f} ms p99 {res['p99']:8.2f} ms errors {res['errors']} "
                      f"rejected {res['rejected']} client CPU {res['client_cpu']:.0f}% server CPU "
                      f"{res['server_cpu']:.0f}% load {loads[-1][0]:.2f}"
                      + (f" {res['kinds']}" if res["kinds"] else ""), flush=True)
    report(results, args, peers, loads)
    print(f"\nThe run took {time.monotonic() - began:.0f} s.")


if __name__ == "__main__":
    main()
