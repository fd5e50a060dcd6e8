"""Templates, safe expressions and durations in scenario values.

Theory of operation
-------------------
A scenario string may contain ``{expression}`` parts, evaluated when the step
runs against a namespace: ``profile`` (the target profile), ``index`` (inside
``repeat``) and every value saved by an earlier step.  A string that is one
whole ``{expression}`` becomes the expression's value (a number stays a
number); otherwise each part is formatted into the string.  ``{{`` and ``}}``
are literal braces.

Expressions are parsed with :mod:`ast` and interpreted here, never passed to
``eval``: only literals, names from the namespace, attribute and constant
subscript access, arithmetic, comparisons, ``and``/``or``/``not``, the
conditional expression and the functions ``min``, ``max``, ``abs``, ``int``,
``float``, ``len``, ``round``, ``lower``, ``upper`` (of a string) are allowed.

Scenario and profile files are data, so an expression reaches data only.
Attribute access reads a key of a mapping, or an attribute whose value is
plain data (a number, a string, a container, a dataclass such as the
profile), never a function, method, class, module or frame, and refuses
every name that starts with an underscore, so ``__class__``,
``__globals__`` and the like are out of reach.  Indexing works on mappings,
lists, tuples and strings.  Nothing calls a function the
list above does not name (``__import__``, ``open``, ``eval``, a method), so
an expression can neither run code nor read a file; a refusal is an
:class:`ExpressionError` that the step reports with its ``file:line``.
Its message never quotes a credential (PS3.7 D.3.3.7): every secret value
the namespace holds (the profile's passcodes, a saved user identity field:
:func:`dicomconf.wire.secrets.credentials_in`) is replaced by ``***`` in it,
also where it is part of a longer value (``'<passcode>-x'``).

Durations are ``500ms``, ``5s``, ``1.5s``, ``2m`` or a bare number of
seconds; :func:`duration` accepts any of them after templating.
"""

from __future__ import annotations

import ast
import dataclasses
import operator
import re
import threading
from collections.abc import Mapping
from functools import lru_cache
from typing import Any


class ExpressionError(ValueError):
    """An expression or duration that cannot be evaluated (message says why)."""


_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_FUNCTIONS = {"min": min, "max": max, "abs": abs, "int": int, "float": float, "len": len, "round": round,
              "lower": lambda text: str(text).lower(), "upper": lambda text: str(text).upper()}


_INDEXABLE = (Mapping, list, tuple, str, bytes)
_DATA = (bool, int, float, str, bytes, type(None), Mapping, list, tuple, set, frozenset)


def _is_data(value: Any) -> bool:
    """Plain data an expression may hold: numbers, strings, containers, dataclass instances (the profile)."""
    return isinstance(value, _DATA) or (dataclasses.is_dataclass(value) and not isinstance(value, type))


def _get_attr(value: Any, name: str, text: str) -> Any:
    """``value.name``: a mapping's key, or an attribute whose value is plain data (never a function,
    class, module, frame ...), never a name starting with an underscore."""
    if name.startswith("_"):
        raise ExpressionError(f"{text!r}: attribute {name!r} is not accessible")
    if isinstance(value, Mapping):
        if name in value:
            return value[name]
        raise ExpressionError(f"{text!r}: no {name!r} (known: {', '.join(sorted(map(str, value))) or 'none'})")
    if not isinstance(value, (str, bytes)):  # a string's attributes are its methods
        try:
            found = getattr(value, name)
        except AttributeError:
            found = _MISSING
        if found is not _MISSING and not callable(found) and _is_data(found):
            return found
    raise ExpressionError(f"{text!r}: {type(value).__name__} has no field {name!r}")


_MISSING = object()


