"""Live fuzzing, both directions: hostile clients against the reference SCP, a fuzzing SCP against the harness.

Theory of operation
-------------------
``--direction scp`` (the default) starts ``dicomconf scp --port 0`` as its own
process on 127.0.0.1 with short timers (ARTIM 2 s, idle 4 s), times a good
client's C-ECHOs while nothing else runs (quiet), then plays
``--connections`` hostile connections (:mod:`hostile`: random bytes, mutated
A-ASSOCIATE-RQs, bad P-DATA-TF, stalled half-PDUs; ``--concurrency`` at once,
stalls in ``--stall-lanes`` of their own) while the good client keeps
echoing.  It reports crashes (the process died, its exit code after SIGTERM,
tracebacks in its log), hangs (a connection the SCP neither answered nor
closed within its timer plus ``--margin``), RSS and open file descriptors
before and after, and the good client's p50/p99 during the attack against
quiet.  Limits: 0 crashes, 0 hangs, RSS after <= 1.5x before, fds back to
where they were, p99 during <= 2x quiet, every connection played within
``--seconds``.

``--direction scu`` starts the fuzzing fake SCP (:mod:`fuzzing_scp`) and
points at it the reference SCU (``dicomconf.scu.app.perform``: echo and store
jobs), the scriptable SCU's client API (associate, echo, store, release), the
SCU as a command (``python -m dicomconf.scu.app``) and ``dicomconf run -k
EXPR --target``.  Limits: no job runs past its bound (its timeouts plus slack),
none ends in an internal error (status 3) or an exception outside the API's
documented ones, no traceback in any output, ``dicomconf run`` exits 0 or 1.

    python benchmarks/fuzz_live.py [--connections 10000] [--seconds 900] [--seed 1] [--json FILE]
    python benchmarks/fuzz_live.py --direction scu [--connections 600] [--runs 2] [--timeout 1]
    python benchmarks/fuzz_live.py --direction fake-scp [--connections 2000] [--within 1] [--workers 8]

``--direction fake-scp`` fuzzes the acceptor role: hostile SCUs (the same
generators, and floods of PDUs while a step waits) against the scripted fake
SCP (``role: scp`` scenarios), see :mod:`fuzz_fake_scp`.

Exit status 0 when every limit holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import random
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hostile as H  # noqa: E402
from bench_scp_common import associate_rq, echo_cycle  # noqa: E402

RSS_LIMIT = 1.5
P99_LIMIT = 2.0


# ---------------------------------------------------------------- direction scp


def good_client_run(port: int, count: int, pace: float, stop=None):
    """Start the good client in its own process; (process, stop event, result queue)."""
    ctx = multiprocessing.get_context("fork")
    stop = stop or ctx.Event()
    out = ctx.Queue()
    proc = ctx.Process(target=H.good_client, args=(port, stop, count, pace, out), daemon=True)
    proc.start()
    return proc, stop, out


def collect(proc, out, timeout: float = 120.0) -> dict:
    result = out.get(timeout=timeout)
    proc.join(10)
    return result


def attack_plan(total: int, weights: dict[str, float]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """How many of each kind: (quick kinds, stalled), rounded so they add up to ``total``."""
    counts = {k: int(total * w / sum(weights.values())) for k, w in weights.items()}
    counts[max(weights, key=weights.get)] += total - sum(counts.values())
    quick = [(k, n) for k, n in counts.items() if k != "stalled"]
    return quick, [("stalled", counts.get("stalled", 0))]


def attacks(plan: list[tuple[str, int]], seed: int):
    """The attacks of ``plan``, kinds interleaved, drawn from a generator seeded with ``seed``."""
    rng = random.Random(seed)
    bag = [k for k, n in plan for _ in range(n)]
    rng.shuffle(bag)
    for kind in bag:
        yield H.make_attack(rng, kind)


def summarize_outcomes(outcomes: list[H.Outcome]) -> tuple[list[str], dict]:
    table = collections.defaultdict(collections.Counter)
    longest = collections.defaultdict(float)
    for o in outcomes:
        table[o.attack.kind][o.outcome] += 1
        longest[o.attack.kind] = max(longest[o.attack.kind], o.seconds)
    head = f"{'kind':12s} {'count':>6s} " + " ".join(f"{c:>14s}" for c in H.OUTCOMES) + f" {'longest s':>10s}"
    lines = [head]
    data = {}
    for kind in H.KINDS:
        if kind not in table:
            continue
        row = table[kind]
        lines.append(f"{kind:12s} {sum(row.values()):6d} " + " ".join(f"{row[c]:14d}" for c in H.OUTCOMES)
                     + f" {longest[kind]:10.2f}")
        data[kind] = {**{c: row[c] for c in H.OUTCOMES}, "longest_s": round(longest[kind], 3)}
    return lines, data


def wait_settled(scp: H.SCPProcess, fds: int, within: float) -> float:
    """Wait until the SCP's open fds are back to ``fds`` (or ``within`` seconds pass); seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < within and scp.alive() and scp.fds() > fds:
        time.sleep(0.2)
    return time.monotonic() - start


