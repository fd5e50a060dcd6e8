"""What a load run leaves out of the harness's SCU: per-PDU checks, the capture, repeated encoding.

Theory of operation
-------------------
The conformance harness's :class:`~dicomconf.scu.connection.Connection`
records every byte for the pcap and runs every PDU, both ways, through the
findings (:class:`~dicomconf.wire.findings.ConversationState`): right for a
verdict, and most of the client's CPU per association under load.  A load
run gives no verdict, so :class:`LoadConnection` keeps the framing (PS3.8
9.3.1), the strict decoding, the timeouts and the end-of-connection handling
and leaves out the recording and the findings.  It overrides three hooks of
``Connection`` (``_record``, ``_observe_sent``, ``_received``); the tests
check that each is taken, so a change to ``Connection`` that renamed them is
noticed rather than silently slowing the load down.

:func:`echo_pdus` keeps the P-DATA-TF PDUs of a C-ECHO-RQ (PS3.7 9.3.5.1)
per Message ID, context ID and peer Maximum Length: an association per task
always sends Message ID 1 on context 1, so the command set is encoded once
per process instead of once per association.
"""

from __future__ import annotations

from functools import lru_cache

from dicomconf.scu.connection import Connection, Received
from dicomconf.ul import dimse
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.pdu import decode_pdu


class LoadConnection(Connection):
    """A :class:`Connection` without capture and findings (see the module docstring)."""

    def _record(self, side: str, data: bytes) -> None:
        """No capture: a load run writes no pcap."""

    def _observe_sent(self, data: bytes) -> None:
        """No findings on what we send."""

    def _received(self, raw: bytes, at: float) -> Received:
        """Decode only (PS3.8 9.3.1): no findings on what the peer sends."""
        try:
            pdu, error = decode_pdu(raw), None
        except RemoteProtocolError as exc:
            pdu, error = None, exc
        if pdu is not None:
            self.pdus_received += 1
        return Received(raw, pdu, error, (), at)


@lru_cache(maxsize=4096)
def echo_pdus(message_id: int, context_id: int, peer_max_pdu_length: int) -> tuple[bytes, ...]:
    """The P-DATA-TF PDUs of a C-ECHO-RQ (PS3.7 9.3.5.1, PS3.8 9.3.5), encoded once per key."""
    return tuple(dimse.fragment(dimse.c_echo_rq(message_id, context_id=context_id), peer_max_pdu_length))
