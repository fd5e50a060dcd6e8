"""A sans-IO DICOM association for either role (PS3.8 9.1, 9.2).

Theory of operation
-------------------
:class:`Association` is one end of one association on one transport
connection.  It owns no socket and no clock.  The driver calls:

- ``connection_made()`` when the transport connection is up (Evt5 for the
  acceptor; Evt2 for the requestor, after ``send(AAssociateRQ)``),
- ``receive_data(bytes)`` with whatever arrived, in any chunking,
- ``send(primitive)`` for each request or response of the local user,
- ``timer_expired()`` when ARTIM runs out (Evt18), ``connection_lost()``
  when the transport closes (Evt17),

and after each call writes ``data_to_send()`` (``send`` returns its bytes
directly), keeps an ARTIM timer running exactly while ``artim_running``
(restarting it when ``artim_starts`` changes: AA-1 restarts a running ARTIM),
closes the transport once ``should_close`` is set, and acts on the events
returned (:mod:`dicomconf.ul.events`).

Inbound bytes are framed by :class:`~dicomconf.ul.framing.PDUReader` and
decoded by :func:`~dicomconf.ul.pdu.decode_pdu`; each PDU becomes its event
(Evt3-Evt16), and any :class:`RemoteProtocolError` from framing, decoding or
DIMSE assembly becomes Evt19 carrying that error, so the A-ABORT that follows
names the fault (PS3.8 9.3.8).  Each event is looked up in PS3.8 Table 9-10
(:mod:`dicomconf.ul.fsm`); the action's outcome is carried out here.  A
cell whose action never reads its context takes the outcome fsm decided for
it at import (``fsm.FIXED_OUTCOMES``).  One more shortcut, derived from the
table at import: a P-DATA-TF that completes no DIMSE message in a state
whose Evt10 action is a P-DATA indication (DT-2, AR-6) only moves to that
action's one next state, without building the action's context and outcome
(the bulk of a C-STORE is such PDUs).  A driver may first offer a chunk
to :meth:`Association.answer_repeated_echo`: a C-ECHO-RQ of a form answered
before gets its answer from a template, the machine moving by the same two
cells of the table (:mod:`dicomconf.ul.echo_lane`).
Nothing escapes ``receive_data`` but events: a peer's violation ends as an
A-ABORT and the close of the connection, as the table says.

Two peer violations are caught here rather than in the codec (both answered
with A-ABORT, source 2, reason 6 invalid-PDU-parameter value, PS3.8 9.3.8):

- a P-DATA-TF whose variable field exceeds the Maximum Length we announced
  (PS3.8 D.1.1: the announced value limits the variable field of every
  P-DATA-TF the peer sends; 0 means unlimited);
- a PDV on a presentation context that was not accepted (PS3.8 9.3.5.1, 7.6.1;
  checked by :class:`~dicomconf.ul.dimse.MessageAssembler`).

A PDU length above any sane size is refused at its six-byte header, before
the body is buffered: the reader's limit is the larger of our Maximum Length
plus the header and :data:`ASSOCIATE_PDU_BOUND` (1 MiB, room for any
A-ASSOCIATE-RQ/AC).  The rest of such a stream cannot be re-framed and is
discarded.

After the association has closed the transport, or the transport was lost,
late calls to ``receive_data`` / ``connection_lost`` are ignored (they
return no events); on an association that never had a connection they raise
:class:`LocalProtocolError`, as do blank cells of the table for local events.
An Association serves one transport connection: once it is over (back in
Sta1), ``connection_made`` and an A-ASSOCIATE request raise
:class:`LocalProtocolError`, since its framer, flags and negotiated values
belong to the connection that ended; a new connection takes a new Association.
"""

from __future__ import annotations

from typing import Callable

from dicomconf.ul import constants as C
from dicomconf.ul import fsm
from dicomconf.ul.dimse import Message, MessageAssembler, fragment
from dicomconf.ul.echo_lane import ECHO_STEPS, EchoTemplates
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.events import (
    AssociateAccepted,
    AssociateRequested,
    ConnectionClosed,
    Event,
    PDUReceived,
)
from dicomconf.ul.framing import FramingError, PDUReader
from dicomconf.ul.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    decode_pdu,
)

ROLES = ("requestor", "acceptor")
DEFAULT_MAX_PDU_LENGTH = 16382
# Largest whole PDU accepted before the association fixes a smaller or larger bound.
ASSOCIATE_PDU_BOUND = 1 << 20

