"""DIMSE messages over P-DATA-TF: assembly, fragmentation, command sets (PS3.7, PS3.8 Annex E).

Theory of operation
-------------------
A DIMSE message (PS3.7 6.3) is a command set, optionally followed by a data
set, sent on one presentation context as a sequence of PDVs (PS3.8 9.3.5.1).
Each PDV carries a message control header (PS3.8 E.2): bit 0 says command
(1) or data set (0) fragment, bit 1 says last fragment of that part.

Inbound, :class:`MessageAssembler` takes PDVs one at a time, in the order
they arrived, and returns a :class:`Message` when one is complete.  It checks
what Annex E and PS3.7 require of the fragment sequence: the command comes
first, every fragment of a message is on one presentation context, the data
set follows iff Command Data Set Type (0000,0800) says so, and nothing of a
message follows its last fragment.  A violation raises
:class:`RemoteProtocolError` naming the clause and the A-ABORT reason.

The command set (implicit VR little endian, PS3.7 6.3.1) is read by the
struct reader :func:`~dicomconf.ul.dimse_codec.read_command` when it is
regular, and the pydicom ``Dataset`` is built only if ``Message.command`` is
asked for; an irregular one is decoded by pydicom at once, which refuses what
is malformed (see :mod:`dicomconf.ul.dimse_codec`, whose names this module
re-exports).  The data set is kept as the bytes that came, in the context's
transfer syntax, and decoded only when :meth:`Message.dataset` is asked.
Data set fragments are held as read-only memoryviews into the received
PDUs (a fragment of a writable buffer is copied, because the driver may reuse
it; so is one under 1 KiB, so that small views never pin large buffers, and
such small copies share one buffer) and joined once, when ``Message.data``
is first read; a consumer that writes pieces (``Message.data_parts``) never
joins them.  A receiver that must not hold a data set at all gives the
assembler a sink, which takes the fragments as they come (a file being
written, a digest, nothing); one that holds them gives a bound, past which
the data set is counted but dropped.

Outbound, :func:`fragment` turns a message into P-DATA-TF PDUs, one PDV
each, whose variable field never exceeds the peer's Maximum Length (PS3.8
D.1.1; 0 means unlimited).  The data set is sliced, never copied, until each
PDU's bytes are joined.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword

from dicomconf.ul import constants as C
from dicomconf.ul.dimse_codec import (  # re-exported: the contract names them in this module
    C_CANCEL_RQ,
    C_ECHO_RQ,
    C_ECHO_RSP,
    C_FIND_RQ,
    C_FIND_RSP,
    C_GET_RQ,
    C_GET_RSP,
    C_MOVE_RQ,
    C_MOVE_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
    COMMAND_CODES,
    COMMAND_FIELDS,
    DATA_SET_PRESENT,
    N_ACTION_RQ,
    N_ACTION_RSP,
    N_CREATE_RQ,
    N_CREATE_RSP,
    N_DELETE_RQ,
    N_DELETE_RSP,
    N_EVENT_REPORT_RQ,
    N_EVENT_REPORT_RSP,
    N_GET_RQ,
    N_GET_RSP,
    N_SET_RQ,
    N_SET_RSP,
    NO_DATA_SET,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PRIORITY_MEDIUM,
    STATUS_TABLE,
    decode_command,
    decode_dataset,
    encode_command,
    read_command,
    encode_dataset,
    status_meaning,
)
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.items import invalid
from dicomconf.ul.pdu import PDV, PDataTF

__all__ = [
    "C_CANCEL_RQ", "C_ECHO_RQ", "C_ECHO_RSP", "C_FIND_RQ", "C_FIND_RSP", "C_GET_RQ", "C_GET_RSP",
    "C_MOVE_RQ", "C_MOVE_RSP", "C_STORE_RQ", "C_STORE_RSP", "COMMAND_CODES", "COMMAND_FIELDS",
    "DATA_SET_PRESENT", "N_ACTION_RQ", "N_ACTION_RSP", "N_CREATE_RQ", "N_CREATE_RSP", "N_DELETE_RQ",
    "N_DELETE_RSP", "N_EVENT_REPORT_RQ", "N_EVENT_REPORT_RSP", "N_GET_RQ", "N_GET_RSP", "N_SET_RQ",
    "N_SET_RSP", "NO_DATA_SET", "PRIORITY_HIGH", "PRIORITY_LOW", "PRIORITY_MEDIUM", "STATUS_TABLE",
    "decode_command", "decode_dataset", "encode_command", "encode_dataset", "read_command", "status_meaning",
    "Message", "MessageAssembler", "MAX_COMMAND_SET_LENGTH", "message_pdvs", "fragment",
    "c_echo_rq", "c_echo_rsp", "c_store_rq", "c_store_rsp",
]

# --------------------------------------------------------------------------
# Messages


# Command elements the properties read, by element number (from pydicom's dictionary, group 0000).
_E_COMMAND_FIELD = tag_for_keyword("CommandField")
_E_MESSAGE_ID = tag_for_keyword("MessageID")
_E_RESPONDED_TO = tag_for_keyword("MessageIDBeingRespondedTo")
_E_STATUS = tag_for_keyword("Status")
_E_SOP_CLASS = tag_for_keyword("AffectedSOPClassUID")
_E_REQUESTED_SOP_CLASS = tag_for_keyword("RequestedSOPClassUID")
_E_SOP_INSTANCE = tag_for_keyword("AffectedSOPInstanceUID")
_E_DATA_SET_TYPE = tag_for_keyword("CommandDataSetType")
_E_PRIORITY = tag_for_keyword("Priority")
_NO_VALUES: dict[int, int | str] = {}


@dataclass(frozen=True, slots=True, repr=False, eq=False, init=False)
class Message:
    """One DIMSE message (PS3.7 6.3, 9.3): command set, and data set bytes or None.

    ``Message(context_id, command, data)`` takes the command set as a pydicom
    ``Dataset``.  A message assembled from the wire may instead hold the
    values :func:`~dicomconf.ul.dimse_codec.read_command` read and the
    encoded command set: its properties answer from those values, and
    ``command`` decodes the Dataset on first use (then the properties read
    the Dataset, so a change made to it is seen).
    """

    context_id: int
    _data: bytes | None
    _parts: tuple | None
    _command: Dataset | None
    _encoded: bytes | None
    _values: dict[int, int | str]
    _sink: Any
    _length: int | None

    def __init__(self, context_id: int, command: Dataset, data: bytes | None = None) -> None:
        setattr_ = object.__setattr__
        setattr_(self, "context_id", context_id)
        setattr_(self, "_data", data)
        setattr_(self, "_parts", None)
        setattr_(self, "_command", command)
        setattr_(self, "_encoded", None)
        setattr_(self, "_values", _NO_VALUES)
        setattr_(self, "_sink", None)
        setattr_(self, "_length", None)

    @classmethod
    def from_wire(
        cls, context_id: int, encoded: bytes, values: dict[int, int | str], data: bytes | None = None
    ) -> "Message":
        """A message whose command set ``encoded`` was read by ``read_command`` into ``values``."""
        msg = cls.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(msg, "context_id", context_id)
        setattr_(msg, "_data", data)
        setattr_(msg, "_parts", None)
        setattr_(msg, "_command", None)
        setattr_(msg, "_encoded", encoded)
        setattr_(msg, "_values", values)
        setattr_(msg, "_sink", None)
        setattr_(msg, "_length", None)
        return msg

    @property
    def wire_command(self) -> bytes | None:
        """The command set as it came from the wire; None for a message built from a Dataset."""
        return self._encoded

    @property
    def command(self) -> Dataset:
        """The command set as a pydicom Dataset (decoded on first use for a message from the wire)."""
        ds = self._command
        if ds is None:
            ds = decode_command(self._encoded)  # type: ignore[arg-type]
            object.__setattr__(self, "_command", ds)
        return ds

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.context_id, self.data, self.command) == (other.context_id, other.data, other.command)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        # Short: a data set may be megabytes, and messages end up in logs.
        ident = self.message_id if self.message_id is not None else self.message_id_being_responded_to
        status = "" if self.status is None else f", status={self.status:#06x}"
        length = self.data_length
        data = "no data set" if length is None else f"data={length} bytes"
        return f"Message({self.name}, context_id={self.context_id}, id={ident}{status}, {data})"

    def _get(self, element: int) -> Any:
        ds = self._command
        if ds is None:
            return self._values.get(element)
        elem = ds.get(element)
        return None if elem is None else elem.value

    def _uid(self, element: int) -> str | None:
        value = self._get(element)
        return None if value is None else str(value)

    @property
    def command_field(self) -> int:
        return int(self._get(_E_COMMAND_FIELD))

    @property
    def name(self) -> str:
        cf = self.command_field
        return COMMAND_FIELDS.get(cf, f"unknown command {cf:#06x}")

    @property
    def message_id(self) -> int | None:
        return self._get(_E_MESSAGE_ID)

    @property
    def message_id_being_responded_to(self) -> int | None:
        return self._get(_E_RESPONDED_TO)

    @property
    def status(self) -> int | None:
        return self._get(_E_STATUS)

    @property
    def priority(self) -> int | None:
        """Priority (0000,0700), None if absent (PS3.7 9.3.1.1); read without decoding the command set."""
        return self._get(_E_PRIORITY)

    @property
    def affected_sop_class_uid(self) -> str | None:
        return self._uid(_E_SOP_CLASS)

    @property
    def requested_sop_class_uid(self) -> str | None:
        return self._uid(_E_REQUESTED_SOP_CLASS)

    @property
    def affected_sop_instance_uid(self) -> str | None:
        return self._uid(_E_SOP_INSTANCE)

    @property
    def data_set_type(self) -> int | None:
        """Command Data Set Type (0000,0800), None if absent (PS3.7 E.1)."""
        return self._get(_E_DATA_SET_TYPE)

    @property
    def has_data_set(self) -> bool:
        """What Command Data Set Type (0000,0800) announces (PS3.7 E.1)."""
        ds = self._command
        if ds is None:
            return self._values[_E_DATA_SET_TYPE] != NO_DATA_SET
        return ds.get("CommandDataSetType", NO_DATA_SET) != NO_DATA_SET

    @property
    def is_response(self) -> bool:
        return bool(self.command_field & 0x8000)

    @property
    def data(self) -> bytes | None:
        """The data set bytes as received, or None (joined from its fragments on first use)."""
        data = self._data
        if data is None and self._parts is not None:
            data = b"".join(self._parts)
            object.__setattr__(self, "_data", data)
            object.__setattr__(self, "_parts", None)
        return data

    @property
    def data_parts(self) -> tuple:
        """The data set bytes as a tuple of buffers, without joining them (empty without data set).

        For a consumer that can take pieces (``os.writev``): received fragments
        are handed over as they are, saving a copy of the whole data set.
        """
        parts = self._parts
        if parts is not None:
            return parts
        return () if self._data is None else (self._data,)

    @property
    def data_length(self) -> int | None:
        """Length of the data set bytes as received (held, written to a sink or dropped), None without data set."""
        parts = self._parts
        if parts is not None:
            return sum(map(len, parts))
        if self._length is not None:
            return self._length
        return None if self._data is None else len(self._data)

    @property
    def data_sink(self) -> Any:
        """The sink the data set was written to instead of being held (``MessageAssembler(data_sink=...)``), or None."""
        return self._sink

    @property
    def data_dropped(self) -> bool:
        """True when the data set exceeded ``MessageAssembler``'s ``max_data_length`` and was not kept.

        ``data`` is then None and ``data_parts`` empty; ``data_length`` says how
        many bytes came.  A service answers such a request with a refusal
        (e.g. C-STORE A700, out of resources, PS3.4 B.2.3).
        """
        return self._length is not None and self._sink is None

    def _elsewhere(self, length: int, sink: Any) -> "Message":
        """This command with a data set of ``length`` bytes not held here: in ``sink``, or dropped (None)."""
        msg = self.with_data(())
        object.__setattr__(msg, "_parts", None)
        object.__setattr__(msg, "_length", length)
        object.__setattr__(msg, "_sink", sink)
        return msg

    def with_data(self, data: bytes | list | tuple) -> "Message":
        """This command with ``data`` as its data set: bytes, or a sequence of buffers to join on demand."""
        parts = None
        if not isinstance(data, bytes):
            parts, data = tuple(data), None
        if self._command is not None:
            msg = Message(self.context_id, self._command, data)
        else:
            msg = Message.from_wire(self.context_id, self._encoded, self._values, data)  # type: ignore[arg-type]
        object.__setattr__(msg, "_parts", parts)
        return msg

    def dataset(self, transfer_syntax: str) -> Dataset:
        """Decode the data set bytes with the context's ``transfer_syntax`` (PS3.5 10).

        A message without data set, or a transfer syntax pydicom does not
        know, is our misuse (:class:`LocalProtocolError`); bytes that do not
        decode are the peer's (:class:`RemoteProtocolError`, reason 6).
        """
        if self.data is None:
            held = " held here" if self._length is not None else ""
            raise LocalProtocolError(f"{self.name} carries no data set{held}")
        return decode_dataset(self.data, transfer_syntax)


# --------------------------------------------------------------------------
# Inbound: PDVs -> messages (PS3.8 Annex E)


def _unexpected(message: str, clause: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, clause, reason=C.ABORT_REASON_UNEXPECTED_PARAMETER)


_IDLE, _COMMAND, _DATA = 0, 1, 2
# A command set is a few group-0000 elements (PS3.7 E.1); one longer than this is refused (A-ABORT),
# so that a peer that never ends its command set cannot grow the receiver.
MAX_COMMAND_SET_LENGTH = 64 * 1024
# Fragments shorter than this are copied rather than held as views, so a peer sending
# tiny PDVs cannot make the assembler pin whole receive chunks for a few bytes each.
_SMALL_FRAGMENT = 1024


class MessageAssembler:
    """Turns PDVs, in arrival order, into :class:`Message` objects (PS3.8 E.1-E.2, PS3.7 6.3.1).

    ``accepted_contexts``, when given, is the set of presentation context IDs
    the association accepted; a PDV on any other ID is refused.  Without it,
    any odd ID 1-255 is taken.  After an error the assembler is poisoned:
    every further ``add`` raises the same error.

    Where a data set goes, so that no peer can grow the receiver without bound:

    * ``data_sink``, when given, is called with each command whose data set
      is due (a :class:`Message` without data set).  If it returns a sink,
      every fragment of that data set is passed to ``sink.write(buffer)`` as
      it arrives instead of being held, ``sink.end()`` is called after the
      last one, and the message comes out with ``data_sink`` set and
      ``data_length`` counted.  A sink does its own I/O and keeps its own
      failures (``write`` and ``end`` must not raise); the assembler does
      none.  A sink whose ``end`` was never called belongs to a message that
      did not complete (the peer aborted or broke the rules): the driver
      discards it.
    * a command set is bounded by :data:`MAX_COMMAND_SET_LENGTH`: past it the
      association is aborted, since no answer is possible without it.
    * ``max_data_length``, when given, bounds a data set that is held: once
      its fragments add up to more, they are released and the rest is only
      counted; the message comes out with ``data_dropped`` set.  The PDU
      sequence is still checked to the end, so the association stays usable
      and the service answers with a refusal.
    """

    __slots__ = (
        "accepted_contexts", "data_sink", "max_data_length",
        "_state", "_context", "_command", "_parts", "_error", "_sink", "_length", "_dropping",
    )

    def __init__(
        self,
        accepted_contexts: set[int] | frozenset[int] | None = None,
        *,
        data_sink: Callable[[Message], Any] | None = None,
        max_data_length: int | None = None,
    ) -> None:
        self.accepted_contexts = None if accepted_contexts is None else frozenset(accepted_contexts)
        self.data_sink = data_sink
        self.max_data_length = max_data_length
        self._state = _IDLE
        self._context = 0
        self._command: Message | None = None  # the command of a message whose data set is due
        self._parts: list[bytes | memoryview] = []
        self._error: RemoteProtocolError | None = None
        self._sink: Any = None  # where the data set in progress goes, if not held
        self._length = 0  # bytes of the data set in progress
        self._dropping = False  # the data set in progress exceeded max_data_length

    @property
    def in_progress(self) -> bool:
        """True while a message has started but is not complete."""
        return self._state != _IDLE

    def add(self, pdv: PDV) -> Message | None:
        """Take one PDV; return the message it completes, else None."""
        if self._error is not None:
            raise self._error
        try:
            return self._add(pdv)
        except RemoteProtocolError as exc:
            self._error = exc
            self._parts = []
            self._sink = None
            raise

    def add_pdata(self, pdata: PDataTF) -> list[Message]:
        """Take every PDV of a P-DATA-TF; return the messages completed."""
        return list(self.add_pdvs(pdata.pdvs))

    def add_pdvs(self, pdvs: tuple[PDV, ...] | list[PDV]) -> tuple[Message, ...]:
        """Take PDVs in order (those of one P-DATA-TF); return the messages completed."""
        if self._error is not None:
            raise self._error
        try:
            if len(pdvs) == 1:
                msg = self._add(pdvs[0])
                return () if msg is None else (msg,)
            return tuple([m for m in map(self._add, pdvs) if m is not None])
        except RemoteProtocolError as exc:
            self._error = exc
            self._parts = []
            self._sink = None
            raise

    def _add(self, pdv: PDV) -> Message | None:
        ctx = pdv.context_id
        mch = pdv.message_control_header
        is_command = mch & C.MCH_COMMAND
        is_last = mch & C.MCH_LAST
        state = self._state
        if state == _IDLE:
            if self.accepted_contexts is not None:
                if ctx not in self.accepted_contexts:
                    raise invalid(f"PDV on presentation context {ctx}, which was not accepted", "PS3.8 9.3.5.1", None)
            elif not ctx & 1:
                raise invalid(f"PDV on presentation context {ctx}: IDs are odd, 1-255", "PS3.8 9.3.2.2", None)
            if not is_command:
                raise _unexpected(
                    f"data set fragment on context {ctx} before any command fragment", "PS3.8 E.2, PS3.7 6.3.1"
                )
            self._context = ctx
            self._state = state = _COMMAND
            self._length = 0
        elif ctx != self._context:
            raise _unexpected(
                f"PDV on context {ctx} while a message on context {self._context} is incomplete",
                "PS3.8 E.1, PS3.7 6.3.1",
            )
        data = pdv.data
        if type(data) is not bytes:
            if type(data) is not memoryview:
                data = memoryview(data)
            if not data.readonly or len(data) < _SMALL_FRAGMENT:
                data = bytes(data)  # the driver may reuse a writable buffer; a small view would pin a big one
        if state == _COMMAND:
            if not is_command:
                raise _unexpected(
                    "data set fragment before the last command fragment", "PS3.8 E.2, PS3.7 6.3.1"
                )
            self._hold(data)
            self._length += len(data)
            if self._length > MAX_COMMAND_SET_LENGTH:
                raise RemoteProtocolError(
                    f"command set of more than {MAX_COMMAND_SET_LENGTH} bytes (a few hundred is usual)",
                    "PS3.7 6.3.1, E.1",
                    reason=C.ABORT_REASON_NOT_SPECIFIED,
                )
            if not is_last:
                return None
            parts, self._parts = self._parts, []
            encoded = parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else b"".join(parts)
            values = read_command(encoded)
            if values is None:
                message = Message(ctx, decode_command(encoded))  # irregular: pydicom decides, and may refuse
            else:
                message = Message.from_wire(ctx, encoded, values)
            if message.data_set_type == NO_DATA_SET:
                self._state = _IDLE
                return message
            self._command = message
            self._state = _DATA
            self._length = 0
            self._dropping = False
            self._sink = None if self.data_sink is None else self.data_sink(message)
            return None
        if is_command:
            raise _unexpected(
                f"command fragment on context {ctx} where the data set announced by Command Data Set Type "
                f"{self._command.data_set_type:#06x} was due",  # type: ignore[union-attr]
                "PS3.7 6.3.1, E.1; PS3.8 E.2",
            )
        sink = self._sink
        if sink is not None:
            sink.write(data)
            self._length += len(data)
        elif self._dropping:
            self._length += len(data)
        else:
            self._hold(data)
            limit = self.max_data_length
            if limit is not None:
                self._length += len(data)
                if self._length > limit:
                    self._dropping = True
                    self._parts = []
        if not is_last:
            return None
        head, self._command = self._command, None
        self._state = _IDLE
        if sink is not None:
            self._sink = None
            sink.end()
            return head._elsewhere(self._length, sink)  # type: ignore[union-attr]
        if self._dropping:
            return head._elsewhere(self._length, None)  # type: ignore[union-attr]
        parts, self._parts = self._parts, []
        # One bytes fragment is the data set; several are joined only if someone reads ``data``.
        return head.with_data(parts[0] if len(parts) == 1 and isinstance(parts[0], bytes) else parts)  # type: ignore[union-attr]

    def _hold(self, data: bytes | memoryview) -> None:
        """Keep a fragment (PS3.8 E.1); small ones after the first share one bytearray, so that empty or
        tiny fragments, which the length bounds barely count, cost their bytes and not an object each."""
        parts = self._parts
        if not parts or len(data) >= _SMALL_FRAGMENT:
            parts.append(data)
        elif type(parts[-1]) is bytearray:
            parts[-1] += data
        elif len(parts[-1]) < _SMALL_FRAGMENT:
            parts[-1] = bytearray(parts[-1]) + data
        else:
            parts.append(bytearray(data))


# --------------------------------------------------------------------------
# Outbound: messages -> P-DATA-TF PDUs (PS3.8 9.3.5, E.2, D.1.1)

_PDATA_ONE_PDV = struct.Struct(">BBIIBB")  # PDU header + PDV item header + message control header
_PDATA_OVERHEAD = 6  # PDV item length (4), context ID (1), message control header (1)
_MAX_FRAGMENT = 0xFFFFFFFF - _PDATA_OVERHEAD


def _fragments(payload: bytes, limit: int) -> list[memoryview]:
    view = memoryview(payload)
    if not view:
        return [view]
    return [view[i : i + limit] for i in range(0, len(view), limit)]


def _limit(max_pdu_length: int) -> int:
    if max_pdu_length < 0:
        raise LocalProtocolError(f"maximum PDU length {max_pdu_length} is negative")
    if max_pdu_length == 0:
        return _MAX_FRAGMENT
    # PS3.8 E.1: "Each fragment of a message shall consist of an even number of bytes".
    limit = min(max_pdu_length - _PDATA_OVERHEAD, _MAX_FRAGMENT) & ~1
    if limit <= 0:
        raise LocalProtocolError(
            f"a maximum PDU length of {max_pdu_length} leaves no room for an even-length PDV fragment "
            "(PS3.8 D.1.1, E.1)"
        )
    return limit


def _check_data(message: Message) -> None:
    if "CommandDataSetType" not in message.command:
        raise LocalProtocolError(f"{message.name} lacks Command Data Set Type (0000,0800) (PS3.7 E.1)")
    if message.has_data_set != (message.data is not None):
        raise LocalProtocolError(
            f"{message.name}: Command Data Set Type {message.command.CommandDataSetType:#06x} "
            f"disagrees with data {'absent' if message.data is None else 'present'} (PS3.7 E.1)"
        )


def message_pdvs(message: Message, max_pdu_length: int) -> list[PDV]:
    """The PDVs of ``message``, each sized to fit one P-DATA-TF under ``max_pdu_length`` (PS3.8 E.2)."""
    _check_data(message)
    limit = _limit(max_pdu_length)
    ctx = message.context_id
    out: list[PDV] = []
    for payload, kind in ((encode_command(message.command), C.MCH_COMMAND), (message.data, 0)):
        if payload is None:
            continue
        pieces = _fragments(payload, limit)
        last = len(pieces) - 1
        out += [PDV(ctx, kind | (C.MCH_LAST if i == last else 0), p) for i, p in enumerate(pieces)]
    return out


def fragment(message: Message, max_pdu_length: int) -> list[bytes]:
    """Encode ``message`` as P-DATA-TF PDUs of one PDV each (PS3.8 9.3.5, E.2).

    The variable field of each PDU is at most ``max_pdu_length`` bytes (the
    peer's Maximum Length sub-item, PS3.8 D.1.1; 0 means unlimited).  The
    command fragments carry bit 0 set, the final fragment of the command and
    of the data set carries bit 1.
    """
    pack = _PDATA_ONE_PDV.pack
    out = []
    for pdv in message_pdvs(message, max_pdu_length):
        n = len(pdv.data)
        out.append(
            b"".join((pack(C.P_DATA_TF, 0, n + _PDATA_OVERHEAD, n + 2, pdv.context_id, pdv.message_control_header),
                      pdv.data))
        )
    return out


# --------------------------------------------------------------------------
# Builders (PS3.7 9.3.1 C-STORE, 9.3.5 C-ECHO)


def _command(command_field: int, sop_class_uid: str, data_set: bool) -> Dataset:
    ds = Dataset()
    ds.AffectedSOPClassUID = sop_class_uid
    ds.CommandField = command_field
    ds.CommandDataSetType = DATA_SET_PRESENT if data_set else NO_DATA_SET
    return ds


def c_echo_rq(message_id: int, *, context_id: int = 1, sop_class_uid: str = C.VERIFICATION_SOP_CLASS) -> Message:
    """C-ECHO-RQ (PS3.7 9.3.5.1)."""
    ds = _command(C_ECHO_RQ, sop_class_uid, False)
    ds.MessageID = message_id
    return Message(context_id, ds)


def c_echo_rsp(
    message_id_being_responded_to: int | Message,
    status: int = 0x0000,
    *,
    context_id: int | None = None,
    sop_class_uid: str | None = None,
) -> Message:
    """C-ECHO-RSP (PS3.7 9.3.5.2); pass the request Message to answer it on its context."""
    rq = message_id_being_responded_to if isinstance(message_id_being_responded_to, Message) else None
    msg_id = rq.message_id if rq is not None else message_id_being_responded_to
    if sop_class_uid is None:
        sop_class_uid = (rq.affected_sop_class_uid if rq is not None else None) or C.VERIFICATION_SOP_CLASS
    if context_id is None:
        context_id = rq.context_id if rq is not None else 1
    ds = _command(C_ECHO_RSP, sop_class_uid, False)
    ds.MessageIDBeingRespondedTo = msg_id
    ds.Status = status
    return Message(context_id, ds)


def c_store_rq(
    message_id: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    priority: int = PRIORITY_MEDIUM,
    move_originator: tuple[str, int] | None = None,
    *,
    context_id: int = 1,
    data: bytes | None = b"",
) -> Message:
    """C-STORE-RQ (PS3.7 9.3.1.1); ``move_originator`` is (AE title, message ID) of a C-MOVE."""
    ds = _command(C_STORE_RQ, sop_class_uid, True)
    ds.MessageID = message_id
    ds.Priority = priority
    ds.AffectedSOPInstanceUID = sop_instance_uid
    if move_originator is not None:
        ds.MoveOriginatorApplicationEntityTitle = move_originator[0]
        ds.MoveOriginatorMessageID = move_originator[1]
    return Message(context_id, ds, data)


def c_store_rsp(
    rq: Message | None = None,
    status: int = 0x0000,
    *,
    message_id_being_responded_to: int | None = None,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
    context_id: int | None = None,
    error_comment: str | None = None,
) -> Message:
    """C-STORE-RSP (PS3.7 9.3.1.2), answering ``rq`` or built from the fields given."""
    if rq is not None:
        message_id_being_responded_to = rq.message_id
        sop_class_uid = sop_class_uid or rq.affected_sop_class_uid
        sop_instance_uid = sop_instance_uid or rq.affected_sop_instance_uid
        context_id = rq.context_id if context_id is None else context_id
    if message_id_being_responded_to is None or sop_class_uid is None or sop_instance_uid is None:
        raise LocalProtocolError("C-STORE-RSP needs the request, or its message ID, SOP class and instance UIDs")
    ds = _command(C_STORE_RSP, sop_class_uid, False)
    ds.MessageIDBeingRespondedTo = message_id_being_responded_to
    ds.Status = status
    ds.AffectedSOPInstanceUID = sop_instance_uid
    if error_comment is not None:
        ds.ErrorComment = error_comment
    return Message(1 if context_id is None else context_id, ds)
