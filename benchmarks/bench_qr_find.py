"""Study-level C-FIND: the reference SCP against DCMTK dcmqrscp and pynetdicom qrscp, ratios in one run.

Two Study Root queries at STUDY level (PS3.4 C.6.2.1), each a PatientName wild
card plus a StudyDate range (C.2.2.2.4, C.2.2.2.5): ``Name*`` with
``20250101-20250103`` (about 1.2 % of the studies) and ``Name*`` with
``20250101-20251231`` (all of them).  Every exchange (C-FIND-RQ sent to final
response read, on an open association, one raw client for all servers) is
timed; each server's answer count is checked against the data.

1. Equal size: ``--studies`` studies of ``--instances`` small Part 10 files
   each, written once, indexed by each server its own way (``dcmqridx``, the
   qrscp app's ``add_instance``, ``dicomconf scp --load``); the three servers
   run side by side and the rounds interleave them.  DCMTK's index keeps at
   most 500 studies (past that ``dcmqridx`` drops the oldest from it, whatever
   the configured quota, and dcmqrscp answers 500), hence the default.  pynetdicom's qrscp answers a
   study-level query once per matching *instance*, so it runs only with one
   instance per study.
2. ``dicomconf scp`` alone over a synthesized index of ``--big-studies`` x
   ``--big-series`` x ``--big-instances`` (10,000 studies / 1,000,000 instances
   by default), an index file in the storage directory: start-up reconciles it
   with the directory, and rows without a file (``path`` NULL) are kept
   (the 100 % query's count proves it).

    python benchmarks/bench_qr_find.py [--studies 500] [--instances 1] [--rounds 7]
                                       [--big-studies 10000 --big-series 10 --big-instances 10]
                                       [--big-rounds 5] [--no-big] [--no-peers] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import qr_peers as qr

from dicomconf.services.index import Index

QUERIES = (("~1%", "Name*", "20250101", "20250103"), ("100%", "Name*", "20250101", "20251231"))


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


DCMQR_STUDIES = 500  # the most studies dcmqridx keeps in one storage area


def _queries(studies: int) -> list[tuple[str, object, int]]:
    return [(label, qr.study_identifier(name, f"{lo}-{hi}"), qr.expected_studies(studies, name, lo, hi))
            for label, name, lo, hi in QUERIES]


def _dcmqr_expected(studies: int) -> dict[str, int | None]:
    """What dcmqrscp should answer: every match while it holds every study; unchecked past its limit
    (which studies ``dcmqridx`` drops then is its own business)."""
    if studies <= DCMQR_STUDIES:
        return {}
    return {label: None for label, *_ in QUERIES}


def _rounds(clients: dict[str, qr.QRClient], queries, rounds: int,
            expected: dict[str, dict[str, int | None]]) -> dict:
    """Interleaved rounds: every server answers every query once per round; seconds per (server, query).

    ``expected`` overrides the number of matches per server and query label (None: not checked).
    """
    times: dict[tuple[str, str], list[float]] = {(n, q[0]): [] for n in clients for q in queries}
    for r in range(rounds + 1):  # round 0 warms each server up and is not kept
        for name, client in clients.items():
            for label, identifier, count in queries:
                seconds, pendings, status = client.exchange(identifier)
                want = expected.get(name, {}).get(label, count)
                if status != 0 or (want is not None and pendings != want):
                    raise RuntimeError(f"{name}, {label} query: {pendings} matches, status {status:04X}; "
                                       f"expected {want}, 0000")
                if r:
                    times[(name, label)].append(seconds)
    return times


def _print(times: dict, queries) -> None:
    """min and median per server and query, and dicomconf's median over each peer's (below 1: faster)."""
    for label, _, expected in queries:
        ours = statistics.median(times[("dicomconf", label)])
        for (name, q), values in times.items():
            if q != label:
                continue
            lo, med = qr.summarize(values)
            ratio = "" if name == "dicomconf" else f"  dicomconf/{name} {ours / med:.2f}x"
            print(f"  {label:>5} ({expected} studies) {name:<10} min {lo * 1e3:8.2f} ms  "
                  f"median {med * 1e3:8.2f} ms{ratio}")


def equal_size(args, work: str) -> None:
    print(f"== equal size: {args.studies} studies x {args.instances} instances (small files); load {_load()}")
    t0 = time.perf_counter()
    paths = qr.write_files(os.path.join(work, "files"), args.studies, args.instances)
    print(f"  wrote {len(paths)} files in {time.perf_counter() - t0:.1f} s")
    area = os.path.join(work, "dcmqr")
    os.makedirs(area)
    print(f"  dcmqridx: {qr.dcmqridx(area, paths):.1f} s")
    with_pynetdicom = args.instances == 1
    pn_db = os.path.join(work, "qrscp.sqlite")
    if with_pynetdicom:
        print(f"  pynetdicom qrscp db (add_instance per file): {qr.fill_pynetdicom_db(pn_db, paths):.1f} s")
    storage = os.path.join(work, "storage")
    os.makedirs(storage)
    servers, clients = [], {}
    try:
        port = qr.free_port()
        t0 = time.perf_counter()
        servers.append(qr.dicomconf_qr(port, os.path.join(work, "dicomconf.sqlite"), storage,
                                       "--load", os.path.join(work, "files")))
        print(f"  dicomconf scp --load: listening after {time.perf_counter() - t0:.1f} s")
        clients["dicomconf"] = qr.QRClient(port, "DICOMCONF")
        port = qr.free_port()
        servers.append(qr.dcmqrscp(port, area, work))
        clients["dcmqrscp"] = qr.QRClient(port, "DCMQR")
        if with_pynetdicom:
            port = qr.free_port()
            servers.append(qr.pynetdicom_qrscp(port, pn_db, work))
            clients["pynetdicom"] = qr.QRClient(port, "QRSCP")
        else:
            print("  pynetdicom qrscp left out: it answers a study-level query once per instance")
        queries = _queries(args.studies)
        t0 = time.perf_counter()
        if args.studies > DCMQR_STUDIES:
            print(f"  dcmqrscp keeps at most {DCMQR_STUDIES} studies: its ratios are not at equal size (its counts unchecked)")
        times = _rounds(clients, queries, args.rounds, {"dcmqrscp": _dcmqr_expected(args.studies)})
        print(f"  {args.rounds} rounds in {time.perf_counter() - t0:.1f} s; load {_load()}")
        _print(times, queries)
    finally:
        for client in clients.values():
            client.close()
        for server in servers:
            server.stop()


def big(args, work: str) -> None:
    total = args.big_studies * args.big_series * args.big_instances
    print(f"== dicomconf alone: {args.big_studies} studies / {total:,} instances (synthesized rows); "
          f"load {_load()}")
    storage = os.path.join(work, "big-storage")
    os.makedirs(storage)
    index_file = os.path.join(storage, "index.sqlite")
    index = Index(index_file)
    t0 = time.perf_counter()
    index.synthesize(args.big_studies, args.big_series, args.big_instances)
    index.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    index.close()
    size = sum(os.path.getsize(os.path.join(storage, n)) for n in os.listdir(storage))
    print(f"  synthesized in {time.perf_counter() - t0:.1f} s, {size / 2**20:.0f} MiB on disk")
    port = qr.free_port()
    t0 = time.perf_counter()
    server = qr.dicomconf_qr(port, index_file, storage)
    client = None
    try:
        print(f"  dicomconf scp --index (reconciled with its directory): listening after "
              f"{time.perf_counter() - t0:.1f} s, RSS {server.rss_kib() / 1024:.0f} MiB")
        client = qr.QRClient(port, "DICOMCONF")
        queries = _queries(args.big_studies)
        times = _rounds({"dicomconf": client}, queries, args.big_rounds, {})
        print(f"  {args.big_rounds} rounds; RSS after {server.rss_kib() / 1024:.0f} MiB; load {_load()}")
        _print(times, queries)
    finally:
        if client is not None:
            client.close()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=500, help="studies at equal size (dcmqrscp keeps 500)")
    parser.add_argument("--instances", type=int, default=1, help="instances per study at equal size")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--big-studies", type=int, default=10_000)
    parser.add_argument("--big-series", type=int, default=10)
    parser.add_argument("--big-instances", type=int, default=10)
    parser.add_argument("--big-rounds", type=int, default=5)
    parser.add_argument("--no-big", action="store_true", help="skip the synthesized index")
    parser.add_argument("--no-peers", action="store_true", help="skip the equal-size comparison")
    parser.add_argument("--dir", default=None, help="where the temporary files go")
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench_qr_find.", dir=args.dir)
    try:
        if not args.no_peers:
            equal_size(args, work)
        if not args.no_big:
            big(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
