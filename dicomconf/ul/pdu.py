"""The seven Upper Layer PDUs and their strict codec (PS3.8 9.3).

Theory of operation
-------------------
Each PDU is a frozen, slotted dataclass with the standard's field names and an
``encode()`` that returns its bytes.  :func:`decode_pdu` takes the bytes of one
whole PDU (header included, as :class:`dicomconf.ul.framing.PDUReader` yields
them) and returns the matching object; ``decode_pdu(p.encode()) == p`` for
every legal ``p``, and ``decode_pdu(b).encode() == b`` for every legal ``b``.

The decoder is strict where PS3.8 is strict (lengths, mandatory items, item
placement) and lenient where it says "not tested on receipt" (reserved fields,
protocol version bits other than bit 0, AE-title padding).  Whatever the
bytes, the only exception it raises is :class:`RemoteProtocolError`, which
carries the A-ABORT (source, reason) to answer with.

Items repeated on every association are decoded and encoded through the
per-value caches of :mod:`dicomconf.ul.items` (presentation context and
user information items by their exact bytes; AE titles and the application
context item per value); fieldless PDUs decode to one shared instance.  A
whole A-ASSOCIATE-RQ/AC is kept by its exact body bytes too (a modality
repeats its request byte for byte), under the same rules (bounded, successful
decodes only, never one carrying a user identity), so a repeated request
decodes to the very object decoded before.  An A-ASSOCIATE-AC whose owner
vouches that it is immutable all the way down may have its bytes pinned
(:func:`pin_encoding`): its ``encode()`` then returns them without work.

Two values the standard requires to be echoed survive a round trip: the
32-byte reserved block of the A-ASSOCIATE-RQ/AC (``reserved``, echoed by the
acceptor, PS3.8 9.3.3) and the protocol version word.  Every other reserved
field is encoded as zero.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import ClassVar, Union

from dicomconf.ul import constants as C
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.items import (
    _ITEM_HEADER,
    ENCODE_MISFITS,
    _ItemCache,
    PresentationContextAC,
    PresentationContextRQ,
    UnknownItem,
    UserInformation,
    checked_encode,
    decode_presentation_context_ac,
    decode_presentation_context_rq,
    decode_user_information,
    encode_error,
    encode_text,
    header,
    invalid,
    iter_items,
    text,
)

_PDU_HEADER = struct.Struct(">BBI")
_ASSOC_FIXED = struct.Struct(">HH16s16s32s")  # version, reserved, called, calling, reserved
_PDV_HEADER = struct.Struct(">IBB")
_FOUR = struct.Struct(">BBBB")
ASSOC_FIXED_LENGTH = _ASSOC_FIXED.size  # 68
ZERO_RESERVED = bytes(32)


@functools.lru_cache(maxsize=256, typed=True)
def encode_ae_title(title: str) -> bytes:
    """Encode an AE title into its 16-byte field, space padded (PS3.8 9.3.2).

    Kept per title (a pure function of a str); a title that cannot be encoded raises each time.
    """
    raw = encode_text(title)
    if len(raw) > C.AE_TITLE_LENGTH:
        raise LocalProtocolError(f"AE title {title!r} is longer than 16 bytes")
    return raw.ljust(C.AE_TITLE_LENGTH, b" ")


def ae_title_problem(title: str) -> str | None:
    """Why ``title`` cannot be an AE title we send or answer to, or None (PS3.8 9.3.2; PS3.5 6.2, VR AE:
    16 characters at most of the default repertoire, no backslash or control character, not all spaces).

    The phrase reads after the title: ``f"AE title {title!r} {problem}"``.
    """
    if not title.strip():
        return "is empty or all spaces (PS3.8 9.3.2)"
    if len(title) > C.AE_TITLE_LENGTH:
        return f"is longer than {C.AE_TITLE_LENGTH} characters (PS3.8 9.3.2)"
    if any(not " " <= c <= "~" or c == "\\" for c in title):
        return "may hold only printable ASCII characters, no backslash (PS3.5 6.2, VR AE)"
    return None


def decode_ae_title(raw: bytes) -> str:
    """Decode a 16-byte AE title field; trailing padding is not significant."""
    return raw.decode("latin-1").rstrip(" \x00")


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return _PDU_HEADER.pack(pdu_type, 0, len(body)) + body


# --------------------------------------------------------------------------
# A-ASSOCIATE-RQ / AC


@dataclass(frozen=True, slots=True)
class AAssociateRQ:
    """A-ASSOCIATE-RQ PDU (PS3.8 9.3.2, Table 9-11)."""

    pdu_type: ClassVar[int] = C.A_ASSOCIATE_RQ
    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextRQ, ...]
    user_information: UserInformation = field(default_factory=UserInformation)
    application_context_name: str = C.APPLICATION_CONTEXT_NAME
    protocol_version: int = C.PROTOCOL_VERSION
    reserved: bytes = ZERO_RESERVED
    unknown_items: tuple[UnknownItem, ...] = ()

    @checked_encode
    def encode(self) -> bytes:
        return _pdu(self.pdu_type, _encode_assoc(self))


@dataclass(frozen=True, slots=True)
class AAssociateAC:
    """A-ASSOCIATE-AC PDU (PS3.8 9.3.3, Table 9-17).

    ``called_ae_title``, ``calling_ae_title`` and ``reserved`` echo the RQ but
    are not tested on receipt.
    """

    pdu_type: ClassVar[int] = C.A_ASSOCIATE_AC
    called_ae_title: str
    calling_ae_title: str
    presentation_contexts: tuple[PresentationContextAC, ...]
    user_information: UserInformation = field(default_factory=UserInformation)
    application_context_name: str = C.APPLICATION_CONTEXT_NAME
    protocol_version: int = C.PROTOCOL_VERSION
    reserved: bytes = ZERO_RESERVED
    unknown_items: tuple[UnknownItem, ...] = ()

    def encode(self) -> bytes:
        pinned = _PINNED.get(id(self))
        if pinned is not None and pinned[0] is self:
            return pinned[1]
        return self._encode()

    @checked_encode
    def _encode(self) -> bytes:
        return _pdu(self.pdu_type, _encode_assoc(self))


# id(AC) -> (the AC, its bytes); the AC is held, so its id cannot be reused while pinned.
_PINNED: dict[int, tuple[AAssociateAC, bytes]] = {}
PINNED_LIMIT = 256


def pin_encoding(ac: AAssociateAC) -> bytes:
    """Encode ``ac`` once and have its ``encode()`` return those bytes from now on (until unpinned).

    Only for an AC its owner keeps immutable all the way down (str, int,
    bytes and tuples of frozen items, as :func:`~dicomconf.ul.negotiation.negotiate`
    builds them): the bytes are keyed by the object's identity, not its
    value.  At most :data:`PINNED_LIMIT` are pinned; past it the oldest is
    released (its ``encode()`` works again, uncached).
    """
    data = ac._encode()
    if len(_PINNED) >= PINNED_LIMIT:
        try:
            del _PINNED[next(iter(_PINNED))]
        except (RuntimeError, KeyError, StopIteration):  # another thread changed it meanwhile
            _PINNED.clear()
    _PINNED[id(ac)] = (ac, data)
    return data


def unpin_encoding(ac: AAssociateAC) -> None:
    """Forget the bytes :func:`pin_encoding` kept for ``ac`` (if any)."""
    pinned = _PINNED.get(id(ac))
    if pinned is not None and pinned[0] is ac:
        _PINNED.pop(id(ac), None)


def _encode_assoc(p: AAssociateRQ | AAssociateAC) -> bytes:
    if len(p.reserved) != 32:
        raise LocalProtocolError("the A-ASSOCIATE reserved block is 32 bytes")
    fixed = _ASSOC_FIXED.pack(
        p.protocol_version, 0, encode_ae_title(p.called_ae_title), encode_ae_title(p.calling_ae_title), p.reserved
    )
    items = [_application_context_item(p.application_context_name)]
    items += [pc.encode() for pc in p.presentation_contexts]
    items.append(p.user_information.encode())
    items += [u.encode() for u in p.unknown_items]
    return fixed + b"".join(items)


@functools.lru_cache(maxsize=64, typed=True)
def _application_context_item(name: str) -> bytes:
    """Application Context Item 10H (PS3.8 9.3.2.1), kept per name (a pure function of a str)."""
    return header(C.ITEM_APPLICATION_CONTEXT, encode_text(name))


class _AssociateCache(_ItemCache):
    """Whole A-ASSOCIATE-RQ or -AC PDUs by their exact body bytes (the rules of :class:`_ItemCache`)."""

    __slots__ = ()

    @staticmethod
    def keep(item: object) -> bool:
        return _ItemCache.keep(item.user_information)  # type: ignore[attr-defined]


_decode_rq = _AssociateCache(lambda body, _base: _decode_assoc_body(C.A_ASSOCIATE_RQ, body), 64, 8192)
_decode_ac = _AssociateCache(lambda body, _base: _decode_assoc_body(C.A_ASSOCIATE_AC, body), 64, 8192)


def _decode_assoc(pdu_type: int, body: memoryview) -> AAssociateRQ | AAssociateAC:
    """An A-ASSOCIATE-RQ/AC from its body, through the cache of whole PDUs (see the module docstring)."""
    return (_decode_rq if pdu_type == C.A_ASSOCIATE_RQ else _decode_ac)(body, 0)


def _decode_assoc_body(pdu_type: int, body: memoryview) -> AAssociateRQ | AAssociateAC:
    """The fixed fields and the items of an A-ASSOCIATE-RQ/AC (PS3.8 9.3.2, 9.3.3).

    The items are walked inline; at the first header that is short or
    overruns the PDU, :func:`~dicomconf.ul.items.iter_items` walks them again
    and raises its error, so every structural fault is reported by one function.
    """
    is_rq = pdu_type == C.A_ASSOCIATE_RQ
    clause = "PS3.8 9.3.2" if is_rq else "PS3.8 9.3.3"
    end = len(body)
    if end < ASSOC_FIXED_LENGTH:
        raise invalid(f"PDU length {end} is shorter than the {ASSOC_FIXED_LENGTH} bytes of fixed fields", clause, 2)
    version, _res, called, calling, reserved = _ASSOC_FIXED.unpack_from(body)
    pc_type = C.ITEM_PRESENTATION_CONTEXT_RQ if is_rq else C.ITEM_PRESENTATION_CONTEXT_AC
    pc_wrong_type = C.ITEM_PRESENTATION_CONTEXT_AC if is_rq else C.ITEM_PRESENTATION_CONTEXT_RQ
    decode_pc = decode_presentation_context_rq if is_rq else decode_presentation_context_ac
    app_context: str | None = None
    contexts: list = []
    user_info: UserInformation | None = None
    unknown: list[UnknownItem] = []
    base = C.PDU_HEADER_LENGTH + ASSOC_FIXED_LENGTH
    unpack = _ITEM_HEADER.unpack_from
    pos = ASSOC_FIXED_LENGTH
    while pos < end:
        at = pos + 4  # the item's value
        if at > end or at + unpack(body, pos)[2] > end:
            for _ in iter_items(body[ASSOC_FIXED_LENGTH:], base, clause):
                pass  # raises for this item's header
        item_type, _reserved, length = unpack(body, pos)
        pos = at + length
        value = body[at:pos]
        off = C.PDU_HEADER_LENGTH + at
        if item_type == pc_type:
            contexts.append(decode_pc(value, off))
        elif item_type == C.ITEM_USER_INFORMATION:
            if user_info is not None:
                raise invalid("more than one user information item", clause, off - 4)
            user_info = decode_user_information(value, off)
        elif item_type == C.ITEM_APPLICATION_CONTEXT:
            if app_context is not None:
                raise invalid("more than one application context item", clause, off - 4)
            app_context = text(value)
        elif item_type in (pc_wrong_type, C.ITEM_ABSTRACT_SYNTAX, C.ITEM_TRANSFER_SYNTAX) or (
            0x51 <= item_type <= 0x5F
        ):
            raise RemoteProtocolError(
                f"item {item_type:#04x} does not belong in the variable field of this PDU",
                clause,
                reason=C.ABORT_REASON_UNEXPECTED_PARAMETER,
                offset=off - 4,
            )
        else:
            unknown.append(UnknownItem(item_type, bytes(value)))
    if app_context is None:
        raise invalid("no application context item", clause, base)
    if not contexts:
        raise invalid("no presentation context item", clause, base)
    if user_info is None:
        raise invalid("no user information item", clause, base)
    cls = AAssociateRQ if is_rq else AAssociateAC
    # Positional, in field order (called, calling, contexts, user information, application context,
    # protocol version, reserved, unknown items).
    return cls(
        decode_ae_title(called),
        decode_ae_title(calling),
        tuple(contexts),
        user_info,
        app_context,
        version,
        reserved,
        tuple(unknown),
    )


# --------------------------------------------------------------------------
# A-ASSOCIATE-RJ, A-RELEASE-RQ/RP, A-ABORT: four-byte bodies


@dataclass(frozen=True, slots=True)
class AAssociateRJ:
    """A-ASSOCIATE-RJ PDU (PS3.8 9.3.4, Table 9-21)."""

    pdu_type: ClassVar[int] = C.A_ASSOCIATE_RJ
    result: int
    source: int
    reason: int

    @checked_encode
    def encode(self) -> bytes:
        return _pdu(self.pdu_type, _FOUR.pack(0, self.result, self.source, self.reason))


@dataclass(frozen=True, slots=True)
class AReleaseRQ:
    """A-RELEASE-RQ PDU (PS3.8 9.3.6)."""

    pdu_type: ClassVar[int] = C.A_RELEASE_RQ

    def encode(self) -> bytes:
        """Its ten bytes, always the same: four reserved bytes after the header (no field can misfit)."""
        return _RELEASE_RQ_BYTES


@dataclass(frozen=True, slots=True)
class AReleaseRP:
    """A-RELEASE-RP PDU (PS3.8 9.3.7)."""

    pdu_type: ClassVar[int] = C.A_RELEASE_RP

    def encode(self) -> bytes:
        """Its ten bytes, always the same: four reserved bytes after the header (no field can misfit)."""
        return _RELEASE_RP_BYTES


_RELEASE_RQ_BYTES = _pdu(C.A_RELEASE_RQ, bytes(4))
_RELEASE_RP_BYTES = _pdu(C.A_RELEASE_RP, bytes(4))
# Fieldless and frozen, so one instance of each serves every decode.
_RELEASE_RQ = AReleaseRQ()
_RELEASE_RP = AReleaseRP()


@dataclass(frozen=True, slots=True)
class AAbort:
    """A-ABORT PDU (PS3.8 9.3.8, Table 9-26).

    ``reason`` is significant only when ``source`` is 2 (service-provider).
    """

    pdu_type: ClassVar[int] = C.A_ABORT
    source: int = C.ABORT_SOURCE_USER
    reason: int = C.ABORT_REASON_NOT_SPECIFIED

    @checked_encode
    def encode(self) -> bytes:
        return _pdu(self.pdu_type, _FOUR.pack(0, 0, self.source, self.reason))


# --------------------------------------------------------------------------
# P-DATA-TF


@dataclass(frozen=True, slots=True, repr=False)
class PDV:
    """A Presentation Data Value Item (PS3.8 9.3.5.1) with its message control header (Annex E.2).

    ``data`` is whatever buffer the PDV came in (a memoryview into the PDU
    when decoded, so no copy is made).
    """

    context_id: int
    message_control_header: int
    data: bytes | memoryview

    def __repr__(self) -> str:
        kind = "command" if self.is_command else "data"
        last = ", last" if self.is_last else ""
        return f"PDV(context_id={self.context_id}, {kind}{last}, {len(self.data)} bytes)"

    @property
    def is_command(self) -> bool:
        return bool(self.message_control_header & C.MCH_COMMAND)

    @property
    def is_last(self) -> bool:
        return bool(self.message_control_header & C.MCH_LAST)

    @checked_encode
    def encode(self) -> bytes:
        """The PDV item's bytes: item length, context ID, message control header, data."""
        return b"".join((_PDV_HEADER.pack(len(self.data) + 2, self.context_id, self.message_control_header), self.data))


