"""Broken reference SCPs: the :class:`Variant` record and what a variant's hooks and handlers are made of.

Theory of operation
-------------------
A :class:`Variant` is the reference SCP broken on one rule, and the must-level scenarios that
must catch it (tests/suite/test_suite_broken_variants.py runs them).  It breaks the rule with
one or more of:

* ``hooks`` (:mod:`dicomconf.scp.hooks`): the PDUs and bytes the SCP sends and reads;
* ``handlers``: a function given the SCP's service handlers (SOP Class UID -> handler,
  :mod:`dicomconf.services.base`: a generator of replies, sub-operations and event reports
  per request) that returns the handlers to serve instead; the helpers here wrap a handler
  (:func:`rewriting`, :func:`refusing`, :func:`replacing`);
* ``config``, ``tls_config`` and ``profile`` changes.

The service variant tables live beside this module, one per part of PS3.4
(``service_variants_find``, ``service_variants_retrieve``, ``service_variants_workflow``),
each a ``VARIANTS`` mapping that the broken-variant test merges with its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from dicomconf.scp.hooks import Hooks
from dicomconf.services.base import Exchange, Handler, Reply, Request

# SOP Class UIDs of the services (PS3.4 C.6, F.7, J, K.6), for the variant tables.
PATIENT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
FINDS = (PATIENT_FIND, STUDY_FIND)
MOVES = (PATIENT_MOVE, STUDY_MOVE)
GETS = (PATIENT_GET, STUDY_GET)
COMMITMENT = "1.2.840.10008.1.20.1"
MPPS = "1.2.840.10008.3.1.2.3.3"
WORKLIST = "1.2.840.10008.5.1.4.31"


@dataclass(frozen=True)
class Variant:
    """A broken reference SCP: its hooks, handler changes, SCP config changes, profile changes,
    and the must-level scenarios that must catch it."""

    hooks: Callable[[], Hooks] | None
    scenarios: tuple[str, ...]
    config: dict = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    tls: bool = False
    tls_config: dict = field(default_factory=dict)  # TLSConfig changes (dicomconf.scp.tls): a weak TLS listener
    handlers: Callable[[dict[str, Handler]], dict[str, Handler]] | None = None


class PDUFilter:
    """An ``inbound`` hook that hands each whole incoming PDU to ``keep(pdu, connection)``.

    ``keep`` returns the bytes to feed the state machine instead (``b""``: drop it).  Bytes of a
    PDU not yet complete wait in a per-connection buffer.
    """

    def __init__(self, keep: Callable[[bytes, Any], bytes]) -> None:
        self.keep = keep
        self.buffers: dict[Any, bytes] = {}

    def __call__(self, data: bytes, connection: Any) -> bytes:
        buf = self.buffers.get(connection, b"") + data
        out = []
        while len(buf) >= 6:
            end = 6 + int.from_bytes(buf[2:6], "big")
            if len(buf) < end:
                break
            out.append(self.keep(buf[:end], connection))
            buf = buf[end:]
        self.buffers[connection] = buf
        return b"".join(out)


def rewriting(original: Handler, change: Callable[[Any, Request], Any]) -> Handler:
    """A handler that plays ``original`` with each action it yields passed through
    ``change(action, request)``: a :class:`Reply`, a sub-operation or an event report to yield
    instead, or None to drop it.  What the driver sends back (a sub-operation's status) and throws
    in (:class:`~dicomconf.services.base.Cancel`, PS3.7 9.3.2.3) reaches the original."""

    def handler(request: Request) -> Exchange:
        exchange = original(request)
        sent: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                action = exchange.throw(thrown) if thrown is not None else exchange.send(sent)
            except StopIteration:
                return
            sent, thrown = None, None
            changed = change(action, request)
            if changed is None:
                continue
            try:
                sent = yield changed
            except GeneratorExit:
                exchange.close()
                raise
            except Exception as exc:  # a C-CANCEL (services.base.Cancel) reaches the original handler
                thrown = exc

    return handler


def replies(change: Callable[[Reply, Request], Reply | None]) -> Callable[[Any, Request], Any]:
    """A ``change`` for :func:`rewriting` that touches replies only."""
    return lambda action, request: change(action, request) if isinstance(action, Reply) else action


def refusing(status: int, comment: str | None = None) -> Handler:
    """A handler that answers every request with ``status`` and nothing else."""

    def handler(request: Request) -> Exchange:
        yield Reply(status, fields={"ErrorComment": comment} if comment else {})

    return handler


def replacing(uids: Iterable[str], make: Callable[[Handler], Handler]) -> Callable[[dict], dict]:
    """A ``Variant.handlers`` that replaces the handler of each SOP class of ``uids`` the SCP
    serves by ``make(original)``."""
    wanted = tuple(uids)

    def change(handlers: dict) -> dict:
        return {uid: (make(h) if uid in wanted else h) for uid, h in handlers.items()}

    return change


__all__ = ["COMMITMENT", "PDUFilter", "FINDS", "GETS", "MOVES", "MPPS", "PATIENT_FIND", "PATIENT_GET", "PATIENT_MOVE",
           "STUDY_FIND", "STUDY_GET", "STUDY_MOVE", "Variant", "WORKLIST", "refusing", "replacing", "replies",
           "rewriting"]
