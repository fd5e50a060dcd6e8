"""Memory storage is bounded: RSS of the reference SCP after 1,000 x 5 MiB C-STOREs into memory.

The SCP runs as its own process (``dicomconf scp --storage memory``, its
default ``memory_storage_limit`` of 256 MiB unless ``--limit`` says
otherwise) on 127.0.0.1.  pynetdicom, as an independent SCU, sends
``--count`` C-STOREs of a ``--size`` MiB CT data set (a new SOP Instance UID
each) on ``--associations`` associations in turn.  Every store is answered:
0000 while the limit leaves room, A700 (out of resources, PS3.4 B.2.3)
after.  The SCP's RSS (``/proc/PID/status`` VmRSS) is sampled before the
first store, after every ``--every`` stores and at the end; the goal is the
highest of them, and the kernel's high-water mark (VmHWM) at the end,
under the limit + 64 MiB.  Nothing is removed (no DIMSE
service deletes instances), so past the first ~50 stores the numbers are
those of a full memory PACS answering A700 while data keeps arriving.

    python benchmarks/bench_scp_memory_cap.py [--count 1000] [--size 5] [--limit 256MiB]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time

from bench_scp_common import CT, dicomconf_scp, free_port

MIB = 1 << 20


def _dataset(size: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Memory^Cap"
    ds.PatientID = "CAP"
    ds.Modality = "CT"
    ds.Rows, ds.Columns = 1024, size // 2048
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(256)) * (size // 256)
    return ds


def _high_water_kib(pid: int) -> int:
    """The process's peak RSS so far (VmHWM), which catches what falls between samples."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="C-STOREs in all (default 1000)")
    parser.add_argument("--size", type=int, default=5, help="MiB of pixel data per store (default 5)")
    parser.add_argument("--limit", default="256MiB", help="memory_storage_limit of the SCP (default 256MiB)")
    parser.add_argument("--associations", type=int, default=10, help="stores spread over this many associations")
    parser.add_argument("--every", type=int, default=50, help="sample RSS after every N stores")
    args = parser.parse_args()

    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    from pynetdicom import AE  # an independent SCU

    from dicomconf.scp.config import parse_size

    limit = parse_size(args.limit, allow_none=True)
    ds = _dataset(args.size * MIB)
    ae = AE(ae_title="CAPBENCH")
    ae.add_requested_context(CT, ExplicitVRLittleEndian)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    port = free_port()
    statuses: dict[int, int] = {}
    samples: list[tuple[int, int]] = []
    per_association = -(-args.count // args.associations)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "scp.yaml")
        with open(cfg, "w") as f:
            # raw data sets, and the cap is what is measured: no index (which would read and refuse them)
            f.write(f"storage: memory\nindex: none\nmemory_storage_limit: {limit if limit is not None else 'null'}\n"
                    "artim_timeout: 60\nidle_timeout: 600\n")
        with dicomconf_scp(port, "--event-loop", "asyncio", config=cfg) as server:
            samples.append((0, server.rss_kib()))
            start = time.perf_counter()
            sent = 0
            while sent < args.count:
                assoc = ae.associate("127.0.0.1", port, ae_title="DICOMCONF")
                if not assoc.is_established:
                    raise SystemExit("association refused")
                for _ in range(min(per_association, args.count - sent)):
                    ds.SOPInstanceUID = generate_uid()
                    status = assoc.send_c_store(ds)
                    code = int(status.Status) if "Status" in status else -1
                    statuses[code] = statuses.get(code, 0) + 1
                    sent += 1
                    if sent % args.every == 0:
                        samples.append((sent, server.rss_kib()))
                assoc.release()
            elapsed = time.perf_counter() - start
            time.sleep(0.5)
            samples.append((sent, server.rss_kib()))
            high_water = _high_water_kib(server.pid)
    for n, rss in samples:
        print(f"after {n:5d} stores: RSS {rss / 1024:7.1f} MiB", flush=True)
    peak = max(high_water, *(rss for _, rss in samples)) / 1024
    goal = (limit / MIB + 64) if limit is not None else float("inf")
    answered = ", ".join(f"{code:04X} x {n}" for code, n in sorted(statuses.items()))
    print(f"{sent} x {args.size} MiB C-STORE in {elapsed:.1f} s ({sent * args.size / elapsed:.0f} MiB/s), "
          f"answered {answered}")
    print(f"RSS before {samples[0][1] / 1024:.1f} MiB, highest {peak:.1f} MiB (the kernel's high-water mark, "
          f"VmHWM), last {samples[-1][1] / 1024:.1f} MiB; "
          f"goal: under limit + 64 MiB = {goal:.0f} MiB: {'met' if peak < goal else 'NOT met'}")
    sys.exit(0 if peak < goal else 1)


if __name__ == "__main__":
    main()
