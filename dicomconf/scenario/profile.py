"""Target profiles: what the target is and what it claims (``--profile FILE``).

Theory of operation
-------------------
A profile is a YAML file describing the target SCP: where it listens
(``target``), its AE title, an AE title it accepts as calling AE, whether it
checks the called / calling AE titles, its timers (ARTIM, idle), the SOP
classes, transfer syntaxes and roles it supports, its association limit, the
largest PDU it receives, user identity, and TLS.  :func:`load_profile`
validates it against ``profile.schema.json``, then checks what a schema
cannot (SOP class and transfer syntax names resolve through
:func:`dicomconf.scu.client.resolve_uid`, with the nearest name suggested; a
host is a host; the TLS port is said once), reports *every* problem at once
(``file:line: key: what is wrong; what is allowed``, ordered by line) and
returns a frozen :class:`Profile`.  Timers are durations written as
scenarios write them (``30s``, ``500ms``, ``2m``, a number of seconds),
read by the scenarios' own parser (:func:`dicomconf.scenario.expr.duration`).

The TLS port has two spellings, ``target.tls_port`` and the older
``tls.port``; the profile exposes one value in both places (an error when a
file gives two different ones), and a TLS port given means a TLS listener
unless ``tls.enabled`` says otherwise.  :attr:`Profile.given` remembers which
fields the file stated, so that :func:`skipped_by_missing_fields` can tell a
user which scenarios a field left out (or null, unknown) skips.

Scenarios use a profile in two ways: ``requires`` conditions
(:func:`unmet`) that skip a scenario the target does not claim to meet, with
a reason ("target does not check the called AE title"), and ``{profile.x}``
expressions in step values (:class:`Profile` exposes every field as an
attribute, plus the shortcuts ``artim`` and ``idle``).

The embedded reference SCP's profile ships as ``reference-profile.yaml``;
:meth:`Profile.scp_config` turns a profile into the
:class:`~dicomconf.scp.config.SCPConfig` that makes the reference SCP behave
as the profile says, so the two cannot disagree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from dicomconf.scenario.expr import ExpressionError, duration
from dicomconf.scenario.loader import Located, SourceError, SourceErrors, load_yaml, load_yaml_text
from dicomconf.scenario.validation import dotted, schema_errors, suggest

REFERENCE_PROFILE = "reference-profile.yaml"
SOP_CLASS = "SOP class"
TRANSFER_SYNTAX = "transfer syntax"


@dataclass(frozen=True, slots=True)
class Timers:
    """Timer values in seconds; None when the target has none or does not say (PS3.8 9.1.5)."""

    artim: float | None = None
    idle: float | None = None


@dataclass(frozen=True, slots=True)
class TargetSettings:
    """Where the target listens (PS3.8 9.1.1: the port is configured; 104 is DICOM's registered one).

    ``host`` is a host name or an IPv4/IPv6 address (IPv6 without brackets);
    ``tls_port`` is its DICOM-over-TLS port (PS3.15 B.1; 2762 is registered), None when it has none
    or it is not known.
    """

    host: str
    port: int = 104
    tls_port: int | None = None


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The target's TLS listener (PS3.15 B.1); files are paths, relative to the profile.

    ``port`` is the same value as ``target.tls_port`` (the older spelling);
    ``insecure`` turns off verification of the target's certificate (chain and
    host name), which a run's report records; ``server_name`` is the host name
    the certificate must be for when it differs from ``target.host``;
    ``ciphers`` loosens the TLS 1.2 suites we offer (PS3.15 B.10, B.12).
    """

    enabled: bool = False
    port: int | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    client_cert_required: bool = False
    insecure: bool = False
    server_name: str | None = None
    ciphers: str | None = None  # TLS 1.2 suites we offer (OpenSSL names); None: the BCP 195 profile's


@dataclass(frozen=True, slots=True)
class MoveDestination:
    """Where the harness receives C-MOVE sub-operations and commitment reports (PS3.4 C.4.2.2, J.3.3.1).

    The target must know ``ae_title`` at ``host``:``port`` (the user configures it so);
    ``bind`` is the local address the harness listens on (default: ``host``); port 0 (the
    embedded SCP only) is a free port chosen when the run starts.
    """

    ae_title: str = "DICOMCONF-MOVE"
    host: str = "127.0.0.1"
    port: int = 0
    bind: str | None = None


@dataclass(frozen=True, slots=True)
class QueryRetrieve:
    """What the target claims of Query/Retrieve (PS3.4 C): models (patient, study), levels,
    the operations, relational queries (C.5.1.1) and the matching types (C.2.2.2)."""

    models: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    find: bool = False
    move: bool = False
    get: bool = False
    relational: bool = False
    matching: tuple[str, ...] = ()
    move_destination: MoveDestination | None = None


@dataclass(frozen=True, slots=True)
class Commitment:
    """Storage Commitment Push Model (PS3.4 J.3): ``report`` ``same`` (on the requesting
    association), ``new`` (on a new one to the move destination), None: not claimed."""

    report: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """A target profile (see ``docs/scenarios.md`` for every field).

    ``given`` holds the dotted names of the fields its file stated
    (``timers.artim``, ``tls.port`` ...); a field not in it has its default.
    """

    name: str = "unnamed target"
    ae_title: str = "ANY-SCP"
    calling_ae: str = "DICOMCONF-SCU"
    unknown_ae: str = "UNKNOWN-AE"
    checks_called_ae: bool = False
    checks_calling_ae: bool = False
    timers: Timers = field(default_factory=Timers)
    sop_classes: tuple[str, ...] = ("verification",)
    transfer_syntaxes: tuple[str, ...] = ("1.2.840.10008.1.2",)
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    max_associations: int | None = None
    max_pdu_length: int | None = None
    user_identity: bool = False
    users: Mapping[str, str | None] = field(default_factory=dict)
    async_window: tuple[int, int] | None = None
    tls: TLSSettings = field(default_factory=TLSSettings)
    target: TargetSettings | None = None
    query_retrieve: QueryRetrieve = field(default_factory=QueryRetrieve)
    commitment: Commitment = field(default_factory=Commitment)
    mpps: bool = False
    worklist: bool = False
    # the worklist items the target holds for the tests (a RIS's, PS3.4 K.6), each a mapping of
    # qr_data.WORKLIST_REQUIRED / _OPTIONAL keys; empty: the known set's (templates: set.worklist)
    worklist_items: tuple[Mapping[str, Any], ...] = ()
    source: str = "<defaults>"

    def __repr__(self) -> str:  # passcodes never printed (PS3.7 D.3.3.7): names and sizes only
        from dicomconf.ul.items import masked_repr
        from dicomconf.ul.negotiation import users_repr

        return masked_repr(self, {"users": users_repr(self.users)})
    given: frozenset[str] = field(default=frozenset(), compare=False)

    @property
    def artim(self) -> float | None:
        return self.timers.artim

    @property
    def idle(self) -> float | None:
        return self.timers.idle

    def scp_config(self, *, port: int = 0, tls_port: int | None = None, cert: str | None = None, key: str | None = None):
        """The reference SCP configuration that behaves as this profile claims."""
        from dicomconf.scp.config import SCPConfig, TLSConfig
        from dicomconf.scu.client import resolve_uid

        tls = TLSConfig()
        if self.tls.enabled and cert and key:
            tls = TLSConfig(cert=cert, key=key, port=0 if tls_port is None else tls_port)
        ts = tuple(resolve_uid(t, what="transfer syntax") for t in self.transfer_syntaxes)
        roles = {resolve_uid(sop): ("scu" in r, "scp" in r) for sop, r in self.roles.items()}
        supported = {resolve_uid(s): ts for s in self.sop_classes}
        services, destinations, report_to = self._services(supported, ts)
        worklist = None
        if "worklist" in services:
            from dicomconf.scenario.qr_data import worklist_items

            worklist = tuple(worklist_items(self.worklist_items or None))
        return SCPConfig(
            host="127.0.0.1",
            port=port,
            ae_titles=(self.ae_title,),
            require_called_ae=self.checks_called_ae,
            allowed_calling_aes=(self.calling_ae,) if self.checks_calling_ae else None,
            supported=supported,
            roles=roles,
            max_pdu_length=self.max_pdu_length or 0,
            max_associations=self.max_associations,
            users=dict(self.users) if self.user_identity else None,
            async_window=self.async_window,
            storage="memory" if services else "discard",
            services=tuple(services),
            move_destinations=destinations,
            commitment_report_to=report_to,
            worklist_items=worklist,
            artim_timeout=self.timers.artim if self.timers.artim is not None else 30.0,
            idle_timeout=self.timers.idle,
            tls=tls,
            source=f"profile {self.source}",
        )

    def _services(self, supported: dict, ts: tuple) -> tuple[list[str], dict, str | None]:
        """The reference SCP's services for what this profile claims (Q/R, commitment, MPPS, worklist:
        the profile's ``worklist_items`` or the known set's, PS3.4 K.6), with their SOP classes added to
        ``supported``; the move destinations; where reports go."""
        from dicomconf.scu.client import resolve_uid

        qr = self.query_retrieve
        services = [name for name in ("find", "move", "get") if getattr(qr, name)]
        for name in services:
            for model in qr.models:
                supported.setdefault(resolve_uid(f"{model}-{name}"), ts)
        if self.commitment.report is not None:
            services.append("commitment")
            supported.setdefault(resolve_uid("storage-commitment"), ts)
        if self.mpps:
            services.append("mpps")
            supported.setdefault(resolve_uid("mpps"), ts)
        if self.worklist:
            services.append("worklist")
            supported.setdefault(resolve_uid("worklist"), ts)
        destinations = {}
        md = qr.move_destination
        if md is not None and md.port:
            destinations[md.ae_title] = (md.host, md.port)
        report_to = md.ae_title if self.commitment.report == "new" and md is not None and md.port else None
        return services, destinations, report_to


# Phrases for skip reasons: "target does not <phrase>" / "target <phrase>s".
_PHRASES: dict[str, tuple[str, str]] = {
    "checks_called_ae": ("target does not check the called AE title", "target checks the called AE title"),
    "checks_calling_ae": ("target does not check the calling AE title", "target checks the calling AE title"),
    "user_identity": ("target does not negotiate user identity", "target negotiates user identity"),
    "users": ("the profile names no user the target accepts (users)", "the profile names users"),
    "tls": ("target has no TLS listener", "target has a TLS listener"),
    "tls.enabled": ("target has no TLS listener", "target has a TLS listener"),
    "tls.client_cert_required": ("target does not require client certificates", "target requires client certificates"),
    "query_retrieve": ("target claims no Query/Retrieve (profile query_retrieve)", "target claims Query/Retrieve"),
    "query_retrieve.find": ("target does not claim C-FIND (profile query_retrieve.find)", "target claims C-FIND"),
    "query_retrieve.move": ("target does not claim C-MOVE (profile query_retrieve.move)", "target claims C-MOVE"),
    "query_retrieve.get": ("target does not claim C-GET (profile query_retrieve.get)", "target claims C-GET"),
    "query_retrieve.relational": ("target does not claim relational queries", "target claims relational queries"),
    "commitment": ("target does not claim Storage Commitment (profile commitment.report)",
                   "target claims Storage Commitment"),
    "mpps": ("target does not claim MPPS (profile mpps)", "target claims MPPS"),
    "worklist": ("target does not claim Modality Worklist (profile worklist)", "target claims Modality Worklist"),
}
_LABELS: dict[str, str] = {
    "timers.artim": "ARTIM timeout",
    "artim": "ARTIM timeout",
    "timers.idle": "idle timeout",
    "idle": "idle timeout",
    "max_associations": "association limit",
    "max_pdu_length": "maximum PDU length",
    "sop_classes": "supported SOP classes",
    "transfer_syntaxes": "supported transfer syntaxes",
    "async_window": "asynchronous operations window",
}


def _field(profile: Profile, key: str) -> Any:
    value: Any = profile
    for part in key.split("."):
        if isinstance(value, Mapping):
            if part not in value:
                raise KeyError(key)
            value = value[part]
        elif hasattr(value, part) and not part.startswith("_"):
            value = getattr(value, part)
        else:
            raise KeyError(key)
    if key == "tls":
        return value.enabled
    if key == "commitment":
        return value.report is not None
    if key == "query_retrieve":
        return value.find or value.move or value.get
    return value


# ---------------------------------------------------------------- names


_UID_KINDS = {SOP_CLASS: ("SOP Class", "Meta SOP Class"), TRANSFER_SYNTAX: ("Transfer Syntax",)}
_NOT_REQUIRABLE = ("source", "given", "target")


@lru_cache(maxsize=None)
def _keywords(what: str) -> tuple[str, ...]:
    """pydicom's UID keywords of SOP classes or of transfer syntaxes (PS3.6 Table A-1)."""
    from pydicom.uid import UID_dictionary

    kinds = _UID_KINDS[what]
    return tuple(entry[4] for entry in UID_dictionary.values() if entry[1] in kinds and entry[4])


def transfer_syntax_keywords() -> tuple[str, ...]:
    """Every transfer syntax keyword pydicom knows (``ImplicitVRLittleEndian`` ...)."""
    return _keywords(TRANSFER_SYNTAX)


def allowed_names(what: str) -> str:
    """What a SOP class or transfer syntax entry may be, in words (for error messages)."""
    from dicomconf.scu.client import CONTEXT_ALIASES

    if what == SOP_CLASS:
        return (f"a short name ({', '.join(CONTEXT_ALIASES)}), a pydicom UID keyword such as "
                "CTImageStorage, or a dotted UID")
    return ("a transfer syntax keyword such as ImplicitVRLittleEndian, ExplicitVRLittleEndian or "
            "JPEGBaseline8Bit (docs/scenarios.md lists them all), or a dotted UID")


def name_problem(name: Any, what: str = SOP_CLASS) -> str | None:
    """Why ``name`` is not a SOP class (``what`` = ``"SOP class"``) or a transfer syntax
    (``"transfer syntax"``) the target could list, or None when it is one.

    A name resolves through :func:`dicomconf.scu.client.resolve_uid` (short
    name, pydicom keyword, dotted UID); a known UID of another kind (a
    transfer syntax given as a SOP class ...) is refused too.
    """
    from pydicom.uid import UID_dictionary

    from dicomconf.scu.client import CONTEXT_ALIASES, resolve_uid

    if not isinstance(name, str):
        return f"got {name!r}; expected {allowed_names(what)}"
    try:
        uid = resolve_uid(name, what=what)
    except ValueError:
        choices = (*CONTEXT_ALIASES, *_keywords(what)) if what == SOP_CLASS else _keywords(what)
        return f"unknown {what} {name!r}{suggest(name, choices)}; allowed: {allowed_names(what)}"
    entry = UID_dictionary.get(uid)
    if entry is not None and entry[1] not in _UID_KINDS[what]:
        return f"{name!r} is {entry[0]} (a {entry[1]}), not a {what}; allowed: {allowed_names(what)}"
    return None


def _field_names() -> list[str]:
    """Every profile field a ``requires`` key may name (dotted)."""
    names: list[str] = []
    for f in dataclasses.fields(Profile):
        if f.name in _NOT_REQUIRABLE:
            continue
        if f.name in ("timers", "tls", "query_retrieve", "commitment"):
            names += [f"{f.name}.{sub.name}" for sub in dataclasses.fields(f.default_factory())]
        names.append(f.name)
    return names + ["artim", "idle"]


def requires_problems(requires: Mapping[Any, Any]) -> list[tuple[tuple[Any, ...], str]]:
    """``(path inside requires, message)`` for every key of a scenario's ``requires``
    that names no profile field, and every SOP class or transfer syntax name in it
    that is not one."""
    probe = Profile()
    out: list[tuple[tuple[Any, ...], str]] = []
    for key, want in requires.items():
        if isinstance(key, str) and key.startswith("roles."):
            problem = name_problem(key.split(".", 1)[1], SOP_CLASS)
            if problem:
                out.append(((key,), problem))
            continue
        try:
            if str(key).split(".", 1)[0] in _NOT_REQUIRABLE:
                raise KeyError(key)
            _field(probe, str(key))
        except KeyError:
            fields = _field_names()
            out.append(((key,), f"not a profile field{suggest(key, fields)}; allowed: "
                                f"{', '.join(fields)}, roles.<SOP class> (docs/scenarios.md, Profiles)"))
            continue
        if key in ("sop_classes", "transfer_syntaxes") and isinstance(want, list):
            what = SOP_CLASS if key == "sop_classes" else TRANSFER_SYNTAX
            for i, name in enumerate(want):
                problem = name_problem(name, what)
                if problem:
                    out.append(((key, i), problem))
    return out


def _same_uid(a: str, b: str) -> bool:
    from dicomconf.scu.client import resolve_uid

    try:
        return resolve_uid(a) == resolve_uid(b)
    except ValueError:
        return a == b


def unmet(profile: Profile, requires: Mapping[str, Any]) -> str | None:
    """Why ``profile`` does not meet ``requires`` (a skip reason), or None when it does.

    A condition is a value the field must equal, ``{min: a, max: b}`` for a
    number (an unknown value, null, never meets it), a list of items a list
    field must contain, or ``true``/``false`` for a flag.
    """
    for key, want in requires.items():
        label = _LABELS.get(key, key)
        if key.startswith("roles."):
            sop = key.split(".", 1)[1]
            have = next((r for s, r in profile.roles.items() if _same_uid(s, sop)), ())
            need = [want] if isinstance(want, str) else list(want)
            missing = [r for r in need if r not in have]
            if missing:
                return f"target does not accept the {', '.join(missing)} role for {sop} (profile roles)"
            continue
        have = _field(profile, key)
        if isinstance(want, bool):
            if bool(have) != want:
                pair = _PHRASES.get(key, (f"profile {key} is false", f"profile {key} is true"))
                return pair[0] if want else pair[1]
        elif isinstance(want, Mapping):
            if have is None:
                return f"target's {label} is not known (profile {key})"
            lo, hi = want.get("min"), want.get("max")
            if lo is not None and have < lo:
                return f"target's {label} {have} is below {lo}"
            if hi is not None and have > hi:
                return f"target's {label} {have} is above {hi}"
        elif isinstance(want, list):
            have_list = list(have or ())
            missing = [w for w in want if not any(_same_uid(str(h), str(w)) for h in have_list)]
            if missing:
                return f"target does not support {', '.join(map(str, missing))} ({label})"
        elif have != want:
            return f"target's {label} is {have!r}, not {want!r}"
    return None


# ---------------------------------------------------------------- loading

_SECTIONS = ("timers", "tls", "target", "query_retrieve", "commitment")


def _given(data: Mapping[str, Any]) -> set[str]:
    given = set(map(str, data))
    for section in _SECTIONS:
        if isinstance(data.get(section), Mapping):
            given |= {f"{section}.{key}" for key in data[section]}
    return given


def _checks(doc: Located, broken: tuple[tuple[Any, ...], ...]) -> list[tuple[tuple[Any, ...], SourceError]]:
    """What the schema cannot say, checked on the parts of the profile the schema accepted."""
    data = doc.value if isinstance(doc.value, Mapping) else {}
    errors: list[tuple[tuple[Any, ...], SourceError]] = []

    def ok(path: tuple[Any, ...]) -> bool:
        return not any(b[: len(path)] == path for b in broken)

    def error(path: tuple[Any, ...], message: str) -> None:
        errors.append((path, doc.error(path, f"{dotted(path)}: {message}")))

    for key in ("artim", "idle"):
        path = ("timers", key)
        value = (data.get("timers") or {}).get(key) if isinstance(data.get("timers"), Mapping) else None
        if value is not None and ok(path):
            try:
                duration(value)
            except ExpressionError as exc:
                error(path, f"{exc}; allowed: a duration (30s, 500ms, 2m, a number of seconds) or null")
    for key, what in (("sop_classes", SOP_CLASS), ("transfer_syntaxes", TRANSFER_SYNTAX)):
        names = data.get(key) if isinstance(data.get(key), list) else []
        for i, name in enumerate(names):
            problem = name_problem(name, what) if ok((key, i)) else None
            if problem:
                error((key, i), problem)
    if isinstance(data.get("roles"), Mapping):
        for name in data["roles"]:
            problem = name_problem(name, SOP_CLASS)
            if problem:
                error(("roles", name), problem)
    target = data.get("target")
    if isinstance(target, Mapping) and isinstance(target.get("host"), str) and ok(("target", "host")):
        from dicomconf.scu.target import check_host

        try:
            check_host(_unbracket(target["host"]), "host")
        except ValueError as exc:
            error(("target", "host"), f"{exc}; allowed: a host name, an IPv4 address or an IPv6 address "
                                      "(the port goes in target.port)")
    tls = data.get("tls") if isinstance(data.get("tls"), Mapping) else {}
    new, old = (target or {}).get("tls_port") if isinstance(target, Mapping) else None, tls.get("port")
    if new is not None and old is not None and new != old and ok(("target", "tls_port")) and ok(("tls", "port")):
        error(("target", "tls_port"), f"{new} differs from tls.port {old} (line {doc.line_of(('tls', 'port'))}); "
                                      "give the TLS port once, in target.tls_port")
    return errors


def _unbracket(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _profile_from(doc: Located, base: Path | None) -> Profile:
    problems = schema_errors(doc, "profile.schema.json")
    problems += _checks(doc, tuple(p for p, _ in problems))
    problems.sort(key=lambda item: doc.position(item[0]))
    error = SourceErrors.merge(e for _, e in problems)
    if error is not None:
        raise error
    data = dict(doc.value or {})
    given = _given(data)
    timers = {k: None if v is None else duration(v) for k, v in (data.pop("timers", None) or {}).items()}
    tls_data = dict(data.pop("tls", None) or {})
    for key in ("ca", "cert", "key"):
        if tls_data.get(key) and base is not None:
            tls_data[key] = str((base / tls_data[key]).resolve())
    target_data = data.pop("target", None)
    target = None
    if target_data is not None:
        tls_port = target_data.get("tls_port")
        tls_port = tls_port if tls_port is not None else tls_data.get("port")
        port = {"port": target_data["port"]} if "port" in target_data else {}
        target = TargetSettings(_unbracket(target_data["host"]), tls_port=tls_port, **port)
        if tls_port is not None:
            tls_data["port"] = tls_port
            given.add("tls.port")
    if tls_data.get("port") is not None and "enabled" not in tls_data:
        tls_data["enabled"] = True  # a TLS port given is a TLS listener claimed
        given.add("tls.enabled")
    tls = TLSSettings(**tls_data)
    roles = {str(k): tuple(v) for k, v in (data.pop("roles", None) or {}).items()}
    qr_data = dict(data.pop("query_retrieve", None) or {})
    for key in ("models", "levels", "matching"):
        if key in qr_data:
            qr_data[key] = tuple(qr_data[key])
    if qr_data.get("move_destination") is not None:
        qr_data["move_destination"] = MoveDestination(**qr_data["move_destination"])
    data["query_retrieve"] = QueryRetrieve(**qr_data)
    data["commitment"] = Commitment(**(data.pop("commitment", None) or {}))
    for key in ("sop_classes", "transfer_syntaxes"):
        if key in data:
            data[key] = tuple(data[key])
    if data.get("async_window") is not None:
        data["async_window"] = tuple(data["async_window"])
    if data.get("users") is None:
        data.pop("users", None)
    if "worklist_items" in data:
        data["worklist_items"] = tuple(dict(item) for item in data["worklist_items"] or ())
    return Profile(timers=Timers(**timers), tls=tls, target=target, roles=roles, source=doc.file,
                   given=frozenset(given), **data)


def load_profile(path: str | Path) -> Profile:
    """Load and validate a profile file; :class:`SourceError` (``file:line: ...``) when it is bad."""
    path = Path(path)
    return _profile_from(load_yaml(path), path.parent)


def reference_profile() -> Profile:
    """The built-in profile of the embedded reference SCP (short timers, small limits)."""
    text = resources.files("dicomconf.scenario").joinpath(REFERENCE_PROFILE).read_text(encoding="utf-8")
    return _profile_from(load_yaml_text(text, f"<built-in {REFERENCE_PROFILE}>"), None)


# ---------------------------------------------------------------- what a missing field skips


def _requirement_field(key: str) -> str:
    """The profile field a ``requires`` key reads (``tls`` -> ``tls.enabled``, ``roles.mr`` -> ``roles``)."""
    if key == "tls":
        return "tls.enabled"
    if key.startswith("roles."):
        return "roles"
    return {"artim": "timers.artim", "idle": "timers.idle"}.get(key, key)


def _left_open(profile: Profile, name: str) -> str | None:
    """How ``profile`` leaves field ``name`` open ("is not given", "is null (unknown)"), or None."""
    try:
        value = _field(profile, name)
    except KeyError:
        return None
    if name in profile.given:
        return "is null (unknown)" if value is None else None
    default = _field(Profile(), name)
    if value != default:
        return None  # set in code rather than in a file: a claim all the same
    if value is None or value == {}:
        return "is not given"
    shown = ", ".join(map(str, value)) if isinstance(value, tuple) else str(value).lower()
    return f"is not given (taken as {shown})"


def skipped_by_missing_fields(profile: Profile, scenarios: Iterable[Any]) -> list[str]:
    """One line per profile field that is not given or null (unknown) and skips ``scenarios``
    (:class:`~dicomconf.scenario.model.Scenario` objects):
    ``profile timers.artim is not given: 3 scenarios skipped, 2 must-level (a, b, c)``.

    A scenario counts under a field when a ``requires`` condition on that field
    is not met; a scenario skipped by a field the profile does state is a
    claim of the target, not a gap, and is not listed.  A scenario that tests
    an SCU (``role: scp``) requires fields of the SCU profile and is left out.
    """
    skipped: dict[str, list[Any]] = {}
    how: dict[str, str] = {}
    for scenario in scenarios:
        if getattr(scenario, "role", "scu") == "scp":
            continue
        if not scenario.requires or unmet(profile, scenario.requires) is None:
            continue
        counted: set[str] = set()
        for key, want in scenario.requires.items():
            name = _requirement_field(key)
            state = _left_open(profile, name)
            if state is None or name in counted or unmet(profile, {key: want}) is None:
                continue
            counted.add(name)
            how[name] = state
            skipped.setdefault(name, []).append(scenario)
    lines = []
    for name in sorted(skipped):
        found = skipped[name]
        must = sum(1 for sc in found if sc.severity == "must")
        count = f"{len(found)} scenario{'s' if len(found) != 1 else ''} skipped"
        count += f", {must} must-level" if must else ""
        lines.append(f"profile {name} {how[name]}: {count} ({', '.join(sc.id for sc in found)})")
    return lines


__all__ = [
    "Commitment",
    "MoveDestination",
    "Profile",
    "QueryRetrieve",
    "Timers",
    "TLSSettings",
    "TargetSettings",
    "load_profile",
    "reference_profile",
    "unmet",
    "name_problem",
    "requires_problems",
    "skipped_by_missing_fields",
    "transfer_syntax_keywords",
    "SourceError",
    "dotted",
]
