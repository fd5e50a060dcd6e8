"""check_reply tables: each faulty reply gives its problem code; legal replies give none (PS3.8 9.3.3-9.3.4, PS3.7 D.3.3)."""

from __future__ import annotations

import dataclasses
import socket

import pytest
from pydicom import uid as U

from dicomconf.ul import constants as C
from dicomconf.ul.framing import PDUReader
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
    UnknownSubItem,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.negotiation import AcceptorPolicy, negotiate
from dicomconf.ul.negotiation_check import PROBLEMS, Problem, check_reply
from dicomconf.ul.pdu import AAbort, AAssociateAC, AAssociateRJ, AAssociateRQ, AReleaseRQ, decode_pdu

CT = "1.2.840.10008.5.1.4.1.1.2"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
IMPL = U.ImplicitVRLittleEndian
EXPL = U.ExplicitVRLittleEndian
BIG = U.ExplicitVRBigEndian


def make_rq(*subs, contexts=None, **fields) -> AAssociateRQ:
    contexts = contexts or (
        PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (IMPL,)),
        PresentationContextRQ(3, CT, (EXPL, IMPL)),
        PresentationContextRQ(5, GET, (IMPL,)),
    )
    ui = UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.3")) + subs)
    return AAssociateRQ("ACCEPTOR", "REQUESTOR", contexts, ui, **fields)


RQ = make_rq(
    AsynchronousOperationsWindow(2, 2),
    RoleSelection(GET, 1, 1),
    SOPClassExtendedNegotiation(GET, b"\x01"),
    UserIdentityRQ(2, b"alice", b"pw", 1),
)
POLICY = AcceptorPolicy(
    ae_titles=("ACCEPTOR",),
    supported={C.VERIFICATION_SOP_CLASS: (IMPL,), CT: (EXPL,), GET: (IMPL,)},
    roles={GET: (True, True)},
    async_window=(2, 1),
    users={"alice": "pw"},
    extended_negotiation={GET: b"\x01"},
)
AC: AAssociateAC = negotiate(RQ, POLICY).reply  # type: ignore[assignment]


def with_contexts(*contexts) -> AAssociateAC:
    return dataclasses.replace(AC, presentation_contexts=tuple(contexts))


def with_subs(*subs, keep: bool = True, drop: tuple[type, ...] = ()) -> AAssociateAC:
    kept = tuple(s for s in AC.user_information.sub_items if keep and not isinstance(s, drop))
    return dataclasses.replace(AC, user_information=UserInformation(kept + subs))


ACCEPTED = AC.presentation_contexts

