"""Configuration of the reference SCP: one dataclass and its checks, CLI flags (the file: config_yaml).

Theory of operation
-------------------
:class:`SCPConfig` holds every setting with its default, so
``SCPConfig()`` is a working server on 127.0.0.1:11112.  A YAML file sets any
subset of the fields (:meth:`SCPConfig.from_yaml`); command-line flags then
override it (:meth:`SCPConfig.apply_args`).  The loader keeps the line of
every key and list element, so a bad file fails at start with
``ConfigError("file:line: what is wrong")`` rather than a traceback.

UIDs in the file may be written as UIDs or as pydicom keywords
(``Verification``, ``CTImageStorage``, ``ExplicitVRLittleEndian``).  The
negotiation itself is the core's (``dicomconf.ul.negotiation``); this module
only turns the file into an :class:`~dicomconf.ul.negotiation.AcceptorPolicy`
(:meth:`SCPConfig.policy`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any


from dicomconf.scp.config_checks import (  # re-exported: callers name them in this module
    SERVICES,
    STORAGE_KINDS,
    ConfigError,
    ae_problem,
    check_ae,
    parse_hostport,
    parse_size,
    resolve_uid,
)
from dicomconf.scp.config_yaml import load_text
from dicomconf.scp.storage import DEFAULT_MEMORY_LIMIT
from dicomconf.scp.tls import TLSConfig
from dicomconf.ul import constants as C

@dataclass
class SCPConfig:
    """Every setting of the reference SCP, with defaults (see ``docs/scp.md``)."""

    host: str = "127.0.0.1"
    port: int = 11112
    ae_titles: tuple[str, ...] = ("DICOMCONF",)
    require_called_ae: bool = True
    allowed_calling_aes: tuple[str, ...] | None = None
    # abstract syntax -> accepted transfer syntaxes; None: the core's default_supported()
    supported: dict[str, tuple[str, ...]] | None = None
    # SOP class -> (accept a proposed SCU role, accept a proposed SCP role), PS3.7 D.3.3.4
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    max_pdu_length: int = 16382
    max_associations: int | None = None
    # username -> passcode (None: username alone is enough), PS3.7 D.3.3.7; the repr shows names, not passcodes
    users: dict[str, str | None] | None = None
    require_user_identity: bool = False
    async_window: tuple[int, int] | None = None
    implementation_class_uid: str = C.IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = C.IMPLEMENTATION_VERSION_NAME
    storage: str = "memory"
    storage_dir: str | None = None
    fsync: bool = False
    # the SQLite index of stored instances: default (index.sqlite in storage_dir; :memory: for memory
    # storage), none, :memory:, or a file path; load: directories indexed at start (docs/scp.md)
    index: str = "default"
    load: tuple[str, ...] = ()
    # the DIMSE services beyond echo and store (SERVICES); None: every one whose need is met
    services: tuple[str, ...] | None = None
    # AE title -> (host, port): C-MOVE destinations and commitment report receivers (PS3.4 C.4.2, J.3.3)
    move_destinations: dict[str, tuple[str, int]] = field(default_factory=dict)
    worklist: str | None = None  # a YAML file or a directory of DICOM files: the Modality Worklist (PS3.4 K.6)
    # or the worklist items themselves (pydicom Datasets; from Python only, e.g. a profile's): used when no file
    worklist_items: tuple[Any, ...] | None = None
    commitment_report_to: str | None = None  # None: the requesting association; else an AE of move_destinations
    # the largest data set taken (bytes); past it the data set is dropped and C-STORE answers A700
    max_dataset_length: int | None = 2 << 30
    # bytes memory storage keeps in all (data sets + INSTANCE_COST each); past it C-STORE answers A700
    memory_storage_limit: int | None = DEFAULT_MEMORY_LIMIT
    # connections open at once; one more is closed as soon as it is accepted
    max_connections: int = 2048
    artim_timeout: float = 30.0
    idle_timeout: float | None = 60.0
    tls: TLSConfig = field(default_factory=TLSConfig)
    backlog: int = 4096
    verbose: bool = False
    show_secrets: bool = False  # the -v trace shows passcodes and identity tokens instead of ***
    source: str = "<defaults>"

    def __repr__(self) -> str:
        from dicomconf.ul.items import masked_repr
        from dicomconf.ul.negotiation import users_repr

        return masked_repr(self, {"users": users_repr(self.users)})

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "SCPConfig":
        """Read a YAML file; raise :class:`ConfigError` with ``file:line`` on any fault."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"{path}:0: cannot read the file: {exc.strerror or exc}") from None
        return cls.from_text(text, path)

    @classmethod
    def from_text(cls, text: str, name: str = "<string>") -> "SCPConfig":
        """Read YAML text (the file format is :mod:`dicomconf.scp.config_yaml`'s)."""
        return load_text(cls, text, name)

    def apply_args(self, args: argparse.Namespace) -> "SCPConfig":
        """Override settings with the flags given on the command line (None = not given)."""
        for name in ("host", "port"):
            value = getattr(args, name, None)
            if value is not None:
                setattr(self, name, value)
        ae = getattr(args, "ae", None)
        if ae:
            self.ae_titles = tuple(ae) if isinstance(ae, (list, tuple)) else (ae,)
        for flag, attr in (("storage", "storage"), ("storage_dir", "storage_dir")):
            value = getattr(args, flag, None)
            if value is not None:
                setattr(self, attr, value)
        index = getattr(args, "index", None)
        if index is not None:
            self.index = index if index in ("default", "none", ":memory:") else os.path.abspath(index)
        load = getattr(args, "load", None)
        if load:
            self.load = tuple(self.load) + tuple(os.path.abspath(d) for d in load)
        if getattr(args, "verbose", False):
            self.verbose = True
        if getattr(args, "show_secrets", False):
            self.show_secrets = True
        for text in getattr(args, "move_destination", None) or ():
            name, _, where = text.partition("=")
            try:
                self.move_destinations[name.strip()] = parse_hostport(where)
            except ValueError as exc:
                raise ConfigError(f"<command line>:0: --move-destination {text!r}: {exc}; give AE=HOST:PORT") from None
        if getattr(args, "worklist", None):
            self.worklist = os.path.abspath(args.worklist)
        services = getattr(args, "services", None)
        if services is not None:
            self.services = () if services.strip() == "none" else tuple(s.strip() for s in services.split(",") if s.strip())
        memory_limit = getattr(args, "memory_limit", None)
        if memory_limit is not None:
            try:
                self.memory_storage_limit = parse_size(memory_limit, allow_none=True)
            except ValueError as exc:
                raise ConfigError(f"<command line>:0: --memory-limit: {exc}") from None
        self.validate("<command line>")
        return self

    def validate(self, where: str | None = None) -> None:
        """Cross-field checks (raise :class:`ConfigError`)."""
        where = where or f"{self.source}:0"
        if ":" not in where:
            where += ":0"
        if self.storage == "directory" and not self.storage_dir:
            raise ConfigError(f"{where}: storage 'directory' needs storage_dir")
        if self.storage not in STORAGE_KINDS:
            raise ConfigError(f"{where}: storage must be one of {', '.join(STORAGE_KINDS)}, not {self.storage!r}")
        if self.storage == "discard" and self.index not in ("default", "none"):
            raise ConfigError(f"{where}: index {self.index!r}: discard storage keeps nothing to index")
        for name in self.services or ():
            if name not in SERVICES:
                raise ConfigError(f"{where}: unknown service {name!r}; known: {', '.join(SERVICES)}")
        for title in self.move_destinations:
            problem = ae_problem(title) if isinstance(title, str) else f"AE title {title!r} is not a string"
            if problem:
                raise ConfigError(f"{where}: move_destinations: {problem}")
        if self.commitment_report_to is not None and self.commitment_report_to not in self.move_destinations:
            raise ConfigError(f"{where}: commitment_report_to {self.commitment_report_to!r} is not one of "
                              "move_destinations (where would the report go?)")
        if self.worklist is not None and not os.path.exists(self.worklist):
            raise ConfigError(f"{where}: worklist: no such file or directory {self.worklist!r}")
        if self.load and (self.storage == "discard" or self.index == "none"):
            raise ConfigError(f"{where}: load needs an index and a storage that keeps instances")
        for directory in self.load:
            if not os.path.isdir(directory):
                raise ConfigError(f"{where}: load: {directory!r} is not a directory")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"{where}: port {self.port} is not 0-65535")
        for title in self.ae_titles:
            check_ae(title, where)
        if self.tls.enabled and not (self.tls.cert and self.tls.key):
            raise ConfigError(f"{where}: a TLS listener needs tls.cert and tls.key")
        if self.tls.require_client_cert and not self.tls.ca:
            raise ConfigError(f"{where}: tls.require_client_cert needs tls.ca to verify client certificates")

    # -------------------------------------------------------------- conversion

    def policy(self, offered: Any = None):
        """The core's :class:`AcceptorPolicy` for these settings (PS3.8 9.3.3, PS3.7 D.3.3).

        ``offered`` (:class:`dicomconf.scp.services_setup.Offered`) adds the services' presentation
        contexts, roles and SOP Class Extended Negotiation answers.
        """
        from dicomconf.ul.negotiation import AcceptorPolicy, default_supported

        supported = default_supported() if self.supported is None else dict(self.supported)
        roles = dict(self.roles)
        extended: dict = {}
        agreed: frozenset = frozenset()
        if offered is not None:
            supported.update(offered.supported)
            roles = {**offered.roles, **roles}
            extended, agreed = dict(offered.extended), offered.agreed
        return AcceptorPolicy(
            ae_titles=tuple(self.ae_titles),
            require_called_ae=self.require_called_ae,
            allowed_calling_aes=None if self.allowed_calling_aes is None else tuple(self.allowed_calling_aes),
            supported=supported,
            roles=roles,
            extended_negotiation=extended,
            extended_agreed=agreed,
            max_pdu_length=self.max_pdu_length,
            implementation_class_uid=self.implementation_class_uid,
            implementation_version_name=self.implementation_version_name,
            async_window=self.async_window,
            users=None if self.users is None else dict(self.users),
            require_user_identity=self.require_user_identity,
            max_associations=self.max_associations,
        )

    def replace(self, **changes: Any) -> "SCPConfig":
        return dataclasses.replace(self, **changes)


__all__ = ["SERVICES", "STORAGE_KINDS", "ConfigError", "SCPConfig", "TLSConfig", "parse_hostport", "parse_size",
           "resolve_uid"]
