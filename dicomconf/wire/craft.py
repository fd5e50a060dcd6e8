"""Crafting any PDU, legal or not, from a mapping (PS3.8 9.3, PS3.7 D.3.3).

Theory of operation
-------------------
A scenario's ``send`` step is a mapping; :func:`build_pdu` turns it into
bytes.  Every field of every PDU, item and sub-item is named as PS3.8 names
it (snake_case) and may be set to any value that fits its width; every
length field may be overridden; any item's value may be given raw; the whole
PDU may be given raw, extended (``append``) or cut (``truncate``).  Fields
left out take the value a legal PDU would have, so ``{"pdu":
"A-ASSOCIATE-RQ"}`` alone is a legal request for Verification.

Keys common to every item and sub-item spec: ``item`` (a name such as
``"maximum-length"``, or the type code), ``length`` (the item length field),
``raw`` (hex of the item value, replacing every field), ``reserved`` (the
byte after the item type).  PDU-level keys: ``pdu``, ``reserved`` (byte 1),
``length`` (bytes 2-5), ``body`` (hex of the whole variable part), ``append``
(hex), ``truncate`` (keep the first N bytes), ``raw`` (the whole PDU as hex).

A text field (UID, AE title, name) takes a ``str`` or ``{"hex": "..."}`` for
exact bytes; a UID may also be given by its pydicom keyword
(``"Verification"``, ``"ImplicitVRLittleEndian"``).  An unknown key or a
value that cannot be encoded raises :class:`CraftError` naming the key.

Bytes are packed here with ``struct``, not through scapy's layers: the
overrides (lengths, reserved bytes, raw values at any level) are plain
positions in the byte string, and the differential tests check that what we
build for legal specs is what the core codec and scapy's dissector read.
"""

from __future__ import annotations

import re
import struct
import warnings
from typing import Any, Callable, Mapping

from dicomconf.ul import constants as C


class CraftError(ValueError):
    """A spec that cannot be built; ``key`` is the path of the offending key."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.message = message
        self.key = key


def hex_bytes(text: Any, key: str = "") -> bytes:
    """``"08 00 00000004 00000000"`` -> bytes; whitespace, ``:`` and a ``0x`` prefix are ignored."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    if not isinstance(text, str):
        raise CraftError(f"expected a hex string, not {type(text).__name__}", key)
    clean = re.sub(r"[\s:_]", "", text)
    if clean.lower().startswith("0x"):
        clean = clean[2:]
    try:
        return bytes.fromhex(clean)
    except ValueError:
        raise CraftError(f"{text!r} is not valid hex (an even number of 0-9 a-f digits)", key) from None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# Item names: the standard's names from constants, slugged, plus short aliases.
ITEM_KEYS: dict[str, int] = {_slug(name): code for code, name in C.ITEM_NAMES.items()}
ITEM_KEYS.update(
    {
        "role-selection": C.SUB_ROLE_SELECTION,
        "user-identity": C.SUB_USER_IDENTITY_RQ,
        "maximum-length-received": C.SUB_MAXIMUM_LENGTH,
    }
)
_PDU_KEYS: dict[str, int] = {name.lower(): code for name, code in C.PDU_TYPES.items()}


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _int(value: Any, key: str, bits: int) -> int:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            raise CraftError(f"{value!r} is not an integer", key) from None
    if not isinstance(value, int):
        raise CraftError(f"expected an integer, not {type(value).__name__}", key)
    if not 0 <= value < (1 << bits):
        raise CraftError(f"{value} does not fit in {bits} bits", key)
    return value


def _text(value: Any, key: str) -> bytes:
    if isinstance(value, Mapping):
        if set(value) != {"hex"}:
            raise CraftError("a text field is a string or {hex: ...}", key)
        return hex_bytes(value["hex"], _path(key, "hex"))
    if not isinstance(value, str):
        raise CraftError(f"expected a string, not {type(value).__name__}", key)
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise CraftError(f"{value!r} is not encodable as ISO 646 / latin-1", key) from None


_UID_KEYWORDS: dict[str, str] = {}


