"""Sequential associate + C-ECHO + release: the reference SCP against pynetdicom's echoscp and DCMTK's storescp.

One client for all three: a raw-socket loop sending pre-encoded PDUs
(A-ASSOCIATE-RQ, C-ECHO-RQ, A-RELEASE-RQ) and reading whole PDUs back, so the
client's own cost is the same for each server.  Each server runs as its own
process on 127.0.0.1; DCMTK with TCP_NODELAY=1.  ``dicomconf scp`` runs on
asyncio's own event loop and, when uvloop is installed, a second time on it.  Goal (docs/benchmarks/scp.md):
at least 20x pynetdicom, and at least DCMTK's rate.

    python benchmarks/bench_scp_echo.py [--seconds 3] [--rounds 3] [--pin CPU] [--floor] [--baseline DIR]

``--baseline DIR`` adds the same server run from another source tree (for
an A/B of a change in the same run: ``git archive COMMIT | tar -x -C DIR``).
Each round also gives the server's CPU time per association (user + system,
``/proc/PID/stat``, in clock ticks: over a 2 s round about 1 % either way).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

from bench_scp_common import (
    STORESCP,
    Server,
    associate_rq,
    dcmtk_storescp,
    dicomconf_scp,
    echo_cycle,
    free_port,
    pynetdicom_echoscp,
)



def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate(port: int, seconds: float, pid: int | None = None) -> tuple[float, float | None]:
    """Associations per second, and the server's CPU microseconds per association (None without ``pid``)."""
    rq = associate_rq()
    for _ in range(20):  # warm up
        echo_cycle(port, rq)
    cpu = cpu_seconds(pid) if pid else 0.0
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        echo_cycle(port, rq)
        n += 1
    per_second = n / (time.perf_counter() - start)
    return per_second, ((cpu_seconds(pid) - cpu) / n * 1e6 if pid else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pin", type=int, metavar="CPU", help="pin client and every server to this CPU")
    parser.add_argument("--floor", action="store_true",
                        help="also measure bench_scp_replay.py, an asyncio server that only replays recorded answers")
    parser.add_argument("--baseline", metavar="DIR", help="also run dicomconf scp from this source tree")
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    servers = {"dicomconf scp": lambda p: dicomconf_scp(p, "--event-loop", "asyncio")}
    if importlib.util.find_spec("uvloop") is not None:
        servers["dicomconf scp uvloop"] = lambda p: dicomconf_scp(p, "--event-loop", "uvloop")
    if args.baseline:
        for loop in [name.rpartition(" ")[2] for name in servers if name.endswith("uvloop")] or ["asyncio"]:
            servers[f"dicomconf baseline {loop}"] = lambda p, loop=loop: dicomconf_scp(
                p, "--event-loop", loop, tree=args.baseline
            )
    servers["pynetdicom echoscp"] = pynetdicom_echoscp
    if args.floor:
        replay = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_scp_replay.py")
        for loop in ("asyncio", "uvloop") if "dicomconf scp uvloop" in servers else ("asyncio",):
            servers[f"replay-only {loop}"] = lambda p, loop=loop: Server([sys.executable, replay, str(p), loop], p)
    if os.access(STORESCP, os.X_OK):
        servers["DCMTK storescp"] = lambda p: dcmtk_storescp(p)
    results: dict[str, list[float]] = {name: [] for name in servers}
    cpu: dict[str, list[float]] = {name: [] for name in servers}  # server CPU us per association (ticks: +-10 ms)
    for r in range(args.rounds):
        for name, start in servers.items():
            with start(free_port()) as server:
                if args.pin is not None:
                    for tid in os.listdir(f"/proc/{server.pid}/task"):
                        os.sched_setaffinity(int(tid), {args.pin})
                per_second, cpu_us = rate(server.port, args.seconds, server.pid)
                results[name].append(per_second)
                cpu[name].append(cpu_us)
            print(f"round {r + 1}: {name:22s} {results[name][-1]:8.1f} associations/s, "
                  f"server CPU {cpu_us:6.1f} us per association", flush=True)
    print()
    ours = {name: values for name, values in results.items() if name.startswith("dicomconf")}
    for name, values in results.items():
        best, worst = max(values), min(values)
        print(f"{name:22s} median {sorted(values)[len(values) // 2]:8.1f}/s  (min {worst:.1f}, max {best:.1f}); "
              f"server CPU {min(cpu[name]):.1f}-{max(cpu[name]):.1f} us per association")
        if name.startswith("replay"):
            loop = name.rpartition(" ")[2]  # the floor: our servers on the same event loop, per round
            for our_name, our_values in ours.items():
                if our_name.endswith(" uvloop") == (loop == "uvloop"):
                    ratios = [a / b for a, b in zip(our_values, values)]
                    print(f"{'':22s}   {our_name}/this per round: {', '.join(f'{x:.2f}x' for x in ratios)}")
            continue
        if name in ours:
            continue
        for our_name, our_values in ours.items():
            ratios = [a / b for a, b in zip(our_values, values)]
            print(f"{'':22s}   {our_name}/this per round: {', '.join(f'{x:.2f}x' for x in ratios)}")


if __name__ == "__main__":
    main()
