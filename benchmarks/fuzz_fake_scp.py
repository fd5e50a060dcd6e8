"""Live fuzzing of the acceptor role: hostile SCUs against dicomconf's scripted fake SCP.

Theory of operation
-------------------
``python benchmarks/fuzz_live.py --direction fake-scp`` runs :func:`run`.
Each case starts a :class:`~dicomconf.scenario.fake_scp.FakeSCP` (the ``role:
scp`` scenario engine, in this process, on 127.0.0.1 and a free port) with one
of :data:`SCRIPTS` (every step's wait ``--within`` seconds, its
``finish_within`` the same), and plays one hostile SCU against it: the
generators of :mod:`hostile` (random bytes, mutated A-ASSOCIATE-RQs, bad
P-DATA-TF, stalled half PDUs) and :func:`hostile.flood` (PDUs without pause
while the script waits, until the fake SCP closes or ``--flood-seconds``,
longer than any script's bound, have passed).  ``--workers`` cases run at
once.

A case is judged by what the fake SCP did, not by its verdict (a hostile SCU
fails a script, as it should):

* *hang*: :meth:`FakeSCP.wait` did not return within the script's own bound
  (its steps' waits, the close and finish waits, plus ``--margin``); the case
  is then stopped;
* *cut*: the run ended only by the engine's time limit, which a script whose
  waits all end by their timers never reaches;
* *crash*: ``wait`` raised something other than a verdict (an exception from
  the engine: a traceback), or the result could not be described.

RSS, open file descriptors and the count of Python objects of this process
are read after a warm-up (``8 x --workers`` cases, floods among them, at the
same concurrency: the allocator keeps what concurrent floods made it grow to)
and after the last case (after a pause for closes in flight).  Limits: 0
hangs, 0 cuts, 0 crashes, fds back within 2 of before, RSS after <= 1.5x
before.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import random
import re
import socket
import struct
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import hostile as H

SCRIPTS = {
    "echo": """
- associate: {{within: {w}s}}
- serve: {{request: {{command_name: C-ECHO-RQ}}, within: {w}s}}
- release: {{within: {w}s, close_within: {w}s}}
""",
    "store": """
- associate: {{within: {w}s}}
- serve: {{within: {w}s}}
- release: {{within: {w}s, close_within: {w}s}}
""",
    "release-only": """
- associate: {{within: {w}s}}
- release: {{within: {w}s, close_within: {w}s}}
""",
    "reject": """
- associate: {{within: {w}s, reject: {{}}}}
""",
    "acceptor-release": """
- associate: {{within: {w}s}}
- release: {{within: {w}s, initiate: true}}
""",
    "leave-open": """
- associate: {{within: {w}s}}
""",
}
STEPS = {"echo": 4, "store": 4, "release-only": 3, "reject": 1, "acceptor-release": 2, "leave-open": 1}  # waits of within each
KINDS = H.KINDS + ("flood",)
WEIGHTS = {"random": 0.3, "mutated-rq": 0.2, "bad-pdata": 0.2, "stalled": 0.1, "flood": 0.2}


PLATEAU = 1.10  # RSS at the end against half-time (see run)


def _arenas() -> str:
    """CPython's small-object arenas (current / high-water), from sys._debugmallocstats."""
    import tempfile

    with tempfile.TemporaryFile(mode="w+") as f:
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read()
    now = re.search(r"arenas allocated current\s*=\s*([\d,]+)", text)
    high = re.search(r"arenas highwater mark\s*=\s*([\d,]+)", text)
    return f"{now.group(1) if now else '?'}/{high.group(1) if high else '?'}"


def _malloc_trim() -> bool:
    """Give the C heap's free pages back to the kernel (glibc ``malloc_trim(0)``); False where there is none."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def peak_kib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def scenarios(within: float) -> dict:
    from dicomconf.scenario.fake_scp import build_scenario

    return {name: build_scenario(text.format(w=within)) for name, text in SCRIPTS.items()}


def draw(rng: random.Random, count: int) -> list[tuple[str, H.Attack]]:
    """``count`` (script, attack) pairs."""
    out = []
    for _ in range(count):
        kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        attack = H.flood(rng) if kind == "flood" else H.make_attack(rng, kind)
        out.append((rng.choice(list(SCRIPTS)), attack))
    return out


def play_flood(port: int, attack: H.Attack, seconds: float) -> str:
    """Send the RQ, wait for the AC, then ``attack.flood`` again and again for ``seconds`` while
    reading whatever comes back; what the fake SCP did ("closed", "reset", "flooded")."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        sock.sendall(attack.first)
        head = b""
        sock.settimeout(5)
        while len(head) < 6:
            chunk = sock.recv(6 - len(head))
            if not chunk:
                return "closed"
            head += chunk
        if attack.after_ac:
            sock.sendall(attack.after_ac)
        sock.setblocking(False)
        end = time.monotonic() + seconds
        unsent = memoryview(b"")
        while time.monotonic() < end:
            if not unsent:
                unsent = memoryview(attack.flood)
            try:
                unsent = unsent[sock.send(unsent):]  # whole PDUs, however the kernel takes them
            except BlockingIOError:
                time.sleep(0.001)
            try:
                while sock.recv(65536):
                    pass
                return "closed"
            except BlockingIOError:
                pass
        return "flooded"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except OSError as exc:
        return f"error: {exc}"
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def play_case(script: str, scenario, attack: H.Attack, args) -> dict:
    """One fake SCP against one hostile SCU; the judgement (see the module docstring)."""
    from dicomconf.scenario.fake_scp import FakeSCP

    within = args.within
    bound = STEPS[script] * within + 2 * within + args.margin  # a flood does not extend it
    scp = FakeSCP(scenario, ae_title="DICOMCONF", accept_within=within, finish_within=within,
                  time_limit=bound + 60)
    start = time.monotonic()
    scp.start()
    try:
        if attack.flood:
            client = play_flood(scp.port, attack, args.flood_seconds)
        else:
            timers = H.Timers(artim=within, idle=STEPS[script] * within, margin=args.margin)
            client = asyncio.run(H.run_attack(scp.port, attack, timers)).outcome
        try:
            result = scp.wait(max(bound - (time.monotonic() - start), 0.1))
        except TimeoutError:
            return {"script": script, "kind": attack.kind, "variant": attack.variant, "judged": "hang",
                    "client": client, "seconds": time.monotonic() - start}
        except Exception:
            return {"script": script, "kind": attack.kind, "variant": attack.variant, "judged": "crash",
                    "client": client, "seconds": time.monotonic() - start, "detail": traceback.format_exc()}
        text = result.describe()
        judged = "cut" if "time limit" in text else ("passed" if result.passed else "failed")
        return {"script": script, "kind": attack.kind, "variant": attack.variant, "judged": judged,
                "client": client, "seconds": time.monotonic() - start, "detail": text.splitlines()[0][:200]}
    except Exception:
        return {"script": script, "kind": attack.kind, "variant": attack.variant, "judged": "crash",
                "client": "-", "seconds": time.monotonic() - start, "detail": traceback.format_exc()}
    finally:
        try:
            scp.stop()
        except RuntimeError as exc:
            print(f"stop failed: {exc}")