FAULTY = [
    # id, request, reply, expected codes (exactly)
    ("context-missing", RQ, with_contexts(*ACCEPTED[:2]), {"ac.context.missing"}),
    ("context-not-proposed", RQ, with_contexts(*ACCEPTED, PresentationContextAC(9, 0, IMPL)), {"ac.context.not-proposed"}),
    ("context-twice", RQ, with_contexts(*ACCEPTED, PresentationContextAC(1, 0, IMPL)), {"ac.context.duplicate"}),
    (
        "context-even",
        RQ,
        with_contexts(PresentationContextAC(2, 0, IMPL), *ACCEPTED[1:]),
        {"ac.context.id-not-odd", "ac.context.not-proposed", "ac.context.missing"},
    ),
    ("result-5", RQ, with_contexts(PresentationContextAC(1, 5, IMPL), *ACCEPTED[1:]), {"ac.context.result-undefined"}),
    ("accepted-no-ts", RQ, with_contexts(PresentationContextAC(1, 0, None), *ACCEPTED[1:]), {"ac.context.no-transfer-syntax"}),
    (
        "ts-not-proposed",
        RQ,
        with_contexts(ACCEPTED[0], PresentationContextAC(3, 0, BIG), ACCEPTED[2]),
        {"ac.context.transfer-syntax-not-proposed"},
    ),
    ("version-bit0-clear", RQ, dataclasses.replace(AC, protocol_version=2), {"ac.protocol-version"}),
    ("app-context", RQ, dataclasses.replace(AC, application_context_name="1.2.3"), {"ac.application-context"}),
    ("called-echo", RQ, dataclasses.replace(AC, called_ae_title="SOMEONE"), {"ac.called-ae-echo"}),
    ("calling-echo", RQ, dataclasses.replace(AC, calling_ae_title="SOMEONE"), {"ac.calling-ae-echo"}),
    ("reserved-echo", RQ, dataclasses.replace(AC, reserved=b"\x01" * 32), {"ac.reserved-echo"}),
    ("max-length-missing", RQ, with_subs(drop=(MaximumLength,)), {"ac.max-length.missing"}),
    ("max-length-twice", RQ, with_subs(MaximumLength(1000)), {"ac.max-length.duplicate"}),
    ("impl-uid-missing", RQ, with_subs(drop=(ImplementationClassUID,)), {"ac.implementation-class-uid.missing"}),
    (
        "impl-uid-invalid",
        RQ,
        with_subs(ImplementationClassUID("1.2.03.4 "), drop=(ImplementationClassUID,)),
        {"ac.implementation-class-uid.invalid"},
    ),
    ("impl-uid-twice", RQ, with_subs(ImplementationClassUID("1.2.3")), {"ac.implementation-class-uid.duplicate"}),
    (
        "version-name-twice",
        RQ,
        with_subs(ImplementationVersionName("OTHER")),
        {"ac.implementation-version-name.duplicate"},
    ),
    ("async-twice", RQ, with_subs(AsynchronousOperationsWindow(1, 1)), {"ac.async-window.duplicate"}),
    (
        "version-name-17",
        RQ,
        with_subs(ImplementationVersionName("X" * 17), drop=(ImplementationVersionName,)),
        {"ac.implementation-version-name.length"},
    ),
    (
        "async-not-proposed",
        make_rq(RoleSelection(GET, 1, 1), SOPClassExtendedNegotiation(GET, b"\x01"), UserIdentityRQ(2, b"alice", b"pw", 1)),
        AC,
        {"ac.async-window.not-proposed"},
    ),
    (
        "async-exceeds",
        RQ,
        with_subs(AsynchronousOperationsWindow(3, 0), drop=(AsynchronousOperationsWindow,)),
        {"ac.async-window.exceeds-proposal"},
    ),
    ("role-not-proposed", RQ, with_subs(RoleSelection(CT, 1, 0)), {"ac.role.not-proposed"}),
    (
        "role-granted-unproposed",
        make_rq(AsynchronousOperationsWindow(2, 2), RoleSelection(GET, 0, 1), SOPClassExtendedNegotiation(GET, b"\x01"),
                UserIdentityRQ(2, b"alice", b"pw", 1)),
        AC,
        {"ac.role.granted-unproposed"},
    ),
    ("role-value-2", RQ, with_subs(RoleSelection(GET, 2, 1), drop=(RoleSelection,)), {"ac.role.value-undefined"}),
    ("role-twice", RQ, with_subs(RoleSelection(GET, 1, 0)), {"ac.role.duplicate"}),
    ("extended-not-proposed", RQ, with_subs(SOPClassExtendedNegotiation(CT, b"\x01")), {"ac.extended.not-proposed"}),
    ("extended-twice", RQ, with_subs(SOPClassExtendedNegotiation(GET, b"\x00")), {"ac.extended.duplicate"}),
    (
        "common-extended-in-ac",
        RQ,
        with_subs(SOPClassCommonExtendedNegotiation(CT, "1.2.840.10008.4.2")),
        {"ac.common-extended.present"},
    ),
    (
        "identity-not-requested",
        make_rq(AsynchronousOperationsWindow(2, 2), RoleSelection(GET, 1, 1), SOPClassExtendedNegotiation(GET, b"\x01")),
        AC,
        {"ac.user-identity.not-requested"},
    ),
    (
        "identity-response-not-requested",
        make_rq(AsynchronousOperationsWindow(2, 2), RoleSelection(GET, 1, 1), SOPClassExtendedNegotiation(GET, b"\x01"),
                UserIdentityRQ(2, b"alice", b"pw", 0)),
        AC,
        {"ac.user-identity.response-not-requested"},
    ),
    (
        "identity-response-not-empty",
        RQ,
        with_subs(UserIdentityAC(b"ticket"), drop=(UserIdentityAC,)),
        {"ac.user-identity.response-not-empty"},
    ),
    ("identity-twice", RQ, with_subs(UserIdentityAC(b"")), {"ac.user-identity.duplicate"}),
    ("identity-rq-form", RQ, with_subs(UserIdentityRQ(1, b"alice")), {"ac.user-identity.rq-form"}),
    ("rj-result-3", RQ, AAssociateRJ(3, 1, 1), {"rj.result-undefined"}),
    ("rj-result-0", RQ, AAssociateRJ(0, 1, 1), {"rj.result-undefined"}),
    ("rj-source-4", RQ, AAssociateRJ(1, 4, 1), {"rj.source-undefined"}),
    ("rj-source-0", RQ, AAssociateRJ(2, 0, 1), {"rj.source-undefined"}),
    ("rj-user-reason-4", RQ, AAssociateRJ(1, 1, 4), {"rj.reason-undefined"}),
    ("rj-user-reason-0", RQ, AAssociateRJ(1, 1, 0), {"rj.reason-undefined"}),
    ("rj-acse-reason-3", RQ, AAssociateRJ(1, 2, 3), {"rj.reason-undefined"}),
    ("rj-presentation-reason-0", RQ, AAssociateRJ(2, 3, 0), {"rj.reason-undefined"}),
    ("rj-presentation-reason-7", RQ, AAssociateRJ(2, 3, 7), {"rj.reason-undefined"}),
    ("rj-version-0003", make_rq(protocol_version=3), AAssociateRJ(1, 2, 2), {"rj.protocol-version-supported"}),
    ("rj-app-context", RQ, AAssociateRJ(1, 1, 2), {"rj.application-context-supported"}),
    (
        "rj-everything-wrong",
        RQ,
        AAssociateRJ(9, 9, 9),
        {"rj.result-undefined", "rj.source-undefined"},
    ),
]


