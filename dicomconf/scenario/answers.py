"""What the scripted fake SCP answers: association replies and DIMSE responses, no sockets.

Theory of operation
-------------------
The fake SCP (:mod:`dicomconf.scenario.acceptor`) answers like the reference
SCP unless a scenario says otherwise, so both start from the same core
functions: :func:`answer_rq` negotiates an A-ASSOCIATE-RQ with
:func:`dicomconf.ul.negotiation.negotiate` under :func:`fake_policy` (every
storage SOP class with the SCP role open to the requestor, Verification and
the SOP classes of the services of :mod:`dicomconf.scenario.fake_services`,
any called AE title), then applies the scenario's ``ac`` changes: any fixed field
(protocol version, AE titles, application context, reserved block), any
presentation context's ID, result and transfer syntax (a named one, or the
n-th the requestor proposed for it; the contexts chosen by ID, SOP class,
position, a transfer syntax proposed, or whether they are accepted), the
order of the contexts, and each user information sub-item of PS3.8 Annex D
and PS3.7 D.3.3 (maximum length, implementation class UID and version name,
asynchronous operations window, role selection, user identity response,
extended negotiation), a null value leaving the sub-item out;
``extra_sub_items`` adds sub-items of any type (one of a later edition,
PS3.8 D.2).

:func:`responses` turns one DIMSE request into the messages that answer it
(PS3.7 9.3): C-ECHO-RSP, C-STORE-RSP, and for C-FIND one pending response
(FF00) per identifier the scenario gives, then the final status.  A request
dicomconf has no service for gets 0211 (unrecognized operation).  A
``response`` mapping of pydicom keywords changes or (null) removes elements
of every response command set, for scenarios that answer wrongly on purpose.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from pydicom import Dataset

from dicomconf.services import qr_find, qr_retrieve
from dicomconf.services.commitment import COMMITMENT_SOP_CLASS
from dicomconf.services.mpps import MPPS_SOP_CLASS
from dicomconf.services.worklist import WORKLIST_SOP_CLASS
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.items import (
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    RoleSelection,
    SOPClassExtendedNegotiation,
    UnknownSubItem,
    UserIdentityAC,
    UserInformation,
)
from dicomconf.ul.negotiation import AcceptorPolicy, Negotiated, default_supported, negotiate
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ

FAKE_SCP_AE = "DICOMCONF"
STATUS_SUCCESS = 0x0000
STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_UNRECOGNIZED_OPERATION = 0x0211  # PS3.7 Annex C

# The services the fake SCP answers with the reference SCP's handlers (dicomconf.scenario.fake_services):
# their SOP classes, from the service modules (PS3.4 C.6, C.4.2, C.4.3, J.3, F.7, K.6).
SERVICE_SOP_CLASSES: dict[str, tuple[str, ...]] = {
    "find": tuple(qr_find.MODEL_LEVELS),
    "worklist": (WORKLIST_SOP_CLASS,),
    "move": tuple(qr_retrieve.MOVE_LEVELS),
    "get": tuple(qr_retrieve.GET_LEVELS),
    "commitment": (COMMITMENT_SOP_CLASS,),
    "mpps": (MPPS_SOP_CLASS,),
}
# C-FIND information models (PS3.4 C.6, K.6) answered by the fake SCP, uncompressed syntaxes only.
FIND_MODELS = SERVICE_SOP_CLASSES["find"] + SERVICE_SOP_CLASSES["worklist"]
_UNCOMPRESSED = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")

# Fixed fields of an A-ASSOCIATE-AC a scenario may set (PS3.8 9.3.3), by their names in the core.
_FIXED = ("protocol_version", "called_ae_title", "calling_ae_title", "application_context_name")


class AnswerError(ValueError):
    """A scenario's answer cannot be built (names the key)."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def fake_policy(max_pdu_length: int = 16382, ae_title: str = FAKE_SCP_AE) -> AcceptorPolicy:
    """The fake SCP's negotiation policy: storage, Verification and the services' SOP classes, any called
    AE title; the requestor may take the SCP role for storage (a C-GET's C-STOREs, PS3.7 D.3.3.4)."""
    supported = default_supported()
    roles = {uid: (True, True) for uid in supported if uid != C.VERIFICATION_SOP_CLASS}
    for classes in SERVICE_SOP_CLASSES.values():
        for uid in classes:
            supported[uid] = _UNCOMPRESSED
    return AcceptorPolicy(ae_titles=(ae_title,), require_called_ae=False, supported=supported, roles=roles,
                          max_pdu_length=max_pdu_length)