def uid_value(value: Any, key: str) -> bytes:
    """A UID field: a dotted UID, a pydicom keyword or name, or ``{hex: ...}``."""
    if isinstance(value, str) and value and not re.fullmatch(r"[0-9.]+", value) and "." not in value:
        if not _UID_KEYWORDS:
            from pydicom.uid import UID_dictionary

            for uid, entry in UID_dictionary.items():
                _UID_KEYWORDS[entry[4].lower()] = uid
                _UID_KEYWORDS[entry[0].lower()] = uid
        found = _UID_KEYWORDS.get(value.lower())
        if found is None:
            raise CraftError(f"{value!r} is neither a UID nor a UID keyword pydicom knows", key)
        value = found
    return _text(value, key)


def _ae(value: Any, key: str) -> bytes:
    raw = _text(value, key)
    if isinstance(value, Mapping):
        return raw  # exact bytes, any length
    if len(raw) > C.AE_TITLE_LENGTH:
        raise CraftError(f"AE title {value!r} is longer than 16 bytes (give {{hex: ...}} for exact bytes)", key)
    return raw.ljust(C.AE_TITLE_LENGTH, b" ")


def _check_keys(spec: Mapping, allowed: set[str], path: str) -> None:
    for k in spec:
        if k not in allowed:
            raise CraftError(f"unknown key {k!r} (known: {', '.join(sorted(allowed))})", _path(path, str(k)))


def _mapping(spec: Any, path: str) -> Mapping:
    if not isinstance(spec, Mapping):
        raise CraftError(f"expected a mapping, not {type(spec).__name__}", path)
    return spec


def _u16_prefixed(spec: Mapping, field: str, length_key: str, path: str, encode=uid_value) -> bytes:
    value = encode(spec.get(field, ""), _path(path, field))
    n = _int(spec.get(length_key, len(value)), _path(path, length_key), 16)
    return struct.pack(">H", n) + value


# --------------------------------------------------------------------------
# Item value builders: spec -> value bytes (after the 4-byte item header).


def _v_app_context(spec: Mapping, path: str) -> bytes:
    return uid_value(spec.get("application_context_name", C.APPLICATION_CONTEXT_NAME),
                     _path(path, "application_context_name"))


def _v_uid(spec: Mapping, path: str) -> bytes:
    return uid_value(spec.get("uid", ""), _path(path, "uid"))


def _sub_list(spec: Mapping, key: str, path: str, default_item: int | None, wrap: Callable | None = None) -> bytes:
    values = spec[key]
    if not isinstance(values, (list, tuple)):
        raise CraftError("expected a list", _path(path, key))
    out = []
    for i, entry in enumerate(values):
        if wrap is not None and not isinstance(entry, Mapping):
            entry = wrap(entry)
        out.append(build_item(entry, _path(_path(path, key), i), default_item))
    return b"".join(out)


def _v_pc_rq(spec: Mapping, path: str) -> bytes:
    head = bytes(
        (
            _int(spec.get("context_id", 1), _path(path, "context_id"), 8),
            _int(spec.get("reserved_1", 0), _path(path, "reserved_1"), 8),
            _int(spec.get("reserved_2", 0), _path(path, "reserved_2"), 8),
            _int(spec.get("reserved_3", 0), _path(path, "reserved_3"), 8),
        )
    )
    if "items" in spec:
        return head + _sub_list(spec, "items", path, None)
    abstract = spec.get("abstract_syntax", C.VERIFICATION_SOP_CLASS)
    if not isinstance(abstract, Mapping):
        abstract = {"uid": abstract}
    body = build_item(abstract, _path(path, "abstract_syntax"), C.ITEM_ABSTRACT_SYNTAX)
    spec = {"transfer_syntaxes": [C.IMPLICIT_VR_LITTLE_ENDIAN], **spec}
    return head + body + _sub_list(spec, "transfer_syntaxes", path, C.ITEM_TRANSFER_SYNTAX, lambda u: {"uid": u})


def _v_pc_ac(spec: Mapping, path: str) -> bytes:
    head = bytes(
        (
            _int(spec.get("context_id", 1), _path(path, "context_id"), 8),
            _int(spec.get("reserved_1", 0), _path(path, "reserved_1"), 8),
            _int(spec.get("result", C.PC_ACCEPTANCE), _path(path, "result"), 8),
            _int(spec.get("reserved_3", 0), _path(path, "reserved_3"), 8),
        )
    )
    if "items" in spec:
        return head + _sub_list(spec, "items", path, None)
    ts = spec.get("transfer_syntax", C.IMPLICIT_VR_LITTLE_ENDIAN)
    if ts is None:
        return head
    if not isinstance(ts, Mapping) or "hex" in ts:
        ts = {"uid": ts}
    return head + build_item(ts, _path(path, "transfer_syntax"), C.ITEM_TRANSFER_SYNTAX)


