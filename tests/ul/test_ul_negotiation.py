"""Acceptor negotiation tables (PS3.8 9.3.3-9.3.4, PS3.7 D.3): every rule, both outcomes."""

from __future__ import annotations

import dataclasses

import pytest
from pydicom import uid as U

from dicomconf.ul import constants as C
from dicomconf.ul.items import (
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.negotiation import (
    DEFAULT_ROLES,
    AcceptorPolicy,
    check_reply,
    default_supported,
    negotiate,
    select_role,
)
from dicomconf.ul.pdu import AAssociateAC, AAssociateRJ, AAssociateRQ, decode_pdu

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
PROCEDURE_LOG = "1.2.840.10008.5.1.4.1.1.88.40"
PRIVATE_SR = "1.2.826.0.1.3680043.10.543.88.1"  # a specialised SR class no registry knows
STORAGE_SERVICE = "1.2.840.10008.4.2"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
FIND = "1.2.840.10008.5.1.4.1.2.1.1"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
IMPL = U.ImplicitVRLittleEndian
EXPL = U.ExplicitVRLittleEndian
BIG = U.ExplicitVRBigEndian


def rq(*contexts: PresentationContextRQ, subs: tuple = (), **fields) -> AAssociateRQ:
    """An A-ASSOCIATE-RQ to DICOMCONF from SCU with the given contexts (Verification by default)."""
    contexts = contexts or (PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (IMPL,)),)
    base = dict(
        called_ae_title="DICOMCONF",
        calling_ae_title="SCU",
        presentation_contexts=contexts,
        user_information=UserInformation((MaximumLength(32768), ImplementationClassUID("1.2.3.4")) + tuple(subs)),
    )
    base.update(fields)
    return AAssociateRQ(**base)


def pc(cid: int, abstract: str = C.VERIFICATION_SOP_CLASS, *syntaxes: str) -> PresentationContextRQ:
    return PresentationContextRQ(cid, abstract, syntaxes or (IMPL,))


def rj(result) -> tuple[int, int, int] | None:
    reply = result.reply
    return (reply.result, reply.source, reply.reason) if isinstance(reply, AAssociateRJ) else None


def legal(request: AAssociateRQ, result) -> None:
    """The reply keeps every rule check_reply knows and survives the codec."""
    assert check_reply(request, result.reply) == []
    raw = result.reply.encode()
    assert decode_pdu(raw).encode() == raw


# --------------------------------------------------------------------------
# default_supported


def test_default_supported_has_verification_and_storage_with_all_syntaxes():
    sup = default_supported()
    assert sup[C.VERIFICATION_SOP_CLASS] == (IMPL, EXPL)
    for sop in (CT, MR, ENHANCED_SR, "1.2.840.10008.5.1.4.1.1.1.1"):  # DX for presentation too
        assert set(sup[sop]) == {
            IMPL, EXPL, BIG, U.DeflatedExplicitVRLittleEndian, U.JPEGBaseline8Bit, U.JPEGExtended12Bit,
            U.JPEGLosslessSV1, U.JPEGLSLossless, U.JPEGLSNearLossless, U.JPEG2000Lossless, U.JPEG2000,
            U.RLELossless,
        }
    assert STORAGE_COMMITMENT not in sup and FIND not in sup and "1.2.840.10008.1.3.10" not in sup
    assert len(sup) > 150


def test_default_supported_is_a_fresh_dict_each_call():
    first = default_supported()
    first.clear()
    assert CT in default_supported() and CT in AcceptorPolicy().supported


# --------------------------------------------------------------------------
# select_role: every (proposed SCU, proposed SCP) x (allow SCU, allow SCP), PS3.7 D.3.3.4

ROLE_TABLE = [
    # proposed  allowed         reply
    ((0, 0), (False, False), (0, 0)),
    ((0, 0), (False, True), (0, 0)),
    ((0, 0), (True, False), (0, 0)),
    ((0, 0), (True, True), (0, 0)),
    ((0, 1), (False, False), (0, 0)),
    ((0, 1), (False, True), (0, 1)),
    ((0, 1), (True, False), (0, 0)),
    ((0, 1), (True, True), (0, 1)),
    ((1, 0), (False, False), (0, 0)),
    ((1, 0), (False, True), (0, 0)),
    ((1, 0), (True, False), (1, 0)),
    ((1, 0), (True, True), (1, 0)),
    ((1, 1), (False, False), (0, 0)),
    ((1, 1), (False, True), (0, 1)),
    ((1, 1), (True, False), (1, 0)),
    ((1, 1), (True, True), (1, 1)),
]


