"""Repeated C-ECHO-RQs answered from templates (PS3.7 9.1.5, 9.3.5; PS3.8 9.3.5, Table 9-10).

Theory of operation
-------------------
A modality checks its association with the same C-ECHO-RQ every time: the
same P-DATA-TF, byte for byte, but for the two bytes of its Message ID
(0000,0110).  The answer the general path gives is then the same too, but
for the Message ID Being Responded To (0000,0120), which repeats those two
bytes.  :class:`EchoTemplates` keeps, for each such request a driver has
answered through the general path (:meth:`EchoTemplates.learn`), the
request's bytes around its Message ID value and the answer's bytes around
the value it echoes.  :meth:`EchoTemplates.match` recognises a whole
P-DATA-TF of that form and builds the answer by copying the two bytes.

The state machine still moves by its table: the association's
:meth:`~dicomconf.ul.association.Association.answer_repeated_echo` looks up
Evt10 (P-DATA-TF received) and then Evt9 (P-DATA request) in PS3.8 Table
9-10 for its state and takes their actions' one next state (DT-2, DT-1 in
Sta6: :data:`ECHO_STEPS`), and only when the association is idle between
messages (nothing buffered, no message half assembled) and the request's
presentation context is accepted.  Anything else goes the general way.

Templates are learned, never written by hand, so a template's answer is the
general path's answer by construction.  At most :data:`MAX_TEMPLATES`
request forms are kept (SCUs in the field use a handful); later forms are
answered the general way.
"""

from __future__ import annotations

import struct

from dicomconf.ul import constants as C
from dicomconf.ul import fsm
from dicomconf.ul.pdu import PDV, PDataTF

MAX_TEMPLATES = 16
_MESSAGE_ID = (0x0000, 0x0110)  # PS3.7 E.1: Message ID
_RESPONDED_TO = (0x0000, 0x0120)  # PS3.7 E.1: Message ID Being Responded To
_ELEMENT = struct.Struct("<HHI")  # implicit VR little endian element header (PS3.5 7.1.3; PS3.7 6.3.1)
_PDV_HEADER = C.PDU_HEADER_LENGTH + 6  # PDU header, PDV item length, context ID, message control header


def _echo_steps() -> tuple[tuple[str, str, str], ...] | None:
    """(event, action, next state) for a P-DATA-TF received and then answered in Sta6, from Table 9-10.

    None when either action could lead to more than one state (then there is no lane).
    """
    steps, state = [], "Sta6"
    for event in ("Evt10", "Evt9"):
        action = fsm.TRANSITIONS.get((state, event))
        if action is None or len(fsm.ACTIONS[action].next_states) != 1:
            return None
        nxt = fsm.ACTIONS[action].next_states[0]
        steps.append((event, action, nxt))
        state = nxt
    return tuple(steps) if state == "Sta6" else None


ECHO_STEPS = _echo_steps()  # (("Evt10", "DT-2", "Sta6"), ("Evt9", "DT-1", "Sta6"))


def _value_offset(command: bytes, tag: tuple[int, int]) -> int | None:
    """Offset of the two-byte value of ``tag`` in an implicit VR little endian command set, or None."""
    pos, end = 0, len(command)
    while pos + 8 <= end:
        group, element, length = _ELEMENT.unpack_from(command, pos)
        if (group, element) == tag:
            return pos + 8 if length == 2 and pos + 10 <= end else None
        pos += 8 + length
    return None


class EchoTemplates:
    """Request forms of C-ECHO-RQ answered before, and their answers (see the module docstring)."""

    __slots__ = ("_by_length", "count", "hits")

    def __init__(self) -> None:
        self._by_length: dict[int, list[tuple[bytes, bytes, int, int, bytes, bytes]]] = {}
        self.count = 0  # templates kept
        self.hits = 0  # requests answered from a template (counted by the association that answered)

    def learn(self, context_id: int, request_command: bytes, answer: PDataTF) -> bool:
        """Keep the form of a C-ECHO-RQ command on ``context_id`` and the P-DATA-TF that answered it.

        ``request_command`` is the command set as received; ``answer`` the one
        P-DATA-TF, a single last command fragment, the general path sent.
        True if a new template was kept.
        """
        if self.count >= MAX_TEMPLATES or len(answer.pdvs) != 1:
            return False
        request = PDataTF((PDV(context_id, C.MCH_COMMAND | C.MCH_LAST, request_command),)).encode()
        if self.match(request) is not None:
            return False
        reply = answer.encode()
        at = _value_offset(request_command, _MESSAGE_ID)
        answer_at = _value_offset(bytes(answer.pdvs[0].data), _RESPONDED_TO)
        if at is None or answer_at is None:
            return False
        at += _PDV_HEADER
        answer_at += _PDV_HEADER
        if reply[answer_at:answer_at + 2] != request[at:at + 2]:
            return False  # the answer does not echo the Message ID as it came
        template = (request[:at], request[at + 2:], at, context_id, reply[:answer_at], reply[answer_at + 2:])
        self._by_length.setdefault(len(request), []).append(template)
        self.count += 1
        return True

    def match(self, data: bytes) -> tuple[int, bytes] | None:
        """(context ID, answer bytes) when ``data`` is exactly one P-DATA-TF of a learned form, else None."""
        templates = self._by_length.get(len(data))
        if templates is None or type(data) is not bytes:
            return None
        for prefix, suffix, at, context_id, answer_prefix, answer_suffix in templates:
            if data.startswith(prefix) and data.endswith(suffix):
                return context_id, answer_prefix + data[at:at + 2] + answer_suffix
        return None


__all__ = ["ECHO_STEPS", "MAX_TEMPLATES", "EchoTemplates"]
