"""``dicomconf decode CAPTURE``: every DICOM PDU of a pcap / pcapng capture, one line each.

Theory of operation
-------------------
The fast path reads the capture with the raw reader
(:mod:`dicomconf.wire.pcapread`), reassembles and frames each TCP stream,
summarises each PDU with the core codec (:func:`dicomconf.wire.dissect.summary`)
and checks it with :class:`dicomconf.wire.findings.ConversationState`, one per
connection.  scapy is imported only for ``-v`` trees, which also turn on the
DIMSE fragment-sequence checks (pydicom decoding of every command set).

Exit status: 0 when PDUs were decoded, 1 when the capture cannot be read or
holds no DICOM, 2 for a usage error; a truncated capture prints what it could
decode, then the reason, and exits 1.  Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from dicomconf.ul import constants as C

RQ = bytes((C.A_ASSOCIATE_RQ,))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("capture", help="pcap or pcapng file")
    parser.add_argument("--port", type=int, action="append", default=[], metavar="N",
                        help="treat TCP port N as DICOM (repeatable); other ports are detected by content")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the full tree of every PDU")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _ep(ep: tuple[str, int]) -> str:
    host, port = ep
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run(args: argparse.Namespace) -> int:
    from dicomconf.wire import dissect
    from dicomconf.wire.findings import ConversationState
    from dicomconf.wire.pcapread import CaptureError, CapturedPDU, StreamDecoder, read_frames, tcp_segments

    for port in args.port:
        if not 0 < port < 65536:
            print(f"dicomconf decode: --port {port} is not a TCP port", file=sys.stderr)
            return 2
    out = sys.stdout
    write = out.write
    states: dict[int, ConversationState] = {}
    requestor: dict[int, bool] = {}
    start: float = 0.0
    count = 0
    error: str | None = None
    decoder = StreamDecoder(args.port)

    started = False

    def records():
        nonlocal start, started
        for seg in tcp_segments(read_frames(args.capture)):
            if not started:
                start, started = seg.ts, True  # times are relative to the capture's first packet, as in Wireshark
            yield from decoder.feed(seg)
        yield from decoder.finish()

    try:
        for rec in records():
            rel = rec.ts - start
            if not isinstance(rec, CapturedPDU):
                if args.json:
                    write(json.dumps({"time": rec.ts, "connection": rec.connection, "src": _ep(rec.src),
                                      "dst": _ep(rec.dst), "note": rec.message}) + "\n")
                else:
                    write(f"{rel:12.6f} #{rec.connection} {_ep(rec.src)} -> {_ep(rec.dst)} ** {rec.message}\n")
                continue
            count += 1
            data = rec.data
            conn = rec.connection
            # The requestor is whoever sent the A-ASSOCIATE-RQ; before that, the side that connected.
            state = states.get(conn)
            if state is None:
                state = states[conn] = ConversationState(check_dimse=args.verbose)
                requestor[conn] = True
            if data[:1] == RQ and state.rq is None:
                requestor[conn] = rec.from_client
            from_rq = rec.from_client == requestor[conn]
            findings = state.observe(data, from_rq)
            if args.json:
                obj = {"time": rec.ts, "connection": conn, "src": _ep(rec.src), "dst": _ep(rec.dst),
                       "direction": "requestor->acceptor" if from_rq else "acceptor->requestor",
                       **dissect.fields(data), "summary": dissect.summary(data),
                       "findings": [{"code": f.code, "clause": f.clause, "severity": f.severity,
                                     "offset": f.offset, "message": f.message} for f in findings]}
                write(json.dumps(obj, default=_json_default) + "\n")
                continue
            mark = ""
            if findings:
                musts = sum(1 for f in findings if f.severity == "must")
                mark = f"  !! {musts} must, {len(findings) - musts} should"
            write(f"{rel:12.6f} #{conn} {_ep(rec.src)} -> {_ep(rec.dst)} {dissect.summary(data)}{mark}\n")
            for f in findings:
                write(f"{'':14}! {f}\n")
            if args.verbose:
                write(dissect.tree(data).rstrip("\n") + "\n")
    except CaptureError as exc:
        error = str(exc)
    except BrokenPipeError:
        return 0
    out.flush()
    if error is not None:
        print(f"dicomconf decode: {error}", file=sys.stderr)
        return 1
    if count == 0:
        print(f"dicomconf decode: no DICOM PDUs found in {args.capture}"
              + ("" if args.port else " (give --port N if DICOM runs on a port without an association start)"),
              file=sys.stderr)
        return 1
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)
