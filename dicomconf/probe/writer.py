"""The probe's findings as a commented YAML profile (``dicomconf/scenario/profile.schema.json``).

Theory of operation
-------------------
:func:`render` writes a :class:`~dicomconf.probe.probe.ProbeResult` field
by field, in its order, each value followed by a comment that says how it
was found (``checks_called_ae: true   # an A-ASSOCIATE-RQ called ...``).
Lists whose elements carry their own comments (``sop_classes``,
``transfer_syntaxes``) are block lists with a comment per element; the
``roles`` mapping has a comment per SOP class; ``timers``, ``target`` and
``tls`` are nested mappings; a finding's notes follow it as comment lines.
A list the probe found empty is written as a comment only, since the
profile format wants at least one element (the suite's default applies).

Scalars are written plain when YAML reads them back as the same string,
otherwise double-quoted (JSON's escaping is valid YAML).  Comments are one
line each: line breaks in a finding's text become spaces.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dicomconf.probe.probe import Finding, ProbeResult, Section

COMMENT_COLUMN = 34
_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_YAML_WORDS = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"})


def scalar(value: Any) -> str:
    """One YAML scalar (or flow sequence of scalars) that reads back as ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    if isinstance(value, dict) and not value:
        return "{}"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)


def _comment(text: str) -> str:
    return " ".join(str(text).split())


def _line(indent: int, body: str, how: str = "") -> str:
    left = " " * indent + body
    if not how:
        return left
    return f"{left.ljust(COMMENT_COLUMN - 1)} # {_comment(how)}"


def _finding(key: str, found: Finding, indent: int) -> list[str]:
    pad = " " * indent
    value = found.value
    lines: list[str] = []
    if isinstance(value, list) and found.items:
        lines.append(_line(indent, f"{key}:", found.how))
        lines += [_line(indent + 2, f"- {scalar(v)}", found.items.get(str(v), "")) for v in value]
    elif isinstance(value, list) and not value and key in ("sop_classes", "transfer_syntaxes"):
        lines.append(f"{pad}# {key}: none found ({_comment(found.how)}); not written, the suite's default applies")
    elif isinstance(value, dict) and value:
        lines.append(_line(indent, f"{key}:", found.how))
        lines += [_line(indent + 2, f"{scalar(k)}: {scalar(v)}", found.items.get(str(k), "")) for k, v in value.items()]
    else:
        lines.append(_line(indent, f"{key}: {scalar(value)}", found.how))
    lines += [f"{pad}  # {_comment(note)}" for note in found.notes]
    return lines


def render(result: ProbeResult) -> str:
    """The profile text: header comments, then every field with its comment."""
    lines = [f"# {_comment(h)}" for h in result.header]
    for key, found in result.fields.items():
        if isinstance(found, Section):
            lines.append(_line(0, f"{key}:", found.how))
            for sub, value in found.fields.items():
                lines += _finding(sub, value, 2)
        else:
            lines += _finding(key, found, 0)
    return "\n".join(lines) + "\n"


__all__ = ["render", "scalar"]
