"""How long the shipped conformance suite takes against the embedded reference SCP and SCU.

    python benchmarks/bench_suite.py [--runs 3] [--workers 4] [--half scp|scu|both] [--overlap N]

``--half scp`` runs the scenarios that test an SCP (``scenarios/`` without
``scenarios/scu``) against the embedded reference SCP; ``--half scu`` those
that test an SCU (``scenarios/scu``) against the embedded reference SCU, which
dicomconf starts for each scenario; ``both`` (the default) is ``dicomconf run``
with no option.

Runs ``python -m pytest scenarios/`` ``--runs`` times serially and ``--runs``
times with ``-n WORKERS`` (pytest-xdist), in alternation so that machine
noise hits both modes alike, and reports per mode the wall time (min, median,
spread = (max - min) / median) and, from the run's ``report.json``, the sum
of the scenario durations and the part of it spent in scenarios that wait on
purpose (an ARTIM or idle timer, a silence window: every scenario that took
1 s or more), per half (the scenarios that test an SCP, those that test an
SCU) and in total.  The ratio serial / parallel is the speed-up measured in
the same run; ``--workers 0`` measures the serial mode alone.  The goal of
the default run (``--half both``) is under 8 s serial on the 2-core build
machine; the timers come from the built-in profiles (reference SCP: ARTIM 1 s,
idle 2 s; reference SCU: association, DIMSE and release timeouts 1 s), and the
serial mode plays the waiting scenarios side by side unless ``--overlap 0``
(``--dicomconf-overlap``, :mod:`dicomconf.plugin_overlap`).  The machine's
load average is printed before and after: the figures mean little on a busy
machine.  "CPU" is the median CPU time (user + system) of a run's processes,
which a busy machine inflates far less than the wall time: it tells two
versions apart when the cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WAITING = 1.0  # seconds: a scenario this long is waiting on a timer on purpose


def plugin_args() -> list[str]:
    from importlib.metadata import entry_points

    if any(ep.value.startswith("dicomconf.pytest_plugin") for ep in entry_points(group="pytest11")):
        return []
    return ["-p", "dicomconf.pytest_plugin"]


HALVES = {
    "scp": [str(REPO / "scenarios"), "--ignore", str(REPO / "scenarios" / "scu")],
    "scu": [str(REPO / "scenarios" / "scu")],
    "both": [str(REPO / "scenarios")],
}


Run = tuple[float, float, float, int, dict[str, float], float]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(workers: int | None, half: str = "both", overlap: int | None = None) -> Run:
    """(wall seconds, sum of scenario durations, of which waiting, scenarios passed,
    sum of scenario durations per half: {"SCP": s, "SCU": s}, CPU seconds of the run's processes)."""
    with tempfile.TemporaryDirectory(prefix="dicomconf-bench-suite-") as tmp:
        argv = [sys.executable, "-m", "pytest", *HALVES[half], *plugin_args(), "-q",
                "-p", "no:cacheprovider", "--report-dir", tmp]
        if workers:
            argv += ["-n", str(workers)]
        if overlap is not None:
            argv += ["--dicomconf-overlap", str(overlap)]
        cpu0, start = _children_cpu(), time.perf_counter()
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - start, _children_cpu() - cpu0
        report = json.loads((Path(tmp) / "report.json").read_text(encoding="utf-8"))
    if proc.returncode != 0:
        raise SystemExit(f"the suite did not pass:\n{proc.stdout[-3000:]}")
    durations = [s["duration_s"] or 0.0 for s in report["scenarios"]]
    passed = sum(s["outcome"] == "passed" for s in report["scenarios"])
    halves = {t: sum(s["duration_s"] or 0.0 for s in report["scenarios"] if s.get("tests") == t) for t in ("SCP", "SCU")}
    return wall, sum(durations), sum(d for d in durations if d >= WAITING), passed, halves, cpu


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - no load average on this system
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--half", choices=sorted(HALVES), default="both",
                        help="the scenarios that test an SCP, those that test an SCU, or both")
    parser.add_argument("--overlap", type=int, default=None,
                        help="--dicomconf-overlap N for the serial mode (0: waiting scenarios one after another)")
    args = parser.parse_args()
    parallel = f"-n {args.workers}"
    results: dict[str, list[Run]] = {"serial": [], **({parallel: []} if args.workers else {})}
    print(f"load average before: {load_average()}")
    for _ in range(args.runs):
        results["serial"].append(one_run(None, args.half, args.overlap))
        if args.workers:
            results[parallel].append(one_run(args.workers, args.half))
    print(f"load average after: {load_average()}")
    print(f"{'mode':<8} {'scenarios':>9} {'wall min':>9} {'median':>8} {'spread':>7} "
          f"{'sum of scenarios':>17} {'waiting':>8} {'SCP sum':>9} {'SCU sum':>9} {'CPU':>7}")
    medians = {}
    for mode, runs in results.items():
        walls = [r[0] for r in runs]
        med = statistics.median(walls)
        medians[mode] = med
        spread = (max(walls) - min(walls)) / med
        scp, scu = (statistics.median(r[4][t] for r in runs) for t in ("SCP", "SCU"))
        print(f"{mode:<8} {runs[0][3]:>9} {min(walls):>8.1f}s {med:>7.1f}s {spread:>6.0%} "
              f"{statistics.median(r[1] for r in runs):>16.1f}s {statistics.median(r[2] for r in runs):>7.1f}s "
              f"{scp:>8.1f}s {scu:>8.1f}s {statistics.median(r[5] for r in runs):>6.1f}s")
    if args.workers:
        print(f"speed-up serial / {parallel}: {medians['serial'] / medians[parallel]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
