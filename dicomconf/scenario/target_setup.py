"""Where the scenarios go: the target from the options and the profile, its TLS, or the embedded SCP.

Theory of operation
-------------------
A run has one target.  :func:`target_address` picks it: ``--target`` when
given, else the profile's ``target:`` section, else none, which means the
embedded reference SCP.  Any host the user names is accepted (a name, IPv4,
IPv6): hospitals' PACS live on their LANs, and only the user decides where
dicomconf connects (PS3.8 9.1.1: the remote port is configurable).

TLS (PS3.15 B.1): :func:`client_tls` builds the client context from the
profile's ``tls`` section, each value overridden by its ``--tls-*`` option.
By default the target's chain *and* host name are verified (against
``--tls-ca`` or the system's trust store); ``--tls-insecure`` turns that off
and the run's report records it.  ``--tls-server-name`` (or the profile's
``tls.server_name``) names the host the certificate must be for when the
target is reached by address.

:class:`EmbeddedTarget` starts the reference SCP in this process on a free
loopback port, configured from the same profile the scenarios read, with a
throwaway certificate for its TLS listener that the client context trusts
(and verifies, host name included).  When the profile claims C-MOVE or
Storage Commitment with a ``query_retrieve.move_destination``, the harness's
listener (:mod:`dicomconf.scenario.move_listener`) starts first on a free
loopback port, and the SCP's ``move_destinations`` point there, so the
default run needs no setup.
"""

from __future__ import annotations

import dataclasses
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dicomconf.scenario.engine import Target
from dicomconf.scenario.profile import Profile
from dicomconf.scu.target import Address, check_port, parse_target
from dicomconf.scu.tls import client_context


class TargetSetupError(ValueError):
    """The options or the profile do not describe a usable target (a usage error, one line)."""


@dataclass(frozen=True, slots=True)
class TargetOptions:
    """The command-line side of the target (each None when not given)."""

    target: str | None = None
    called_ae: str | None = None
    calling_ae: str | None = None
    tls_port: int | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_insecure: bool = False
    tls_server_name: str | None = None
    tls_ciphers: str | None = None
    target_timeout: float | None = None

    @classmethod
    def from_namespace(cls, ns: Any) -> "TargetOptions":
        """From pytest's or argparse's option namespace (missing attributes are None)."""
        return cls(**{f.name: getattr(ns, f.name, None) for f in dataclasses.fields(cls)})


def _profile_target(profile: Profile) -> Any:
    return getattr(profile, "target", None)


def target_address(options: TargetOptions, profile: Profile | None) -> Address | None:
    """``--target``, else the profile's ``target``, else None (the embedded SCP)."""
    if options.target:
        try:
            return parse_target(options.target)
        except ValueError as exc:
            raise TargetSetupError(f"--target: {exc}") from None
    section = _profile_target(profile) if profile is not None else None
    if section is not None and getattr(section, "host", None):
        return Address(section.host, section.port)
    return None


def apply_options(profile: Profile, options: TargetOptions) -> Profile:
    """``profile`` with what the options say of the target: ``--tls-port`` means it has a TLS
    listener there (so scenarios that need TLS run)."""
    if options.tls_port is None:
        return profile
    try:
        port = check_port(options.tls_port)
    except ValueError as exc:
        raise TargetSetupError(f"--tls-port: {exc}") from None
    return dataclasses.replace(profile, tls=dataclasses.replace(profile.tls, enabled=True, port=port))


def tls_insecure(options: TargetOptions, profile: Profile) -> bool:
    return bool(options.tls_insecure or getattr(profile.tls, "insecure", False))


def tls_server_name(options: TargetOptions, profile: Profile) -> str | None:
    return options.tls_server_name or getattr(profile.tls, "server_name", None)


def client_tls(options: TargetOptions, profile: Profile, *, ca: str | None = None) -> ssl.SSLContext | None:
    """The client TLS context for ``profile`` and the ``--tls-*`` options, or None without TLS."""
    if not profile.tls.enabled:
        return None
    try:
        return client_context(
            ca=options.tls_ca or ca or profile.tls.ca,
            cert=options.tls_cert or profile.tls.cert,
            key=options.tls_key or profile.tls.key,
            insecure=tls_insecure(options, profile),
            ciphers=options.tls_ciphers or profile.tls.ciphers,
        )
    except ValueError as exc:
        raise TargetSetupError(f"TLS: {exc}") from None


def external_target(address: Address, options: TargetOptions, profile: Profile) -> Target:
    """The :class:`Target` for a target the user named."""
    return Target(
        address.host,
        address.port,
        profile.tls.port,
        client_tls(options, profile),
        str(address),
        options.called_ae,
        options.calling_ae,
        tls_server_name(options, profile),
    )


class EmbeddedTarget:
    """The reference SCP started in this process from ``profile`` (see the module docstring)."""

    def __init__(self) -> None:
        self._handle: Any = None
        self._tmp: str | None = None
        self.listener: Any = None  # the harness's move destination (dicomconf.scenario.move_listener)

    @property
    def scp(self) -> Any:
        return self._handle.scp if self._handle is not None else None

    def start(self, options: TargetOptions, profile: Profile) -> tuple[Target, Profile]:
        """Start the SCP; return the target and the profile as started (TLS port filled in)."""
        from dicomconf.scp.runtime import run_in_thread

        cert = key = None
        if profile.tls.enabled:
            from dicomconf.scenario.certs import TLSUnavailable, self_signed

            self._tmp = tempfile.mkdtemp(prefix="dicomconf-tls-")
            try:
                cert, key = self_signed(Path(self._tmp))
                tls = dataclasses.replace(profile.tls, ca=cert)
            except TLSUnavailable:
                tls = dataclasses.replace(profile.tls, enabled=False)
            profile = dataclasses.replace(profile, tls=tls)
        profile = self._start_listener(profile)
        self._handle = run_in_thread(profile.scp_config(port=0, cert=cert, key=key))
        port = self._handle.tls_port
        if port is not None:
            profile = dataclasses.replace(profile, tls=dataclasses.replace(profile.tls, port=port))
        embedded = TargetOptions(called_ae=options.called_ae, calling_ae=options.calling_ae)
        target = Target("127.0.0.1", self._handle.port, port, client_tls(embedded, profile, ca=cert),
                        "embedded reference SCP", options.called_ae, options.calling_ae)
        return target, profile

    def _start_listener(self, profile: Profile) -> Profile:
        """Start the move listener on a free loopback port; the profile as the SCP must be configured."""
        qr = profile.query_retrieve
        md = qr.move_destination
        if md is None or not (qr.move or profile.commitment.report is not None):
            return profile
        from dicomconf.scenario.move_listener import MoveListener

        self.listener = MoveListener(md.ae_title, "127.0.0.1", 0).start()
        md = dataclasses.replace(md, host="127.0.0.1", port=self.listener.port)
        return dataclasses.replace(profile, query_retrieve=dataclasses.replace(qr, move_destination=md))

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.stop()
            self._handle = None
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


__all__ = [
    "EmbeddedTarget",
    "TargetOptions",
    "TargetSetupError",
    "apply_options",
    "client_tls",
    "external_target",
    "target_address",
]
