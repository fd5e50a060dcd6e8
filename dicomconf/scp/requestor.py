"""Associations the reference SCP requests itself: C-MOVE destinations, commitment reports (PS3.8 9.2).

Theory of operation
-------------------
A C-MOVE's sub-operations go over an association the SCP opens to the move
destination (PS3.4 C.4.2.2), and Storage Commitment may send its
N-EVENT-REPORT over a new association to the requestor's AE (PS3.4 J.3.3.1).
In both the SCP is the association-requestor.  :class:`OutboundAssociation`
is that requestor: an asyncio protocol around the same sans-IO
:class:`~dicomconf.ul.association.Association` the listener uses, in the
requestor role.  It opens the connection, sends the A-ASSOCIATE-RQ
(presentation contexts, Maximum Length, implementation identity, and SCP/SCU
Role Selection items when asked, PS3.7 D.3.3.4), and then sends one request
at a time and awaits its response (:meth:`request`), releases (PS3.8 7.2) or
aborts (PS3.8 7.3).

Every wait is bounded (``timeout``) and ends with :class:`OutboundError`
saying what did not happen; a timeout aborts the association (PS3.8 9.1.5:
the requestor may abort an association that does not answer).  ARTIM is the
driver's to run on the requestor side too: after our A-RELEASE-RQ the wait
for the A-RELEASE-RP is bounded by ``timeout`` and followed by a close.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from typing import Iterable, Mapping

from dicomconf.ul import constants as C
from dicomconf.ul import dimse, events as ev
from dicomconf.ul.association import Association
from dicomconf.ul.errors import LocalProtocolError
from dicomconf.ul.items import (
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextRQ,
    RoleSelection,
    UserInformation,
)
from dicomconf.ul.pdu import PDV, AAbort, AAssociateRQ, AReleaseRP, AReleaseRQ, PDataTF


_ONE_PDV_PDU = struct.Struct(">BBIIBB")  # PDU header, PDV item length, context ID, message control header


@dataclass(frozen=True, slots=True)
class Fragments(PDataTF):
    """The fragments of one message, one PDV per P-DATA-TF PDU (PS3.8 9.3.5, E.2).

    The state machine takes it as one P-DATA request (Evt9, DT-1 in Sta6), as it takes a
    :class:`~dicomconf.ul.dimse.Message`; :meth:`encode` gives the PDUs back to back, each
    PDV's data copied once.  Each PDV must already fit the peer's Maximum Length.
    """

    def encode(self) -> bytes:
        pack = _ONE_PDV_PDU.pack
        parts: list[bytes | memoryview] = []
        for pdv in self.pdvs:
            n = len(pdv.data)
            parts.append(pack(C.P_DATA_TF, 0, n + 6, n + 2, pdv.context_id, pdv.message_control_header))
            parts.append(pdv.data)
        return b"".join(parts)


def fragments(context_id: int, command: bytes, data: bytes, max_pdu_length: int) -> Fragments | None:
    """A message's PDUs: its command in one PDV (None if that does not fit), its data set in even fragments
    of the most ``max_pdu_length`` allows, 0 meaning no limit (PS3.8 D.1.1, E.1, E.2)."""
    limit = (min(max_pdu_length, 0xFFFFFFFF) - 6) & ~1 if max_pdu_length else 0xFFFFFFF0
    if limit <= 0 or len(command) > limit:
        return None
    view = memoryview(data)
    pdvs = [PDV(context_id, C.MCH_COMMAND | C.MCH_LAST, command)]
    last = max(len(view) - limit, 0)
    for start in range(0, len(view), limit) if view else (0,):
        pdvs.append(PDV(context_id, C.MCH_LAST if start >= last else 0, view[start:start + limit]))
    return Fragments(tuple(pdvs))


class OutboundError(Exception):
    """An association the SCP requested did not do what was asked (one line: what, with whom)."""


class OutboundAssociation(asyncio.Protocol):
    """One association the SCP requests (see the module docstring)."""

    def __init__(self, where: str, max_pdu_length: int) -> None:
        self.where = where
        self.assoc = Association("requestor", max_pdu_length=max_pdu_length)
        self.transport: asyncio.Transport | None = None
        self.accepted: dict[int, tuple[str, str]] = {}
        self._established: asyncio.Future | None = None
        self._waiting: dict[int, asyncio.Future] = {}
        self._released: asyncio.Future | None = None
        self._ids = 0
        self.ended = False

    # ------------------------------------------------------------ opening

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        calling: str,
        called: str,
        contexts: Iterable[tuple[str, tuple[str, ...]]],
        roles: Mapping[str, tuple[bool, bool]] | None = None,
        max_pdu_length: int = 16382,
        timeout: float = 30.0,
    ) -> "OutboundAssociation":
        """Connect to ``host:port`` and negotiate ``contexts`` (abstract syntax, transfer syntaxes).

        ``roles`` maps a SOP class to the (SCU, SCP) roles we propose for ourselves
        (PS3.7 D.3.3.4); absent: no Role Selection item, the default roles.
        """
        loop = asyncio.get_running_loop()
        where = f"{called} at {host}:{port}"
        proto = cls(where, max_pdu_length)
        pcs = tuple(PresentationContextRQ(2 * i + 1, abstract, tuple(ts))
                    for i, (abstract, ts) in enumerate(contexts))
        if not pcs or len(pcs) > 128:
            raise OutboundError(f"{where}: {len(pcs)} presentation contexts (1 to 128, PS3.8 9.3.2.2)")
        sub_items: list = [MaximumLength(max_pdu_length), ImplementationClassUID(C.IMPLEMENTATION_CLASS_UID)]
        sub_items += [RoleSelection(uid, int(scu), int(scp)) for uid, (scu, scp) in (roles or {}).items()]
        sub_items.append(ImplementationVersionName(C.IMPLEMENTATION_VERSION_NAME))
        rq = AAssociateRQ(called, calling, pcs, UserInformation(tuple(sub_items)))
        proto._established = loop.create_future()
        proto.assoc.send(rq)
        try:
            await asyncio.wait_for(loop.create_connection(lambda: proto, host, port), timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise OutboundError(f"{where}: cannot connect: {getattr(exc, 'strerror', None) or exc or 'timed out'}") \
                from None
        try:
            await asyncio.wait_for(asyncio.shield(proto._established), timeout)
        except asyncio.TimeoutError:
            proto.abort()
            raise OutboundError(f"{where}: no A-ASSOCIATE-AC within {timeout:g}s") from None
        return proto

    # ------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._handle(self.assoc.connection_made())

    def data_received(self, data: bytes) -> None:
        self._handle(self.assoc.receive_data(data))

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            events = self.assoc.connection_lost()
        except LocalProtocolError:
            events = []
        self._handle(events)
        self._end(OutboundError(f"{self.where}: the connection closed"))

    def _handle(self, events: list) -> None:
        for event in events:
            kind = type(event)
            if kind is ev.AssociateAccepted:
                self.accepted = dict(self.assoc.accepted_contexts)
                if self._established is not None and not self._established.done():
                    self._established.set_result(True)
            elif kind is ev.AssociateRejected:
                pdu = event.pdu
                self._end(OutboundError(f"{self.where}: rejected (result {pdu.result}, source {pdu.source}, "
                                        f"reason {pdu.reason})"))
            elif kind is ev.MessageReceived:
                msg = event.message
                waiter = self._waiting.pop(msg.message_id_being_responded_to, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(msg)
            elif kind is ev.ReleaseConfirmed:
                if self._released is not None and not self._released.done():
                    self._released.set_result(True)
            elif kind is ev.ReleaseRequested:
                self._write(self.assoc.send(AReleaseRP()))
            elif kind is ev.Aborted:
                self._end(OutboundError(f"{self.where}: aborted (source {event.source}, reason {event.reason})"))
        self._write(self.assoc.data_to_send())
        if self.assoc.should_close and self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _end(self, error: OutboundError) -> None:
        """Every wait ends: the association is over."""
        self.ended = True
        for future in (self._established, self._released, *self._waiting.values()):
            if future is not None and not future.done():
                future.set_exception(error)
                future.exception()  # retrieved here: a wait may have timed out already
        self._waiting.clear()

    # ------------------------------------------------------------ use

    def context_for(self, sop_class: str, transfer_syntax: str | None = None) -> tuple[int, str] | None:
        """An accepted context for ``sop_class``, preferring ``transfer_syntax`` (PS3.8 9.3.3.2)."""
        candidates = [(cid, ts) for cid, (abstract, ts) in self.accepted.items() if abstract == sop_class]
        for cid, ts in candidates:
            if ts == transfer_syntax:
                return cid, ts
        return candidates[0] if candidates else None

    def next_message_id(self) -> int:
        self._ids = self._ids % 0xFFFF + 1
        return self._ids

    async def request(self, message: dimse.Message, timeout: float) -> dimse.Message:
        """Send a request and await the response to its Message ID (PS3.7 9.3.1.1)."""
        if self.ended:
            raise OutboundError(f"{self.where}: the association is over")
        mid = message.message_id
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[mid] = waiter
        try:
            self._write(self.assoc.send(message))
        except LocalProtocolError as exc:
            self._waiting.pop(mid, None)
            raise OutboundError(f"{self.where}: cannot send {message.name}: {exc}") from None
        try:
            return await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            self._waiting.pop(mid, None)
            self.abort()
            raise OutboundError(f"{self.where}: no response to {message.name} within {timeout:g}s") from None

    async def request_encoded(self, context_id: int, message_id: int, command: bytes, data: bytes,
                              timeout: float, name: str = "C-STORE-RQ") -> dimse.Message:
        """:meth:`request` for a command set already encoded and its data set's bytes (PS3.8 9.3.5, E.2).

        The command goes in one PDU, the data set in fragments of the largest even size the
        destination's Maximum Length allows (PS3.8 D.1.1, E.1), each a memoryview of ``data`` in
        a PDU of its own, handed to the state machine as one :class:`Fragments`: the data set is
        copied once, into its PDUs.
        """
        if self.ended:
            raise OutboundError(f"{self.where}: the association is over")
        pdus = fragments(context_id, command, data, self.assoc.peer_max_pdu_length)
        if pdus is None:
            raise OutboundError(f"{self.where}: a Maximum Length of {self.assoc.peer_max_pdu_length} cannot carry "
                                f"the {name} (PS3.8 D.1.1)")
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[message_id] = waiter
        try:
            self._write(self.assoc.send(pdus))
        except LocalProtocolError as exc:
            self._waiting.pop(message_id, None)
            raise OutboundError(f"{self.where}: cannot send {name}: {exc}") from None
        try:
            return await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            self._waiting.pop(message_id, None)
            self.abort()
            raise OutboundError(f"{self.where}: no response to {name} within {timeout:g}s") from None

    async def release(self, timeout: float) -> None:
        """A-RELEASE (PS3.8 7.2); the transport is closed whatever the peer does."""
        if self.ended:
            return
        self._released = asyncio.get_running_loop().create_future()
        try:
            self._write(self.assoc.send(AReleaseRQ()))
            await asyncio.wait_for(self._released, timeout)
        except (LocalProtocolError, OutboundError):
            pass
        except asyncio.TimeoutError:
            self.abort()
        finally:
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        """A-ABORT, source 0 (service-user), then close (PS3.8 7.3)."""
        if self.transport is None or self.transport.is_closing():
            return
        try:
            self._write(self.assoc.send(AAbort(C.ABORT_SOURCE_USER, C.ABORT_REASON_NOT_SPECIFIED)))
        except LocalProtocolError:
            pass
        self.transport.close()


__all__ = ["Fragments", "OutboundAssociation", "OutboundError", "fragments"]
