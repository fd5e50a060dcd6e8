"""``dicomconf decode CAPTURE``: every DICOM PDU of a capture, one line each, and a summary per association.

Theory of operation
-------------------
The fast path reads the capture with the raw reader
(:mod:`dicomconf.wire.pcapread`), reassembles and frames each TCP stream,
summarises each PDU with the core codec (:mod:`dicomconf.wire.dissect`) and
checks it with :class:`dicomconf.wire.findings.ConversationState`, one per
connection.  Which connections are DICOM is found by content on any port
(:mod:`dicomconf.wire.detect`); ``--port`` and the ports a dicomconf capture
names in its own section header comment are taken whatever their bytes.  A
stream joined mid-way is framed from its first confirmed PDU header and a
note says how many bytes were skipped, from which stream offset, in which
frame.  Frame numbers are Wireshark's (1-based, every packet of the file).

Each line is wrapped to the terminal's width (100 columns when the output is
not a terminal).  When a connection ends (FIN both ways, or RST) and at the
end of the capture, an :class:`~dicomconf.wire.association.AssociationSummary`
block follows: peers, AE titles, user information, presentation contexts
and results, DIMSE operations with statuses and round-trip times, how it
ended, and its findings with their clauses.  ``--json`` writes the same as
objects, one per line, told apart by ``record``: ``pdu``, ``note``,
``association``.

scapy is imported only for ``-v`` trees (which also turn on the DIMSE
fragment-sequence checks) and for ``--live IFACE`` (:mod:`dicomconf.wire.live`).
``--datasets`` assembles each direction's DIMSE messages with the core's
assembler and prints each data set decoded by pydicom in the transfer syntax
its presentation context was accepted with.

User identity credentials (PS3.7 D.3.3.7: a passcode, a token, a server
response) show as ``***`` in ``-v`` trees and as ``**`` in the hex dump of a
PDU scapy cannot dissect, malformed ones included as far as they can be
located (:mod:`dicomconf.wire.secrets`); ``--show-secrets`` shows them.  The
one-line summaries, the association summaries and ``--json`` never hold them.

Exit status: 0 when PDUs were decoded, 1 when the capture cannot be read or
holds no DICOM (or a live capture cannot start), 2 for a usage error; a
truncated capture prints what it could decode, then the reason, and exits 1.
Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys

from dicomconf.ul import constants as C

RQ = bytes((C.A_ASSOCIATE_RQ,))
PDATA = bytes((C.P_DATA_TF,))
_FIN, _RST = 0x01, 0x04
NOT_A_TTY_WIDTH = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("capture", nargs="?", help="pcap or pcapng file (or --live IFACE)")
    parser.add_argument("--port", type=int, action="append", default=[], metavar="N",
                        help="treat TCP port N as DICOM (repeatable); other ports are detected by content")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the full tree of every PDU")
    parser.add_argument("--show-secrets", dest="show_secrets", action="store_true",
                        help="let -v show user identity passcodes and tokens (masked as *** otherwise)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line (PDUs, notes, associations)")
    parser.add_argument("--datasets", action="store_true",
                        help="also decode each DIMSE message's data set (pydicom, the context's transfer syntax)")
    parser.add_argument("--live", metavar="IFACE", help="decode what crosses network interface IFACE (root)")
    parser.add_argument("--count", type=int, metavar="N", help="with --live: stop after N packets")
    parser.add_argument("--seconds", type=float, metavar="S", help="with --live: stop after S seconds")
    parser.add_argument("--filter", metavar="BPF", help="with --live: a capture filter, tcpdump's syntax "
                        "(e.g. 'tcp port 104'), applied in the kernel")


def _ep(ep: tuple[str, int]) -> str:
    host, port = ep
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def wrap(line: str, width: int, indent: str = "        ") -> str:
    """``line`` cut at spaces into lines of at most ``width`` columns (a word longer than that is cut)."""
    if len(line) <= width:
        return line
    parts = []
    floor = 1
    while len(line) > width:
        cut = line.rfind(" ", floor, width + 1)
        if cut <= floor:
            cut = width
        parts.append(line[:cut].rstrip(" "))
        line = indent + line[cut:].lstrip(" ")
        floor = len(indent) + 1
    parts.append(line)
    return "\n".join(parts)


def _usage(args: argparse.Namespace) -> tuple[int, str] | None:
    for port in args.port:
        if not 0 < port < 65536:
            return 2, f"--port {port} is not a TCP port"
    if args.live is None:
        if args.capture is None:
            return 2, "give a capture file, or --live IFACE"
        if args.count is not None or args.seconds is not None or args.filter is not None:
            return 2, "--count, --seconds and --filter go with --live"
        return None
    if args.capture is not None:
        return 2, "give a capture file or --live IFACE, not both"
    from dicomconf.wire.live import live_problem

    return live_problem(args.live, args.count, args.seconds)


def run(args: argparse.Namespace) -> int:
    from dicomconf.ul.errors import RemoteProtocolError
    from dicomconf.ul.pdu import decode_pdu
    from dicomconf.wire import dissect
    from dicomconf.wire.association import AssociationSummary
    from dicomconf.wire.findings import ConversationState
    from dicomconf.wire.pcapread import (
        CapturedPDU,
        CaptureError,
        StreamDecoder,
        capture_hints,
        read_frames,
        tcp_segments,
    )

    problem = _usage(args)
    if problem is not None:
        print(f"dicomconf decode: {problem[1]}", file=sys.stderr)
        return problem[0]
    out = sys.stdout
    write = out.write
    try:
        width = shutil.get_terminal_size((NOT_A_TTY_WIDTH, 24)).columns if out.isatty() else NOT_A_TTY_WIDTH
    except (AttributeError, ValueError, OSError):
        width = NOT_A_TTY_WIDTH
    width = max(width, 40)
    states: dict[int, ConversationState] = {}
    summaries: dict[int, AssociationSummary] = {}
    assemblers: dict[tuple[int, bool], object] = {}
    requestor: dict[int, bool] = {}
    start: float = 0.0
    count = notes = 0
    error: str | None = None
    if args.live is not None:
        from dicomconf.wire.live import live_frames

        name = f"interface {args.live}"
        bound = " or ".join(x for x in (args.count and f"{args.count} packets",
                                         args.seconds and f"{args.seconds:g} s") if x)

        def started() -> None:
            print(f"dicomconf decode: sniffing on {args.live} until {bound}", file=sys.stderr, flush=True)

        frames = live_frames(args.live, args.count, args.seconds, started, args.filter)
        hinted: frozenset[int] = frozenset()
        over_tls = False
    else:
        name = args.capture
        frames = read_frames(args.capture)
        hinted, comments = capture_hints(args.capture)
        over_tls = any("DICOM over TLS" in c for c in comments)
    decoder = StreamDecoder(set(args.port) | hinted)
    started = False

    def records():
        nonlocal start, started
        for seg in tcp_segments(frames):
            if not started:
                start, started = seg.ts, True  # times are relative to the capture's first packet, as in Wireshark
            yield from decoder.feed(seg)
            if seg.flags & (_FIN | _RST):
                conn = decoder.conns.get(frozenset((seg.src, seg.dst)))
                summ = summaries.get(conn.number) if conn is not None else None
                if summ is not None:
                    summ.tcp_closed(seg.src == summ.client, bool(seg.flags & _RST), seg.frame, seg.ts)
                    if summ.finished:
                        yield summ
        yield from decoder.finish()

    def block(summ: AssociationSummary) -> None:
        if summ.done:
            return
        summ.done = True
        if args.json:
            write(json.dumps(summ.as_json(), default=_json_default) + "\n")
        else:
            write("\n".join(wrap(line, width, "        ") for line in summ.lines()) + "\n")

    try:
        for rec in records():
            if isinstance(rec, AssociationSummary):
                block(rec)
                continue
            rel = rec.ts - start
            if not isinstance(rec, CapturedPDU):
                notes += 1
                if args.json:
                    write(json.dumps({"record": "note", "time": rec.ts, "frame": rec.frame, "connection": rec.connection,
                                      "src": _ep(rec.src), "dst": _ep(rec.dst), "offset": rec.offset,
                                      "skipped": rec.skipped, "note": rec.message}) + "\n")
                else:
                    write(wrap(f"{rec.frame:>6} {rel:11.6f} #{rec.connection} {_ep(rec.src)} -> {_ep(rec.dst)} "
                               f"** {rec.message}", width) + "\n")
                continue
            count += 1
            data = rec.data
            conn = rec.connection
            # The requestor is whoever sent the A-ASSOCIATE-RQ; before that, the side that connected.
            state = states.get(conn)
            if state is None:
                state = states[conn] = ConversationState(check_dimse=args.verbose)
                requestor[conn] = True
                summaries[conn] = AssociationSummary(conn, rec.src if rec.from_client else rec.dst,
                                                     rec.dst if rec.from_client else rec.src)
            if data[:1] == RQ and state.rq is None:
                requestor[conn] = rec.from_client
            from_rq = rec.from_client == requestor[conn]
            findings = state.observe(data, from_rq)
            commands: list = []
            try:
                decoded = decode_pdu(data)
                text = f"{C.PDU_NAMES.get(data[0])} {dissect.body_summary(decoded, commands)}".rstrip()
            except RemoteProtocolError:
                decoded = None
                text = dissect.summary(data)
            summaries[conn].observe(decoded, rec.from_client, rec.frame, rec.ts, findings, commands)
            if args.json:
                obj = {"record": "pdu", "time": rec.ts, "frame": rec.frame, "connection": conn, "src": _ep(rec.src),
                       "dst": _ep(rec.dst), "direction": "requestor->acceptor" if from_rq else "acceptor->requestor",
                       **dissect.fields(data), "summary": text,
                       "findings": [{"code": f.code, "clause": f.clause, "severity": f.severity,
                                     "offset": f.offset, "message": f.message} for f in findings]}
                write(json.dumps(obj, default=_json_default) + "\n")
                continue
            mark = ""
            if findings:
                musts = sum(1 for f in findings if f.severity == "must")
                mark = f"  !! {musts} must, {len(findings) - musts} should"
            line = f"{rec.frame:>6} {rel:11.6f} #{conn} {_ep(rec.src)} -> {_ep(rec.dst)} {text}{mark}"
            write((line if len(line) <= width else wrap(line, width)) + "\n")
            for f in findings:
                write(wrap(f"{'':8}! {f}", width, " " * 10) + "\n")
            if args.verbose:
                write(dissect.tree(data, args.show_secrets).rstrip("\n") + "\n")
            if args.datasets and data[:1] == PDATA:
                for line in _datasets(assemblers, (conn, from_rq), data, state):
                    write(f"{'':8}{line}\n")
        for summ in summaries.values():
            block(summ)
    except CaptureError as exc:
        error = str(exc)
        for summ in summaries.values():
            block(summ)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:  # --live stopped by hand: what was seen is summarised
        for summ in summaries.values():
            block(summ)
    out.flush()
    if error is not None:
        print(f"dicomconf decode: {error}", file=sys.stderr)
        return 1
    if count == 0:
        if over_tls:
            from dicomconf.wire.capture import decrypted_path, key_log_path

            copy, keys = decrypted_path(name), key_log_path(name)
            why = (f"{name} holds DICOM over TLS, as it was on the wire: decode "
                   + (f"its decrypted copy {copy}" if copy.exists() else "a decrypted copy")
                   + (f", or open it in Wireshark with the key log {keys}" if keys.exists() else "")
                   + " (docs/wire.md)")
        elif notes:
            why = f"no whole DICOM PDU in {name} (see the note{'s' if notes > 1 else ''} above)"
        elif args.port or hinted:
            why = f"no DICOM PDUs found in {name} (its DICOM connections carried no PDU)"
        else:
            why = f"no DICOM PDUs found in {name} (give --port N if DICOM runs on a port these checks do not recognise)"
        print(f"dicomconf decode: {why}", file=sys.stderr)
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
