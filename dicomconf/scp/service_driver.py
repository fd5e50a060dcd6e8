"""Runs the DIMSE service handlers (``dicomconf.services``) on one SCP connection (PS3.7 9.3, 10.3).

Theory of operation
-------------------
A service handler is a generator (:mod:`dicomconf.services.base`): it
yields the responses a request earns and the sub-operations it needs, and is
told how each sub-operation ended.  :class:`ServiceDriver` is the asyncio side
of that contract for one connection of the reference SCP:

* a request whose SOP class has a handler starts an :class:`_Exchange`, kept
  by its Message ID until its final response (PS3.7 9.3.2.3: the Message ID
  is what a C-CANCEL-RQ names);
* each :class:`~dicomconf.services.base.Reply` becomes a response message
  (command elements from the Reply, the data set encoded in the transfer
  syntax of the request's presentation context, PS3.7 6.3.1), sent after its
  ``delay`` when one is scripted; ``abort`` sends an A-ABORT instead
  (PS3.8 7.3.1).  The exchange ends when the generator does;
* a :class:`~dicomconf.services.base.SubOperation` without destination (a
  C-GET's, PS3.4 C.4.3.2) is a C-STORE-RQ on this association, on a context
  of the instance's SOP class for which the requestor took the SCP role
  (PS3.7 D.3.3.4); the exchange waits for the C-STORE-RSP with that Message
  ID and sends the generator its status;
* a sub-operation with a destination (a C-MOVE's, PS3.4 C.4.2.2) is a
  C-STORE-RQ over an association the SCP requests from the move destination
  (:class:`~dicomconf.scp.requestor.OutboundAssociation`), carrying the Move
  Originator's AE title and Message ID (PS3.7 9.3.1.1).  One association
  serves the whole C-MOVE; an instance of a SOP class it did not negotiate
  opens the next one with that class added, and the last is released when the
  exchange ends;
* an :class:`~dicomconf.services.base.EventReport` without ``to`` is an
  N-EVENT-REPORT-RQ on this association, answered like a C-STORE-RSP; one
  with ``to`` goes over a new association to that AE, on which the SCP
  proposes the SCP role for the SOP class (PS3.4 J.3.3.1, PS3.7 D.3.3.4);
* a C-CANCEL-RQ throws :class:`~dicomconf.services.base.Cancel` into the
  exchange it names (an exchange waiting on a sub-operation takes it when that
  ends); the handler answers with its final response (FE00);
* pending responses are sent :data:`BATCH` at a time, then the exchange goes
  on at the event loop's next turn (other associations, and a C-CANCEL, are
  served in between), or, when the peer does not read its answers and the
  transport's buffer is past its high-water mark, once it has drained
  (``resume_writing``): a C-FIND of a million matches to a peer that reads
  nothing holds one batch, not a million responses.  A handler with an ``encoded`` method (C-FIND) is run
  through it: its :class:`~dicomconf.services.find_wire.EncodedReply` pendings
  carry the identifier's bytes, each sent with a command set from
  :mod:`dicomconf.scp.responses` as one P-DATA-TF of two PDVs (PS3.8 9.3.5),
  and a batch with the final response after it is one transport write.  The
  commands of replies without data set (final responses, C-MOVE/C-GET
  pendings with their counts) and of the C-STORE-RQs of C-MOVE and C-GET
  sub-operations are written with ``struct`` as well, the data set's fragments
  handed to the state machine as one :class:`~dicomconf.scp.requestor.Fragments`.  With an ``answer`` hook or tracing on, every response
  goes through the connection's general send path instead.

A handler that raises is a bug of ours: the request is answered with status
0110 (processing failure) and an Error Comment, and the connection goes on.
The driver never blocks the event loop on a peer: what it waits for is a
callback.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from dicomconf.scp.part10 import offer_for, transcode
from dicomconf.scp.responses import event_report_rq_dataset, store_rq_dataset
from dicomconf.scp.held import STATUS_RESOURCE_LIMITATION, TOO_LARGE, HeldDataSet
from dicomconf.scp.requestor import OutboundAssociation, OutboundError, fragments
from dicomconf.scp.responses import response_command, store_request_command
from dicomconf.services.base import EventReport, Handler, Reply, SubOperation, error_comment
from dicomconf.services.exchange import PENDING, Stepper, fault, reply_command, request_of, undecodable
from dicomconf.services.find_wire import EncodedReply
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.errors import LocalProtocolError
from dicomconf.ul.pdu import PDV, AAbort, PDataTF

log = logging.getLogger("dicomconf.scp")

# The request commands a service handler answers, and the response each earns (PS3.7 9.3, 10.3).
SERVICE_REQUESTS = frozenset({
    dimse.C_FIND_RQ, dimse.C_MOVE_RQ, dimse.C_GET_RQ, dimse.N_CREATE_RQ, dimse.N_SET_RQ, dimse.N_ACTION_RQ,
    dimse.N_GET_RQ, dimse.N_DELETE_RQ, dimse.N_EVENT_REPORT_RQ,
})
# Responses from the peer that an exchange waits for: to our C-STORE-RQ and N-EVENT-REPORT-RQ.
AWAITED_RESPONSES = frozenset({dimse.C_STORE_RSP, dimse.N_EVENT_REPORT_RSP})
BATCH = 128  # pending responses written per turn of the event loop (then the loop runs other work)
_COUNTS = ("NumberOfRemainingSuboperations", "NumberOfCompletedSuboperations", "NumberOfFailedSuboperations",
           "NumberOfWarningSuboperations")
_COUNT_SET = frozenset(_COUNTS)
_PDU_OVERHEAD = 6 + 6 + 6  # P-DATA-TF header, two PDV item headers (PS3.8 9.3.5, 9.3.5.1)


def for_services(
    msg: dimse.Message, handlers: Mapping[str, Handler], awaiting: Mapping[int, Any] | frozenset = frozenset()
) -> bool:
    """Whether ``msg`` is for the services: a request with a handler, a C-CANCEL, an awaited response.

    ``awaiting``: the Message IDs of our requests whose responses an exchange waits for (PS3.7 9.3.1.2).
    """
    field_ = msg.command_field
    if field_ in SERVICE_REQUESTS:
        return (msg.affected_sop_class_uid or msg.requested_sop_class_uid or "") in handlers
    return field_ == dimse.C_CANCEL_RQ or (field_ in AWAITED_RESPONSES
                                           and msg.message_id_being_responded_to in awaiting)


@dataclass
class _Exchange:
    """One request being served: its handler's generator (stepped), the request message, what it waits for."""

    request: dimse.Message
    transfer_syntax: str
    stepper: Stepper
    waiting: int | None = None  # Message ID of our C-STORE-RQ / N-EVENT-REPORT-RQ it waits on
    done: bool = False
    timer: Any = None
    sop_class: str = ""
    outbound: OutboundAssociation | None = None  # a C-MOVE's association to its destination
    task: Any = None  # the far operation running now
    keep: bool = False  # waiting on work that outlives the connection (a far event report)
    classes: dict = field(default_factory=dict)  # SOP class -> transfer syntaxes proposed to the destination
    commands: dict = field(default_factory=dict)  # status -> the encoded pending response command (fast path)


