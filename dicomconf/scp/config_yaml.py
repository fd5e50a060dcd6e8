"""The reference SCP's configuration file: YAML with a line for every fault (``file:line``).

Theory of operation
-------------------
:func:`load_text` reads a YAML document with a SafeLoader whose mappings and
sequences keep the line of each key and element (:class:`_LineDict`,
:class:`_LineList`), then applies each top-level key through its handler in
:data:`_FIELDS`: the handler checks the value's type and range and sets the
field of :class:`~dicomconf.scp.config.SCPConfig`, or raises
:class:`~dicomconf.scp.config.ConfigError` naming the file, the line and what
is allowed.  Paths in the file are relative to the file.  The checks that do
not depend on the file (AE titles, UIDs by keyword, HOST:PORT) live in
:mod:`dicomconf.scp.config`, which the command-line flags use too.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import yaml

from dicomconf.scp.config_checks import (
    SERVICES,
    STORAGE_KINDS,
    UID_RE,
    ConfigError,
    ae_problem,
    parse_hostport,
    parse_size,
    resolve_uid,
)
from dicomconf.scp.tls import TLSConfig, TLSSetupError, server_context

Config = Any  # an SCPConfig: dicomconf.scp.config imports this module, so the type is not named here


def load_text(cls: type, text: str, name: str) -> Any:
    """An instance of ``cls`` (an ``SCPConfig``) from the YAML ``text`` of the file ``name``."""
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError(f"{name}:{line}: not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}:0: not valid YAML: {exc}") from None
    cfg = cls(source=name)
    if doc is None:
        return cfg
    if not isinstance(doc, _LineDict):
        raise ConfigError(f"{name}:1: the file must be a mapping of settings, not {type(doc).__name__}")
    _apply_document(cfg, doc, name)
    cfg.validate()
    return cfg



class _LineDict(dict):
    """A mapping that remembers the line of itself and of each key."""

    line: int = 0
    key_lines: dict


class _LineList(list):
    line: int = 0
    item_lines: list


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences keep their 1-based line numbers."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    out = _LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) or key is None:
            raise yaml.constructor.ConstructorError(None, None, "a key must be a plain scalar", key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> _LineList:
    out = _LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


class _Where:
    """Formats ``file:line:`` prefixes."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, line: int) -> str:
        return f"{self.name}:{line}"


def _apply_document(cfg: Config, doc: _LineDict, name: str) -> None:
    at = _Where(name)
    for key, value in doc.items():
        line = doc.key_lines[key]
        handler = _FIELDS.get(key)
        if handler is None:
            known = ", ".join(sorted(_FIELDS))
            raise ConfigError(f"{at(line)}: unknown setting {key!r} (known: {known})")
        handler(cfg, value, at, line)


def _fail(at: _Where, line: int, what: str) -> ConfigError:
    return ConfigError(f"{at(line)}: {what}")


def _line_of(value: Any, default: int) -> int:
    return getattr(value, "line", default) or default


def _bool(key: str) -> Callable:
    def apply(cfg: Config, value: Any, at: _Where, line: int) -> None:
        if not isinstance(value, bool):
            raise _fail(at, line, f"{key} must be true or false, not {value!r}")
        setattr(cfg, key, value)

    return apply


def _int(key: str, lo: int, hi: int, optional: bool = False) -> Callable:
    def apply(cfg: Config, value: Any, at: _Where, line: int) -> None:
        if value is None and optional:
            setattr(cfg, key, None)
            return
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _fail(at, line, f"{key} must be an integer {lo}-{hi}, not {value!r}")
        setattr(cfg, key, value)

    return apply


def _seconds(key: str, optional: bool = False) -> Callable:
    def apply(cfg: Config, value: Any, at: _Where, line: int) -> None:
        if value is None and optional:
            setattr(cfg, key, None)
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise _fail(at, line, f"{key} must be a positive number of seconds, not {value!r}")
        setattr(cfg, key, float(value))

    return apply


def _string(key: str, check: Callable[[str], str | None] | None = None, optional: bool = False) -> Callable:
    def apply(cfg: Config, value: Any, at: _Where, line: int) -> None:
        if value is None and optional:
            setattr(cfg, key, None)
            return
        if not isinstance(value, str) or not value:
            raise _fail(at, line, f"{key} must be a non-empty string, not {value!r}")
        problem = check(value) if check else None
        if problem:
            raise _fail(at, line, f"{key}: {problem}")
        setattr(cfg, key, value)

    return apply








