"""Secrets in PDUs, in the specs that build them and in the values scenarios hold: what to mask (PS3.7 D.3.3.7).

Theory of operation
-------------------
A User Identity Negotiation sub-item (58H, PS3.7 D.3.3.7.1) carries a
credential: the passcode of type 2 in its secondary field, and for types 3-5
(Kerberos service ticket, SAML assertion, JSON Web Token) the primary field
itself.  The server response of the 59H sub-item (D.3.3.7.2) is a ticket or
token for those types.  A capture holds them because it is the wire; what we
print or write for people shows ``***`` (or the size alone) instead.  Only
``dicomconf decode --show-secrets`` and ``dicomconf scp --show-secrets``
show them; reports never do.

Four views, one rule each:

* :func:`mask_spec` masks a step's or a crafted PDU's arguments (plain
  mappings and lists, as a scenario file gives them, or the plain view of a
  received PDU), by key;
* :func:`mask_packet` masks a scapy dissection in place, by layer;
* :func:`secret_spans` finds the credential bytes inside the raw bytes of an
  A-ASSOCIATE-RQ/AC, leniently, so that :func:`mask_bytes` and
  :func:`hexdump` can hide them in hex dumps, malformed PDUs included (see
  :func:`secret_spans` for what can be located there);
* :func:`scrub` takes known secret values (:func:`credentials_in` gathers
  them from a scenario's namespace: profile ``users``, saved credential
  fields) out of a free-text message such as an expression error.

:class:`SecretText` marks a value read out of a credential field (a saved
``user_identity.secondary_field``): it is the same string, equal and hashed
alike, whose ``repr`` shows its size only.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from typing import Any

from dicomconf.ul import constants as C
from dicomconf.ul.items import credential_in_primary, hidden

MASK = "***"
SECRET_KEYS = frozenset({"secondary", "secondary_field", "server_response"})
SECRET_MAPPINGS = frozenset({"users"})  # user name -> passcode (profiles, SCP configurations)
_TYPE_KEYS = ("type", "user_identity_type")
_PRIMARY_KEYS = frozenset({"primary", "primary_field"})
_ASSOCIATE = (C.A_ASSOCIATE_RQ, C.A_ASSOCIATE_AC)
_FIXED = 74  # PDU header (6) + the fixed fields of an A-ASSOCIATE-RQ/AC (68), PS3.8 9.3.2, 9.3.3
_U16 = struct.Struct(">H")


def _token_type(spec: Mapping) -> bool:
    for key in _TYPE_KEYS:
        try:
            if credential_in_primary(int(spec.get(key))):  # type: ignore[arg-type]
                return True
        except (TypeError, ValueError):
            continue
    return False


def secret_keys(spec: Mapping) -> frozenset[str]:
    """The keys of ``spec`` that hold a credential: ``secondary``/``secondary_field``/``server_response``,
    and ``primary``/``primary_field`` when the mapping's ``type``/``user_identity_type`` is not 1 or 2."""
    return SECRET_KEYS | _PRIMARY_KEYS if _token_type(spec) else SECRET_KEYS


def mask_spec(value: Any) -> Any:
    """A copy of ``value`` with every credential of a user identity replaced by ``***``.

    The keys of :func:`secret_keys` are masked anywhere when not empty, and so
    is every passcode of a ``users`` mapping.
    """
    if isinstance(value, Mapping):
        keys = secret_keys(value)
        out = {}
        for key, item in value.items():
            if key in SECRET_MAPPINGS and isinstance(item, Mapping):
                out[key] = {name: MASK if passcode not in ("", None) else passcode for name, passcode in item.items()}
            elif key in keys and item not in ("", b"", None):
                out[key] = MASK
            else:
                out[key] = mask_spec(item)
        return out
    if isinstance(value, (list, tuple)):
        return [mask_spec(item) for item in value]
    if isinstance(value, SecretText):
        return MASK
    return value


