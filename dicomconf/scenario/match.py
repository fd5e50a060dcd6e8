"""What a received PDU looks like to a scenario, and partial matching against it.

Theory of operation
-------------------
:func:`pdu_view` turns a decoded PDU (``dicomconf.ul.pdu``) into plain data:
a mapping with the standard's snake_case field names, nested items as
mappings, bytes as lower-case hex, plus conveniences a scenario author wants
to write directly: for an A-ASSOCIATE-AC/RQ the user information sub-items by
name (``maximum_length``, ``implementation_class_uid``, ``role_selections``
...), for a P-DATA-TF the decoded DIMSE command set of each command PDV
(``command: {CommandField: 0x8030, Status: 0}``, ``command_name``, ``status``)
decoded by the core's :func:`dicomconf.ul.dimse.decode_command`.
:func:`message_view` is the view of a whole DIMSE message, which may have
come in any number of P-DATA-TF PDUs and PDVs (PS3.8 9.3.5, Annex E): an
expectation that names a message key (:data:`MESSAGE_KEYS`) is matched
against it, the per-PDU keys against the first PDU of the message.

:func:`match` compares an expectation (from YAML) with a view and returns the
differences (empty: it matched).  Rules, for each expected key:

* a scalar must equal the actual value (strings compare without trailing
  padding, UIDs and names as written);
* a list against a scalar is a set of alternatives (``reason: [0, 1]``);
* a list against a list: every expected element must match some actual
  element (order-free containment); ``{exactly: [...]}`` compares in order;
* a mapping against a mapping matches recursively (keys not named are free);
* a mapping against a scalar is an operator set: ``min``, ``max``, ``not``,
  ``any`` (alternatives), ``present`` (true/false), ``exactly``.

The differences never quote a credential (PS3.7 D.3.3.7): a value under a
credential key of a user identity (``secondary_field``, ``server_response``,
the ``primary_field`` of a token type; :func:`dicomconf.wire.secrets.secret_keys`)
shows by its size only, expected and received alike, and a mapping quoted
whole has its credentials masked.  :func:`get_path` hands such a value out
as a :class:`~dicomconf.wire.secrets.SecretText`, so that a saved credential
stays masked where a scenario uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from dicomconf.ul import constants as C
from dicomconf.wire.secrets import SecretText, secret_keys
from dicomconf.wire.secrets import show as _r

OPERATORS = frozenset({"min", "max", "not", "any", "present", "exactly"})
# Keys of a P-DATA-TF expectation that are about the DIMSE message, not the one PDU: they are
# matched against the message reassembled from all its PDVs (PS3.8 9.3.5, Annex E).
MESSAGE_KEYS = frozenset({"command", "command_name", "status"})
_USER_INFO_PROPERTIES = (
    "maximum_length",
    "implementation_class_uid",
    "implementation_version_name",
    "asynchronous_operations_window",
    "role_selections",
    "extended_negotiations",
    "common_extended_negotiations",
    "user_identity",
    "user_identity_response",
)


def _plain(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        item_type = getattr(type(value), "item_type", None)
        if isinstance(item_type, int) and "item_type" not in out:
            out["item_type"] = item_type
        if hasattr(value, "sub_items"):
            for name in _USER_INFO_PROPERTIES:
                out[name] = _plain(getattr(value, name))
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _dataset_view(ds: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for element in ds:
        if element.keyword:
            value = element.value
            out[element.keyword] = str(value) if hasattr(value, "is_valid") else value
    return out


def _command_view(pdv: Any) -> dict[str, Any] | None:
    from dicomconf.ul import dimse

    try:
        ds = dimse.decode_command(pdv.data)
    except Exception:  # a command that does not decode is a finding, not a view
        return None
    return _dataset_view(ds)


def _name_and_status(view: dict[str, Any], command: dict[str, Any]) -> None:
    from dicomconf.ul import dimse

    field = command.get("CommandField")
    view["command_name"] = dimse.COMMAND_FIELDS.get(field, f"{field:#06x}" if isinstance(field, int) else None)
    view["status"] = command.get("Status")


def message_view(first_pdu: Any, message: Any, pdus: int) -> dict[str, Any]:
    """A whole DIMSE message (PS3.7 6.3, PS3.8 E) as plain data: the view of the first
    P-DATA-TF PDU it came in (per-PDU keys), with ``command``, ``command_name`` and
    ``status`` taken from the command set reassembled from *all* its PDVs, ``pdus``
    (how many P-DATA-TF PDUs carried it) and ``data_set_length``."""
    view = pdu_view(first_pdu)
    try:
        command = _dataset_view(message.command)
    except Exception:  # a command set that does not decode: the message keys stay unset
        command = None
    if command is not None:
        view["command"] = command
        _name_and_status(view, command)
    view["pdus"] = pdus
    view["data_set_length"] = message.data_length
    return view


def pdu_view(pdu: Any) -> dict[str, Any]:
    """A decoded PDU as plain data (see the module docstring)."""
    view: dict[str, Any] = {"pdu": C.PDU_NAMES[pdu.pdu_type], "pdu_type": pdu.pdu_type}
    view.update(_plain(pdu))
    if "user_information" in view:
        for name in _USER_INFO_PROPERTIES:
            view.setdefault(name, view["user_information"].get(name))
    if pdu.pdu_type == C.P_DATA_TF:
        pdvs = []
        for pdv in pdu.pdvs:
            entry = {
                "context_id": pdv.context_id,
                "message_control_header": pdv.message_control_header,
                "is_command": pdv.is_command,
                "is_last": pdv.is_last,
                "length": len(pdv.data),
            }
            if pdv.is_command and pdv.is_last:
                command = _command_view(pdv)
                if command is not None:
                    entry["command"] = command
                    view.setdefault("command", command)
            pdvs.append(entry)
        view["pdvs"] = pdvs
        command = view.get("command")
        if command is not None:
            _name_and_status(view, command)
    return view


def field_names(pdu_name: str) -> set[str]:
    """The keys an expectation may name for ``pdu_name`` (``"A-ABORT"`` ...)."""
    from dicomconf.ul import pdu as P

    cls = P.PDU_CLASSES.get(C.PDU_TYPES.get(pdu_name, -1))
    if cls is None:
        return set()
    names = {f.name for f in dataclasses.fields(cls)} | {"pdu_type"}
    if "user_information" in names:
        names |= set(_USER_INFO_PROPERTIES)
    if cls is P.PDataTF:
        names |= MESSAGE_KEYS | {"pdus", "data_set_length"}
    return names


def get_path(view: Mapping[str, Any], path: str) -> Any:
    """``user_information.maximum_length`` or ``presentation_contexts.0.result`` from a view."""
    value: Any = view
    secret = False
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            secret = part in secret_keys(value)
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return SecretText(value) if secret and isinstance(value, str) else value


def _norm(value: Any) -> Any:
    return value.rstrip(" \x00") if isinstance(value, str) else value


def _scalar_equal(want: Any, have: Any) -> bool:
    if isinstance(want, bool) or isinstance(have, bool):
        return want is have or (isinstance(want, bool) and isinstance(have, bool) and want == have)
    if isinstance(want, str) and isinstance(have, str):
        return _norm(want) == _norm(have)
    if isinstance(want, str) and isinstance(have, int):
        try:
            return int(want, 0) == have
        except ValueError:
            return False
    return want == have


def _operators(want: Mapping[str, Any], have: Any, where: str, secret: bool = False) -> list[str]:
    problems: list[str] = []
    got = _r(have, secret)
    for op, arg in want.items():
        if op == "present":
            if bool(arg) != (have is not None):
                problems.append(f"{where}: expected {'present' if arg else 'absent'}, got {got}")
        elif op == "any":
            if not any(not match(a, have, where, secret=secret) for a in arg):
                problems.append(f"{where}: expected any of {_r(arg, secret)}, got {got}")
        elif op == "not":
            if not match(arg, have, where, secret=secret):
                problems.append(f"{where}: expected not {_r(arg, secret)}, got {got}")
        elif op == "exactly":
            if not isinstance(have, list) or len(have) != len(arg) or any(
                match(a, h, where, secret=secret) for a, h in zip(arg, have)
            ):
                problems.append(f"{where}: expected exactly {_r(arg, secret)}, got {got}")
        elif op in ("min", "max"):
            if not isinstance(have, (int, float)) or isinstance(have, bool):
                problems.append(f"{where}: expected a number ({op} {arg}), got {got}")
            elif (op == "min" and have < arg) or (op == "max" and have > arg):
                problems.append(f"{where}: expected {op} {arg}, got {got}")
    return problems


def match(want: Any, have: Any, where: str = "", *, secret: bool = False) -> list[str]:
    """The differences between expectation ``want`` and actual ``have`` (empty: match).

    ``secret``: ``have`` is a credential, quoted by size only (see the module docstring).
    """
    label = where or "value"
    if isinstance(want, Mapping):
        if want and set(want) <= OPERATORS:  # an operator set, also against a mapping ({present: false})
            return _operators(want, have, label, secret)
        if isinstance(have, Mapping):
            problems: list[str] = []
            hidden = secret_keys(have)
            for key, sub in want.items():
                path = f"{where}.{key}" if where else str(key)
                if key not in have:
                    if isinstance(sub, Mapping) and sub.get("present") is False:
                        continue
                    problems.append(f"{path}: not present (fields: {', '.join(sorted(map(str, have)))})")
                    continue
                problems += match(sub, have[key], path, secret=secret or key in hidden)
            return problems
        return [f"{label}: expected {_r(want, secret)}, got {_r(have, secret)}"]
    if isinstance(want, list):
        if isinstance(have, list):
            problems = []
            for i, w in enumerate(want):
                if all(match(w, h, f"{label}[]", secret=secret) for h in have):
                    problems.append(f"{label}: no element matches {_r(w, secret)} (got {_r(have, secret)})")
            return problems
        if any(not match(w, have, label, secret=secret) for w in want):
            return []
        return [f"{label}: expected one of {_r(want, secret)}, got {_r(have, secret)}"]
    if want is None:
        return [] if have is None else [f"{label}: expected null, got {_r(have, secret)}"]
    if _scalar_equal(want, have):
        return []
    return [f"{label}: expected {_r(want, secret)}, got {_r(have, secret)}"]