@pytest.mark.parametrize("proposed, allowed, expected", ROLE_TABLE)
def test_select_role_table(proposed, allowed, expected):
    assert select_role(*proposed, *allowed) == expected


@pytest.mark.parametrize("proposed", [(2, 1), (1, 255)])
def test_select_role_never_grants_a_value_other_than_1(proposed):
    scu, scp = select_role(*proposed, True, True)
    assert (scu, scp) == tuple(1 if v == 1 else 0 for v in proposed)


@pytest.mark.parametrize("proposed, allowed, expected", ROLE_TABLE)
def test_negotiate_role_table(proposed, allowed, expected):
    request = rq(pc(1, GET, IMPL), subs=(RoleSelection(GET, *proposed),))
    policy = AcceptorPolicy(supported={GET: (IMPL,)}, roles={GET: allowed})
    result = negotiate(request, policy)
    role_items = result.reply.user_information.role_selections
    assert role_items == (RoleSelection(GET, *expected),)
    if expected == (0, 0):
        assert result.results[1] == C.PC_USER_REJECTION and result.accepted == {} and GET not in result.roles
    else:
        assert result.accepted == {1: (GET, IMPL)}
        assert result.roles[GET] == (bool(expected[0]), bool(expected[1]))
    legal(request, result)


@pytest.mark.parametrize(
    "allowed, accepted",
    [((True, False), True), ((True, True), True), ((False, True), False), ((False, False), False)],
)
def test_no_role_item_means_default_roles_and_no_reply_item(allowed, accepted):
    request = rq(pc(1, GET, IMPL))
    result = negotiate(request, AcceptorPolicy(supported={GET: (IMPL,)}, roles={GET: allowed}))
    assert result.reply.user_information.role_selections == ()
    if accepted:
        assert result.roles == {GET: DEFAULT_ROLES} and 1 in result.accepted
    else:
        assert result.results == {1: C.PC_USER_REJECTION}
    legal(request, result)


def test_role_reply_only_for_sop_classes_with_an_item_and_once_each():
    request = rq(
        pc(1, GET, IMPL), pc(3, CT, IMPL),
        subs=(RoleSelection(GET, 1, 1), RoleSelection(GET, 0, 0), RoleSelection(MR, 0, 1)),
    )
    policy = AcceptorPolicy(roles={GET: (True, True)}, supported={GET: (IMPL,), CT: (IMPL,)})
    result = negotiate(request, policy)
    # the first item per SOP class counts; MR was never proposed as a context but sent an item: answered
    assert result.reply.user_information.role_selections == (RoleSelection(GET, 1, 1), RoleSelection(MR, 0, 0))
    assert result.roles == {GET: (True, True), CT: DEFAULT_ROLES}
    legal(request, result)


# --------------------------------------------------------------------------
# association-level rejections (Table 9-21), both outcomes