def _uid(name: Any, key: str, what: str = "SOP class") -> str:
    from dicomconf.scu.client import resolve_uid

    try:
        return resolve_uid(str(name), what=what)
    except ValueError as exc:
        raise AnswerError(str(exc), key) from None


def _contexts(ac: AAssociateAC, rq: AAssociateRQ, changes: Any) -> tuple[PresentationContextAC, ...]:
    """The AC's presentation contexts after the scenario's ``contexts`` changes (in order)."""
    abstract = {pc.context_id: pc.abstract_syntax for pc in rq.presentation_contexts}
    proposed = {pc.context_id: pc.transfer_syntaxes for pc in rq.presentation_contexts}
    out = list(ac.presentation_contexts)
    for i, change in enumerate(() if changes == "reverse" else changes or ()):
        key = f"contexts.{i}"
        if not isinstance(change, Mapping):
            raise AnswerError("each entry is a mapping", key)
        chosen = []
        for j, pc in enumerate(out):
            if "id" in change and pc.context_id != change["id"]:
                continue
            if "accepted" in change and (pc.result == C.PC_ACCEPTANCE) != bool(change["accepted"]):
                continue
            if "proposing" in change and _uid(change["proposing"], key, "transfer syntax") not in proposed.get(
                    pc.context_id, ()):
                continue
            if "abstract_syntax" in change and abstract.get(pc.context_id) != _uid(change["abstract_syntax"], key):
                continue
            if "index" in change and j != change["index"]:
                continue
            chosen.append(j)
        for j in chosen:
            pc = out[j]
            if "transfer_syntax" in change:
                ts = change["transfer_syntax"]
                pc = dataclasses.replace(pc, transfer_syntax=None if ts is None else _uid(ts, key, "transfer syntax"))
            if "proposed_transfer_syntax" in change and proposed.get(pc.context_id):
                offered = proposed[pc.context_id]  # the n-th the requestor proposed; past either end: the nearest
                n = max(-len(offered), min(int(change["proposed_transfer_syntax"]), len(offered) - 1))
                pc = dataclasses.replace(pc, transfer_syntax=offered[n])
            if "result" in change:
                pc = dataclasses.replace(pc, result=int(change["result"]))
            if "new_id" in change:
                pc = dataclasses.replace(pc, context_id=int(change["new_id"]))
            out[j] = None if change.get("omit") else pc  # type: ignore[call-overload]
        out = [pc for pc in out if pc is not None]
    if changes == "reverse":
        out.reverse()
    return tuple(out)


def _accept_only(ac: AAssociateAC, rq: AAssociateRQ, names: list) -> AAssociateAC:
    """Only the contexts of the SOP classes named stay accepted; others are answered 3
    (abstract syntax not supported, PS3.8 Table 9-18)."""
    keep = {_uid(n, "accept_only") for n in names}
    abstract = {pc.context_id: pc.abstract_syntax for pc in rq.presentation_contexts}
    contexts = tuple(
        pc if abstract.get(pc.context_id) in keep or pc.result != C.PC_ACCEPTANCE
        else dataclasses.replace(pc, result=C.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED)
        for pc in ac.presentation_contexts
    )
    return dataclasses.replace(ac, presentation_contexts=contexts)


def _set_sub(subs: list, kind: type, value: Any) -> None:
    """Replace the sub-items of ``kind`` with ``value`` (None: leave them out), keeping order."""
    at = next((i for i, s in enumerate(subs) if isinstance(s, kind)), len(subs))
    subs[:] = [s for s in subs if not isinstance(s, kind)]
    if value is not None:
        subs.insert(min(at, len(subs)), value)


