"""The fake SCP's services: ``serve: {service: ...}`` answered by the reference SCP's own handlers (PS3.4 C, F.7, J, K).

Theory of operation
-------------------
A ``serve`` step of a ``role: scp`` scenario that names a ``service``
(``find``, ``worklist``, ``move``, ``get``, ``commitment``, ``mpps``) answers
the SCU's request with the same handler the reference SCP runs
(:mod:`dicomconf.services`), so an SCU under test gets a real PACS/RIS's
answers: matching per PS3.4 C.2.2.2, statuses per PS3.4 C.4, F.7, J.3, K.4.
:class:`FakeServices` (one per scenario run) is the synchronous driver of
those handlers on the acceptor's connection, the counterpart of the
reference SCP's asyncio :mod:`dicomconf.scp.service_driver`; what both do
alike (the request, the C-CANCEL rule, a handler's fault, the response
command) is :mod:`dicomconf.services.exchange`:

* each :class:`~dicomconf.services.base.Reply` becomes a response on the
  request's context (the step's ``response`` changes, ``context_id`` and
  ``max_pdu_length`` applied to each), after its ``delay``; between pending
  responses, and during a delay, the SCU's C-CANCEL-RQ for the request is
  read (PS3.7 9.3.2.3) and the handler answers it (FE00);
* a C-GET's :class:`~dicomconf.services.base.SubOperation` is a C-STORE-RQ on
  this association, on a context of the instance's SOP class on which the
  SCU took the SCP role (PS3.4 C.4.3.2, PS3.7 D.3.3.4), and the handler is
  told the C-STORE-RSP's status; a C-MOVE's goes to the move destination the
  script names (``destinations: {AE: HOST:PORT}``) over an association the
  fake SCP requests, the C-STORE-RQ carrying the Move Originator (PS3.4
  C.4.2.2, PS3.7 9.3.1.1); one association serves the whole C-MOVE;
* a Storage Commitment :class:`~dicomconf.services.base.EventReport` is an
  N-EVENT-REPORT-RQ on this association (PS3.4 J.3.3), its RSP awaited.

Misbehaviour is the services' own :class:`~dicomconf.services.base.Misbehaviour`:
``status`` (with ``error_comment``) refuses the request, ``delay`` holds each
reply, ``abort`` sends an A-ABORT in place of the first reply; and
``abort_after: N`` an A-ABORT in place of the pending reply after N.

Data: ``data: known`` (the default) is the known data set of
:mod:`dicomconf.scenario.qr_data` in an in-memory index
(:class:`~dicomconf.services.index.Index` ``:memory:``), built once per
process on first use, and its worklist (``qr_data.worklist_items``);
``data: none`` answers from an empty index and an empty worklist.  MPPS
instances and commitment transactions live as long as the scenario run.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import lru_cache
from typing import Any

from dicomconf.scenario import qr_data
from dicomconf.scenario.answers import SERVICE_SOP_CLASSES as SOP_CLASSES
from dicomconf.scenario.answers import AnswerError, apply_changes
from dicomconf.scenario.engine import ScenarioFailure
from dicomconf.scp.responses import event_report_rq_dataset, store_rq_dataset
from dicomconf.services import qr_find, qr_retrieve
from dicomconf.services.base import EventReport, Misbehaviour, Reply, SubOperation
from dicomconf.services.commitment import CommitmentOptions, CommitmentService
from dicomconf.services.exchange import (
    PENDING,
    Stepper,
    reply_command,
    request_of,
    sop_class_of,
    undecodable,
)
from dicomconf.services.index import Index
from dicomconf.services.mpps import MPPSService
from dicomconf.services.worklist import WorklistService, WorklistSource
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.pdu import AAbort, AAssociateAC

log = logging.getLogger("dicomconf.scenario")

SERVICES = tuple(SOP_CLASSES)
COMMANDS = {"find": (dimse.C_FIND_RQ,), "worklist": (dimse.C_FIND_RQ,), "move": (dimse.C_MOVE_RQ,),
            "get": (dimse.C_GET_RQ,), "commitment": (dimse.N_ACTION_RQ,),
            "mpps": (dimse.N_CREATE_RQ, dimse.N_SET_RQ)}
SUB_OPERATION_WITHIN = 30.0  # how long the SCU (or a move destination) may take to answer a C-STORE-RQ
_EXPLICIT = "1.2.840.10008.1.2.1"
_ENDED = object()  # the association ended while the exchange waited


@lru_cache(maxsize=2)
def data_index(data: str = "known") -> Index:
    """The in-memory index the services answer from: the known data set, or empty (``none``); built once."""
    index = Index(":memory:")
    if data == "known":
        for instance in qr_data.instances():
            index.add(instance.dataset, path=None, transfer_syntax=_EXPLICIT, size=0)
    return index


def _worklist(data: str) -> WorklistSource:
    return WorklistSource(items=qr_data.worklist_items() if data == "known" else [])


def parse_destinations(spec: Any) -> dict[str, tuple[str, int]]:
    """``{AE: "HOST:PORT"}`` (an IPv6 host in brackets) → {AE: (host, port)}; AnswerError names a bad one."""
    out: dict[str, tuple[str, int]] = {}
    for ae, where in (spec or {}).items():
        host, sep, port = str(where).rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise AnswerError(f"{where!r} is not HOST:PORT", f"destinations.{ae}")
        out[str(ae).strip()] = (host, int(port))
    return out


def misbehaviour(args: dict, delay: float = 0.0) -> Misbehaviour:
    """The step's scripted misbehaviour: ``status`` (with ``error_comment``), ``delay`` (seconds), ``abort``."""
    status = args.get("status")
    return Misbehaviour(fail_status=None if status is None else int(status), error_comment=args.get("error_comment"),
                        delay=delay, abort="abort" in args)


