"""What an :class:`~dicomconf.ul.association.Association` tells its driver (PS3.8 7, 9.2).

Theory of operation
-------------------
Each event is a frozen, slotted dataclass naming one service primitive the
DICOM Upper Layer issues to its user (an *indication* or *confirmation*,
PS3.8 7.1-7.4), plus two for the driver's benefit: :class:`PDUReceived`
(every PDU decoded, for tracing, emitted before the indication it causes)
and :class:`ConnectionClosed` (the state machine is back in Sta1: the
transport is closed, or is to be closed once ``data_to_send()`` is written).

Events carry the decoded PDU objects of :mod:`dicomconf.ul.pdu` and DIMSE
messages of :mod:`dicomconf.ul.dimse`; they never carry bytes to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.pdu import PDU, AAssociateAC, AAssociateRJ, AAssociateRQ

if TYPE_CHECKING:
    from dicomconf.ul.dimse import Message


@dataclass(frozen=True, slots=True)
class AssociateRequested:
    """A-ASSOCIATE indication (acceptor, PS3.8 7.1.2, action AE-6).

    The user answers with ``send(AAssociateAC)`` or ``send(AAssociateRJ)``.
    """

    pdu: AAssociateRQ


@dataclass(frozen=True, slots=True)
class AssociateAccepted:
    """A-ASSOCIATE confirmation, accepted (requestor, PS3.8 7.1.2, action AE-3)."""

    pdu: AAssociateAC


@dataclass(frozen=True, slots=True)
class AssociateRejected:
    """A-ASSOCIATE confirmation, rejected (requestor, PS3.8 7.1.2, action AE-4)."""

    pdu: AAssociateRJ


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """P-DATA indication (PS3.8 7.6, actions DT-2 and AR-6), its PDVs assembled into one DIMSE message."""

    message: Message


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """A-RELEASE indication (PS3.8 7.2, actions AR-2 and AR-8).

    In a release collision (AR-8) the requestor's user answers at once
    (state Sta9); the acceptor's user waits for :class:`ReleaseConfirmed`
    (Sta10 -> Sta12) before answering, PS3.8 7.2.3.
    """


@dataclass(frozen=True, slots=True)
class ReleaseConfirmed:
    """A-RELEASE confirmation (PS3.8 7.2, actions AR-3 and AR-10)."""


@dataclass(frozen=True, slots=True)
class Aborted:
    """A-ABORT indication (peer user abort) or A-P-ABORT indication (provider abort), PS3.8 7.3, 7.4.

    ``by_peer`` is True when an A-ABORT PDU arrived (AA-3; ``source`` and
    ``reason`` are its fields).  It is False when this end's provider aborted
    (AA-8: ``source`` 2 and the reason we sent, ``error`` says what the peer
    did wrong) or the transport was lost (AA-4: ``source`` 2, ``reason`` 0).
    """

    source: int
    reason: int
    by_peer: bool
    error: RemoteProtocolError | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The association is over and the state machine is in Sta1 (PS3.8 9.2.1, Table 9-1)."""


@dataclass(frozen=True, slots=True)
class PDUReceived:
    """One PDU decoded from the peer's bytes, reported before the indication it causes."""

    pdu: PDU


Event = Union[
    AssociateRequested,
    AssociateAccepted,
    AssociateRejected,
    MessageReceived,
    ReleaseRequested,
    ReleaseConfirmed,
    Aborted,
    ConnectionClosed,
    PDUReceived,
]
