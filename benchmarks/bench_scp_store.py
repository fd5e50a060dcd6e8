"""100 x 1 MiB C-STORE: the reference SCP against DCMTK's storescp, and into memory.

* DCMTK ``storescu`` (TCP_NODELAY=1) sends the same 100 files, one
  association, to (a) dicomconf writing Part 10 files into a directory,
  (b) DCMTK ``storescp -od`` writing into a directory on the same filesystem,
  (c) dicomconf keeping them in memory; dicomconf runs on asyncio's own
  event loop and, when uvloop is installed, again on uvloop.  Wall time of storescu, every round
  reported.  Twice: each server with its default maximum PDU (dicomconf
  16382, DCMTK 16384), then both with 131072 (DCMTK's largest).
* Before each run the page cache is synced (``os.sync``): otherwise a run
  that follows 100 MiB of fresh writes is throttled by the kernel's dirty-page
  writeback and measures the disk, not the server.
* A raw-socket client sends pre-encoded P-DATA-TF PDUs (one C-STORE-RQ of
  1 MiB, repeated) to dicomconf's memory storage (every data set kept, as
  ``ReferenceSCP.stored``) and, for comparison, to its discard storage: the
  SCP's own receive rate, without storescu's file reading in the way.

    python benchmarks/bench_scp_store.py [--rounds 3] [--count 100]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time

from bench_scp_common import (
    CT,
    STORESCU,
    Reader,
    associate_rq,
    dcmtk_storescp,
    dicomconf_scp,
    free_port,
    rmtree,
    tmpdir,
)

from dicomconf.ul import constants as C
from dicomconf.ul import dimse

DCMTK_MAX_PDU = 131072  # the largest maximum PDU DCMTK's storescp accepts for -pdu

MIB = 1 << 20


def make_files(directory: str, count: int) -> list[str]:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "scp"))
    from scp_testkit import make_dataset, write_part10

    paths = []
    for i in range(count):
        path = os.path.join(directory, f"{i:03d}.dcm")
        write_part10(make_dataset(i, size=MIB), path)
        paths.append(path)
    return paths


def run_storescu(port: int, files: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([STORESCU, "-aec", "DICOMCONF", "-xe", "127.0.0.1", str(port), *files],
                   env={**os.environ, "TCP_NODELAY": "1"}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def count_files(directory: str) -> int:
    return sum(len(files) for _, _, files in os.walk(directory))


def raw_store_rate(port: int, count: int, max_pdu: int) -> float:
    """MiB/s of ``count`` 1 MiB C-STOREs sent as pre-encoded PDUs of the SCP's announced size."""
    rq = associate_rq(contexts=((1, CT, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),))
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = Reader(sock)
    sock.sendall(rq)
    pdu_type, body = reader.pdu()
    assert pdu_type == C.A_ASSOCIATE_AC
    payload = bytes(MIB)
    messages = [
        b"".join(dimse.fragment(dimse.c_store_rq(i + 1, CT, f"1.2.3.{i + 1}", data=payload), max_pdu))
        for i in range(count)
    ]
    start = time.perf_counter()
    for message in messages:
        sock.sendall(message)
        while True:
            pdu_type, body = reader.pdu()
            if body[5] & 3 == 3:
                break
        status = dimse.decode_command(body[6:]).Status
        if status != 0:
            raise SystemExit(f"C-STORE answered {status:04X}")
    elapsed = time.perf_counter() - start
    sock.close()
    return count / elapsed  # each store is 1 MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=100)
    args = parser.parse_args()
    src = tmpdir("bench-scp-src-")
    try:
        files = make_files(src, args.count)
        rows: dict[str, list[float]] = {}
        kinds = ["dicomconf -> directory", "DCMTK storescp -> directory", "dicomconf -> memory"]
        if importlib.util.find_spec("uvloop") is not None:
            kinds += ["dicomconf uvloop -> directory", "dicomconf uvloop -> memory"]
        names = [(name, pdu) for pdu in (None, DCMTK_MAX_PDU) for name in kinds]
        for r in range(args.rounds):
            for name, pdu in names if r % 2 == 0 else names[::-1]:  # alternate the order between rounds
                out = tempfile.mkdtemp(prefix="bench-scp-out-", dir=os.path.dirname(src))
                os.sync()  # start each run with no dirty pages, so no run pays for another's writeback
                port = free_port()
                if name.startswith("DCMTK"):
                    server = dcmtk_storescp(port, out, pdu)
                else:
                    cfg = os.path.join(out, "scp.yaml")
                    with open(cfg, "w") as f:
                        # every data set kept, however many: the memory storage's cap is not what is measured
                        # storage throughput as before the index: the index's cost is measured on its own
                        f.write(f"max_pdu_length: {pdu or 16382}\nmemory_storage_limit: null\nindex: none\n")
                    kind = "directory" if name.endswith("directory") else "memory"
                    loop = "uvloop" if "uvloop" in name else "asyncio"
                    server = dicomconf_scp(port, "--storage", kind, "--storage-dir", os.path.join(out, "files"),
                                           "--event-loop", loop, config=cfg)
                with server:
                    elapsed = run_storescu(port, files)
                stored = count_files(out) - (0 if name.startswith("DCMTK") else 1)
                rmtree(out)
                if name.endswith("directory") and stored != args.count:
                    raise SystemExit(f"{name}: {stored} files stored, expected {args.count}")
                label = f"{name} (max PDU {pdu or 'default'})"
                rows.setdefault(label, []).append(elapsed)
                print(f"round {r + 1}: {label:50s} {elapsed:6.3f} s  {args.count / elapsed:7.1f} MiB/s", flush=True)
            for kind in ("memory", "discard"):
                for max_pdu in (16382, MIB):
                    cfg = os.path.join(src, f"{kind}-{max_pdu}.yaml")
                    with open(cfg, "w") as f:
                        f.write(f"storage: {kind}\nmax_pdu_length: {max_pdu}\nmemory_storage_limit: null\n"
                                + ("index: none\n" if kind == "memory" else ""))
                    with dicomconf_scp(port := free_port(), "--event-loop", "asyncio", config=cfg):
                        rate = raw_store_rate(port, args.count, max_pdu)
                    key = f"raw client -> {kind}, PDU {max_pdu}"
                    rows.setdefault(key, []).append(rate)
                    print(f"round {r + 1}: {key:30s} {rate:7.1f} MiB/s", flush=True)
        print()
        for name, values in rows.items():
            unit = "MiB/s" if name.startswith("raw") else "s"
            print(f"{name:55s} " + ", ".join(f"{v:.3f} {unit}" for v in values))
    finally:
        rmtree(src)


if __name__ == "__main__":
    main()
