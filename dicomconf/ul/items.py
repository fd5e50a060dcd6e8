"""Items and sub-items of the A-ASSOCIATE-RQ/AC variable field.

Theory of operation
-------------------
Each item is a frozen, slotted dataclass named and shaped as PS3.8 9.3.2-9.3.3
and PS3.7 Annex D.3.3 describe it.  ``encode()`` gives the item's bytes,
header included; the module-level ``decode_*`` functions take a memoryview of
the item's *value* (the bytes after the 4-byte item header) and the absolute
offset of that value inside the PDU, so that every error names the byte it is
about.

Strictness: a structural fault (a length that overruns its container, a
fixed-size field of the wrong size) raises :class:`RemoteProtocolError` with
reason 6 (invalid-PDU-parameter value).  Reserved fields are sent as zero and
never tested on receipt (PS3.8 9.3.1).  User-information sub-items of an
unknown type are kept as :class:`UnknownSubItem` and skipped by negotiation
(PS3.7 D.3.3: an acceptor ignores the negotiation items it does not support).

Caches: a requestor repeats its items on every association, so the decoded
presentation context (20H, 21H) and user information (50H) items are kept by
their exact value bytes (:class:`_ItemCache`: bounded, successful decodes
only, never a user identity item or its answer), and the encodings that are pure
functions of a few immutable values (UID and name sub-items, accepted
context items, Maximum Length) are kept per value with a typed
``lru_cache``.  Every check still runs on what is not cached, and every
error is raised as without the caches.

Credentials: the ``repr`` of a User Identity sub-item (58H, 59H) shows the
size of its passcode, token or server response, never the bytes
(:func:`hidden`), because a repr ends up in logs, tracebacks and pytest's
assertion messages; the fields themselves and equality are unchanged.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import ClassVar, Iterator, Union

from dicomconf.ul import constants as C
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError

_ITEM_HEADER = struct.Struct(">BBH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


def checked_encode(method):
    """Turn a field that does not fit its struct format into :class:`LocalProtocolError`.

    Wraps the ``encode`` methods: a context ID of 300 or a negative length is
    our misuse, reported with the item's name rather than a ``struct.error``.
    """

    @functools.wraps(method)
    def encode(self):
        try:
            return method(self)
        except ENCODE_MISFITS as exc:
            raise encode_error(self, exc) from exc

    return encode


# What a misfit field raises inside an encoder; an encoder on the hot path (PDataTF) catches these
# itself, in place of the decorator's extra frame, and raises the same error.
ENCODE_MISFITS = (struct.error, ValueError, OverflowError, TypeError, AttributeError)


def encode_error(obj: object, exc: Exception) -> LocalProtocolError:
    """The :class:`LocalProtocolError` for ``obj`` whose encoder raised ``exc``."""
    return LocalProtocolError(f"{type(obj).__name__} cannot be encoded: {exc}")


def invalid(message: str, clause: str, offset: int | None = None) -> RemoteProtocolError:
    """A structural fault: A-ABORT reason 6, invalid-PDU-parameter value."""
    return RemoteProtocolError(
        message, clause, reason=C.ABORT_REASON_INVALID_PARAMETER_VALUE, offset=offset
    )


def header(item_type: int, value: bytes) -> bytes:
    """Prefix ``value`` with an item header: type, reserved 00H, 2-byte length."""
    if len(value) > 0xFFFF:
        raise LocalProtocolError(f"item {item_type:#04x} value of {len(value)} bytes exceeds 65535")
    return _ITEM_HEADER.pack(item_type, 0, len(value)) + value


def iter_items(buf: memoryview, base: int, clause: str) -> Iterator[tuple[int, memoryview, int]]:
    """Yield ``(item_type, value, value_offset)`` for each item in ``buf``.

    ``base`` is the absolute offset of ``buf[0]`` in the PDU.  An item header
    or value that runs past the end of ``buf`` raises RemoteProtocolError.
    """
    pos, end = 0, len(buf)
    while pos < end:
        if end - pos < 4:
            raise invalid(f"{end - pos} trailing byte(s) too short for an item header", clause, base + pos)
        item_type, _reserved, length = _ITEM_HEADER.unpack_from(buf, pos)
        if pos + 4 + length > end:
            raise invalid(
                f"item {item_type:#04x} length {length} overruns its container by "
                f"{pos + 4 + length - end} byte(s)",
                clause,
                base + pos + 2,
            )
        yield item_type, buf[pos + 4 : pos + 4 + length], base + pos + 4
        pos += 4 + length


def text(value: bytes | memoryview) -> str:
    """Decode a UID or name field; latin-1 never fails, trailing NULs dropped."""
    return bytes(value).decode("latin-1").rstrip("\x00")


def encode_text(value: str) -> bytes:
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"{value!r} is not encodable as ISO 646 / latin-1") from exc


def _prefixed(raw: bytes, what: str) -> bytes:
    """``raw`` prefixed by its 2-byte length (PS3.7 D.3.3); too long is our misuse."""
    if len(raw) > 0xFFFF:
        raise LocalProtocolError(f"{what} of {len(raw)} bytes exceeds 65535")
    return _U16.pack(len(raw)) + raw


@functools.lru_cache(maxsize=1024, typed=True)
def _text_item(item_type: int, value: str) -> bytes:
    """A (sub-)item holding one UID or name (PS3.8 9.3.2.2.1-2, PS3.7 D.3.3.2), kept per (type, value).

    This and the other ``lru_cache``'d encoders below are pure functions of
    immutable values (int, str); a value that cannot be encoded raises each
    time (exceptions are not cached), so the error is as without the cache.
    """
    return header(item_type, encode_text(value))


@functools.lru_cache(maxsize=1024, typed=True)
def _presentation_context_ac_item(context_id: int, result: int, transfer_syntax: str | None) -> bytes:
    """Presentation Context Item 21H (PS3.8 9.3.3.2), kept per (ID, result, transfer syntax)."""
    body = bytes((context_id, 0, result, 0))
    if transfer_syntax is not None:
        body += _text_item(C.ITEM_TRANSFER_SYNTAX, transfer_syntax)
    return header(C.ITEM_PRESENTATION_CONTEXT_AC, body)


@functools.lru_cache(maxsize=64, typed=True)
def _maximum_length_item(maximum_length: int) -> bytes:
    """Maximum Length Sub-Item 51H (PS3.8 D.1.1), kept per value."""
    return header(C.SUB_MAXIMUM_LENGTH, _U32.pack(maximum_length))


def _u16_prefixed(value: memoryview, pos: int, base: int, what: str, clause: str) -> tuple[memoryview, int]:
    """Read a 2-byte length and the field it prefixes; return (field, next pos)."""
    if pos + 2 > len(value):
        raise invalid(f"{what} length field missing", clause, base + pos)
    (n,) = _U16.unpack_from(value, pos)
    if pos + 2 + n > len(value):
        raise invalid(f"{what} length {n} overruns its sub-item", clause, base + pos)
    return value[pos + 2 : pos + 2 + n], pos + 2 + n


# --------------------------------------------------------------------------
# Presentation context items (PS3.8 9.3.2.2, 9.3.3.2)


@dataclass(frozen=True, slots=True)
class PresentationContextRQ:
    """Presentation Context Item 20H (PS3.8 9.3.2.2)."""

    item_type: ClassVar[int] = C.ITEM_PRESENTATION_CONTEXT_RQ
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]

    @checked_encode
    def encode(self) -> bytes:
        body = bytes((self.context_id, 0, 0, 0)) + _text_item(C.ITEM_ABSTRACT_SYNTAX, self.abstract_syntax)
        body += b"".join([_text_item(C.ITEM_TRANSFER_SYNTAX, ts) for ts in self.transfer_syntaxes])
        return header(self.item_type, body)


@dataclass(frozen=True, slots=True)
class PresentationContextAC:
    """Presentation Context Item 21H (PS3.8 9.3.3.2).

    ``transfer_syntax`` is None when a rejected context carried no transfer
    syntax sub-item (it is not significant then, Table 9-18).
    """

    item_type: ClassVar[int] = C.ITEM_PRESENTATION_CONTEXT_AC
    context_id: int
    result: int
    transfer_syntax: str | None

    @checked_encode
    def encode(self) -> bytes:
        return _presentation_context_ac_item(self.context_id, self.result, self.transfer_syntax)


def _decode_presentation_context_rq(value: memoryview, base: int) -> PresentationContextRQ:
    clause = "PS3.8 9.3.2.2"
    if len(value) < 4:
        raise invalid(f"presentation context item of {len(value)} bytes is shorter than 4", clause, base)
    abstract: str | None = None
    transfers: list[str] = []
    for sub_type, sub, off in iter_items(value[4:], base + 4, clause):
        if sub_type == C.ITEM_ABSTRACT_SYNTAX:
            if abstract is not None:
                raise invalid("more than one abstract syntax sub-item", "PS3.8 9.3.2.2.1", off - 4)
            abstract = text(sub)
        elif sub_type == C.ITEM_TRANSFER_SYNTAX:
            transfers.append(text(sub))
        else:
            raise RemoteProtocolError(
                f"unexpected sub-item {sub_type:#04x} in presentation context",
                clause,
                reason=C.ABORT_REASON_UNEXPECTED_PARAMETER,
                offset=off - 4,
            )
    if abstract is None:
        raise invalid("presentation context has no abstract syntax sub-item", "PS3.8 9.3.2.2.1", base)
    if not transfers:
        raise invalid("presentation context has no transfer syntax sub-item", "PS3.8 9.3.2.2.2", base)
    return PresentationContextRQ(value[0], abstract, tuple(transfers))


def _decode_presentation_context_ac(value: memoryview, base: int) -> PresentationContextAC:
    clause = "PS3.8 9.3.3.2"
    if len(value) < 4:
        raise invalid(f"presentation context item of {len(value)} bytes is shorter than 4", clause, base)
    result = value[2]
    transfer: str | None = None
    for sub_type, sub, off in iter_items(value[4:], base + 4, clause):
        if sub_type != C.ITEM_TRANSFER_SYNTAX or transfer is not None:
            if result != C.PC_ACCEPTANCE:
                continue  # not significant in a rejected context (Table 9-18)
            raise RemoteProtocolError(
                f"unexpected sub-item {sub_type:#04x} in presentation context (AC)",
                clause,
                reason=C.ABORT_REASON_UNEXPECTED_PARAMETER,
                offset=off - 4,
            )
        transfer = text(sub)
    if transfer is None and result == C.PC_ACCEPTANCE:
        raise invalid("accepted presentation context has no transfer syntax sub-item", "PS3.8 9.3.3.2.1", base)
    return PresentationContextAC(value[0], result, transfer)


# --------------------------------------------------------------------------
# User information sub-items (PS3.8 D.1, PS3.7 D.3.3)


@dataclass(frozen=True, slots=True)
class MaximumLength:
    """Maximum Length Sub-Item 51H (PS3.8 D.1.1); 0 means unlimited."""

    item_type: ClassVar[int] = C.SUB_MAXIMUM_LENGTH
    maximum_length: int

    @checked_encode
    def encode(self) -> bytes:
        return _maximum_length_item(self.maximum_length)


@dataclass(frozen=True, slots=True)
class ImplementationClassUID:
    """Implementation Class UID Sub-Item 52H (PS3.7 D.3.3.2.1)."""

    item_type: ClassVar[int] = C.SUB_IMPLEMENTATION_CLASS_UID
    implementation_class_uid: str

    @checked_encode
    def encode(self) -> bytes:
        return _text_item(self.item_type, self.implementation_class_uid)


@dataclass(frozen=True, slots=True)
class AsynchronousOperationsWindow:
    """Asynchronous Operations Window Sub-Item 53H (PS3.7 D.3.3.3)."""

    item_type: ClassVar[int] = C.SUB_ASYNCHRONOUS_OPERATIONS_WINDOW
    maximum_number_operations_invoked: int
    maximum_number_operations_performed: int

    @checked_encode
    def encode(self) -> bytes:
        return header(
            self.item_type,
            _U16.pack(self.maximum_number_operations_invoked)
            + _U16.pack(self.maximum_number_operations_performed),
        )


@dataclass(frozen=True, slots=True)
class RoleSelection:
    """SCP/SCU Role Selection Sub-Item 54H (PS3.7 D.3.3.4)."""

    item_type: ClassVar[int] = C.SUB_ROLE_SELECTION
    sop_class_uid: str
    scu_role: int
    scp_role: int

    @checked_encode
    def encode(self) -> bytes:
        uid = _prefixed(encode_text(self.sop_class_uid), "SOP class UID")
        return header(self.item_type, uid + bytes((self.scu_role, self.scp_role)))


@dataclass(frozen=True, slots=True)
class ImplementationVersionName:
    """Implementation Version Name Sub-Item 55H (PS3.7 D.3.3.2.3)."""

    item_type: ClassVar[int] = C.SUB_IMPLEMENTATION_VERSION_NAME
    implementation_version_name: str

    @checked_encode
    def encode(self) -> bytes:
        return _text_item(self.item_type, self.implementation_version_name)


@dataclass(frozen=True, slots=True)
class SOPClassExtendedNegotiation:
    """SOP Class Extended Negotiation Sub-Item 56H (PS3.7 D.3.3.5)."""

    item_type: ClassVar[int] = C.SUB_SOP_CLASS_EXTENDED_NEGOTIATION
    sop_class_uid: str
    service_class_application_information: bytes

    @checked_encode
    def encode(self) -> bytes:
        uid = _prefixed(encode_text(self.sop_class_uid), "SOP class UID")
        return header(self.item_type, uid + bytes(self.service_class_application_information))


@dataclass(frozen=True, slots=True)
class SOPClassCommonExtendedNegotiation:
    """SOP Class Common Extended Negotiation Sub-Item 57H (PS3.7 D.3.3.6).

    Byte 2 of this sub-item is the sub-item version (0), not a reserved byte.
    """

    item_type: ClassVar[int] = C.SUB_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION
    sop_class_uid: str
    service_class_uid: str
    related_general_sop_class_uids: tuple[str, ...] = ()
    sub_item_version: int = 0

    @checked_encode
    def encode(self) -> bytes:
        related = b"".join(
            _prefixed(encode_text(u), "related general SOP class UID") for u in self.related_general_sop_class_uids
        )
        value = (
            _prefixed(encode_text(self.sop_class_uid), "SOP class UID")
            + _prefixed(encode_text(self.service_class_uid), "service class UID")
            + _prefixed(related, "related general SOP class identification")
        )
        if len(value) > 0xFFFF:
            raise LocalProtocolError("common extended negotiation sub-item exceeds 65535 bytes")
        return _ITEM_HEADER.pack(self.item_type, self.sub_item_version, len(value)) + value


def hidden(value: object) -> str:
    """How a credential prints in a repr: ``<16 bytes hidden>``, its size and never its content.

    An empty value has nothing to hide and prints as itself.
    """
    if value is None or not hasattr(value, "__len__") or len(value) == 0:  # type: ignore[arg-type]
        return repr(value)
    unit = "character" if isinstance(value, str) else "byte"
    size = len(value)  # type: ignore[arg-type]
    return f"<{size} {unit}{'' if size == 1 else 's'} hidden>"


def masked_repr(obj: object, shown: dict[str, str]) -> str:
    """The dataclass repr of ``obj``, with the text of ``shown`` for the fields it names."""
    from dataclasses import fields

    parts = (f"{f.name}={shown[f.name] if f.name in shown else repr(getattr(obj, f.name))}"
             for f in fields(obj) if f.repr)  # type: ignore[arg-type]
    return f"{type(obj).__name__}({', '.join(parts)})"


def credential_in_primary(user_identity_type: object) -> bool:
    """True when the primary field of a 58H sub-item is itself the credential (PS3.7 D.3.3.7.1).

    Types 1 and 2 carry a user name there; types 3-5 carry a Kerberos service
    ticket, a SAML assertion or a JSON Web Token, and an undefined type is
    treated as a credential too.
    """
    return user_identity_type not in (C.USER_IDENTITY_USERNAME, C.USER_IDENTITY_USERNAME_PASSCODE)


@dataclass(frozen=True, slots=True)
class UserIdentityRQ:
    """User Identity Negotiation Sub-Item 58H, A-ASSOCIATE-RQ (PS3.7 D.3.3.7.1).

    The secondary-field length is always present (0 when unused).  The repr
    hides :attr:`secret_fields`.
    """

    item_type: ClassVar[int] = C.SUB_USER_IDENTITY_RQ
    user_identity_type: int
    primary_field: bytes
    secondary_field: bytes = b""
    positive_response_requested: int = 0

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """The fields holding a credential: the secondary field (the passcode of type 2) and,
        for types other than 1 and 2, the primary field (:func:`credential_in_primary`)."""
        found = ("primary_field",) if credential_in_primary(self.user_identity_type) else ()
        return found + ("secondary_field",)

    def __repr__(self) -> str:
        return masked_repr(self, {name: hidden(getattr(self, name)) for name in self.secret_fields})

    @checked_encode
    def encode(self) -> bytes:
        return header(
            self.item_type,
            bytes((self.user_identity_type, self.positive_response_requested))
            + _prefixed(bytes(self.primary_field), "primary field")
            + _prefixed(bytes(self.secondary_field), "secondary field"),
        )


@dataclass(frozen=True, slots=True)
class UserIdentityAC:
    """User Identity Negotiation Sub-Item 59H, A-ASSOCIATE-AC (PS3.7 D.3.3.7.2)."""

    item_type: ClassVar[int] = C.SUB_USER_IDENTITY_AC
    server_response: bytes = b""

    secret_fields: ClassVar[tuple[str, ...]] = ("server_response",)  # a ticket or token for types 3-5

    def __repr__(self) -> str:
        return masked_repr(self, {"server_response": hidden(self.server_response)})

    @checked_encode
    def encode(self) -> bytes:
        return header(self.item_type, _prefixed(bytes(self.server_response), "server response"))


@dataclass(frozen=True, slots=True)
class UnknownSubItem:
    """A user-information sub-item of a type this implementation does not know."""

    item_type: int
    data: bytes

    @checked_encode
    def encode(self) -> bytes:
        return header(self.item_type, bytes(self.data))


SubItem = Union[
    MaximumLength,
    ImplementationClassUID,
    AsynchronousOperationsWindow,
    RoleSelection,
    ImplementationVersionName,
    SOPClassExtendedNegotiation,
    SOPClassCommonExtendedNegotiation,
    UserIdentityRQ,
    UserIdentityAC,
    UnknownSubItem,
]


def _decode_fixed(value: memoryview, size: int, name: str, clause: str, base: int) -> None:
    if len(value) != size:
        raise invalid(f"{name} sub-item value is {len(value)} bytes, not {size}", clause, base)


def decode_sub_item(sub_type: int, value: memoryview, base: int, version: int = 0) -> SubItem:
    """Decode one user-information sub-item's value (after its 4-byte header)."""
    if sub_type == C.SUB_MAXIMUM_LENGTH:
        _decode_fixed(value, 4, "maximum length", "PS3.8 D.1.1", base)
        return MaximumLength(_U32.unpack_from(value)[0])
    if sub_type == C.SUB_IMPLEMENTATION_CLASS_UID:
        return ImplementationClassUID(text(value))
    if sub_type == C.SUB_ASYNCHRONOUS_OPERATIONS_WINDOW:
        _decode_fixed(value, 4, "asynchronous operations window", "PS3.7 D.3.3.3", base)
        return AsynchronousOperationsWindow(*struct.unpack_from(">HH", value))
    if sub_type == C.SUB_ROLE_SELECTION:
        uid, pos = _u16_prefixed(value, 0, base, "SOP class UID", "PS3.7 D.3.3.4")
        _decode_fixed(value[pos:], 2, "role selection SCU/SCP role", "PS3.7 D.3.3.4", base + pos)
        return RoleSelection(text(uid), value[pos], value[pos + 1])
    if sub_type == C.SUB_IMPLEMENTATION_VERSION_NAME:
        return ImplementationVersionName(text(value))
    if sub_type == C.SUB_SOP_CLASS_EXTENDED_NEGOTIATION:
        uid, pos = _u16_prefixed(value, 0, base, "SOP class UID", "PS3.7 D.3.3.5")
        return SOPClassExtendedNegotiation(text(uid), bytes(value[pos:]))
    if sub_type == C.SUB_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION:
        clause = "PS3.7 D.3.3.6"
        sop, pos = _u16_prefixed(value, 0, base, "SOP class UID", clause)
        svc, pos = _u16_prefixed(value, pos, base, "service class UID", clause)
        rel, pos = _u16_prefixed(value, pos, base, "related general SOP class identification", clause)
        if pos != len(value):
            raise invalid(f"{len(value) - pos} byte(s) after the related general SOP classes", clause, base + pos)
        related, rpos = [], 0
        while rpos < len(rel):
            uid, rpos = _u16_prefixed(rel, rpos, base + pos - len(rel), "related general SOP class UID", clause)
            related.append(text(uid))
        return SOPClassCommonExtendedNegotiation(text(sop), text(svc), tuple(related), version)
    if sub_type == C.SUB_USER_IDENTITY_RQ:
        clause = "PS3.7 D.3.3.7.1"
        if len(value) < 2:
            raise invalid("user identity sub-item shorter than its fixed fields", clause, base)
        primary, pos = _u16_prefixed(value, 2, base, "primary field", clause)
        secondary, pos = _u16_prefixed(value, pos, base, "secondary field", clause)
        if pos != len(value):
            raise invalid(f"{len(value) - pos} byte(s) after the secondary field", clause, base + pos)
        return UserIdentityRQ(value[0], bytes(primary), bytes(secondary), value[1])
    if sub_type == C.SUB_USER_IDENTITY_AC:
        clause = "PS3.7 D.3.3.7.2"
        response, pos = _u16_prefixed(value, 0, base, "server response", clause)
        if pos != len(value):
            raise invalid(f"{len(value) - pos} byte(s) after the server response", clause, base + pos)
        return UserIdentityAC(bytes(response))
    return UnknownSubItem(sub_type, bytes(value))


