"""Real requestors (pynetdicom, DCMTK echoscu) against ``negotiate`` on loopback, and random requests.

A minimal acceptor in a thread answers one connection: the A-ASSOCIATE-RQ
with :func:`negotiate`, C-ECHO with a success response, A-RELEASE-RQ with
A-RELEASE-RP.  The peers must establish (or be refused) and see what the
negotiation agreed.  The property test feeds random requests to
``negotiate`` and holds every reply to :func:`check_reply`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import uid as U

from dicomconf.ul import constants as C
from dicomconf.ul import dimse as D
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.items import (
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    MaximumLength,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.negotiation import AcceptorPolicy, Negotiated, check_reply, negotiate
from dicomconf.ul.pdu import AAbort, AAssociateAC, AAssociateRQ, AReleaseRP, AReleaseRQ, PDataTF, decode_pdu

CT = "1.2.840.10008.5.1.4.1.1.2"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPL = U.ImplicitVRLittleEndian
EXPL = U.ExplicitVRLittleEndian


class OneShotAcceptor:
    """Accepts one connection on 127.0.0.1 and answers it with ``negotiate(policy)``."""

    def __init__(self, policy: AcceptorPolicy) -> None:
        self.policy = policy
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(20)
        self.port = self.listener.getsockname()[1]
        self.result: Negotiated | None = None
        self.echoes = 0
        self.released = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(20)
                self._serve(conn)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def _serve(self, conn: socket.socket) -> None:
        reader, assembler = PDUReader(), D.MessageAssembler()
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return
            for raw in reader.feed(chunk):
                pdu = decode_pdu(raw)
                if isinstance(pdu, AAssociateRQ):
                    self.result = negotiate(pdu, self.policy)
                    conn.sendall(self.result.reply.encode())
                elif isinstance(pdu, PDataTF):
                    for msg in assembler.add_pdata(pdu):
                        assert msg.command_field == D.C_ECHO_RQ
                        self.echoes += 1
                        for out in D.fragment(D.c_echo_rsp(msg), self.result.peer_max_pdu_length):
                            conn.sendall(out)
                elif isinstance(pdu, AReleaseRQ):
                    self.released = True
                    conn.sendall(AReleaseRP().encode())
                elif isinstance(pdu, AAbort):
                    return

    def stop(self) -> None:
        self.listener.close()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "acceptor thread did not finish"
        if self.error is not None:
            raise self.error


@pytest.fixture
def acceptor():
    started: list[OneShotAcceptor] = []

    def start(policy: AcceptorPolicy) -> OneShotAcceptor:
        started.append(OneShotAcceptor(policy))
        return started[-1]

    yield start
    for a in started:
        a.stop()


POLICY = AcceptorPolicy(
    ae_titles=("DICOMCONF",),
    roles={GET: (True, True)},
    supported={C.VERIFICATION_SOP_CLASS: (EXPL, IMPL), CT: (EXPL,), GET: (IMPL,)},
    async_window=(3, 1),
    users={"alice": "pw"},
    extended_negotiation={GET: b"\x01"},
)


@pytest.mark.network
def test_pynetdicom_requestor_sees_what_was_negotiated(acceptor):
    pynetdicom = pytest.importorskip("pynetdicom")
    from pynetdicom.pdu_primitives import (
        AsynchronousOperationsWindowNegotiation,
        SCP_SCU_RoleSelectionNegotiation,
        SOPClassExtendedNegotiation as PnExtended,
        UserIdentityNegotiation,
    )

    server = acceptor(POLICY)
    ae = pynetdicom.AE(ae_title="PYNETDICOM")
    ae.add_requested_context(C.VERIFICATION_SOP_CLASS, [IMPL, EXPL])
    ae.add_requested_context(CT, [IMPL])
    ae.add_requested_context(GET, [IMPL])
    role = SCP_SCU_RoleSelectionNegotiation()
    role.sop_class_uid, role.scu_role, role.scp_role = GET, True, True
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked, window.maximum_number_operations_performed = 5, 5
    identity = UserIdentityNegotiation()
    identity.user_identity_type, identity.primary_field, identity.secondary_field = 2, b"alice", b"pw"
    identity.positive_response_requested = True
    extended = PnExtended()
    extended.sop_class_uid, extended.service_class_application_information = GET, b"\x01"
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMCONF", ext_neg=[role, window, identity, extended])
    try:
        assert assoc.is_established
        status = assoc.send_c_echo()
        assert status.Status == 0
        contexts = {cx.context_id: cx for cx in assoc.accepted_contexts}
        assert contexts[1].transfer_syntax[0] == IMPL  # the proposer's order
        assert 3 not in contexts  # CT offered only implicit LE, policy takes explicit: rejected
        assert contexts[5].as_scu and contexts[5].as_scp  # requestor both roles, as granted
        reply_ui = assoc.acceptor.user_information
        uid_response = [i for i in reply_ui if type(i).__name__ == "UserIdentityNegotiation"]
        assert uid_response and uid_response[0].server_response == b""
    finally:
        assoc.release()
    assert server.result.user == "alice" and server.result.async_window == (3, 1)
    assert server.result.results == {1: 0, 3: 4, 5: 0}
    assert server.echoes == 1


@pytest.mark.network
def test_pynetdicom_requestor_is_rejected_with_the_right_reason(acceptor):
    pynetdicom = pytest.importorskip("pynetdicom")
    server = acceptor(POLICY)
    ae = pynetdicom.AE(ae_title="PYNETDICOM")
    ae.add_requested_context(C.VERIFICATION_SOP_CLASS)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="NOT-HERE")
    assert assoc.is_rejected
    assert (assoc.acceptor.primitive.result, assoc.acceptor.primitive.result_source,
            assoc.acceptor.primitive.diagnostic) == (1, 1, 7)


ECHOSCU = "/usr/bin/echoscu"


@pytest.mark.network
@pytest.mark.skipif(not os.path.exists(ECHOSCU), reason="DCMTK echoscu is not installed")
@pytest.mark.parametrize("called, ok", [("DICOMCONF", True), ("ELSEWHERE", False)])
def test_dcmtk_echoscu(acceptor, called, ok):
    server = acceptor(POLICY)
    env = dict(os.environ, TCP_NODELAY="1")
    done = subprocess.run(
        [ECHOSCU, "-aet", "DCMTK", "-aec", called, "127.0.0.1", str(server.port)],
        capture_output=True, text=True, timeout=30, env=env,
    )
    assert (done.returncode == 0) == ok, done.stderr
    if ok:
        assert server.echoes == 1 and server.released
        assert server.result.peer_implementation_class_uid.startswith("1.2.276.0.7230010.3")  # DCMTK's root
    else:
        assert "Called AE Title Not Recognized" in done.stderr + done.stdout


# --------------------------------------------------------------------------
# random requests: every reply negotiate gives keeps every rule

ABSTRACTS = [C.VERIFICATION_SOP_CLASS, CT, GET, FIND, "1.2.826.0.1.3680043.10.543.1"]
SYNTAXES = [IMPL, EXPL, U.ExplicitVRBigEndian, U.JPEGBaseline8Bit, "1.2.3.999"]
PROPERTY = settings(max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def requests(draw) -> AAssociateRQ:
    ids = draw(st.lists(st.integers(0, 255), min_size=1, max_size=12))
    if draw(st.booleans()):
        ids = sorted({i | 1 for i in ids})  # mostly legal ID sets
    contexts = tuple(
        PresentationContextRQ(i, draw(st.sampled_from(ABSTRACTS)),
                              tuple(draw(st.lists(st.sampled_from(SYNTAXES), min_size=1, max_size=4))))
        for i in ids
    )
    subs: list = [MaximumLength(draw(st.integers(0, 2**32 - 1))), ImplementationClassUID("1.2.3")]
    if draw(st.booleans()):
        subs.append(AsynchronousOperationsWindow(draw(st.integers(0, 9)), draw(st.integers(0, 9))))
    for sop in draw(st.lists(st.sampled_from(ABSTRACTS), max_size=3)):
        subs.append(RoleSelection(sop, draw(st.integers(0, 2)), draw(st.integers(0, 2))))
    for sop in draw(st.lists(st.sampled_from(ABSTRACTS), max_size=2)):
        subs.append(SOPClassExtendedNegotiation(sop, draw(st.binary(max_size=4))))
    for sop in draw(st.lists(st.sampled_from(ABSTRACTS), max_size=2)):
        subs.append(SOPClassCommonExtendedNegotiation(sop, "1.2.840.10008.4.2", tuple(draw(st.lists(st.sampled_from(ABSTRACTS), max_size=2)))))
    if draw(st.booleans()):
        subs.append(UserIdentityRQ(draw(st.integers(0, 6)), draw(st.sampled_from([b"alice", b"bob", b"\xff"])),
                                   draw(st.sampled_from([b"", b"pw", b"x"])), draw(st.integers(0, 1))))
    return AAssociateRQ(
        called_ae_title=draw(st.sampled_from(["DICOMCONF", " DICOMCONF ", "OTHER"])),
        calling_ae_title=draw(st.sampled_from(["SCU", "EVIL"])),
        presentation_contexts=contexts,
        user_information=UserInformation(tuple(subs)),
        application_context_name=draw(st.sampled_from([C.APPLICATION_CONTEXT_NAME, "1.2.3"])),
        protocol_version=draw(st.sampled_from([1, 2, 3, 0xFFFF])),
    )


policies = st.builds(
    AcceptorPolicy,
    roles=st.dictionaries(st.sampled_from(ABSTRACTS), st.tuples(st.booleans(), st.booleans()), max_size=3),
    supported=st.dictionaries(st.sampled_from(ABSTRACTS), st.lists(st.sampled_from(SYNTAXES), min_size=1).map(tuple)),
    async_window=st.none() | st.tuples(st.integers(0, 9), st.integers(0, 9)),
    users=st.none() | st.just({"alice": "pw", "bob": None}),
    require_user_identity=st.booleans(),
    allowed_calling_aes=st.none() | st.just(("SCU",)),
    extended_negotiation=st.dictionaries(st.sampled_from(ABSTRACTS), st.binary(max_size=5), max_size=2),
    accept_common_extended=st.booleans(),
    prefer_own_transfer_syntax_order=st.booleans(),
)


@PROPERTY
@given(requests(), policies, st.integers(0, 3), st.none() | st.integers(0, 3))
def test_every_negotiated_reply_is_legal(request_, policy, active, limit):
    policy = AcceptorPolicy(**{**{f: getattr(policy, f) for f in policy.__slots__}, "max_associations": limit})
    result = negotiate(request_, policy, active_associations=active)
    assert check_reply(request_, result.reply) == []
    raw = result.reply.encode()
    assert decode_pdu(raw).encode() == raw
    if isinstance(result.reply, AAssociateAC):
        proposed = {pc.context_id: pc for pc in request_.presentation_contexts}
        for cid, (abstract, ts) in result.accepted.items():
            assert proposed[cid].abstract_syntax == abstract and ts in proposed[cid].transfer_syntaxes
            assert abstract in policy.supported or cid in result.related_general
        assert result.roles.keys() == {a for a, _ in result.accepted.values()}
        assert all(any(r) for r in result.roles.values())
    else:
        assert result.accepted == {} and result.roles == {}