@dataclass(frozen=True, slots=True)
class PDataTF:
    """P-DATA-TF PDU (PS3.8 9.3.5): one or more PDV items."""

    pdu_type: ClassVar[int] = C.P_DATA_TF
    pdvs: tuple[PDV, ...]

    def encode(self) -> bytes:
        """Header and PDV items joined once: the PDV data is copied exactly one time.

        A field that does not fit raises :class:`LocalProtocolError`, as
        :func:`~dicomconf.ul.items.checked_encode` makes the other encoders do.
        """
        try:
            parts: list[bytes | memoryview] = [b""]
            length = 0
            for pdv in self.pdvs:
                n = len(pdv.data)
                parts.append(_PDV_HEADER.pack(n + 2, pdv.context_id, pdv.message_control_header))
                parts.append(pdv.data)
                length += n + 6
            parts[0] = _PDU_HEADER.pack(self.pdu_type, 0, length)
            return b"".join(parts)
        except ENCODE_MISFITS as exc:
            raise encode_error(self, exc) from exc


def _decode_pdata(body: memoryview) -> PDataTF:
    clause = "PS3.8 9.3.5"
    pdvs: list[PDV] = []
    pos, end = 0, len(body)
    if end == 0:
        raise invalid("P-DATA-TF with no PDV item", clause, 2)
    unpack = _PDV_HEADER.unpack_from
    while pos < end:
        if end - pos < 6:
            raise invalid(f"{end - pos} trailing byte(s) too short for a PDV item header", clause, 6 + pos)
        length, context_id, mch = unpack(body, pos)
        if length < 2:
            raise invalid(f"PDV item length {length} is less than 2", "PS3.8 9.3.5.1", 6 + pos)
        stop = pos + 4 + length
        if stop > end:
            raise invalid(f"PDV item length {length} overruns the PDU by {stop - end} byte(s)", clause, 6 + pos)
        pdvs.append(PDV(context_id, mch, body[pos + 6 : stop]))
        pos = stop
    return PDataTF(tuple(pdvs))


