"""JSON Schema validation that reports ``file:line``, the key and what was expected.

Theory of operation
-------------------
:func:`validate` runs a Draft 2020-12 validator over a document loaded by
:mod:`dicomconf.scenario.loader`, picks the most relevant error
(``jsonschema.exceptions.best_match``), and turns its ``absolute_path`` into
a line through the loader's path map.  The message names the offending key
in the dotted form people write (``steps[3].expect.within``), what was found,
and what was expected, taken from the failing sub-schema's ``description``
when it has one (every property of the shipped schemas has one, which editors
show as hover help too).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from dicomconf.scenario.loader import Located, SourceError


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """A JSON schema shipped in this package (``scenario.schema.json`` ...)."""
    return json.loads(resources.files("dicomconf.scenario").joinpath(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _validator(name: str, definition: str | None = None) -> jsonschema.protocols.Validator:
    schema = load_schema(name)
    if definition is not None:
        schema = {key: value for key, value in schema.items() if key.startswith("$")}
        schema["$ref"] = f"#/$defs/{definition}"
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def dotted(path: Iterable[Any]) -> str:
    """``("steps", 3, "expect")`` -> ``steps[3].expect``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(error: ValidationError, inherited: str | None = None) -> tuple[tuple[Any, ...], str]:
    """(path of the offending key, message) for one validation error."""
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    expected = schema.get("description") or inherited
    if "propertyNames" in error.schema_path and error.validator == "enum":
        names = schema.get("enum", [])
        key = path + (error.instance,)
        return key, f"{dotted(key)}: unknown key {error.instance!r} (expected one of: {', '.join(names)})"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        allowed = ", ".join(sorted(known)) or "none"
        if extra:
            return path + (extra[0],), f"{dotted(path + (extra[0],))}: unknown key {extra[0]!r} (allowed: {allowed})"
    if error.validator == "propertyNames" and isinstance(error.instance, dict):
        names = schema.get("propertyNames", {}).get("enum", [])
        bad = next((k for k in error.instance if k not in names), None)
        if bad is not None:
            return path + (bad,), f"{dotted(path + (bad,))}: unknown key {bad!r} (expected one of: {', '.join(names)})"
    if error.validator == "required":
        return path, f"{dotted(path)}: {error.message}"
    if error.validator in ("minProperties", "maxProperties") and expected:
        return path, f"{dotted(path)}: {expected}"
    found = _short(error.instance)
    if expected:
        return path, f"{dotted(path)}: got {found}; expected {expected}"
    return path, f"{dotted(path)}: {error.message}"


def validate(doc: Located, schema_name: str, definition: str | None = None) -> None:
    """Raise :class:`SourceError` for the most relevant schema error in ``doc``
    (against the schema's ``$defs/<definition>`` when given)."""
    errors = list(_validator(schema_name, definition).iter_errors(doc.value))
    if not errors:
        return
    error = best_match(errors)
    # best_match prefers shallow errors; a deeper one inside the same branch is more
    # precise, but the branch's description says best what was expected.
    while error.context:
        error = best_match(error.context)
    inherited, parent = None, error.parent
    while parent is not None and inherited is None:
        if isinstance(parent.schema, dict):
            inherited = parent.schema.get("description")
        parent = parent.parent
    path, message = _describe(error, inherited)
    line = doc.line_of(path)
    raise SourceError(doc.file, line, message)