def _eval(node: ast.AST, ns: Mapping[str, Any], text: str) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, ns, text)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in ns:
            return ns[node.id]
        if node.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[node.id]
        raise ExpressionError(f"{text!r}: unknown name {node.id!r} (known: {', '.join(sorted(ns)) or 'none'})")
    if isinstance(node, ast.Attribute):
        return _get_attr(_eval(node.value, ns, text), node.attr, text)
    if isinstance(node, ast.Subscript):
        base = _eval(node.value, ns, text)
        if not isinstance(base, _INDEXABLE):
            raise ExpressionError(f"{text!r}: a {type(base).__name__} cannot be indexed")
        key = _eval(node.slice, ns, text)
        try:
            return base[key]
        except (KeyError, IndexError, TypeError) as exc:
            raise ExpressionError(f"{text!r}: cannot index with {key!r}: {exc}") from None
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _eval(node.left, ns, text), _eval(node.right, ns, text)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
        strings = isinstance(node.op, ast.Add) and isinstance(left, str) and isinstance(right, str)
        if not (numbers or strings):
            raise ExpressionError(f"{text!r}: cannot apply {type(node.op).__name__} to {left!r} and {right!r}")
        try:
            return _BINOPS[type(node.op)](left, right)
        except ZeroDivisionError as exc:
            raise ExpressionError(f"{text!r}: {exc}") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        try:
            return _UNARY[type(node.op)](_eval(node.operand, ns, text))
        except TypeError as exc:
            raise ExpressionError(f"{text!r}: {exc}") from None
    if isinstance(node, ast.BoolOp):
        values = (_eval(v, ns, text) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, ns, text)
        for op, comp in zip(node.ops, node.comparators):
            right = _eval(comp, ns, text)
            try:
                if not _COMPARE[type(op)](left, right):
                    return False
            except TypeError as exc:
                raise ExpressionError(f"{text!r}: {exc}") from None
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, ns, text) else node.orelse, ns, text)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, ns, text) for e in node.elts]
    if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS):
        what = f"function {node.func.id!r}" if isinstance(node.func, ast.Name) else "calling this"
        raise ExpressionError(f"{text!r}: {what} is not allowed (functions: {', '.join(sorted(_FUNCTIONS))})")
    if isinstance(node, ast.Call):
        if node.keywords:
            raise ExpressionError(f"{text!r}: keyword arguments are not allowed")
        args = [_eval(a, ns, text) for a in node.args]
        try:
            return _FUNCTIONS[node.func.id](*args)
        except (TypeError, ValueError) as exc:
            raise ExpressionError(f"{text!r}: {exc}") from None
    raise ExpressionError(f"{text!r}: {type(node).__name__} is not allowed in a scenario expression")


_PARSE_LOCK = threading.Lock()


@lru_cache(maxsize=4096)
def _parse(text: str) -> ast.Expression:
    """The tree of one expression, parsed once (trees are only read).  Parsing is serialised: CPython
    3.11's ``ast.parse`` can fail with "AST constructor recursion depth mismatch" when threads parse
    at once (scenarios are played on several threads, e.g. the overlapping waiting scenarios)."""
    with _PARSE_LOCK:
        return ast.parse(text, mode="eval")


def evaluate(text: str, ns: Mapping[str, Any]) -> Any:
    """Evaluate one expression (without braces) against ``ns``."""
    try:
        tree = _parse(text.strip())
    except SyntaxError as exc:
        raise ExpressionError(f"{text!r}: not an expression ({exc.msg})") from None
    try:
        return _eval(tree, ns, text)
    except ExpressionError as exc:
        from dicomconf.wire.secrets import credentials_in, scrub

        raise ExpressionError(scrub(str(exc), credentials_in(dict(ns)))) from None


_PART = re.compile(r"\{\{|\}\}|\{([^{}]+)\}")


def has_template(value: str) -> bool:
    return "{" in value or "}" in value


def render(value: str, ns: Mapping[str, Any]) -> Any:
    """Render a template string (see the module docstring)."""
    whole = re.fullmatch(r"\{([^{}]+)\}", value)
    if whole:
        return evaluate(whole.group(1), ns)

    def part(m: re.Match) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        result = evaluate(m.group(1), ns)
        if isinstance(result, float) and result.is_integer():
            result = int(result)
        return str(result)

    return _PART.sub(part, value)


def render_all(value: Any, ns: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (mappings and lists recursively)."""
    if isinstance(value, str):
        return render(value, ns) if has_template(value) else value
    if isinstance(value, Mapping):
        return {k: render_all(v, ns) for k, v in value.items()}
    if isinstance(value, list):
        return [render_all(v, ns) for v in value]
    return value


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, None: 1.0}


def duration(value: Any, ns: Mapping[str, Any] | None = None) -> float:
    """Seconds from ``5s``, ``500ms``, ``2m``, a number, or a template giving one."""
    if isinstance(value, bool):
        raise ExpressionError(f"{value!r} is not a duration (use e.g. 5s or 500ms)")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value)
        if ns is not None and has_template(text):
            rendered = render(text, ns)
            if isinstance(rendered, (int, float)) and not isinstance(rendered, bool):
                return _check_duration(float(rendered), value)
            text = str(rendered)
        m = _DURATION.match(text)
        if not m:
            raise ExpressionError(f"{value!r} is not a duration (use e.g. 5s or 500ms)")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    return _check_duration(seconds, value)


def _check_duration(seconds: float, original: Any) -> float:
    if seconds < 0:
        raise ExpressionError(f"{original!r} is a negative duration")
    return seconds
