"""JSON Schema validation that reports every error: ``file:line``, the key, what was expected.

Theory of operation
-------------------
:func:`schema_errors` runs a Draft 2020-12 validator over a document loaded
by :mod:`dicomconf.scenario.loader` and turns *every* error into a located
:class:`~dicomconf.scenario.loader.SourceError`; :func:`validate` raises them
together (a :class:`~dicomconf.scenario.loader.SourceErrors` when there are
several), ordered by line, so a user fixes a file in one pass.

Each error's ``absolute_path`` becomes a line through the loader's path map.
The message names the offending key in the dotted form people write
(``steps[3].expect.within``), what is wrong and what is allowed, taken from
the failing sub-schema's ``description`` (every property of the shipped
schemas has one, which editors show as hover help too); an unknown key gets
the nearest known key as a suggestion.

An ``anyOf`` error stands for alternatives: the branches whose type does not
even fit the value are set aside; when one or more remain, the most relevant
one (``jsonschema.exceptions.best_match``) is described, with all of its own
errors; when none remains, the ``anyOf`` itself is described ("got true;
expected a duration ...").
"""

from __future__ import annotations

import difflib
import json
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Iterator

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from dicomconf.scenario.loader import Located, SourceError, SourceErrors

_ALTERNATIVES = ("anyOf", "oneOf")
_TYPE_CHECKS = ("type", "const", "enum")
_BOUNDS = {
    "minItems": "fewer than {} items",
    "maxItems": "more than {} items",
    "minLength": "shorter than {} characters",
    "maxLength": "longer than {} characters",
    "minimum": "below {}",
    "maximum": "above {}",
    "exclusiveMinimum": "not above {}",
    "exclusiveMaximum": "not below {}",
}


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """A JSON schema shipped in this package (``scenario.schema.json`` ...)."""
    return json.loads(resources.files("dicomconf.scenario").joinpath(name).read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _checked_schema(name: str) -> dict:
    """The shipped schema ``name``, checked against its metaschema once per process (the check of
    the scenario schema costs about as much as validating the whole library against it)."""
    schema = load_schema(name)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    return schema


@lru_cache(maxsize=None)
def _validator(name: str, definition: str | None = None) -> jsonschema.protocols.Validator:
    """The compiled validator of schema ``name`` (or of its ``$defs/<definition>``), made once per process."""
    schema = _checked_schema(name)
    if definition is not None:
        schema = {key: value for key, value in schema.items() if key.startswith("$")}
        schema["$ref"] = f"#/$defs/{definition}"
    return jsonschema.validators.validator_for(schema)(schema)


def dotted(path: Iterable[Any]) -> str:
    """``("steps", 3, "expect")`` -> ``steps[3].expect``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def suggest(word: Any, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice nearest ``word`` (case-insensitive), else ``""``."""
    if not isinstance(word, str):
        return ""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(path: tuple[Any, ...], key: Any, allowed: list[str]) -> tuple[tuple[Any, ...], str]:
    where = path + (key,)
    names = ", ".join(allowed) or "none"
    return where, f"{dotted(where)}: unknown key {key!r}{suggest(key, allowed)}; allowed: {names}"


def _describe(error: ValidationError, inherited: str | None = None) -> list[tuple[tuple[Any, ...], str]]:
    """(path of the offending key, message) for each problem one validation error stands for."""
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    expected = schema.get("description") or inherited
    if "propertyNames" in error.relative_schema_path and error.validator == "enum":
        return [_unknown_key(path, error.instance, list(schema.get("enum", [])))]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        if extra and schema.get("additionalProperties") is False:
            return [_unknown_key(path, key, known) for key in extra]
    if error.validator == "propertyNames" and isinstance(error.instance, dict):
        names = list(schema.get("propertyNames", {}).get("enum", []))
        bad = [k for k in error.instance if k not in names]
        if bad:
            return [_unknown_key(path, key, names) for key in bad]
    if error.validator == "required":
        return [(path, f"{dotted(path)}: {error.message}")]
    if error.validator in ("minProperties", "maxProperties") and expected:
        return [(path, f"{dotted(path)}: {expected}")]
    # A passcode in a profile's users (or a user identity's fields) is never quoted back (PS3.7 D.3.3.7).
    secret = any(str(p) in ("users", "passcode", "secondary_field", "primary_field") for p in path)
    found = "a value (not shown: it is a credential)" if secret else _short(error.instance)
    if error.validator == "enum":
        found += suggest(error.instance, [str(v) for v in schema.get("enum", [])])
    elif error.validator in _BOUNDS:
        found += f" ({_BOUNDS[error.validator].format(error.validator_value)})"
    if expected:
        return [(path, f"{dotted(path)}: got {found}; expected {expected}")]
    return [(path, f"{dotted(path)}: {error.message}")]


def _inherited(error: ValidationError) -> str | None:
    parent = error.parent
    while parent is not None:
        if isinstance(parent.schema, dict) and parent.schema.get("description"):
            return parent.schema["description"]
        parent = parent.parent
    return None


def _misfits(branch: list[ValidationError], where: tuple[Any, ...]) -> bool:
    """True when a branch of alternatives fails on the value's very type (or constant)."""
    return any(e.validator in _TYPE_CHECKS and tuple(e.absolute_path) == where for e in branch)


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The errors to describe for ``error`` (see the module docstring on ``anyOf``)."""
    if error.validator not in _ALTERNATIVES or not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    where = tuple(error.absolute_path)
    fitting = [errs for errs in branches.values() if not _misfits(errs, where)]
    if not fitting:
        return [error]
    best = best_match([e for errs in fitting for e in errs])  # may be an error nested inside one of them
    chosen = next((errs for errs in fitting if any(best is d for e in errs for d in _descendants(e))), fitting[0])
    return [leaf for sub in chosen for leaf in _leaves(sub)]


def _descendants(error: ValidationError) -> Iterator[ValidationError]:
    """``error`` and every error of its ``anyOf``/``oneOf`` branches, at any depth."""
    yield error
    for sub in error.context or ():
        yield from _descendants(sub)


def schema_errors(
    doc: Located, schema_name: str, definition: str | None = None
) -> list[tuple[tuple[Any, ...], SourceError]]:
    """Every schema error in ``doc`` as ``(path, SourceError)``, in document order
    (against the schema's ``$defs/<definition>`` when given)."""
    out: list[tuple[tuple[Any, ...], SourceError]] = []
    seen: set[str] = set()
    for error in _validator(schema_name, definition).iter_errors(doc.value):
        for leaf in _leaves(error):
            for path, message in _describe(leaf, _inherited(leaf)):
                if message not in seen:
                    seen.add(message)
                    out.append((path, SourceError(doc.file, doc.line_of(path), message)))
    out.sort(key=lambda item: doc.position(item[0]))
    return out


def validate(doc: Located, schema_name: str, definition: str | None = None) -> None:
    """Raise every schema error in ``doc`` at once (a :class:`SourceError`, or
    :class:`SourceErrors` when there are several)."""
    error = SourceErrors.merge(e for _, e in schema_errors(doc, schema_name, definition))
    if error is not None:
        raise error
