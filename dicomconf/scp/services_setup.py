"""Which DIMSE services the reference SCP offers, built from its configuration (PS3.4 C, F.7, J, K).

Theory of operation
-------------------
:func:`offer` turns an :class:`~dicomconf.scp.config.SCPConfig` and its
storage into what the server needs to serve the services beyond verification
and storage:

* ``handlers``: SOP Class UID -> service handler (:mod:`dicomconf.services`);
* ``supported``: the presentation contexts to accept for them (abstract syntax
  -> transfer syntaxes), added to the configuration's own;
* ``roles``: with C-GET offered, every storage SOP class lets the requestor
  take the SCP role (PS3.7 D.3.3.4, PS3.4 C.4.3: the C-STOREs of a C-GET go
  to it), unless the configuration names roles itself;
* ``extended``: the SOP Class Extended Negotiation answered for each
  (relational queries and combined date-time matching for C-FIND, relational
  retrieval for C-MOVE/C-GET, PS3.4 C.5), each sub-field accepted only when
  proposed (``agreed``).

The services and what they need:

==========  ===========================================  ===================
service     SOP classes                                   needs
==========  ===========================================  ===================
find        Patient/Study Root Q/R FIND (PS3.4 C.6)       the index
move        Patient/Study Root Q/R MOVE                   the index
get         Patient/Study Root Q/R GET                    the index
commitment  Storage Commitment Push Model (PS3.4 J)       the index
mpps        Modality Performed Procedure Step (F.7)       nothing
worklist    Modality Worklist FIND (PS3.4 K.6)            a worklist file (or items)
==========  ===========================================  ===================

``services: null`` (the default) offers every service whose need is met;
a list names them, and one whose need is not met is a configuration error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dicomconf.scp.config import SERVICES, ConfigError
from dicomconf.ul.negotiation import default_supported

_NEEDS_INDEX = frozenset({"find", "move", "get", "commitment"})
_UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")  # implicit, explicit VR little endian


@dataclass
class Offered:
    """What :func:`offer` found (see the module docstring)."""

    handlers: dict[str, Any] = field(default_factory=dict)
    supported: dict[str, tuple[str, ...]] = field(default_factory=dict)
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    extended: dict[str, bytes] = field(default_factory=dict)
    agreed: frozenset[str] = frozenset()
    services: tuple[str, ...] = ()
    mpps: Any = None  # the MPPS service, for inspection (its instances)
    commitment: Any = None
    worklist: Any = None


def wanted(config: Any, has_index: bool) -> tuple[str, ...]:
    """The services to offer: the configuration's list, checked, or every one whose need is met."""
    where = config.source
    if config.services is not None:
        for name in config.services:
            if name in _NEEDS_INDEX and not has_index:
                raise ConfigError(f"{where}: service {name!r} needs the index (index: none, or discard storage)")
            if name == "worklist" and not _has_worklist(config):
                raise ConfigError(f"{where}: service 'worklist' needs a worklist file or directory (worklist:)")
        return tuple(config.services)
    return tuple(name for name in SERVICES
                 if (has_index or name not in _NEEDS_INDEX) and (name != "worklist" or _has_worklist(config)))


def _has_worklist(config: Any) -> bool:
    """A worklist file or directory, or worklist items given from Python (a profile's, PS3.4 K.6)."""
    return bool(config.worklist) or getattr(config, "worklist_items", None) is not None


def offer(config: Any, storage: Any) -> Offered:
    """The handlers, contexts, roles and extended negotiation answers for ``config`` (see the module docstring)."""
    index = getattr(storage, "index", None)
    names = wanted(config, index is not None)
    out = Offered(services=names)
    if not names:
        return out
    from dicomconf.services import qr_find, qr_retrieve

    agreed: set[str] = set()
    if "find" in names:
        for uid, handler in qr_find.handlers(index).items():
            out.handlers[uid] = handler
            out.extended[uid] = b"\x01\x01"  # relational queries, combined date-time matching (PS3.4 C.5.1.1)
            agreed.add(uid)
    if "move" in names or "get" in names:
        retrieve = qr_retrieve.handlers(index, config.move_destinations)
        for uid, handler in retrieve.items():
            if (uid in qr_retrieve.MOVE_LEVELS and "move" in names) or (uid in qr_retrieve.GET_LEVELS and "get" in names):
                out.handlers[uid] = handler
                out.extended[uid] = b"\x01"  # relational retrieval (PS3.4 C.5.2.1, C.5.3.1)
                agreed.add(uid)
    if "get" in names and not config.roles:
        storage_classes = [uid for uid in default_supported() if uid != "1.2.840.10008.1.1"]
        out.roles = {uid: (True, True) for uid in storage_classes}
    if "commitment" in names:
        from dicomconf.services.commitment import COMMITMENT_SOP_CLASS, CommitmentOptions, CommitmentService

        def lookup(sop_instance_uid: str) -> str | None:
            located = index.locate(sop_instance_uid)
            return located.sop_class_uid if located is not None else None

        out.commitment = CommitmentService(lookup, CommitmentOptions(report_to=config.commitment_report_to))
        out.handlers[COMMITMENT_SOP_CLASS] = out.commitment.handle
    if "mpps" in names:
        from dicomconf.services.mpps import MPPS_SOP_CLASS, MPPSService

        out.mpps = MPPSService()
        out.handlers[MPPS_SOP_CLASS] = out.mpps.handle
    if "worklist" in names:
        from dicomconf.services.worklist import WORKLIST_SOP_CLASS, WorklistError, WorklistService, WorklistSource

        try:
            if config.worklist:
                source = WorklistSource(config.worklist)
            else:
                source = WorklistSource(items=list(config.worklist_items))
            out.worklist = WorklistService(source)
        except WorklistError as exc:
            raise ConfigError(str(exc)) from None
        out.handlers[WORKLIST_SOP_CLASS] = out.worklist.handle
    own = config.supported
    for uid in out.handlers:
        if own is None or uid in own:
            out.supported[uid] = tuple(own[uid]) if own is not None else _UNCOMPRESSED
    out.handlers = {uid: h for uid, h in out.handlers.items() if uid in out.supported}
    out.agreed = frozenset(agreed)
    return out


__all__ = ["Offered", "SERVICES", "offer", "wanted"]
