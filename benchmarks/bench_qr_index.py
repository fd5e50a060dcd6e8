"""The Q/R index at C-FIND benchmark size: synthesize 10,000 studies / 1,000,000 instances (rows only).

Records the load time, the index file's size on disk and the process RSS, and
the cost that indexing adds to one store of a 1 MiB object (parse + rows, µs).

    python benchmarks/bench_qr_index.py [--studies 10000 --series 10 --instances 10] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time

from pydicom import Dataset

from dicomconf.services.index import Index, read_bytes_for_index
from dicomconf.ul.dimse_codec import encode_dataset


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _store_cost(n: int = 200) -> tuple[float, float]:
    """µs per store to read a 1 MiB data set for indexing, and to insert its rows."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3", "1.2.3.1"
    ds.PatientID, ds.PatientName, ds.StudyDate, ds.Modality = "P1", "Doe^Jane", "20250101", "CT"
    ds.Rows = ds.Columns = 724
    ds.BitsAllocated = 16
    ds.PixelData = bytes(724 * 724 * 2)
    index = Index()
    parse = insert = 0.0
    for i in range(n):
        ds.SOPInstanceUID = f"1.2.3.1.{i}"
        data = encode_dataset(ds, "1.2.840.10008.1.2.1")
        t0 = time.perf_counter()
        parsed = read_bytes_for_index(data, "1.2.840.10008.1.2.1")
        t1 = time.perf_counter()
        index.add(parsed, path=None, transfer_syntax="1.2.840.10008.1.2.1", size=len(data))
        t2 = time.perf_counter()
        parse += t1 - t0
        insert += t2 - t1
    return parse / n * 1e6, insert / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--series", type=int, default=10)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--dir", default=None, help="where the index file goes (default: a temporary directory)")
    args = parser.parse_args(argv)
    parse_us, insert_us = _store_cost()
    print(f"indexing one 1 MiB store: read {parse_us:.0f} us + rows {insert_us:.0f} us")
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        path = os.path.join(directory, "index.sqlite")
        rss0 = _rss_mib()
        index = Index(path)
        t0 = time.perf_counter()
        index.synthesize(args.studies, args.series, args.instances)
        elapsed = time.perf_counter() - t0
        index.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        total = args.studies * args.series * args.instances
        size = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory))
        print(f"synthesized {args.studies} studies / {total} instances in {elapsed:.1f} s "
              f"({total / elapsed:,.0f} instances/s); index {size / 2**20:.0f} MiB on disk "
              f"({size / total:.0f} bytes/instance); RSS {_rss_mib():.0f} MiB (+{_rss_mib() - rss0:.0f})")
        index.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