def run_scp_direction(args) -> tuple[bool, dict]:
    timers = H.Timers(artim=args.artim, idle=args.idle, margin=args.margin)
    failures: list[str] = []
    with H.SCPProcess(H.fuzz_config(timers), "--event-loop", args.event_loop) as scp:
        for _ in range(50):
            echo_cycle(scp.port, associate_rq())
        proc, _stop, out = good_client_run(scp.port, args.quiet_echoes, args.pace)
        quiet = collect(proc, out)
        time.sleep(0.5)
        rss0, fds0 = scp.rss_kib(), scp.fds()

        quick_plan, stall_plan = attack_plan(args.connections, H.WEIGHTS)
        outcomes: list[H.Outcome] = []
        proc, stop, out = good_client_run(scp.port, 0, args.pace)
        t0 = time.monotonic()
        stop_at = t0 + args.seconds

        async def attack() -> None:
            last = [time.monotonic()]

            def on_outcome(o: H.Outcome) -> None:
                outcomes.append(o)
                if time.monotonic() - last[0] > 10:
                    last[0] = time.monotonic()
                    print(f"  {len(outcomes)} connections, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)

            await asyncio.gather(
                H.attack_many(scp.port, attacks(quick_plan, args.seed), timers, args.concurrency, on_outcome, stop_at),
                H.attack_many(scp.port, attacks(stall_plan, args.seed + 1), timers, args.stall_lanes, on_outcome,
                              stop_at),
            )

        asyncio.run(attack())
        elapsed = time.monotonic() - t0
        stop.set()
        during = collect(proc, out)
        settle = wait_settled(scp, fds0, 2 * (timers.artim + timers.idle) + timers.margin)
        alive = scp.alive()
        rss1, fds1 = (scp.rss_kib(), scp.fds()) if alive else (0, 0)
        tracebacks = scp.tracebacks()
        scp_outcomes = scp.outcomes()
        exit_code = scp.stop()

    lines, table = summarize_outcomes(outcomes)
    hangs = sum(o.outcome == "hang" for o in outcomes)
    refused = sum(o.outcome == "connect-failed" for o in outcomes)
    q50, q99 = H.percentile(quiet["echo"], 0.5), H.percentile(quiet["echo"], 0.99)
    d50, d99 = H.percentile(during["echo"], 0.5), H.percentile(during["echo"], 0.99)
    ratio = d99 / q99 if q99 else float("inf")
    crashes = int(not alive) + int(exit_code != 0) + len(tracebacks)
    if crashes:
        failures.append(f"crashes: alive={alive}, exit code {exit_code}, {len(tracebacks)} traceback line(s)")
    if hangs:
        failures.append(f"{hangs} hang(s)")
    if refused:
        failures.append(f"{refused} connection(s) not accepted")
    if len(outcomes) < args.connections:
        failures.append(f"only {len(outcomes)} of {args.connections} connections within --seconds {args.seconds:g}")
    if alive and rss1 > RSS_LIMIT * rss0:
        failures.append(f"RSS after {rss1} KiB > {RSS_LIMIT}x before ({rss0} KiB)")
    if alive and fds1 > fds0:
        failures.append(f"open fds {fds1} after > {fds0} before")
    if ratio > P99_LIMIT:
        failures.append(f"good client p99 during the attack {ratio:.2f}x quiet > {P99_LIMIT}x")
    if quiet["errors"] or during["errors"]:
        failures.append(f"good client errors: {(quiet['errors'] + during['errors'])[:3]}")

    print(f"live fuzz of the reference SCP (dicomconf scp, pid-stopped; event loop {args.event_loop}; "
          f"ARTIM {timers.artim:g} s, idle {timers.idle:g} s, hang margin {timers.margin:g} s), seed {args.seed}")
    print(f"hostile connections: {len(outcomes)} in {elapsed:.1f} s ({len(outcomes) / elapsed:.0f}/s), "
          f"concurrency {args.concurrency} + {args.stall_lanes} stall lanes")
    for line in lines:
        print("  " + line)
    print(f"SCP's log, outcomes: {dict(scp_outcomes.most_common())}")
    print(f"crashes: {crashes} (alive after the attack: {alive}; exit code after SIGTERM: {exit_code}; "
          f"traceback lines in its log: {len(tracebacks)})")
    for line in tracebacks[:5]:
        print("  " + line)
    print(f"hangs: {hangs}")
    print(f"RSS: {rss0} KiB before, {rss1} KiB after ({rss1 / rss0:.2f}x; limit {RSS_LIMIT}x)")
    print(f"open fds: {fds0} before, {fds1} after ({settle:.1f} s after the last connection)")
    print(f"good client C-ECHO: quiet p50 {q50 * 1e3:.3f} ms p99 {q99 * 1e3:.3f} ms ({len(quiet['echo'])} echoes); "
          f"during the attack p50 {d50 * 1e3:.3f} ms p99 {d99 * 1e3:.3f} ms ({len(during['echo'])} echoes, "
          f"{len(during['associate'])} associations); p99 ratio {ratio:.2f}x (limit {P99_LIMIT}x); "
          f"errors {len(quiet['errors']) + len(during['errors'])}")
    print("verdict: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return not failures, {
        "direction": "scp", "seed": args.seed, "connections": len(outcomes), "seconds": round(elapsed, 2),
        "kinds": table, "scp_outcomes": dict(scp_outcomes), "crashes": crashes, "hangs": hangs,
        "rss_kib": [rss0, rss1], "fds": [fds0, fds1],
        "echo_ms": {"quiet": [q50 * 1e3, q99 * 1e3], "during": [d50 * 1e3, d99 * 1e3], "p99_ratio": ratio},
        "failures": failures,
    }


# ---------------------------------------------------------------- direction scu

RUN_EXIT_CODES = (0, 1)  # dicomconf run: conforms, or conformance failures (never 3, internal error)
APP_STATUSES = (0, 1, 2)  # the reference SCU: success, the operation failed, no association (never 3)


def write_store_file(path: str, mib: float) -> str:
    """A CT Image Storage Part 10 file of about ``mib`` MiB (pixel data of zeros)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    side = max(int((mib * (1 << 20) / 2) ** 0.5), 8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = H.CT
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = H.CT, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.Modality = "FUZZ^SCU", "FUZZ", "CT"
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = bytes(side * side * 2)
    ds.save_as(path, enforce_file_format=True)
    return path


def api_errors() -> tuple[type, ...]:
    """What the scriptable SCU's calls may raise on a hostile peer (dicomconf.scu.client, .connection)."""
    from dicomconf.scu.client import Aborted, NotNegotiated, Rejected, UnexpectedReply
    from dicomconf.scu.connection import Closed, Silence
    from dicomconf.ul.errors import RemoteProtocolError

    # ValueError: a data set that cannot be encoded in the transfer syntax the peer accepted (SCU.store)
    return (Rejected, Aborted, UnexpectedReply, NotNegotiated, Silence, Closed, RemoteProtocolError, TimeoutError,
            ValueError)


def job_app(port: int, op: str, t: float, file: str) -> tuple[str, str]:
    """The reference SCU (dicomconf.scu.app.perform): (outcome, detail); a status outside 0-2 is a crash."""
    from dicomconf.scu.app import Job, perform

    status, lines = perform(Job("127.0.0.1", port, op, file=file if op == "store" else None, connect_timeout=t,
                                association_timeout=t, dimse_timeout=t, release_timeout=t))
    if status not in APP_STATUSES:
        return "crash", f"status {status}: {' / '.join(lines)[-600:]}"
    return f"status {status}", ""


def job_api(port: int, t: float, file: str) -> tuple[str, str]:
    """The scriptable SCU's client API: associate, echo, store, release; an undocumented exception is a crash."""
    import traceback

    from dicomconf.scu.client import SCU
    from dicomconf.scu.connection import Connection

    try:
        conn = Connection.open("127.0.0.1", port, timeout=t)
    except OSError as exc:
        return "connect failed", repr(exc)
    try:
        scu = SCU(conn)
        scu.associate(["verification", "ct"], timeout=t)
        scu.echo(timeout=t)
        scu.store(file, timeout=t)
        scu.release(timeout=t)
        return "completed", ""
    except api_errors() as exc:
        return type(exc).__name__, ""
    except Exception:
        return "crash", traceback.format_exc()[-1500:]
    finally:
        conn.close()


def job_command(port: int, t: float, bound: float) -> tuple[str, str]:
    """``python -m dicomconf.scu.app echo``: its exit status, a traceback in its output is a crash."""
    import subprocess

    try:
        done = subprocess.run([sys.executable, "-m", "dicomconf.scu.app", "echo", "127.0.0.1", str(port),
                               "--timeout", f"{t:g}"], capture_output=True, text=True, timeout=bound,
                              env=H.tree_env())
    except subprocess.TimeoutExpired:
        return "hang", "killed at its bound"
    output = done.stdout + done.stderr
    if done.returncode not in APP_STATUSES or "Traceback" in output:
        return "crash", f"exit {done.returncode}: {output[-1500:]}"
    return f"exit {done.returncode}", ""


def run_jobs(port: int, jobs: list[str], args, file: str, bound: float) -> tuple[list[tuple], list[tuple]]:
    """Run ``jobs`` on ``args.workers`` daemon threads; (finished (kind, outcome, detail, s), overdue (kind, s))."""
    import queue
    import threading

    todo: queue.Queue = queue.Queue()
    for i, kind in enumerate(jobs):
        todo.put((i, kind))
    done: queue.Queue = queue.Queue()
    running: dict[int, tuple[str, float]] = {}
    lock = threading.Lock()

    def worker() -> None:
        while True:
            try:
                i, kind = todo.get_nowait()
            except queue.Empty:
                return
            start = time.monotonic()
            with lock:
                running[i] = (kind, start)
            try:
                if kind == "command":
                    outcome, detail = job_command(port, args.timeout, bound)
                elif kind == "api":
                    outcome, detail = job_api(port, args.timeout, file)
                else:
                    outcome, detail = job_app(port, kind.split("-")[1], args.timeout, file)
            except Exception as exc:  # a bug of this script's drivers, shown as a crash to look at
                outcome, detail = "crash", f"driver: {exc!r}"
            with lock:
                running.pop(i, None)
            done.put((kind, outcome, detail, time.monotonic() - start))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.workers)]
    for th in threads:
        th.start()
    finished: list[tuple] = []
    overdue: dict[int, tuple[str, float]] = {}
    stop_at = time.monotonic() + args.seconds
    while any(th.is_alive() for th in threads):
        try:
            finished.append(done.get(timeout=0.5))
        except queue.Empty:
            pass
        now = time.monotonic()
        with lock:
            for i, (kind, start) in running.items():
                if now - start > bound:
                    overdue[i] = (kind, now - start)
            if now > stop_at:
                while not todo.empty():
                    todo.get_nowait()
            if overdue and len(running) == len(overdue) and todo.empty():
                break  # only hung jobs are left
    while not done.empty():
        finished.append(done.get())
    return finished, list(overdue.values())