# Table 9-10 events for the local user's primitives, by the class the user passes to send().
_PRIMITIVE_EVENTS: dict[type, str] = {
    AAssociateRQ: "Evt1",
    AAssociateAC: "Evt7",
    AAssociateRJ: "Evt8",
    Message: "Evt9",
    PDataTF: "Evt9",
    AReleaseRQ: "Evt11",
    AReleaseRP: "Evt14",
    AAbort: "Evt15",
}
# Actions whose indication carries the A-ASSOCIATE PDU the association must remember (Table 9-6).
_NOTED = frozenset({"AE-3", "AE-6"})
# Actions that issue a P-DATA indication, so the PDVs must be assembled first (Tables 9-7, 9-8).
_PDATA_INDICATIONS = frozenset({"DT-2", "AR-6"})

# States where Table 9-10 answers Evt10 with a P-DATA indication of a single next state: (action, next state).
# A P-DATA-TF there that completes no DIMSE message has no effect but that state (Tables 9-7, 9-8).
_QUIET_PDATA: dict[str, tuple[str, str]] = {
    state: (action, fsm.ACTIONS[action].next_states[0])
    for (state, event), action in fsm.TRANSITIONS.items()
    if event == "Evt10" and action in _PDATA_INDICATIONS and len(fsm.ACTIONS[action].next_states) == 1
}

# States where Evt10 issues a P-DATA indication, so the PDVs are assembled (from the table).
_PDATA_STATES = frozenset(
    state for (state, event), action in fsm.TRANSITIONS.items() if event == "Evt10" and action in _PDATA_INDICATIONS
)


def _oversized(length: int, limit: int) -> RemoteProtocolError:
    """A P-DATA-TF longer than the Maximum Length we announced (PS3.8 D.1.1, 9.3.5)."""
    return RemoteProtocolError(
        f"P-DATA-TF variable field of {length} bytes exceeds the Maximum Length {limit} we announced",
        "PS3.8 D.1.1, 9.3.5",
        reason=C.ABORT_REASON_INVALID_PARAMETER_VALUE,
        offset=2,
    )


_OVER = "this association is over (Sta1): a new transport connection takes a new Association (PS3.8 9.2)"
_new_tuple = tuple.__new__
_FIXED_OUTCOMES = fsm.FIXED_OUTCOMES
_CONNECTION_CLOSED = ConnectionClosed()  # fieldless and frozen: one instance serves every association

ProviderCheck = Callable[[AAssociateRQ], "AAssociateRJ | None"]


