"""The requestor's side of the DIMSE services beyond echo and store (PS3.7 9.1.2-9.1.4, 9.3.2-9.3.4, 10).

Theory of operation
-------------------
Each function runs one operation over a connected
:class:`~dicomconf.scu.client.SCU`, on the presentation context it accepted
for the operation's SOP class, through the SCU's ``send_message`` and
``receive_message``; it opens no socket of its own.

* :func:`find` (C-FIND, PS3.7 9.1.2): every pending identifier and the final
  status; ``cancel_after=N`` sends a C-CANCEL-RQ (PS3.7 9.3.2.3) after the
  N-th pending response and then waits for the final one.
* :func:`move` (C-MOVE, PS3.7 9.1.4) and :func:`get` (C-GET, 9.1.3): the
  pending and final responses with their sub-operation counts and the Failed
  SOP Instance UID List (PS3.4 C.4.2.1.3); a C-GET also serves the C-STORE-RQs
  that come on the same association (the SCU took the SCP role for their
  classes, PS3.7 D.3.3.4): each is answered 0000 and its data set kept as the
  bytes received with their transfer syntax; ``cancel_after_stores=N`` sends
  the C-CANCEL-RQ before answering the N-th of them.
* :func:`n_action`, :func:`n_create`, :func:`n_set` (PS3.7 10.1.4, 10.1.5,
  10.1.3) and :func:`wait_event_report`, which waits for an
  N-EVENT-REPORT-RQ (PS3.7 10.1.1) and answers its N-EVENT-REPORT-RSP.

A request the peer sends while an operation waits for its own response (a
Storage Commitment N-EVENT-REPORT-RQ before the N-ACTION-RSP, PS3.4 J.3.3)
is kept in ``SCU.held`` for :func:`wait_event_report`.

Against a hostile peer nothing waits or grows without end: every operation
has one deadline for the whole exchange (``within``), however many pending
responses keep coming; at most ``max_responses`` responses and
``max_arrivals`` C-GET data sets are kept (the rest are counted; a C-STORE
past the bound is answered A700, out of resources, PS3.4 B.2.3).  An
operation that does not end in time raises :class:`Unfinished`, which
carries what came so far.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from pydicom import Dataset
from pydicom.multival import MultiValue

from dicomconf.scu.client import SCU, UnexpectedReply, encode_dataset, resolve_uid
from dicomconf.scu.connection import Silence
from dicomconf.ul import dimse
from dicomconf.ul.items import RoleSelection

PENDING = frozenset({0xFF00, 0xFF01})  # PS3.4 C.4.1.1.4, C.4.2.1.5: more responses follow
STATUS_OUT_OF_RESOURCES = 0xA700
DEFAULT_MAX_RESPONSES = 10_000
DEFAULT_MAX_ARRIVALS = 1_000
DEFAULT_MAX_HELD = 64
PRIORITY_MEDIUM = 0x0000
COUNT_KEYWORDS = {  # the sub-operation counts of a C-MOVE/C-GET response (PS3.7 9.3.3.2, 9.3.4.2)
    "remaining": "NumberOfRemainingSuboperations",
    "completed": "NumberOfCompletedSuboperations",
    "failed": "NumberOfFailedSuboperations",
    "warning": "NumberOfWarningSuboperations",
}


class Unfinished(Exception):
    """The operation did not end within its deadline; ``partial`` is what came so far."""

    def __init__(self, message: str, partial: Any) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass
class Arrival:
    """A data set a C-STORE sub-operation delivered (PS3.4 C.4.3.2), as its bytes came."""

    sop_class: str
    sop_instance: str
    data: bytes
    transfer_syntax: str
    move_originator: str = ""


@dataclass
class Outcome:
    """What one operation received: the final status (None before it came) and the responses kept."""

    status: int | None = None
    responses: list[dimse.Message] = field(default_factory=list)
    pending: int = 0  # pending responses received (all of them, kept or not)
    dropped: int = 0  # responses received past ``max_responses``, not kept
    cancelled: bool = False  # a C-CANCEL-RQ was sent
    final: dimse.Message | None = None
    transfer_syntax: str = ""

    @property
    def error_comment(self) -> str:
        value = self.final.command.get("ErrorComment") if self.final is not None else None
        return str(value) if value is not None else ""


@dataclass
class FindOutcome(Outcome):
    """C-FIND: the identifiers of the pending responses, in order (PS3.4 C.4.1.2.2)."""

    matches: list[Dataset] = field(default_factory=list)


@dataclass
class RetrieveOutcome(Outcome):
    """C-MOVE/C-GET: the counts of the final response (completed, failed, warning: else the last
    pending's; remaining: the final's only), the Failed SOP Instance UID List, the C-GET arrivals."""

    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    failed_uids: list[str] = field(default_factory=list)
    arrivals: list[Arrival] = field(default_factory=list)
    refused: int = 0  # C-STOREs answered A700 past ``max_arrivals``
    off_role: list[str] = field(default_factory=list)  # C-GET: SOP classes stored to us without the SCP role granted


@dataclass
class NOutcome(Outcome):
    """An N-service response: its data set (decoded) and Affected SOP Instance UID."""

    dataset: Dataset | None = None
    sop_instance: str | None = None


@dataclass
class EventReport:
    """An N-EVENT-REPORT-RQ received and answered (PS3.7 10.1.1)."""

    sop_class: str
    sop_instance: str
    event_type: int | None
    dataset: Dataset | None
    message: dimse.Message


# ---------------------------------------------------------------- building requests


def _command(command_field: int, **elements: Any) -> Dataset:
    ds = Dataset()
    ds.CommandField = command_field
    for keyword, value in elements.items():
        if value is not None:
            setattr(ds, keyword, value)
    return ds


def _context(scu: SCU, sop_class: str) -> tuple[int, str]:
    context_id = scu.context_for(sop_class)
    return context_id, scu.accepted[context_id][1]


def _request(scu: SCU, context_id: int, ts: str, command: Dataset, dataset: Dataset | None) -> dimse.Message:
    command.CommandDataSetType = dimse.DATA_SET_PRESENT if dataset is not None else dimse.NO_DATA_SET
    data = encode_dataset(dataset, ts) if dataset is not None else None
    return dimse.Message(context_id, command, data)


def cancel_rq(message_id: int, context_id: int) -> dimse.Message:
    """C-CANCEL-RQ for the operation ``message_id`` (PS3.7 9.3.2.3, 9.3.3.3, 9.3.4.3)."""
    command = _command(dimse.C_CANCEL_RQ, MessageIDBeingRespondedTo=message_id)
    command.CommandDataSetType = dimse.NO_DATA_SET
    return dimse.Message(context_id, command)


# ---------------------------------------------------------------- the exchange


def _receive(scu: SCU, deadline: float, outcome: Outcome, what: str) -> dimse.Message:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Unfinished(f"{what}: no final response within the deadline ({outcome.pending} pending came)", outcome)
    try:
        return scu.receive_message(left)
    except Silence:
        raise Unfinished(f"{what}: no final response within the deadline ({outcome.pending} pending came)",
                         outcome) from None


def _hold(scu: SCU, msg: dimse.Message) -> None:
    """Keep a request of the peer for :func:`wait_event_report`, within a bound (oldest dropped)."""
    scu.held.append(msg)
    while len(scu.held) > DEFAULT_MAX_HELD:
        scu.held.popleft()


def _exchange(
    scu: SCU,
    request: dimse.Message,
    expected: str,
    outcome: Outcome,
    within: float,
    *,
    max_responses: int,
    cancel_after: int | None = None,
    on_pending: Callable[[dimse.Message], None] | None = None,
    on_store: Callable[[dimse.Message], None] | None = None,
) -> dimse.Message:
    """Send ``request``; read until its final ``expected`` response (PS3.7 9.3: pending ones before it)."""
    deadline = time.monotonic() + within
    message_id = request.message_id
    scu.send_message(request)
    while True:
        msg = _receive(scu, deadline, outcome, expected[:-4])
        if msg.name == expected and msg.message_id_being_responded_to == message_id:
            if msg.status is None:
                raise UnexpectedReply(f"{expected} without a Status (0000,0900) (PS3.7 9.3)", msg)
            if int(msg.status) in PENDING:
                outcome.pending += 1
                if len(outcome.responses) < max_responses:
                    outcome.responses.append(msg)
                    if on_pending is not None:
                        on_pending(msg)
                else:
                    outcome.dropped += 1
                if cancel_after is not None and outcome.pending == cancel_after and not outcome.cancelled:
                    scu.send_message(cancel_rq(message_id, request.context_id))
                    outcome.cancelled = True
                continue
            outcome.status = int(msg.status)
            outcome.final = msg
            if len(outcome.responses) < max_responses:
                outcome.responses.append(msg)
            return msg
        if msg.name == "C-STORE-RQ" and on_store is not None:
            on_store(msg)
        elif not msg.is_response:
            _hold(scu, msg)
        else:
            raise UnexpectedReply(f"expected {expected} to Message ID {message_id}, received {msg.name} "
                                  f"(to {msg.message_id_being_responded_to})", msg)


def _identifier(msg: dimse.Message, ts: str) -> Dataset | None:
    if msg.data is None:
        return None
    try:
        return msg.dataset(ts)
    except Exception as exc:  # the peer's bytes do not decode: say so, as any other wrong answer
        raise UnexpectedReply(f"{msg.name}: the identifier does not decode ({exc})", msg) from None


# ---------------------------------------------------------------- C-FIND


def find(
    scu: SCU,
    model: str,
    identifier: Dataset,
    *,
    within: float = 30.0,
    cancel_after: int | None = None,
    max_responses: int = DEFAULT_MAX_RESPONSES,
    priority: int = PRIORITY_MEDIUM,
) -> FindOutcome:
    """C-FIND ``identifier`` on the ``model``'s context (a name such as ``study-find`` or a UID), PS3.7 9.1.2."""
    sop_class = resolve_uid(model)
    context_id, ts = _context(scu, sop_class)
    command = _command(dimse.C_FIND_RQ, AffectedSOPClassUID=sop_class, MessageID=scu.next_message_id(),
                       Priority=priority)
    outcome = FindOutcome(transfer_syntax=ts)

    def pending(msg: dimse.Message) -> None:
        ds = _identifier(msg, ts)
        if ds is not None:
            outcome.matches.append(ds)

    _exchange(scu, _request(scu, context_id, ts, command, identifier), "C-FIND-RSP", outcome, within,
              max_responses=max_responses, cancel_after=cancel_after, on_pending=pending)
    return outcome