def show(value: Any, secret: bool = False) -> str:
    """``repr`` of ``value`` for a message: when ``secret``, strings by their size alone (``<16 characters
    hidden>``), containers element by element, any other value ``***``; otherwise credentials masked inside."""
    if not secret:
        return repr(mask_spec(value))
    if value is None or isinstance(value, bool) or isinstance(value, (str, bytes, bytearray)) and not value:
        return repr(value)
    if isinstance(value, (str, bytes, bytearray)):
        return hidden(str(value) if isinstance(value, str) else bytes(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v, True) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {show(v, True)}" for k, v in value.items()) + "}"
    return MASK


def mask_packet(pkt: Any) -> Any:
    """Mask the credentials of every User Identity layer (58H and 59H) inside a scapy dissection, in place."""
    from dicomconf.wire.layers import ITEM_CLASSES

    rq_class = ITEM_CLASSES[C.SUB_USER_IDENTITY_RQ]
    ac_class = ITEM_CLASSES[C.SUB_USER_IDENTITY_AC]
    for layer in _layers(pkt):
        if isinstance(layer, rq_class):
            if layer.secondary_field:
                layer.secondary_field = MASK.encode()
            if credential_in_primary(layer.user_identity_type) and layer.primary_field:
                layer.primary_field = MASK.encode()
        elif isinstance(layer, ac_class) and layer.server_response:
            layer.server_response = MASK.encode()
    return pkt


def _layers(pkt: Any):
    """Every packet inside ``pkt``: its payload chain and the packets of its list fields."""
    seen = [pkt]
    while seen:
        layer = seen.pop()
        if not layer or not hasattr(layer, "fields_desc"):
            continue  # NoPayload is falsy, and its payload is itself
        yield layer
        for field in layer.fields_desc:
            value = layer.getfieldval(field.name)
            if isinstance(value, list):
                seen.extend(v for v in value if hasattr(v, "fields_desc"))
            elif hasattr(value, "fields_desc"):
                seen.append(value)
        if layer.payload:
            seen.append(layer.payload)


# ---------------------------------------------------------------------- raw bytes


def _field(data: memoryview, at: int, end: int) -> tuple[int, int, int]:
    """(start, stop, next) of a 2-byte-length-prefixed field at ``at``; a length past ``end`` is clamped."""
    if at + 2 > end:
        return end, end, end
    (n,) = _U16.unpack_from(data, at)
    return at + 2, min(at + 2 + n, end), at + 2 + n


def _sub_item_spans(data: memoryview, kind: int, value: int, end: int) -> list[tuple[int, int]]:
    """The credential spans of one 58H/59H sub-item whose value starts at ``value``.

    Field lengths are believed up to the end of the PDU, not of the sub-item:
    a sub-item length that cuts its own passcode short leaves no byte of it shown.
    """
    spans = []
    if kind == C.SUB_USER_IDENTITY_AC:
        start, stop, _ = _field(data, value, end)
        spans.append((start, stop))
    elif value + 2 <= end:
        start, stop, after = _field(data, value + 2, end)
        if credential_in_primary(data[value]):
            spans.append((start, stop))
        start, stop, _ = _field(data, after, end)
        spans.append((start, stop))
    return [(a, b) for a, b in spans if a < b]


def _plausible(data: memoryview, pos: int, end: int) -> bool:
    """A 58H/59H sub-item header at ``pos`` whose inner lengths add up (the search in a broken PDU)."""
    if pos + 4 > end or data[pos] not in (C.SUB_USER_IDENTITY_RQ, C.SUB_USER_IDENTITY_AC) or data[pos + 1]:
        return False
    (length,) = _U16.unpack_from(data, pos + 2)
    value = pos + 4
    if data[pos] == C.SUB_USER_IDENTITY_AC:
        return value + 2 <= end and _U16.unpack_from(data, value)[0] + 2 == length
    if length < 6 or value + 4 > end or data[value] not in C.USER_IDENTITY_TYPES or data[value + 1] > 1:
        return False
    (primary,) = _U16.unpack_from(data, value + 2)
    return 4 + primary <= length


