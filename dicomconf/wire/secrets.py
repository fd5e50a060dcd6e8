"""Secrets in PDUs and in the specs that build them: what to mask when they are shown (PS3.7 D.3.3.7).

Theory of operation
-------------------
A User Identity Negotiation sub-item (58H, PS3.7 D.3.3.7.1) carries a
credential: the passcode of type 2 in its secondary field, and for types 3-5
(Kerberos service ticket, SAML assertion, JSON Web Token) the primary field
itself.  The server response of the 59H sub-item (D.3.3.7.2) is a ticket or
token for those types.  A capture holds them because it is the wire; what we
print or write for people (scenario step records in report.json, the
``dicomconf decode -v`` tree) shows ``***`` instead, unless the user asks for
them (``--show-secrets``).

:func:`mask_spec` masks a step's or a crafted PDU's arguments (plain
mappings and lists, as a scenario file gives them); :func:`mask_packet`
masks a scapy dissection in place.
"""

from __future__ import annotations

from typing import Any

MASK = "***"
SECRET_KEYS = frozenset({"secondary", "secondary_field", "server_response"})
TOKEN_TYPES = frozenset({3, 4, 5})  # the primary field is itself the credential
_TYPE_KEYS = ("type", "user_identity_type")
_PRIMARY_KEYS = ("primary", "primary_field")


def _token_type(spec: dict) -> bool:
    for key in _TYPE_KEYS:
        try:
            if int(spec.get(key)) in TOKEN_TYPES:  # type: ignore[arg-type]
                return True
        except (TypeError, ValueError):
            continue
    return False


def mask_spec(value: Any) -> Any:
    """A copy of ``value`` with every credential of a user identity replaced by ``***``.

    Keys ``secondary``/``secondary_field``/``server_response`` anywhere are
    masked when not empty; so is ``primary``/``primary_field`` in a mapping
    whose ``type``/``user_identity_type`` is 3, 4 or 5.
    """
    if isinstance(value, dict):
        token = _token_type(value)
        out = {}
        for key, item in value.items():
            secret = key in SECRET_KEYS or (token and key in _PRIMARY_KEYS)
            out[key] = MASK if secret and item not in ("", b"", None) else mask_spec(item)
        return out
    if isinstance(value, (list, tuple)):
        return [mask_spec(item) for item in value]
    return value


def mask_packet(pkt: Any) -> Any:
    """Mask the credentials of every User Identity layer (58H and 59H) inside a scapy dissection, in place."""
    from dicomconf.ul import constants as C
    from dicomconf.wire.layers import ITEM_CLASSES

    rq_class = ITEM_CLASSES[C.SUB_USER_IDENTITY_RQ]
    ac_class = ITEM_CLASSES[C.SUB_USER_IDENTITY_AC]
    for layer in _layers(pkt):
        if isinstance(layer, rq_class):
            if layer.secondary_field:
                layer.secondary_field = MASK.encode()
            if layer.user_identity_type in TOKEN_TYPES and layer.primary_field:
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