def test_base_reply_is_legal():
    assert isinstance(AC, AAssociateAC) and check_reply(RQ, AC) == []
    assert AC.user_information.user_identity_response == UserIdentityAC(b"")
    assert AC.user_information.asynchronous_operations_window == AsynchronousOperationsWindow(2, 1)


@pytest.mark.parametrize("request_, reply, codes", [f[1:] for f in FAULTY], ids=[f[0] for f in FAULTY])
def test_faulty_reply_gives_its_problem(request_, reply, codes):
    problems = check_reply(request_, reply)
    assert {p.code for p in problems} == codes
    for p in problems:
        assert (p.clause, p.severity) == PROBLEMS[p.code]
        assert p.severity in ("must", "should") and p.clause.startswith("PS3.") and p.message


def test_every_problem_code_has_a_faulty_reply():
    assert set().union(*(f[3] for f in FAULTY)) == set(PROBLEMS)


def test_problems_survive_the_codec():
    """A faulty reply sent as bytes and decoded again still shows its problems."""
    for _id, request_, reply, codes in FAULTY:
        if isinstance(reply, AAssociateAC) and any(p.transfer_syntax is None for p in reply.presentation_contexts):
            continue  # the codec refuses an accepted context without a transfer syntax
        assert {p.code for p in check_reply(request_, decode_pdu(reply.encode()))} == codes, _id


# --------------------------------------------------------------------------
# legal replies


def _legal_by_hand() -> list[tuple[str, AAssociateRQ, AAssociateAC]]:
    rq2 = make_rq(RoleSelection(GET, 1, 1), AsynchronousOperationsWindow(0, 0))
    minimal_ui = UserInformation((MaximumLength(0), ImplementationClassUID("1.2.826.0.1.3680043.2.1143.107.104.103.115")))
    return [
        (
            "reverse-order-rejected-without-ts",
            RQ,
            dataclasses.replace(
                AC,
                presentation_contexts=(
                    PresentationContextAC(5, C.PC_USER_REJECTION, None),
                    PresentationContextAC(3, C.PC_TRANSFER_SYNTAXES_NOT_SUPPORTED, "9.9.9"),
                    PresentationContextAC(1, C.PC_ACCEPTANCE, IMPL),
                ),
            ),
        ),
        (
            "minimal-ac-padded-titles",
            rq2,
            AAssociateAC(
                "ACCEPTOR  ", " REQUESTOR",
                tuple(PresentationContextAC(i, C.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, IMPL) for i in (1, 3, 5)),
                minimal_ui,
                protocol_version=0x0003,
            ),
        ),
        (
            "roles-turned-down-unlimited-window-unknown-sub-item",
            rq2,
            dataclasses.replace(
                AC,
                user_information=UserInformation(
                    minimal_ui.sub_items
                    + (RoleSelection(GET, 0, 0), AsynchronousOperationsWindow(0, 7), UnknownSubItem(0x70, b"x"))
                ),
            ),
        ),
    ]


