"""Coverage-guided fuzzing of the core's decoders with atheris (libFuzzer for Python).

The target is :func:`fuzz_target.run_one` (beside this script; the corpus test
tests/ul/test_ul_fuzz_corpus.py replays inputs through the same function):
every decoder of a peer's bytes must raise nothing but RemoteProtocolError
(PS3.8 9.3, Annex E; PS3.7 6.3.1), and the promises between the modules must
hold (see that module).  Install the tool with ``pip install -e '.[fuzz]'``.

    python benchmarks/fuzz_decoders.py --runs 1000000 [--corpus DIR] [--max-time S]
    python benchmarks/fuzz_decoders.py --seed-from DIR_OF_PCAPS [--corpus DIR]
    python benchmarks/fuzz_decoders.py --merge-from DIR [--corpus DIR]
    python benchmarks/fuzz_decoders.py --replay FILE [FILE ...]

Theory of operation
-------------------
The script runs the fuzzer in a child process (``--child``, the same file)
and reads its statistics, so that a run that libFuzzer ends (it exits the
process when done, or on a timeout or out-of-memory) still gets a summary:
executions, seconds, executions per second, coverage, corpus size, peak RSS
and crashes.  In the child, an exception from the target that is not the
protocol error class is a crash: it is counted, its input saved as
``crash-<sha1>`` with its traceback beside it (once per distinct exception
type and place), and fuzzing goes on (``--stop-on-crash`` stops at the first).
libFuzzer itself saves inputs that take longer than ``--timeout`` seconds
(``timeout-*``) or more than ``--rss-limit-mb`` (``oom-*``) and stops.

New inputs go to a working directory (``--work``, a fresh temporary one by
default); the committed corpus (``--corpus``, tests/ul/fuzz_corpus) is read.
``--seed-from`` extracts every PDU of every capture under a directory
(:func:`dicomconf.wire.pcapread.read_pdus`), and each direction's stream of
PDUs (its first 32 KiB), into inputs, then keeps those that add coverage
(libFuzzer's ``-merge=1``) in the corpus; ``--merge-from`` does the same for
another corpus (e.g. a run's working directory).  The exit status is 1 when
anything crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent / "tests" / "ul" / "fuzz_corpus"
CRASH_LOG = "crashes.log"
STREAM_SEED_LIMIT = 32 * 1024


# --------------------------------------------------------------------------
# The child: atheris around fuzz_target.run_one


def _signature(exc: BaseException) -> str:
    """Exception type and the innermost frame of ours it came from: one name per distinct crash."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "dicomconf" in f.filename or "fuzz_target" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(exc).__name__}@{where}"


def _child(libfuzzer_args: list[str], artifacts: Path, stop_on_crash: bool, instrument_pydicom: bool,
           argv0: str) -> None:
    import warnings

    import atheris

    warnings.simplefilter("ignore")  # pydicom warns about the odd values it is fed; errors are what count
    sys.path.insert(0, str(HERE))
    include = ["dicomconf", "fuzz_target"] + (["pydicom"] if instrument_pydicom else [])
    with atheris.instrument_imports(include=include):
        import fuzz_target
    run_one = fuzz_target.run_one
    seen: set[str] = set()
    log = open(artifacts / CRASH_LOG, "a", buffering=1)  # noqa: SIM115 - open until libFuzzer exits the process

    def test_one_input(data: bytes) -> None:
        try:
            run_one(data)
        except Exception as exc:  # run_one swallows the protocol errors of the decoders: anything out is a crash
            if stop_on_crash:
                raise
            sig = _signature(exc)
            digest = hashlib.sha1(data).hexdigest()
            log.write(f"{sig}\t{digest}\n")
            if sig not in seen:
                seen.add(sig)
                (artifacts / f"crash-{digest}").write_bytes(data)
                (artifacts / f"crash-{digest}.txt").write_text("".join(traceback.format_exception(exc)))

    # libFuzzer's -merge runs argv[0] again through the shell: make it the whole command that got here.
    atheris.Setup([argv0, *libfuzzer_args], test_one_input)
    atheris.Fuzz()