def _uid(value: Any, at: _Where, line: int, what: str) -> str:
    uid = resolve_uid(value)
    if uid is None:
        raise _fail(at, line, f"{what} {value!r} is neither a UID nor a known pydicom keyword")
    return uid


def _ae_list(key: str, optional: bool) -> Callable:
    def apply(cfg: Config, value: Any, at: _Where, line: int) -> None:
        if value is None and optional:
            setattr(cfg, key, None)
            return
        if isinstance(value, str):
            value = [value]
            value_lines = [line]
        elif isinstance(value, _LineList) and value:
            value_lines = value.item_lines
        else:
            raise _fail(at, line, f"{key} must be an AE title or a non-empty list of them, not {value!r}")
        titles = []
        for item, item_line in zip(value, value_lines):
            problem = ae_problem(item) if isinstance(item, str) else f"AE title {item!r} is not a string"
            if problem:
                raise _fail(at, item_line, problem)
            titles.append(item.strip())
        setattr(cfg, key, tuple(titles))

    return apply


def _supported(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """``supported: default`` or a mapping {SOP class: [transfer syntaxes] | default}."""
    if value == "default" or value is None:
        cfg.supported = None
        return
    if not isinstance(value, _LineDict) or not value:
        raise _fail(at, line, "supported must be 'default' or a mapping of SOP class to transfer syntaxes")
    out: dict[str, tuple[str, ...]] = {}
    for sop, syntaxes in value.items():
        sop_line = value.key_lines[sop]
        sop_uid = _uid(sop, at, sop_line, "SOP class")
        if syntaxes == "default":
            from dicomconf.ul.negotiation import default_supported

            defaults = default_supported()
            if sop_uid not in defaults:
                raise _fail(at, sop_line, f"{sop!r} has no default transfer syntaxes; list them")
            out[sop_uid] = tuple(defaults[sop_uid])
            continue
        if isinstance(syntaxes, str):
            syntaxes = _LineList([syntaxes])
            syntaxes.item_lines = [sop_line]
        if not isinstance(syntaxes, _LineList) or not syntaxes:
            raise _fail(at, sop_line, f"{sop!r} needs a list of transfer syntaxes or 'default'")
        out[sop_uid] = tuple(
            _uid(ts, at, ts_line, "transfer syntax") for ts, ts_line in zip(syntaxes, syntaxes.item_lines)
        )
    cfg.supported = out


def _roles(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """``roles: {SOP class: {scu: bool, scp: bool}}`` - which proposed roles to accept."""
    if not isinstance(value, _LineDict):
        raise _fail(at, line, "roles must be a mapping of SOP class to {scu: true/false, scp: true/false}")
    out: dict[str, tuple[bool, bool]] = {}
    for sop, spec in value.items():
        sop_line = value.key_lines[sop]
        sop_uid = _uid(sop, at, sop_line, "SOP class")
        if not isinstance(spec, _LineDict) or set(spec) - {"scu", "scp"}:
            raise _fail(at, _line_of(spec, sop_line), f"roles of {sop!r} must be {{scu: true/false, scp: true/false}}")
        for k, v in spec.items():
            if not isinstance(v, bool):
                raise _fail(at, spec.key_lines[k], f"roles.{sop}.{k} must be true or false, not {v!r}")
        out[sop_uid] = (spec.get("scu", True), spec.get("scp", False))
    cfg.roles = out


def _users(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """``users: {name: passcode or null}`` (PS3.7 D.3.3.7: types 1 and 2)."""
    if value is None:
        cfg.users = None
        return
    if not isinstance(value, _LineDict):
        raise _fail(at, line, "users must be a mapping of username to passcode (or null for username only)")
    out: dict[str, str | None] = {}
    for name, passcode in value.items():
        if not isinstance(name, str) or not name:
            raise _fail(at, value.key_lines[name], f"username {name!r} must be a non-empty string")
        if passcode is not None and not isinstance(passcode, (str, int)):
            raise _fail(at, value.key_lines[name], f"passcode of {name!r} must be a string or null")
        out[name] = None if passcode is None else str(passcode)
    cfg.users = out


def _async_window(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """``async_window: [invoked, performed]`` or null (PS3.7 D.3.3.3)."""
    if value is None:
        cfg.async_window = None
        return
    ok = isinstance(value, list) and len(value) == 2
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFFFF for v in value)
    if not ok:
        raise _fail(at, line, f"async_window must be [invoked, performed], each 0-65535, not {value!r}")
    cfg.async_window = (value[0], value[1])


def _storage_dir(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """A directory path; relative paths are taken from the configuration file's directory."""
    if value is None:
        cfg.storage_dir = None
        return
    if not isinstance(value, str) or not value:
        raise _fail(at, line, f"storage_dir must be a directory path, not {value!r}")
    base = os.path.dirname(at.name) if os.path.exists(at.name) else ""
    path = os.path.join(base, value)
    if os.path.exists(path) and not os.path.isdir(path):
        raise _fail(at, line, f"storage_dir {path!r} exists and is not a directory")
    cfg.storage_dir = path


def _index(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """``index``: default, none, ``:memory:`` or a file path (relative to the configuration file)."""
    if value is None:
        value = "none"
    if not isinstance(value, str) or not value:
        raise _fail(at, line, f"index must be default, none, :memory: or a file path, not {value!r}")
    if value not in ("default", "none", ":memory:"):
        base = os.path.dirname(at.name) if os.path.exists(at.name) else ""
        value = os.path.join(base, value)
        if os.path.isdir(value):
            raise _fail(at, line, f"index {value!r} is a directory, not a file")
    cfg.index = value


def _load(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """``load``: a directory or a list of them, of Part 10 files indexed at start (relative to the file)."""
    if isinstance(value, str):
        value, lines = [value], [line]
    elif isinstance(value, _LineList):
        lines = value.item_lines
    else:
        raise _fail(at, line, f"load must be a directory or a list of directories, not {value!r}")
    base = os.path.dirname(at.name) if os.path.exists(at.name) else ""
    out = []
    for item, item_line in zip(value, lines):
        if not isinstance(item, str) or not item:
            raise _fail(at, item_line, f"load: {item!r} is not a directory path")
        path = os.path.join(base, item)
        if not os.path.isdir(path):
            raise _fail(at, item_line, f"load: {path!r} is not a directory")
        out.append(path)
    cfg.load = tuple(out)




def _move_destinations(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """``move_destinations``: a mapping of AE title -> ``HOST:PORT`` (PS3.4 C.4.2.2.1)."""
    if value is None:
        cfg.move_destinations = {}
        return
    if not isinstance(value, _LineDict):
        raise _fail(at, line, f"move_destinations must map AE titles to HOST:PORT, not {value!r}")
    out = {}
    for title, where in value.items():
        kline = value.key_lines[title]
        problem = ae_problem(title) if isinstance(title, str) else f"AE title {title!r} is not a string"
        if problem:
            raise _fail(at, kline, f"move_destinations: {problem}")
        try:
            out[title] = parse_hostport(str(where))
        except ValueError as exc:
            raise _fail(at, kline, f"move_destinations.{title}: {exc}") from None
    cfg.move_destinations = out


def _services(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """``services``: null (every one whose need is met) or a list of SERVICES."""
    if value is None:
        cfg.services = None
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(at, line, f"services must be a list of {', '.join(SERVICES)}, not {value!r}")
    for name in value:
        if name not in SERVICES:
            raise _fail(at, line, f"unknown service {name!r}; known: {', '.join(SERVICES)}")
    cfg.services = tuple(value)


def _worklist(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """``worklist``: a YAML file or a directory of DICOM files, relative to the configuration file."""
    if value is None:
        cfg.worklist = None
        return
    if not isinstance(value, str) or not value:
        raise _fail(at, line, f"worklist must be a file or directory path, not {value!r}")
    base = os.path.dirname(at.name) if os.path.exists(at.name) else ""
    path = os.path.join(base, value)
    if not os.path.exists(path):
        raise _fail(at, line, f"worklist: no such file or directory {path!r}")
    cfg.worklist = path


def _memory_limit(cfg: Config, value: Any, at: _Where, line: int) -> None:
    """``memory_storage_limit``: bytes (or ``256 MiB``), or null for no bound, asked for explicitly."""
    try:
        limit = parse_size(value, allow_none=True)
    except ValueError as exc:
        raise _fail(at, line, f"memory_storage_limit: {exc}") from None
    cfg.memory_storage_limit = limit


def _storage(cfg: Config, value: Any, at: _Where, line: int) -> None:
    if value not in STORAGE_KINDS:
        raise _fail(at, line, f"storage must be one of {', '.join(STORAGE_KINDS)}, not {value!r}")
    cfg.storage = value


def _uid_problem(value: str) -> str | None:
    if not UID_RE.match(value) or len(value) > 64:
        return f"{value!r} is not a UID (digits and dots, at most 64 characters)"
    return None


def _version_problem(value: str) -> str | None:
    if len(value) > 16:
        return f"{value!r} is longer than 16 characters (PS3.7 D.3.3.2.3)"
    return None


_TLS_FIELDS = {"cert", "key", "ca", "require_client_cert", "port", "min_version", "ciphers"}


def _tls(cfg: Config, value: Any, at: _Where, line: int) -> None:
    if value is None:
        cfg.tls = TLSConfig()
        return
    if not isinstance(value, _LineDict):
        raise _fail(at, line, "tls must be a mapping with cert, key, ca, require_client_cert, port, "
                              "min_version, ciphers")
    base = os.path.dirname(at.name) if os.path.exists(at.name) else ""
    tls = TLSConfig(port=0)
    for key, item in value.items():
        kline = value.key_lines[key]
        if key not in _TLS_FIELDS:
            raise _fail(at, kline, f"unknown tls setting {key!r} (known: {', '.join(sorted(_TLS_FIELDS))})")
        if key == "require_client_cert":
            if not isinstance(item, bool):
                raise _fail(at, kline, f"tls.require_client_cert must be true or false, not {item!r}")
            tls.require_client_cert = item
        elif key == "port":
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 65535:
                raise _fail(at, kline, f"tls.port must be an integer 0-65535, not {item!r}")
            tls.port = item
        elif key in ("min_version", "ciphers"):
            # Loosening the BCP 195 profile (PS3.15 B.12), e.g. for a fake PACS that old modalities
            # reach with TLS 1.0; server_context() below checks the value, with this file's line.
            if not isinstance(item, str) or not item:
                raise _fail(at, kline, f"tls.{key} must be a string, not {item!r}")
            setattr(tls, key, item)
        else:
            if not isinstance(item, str) or not item:
                raise _fail(at, kline, f"tls.{key} must be a file path")
            path = os.path.join(base, item)
            if not os.path.isfile(path):
                raise _fail(at, kline, f"tls.{key}: no such file {path!r}")
            setattr(tls, key, path)
    if not (tls.cert and tls.key):
        raise _fail(at, line, "tls needs both cert and key")
    try:
        server_context(tls)  # a certificate or key that does not load fails here, with this line
    except TLSSetupError as exc:
        raise _fail(at, line, str(exc)) from None
    cfg.tls = tls


_FIELDS: dict[str, Callable] = {
    "host": _string("host"),
    "port": _int("port", 0, 65535),
    "ae_titles": _ae_list("ae_titles", optional=False),
    "require_called_ae": _bool("require_called_ae"),
    "allowed_calling_aes": _ae_list("allowed_calling_aes", optional=True),
    "supported": _supported,
    "roles": _roles,
    "max_pdu_length": _int("max_pdu_length", 0, 0xFFFFFFFF),
    "max_associations": _int("max_associations", 1, 1_000_000, optional=True),
    "users": _users,
    "require_user_identity": _bool("require_user_identity"),
    "async_window": _async_window,
    "implementation_class_uid": _string("implementation_class_uid", _uid_problem),
    "implementation_version_name": _string("implementation_version_name", _version_problem),
    "storage": _storage,
    "storage_dir": _storage_dir,
    "fsync": _bool("fsync"),
    "index": _index,
    "load": _load,
    "services": _services,
    "move_destinations": _move_destinations,
    "worklist": _worklist,
    "commitment_report_to": _string("commitment_report_to", ae_problem, optional=True),
    "max_dataset_length": _int("max_dataset_length", 1, (1 << 63) - 1, optional=True),
    "memory_storage_limit": _memory_limit,
    "max_connections": _int("max_connections", 1, 1_000_000),
    "artim_timeout": _seconds("artim_timeout"),
    "idle_timeout": _seconds("idle_timeout", optional=True),
    "tls": _tls,
    "backlog": _int("backlog", 1, 65535),
    "verbose": _bool("verbose"),
    "show_secrets": _bool("show_secrets"),
}


__all__ = ["load_text"]
