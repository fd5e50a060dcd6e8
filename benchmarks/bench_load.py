"""One `dicomconf load` worker process against the raw client: associations per second on the same SCP.

Theory of operation: each round starts the reference SCP (`dicomconf scp`, its default event
loop) on a free loopback port, measures the raw client of bench_scp_echo.py (one thread,
pre-encoded PDUs, associate + C-ECHO + release in a loop) for ``--seconds``, then runs
`dicomconf load` headless (one process: Locust's stand-alone runner, ``--users`` users, the echo
task, one association per task, no think time) for as long and reads the A-ASSOCIATE count and
rate from its CSV.  The client's CPU (user + system) comes from the child's rusage, the SCP's
from /proc.  Goal (issue 18): the load worker reaches >= 80 % of the raw client's rate.  Client
and SCP share the machine's cores: say so next to every figure.

    python benchmarks/bench_load.py [--seconds 10] [--rounds 3] [--users 16]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time

from bench_scp_common import dicomconf_scp, free_port
from bench_scp_echo import rate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def load_run(port: int, seconds: float, users: int, workdir: str) -> tuple[int, float, float]:
    """(associations, associations/s as Locust counts them, client CPU seconds)."""
    spec = os.path.join(workdir, "echo.yaml")
    with open(spec, "w") as f:
        f.write(f"target: {{host: 127.0.0.1, port: {port}, called_ae: DICOMCONF}}\n"
                "association: {reuse: false}\ntasks:\n  - {op: echo}\n")
    prefix = os.path.join(workdir, "run")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-m", "dicomconf.cli", "load", spec, "--headless", "-u", str(users),
                    "-r", str(users), "-t", f"{seconds:g}s", "--csv", prefix, "--only-summary",
                    "--loglevel", "WARNING"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=False, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(prefix + "_stats.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["Type"] == "A-ASSOCIATE":
                failures = int(row["Failure Count"])
                if failures:
                    raise RuntimeError(f"{failures} failed associations")
                return int(row["Request Count"]), float(row["Requests/s"]), cpu
    raise RuntimeError("no A-ASSOCIATE row in the Locust CSV")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=16)
    args = parser.parse_args()
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench-load-") as workdir:
        for r in range(args.rounds):
            with dicomconf_scp(free_port()) as server:
                scp0, t0 = cpu_seconds(server.pid), time.perf_counter()
                raw = rate(server.port, args.seconds)
                scp_raw = (cpu_seconds(server.pid) - scp0) / (time.perf_counter() - t0)
                scp0, t0 = cpu_seconds(server.pid), time.perf_counter()
                n, load, cpu = load_run(server.port, args.seconds, args.users, workdir)
                wall = time.perf_counter() - t0
                scp_load = (cpu_seconds(server.pid) - scp0) / wall
            ratios.append(load / raw)
            print(f"round {r + 1}: raw client {raw:7.1f}/s (SCP CPU {scp_raw:.0%}); dicomconf load {load:7.1f}/s "
                  f"({n} associations, {args.users} users; client CPU {cpu:.1f} s in {wall:.1f} s = {cpu / wall:.0%} "
                  f"of a core, start-up included; SCP CPU {scp_load:.0%}) -> {load / raw:.2f}x", flush=True)
    print(f"\nload / raw per round: {', '.join(f'{x:.2f}x' for x in ratios)}; "
          f"median {sorted(ratios)[len(ratios) // 2]:.2f}x; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
