"""The decoder fuzz target: one input through every decoder of a peer's bytes (PS3.8 9.3, Annex E; PS3.7 6.3.1).

Theory of operation
-------------------
:func:`run_one` takes one input and feeds it to everything in the sans-IO
core that reads bytes a peer chose: :func:`~dicomconf.ul.pdu.decode_pdu`,
:class:`~dicomconf.ul.framing.PDUReader` (the stream cut at a point the input
chooses), the item and sub-item decoders of :mod:`dicomconf.ul.items`, the
DIMSE command set readers (:func:`~dicomconf.ul.dimse_codec.read_command`,
:func:`~dicomconf.ul.dimse_codec.decode_command`), the data set decoder,
:class:`~dicomconf.ul.dimse.MessageAssembler` with every message it
completes checked by :func:`~dicomconf.ul.dimse_check.check_message`, and an
:class:`~dicomconf.ul.association.Association` that receives the stream.

The contract under test: a decoder raises nothing but
:class:`~dicomconf.ul.errors.RemoteProtocolError` (the protocol error class,
with its subclasses such as ``FramingError``), and ``Association.receive_data``
raises nothing at all.  :func:`run_one` swallows RemoteProtocolError from each
decoder and lets anything else out: the fuzz script and the corpus test count
that as a crash.  It also checks what the modules promise of each other, and
raises :class:`InvariantError` when a promise is broken:

- framing does not depend on the chunking: the PDUs of the stream cut in two
  are the PDUs of the stream fed whole, and the reader never holds more than
  its limit (PS3.8 9.3.1);
- a decoded PDU re-encodes to bytes that decode to the same PDU (PS3.8 9.3);
- the fast command reader accepts nothing the full decoder refuses and reads
  the same values (PS3.7 6.3.1, E.1), and a message the assembler completed
  can always produce its command set;
- an association fed the stream ends in a state of PS3.8 Table 9-10, writes
  only PDUs that decode, buffers no more than its reader's limit, and
  indicates messages only on accepted presentation contexts.

Input layout, so that the fuzzer's mutations also choose how bytes are read:
byte 0 is a set of flags (bits 0-1: the transfer syntax of data sets, bits
2-3: the reader's limit, bits 4-5: where the association starts), byte 1 the
user-information sub-item type to decode the payload as, bytes 2-3 the cut
point of the stream (big endian, modulo its length plus one); the rest is the
payload: one PDU, several, or any bytes.  :func:`seed` builds an input from a
payload.

This module imports the core and pydicom only (no atheris), so the corpus test
replays inputs without the fuzzer.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import is_dataclass

from dicomconf.ul import constants as C
from dicomconf.ul import fsm
from dicomconf.ul.association import Association
from dicomconf.ul.dimse import (
    Message,
    MessageAssembler,
    decode_command,
    decode_dataset,
    read_command,
)
from dicomconf.ul.dimse_check import check_message
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.events import MessageReceived
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
    decode_presentation_context_ac,
    decode_presentation_context_rq,
    decode_sub_item,
    decode_user_information,
    iter_items,
)
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ, PDataTF, decode_pdu

PREFIX = 4  # flags, sub-item type, cut point (2 bytes)

# Bits 0-1: the transfer syntax a data set is decoded with (PS3.5 A.1-A.5).
TRANSFER_SYNTAXES = (
    C.IMPLICIT_VR_LITTLE_ENDIAN,
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian (retired, still met)
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
)
# Bits 2-3: the reader's limit on a whole PDU, header included (None: no limit).
READER_LIMITS = (None, 16382 + C.PDU_HEADER_LENGTH, 256, 1 << 20)
# Bits 4-5: the association that receives the stream: (role, state before the stream).
STARTS = (("acceptor", "Sta2"), ("acceptor", "Sta6"), ("requestor", "Sta5"), ("requestor", "Sta6"))

# One accepted presentation context per transfer syntax, so that data sets reach the decoder
# in each (context ID 2k+1 carries TRANSFER_SYNTAXES[k]).
_CT = "1.2.840.10008.5.1.4.1.1.2"
_UI = UserInformation((MaximumLength(16382), ImplementationClassUID("1.2.826.0.1.3680043.9.9999")))
_RQ = AAssociateRQ(
    "FUZZ-SCP", "FUZZ-SCU",
    tuple(PresentationContextRQ(2 * k + 1, _CT, (ts,)) for k, ts in enumerate(TRANSFER_SYNTAXES)),
    _UI,
)
_AC = AAssociateAC(
    "FUZZ-SCP", "FUZZ-SCU",
    tuple(PresentationContextAC(2 * k + 1, C.PC_ACCEPTANCE, ts) for k, ts in enumerate(TRANSFER_SYNTAXES)),
    _UI,
)
_RQ_BYTES = _RQ.encode()
_AC_BYTES = _AC.encode()
_ITEM_CLAUSE = "PS3.8 9.3.2"
# The items stage reads at most this much of the payload: an item's length is 16 bits, and longer
# inputs only repeat what the first items exercise, at the cost of executions per second.
ITEM_WINDOW = 1024


class InvariantError(AssertionError):
    """A promise between the core's modules is broken (not a decoder error: a bug)."""