@pytest.mark.parametrize("request_, reply", [c[1:] for c in _legal_by_hand()], ids=[c[0] for c in _legal_by_hand()])
def test_legal_reply_by_hand_has_no_problem(request_, reply):
    assert check_reply(request_, reply) == []


@pytest.mark.parametrize("combo", sorted(C.RJ_REASON_NAMES))
def test_every_defined_rejection_is_legal_when_it_fits_the_request(combo):
    source, reason = combo
    request_ = make_rq(protocol_version=2, application_context_name="1.2.3")
    for result in C.RJ_RESULT_NAMES:
        assert check_reply(request_, AAssociateRJ(result, source, reason)) == []
    if combo not in ((2, 2), (1, 2)):
        assert check_reply(RQ, AAssociateRJ(1, source, reason)) == []


@pytest.mark.parametrize(
    "policy",
    [
        POLICY,
        AcceptorPolicy(ae_titles=("ACCEPTOR",)),
        AcceptorPolicy(ae_titles=("ACCEPTOR",), supported={}),
        AcceptorPolicy(ae_titles=("ACCEPTOR",), users={"bob": None}),
        AcceptorPolicy(ae_titles=("NOT-IT",)),
        AcceptorPolicy(ae_titles=("ACCEPTOR",), max_associations=0),
    ],
)
def test_negotiated_replies_have_no_problem(policy):
    for request_ in (RQ, make_rq(), make_rq(RoleSelection(CT, 0, 1), protocol_version=0xFFFF)):
        assert check_reply(request_, negotiate(request_, policy).reply) == []


def test_check_reply_refuses_what_is_not_an_answer():
    with pytest.raises(TypeError, match="AAssociateAC or AAssociateRJ"):
        check_reply(RQ, AReleaseRQ())  # type: ignore[arg-type]


def test_problem_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Problem("a", "b", "must", "m").code = "x"  # type: ignore[misc]


# --------------------------------------------------------------------------
# a real peer's answers: pynetdicom as the acceptor, on loopback


@pytest.mark.network
def test_pynetdicom_acceptor_answers_have_no_problem():
    pynetdicom = pytest.importorskip("pynetdicom")
    ae = pynetdicom.AE(ae_title="ACCEPTOR")
    ae.add_supported_context(C.VERIFICATION_SOP_CLASS, [IMPL])
    ae.add_supported_context(CT, [EXPL, IMPL])
    ae.add_supported_context(GET, [IMPL], scu_role=True, scp_role=True)
    ae.require_called_aet = True
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        port = server.server_address[1]
        request_ = make_rq(RoleSelection(GET, 1, 1), AsynchronousOperationsWindow(2, 2))
        reply = _exchange(port, request_)
        assert isinstance(reply, AAssociateAC)
        assert {pc.context_id: pc.result for pc in reply.presentation_contexts} == {1: 0, 3: 0, 5: 0}
        assert check_reply(request_, reply) == []
        wrong_called = dataclasses.replace(request_, called_ae_title="SOMEONE")
        rejection = _exchange(port, wrong_called)
        assert rejection == AAssociateRJ(1, 1, 7)
        assert check_reply(wrong_called, rejection) == []
    finally:
        server.shutdown()


def _exchange(port: int, request_: AAssociateRQ):
    """Send one A-ASSOCIATE-RQ, return the decoded answer, then abort and close."""
    reader = PDUReader()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_.encode())
        pdus: list = []
        while not pdus:
            chunk = sock.recv(65536)
            assert chunk, "the acceptor closed without answering"
            pdus = reader.feed(chunk)
        reply = decode_pdu(pdus[0])
        if isinstance(reply, AAssociateAC):
            sock.sendall(AAbort().encode())  # service-user abort: we are done
    return reply