# --------------------------------------------------------------------------
# The parent: run the child, read its statistics


_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")
_PROGRESS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)")


def _run_child(args: argparse.Namespace, libfuzzer_args: list[str], artifacts: Path, log_path: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--artifacts", str(artifacts)]
    if args.stop_on_crash:
        cmd.append("--stop-on-crash")
    if args.instrument_pydicom:
        cmd.append("--instrument-pydicom")
    cmd.append("--")
    cmd += libfuzzer_args
    stats: dict = {"progress": None}
    started = time.monotonic()
    last_print = started
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
        assert proc.stderr is not None
        for line in proc.stderr:
            log.write(line)
            if m := _STAT.match(line):
                stats[m.group(1)] = int(m.group(2))
            elif m := _PROGRESS.match(line):
                stats["progress"] = m.groups()
                now = time.monotonic()
                if args.verbose or now - last_print >= args.progress_every:
                    last_print = now
                    print(f"  {now - started:7.1f} s  {line.strip()}", flush=True)
            elif args.verbose or "ERROR" in line or "Traceback" in line:
                print("  " + line.rstrip(), flush=True)
        stats["returncode"] = proc.wait()
    stats["wall"] = time.monotonic() - started
    return stats


def _read_crashes(artifacts: Path) -> tuple[int, dict[str, int]]:
    total, by_sig = 0, {}
    path = artifacts / CRASH_LOG
    if path.exists():
        for line in path.read_text().splitlines():
            sig = line.split("\t")[0]
            total += 1
            by_sig[sig] = by_sig.get(sig, 0) + 1
    return total, by_sig


def fuzz(args: argparse.Namespace) -> int:
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="dicomconf-fuzz-"))
    corpus_dir = work / "corpus"
    artifacts = Path(args.artifacts) if args.artifacts else work / "artifacts"
    corpus_dir.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / CRASH_LOG).unlink(missing_ok=True)
    dirs = [str(corpus_dir)] + [str(c) for c in args.corpus if Path(c).is_dir()]
    libfuzzer_args = [
        f"-runs={args.runs}",
        f"-timeout={args.timeout}",
        f"-rss_limit_mb={args.rss_limit_mb}",
        f"-max_len={args.max_len}",
        f"-seed={args.seed}",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
    ]
    if args.max_time:
        libfuzzer_args.append(f"-max_total_time={args.max_time}")
    log_path = artifacts / "fuzz.log"
    print(f"fuzzing fuzz_target.run_one: corpus {', '.join(dirs)}; log {log_path}", flush=True)
    stats = _run_child(args, libfuzzer_args + dirs, artifacts, log_path)
    total, by_sig = _read_crashes(artifacts)
    stopped = sorted(p.name for p in artifacts.iterdir() if p.name.split("-")[0] in ("timeout", "oom", "leak", "slow"))
    if args.stop_on_crash:  # the crash went to libFuzzer, which saved it and stopped
        crashed = sorted(p.name for p in artifacts.iterdir() if p.name.startswith("crash-") and "." not in p.name)
        stopped += crashed
        by_sig.update({f"the first crash ({name})": 1 for name in crashed})
        total += len(crashed)
    execs = stats.get("number_of_executed_units", 0)
    wall = stats["wall"]
    progress = stats["progress"]
    print(f"execs: {execs}")
    print(f"seconds: {wall:.1f} (libFuzzer's own rate: {stats.get('average_exec_per_sec', 0)} execs/s)")
    print(f"execs/s: {execs / wall:.0f}" if wall else "execs/s: 0")
    if progress:
        print(f"coverage: cov {progress[2]} ft {progress[3]}; corpus {progress[4]} inputs ({progress[5]})")
    print(f"new inputs: {stats.get('new_units_added', 0)} in {corpus_dir}")
    print(f"peak RSS: {stats.get('peak_rss_mb', 0)} MB")
    print(f"crashes: {total} execution(s), {len(by_sig)} distinct")
    for sig, n in sorted(by_sig.items()):
        print(f"  {n:8d}  {sig}")
    for name in stopped:
        print(f"  libFuzzer stopped on {artifacts / name}")
    if total or by_sig:
        print(f"reproducers: {artifacts}/crash-* (replay: {Path(__file__).name} --replay FILE)")
    if stats["returncode"] not in (0, None) and not stopped:
        print(f"the fuzzer exited with status {stats['returncode']}; see {log_path}")
    return 1 if total or stopped or stats["returncode"] else 0