def _v_user_info(spec: Mapping, path: str) -> bytes:
    key = "items" if "items" in spec else "sub_items"
    if key not in spec:
        return b""
    return _sub_list(spec, key, path, None)


def _v_max_length(spec: Mapping, path: str) -> bytes:
    return struct.pack(">I", _int(spec.get("maximum_length", 16384), _path(path, "maximum_length"), 32))


def _v_impl_uid(spec: Mapping, path: str) -> bytes:
    return uid_value(spec.get("implementation_class_uid", C.IMPLEMENTATION_CLASS_UID),
                     _path(path, "implementation_class_uid"))


def _v_async(spec: Mapping, path: str) -> bytes:
    return struct.pack(
        ">HH",
        _int(spec.get("maximum_number_operations_invoked", 1), _path(path, "maximum_number_operations_invoked"), 16),
        _int(spec.get("maximum_number_operations_performed", 1),
             _path(path, "maximum_number_operations_performed"), 16),
    )


def _v_role(spec: Mapping, path: str) -> bytes:
    return _u16_prefixed(spec, "sop_class_uid", "uid_length", path) + bytes(
        (_int(spec.get("scu_role", 1), _path(path, "scu_role"), 8),
         _int(spec.get("scp_role", 0), _path(path, "scp_role"), 8))
    )


def _v_version_name(spec: Mapping, path: str) -> bytes:
    return _text(spec.get("implementation_version_name", C.IMPLEMENTATION_VERSION_NAME),
                 _path(path, "implementation_version_name"))


def _v_ext_neg(spec: Mapping, path: str) -> bytes:
    info = hex_bytes(spec.get("service_class_application_information", ""),
                     _path(path, "service_class_application_information"))
    return _u16_prefixed(spec, "sop_class_uid", "uid_length", path) + info


def _v_common_ext_neg(spec: Mapping, path: str) -> bytes:
    related = spec.get("related_general_sop_class_uids", [])
    if not isinstance(related, (list, tuple)):
        raise CraftError("expected a list", _path(path, "related_general_sop_class_uids"))
    rel = b"".join(
        _u16_prefixed({"uid": u}, "uid", "-", _path(_path(path, "related_general_sop_class_uids"), i))
        for i, u in enumerate(related)
    )
    n = _int(spec.get("related_general_sop_class_identification_length", len(rel)),
             _path(path, "related_general_sop_class_identification_length"), 16)
    return (
        _u16_prefixed(spec, "sop_class_uid", "sop_class_uid_length", path)
        + _u16_prefixed(spec, "service_class_uid", "service_class_uid_length", path)
        + struct.pack(">H", n) + rel
    )


def _field_bytes(value: Any, key: str) -> bytes:
    return _text(value, key) if isinstance(value, str) or (isinstance(value, Mapping)) else hex_bytes(value, key)


def _v_user_identity(spec: Mapping, path: str) -> bytes:
    """PS3.7 D.3.3.7.1; ``secondary_field_length: null`` omits the length field entirely."""
    out = bytes(
        (_int(spec.get("user_identity_type", 1), _path(path, "user_identity_type"), 8),
         _int(spec.get("positive_response_requested", 0), _path(path, "positive_response_requested"), 8))
    )
    out += _u16_prefixed(spec, "primary_field", "primary_field_length", path, _field_bytes)
    if "secondary_field_length" in spec and spec["secondary_field_length"] is None:
        return out + _field_bytes(spec.get("secondary_field", ""), _path(path, "secondary_field"))
    return out + _u16_prefixed(spec, "secondary_field", "secondary_field_length", path, _field_bytes)


def _v_user_identity_ac(spec: Mapping, path: str) -> bytes:
    return _u16_prefixed(spec, "server_response", "server_response_length", path, _field_bytes)