class FakeServices:
    """The services of one ``role: scp`` scenario run, driven on the acceptor's connections (module docstring)."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner
        self.mpps = MPPSService()
        self._commitment: dict[str, CommitmentService] = {}
        self._message_ids = iter(range(1, 1 << 30))
        self._lock = threading.Lock()

    # ------------------------------------------------------------ handlers

    def handler(self, service: str, data: str, wrong: Misbehaviour, destinations: dict) -> Any:
        """The handler of ``service`` over ``data`` with the step's misbehaviour."""
        if service == "find":
            return qr_find.QueryRetrieveFind(data_index(data), qr_find.FindOptions(misbehaviour=wrong)).handle
        if service in ("move", "get"):
            options = qr_retrieve.RetrieveOptions(misbehaviour=wrong)
            if service == "move":
                return qr_retrieve.QueryRetrieveMove(data_index(data), destinations, options).handle
            return qr_retrieve.QueryRetrieveGet(data_index(data), options).handle
        if service == "worklist":
            return WorklistService(_worklist(data), misbehaviour=wrong).handle
        if service == "commitment":
            with self._lock:
                commitment = self._commitment.get(data)
                if commitment is None:
                    index = data_index(data)

                    def lookup(uid: str) -> str | None:
                        located = index.locate(uid)
                        return located.sop_class_uid if located is not None else None

                    commitment = self._commitment[data] = CommitmentService(lookup)
            commitment.options = CommitmentOptions(misbehaviour=wrong)
            return commitment.handle
        self.mpps.misbehaviour = wrong
        return self.mpps.handle

    # ------------------------------------------------------------ one request

    def serve(self, step: Any, name: str, conn: Any, rq: dimse.Message, args: dict, delay: float = 0.0) -> bool:
        """Answer ``rq`` with the service ``args["service"]`` (``delay``: the step's, in seconds, before each
        reply); False when the association ended meanwhile."""
        runner = self.runner
        service = args["service"]
        sop_class = sop_class_of(rq)
        if rq.command_field not in COMMANDS[service] or sop_class not in SOP_CLASSES[service]:
            wanted = " or ".join(dimse.COMMAND_FIELDS.get(c, hex(c)) for c in COMMANDS[service])
            raise ScenarioFailure(step, f"the SCU sent {rq.name} ({sop_class or 'no SOP class'}), not a request of "
                                        f"the {service} service",
                                  expected=f"{wanted} of {', '.join(SOP_CLASSES[service])}", came=rq.name)
        try:
            destinations = parse_destinations(args.get("destinations"))
        except AnswerError as exc:
            raise step.error(str(exc), *exc.key.split(".")) from None
        assoc = runner._assoc(name)
        ts = assoc.accepted.get(rq.context_id, ("", C.IMPLICIT_VR_LITTLE_ENDIAN))[1]
        exchange = _Exchange(self, step, name, conn, rq, ts, args, destinations)
        try:
            dataset = rq.dataset(ts) if rq.has_data_set and rq.data is not None else None
        except Exception as exc:  # noqa: BLE001 - a data set pydicom cannot read: the request cannot be processed
            return exchange.reply(undecodable(rq.command_field, exc))
        request = request_of(rq, ts, dataset, calling_ae=getattr(assoc.rq, "calling_ae_title", ""),
                             called_ae=getattr(assoc.rq, "called_ae_title", ""), extended=_extended(assoc, sop_class))
        handle = self.handler(service, args.get("data", "known"), misbehaviour(args, delay), destinations)
        try:
            return exchange.run(Stepper(handle(request)))
        finally:
            exchange.release_outbound()

    def message_id(self) -> int:
        """A Message ID for the fake SCP's own requests (PS3.7 9.3.1.1: unique among those outstanding)."""
        with self._lock:
            return next(self._message_ids) & 0xFFFF or next(self._message_ids) & 0xFFFF


