"""Association negotiation as the acceptor sees it (PS3.8 7.1, 9.3.3-9.3.4; PS3.7 Annex D.3).

Theory of operation
-------------------
:func:`negotiate` is a pure function of a decoded A-ASSOCIATE-RQ, an
:class:`AcceptorPolicy` and the number of associations already open.  It
returns a :class:`Negotiated`: the reply to send (A-ASSOCIATE-AC or -RJ) and
what was agreed (accepted contexts, roles, the peer's maximum length, the
authenticated user, the asynchronous window, extended negotiation answers).
It never raises on anything a peer can send; a request it cannot answer
with an AC is answered with an RJ.  :func:`check_reply` (from
:mod:`dicomconf.ul.negotiation_check`) runs the other way: given an RQ and a
peer's reply, it lists every rule the reply breaks.

Association-level checks, first failing one wins
    1. protocol version: only bit 0 is tested (PS3.8 9.3.2); clear ->
       RJ (1, 2, 2) protocol-version-not-supported.
    2. presentation context list: an ID that is even or 0, an ID used twice,
       or more than 128 contexts breaks PS3.8 9.3.2.2 and 7.1.1.13 (the
       requestor assigns an unused odd ID to each context).  The standard
       gives no per-context result for this and an AC cannot answer such an
       ID without breaking 9.3.3.2 itself (7.1.1.14: one result per proposed
       context, identified by its ID), so the request is not acceptable to
       the service-provider: PS3.8 9.2.2 Table 9-6 AE-6 answers such a
       request with an RJ, and 7.1.2.6 has the provider give source 2 or 3;
       here (1, 2, 1) rejected-permanent, ACSE-related, no-reason-given.
    3. local limit: ``active_associations >= max_associations`` -> RJ
       (2, 3, 2) rejected-transient, local-limit-exceeded (Table 9-21).
    4. application context name other than 1.2.840.10008.3.1.1.1 ->
       RJ (1, 1, 2) (PS3.7 A.2.1, Table 9-21).
    5. called AE title not one of ours (when ``require_called_ae``) ->
       RJ (1, 1, 7).
    6. calling AE title not allowed (when ``allowed_calling_aes`` is set) ->
       RJ (1, 1, 3).
    7. user identity refused (PS3.7 D.3.3.7; PS3.15 B.6: "if the
       authentication fails, the association shall be rejected") ->
       RJ (1, 2, 1): D.3.3.7's note has a rejection for an authorization
       failure indicated as rejected-permanent with the source "DICOM UL
       service-provider (ACSE related function)"; Table 9-21 gives that
       source no identity-specific reason, so no-reason-given.

    The provider's own checks (1-3) come before the service-user's (4-7),
    as in AE-6 (and 7.1.2.6) the user sees only a request the provider
    found acceptable; the permanent provider rejections come before the
    transient one so a requestor is not told to retry what can never
    succeed.  Among the user
    checks, the application context comes first (nothing else has meaning
    without it), then whom the request is for, who sends it, and its
    credentials.  AE titles compare without leading and trailing spaces
    (PS3.8 9.3.2).

Presentation contexts (PS3.8 9.3.3.2, PS3.7 D.3.2)
    Every proposed context is answered, in RQ order.  Result 3 when the
    abstract syntax is not in ``supported``; 4 when none of the proposed
    transfer syntaxes is; 1 (user-rejection) when role selection leaves the
    requestor neither SCU nor SCP; otherwise 0 with one transfer syntax.
    The transfer syntax is the first *proposed* one the policy accepts (the
    requestor lists its preference; PS3.7 D.3.2 lets the acceptor choose any
    proposed one), or the first of the policy's own list when
    ``prefer_own_transfer_syntax_order`` is set.  A rejected context echoes
    the first proposed transfer syntax so the item keeps its sub-item
    (Table 9-18: the value is not significant).

Roles (PS3.7 D.3.3.4): see :func:`select_role`.  One reply item per SOP
class the requestor sent an item for (the first of several); none otherwise.
Without an item the requestor is SCU, which the policy must allow.

Common extended negotiation (PS3.7 D.3.3.6, PS3.4 B.3.1.4): when
``accept_common_extended`` is set and a proposed abstract syntax is not
supported, but the requestor's 57H sub-item for it names a related general
SOP class that is, the context is negotiated with the general class's
transfer syntaxes and roles (the specialised class is a compatible
extension of it).  57H has no A-ASSOCIATE-AC form, so nothing is answered.
"""