def seed(payload: bytes, flags: int = 0, sub_item: int = C.SUB_MAXIMUM_LENGTH, cut: int = 0) -> bytes:
    """An input for :func:`run_one` carrying ``payload`` with the given choices."""
    return struct.pack(">BBH", flags & 0xFF, sub_item & 0xFF, cut & 0xFFFF) + payload


def run_one(data: bytes) -> None:
    """Feed ``data`` to every decoder; raise only what is not the protocol error class (a crash).

    RemoteProtocolError from a decoder is the expected answer to bad bytes and
    is swallowed; :class:`InvariantError` and any other exception propagate.
    """
    if len(data) < PREFIX:
        data = data + bytes(PREFIX - len(data))
    flags, sub_type, cut = struct.unpack_from(">BBH", data)
    payload = bytes(data[PREFIX:])
    cut %= len(payload) + 1
    ts = TRANSFER_SYNTAXES[flags & 3]
    limit = READER_LIMITS[(flags >> 2) & 3]

    _one_pdu(payload)
    pdus = _framing(payload, cut, limit)
    _messages(pdus, ts)
    _items(payload, sub_type)
    _command(payload)
    try:
        decode_dataset(payload, ts)
    except RemoteProtocolError:
        pass
    _association(payload, cut, *STARTS[(flags >> 4) & 3])


# --------------------------------------------------------------------------
# Stages


def _one_pdu(payload: bytes) -> None:
    """The payload as one PDU; a PDU that decodes survives a round trip (PS3.8 9.3)."""
    try:
        pdu = decode_pdu(payload)
    except RemoteProtocolError:
        return
    try:
        again = decode_pdu(pdu.encode())
    except RemoteProtocolError as exc:
        raise InvariantError(f"a decoded {type(pdu).__name__} re-encodes to bytes that do not decode: {exc}") from exc
    if again != pdu:
        raise InvariantError(f"decode(encode(p)) != p for {type(pdu).__name__}: {again!r} != {pdu!r}")


