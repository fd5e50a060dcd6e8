"""Driving one service exchange without I/O: the request, the stepping, the response command (PS3.7 9.3, 10.3).

Theory of operation
-------------------
Every driver of the service handlers (:mod:`dicomconf.services.base`) does
the same few things around the I/O it owns; they live here once, so the
reference SCP's asyncio driver (:mod:`dicomconf.scp.service_driver`) and the
fake SCP's synchronous one (:mod:`dicomconf.scenario.fake_services`) answer
alike:

* :func:`request_of` turns a received request message into a
  :class:`~dicomconf.services.base.Request` (its SOP class, the Affected or
  Requested SOP Instance UID, PS3.7 9.3 and 10.3); :func:`undecodable` is the
  answer to a request whose data set cannot be read (C000 for the Q/R
  services, PS3.4 C.4.1.1.4; 0110 otherwise, PS3.7 Annex C);
* :class:`Stepper` advances the handler's generator and applies the rule of
  C-CANCEL (PS3.7 9.3.2.3, PS3.4 C.4.2.3.1): once a cancel has come, the next
  pending reply or sub-operation the handler yields is not performed,
  :class:`~dicomconf.services.base.Cancel` is thrown in its place so the
  handler answers with its own final response (FE00, with the counts of the
  sub-operations that ended).  A handler that raises, or yields something
  that is not an action, ends the exchange with :func:`fault` (0110, PS3.7
  Annex C): a bug of ours, not the peer's;
* :func:`reply_command` is the response command set for a
  :class:`~dicomconf.services.base.Reply` (Command Field, Message ID Being
  Responded To, the SOP class, Command Data Set Type, Status, then the
  reply's own elements), the general path of every driver.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydicom import Dataset

from dicomconf.services.base import Cancel, EventReport, Reply, Request, SubOperation
from dicomconf.services.find_wire import EncodedReply
from dicomconf.ul import dimse

PENDING = frozenset({0xFF00, 0xFF01})  # PS3.7 C.4.1.1.4, C.4.2.1.5, C.4.3.1.5: Pending
STATUS_PROCESSING_FAILURE = 0x0110  # PS3.7 C.4.2 (and 10.1 for DIMSE-N): Failure, processing failure
STATUS_UNABLE_TO_PROCESS = 0xC000  # PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.5
_QR_REQUESTS = frozenset({dimse.C_FIND_RQ, dimse.C_MOVE_RQ, dimse.C_GET_RQ})


def requested_instance(msg: dimse.Message) -> str | None:
    """Requested SOP Instance UID (0000,1001) of an N-SET/N-GET/N-ACTION/N-DELETE-RQ (PS3.7 10.3)."""
    value = msg.command.get("RequestedSOPInstanceUID")
    return str(value).rstrip("\0 ") if value else None


def sop_class_of(msg: dimse.Message) -> str:
    """Affected SOP Class UID, else Requested SOP Class UID (PS3.7 9.3, 10.3); "" when neither."""
    return msg.affected_sop_class_uid or msg.requested_sop_class_uid or ""


def request_of(msg: dimse.Message, transfer_syntax: str, dataset: Dataset | None, *, calling_ae: str = "",
               called_ae: str = "", extended: bytes = b"") -> Request:
    """The :class:`Request` a handler sees for ``msg``, its data set already decoded."""
    return Request(
        command_field=msg.command_field,
        message_id=msg.message_id if msg.message_id is not None else 0,
        sop_class_uid=sop_class_of(msg),
        command=msg.command,
        dataset=dataset,
        sop_instance_uid=msg.affected_sop_instance_uid or requested_instance(msg),
        transfer_syntax=transfer_syntax,
        calling_ae=calling_ae,
        called_ae=called_ae,
        extended=extended,
    )


def undecodable(command_field: int, exc: BaseException) -> Reply:
    """The answer to a request whose data set does not decode: it cannot be processed."""
    status = STATUS_UNABLE_TO_PROCESS if command_field in _QR_REQUESTS else STATUS_PROCESSING_FAILURE
    return Reply(status, fields={"ErrorComment": f"cannot decode the data set: {exc}"[:64]})


def fault() -> Reply:
    """The answer when a handler fails (a bug of ours): 0110, processing failure (PS3.7 Annex C)."""
    return Reply(STATUS_PROCESSING_FAILURE, fields={"ErrorComment": "internal error of the SCP"})


_ACTIONS = (Reply, EncodedReply, SubOperation, EventReport)


def is_pending(action: Any) -> bool:
    """Whether ``action`` is what a C-CANCEL replaces: a sub-operation or a pending reply (either kind)."""
    return isinstance(action, SubOperation) or (isinstance(action, (Reply, EncodedReply)) and action.status in PENDING)


class Stepper:
    """One exchange's generator, advanced with the C-CANCEL rule (see the module docstring).

    ``cancelled`` is set by :meth:`cancel` when a C-CANCEL-RQ names the exchange;
    ``done`` once the generator has ended; ``failure`` holds what the handler raised.
    """

    __slots__ = ("cancelled", "done", "failure", "generator")

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        self.cancelled = False
        self.done = False
        self.failure: BaseException | None = None

    def cancel(self) -> None:
        """A C-CANCEL-RQ came for this exchange (PS3.7 9.3.2.3)."""
        self.cancelled = True

    def advance(self, value: Any = None, *, throw: bool = False) -> Any:
        """The next action to perform, or None when the exchange has ended.

        ``value`` goes to the handler (a sub-operation's or event report's status);
        ``throw``: throw :class:`Cancel` at once, where the handler waits.  A pending reply or
        sub-operation yielded after :meth:`cancel` is not returned: Cancel is thrown in its
        place.  A handler that raises or yields a non-action ends with :func:`fault` returned
        (``failure`` says why) and ``done`` set.
        """
        if self.done:
            return None
        while True:
            try:
                if throw:
                    throw = self.cancelled = False
                    action = self.generator.throw(Cancel())
                else:
                    action = self.generator.send(value)
            except StopIteration:
                self.done = True
                return None
            except Exception as exc:  # noqa: BLE001 - a handler's bug is answered 0110, never the peer's fault
                self.done = True
                self.failure = exc
                return fault()
            value = None
            if not isinstance(action, _ACTIONS):
                self.failure = TypeError(f"a handler yielded {type(action).__name__}")
                with contextlib.suppress(Exception):  # the fault reported is the bad yield
                    self.close()
                return fault()
            if self.cancelled and is_pending(action):
                throw = True
                continue
            return action

    def close(self) -> None:
        """End the generator (the association ended); a failure while it cleans up is raised."""
        self.done = True
        self.generator.close()


def reply_command(rq: dimse.Message, reply: Reply) -> Dataset:
    """The response command set carrying ``reply`` for request ``rq`` (PS3.7 9.3, 10.3; E.1 order by pydicom)."""
    command = Dataset()
    sop_class = sop_class_of(rq)
    if sop_class:
        command.AffectedSOPClassUID = sop_class
    command.CommandField = (rq.command_field | 0x8000) & 0xFFFF
    if rq.message_id is not None:
        command.MessageIDBeingRespondedTo = rq.message_id
    command.CommandDataSetType = dimse.NO_DATA_SET if reply.dataset is None else dimse.DATA_SET_PRESENT
    command.Status = reply.status
    for keyword, value in reply.fields.items():
        setattr(command, keyword, value)
    return command


__all__ = ["PENDING", "STATUS_PROCESSING_FAILURE", "Stepper", "fault", "is_pending", "reply_command", "request_of",
           "requested_instance", "sop_class_of", "undecodable"]