from __future__ import annotations

import functools
import hmac
import re
from dataclasses import dataclass, field
from typing import Mapping

from pydicom import uid as _uid

from dicomconf.ul import constants as C
from dicomconf.ul.items import (
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    SubItem,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
    hidden,
    masked_repr,
)
from dicomconf.ul.negotiation_check import Problem, check_reply
from dicomconf.ul.pdu import AAssociateAC, AAssociateRJ, AAssociateRQ

__all__ = [
    "AcceptorPolicy",
    "DEFAULT_ROLES",
    "Negotiated",
    "Problem",
    "check_reply",
    "default_supported",
    "negotiate",
    "select_role",
    "users_repr",
]

# PS3.7 D.3.3.4: without a role selection item the requestor is SCU, the acceptor SCP.
DEFAULT_ROLES: tuple[bool, bool] = (True, False)

UNCOMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    _uid.ImplicitVRLittleEndian,
    _uid.ExplicitVRLittleEndian,
    _uid.ExplicitVRBigEndian,
    _uid.DeflatedExplicitVRLittleEndian,
)
COMPRESSED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    _uid.JPEGBaseline8Bit,
    _uid.JPEGExtended12Bit,
    _uid.JPEGLosslessSV1,
    _uid.JPEGLSLossless,
    _uid.JPEGLSNearLossless,
    _uid.JPEG2000Lossless,
    _uid.JPEG2000,
    _uid.RLELossless,
)

# A SOP class of the Storage Service Class by its registered name (PS3.4 B.5, PS3.6 Table A-1).
_STORAGE_NAME = re.compile(r"Storage( - .*)?( SOP Class)?$")
_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # a media SOP class, not a network one


@functools.lru_cache(maxsize=1)
def _default_supported_items() -> tuple[tuple[str, tuple[str, ...]], ...]:
    from pydicom._uid_dict import UID_dictionary

    storage_syntaxes = UNCOMPRESSED_TRANSFER_SYNTAXES + COMPRESSED_TRANSFER_SYNTAXES
    items = [(C.VERIFICATION_SOP_CLASS, (_uid.ImplicitVRLittleEndian, _uid.ExplicitVRLittleEndian))]
    for uid, (name, kind, *_rest) in UID_dictionary.items():
        if kind == "SOP Class" and _STORAGE_NAME.search(name) and uid != _MEDIA_STORAGE_DIRECTORY:
            items.append((uid, storage_syntaxes))
    return tuple(items)


def default_supported() -> dict[str, tuple[str, ...]]:
    """Verification and every storage SOP class of pydicom's UID registry.

    Verification with implicit and explicit VR little endian; storage with the
    uncompressed transfer syntaxes (implicit LE, explicit LE, explicit BE,
    deflated) and the common compressed ones (JPEG baseline, extended,
    lossless SV1; JPEG-LS lossless and near-lossless; JPEG 2000 lossless and
    lossy; RLE), accepted as they come.  A new dict each call.
    """
    return dict(_default_supported_items())


@dataclass(frozen=True, slots=True)
class AcceptorPolicy:
    """What the acceptor accepts (PS3.8 9.3.3, PS3.7 D.3).

    ``roles`` maps a SOP class to (requestor may be SCU, requestor may be
    SCP), :data:`DEFAULT_ROLES` when absent.  ``users`` maps a username to its
    passcode (None: the username alone suffices); ``users=None`` means user
    identity is not checked.  ``async_window`` is the (invoked, performed)
    pair answered when the RQ proposes a window.  ``extended_negotiation``
    maps a SOP class to the service-class-application-information answered
    for it.  ``prefer_own_transfer_syntax_order`` picks the transfer syntax
    by the order of ``supported`` rather than the requestor's.  The repr
    shows each user's passcode by its size only (:func:`users_repr`).
    """

    ae_titles: tuple[str, ...] = ("DICOMCONF",)
    require_called_ae: bool = True
    allowed_calling_aes: tuple[str, ...] | None = None
    supported: Mapping[str, tuple[str, ...]] = field(default_factory=default_supported)
    roles: Mapping[str, tuple[bool, bool]] = field(default_factory=dict)
    max_pdu_length: int = 16382
    implementation_class_uid: str = C.IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = C.IMPLEMENTATION_VERSION_NAME
    async_window: tuple[int, int] | None = None
    users: Mapping[str, str | None] | None = None
    require_user_identity: bool = False
    max_associations: int | None = None
    extended_negotiation: Mapping[str, bytes] = field(default_factory=dict)
    # SOP classes whose extended negotiation sub-fields are each a proposal the acceptor accepts by
    # returning the same value (1) or turns down with 0 (PS3.4 C.5.1.1, C.5.2.1, C.5.3.1, K.5.1.1)
    extended_agreed: frozenset[str] = frozenset()
    accept_common_extended: bool = True
    prefer_own_transfer_syntax_order: bool = False

    def __repr__(self) -> str:
        return masked_repr(self, {"users": users_repr(self.users)})