# ---------------------------------------------------------------- C-MOVE, C-GET


def _counts(outcome: RetrieveOutcome, msg: dimse.Message) -> None:
    command = msg.command
    for name, keyword in COUNT_KEYWORDS.items():
        value = command.get(keyword)
        if value is not None:
            setattr(outcome, name, int(value))


def _failed_uids(outcome: RetrieveOutcome, msg: dimse.Message) -> None:
    ds = _identifier(msg, outcome.transfer_syntax)
    if ds is None or "FailedSOPInstanceUIDList" not in ds:
        return
    value = ds.FailedSOPInstanceUIDList
    outcome.failed_uids = [str(v) for v in (value if isinstance(value, MultiValue) else [value]) if v]


def scp_role_granted(scu: SCU, sop_class: str) -> bool:
    """Whether this association lets the requestor act as SCP for ``sop_class``: it proposed the SCP
    role in an SCP/SCU Role Selection item and the acceptor's item accepted it (PS3.7 D.3.3.4; with
    no item, or an item the acceptor did not answer, the requestor is SCU only)."""
    def granted(pdu: Any) -> bool:
        subs = pdu.user_information.sub_items if pdu is not None and pdu.user_information is not None else ()
        return any(isinstance(s, RoleSelection) and s.sop_class_uid == sop_class and s.scp_role for s in subs)

    return granted(scu.rq) and granted(scu.ac)