REJECTIONS = [
    # id, rq fields, policy fields, active, expected (result, source, reason) or None
    ("called-unknown", {"called_ae_title": "OTHER"}, {}, 0, (1, 1, 7)),
    ("called-padded", {"called_ae_title": "  DICOMCONF"}, {}, 0, None),
    ("called-policy-padded", {"called_ae_title": "PACS"}, {"ae_titles": ("X", " PACS  ")}, 0, None),
    ("called-not-required", {"called_ae_title": "OTHER"}, {"require_called_ae": False}, 0, None),
    ("calling-unknown", {"calling_ae_title": "EVIL"}, {"allowed_calling_aes": ("SCU2",)}, 0, (1, 1, 3)),
    ("calling-allowed", {"calling_ae_title": " SCU"}, {"allowed_calling_aes": ("SCU ",)}, 0, None),
    ("calling-any", {"calling_ae_title": "ANYONE"}, {"allowed_calling_aes": None}, 0, None),
    ("version-2", {"protocol_version": 0x0002}, {}, 0, (1, 2, 2)),
    ("version-0", {"protocol_version": 0x0000}, {}, 0, (1, 2, 2)),
    ("version-3", {"protocol_version": 0x0003}, {}, 0, None),
    ("version-8001", {"protocol_version": 0x8001}, {}, 0, None),
    ("app-context-other", {"application_context_name": "1.2.840.10008.3.1.1.2"}, {}, 0, (1, 1, 2)),
    ("limit-reached", {}, {"max_associations": 2}, 2, (2, 3, 2)),
    ("limit-exceeded", {}, {"max_associations": 0}, 5, (2, 3, 2)),
    ("limit-below", {}, {"max_associations": 2}, 1, None),
    ("limit-none", {}, {"max_associations": None}, 10_000, None),
    ("context-id-even", {"presentation_contexts": (pc(2),)}, {}, 0, (1, 2, 1)),
    ("context-id-zero", {"presentation_contexts": (pc(1), pc(0))}, {}, 0, (1, 2, 1)),
    ("context-id-twice", {"presentation_contexts": (pc(1), pc(3, CT), pc(1))}, {}, 0, (1, 2, 1)),
    ("context-ids-128", {"presentation_contexts": tuple(pc(i) for i in range(1, 256, 2))}, {}, 0, None),
    ("contexts-129", {"presentation_contexts": tuple(pc(i % 256 | 1) for i in range(1, 259, 2))}, {}, 0, (1, 2, 1)),
    ("context-id-255", {"presentation_contexts": (pc(255),)}, {}, 0, None),
]


