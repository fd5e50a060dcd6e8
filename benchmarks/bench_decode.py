"""Benchmark: ``dicomconf decode`` against tshark on a capture of 10,000 PDUs.

One association, 5,000 C-ECHO round trips (A-ASSOCIATE-RQ/AC, 4,999 echo
request/response pairs, A-RELEASE-RQ/RP: 10,002 PDUs), written with
dicomconf's own capture writer (pcapng naming its port, so ``dicomconf decode`` runs with no
option; tshark is told the port with ``-d``).  dicomconf's timed run is the default text view
(one-line PDUs wrapped at 100 columns, the association summary).  Each tool runs ``--runs`` times, alternating,
as a subprocess with output to /dev/null; the script prints every time, the
median, min and max, and the ratio of medians.  The goal: dicomconf's median
is no longer than tshark's (exit status 1 otherwise).

    python benchmarks/bench_decode.py [--runs 5] [--keep FILE]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dicomconf.wire.capture import Conversation, write_pcap
from dicomconf.wire.craft import build_pdu

PORT = 11112


def make_capture(path: Path, echoes: int = 5000) -> int:
    conv = Conversation(("127.0.0.1", 50000), ("127.0.0.1", PORT))
    t = 1_700_000_000.0
    conv.opened(t)
    conv.client_sent(build_pdu({"pdu": "A-ASSOCIATE-RQ"}), t)
    conv.server_sent(build_pdu({"pdu": "A-ASSOCIATE-AC"}), t)
    count = 2
    for i in range(1, echoes):
        t += 0.0005
        conv.client_sent(build_pdu({"pdu": "P-DATA-TF", "pdvs": [
            {"command": {"CommandField": "C-ECHO-RQ", "MessageID": i}}]}), t)
        conv.server_sent(build_pdu({"pdu": "P-DATA-TF", "pdvs": [
            {"command": {"CommandField": "C-ECHO-RSP", "MessageIDBeingRespondedTo": i, "Status": 0}}]}), t)
        count += 2
    conv.client_sent(build_pdu({"pdu": "A-RELEASE-RQ"}), t)
    conv.server_sent(build_pdu({"pdu": "A-RELEASE-RP"}), t)
    conv.closed("client", t)
    write_pcap(path, [conv])
    return count + 2


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="also write the capture here")
    args = parser.parse_args()
    tshark = shutil.which("tshark")
    dicomconf = shutil.which("dicomconf")
    if tshark is None or dicomconf is None:
        print("needs tshark and the dicomconf command on PATH", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "echo5000.pcap"
        pdus = make_capture(path)
        size = path.stat().st_size
        if args.keep:
            shutil.copy(path, args.keep)
        ours_cmd = [dicomconf, "decode", str(path)]
        theirs_cmd = [tshark, "-r", str(path), "-d", f"tcp.port=={PORT},dicom", "-T", "fields", "-e",
                      "dicom.pdu.type"]
        check = subprocess.run(ours_cmd + ["--json"], capture_output=True, text=True, check=True).stdout
        found = check.count('{"record": "pdu"')
        assert found == pdus, f"dicomconf decode found {found} PDUs of {pdus}"
        timed(ours_cmd), timed(theirs_cmd)  # warm the page cache
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(timed(ours_cmd))
            theirs.append(timed(theirs_cmd))
    print(f"capture: {pdus} PDUs, {size} bytes; {args.runs} runs each, alternating")
    for name, times in (("dicomconf decode", ours), ("tshark -T fields", theirs)):
        print(f"{name:18} median {statistics.median(times):.3f} s  min {min(times):.3f}  max {max(times):.3f}  "
              f"runs {' '.join(f'{t:.3f}' for t in times)}")
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"ratio (dicomconf / tshark, medians): {ratio:.2f}")
    return 0 if ratio <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