def secret_spans(pdu: bytes | memoryview) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: the offsets of the credential bytes in an A-ASSOCIATE-RQ/AC (PS3.7 D.3.3.7).

    The items are walked as PS3.8 9.3.2/9.3.3 lays them out, leniently: a
    58H or 59H sub-item is found inside the User Information item (50H) or at
    the item level, and every length is clamped to the bytes present (a PDU
    cut short, an incomplete one still arriving).  Where the walk breaks (an
    item length that overruns the PDU), the rest of the PDU is searched for
    byte patterns that look like a 58H/59H sub-item (:func:`_plausible`).
    That search cannot be exact in a malformed PDU: a sub-item whose header
    bytes were themselves garbled is not found, and its credential shows.
    Other PDU types hold no credential and give ``[]``.
    """
    data = memoryview(pdu)
    if len(data) < 6 or data[0] not in _ASSOCIATE:
        return []
    end = min(len(data), 6 + struct.unpack_from(">I", data, 2)[0])
    spans: list[tuple[int, int]] = []
    pos = broken = _FIXED
    while pos + 4 <= end:
        kind, length = data[pos], _U16.unpack_from(data, pos + 2)[0]
        stop = pos + 4 + length
        if kind in (C.SUB_USER_IDENTITY_RQ, C.SUB_USER_IDENTITY_AC):
            spans += _sub_item_spans(data, kind, pos + 4, end)
        elif kind == C.ITEM_USER_INFORMATION:
            sub = pos + 4
            while sub + 4 <= min(stop, end):
                sub_kind, sub_length = data[sub], _U16.unpack_from(data, sub + 2)[0]
                if sub_kind in (C.SUB_USER_IDENTITY_RQ, C.SUB_USER_IDENTITY_AC):
                    spans += _sub_item_spans(data, sub_kind, sub + 4, end)
                sub += 4 + sub_length
            if sub != stop:
                broken = pos + 4
                break
        if stop > end:
            broken = pos
            break
        pos = stop
    else:
        return spans
    covered = {p for a, b in spans for p in range(a - 8, b)}
    for at in range(broken, end - 3):
        if at not in covered and _plausible(data, at, end):
            spans += _sub_item_spans(data, data[at], at + 4, end)
    return sorted(set(spans))


def mask_bytes(pdu: bytes, fill: bytes = b"*") -> bytes:
    """``pdu`` with each credential byte (:func:`secret_spans`) replaced by ``fill``; lengths and offsets kept."""
    spans = secret_spans(pdu)
    if not spans:
        return bytes(pdu)
    out = bytearray(pdu)
    for start, stop in spans:
        out[start:stop] = fill * (stop - start)
    return bytes(out)


def hexdump(data: bytes, limit: int | None = None, show_secrets: bool = False) -> tuple[str, int]:
    """``(dump, bytes left out)``: offset, 16 bytes in hex, their printable ASCII.

    Credential bytes (:func:`secret_spans`) print as ``**`` and ``*`` unless
    ``show_secrets``; offsets stay those of the PDU.
    """
    shown = bytes(data if limit is None else data[:limit])
    masked = set() if show_secrets else {p for a, b in secret_spans(data) for p in range(a, b)}
    lines = []
    for pos in range(0, len(shown), 16):
        cells = [("**", "*") if pos + i in masked else (f"{b:02x}", chr(b) if 32 <= b < 127 else ".")
                 for i, b in enumerate(shown[pos : pos + 16])]
        hexes = " ".join(c[0] for c in cells[:8]) + ("  " + " ".join(c[0] for c in cells[8:]) if len(cells) > 8 else "")
        lines.append(f"{pos:04x}  {hexes:<48}  {''.join(c[1] for c in cells)}")
    return "\n".join(lines), len(data) - len(shown)


# ---------------------------------------------------------------------- values and messages


class SecretText(str):
    """A string read out of a credential field: equal to, and hashed as, the string; its repr is its size."""

    __slots__ = ()

    def __repr__(self) -> str:
        return hidden(str(self))


def credentials_in(value: Any, depth: int = 4) -> set[str]:
    """Every secret value inside ``value``: the passcodes of ``users`` mappings (attributes or keys), the
    values under :func:`secret_keys`, and each :class:`SecretText`; dataclasses, mappings and lists searched."""
    import dataclasses

    found: set[str] = set()
    if depth < 0:
        return found
    if isinstance(value, SecretText):
        found.add(str(value))
    elif isinstance(value, Mapping):
        keys = secret_keys(value)
        for key, item in value.items():
            if key in SECRET_MAPPINGS and isinstance(item, Mapping):
                found |= {str(v) for v in item.values() if v not in (None, "")}
            elif key in keys and isinstance(item, (str, bytes)) and item:
                found.add(item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item))
            else:
                found |= credentials_in(item, depth - 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found |= credentials_in(item, depth - 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        found |= credentials_in({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, depth)
    return found


def scrub(text: str, secrets: set[str] | frozenset[str]) -> str:
    """``text`` with every occurrence of each secret (case-insensitive, longest first) replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = re.sub(re.escape(secret), MASK, text, flags=re.IGNORECASE)
    return text


