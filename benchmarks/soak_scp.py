"""Soak: the reference SCP under mixed traffic for minutes; its RSS and open fds must stay flat.

Theory of operation
-------------------
``dicomconf scp --port 0`` runs as its own process on 127.0.0.1 (ARTIM 2 s,
idle 4 s, memory storage with ``--memory-limit 64MiB`` unless told
otherwise).  For ``--minutes`` this script keeps up, at once:

* echo associations (``--echo-lanes``, each: associate, 10 x C-ECHO, release,
  a 10 ms pause; PS3.7 9.1.5);
* C-STORE associations (one lane, ``--store-rate`` stores per second, 10 per
  association): data sets of 1-256 KiB, and one of 4 MiB in 25
  (PS3.7 9.1.1); once memory storage is full they are answered A700 (PS3.4
  B.2.3), which is counted;
* hostile connections (``--hostile-lanes``: random bytes, mutated
  A-ASSOCIATE-RQs, bad P-DATA-TF, from :mod:`hostile`);
* stalled connections (``--stall-lanes``: half PDUs and silence, ended by
  the SCP's ARTIM and idle timers, PS3.8 9.1.5).

Every ``--sample`` seconds it reads the SCP's VmRSS and open fds from
``/proc`` and the number of connections this script holds open at that
instant; "fds less connections" (open fds minus those connections) is what
a leak would grow.  The verdict compares, after ``--warmup`` minutes, the
mean of the first minute of samples with the mean of the last minute:
RSS and fds less connections may drift by at most 5 %.  Crashes (the
process died, tracebacks in its log, an exit code other than 0 after
SIGTERM), hostile connections left hanging and errors of the echo and store
lanes fail it too.

    python benchmarks/soak_scp.py [--minutes 10] [--sample 10] [--warmup 2] [--storage memory|discard] [--json FILE]

Exit status 0 when the verdict holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import statistics
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hostile as H  # noqa: E402
from bench_scp_common import ECHO_RQ, RELEASE_RQ, associate_rq  # noqa: E402

from dicomconf.ul import constants as C  # noqa: E402
from dicomconf.ul import dimse  # noqa: E402
from dicomconf.ul.pdu import decode_pdu  # noqa: E402

DRIFT_LIMIT = 0.05
STORE_RQ = associate_rq(contexts=((1, H.CT, (H.IVRLE,)),))
BIG = 4 << 20


class Traffic:
    """What the lanes did, and how many connections they hold open right now."""

    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.open = 0
        self.errors: list[str] = []

    def error(self, lane: str, exc: BaseException) -> None:
        self.counts[f"{lane} errors"] += 1
        if len(self.errors) < 20:
            self.errors.append(f"{lane}: {type(exc).__name__}: {exc}")


async def read_pdu(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(6)
    return head[0], head + await reader.readexactly(struct.unpack(">BBI", head)[2])


async def read_message(reader: asyncio.StreamReader, assembler: dimse.MessageAssembler) -> dimse.Message:
    while True:
        kind, raw = await read_pdu(reader)
        if kind != C.P_DATA_TF:
            raise RuntimeError(f"expected P-DATA-TF, got {C.PDU_NAMES.get(kind, hex(kind))}")
        for pdv in decode_pdu(raw).pdvs:
            msg = assembler.add(pdv)
            if msg is not None:
                return msg


async def associated(port: int, rq: bytes, traffic: Traffic):
    """Open a connection and associate; (reader, writer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    traffic.open += 1
    try:
        writer.write(rq)
        kind, _ = await asyncio.wait_for(read_pdu(reader), 10)
        if kind != C.A_ASSOCIATE_AC:
            raise RuntimeError(f"association not accepted ({C.PDU_NAMES.get(kind, hex(kind))})")
    except BaseException:
        writer.close()
        traffic.open -= 1
        raise
    return reader, writer


async def release(reader, writer, traffic: Traffic) -> None:
    try:
        writer.write(RELEASE_RQ)
        kind, _ = await asyncio.wait_for(read_pdu(reader), 10)
        if kind != C.A_RELEASE_RP:
            raise RuntimeError("no A-RELEASE-RP")
    finally:
        writer.close()
        await writer.wait_closed()
        traffic.open -= 1


async def echo_lane(port: int, traffic: Traffic, stop_at: float) -> None:
    rq = associate_rq()
    while time.monotonic() < stop_at:
        try:
            reader, writer = await associated(port, rq, traffic)
            try:
                assembler = dimse.MessageAssembler({1})
                for _ in range(10):
                    writer.write(ECHO_RQ)
                    msg = await asyncio.wait_for(read_message(reader, assembler), 10)
                    if msg.status != 0:
                        raise RuntimeError(f"C-ECHO status {msg.status}")
                    traffic.counts["echoes"] += 1
            finally:
                await release(reader, writer, traffic)
            traffic.counts["echo associations"] += 1
        except (OSError, RuntimeError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            traffic.error("echo", exc)
        await asyncio.sleep(0.01)


async def store_lane(port: int, traffic: Traffic, stop_at: float, rate: float, rng: random.Random) -> None:
    payloads = {size: rng.randbytes(size) for size in (1 << 10, 16 << 10, 64 << 10, 256 << 10, BIG)}
    small = [s for s in payloads if s != BIG]
    n = 0
    while time.monotonic() < stop_at:
        try:
            reader, writer = await associated(port, STORE_RQ, traffic)
            try:
                assembler = dimse.MessageAssembler({1})
                for _ in range(10):
                    n += 1
                    started = time.monotonic()
                    size = BIG if n % 25 == 0 else rng.choice(small)
                    rq = dimse.c_store_rq(n, H.CT, f"2.25.{os.getpid()}.{n}", data=payloads[size])
                    for pdu in dimse.fragment(rq, 16382):
                        writer.write(pdu)
                    await writer.drain()
                    msg = await asyncio.wait_for(read_message(reader, assembler), 30)
                    traffic.counts["stores"] += 1
                    traffic.counts[f"store status {msg.status:04X}"] += 1
                    traffic.counts["MiB offered"] += size / (1 << 20)
                    await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
                    if time.monotonic() >= stop_at:
                        break
            finally:
                await release(reader, writer, traffic)
        except (OSError, RuntimeError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            traffic.error("store", exc)
            await asyncio.sleep(0.1)


async def hostile_lane(port: int, traffic: Traffic, stop_at: float, kinds: tuple[str, ...], timers: H.Timers,
                       rng: random.Random) -> None:
    while time.monotonic() < stop_at:
        attack = H.make_attack(rng, rng.choice(kinds))
        traffic.open += 1
        try:
            outcome = await H.run_attack(port, attack, timers)
        finally:
            traffic.open -= 1
        traffic.counts[f"{'stalled' if attack.stall else 'hostile'} {outcome.outcome}"] += 1


def drift(values: list[float], window: int) -> float:
    """(mean of the last ``window`` values - mean of the first ``window``) / the latter."""
    if len(values) < 2 * window or not values[0]:
        return 0.0
    first, last = statistics.mean(values[:window]), statistics.mean(values[-window:])
    return (last - first) / first if first else 0.0


async def soak(scp: H.SCPProcess, args, timers: H.Timers, samples: list[dict], traffic: Traffic) -> None:
    start = time.monotonic()
    stop_at = start + args.minutes * 60
    rng = random.Random(args.seed)
    lanes = [echo_lane(scp.port, traffic, stop_at) for _ in range(args.echo_lanes)]
    lanes.append(store_lane(scp.port, traffic, stop_at, args.store_rate, random.Random(rng.random())))
    lanes += [hostile_lane(scp.port, traffic, stop_at, ("random", "mutated-rq", "bad-pdata"), timers,
                           random.Random(rng.random())) for _ in range(args.hostile_lanes)]
    lanes += [hostile_lane(scp.port, traffic, stop_at, ("stalled",), timers, random.Random(rng.random()))
              for _ in range(args.stall_lanes)]
    tasks = [asyncio.create_task(lane) for lane in lanes]
    print(f"{'t (s)':>6s} {'RSS KiB':>9s} {'fds':>5s} {'conns':>6s} {'fds-conns':>9s} {'echoes':>8s} {'stores':>7s} "
          f"{'A700':>6s} {'hostile':>8s} {'stalled':>8s} {'errors':>6s}", flush=True)
    next_sample = start
    while True:
        next_sample += args.sample
        if next_sample > stop_at + 0.5:
            break
        await asyncio.sleep(max(0.0, next_sample - time.monotonic()))
        if not scp.alive():
            break
        c = traffic.counts
        row = {"t": round(time.monotonic() - start, 1), "rss_kib": scp.rss_kib(), "fds": scp.fds(),
               "conns": traffic.open,
               "echoes": c["echoes"], "stores": c["stores"], "a700": c["store status A700"],
               "hostile": sum(v for k, v in c.items() if k.startswith("hostile")),
               "stalled": sum(v for k, v in c.items() if k.startswith("stalled")),
               "errors": c["echo errors"] + c["store errors"]}
        row["fds_less_conns"] = row["fds"] - row["conns"]
        samples.append(row)
        print(f"{row['t']:6.0f} {row['rss_kib']:9d} {row['fds']:5d} {row['conns']:6d} {row['fds_less_conns']:9d} "
              f"{row['echoes']:8d} {row['stores']:7d} {row['a700']:6d} {row['hostile']:8d} {row['stalled']:8d} "
              f"{row['errors']:6d}", flush=True)
    await asyncio.gather(*tasks, return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=2.0, help="minutes left out of the verdict")
    parser.add_argument("--storage", choices=("memory", "discard"), default="memory")
    parser.add_argument("--memory-limit", default="64MiB", help="the SCP's --memory-limit (memory storage)")
    parser.add_argument("--store-rate", type=float, default=20.0, help="C-STOREs per second")
    parser.add_argument("--echo-lanes", type=int, default=2)
    parser.add_argument("--hostile-lanes", type=int, default=4)
    parser.add_argument("--stall-lanes", type=int, default=16)
    parser.add_argument("--event-loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write the samples and verdict as JSON")
    args = parser.parse_args(argv)
    timers = H.Timers()
    # the store lane sends raw bytes, not DICOM: a storage sink without the index (which would refuse them)
    extra = ["--storage", args.storage, "--event-loop", args.event_loop, "--index", "none"]
    if args.storage == "memory":
        extra += ["--memory-limit", args.memory_limit]
    samples: list[dict] = []
    traffic = Traffic()
    print(f"soak of the reference SCP: {args.minutes:g} min, a sample every {args.sample:g} s, warm-up "
          f"{args.warmup:g} min; storage {args.storage}"
          + (f" (limit {args.memory_limit})" if args.storage == "memory" else "")
          + f"; {args.echo_lanes} echo lanes, 1 store lane at {args.store_rate:g}/s, {args.hostile_lanes} hostile "
          f"and {args.stall_lanes} stall lanes; ARTIM {timers.artim:g} s, idle {timers.idle:g} s", flush=True)
    with H.SCPProcess(H.fuzz_config(timers), *extra) as scp:
        asyncio.run(soak(scp, args, timers, samples, traffic))
        alive = scp.alive()
        tracebacks = scp.tracebacks()
        outcomes = scp.outcomes()
        exit_code = scp.stop()
    window = max(1, int(round(60 / args.sample)))
    after = [s for s in samples if s["t"] > args.warmup * 60]
    rss_drift = drift([s["rss_kib"] for s in after], window)
    fd_drift = drift([s["fds_less_conns"] for s in after], window)
    hangs = sum(v for k, v in traffic.counts.items() if k.endswith(" hang"))
    failures = []
    if not alive or exit_code != 0 or tracebacks:
        failures.append(f"crash: alive {alive}, exit code {exit_code}, {len(tracebacks)} traceback line(s)")
    if len(after) < 2 * window:
        failures.append(f"only {len(after)} samples after the warm-up: too short to judge")
    if abs(rss_drift) > DRIFT_LIMIT:
        failures.append(f"RSS drift {rss_drift:+.1%}")
    if abs(fd_drift) > DRIFT_LIMIT:
        failures.append(f"fd drift {fd_drift:+.1%}")
    if hangs:
        failures.append(f"{hangs} hostile connection(s) left hanging")
    if traffic.errors:
        failures.append(f"{len(traffic.errors)}+ echo/store errors: {traffic.errors[:3]}")
    rss = [s["rss_kib"] for s in after] or [0]
    fds = [s["fds_less_conns"] for s in after] or [0]
    print(f"after the warm-up ({len(after)} samples): RSS {min(rss)}-{max(rss)} KiB, drift {rss_drift:+.2%} "
          f"(mean of the last minute against the first); fds less connections {min(fds)}-{max(fds)}, "
          f"drift {fd_drift:+.2%}; limit {DRIFT_LIMIT:.0%}")
    print(f"traffic: {dict(sorted((k, round(v, 1)) for k, v in traffic.counts.items()))}")
    print(f"SCP's log, outcomes: {dict(outcomes.most_common())}")
    print(f"crashes: alive {alive}, exit code after SIGTERM {exit_code}, traceback lines {len(tracebacks)}")
    print("verdict: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "samples": samples, "rss_drift": rss_drift, "fd_drift": fd_drift,
                       "traffic": dict(traffic.counts), "failures": failures}, f, indent=1)
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
