"""What comes back from the target, and whether it is what a scenario expects (PS3.8 9.3, PS3.7 6.3).

Theory of operation
-------------------
Everything the peer does is an :class:`Event`: a whole PDU, a whole DIMSE
message, the peer's close or reset, or silence until a deadline.
:func:`next_event` reads one PDU (or the end) from a connection;
:func:`next_message` reads P-DATA-TF PDUs until their PDVs make a whole DIMSE
message, which PS3.8 9.3.5 and Annex E let a sender fragment into any number
of PDVs and PDUs within the receiver's maximum length.  An expectation that
names a message key (``command``, ``command_name``, ``status``,
:data:`~dicomconf.scenario.match.MESSAGE_KEYS`) is matched against that
reassembled message (:func:`wants_message` says which), so a legal fragmented
response is never mistaken for a wrong one; the per-PDU keys of the same
expectation are matched against the first PDU of the message, and the
failure text lists every PDU that made it up.

:func:`check` returns why an event does not satisfy an expectation (empty:
it does), trying ``any`` alternatives in turn; :func:`view_of` is the plain
data an expectation is matched against (:mod:`dicomconf.scenario.match`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from dicomconf.scenario.match import MESSAGE_KEYS, match, message_view, pdu_view
from dicomconf.ul import constants as C

_BROKEN = object()  # Event.message of a PDV sequence that broke PS3.8 Annex E


@dataclass(frozen=True, slots=True)
class Event:
    """What came from the peer: ``kind`` is "pdu", "message" (a whole DIMSE message, which
    came in the P-DATA-TF PDUs ``parts``; ``received`` is the first), "closed", "reset" or
    "silence".  ``parts`` also holds the P-DATA-TF PDUs of a message that was still
    incomplete when something else happened."""

    kind: str
    received: Any = None
    waited: float = 0.0
    parts: tuple = ()
    message: Any = None
    pending: bytes = b""  # silence: the bytes of an incomplete PDU that did arrive

    def describe(self) -> str:
        if self.kind == "message":
            head = (f"a DIMSE message ({self.message.name}, status "
                    f"{'none' if self.message.status is None else f'{self.message.status:#06x}'}) "
                    f"assembled from {len(self.parts)} P-DATA-TF PDU(s):")
            return head + _describe_parts(self.parts)
        if self.kind == "pdu":
            text = describe_received(self.received)
        elif self.kind == "silence" and self.pending:
            head = self.pending
            what = (f"type {head[0]:#04x}, length {int.from_bytes(head[2:6], 'big')}" if len(head) >= 6
                    else "header incomplete")
            more = f" ... ({len(head)} bytes)" if len(head) > 64 else ""
            text = (f"no whole PDU within {self.waited:g}s: {len(head)} byte(s) of an incomplete PDU arrived "
                    f"({what})\n  hex: {head[:64].hex(' ')}{more}")
        elif self.kind == "silence":
            text = f"nothing within {self.waited:g}s"
        else:
            text = f"connection {self.kind} by the peer"
        if self.parts:
            text += (f"\n  after {len(self.parts)} P-DATA-TF PDU(s) of a DIMSE message that was not complete:"
                     + _describe_parts(self.parts))
        return text


PARTS_SHOWN = 20  # a failure lists at most this many of a message's PDUs (the first ones and the last)


def _describe_parts(parts: tuple) -> str:
    """The PDUs of a message, numbered; past :data:`PARTS_SHOWN`, the first and last few and a count."""
    numbered = list(enumerate(parts))
    if len(parts) > PARTS_SHOWN:
        numbered = numbered[: PARTS_SHOWN - 3] + [(None, None)] + numbered[-2:]
    return "".join(f"\n  ... {len(parts) - PARTS_SHOWN + 1} more" if i is None
                   else f"\n  #{i + 1} {describe_received(r)}" for i, r in numbered)


def describe_received(received: Any) -> str:
    """One line for a received PDU (the wire layer's summary when it has one) and its hex."""
    try:
        from dicomconf.wire.dissect import summary

        text = summary(received.raw)
    except Exception:
        text = received.name if received.pdu is not None else f"undecodable: {received.error}"
    raw = received.raw
    shown = raw[:64].hex(" ")
    more = f" ... ({len(raw)} bytes)" if len(raw) > 64 else ""
    return f"{text}\n  hex: {shown}{more}"



def next_event(conn: Any, timeout: float, skip: tuple[str, ...] = ()) -> Event:
    """The next PDU, close/reset, or silence within ``timeout`` (PDUs named in ``skip`` are passed over)."""
    from dicomconf.scu.connection import Closed, Silence

    deadline = time.monotonic() + timeout
    while True:
        remaining = max(deadline - time.monotonic(), 0.0)
        try:
            received = conn.receive_pdu(remaining)
        except Closed as exc:
            return Event(exc.kind)
        except Silence:
            return Event("silence", waited=timeout, pending=getattr(conn, "pending", b""))
        except OSError as exc:
            return Event("closed", waited=timeout, received=str(exc))
        if received.name in skip:
            if time.monotonic() >= deadline:  # skipped PDUs kept coming: they do not extend the wait
                return Event("silence", waited=timeout)
            continue
        return Event("pdu", received)

def next_message(conn: Any, assembler: Any, timeout: float, skip: tuple[str, ...] = ()) -> Event:
    """The next whole DIMSE message, however many P-DATA-TF PDUs and PDVs carry it
    (PS3.8 9.3.5, Annex E), put together by ``assembler`` (a
    :class:`~dicomconf.ul.dimse.MessageAssembler` kept per connection), or the first other
    event (another PDU, close, silence).  A PDV sequence that breaks Annex E ends the wait
    with the PDU that broke it; the caller starts a fresh assembler then."""
    from dicomconf.ul.errors import RemoteProtocolError

    deadline = time.monotonic() + timeout
    parts: list[Any] = []
    while True:
        event = next_event(conn, max(deadline - time.monotonic(), 0.0), skip)
        pdu = event.received.pdu if event.kind == "pdu" else None
        if pdu is None or pdu.pdu_type != C.P_DATA_TF:
            return Event(event.kind, event.received, event.waited, tuple(parts))
        parts.append(event.received)
        try:
            messages = assembler.add_pdvs(pdu.pdvs)
        except RemoteProtocolError:
            return Event("pdu", event.received, parts=tuple(parts[:-1]), message=_BROKEN)
        if messages:
            return Event("message", parts[0], parts=tuple(parts), message=messages[0])
        if time.monotonic() >= deadline:  # P-DATA-TF kept coming, but no whole message within the wait
            return Event("silence", waited=timeout, parts=tuple(parts))

def check(spec: dict, event: Event) -> list[str]:
    """Why ``event`` does not satisfy the expectation ``spec`` (empty: it does)."""
    if "any" in spec:
        problems: list[str] = []
        for i, alt in enumerate(spec["any"]):
            p = check(alt, event)
            if not p:
                return []
            problems.append(f"alternative {i + 1}: " + "; ".join(p))
        return problems
    if spec.get("closed"):
        return [] if event.kind in ("closed", "reset") else [f"expected the connection to close, got {event.kind}"]
    if spec.get("reset"):
        return [] if event.kind == "reset" else [f"expected a reset (RST), got {event.kind}"]
    if "silence" in spec:
        if event.kind == "silence" and not event.pending:
            return []
        return [f"expected silence, got {event.describe()}"]
    if event.kind not in ("pdu", "message"):
        return [f"expected a PDU, got {event.describe()}"]
    received = event.received
    if "aborted" in spec:
        name, fields = "A-ABORT", spec["aborted"] if isinstance(spec["aborted"], dict) else {}
    else:
        name = spec["pdu"]
        fields = {k: v for k, v in spec.items() if k not in ("pdu", "on", "within", "save", "skip", "until")}
    if isinstance(name, int):
        got = received.raw[0] if received.raw else None
        return [] if got == name and not fields else [f"expected PDU type {name:#04x}, got {got!r}"]
    if received.pdu is None:
        return [f"expected {name}, got bytes that do not decode ({received.error})"]
    view = view_of(event)
    if view["pdu"] != name:
        return [f"expected {name}, got {view['pdu']}"]
    return match(fields, view)

def view_of(event: Event) -> dict[str, Any]:
    if event.kind == "message":
        return message_view(event.received.pdu, event.message, len(event.parts))
    return pdu_view(event.received.pdu)


def wants_message(spec: Any) -> bool:
    """True if an expectation (or one of its ``any`` alternatives) names a DIMSE message key."""
    if not isinstance(spec, dict):
        return False
    if any(wants_message(alt) for alt in spec.get("any") or ()):
        return True
    return spec.get("pdu") == "P-DATA-TF" and not MESSAGE_KEYS.isdisjoint(spec)
