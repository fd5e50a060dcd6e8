"""CPU of the reference SCP's own code, without sockets: the driver fed recorded bytes.

A ``_Connection`` of a real ``ReferenceSCP`` gets a stand-in transport that
keeps what is written, and is fed (a) the benchmark client's A-ASSOCIATE-RQ,
C-ECHO-RQ and A-RELEASE-RQ, then loses its connection: microseconds per
association; (b) 100 C-STOREs of 1 MiB in 16382-byte PDUs, delivered in
256 KiB chunks (asyncio's read size), into the discard, memory and directory
backends: milliseconds per 100 MiB.  Timers are scheduled on an event loop
that never runs.  No peer: this is where the time of the socket benchmarks
goes that is ours rather than the kernel's or the event loop's.

    python benchmarks/bench_scp_inprocess.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import tempfile
import time

from bench_scp_common import ECHO_RQ, RELEASE_RQ, associate_rq

from dicomconf.scp.config import SCPConfig
from dicomconf.scp.connection import SCPConnection as _Connection
from dicomconf.scp.server import ReferenceSCP
from dicomconf.ul import constants as C
from dicomconf.ul import dimse

CT = "1.2.840.10008.5.1.4.1.1.2"
READ_SIZE = 256 * 1024


class Transport:
    """Enough of an asyncio transport for the driver."""

    def __init__(self) -> None:
        self.written = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 40000) if name == "peername" else None

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def server(loop, **cfg) -> ReferenceSCP:
    scp = ReferenceSCP(SCPConfig(port=0, index="none", **cfg))  # raw data sets: a storage sink
    scp._loop = loop
    return scp


def echo_us(loop, n: int) -> float:
    scp, rq = server(loop), associate_rq()

    def one() -> None:
        conn = _Connection(scp, False)
        conn.connection_made(Transport())
        conn.data_received(rq)
        conn.data_received(ECHO_RQ)
        conn.data_received(RELEASE_RQ)
        conn.connection_lost(None)

    for _ in range(200):
        one()
    start = time.perf_counter()
    for _ in range(n):
        one()
    elapsed = time.perf_counter() - start
    loop._scheduled.clear()  # the timers the associations left behind
    return elapsed / n * 1e6


def store_ms(loop, kind: str, directory: str) -> float:
    scp = server(loop, storage=kind, storage_dir=directory if kind == "directory" else None)
    conn = _Connection(scp, False)
    conn.connection_made(Transport())
    conn.data_received(associate_rq(contexts=((1, CT, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),)))
    payload = bytes(1 << 20)
    chunks = []
    for i in range(100):
        stream = b"".join(dimse.fragment(dimse.c_store_rq(i + 1, CT, f"1.2.3.{i + 1}", data=payload), 16382))
        chunks += [stream[j : j + READ_SIZE] for j in range(0, len(stream), READ_SIZE)]
    os.sync()
    start = time.perf_counter()
    for chunk in chunks:
        conn.data_received(chunk)
    elapsed = time.perf_counter() - start
    conn.connection_lost(None)
    loop._scheduled.clear()
    return elapsed * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--associations", type=int, default=5000)
    args = parser.parse_args()
    logging.getLogger("dicomconf").setLevel(logging.WARNING)  # the per-association line is not measured here
    loop = asyncio.new_event_loop()
    try:
        for r in range(args.rounds):
            line = [f"round {r + 1}: echo association {echo_us(loop, args.associations):6.1f} us"]
            for kind in ("discard", "memory", "directory"):
                directory = tempfile.mkdtemp(prefix="bench-scp-inproc-")
                try:
                    line.append(f"{kind} {store_ms(loop, kind, directory):6.1f} ms/100 MiB")
                finally:
                    shutil.rmtree(directory)
            print(", ".join(line), flush=True)
    finally:
        loop.close()


if __name__ == "__main__":
    main()