def _retrieve(scu: SCU, command_field: int, model: str, identifier: Dataset, within: float, cancel_after: int | None,
              max_responses: int, max_arrivals: int, priority: int, destination: str | None,
              cancel_after_stores: int | None = None) -> RetrieveOutcome:
    sop_class = resolve_uid(model)
    context_id, ts = _context(scu, sop_class)
    command = _command(command_field, AffectedSOPClassUID=sop_class, MessageID=scu.next_message_id(),
                       Priority=priority, MoveDestination=destination)
    outcome = RetrieveOutcome(transfer_syntax=ts)

    def store(rq: dimse.Message) -> None:
        """A C-STORE sub-operation of a C-GET (PS3.4 C.4.3.2): keep it, answer 0000 (A700 past the bound);
        the ``cancel_after_stores``-th is answered after a C-CANCEL-RQ (PS3.7 9.3.3.3)."""
        if len(outcome.arrivals) + outcome.refused + 1 == cancel_after_stores and not outcome.cancelled:
            scu.send_message(cancel_rq(command.MessageID, context_id))
            outcome.cancelled = True
        status = 0x0000
        if len(outcome.arrivals) >= max_arrivals or rq.data is None:
            status = STATUS_OUT_OF_RESOURCES
            outcome.refused += 1
        else:
            context = scu.accepted.get(rq.context_id, ("", ""))
            if not scp_role_granted(scu, context[0]) and context[0] not in outcome.off_role:
                outcome.off_role.append(context[0])
            origin = rq.command.get("MoveOriginatorApplicationEntityTitle")
            outcome.arrivals.append(Arrival(rq.affected_sop_class_uid or "", rq.affected_sop_instance_uid or "",
                                            bytes(rq.data), context[1], str(origin).strip() if origin else ""))
        scu.send_message(dimse.c_store_rsp(rq, status))

    final = _exchange(scu, _request(scu, context_id, ts, command, identifier), dimse.COMMAND_FIELDS[
        command_field | 0x8000], outcome, within, max_responses=max_responses, cancel_after=cancel_after,
        on_pending=lambda msg: _counts(outcome, msg), on_store=store)
    outcome.remaining = None  # the final response's own (PS3.4 C.4.2.1.3.1), not the last pending's
    _counts(outcome, final)
    _failed_uids(outcome, final)
    return outcome


