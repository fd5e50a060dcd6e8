"""The ladder (sequence) diagram of a scenario's conversation, read from its pcap.

Theory of operation
-------------------
:func:`read_ladder` reads a scenario's capture with the same frame, segment
and stream readers as ``dicomconf decode`` (:mod:`dicomconf.wire.pcapread`)
and turns it into rows of a diagram with two lifelines: dicomconf and the
system under test.  Which end of a TCP connection is which comes from the
role dicomconf played (PS3.8 9.1: the association requestor opens the
transport connection): a scenario that tests an SCP (role ``scu``) has
dicomconf connecting, one that tests an SCU (role ``scp``) has the SCU under
test connecting.  Scenarios with several connections share the two
lifelines; each row names its connection (``c1``, ``c2``, ... in order of
first appearance, with the client port in the legend).

A row is a PDU (an arrow labelled with its type, the fields that matter for
it — presentation context IDs and maximum length for the association PDUs,
result, source and reason for A-ASSOCIATE-RJ and A-ABORT (PS3.8 9.3.4,
9.3.8), each PDV's DIMSE command and status for P-DATA-TF (PS3.7 9.3) — and
the time since the first packet), a transport event (connect, FIN, RST), or
a note of the stream reader (bytes missing, a resynchronisation).  Each PDU
row also carries its decoded fields (the core's strict codec, walked
generically) and a hex dump of at most :data:`HEX_LIMIT` bytes; the
credentials of a User Identity sub-item (PS3.7 D.3.3.7: passcode, token,
server response) show in neither, only their size in the fields and ``**``
in the dump (:mod:`dicomconf.wire.secrets`; the pcap keeps them).  A PDU the
codec refuses is shown with the reason and its bytes; a capture that cannot
be read gives a ladder with ``error`` set, never an exception.  A capture
is read once (its segments kept for the framing), and a PDU's row is made
once per distinct content (:func:`pdu_row`: conversations repeat PDUs byte
for byte, and the report of a run draws thousands of them).  At most
:data:`HEAD` + :data:`TAIL` PDUs are drawn (the first and the last ones;
loops of thousands of C-STOREs stay readable and the report small).

:func:`layout` places the rows for the SVG the HTML template draws.
:func:`identify` finds the Implementation Class UID and Version Name the
system under test announced (PS3.7 D.3.3.2, D.3.3.3): from the first
A-ASSOCIATE-AC of an SCP-testing scenario and the first A-ASSOCIATE-RQ of an
SCU-testing one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    PDataTF,
    decode_pdu,
)
from dicomconf.wire import secrets
from dicomconf.wire.dissect import command_name, fast_command, summary, uid_name
from dicomconf.wire.pcapread import (
    CapturedPDU,
    CaptureError,
    Segment,
    StreamDecoder,
    read_frames,
    tcp_segments,
)

HEAD = 60  # PDUs drawn from the start of a capture
TAIL = 20  # and from its end, when it holds more than HEAD + TAIL
HEX_LIMIT = 256  # bytes of each PDU in its hex dump
LABEL_LIMIT = 96  # characters of an arrow's label
TITLE_LIMIT = 600  # characters of an arrow's tooltip (a full one-line summary)
_SYN, _FIN, _RST, _ACK = 0x02, 0x01, 0x04, 0x10
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


@dataclass(slots=True)
class Row:
    """One row of the diagram: a PDU, a transport event or a note."""

    kind: str  # "pdu" | "tcp" | "note" | "gap"
    t: float = 0.0  # seconds since the first packet
    connection: int = 0
    from_dicomconf: bool = True
    name: str = ""  # PDU type, "connect", "FIN", "RST"
    label: str = ""  # the key fields
    title: str = ""  # the whole one-line summary
    number: int = 0  # PDUs: 1, 2, ... in capture order
    size: int = 0
    bad: bool = False  # the strict codec refuses it
    fields: str = ""  # decoded fields, one per line
    hex: str = ""
    more: int = 0  # bytes left out of the hex dump


@dataclass(slots=True)
class Ladder:
    """A scenario's conversation, ready to draw."""

    rows: list[Row] = field(default_factory=list)
    pdus: int = 0  # PDUs in the capture
    not_drawn: int = 0  # PDUs left out of the diagram (HEAD + TAIL)
    connections: list[tuple[int, str, str]] = field(default_factory=list)  # number, client, server
    error: str | None = None  # the capture could not be read (whole or in part)

    @property
    def drawn(self) -> int:
        return sum(1 for r in self.rows if r.kind == "pdu")


