"""Checks of the reference SCP's settings that the file and the command line share (no YAML here).

Theory of operation
-------------------
:mod:`dicomconf.scp.config` (the dataclass and the command-line flags) and
:mod:`dicomconf.scp.config_yaml` (the file) both check AE titles (PS3.8
9.3.2), UIDs given as UIDs or pydicom keywords, sizes (``256MiB``) and
``HOST:PORT``; each check lives here once and returns what is wrong, or
raises :class:`ConfigError` whose message starts ``file:line:``.
"""

from __future__ import annotations

import re
from typing import Any

from pydicom.uid import UID_dictionary

from dicomconf.ul.pdu import ae_title_problem

STORAGE_KINDS = ("memory", "directory", "discard")
UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_KEYWORDS: dict[str, str] = {v[4]: uid for uid, v in UID_dictionary.items() if v[4]}


class ConfigError(ValueError):
    """A configuration that cannot be used; the message starts ``file:line:``."""


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_SHIFTS = {"": 0, "b": 0, "k": 10, "m": 20, "g": 30, "t": 40}


def parse_size(value: Any, allow_none: bool = False) -> int | None:
    """Bytes from ``268435456``, ``"256MiB"``, ``"256 M"``, ``"1GiB"`` (binary units); ``none`` if allowed.

    Raises ``ValueError`` saying what is accepted.
    """
    if allow_none and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    m = _SIZE.match(value) if isinstance(value, str) else None
    if not m:
        what = "a number of bytes, or with KiB, MiB, GiB" + (", or none" if allow_none else "")
        raise ValueError(f"{value!r} is not a size ({what})")
    return int(m.group(1)) << _SIZE_SHIFTS[(m.group(2) or "")[:1].lower()]


# The DIMSE services the SCP may offer beyond echo and store (dicomconf.scp.services_setup, docs/scp.md).
SERVICES = ("find", "move", "get", "commitment", "mpps", "worklist")


def ae_problem(title: str) -> str | None:
    """Why ``title`` cannot be one of our AE titles (``dicomconf.ul.pdu.ae_title_problem``), or None."""
    problem = ae_title_problem(title)
    return None if problem is None else f"AE title {title!r} {problem}"


def check_ae(title: str, where: str) -> None:
    problem = ae_problem(title) if isinstance(title, str) else f"AE title {title!r} is not a string"
    if problem:
        raise ConfigError(f"{where}: {problem}")


def resolve_uid(value: Any) -> str | None:
    """A UID from a UID string or a pydicom keyword; None when it is neither."""
    if not isinstance(value, str):
        return None
    if UID_RE.match(value) and len(value) <= 64:
        return value
    return _KEYWORDS.get(value)


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 address) -> (host, port); ValueError says what is wrong."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT with a port 1-65535")
    return host.strip("[]"), int(port)


__all__ = ["SERVICES", "STORAGE_KINDS", "UID_RE", "ConfigError", "ae_problem", "check_ae", "parse_hostport",
           "parse_size", "resolve_uid"]
