"""What every DIMSE service handler takes and gives: requests, replies, sub-operations (PS3.7 9, 10).

Theory of operation
-------------------
A service is a plain handler from one request message to the responses it
earns, with no sockets and no event loop (the layer rule of the project's
design: ``services`` imports ``ul``, pydicom and sqlite3, nothing above).  The
reference SCP, the fake SCP of ``role: scp`` scenarios and the tests drive the
same handlers.

A handler is a function ``handle(request: Request) -> Exchange`` where an
:data:`Exchange` is a generator.  It yields, in order:

* :class:`Reply`: one response message to send (PS3.7 9.3: a C-FIND-RSP with
  status Pending FF00/FF01 and an identifier, then the final one; an
  N-CREATE-RSP ...).  The last :class:`Reply` yielded is the final response.
* :class:`SubOperation`: a C-STORE the driver must perform for the handler
  (C-GET: on the same association, PS3.4 C.4.3; C-MOVE: on an association to
  the move destination, PS3.4 C.4.2).  The driver sends the generator the
  C-STORE's status (an ``int``, or ``None`` when the sub-operation could not
  be attempted at all), and the handler counts it (PS3.4 C.4.2.1.3).
* :class:`EventReport`: an N-EVENT-REPORT the driver must send
  (Storage Commitment, PS3.4 J.3.3), on this association or on a new one to
  the named AE; the driver sends back the N-EVENT-REPORT-RSP status or None.

A C-CANCEL-RQ (PS3.7 9.3.2.3) makes the driver call ``exchange.throw(Cancel())``;
the handler then yields its final Reply, with status FE00 (Cancel) and, for
C-MOVE/C-GET, the counts so far (PS3.4 C.4.2.1.3.1).  A handler never blocks
and never sleeps: a delay a scenario asks for is ``Reply.delay``, which the
driver waits before sending.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Mapping, Union

from pydicom import Dataset


class Cancel(Exception):
    """Thrown into an exchange when a C-CANCEL-RQ for it arrives (PS3.7 9.3.2.3)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One request message as a service sees it (PS3.7 9.3, 10.3).

    ``command`` is the whole command set (for Priority, Move Destination,
    Action Type ID, Attribute Identifier List ...), ``dataset`` the decoded
    data set or None (PS3.7 6.3.1: Command Data Set Type 0101).  ``extended``
    holds the accepted SOP Class Extended Negotiation's service-class-
    application-information for this SOP class (PS3.7 D.3.3.5; b"" when none),
    which is where relational queries are agreed (PS3.4 C.5.1.1).
    """

    command_field: int
    message_id: int
    sop_class_uid: str
    command: Dataset
    dataset: Dataset | None = None
    sop_instance_uid: str | None = None
    transfer_syntax: str = "1.2.840.10008.1.2"
    calling_ae: str = ""
    called_ae: str = ""
    extended: bytes = b""


@dataclass(frozen=True, slots=True)
class Reply:
    """One response message: its status, data set, and the command elements beyond the usual ones.

    ``fields`` maps command element keywords (``NumberOfRemainingSuboperations``,
    ``AffectedSOPInstanceUID``, ``EventTypeID``, ``ErrorComment`` ...) to values;
    the driver adds Command Field, Message ID Being Responded To, the SOP class
    and Command Data Set Type (PS3.7 9.3, 10.3).  ``delay`` is seconds to wait
    before sending (a scripted slow answer); ``abort`` asks the driver to send an
    A-ABORT instead of this reply (a scripted failure, PS3.8 7.3.1).
    """

    status: int
    dataset: Dataset | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    abort: bool = False


@dataclass(frozen=True, slots=True)
class SubOperation:
    """A C-STORE the driver performs for a C-MOVE or C-GET (PS3.4 C.4.2.2, C.4.3.2).

    ``path`` is the stored file (Part 10) to send; ``sop_class_uid`` and
    ``sop_instance_uid`` name it.  ``destination`` is the move destination AE
    title, or None for C-GET (the same association, PS3.7 D.3.3.4).
    """

    sop_class_uid: str
    sop_instance_uid: str
    path: str
    destination: str | None = None


@dataclass(frozen=True, slots=True)
class EventReport:
    """An N-EVENT-REPORT-RQ the driver sends (PS3.7 10.3.1), e.g. Storage Commitment's (PS3.4 J.3.3).

    ``to`` is None for this association, or the AE title of a configured
    destination to which the driver opens a new association (PS3.4 J.3.3.1).
    """

    sop_class_uid: str
    sop_instance_uid: str
    event_type_id: int
    dataset: Dataset | None
    to: str | None = None


@dataclass(frozen=True, slots=True)
class Misbehaviour:
    """What a scenario scripts a service to do wrong: a failure status, a delay, an abort.

    ``fail_status`` refuses the request with that status before the service
    changes anything (no pending responses, no sub-operations, no event
    report), with ``error_comment`` as Error Comment (0000,0902) when given
    (PS3.7 Annex C); ``delay`` is seconds the driver waits before each reply;
    ``abort`` turns the first reply into an A-ABORT (PS3.8 7.3.1).
    """

    fail_status: int | None = None
    error_comment: str | None = None
    delay: float = 0.0
    abort: bool = False

    def refusal(self) -> Reply | None:
        """The scripted failure reply, or None when the service is to answer for real."""
        if self.fail_status is None:
            return None
        fields = {"ErrorComment": self.error_comment} if self.error_comment else {}
        return self.shape(Reply(self.fail_status, fields=fields))

    def shape(self, reply: Reply) -> Reply:
        """``reply`` with the scripted delay and abort applied (the service's status kept)."""
        if not self.delay and not self.abort:
            return reply
        return Reply(reply.status, reply.dataset, reply.fields, max(reply.delay, self.delay), reply.abort or self.abort)


def error_comment(text: str) -> str:
    """An Error Comment (0000,0902): LO, at most 64 characters (PS3.7 Annex C)."""
    return text if len(text) <= 64 else text[:61] + "..."


class Refused(Exception):
    """A request refused before any work: ``reply`` carries the status, the Error Comment and, when
    one element is at fault, Offending Element (0000,0901) (PS3.7 Annex C)."""

    def __init__(self, status: int, comment: str, offending: int | None = None) -> None:
        super().__init__(comment)
        fields: dict = {"ErrorComment": error_comment(comment)}
        if offending is not None:
            fields["OffendingElement"] = [offending]
        self.reply = Reply(status, fields=fields)
        self.comment = comment


Action = Union[Reply, SubOperation, EventReport]
Exchange = Generator[Action, Union[int, None], None]
Handler = Callable[[Request], Exchange]

__all__ = ["Action", "Cancel", "EventReport", "Exchange", "Handler", "Misbehaviour", "Refused", "Reply", "Request",
           "SubOperation", "error_comment"]