def _extended(assoc: Any, sop_class: str) -> bytes:
    """The service-class-application-information our A-ASSOCIATE-AC answered for ``sop_class`` (PS3.7 D.3.3.5)."""
    reply = assoc.reply
    if not isinstance(reply, AAssociateAC):
        return b""
    for item in reply.user_information.extended_negotiations:
        if item.sop_class_uid == sop_class:
            return bytes(item.service_class_application_information)
    return b""


def _scp_role_contexts(assoc: Any, sop_class: str) -> list[tuple[int, str]]:
    """Accepted contexts of ``sop_class`` on which the SCU took the SCP role (PS3.7 D.3.3.4)."""
    reply = assoc.reply
    if not isinstance(reply, AAssociateAC):
        return []
    if not any(r.sop_class_uid == sop_class and r.scp_role for r in reply.user_information.role_selections):
        return []
    return [(cid, ts) for cid, (abstract, ts) in sorted(assoc.accepted.items()) if abstract == sop_class]


class _Exchange:
    """One request being answered (see the module docstring)."""

    def __init__(self, services: FakeServices, step: Any, name: str, conn: Any, rq: dimse.Message, ts: str,
                 args: dict, destinations: dict) -> None:
        self.services = services
        self.runner = services.runner
        self.step, self.name, self.conn, self.rq, self.ts, self.args = step, name, conn, rq, ts, args
        self.destinations = destinations
        self.abort_after = args.get("abort_after")
        self.pendings = 0
        self.cancel_seen = False  # a C-CANCEL-RQ naming the request came (PS3.7 9.3.2.3)
        self.outbound: Any = None  # (SCU, SOP classes proposed) of a C-MOVE's association to its destination
        self.within = SUB_OPERATION_WITHIN

    def run(self, stepper: Stepper) -> bool:
        value: Any = None
        throw = False
        while True:
            action = stepper.advance(value, throw=throw)
            throw, value = False, None
            if action is None:
                return True
            if stepper.failure is not None:
                log.error("the fake SCP's %s handler failed: %s", self.args["service"], stepper.failure)
            if isinstance(action, Reply):
                pending = action.status in PENDING
                if pending and self.abort_after is not None and self.pendings >= int(self.abort_after):
                    action = Reply(action.status, abort=True)
                # A scripted delay holds each reply, but a C-CANCEL-RQ ends the wait: the pending reply
                # is not sent and the cancel is answered at once (PS3.4 C.4.1.3.1: the SCP shall
                # interrupt the matching and return Canceled).
                if action.delay > 0 and not (self.cancel_seen and not pending):
                    if self._read_while(stepper, action.delay, until_cancel=True) is _ENDED:
                        stepper.close()
                        return False
                    if stepper.cancelled and pending:
                        throw = True
                        continue
                if not pending and self.args.get("cancel") and self.step is not None and not self.cancel_seen:
                    raise self.runner._not_cancelled(self.step, self.rq, self.pendings)  # before the final reply
                if not self.reply(action):
                    stepper.close()
                    return False
                if pending:
                    self.pendings += 1
                    if self._read_while(stepper, 0.0) is _ENDED:
                        stepper.close()
                        return False
            elif isinstance(action, SubOperation):
                value = self._c_get_store(stepper, action) if action.destination is None else self._c_move_store(action)
                if value is _ENDED:
                    stepper.close()
                    return False
            elif isinstance(action, EventReport):
                value = self._event_report(stepper, action)
                if value is _ENDED:
                    stepper.close()
                    return False

    # ------------------------------------------------------------ replies

    def reply(self, reply: Reply) -> bool:
        """Send ``reply`` (or, scripted, an A-ABORT in its place); False when the association ended."""
        runner, args = self.runner, self.args
        if reply.abort:
            a = args.get("abort") or {}
            runner._send(self.step, self.name, self.conn, AAbort(a.get("source", C.ABORT_SOURCE_USER),
                                                                 a.get("reason", C.ABORT_REASON_NOT_SPECIFIED)))
            return False
        command = reply_command(self.rq, reply)
        try:
            apply_changes(command, args.get("response"))
        except AnswerError as exc:
            if self.step is None:
                raise
            raise self.step.error(str(exc), *exc.key.split(".")) from None
        data = None if reply.dataset is None else dimse.encode_dataset(reply.dataset, self.ts)
        context_id = args.get("context_id")
        message = dimse.Message(self.rq.context_id if context_id is None else context_id, command, data)
        runner._send_message(self.step, self.name, self.conn, message, args.get("max_pdu_length"))
        return True

    def _read_while(self, stepper: Stepper, wait: float, until_cancel: bool = False) -> Any:
        """Read what the SCU sends for ``wait`` seconds (at least once): a C-CANCEL-RQ for the request
        cancels it (PS3.7 9.3.2.3), and with ``until_cancel`` ends the wait; an A-ABORT or a close ends
        the exchange (_ENDED), kept for the next step."""
        runner = self.runner
        deadline = time.monotonic() + wait
        while True:
            if self.name in runner._held:  # something came that the next step reads: only wait now
                runner._time_up.wait(max(deadline - time.monotonic(), 0.0))
                return None
            seen = runner._cancelled(self.name, self.conn, self.rq, max(deadline - time.monotonic(), 0.0))
            if seen == "ended":
                return _ENDED
            if seen == "cancel":
                self.cancel_seen = True
                stepper.cancel()
                if until_cancel:
                    return None
            if time.monotonic() >= deadline or runner._time_up.is_set():
                return None

    # ------------------------------------------------------------ sub-operations and reports

    def _await(self, stepper: Stepper, message_id: int, expected: str, what: str) -> Any:
        """The status of the SCU's ``expected`` response to our request ``message_id``; a C-CANCEL-RQ
        for the request meanwhile cancels it; _ENDED when the SCU aborted or closed."""
        runner, step = self.runner, self.step
        deadline = time.monotonic() + self.within
        while True:
            event = runner._next(step, self.name, self.conn, max(deadline - time.monotonic(), 0.0), expected)
            message = event.message if event.kind == "message" else None
            if message is not None and message.command_field == dimse.C_CANCEL_RQ:
                runner._record(self.name, message)
                if message.message_id_being_responded_to == self.rq.message_id:
                    self.cancel_seen = True
                    stepper.cancel()
                continue
            if message is not None and message.name == expected and \
                    message.message_id_being_responded_to == message_id:
                runner._record(self.name, message)
                return message.status
            if event.kind in ("closed", "reset") or (event.kind == "pdu" and event.received.pdu is not None
                                                     and event.received.pdu.pdu_type == C.A_ABORT):
                runner._held[self.name] = event
                return _ENDED
            raise runner._fail(step, f"the SCU did not answer our {what}",
                               f"{expected} to Message ID {message_id} within {self.within:g}s", event)

    def _c_get_store(self, stepper: Stepper, sub: SubOperation) -> Any:
        """A C-GET sub-operation: C-STORE-RQ on this association (PS3.4 C.4.3.2); None when it cannot be sent."""
        instance = qr_data.by_uid(sub.sop_instance_uid)
        contexts = _scp_role_contexts(self.runner._assoc(self.name), sub.sop_class_uid)
        if instance is None or not contexts:
            return None  # no such object, or the SCU did not take the SCP role for its class: a failed sub-operation
        context_id, ts = next(((c, t) for c, t in contexts if t == _EXPLICIT), contexts[0])
        message_id = self.services.message_id()
        command = store_rq_dataset(sub, message_id)
        self.runner._send_message(self.step, self.name, self.conn,
                                  dimse.Message(context_id, command, qr_data.encoded(instance, ts)))
        return self._await(stepper, message_id, "C-STORE-RSP", "C-STORE-RQ of a C-GET sub-operation "
                                                               "(PS3.4 C.4.3.2, PS3.7 9.3.1.2)")

    def _c_move_store(self, sub: SubOperation) -> Any:
        """A C-MOVE sub-operation: C-STORE-RQ to the move destination (PS3.4 C.4.2.2); None: not attempted."""
        from dicomconf.scu.client import SCU
        from dicomconf.scu.connection import Connection

        instance = qr_data.by_uid(sub.sop_instance_uid)
        where = self.destinations.get(sub.destination or "")
        if instance is None or where is None:
            return None
        try:
            if self.outbound is not None and sub.sop_class_uid not in self.outbound[1]:
                classes = self.outbound[1]
                self.release_outbound()
                self.outbound = (None, classes)
            if self.outbound is None or self.outbound[0] is None:
                classes = (self.outbound[1] if self.outbound else ()) + (sub.sop_class_uid,)
                conn = Connection.open(where[0], where[1], timeout=self.within)
                self.runner._register(f"move-{len(self.runner.all_connections)}", conn)
                scu = SCU(conn, calling_ae=self.runner.ae_title, called_ae=sub.destination or "")
                scu.associate([(uid, [_EXPLICIT, C.IMPLICIT_VR_LITTLE_ENDIAN]) for uid in classes],
                              timeout=self.within)
                self.outbound = (scu, classes)
            scu = self.outbound[0]
            context_id = scu.context_for(sub.sop_class_uid, _EXPLICIT)
            command = store_rq_dataset(sub, scu.next_message_id())
            command.MoveOriginatorApplicationEntityTitle = getattr(self.runner._assoc(self.name).rq,
                                                                   "calling_ae_title", "")
            command.MoveOriginatorMessageID = self.rq.message_id
            scu.send_message(dimse.Message(context_id, command,
                                           qr_data.encoded(instance, scu.accepted[context_id][1])))
            reply = scu.receive_message(self.within)
            return reply.status if reply.name == "C-STORE-RSP" else None
        except Exception as exc:  # noqa: BLE001 - an unreachable or failing destination fails the sub-operation
            log.info("C-MOVE sub-operation to %s failed: %s", sub.destination, exc)
            self.release_outbound()
            return None

    def release_outbound(self) -> None:
        """Release the C-MOVE's association to its destination, if one is open (PS3.8 7.2)."""
        outbound, self.outbound = self.outbound, None
        if outbound is None or outbound[0] is None:
            return
        scu = outbound[0]
        try:
            scu.release(self.within)
        except Exception:  # noqa: BLE001 - a destination that does not release properly is closed
            scu.connection.close()

    def _event_report(self, stepper: Stepper, event: EventReport) -> Any:
        """An N-EVENT-REPORT-RQ on this association (PS3.4 J.3.3, PS3.7 10.3.1); None when it cannot be sent."""
        if event.to is not None:
            return None  # the fake SCP reports on the requesting association only
        assoc = self.runner._assoc(self.name)
        context_id = next((cid for cid, (abstract, _ts) in sorted(assoc.accepted.items())
                           if abstract == event.sop_class_uid), self.rq.context_id)
        ts = assoc.accepted.get(context_id, ("", self.ts))[1]
        message_id = self.services.message_id()
        command = event_report_rq_dataset(event, message_id)
        data = None if event.dataset is None else dimse.encode_dataset(event.dataset, ts)
        self.runner._send_message(self.step, self.name, self.conn, dimse.Message(context_id, command, data))
        return self._await(stepper, message_id, "N-EVENT-REPORT-RSP", "N-EVENT-REPORT-RQ (PS3.4 J.3.3, "
                                                                      "PS3.7 10.1.1)")


__all__ = ["SERVICES", "SOP_CLASSES", "FakeServices", "data_index", "misbehaviour", "parse_destinations"]
