"""Memory per idle association: RSS of the reference SCP before and after 1,000 associations are held open.

The SCP runs as its own process (``dicomconf scp``); after one warm-up
association (so lazy imports and caches are paid for), 1,000 connections each
send an A-ASSOCIATE-RQ, read the A-ASSOCIATE-AC and then stay idle; on
asyncio's own event loop and, when installed, on uvloop.  Goal:
at most 64 KiB per idle association.

    python benchmarks/bench_scp_memory.py [--count 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import resource
import struct
import tempfile

from bench_scp_common import associate_rq, dicomconf_scp, echo_cycle, free_port

from dicomconf.ul import constants as C


async def hold(port: int, count: int, measure) -> tuple[int, int]:
    rq = associate_rq()
    conns = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(rq)
        conns.append((reader, writer))
    for reader, _ in conns:
        head = await reader.readexactly(6)
        pdu_type, _, length = struct.unpack(">BBI", head)
        await reader.readexactly(length)
        if pdu_type != C.A_ASSOCIATE_AC:
            raise SystemExit(f"association refused (PDU {pdu_type:#04x})")
    await asyncio.sleep(0.5)
    after = measure()
    for _, writer in conns:
        writer.close()
    return after, len(conns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.count + 100)), hard))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "scp.yaml")
        with open(cfg, "w") as f:
            f.write("artim_timeout: 60\nidle_timeout: 600\n")
        loops = ["asyncio"] + (["uvloop"] if importlib.util.find_spec("uvloop") is not None else [])
        for r in range(args.rounds):
            for loop in loops:
                with dicomconf_scp(port := free_port(), "--event-loop", loop, config=cfg) as server:
                    for _ in range(50):
                        echo_cycle(port, associate_rq())
                    before = server.rss_kib()
                    after, n = asyncio.run(hold(port, args.count, server.rss_kib))
                per = (after - before) / n
                print(f"round {r + 1}, {loop:7s}: RSS {before} KiB -> {after} KiB with {n} idle associations: "
                      f"{per:.1f} KiB per association", flush=True)


if __name__ == "__main__":
    main()