PROFILE = """name: the fuzzing fake SCP (benchmarks/fuzzing_scp.py)
ae_title: ANY-SCP
calling_ae: DICOMCONF-SCU
timers: {artim: 2, idle: 4}
sop_classes: [verification, ct, mr, sc]
transfer_syntaxes: [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
max_associations: null
tls: {enabled: false}
"""


def harness_errors(report: str) -> list[str]:
    """Scenarios of a run's report.json in error for a reason of the harness's own: every error but
    "not run: the target stopped answering" (the liveness check's verdict on the target)."""
    try:
        with open(report) as f:
            scenarios = json.load(f)["scenarios"]
    except (OSError, ValueError, KeyError):
        return ["no readable report.json"]
    return [f"{s['id']}: {(s.get('failure') or {}).get('message', '')[:300]}" for s in scenarios
            if s.get("outcome") == "error"
            and not str((s.get("failure") or {}).get("message", "")).startswith("not run: the target stopped")]


def run_dicomconf(port: int, fuzz, args, tmp: str, bound: float) -> list[dict]:
    """``dicomconf run -k EXPR --target`` against the fuzzing SCP ``args.runs`` times (first connection honest)."""
    import subprocess

    profile = os.path.join(tmp, "profile.yaml")
    with open(profile, "w") as f:
        f.write(PROFILE)
    results = []
    for run in range(args.runs):
        fuzz.honest_next(1)
        argv = [sys.executable, "-m", "dicomconf.cli", "run", "-k", args.keyword, "--target", f"127.0.0.1:{port}",
                "--profile", profile, "--report-dir", os.path.join(tmp, f"run{run}"), "-q",
                "--scenario-timeout", "60"]
        start = time.monotonic()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=bound, cwd=tmp, env=H.tree_env())
            code, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = None, f"killed after {bound:g} s: {exc.stdout or ''}"
        lines = output.splitlines()
        summary = next((line for line in reversed(lines) if line.startswith("dicomconf: ")), "")
        counts = next((line for line in reversed(lines) if re.match(r"\d+ .* in [0-9.]+s", line)), "")  # pytest's
        results.append({"exit": code, "seconds": round(time.monotonic() - start, 2), "summary": summary,
                        "counts": counts, "errors": harness_errors(os.path.join(tmp, f"run{run}", "report.json")),
                        "traceback": "Traceback" in output, "tail": output[-3000:]})
    return results