# ---------------------------------------------------------------------- labels


def _contexts(ids: list[int]) -> str:
    if len(ids) <= 6:
        return "ctx " + ",".join(map(str, ids))
    return f"{len(ids)} ctx {ids[0]}..{ids[-1]}"


def _command_label(data: bytes | memoryview) -> str:
    """``C-STORE-RSP to=3 0x0000 success`` (PS3.7 9.3, Annex C); the short form of describe_command."""
    cmd = fast_command(data)
    if cmd is None:
        return "command set does not decode"
    cf = cmd.get("CommandField")
    parts = [command_name(cf)]  # type: ignore[arg-type]
    for keyword, word in (("MessageID", "id"), ("MessageIDBeingRespondedTo", "to")):
        if isinstance(cmd.get(keyword), int):
            parts.append(f"{word}={cmd[keyword]}")
    status = cmd.get("Status")
    if isinstance(status, int) and isinstance(cf, int):
        parts.append(f"{status:#06x} {dimse.status_meaning(cf, status)[0]}")
    return " ".join(parts)


def label(decoded: Any) -> str:
    """The fields of a decoded PDU that an arrow shows (see the module docstring)."""
    if isinstance(decoded, (AAssociateRQ, AAssociateAC)):
        pcs = decoded.presentation_contexts
        parts = []
        if isinstance(decoded, AAssociateAC):
            accepted = [pc.context_id for pc in pcs if pc.result == C.PC_ACCEPTANCE]
            parts.append(f"{_contexts(accepted)} accepted" if accepted else "no ctx accepted")
            if len(accepted) < len(pcs):
                parts.append(f"{len(pcs) - len(accepted)} rejected")
        else:
            parts.append(f"{decoded.calling_ae_title.strip() or '-'} → {decoded.called_ae_title.strip() or '-'}")
            parts.append(_contexts([pc.context_id for pc in pcs]))
        ml = decoded.user_information.maximum_length
        if ml is not None:
            parts.append(f"max {ml}")
        return ", ".join(parts)
    if isinstance(decoded, AAssociateRJ):
        return f"result {decoded.result}, source {decoded.source}, reason {decoded.reason}"
    if isinstance(decoded, AAbort):
        return f"source {decoded.source}, reason {decoded.reason}"
    if isinstance(decoded, PDataTF):
        parts = []
        for pdv in decoded.pdvs:
            if pdv.is_command and pdv.is_last:
                parts.append(_command_label(pdv.data))
            else:
                kind = "command" if pdv.is_command else "data"
                parts.append(f"{kind}{'' if pdv.is_last else ' fragment'} {len(pdv.data)} B ctx {pdv.context_id}")
        return "; ".join(parts)
    return ""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------- decoded fields


