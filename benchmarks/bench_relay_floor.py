"""What any relay reaches on this machine: 100 x 1 MiB C-STORE through socat against direct, same run.

socat (a C relay: TCP_NODELAY, one process per connection, no capture, no checks) stands between
the raw SCU of bench_proxy.py and the reference SCP with discard storage, alternating with the
direct path in every round, so its ratio is the floor that the proxy's goal (>= 0.8x direct, issue
19) is measured against on the same cores.  Needs ``socat`` (Debian package ``socat``).

    python benchmarks/bench_relay_floor.py [--rounds 5] [--stores 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_proxy as bp

from dicomconf.ul import dimse


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stores", type=int, default=100)
    args = ap.parse_args()
    if shutil.which("socat") is None:
        print("socat is not installed (apt-get install socat)", file=sys.stderr)
        return 2
    data = bp._dataset_bytes(1 << 20)
    streams = [b"".join(dimse.fragment(dimse.c_store_rq(i + 1, bp.CT, bp.INSTANCE, context_id=3, data=data),
                                       bp.MAX_PDU)) for i in range(args.stores)]
    scp_port, relay_port = bp.free_port(), bp.free_port()
    scp = subprocess.Popen([sys.executable, "-m", "dicomconf.cli", "scp", "--port", str(scp_port),
                            "--storage", "discard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relay = None
    try:
        bp.wait_listening(scp_port)
        relay = subprocess.Popen(["socat", f"TCP-LISTEN:{relay_port},bind=127.0.0.1,reuseaddr,fork,nodelay",
                                  f"TCP:127.0.0.1:{scp_port},nodelay"])
        bp.wait_listening(relay_port)
        ratios = []
        for r in range(args.rounds):
            pair = [bp.store_round(scp_port, streams), bp.store_round(relay_port, streams)]
            if r % 2:  # the other order too
                again = bp.store_round(relay_port, streams)
                pair = [(pair[0] + bp.store_round(scp_port, streams)) / 2, (pair[1] + again) / 2]
            ratios.append(pair[0] / pair[1])
            print(f"round {r + 1}: direct {pair[0]:.3f} s, through socat {pair[1]:.3f} s, ratio {ratios[-1]:.2f}",
                  flush=True)
        print(f"socat / direct throughput: median {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}), load {os.getloadavg()[0]:.2f}")
    finally:
        for proc in (relay, scp):
            if proc is not None:
                proc.terminate()
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