def run_scu_direction(args) -> tuple[bool, dict]:
    import tempfile

    from fuzzing_scp import FuzzingSCPProcess

    t = args.timeout
    bound = 8 * t + 5  # every phase's timeout, an abort and a close, with slack
    failures: list[str] = []
    kinds = ["app-echo", "app-store", "api"]
    jobs = ["command" if args.command_every and (i + 1) % args.command_every == 0 else kinds[i % len(kinds)]
            for i in range(args.connections)]
    with tempfile.TemporaryDirectory(prefix="dicomconf-fuzz-scu-") as tmp:
        file = write_store_file(os.path.join(tmp, "ct.dcm"), args.store_mib)
        fuzz = FuzzingSCPProcess(args.seed, *([tuple(args.behaviours.split(","))] if args.behaviours else []))
        port = fuzz.start()
        try:
            t0 = time.monotonic()
            finished, overdue = run_jobs(port, jobs, args, file, bound)
            jobs_s = time.monotonic() - t0
            run_bound = 600.0
            runs = run_dicomconf(port, fuzz, args, tmp, run_bound) if args.runs else []
        finally:
            fuzz.stop()
    table = collections.defaultdict(collections.Counter)
    longest = collections.defaultdict(float)
    crashes = []
    for kind, outcome, detail, seconds in finished:
        table[kind][outcome] += 1
        longest[kind] = max(longest[kind], seconds)
        if outcome in ("crash", "hang"):
            crashes.append((kind, outcome, detail))
    if crashes:
        failures.append(f"{len(crashes)} crash(es) or hang(s) of the SCU")
    if overdue:
        failures.append(f"{len(overdue)} job(s) still running past their bound of {bound:g} s")
    if len(finished) < len(jobs):
        failures.append(f"only {len(finished)} of {len(jobs)} jobs within --seconds")
    bad_runs = [r for r in runs if r["exit"] not in RUN_EXIT_CODES or r["traceback"] or r["errors"]]
    if bad_runs:
        failures.append(f"{len(bad_runs)} dicomconf run(s) exited {[r['exit'] for r in bad_runs]}, printed a "
                        "traceback or had scenarios in error")
    if fuzz.errors:
        failures.append(f"{len(fuzz.errors)} error(s) inside the fuzzing SCP itself (a bug of the benchmark)")

    print(f"fuzzing fake SCP against the harness, seed {args.seed}, SCU timeouts {t:g} s, job bound {bound:g} s")
    print(f"connections served: {sum(fuzz.used.values())}; behaviours: {dict(fuzz.used.most_common())}")
    print(f"SCU jobs: {len(finished)} of {len(jobs)} in {jobs_s:.1f} s, {args.workers} at once")
    for kind in sorted(table):
        print(f"  {kind:10s} {sum(table[kind].values()):5d}  longest {longest[kind]:6.2f} s  "
              f"{dict(sorted(table[kind].items()))}")
    for kind, outcome, detail in crashes[:10]:
        print(f"  {outcome} ({kind}): {detail}")
    for kind, seconds in overdue[:10]:
        print(f"  overdue ({kind}): still running after {seconds:.1f} s")
    for i, r in enumerate(runs):
        print(f"dicomconf run -k {args.keyword!r} #{i + 1}: exit {r['exit']} in {r['seconds']:.1f} s; {r['counts']}"
              + ("; TRACEBACK in its output" if r["traceback"] else ""))
        if r in bad_runs:
            print("\n".join(r["errors"][:5]) + "\n" + r["tail"])
    for error in fuzz.errors[:5]:
        print(f"fuzzing SCP error: {error}")
    print("verdict: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return not failures, {
        "direction": "scu", "seed": args.seed, "jobs": len(finished), "seconds": round(jobs_s, 2),
        "job_outcomes": {k: dict(v) for k, v in table.items()}, "longest_s": dict(longest),
        "behaviours": dict(fuzz.used),
        "runs": [{k: r[k] for k in ("exit", "seconds", "summary", "counts", "errors")} for r in runs],
        "crashes": [c[:2] for c in crashes], "overdue": len(overdue), "failures": failures,
    }