def users_repr(users: Mapping[str, str | None] | None) -> str:
    """``{'alice': <12 characters hidden>, 'bob': None}``: user names, never passcodes (PS3.7 D.3.3.7)."""
    if users is None:
        return "None"
    return "{" + ", ".join(f"{name!r}: {hidden(passcode)}" for name, passcode in users.items()) + "}"


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The reply and what it agreed.

    ``roles`` maps each accepted abstract syntax to (requestor is SCU,
    requestor is SCP).  ``results`` maps every answered context ID to its
    result (Table 9-18).  ``async_window`` is the (invoked, performed) pair
    answered, (1, 1) when none was negotiated (PS3.7 D.3.3.3).
    ``extended_negotiation`` holds the 56H answers sent; ``related_general``
    maps a context ID accepted through a related general SOP class to that
    class.  On an RJ everything but ``reply`` and the peer's own
    announcements is empty.
    """

    reply: AAssociateAC | AAssociateRJ
    accepted: dict[int, tuple[str, str]]
    roles: dict[str, tuple[bool, bool]]
    peer_max_pdu_length: int
    user: str | None
    results: dict[int, int] = field(default_factory=dict)
    async_window: tuple[int, int] = (1, 1)
    extended_negotiation: dict[str, bytes] = field(default_factory=dict)
    related_general: dict[int, str] = field(default_factory=dict)
    peer_implementation_class_uid: str | None = None
    peer_implementation_version_name: str | None = None

    @property
    def is_accepted(self) -> bool:
        return isinstance(self.reply, AAssociateAC)


def select_role(proposed_scu: int, proposed_scp: int, allow_scu: bool, allow_scp: bool) -> tuple[int, int]:
    """The (SCU-role, SCP-role) reply to one role selection item (PS3.7 D.3.3.4).

    A role is granted (1) only when the requestor proposed it (1) and the
    policy allows the requestor that role; a role proposed 0 (or any value
    other than 1) is answered 0: "the Association-acceptor shall not return
    the value (1) if the Association-requestor has not proposed the role".
    """
    return (
        1 if proposed_scu == 1 and allow_scu else 0,
        1 if proposed_scp == 1 and allow_scp else 0,
    )


def _ae(title: str) -> str:
    return title.strip(" ")


@functools.lru_cache(maxsize=64)
def _ae_set(titles: tuple[str, ...]) -> frozenset[str]:
    """AE titles without leading and trailing spaces (PS3.8 9.3.2), built once per distinct tuple.

    Keyed by the titles themselves (a tuple cannot change), so a policy made
    with other titles gets its own set.
    """
    return frozenset(_ae(t) for t in titles)


@functools.lru_cache(maxsize=64)
def _own_sub_items(max_pdu_length: int, class_uid: str, version_name: str) -> tuple[SubItem, ...]:
    """The AC's sub-items that depend on the policy alone (PS3.7 D.3.3.1, D.3.3.2), keyed by their values."""
    subs: tuple[SubItem, ...] = (MaximumLength(max_pdu_length), ImplementationClassUID(class_uid))
    return subs + (ImplementationVersionName(version_name),) if version_name else subs


