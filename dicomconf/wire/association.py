"""What one association of a capture did, in a few lines: ``dicomconf decode``'s summary block.

Theory of operation
-------------------
An :class:`AssociationSummary` is fed every PDU of one TCP connection (with its
frame number, time, direction and findings) and the connection's TCP closes.
It keeps what a person asks of an association first:

- the peers with their ports, which one requested (sent the A-ASSOCIATE-RQ,
  PS3.8 9.3.2), the calling and called AE titles and each side's user
  information (PS3.8 D.1, PS3.7 D.3.3);
- each presentation context: abstract syntax, the result and the transfer
  syntax the A-ASSOCIATE-AC gave it (PS3.8 9.3.3.2), or the A-ASSOCIATE-RJ;
- the DIMSE operations: each request (PS3.7 9.3, 10.3) matched with its
  final response by Message ID Being Responded To, pending responses counted,
  the round trip from the request's frame time to the final response's, and
  the status with its category (PS3.7 Annex C);
- how it ended: A-RELEASE (PS3.8 7.2), A-ABORT with source and reason (7.3),
  rejection, the connection closed (by whom, after which frame) or the end of
  the capture;
- the findings with their frame numbers.

:meth:`lines` renders the block; :meth:`as_json` gives the same content as
one object.  The PDUs are decoded once by the caller with the core codec; a
PDU that does not decode still counts, and its findings say why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from dicomconf.ul import constants as C
from dicomconf.ul.dimse_codec import COMMAND_FIELDS, status_meaning
from dicomconf.ul.items import PresentationContextRQ
from dicomconf.ul.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    PDataTF,
)
from dicomconf.wire.dissect import (
    fast_command,
    uid_name,
    user_info_fields,
    user_info_text,
)

_RESPONSE_BIT = 0x8000
_meaning = lru_cache(maxsize=1024)(status_meaning)
_CANCEL = 0x0FFF


def endpoint(ep: tuple[str, int]) -> str:
    host, port = ep
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(slots=True)
class Operation:
    """One DIMSE request and what answered it (PS3.7 9.3, 10.3)."""

    command: str  # C-ECHO, C-STORE, N-ACTION, ...
    message_id: int
    by_requestor: bool  # sent by the association requestor
    sop_class: str | None
    frame: int
    ts: float
    responses: int = 0  # pending responses seen
    status: int | None = None
    category: str = ""
    meaning: str = ""
    final_frame: int | None = None
    final_ts: float | None = None
    cancelled: bool = False

    @property
    def rtt(self) -> float | None:
        return None if self.final_ts is None else self.final_ts - self.ts


@dataclass(slots=True)
class AssociationSummary:
    """The summary of one connection's association (see the module docstring)."""

    connection: int
    client: tuple[str, int]
    server: tuple[str, int]
    requestor_is_client: bool = True
    calling_ae: str | None = None
    called_ae: str | None = None
    rq_info: Any = None  # UserInformation of the A-ASSOCIATE-RQ
    ac_info: Any = None
    proposed: dict[int, tuple[str, tuple[str, ...]]] = field(default_factory=dict)  # id -> (abstract, ts)
    answered: dict[int, tuple[int, str | None]] = field(default_factory=dict)  # id -> (result, ts)
    rejected: AAssociateRJ | None = None
    operations: list[Operation] = field(default_factory=list)
    open_ops: dict[tuple[bool, int], Operation] = field(default_factory=dict)
    ended: dict[str, Any] | None = None  # how the association ended
    closed: list[tuple[str, str, int, float]] = field(default_factory=list)  # (side, FIN|RST, frame, ts)
    findings: list[tuple[int, Any]] = field(default_factory=list)  # (frame, Finding)
    pdus: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    done: bool = False  # the block was printed

    def side(self, from_client: bool) -> str:
        return "requestor" if from_client == self.requestor_is_client else "acceptor"

    def observe(self, pdu: Any, from_client: bool, frame: int, ts: float, findings: list,
                commands: list | None = None) -> None:
        """One PDU (decoded by the core codec, or None when it does not decode); ``commands``: a
        P-DATA-TF's command sets when the caller decoded them already (:func:`fast_command`)."""
        self.pdus += 1
        self.first_ts = ts if self.first_ts is None else self.first_ts
        self.last_ts = ts
        self.findings += [(frame, f) for f in findings]
        if isinstance(pdu, AAssociateRQ) and self.rq_info is None:
            self.requestor_is_client = from_client
            self.calling_ae, self.called_ae = pdu.calling_ae_title, pdu.called_ae_title
            self.rq_info = pdu.user_information
            for pc in pdu.presentation_contexts:
                if isinstance(pc, PresentationContextRQ):
                    self.proposed[pc.context_id] = (pc.abstract_syntax, tuple(pc.transfer_syntaxes))
        elif isinstance(pdu, AAssociateAC) and self.ac_info is None:
            self.ac_info = pdu.user_information
            for pc in pdu.presentation_contexts:
                if not isinstance(pc, PresentationContextRQ):
                    self.answered[pc.context_id] = (pc.result, pc.transfer_syntax)
        elif isinstance(pdu, AAssociateRJ):
            self.rejected = pdu
            self._end("rejected", frame, ts, result=pdu.result, source=pdu.source, reason=pdu.reason,
                      text=f"rejected ({C.RJ_RESULT_NAMES.get(pdu.result, pdu.result)}, source "
                           f"{C.RJ_SOURCE_NAMES.get(pdu.source, pdu.source)}, "
                           f"{C.RJ_REASON_NAMES.get((pdu.source, pdu.reason), f'reason {pdu.reason}')})")
        elif isinstance(pdu, PDataTF):
            by_rq = from_client == self.requestor_is_client
            if commands is None:
                commands = [cmd for pdv in pdu.pdvs if pdv.is_command and pdv.is_last
                            for cmd in (fast_command(pdv.data),) if cmd is not None]
            for cmd in commands:
                self._command(cmd, by_rq, frame, ts)
        elif isinstance(pdu, AAbort):
            source = C.ABORT_SOURCE_NAMES.get(pdu.source, pdu.source)
            text = f"aborted by the {self.side(from_client)} (frame {frame}; source {source}"
            if pdu.source == C.ABORT_SOURCE_PROVIDER:
                text += f", reason {C.ABORT_REASON_NAMES.get(pdu.reason, pdu.reason)}"
            self._end("abort", frame, ts, by=self.side(from_client), source=pdu.source, reason=pdu.reason,
                      text=text + ")")
        elif isinstance(pdu, AReleaseRP):
            self._end("release", frame, ts, by=self.side(not from_client),
                      text=f"released (A-RELEASE-RP from the {self.side(from_client)}, frame {frame})")

    def _end(self, how: str, frame: int, ts: float, text: str, **details: Any) -> None:
        if self.ended is None:
            self.ended = {"how": how, "frame": frame, "time": ts, "text": text, **details}

    def _command(self, cmd: dict, by_rq: bool, frame: int, ts: float) -> None:
        code = cmd.get("CommandField")
        if not isinstance(code, int):
            return
        name = COMMAND_FIELDS.get(code, f"command {code:#06x}")
        if code == _CANCEL:
            op = self.open_ops.get((by_rq, cmd.get("MessageIDBeingRespondedTo", -1)))
            if op is not None:
                op.cancelled = True
            return
        if not code & _RESPONSE_BIT:
            mid = cmd.get("MessageID")
            sop = cmd.get("AffectedSOPClassUID") or cmd.get("RequestedSOPClassUID")
            op = Operation(name.removesuffix("-RQ"), mid if isinstance(mid, int) else -1, by_rq,
                           str(sop) if sop else None, frame, ts)
            self.operations.append(op)
            self.open_ops[(by_rq, op.message_id)] = op
            return
        op = self.open_ops.get((not by_rq, cmd.get("MessageIDBeingRespondedTo", -1)))
        if op is None:
            return
        status = cmd.get("Status")
        if not isinstance(status, int):
            return
        category, meaning = _meaning(code, status)
        if category == "pending":
            op.responses += 1
            return
        op.status, op.category, op.meaning = status, category, meaning
        op.final_frame, op.final_ts = frame, ts
        del self.open_ops[(op.by_requestor, op.message_id)]

    def tcp_closed(self, from_client: bool, reset: bool, frame: int, ts: float) -> None:
        self.closed.append((self.side(from_client), "RST" if reset else "FIN", frame, ts))

    @property
    def finished(self) -> bool:
        """Both sides closed (FIN each way) or one reset: the block can be printed."""
        kinds = [k for _s, k, _f, _t in self.closed]
        return "RST" in kinds or len({s for s, k, _f, _t in self.closed if k == "FIN"}) == 2

    def end(self) -> dict[str, Any]:
        """How the association ended (PS3.8 7.2, 7.3), or how its connection did."""
        if self.ended is not None:
            return self.ended
        if self.closed:
            side, kind, frame, ts = self.closed[0]
            verb = "reset" if kind == "RST" else "closed"
            state = "before an association was accepted" if self.ac_info is None else "without A-RELEASE or A-ABORT"
            return {"how": "connection closed", "by": side, "tcp": kind, "frame": frame, "time": ts,
                    "text": f"connection {verb} by the {side} (frame {frame}) {state}"}
        return {"how": "capture ended", "text": "the capture ends during the association"}

    def contexts(self) -> list[dict[str, Any]]:
        out = []
        for cid in sorted(set(self.proposed) | set(self.answered)):
            abstract, offered = self.proposed.get(cid, (None, ()))
            result, ts = self.answered.get(cid, (None, None))
            out.append({"context_id": cid, "abstract_syntax": abstract,
                        "abstract_syntax_name": uid_name(abstract) if abstract else None,
                        "proposed_transfer_syntaxes": list(offered), "result": result,
                        "result_name": None if result is None else C.PC_RESULT_NAMES.get(result, f"result {result}"),
                        "transfer_syntax": ts if result == C.PC_ACCEPTANCE else None,
                        "transfer_syntax_name": uid_name(ts) if result == C.PC_ACCEPTANCE and ts else None})
        return out

    def lines(self) -> list[str]:
        """The summary block, one string per line (the caller wraps and indents)."""
        rq, ac = (self.client, self.server) if self.requestor_is_client else (self.server, self.client)
        head = (f"== association #{self.connection}: {endpoint(rq)} (requestor) -> {endpoint(ac)} (acceptor), "
                f"{self.pdus} PDU(s)")
        out = [head]
        if self.calling_ae is not None:
            out.append(f"   AE titles: calling {self.calling_ae or '-'}, called {self.called_ae or '-'}")
        for label, info in (("requestor", self.rq_info), ("acceptor", self.ac_info)):
            if info is not None:
                out.append(f"   {label} user information: {user_info_text(info) or '(none)'}")
        for ctx in self.contexts():
            text = f"   context {ctx['context_id']} {ctx['abstract_syntax_name'] or '(not proposed)'}: "
            if ctx["result"] is None:
                text += "rejected with the association" if self.rejected else "no answer"
            else:
                text += ctx["result_name"].split(" ")[0]
                if ctx["transfer_syntax_name"]:
                    text += f", {ctx['transfer_syntax_name']}"
            out.append(text)
        if self.operations:
            out.append(f"   DIMSE operations ({len(self.operations)}):")
            for op in self.operations:
                out.append("     " + _op_text(op))
        out.append(f"   ended: {self.end()['text']}")
        musts = sum(1 for _f, x in self.findings if x.severity == "must")
        out.append(f"   findings: {musts} must, {len(self.findings) - musts} should")
        out += [f"     frame {frame}: {finding}" for frame, finding in self.findings]
        return out

    def as_json(self) -> dict[str, Any]:
        rq, ac = (self.client, self.server) if self.requestor_is_client else (self.server, self.client)
        return {
            "record": "association", "connection": self.connection, "requestor": endpoint(rq),
            "acceptor": endpoint(ac), "calling_ae_title": self.calling_ae, "called_ae_title": self.called_ae,
            "requestor_user_information": None if self.rq_info is None else user_info_fields(self.rq_info),
            "acceptor_user_information": None if self.ac_info is None else user_info_fields(self.ac_info),
            "presentation_contexts": self.contexts(),
            "operations": [
                {"command": op.command, "message_id": op.message_id,
                 "sent_by": "requestor" if op.by_requestor else "acceptor", "sop_class_uid": op.sop_class,
                 "request_frame": op.frame, "response_frame": op.final_frame, "pending_responses": op.responses,
                 "status": op.status, "status_category": op.category or None, "status_meaning": op.meaning or None,
                 "rtt_seconds": op.rtt, "cancelled": op.cancelled}
                for op in self.operations],
            "end": self.end(), "pdus": self.pdus,
            "findings": [{"frame": frame, "code": f.code, "clause": f.clause, "severity": f.severity,
                          "offset": f.offset, "message": f.message} for frame, f in self.findings],
        }


def _op_text(op: Operation) -> str:
    who = "" if op.by_requestor else " (from the acceptor)"
    text = f"{op.command} id={op.message_id}{who}"
    if op.sop_class:
        text += f" {uid_name(op.sop_class)}"
    if op.status is None:
        text += f": no final response (request frame {op.frame}"
        text += f", {op.responses} pending)" if op.responses else ")"
    else:
        text += (f": status {op.status:#06x} {op.category}, {op.rtt * 1000:.3f} ms "
                 f"(frames {op.frame}-{op.final_frame}")
        text += f", {op.responses} pending)" if op.responses else ")"
    if op.cancelled:
        text += ", cancelled"
    return text
