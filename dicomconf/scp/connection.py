"""One connection of the reference SCP: its acceptor association, timers, DIMSE dispatch (PS3.8, PS3.7).

Theory of operation
-------------------
Each accepted TCP connection gets a :class:`SCPConnection` (an asyncio
protocol) owning one acceptor :class:`~dicomconf.ul.association.Association`
(the PS3.8 Table 9-10 state machine).  The driver only moves bytes and time
into it and acts on what comes out:

* bytes from the socket -> ``receive_data`` -> events; bytes to write come
  from ``send(...)`` (our answers) and ``data_to_send()`` (the machine's own,
  e.g. an A-ABORT for a bad PDU); ``should_close`` closes the transport;
* ``artim_running`` is mirrored by an ARTIM deadline whose expiry calls
  ``timer_expired`` (ARTIM, PS3.8 9.1.5); a change of ``artim_starts`` while
  it runs is a restart (AA-1), so the deadline moves a full period ahead;
* an idle (DIMSE) deadline aborts an association on which no whole PDU
  arrived for ``idle_timeout`` seconds, covering a partial PDU followed by
  silence.

Both deadlines share one event-loop timer per connection, armed for the
earliest of them.  A deadline that moves later (a restart, ARTIM stopping
with the idle deadline further off) keeps the armed timer, which on firing
finds nothing due and re-arms for what is left; only an earlier deadline
replaces it.  An echo association thus schedules one timer instead of three.

A peer that sends requests without reading the answers cannot grow our
write buffer: above the transport's high-water mark (``pause_writing``) the
connection stops reading until the buffer drains.

A C-STORE data set goes where the storage backend says while it arrives:
the association's data sink (:meth:`SCPConnection._open_spool`) gives the
core a spool for each C-STORE-RQ command, so a directory store is written as
its PDUs come and nothing of it is held; a spool whose data set never
completes is discarded when the connection ends.  Requests of the services
beyond echo and store go to the connection's
:class:`~dicomconf.scp.service_driver.ServiceDriver`, made when the first
message for them arrives (an echo or store association never builds one).

The A-ASSOCIATE-RQ is answered through the server's
:class:`~dicomconf.ul.negotiation_cache.NegotiationCache`: a request that
repeats byte for byte (as a modality's does) gets the answer, and the AC
bytes, of its first negotiation.  A C-ECHO-RQ that repeats one answered
before but for its Message ID is answered from the server's
:class:`~dicomconf.ul.echo_lane.EchoTemplates` (learned from this driver's
own answers) when no hook or trace is set and no service driver exists.

Events are handled in order.  A store whose last step blocks (``fsync``)
runs on a worker thread; while it runs the connection stops reading and
queues any further events, so responses keep their order and a slow disk
stalls only its own association.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from typing import Any

from dicomconf.scp.describe import describe
from dicomconf.scp.responses import response_command, response_pdata
from dicomconf.scp.held import HeldDataSet
from dicomconf.scp.service_driver import ServiceDriver, for_services
from dicomconf.scp.storage import (
    STATUS_OUT_OF_RESOURCES,
    STATUS_PROCESSING_FAILURE,
    Spool,
    StoredInstance,
    format_size,
)
from dicomconf.ul import constants as C
from dicomconf.ul import dimse, events as ev
from dicomconf.ul.association import Association
from dicomconf.ul.echo_lane import EchoTemplates
from dicomconf.ul.errors import LocalProtocolError
from dicomconf.ul.pdu import AAbort, AAssociateAC, AReleaseRP

log = logging.getLogger("dicomconf.scp")
trace = logging.getLogger("dicomconf.scp.pdu")

STATUS_UNRECOGNIZED_OPERATION = 0x0211  # PS3.7 Annex C: Refused, unrecognized operation
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122  # PS3.7 Annex C: Refused, SOP class not supported
_NO_RESPONSE = frozenset({dimse.C_CANCEL_RQ})
_TIMER_SLACK = 0.001  # s: a deadline this close is due (event loops may fire a timer up to a tick early)


class SCPConnection(asyncio.Protocol):
    """One TCP connection and its acceptor association (PS3.8 9.2)."""

    __slots__ = (
        "server", "loop", "transport", "assoc", "peer", "tls", "started", "timer", "timer_at", "artim_at", "artim_start",
        "idle_on", "last_pdu", "spool", "write_paused",
        "queue", "busy", "counted", "calling", "called", "accepted", "proposed", "outcome", "closed",
        "negotiated", "services", "echo_lane",
    )

    def __init__(self, server: Any, tls: bool) -> None:  # server: the ReferenceSCP (scp.server)
        self.server = server
        self.loop = server._loop
        self.tls = tls
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None  # armed for the earliest deadline, or earlier
        self.timer_at = 0.0  # loop time self.timer fires at
        self.artim_at: float | None = None  # ARTIM deadline while the machine's ARTIM runs
        self.artim_start = 0  # the Association's artim_starts when artim_at was set
        self.idle_on = False  # the idle deadline (last_pdu + idle_timeout) is watched
        self.queue: collections.deque = collections.deque()
        self.busy = False
        self.write_paused = False  # the transport's write buffer is above its high-water mark
        self.counted = False
        self.calling = self.called = ""
        self.accepted = self.proposed = 0
        self.outcome = "closed before A-ASSOCIATE-RQ"
        self.closed = False
        self.last_pdu = 0.0
        self.spool: Spool | None = None  # the data set arriving now, when it goes to a spool
        self.negotiated: Any = None  # what the A-ASSOCIATE-AC agreed (roles, extended negotiation)
        self.services: ServiceDriver | None = None  # the DIMSE services beyond echo and store, when offered
        self.echo_lane: EchoTemplates | None = None  # the server's echo templates, once associated (no hooks, no trace)

    # ------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.started = self.last_pdu = self.loop.time()
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        cfg = self.server.config
        if len(self.server._connections) >= self.server.max_connections:
            self.closed = True  # PS3.8 9.1.2: an acceptor may decline a transport connection
            self.server.refused += 1
            log.warning("%s: connection closed at once: %d connections open (max_connections)",
                        self.peer, len(self.server._connections))
            transport.close()
            return
        self.assoc = Association(
            "acceptor", max_pdu_length=cfg.max_pdu_length, data_sink=self._open_spool,
            max_data_length=cfg.max_dataset_length,
        )
        self.server._connections.add(self)
        self._handle(self.assoc.connection_made())

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # a connection closed at once (max_connections) never had an association
        lane = self.echo_lane
        if lane is not None and self.services is None and not self.busy:
            answer = self.assoc.answer_repeated_echo(data, lane)  # a C-ECHO-RQ answered before (ul.echo_lane)
            if answer is not None:
                self.last_pdu = self.loop.time()
                self.transport.write(answer)  # type: ignore[union-attr]
                return
        hooks = self.server.hooks
        if hooks is not None and hooks.inbound is not None:
            data = hooks.inbound(data, self)  # a variant's view of what arrived (dicomconf.scp.hooks)
            if not data:
                return
        self._handle(self.assoc.receive_data(data))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def pause_writing(self) -> None:
        """A peer that does not read its answers: stop reading its requests until it catches up."""
        self.write_paused = True
        if not self.closed:
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.busy and not self.closed:
            self.transport.resume_reading()  # type: ignore[union-attr]
        if self.services is not None and self.services.paused:
            self.services.writable()  # pending responses held back while the peer did not read

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_timers()
        try:
            self.queue.extend(self.assoc.connection_lost())
        except LocalProtocolError:
            pass
        self._discard_open_spool()
        if not self.busy:
            self._drain()
        if self.services is not None:
            self.services.close()
        self._finish()

    def _discard_open_spool(self) -> None:
        """A data set that will never complete (abort, lost connection) leaves nothing behind."""
        spool = self.spool
        if spool is not None and not spool.ended:
            spool.discard()
        self.spool = None

    # -------------------------------------------------------------- events

    def _handle(self, events: list) -> None:
        self.queue.extend(events)
        if not self.busy:
            self._drain()
        self._flush()

    def _drain(self) -> None:
        queue = self.queue
        while queue and not self.busy:
            event = queue.popleft()
            kind = type(event)
            if kind is ev.PDUReceived:
                self.last_pdu = self.loop.time()
                if self.server.tracing:
                    trace.debug("%s <- %s", self.peer, describe(event.pdu, self.server.config.show_secrets))
            elif kind is ev.MessageReceived:
                self._on_message(event.message)
            elif kind is ev.AssociateRequested:
                self._on_associate(event.pdu)
            elif kind is ev.ReleaseRequested:
                self._send(AReleaseRP())
                self.outcome = "released"
            elif kind is ev.Aborted:
                if event.by_peer:
                    self.outcome = f"aborted by peer (source {event.source}, reason {event.reason})"
                else:
                    why = f": {event.error}" if event.error is not None else ""
                    self.outcome = f"aborted (source {event.source}, reason {event.reason}){why}"

    def _send(self, primitive: Any) -> None:
        if self.closed:
            return
        hooks = self.server.hooks
        if hooks is not None and hooks.answer is not None:
            self._send_hooked(hooks.answer(primitive, self))
            return
        self._send_one(primitive)

    def _send_hooked(self, replacement: Any) -> None:
        """What an ``answer`` hook returned (:mod:`dicomconf.scp.hooks`): a PDU, several, or None."""
        if replacement is None:
            return
        for primitive in replacement if isinstance(replacement, (list, tuple)) else (replacement,):
            self._send_one(primitive)

    def _send_one(self, primitive: Any) -> None:
        if self.closed:
            return
        try:
            out = self.assoc.send(primitive)
        except LocalProtocolError as exc:
            log.warning("%s: cannot send %s in %s: %s", self.peer, type(primitive).__name__, self.assoc.state, exc)
            return
        if out:
            if self.server.tracing:
                trace.debug("%s -> %s", self.peer, describe(primitive, self.server.config.show_secrets))
            self.transport.write(out)  # type: ignore[union-attr]

    def _flush(self) -> None:
        """Write what the machine produced; mirror ARTIM; close when it says so."""
        if self.closed:
            return
        assoc = self.assoc
        out = assoc.data_to_send()
        if out and self.server.hooks is not None and self.server.hooks.wire is not None:
            out = self.server.hooks.wire(out, self)
        if out:
            if self.server.tracing:
                trace.debug("%s -> %d byte(s) from the state machine (%s)", self.peer, len(out), assoc.state)
            self.transport.write(out)  # type: ignore[union-attr]
        if assoc.artim_running:
            if self.artim_at is None or assoc.artim_starts != self.artim_start:
                # Started, or restarted (AA-1 on a running ARTIM, PS3.8 9.2.3): a full period from now.
                self.artim_start = assoc.artim_starts
                self.artim_at = self.loop.time() + self.server.config.artim_timeout
                self._arm(self.artim_at)
        elif self.artim_at is not None:
            self.artim_at = None
        if assoc.should_close:
            self._close()
            return
        if not self.idle_on and not assoc.artim_running:
            idle_timeout = self.server.config.idle_timeout
            if idle_timeout:
                self.idle_on = True
                self._arm(self.last_pdu + idle_timeout)

    def _arm(self, when: float) -> None:
        """Have the timer fire no later than ``when`` (loop time)."""
        timer = self.timer
        if timer is not None:
            if self.timer_at <= when:
                return  # fires first; _on_timer re-arms for the rest
            timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        """The connection's timer: act on the deadlines that are due, re-arm for the others."""
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        artim_at = self.artim_at
        if artim_at is not None:
            if artim_at - now <= _TIMER_SLACK:
                self._artim_expired()
                return
            self._arm(artim_at)
        if self.idle_on:
            self._idle_check(now)

    def _close(self) -> None:
        self._cancel_timers()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _cancel_timers(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.artim_at = None
        self.idle_on = False

    def _artim_expired(self) -> None:
        """ARTIM expiry, Evt18 (PS3.8 9.1.5): the machine answers; then the transport closes."""
        self.artim_at = None
        if self.assoc.state == "Sta2":
            self.outcome = "ARTIM expired before a whole A-ASSOCIATE-RQ"
        elif not self.outcome.startswith(("released", "rejected", "aborted")):
            self.outcome = f"ARTIM expired in {self.assoc.state}"
        self._handle(self.assoc.timer_expired())
        self._close()

    def _idle_check(self, now: float) -> None:
        """Idle (DIMSE) timeout: no whole PDU for ``idle_timeout`` seconds -> A-ABORT.

        Not watched while a store is in progress or ARTIM runs; ``_flush``
        watches it again afterwards.
        """
        if self.busy or self.assoc.artim_running:
            self.idle_on = False
            return
        timeout = self.server.config.idle_timeout
        deadline = self.last_pdu + timeout
        if deadline - now > _TIMER_SLACK:
            self._arm(deadline)
            return
        self.idle_on = False
        self.outcome = f"idle for {timeout:g}s in {self.assoc.state}: aborted"
        if self.assoc.state != "Sta1":
            self._send(AAbort(C.ABORT_SOURCE_USER, C.ABORT_REASON_NOT_SPECIFIED))
        self._flush()
        self._close()

    # -------------------------------------------------------------- association

    def _on_associate(self, rq: Any) -> None:
        """A-ASSOCIATE indication (PS3.8 9.3.2): answer per policy with AC or RJ."""
        server = self.server
        self.calling, self.called = rq.calling_ae_title, rq.called_ae_title
        self.proposed = len(rq.presentation_contexts)
        result = server.negotiations.negotiate(rq, server.policy, active_associations=server.active)
        reply = result.reply
        if isinstance(reply, AAssociateAC):
            self.negotiated = result
            self.accepted = len(result.accepted)
            self.counted = True
            server.active += 1
            self.outcome = "associated"
            if server.hooks is None and not server.tracing:
                self.echo_lane = server.echo_templates
        else:
            reason = C.RJ_REASON_NAMES.get((reply.source, reply.reason), f"reason {reply.reason}")
            self.outcome = f"rejected ({C.RJ_RESULT_NAMES.get(reply.result, reply.result)}, {reason})"
        self._send(reply)

    # -------------------------------------------------------------- DIMSE

    def _on_message(self, msg: dimse.Message) -> None:
        """P-DATA indication: one whole DIMSE message (PS3.7 9.1)."""
        field = msg.command_field
        services = self._services_for(msg)
        if services is not None:
            services.on_message(msg)
        elif field == dimse.C_ECHO_RQ:
            self._respond(msg, 0x0000)
        elif field == dimse.C_STORE_RQ:
            self._on_store(msg)
        elif field & 0x8000 or field in _NO_RESPONSE:
            log.info("%s: ignored %s (nothing to answer)", self.peer, msg.name)
        else:
            self._respond(msg, STATUS_UNRECOGNIZED_OPERATION)

    def _services_for(self, msg: dimse.Message) -> ServiceDriver | None:
        """The connection's service driver when ``msg`` is for the services, else None.

        The driver is made when the first such message arrives on an accepted
        association, so an association that only echoes or stores pays nothing
        for the services it does not use.
        """
        services = self.services
        if services is None:
            server = self.server
            if self.negotiated is None or not server.handlers or not for_services(msg, server.handlers):
                return None
            services = self.services = ServiceDriver(
                self, server.handlers, server.read_instance, server.move_destinations,
                server.config.ae_titles[0], max(server.config.artim_timeout, 60.0),
            )
        return services if services.handles(msg) else None

    def _respond(self, msg: dimse.Message, status: int, sop_instance_uid: str | None = None) -> None:
        """Answer ``msg`` with its response command and ``status`` (PS3.7 9.3, E.1), no data set."""
        field = (msg.command_field | 0x8000) & 0xFFFF
        message_id = msg.message_id
        sop_class = msg.affected_sop_class_uid or msg.requested_sop_class_uid
        if field == dimse.C_ECHO_RSP and not sop_class:
            sop_class = C.VERIFICATION_SOP_CLASS
        sop_class = sop_class or None
        pdata = None
        if isinstance(message_id, int):
            try:
                raw = response_command(field, message_id, status, sop_class, sop_instance_uid)
            except (UnicodeEncodeError, struct.error):
                raw = None
            if raw is not None:
                pdata = response_pdata(msg.context_id, raw, self.assoc.peer_max_pdu_length)
        if pdata is not None:
            if self.server.tracing:
                trace.debug("%s -> %s (%s)", self.peer, dimse.COMMAND_FIELDS.get(field, hex(field)), f"{status:04X}")
            self._send(pdata)
            if field == dimse.C_ECHO_RSP and self.echo_lane is not None and msg.wire_command is not None:
                self.echo_lane.learn(msg.context_id, msg.wire_command, pdata)  # answer its repeats at once
            return
        self._send(_general_rsp(msg, field, status, sop_class, sop_instance_uid))

    def _instance(self, msg: dimse.Message) -> StoredInstance | int:
        """The instance a C-STORE-RQ command stores on its context, or the status that refuses it."""
        context = self.assoc.accepted_contexts.get(msg.context_id)
        sop_class = msg.affected_sop_class_uid
        sop_instance = msg.affected_sop_instance_uid
        if not sop_instance or not sop_class or context is None:
            return STATUS_PROCESSING_FAILURE
        abstract, transfer_syntax = context
        if sop_class != abstract:
            return STATUS_SOP_CLASS_NOT_SUPPORTED
        return StoredInstance(sop_class, sop_instance, transfer_syntax, b"", self.calling)

    def _open_spool(self, command: dimse.Message) -> Spool | None:
        """The association's data sink: a C-STORE data set goes to its spool as it arrives (see storage)."""
        if self.spool is not None and not self.spool.ended:
            self.spool.discard()  # cannot happen: the assembler completes one data set before the next
        self.spool = None
        if command.command_field != dimse.C_STORE_RQ and self._services_for(command) is not None:
            return HeldDataSet()  # a service's identifier or attribute list: held within SERVICE_DATA_LIMIT
        instance = self._instance(command) if command.command_field == dimse.C_STORE_RQ else 0
        if isinstance(instance, int):
            return Spool()  # answered without its data set (refused, or not a service we offer): only counted
        try:
            self.spool = self.server.storage.open(instance, self.server.config.max_dataset_length)
        except Exception as exc:  # the backend's own bug: the data set is held, and the store answers
            log.error("%s: opening a spool for %s failed: %s", self.peer, instance.sop_instance_uid, exc)
        return self.spool

    def _on_store(self, msg: dimse.Message) -> None:
        """C-STORE (PS3.7 9.1.1, PS3.4 B.2): keep the data set, answer with a status."""
        instance = self._instance(msg)
        spool = msg.data_sink
        if spool is self.spool:
            self.spool = None
        if msg.data_dropped:
            limit = self.server.config.max_dataset_length or 0
            cause = f"data set of {msg.data_length} bytes longer than max_dataset_length ({format_size(limit)})"
            self._store_done(msg, STATUS_OUT_OF_RESOURCES, None, cause)
            return
        if isinstance(instance, int) or msg.data_length is None:
            if spool is not None:
                spool.discard()
            if msg.data_length is None:
                instance = STATUS_PROCESSING_FAILURE
            self._store_done(msg, instance, None, self._refusal(msg))
            return
        storage = self.server.storage
        if spool is not None:
            work, args, blocking = self._commit, (spool,), spool.blocking
        else:
            # Held fragments go as received: a file is written from them, no joined copy.
            work, args, blocking = storage.store, (instance, msg.data_parts), storage.blocking
        if not blocking:
            try:
                status = work(*args)
            except Exception as exc:  # the backend's own bug: answer, never hang
                log.error("%s: storing %s failed: %s", self.peer, instance.sop_instance_uid, exc)
                status = STATUS_PROCESSING_FAILURE
            self._store_done(msg, status, instance)
            return
        self.busy = True
        self.transport.pause_reading()  # type: ignore[union-attr]
        future = self.loop.run_in_executor(self.server._executor, work, *args)
        self.server._in_flight.add(future)
        future.add_done_callback(lambda f: self._stored(f, msg, instance))

    @staticmethod
    def _commit(spool: Spool) -> tuple[int, str | None]:
        status = spool.commit()
        return status, spool.cause

    def _refusal(self, msg: dimse.Message) -> str:
        """Why a C-STORE-RQ is refused before its data set is looked at (PS3.7 9.1.1, PS3.4 B.2.3)."""
        context = self.assoc.accepted_contexts.get(msg.context_id)
        if msg.data_length is None:
            return "the C-STORE-RQ carries no data set (Command Data Set Type)"
        if context is None:
            return f"presentation context {msg.context_id} is not accepted"
        if not msg.affected_sop_class_uid or not msg.affected_sop_instance_uid:
            return "no Affected SOP Class or Instance UID in the command"
        return (f"SOP class {msg.affected_sop_class_uid} is not the abstract syntax {context[0]} "
                f"of context {msg.context_id}")

    def _stored(self, future: asyncio.Future, msg: dimse.Message, instance: StoredInstance) -> None:
        self.server._in_flight.discard(future)
        try:
            status = future.result()
        except Exception as exc:  # the backend's own bug: answer, never hang
            log.error("%s: storing %s failed: %s", self.peer, instance.sop_instance_uid, exc)
            status = STATUS_PROCESSING_FAILURE
        self.busy = False
        self._store_done(msg, status, instance)
        if not self.closed:
            if not self.write_paused:
                self.transport.resume_reading()  # type: ignore[union-attr]
            self._drain()
            self._flush()
        else:
            self._drain()

    def _store_done(
        self, msg: dimse.Message, status: Any, instance: StoredInstance | None, cause: str | None = None
    ) -> None:
        """Answer a C-STORE; a failure is logged in one line with its cause (disk full, memory limit ...).

        ``status`` is a status or a backend's ``(status, cause)``.
        """
        if type(status) is tuple:
            status, cause = status
        if status == 0 and instance is not None:
            self.server._record(instance)
        elif status:
            (log.warning if status >> 12 == 0xA or status == STATUS_PROCESSING_FAILURE else log.info)(
                "%s: C-STORE of %s answered %04X: %s", self.peer, msg.affected_sop_instance_uid, status,
                cause or "the storage backend gave no reason")
        self._respond(msg, status, msg.affected_sop_instance_uid)

    # -------------------------------------------------------------- end

    def _finish(self) -> None:
        server = self.server
        server._connections.discard(self)
        if self.counted:
            server.active -= 1
            self.counted = False
        duration = self.loop.time() - self.started
        if self.outcome == "associated":
            self.outcome = "connection closed during association"
        server.associations += 1
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s%s calling=%r called=%r contexts=%d/%d accepted outcome=%s duration=%.3fs",
                self.peer, " (TLS)" if self.tls else "", self.calling, self.called, self.accepted,
                self.proposed, self.outcome, duration,
            )
        if not server._connections and server._idle_waiter is not None and not server._idle_waiter.done():
            server._idle_waiter.set_result(None)


def _general_rsp(
    msg: dimse.Message, field: int, status: int, sop_class: str | None, sop_instance: str | None
) -> dimse.Message:
    """A response built as a Dataset (fragmented by the core): the path for what the fast one cannot encode."""
    from pydicom import Dataset

    ds = Dataset()
    if sop_class:
        ds.AffectedSOPClassUID = sop_class
    ds.CommandField = field
    if msg.message_id is not None:
        ds.MessageIDBeingRespondedTo = msg.message_id
    ds.CommandDataSetType = dimse.NO_DATA_SET
    ds.Status = status
    if sop_instance:
        ds.AffectedSOPInstanceUID = sop_instance
    return dimse.Message(msg.context_id, ds)


__all__ = ["SCPConnection", "STATUS_SOP_CLASS_NOT_SUPPORTED", "STATUS_UNRECOGNIZED_OPERATION"]