def _context_list_fault(contexts: tuple[PresentationContextRQ, ...]) -> str | None:
    """Why the context list cannot be answered one result per ID, if it cannot (PS3.8 9.3.2.2, 7.1.1.13)."""
    if len(contexts) > C.MAX_PRESENTATION_CONTEXTS:
        return f"{len(contexts)} presentation contexts, more than {C.MAX_PRESENTATION_CONTEXTS}"
    seen: set[int] = set()
    for pc in contexts:
        if pc.context_id % 2 == 0:
            return f"presentation context ID {pc.context_id} is not odd"
        if pc.context_id in seen:
            return f"presentation context ID {pc.context_id} is used twice"
        seen.add(pc.context_id)
    return None


def _association_rejection(rq: AAssociateRQ, policy: AcceptorPolicy, active: int) -> tuple[int, int, int] | None:
    """(result, source, reason) of the first association-level check that fails, in the module's order."""
    if not rq.protocol_version & C.PROTOCOL_VERSION:
        return (C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_ACSE, C.RJ_ACSE_PROTOCOL_VERSION_NOT_SUPPORTED)
    if _context_list_fault(rq.presentation_contexts) is not None:
        return (C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_ACSE, C.RJ_ACSE_NO_REASON)
    if policy.max_associations is not None and active >= policy.max_associations:
        return (C.RJ_RESULT_TRANSIENT, C.RJ_SOURCE_PRESENTATION, C.RJ_PRESENTATION_LOCAL_LIMIT_EXCEEDED)
    if rq.application_context_name != C.APPLICATION_CONTEXT_NAME:
        return (C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_USER, C.RJ_USER_APPLICATION_CONTEXT_NOT_SUPPORTED)
    if policy.require_called_ae and _ae(rq.called_ae_title) not in _ae_set(tuple(policy.ae_titles)):
        return (C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_USER, C.RJ_USER_CALLED_AE_NOT_RECOGNIZED)
    if policy.allowed_calling_aes is not None and _ae(rq.calling_ae_title) not in _ae_set(
        tuple(policy.allowed_calling_aes)
    ):
        return (C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_USER, C.RJ_USER_CALLING_AE_NOT_RECOGNIZED)
    return None


def _utf8(field_value: bytes) -> str | None:
    try:
        return bytes(field_value).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _user_identity(
    item: UserIdentityRQ | None, policy: AcceptorPolicy
) -> tuple[bool, str | None, UserIdentityAC | None]:
    """(accepted, username, 59H reply or None) for the RQ's user identity (PS3.7 D.3.3.7).

    With ``users=None`` identity is not checked: types 1 and 2 are taken at
    their word (PS3.15 B.4, Basic User Identity); other types are accepted
    without a server response, as we hold no ticket, assertion or token to
    answer with.  Otherwise types 1 and 2 are checked against ``users`` and
    types 3-5 (and undefined types) are refused.  The 59H reply goes only
    with an accepted identity whose positive response was requested; for
    types 1 and 2 its server response is empty (D.3.3.7.2).
    """
    if item is None:
        return (not policy.require_user_identity, None, None)
    kind = item.user_identity_type
    wants_response = item.positive_response_requested == 1
    basic = kind in (C.USER_IDENTITY_USERNAME, C.USER_IDENTITY_USERNAME_PASSCODE)
    if policy.users is None:
        if not basic:
            return (True, None, None)
        return (True, _utf8(item.primary_field), UserIdentityAC(b"") if wants_response else None)
    if not basic:
        return (False, None, None)
    name = _utf8(item.primary_field)
    if name is None or name not in policy.users:
        return (False, None, None)
    expected = policy.users[name]
    if expected is not None:
        if kind != C.USER_IDENTITY_USERNAME_PASSCODE:
            return (False, None, None)
        if not hmac.compare_digest(bytes(item.secondary_field), expected.encode("utf-8")):
            return (False, None, None)
    return (True, name, UserIdentityAC(b"") if wants_response else None)


def _narrow(ours: int, theirs: int) -> int:
    """An answer no larger than the proposal, 0 meaning unlimited (PS3.7 D.3.3.3)."""
    if theirs == 0:
        return ours
    if ours == 0:
        return theirs
    return min(ours, theirs)


def _choose_transfer_syntax(proposed: tuple[str, ...], accepted: tuple[str, ...], own_order: bool) -> str | None:
    first, second = (accepted, proposed) if own_order else (proposed, accepted)
    for ts in first:
        if ts in second:
            return ts
    return None