@dataclass(frozen=True, slots=True)
class UserInformation:
    """User Information Item 50H (PS3.8 9.3.2.3, Annex D): its sub-items in order.

    The convenience properties return the first sub-item of each kind (or all,
    for the kinds that may repeat).
    """

    item_type: ClassVar[int] = C.ITEM_USER_INFORMATION
    sub_items: tuple[SubItem, ...] = field(default_factory=tuple)

    @checked_encode
    def encode(self) -> bytes:
        return header(self.item_type, b"".join([s.encode() for s in self.sub_items]))

    def _first(self, kind: type) -> object | None:
        for sub in self.sub_items:
            if type(sub) is kind:
                return sub
        return None

    def _all(self, kind: type) -> tuple:
        return tuple(s for s in self.sub_items if type(s) is kind)

    @property
    def maximum_length(self) -> int | None:
        item = self._first(MaximumLength)
        return None if item is None else item.maximum_length  # type: ignore[union-attr]

    @property
    def implementation_class_uid(self) -> str | None:
        item = self._first(ImplementationClassUID)
        return None if item is None else item.implementation_class_uid  # type: ignore[union-attr]

    @property
    def implementation_version_name(self) -> str | None:
        item = self._first(ImplementationVersionName)
        return None if item is None else item.implementation_version_name  # type: ignore[union-attr]

    @property
    def asynchronous_operations_window(self) -> AsynchronousOperationsWindow | None:
        return self._first(AsynchronousOperationsWindow)  # type: ignore[return-value]

    @property
    def role_selections(self) -> tuple[RoleSelection, ...]:
        return self._all(RoleSelection)

    @property
    def extended_negotiations(self) -> tuple[SOPClassExtendedNegotiation, ...]:
        return self._all(SOPClassExtendedNegotiation)

    @property
    def common_extended_negotiations(self) -> tuple[SOPClassCommonExtendedNegotiation, ...]:
        return self._all(SOPClassCommonExtendedNegotiation)

    @property
    def user_identity(self) -> UserIdentityRQ | None:
        return self._first(UserIdentityRQ)  # type: ignore[return-value]

    @property
    def user_identity_response(self) -> UserIdentityAC | None:
        return self._first(UserIdentityAC)  # type: ignore[return-value]


