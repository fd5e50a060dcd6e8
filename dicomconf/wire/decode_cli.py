"""``dicomconf decode CAPTURE``: every DICOM PDU of a pcap / pcapng capture, one line each.

Theory of operation
-------------------
The fast path reads the capture with the raw reader
(:mod:`dicomconf.wire.pcapread`), reassembles and frames each TCP stream,
summarises each PDU with the core codec (:func:`dicomconf.wire.dissect.summary`)
and checks it with :class:`dicomconf.wire.findings.ConversationState`, one per
connection.  scapy is imported only for ``-v`` trees, which also turn on the
DIMSE fragment-sequence checks (pydicom decoding of every command set).
``--datasets`` assembles each direction's DIMSE messages with the core's
assembler and prints each data set decoded by pydicom in the transfer syntax
its presentation context was accepted with.

User identity credentials (PS3.7 D.3.3.7: a passcode, a token, a server
response) show as ``***`` in ``-v`` trees and as ``**`` in the hex dump of a
PDU scapy cannot dissect, malformed ones included as far as they can be
located (:mod:`dicomconf.wire.secrets`); ``--show-secrets`` shows them.  The
one-line summaries and ``--json`` never hold them.

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
PDATA = bytes((C.P_DATA_TF,))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("capture", help="pcap or pcapng file")
    parser.add_argument("--port", type=int, action="append", default=[], metavar="N",
                        help="treat TCP port N as DICOM (repeatable); other ports are detected by content")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the full tree of every PDU")
    parser.add_argument("--show-secrets", dest="show_secrets", action="store_true",
                        help="let -v show user identity passcodes and tokens (masked as *** otherwise)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--datasets", action="store_true",
                        help="also decode each DIMSE message's data set (pydicom, the context's transfer syntax)")


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
    assemblers: dict[tuple[int, bool], object] = {}
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
                write(dissect.tree(data, args.show_secrets).rstrip("\n") + "\n")
            if args.datasets and data[:1] == PDATA:
                for line in _datasets(assemblers, (conn, from_rq), data, state):
                    write(f"{'':14}{line}\n")
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


def _datasets(assemblers: dict, key: tuple[int, bool], data: bytes, state) -> list[str]:
    """Feed one P-DATA-TF to its direction's assembler; each completed message's data set, decoded (PS3.7 6.3)."""
    from dicomconf.ul.dimse import MessageAssembler
    from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
    from dicomconf.ul.pdu import decode_pdu

    lines: list[str] = []
    assembler = assemblers.setdefault(key, MessageAssembler())
    try:
        messages = assembler.add_pdata(decode_pdu(data))
    except RemoteProtocolError as exc:
        assemblers[key] = MessageAssembler()
        return [f"(message assembly failed: {exc.message}; restarting at the next command)"]
    for msg in messages:
        if msg.data is None:
            continue
        ts = state.accepted.get(msg.context_id)
        if ts is None:
            lines.append(f"data set of {msg.name}: context {msg.context_id} was not accepted, transfer syntax unknown")
            continue
        try:
            ds = msg.dataset(ts)
        except (RemoteProtocolError, LocalProtocolError) as exc:
            lines.append(f"data set of {msg.name} does not decode: {exc}")
            continue
        lines.append(f"data set of {msg.name} ({len(msg.data)} bytes):")
        lines += ["  " + line for line in str(ds).splitlines()]
    return lines


def _json_default(value: object) -> object:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)