_FIRST_OF = (MaximumLength, ImplementationClassUID, ImplementationVersionName, AsynchronousOperationsWindow, UserIdentityRQ)
_ALL_OF = frozenset({RoleSelection, SOPClassCommonExtendedNegotiation, SOPClassExtendedNegotiation})
_NONE_OF_ALL: dict[type, tuple] = {kind: () for kind in _ALL_OF}


def _announced(ui: UserInformation) -> dict[type, object]:
    """The RQ's sub-items in one pass, as :class:`UserInformation`'s properties give them (PS3.8 9.3.2.3).

    For each kind of ``_FIRST_OF`` its first sub-item; for each of ``_ALL_OF``
    a tuple of all, in order (absent kinds: a missing key, an empty tuple).
    """
    found: dict[type, object] = dict(_NONE_OF_ALL)
    many: dict[type, list] = {}
    for sub in ui.sub_items:
        kind = type(sub)
        if kind in _ALL_OF:
            many.setdefault(kind, []).append(sub)
        elif kind not in found:
            found[kind] = sub
    for kind, subs in many.items():
        found[kind] = tuple(subs)
    return found


def _peer_announcements(found: dict[type, object]) -> tuple[int, str | None, str | None]:
    """(maximum length or 0, implementation class UID, implementation version name) the requestor sent."""
    length = found.get(MaximumLength)
    uid = found.get(ImplementationClassUID)
    name = found.get(ImplementationVersionName)
    return (
        (length.maximum_length or 0) if length is not None else 0,  # type: ignore[attr-defined]
        uid.implementation_class_uid if uid is not None else None,  # type: ignore[attr-defined]
        name.implementation_version_name if name is not None else None,  # type: ignore[attr-defined]
    )


def _rejected(found: dict[type, object], reason: tuple[int, int, int]) -> Negotiated:
    peer_max, peer_uid, peer_name = _peer_announcements(found)
    return Negotiated(
        reply=AAssociateRJ(*reason),
        accepted={},
        roles={},
        peer_max_pdu_length=peer_max,
        user=None,
        peer_implementation_class_uid=peer_uid,
        peer_implementation_version_name=peer_name,
    )