def run(args) -> tuple[bool, dict]:
    import logging

    logging.getLogger("dicomconf").setLevel(logging.CRITICAL)
    rng = random.Random(args.seed)
    built = scenarios(args.within)
    cases = draw(rng, args.connections)
    results: list[dict] = []
    lock = threading.Lock()
    # Warm up as the run goes (every script and kind, floods at the same concurrency), so that the
    # allocator's arenas reach their working size, then measure.
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(lambda c: play_case(c[0], built[c[0]], c[1], args), draw(random.Random(0), 8 * args.workers)))
    gc.collect()
    rss0, fds0, objects0, threads0 = rss_kib(), fds(), len(gc.get_objects()), threading.active_count()
    started = time.monotonic()

    def one(case) -> None:
        if time.monotonic() - started > args.seconds:
            return
        script, attack = case
        outcome = play_case(script, built[script], attack, args)
        with lock:
            results.append(outcome)
            if outcome["judged"] in ("hang", "cut", "crash"):
                print(f"{outcome['judged']}: {outcome}")

    half = len(cases) // 2
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(one, cases[:half]))
    gc.collect()
    rss_mid = rss_kib()
    with ThreadPoolExecutor(args.workers) as pool:
        list(pool.map(one, cases[half:]))
    elapsed = time.monotonic() - started
    time.sleep(1.0)
    gc.collect()
    rss1, fds1, objects1, threads1 = rss_kib(), fds(), len(gc.get_objects()), threading.active_count()
    # What the C allocator keeps on its free lists after the floods is not memory the harness holds:
    # glibc's malloc_trim gives it back, and the RSS after it is what is judged (both are printed).
    trimmed = _malloc_trim()
    rss2 = rss_kib()
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    longest: dict[str, float] = collections.defaultdict(float)
    for r in results:
        by_kind[r["kind"]][r["judged"]] += 1
        longest[r["kind"]] = max(longest[r["kind"]], r["seconds"])
    bad = sum(c[j] for c in by_kind.values() for j in ("hang", "cut", "crash"))
    data = {
        "cases": len(results), "seconds": round(elapsed, 1), "rss_kib": [rss0, rss1], "rss_after_trim_kib": rss2,
        "malloc_trim": trimmed, "rss_half_kib": rss_mid, "pymalloc_arenas": _arenas(),
        "fds": [fds0, fds1], "objects": [objects0, objects1],
        "rss_peak_kib": peak_kib(),
        "by_kind": {k: dict(v) for k, v in by_kind.items()}, "longest": {k: round(v, 2) for k, v in longest.items()},
        "clients": dict(collections.Counter(r["client"] for r in results)),
        "load_average": os.getloadavg(),
    }
    print(f"{len(results)} cases in {elapsed:.1f} s, {args.workers} at once, within {args.within:g} s")
    for kind, counts in sorted(by_kind.items()):
        print(f"  {kind:11s} {dict(counts)} longest {longest[kind]:.2f} s")
    print(f"RSS {rss0:,} -> {rss1:,} KiB ({rss1 / rss0:.2f}x, peak {peak_kib():,}), after malloc_trim "
          f"{rss2:,} KiB ({rss2 / rss0:.2f}x{'' if trimmed else ', no malloc_trim here'}); fds {fds0} -> {fds1}; "
          f"Python objects {objects0:,} -> {objects1:,}; threads {threads0} -> {threads1}")
    print(f"RSS at half-time {rss_mid:,} KiB, at the end {rss2:,} KiB ({rss2 / rss_mid:.2f}x; limit "
          f"{PLATEAU:g}x); pymalloc arenas now/high-water: {data['pymalloc_arenas']}")
    print(f"hangs+cuts+crashes: {bad}")
    # Memory: the second half of the cases may not grow what the first half reached.  RSS against
    # before is printed, not judged: after concurrent floods CPython's small-object allocator keeps
    # arenas that are mostly free (sys._debugmallocstats: ~116 MiB of 1 MiB arenas holding ~24 MiB),
    # its high-water mark, which a leak would pass and a plateau does not.
    ok = bad == 0 and rss2 <= PLATEAU * rss_mid and fds1 <= fds0 + 2 and len(results) == args.connections
    return ok, data
