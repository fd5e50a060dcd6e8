"""Core codec benchmarks: our sans-IO codec against pynetdicom, same bytes, same run.

    python benchmarks/bench_core.py [--runs 5] [--megabytes 64]

(a) A-ASSOCIATE-RQ with 5 presentation contexts (and the usual user
    information: maximum length, implementation class UID and version name)
    decoded by ``decode_pdu`` and by pynetdicom's ``A_ASSOCIATE_RQ().decode``;
    ours first as a request never seen (the decoded-item caches emptied
    before each decode: the goal's figure), then repeated (items cached).
(b) A P-DATA-TF stream of C-STORE-RQ messages (4 MiB data sets cut into
    16 KiB PDVs, one PDV per PDU) arriving in 64 KiB chunks: bytes/s through
    ``PDUReader.feed``, then + ``decode_pdu``, then + ``MessageAssembler``.
    pynetdicom gets the same PDUs already framed (its socket reads are not
    counted, in its favour) and decodes each with ``P_DATA_TF().decode`` and
    assembles with ``DIMSEMessage.decode_msg``.
(c) The way out: ``fragment`` of the same messages into P-DATA-TF PDUs.

Each measurement runs ``--runs`` times; the table gives min and median and the
spread ((max - min) / median) as the machine's noise.  Ratios use medians.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Callable

from dicomconf.ul import dimse as D
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.items import (
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul import items
from dicomconf.ul.pdu import AAssociateRQ, PDataTF, decode_pdu

CT = "1.2.840.10008.5.1.4.1.1.2"
SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50")
ABSTRACTS = (
    "1.2.840.10008.1.1",
    CT,
    "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.1.2",
    "1.2.840.10008.5.1.4.1.1.7",
)
PDV_SIZE = 16 * 1024
CHUNK = 64 * 1024
MESSAGE_SIZE = 4 * 1024 * 1024


MIN_RUN_SECONDS = 0.3


def measure(fn: Callable[[], object], runs: int) -> list[float]:
    """Seconds per call of ``fn``, one figure per run; each run repeats ``fn`` for at least 0.3 s."""
    gc.collect()
    start = time.perf_counter()
    fn()  # warm-up, and calibration of the repetitions per run
    reps = max(1, int(MIN_RUN_SECONDS / max(time.perf_counter() - start, 1e-6)) + 1)
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        times.append((time.perf_counter() - start) / reps)
    return times


def summary(times: list[float]) -> tuple[float, float, float]:
    med = statistics.median(times)
    return min(times), med, (max(times) - min(times)) / med


def associate_rq_bytes() -> bytes:
    contexts = tuple(PresentationContextRQ(2 * i + 1, a, SYNTAXES) for i, a in enumerate(ABSTRACTS))
    ui = UserInformation(
        (MaximumLength(16384), ImplementationClassUID("1.2.826.0.1.3680043.9.9"), ImplementationVersionName("DC_01"))
    )
    return AAssociateRQ("ANY-SCP", "STORESCU", contexts, ui).encode()


def pdata_stream(total: int) -> tuple[bytes, list[bytes], int]:
    pdus: list[bytes] = []
    data = bytes(range(256)) * (MESSAGE_SIZE // 256)
    messages = max(1, total // MESSAGE_SIZE)
    for i in range(messages):
        msg = D.c_store_rq(i + 1, CT, f"1.2.3.{i}", context_id=1, data=data)
        pdus += D.fragment(msg, PDV_SIZE + 6)
    return b"".join(pdus), pdus, messages


def pynetdicom_messages(pdus: list[bytes]) -> int:
    """Decode pre-framed P-DATA-TF PDUs and assemble their messages the pynetdicom way; return the count."""
    from pynetdicom import dimse_messages, pdu as pnpdu

    msg = dimse_messages.DIMSEMessage()
    got = 0
    for p in pdus:
        pdu = pnpdu.P_DATA_TF()
        pdu.decode(p)
        if msg.decode_msg(pdu.to_primitive()):
            got += 1
            msg = dimse_messages.DIMSEMessage()
    return got


def rates(size: int, times: list[float]) -> tuple[float, float, float]:
    """GB/s from seconds per pass: best (max) rate, median rate, spread."""
    gb = [size / t / 1e9 for t in times]
    med = statistics.median(gb)
    return max(gb), med, (max(gb) - min(gb)) / med


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement (default 5)")
    parser.add_argument("--megabytes", type=int, default=64, help="size of the P-DATA-TF stream (default 64)")
    args = parser.parse_args(argv)
    try:
        from pynetdicom import dimse_messages, pdu as pnpdu
    except ImportError:
        print("pynetdicom is not installed: pip install pynetdicom", file=sys.stderr)
        return 2

    rows: list[tuple[str, str, float, float, float]] = []

    # (a) A-ASSOCIATE-RQ decode
    rq = associate_rq_bytes()
    n = 200
    assert decode_pdu(rq).presentation_contexts[4].abstract_syntax == ABSTRACTS[4]
    check = pnpdu.A_ASSOCIATE_RQ()
    check.decode(rq)
    assert len(check.presentation_context) == 5

    item_caches = (
        items.decode_presentation_context_rq, items.decode_presentation_context_ac, items.decode_user_information
    )

    def ours_rq() -> None:  # a request never seen before: the decoded-item caches are emptied each time
        for _ in range(n):
            for cache in item_caches:
                cache.clear()
            decode_pdu(rq)

    def ours_rq_repeated() -> None:  # the same request again, as a modality sends it: its items are cached
        for _ in range(n):
            decode_pdu(rq)

    def theirs_rq() -> None:
        for _ in range(n):
            pnpdu.A_ASSOCIATE_RQ().decode(rq)

    a_ours = summary([t / n * 1e6 for t in measure(ours_rq, args.runs)])
    a_repeated = summary([t / n * 1e6 for t in measure(ours_rq_repeated, args.runs)])
    a_theirs = summary([t / n * 1e6 for t in measure(theirs_rq, args.runs)])
    rows.append(("A-ASSOCIATE-RQ decode (5 contexts)", "dicomconf, first time (caches emptied)", *a_ours))
    rows.append(("A-ASSOCIATE-RQ decode (5 contexts)", "dicomconf, repeated (items cached)", *a_repeated))
    rows.append(("A-ASSOCIATE-RQ decode (5 contexts)", "pynetdicom", *a_theirs))

    # (b) P-DATA-TF stream
    stream, pdus, messages = pdata_stream(args.megabytes * 1024 * 1024)
    view = memoryview(stream)
    chunks = [view[i : i + CHUNK] for i in range(0, len(view), CHUNK)]
    size = len(stream)
    limit = PDV_SIZE + 12

    def framing() -> None:
        reader = PDUReader(limit)
        feed = reader.feed
        for c in chunks:
            feed(c)

    def framing_decode() -> None:
        reader = PDUReader(limit)
        feed = reader.feed
        for c in chunks:
            for p in feed(c):
                decode_pdu(p)

    def framing_decode_assemble() -> None:
        reader = PDUReader(limit)
        assembler = D.MessageAssembler({1})
        feed, add = reader.feed, assembler.add_pdata
        got = 0
        for c in chunks:
            for p in feed(c):
                for m in add(decode_pdu(p)):
                    got += len(m.data) > 0  # the data set as one bytes, as pynetdicom's decode_msg keeps it
        assert got == messages

    def theirs_decode() -> None:
        for p in pdus:
            pnpdu.P_DATA_TF().decode(p)

    def theirs_decode_assemble() -> None:
        assert pynetdicom_messages(pdus) == messages

    def gbps(times: list[float]) -> tuple[float, float, float]:
        return rates(size, times)

    label = f"P-DATA-TF {size >> 20} MiB, 16 KiB PDVs, 64 KiB chunks (GB/s)"
    b_rows = [
        ("PDUReader.feed", framing),
        ("feed + decode_pdu", framing_decode),
        ("feed + decode_pdu + MessageAssembler", framing_decode_assemble),
    ]
    b_results = {}
    for name, fn in b_rows:
        b_results[name] = gbps(measure(fn, args.runs))
        rows.append((label, f"dicomconf {name}", *b_results[name]))
    reader = PDUReader(limit)
    copied = sum(len(p) for c in chunks for p in reader.feed(c) if not isinstance(p, memoryview))
    b_theirs = gbps(measure(theirs_decode, args.runs))
    rows.append((label, "pynetdicom P_DATA_TF().decode (pre-framed)", *b_theirs))
    b_theirs_full = gbps(measure(theirs_decode_assemble, args.runs))
    rows.append((label, "pynetdicom decode + DIMSEMessage.decode_msg", *b_theirs_full))

    # (c) fragment
    data = bytes(MESSAGE_SIZE)
    out_msgs = [D.c_store_rq(i + 1, CT, f"1.2.3.{i}", data=data) for i in range(messages)]

    def ours_fragment() -> None:
        for m in out_msgs:
            D.fragment(m, PDV_SIZE + 6)

    c_ours = gbps(measure(ours_fragment, args.runs))
    rows.append(("fragment() C-STORE-RQ into 16 KiB PDVs (GB/s)", "dicomconf", *c_ours))

    print(f"python {sys.version.split()[0]}, {args.runs} runs each; 'best' is the fastest run, "
          "'spread' is (max - min) / median")
    print(f"{'measurement':<58} {'implementation':<46} {'best':>10} {'median':>10} {'spread':>7}")
    for what, impl, best, med, spread in rows:
        unit = " us" if "decode (5" in what else " GB/s"
        print(f"{what:<58} {impl:<46} {best:>7.3f}{unit:<3} {med:>7.3f}{unit:<3} {spread:>6.1%}")
    print()
    print(f"(a) A-ASSOCIATE-RQ decode: dicomconf is {a_theirs[1] / a_ours[1]:.1f}x pynetdicom (median, first time; "
          f"goal >= 5x); a repeated request {a_theirs[1] / a_repeated[1]:.1f}x")
    full = b_results["feed + decode_pdu + MessageAssembler"][1]
    fd = b_results["feed + decode_pdu"][1]
    print(f"(b) P-DATA-TF feed + decode: {fd:.2f} GB/s (goal >= 1 GB/s), "
          f"{fd / b_theirs[1]:.1f}x pynetdicom's decode alone")
    print(f"    PDUs straddling two chunks (joined once, the only copy in framing): {copied / size:.1%} of the bytes")
    print(f"    with message assembly: {full:.2f} GB/s, {full / b_theirs_full[1]:.1f}x pynetdicom's decode + assembly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
