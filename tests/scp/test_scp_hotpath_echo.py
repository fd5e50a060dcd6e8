"""The echo fast lane (dicomconf.ul.echo_lane) changes no byte and no state the general path would give.

A repeated C-ECHO-RQ (PS3.7 9.1.5) is answered from a template learned from
the general path's own answer; the state machine still moves by Table 9-10
(Evt10 DT-2, Evt9 DT-1 in Sta6).  Each test compares what a connection with
the lane writes against a server whose lane is off (a ``Hooks()`` with no
hook set sends every PDU the general way), byte for byte.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from pydicom import Dataset
from scp_testkit import CT, IVRLE, RELEASE_RQ, MemoryTransport, RawClient, associate_rq, config, echo_rq

from dicomconf.scp.connection import SCPConnection
from dicomconf.scp.hooks import Hooks
from dicomconf.scp.server import ReferenceSCP
from dicomconf.ul import constants as C
from dicomconf.ul import dimse, fsm
from dicomconf.ul.association import Association
from dicomconf.ul.echo_lane import ECHO_STEPS, MAX_TEMPLATES, EchoTemplates
from dicomconf.ul.negotiation import AcceptorPolicy, negotiate
from dicomconf.ul.pdu import PDV, PDataTF, decode_pdu


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _server(loop, hooks=None, **cfg) -> ReferenceSCP:
    scp = ReferenceSCP(config(**{"index": "none", **cfg}), hooks)
    scp._loop = loop
    return scp


def _play(scp: ReferenceSCP, chunks: list[bytes], rq: bytes | None = None) -> tuple[bytes, SCPConnection]:
    """One association fed ``chunks`` after its A-ASSOCIATE-RQ; everything it wrote, and the connection."""
    conn = SCPConnection(scp, False)
    transport = MemoryTransport()
    conn.connection_made(transport)
    conn.data_received(rq or associate_rq())
    for chunk in chunks:
        conn.data_received(chunk)
    conn.connection_lost(None)
    scp._loop._scheduled.clear()  # type: ignore[attr-defined]  # the timers of a loop that never runs
    return transport.data, conn


def _echo_with(message_id: int, context_id: int = 1, sop_class: str = C.VERIFICATION_SOP_CLASS,
               extra: bool = False) -> bytes:
    """A C-ECHO-RQ P-DATA-TF; ``extra`` adds Priority (0000,0700), an element a C-ECHO-RQ does not carry."""
    ds = Dataset()
    ds.AffectedSOPClassUID = sop_class
    ds.CommandField = dimse.C_ECHO_RQ
    ds.MessageID = message_id
    if extra:
        ds.Priority = 0
    ds.CommandDataSetType = dimse.NO_DATA_SET
    return b"".join(dimse.fragment(dimse.Message(context_id, ds), 16384))


TWO_CONTEXTS = ((1, C.VERIFICATION_SOP_CLASS, (IVRLE,)), (3, CT, (IVRLE,)))


def test_the_steps_are_the_tables():
    assert ECHO_STEPS == (("Evt10", "DT-2", "Sta6"), ("Evt9", "DT-1", "Sta6"))
    for event, action, next_state in ECHO_STEPS:
        assert fsm.TRANSITIONS[("Sta6", event)] == action
        assert fsm.ACTIONS[action].next_states == (next_state,)


@pytest.mark.parametrize("message_ids", [(1, 2, 3), (0x0100, 0xFFFF, 0), (7, 7, 0x1234)])
def test_repeats_get_the_general_paths_bytes(loop, message_ids):
    """Several echoes per association, over several associations: the lane answers every repeat, same bytes."""
    fast, general = _server(loop), _server(loop, Hooks())
    chunks = [echo_rq(m) for m in message_ids] + [RELEASE_RQ]
    for round_ in range(3):
        out, conn = _play(fast, chunks)
        assert out == _play(general, chunks)[0]
        assert conn.outcome == "released" and conn.assoc.state == "Sta1"
    assert fast.echo_templates.count == 1
    assert fast.echo_templates.hits == 3 * len(message_ids) - 1, "all but the first echo went the fast way"
    assert general.echo_templates.count == 0


def test_each_form_is_learned_and_other_contexts_are_not_confused(loop):
    """Another context, another SOP class, an extra element: each a form of its own, each answered right."""
    fast, general = _server(loop), _server(loop, Hooks())
    rq = associate_rq(contexts=TWO_CONTEXTS)
    forms = [_echo_with(5), _echo_with(6, context_id=3), _echo_with(7, sop_class=CT), _echo_with(8, extra=True)]
    for _ in range(2):
        for form in forms:
            chunks = [form, form, RELEASE_RQ]
            assert _play(fast, chunks, rq)[0] == _play(general, chunks, rq)[0]
    assert fast.echo_templates.count == len(forms)
    assert fast.echo_templates.hits == 3 * len(forms)


def test_a_form_learned_on_an_accepted_context_is_not_answered_where_it_is_not(loop):
    """Context 3 accepted in one association, absent from the next: the general path aborts there (PS3.8 9.3.5.1)."""
    fast, general = _server(loop), _server(loop, Hooks())
    on_three = _echo_with(9, context_id=3)
    _play(fast, [on_three, RELEASE_RQ], associate_rq(contexts=TWO_CONTEXTS))
    assert fast.echo_templates.count == 1
    out, conn = _play(fast, [on_three, RELEASE_RQ])
    assert out == _play(general, [on_three, RELEASE_RQ])[0]
    assert out[-10] == C.A_ABORT and conn.outcome.startswith("aborted")
    assert fast.echo_templates.hits == 0


@pytest.mark.parametrize("how", ["split", "pipelined with the release", "after a C-STORE command without its data set"])
def test_what_is_not_one_whole_echo_between_messages_goes_the_general_way(loop, how):
    fast, general = _server(loop), _server(loop, Hooks())
    _play(fast, [echo_rq(1), RELEASE_RQ])  # learn
    echo = echo_rq(2)
    if how == "split":
        chunks = [echo[:7], echo[7:], RELEASE_RQ]
    elif how == "pipelined with the release":
        chunks = [echo + RELEASE_RQ]
    else:
        command, *data_set = dimse.fragment(dimse.c_store_rq(1, CT, "1.2.3.4", data=b"\0" * 64, context_id=3), 16384)
        assert data_set, "the data set comes in a P-DATA-TF of its own"
        chunks = [command, echo, RELEASE_RQ]  # an echo while the C-STORE's data set is due
    rq = associate_rq(contexts=TWO_CONTEXTS)
    assert _play(fast, chunks, rq)[0] == _play(general, chunks, rq)[0]
    assert fast.echo_templates.hits == 0


def test_the_peers_maximum_length_is_kept(loop):
    """An answer that would not fit the peer's Maximum Length goes the general way (PS3.8 D.1.1)."""
    fast, general = _server(loop), _server(loop, Hooks())
    _play(fast, [echo_rq(1), RELEASE_RQ])
    small = associate_rq(max_pdu=40)
    chunks = [echo_rq(2), RELEASE_RQ]
    assert _play(fast, chunks, small)[0] == _play(general, chunks, small)[0]
    assert fast.echo_templates.hits == 0


