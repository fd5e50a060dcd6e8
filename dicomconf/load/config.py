"""The load file: what a ``dicomconf load`` run does, read from YAML and checked (docs/load.md).

Theory of operation
-------------------
:func:`load_config` reads the file with the scenario loader
(:func:`dicomconf.scenario.loader.load_yaml`, which keeps the line of every
value), validates it against ``load.schema.json`` (JSON Schema 2020-12) and
then checks what a schema cannot say: the host's syntax, AE titles (PS3.8
9.3.2, PS3.5 6.2), durations, sizes, SOP classes and information models
(resolved through :func:`dicomconf.scu.client.resolve_uid`, so the short names
are the scenario language's), identifier keywords (PS3.6), files that exist,
TLS files that load.  Every problem is a
:class:`~dicomconf.scenario.loader.SourceError` (``file:line: what is wrong``);
all of them are reported at once, ordered by line.

The result is a :class:`LoadConfig` of frozen dataclasses: plain values the
Locust user (:mod:`dicomconf.load.locustfile`) turns into tasks, with the
presentation contexts the mix needs (:meth:`LoadConfig.contexts`), proposed
on every association so that one association serves any task (PS3.8 9.3.2.2).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from pydicom.datadict import keyword_dict, tag_for_keyword

from dicomconf.scenario.expr import ExpressionError, duration
from dicomconf.scenario.loader import Located, SourceError, SourceErrors, load_yaml
from dicomconf.scenario.validation import dotted, suggest
from dicomconf.scp.config_checks import parse_size
from dicomconf.scu.client import DEFAULT_TRANSFER_SYNTAXES, resolve_uid
from dicomconf.scu.target import DEFAULT_PORT, check_host
from dicomconf.ul.pdu import ae_title_problem

SCHEMA = "load.schema.json"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MODELS = {"find": "study-find", "move": "study-move"}
PIXEL_ROW = 512  # bytes per generated row: 256 columns of 16-bit pixels


@dataclass(frozen=True)
class TLSSpec:
    """TLS to the target (PS3.15 B.1): files for :func:`dicomconf.scu.tls.client_context`."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    insecure: bool = False
    server_name: str | None = None


@dataclass(frozen=True)
class Target:
    host: str
    port: int = DEFAULT_PORT
    called_ae: str = "ANY-SCP"
    calling_ae: str = "DICOMCONF-LOAD"
    tls: TLSSpec | None = None


@dataclass(frozen=True)
class Association:
    """How associations are used: one per task, or one per user kept across tasks (``reuse``)."""

    reuse: bool = False
    timeout: float = DEFAULT_TIMEOUT
    max_pdu_length: int = 16382
    transfer_syntaxes: tuple[str, ...] = DEFAULT_TRANSFER_SYNTAXES


@dataclass(frozen=True)
class Generated:
    """Objects made with pydicom: ``count`` of them, pixel data of ``size`` bytes each."""

    sop_class: str
    size: int
    count: int = 1
    patient_id: str = "DICOMCONF-LOAD"


@dataclass(frozen=True)
class Task:
    """One entry of the mix; ``keys`` is the identifier of a find or move (PS3.4 C.4.1.1.3)."""

    op: str
    name: str
    weight: int = 1
    count: int = 1
    model: str | None = None  # a UID
    level: str | None = None
    keys: tuple[tuple[str, Any], ...] = ()
    destination: str | None = None


@dataclass(frozen=True)
class LoadConfig:
    file: str
    target: Target
    tasks: tuple[Task, ...]
    association: Association = field(default_factory=Association)
    think_time: tuple[float, float] = (0.0, 0.0)
    generated: tuple[Generated, ...] = ()
    files: tuple[str, ...] = ()

    def contexts(self) -> tuple[str, ...]:
        """The abstract syntaxes every association proposes: Verification, the stored objects'
        classes and the tasks' models, each once, in a stable order (PS3.8 9.3.2.2)."""
        out: list[str] = [resolve_uid("verification")]
        if any(t.op == "store" for t in self.tasks):
            out += [g.sop_class for g in self.generated]
            out += list(self.file_classes)
        out += [t.model for t in self.tasks if t.model]
        return tuple(dict.fromkeys(out))

    @property
    def file_classes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_sop_class_of(path) for path in self.files))


def _sop_class_of(path: str) -> str:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    return str(ds.SOPClassUID)