# --------------------------------------------------------------------------
# Seeding and merging


def extract_seeds(pcap_dir: Path, out: Path) -> int:
    """Every PDU, and each direction's first PDUs as one stream, of every capture under ``pcap_dir``."""
    sys.path.insert(0, str(HERE))
    import fuzz_target as T

    from dicomconf.ul import constants as C
    from dicomconf.ul.errors import RemoteProtocolError
    from dicomconf.ul.pdu import AAssociateAC, decode_pdu
    from dicomconf.wire.pcapread import CapturedPDU, CaptureError, read_pdus

    out.mkdir(parents=True, exist_ok=True)
    written: set[str] = set()

    def write(data: bytes) -> None:
        digest = hashlib.sha1(data).hexdigest()
        if digest not in written:
            written.add(digest)
            (out / digest).write_bytes(data)

    captures = sorted(p for p in pcap_dir.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    for path in captures:
        streams: dict[tuple[int, bool], bytearray] = {}
        syntaxes: dict[int, dict[int, str]] = {}  # connection -> context ID -> accepted transfer syntax
        try:
            for item in read_pdus(path):
                if not isinstance(item, CapturedPDU):
                    continue
                pdu_bytes, conn, client = item.data, item.connection, item.from_client
                try:
                    pdu = decode_pdu(pdu_bytes)
                except RemoteProtocolError:
                    pdu = None
                if isinstance(pdu, AAssociateAC):
                    syntaxes[conn] = {pc.context_id: pc.transfer_syntax for pc in pdu.presentation_contexts
                                      if pc.result == C.PC_ACCEPTANCE and pc.transfer_syntax}
                ts = C.IMPLICIT_VR_LITTLE_ENDIAN
                if pdu_bytes[:1] == bytes((C.P_DATA_TF,)) and len(pdu_bytes) > 10:
                    ts = syntaxes.get(conn, {}).get(pdu_bytes[10], ts)
                ts_index = T.TRANSFER_SYNTAXES.index(ts) if ts in T.TRANSFER_SYNTAXES else 0
                first = pdu_bytes[0] in (C.A_ASSOCIATE_RQ, C.A_ASSOCIATE_AC, C.A_ASSOCIATE_RJ)
                start = (0 if first else 1) if client else (2 if first else 3)  # fuzz_target.STARTS
                flags = ts_index | (1 << 2) | (start << 4)
                write(T.seed(pdu_bytes, flags, cut=len(pdu_bytes) // 2))
                stream = streams.setdefault((conn, client), bytearray())
                if len(stream) + len(pdu_bytes) <= STREAM_SEED_LIMIT:
                    stream += pdu_bytes
        except CaptureError as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        for (conn, client), stream in streams.items():
            if stream:
                flags = (1 << 2) | ((0 if client else 2) << 4)
                write(T.seed(bytes(stream), flags, cut=len(stream) // 3))
    print(f"{len(captures)} capture(s): {len(written)} distinct seed input(s) in {out}")
    return len(written)


def merge(args: argparse.Namespace, sources: list[Path]) -> int:
    """Keep the inputs of ``sources`` that add coverage to the corpus (libFuzzer -merge=1)."""
    corpus = Path(args.corpus[0])
    corpus.mkdir(parents=True, exist_ok=True)
    before = len(list(corpus.iterdir()))
    artifacts = Path(tempfile.mkdtemp(prefix="dicomconf-fuzz-merge-"))
    libfuzzer_args = ["-merge=1", f"-max_len={args.max_len}", f"-timeout={args.timeout}",
                      f"-rss_limit_mb={args.rss_limit_mb}", f"-artifact_prefix={artifacts}/",
                      str(corpus), *map(str, sources)]
    stats = _run_child(args, libfuzzer_args, artifacts, artifacts / "merge.log")
    files = list(corpus.iterdir())
    size = sum(p.stat().st_size for p in files)
    print(f"corpus {corpus}: {before} -> {len(files)} input(s), {size} bytes (log {artifacts / 'merge.log'})")
    total, by_sig = _read_crashes(artifacts)
    for sig, n in sorted(by_sig.items()):
        print(f"  crash while merging: {n}x {sig} (reproducers in {artifacts})")
    return 1 if total or stats["returncode"] else 0


def replay(paths: list[str]) -> int:
    import warnings

    warnings.simplefilter("ignore")
    sys.path.insert(0, str(HERE))
    import fuzz_target

    failed = 0
    for name in paths:
        try:
            fuzz_target.run_one(Path(name).read_bytes())
        except Exception:  # noqa: BLE001 - report every crash, go on with the next input
            failed += 1
            print(f"{name}: CRASH")
            traceback.print_exc()
        else:
            print(f"{name}: ok")
    return 1 if failed else 0


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1 :]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=1_000_000, help="executions (default 1,000,000; -1: until --max-time)")
    p.add_argument("--max-time", type=int, default=0, help="stop after this many seconds (0: no limit)")
    p.add_argument("--corpus", action="append", default=None,
                   help=f"corpus directory, repeatable; the first one is merged into (default {DEFAULT_CORPUS})")
    p.add_argument("--work", help="where new inputs and artifacts go (default: a new temporary directory)")
    p.add_argument("--artifacts", help="where crashes, timeouts and the log go (default: WORK/artifacts)")
    p.add_argument("--seed-from", metavar="DIR", help="extract seed inputs from the captures under DIR, merge, exit")
    p.add_argument("--merge-from", metavar="DIR", help="merge the inputs of DIR that add coverage into the corpus")
    p.add_argument("--replay", nargs="+", metavar="FILE", help="run these inputs through the target and exit")
    p.add_argument("--max-len", type=int, default=32768, help="longest input the fuzzer makes (default 32768)")
    p.add_argument("--timeout", type=int, default=10, help="seconds one input may take (default 10)")
    p.add_argument("--rss-limit-mb", type=int, default=1024, help="memory limit of the fuzzer (default 1024)")
    p.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed (default 1)")
    p.add_argument("--stop-on-crash", action="store_true", help="stop at the first crash (libFuzzer saves it)")
    p.add_argument("--instrument-pydicom", action="store_true", help="guide by pydicom's coverage too (slower)")
    p.add_argument("--progress-every", type=float, default=30.0, help="seconds between progress lines (default 30)")
    p.add_argument("-v", "--verbose", action="store_true", help="show all of libFuzzer's output")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        argv0 = " ".join(shlex.quote(a) for a in [sys.executable, str(Path(__file__).resolve()), *argv, "--"])
        _child(extra, Path(args.artifacts), args.stop_on_crash, args.instrument_pydicom, argv0)
        return 0
    args.corpus = args.corpus or [str(DEFAULT_CORPUS)]
    if args.replay:
        return replay(args.replay)
    try:
        import atheris  # noqa: F401 - only to say clearly that it is missing
    except ImportError:
        print("atheris is not installed: pip install -e '.[fuzz]' (or pip install 'atheris>=2.3')", file=sys.stderr)
        return 2
    if args.seed_from:
        pcaps = Path(args.seed_from)
        if not pcaps.is_dir():
            print(f"--seed-from {pcaps}: not a directory", file=sys.stderr)
            return 2
        staging = Path(tempfile.mkdtemp(prefix="dicomconf-fuzz-seeds-"))
        if not extract_seeds(pcaps, staging):
            print(f"no PDUs found in the captures under {pcaps}", file=sys.stderr)
            return 2
        status = merge(args, [staging])
        shutil.rmtree(staging, ignore_errors=True)
        return status
    if args.merge_from:
        if not Path(args.merge_from).is_dir():
            print(f"--merge-from {args.merge_from}: not a directory", file=sys.stderr)
            return 2
        return merge(args, [Path(args.merge_from)])
    return fuzz(args)


if __name__ == "__main__":
    sys.exit(main())
