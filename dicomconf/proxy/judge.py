"""Judging both peers of one relayed association: findings, state machine position, summary.

Theory of operation
-------------------
The relay hands an :class:`AssociationJudge` every chunk of bytes each peer
sent, with the time it was read.  Each direction is framed into whole PDUs
(PS3.8 9.3.1) by the core's :class:`~dicomconf.ul.framing.PDUReader` (views
into the chunks, no copy), and each PDU is judged three ways:

- the PDU checks the scenarios and ``dicomconf decode`` use
  (:class:`dicomconf.wire.findings.ConversationState`): structure, the
  negotiation checked against the A-ASSOCIATE-RQ, the Maximum Length the
  *receiver* announced (PS3.8 D.1.1: exceeding it is the sender's violation),
  the DIMSE messages assembled from the PDVs (PS3.7);
- the state machine position (:class:`StateTracker`, PS3.8 9.2 Table 9-10):
  both peers' states are followed from the wire, so a PDU its sender was not
  allowed to send in its state, or that its receiver's table answers with an
  abort (AA-1, AA-7, AA-8), is a ``pdu.unexpected`` finding citing the cell;
- the per-association summary of ``dicomconf decode``
  (:class:`dicomconf.wire.association.AssociationSummary`): AE titles,
  contexts, DIMSE operations with statuses and round trips, how it ended.

The hot path: once the A-ASSOCIATE-AC is seen, a P-DATA-TF is judged from its
headers (:meth:`AssociationJudge._pdata`): the PDU and PDV item headers
(lengths, context IDs against the accepted ones, the message control header,
the receiver's Maximum Length), the same findings as the walk of
:mod:`dicomconf.wire.findings`, without decoding the PDU twice.  Its PDVs go
through the core's DIMSE assembler, whose data sink only counts data set
fragments: command sets (small) are checked as they complete (PS3.7 9.3,
message IDs), while a data set whose encoding is to be checked is kept by
reference (views of the chunks the capture holds anyway, up to
:data:`DEFER_LIMIT` bytes) and decoded in :meth:`AssociationJudge.finish`,
after the association ended, off the relay's thread.  Its findings carry the
frame of the PDU that completed the message, as if found on the spot.

The side that connected is the association-requestor (PS3.8 9.1: the
requestor opens the transport connection); every finding names the side that
sent the PDU.  Frame numbers are those of the capture the relay writes
(:mod:`dicomconf.wire.capture`), counted as it will synthesize them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from dicomconf.ul import constants as C
from dicomconf.ul.dimse import Message, MessageAssembler
from dicomconf.ul.dimse_check import Outstanding, check_message
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.framing import FramingError, PDUReader
from dicomconf.ul.fsm import ACTIONS, EVENTS, PDU_TYPE_EVENTS, STATES, TRANSITIONS
from dicomconf.ul.pdu import PDV, PDataTF, decode_pdu
from dicomconf.wire.association import AssociationSummary
from dicomconf.wire.capture import MAX_CAPTURE_BYTES, MAX_SEGMENT_PAYLOAD
from dicomconf.wire.dissect import fast_command
from dicomconf.wire.findings import MUST, ConversationState, Finding

# The largest PDU the judge frames (header included); past it a direction is relayed unjudged.
CHECK_LIMIT = 64 * 1024 * 1024 + C.PDU_HEADER_LENGTH
# Data set bytes one association keeps (by reference) for the deferred encoding checks; past it a data set
# is counted, not decoded (the capture keeps as much: the views share its chunks).
DEFER_LIMIT = MAX_CAPTURE_BYTES
SIDES = ("requestor", "acceptor")
_OTHER = {"requestor": "acceptor", "acceptor": "requestor"}
_PDV_HEAD = struct.Struct(">IBB")  # PDV item length, presentation context ID, message control header

# PS3.8 9.2.3: the local event (Table 9-10's rows) by which a peer sends each PDU type.
SEND_EVENTS: dict[int, str] = {
    C.A_ASSOCIATE_RQ: "Evt2",  # AE-2: the RQ goes out once the transport connection is confirmed (Sta4)
    C.A_ASSOCIATE_AC: "Evt7",
    C.A_ASSOCIATE_RJ: "Evt8",
    C.P_DATA_TF: "Evt9",
    C.A_RELEASE_RQ: "Evt11",
    C.A_RELEASE_RP: "Evt14",
    C.A_ABORT: "Evt15",
}
_ABORTING = frozenset({"AA-1", "AA-7", "AA-8"})  # the receiver answers with an A-ABORT


def _next_state(state: str, event: str, requestor: bool) -> str:
    """Where ``(state, event)`` of Table 9-10 leads; a blank cell stays put.

    The two actions with two next states (PS3.8 9.2.3): AE-6 goes to Sta3 (the acceptor's user
    answers, by AC or RJ, which the wire shows next), AR-8 to Sta9 for the requestor, Sta10 for
    the acceptor.
    """
    action = TRANSITIONS.get((state, event))
    if action is None:
        return state
    nxt = ACTIONS[action].next_states
    if action == "AR-8":
        return "Sta9" if requestor else "Sta10"
    return nxt[0]


class StateTracker:
    """Both peers' PS3.8 Table 9-10 states, followed from the PDUs each sends.

    A peer's sending is a local event (A-ASSOCIATE request Evt1/Evt2, response Evt7/Evt8, P-DATA
    Evt9, A-RELEASE Evt11/Evt14, A-ABORT Evt15); the relay's delivering it to the other peer is a
    received-PDU event there (Evt3-Evt19).  PDUs may cross on the wire: a peer may send before it
    has read what the relay already delivered to it (a release collision, PS3.8 9.2.7; an A-ABORT
    crossing data).  So a sent PDU is legal if its sender's table allows it in any state the
    sender went through since its own previous PDU, the deliveries after that point being
    replayed on the state it reaches.
    """

    def __init__(self) -> None:
        # requestor: AE-1 put it in Sta4 when it connected; acceptor: AE-5 in Sta2 when it accepted
        self.base = {"requestor": "Sta4", "acceptor": "Sta2"}
        # the deliveries since each side's last PDU that changed its state (a loop such as DT-2 in
        # Sta6 replays as itself, so it is not kept: the list stays short however long the transfer)
        self.pending: dict[str, list[str]] = {"requestor": [], "acceptor": []}
        self.current = dict(self.base)

    def state(self, side: str) -> str:
        return self.current[side]

    def sent(self, side: str, pdu_type: int, decodes: bool) -> list[Finding]:
        """``side`` sent a PDU of ``pdu_type``; the findings of its position in Table 9-10."""
        receiver = "acceptor" if side == "requestor" else "requestor"
        if (pdu_type == C.P_DATA_TF and decodes and self.current[side] == "Sta6" == self.current[receiver]
                and not self.pending[side]):
            return []  # the transfer's loop: DT-1 at the sender, DT-2 at the receiver, both stay in Sta6
        name = C.PDU_NAMES.get(pdu_type, f"PDU type {pdu_type:#04x}")
        out: list[Finding] = []
        send_event = SEND_EVENTS.get(pdu_type)
        if send_event is not None and send_event != "Evt15":  # an A-ABORT may be sent in any state
            if not self._send(side, send_event):
                st = self.state(side)
                out.append(Finding(
                    "pdu.unexpected", f"PS3.8 9.2 Table 9-10 ({st}, {send_event})", MUST, 0,
                    f"the {side} sent {name} in {st} ({STATES[st]}), where Table 9-10 has no "
                    f"{send_event} ({EVENTS[send_event]})"))
        elif send_event == "Evt15":
            self._send(side, send_event)
        event = PDU_TYPE_EVENTS.get(pdu_type, "Evt19") if decodes else "Evt19"
        st = self.state(receiver)
        action = TRANSITIONS.get((st, event))
        if not out and event != "Evt19" and action in _ABORTING:  # Evt19: the PDU checks say why
            out.append(Finding(
                "pdu.unexpected", f"PS3.8 9.2 Table 9-10 ({st}, {event}, {action})", MUST, 0,
                f"{name} from the {side} reaches the {receiver} in {st} ({STATES[st]}), where "
                f"Table 9-10 answers it with {action} (A-ABORT)"))
        self._deliver(receiver, event)
        return out

    def _deliver(self, side: str, event: str) -> None:
        nxt = _next_state(self.current[side], event, side == "requestor")
        if nxt != self.current[side]:
            self.pending[side].append(event)
            self.current[side] = nxt

    def _send(self, side: str, event: str) -> bool:
        requestor = side == "requestor"
        pending = self.pending[side]
        for k in range(len(pending), -1, -1):
            st = self.base[side]
            for e in pending[:k]:
                st = _next_state(st, e, requestor)
            if (st, event) in TRANSITIONS:
                st = _next_state(st, event, requestor)
                for e in pending[k:]:
                    st = _next_state(st, e, requestor)
                self.base[side], self.pending[side], self.current[side] = st, [], st
                return True
        return False

    def closed(self, side: str) -> None:
        """``side`` closed its transport connection: Evt17 at the other peer."""
        self._deliver("acceptor" if side == "requestor" else "requestor", "Evt17")


@dataclass(slots=True)
class Judged:
    """One finding and where it was seen."""

    side: str  # the peer that sent the PDU (the one the finding is about)
    frame: int
    pdu: int  # the PDU's number in the association, from 1
    finding: Finding
    fault: str | None = None  # the injected fault that altered this PDU, if one did

    def as_dict(self) -> dict[str, Any]:
        f = self.finding
        return {"code": f.code, "clause": f.clause, "severity": f.severity, "offset": f.offset,
                "message": f"{self.side}, PDU #{self.pdu} (frame {self.frame}): {f.message}",
                "connection": self.side, "side": self.side, "frame": self.frame,
                **({"fault": self.fault, "allowed": True} if self.fault else {})}


class _DataSet:
    """The MessageAssembler's sink of one data set: counts its fragments, keeps them (views) when asked."""

    __slots__ = ("parts", "length")

    def __init__(self, keep: bool) -> None:
        self.parts: list | None = [] if keep else None
        self.length = 0

    def write(self, data: bytes | memoryview) -> None:
        self.length += len(data)
        if self.parts is not None:
            self.parts.append(data)

    def end(self) -> None:
        pass