def test_a_trace_turns_the_lane_off(loop):
    scp = _server(loop, verbose=True)
    _play(scp, [echo_rq(1), echo_rq(2), RELEASE_RQ])
    assert scp.echo_templates.count == 0 and scp.echo_templates.hits == 0


def test_the_association_moves_by_the_table():
    """The core alone: the answer echoes the Message ID; last_transition is DT-1's; the state stays Sta6."""
    templates = EchoTemplates()
    request = dimse.c_echo_rq(1)
    answer = PDataTF((PDV(1, C.MCH_COMMAND | C.MCH_LAST, dimse.encode_command(dimse.c_echo_rsp(request).command)),))
    assert templates.learn(1, dimse.encode_command(request.command), answer)
    assoc = Association("acceptor")
    assoc.connection_made()
    assoc.receive_data(associate_rq())
    assert assoc.state == "Sta3" and assoc.answer_repeated_echo(echo_rq(2), templates) is None
    assoc.send(negotiate(assoc.rq, AcceptorPolicy(supported={C.VERIFICATION_SOP_CLASS: (IVRLE,)})).reply)
    assert assoc.state == "Sta6"
    out = assoc.answer_repeated_echo(echo_rq(0xBEEF), templates)
    assert out is not None
    (msg,) = dimse.MessageAssembler().add_pdata(decode_pdu(out))
    assert msg.message_id_being_responded_to == 0xBEEF and msg.status == 0
    assert assoc.state == "Sta6" and assoc.last_transition == ("Sta6", "Evt9", "DT-1", "Sta6")
    assert assoc.answer_repeated_echo(echo_rq(3)[:-1], templates) is None  # not a learned form
    assert assoc.answer_repeated_echo(bytearray(echo_rq(3)), templates) is None  # only bytes are matched


def test_templates_are_bounded():
    templates = EchoTemplates()
    answer = PDataTF((PDV(1, C.MCH_COMMAND | C.MCH_LAST, dimse.encode_command(
        dimse.c_echo_rsp(dimse.c_echo_rq(1)).command)),))
    kept = [templates.learn(2 * i + 1, dimse.encode_command(dimse.c_echo_rq(1).command), answer)
            for i in range(MAX_TEMPLATES + 3)]
    assert kept == [True] * MAX_TEMPLATES + [False] * 3 and templates.count == MAX_TEMPLATES


@pytest.mark.network
def test_live_echoes_answer_their_own_message_ids(scp_factory):
    handle = scp_factory(index="none", services=())
    for _ in range(3):
        with RawClient(handle.port) as client:
            assert client.associate()[0] == C.A_ASSOCIATE_AC
            for message_id in (1, 0xFFFF, 42):
                client.send(echo_rq(message_id))
                kind, body = client.recv_pdu()
                assert kind == C.P_DATA_TF
                command = body[6:]
                at = command.index(struct.pack("<HHI", 0, 0x0120, 2)) + 8
                assert struct.unpack_from("<H", command, at)[0] == message_id
            client.send(RELEASE_RQ)
            assert client.recv_pdu()[0] == C.A_RELEASE_RP
    assert handle.scp.echo_templates.hits >= 8