_BUILDERS: dict[int, tuple[Callable[[Mapping, str], bytes], frozenset[str]]] = {
    C.ITEM_APPLICATION_CONTEXT: (_v_app_context, frozenset({"application_context_name"})),
    C.ITEM_PRESENTATION_CONTEXT_RQ: (
        _v_pc_rq,
        frozenset({"context_id", "reserved_1", "reserved_2", "reserved_3", "abstract_syntax", "transfer_syntaxes",
                   "items"}),
    ),
    C.ITEM_PRESENTATION_CONTEXT_AC: (
        _v_pc_ac, frozenset({"context_id", "reserved_1", "result", "reserved_3", "transfer_syntax", "items"})
    ),
    C.ITEM_ABSTRACT_SYNTAX: (_v_uid, frozenset({"uid"})),
    C.ITEM_TRANSFER_SYNTAX: (_v_uid, frozenset({"uid"})),
    C.ITEM_USER_INFORMATION: (_v_user_info, frozenset({"sub_items", "items"})),
    C.SUB_MAXIMUM_LENGTH: (_v_max_length, frozenset({"maximum_length"})),
    C.SUB_IMPLEMENTATION_CLASS_UID: (_v_impl_uid, frozenset({"implementation_class_uid"})),
    C.SUB_ASYNCHRONOUS_OPERATIONS_WINDOW: (
        _v_async, frozenset({"maximum_number_operations_invoked", "maximum_number_operations_performed"})
    ),
    C.SUB_ROLE_SELECTION: (_v_role, frozenset({"sop_class_uid", "uid_length", "scu_role", "scp_role"})),
    C.SUB_IMPLEMENTATION_VERSION_NAME: (_v_version_name, frozenset({"implementation_version_name"})),
    C.SUB_SOP_CLASS_EXTENDED_NEGOTIATION: (
        _v_ext_neg, frozenset({"sop_class_uid", "uid_length", "service_class_application_information"})
    ),
    C.SUB_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION: (
        _v_common_ext_neg,
        frozenset({"sop_class_uid", "sop_class_uid_length", "service_class_uid", "service_class_uid_length",
                   "related_general_sop_class_uids", "related_general_sop_class_identification_length",
                   "sub_item_version"}),
    ),
    C.SUB_USER_IDENTITY_RQ: (
        _v_user_identity,
        frozenset({"user_identity_type", "positive_response_requested", "primary_field", "primary_field_length",
                   "secondary_field", "secondary_field_length"}),
    ),
    C.SUB_USER_IDENTITY_AC: (_v_user_identity_ac, frozenset({"server_response", "server_response_length"})),
}
_ITEM_COMMON = frozenset({"item", "length", "raw", "reserved"})


def _item_type(value: Any, key: str) -> int:
    if isinstance(value, str) and not value.strip().lower().startswith("0x") and not value.strip().isdigit():
        code = ITEM_KEYS.get(_slug(value))
        if code is None:
            raise CraftError(f"unknown item {value!r} (known: {', '.join(sorted(ITEM_KEYS))})", key)
        return code
    return _int(value, key, 8)


def build_item(spec: Any, path: str = "item", default_item: int | None = None) -> bytes:
    """Build one item or sub-item (header included) from its spec."""
    spec = _mapping(spec, path)
    if "item" in spec:
        item_type = _item_type(spec["item"], _path(path, "item"))
    elif default_item is not None:
        item_type = default_item
    else:
        raise CraftError("an item spec needs 'item' (a name or a type code)", _path(path, "item"))
    builder, fields = _BUILDERS.get(item_type, (None, frozenset()))
    _check_keys(spec, set(_ITEM_COMMON | fields), path)
    if "raw" in spec:
        value = hex_bytes(spec["raw"], _path(path, "raw"))
    elif builder is None:
        raise CraftError(f"item type {item_type:#04x} has no fields dicomconf knows: give its value as 'raw'", path)
    else:
        value = builder(spec, path)
    reserved_key = "sub_item_version" if "sub_item_version" in spec else "reserved"
    reserved = _int(spec.get(reserved_key, 0), _path(path, reserved_key), 8)
    length = _int(spec.get("length", len(value)), _path(path, "length"), 16)
    return struct.pack(">BBH", item_type, reserved, length) + value


# --------------------------------------------------------------------------
# PDU bodies


