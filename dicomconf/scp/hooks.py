"""Hook points of the reference SCP: variants that do something else than the default.

Theory of operation
-------------------
The reference SCP answers as strictly and as plainly as the standard allows.
A harness also needs SCPs that answer otherwise: *legal variants* that do
only what the standard allows but differently (a response split into many
small PDUs and PDVs, PS3.8 9.3.5 and Annex E; presentation contexts answered
in another order, PS3.8 9.3.3.2; protocol version 0x0003, PS3.8 9.3.3; no
optional sub-item), so that a scenario which fails them is known to be wrong,
and *broken variants* that break one rule each, so that a scenario which
passes them is known to be blind.

:class:`Hooks` holds three optional callables, all called on the event loop's
thread and never on the default path (the SCP checks one attribute):

* ``answer(primitive, connection)``: every PDU the SCP is about to send
  through its state machine (A-ASSOCIATE-AC/RJ, P-DATA-TF, A-RELEASE-RP,
  A-ABORT).  It returns the PDU to send instead, a sequence of PDUs to send
  in turn (each goes through the state machine, so a sequence of P-DATA-TF
  PDUs in Sta6 is legal), or None to send nothing.
* ``wire(data, connection)``: the bytes the state machine produced by itself
  (the A-ABORT of AA-1/AA-8, the A-RELEASE-RP path ...), returning the bytes
  to write instead (``b""``: nothing).
* ``inbound(data, connection)``: the bytes just read from the peer, before
  the state machine sees them (PS3.8 9.2.3: the events of Table 9-10 are
  made from them), returning the bytes to feed it instead (``b""``:
  nothing).  A variant sees every A-ASSOCIATE-RQ, A-ABORT or P-DATA-TF as
  it arrives, in the pieces TCP gave it, and may drop or rewrite it.

``connection`` is the SCP's per-connection object; hooks may read its
``assoc`` (the :class:`~dicomconf.ul.association.Association`, e.g. its
``state`` and ``peer_max_pdu_length``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True, slots=True)
class Hooks:
    """Optional hook points of :class:`~dicomconf.scp.server.ReferenceSCP` (see the module docstring)."""

    answer: Callable[[Any, Any], Any] | None = None
    wire: Callable[[bytes, Any], bytes] | None = None
    inbound: Callable[[bytes, Any], bytes] | None = None


__all__ = ["Hooks"]