def _value(name: str, value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return raw.hex(" ") if len(raw) <= 16 else f"{len(raw)} bytes"
    if isinstance(value, str):
        if _UID.match(value):
            named = uid_name(value)
            return value if named == value else f"{value} ({named})"
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if name == "result":
            return f"{value} ({C.PC_RESULT_NAMES.get(value, 'not defined')})"
        if name == "message_control_header":
            return f"{value:#04x} ({'command' if value & C.MCH_COMMAND else 'data'}" \
                   f"{', last' if value & C.MCH_LAST else ''})"
        if name == "Status":
            return f"{value:#06x}"
        if name == "CommandField":
            return f"{value:#06x} ({command_name(value)})"
    return str(value)


def _walk(obj: Any, indent: str, out: list[str]) -> None:
    """Every field of a decoded core object, nested objects and tuples indented; credentials by size only."""
    hidden = getattr(obj, "secret_fields", ())
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in hidden and value:
            out.append(f"{indent}{f.name}: {secrets.MASK} ({len(value)} bytes)")
            continue
        if f.name == "data" and hasattr(obj, "is_command"):  # a PDV (PS3.8 E.2)
            if obj.is_command and obj.is_last:
                cmd = fast_command(value)
                if cmd is None:
                    out.append(f"{indent}command set ({len(value)} bytes) does not decode")
                    continue
                out.append(f"{indent}command set:")
                out.extend(f"{indent}  {k}: {_value(k, v)}" for k, v in cmd.items())
            else:
                out.append(f"{indent}{'command' if obj.is_command else 'data'}: {len(value)} bytes")
            continue
        if dataclasses.is_dataclass(value):
            out.append(f"{indent}{f.name}: {type(value).__name__}")
            _walk(value, indent + "  ", out)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            out.append(f"{indent}{f.name}: {len(value)}")
            for i, item in enumerate(value):
                out.append(f"{indent}  [{i}] {type(item).__name__}")
                _walk(item, indent + "      ", out)
        elif isinstance(value, tuple):
            out.append(f"{indent}{f.name}: " + (", ".join(_value(f.name, v) for v in value) or "(none)"))
        else:
            out.append(f"{indent}{f.name}: {_value(f.name, value)}")


def decoded_fields(data: bytes, decoded: Any = None) -> str:
    """The PDU's fields, one per line, as the strict codec reads them (PS3.8 9.3)."""
    name = C.PDU_NAMES.get(data[0], f"PDU type {data[0]:#04x}") if data else "(no bytes)"
    lines = [f"{name}, {len(data)} bytes"]
    if decoded is None:
        return "\n".join(lines)
    _walk(decoded, "", lines)
    return "\n".join(lines)


def hexdump(data: bytes, limit: int = HEX_LIMIT) -> tuple[str, int]:
    """``(dump, bytes left out)``: offset, 16 bytes in hex, their printable ASCII; credentials as ``**``."""
    return secrets.hexdump(data, limit)


def pdu_row(data: bytes) -> Row:
    """A PDU row with everything but its place in the conversation.

    Conversations repeat PDUs byte for byte (A-RELEASE-RQ, the same C-ECHO, the same
    known data set stored scenario after scenario): the row of a PDU of at most
    :data:`_CACHED_BYTES` is made once per distinct content and copied."""
    data = bytes(data)
    if len(data) > _CACHED_BYTES:
        return _pdu_row(data)
    return dataclasses.replace(_cached_row(data))


_CACHED_BYTES = 16384  # PDUs up to this size are remembered (at most _CACHED_ROWS of them)
_CACHED_ROWS = 2048


@lru_cache(maxsize=_CACHED_ROWS)
def _cached_row(data: bytes) -> Row:
    return _pdu_row(data)


def _pdu_row(data: bytes) -> Row:
    row = Row("pdu", size=len(data))
    row.name = C.PDU_NAMES.get(data[0], f"PDU type {data[0]:#04x}") if data else "(empty)"
    decoded = None
    try:
        decoded = decode_pdu(memoryview(data))
    except RemoteProtocolError as exc:
        row.bad = True
        row.label = f"malformed: {exc.message}"
    except Exception as exc:  # the report is written whatever the capture holds
        row.bad = True
        row.label = f"does not decode: {exc}"
    else:
        row.label = label(decoded)
    row.label = _cut(row.label, LABEL_LIMIT)
    try:
        row.title = _cut(summary(data), TITLE_LIMIT)
    except Exception as exc:  # summary is lenient, but never let one PDU stop the report
        row.title = f"{row.name} ({exc})"
    row.fields = decoded_fields(data, decoded)
    if row.bad:
        row.fields += f"\n{row.label}"
    row.hex, row.more = hexdump(data)
    return row


# ---------------------------------------------------------------------- reading


def _segments(path: Path) -> tuple[list[Segment], CaptureError | None]:
    """The capture's TCP segments, read once, and the error that stopped the reading (if any)."""
    segments: list[Segment] = []
    try:
        for seg in tcp_segments(read_frames(path)):
            segments.append(seg)
    except CaptureError as exc:
        return segments, exc
    return segments, None


def _server_ports(segments: list[Segment]) -> set[int]:
    """The ports connected to (SYN without ACK): every connection of a scenario's capture is DICOM."""
    return {seg.dst[1] for seg in segments if seg.flags & _SYN and not seg.flags & _ACK}


def _events(path: Path) -> Iterator[tuple[str, Any, Any]]:
    """("pdu", CapturedPDU, None), ("note", StreamNote, None) or ("tcp", Segment, connection).

    The connections are framed as DICOM from their first byte even when that byte does not
    start a plausible A-ASSOCIATE-RQ: a scenario that sends a malformed one is shown sending it.
    The capture is read once; a capture cut short yields what came before the cut, then raises
    its :class:`CaptureError`.
    """
    segments, error = _segments(path)
    decoder = StreamDecoder(_server_ports(segments))
    for seg in segments:
        out = decoder.feed(seg)
        transport = seg.flags & (_SYN | _FIN | _RST) and not (seg.flags & _SYN and seg.flags & _ACK)
        conn = decoder.conns.get(frozenset((seg.src, seg.dst))) if transport else None
        if conn is not None and seg.flags & _SYN:  # the connect comes before anything on it
            yield "tcp", seg, conn
        for item in out:
            yield ("pdu" if isinstance(item, CapturedPDU) else "note"), item, None
        if conn is not None and not seg.flags & _SYN and conn.dicom is not False:  # a close after the bytes it ends
            yield "tcp", seg, conn
    if error is not None:
        raise error
    for item in decoder.finish():
        yield ("pdu" if isinstance(item, CapturedPDU) else "note"), item, None


def _endpoint(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def read_ladder(path: str | Path, role: str = "scu", head: int = HEAD, tail: int = TAIL) -> Ladder:
    """The ladder of the capture at ``path``; ``role`` is the one dicomconf played (see the module docstring)."""
    ladder = Ladder()
    dicomconf_connects = role != "scp"
    rows: list[Row] = []
    t0: float | None = None
    conns: dict[int, tuple[str, str]] = {}
    try:
        for kind, item, conn in _events(Path(path)):
            t0 = item.ts if t0 is None else t0
            if kind == "tcp":
                flags = item.flags
                name = "connect" if flags & _SYN else "RST" if flags & _RST else "FIN"
                from_client = item.src == conn.client
                conns.setdefault(conn.number, (_endpoint(conn.client), _endpoint(conn.server)))
                rows.append(Row("tcp", item.ts - t0, conn.number, from_client == dicomconf_connects, name,
                                title=f"{name} from {_endpoint(item.src)} to {_endpoint(item.dst)}"))
            elif kind == "note":
                client = conns.get(item.connection, ("",))[0]
                rows.append(Row("note", item.ts - t0, item.connection,
                                (_endpoint(item.src) == client) == dicomconf_connects, "note", item.message,
                                title=f"{_endpoint(item.src)} → {_endpoint(item.dst)}: {item.message}"))
            else:
                ladder.pdus += 1
                row = pdu_row(item.data)
                row.t, row.connection, row.number = item.ts - t0, item.connection, ladder.pdus
                row.from_dicomconf = item.from_client == dicomconf_connects
                if item.from_client:
                    conns.setdefault(item.connection, (_endpoint(item.src), _endpoint(item.dst)))
                else:
                    conns.setdefault(item.connection, (_endpoint(item.dst), _endpoint(item.src)))
                rows.append(row)
    except CaptureError as exc:  # the message names the file as the report does: by its name
        ladder.error = str(exc).replace(str(path), Path(path).name)
    except Exception as exc:  # a capture is outside input: never a traceback in the report
        ladder.error = f"{Path(path).name} could not be read: {type(exc).__name__}: {exc}"
    ladder.connections = [(n, *conns[n]) for n in sorted(conns)]
    rows.sort(key=lambda r: r.t)  # the stream reader's closing notes carry the time of their stream's last bytes
    ladder.rows = _cap(rows, ladder, head, tail)
    return ladder


def _cap(rows: list[Row], ladder: Ladder, head: int, tail: int) -> list[Row]:
    """The first ``head`` and last ``tail`` PDUs (with the events between them) and a gap row."""
    if ladder.pdus <= head + tail:
        return rows
    first_cut = last_kept = None
    for i, row in enumerate(rows):
        if row.kind != "pdu":
            continue
        if row.number == head + 1:
            first_cut = i
        if row.number == ladder.pdus - tail + 1:
            last_kept = i
            break
    ladder.not_drawn = ladder.pdus - head - tail
    gap = Row("gap", rows[first_cut].t, label=f"{ladder.not_drawn} PDUs not drawn")
    return rows[:first_cut] + [gap] + rows[last_kept:]


# ---------------------------------------------------------------------- layout

WIDTH = 780
LEFT, RIGHT = 190, 640  # lifelines: dicomconf, the system under test
TOP = 34
STEP = {"pdu": 30, "tcp": 20, "note": 22, "gap": 26}  # row heights


def layout(ladder: Ladder) -> dict[str, Any]:
    """Coordinates for the SVG: ``height`` and one entry per row with ``y``, ``x1``, ``x2``."""
    out = []
    y = TOP
    for row in ladder.rows:
        y += STEP.get(row.kind, 30)
        x1, x2 = (LEFT, RIGHT) if row.from_dicomconf else (RIGHT, LEFT)
        head = -8 if x2 > x1 else 8  # the arrowhead points at x2
        out.append({"row": row, "y": y, "x1": x1, "x2": x2, "tip": f"{x2},{y} {x2 + head},{y - 4} {x2 + head},{y + 4}",
                    "mid": (LEFT + RIGHT) // 2})
    return {"width": WIDTH, "height": y + 24, "left": LEFT, "right": RIGHT, "rows": out}


# ---------------------------------------------------------------------- identity


def _announced(path: Path, want: int, from_client: bool) -> dict[str, str] | None:
    for item in _events(path):
        kind, pdu = item[0], item[1]
        if kind != "pdu" or pdu.from_client != from_client or not pdu.data or pdu.data[0] != want:
            continue
        try:
            decoded = decode_pdu(memoryview(pdu.data))
        except RemoteProtocolError:
            continue
        ui = decoded.user_information
        if ui.implementation_class_uid:
            return {"implementation_class_uid": ui.implementation_class_uid,
                    "implementation_version_name": ui.implementation_version_name}
    return None


def identify(document: Mapping[str, Any], report_dir: str | Path) -> dict[str, dict[str, str] | None]:
    """What the systems under test call themselves: ``{"scp": {...} | None, "scu": {...} | None}``.

    ``scp``: the Implementation Class UID and Version Name (PS3.7 D.3.3.2,
    D.3.3.3) of the first A-ASSOCIATE-AC the target sent in an SCP-testing
    scenario; ``scu``: those of the first A-ASSOCIATE-RQ the SCU under test
    sent in an SCU-testing scenario.  Each carries the ``scenario`` it came from.
    """
    found: dict[str, dict[str, str] | None] = {"scp": None, "scu": None}
    ordered = sorted(document.get("scenarios") or (), key=lambda s: s.get("outcome") != "passed")
    for s in ordered:
        side = "scu" if s.get("role") == "scp" else "scp"
        if found[side] is not None or not s.get("pcap"):
            continue
        want, from_client = (C.A_ASSOCIATE_RQ, True) if side == "scu" else (C.A_ASSOCIATE_AC, False)
        try:
            seen = _announced(Path(report_dir) / s["pcap"], want, from_client)
        except Exception:  # an unreadable capture: the next scenario may tell
            continue
        if seen is not None:
            found[side] = {**seen, "scenario": s["id"]}
        if all(found.values()):
            break
    return found