# --------------------------------------------------------------------------

PDU = Union[AAssociateRQ, AAssociateAC, AAssociateRJ, PDataTF, AReleaseRQ, AReleaseRP, AAbort]

PDU_CLASSES: dict[int, type] = {
    cls.pdu_type: cls for cls in (AAssociateRQ, AAssociateAC, AAssociateRJ, PDataTF, AReleaseRQ, AReleaseRP, AAbort)
}


def pdu_name(pdu: PDU) -> str:
    return C.PDU_NAMES[pdu.pdu_type]


def decode_pdu(data: bytes | bytearray | memoryview) -> PDU:
    """Decode one whole PDU (header and body).

    Raises :class:`RemoteProtocolError` (and nothing else) for any violation:
    an unknown PDU type (reason 1), a length field that disagrees with the
    bytes given, or a malformed body (reason 6 or 5).
    """
    buf = data if isinstance(data, memoryview) else memoryview(data)
    if buf.format != "B" or buf.ndim != 1:
        buf = buf.cast("B")  # any other contiguous buffer, read as bytes
    if len(buf) < C.PDU_HEADER_LENGTH:
        raise invalid(f"{len(buf)} byte(s) is shorter than a PDU header", "PS3.8 9.3.1", 0)
    pdu_type, _reserved, length = _PDU_HEADER.unpack_from(buf)
    if pdu_type not in PDU_CLASSES:
        raise RemoteProtocolError(
            f"unrecognised PDU type {pdu_type:#04x}",
            "PS3.8 9.3.1",
            reason=C.ABORT_REASON_UNRECOGNIZED_PDU,
            offset=0,
        )
    if length != len(buf) - C.PDU_HEADER_LENGTH:
        raise invalid(
            f"PDU length field {length} disagrees with the {len(buf) - C.PDU_HEADER_LENGTH} byte(s) of body",
            "PS3.8 9.3.1",
            2,
        )
    body = buf[C.PDU_HEADER_LENGTH :]
    try:
        if pdu_type == C.P_DATA_TF:
            return _decode_pdata(body)
        if pdu_type in (C.A_ASSOCIATE_RQ, C.A_ASSOCIATE_AC):
            return _decode_assoc(pdu_type, body)
    except RemoteProtocolError:
        raise
    except Exception as exc:  # defensive: nothing but RemoteProtocolError escapes
        raise invalid(f"malformed {C.PDU_NAMES[pdu_type]}: {exc}", "PS3.8 9.3", None) from exc
    name = C.PDU_NAMES[pdu_type]
    if length != 4:
        raise invalid(f"{name} PDU length is {length}, not 4", "PS3.8 9.3.4-9.3.8", 2)
    _r1, b2, b3, b4 = _FOUR.unpack_from(body)
    if pdu_type == C.A_ASSOCIATE_RJ:
        return AAssociateRJ(b2, b3, b4)
    if pdu_type == C.A_ABORT:
        return AAbort(b3, b4)
    return _RELEASE_RQ if pdu_type == C.A_RELEASE_RQ else _RELEASE_RP


def decode_header(data: bytes | memoryview) -> tuple[int, int]:
    """Return (pdu_type, pdu_length) from the first six bytes."""
    pdu_type, _r, length = _PDU_HEADER.unpack_from(data)
    return pdu_type, length
