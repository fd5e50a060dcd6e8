"""C-MOVE throughput of the reference SCP against plain C-STORE of the same files to the same destination.

One study of ``--count`` x ``--size`` MiB CT instances (Part 10 files, explicit
VR little endian) is ``--load``-ed by ``dicomconf scp`` (directory storage,
files indexed in place) with ``--move-destination DEST=127.0.0.1:PORT``; the
destination is DCMTK's ``storescp`` (by path, ``TCP_NODELAY=1``, ``--ignore``:
it reads every byte and keeps none; ``--keep`` writes them to a directory).
Each round, interleaved, times:

* ``move``: a Study Root C-MOVE-RQ at STUDY level (PS3.4 C.4.2) from a raw
  client to the final response: the SCP reads each file
  (``service_driver.read_part10``) and sends it over one association it
  requests from the destination (``scp/requestor.py``);
* ``store``: the same files sent by an in-process raw C-STORE client with the
  encoders a sub-operation uses (read with the same ``read_part10``, the
  command by ``responses.store_request_command``, the PDUs by
  ``requestor.fragments`` to the destination's maximum length), one
  association, each C-STORE-RSP awaited: connect to release;
* ``store-gen``: the same client with the general encoders (pydicom's command
  set, ``dimse.fragment``), the baseline before the fast path;
* ``storescu``: DCMTK's ``storescu`` process sending the same files (its
  process start and file parsing included).

The goal (issue 17) is move <= 1.10 x store.

    python benchmarks/bench_qr_move.py [--count 100] [--size 1] [--rounds 5] [--keep] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import qr_peers as qr
from bench_scp_common import STORESCU, dcmtk_storescp
from pydicom import Dataset

from dicomconf.scp.requestor import fragments
from dicomconf.scp.responses import store_request_command
from dicomconf.scp.part10 import read_part10
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateRQ


def _peer_max_length(ac_body: bytes) -> int:
    """The Maximum Length sub-item (PS3.8 D.1) of an A-ASSOCIATE-AC's user information; 0: unlimited."""
    pos = 68
    while pos + 4 <= len(ac_body):
        item, length = ac_body[pos], int.from_bytes(ac_body[pos + 2:pos + 4], "big")
        if item == 0x50:
            sub, end = pos + 4, pos + 4 + length
            while sub + 4 <= end:
                sub_type, sub_len = ac_body[sub], int.from_bytes(ac_body[sub + 2:sub + 4], "big")
                if sub_type == 0x51:
                    return int.from_bytes(ac_body[sub + 4:sub + 8], "big")
                sub += 4 + sub_len
        pos += 4 + length
    return 0


def store_files(port: int, called_ae: str, paths: list[str], sop_class: str, general: bool = False) -> float:
    """Connect, associate, one C-STORE per file (each response awaited), release: seconds taken.

    ``general``: pydicom's command encoder and ``dimse.fragment`` instead of the sub-operation's.
    """
    t0 = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = qr.Reader(sock)
    try:
        contexts = (PresentationContextRQ(1, sop_class, (qr.EXPLICIT_LE,)),)
        ui = UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.826.0.1.3680043.10.1")))
        sock.sendall(AAssociateRQ(called_ae, "BENCHSCU", contexts, ui).encode())
        pdu_type, body = reader.pdu()
        if pdu_type != C.A_ASSOCIATE_AC:
            raise RuntimeError(f"storescp did not accept the association (PDU {pdu_type:#04x})")
        limit = _peer_max_length(body) or 1 << 20
        for n, path in enumerate(paths, 1):
            found = read_part10(path)
            if found is None:
                raise RuntimeError(f"{path}: unreadable")
            uid = f"{qr.UID_BASE}.0.0.{n - 1}"  # write_files: instance n-1 of study 0
            if general:
                message = dimse.c_store_rq(n, sop_class, uid, data=found[1])
                sock.sendall(b"".join(dimse.fragment(message, limit)))
            else:
                command = store_request_command(sop_class, uid, n, dimse.PRIORITY_MEDIUM)
                sock.sendall(fragments(1, command, found[1], limit).encode())
            while True:
                pdu_type, body = reader.pdu()
                if pdu_type != C.P_DATA_TF:
                    raise RuntimeError(f"expected P-DATA-TF, got {pdu_type:#04x}")
                if body[5] & 0x03 == 0x03:
                    status = qr._status(body[6:])
                    if status != 0:
                        raise RuntimeError(f"C-STORE answered {status:04X}")
                    break
        sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")
        reader.pdu()
    finally:
        sock.close()
    return time.perf_counter() - t0


def storescu(port: int, called_ae: str, paths: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([STORESCU, "-aec", called_ae, "-aet", "BENCHSCU", "127.0.0.1", str(port), *paths],
                   check=True, env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=float, default=1.0, help="MiB of pixel data per instance")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="storescp writes the files (default: --ignore)")
    parser.add_argument("--no-storescu", action="store_true")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="run the SCP under cProfile and print its N costliest functions (cumulative)")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench_qr_move.", dir=args.dir)
    servers = []
    client = None
    try:
        files = os.path.join(work, "files")
        paths = qr.write_files(files, 1, args.count, pixel_bytes=int(args.size * 2**20))
        total_mib = sum(os.path.getsize(p) for p in paths) / 2**20
        print(f"{args.count} files, {total_mib:.1f} MiB; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        dest_port = qr.free_port()
        received = os.path.join(work, "received")
        if args.keep:
            os.makedirs(received)
        servers.append(dcmtk_storescp(dest_port, received if args.keep else None))
        port = qr.free_port()
        storage = os.path.join(work, "storage")
        os.makedirs(storage)
        profile = os.path.join(work, "scp.prof") if args.profile else None
        scp = qr.dicomconf_qr(port, os.path.join(work, "index.sqlite"), storage, "--load", files,
                              "--move-destination", f"DEST=127.0.0.1:{dest_port}", profile=profile)
        servers.append(scp)
        client = qr.QRClient(port, "DICOMCONF")
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyInstanceUID = qr.study_values(0)["StudyInstanceUID"]
        times: dict[str, list[float]] = {"move": [], "store": [], "store-gen": [], "storescu": []}
        for r in range(args.rounds + 1):  # round 0 warms up (page cache, first association) and is not kept
            seconds, pendings, status = client.exchange(identifier, move_destination="DEST")
            if status != 0 or pendings != args.count - 1:
                raise RuntimeError(f"C-MOVE: status {status:04X} after {pendings} pendings")
            store = store_files(dest_port, "DEST", paths, qr.CT)
            general = store_files(dest_port, "DEST", paths, qr.CT, general=True)
            scu = None if args.no_storescu else storescu(dest_port, "DEST", paths)
            if r:
                times["move"].append(seconds)
                times["store"].append(store)
                times["store-gen"].append(general)
                if scu is not None:
                    times["storescu"].append(scu)
        print(f"rounds {args.rounds}; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        ref = statistics.median(times["store"])
        for name, values in times.items():
            if not values:
                continue
            lo, med = qr.summarize(values)
            print(f"  {name:<9} min {lo:.3f} s  median {med:.3f} s  {total_mib / med:6.0f} MiB/s  "
                  f"{med / ref:.2f}x store")
        ratio = statistics.median(times["move"]) / ref
        print(f"C-MOVE / C-STORE (medians): {ratio:.2f} -> goal <= 1.10 {'met' if ratio <= 1.10 else 'NOT met'}")
        if profile:
            client.close()
            client = None
            scp.stop()
            import pstats

            pstats.Stats(profile).sort_stats("cumulative").print_stats(args.profile)
    finally:
        if client is not None:
            client.close()
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