def _assoc_body(spec: Mapping, path: str, is_rq: bool) -> bytes:
    fixed = struct.pack(">HH", _int(spec.get("protocol_version", C.PROTOCOL_VERSION), "protocol_version", 16),
                        _int(spec.get("reserved_1", 0), "reserved_1", 16))
    fixed += _ae(spec.get("called_ae_title", "ANY-SCP"), "called_ae_title")
    fixed += _ae(spec.get("calling_ae_title", "DICOMCONF"), "calling_ae_title")
    block = hex_bytes(spec.get("reserved_block", "00" * 32), "reserved_block")
    fixed += block
    if "items" in spec:
        return fixed + _sub_list(spec, "items", path, None)
    parts = []
    app = spec.get("application_context_name", C.APPLICATION_CONTEXT_NAME)
    if app is not None:
        parts.append(build_item({"application_context_name": app}, "application_context_name",
                                C.ITEM_APPLICATION_CONTEXT))
    pc_type = C.ITEM_PRESENTATION_CONTEXT_RQ if is_rq else C.ITEM_PRESENTATION_CONTEXT_AC
    contexts = spec.get("presentation_contexts", [{}])
    if not isinstance(contexts, (list, tuple)):
        raise CraftError("expected a list", "presentation_contexts")
    for i, pc in enumerate(contexts):
        parts.append(build_item(pc, _path("presentation_contexts", i), pc_type))
    ui = spec.get("user_information", [{"item": C.SUB_MAXIMUM_LENGTH},
                                        {"item": C.SUB_IMPLEMENTATION_CLASS_UID},
                                        {"item": C.SUB_IMPLEMENTATION_VERSION_NAME}])
    if isinstance(ui, (list, tuple)):
        ui = {"sub_items": ui}
    if ui is not None:
        parts.append(build_item(ui, "user_information", C.ITEM_USER_INFORMATION))
    extra = spec.get("extra_items", [])
    if not isinstance(extra, (list, tuple)):
        raise CraftError("expected a list", "extra_items")
    parts += [build_item(x, _path("extra_items", i)) for i, x in enumerate(extra)]
    return fixed + b"".join(parts)


def command_bytes(spec: Any, path: str = "command") -> bytes:
    """A DIMSE command set (PS3.7 E.1) from pydicom keywords, e.g.
    ``{CommandField: C-ECHO-RQ, MessageID: 1}``; Command Group Length is computed,
    Affected SOP Class UID defaults to Verification, Command Data Set Type to "no data set"."""
    from pydicom import Dataset
    from pydicom.datadict import tag_for_keyword

    from dicomconf.ul import dimse

    spec = _mapping(spec, path)
    ds = Dataset()
    values = {"AffectedSOPClassUID": C.VERIFICATION_SOP_CLASS, "CommandDataSetType": dimse.NO_DATA_SET, **spec}
    for keyword, value in values.items():
        key = _path(path, str(keyword))
        tag = tag_for_keyword(str(keyword))
        if tag is None or tag >> 16 != 0:
            raise CraftError(f"{keyword!r} is not the keyword of a command element (group 0000)", key)
        if keyword == "CommandField" and isinstance(value, str) and value in dimse.COMMAND_CODES:
            value = dimse.COMMAND_CODES[value]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                setattr(ds, keyword, value)
        except Exception as exc:
            raise CraftError(f"not a command element pydicom can set: {exc}", key) from None
    try:
        return dimse.encode_command(ds)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CraftError(f"command set cannot be encoded: {first}", path) from None


def _pdv(spec: Any, path: str) -> bytes:
    spec = _mapping(spec, path)
    _check_keys(spec, {"context_id", "message_control_header", "data", "command", "length"}, path)
    if "command" in spec:
        data = command_bytes(spec["command"], _path(path, "command"))
    else:
        data = hex_bytes(spec.get("data", ""), _path(path, "data"))
    mch = _int(spec.get("message_control_header", C.MCH_COMMAND | C.MCH_LAST), _path(path, "message_control_header"), 8)
    length = _int(spec.get("length", len(data) + 2), _path(path, "length"), 32)
    return struct.pack(">IBB", length, _int(spec.get("context_id", 1), _path(path, "context_id"), 8), mch) + data


def _pdata_body(spec: Mapping, path: str) -> bytes:
    pdvs = spec.get("pdvs", [])
    if not isinstance(pdvs, (list, tuple)):
        raise CraftError("expected a list", "pdvs")
    return b"".join(_pdv(p, _path("pdvs", i)) for i, p in enumerate(pdvs))