def move(
    scu: SCU,
    model: str,
    identifier: Dataset,
    destination: str,
    *,
    within: float = 60.0,
    cancel_after: int | None = None,
    max_responses: int = DEFAULT_MAX_RESPONSES,
    priority: int = PRIORITY_MEDIUM,
) -> RetrieveOutcome:
    """C-MOVE to ``destination`` (an AE title the peer knows), PS3.7 9.1.4; the sub-operations go elsewhere."""
    return _retrieve(scu, dimse.C_MOVE_RQ, model, identifier, within, cancel_after, max_responses, 0, priority,
                     destination)


def get(
    scu: SCU,
    model: str,
    identifier: Dataset,
    *,
    within: float = 60.0,
    cancel_after: int | None = None,
    max_responses: int = DEFAULT_MAX_RESPONSES,
    max_arrivals: int = DEFAULT_MAX_ARRIVALS,
    priority: int = PRIORITY_MEDIUM,
    cancel_after_stores: int | None = None,
) -> RetrieveOutcome:
    """C-GET, serving the C-STORE sub-operations on this association (PS3.7 9.1.3, PS3.4 C.4.3);
    ``cancel_after_stores=N`` sends the C-CANCEL-RQ when the N-th C-STORE-RQ has come, before its
    C-STORE-RSP: the SCP cannot have ended the C-GET then, whether it sends pending responses or not."""
    return _retrieve(scu, dimse.C_GET_RQ, model, identifier, within, cancel_after, max_responses, max_arrivals,
                     priority, None, cancel_after_stores)


# ---------------------------------------------------------------- N-ACTION, N-CREATE, N-SET


