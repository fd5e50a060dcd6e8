"""Target profiles: what the target is and what it claims (``--profile FILE``).

Theory of operation
-------------------
A profile is a YAML file describing the target SCP: its AE title, an AE
title it accepts as calling AE, whether it checks the called / calling AE
titles, its timers (ARTIM, idle), the SOP classes, transfer syntaxes and
roles it supports, its association limit, the largest PDU it receives, user
identity, and TLS.  :func:`load_profile` validates it against
``profile.schema.json`` with ``file:line`` errors and returns a frozen
:class:`Profile`.

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

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from dicomconf.scenario.loader import Located, SourceError, load_yaml, load_yaml_text
from dicomconf.scenario.validation import dotted, validate

REFERENCE_PROFILE = "reference-profile.yaml"


@dataclass(frozen=True, slots=True)
class Timers:
    """Timer values in seconds; None when the target has none or does not say (PS3.8 9.1.5)."""

    artim: float | None = None
    idle: float | None = None


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The target's TLS listener (PS3.15 B.1); files are paths, relative to the profile."""

    enabled: bool = False
    port: int | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    client_cert_required: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    """A target profile (see ``docs/scenarios.md`` for every field)."""

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
    source: str = "<defaults>"

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
        return SCPConfig(
            host="127.0.0.1",
            port=port,
            ae_titles=(self.ae_title,),
            require_called_ae=self.checks_called_ae,
            allowed_calling_aes=(self.calling_ae,) if self.checks_calling_ae else None,
            supported={resolve_uid(s): ts for s in self.sop_classes},
            roles=roles,
            max_pdu_length=self.max_pdu_length or 0,
            max_associations=self.max_associations,
            users=dict(self.users) if self.user_identity else None,
            async_window=self.async_window,
            storage="discard",
            artim_timeout=self.timers.artim if self.timers.artim is not None else 30.0,
            idle_timeout=self.timers.idle,
            tls=tls,
            source=f"profile {self.source}",
        )


# Phrases for skip reasons: "target does not <phrase>" / "target <phrase>s".
_PHRASES: dict[str, tuple[str, str]] = {
    "checks_called_ae": ("target does not check the called AE title", "target checks the called AE title"),
    "checks_calling_ae": ("target does not check the calling AE title", "target checks the calling AE title"),
    "user_identity": ("target does not negotiate user identity", "target negotiates user identity"),
    "tls": ("target has no TLS listener", "target has a TLS listener"),
    "tls.enabled": ("target has no TLS listener", "target has a TLS listener"),
    "tls.client_cert_required": ("target does not require client certificates", "target requires client certificates"),
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
    return value


def check_requires_keys(requires: Mapping[str, Any]) -> str | None:
    """The first key of ``requires`` that names no profile field, or None."""
    probe = Profile()
    for key in requires:
        try:
            _field(probe, key)
        except KeyError:
            if not key.startswith("roles."):
                return key
    return None


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


def _profile_from(doc: Located, base: Path | None) -> Profile:
    validate(doc, "profile.schema.json")
    data = dict(doc.value or {})
    timers = Timers(**(data.pop("timers", None) or {}))
    tls_data = dict(data.pop("tls", None) or {})
    for key in ("ca", "cert", "key"):
        if tls_data.get(key) and base is not None:
            tls_data[key] = str((base / tls_data[key]).resolve())
    tls = TLSSettings(**tls_data)
    roles = {str(k): tuple(v) for k, v in (data.pop("roles", None) or {}).items()}
    for key in ("sop_classes", "transfer_syntaxes"):
        if key in data:
            data[key] = tuple(data[key])
    if data.get("async_window") is not None:
        data["async_window"] = tuple(data["async_window"])
    if data.get("users") is None:
        data.pop("users", None)
    if "max_associations" in data and data["max_associations"] == 0:
        raise doc.error(("max_associations",), "max_associations: 0 would refuse everything; use null for no limit")
    return Profile(timers=timers, tls=tls, roles=roles, source=doc.file, **data)


def load_profile(path: str | Path) -> Profile:
    """Load and validate a profile file; :class:`SourceError` (``file:line: ...``) when it is bad."""
    path = Path(path)
    return _profile_from(load_yaml(path), path.parent)


def reference_profile() -> Profile:
    """The built-in profile of the embedded reference SCP (short timers, small limits)."""
    text = resources.files("dicomconf.scenario").joinpath(REFERENCE_PROFILE).read_text(encoding="utf-8")
    return _profile_from(load_yaml_text(text, f"<built-in {REFERENCE_PROFILE}>"), None)


__all__ = ["Profile", "Timers", "TLSSettings", "load_profile", "reference_profile", "unmet", "SourceError", "dotted"]