@dataclass(slots=True)
class _Deferred:
    """A data set whose encoding is checked after the association (PS3.7 9.3.1.1, PS3.5 7)."""

    side: str
    frame: int
    pdu: int
    message: Message  # the command, the data set not held
    parts: list
    transfer_syntax: str
    fault: str | None


class AssociationJudge:
    """Everything checked of one relayed association (see the module docstring)."""

    DEFER_LIMIT = DEFER_LIMIT

    def __init__(self, number: int, client: tuple[str, int], server: tuple[str, int],
                 check_data_sets: bool = True) -> None:
        self.data_sets_of = (True, False) if check_data_sets else ()  # both peers: each is a product under test
        self.state = ConversationState(data_sets_of=self.data_sets_of)
        self.tracker = StateTracker()
        self.summary = AssociationSummary(number, client, server)
        self.readers = {s: PDUReader(CHECK_LIMIT) for s in SIDES}
        self.unjudged: dict[str, str] = {}  # side -> why its bytes are no longer judged
        self.judged: list[Judged] = []
        self.pdus = 0
        self.frames = 3  # the synthesized handshake
        self.fins: set[str] = set()
        # the hot path's DIMSE state (see the module docstring): per side an assembler, one Outstanding
        self.assemblers: dict[str, MessageAssembler] = {}
        self.outstanding: Outstanding | None = None
        self.pdata_before_ac = False
        self.deferred: list[_Deferred] = []
        self.deferred_bytes = 0
        self.unchecked_data_sets = 0  # past DEFER_LIMIT: counted, not decoded
        self._sink_keep = False
        self._sink_side = "requestor"
        self.sinks: dict[str, _DataSet] = {}  # side -> the sink of its data set in progress
        # side -> (context ID, sink) while its last PDU ended inside a data set: the next middle fragment
        # on that context goes straight to the sink (see _pdata)
        self.runs: dict[str, tuple[int, _DataSet]] = {}

    def feed(self, side: str, data: bytes, ts: float, fault: str | None = None) -> list[Judged]:
        """``side`` sent ``data`` (read at ``ts``); judge every PDU it completes."""
        first_frame = self.frames + 1
        self.frames += -(-len(data) // MAX_SEGMENT_PAYLOAD)
        if side in self.unjudged:
            return []
        reader = self.readers[side]
        before = reader.buffered
        try:
            pdus = reader.feed(data)
            error = None
        except FramingError as exc:
            pdus, error = exc.completed, exc
        out: list[Judged] = []
        end = -before  # where each PDU ends in this chunk, for its frame number
        cap = self.state.limit_for(side == "requestor") or CHECK_LIMIT  # the receiver's Maximum Length
        unpack = _PDV_HEAD.unpack_from
        ctx, sink = self._run(side)
        keep = sink.parts if sink is not None else None
        middle = got = 0  # middle fragments of a data set this chunk completed (see _pdata), their bytes
        for raw in pdus:
            n = len(raw)
            end += n
            if sink is not None and n > 12 and raw[0] == C.P_DATA_TF:
                length, cid, mch = unpack(raw, 6)
                if length + 10 == n and not mch and cid == ctx and not length & 1 and n - 6 <= cap:
                    # one middle fragment of the data set in progress (PS3.8 E.1, E.2): every check the
                    # general path makes passes; the assembler would only hand it to the sink
                    if keep is not None:
                        keep.append(raw[12:] if type(raw) is memoryview else memoryview(raw)[12:])
                    got += n - 12
                    middle += 1
                    continue
            if middle:
                self._middles(sink, middle, got, ts)
                middle = got = 0
            frame = first_frame + (max(end, 1) - 1) // MAX_SEGMENT_PAYLOAD
            if raw[0] == C.P_DATA_TF and self.state.ac is not None:
                out += self._pdata(side, raw, frame, ts, fault)
            else:
                out += self._pdu(side, bytes(raw), frame, ts, fault)
            ctx, sink = self._run(side)
            keep = sink.parts if sink is not None else None
        if middle:
            self._middles(sink, middle, got, ts)
        if error is not None:
            self.unjudged[side] = f"a PDU announces {error.message.split('announces ')[-1]}: not judged further"
        return out

    def _pdu(self, side: str, raw: bytes, frame: int, ts: float, fault: str | None) -> list[Judged]:
        self.pdus += 1
        from_requestor = side == "requestor"
        if raw[:1] == b"\x04":
            self.pdata_before_ac = True
        findings = [f for f in self.state.observe(raw, from_requestor) if f.code != "pdu.unexpected"]
        try:
            decoded = decode_pdu(raw)
        except RemoteProtocolError:
            decoded = None
        findings += self.tracker.sent(side, raw[0], decoded is not None)
        self.summary.observe(decoded, from_requestor, frame, ts, findings)
        return self._keep(side, frame, findings, fault)

    def _keep(self, side: str, frame: int, findings: list[Finding], fault: str | None) -> list[Judged]:
        if not findings:
            return []
        out = [Judged(side, frame, self.pdus, f, fault) for f in findings]
        self.judged += out
        return out

    def _pdata(self, side: str, raw: Any, frame: int, ts: float, fault: str | None) -> list[Judged]:
        """A P-DATA-TF after the A-ASSOCIATE-AC, judged from its headers (PS3.8 9.3.5, 9.3.5.1, E.1, E.2,
        D.1.1): the findings of the walk and of the conversation checks, the DIMSE messages it completes."""
        self.pdus += 1
        from_requestor = side == "requestor"
        state = self.state
        end = len(raw)
        self.runs.pop(side, None)
        out: list[Finding] = []
        pos = 6
        spans: list[tuple[int, int, int, int]] = []
        malformed = undecodable = False
        if end == 6:
            out.append(Finding("pdata.no-pdv", "PS3.8 9.3.5", MUST, 2, "P-DATA-TF with no PDV item"))
            malformed = undecodable = True
        unpack = _PDV_HEAD.unpack_from
        while pos < end:
            if end - pos < 6:
                out.append(Finding("pdv.truncated-header", "PS3.8 9.3.5", MUST, pos,
                                   f"{end - pos} trailing byte(s) are too short for a PDV item header"))
                malformed = undecodable = True
                break
            length, cid, mch = unpack(raw, pos)
            if length < 2:
                out.append(Finding("pdv.length-too-small", "PS3.8 9.3.5.1", MUST, pos,
                                   f"PDV item length {length} is less than 2"))
                malformed = undecodable = True
                break
            if not cid & 1:
                out.append(Finding("pdv.context-id-even", "PS3.8 9.3.5.1", MUST, pos + 4,
                                   f"PDV presentation context ID {cid} is not odd"))
                malformed = True
            stop = pos + 4 + length
            if stop > end:
                out.append(Finding("pdv.length-overrun", "PS3.8 9.3.5", MUST, pos,
                                   f"PDV item length {length} overruns the PDU by {stop - end} byte(s)"))
                malformed = undecodable = True
                break
            if length & 1:
                out.append(Finding("pdv.odd-fragment", "PS3.8 E.1", MUST, pos,
                                   f"a message fragment of {length - 2} bytes: each fragment shall consist of "
                                   "an even number of bytes"))
                malformed = True
            spans.append((cid, mch, pos + 6, stop))
            pos = stop
        limit = state.limit_for(from_requestor)
        if limit and end - 6 > limit:
            out.append(Finding("pdata.exceeds-max-length", "PS3.8 D.1.1", MUST, 2,
                               f"P-DATA-TF variable field of {end - 6} bytes exceeds the peer's maximum length "
                               f"{limit}"))
        view = raw if isinstance(raw, memoryview) else memoryview(raw)
        commands: list = []  # the summary reads the last fragment of each command set (PS3.8 E.2)
        if not undecodable:
            for _cid, mch, a, b in spans:
                if mch & 3 == 3:
                    cmd = fast_command(view[a:b])
                    if cmd is not None:
                        commands.append(cmd)
        pdvs: list[PDV] = []
        if malformed:
            self._requests().lost()
        else:
            accepted = state.accepted
            for cid, mch, a, b in spans:
                if cid not in accepted:
                    out.append(Finding("pdv.context-not-accepted", "PS3.8 9.3.5.1", MUST, None,
                                       f"PDV on presentation context {cid}, which was not accepted"))
                    self._requests().lost()
                    pdvs = []
                    break
                pdvs.append(PDV(cid, mch, view[a:b]))
            if pdvs:
                self._assemble(side, from_requestor, pdvs, frame, out, fault)
                last = pdvs[-1]
                if last.message_control_header == 0 and side in self.assemblers and self.sinks.get(side):
                    self.runs[side] = (last.context_id, self.sinks[side])  # a data set continues
        out += self.tracker.sent(side, C.P_DATA_TF, not undecodable)
        summary = self.summary
        if out or commands or undecodable:
            summary.observe(None if undecodable else PDataTF(()), from_requestor, frame, ts, out, commands=commands)
        else:  # what observe does with a data-only P-DATA-TF and no findings
            summary.pdus += 1
            summary.last_ts = ts
            if summary.first_ts is None:
                summary.first_ts = ts
        return self._keep(side, frame, out, fault)

    def _run(self, side: str) -> tuple[int, _DataSet | None]:
        """The context and sink of ``side``'s data set in progress, when its next middle fragments may go
        straight to the sink: both peers in Sta6 and nothing of ``side``'s to replay, so that a P-DATA-TF
        is DT-1 then DT-2 (PS3.8 Table 9-10) with no finding.  (0, None) otherwise."""
        run = self.runs.get(side)
        t = self.tracker
        if run is None or not (t.current[side] == "Sta6" == t.current[_OTHER[side]] and not t.pending[side]):
            return 0, None
        return run

    def _middles(self, sink: _DataSet, count: int, length: int, ts: float) -> None:
        """``count`` middle fragments (``length`` bytes) went straight to ``sink``: counted as PDUs."""
        sink.length += length
        self.pdus += count
        summary = self.summary
        summary.pdus += count
        summary.last_ts = ts

    def _requests(self) -> Outstanding:
        if self.outstanding is None:
            self.outstanding = Outstanding()
            if self.pdata_before_ac:  # the full path saw DIMSE traffic before the AC (PS3.8 Table 9-10)
                self.outstanding.lost()
        return self.outstanding

    def _new_data_set(self, message: Message) -> _DataSet:
        sink = self.sinks[self._sink_side] = _DataSet(self._sink_keep)
        return sink

    def _assemble(self, side: str, from_requestor: bool, pdvs: list[PDV], frame: int, out: list[Finding],
                  fault: str | None) -> None:
        """The core's DIMSE assembler over this side's PDVs (PS3.8 Annex E, PS3.7 6.3.1), data sets to a sink."""
        assembler = self.assemblers.get(side)
        if assembler is None:
            assembler = self.assemblers[side] = MessageAssembler(data_sink=self._new_data_set)
        self._sink_keep = from_requestor in self.data_sets_of and self.deferred_bytes < DEFER_LIMIT
        self._sink_side = side
        try:
            messages = assembler.add_pdvs(pdvs)
        except RemoteProtocolError as exc:
            out.append(Finding("dimse.invalid", exc.clause, MUST, None, exc.message))
            self.assemblers[side] = MessageAssembler(data_sink=self._new_data_set)
            self.sinks.pop(side, None)
            self._requests().lost()
            return
        for message in messages:
            for p in check_message(message, None, self._requests(), from_requestor=from_requestor):
                out.append(Finding(p.code, p.clause, p.severity, None, p.message))
            sink = message.data_sink
            if sink is None:
                continue
            syntax = self.state.accepted.get(message.context_id) if from_requestor in self.data_sets_of else None
            if syntax is None:
                continue
            if sink.parts is None or self.deferred_bytes + sink.length > DEFER_LIMIT:
                self.unchecked_data_sets += 1
                continue
            self.deferred_bytes += sink.length
            self.deferred.append(_Deferred(side, frame, self.pdus, message, sink.parts, syntax, fault))

    def finish(self) -> list[Judged]:
        """The deferred data set checks (call once the association ended; any thread): the encoding of each
        data set kept, in its accepted transfer syntax (PS3.5 7, 10; PS3.7 9.3.1.1 for C-STORE)."""
        deferred, self.deferred = self.deferred, []
        added: list[Judged] = []
        for d in deferred:
            whole = d.message.with_data(d.parts)
            command_only = {(p.code, p.message) for p in check_message(whole, None, None)}
            for p in check_message(whole, d.transfer_syntax, None):
                if (p.code, p.message) in command_only:
                    continue
                f = Finding(p.code, p.clause, p.severity, None, p.message)
                added.append(Judged(d.side, d.frame, d.pdu, f, d.fault))
                self.summary.findings.append((d.frame, f))
        self.deferred_bytes = 0
        if added:
            self.judged = sorted(self.judged + added, key=lambda j: (j.frame, j.pdu))
            self.summary.findings.sort(key=lambda x: x[0])
        return added

    def closed(self, side: str, ts: float, reset: bool = False) -> None:
        """``side`` closed (FIN) or reset its connection."""
        if side in self.fins:
            return
        self.fins.add(side)
        self.frames += 1 if len(self.fins) == 1 else 2
        self.tracker.closed(side)
        self.summary.tcp_closed(side == "requestor", reset, self.frames, ts)

    def must_failures(self) -> list[Judged]:
        """The must-level findings that count against a peer (not those of PDUs a fault altered)."""
        return [j for j in self.judged if j.finding.severity == MUST and not j.fault]


__all__ = ["CHECK_LIMIT", "SEND_EVENTS", "AssociationJudge", "Judged", "StateTracker"]
