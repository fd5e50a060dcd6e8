"""CPU of the reference SCP's own code, without sockets: the driver fed recorded bytes.

A ``_Connection`` of a real ``ReferenceSCP`` gets a stand-in transport that
keeps what is written, and is fed (a) the benchmark client's A-ASSOCIATE-RQ,
C-ECHO-RQ and A-RELEASE-RQ, then loses its connection: microseconds per
association; (b) 100 C-STOREs of 1 MiB in 16382-byte PDUs, delivered in
256 KiB chunks (asyncio's read size), into the discard, memory and directory
backends: milliseconds per 100 MiB.  Timers are scheduled on an event loop
that never runs.  No peer: this is where the time of the socket benchmarks
goes that is ours rather than the kernel's or the event loop's.

    python benchmarks/bench_scp_inprocess.py [--rounds 3] [--phases]

``--phases`` instead times each step of an echo association of the
``dicomconf scp`` defaults (memory storage with its index, so every service
is offered; the INFO line per association formatted as the command does,
written to /dev/null): accept, A-ASSOCIATE-RQ to AC, C-ECHO, release, close.
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
    scp = ReferenceSCP(SCPConfig(**{"port": 0, "index": "none", **cfg}))  # index none: raw data sets, a sink
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


def phases_us(loop, n: int) -> list[float]:
    """Microseconds per association for each step (see the module docstring)."""
    from dicomconf.scp.cli import _configure_logging

    _configure_logging(False)
    logging.getLogger("dicomconf").handlers[0].setStream(open(os.devnull, "w"))
    scp, rq, clock = server(loop, index="default"), associate_rq(), time.perf_counter
    sums = [0.0] * len(PHASES)
    for i in range(n + 500):
        t0 = clock()
        conn = _Connection(scp, False)
        conn.connection_made(Transport())
        t1 = clock()
        conn.data_received(rq)
        t2 = clock()
        conn.data_received(ECHO_RQ)
        t3 = clock()
        conn.data_received(RELEASE_RQ)
        t4 = clock()
        conn.connection_lost(None)
        t5 = clock()
        if i >= 500:  # warmed up
            for k, d in enumerate((t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                sums[k] += d
    loop._scheduled.clear()
    logging.getLogger("dicomconf").setLevel(logging.WARNING)
    return [s / n * 1e6 for s in sums]


PHASES = ("accept", "RQ->AC", "C-ECHO", "release", "close+log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--associations", type=int, default=5000)
    parser.add_argument("--phases", action="store_true", help="time each step of an echo association instead")
    args = parser.parse_args()
    logging.getLogger("dicomconf").setLevel(logging.WARNING)  # the per-association line is not measured here
    loop = asyncio.new_event_loop()
    if args.phases:
        try:
            for r in range(args.rounds):
                us = phases_us(loop, args.associations)
                print(f"round {r + 1}: " + ", ".join(f"{name} {v:5.1f}" for name, v in zip(PHASES, us))
                      + f"; total {sum(us):5.1f} us per association", flush=True)
        finally:
            loop.close()
        return
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