def _n_operation(scu: SCU, command_field: int, sop_class: str, dataset: Dataset | None, within: float,
                 **elements: Any) -> NOutcome:
    sop_class = resolve_uid(sop_class)
    context_id, ts = _context(scu, sop_class)
    requested = command_field in (dimse.N_ACTION_RQ, dimse.N_SET_RQ)
    key = "RequestedSOPClassUID" if requested else "AffectedSOPClassUID"
    command = _command(command_field, MessageID=scu.next_message_id(), **{key: sop_class}, **elements)
    outcome = NOutcome(transfer_syntax=ts)
    final = _exchange(scu, _request(scu, context_id, ts, command, dataset),
                      dimse.COMMAND_FIELDS[command_field | 0x8000], outcome, within, max_responses=1)
    outcome.dataset = _identifier(final, ts)
    outcome.sop_instance = final.affected_sop_instance_uid
    return outcome


def n_action(scu: SCU, sop_class: str, sop_instance: str, action_type: int, information: Dataset | None, *,
             within: float = 30.0) -> NOutcome:
    """N-ACTION-RQ (PS3.7 10.1.4), e.g. a Storage Commitment request (PS3.4 J.3.2, action type 1)."""
    return _n_operation(scu, dimse.N_ACTION_RQ, sop_class, information, within,
                        RequestedSOPInstanceUID=sop_instance, ActionTypeID=action_type)


def n_create(scu: SCU, sop_class: str, attributes: Dataset | None, *, sop_instance: str | None = None,
             within: float = 30.0) -> NOutcome:
    """N-CREATE-RQ (PS3.7 10.1.5); without ``sop_instance`` the peer makes the UID and returns it."""
    return _n_operation(scu, dimse.N_CREATE_RQ, sop_class, attributes, within, AffectedSOPInstanceUID=sop_instance)


def n_set(scu: SCU, sop_class: str, sop_instance: str, modifications: Dataset, *, within: float = 30.0) -> NOutcome:
    """N-SET-RQ (PS3.7 10.1.3)."""
    return _n_operation(scu, dimse.N_SET_RQ, sop_class, modifications, within, RequestedSOPInstanceUID=sop_instance)


# ---------------------------------------------------------------- N-EVENT-REPORT


def answer_event_report(scu: SCU, rq: dimse.Message, status: int = 0x0000) -> None:
    """N-EVENT-REPORT-RSP to ``rq`` (PS3.7 10.3.1.2: same SOP class, instance and Event Type ID)."""
    event = rq.command.get("EventTypeID")
    command = _command(dimse.N_EVENT_REPORT_RSP, AffectedSOPClassUID=rq.affected_sop_class_uid,
                       MessageIDBeingRespondedTo=rq.message_id, Status=status,
                       AffectedSOPInstanceUID=rq.affected_sop_instance_uid,
                       EventTypeID=event)
    command.CommandDataSetType = dimse.NO_DATA_SET
    scu.send_message(dimse.Message(rq.context_id, command))


def wait_event_report(scu: SCU, *, within: float = 30.0, status: int = 0x0000) -> EventReport:
    """The next N-EVENT-REPORT-RQ on this association, answered with ``status`` (PS3.7 10.1.1).

    One held by an earlier operation comes first.  Raises :class:`Unfinished` when
    none comes within ``within``, :class:`UnexpectedReply` when anything else does.
    """
    deadline = time.monotonic() + within
    while True:
        if scu.held:
            rq = scu.held.popleft()
        else:
            rq = _receive(scu, deadline, Outcome(), "N-EVENT-REPORT")
        if rq.name != "N-EVENT-REPORT-RQ":
            raise UnexpectedReply(f"expected N-EVENT-REPORT-RQ, received {rq.name}", rq)
        answer_event_report(scu, rq, status)
        context = scu.accepted.get(rq.context_id, ("", ""))
        event = rq.command.get("EventTypeID")
        return EventReport(rq.affected_sop_class_uid or "", rq.affected_sop_instance_uid or "",
                           int(event) if event is not None else None,
                           _identifier(rq, context[1]), rq)


__all__ = [
    "Arrival", "EventReport", "FindOutcome", "NOutcome", "Outcome", "RetrieveOutcome", "Unfinished",
    "answer_event_report", "cancel_rq", "find", "get", "move", "n_action", "n_create", "n_set", "wait_event_report",
]
