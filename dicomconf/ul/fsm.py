"""The DICOM Upper Layer state machine: PS3.8 9.2, Table 9-10, as data.

Theory of operation
-------------------
:data:`TRANSITIONS` is Table 9-10 written out cell by cell: the key is
``(state, event)`` with the standard's names (``"Sta6"``, ``"Evt19"``), the
value the action's name (``"AA-8"``).  A cell absent from the dict is a
blank cell of the table, an invalid event in that state; :func:`transition`
raises :class:`LocalProtocolError` for it.

:data:`ACTIONS` gives each action of Tables 9-6 to 9-9 its definition and
the tuple of next states its definition allows.  Most actions have one.
Two definitions give conditional next states and name two: AE-6 (Sta3 if
the A-ASSOCIATE-RQ is acceptable to the service-provider, else an
A-ASSOCIATE-RJ and Sta13) and AR-8 (Sta9 for the association-requestor, else
Sta10).  AA-3 is conditional only in what it indicates (A-ABORT or
A-P-ABORT, from the PDU's source); its next state is always Sta1.  **Choice made
here:** the next state lives only in ``ACTIONS[action].next_states``; the
action function receives that tuple and returns one of its members, never a
state of its own, and :func:`run` checks that it did.

Actions are pure functions ``(Context, next_states) -> Outcome``: they say
what to do (PDUs or DIMSE messages to send, ARTIM start/stop/restart, close
the transport, indications for the user) and touch nothing.  The
:class:`~dicomconf.ul.association.Association` carries the outcome out.

Derived at import, so the table is looked up once per event: each cell's
action function and next states (:func:`run`), and for the cells whose
action never reads its Context (AE-1, AE-5, AR-2, AR-3, AR-5, AR-10, AA-2,
AA-4, AA-5, AA-6) the one outcome it decides, :data:`FIXED_OUTCOMES`.
Outcomes and Contexts are immutable NamedTuples; the outcomes that depend
on the next state alone are built once and shared.

Cells the table leaves blank
----------------------------
For the events that a received PDU causes (Evt3, 4, 6, 10, 12, 13, 16, 19)
the table fills every cell of every state in which a transport connection
exists (Sta2, Sta3, Sta5-Sta13); :data:`CONNECTED_STATES` and a test check
this.  They are blank only in Sta1 and Sta4, where there is no connection
for a PDU to arrive on: that is the driver's misuse, hence also
:class:`LocalProtocolError`.

Edition and readings
--------------------
Followed: PS3.8 2019a, 9.2.1-9.2.3 (Tables 9-1 to 9-10); the text of these
tables has been stable since the 2011 edition (compared with 2014c).  The
123 cells were also compared with pynetdicom 3.0.4's transition table: identical.

- AA-1 "Send A-ABORT PDU (service-user source) and start (or restart if
  already started) ARTIM timer".  When the local user asked for the abort
  (Evt15) the A-ABORT the user gave is sent as given.  When a PDU causes AA-1
  (only in Sta2: Evt3, 4, 10, 12, 13, 19) the standard's wording is
  followed: source 0 (service-user), reason 0 (not significant for source 0,
  PS3.8 9.3.8).
- AA-7 "Send A-ABORT PDU" does not name a source; the provider is the one
  answering (in Sta13 the user is gone), so it sends source 2 with the
  reason of the fault, as AA-8 does.  ARTIM keeps running.
- AA-8 sends source 2; the reason is the :class:`RemoteProtocolError`'s for
  Evt19, else 2 (unexpected-PDU) for a well-formed PDU in the wrong state,
  for which the A-P-ABORT indication carries an error citing the cell.
- AE-6 stops ARTIM; on the reject branch it starts it again ("restart").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

from dicomconf.ul import constants as C
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.events import (
    Aborted,
    AssociateAccepted,
    AssociateRejected,
    AssociateRequested,
    Event,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from dicomconf.ul.pdu import AAbort

# PS3.8 9.2.1, Tables 9-1 to 9-5.
STATES: dict[str, str] = {
    "Sta1": "Idle",
    "Sta2": "Transport connection open (awaiting A-ASSOCIATE-RQ PDU)",
    "Sta3": "Awaiting local A-ASSOCIATE response primitive (from local user)",
    "Sta4": "Awaiting transport connection opening to complete (from local transport service)",
    "Sta5": "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU",
    "Sta6": "Association established and ready for data transfer",
    "Sta7": "Awaiting A-RELEASE-RP PDU",
    "Sta8": "Awaiting local A-RELEASE response primitive (from local user)",
    "Sta9": "Release collision requestor side; awaiting A-RELEASE response (from local user)",
    "Sta10": "Release collision acceptor side; awaiting A-RELEASE-RP PDU",
    "Sta11": "Release collision requestor side; awaiting A-RELEASE-RP PDU",
    "Sta12": "Release collision acceptor side; awaiting A-RELEASE response primitive (from local user)",
    "Sta13": "Awaiting Transport Connection Close Indication (association no longer exists)",
}

# PS3.8 9.2.3, the rows of Table 9-10.
EVENTS: dict[str, str] = {
    "Evt1": "A-ASSOCIATE request (local user)",
    "Evt2": "Transport connect confirmation (local transport service)",
    "Evt3": "A-ASSOCIATE-AC PDU (received on transport connection)",
    "Evt4": "A-ASSOCIATE-RJ PDU (received on transport connection)",
    "Evt5": "Transport connection indication (local transport service)",
    "Evt6": "A-ASSOCIATE-RQ PDU (received on transport connection)",
    "Evt7": "A-ASSOCIATE response primitive (accept)",
    "Evt8": "A-ASSOCIATE response primitive (reject)",
    "Evt9": "P-DATA request primitive",
    "Evt10": "P-DATA-TF PDU",
    "Evt11": "A-RELEASE request primitive",
    "Evt12": "A-RELEASE-RQ PDU (received on open transport connection)",
    "Evt13": "A-RELEASE-RP PDU (received on transport connection)",
    "Evt14": "A-RELEASE response primitive",
    "Evt15": "A-ABORT request primitive",
    "Evt16": "A-ABORT PDU (received on open transport connection)",
    "Evt17": "Transport connection closed indication (local transport service)",
    "Evt18": "ARTIM timer expired (association reject/release timer)",
    "Evt19": "Unrecognized or invalid PDU received",
}

# PS3.8 9.2.3: the event each received PDU type causes; Evt19 is any PDU that fails to decode.
PDU_TYPE_EVENTS: dict[int, str] = {
    C.A_ASSOCIATE_AC: "Evt3",
    C.A_ASSOCIATE_RJ: "Evt4",
    C.A_ASSOCIATE_RQ: "Evt6",
    C.P_DATA_TF: "Evt10",
    C.A_RELEASE_RQ: "Evt12",
    C.A_RELEASE_RP: "Evt13",
    C.A_ABORT: "Evt16",
}
# Events caused by bytes from the peer; every other event is local (user, transport, timer).
PDU_EVENTS = frozenset({*PDU_TYPE_EVENTS.values(), "Evt19"})
# States in which a transport connection exists, so a PDU can arrive.
CONNECTED_STATES = frozenset(s for s in STATES if s not in ("Sta1", "Sta4"))

# PS3.8 9.2.3, Table 9-10.  Blank cells are absent.
TRANSITIONS: dict[tuple[str, str], str] = {
    # Evt1: A-ASSOCIATE request (local user)
    ("Sta1", "Evt1"): "AE-1",
    # Evt2: transport connect confirmation
    ("Sta4", "Evt2"): "AE-2",
    # Evt3: A-ASSOCIATE-AC PDU
    ("Sta2", "Evt3"): "AA-1",
    ("Sta3", "Evt3"): "AA-8",
    ("Sta5", "Evt3"): "AE-3",
    ("Sta6", "Evt3"): "AA-8",
    ("Sta7", "Evt3"): "AA-8",
    ("Sta8", "Evt3"): "AA-8",
    ("Sta9", "Evt3"): "AA-8",
    ("Sta10", "Evt3"): "AA-8",
    ("Sta11", "Evt3"): "AA-8",
    ("Sta12", "Evt3"): "AA-8",
    ("Sta13", "Evt3"): "AA-6",
    # Evt4: A-ASSOCIATE-RJ PDU
    ("Sta2", "Evt4"): "AA-1",
    ("Sta3", "Evt4"): "AA-8",
    ("Sta5", "Evt4"): "AE-4",
    ("Sta6", "Evt4"): "AA-8",
    ("Sta7", "Evt4"): "AA-8",
    ("Sta8", "Evt4"): "AA-8",
    ("Sta9", "Evt4"): "AA-8",
    ("Sta10", "Evt4"): "AA-8",
    ("Sta11", "Evt4"): "AA-8",
    ("Sta12", "Evt4"): "AA-8",
    ("Sta13", "Evt4"): "AA-6",
    # Evt5: transport connection indication
    ("Sta1", "Evt5"): "AE-5",
    # Evt6: A-ASSOCIATE-RQ PDU
    ("Sta2", "Evt6"): "AE-6",
    ("Sta3", "Evt6"): "AA-8",
    ("Sta5", "Evt6"): "AA-8",
    ("Sta6", "Evt6"): "AA-8",
    ("Sta7", "Evt6"): "AA-8",
    ("Sta8", "Evt6"): "AA-8",
    ("Sta9", "Evt6"): "AA-8",
    ("Sta10", "Evt6"): "AA-8",
    ("Sta11", "Evt6"): "AA-8",
    ("Sta12", "Evt6"): "AA-8",
    ("Sta13", "Evt6"): "AA-7",
    # Evt7: A-ASSOCIATE response primitive (accept)
    ("Sta3", "Evt7"): "AE-7",
    # Evt8: A-ASSOCIATE response primitive (reject)
    ("Sta3", "Evt8"): "AE-8",
    # Evt9: P-DATA request primitive
    ("Sta6", "Evt9"): "DT-1",
    ("Sta8", "Evt9"): "AR-7",
    # Evt10: P-DATA-TF PDU
    ("Sta2", "Evt10"): "AA-1",
    ("Sta3", "Evt10"): "AA-8",
    ("Sta5", "Evt10"): "AA-8",
    ("Sta6", "Evt10"): "DT-2",
    ("Sta7", "Evt10"): "AR-6",
    ("Sta8", "Evt10"): "AA-8",
    ("Sta9", "Evt10"): "AA-8",
    ("Sta10", "Evt10"): "AA-8",
    ("Sta11", "Evt10"): "AA-8",
    ("Sta12", "Evt10"): "AA-8",
    ("Sta13", "Evt10"): "AA-6",
    # Evt11: A-RELEASE request primitive
    ("Sta6", "Evt11"): "AR-1",
    # Evt12: A-RELEASE-RQ PDU
    ("Sta2", "Evt12"): "AA-1",
    ("Sta3", "Evt12"): "AA-8",
    ("Sta5", "Evt12"): "AA-8",
    ("Sta6", "Evt12"): "AR-2",
    ("Sta7", "Evt12"): "AR-8",
    ("Sta8", "Evt12"): "AA-8",
    ("Sta9", "Evt12"): "AA-8",
    ("Sta10", "Evt12"): "AA-8",
    ("Sta11", "Evt12"): "AA-8",
    ("Sta12", "Evt12"): "AA-8",
    ("Sta13", "Evt12"): "AA-6",
    # Evt13: A-RELEASE-RP PDU
    ("Sta2", "Evt13"): "AA-1",
    ("Sta3", "Evt13"): "AA-8",
    ("Sta5", "Evt13"): "AA-8",
    ("Sta6", "Evt13"): "AA-8",
    ("Sta7", "Evt13"): "AR-3",
    ("Sta8", "Evt13"): "AA-8",
    ("Sta9", "Evt13"): "AA-8",
    ("Sta10", "Evt13"): "AR-10",
    ("Sta11", "Evt13"): "AR-3",
    ("Sta12", "Evt13"): "AA-8",
    ("Sta13", "Evt13"): "AA-6",
    # Evt14: A-RELEASE response primitive
    ("Sta8", "Evt14"): "AR-4",
    ("Sta9", "Evt14"): "AR-9",
    ("Sta12", "Evt14"): "AR-4",
    # Evt15: A-ABORT request primitive
    ("Sta3", "Evt15"): "AA-1",
    ("Sta4", "Evt15"): "AA-2",
    ("Sta5", "Evt15"): "AA-1",
    ("Sta6", "Evt15"): "AA-1",
    ("Sta7", "Evt15"): "AA-1",
    ("Sta8", "Evt15"): "AA-1",
    ("Sta9", "Evt15"): "AA-1",
    ("Sta10", "Evt15"): "AA-1",
    ("Sta11", "Evt15"): "AA-1",
    ("Sta12", "Evt15"): "AA-1",
    # Evt16: A-ABORT PDU
    ("Sta2", "Evt16"): "AA-2",
    ("Sta3", "Evt16"): "AA-3",
    ("Sta5", "Evt16"): "AA-3",
    ("Sta6", "Evt16"): "AA-3",
    ("Sta7", "Evt16"): "AA-3",
    ("Sta8", "Evt16"): "AA-3",
    ("Sta9", "Evt16"): "AA-3",
    ("Sta10", "Evt16"): "AA-3",
    ("Sta11", "Evt16"): "AA-3",
    ("Sta12", "Evt16"): "AA-3",
    ("Sta13", "Evt16"): "AA-2",
    # Evt17: transport connection closed indication
    ("Sta2", "Evt17"): "AA-5",
    ("Sta3", "Evt17"): "AA-4",
    ("Sta4", "Evt17"): "AA-4",
    ("Sta5", "Evt17"): "AA-4",
    ("Sta6", "Evt17"): "AA-4",
    ("Sta7", "Evt17"): "AA-4",
    ("Sta8", "Evt17"): "AA-4",
    ("Sta9", "Evt17"): "AA-4",
    ("Sta10", "Evt17"): "AA-4",
    ("Sta11", "Evt17"): "AA-4",
    ("Sta12", "Evt17"): "AA-4",
    ("Sta13", "Evt17"): "AR-5",
    # Evt18: ARTIM timer expired
    ("Sta2", "Evt18"): "AA-2",
    ("Sta13", "Evt18"): "AA-2",
    # Evt19: unrecognized or invalid PDU received
    ("Sta2", "Evt19"): "AA-1",
    ("Sta3", "Evt19"): "AA-8",
    ("Sta5", "Evt19"): "AA-8",
    ("Sta6", "Evt19"): "AA-8",
    ("Sta7", "Evt19"): "AA-8",
    ("Sta8", "Evt19"): "AA-8",
    ("Sta9", "Evt19"): "AA-8",
    ("Sta10", "Evt19"): "AA-8",
    ("Sta11", "Evt19"): "AA-8",
    ("Sta12", "Evt19"): "AA-8",
    ("Sta13", "Evt19"): "AA-7",
}

ARTIM_START = "start"
ARTIM_STOP = "stop"
ARTIM_RESTART = "restart"


class Context(NamedTuple):
    """What an action may look at: the event and whatever came with it.

    Immutable like the events, but a NamedTuple rather than a frozen
    dataclass: one is built per event on the P-DATA path, where a frozen
    dataclass costs four times as much to construct.

    ``pdu`` is the PDU received (PDU events) or the PDU the user asked to
    send (Evt1 via AE-2, Evt7, Evt8, Evt11, Evt14, Evt15); ``message`` the
    DIMSE message of a P-DATA request; ``messages`` those a received
    P-DATA-TF completed; ``error`` the fault behind Evt19; ``rejection`` the
    A-ASSOCIATE-RJ the service-provider answers an unacceptable RQ with (AE-6);
    ``state`` the state the event arrived in (for the fault's description).
    """

    event: str
    role: str
    pdu: object | None = None
    message: object | None = None
    messages: tuple = ()
    error: RemoteProtocolError | None = None
    rejection: object | None = None
    state: str = ""


class Outcome(NamedTuple):
    """What an action decided: the driver-visible effects and the next state (one of the table's).

    Immutable, and a NamedTuple for the reason :class:`Context` is: one is
    decided per event, and a frozen dataclass of seven fields costs nearly
    three times as much to construct.  The outcomes that depend on nothing but
    the next state are built once (below) and shared.
    """

    next_state: str
    send: tuple = ()  # PDU objects (encode()) or DIMSE messages (fragmented by the association)
    artim: str | None = None  # ARTIM_START / ARTIM_STOP / ARTIM_RESTART
    close: bool = False  # close the transport connection once the bytes are written
    connect: bool = False  # issue a TRANSPORT CONNECT request (AE-1)
    indications: tuple[Event, ...] = ()
    fault: RemoteProtocolError | None = None  # the peer's violation the action answers (AA-1, AA-7, AA-8)


Action = Callable[[Context, tuple[str, ...]], Outcome]

# The actions of every association (AE-6, AE-7, DT-1, DT-2, AR-4 ...) build their Outcome with
# tuple.__new__ and all seven fields in declaration order (next_state, send, artim, close, connect,
# indications, fault): the same tuple NamedTuple's __new__ makes, without its Python-level frame.
_new = tuple.__new__

# Outcomes are immutable, and so are the fieldless indications: the outcomes that depend on the
# next state alone are built once per state.
_QUIET: dict[str, Outcome] = {state: Outcome(state) for state in STATES}
_ARTIM_STARTED: dict[str, Outcome] = {state: Outcome(state, artim=ARTIM_START) for state in STATES}
_ARTIM_STOPPED: dict[str, Outcome] = {state: Outcome(state, artim=ARTIM_STOP) for state in STATES}
_STOPPED_CLOSED: dict[str, Outcome] = {state: Outcome(state, artim=ARTIM_STOP, close=True) for state in STATES}
_CONNECT: dict[str, Outcome] = {state: Outcome(state, connect=True) for state in STATES}
_RELEASE_INDICATED: dict[str, Outcome] = {state: Outcome(state, indications=(ReleaseRequested(),)) for state in STATES}
_RELEASE_CONFIRMED: dict[str, Outcome] = {state: Outcome(state, indications=(ReleaseConfirmed(),)) for state in STATES}
_RELEASE_CONFIRMED_CLOSED: dict[str, Outcome] = {
    state: Outcome(state, close=True, indications=(ReleaseConfirmed(),)) for state in STATES
}
_TRANSPORT_LOST: dict[str, Outcome] = {
    state: Outcome(state, indications=(Aborted(C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_NOT_SPECIFIED, False),))
    for state in STATES
}


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action of PS3.8 Tables 9-6 to 9-9: its definition, its possible next states, its function."""

    name: str
    definition: str
    next_states: tuple[str, ...]
    function: Action


def _fault(ctx: Context) -> RemoteProtocolError:
    """The peer's fault behind a provider abort: Evt19's error, else a well-formed PDU in the wrong state."""
    if ctx.error is not None:
        return ctx.error
    return RemoteProtocolError(
        f"{EVENTS[ctx.event]} is unexpected in {ctx.state} ({STATES.get(ctx.state, '?')})",
        f"PS3.8 9.2.3 Table 9-10 ({ctx.state}, {ctx.event})",
        reason=C.ABORT_REASON_UNEXPECTED_PDU,
    )


def _ae_1(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return _CONNECT[nxt[0]]


def _ae_2(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return Outcome(nxt[0], send=(ctx.pdu,))


def _ae_3(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return Outcome(nxt[0], indications=(AssociateAccepted(ctx.pdu),))  # type: ignore[arg-type]


def _ae_4(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return Outcome(nxt[0], close=True, indications=(AssociateRejected(ctx.pdu),))  # type: ignore[arg-type]


def _ae_5(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return _ARTIM_STARTED[nxt[0]]


def _ae_6(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    accept_state, reject_state = nxt
    if ctx.rejection is None:
        indication = AssociateRequested(ctx.pdu)  # type: ignore[arg-type]
        return _new(Outcome, (accept_state, (), ARTIM_STOP, False, False, (indication,), None))
    return Outcome(reject_state, send=(ctx.rejection,), artim=ARTIM_RESTART)


def _send_pdu(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    """AE-7, AR-1, AR-9: send the PDU the user gave."""
    return _new(Outcome, (nxt[0], (ctx.pdu,), None, False, False, (), None))


def _send_pdu_start_artim(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    """AE-8, AR-4: send the PDU the user gave and start ARTIM."""
    return _new(Outcome, (nxt[0], (ctx.pdu,), ARTIM_START, False, False, (), None))


def _send_message(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    """DT-1, AR-7: send the P-DATA-TF PDUs of a DIMSE message."""
    return _new(Outcome, (nxt[0], (ctx.message,), None, False, False, (), None))


def _indicate_messages(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    """DT-2, AR-6: P-DATA indication, one per DIMSE message completed."""
    if not ctx.messages:
        return _QUIET[nxt[0]]
    return _new(Outcome, (nxt[0], (), None, False, False, tuple([MessageReceived(m) for m in ctx.messages]), None))


def _ar_2(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return _RELEASE_INDICATED[nxt[0]]


def _ar_3(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return _RELEASE_CONFIRMED_CLOSED[nxt[0]]


def _ar_5(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return _ARTIM_STOPPED[nxt[0]]


def _ar_8(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    requestor_state, acceptor_state = nxt
    state = requestor_state if ctx.role == "requestor" else acceptor_state
    return _RELEASE_INDICATED[state]


def _ar_10(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return _RELEASE_CONFIRMED[nxt[0]]


def _aa_1(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    pdu = ctx.pdu if ctx.event == "Evt15" and isinstance(ctx.pdu, AAbort) else AAbort(C.ABORT_SOURCE_USER)
    return Outcome(nxt[0], send=(pdu,), artim=ARTIM_RESTART, fault=ctx.error)


def _aa_2(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return _STOPPED_CLOSED[nxt[0]]


def _aa_3(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    pdu: AAbort = ctx.pdu  # type: ignore[assignment]
    return Outcome(nxt[0], close=True, indications=(Aborted(pdu.source, pdu.reason, True),))


def _aa_4(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return _TRANSPORT_LOST[nxt[0]]


def _aa_5(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return _ARTIM_STOPPED[nxt[0]]


def _aa_6(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    return _QUIET[nxt[0]]


def _aa_7(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    fault = _fault(ctx)
    return Outcome(nxt[0], send=(AAbort(C.ABORT_SOURCE_PROVIDER, fault.reason),), fault=fault)


def _aa_8(ctx: Context, nxt: tuple[str, ...]) -> Outcome:
    fault = _fault(ctx)
    return Outcome(
        nxt[0],
        send=(AAbort(C.ABORT_SOURCE_PROVIDER, fault.reason),),
        artim=ARTIM_START,
        indications=(Aborted(C.ABORT_SOURCE_PROVIDER, fault.reason, False, fault),),
        fault=fault,
    )


def _spec(name: str, definition: str, next_states: tuple[str, ...], function: Action) -> tuple[str, ActionSpec]:
    return name, ActionSpec(name, definition, next_states, function)


# PS3.8 9.2.2, Tables 9-6 (AE), 9-7 (DT), 9-8 (AR), 9-9 (AA).
ACTIONS: dict[str, ActionSpec] = dict(
    [
        _spec("AE-1", "Issue TRANSPORT CONNECT request primitive to local transport service", ("Sta4",), _ae_1),
        _spec("AE-2", "Send A-ASSOCIATE-RQ PDU", ("Sta5",), _ae_2),
        _spec("AE-3", "Issue A-ASSOCIATE confirmation (accept) primitive", ("Sta6",), _ae_3),
        _spec("AE-4", "Issue A-ASSOCIATE confirmation (reject) primitive and close transport connection",
              ("Sta1",), _ae_4),
        _spec("AE-5", "Issue transport connection response primitive; start ARTIM timer", ("Sta2",), _ae_5),
        _spec("AE-6", "Stop ARTIM timer; if the A-ASSOCIATE-RQ is acceptable by the service-provider issue "
              "A-ASSOCIATE indication (Sta3), otherwise send A-ASSOCIATE-RJ PDU and start ARTIM (Sta13)",
              ("Sta3", "Sta13"), _ae_6),
        _spec("AE-7", "Send A-ASSOCIATE-AC PDU", ("Sta6",), _send_pdu),
        _spec("AE-8", "Send A-ASSOCIATE-RJ PDU and start ARTIM timer", ("Sta13",), _send_pdu_start_artim),
        _spec("DT-1", "Send P-DATA-TF PDU", ("Sta6",), _send_message),
        _spec("DT-2", "Send P-DATA indication primitive", ("Sta6",), _indicate_messages),
        _spec("AR-1", "Send A-RELEASE-RQ PDU", ("Sta7",), _send_pdu),
        _spec("AR-2", "Issue A-RELEASE indication primitive", ("Sta8",), _ar_2),
        _spec("AR-3", "Issue A-RELEASE confirmation primitive, and close transport connection", ("Sta1",), _ar_3),
        _spec("AR-4", "Issue A-RELEASE-RP PDU and start ARTIM timer", ("Sta13",), _send_pdu_start_artim),
        _spec("AR-5", "Stop ARTIM timer", ("Sta1",), _ar_5),
        _spec("AR-6", "Issue P-DATA indication", ("Sta7",), _indicate_messages),
        _spec("AR-7", "Issue P-DATA-TF PDU", ("Sta8",), _send_message),
        _spec("AR-8", "Issue A-RELEASE indication (release collision): association-requestor Sta9, "
              "otherwise Sta10", ("Sta9", "Sta10"), _ar_8),
        _spec("AR-9", "Send A-RELEASE-RP PDU", ("Sta11",), _send_pdu),
        _spec("AR-10", "Issue A-RELEASE confirmation primitive", ("Sta12",), _ar_10),
        _spec("AA-1", "Send A-ABORT PDU (service-user source) and start (or restart if already started) "
              "ARTIM timer", ("Sta13",), _aa_1),
        _spec("AA-2", "Stop ARTIM timer if running; close transport connection", ("Sta1",), _aa_2),
        _spec("AA-3", "If service-user initiated abort issue A-ABORT indication, otherwise A-P-ABORT "
              "indication; close transport connection", ("Sta1",), _aa_3),
        _spec("AA-4", "Issue A-P-ABORT indication primitive", ("Sta1",), _aa_4),
        _spec("AA-5", "Stop ARTIM timer", ("Sta1",), _aa_5),
        _spec("AA-6", "Ignore PDU", ("Sta13",), _aa_6),
        _spec("AA-7", "Send A-ABORT PDU", ("Sta13",), _aa_7),
        _spec("AA-8", "Send A-ABORT PDU (service-provider source), issue an A-P-ABORT indication, and start "
              "ARTIM timer", ("Sta13",), _aa_8),
    ]
)

# Per cell of Table 9-10, derived at import: (action name, action function, next states).
_CELLS: dict[tuple[str, str], tuple[str, Action, tuple[str, ...]]] = {
    cell: (name, ACTIONS[name].function, ACTIONS[name].next_states) for cell, name in TRANSITIONS.items()
}


def _context_free_outcome(spec: ActionSpec) -> Outcome | None:
    """The outcome of an action that never looks at its Context (AE-5, AR-2, AR-5, AA-2 ...), else None.

    Run with no context at all: an action that reads one fails on the first
    read (actions are pure, so one that completes depends on its next states
    alone).
    """
    try:
        return spec.function(None, spec.next_states)  # type: ignore[arg-type]
    except AttributeError:
        return None


# Cells whose action ignores the context, with the outcome it always decides, computed once at import:
# a driver may take these instead of building a Context and running the action (PS3.8 9.2.3
# Table 9-10, Tables 9-6 to 9-9).  A test checks them against run() with real contexts.
FIXED_OUTCOMES: dict[tuple[str, str], tuple[str, Outcome]] = {
    cell: (name, outcome)
    for cell, name in TRANSITIONS.items()
    if (outcome := _context_free_outcome(ACTIONS[name])) is not None
}


def transition(state: str, event: str) -> str:
    """The action of Table 9-10 for ``(state, event)``; a blank cell raises :class:`LocalProtocolError`."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        if state not in STATES or event not in EVENTS:
            raise LocalProtocolError(f"no state {state!r} or event {event!r} in PS3.8 Table 9-10") from None
        raise LocalProtocolError(
            f"{event} ({EVENTS[event]}) is invalid in {state} ({STATES[state]}): "
            "blank cell of PS3.8 9.2.3 Table 9-10"
        ) from None


def run(state: str, event: str, ctx: Context) -> tuple[str, Outcome]:
    """Look ``(state, event)`` up and perform its action; return (action name, outcome)."""
    cell = _CELLS.get((state, event))
    if cell is None:
        transition(state, event)  # raises: a blank cell, or no such state or event
    name, function, next_states = cell  # type: ignore[misc]
    outcome = function(ctx, next_states)
    if outcome.next_state not in next_states:  # an action may only pick among the table's states
        raise AssertionError(f"{name} chose {outcome.next_state}, not one of {next_states}")
    return name, outcome