class ServiceDriver:
    """The services of one connection (see the module docstring).

    ``conn`` is the SCP's connection object: the driver uses its ``assoc``,
    ``loop``, ``peer``, ``calling``/``called``, ``negotiated`` (the
    :class:`~dicomconf.ul.negotiation.Negotiated` of its association) and
    ``_send``/``_flush``.  ``handlers`` maps SOP class UIDs to handlers.
    ``read_instance(sub)`` returns ``(transfer_syntax, data set bytes)`` of a
    sub-operation's instance, or None.  ``destinations`` maps AE titles to
    (host, port) for far operations, requested as ``ae_title`` with every wait
    bounded by ``timeout`` seconds.
    """

    def __init__(
        self,
        conn: Any,
        handlers: Mapping[str, Handler],
        read_instance: Callable[[SubOperation], tuple[str, bytes] | None],
        destinations: Mapping[str, tuple[str, int]] | None = None,
        ae_title: str = "DICOMCONF",
        timeout: float = 30.0,
    ) -> None:
        self.conn = conn
        self.handlers = handlers
        self.read_instance = read_instance
        self.destinations = destinations or {}
        self.ae_title = ae_title
        self.timeout = timeout
        self.exchanges: dict[int, _Exchange] = {}
        self.awaiting: dict[int, _Exchange] = {}  # our request's Message ID -> the exchange waiting on it
        self.paused: list[_Exchange] = []  # exchanges waiting for the peer to read (write buffer full)
        self._ids = itertools.count(1)
        self._out: list[bytes] = []  # encoded pendings not yet written (see _step)

    # ------------------------------------------------------------ inbound

    def handles(self, msg: dimse.Message) -> bool:
        """Whether ``msg`` is for the services: a request with a handler, a C-CANCEL, an awaited response."""
        return for_services(msg, self.handlers, self.awaiting)

    def on_message(self, msg: dimse.Message) -> None:
        field_ = msg.command_field
        if field_ == dimse.C_CANCEL_RQ:
            self._cancel(msg)
        elif field_ in AWAITED_RESPONSES:
            exchange = self.awaiting.pop(msg.message_id_being_responded_to, None)
            if exchange is not None:
                exchange.waiting = None
                self._step(exchange, msg.status)
        else:
            self._start(msg)

    def _start(self, msg: dimse.Message) -> None:
        sop_class = msg.affected_sop_class_uid or msg.requested_sop_class_uid or ""
        context = self.conn.assoc.accepted_contexts.get(msg.context_id)
        transfer_syntax = context[1] if context else C.IMPLICIT_VR_LITTLE_ENDIAN
        dataset = None
        held = msg.data_sink
        if isinstance(held, HeldDataSet) and held.status is not None:
            self._answer(msg, transfer_syntax, Reply(TOO_LARGE.get(msg.command_field, STATUS_RESOURCE_LIMITATION),
                                                     fields={"ErrorComment": error_comment(held.cause or "too large")}))
            return
        data = held.data() if isinstance(held, HeldDataSet) else msg.data
        if data is not None:
            try:
                dataset = dimse.decode_dataset(data, transfer_syntax)
            except Exception as exc:  # a data set pydicom cannot read: the request cannot be processed
                self._answer(msg, transfer_syntax, undecodable(msg.command_field, exc))
                return
        negotiated = getattr(self.conn, "negotiated", None)
        extended = b""
        if negotiated is not None:
            extended = dict(getattr(negotiated, "extended_negotiation", {}) or {}).get(sop_class, b"") or b""
        request = request_of(msg, transfer_syntax, dataset, calling_ae=self.conn.calling, called_ae=self.conn.called,
                             extended=extended)
        handler = self.handlers[sop_class]
        encoded = getattr(handler, "encoded", None) if self._plain() else None
        try:
            generator = encoded(request) if encoded is not None else handler(request)
        except Exception as exc:
            self._failed(msg, transfer_syntax, exc)
            return
        exchange = _Exchange(msg, transfer_syntax, Stepper(generator), sop_class=sop_class)
        if msg.message_id is not None:
            self.exchanges[msg.message_id] = exchange
        self._step(exchange, None)

    def _cancel(self, msg: dimse.Message) -> None:
        """C-CANCEL-RQ (PS3.7 9.3.2.3): the exchange it names ends with its Cancel response."""
        exchange = self.exchanges.get(msg.message_id_being_responded_to)
        if exchange is None or exchange.done:
            return  # the operation had ended: nothing to cancel (PS3.7 9.3.2.3 asks no response)
        exchange.stepper.cancel()
        if exchange.waiting is None and exchange.timer is None:
            self._step(exchange, None, cancel=True)

    # ------------------------------------------------------------ the exchange

    def _plain(self) -> bool:
        """Whether responses may bypass the connection's send path: no answer hook, no tracing."""
        server = getattr(self.conn, "server", None)
        hooks = getattr(server, "hooks", None)
        return (hooks is None or hooks.answer is None) and not getattr(server, "tracing", False)

    def _step(self, exchange: _Exchange, value: Any, cancel: bool = False) -> None:
        """Advance ``exchange`` until it waits (a sub-operation, a delay) or ends.

        Once a C-CANCEL has come, the next pending reply or sub-operation the handler yields is
        not performed: :class:`~dicomconf.services.base.Cancel` is thrown in its place
        (:class:`~dicomconf.services.exchange.Stepper`), so the handler has counted every
        sub-operation that ended before (PS3.4 C.4.2.3.1) and answers the cancel itself.

        Pending responses are sent :data:`BATCH` at a time; after each batch the exchange goes on
        at the event loop's next turn, so other associations (and a C-CANCEL) are served during a
        long C-FIND.  Encoded pendings (:class:`~dicomconf.services.find_wire.EncodedReply`) and
        the final response after them are written together, in one transport write per batch.
        """
        try:
            self._advance(exchange, value, cancel)
        finally:
            self._write_out()

    def _advance(self, exchange: _Exchange, value: Any, cancel: bool) -> None:
        batch = 0
        stepper = exchange.stepper
        while not exchange.done:
            action = stepper.advance(value, throw=cancel)
            cancel = False
            value = None
            if stepper.failure is not None or action is None:
                self._end(exchange)
                if stepper.failure is not None:
                    self._failed(exchange.request, exchange.transfer_syntax, stepper.failure)
                return
            if type(action) is EncodedReply:
                if not self._encoded(exchange, action):
                    return
                batch += 1
                if batch >= BATCH:
                    exchange.timer = self.conn.loop.call_soon(self._resume, exchange)
                    return
                continue
            if not isinstance(action, Reply):
                self._write_out()  # what is queued goes before the sub-operation's or report's request
            if isinstance(action, Reply):
                if action.delay > 0:
                    exchange.timer = self.conn.loop.call_later(action.delay, self._delayed, exchange, action)
                    return
                if not self._reply(exchange, action):
                    return
                if action.status in PENDING:
                    batch += 1
                    if batch >= BATCH:
                        exchange.timer = self.conn.loop.call_soon(self._resume, exchange)
                        return
            elif isinstance(action, SubOperation):
                if action.destination is None:
                    if not self._c_get_store(exchange, action):
                        value = None  # could not be attempted: the handler counts a failure
                        continue
                    return
                self._wait_far(exchange, self._c_move_store(exchange, action))
                return
            else:  # an EventReport (the stepper passes on nothing else)
                if action.to is None:
                    self._event_report(exchange, action)
                    return
                self._wait_far(exchange, self._far_event_report(action), keep=True)
                return

    def _resume(self, exchange: _Exchange) -> None:
        """The next batch of an exchange (see :meth:`_step`); a C-CANCEL that came meanwhile is thrown in."""
        exchange.timer = None
        if exchange.done or self.conn.closed:
            return
        if self.conn.write_paused:  # the peer does not read its answers: wait until it has (writable)
            self.paused.append(exchange)
            return
        self._step(exchange, None, cancel=exchange.stepper.cancelled)
        self.conn._flush()

    def writable(self) -> None:
        """The transport's buffer drained (``resume_writing``): the exchanges held back go on."""
        paused, self.paused = self.paused, []
        for exchange in paused:
            self._resume(exchange)

    def _encoded(self, exchange: _Exchange, reply: EncodedReply) -> bool:
        """Queue one encoded pending response: command and identifier in one P-DATA-TF (PS3.8 9.3.5, E.2).

        A response that does not fit the peer's Maximum Length in one PDU takes the general path
        (decoded, then fragmented).  False when the association can take no more.
        """
        conn = self.conn
        if conn.closed:
            return False
        request = exchange.request
        command = exchange.commands.get(reply.status)
        if command is None:
            command = response_command((request.command_field | 0x8000) & 0xFFFF, request.message_id or 0,
                                       reply.status, exchange.sop_class or None, data_set=True)
            exchange.commands[reply.status] = command
        limit = conn.assoc.peer_max_pdu_length
        if limit and len(command) + len(reply.data) + _PDU_OVERHEAD - 6 > limit:
            self._write_out()
            dataset = dimse.decode_dataset(reply.data, exchange.transfer_syntax)
            self._answer(request, exchange.transfer_syntax, Reply(reply.status, dataset))
            return not conn.closed
        context = request.context_id
        try:
            self._out.append(conn.assoc.send(PDataTF((PDV(context, C.MCH_COMMAND | C.MCH_LAST, command),
                                                      PDV(context, C.MCH_LAST, reply.data)))))
        except LocalProtocolError as exc:
            log.warning("%s: cannot send %s: %s", conn.peer, request.name, exc)
            return False
        return True

    def _write_out(self) -> None:
        """Write the queued encoded responses in one go."""
        out = self._out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            if not self.conn.closed and not self.conn.transport.is_closing():
                self.conn.transport.write(data)

    def _delayed(self, exchange: _Exchange, reply: Reply) -> None:
        exchange.timer = None
        if exchange.done or self.conn.closed:
            return
        if exchange.stepper.cancelled and reply.status in PENDING:  # a C-CANCEL came during the delay
            self._step(exchange, None, cancel=True)
        elif self._reply(exchange, reply):
            self._step(exchange, None)
        self._write_out()
        self.conn._flush()

    def _reply(self, exchange: _Exchange, reply: Reply) -> bool:
        """Send ``reply``; False when it ended the association (a scripted abort)."""
        if reply.abort:
            self._write_out()
            self.conn._send(AAbort(C.ABORT_SOURCE_USER, C.ABORT_REASON_NOT_SPECIFIED))
            self.conn.outcome = "aborted by a scripted service answer"
            self._end(exchange)
            self.close()
            return False
        self._answer(exchange.request, exchange.transfer_syntax, reply, queue=True)
        return True

    def _wait_far(self, exchange: _Exchange, work: Any, keep: bool = False) -> None:
        """Run ``work`` (a coroutine giving a status or None) and resume the exchange with its result.

        ``keep``: the work outlives this connection (a commitment report is typically sent after the
        requestor released, PS3.4 J.3.3.1); the server holds it among its in-flight work, which
        :meth:`~dicomconf.scp.server.ReferenceSCP.stop` waits for.
        """
        token = -next(self._ids)  # far operations are not on this association: a key no Message ID takes
        exchange.waiting = token
        task = asyncio.ensure_future(work)
        exchange.keep = keep
        if keep:
            in_flight = self.conn.server._in_flight
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        else:
            exchange.task = task

        def done(task: asyncio.Future) -> None:
            exchange.task = None
            exchange.keep = False
            if task.cancelled() or exchange.done or exchange.waiting != token:
                return
            exchange.waiting = None
            self._step(exchange, task.result())  # after the connection ended, only the handler hears of it
            self.conn._flush()

        task.add_done_callback(done)

    async def _c_move_store(self, exchange: _Exchange, sub: SubOperation) -> int | None:
        """One C-MOVE sub-operation: a C-STORE-RQ to the move destination (PS3.4 C.4.2.2); None: not attempted."""
        where = self.destinations.get(sub.destination or "")
        found = self.read_instance(sub)
        if where is None or found is None:
            log.warning("%s: C-MOVE sub-operation for %s: %s", self.conn.peer, sub.sop_instance_uid,
                        "no such destination" if where is None else "the instance cannot be read")
            return None
        stored_ts, data = found
        outbound = exchange.outbound
        if outbound is not None and (outbound.ended or outbound.context_for(sub.sop_class_uid) is None):
            await outbound.release(self.timeout)
            outbound = None
        if outbound is None:
            classes = exchange.classes
            classes[sub.sop_class_uid] = offer_for(stored_ts)
            try:
                outbound = await OutboundAssociation.open(
                    where[0], where[1], calling=self.ae_title, called=sub.destination or "",
                    contexts=list(classes.items()), timeout=self.timeout)
            except OutboundError as exc:
                log.warning("%s: C-MOVE to %s: %s", self.conn.peer, sub.destination, exc)
                return None
            exchange.outbound = outbound
        context = outbound.context_for(sub.sop_class_uid, stored_ts)
        if context is None:
            return None
        context_id, ts = context
        if ts != stored_ts:
            data = transcode(data, stored_ts, ts)
            if data is None:
                return None
        message_id = outbound.next_message_id()
        try:
            command = store_request_command(sub.sop_class_uid, sub.sop_instance_uid, message_id, dimse.PRIORITY_MEDIUM,
                                            (self.conn.calling, exchange.request.message_id or 0))
        except (UnicodeEncodeError, struct.error):
            command = None
        try:
            if command is not None:
                response = await outbound.request_encoded(context_id, message_id, command, data, self.timeout)
            else:
                full = store_rq_dataset(sub, message_id)
                full.MoveOriginatorApplicationEntityTitle = self.conn.calling
                full.MoveOriginatorMessageID = exchange.request.message_id
                response = await outbound.request(dimse.Message(context_id, full, data), self.timeout)
        except OutboundError as exc:
            log.warning("%s: C-MOVE sub-operation for %s: %s", self.conn.peer, sub.sop_instance_uid, exc)
            return None
        return response.status

    async def _far_event_report(self, event: EventReport) -> int | None:
        """An N-EVENT-REPORT over a new association to ``event.to``, taking the SCP role (PS3.4 J.3.3.1)."""
        where = self.destinations.get(event.to or "")
        if where is None:
            log.warning("%s: N-EVENT-REPORT to %s: no such destination", self.conn.peer, event.to)
            return None
        try:
            outbound = await OutboundAssociation.open(
                where[0], where[1], calling=self.ae_title, called=event.to or "",
                contexts=[(event.sop_class_uid, (C.IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1"))],
                roles={event.sop_class_uid: (False, True)}, timeout=self.timeout)
        except OutboundError as exc:
            log.warning("%s: N-EVENT-REPORT to %s: %s", self.conn.peer, event.to, exc)
            return None
        try:
            context = outbound.context_for(event.sop_class_uid)
            if context is None:
                return None
            command = event_report_rq_dataset(event, outbound.next_message_id())
            data = None if event.dataset is None else dimse.encode_dataset(event.dataset, context[1])
            response = await outbound.request(dimse.Message(context[0], command, data), self.timeout)
            return response.status
        except OutboundError as exc:
            log.warning("%s: N-EVENT-REPORT to %s: %s", self.conn.peer, event.to, exc)
            return None
        finally:
            await outbound.release(self.timeout)

    def _end(self, exchange: _Exchange) -> None:
        exchange.done = True
        if exchange.timer is not None:
            exchange.timer.cancel()
            exchange.timer = None
        if exchange.task is not None:
            exchange.task.cancel()
            exchange.task = None
        if exchange.outbound is not None:
            asyncio.ensure_future(exchange.outbound.release(self.timeout))  # the C-MOVE's last association
            exchange.outbound = None
        if exchange.waiting is not None:
            self.awaiting.pop(exchange.waiting, None)
        mid = exchange.request.message_id
        if self.exchanges.get(mid) is exchange:
            del self.exchanges[mid]

    def close(self) -> None:
        """The connection ended: every exchange is dropped (its generator closed)."""
        for exchange in list(self.exchanges.values()):
            if exchange.keep:
                continue  # its far work goes on; the handler hears how it ended
            self._end(exchange)
            try:
                exchange.stepper.close()
            except Exception as exc:  # a handler's cleanup failing is ours to log, not the peer's
                log.error("%s: closing the %s exchange failed: %s", self.conn.peer, exchange.request.name, exc)
        self.exchanges.clear()
        self.awaiting.clear()

    # ------------------------------------------------------------ sending

    def _answer(self, request: dimse.Message, transfer_syntax: str, reply: Reply, queue: bool = False) -> None:
        """The response to ``request`` carrying ``reply`` (PS3.7 9.3, 10.3; command in E.1 order by pydicom).

        A reply without data set whose fields are at most the sub-operation counts (a C-FIND's
        final response, a C-MOVE's or C-GET's pendings and final one) is written by
        :func:`~dicomconf.scp.responses.response_command` in one PDU when it fits; ``queue``: with
        the encoded pendings before it, in one write at the end of the step (:meth:`_step`).
        """
        if reply.dataset is None and request.message_id is not None and self._plain() and (
                not reply.fields or set(reply.fields) <= _COUNT_SET):
            fields = reply.fields
            counts = tuple(fields.get(k) for k in _COUNTS) if fields else None
            sop_class = request.affected_sop_class_uid or request.requested_sop_class_uid or None
            try:
                raw = response_command((request.command_field | 0x8000) & 0xFFFF, request.message_id, reply.status,
                                       sop_class, counts=counts)
            except (UnicodeEncodeError, struct.error, TypeError):
                raw = None
            limit = self.conn.assoc.peer_max_pdu_length
            if raw is not None and (not limit or len(raw) + 6 <= limit):
                pdata = PDataTF((PDV(request.context_id, C.MCH_COMMAND | C.MCH_LAST, raw),))
                if queue and not self.conn.closed:
                    try:
                        self._out.append(self.conn.assoc.send(pdata))
                    except LocalProtocolError as exc:
                        log.warning("%s: cannot send %s: %s", self.conn.peer, type(pdata).__name__, exc)
                    return
                self._write_out()
                self.conn._send(pdata)
                return
        command = reply_command(request, reply)
        data = None
        if reply.dataset is not None:
            data = dimse.encode_dataset(reply.dataset, transfer_syntax)
        self._write_out()
        self.conn._send(dimse.Message(request.context_id, command, data))

    def _failed(self, request: dimse.Message, transfer_syntax: str, exc: BaseException) -> None:
        log.error("%s: the %s handler failed: %s: %s", self.conn.peer, request.name, type(exc).__name__, exc)
        self._answer(request, transfer_syntax, fault())

    def _context_for(self, sop_class: str, transfer_syntax: str, *, as_scu: bool) -> tuple[int, str] | None:
        """An accepted context for ``sop_class``, preferring ``transfer_syntax`` (PS3.8 9.3.3.2).

        ``as_scu``: we act as SCU on it (a C-GET's C-STORE), which needs the requestor's SCP role
        (PS3.7 D.3.3.4).
        """
        negotiated = getattr(self.conn, "negotiated", None)
        if as_scu:
            roles = getattr(negotiated, "roles", {}) or {}
            if not roles.get(sop_class, (True, False))[1]:
                return None
        candidates = [(cid, ts) for cid, (abstract, ts) in self.conn.assoc.accepted_contexts.items()
                      if abstract == sop_class]
        for cid, ts in candidates:
            if ts == transfer_syntax:
                return cid, ts
        return candidates[0] if candidates else None

    def _c_get_store(self, exchange: _Exchange, sub: SubOperation) -> bool:
        """A C-GET's C-STORE sub-operation on this association (PS3.4 C.4.3.2); False if impossible."""
        found = self.read_instance(sub)
        if found is None:
            log.warning("%s: C-GET sub-operation: %s cannot be read", self.conn.peer, sub.sop_instance_uid)
            return False
        stored_ts, data = found
        context = self._context_for(sub.sop_class_uid, stored_ts, as_scu=True)
        if context is None:
            log.info("%s: C-GET sub-operation: no context for %s with the SCP role of the requestor",
                     self.conn.peer, sub.sop_class_uid)
            return False
        context_id, ts = context
        if ts != stored_ts:
            data = transcode(data, stored_ts, ts)
            if data is None:
                return False
        message_id = self._message_id()
        exchange.waiting = message_id
        self.awaiting[message_id] = exchange
        pdus = None
        if self._plain():
            try:
                raw = store_request_command(sub.sop_class_uid, sub.sop_instance_uid, message_id, dimse.PRIORITY_MEDIUM)
                pdus = fragments(context_id, raw, data, self.conn.assoc.peer_max_pdu_length)
            except (UnicodeEncodeError, struct.error):
                pdus = None
        self._write_out()
        self.conn._send(pdus if pdus is not None else dimse.Message(context_id, store_rq_dataset(sub, message_id), data))
        return True

    def _event_report(self, exchange: _Exchange, event: EventReport) -> None:
        """An N-EVENT-REPORT-RQ on this association (PS3.7 10.3.1; e.g. PS3.4 J.3.3)."""
        context = self._context_for(event.sop_class_uid, exchange.transfer_syntax, as_scu=False)
        context_id, ts = context if context is not None else (exchange.request.context_id, exchange.transfer_syntax)
        message_id = self._message_id()
        command = event_report_rq_dataset(event, message_id)
        data = None if event.dataset is None else dimse.encode_dataset(event.dataset, ts)
        exchange.waiting = message_id
        self.awaiting[message_id] = exchange
        self.conn._send(dimse.Message(context_id, command, data))

    def _message_id(self) -> int:
        """A Message ID for our own request on this association (PS3.7 9.3.1.1: unique among those outstanding)."""
        while True:
            mid = next(self._ids) & 0xFFFF
            if mid and mid not in self.awaiting:
                return mid


__all__ = ["AWAITED_RESPONSES", "PENDING", "SERVICE_REQUESTS", "ServiceDriver", "for_services"]