def _user_information(ui: UserInformation, spec: Mapping[str, Any]) -> UserInformation:
    subs = list(ui.sub_items)
    if "max_pdu_length" in spec:
        v = spec["max_pdu_length"]
        _set_sub(subs, MaximumLength, None if v is None else MaximumLength(int(v)))
    if "implementation_class_uid" in spec:
        v = spec["implementation_class_uid"]
        _set_sub(subs, ImplementationClassUID, None if v is None else ImplementationClassUID(str(v)))
    if "implementation_version_name" in spec:
        v = spec["implementation_version_name"]
        _set_sub(subs, ImplementationVersionName, None if v is None else ImplementationVersionName(str(v)))
    if "async_window" in spec:
        v = spec["async_window"]
        _set_sub(subs, AsynchronousOperationsWindow, None if v is None else AsynchronousOperationsWindow(*map(int, v)))
    if "roles" in spec:
        subs = [s for s in subs if not isinstance(s, RoleSelection)]
        for sop, r in (spec["roles"] or {}).items():
            subs.append(RoleSelection(_uid(sop, "roles"), int(r.get("scu", 0)), int(r.get("scp", 0))))
    if "extended" in spec:
        subs = [s for s in subs if not isinstance(s, SOPClassExtendedNegotiation)]
        for sop, info in (spec["extended"] or {}).items():
            subs.append(SOPClassExtendedNegotiation(_uid(sop, "extended"), bytes.fromhex(str(info).replace(" ", ""))))
    if "user_identity_response" in spec:
        v = spec["user_identity_response"]
        _set_sub(subs, UserIdentityAC, None if v is None else UserIdentityAC(str(v).encode("utf-8")))
    for i, extra in enumerate(spec.get("extra_sub_items") or ()):  # any type, e.g. one of a later edition
        try:
            data = bytes.fromhex(str(extra.get("data", "")).replace(" ", ""))
            subs.append(UnknownSubItem(int(extra["item_type"]), data))
        except (KeyError, TypeError, ValueError) as exc:
            raise AnswerError(f"an extra sub-item is {{item_type, data (hex)}}: {exc}",
                              f"extra_sub_items.{i}") from None
    return UserInformation(tuple(subs))


def answer_rq(rq: AAssociateRQ, policy: AcceptorPolicy, spec: Mapping[str, Any] | None) -> tuple[Any, Negotiated]:
    """The reply to ``rq`` (an A-ASSOCIATE-AC, or the RJ the policy gives) with the scenario's
    ``ac`` changes (see the module docstring), and what was negotiated before the changes."""
    spec = dict(spec or {})
    result = negotiate(rq, policy)
    reply = result.reply
    if not isinstance(reply, AAssociateAC):
        return reply, result
    if spec.get("accept_only") is not None:
        reply = _accept_only(reply, rq, list(spec["accept_only"]))
    if "contexts" in spec:
        reply = dataclasses.replace(reply, presentation_contexts=_contexts(reply, rq, spec["contexts"]))
    fixed = {k: spec[k] for k in _FIXED if k in spec}
    if "reserved" in spec:
        fixed["reserved"] = bytes.fromhex(str(spec["reserved"]).replace(" ", ""))
    if fixed:
        reply = dataclasses.replace(reply, **fixed)
    reply = dataclasses.replace(reply, user_information=_user_information(reply.user_information, spec))
    return reply, result


def accepted_contexts(rq: AAssociateRQ, ac: AAssociateAC) -> dict[int, tuple[str, str]]:
    """Context ID -> (abstract syntax, transfer syntax) of what ``ac`` accepted of ``rq``."""
    abstract = {pc.context_id: pc.abstract_syntax for pc in rq.presentation_contexts}
    return {pc.context_id: (abstract.get(pc.context_id, ""), pc.transfer_syntax or "")
            for pc in ac.presentation_contexts if pc.result == C.PC_ACCEPTANCE}


# ---------------------------------------------------------------- DIMSE