@pytest.mark.parametrize(
    "fields, policy_fields, active, expected", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_association_rejections(fields, policy_fields, active, expected):
    request = rq(**fields)
    result = negotiate(request, AcceptorPolicy(**policy_fields), active_associations=active)
    assert rj(result) == expected
    if expected is not None:
        assert result.accepted == {} and result.roles == {} and result.user is None and not result.is_accepted
        assert result.peer_max_pdu_length == 32768  # the peer's announcements are still reported
    else:
        assert result.is_accepted and len(result.results) == len(request.presentation_contexts)
    legal(request, result)


ORDER = [
    # several checks fail at once: the first in the documented order wins
    ({"protocol_version": 2, "presentation_contexts": (pc(2),)}, {"max_associations": 0}, (1, 2, 2)),
    ({"presentation_contexts": (pc(2),), "called_ae_title": "X"}, {"max_associations": 0}, (1, 2, 1)),
    ({"application_context_name": "1.2.3", "called_ae_title": "X"}, {"max_associations": 0}, (2, 3, 2)),
    ({"application_context_name": "1.2.3", "called_ae_title": "X"}, {}, (1, 1, 2)),
    ({"called_ae_title": "X", "calling_ae_title": "Y"}, {"allowed_calling_aes": ("Z",)}, (1, 1, 7)),
    (
        {"calling_ae_title": "Y", "subs": (UserIdentityRQ(1, b"nobody"),)},
        {"allowed_calling_aes": ("Z",), "users": {"alice": None}},
        (1, 1, 3),
    ),
]


@pytest.mark.parametrize("fields, policy_fields, expected", ORDER)
def test_rejection_order(fields, policy_fields, expected):
    assert rj(negotiate(rq(**fields), AcceptorPolicy(**policy_fields), active_associations=1)) == expected


# --------------------------------------------------------------------------
# presentation contexts (PS3.8 9.3.3.2, PS3.7 D.3.2)


def test_every_context_answered_in_rq_order_with_its_result():
    request = rq(
        pc(7, CT, BIG, EXPL),                     # accepted, proposer's first supported
        pc(3, "1.2.3.4.5.6", IMPL),               # abstract syntax not supported
        pc(5, MR, "1.2.840.10008.1.2.4.999"),     # no transfer syntax supported
        pc(1, CT, IMPL),                          # same abstract syntax again: its own answer
    )
    policy = AcceptorPolicy(supported={CT: (EXPL, IMPL, BIG), MR: (IMPL,)})
    result = negotiate(request, policy)
    answers = result.reply.presentation_contexts
    assert [a.context_id for a in answers] == [7, 3, 5, 1]
    assert [a.result for a in answers] == [0, 3, 4, 0]
    assert result.accepted == {7: (CT, BIG), 1: (CT, IMPL)}
    assert result.results == {7: 0, 3: 3, 5: 4, 1: 0}
    # a rejected context keeps a transfer syntax sub-item (not significant, Table 9-18)
    assert answers[1].transfer_syntax == IMPL and answers[2].transfer_syntax == "1.2.840.10008.1.2.4.999"
    legal(request, result)


@pytest.mark.parametrize("own_order, expected", [(False, BIG), (True, EXPL)])
def test_transfer_syntax_preference(own_order, expected):
    request = rq(pc(1, CT, BIG, IMPL, EXPL))
    policy = AcceptorPolicy(supported={CT: (EXPL, BIG)}, prefer_own_transfer_syntax_order=own_order)
    result = negotiate(request, policy)
    assert result.accepted == {1: (CT, expected)}
    legal(request, result)


def test_nothing_supported_is_still_an_ac_with_every_context_rejected():
    request = rq(pc(1, CT), pc(3, MR))
    result = negotiate(request, AcceptorPolicy(supported={}))
    assert result.is_accepted and result.accepted == {} and result.results == {1: 3, 3: 3}
    legal(request, result)


# --------------------------------------------------------------------------
# user information: maximum length, implementation, asynchronous window


def test_ac_echoes_and_announces_what_it_should():
    reserved = bytes(range(32))
    request = rq(reserved=reserved, called_ae_title="DICOMCONF ", protocol_version=3)
    result = negotiate(request, AcceptorPolicy(max_pdu_length=0))
    ac = result.reply
    assert isinstance(ac, AAssociateAC)
    assert ac.reserved == reserved and ac.called_ae_title == "DICOMCONF " and ac.calling_ae_title == "SCU"
    assert ac.protocol_version == C.PROTOCOL_VERSION
    ui = ac.user_information
    assert ui.maximum_length == 0
    assert ui.implementation_class_uid == C.IMPLEMENTATION_CLASS_UID
    assert ui.implementation_version_name == C.IMPLEMENTATION_VERSION_NAME
    assert result.peer_max_pdu_length == 32768 and result.peer_implementation_class_uid == "1.2.3.4"
    legal(request, result)


def test_implementation_identity_from_policy_and_version_name_optional():
    policy = AcceptorPolicy(implementation_class_uid="1.2.826.0.1.99", implementation_version_name="")
    ui = negotiate(rq(), policy).reply.user_information
    assert ui.implementation_class_uid == "1.2.826.0.1.99" and ui.implementation_version_name is None


def test_peer_max_length_absent_is_zero():
    request = rq(user_information=UserInformation((ImplementationClassUID("1.2"), ImplementationVersionName("X"))))
    result = negotiate(request, AcceptorPolicy())
    assert result.peer_max_pdu_length == 0 and result.peer_implementation_version_name == "X"


ASYNC = [
    # proposed window, policy window, answered (None = no sub-item), agreed
    (None, (5, 5), None, (1, 1)),
    ((3, 3), None, None, (1, 1)),
    ((3, 0), (5, 5), (3, 5), (3, 5)),
    ((0, 0), (5, 2), (5, 2), (5, 2)),
    ((4, 4), (0, 0), (4, 4), (4, 4)),
    ((0, 0), (0, 0), (0, 0), (0, 0)),
    ((1, 1), (8, 8), (1, 1), (1, 1)),
]


@pytest.mark.parametrize("proposed, ours, answered, agreed", ASYNC)
def test_asynchronous_operations_window(proposed, ours, answered, agreed):
    subs = () if proposed is None else (AsynchronousOperationsWindow(*proposed),)
    request = rq(subs=subs)
    result = negotiate(request, AcceptorPolicy(async_window=ours))
    window = result.reply.user_information.asynchronous_operations_window
    assert (None if window is None else (window.maximum_number_operations_invoked,
                                        window.maximum_number_operations_performed)) == answered
    assert result.async_window == agreed
    legal(request, result)


# --------------------------------------------------------------------------
# user identity (PS3.7 D.3.3.7)

USERS = {"alice": "secret", "bob": None}

IDENTITY = [
    # id, sub-item, users, require, expected RJ, user, 59H answered
    ("none-not-required", None, USERS, False, None, None, False),
    ("none-required", None, USERS, True, (1, 2, 1), None, False),
    ("none-required-unchecked", None, None, True, (1, 2, 1), None, False),
    ("type1-known-no-passcode", UserIdentityRQ(1, b"bob", b"", 1), USERS, False, None, "bob", True),
    ("type1-no-response-asked", UserIdentityRQ(1, b"bob"), USERS, True, None, "bob", False),
    ("type1-needs-passcode", UserIdentityRQ(1, b"alice", b"", 1), USERS, False, (1, 2, 1), None, False),
    ("type1-unknown", UserIdentityRQ(1, b"mallory", b"", 1), USERS, False, (1, 2, 1), None, False),
    ("type2-right", UserIdentityRQ(2, b"alice", b"secret", 1), USERS, False, None, "alice", True),
    ("type2-wrong", UserIdentityRQ(2, b"alice", b"guess", 1), USERS, False, (1, 2, 1), None, False),
    ("type2-username-suffices", UserIdentityRQ(2, b"bob", b"anything"), USERS, False, None, "bob", False),
    ("type2-bad-utf8", UserIdentityRQ(2, b"\xff\xfe", b"secret", 1), USERS, False, (1, 2, 1), None, False),
    ("type3-checked", UserIdentityRQ(3, b"ticket", b"", 1), USERS, False, (1, 2, 1), None, False),
    ("type4-checked", UserIdentityRQ(4, b"<saml/>", b"", 1), USERS, False, (1, 2, 1), None, False),
    ("type5-checked", UserIdentityRQ(5, b"jwt", b"", 0), USERS, False, (1, 2, 1), None, False),
    ("type9-checked", UserIdentityRQ(9, b"x", b"", 0), USERS, False, (1, 2, 1), None, False),
    ("type1-unchecked", UserIdentityRQ(1, b"anyone", b"", 1), None, False, None, "anyone", True),
    ("type2-unchecked", UserIdentityRQ(2, b"anyone", b"x", 0), None, True, None, "anyone", False),
    ("type3-unchecked", UserIdentityRQ(3, b"ticket", b"", 1), None, False, None, None, False),
    ("type5-unchecked", UserIdentityRQ(5, b"jwt", b"", 1), None, True, None, None, False),
]


@pytest.mark.parametrize(
    "item, users, require, expected, user, answered", [r[1:] for r in IDENTITY], ids=[r[0] for r in IDENTITY]
)
def test_user_identity(item, users, require, expected, user, answered):
    request = rq(subs=() if item is None else (item,))
    result = negotiate(request, AcceptorPolicy(users=users, require_user_identity=require))
    assert rj(result) == expected
    assert result.user == user
    response = None if expected else result.reply.user_information.user_identity_response
    assert (response == UserIdentityAC(b"")) if answered else response is None
    legal(request, result)


# --------------------------------------------------------------------------
# SOP class extended negotiation (PS3.7 D.3.3.5) and common extended negotiation (D.3.3.6)


def test_extended_negotiation_answered_only_when_proposed_and_configured():
    request = rq(
        pc(1, FIND), pc(3, CT),
        subs=(SOPClassExtendedNegotiation(FIND, b"\x01\x01\x01"), SOPClassExtendedNegotiation(MR, b"\x01")),
    )
    policy = AcceptorPolicy(
        supported={FIND: (IMPL,), CT: (IMPL,)},
        extended_negotiation={FIND: b"\x01\x00\x01\x01", CT: b"\x02"},
    )
    result = negotiate(request, policy)
    # FIND: configured and proposed, cut to the 3 bytes offered; CT: configured, not proposed; MR: not configured
    assert result.reply.user_information.extended_negotiations == (SOPClassExtendedNegotiation(FIND, b"\x01\x00\x01"),)
    assert result.extended_negotiation == {FIND: b"\x01\x00\x01"}
    legal(request, result)


def test_agreed_extended_negotiation_accepts_each_sub_field_only_when_proposed():
    """PS3.4 C.5.1.1: the acceptor returns the same value (1) to accept a proposed sub-field, or 0."""
    request = rq(pc(1, FIND), subs=(SOPClassExtendedNegotiation(FIND, b"\x00\x01\x01"),))
    policy = AcceptorPolicy(supported={FIND: (IMPL,)}, extended_negotiation={FIND: b"\x01\x01\x00"},
                            extended_agreed=frozenset({FIND}))
    result = negotiate(request, policy)
    # relational: ours 1, not proposed -> 0; combined date-time: both -> 1; fuzzy: proposed, not ours -> 0
    assert result.extended_negotiation == {FIND: b"\x00\x01\x00"}
    legal(request, result)


def _common(sop: str, *related: str) -> SOPClassCommonExtendedNegotiation:
    return SOPClassCommonExtendedNegotiation(sop, STORAGE_SERVICE, related)


COMMON = [
    # id, supported, accept_common_extended, related general classes, expected result, via general
    ("general-supported", {ENHANCED_SR: (EXPL,)}, True, (ENHANCED_SR,), 0, ENHANCED_SR),
    ("second-related-supported", {ENHANCED_SR: (EXPL,)}, True, ("1.2.3.9", ENHANCED_SR), 0, ENHANCED_SR),
    ("switched-off", {ENHANCED_SR: (EXPL,)}, False, (ENHANCED_SR,), 3, None),
    ("general-unsupported", {CT: (EXPL,)}, True, (ENHANCED_SR,), 3, None),
    ("no-related", {ENHANCED_SR: (EXPL,)}, True, (), 3, None),
    ("general-syntax-missing", {ENHANCED_SR: (BIG,)}, True, (ENHANCED_SR,), 4, None),
    ("specialised-itself-supported", {PROCEDURE_LOG: (EXPL,), ENHANCED_SR: (EXPL,)}, True, (ENHANCED_SR,), 0, None),
]


@pytest.mark.parametrize(
    "supported, enabled, related, expected, via", [r[1:] for r in COMMON], ids=[r[0] for r in COMMON]
)
def test_common_extended_negotiation(supported, enabled, related, expected, via):
    request = rq(pc(1, PROCEDURE_LOG, IMPL, EXPL), subs=(_common(PROCEDURE_LOG, *related),))
    result = negotiate(request, AcceptorPolicy(supported=supported, accept_common_extended=enabled))
    assert result.results == {1: expected}
    assert result.related_general == ({} if via is None else {1: via})
    if expected == 0:
        assert result.accepted == {1: (PROCEDURE_LOG, EXPL)}
    assert result.reply.user_information.common_extended_negotiations == ()
    legal(request, result)


def test_common_extended_uses_the_general_class_roles():
    request = rq(
        pc(1, PROCEDURE_LOG, EXPL),
        subs=(_common(PROCEDURE_LOG, ENHANCED_SR), RoleSelection(PROCEDURE_LOG, 1, 1)),
    )
    policy = AcceptorPolicy(supported={ENHANCED_SR: (EXPL,)}, roles={ENHANCED_SR: (False, True)})
    result = negotiate(request, policy)
    assert result.roles == {PROCEDURE_LOG: (False, True)}
    assert result.reply.user_information.role_selections == (RoleSelection(PROCEDURE_LOG, 0, 1),)
    legal(request, result)


# --------------------------------------------------------------------------
# the whole reply


def test_policy_and_result_are_frozen():
    policy = AcceptorPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_pdu_length = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        negotiate(rq(), policy).user = "x"  # type: ignore[misc]


def test_everything_at_once_round_trips_and_is_legal():
    request = rq(
        pc(1), pc(3, CT, EXPL, IMPL), pc(5, GET, IMPL), pc(7, PRIVATE_SR, EXPL),
        subs=(
            AsynchronousOperationsWindow(0, 4),
            RoleSelection(GET, 0, 1),
            ImplementationVersionName("PEER_1"),
            SOPClassExtendedNegotiation(GET, b"\x01"),
            _common(PRIVATE_SR, ENHANCED_SR),
            UserIdentityRQ(2, b"alice", b"secret", 1),
        ),
    )
    policy = AcceptorPolicy(
        roles={GET: (True, True)},
        supported={**default_supported(), GET: (IMPL,)},
        async_window=(2, 2),
        users=USERS,
        extended_negotiation={GET: b"\x01"},
    )
    result = negotiate(request, policy)
    assert result.accepted == {
        1: (C.VERIFICATION_SOP_CLASS, IMPL), 3: (CT, EXPL), 5: (GET, IMPL), 7: (PRIVATE_SR, EXPL),
    }
    assert result.roles[GET] == (False, True) and result.user == "alice" and result.async_window == (2, 2)
    assert result.related_general == {7: ENHANCED_SR} and result.extended_negotiation == {GET: b"\x01"}
    assert result.peer_implementation_version_name == "PEER_1"
    legal(request, result)