def main(argv: list[str] | None = None) -> int:
    import logging
    import warnings

    # Hostile bytes make pydicom warn about every odd UID and VR it decodes; the verdicts are ours.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\..*)?")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direction", choices=("scp", "scu", "fake-scp"), default="scp")
    parser.add_argument("--connections", type=int, help="hostile connections (scp: 10000) or SCU jobs (scu: 600)")
    parser.add_argument("--seconds", type=float, default=900.0, help="stop drawing new ones after this long")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    scp = parser.add_argument_group("direction scp")
    scp.add_argument("--concurrency", type=int, default=32, help="hostile connections at once (stalls apart)")
    scp.add_argument("--stall-lanes", type=int, default=64, help="stalled connections at once")
    scp.add_argument("--artim", type=float, default=2.0, help="the SCP's ARTIM timeout (s)")
    scp.add_argument("--idle", type=float, default=4.0, help="the SCP's idle timeout (s)")
    scp.add_argument("--margin", type=float, default=3.0, help="beyond its timers, silence is a hang (s)")
    scp.add_argument("--quiet-echoes", type=int, default=1000, help="echoes timed before the attack")
    scp.add_argument("--pace", type=float, default=0.002, help="the good client's pause between echoes (s)")
    scp.add_argument("--event-loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    scu = parser.add_argument_group("direction scu")
    scu.add_argument("--timeout", type=float, default=1.0, help="every timeout of the SCU under test (s)")
    scu.add_argument("--workers", type=int, default=8, help="SCU jobs at once")
    scu.add_argument("--runs", type=int, default=2, help="dicomconf run invocations against the fuzzing SCP")
    scu.add_argument("-k", dest="keyword", default="echo or store",
                     help="the scenarios dicomconf run plays (pytest -k)")
    scu.add_argument("--command-every", type=int, default=20, help="every Nth job runs the SCU as a command")
    scu.add_argument("--behaviours", help="comma-separated behaviours of the fuzzing SCP (default: all)")
    scu.add_argument("--store-mib", type=float, default=8.0, help="size of the data set the store jobs send")
    fake = parser.add_argument_group("direction fake-scp")
    fake.add_argument("--within", type=float, default=1.0, help="every wait of the fake SCP's scripts (s)")
    fake.add_argument("--flood-seconds", type=float, default=12.0,
                      help="how long a flooding SCU sends at most (longer than a script's bound)")
    fake.add_argument("--fake-margin", dest="fake_margin", type=float, default=3.0,
                      help="beyond a script's own waits, a run still going is a hang (s)")
    fake.add_argument("--capture-mib", type=float, default=256.0,
                      help="payload one captured conversation keeps (dicomconf.wire.capture.MAX_CAPTURE_BYTES)")
    args = parser.parse_args(argv)
    if args.direction == "fake-scp":
        import fuzz_fake_scp

        from dicomconf.wire import capture

        capture.MAX_CAPTURE_BYTES = int(args.capture_mib * 1024 * 1024)

        args.connections = args.connections or 2000
        args.margin = args.fake_margin
        ok, data = fuzz_fake_scp.run(args)
    elif args.direction == "scp":
        args.connections = args.connections or 10000
        ok, data = run_scp_direction(args)
    else:
        args.connections = args.connections or 600
        ok, data = run_scu_direction(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