# ---------------------------------------------------------------- schema


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(resources.files("dicomconf.load").joinpath(SCHEMA).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _message(error: ValidationError) -> tuple[tuple[Any, ...], str]:
    """(path, message) for one schema error: the key in dotted form, what came, what is expected."""
    if error.validator == "anyOf" and error.context:
        error = best_match(error.context) if not _type_only(error) else error
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    expected = schema.get("description")
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(schema.get("properties", {}))
        extra = next((k for k in error.instance if k not in known), None)
        where = path + (extra,)
        return where, f"{dotted(where)}: unknown key {extra!r}{suggest(extra, known)}; allowed: {', '.join(known)}"
    if error.validator in ("required", "minProperties", "maxProperties"):
        return path, f"{dotted(path)}: {expected or error.message}" if error.validator != "required" else \
            f"{dotted(path)}: {error.message}"
    found = repr(error.instance) if isinstance(error.instance, str) else str(error.instance)
    if error.validator == "enum":
        found += suggest(error.instance, [str(v) for v in schema.get("enum", [])])
    elif error.validator in ("minimum", "maximum", "minLength", "maxLength", "minItems"):
        found += f" ({error.validator} {error.validator_value})"
    return path, f"{dotted(path)}: got {found[:60]}; expected {expected}" if expected else \
        f"{dotted(path)}: {error.message}"


def _type_only(error: ValidationError) -> bool:
    """True when every branch of an ``anyOf`` fails on the value's type: describe the anyOf itself."""
    return all(e.validator == "type" and e.absolute_path == error.absolute_path for e in error.context)


# ---------------------------------------------------------------- semantic checks


class _Checker:
    def __init__(self, doc: Located) -> None:
        self.doc = doc
        self.errors: list[SourceError] = []
        self.base = os.path.dirname(os.path.abspath(doc.file))

    def fail(self, path: tuple[Any, ...], message: str) -> None:
        self.errors.append(self.doc.error(path, f"{dotted(path)}: {message}"))

    def ae(self, path: tuple[Any, ...], title: str) -> str:
        problem = ae_title_problem(title)
        if problem:
            self.fail(path, f"AE title {title!r} {problem}")
        return title.strip()

    def seconds(self, path: tuple[Any, ...], value: Any) -> float | None:
        try:
            return duration(value)
        except ExpressionError as exc:
            self.fail(path, str(exc))
            return None

    def uid(self, path: tuple[Any, ...], name: str, what: str) -> str:
        try:
            return resolve_uid(name, what=what)
        except ValueError as exc:
            self.fail(path, str(exc))
            return name

    def path_of(self, value: str) -> str:
        return value if os.path.isabs(value) else os.path.join(self.base, value)


def _target(c: _Checker, raw: dict) -> Target:
    try:
        host = check_host(raw["host"], "target host")
    except ValueError as exc:
        c.fail(("target", "host"), str(exc))
        host = raw["host"]
    tls_raw = raw.get("tls", False)
    tls = None
    if tls_raw is True:
        tls = TLSSpec()
    elif isinstance(tls_raw, dict):
        files = {k: c.path_of(tls_raw[k]) for k in ("ca", "cert", "key") if k in tls_raw}
        tls = TLSSpec(**files, insecure=bool(tls_raw.get("insecure", False)), server_name=tls_raw.get("server_name"))
        from dicomconf.scu.tls import client_context

        try:
            client_context(ca=tls.ca, cert=tls.cert, key=tls.key, insecure=tls.insecure)
        except ValueError as exc:
            c.fail(("target", "tls"), str(exc))
    return Target(
        host=host,
        port=raw.get("port", DEFAULT_PORT),
        called_ae=c.ae(("target", "called_ae"), raw.get("called_ae", Target.called_ae)),
        calling_ae=c.ae(("target", "calling_ae"), raw.get("calling_ae", Target.calling_ae)),
        tls=tls,
    )


def _association(c: _Checker, raw: dict) -> Association:
    syntaxes = tuple(
        c.uid(("association", "transfer_syntaxes", i), name, "transfer syntax")
        for i, name in enumerate(raw.get("transfer_syntaxes", ()))
    ) or DEFAULT_TRANSFER_SYNTAXES
    timeout = c.seconds(("association", "timeout"), raw.get("timeout", DEFAULT_TIMEOUT))
    if timeout == 0:
        c.fail(("association", "timeout"), "must be above 0")
    return Association(bool(raw.get("reuse", False)), timeout or DEFAULT_TIMEOUT, raw.get("max_pdu_length", 16382),
                       syntaxes)


def _think(c: _Checker, raw: Any) -> tuple[float, float]:
    if isinstance(raw, dict):
        low, high = c.seconds(("think_time", "min"), raw["min"]), c.seconds(("think_time", "max"), raw["max"])
        if low is not None and high is not None and high < low:
            c.fail(("think_time",), f"max ({high:g}s) is below min ({low:g}s)")
        return low or 0.0, high or 0.0
    value = c.seconds(("think_time",), raw) or 0.0
    return value, value


def _objects(c: _Checker, raw: list) -> tuple[tuple[Generated, ...], tuple[str, ...]]:
    generated: list[Generated] = []
    files: list[str] = []
    for i, source in enumerate(raw):
        if "generate" in source:
            spec = source["generate"]
            where = ("objects", i, "generate")
            try:
                size = parse_size(spec.get("size", "64KiB"))
            except ValueError as exc:
                c.fail(where + ("size",), str(exc))
                size = 0
            sop = c.uid(where + ("sop_class",), spec.get("sop_class", "ct"), "SOP class")
            generated.append(Generated(sop, int(size or 0), spec.get("count", 1), spec.get("patient_id", Generated.patient_id)))
        for j, pattern in enumerate(source.get("files", ())):
            found = sorted(p for p in glob.glob(c.path_of(pattern)) if os.path.isfile(p))
            if not found:
                c.fail(("objects", i, "files", j), f"no file matches {pattern!r}")
            for path in found:
                try:
                    _sop_class_of(path)
                except Exception as exc:  # pydicom's errors vary by what is wrong with the file
                    c.fail(("objects", i, "files", j), f"{path} is not a DICOM file with a SOP Class UID ({exc})")
                    continue
                files.append(path)
    return tuple(generated), tuple(files)


def _keys(c: _Checker, where: tuple[Any, ...], raw: dict) -> tuple[tuple[str, Any], ...]:
    out = []
    for keyword, value in raw.items():
        if not isinstance(keyword, str) or tag_for_keyword(keyword) is None:
            c.fail(where + (keyword,), f"{keyword!r} is not a DICOM keyword (PS3.6){suggest(keyword, keyword_dict)}")
            continue
        out.append((keyword, "" if value is None else value))
    return tuple(out)


def _tasks(c: _Checker, raw: list, has_objects: bool) -> tuple[Task, ...]:
    out = []
    for i, spec in enumerate(raw):
        op = spec["op"]
        where = ("tasks", i)
        for key in ("count",) if op != "store" else ():
            if key in spec:
                c.fail(where + (key,), f"only a store task takes {key}")
        for key in ("model", "level", "keys", "destination") if op in ("echo", "store") else ():
            if key in spec:
                c.fail(where + (key,), f"only find and move tasks take {key}")
        if op == "move" and "destination" not in spec:
            c.fail(where, "a move task needs a destination (an AE title the target knows)")
        if op == "move" and not spec.get("keys"):
            c.fail(where, "a move task needs keys: the unique keys of what to move, e.g. {StudyInstanceUID: ...} "
                          "(PS3.4 C.4.2.2.1)")
        if op == "store" and not has_objects:
            c.fail(where, "a store task needs objects (a top-level objects: list)")
        model = None
        if op in DEFAULT_MODELS:
            model = c.uid(where + ("model",), spec.get("model", DEFAULT_MODELS[op]), "information model")
        keys = _keys(c, where + ("keys",), spec.get("keys", {}))
        if op in DEFAULT_MODELS and not keys:
            keys = (("PatientID", ""), ("StudyInstanceUID", ""))
        default_name = op if op in ("echo", "store") else f"{op} {spec.get('model', DEFAULT_MODELS[op])}"
        destination = spec.get("destination")
        out.append(Task(
            op=op,
            name=spec.get("name", default_name),
            weight=spec.get("weight", 1),
            count=spec.get("count", 1),
            model=model,
            level=spec.get("level", "STUDY") if op in DEFAULT_MODELS else None,
            keys=keys,
            destination=c.ae(where + ("destination",), destination) if destination else None,
        ))
    return tuple(out)


def load_config(path: str | os.PathLike) -> LoadConfig:
    """Read and check a load file; raise a :class:`SourceError` (``file:line: ...``) on any fault."""
    doc = load_yaml(os.fspath(path))
    if not isinstance(doc.value, dict):
        raise SourceError(doc.file, 1, "a load file is a mapping with target: and tasks: (docs/load.md)")
    problems = sorted((_message(e) for e in _validator().iter_errors(doc.value)), key=lambda m: doc.position(m[0]))
    error = SourceErrors.merge(doc.error(p, m) for p, m in problems)
    if error is not None:
        raise error
    raw = doc.value
    c = _Checker(doc)
    target = _target(c, raw["target"])
    association = _association(c, raw.get("association", {}))
    think = _think(c, raw.get("think_time", 0))
    generated, files = _objects(c, raw.get("objects", []))
    tasks = _tasks(c, raw["tasks"], "objects" in raw)
    error = SourceErrors.merge(c.errors)
    if error is not None:
        raise error
    return LoadConfig(doc.file, target, tasks, association, think, generated, files)