def _rj_body(spec: Mapping, path: str) -> bytes:
    return bytes((
        _int(spec.get("reserved_1", 0), "reserved_1", 8),
        _int(spec.get("result", C.RJ_RESULT_PERMANENT), "result", 8),
        _int(spec.get("source", C.RJ_SOURCE_USER), "source", 8),
        _int(spec.get("reason", C.RJ_USER_NO_REASON), "reason", 8),
    ))


def _release_body(spec: Mapping, path: str) -> bytes:
    return struct.pack(">I", _int(spec.get("reserved_1", 0), "reserved_1", 32))


def _abort_body(spec: Mapping, path: str) -> bytes:
    return bytes((
        _int(spec.get("reserved_1", 0), "reserved_1", 8),
        _int(spec.get("reserved_2", 0), "reserved_2", 8),
        _int(spec.get("source", C.ABORT_SOURCE_USER), "source", 8),
        _int(spec.get("reason", C.ABORT_REASON_NOT_SPECIFIED), "reason", 8),
    ))


_ASSOC_FIELDS = frozenset({"protocol_version", "reserved_1", "called_ae_title", "calling_ae_title", "reserved_block",
                           "application_context_name", "presentation_contexts", "user_information", "extra_items",
                           "items"})
_PDU_BUILDERS: dict[int, tuple[Callable[[Mapping, str], bytes], frozenset[str]]] = {
    C.A_ASSOCIATE_RQ: (lambda s, p: _assoc_body(s, p, True), _ASSOC_FIELDS),
    C.A_ASSOCIATE_AC: (lambda s, p: _assoc_body(s, p, False), _ASSOC_FIELDS),
    C.A_ASSOCIATE_RJ: (_rj_body, frozenset({"reserved_1", "result", "source", "reason"})),
    C.P_DATA_TF: (_pdata_body, frozenset({"pdvs"})),
    C.A_RELEASE_RQ: (_release_body, frozenset({"reserved_1"})),
    C.A_RELEASE_RP: (_release_body, frozenset({"reserved_1"})),
    C.A_ABORT: (_abort_body, frozenset({"reserved_1", "reserved_2", "source", "reason"})),
}
_PDU_COMMON = frozenset({"pdu", "reserved", "length", "body", "append", "truncate", "raw"})


def pdu_type_of(value: Any, key: str = "pdu") -> int:
    """A PDU type from its standard name (``"A-ASSOCIATE-RQ"``) or its code."""
    if isinstance(value, str) and not value.strip()[:1].isdigit():
        code = _PDU_KEYS.get(value.strip().lower().replace("_", "-"))
        if code is None:
            raise CraftError(f"unknown PDU {value!r} (known: {', '.join(C.PDU_TYPES)})", key)
        return code
    return _int(value, key, 8)


def build_pdu(spec: Mapping) -> bytes:
    """Build the bytes of one PDU, legal or not, from ``spec`` (see the module docstring)."""
    spec = _mapping(spec, "")
    if "raw" in spec:
        _check_keys(spec, {"raw", "pdu", "append", "truncate"}, "")
        out = hex_bytes(spec["raw"], "raw")
    else:
        if "pdu" not in spec:
            raise CraftError("a PDU spec needs 'pdu' (a PDU name or type code) or 'raw'", "pdu")
        pdu_type = pdu_type_of(spec["pdu"])
        builder, fields = _PDU_BUILDERS.get(pdu_type, (None, frozenset()))
        _check_keys(spec, set(_PDU_COMMON | fields), "")
        if "body" in spec:
            body = hex_bytes(spec["body"], "body")
        elif builder is None:
            raise CraftError(f"PDU type {pdu_type:#04x} is not defined by PS3.8: give its 'body' as hex", "body")
        else:
            body = builder(spec, "")
        length = _int(spec.get("length", len(body)), "length", 32)
        out = struct.pack(">BBI", pdu_type, _int(spec.get("reserved", 0), "reserved", 8), length) + body
    if "append" in spec:
        out += hex_bytes(spec["append"], "append")
    if "truncate" in spec:
        n = spec["truncate"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise CraftError("truncate is a non-negative number of bytes", "truncate")
        out = out[:n]
    return out


def scapy_pdu(spec: Mapping):
    """The crafted PDU as a scapy packet (:mod:`dicomconf.wire.layers`), for Python users who edit fields there.

    Lengths dissected from the bytes are kept as they are; set a length field
    to None to have scapy recompute it when the packet is rebuilt.
    """
    from dicomconf.wire.layers import dissect

    return dissect(build_pdu(spec))
