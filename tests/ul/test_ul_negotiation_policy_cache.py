"""What negotiate() derives from a policy once (AE title sets, the AC's own sub-items) follows every policy.

The derived values are cached by the policy's own (immutable) field values,
so a policy made with other values must be answered by those values even
right after the first one was used; and the policy itself cannot change.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.negotiation import AcceptorPolicy, _announced, negotiate
from dicomconf.ul.pdu import AAssociateAC, AAssociateRJ, AAssociateRQ

VERIFICATION = C.VERIFICATION_SOP_CLASS
SUPPORTED = {VERIFICATION: (C.IMPLICIT_VR_LITTLE_ENDIAN,)}


def rq(called: str = "ONE", calling: str = "SCU", subs=None) -> AAssociateRQ:
    ui = UserInformation(tuple(subs) if subs is not None else (MaximumLength(16384), ImplementationClassUID("1.2.3")))
    pcs = (PresentationContextRQ(1, VERIFICATION, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),)
    return AAssociateRQ(called, calling, pcs, ui)


def rj_reason(result) -> int | None:
    return result.reply.reason if isinstance(result.reply, AAssociateRJ) else None


def test_called_ae_titles_of_a_new_policy_are_seen_after_the_first_was_used():
    first = AcceptorPolicy(ae_titles=("ONE",), supported=SUPPORTED)
    second = dataclasses.replace(first, ae_titles=("TWO",))
    for _ in range(2):
        assert negotiate(rq("ONE"), first).is_accepted
        assert rj_reason(negotiate(rq("ONE"), second)) == C.RJ_USER_CALLED_AE_NOT_RECOGNIZED
        assert negotiate(rq("TWO "), second).is_accepted  # trailing space ignored (PS3.8 9.3.2)
        assert rj_reason(negotiate(rq("TWO"), first)) == C.RJ_USER_CALLED_AE_NOT_RECOGNIZED


def test_allowed_calling_aes_of_a_new_policy_are_seen_and_a_list_is_accepted():
    first = AcceptorPolicy(ae_titles=("ONE",), allowed_calling_aes=("ALPHA",), supported=SUPPORTED)
    second = dataclasses.replace(first, allowed_calling_aes=["BETA"])  # a list, not a tuple: still answered
    assert negotiate(rq(calling="ALPHA"), first).is_accepted
    assert rj_reason(negotiate(rq(calling="ALPHA"), second)) == C.RJ_USER_CALLING_AE_NOT_RECOGNIZED
    assert negotiate(rq(calling=" BETA"), second).is_accepted
    assert rj_reason(negotiate(rq(calling="BETA"), first)) == C.RJ_USER_CALLING_AE_NOT_RECOGNIZED


@pytest.mark.parametrize("version", ["VERSION_A", ""])
def test_the_ac_sub_items_follow_each_policy(version):
    first = AcceptorPolicy(ae_titles=("ONE",), supported=SUPPORTED, max_pdu_length=4096)
    second = dataclasses.replace(
        first, max_pdu_length=65536, implementation_class_uid="1.2.3.999", implementation_version_name=version
    )
    for policy in (first, second, first, second):
        reply = negotiate(rq(), policy).reply
        assert isinstance(reply, AAssociateAC)
        ui = reply.user_information
        assert ui.maximum_length == policy.max_pdu_length
        assert ui.implementation_class_uid == policy.implementation_class_uid
        assert ui.implementation_version_name == (policy.implementation_version_name or None)


def test_the_policy_cannot_be_changed_in_place():
    policy = AcceptorPolicy(ae_titles=("ONE",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.ae_titles = ("TWO",)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_pdu_length = 1  # type: ignore[misc]


SUB_ITEMS = st.sampled_from(
    [
        MaximumLength(0),
        MaximumLength(16384),
        ImplementationClassUID("1.2.3"),
        ImplementationClassUID("1.2.4"),
        ImplementationVersionName("V1"),
        ImplementationVersionName("V2"),
        AsynchronousOperationsWindow(2, 3),
        AsynchronousOperationsWindow(0, 1),
        RoleSelection(VERIFICATION, 1, 0),
        RoleSelection("1.2.840.10008.5.1.4.1.1.2", 0, 1),
        SOPClassExtendedNegotiation(VERIFICATION, b"\x01"),
        SOPClassCommonExtendedNegotiation("1.2.3.4", "1.2.840.10008.4.2", ()),
        UserIdentityRQ(C.USER_IDENTITY_USERNAME, b"me"),
        UserIdentityRQ(C.USER_IDENTITY_USERNAME_PASSCODE, b"you", b"pw", positive_response_requested=1),
    ]
)


@given(st.lists(SUB_ITEMS, max_size=10))
def test_one_pass_over_the_sub_items_agrees_with_the_user_information_properties(subs):
    ui = UserInformation(tuple(subs))
    found = _announced(ui)
    assert found.get(MaximumLength) is ui._first(MaximumLength)
    assert found.get(ImplementationClassUID) is ui._first(ImplementationClassUID)
    assert found.get(ImplementationVersionName) is ui._first(ImplementationVersionName)
    assert found.get(AsynchronousOperationsWindow) is ui.asynchronous_operations_window
    assert found.get(UserIdentityRQ) is ui.user_identity
    assert found[RoleSelection] == ui.role_selections
    assert found[SOPClassExtendedNegotiation] == ui.extended_negotiations
    assert found[SOPClassCommonExtendedNegotiation] == ui.common_extended_negotiations
    result = negotiate(rq(subs=subs), AcceptorPolicy(ae_titles=("ONE",), supported=SUPPORTED))
    assert result.peer_max_pdu_length == (ui.maximum_length or 0)
    assert result.peer_implementation_class_uid == ui.implementation_class_uid
    assert result.peer_implementation_version_name == ui.implementation_version_name