def _decode_user_information(value: memoryview, base: int) -> UserInformation:
    clause = "PS3.8 9.3.2.3"
    subs: list[SubItem] = []
    for sub_type, sub, off in iter_items(value, base, clause):
        # Byte 2 of sub-item 57H is its version; elsewhere it is reserved.
        version = value[off - base - 3] if sub_type == C.SUB_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION else 0
        subs.append(decode_sub_item(sub_type, sub, off, version))
    return UserInformation(tuple(subs))



# --------------------------------------------------------------------------
# Decoded items by their exact bytes


class _ItemCache:
    """Decoded items keyed on the exact bytes of their value, for the items every association repeats.

    A requestor sends the same presentation context and user information
    items on each association, so their decoded form is kept, keyed on the
    item's value bytes (after the 4-byte header).  Safe because the decoders
    are pure functions of those bytes and the objects are frozen dataclasses
    of immutable fields (str, int, bytes, tuples of them): a hit returns an
    object equal to what decoding would build.  Only successful decodes are
    kept, so a faulty item is decoded, and its error raised with the offset
    of the PDU at hand, every time.  Bounded: values above ``max_value``
    bytes are not kept, and past ``entries`` the oldest entry goes, so a
    peer cannot grow it past ``entries * max_value`` bytes of keys.  User
    information carrying a user identity sub-item or its answer is decoded
    every time and not kept (:meth:`keep`): no credentials outlive their
    association.
    """

    __slots__ = ("decode", "entries", "max_value", "_items")

    def __init__(self, decode, entries: int = 512, max_value: int = 1024) -> None:
        self.decode = decode
        self.entries = entries
        self.max_value = max_value
        self._items: dict[bytes, object] = {}

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()

    def __call__(self, value: memoryview, base: int):
        if len(value) > self.max_value:
            return self.decode(value, base)
        key = bytes(value)
        item = self._items.get(key)
        if item is None:
            item = self.decode(value, base)
            if self.keep(item):
                items = self._items
                if len(items) >= self.entries:
                    try:
                        del items[next(iter(items))]  # the oldest
                    except (RuntimeError, KeyError, StopIteration):  # another thread changed it meanwhile
                        items.clear()
                items[key] = item
        return item

    @staticmethod
    def keep(item: object) -> bool:
        """Credentials and their answers (User Identity 58H, 59H, PS3.7 D.3.3.7) are never kept."""
        return not (
            type(item) is UserInformation and any(type(s) in (UserIdentityRQ, UserIdentityAC) for s in item.sub_items)
        )


# The decoders pdu.py uses: (value, base) -> item, as the functions they wrap (PS3.8 9.3.2.2, 9.3.3.2, 9.3.2.3).
decode_presentation_context_rq = _ItemCache(_decode_presentation_context_rq)
decode_presentation_context_ac = _ItemCache(_decode_presentation_context_ac)
decode_user_information = _ItemCache(_decode_user_information)

@dataclass(frozen=True, slots=True)
class UnknownItem:
    """A variable-field item of a type PS3.8 does not define; kept, not interpreted."""

    item_type: int
    data: bytes

    @checked_encode
    def encode(self) -> bytes:
        return header(self.item_type, bytes(self.data))