def _feed(reader: PDUReader, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        try:
            out += [bytes(p) for p in reader.feed(chunk)]
        except RemoteProtocolError as exc:
            out += [bytes(p) for p in getattr(exc, "completed", ())]
            break
        finally:
            if reader.max_pdu_length is not None and reader.buffered > reader.max_pdu_length:
                raise InvariantError(f"reader holds {reader.buffered} bytes, above its limit {reader.max_pdu_length}")
    return out


def _framing(payload: bytes, cut: int, limit: int | None) -> list[bytes]:
    """The stream framed whole and cut in two: the same PDUs either way (PS3.8 9.3.1)."""
    whole = _feed(PDUReader(limit), [payload])
    split = _feed(PDUReader(limit), [payload[:cut], payload[cut:]])
    if whole != split:
        raise InvariantError(f"framing depends on chunking: {len(whole)} PDU(s) whole, {len(split)} cut at {cut}")
    return whole


def _messages(pdus: list[bytes], ts: str) -> None:
    """Each framed PDU decoded; the PDVs of the P-DATA-TFs assembled into messages (PS3.8 E.1-E.2)."""
    assembler = MessageAssembler(max_data_length=1 << 20)
    for raw in pdus:
        try:
            pdu = decode_pdu(raw)
        except RemoteProtocolError:
            continue
        if not isinstance(pdu, PDataTF):
            continue
        try:
            messages = assembler.add_pdvs(pdu.pdvs)
        except RemoteProtocolError:
            return
        for message in messages:
            _message(message, ts)


def _message(message: Message, ts: str) -> None:
    """Read everything a receiver reads of a completed message; only a data set may fail to decode."""
    repr(message)
    message.name, message.status, message.message_id, message.message_id_being_responded_to  # noqa: B018
    message.affected_sop_class_uid, message.affected_sop_instance_uid, message.data_length  # noqa: B018
    try:
        message.command  # noqa: B018 - a message from the fast reader decodes its command set here
    except RemoteProtocolError as exc:
        raise InvariantError(f"the assembler completed a message whose command set does not decode: {exc}") from exc
    if message.data is not None:
        try:
            message.dataset(ts)
        except RemoteProtocolError:
            pass
    check_message(message, ts)


def _items(payload: bytes, sub_type: int) -> None:
    """The payload as a list of items, and as the value of each item kind (PS3.8 9.3.2-9.3.3, D; PS3.7 D.3.3)."""
    view = memoryview(payload)[:ITEM_WINDOW]
    try:
        for item_type, value, offset in iter_items(view, 0, _ITEM_CLAUSE):
            try:
                if item_type == C.ITEM_PRESENTATION_CONTEXT_RQ:
                    decode_presentation_context_rq(value, offset)
                elif item_type == C.ITEM_PRESENTATION_CONTEXT_AC:
                    decode_presentation_context_ac(value, offset)
                elif item_type == C.ITEM_USER_INFORMATION:
                    decode_user_information(value, offset)
                else:
                    decode_sub_item(item_type, value, offset)
            except RemoteProtocolError:
                pass
    except RemoteProtocolError:
        pass
    for decode in (decode_presentation_context_rq, decode_presentation_context_ac, decode_user_information):
        try:
            decode(view, 0)
        except RemoteProtocolError:
            pass
    try:
        decode_sub_item(sub_type, view, 0, payload[0] if payload else 0)
    except RemoteProtocolError:
        pass


def _command(payload: bytes) -> None:
    """The payload as a command set: the fast reader never accepts what the full decoder refuses (PS3.7 6.3.1)."""
    values = read_command(payload)
    try:
        ds = decode_command(payload)
    except RemoteProtocolError as exc:
        if values is not None:
            raise InvariantError(f"read_command accepted a command set decode_command refuses: {exc}") from exc
        return
    if values is None:
        return
    for element, value in values.items():
        full = ds[element].value
        if full != value:
            raise InvariantError(f"(0000,{element:04X}): read_command read {value!r}, decode_command {full!r}")


def _set_up(role: str, state: str) -> Association:
    """A new association of ``role`` brought to ``state`` by a well-behaved peer (PS3.8 9.2)."""
    a = Association(role)
    if role == "acceptor":
        a.connection_made()
        if state == "Sta6":
            a.receive_data(_RQ_BYTES)
            a.send(_AC)
    else:
        a.send(_RQ)
        a.connection_made()
        if state == "Sta6":
            a.receive_data(_AC_BYTES)
    a.data_to_send()
    if a.state != state:
        raise InvariantError(f"{role} set up in {a.state}, not {state}")
    return a


# Setting an association up costs more than most inputs: each start is set up once and copied.  A copy
# shares the template's values, so every slot holding a mutable value is named here and made anew by
# _copy; the check below fails at import if Association grows a mutable slot this list lacks.
_FRESH = frozenset({"_outbox", "_reader", "_assembler", "accepted_contexts"})
_TEMPLATES = {start: _set_up(*start) for start in STARTS}
for _a in _TEMPLATES.values():
    for _slot in Association.__slots__:
        _value = getattr(_a, _slot)
        if _slot not in _FRESH and not (
            _value is None or isinstance(_value, (bool, int, str, bytes, tuple, RemoteProtocolError))
            or (is_dataclass(_value) and type(_value).__dataclass_params__.frozen)  # type: ignore[union-attr]
        ):
            raise RuntimeError(f"Association.{_slot} holds a {type(_value).__name__}: add it to _FRESH")


def _copy(start: tuple[str, str]) -> Association:
    template = _TEMPLATES[start]
    a = copy.copy(template)
    a._outbox = []
    a._reader = PDUReader(template._reader.max_pdu_length)
    a.accepted_contexts = dict(template.accepted_contexts)
    if template._assembler is not None:
        a._assembler = MessageAssembler(frozenset(a.accepted_contexts))
    return a


def _association(payload: bytes, cut: int, role: str, state: str) -> None:
    """The stream received by an association: nothing escapes, the table is followed (PS3.8 9.2, Table 9-10)."""
    a = _copy((role, state))
    events: list = []
    for chunk in (payload[:cut], payload[cut:]):
        try:
            events += a.receive_data(chunk)
        except RemoteProtocolError as exc:
            raise InvariantError(f"receive_data let a RemoteProtocolError out: {exc}") from exc
        reader = a._reader
        if reader.max_pdu_length is not None and reader.buffered > reader.max_pdu_length:
            raise InvariantError(f"association buffers {reader.buffered} bytes, above {reader.max_pdu_length}")
    if a.state not in fsm.STATES:
        raise InvariantError(f"association in {a.state!r}, not a state of Table 9-10")
    for raw in PDUReader().feed(a.data_to_send()):
        try:
            decode_pdu(raw)
        except RemoteProtocolError as exc:
            raise InvariantError(f"the association wrote a PDU that does not decode: {exc}") from exc
    for event in events:
        # The messages themselves were read in the assembler stage: here only what the association adds.
        if isinstance(event, MessageReceived) and event.message.context_id not in a.accepted_contexts:
            raise InvariantError(f"message indicated on context {event.message.context_id}, which was not accepted")