# ---------------------------------------------------------------------- pytest


def _holds_secret(value: Any, depth: int = 6) -> bool:
    """True if ``value`` is, or holds in its dataclass fields and tuples, an object with ``secret_fields``."""
    import dataclasses

    if depth < 0:
        return False
    if getattr(value, "secret_fields", None) and dataclasses.is_dataclass(value):
        return True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_holds_secret(getattr(value, f.name), depth - 1) for f in dataclasses.fields(value))
    if isinstance(value, (list, tuple)):
        return any(_holds_secret(v, depth - 1) for v in value)
    return False


# an option that takes a credential: --password, -pw, +pwd (DCMTK), --user-token, --secret ...
_SECRET_OPTION = re.compile(r"(?i)^(-{1,2}|\+)[\w-]*(pass|pwd|pw|token|secret|credential)[\w-]*$")
_SECRET_ASSIGN = re.compile(r"(?i)^((?:-{1,2}|\+)[\w-]*(?:pass|pwd|pw|token|secret|credential)[\w-]*=)(.+)$")


def mask_argv(argv: list[str]) -> list[str]:
    """A command line as it may be shown: the value after an option named like a password, a
    passcode, a token or a secret (``--password X``, ``-pw X``, ``--token=X``) becomes ``***``."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        assigned = _SECRET_ASSIGN.match(word)
        if assigned:
            out.append(assigned.group(1) + "***")
        else:
            out.append(word)
            hide_next = bool(_SECRET_OPTION.match(word))
    return out


def assertrepr_compare(op: str, left: Any, right: Any) -> list[str] | None:
    """An explanation of a failed ``left == right`` between objects holding a user identity credential,
    for a ``pytest_assertrepr_compare`` hook: pytest's own drill-down into differing dataclass fields
    prints the raw field values; this lists the differing fields with their masked reprs.  None for
    anything else (pytest explains it as usual)."""
    import dataclasses

    if op != "==" or not (_holds_secret(left) or _holds_secret(right)):
        return None
    lines = [f"{left!r} == {right!r}"]
    if type(left) is not type(right) or not dataclasses.is_dataclass(left):
        return lines
    hide = set(getattr(left, "secret_fields", ()))
    for f in dataclasses.fields(left):
        a, b = getattr(left, f.name), getattr(right, f.name)
        if f.compare and a != b:
            if f.name in hide:
                lines.append(f"{f.name}: {hidden(a)} != {hidden(b)}")
            else:
                lines.append(f"{f.name}: {a!r} != {b!r}")
    return lines
