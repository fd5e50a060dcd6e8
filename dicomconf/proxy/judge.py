"""Judging both peers of one relayed association: findings, state machine position, summary.

Theory of operation
-------------------
The relay hands an :class:`AssociationJudge` every chunk of bytes each peer
sent, with the time it was read.  Each direction is framed into whole PDUs
(PS3.8 9.3.1) by the core's :class:`~dicomconf.ul.framing.PDUReader`, and each
PDU is judged three ways:

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

The side that connected is the association-requestor (PS3.8 9.1: the
requestor opens the transport connection); every finding names the side that
sent the PDU.  Frame numbers are those of the capture the relay writes
(:mod:`dicomconf.wire.capture`), counted as it will synthesize them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dicomconf.ul import constants as C
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.framing import FramingError, PDUReader
from dicomconf.ul.fsm import ACTIONS, EVENTS, PDU_TYPE_EVENTS, STATES, TRANSITIONS
from dicomconf.ul.pdu import decode_pdu
from dicomconf.wire.association import AssociationSummary
from dicomconf.wire.capture import MAX_SEGMENT_PAYLOAD
from dicomconf.wire.findings import MUST, ConversationState, Finding

# The largest PDU the judge frames (header included); past it a direction is relayed unjudged.
CHECK_LIMIT = 64 * 1024 * 1024 + C.PDU_HEADER_LENGTH
SIDES = ("requestor", "acceptor")

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
        name = C.PDU_NAMES.get(pdu_type, f"PDU type {pdu_type:#04x}")
        receiver = "acceptor" if side == "requestor" else "requestor"
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


class AssociationJudge:
    """Everything checked of one relayed association (see the module docstring)."""

    def __init__(self, number: int, client: tuple[str, int], server: tuple[str, int],
                 check_data_sets: bool = True) -> None:
        self.state = ConversationState(data_sets_of=(True, False) if check_data_sets else ())
        self.tracker = StateTracker()
        self.summary = AssociationSummary(number, client, server)
        self.readers = {s: PDUReader(CHECK_LIMIT) for s in SIDES}
        self.unjudged: dict[str, str] = {}  # side -> why its bytes are no longer judged
        self.judged: list[Judged] = []
        self.pdus = 0
        self.frames = 3  # the synthesized handshake
        self.fins: set[str] = set()

    def feed(self, side: str, data: bytes, ts: float, fault: str | None = None) -> list[Judged]:
        """``side`` sent ``data`` (read at ``ts``); judge every PDU it completes."""
        first_frame = self.frames + 1
        self.frames += -(-len(data) // MAX_SEGMENT_PAYLOAD)
        if side in self.unjudged:
            return []
        before = self.readers[side].buffered
        try:
            pdus = self.readers[side].feed(data)
            error = None
        except FramingError as exc:
            pdus, error = exc.completed, exc
        out: list[Judged] = []
        end = -before  # where each PDU ends in this chunk, for its frame number
        for raw in pdus:
            end += len(raw)
            frame = first_frame + (max(end, 1) - 1) // MAX_SEGMENT_PAYLOAD
            out += self._pdu(side, bytes(raw), frame, ts, fault)
        if error is not None:
            self.unjudged[side] = f"a PDU announces {error.message.split('announces ')[-1]}: not judged further"
        return out

    def _pdu(self, side: str, raw: bytes, frame: int, ts: float, fault: str | None) -> list[Judged]:
        self.pdus += 1
        from_requestor = side == "requestor"
        findings = [f for f in self.state.observe(raw, from_requestor) if f.code != "pdu.unexpected"]
        try:
            decoded = decode_pdu(raw)
        except RemoteProtocolError:
            decoded = None
        findings += self.tracker.sent(side, raw[0], decoded is not None)
        self.summary.observe(decoded, from_requestor, frame, ts, findings)
        out = [Judged(side, frame, self.pdus, f, fault) for f in findings]
        self.judged += out
        return out

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


__all__ = ["AssociationJudge", "Judged", "StateTracker", "SEND_EVENTS", "CHECK_LIMIT"]