class Association:
    """One association, requestor or acceptor, driven by bytes and primitives (PS3.8 9.2).

    ``max_pdu_length`` is the Maximum Length (PS3.8 D.1.1) this end
    announces.  ``max_incoming_pdu`` is the limit enforced on the variable
    field of the peer's P-DATA-TF PDUs; by default it follows the Maximum
    Length actually sent in our A-ASSOCIATE-RQ/AC (``max_pdu_length`` until
    then), 0 meaning unlimited.  ``provider_check`` (optional) is the
    service-provider's test in AE-6: given the A-ASSOCIATE-RQ it returns an
    A-ASSOCIATE-RJ to send without asking the user, or None to indicate it.
    ``data_sink`` and ``max_data_length`` are handed to the association's
    :class:`~dicomconf.ul.dimse.MessageAssembler`: where received data sets
    go instead of memory, and the bound on one that is held.  Once the
    association is over (back in Sta1) the sink and the assembler are
    dropped (``data_sink`` is None): a sink that is a bound method of the
    driver would otherwise make every finished association a reference
    cycle, left to the garbage collector.
    """

    __slots__ = (
        "role", "max_pdu_length", "_explicit_incoming", "max_incoming_pdu", "provider_check", "data_sink",
        "max_data_length", "state", "artim_running", "artim_starts", "should_close", "peer_max_pdu_length",
        "accepted_contexts", "rq", "ac", "error", "last_transition", "_outbox", "_reader", "_assembler",
        "_pending_rq", "_connected", "_finished", "_stream_broken", "_announced",
    )

    def __init__(
        self,
        role: str,
        *,
        max_pdu_length: int = DEFAULT_MAX_PDU_LENGTH,
        max_incoming_pdu: int | None = None,
        provider_check: ProviderCheck | None = None,
        data_sink: Callable[[Message], object] | None = None,
        max_data_length: int | None = None,
    ) -> None:
        if role not in ROLES:
            raise LocalProtocolError(f"role must be one of {ROLES}, not {role!r}")
        if max_pdu_length < 0 or (max_incoming_pdu is not None and max_incoming_pdu < 0):
            raise LocalProtocolError("maximum PDU lengths are unsigned (PS3.8 D.1.1)")
        self.role = role
        self.max_pdu_length = max_pdu_length
        self._explicit_incoming = max_incoming_pdu
        self.max_incoming_pdu = max_pdu_length if max_incoming_pdu is None else max_incoming_pdu
        self.provider_check = provider_check
        self.data_sink = data_sink
        self.max_data_length = max_data_length
        self.state = "Sta1"
        self.artim_running = False
        self.artim_starts = 0  # counts starts and restarts (AA-1, AE-6 reject): a driver restarts its timer on change
        self.should_close = False
        self.peer_max_pdu_length = 0
        self.accepted_contexts: dict[int, tuple[str, str]] = {}
        self.rq: AAssociateRQ | None = None
        self.ac: AAssociateAC | None = None
        self.error: RemoteProtocolError | None = None  # the last peer violation seen
        self.last_transition: tuple[str, str, str, str] | None = None  # (state, event, action, next state)
        self._outbox: list[bytes] = []  # encoded PDUs not yet taken, joined once when drained
        self._reader = PDUReader(self._reader_limit())
        self._assembler: MessageAssembler | None = None
        self._pending_rq: AAssociateRQ | None = None
        self._connected = False  # the requestor's transport came up before its A-ASSOCIATE-RQ
        self._finished = False  # the transport is closed, or closed by us
        self._stream_broken = False  # framing failed; the rest of the stream is noise
        self._announced = False  # our A-ASSOCIATE-RQ/AC (and its Maximum Length) has been sent

    def __repr__(self) -> str:
        return f"<Association {self.role} {self.state}>"

    # ------------------------------------------------------------------
    # Driver entry points

    def connection_made(self) -> list[Event]:
        """The transport connection is up: Evt5 (acceptor, AE-5) or Evt2 (requestor, AE-2)."""
        if self._finished:
            raise LocalProtocolError(_OVER)
        if self.role == "acceptor":
            return self._fire("Evt5")
        if self.state == "Sta1" and not self._finished and not self._connected:
            self._connected = True  # Evt2 is delivered once AE-1 has asked for the connection
            return []
        return self._fire("Evt2", pdu=self._pending_rq)

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Frame, decode and act on bytes from the peer; return the events they cause.

        Decoded PDUs (in :class:`PDUReceived`) may be views into ``data``:
        pass ``bytes``, or do not reuse a mutable buffer while holding them.
        """
        if self.state not in fsm.CONNECTED_STATES:
            if self._finished:
                return []
            raise LocalProtocolError(f"bytes received in {self.state}, where no transport connection exists")
        events: list[Event] = []
        if self._stream_broken:
            return events
        framing_error: RemoteProtocolError | None = None
        try:
            pdus = self._reader.feed(data)
        except FramingError as exc:
            pdus, framing_error = exc.completed, exc
        for raw in pdus:
            if self.state not in fsm.CONNECTED_STATES:
                break
            self._receive_pdu(raw, events)
        if framing_error is not None and self.state in fsm.CONNECTED_STATES:
            self._stream_broken = True
            events += self._fire("Evt19", error=framing_error)
        return events

    def send(self, primitive: object) -> bytes:
        """Ask for a local primitive; return the bytes to write.  Raises LocalProtocolError if Table 9-10 forbids it.

        The bytes returned include any not yet taken with ``data_to_send()``,
        in order.  A send issues no indication; the one send that ends the
        association at once (A-ABORT in Sta4, AA-2) sets ``should_close``.
        """
        event = _PRIMITIVE_EVENTS.get(type(primitive)) or next(
            (e for cls, e in _PRIMITIVE_EVENTS.items() if isinstance(primitive, cls)), None
        )
        if event is None:
            raise LocalProtocolError(f"{type(primitive).__name__} is not a primitive an association sends")
        if event == "Evt1":
            return self._request_association(primitive)  # type: ignore[arg-type]
        if (self.state, event) not in fsm.TRANSITIONS:
            fsm.transition(self.state, event)  # raises: a blank cell of Table 9-10
        if event == "Evt9":
            self._check_outgoing_data(primitive)
            self._fire("Evt9", message=primitive)
        else:
            self._fire(event, pdu=primitive)
        return self.data_to_send()

    def answer_repeated_echo(self, data: bytes, templates: EchoTemplates) -> bytes | None:
        """``data`` as one C-ECHO-RQ of a learned form, answered: the answer's bytes, or None (nothing done).

        The fast lane of :mod:`dicomconf.ul.echo_lane`: taken only when
        ``data`` is exactly one P-DATA-TF that a template recognises, the
        association is between messages (nothing buffered, no message half
        assembled), the context is accepted and both PDUs fit the Maximum
        Lengths (PS3.8 D.1.1).  The machine then moves as Table 9-10 says for
        Evt10 and Evt9 (DT-2, DT-1 in Sta6), as on the general path; with
        None the caller passes ``data`` to :meth:`receive_data`.
        """
        steps = ECHO_STEPS
        if steps is None or self.state != steps[0][2] or self._reader.buffered:
            return None
        assembler = self._assembler
        if assembler is None or assembler.in_progress:
            return None
        hit = templates.match(data)
        if hit is None:
            return None
        context_id, answer = hit
        limit = self.max_incoming_pdu
        peer_limit = self.peer_max_pdu_length
        if (context_id not in self.accepted_contexts or (limit and len(data) - C.PDU_HEADER_LENGTH > limit)
                or (peer_limit and len(answer) - C.PDU_HEADER_LENGTH > peer_limit)):
            return None
        state = self.state
        for event, action, next_state in steps:
            self.last_transition = (state, event, action, next_state)
            self.state = state = next_state
        templates.hits += 1
        return answer

    def timer_expired(self) -> list[Event]:
        """ARTIM expired (Evt18)."""
        return self._fire("Evt18")

    def connection_lost(self) -> list[Event]:
        """The transport connection closed (Evt17)."""
        if self._finished:
            return []
        if self.state == "Sta1" and self._connected:
            self._connected = False
            return []
        return self._fire("Evt17")

    def data_to_send(self) -> bytes:
        """The bytes produced by receive_data / timer_expired / connection_made, drained."""
        outbox = self._outbox
        if not outbox:
            return b""
        out = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        outbox.clear()
        return out

    # ------------------------------------------------------------------
    # Inbound

    def _receive_pdu(self, raw: bytes | memoryview, events: list[Event]) -> None:
        try:
            pdu = decode_pdu(raw)
        except RemoteProtocolError as exc:
            events += self._fire("Evt19", error=exc)
            return
        events.append(PDUReceived(pdu))
        event = fsm.PDU_TYPE_EVENTS[pdu.pdu_type]
        if event != "Evt10":
            events += self._fire(event, pdu=pdu)
            return
        length = len(raw) - C.PDU_HEADER_LENGTH
        limit = self.max_incoming_pdu
        # The limit is a parameter of the association: enforced from our A-ASSOCIATE-RQ/AC until it no
        # longer exists (Sta13, where every P-DATA-TF is ignored, AA-6).
        if limit and length > limit and self._announced and self.state != "Sta13":
            events += self._fire("Evt19", error=_oversized(length, limit))
            return
        messages: tuple = ()
        if self.state in _PDATA_STATES and self._assembler is not None:
            try:
                messages = self._assembler.add_pdvs(pdu.pdvs)  # type: ignore[attr-defined]
            except RemoteProtocolError as exc:
                events += self._fire("Evt19", error=exc)
                return
        if not messages:
            state = self.state
            quiet = _QUIET_PDATA.get(state)
            if quiet is not None:
                # A P-DATA-TF that completes no message: the table's DT-2 / AR-6 indicates nothing
                # and only moves to its one next state, so the action is not run through fsm.run.
                self.state = quiet[1]
                self.last_transition = (state, "Evt10", quiet[0], quiet[1])
                return
        events += self._fire("Evt10", pdu=pdu, messages=messages)

    # ------------------------------------------------------------------
    # Outbound

    def _request_association(self, rq: AAssociateRQ) -> bytes:
        if self.role != "requestor":
            raise LocalProtocolError("only the association-requestor sends an A-ASSOCIATE-RQ (PS3.8 7.1)")
        if self._finished:
            raise LocalProtocolError(_OVER)
        self._fire("Evt1", pdu=rq)
        self._pending_rq = rq
        if self._connected:
            self._fire("Evt2", pdu=rq)
        return self.data_to_send()

    def _check_outgoing_data(self, primitive: object) -> None:
        contexts = [primitive.context_id] if isinstance(primitive, Message) else [
            pdv.context_id for pdv in primitive.pdvs  # type: ignore[attr-defined]
        ]
        for ctx in contexts:
            if ctx not in self.accepted_contexts:
                raise LocalProtocolError(
                    f"presentation context {ctx} was not accepted; accepted: {sorted(self.accepted_contexts)} "
                    "(PS3.8 7.6.1)"
                )

    # ------------------------------------------------------------------
    # The state machine

    def _fire(
        self,
        event: str,
        pdu: object | None = None,
        message: object | None = None,
        messages: tuple = (),
        error: RemoteProtocolError | None = None,
    ) -> list[Event]:
        state = self.state
        rejection = None
        if event == "Evt6" and self.provider_check is not None and fsm.TRANSITIONS.get((state, event)) == "AE-6":
            rejection = self.provider_check(pdu)  # type: ignore[arg-type]
        fixed = _FIXED_OUTCOMES.get((state, event))
        if fixed is not None:
            action, outcome = fixed  # an action that ignores its context, decided once at import
        else:
            # The Context's eight fields in declaration order, built as fsm's hot actions build their Outcome.
            ctx = _new_tuple(fsm.Context, (event, self.role, pdu, message, messages, error, rejection, state))
            action, outcome = fsm.run(state, event, ctx)
        next_state, send, artim, close, _connect, indications, fault = outcome
        for item in send:
            self._emit(item)
        if artim is not None:
            self.artim_running = artim != fsm.ARTIM_STOP
            if self.artim_running:
                self.artim_starts += 1
        if close:
            self.should_close = True
        if fault is not None:
            self.error = fault
        events = list(indications)
        if action in _NOTED:
            for ev in events:
                self._note_indication(ev)
        self.state = next_state
        self.last_transition = (state, event, action, next_state)
        if next_state == "Sta1" and state != "Sta1":
            self._finished = True
            # Nothing more is assembled: let go of the driver's sink, which is often a bound method of the
            # driver that holds this association, so a finished association is no reference cycle.
            self.data_sink = self._assembler = None
            events.append(_CONNECTION_CLOSED)
        return events

    def _emit(self, item: object) -> None:
        if isinstance(item, Message):
            self._outbox += fragment(item, self.peer_max_pdu_length)
            return
        self._outbox.append(item.encode())  # type: ignore[attr-defined]
        if isinstance(item, AAssociateRQ):
            self.rq = item
            self._announce(item)
        elif isinstance(item, AAssociateAC):
            self.ac = item
            self._announce(item)
            self._establish()

    def _note_indication(self, ev: Event) -> None:
        if isinstance(ev, AssociateRequested):
            self.rq = ev.pdu
            self.peer_max_pdu_length = ev.pdu.user_information.maximum_length or 0
        elif isinstance(ev, AssociateAccepted):
            self.ac = ev.pdu
            self.peer_max_pdu_length = ev.pdu.user_information.maximum_length or 0
            self._establish()

    def _announce(self, pdu: AAssociateRQ | AAssociateAC) -> None:
        """Our Maximum Length is now on the wire: enforce it (PS3.8 D.1.1)."""
        self._announced = True
        announced = pdu.user_information.maximum_length
        if announced is not None:
            self.max_pdu_length = announced
            if self._explicit_incoming is None:
                self.max_incoming_pdu = announced
        self._reader.max_pdu_length = self._reader_limit()

    def _reader_limit(self) -> int | None:
        if self.max_incoming_pdu == 0:
            return None
        limit = self.max_incoming_pdu + C.PDU_HEADER_LENGTH
        return limit if limit > ASSOCIATE_PDU_BOUND else ASSOCIATE_PDU_BOUND

    def _establish(self) -> None:
        """Record the accepted presentation contexts (PS3.8 9.3.3.2) and start assembling DIMSE messages."""
        abstract = {pc.context_id: pc.abstract_syntax for pc in self.rq.presentation_contexts} if self.rq else {}
        self.accepted_contexts = {
            pc.context_id: (abstract[pc.context_id], pc.transfer_syntax)
            for pc in self.ac.presentation_contexts  # type: ignore[union-attr]
            if pc.result == C.PC_ACCEPTANCE and pc.context_id in abstract and pc.transfer_syntax is not None
        }
        self._assembler = MessageAssembler(
            frozenset(self.accepted_contexts), data_sink=self.data_sink, max_data_length=self.max_data_length
        )