def apply_changes(ds: Dataset, changes: Mapping[str, Any] | None) -> None:
    """Set (or, with None, remove) the elements ``changes`` names by pydicom keyword: a ``response`` mapping."""
    for keyword, value in (changes or {}).items():
        try:
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        except (ValueError, TypeError, AttributeError) as exc:
            raise AnswerError(f"{keyword}: {exc}", f"response.{keyword}") from None
        if value is not None and keyword not in ds:
            raise AnswerError(f"{keyword!r} is not a DICOM keyword", f"response.{keyword}")


FILL_LIMIT = 1 << 24  # characters: a filled value this long is already far past any maximum length


def _filled(spec: Mapping[str, Any], key: str) -> str:
    """``{fill: TEXT, length: N}``: TEXT repeated to exactly N characters (a value longer than the
    SCU's maximum length, for a P-DATA-TF that exceeds it, PS3.8 D.1.1)."""
    text, length = spec.get("fill"), spec.get("length")
    if set(spec) != {"fill", "length"} or not isinstance(text, str) or not text:
        raise AnswerError("a filled value is {fill: TEXT (not empty), length: N}", key)
    if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= FILL_LIMIT:
        raise AnswerError(f"length must be an integer from 0 to {FILL_LIMIT}, got {length!r}", key)
    return (text * (length // len(text) + 1))[:length]


def identifier(values: Mapping[str, Any], key: str = "pending") -> Dataset:
    """A C-FIND identifier (PS3.4 C.4.1.1.3) from pydicom keywords; a value ``{fill: TEXT, length: N}``
    is TEXT repeated to N characters."""
    ds = Dataset()
    for keyword, value in values.items():
        if isinstance(value, Mapping):
            value = _filled(value, f"{key}.{keyword}")
        try:
            setattr(ds, keyword, value)
        except (ValueError, TypeError, AttributeError) as exc:
            raise AnswerError(f"{keyword}: {exc}", key) from None
        if keyword not in ds:
            raise AnswerError(f"{keyword!r} is not a DICOM keyword", key)
    return ds


def response(rq: dimse.Message, status: int, changes: Mapping[str, Any] | None = None,
             data: bytes | None = None, context_id: int | None = None) -> dimse.Message:
    """The response to ``rq`` with ``status`` (PS3.7 9.3, E.1), its data set ``data`` if any."""
    ds = Dataset()
    sop_class = rq.affected_sop_class_uid or rq.requested_sop_class_uid
    if sop_class:
        ds.AffectedSOPClassUID = sop_class
    ds.CommandField = (rq.command_field | 0x8000) & 0xFFFF
    if rq.message_id is not None:
        ds.MessageIDBeingRespondedTo = rq.message_id
    ds.CommandDataSetType = dimse.NO_DATA_SET if data is None else dimse.DATA_SET_PRESENT
    ds.Status = status
    if rq.command_field == dimse.C_STORE_RQ and rq.affected_sop_instance_uid:
        ds.AffectedSOPInstanceUID = rq.affected_sop_instance_uid
    apply_changes(ds, changes)
    return dimse.Message(rq.context_id if context_id is None else context_id, ds, data)


def final_status(rq: dimse.Message, given: Any) -> int:
    """The status of the (final) response: the scenario's, else success for what the fake SCP
    serves (C-ECHO, C-STORE, C-FIND) and 0211 for any other request."""
    if given is not None:
        return int(given)
    if rq.command_field in (dimse.C_ECHO_RQ, dimse.C_STORE_RQ, dimse.C_FIND_RQ):
        return STATUS_SUCCESS
    return STATUS_UNRECOGNIZED_OPERATION


def pending_responses(rq: dimse.Message, identifiers: list, transfer_syntax: str,
                      changes: Mapping[str, Any] | None = None) -> list[dimse.Message]:
    """One C-FIND pending response (FF00) per identifier, each encoded in the context's transfer syntax."""
    from dicomconf.scu.client import encode_dataset

    out = []
    for i, values in enumerate(identifiers):
        if not isinstance(values, Mapping):
            raise AnswerError("each pending identifier is a mapping of DICOM keywords", f"pending.{i}")
        data = encode_dataset(identifier(values, f"pending.{i}"), transfer_syntax)
        out.append(response(rq, STATUS_PENDING, changes, data))
    return out