def negotiate(rq: AAssociateRQ, policy: AcceptorPolicy, *, active_associations: int = 0) -> Negotiated:
    """Answer an A-ASSOCIATE-RQ per ``policy`` (PS3.8 9.3.3-9.3.4, PS3.7 D.3).

    ``active_associations`` is the number already established, checked
    against ``policy.max_associations``.  The module docstring gives the
    order of the association-level checks and every choice made.
    """
    found = _announced(rq.user_information)
    rejection = _association_rejection(rq, policy, active_associations)
    if rejection is not None:
        return _rejected(found, rejection)
    identity_ok, user, identity_reply = _user_identity(found.get(UserIdentityRQ), policy)  # type: ignore[arg-type]
    if not identity_ok:
        return _rejected(found, (C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_ACSE, C.RJ_ACSE_NO_REASON))

    supported = policy.supported
    policy_roles = policy.roles
    role_items: dict[str, RoleSelection] = {}
    for role_item in found[RoleSelection]:  # type: ignore[attr-defined]
        role_items.setdefault(role_item.sop_class_uid, role_item)
    common: dict[str, SOPClassCommonExtendedNegotiation] = {}
    if policy.accept_common_extended:
        for common_item in found[SOPClassCommonExtendedNegotiation]:  # type: ignore[attr-defined]
            common.setdefault(common_item.sop_class_uid, common_item)

    own_order = policy.prefer_own_transfer_syntax_order
    answers: list[PresentationContextAC] = []
    accepted: dict[int, tuple[str, str]] = {}
    results: dict[int, int] = {}
    agreed_roles: dict[str, tuple[bool, bool]] = {}
    related: dict[int, str] = {}
    for pc in rq.presentation_contexts:
        abstract = pc.abstract_syntax
        general = _general_for(abstract, common, supported) if common else None
        syntaxes = supported.get(abstract) if general is None else supported[general]
        chosen: str | None = None
        if syntaxes is None:
            result = C.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED
        else:
            chosen = _choose_transfer_syntax(pc.transfer_syntaxes, syntaxes, own_order)
            if chosen is None:
                result = C.PC_TRANSFER_SYNTAXES_NOT_SUPPORTED
            else:
                allow = _allowed_roles(abstract, general, policy_roles) if policy_roles else DEFAULT_ROLES
                allow_scu, allow_scp = allow
                role_item = role_items.get(abstract)
                if role_item is None:
                    roles = DEFAULT_ROLES if allow_scu else (False, False)
                else:
                    scu, scp = select_role(role_item.scu_role, role_item.scp_role, allow_scu, allow_scp)
                    roles = (bool(scu), bool(scp))
                if roles == (False, False):
                    result, chosen = C.PC_USER_REJECTION, None
                else:
                    result = C.PC_ACCEPTANCE
                    accepted[pc.context_id] = (abstract, chosen)
                    agreed_roles[abstract] = roles
                    if general is not None:
                        related[pc.context_id] = general
        results[pc.context_id] = result
        answers.append(PresentationContextAC(pc.context_id, result, chosen or pc.transfer_syntaxes[0]))

    own = _own_sub_items(
        policy.max_pdu_length, policy.implementation_class_uid, policy.implementation_version_name or ""
    )
    subs: list[SubItem] = list(own[:2])
    window = (1, 1)
    proposed_window = found.get(AsynchronousOperationsWindow)
    if proposed_window is not None and policy.async_window is not None:
        window = (
            _narrow(policy.async_window[0], proposed_window.maximum_number_operations_invoked),
            _narrow(policy.async_window[1], proposed_window.maximum_number_operations_performed),
        )
        subs.append(AsynchronousOperationsWindow(*window))
    for sop, role_item in role_items.items():
        allow = _allowed_roles(sop, _general_for(sop, common, supported), policy_roles)
        subs.append(RoleSelection(sop, *select_role(role_item.scu_role, role_item.scp_role, *allow)))
    subs += own[2:]
    extended: dict[str, bytes] = {}
    for ext in found[SOPClassExtendedNegotiation]:  # type: ignore[attr-defined]
        if ext.sop_class_uid in policy.extended_negotiation and ext.sop_class_uid not in extended:
            # Never longer than offered (PS3.4 C.5, K.5: a short answer means the rest are 0).
            proposal = ext.service_class_application_information
            ours = bytes(policy.extended_negotiation[ext.sop_class_uid])[: len(proposal)]
            if ext.sop_class_uid in policy.extended_agreed:
                ours = bytes(1 if mine == 1 and theirs == 1 else 0 for mine, theirs in zip(ours, proposal))
            extended[ext.sop_class_uid] = ours
            subs.append(SOPClassExtendedNegotiation(ext.sop_class_uid, extended[ext.sop_class_uid]))
    if identity_reply is not None:
        subs.append(identity_reply)

    # Positional, in field order: (called, calling, contexts, user information, application context,
    # protocol version, reserved) of the AC, and Negotiated's fields as declared.
    reply = AAssociateAC(
        rq.called_ae_title,
        rq.calling_ae_title,
        tuple(answers),
        UserInformation(tuple(subs)),
        C.APPLICATION_CONTEXT_NAME,
        C.PROTOCOL_VERSION,
        rq.reserved,
    )
    peer_max, peer_uid, peer_name = _peer_announcements(found)
    return Negotiated(
        reply, accepted, agreed_roles, peer_max, user, results, window, extended, related, peer_uid, peer_name
    )


def _general_for(abstract: str, common: dict, supported: Mapping[str, tuple[str, ...]]) -> str | None:
    """The related general SOP class a 57H item offers for an unsupported ``abstract`` (PS3.7 D.3.3.6)."""
    item = common.get(abstract)
    if item is None or abstract in supported:
        return None
    return next((g for g in item.related_general_sop_class_uids if g in supported), None)


def _allowed_roles(abstract: str, general: str | None, roles: Mapping[str, tuple[bool, bool]]) -> tuple[bool, bool]:
    """(requestor may be SCU, requestor may be SCP) for ``abstract``, else its general class, else the default."""
    if abstract in roles:
        return tuple(roles[abstract])  # type: ignore[return-value]
    if general is not None and general in roles:
        return tuple(roles[general])  # type: ignore[return-value]
    return DEFAULT_ROLES
