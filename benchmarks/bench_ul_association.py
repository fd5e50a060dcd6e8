"""What the state machine costs on top of the codec: Association.receive_data against the bare codec and pynetdicom.

    python benchmarks/bench_ul_association.py [--runs 5] [--megabytes 64]

(a) One small P-DATA-TF (a C-ECHO-RQ, one PDU) at a time, acceptor in Sta6:
    ``Association.receive_data`` (framing, decoding, Table 9-10 lookup and
    action, DIMSE assembly, events) against the bare codec doing the same
    work without the state machine (``PDUReader.feed`` + ``decode_pdu`` +
    ``MessageAssembler``) and against pynetdicom's ``P_DATA_TF().decode`` +
    ``DIMSEMessage.decode_msg`` (no state machine either, pre-framed).
(b) The C-STORE stream of ``bench_core.py`` (b) (4 MiB data sets in 16 KiB
    PDVs, 64 KiB chunks) through ``Association.receive_data``, against the
    same two.
(c) A whole association back to back in memory: A-ASSOCIATE, 100 C-ECHO
    round trips, A-RELEASE, both ends (no peer figure: pynetdicom's state
    machine cannot run without its sockets and threads).

Same method as ``bench_core.py``: ``--runs`` runs of at least 0.3 s each; the
table shows best, median and spread ((max - min) / median).  Ratios use medians.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_core import CHUNK, PDV_SIZE, measure, pdata_stream, pynetdicom_messages, rates, summary  # noqa: E402

from dicomconf.ul import constants as C  # noqa: E402
from dicomconf.ul import dimse as D  # noqa: E402
from dicomconf.ul.association import Association  # noqa: E402
from dicomconf.ul.events import MessageReceived  # noqa: E402
from dicomconf.ul.framing import PDUReader  # noqa: E402
from dicomconf.ul.items import (  # noqa: E402
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ, AReleaseRP, AReleaseRQ, decode_pdu  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"


def contexts(max_length: int) -> tuple[AAssociateRQ, AAssociateAC]:
    ui = UserInformation((MaximumLength(max_length), ImplementationClassUID("1.2.826.0.1.3680043.9.9")))
    rq = AAssociateRQ(
        "SCP", "SCU",
        (PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),
         PresentationContextRQ(3, CT, (C.IMPLICIT_VR_LITTLE_ENDIAN,))),
        ui,
    )
    ac = AAssociateAC(
        "SCP", "SCU",
        (PresentationContextAC(1, C.PC_ACCEPTANCE, C.IMPLICIT_VR_LITTLE_ENDIAN),
         PresentationContextAC(3, C.PC_ACCEPTANCE, C.IMPLICIT_VR_LITTLE_ENDIAN)),
        ui,
    )
    return rq, ac


def acceptor_in_sta6(max_length: int) -> Association:
    rq, ac = contexts(max_length)
    a = Association("acceptor", max_pdu_length=max_length)
    a.connection_made()
    a.receive_data(rq.encode())
    a.send(ac)
    return a


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measurement (default 5)")
    parser.add_argument("--megabytes", type=int, default=64, help="size of the C-STORE stream (default 64)")
    args = parser.parse_args(argv)
    try:
        from pynetdicom import dimse_messages, pdu as pnpdu
    except ImportError:
        print("pynetdicom is not installed: pip install pynetdicom", file=sys.stderr)
        return 2
    rows: list[tuple[str, str, float, float, float]] = []

    # (a) one small P-DATA-TF at a time
    echo = b"".join(D.fragment(D.c_echo_rq(1), 0))
    n = 500
    assoc = acceptor_in_sta6(16382)

    def ours_assoc() -> None:
        receive = assoc.receive_data
        for _ in range(n):
            receive(echo)

    def ours_codec() -> None:
        reader, assembler = PDUReader(1 << 20), D.MessageAssembler({1, 3})
        for _ in range(n):
            for p in reader.feed(echo):
                assembler.add_pdata(decode_pdu(p))

    def theirs() -> None:
        for _ in range(n):
            pdu = pnpdu.P_DATA_TF()
            pdu.decode(echo)
            dimse_messages.DIMSEMessage().decode_msg(pdu.to_primitive())

    got = assoc.receive_data(echo)
    assert isinstance(got[-1], MessageReceived) and assoc.state == "Sta6"
    a_results = {}
    for impl, fn in (("dicomconf Association.receive_data", ours_assoc), ("dicomconf codec only", ours_codec),
                     ("pynetdicom decode + decode_msg", theirs)):
        a_results[impl] = summary([t / n * 1e6 for t in measure(fn, args.runs)])
        rows.append(("C-ECHO-RQ P-DATA-TF, one PDU (us per PDU)", impl, *a_results[impl]))

    # (b) the C-STORE stream
    stream, pdus, messages = pdata_stream(args.megabytes * 1024 * 1024)
    view = memoryview(stream)
    chunks = [view[i : i + CHUNK] for i in range(0, len(view), CHUNK)]
    size = len(stream)

    def assoc_stream() -> None:
        a = acceptor_in_sta6(PDV_SIZE + 6)
        got = 0
        for c in chunks:
            # each data set read as one bytes (joined on first use), as pynetdicom's decode_msg keeps it
            got += sum(len(e.message.data) > 0 for e in a.receive_data(c) if isinstance(e, MessageReceived))
        assert got == messages and a.state == "Sta6"

    def codec_stream() -> None:
        reader, assembler = PDUReader(PDV_SIZE + 12), D.MessageAssembler({1})
        got = 0
        for c in chunks:
            for p in reader.feed(c):
                got += sum(len(m.data) > 0 for m in assembler.add_pdata(decode_pdu(p)))
        assert got == messages

    def theirs_stream() -> None:
        assert pynetdicom_messages(pdus) == messages

    def gbps(times: list[float]) -> tuple[float, float, float]:
        return rates(size, times)

    label = f"C-STORE stream {size >> 20} MiB, 16 KiB PDVs (GB/s)"
    b_results = {}
    for impl, fn in (("dicomconf Association.receive_data", assoc_stream), ("dicomconf codec only", codec_stream),
                     ("pynetdicom decode + decode_msg", theirs_stream)):
        b_results[impl] = gbps(measure(fn, args.runs))
        rows.append((label, impl, *b_results[impl]))

    # (c) a whole association in memory
    rq, ac = contexts(16382)
    echoes = 100

    def lifecycle() -> None:
        req, acc = Association("requestor"), Association("acceptor")
        req.send(rq)
        acc.connection_made()
        req.connection_made()
        acc.receive_data(req.data_to_send())
        req.receive_data(acc.send(ac))
        for i in range(echoes):
            (msg,) = [e for e in acc.receive_data(req.send(D.c_echo_rq(i + 1))) if isinstance(e, MessageReceived)]
            req.receive_data(acc.send(D.c_echo_rsp(msg.message)))
        acc.receive_data(req.send(AReleaseRQ()))
        req.receive_data(acc.send(AReleaseRP()))
        acc.connection_lost()
        assert req.state == acc.state == "Sta1"

    c = summary([t * 1e3 for t in measure(lifecycle, args.runs)])
    rows.append((f"associate + {echoes} C-ECHO + release, both ends (ms)", "dicomconf", *c))

    print(f"python {sys.version.split()[0]}, {args.runs} runs each; 'best' is the fastest run, "
          "'spread' is (max - min) / median")
    print(f"{'measurement':<52} {'implementation':<36} {'best':>10} {'median':>10} {'spread':>7}")
    for what, impl, best, med, spread in rows:
        print(f"{what:<52} {impl:<36} {best:>10.3f} {med:>10.3f} {spread:>6.1%}")
    print()
    ours, codec, peer = (a_results[k][1] for k in a_results)
    print(f"(a) state machine overhead per small PDU: {ours - codec:.1f} us ({ours / codec:.2f}x the bare codec); "
          f"Association is {peer / ours:.1f}x pynetdicom's decode + assembly alone")
    ours, codec, peer = (b_results[k][1] for k in b_results)
    print(f"(b) stream: Association {ours:.2f} GB/s = {ours / codec:.0%} of the bare codec, "
          f"{ours / peer:.1f}x pynetdicom's decode + assembly")
    print(f"(c) {c[1] / (2 * echoes + 4) * 1e3:.1f} us per PDU exchanged, both ends included")
    return 0


if __name__ == "__main__":
    sys.exit(main())
