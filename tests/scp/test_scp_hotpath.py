"""The echo association's shortcuts change no byte: decode and negotiation caches, pinned AC, lazy services.

A modality repeats its A-ASSOCIATE-RQ byte for byte, so the decoder keeps
whole requests (PS3.8 9.3.2) and the reference SCP keeps what negotiation
answered (PS3.8 9.3.3-9.3.4, PS3.7 D.3) with the AC's bytes.  Each test
checks a hit against what the uncached path gives for the same input.
"""

from __future__ import annotations

import logging
import time

import pytest
from pydicom import Dataset
from scp_testkit import CT, EVRLE, IVRLE, RELEASE_RQ, MemoryTransport, RawClient, associate_rq, config, echo_rq, pdu

from dicomconf.scp.cli import LineFormatter
from dicomconf.scp.connection import SCPConnection
from dicomconf.scp.server import ReferenceSCP
from dicomconf.scp.service_driver import for_services
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul import pdu as P
from dicomconf.ul.items import (
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    MaximumLength,
    PresentationContextRQ,
    RoleSelection,
    SOPClassExtendedNegotiation,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.negotiation import AcceptorPolicy, negotiate
from dicomconf.ul.negotiation_cache import NegotiationCache, frozen_policy

FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND


def _rq(called="DICOMCONF", contexts=((1, C.VERIFICATION_SOP_CLASS, (IVRLE,)),), subs=(), reserved=P.ZERO_RESERVED):
    pcs = tuple(PresentationContextRQ(cid, a, tuple(ts)) for cid, a, ts in contexts)
    ui = UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.3.4")) + tuple(subs))
    return P.AAssociateRQ(called, "MODALITY", pcs, ui, reserved=reserved)


REQUESTS = {
    "echo": _rq(),
    "several contexts, one refused": _rq(contexts=(
        (1, C.VERIFICATION_SOP_CLASS, (EVRLE, IVRLE)), (3, CT, ("1.2.840.10008.1.2.4.50", EVRLE)),
        (5, "1.2.3.4.5.6", (IVRLE,)), (7, CT, ("1.2.3.999",)),
    )),
    "roles, window, extended": _rq(contexts=((1, CT, (IVRLE,)), (3, FIND, (IVRLE,))), subs=(
        RoleSelection(CT, 1, 1), AsynchronousOperationsWindow(4, 4), SOPClassExtendedNegotiation(FIND, b"\x01\x01"),
    ), reserved=bytes(range(32))),
    "wrong called AE (RJ)": _rq(called="SOMEONE"),
}
POLICY = AcceptorPolicy(roles={CT: (True, True)}, async_window=(2, 3), extended_negotiation={FIND: b"\x01\x01"},
                        supported={C.VERIFICATION_SOP_CLASS: (IVRLE, EVRLE), CT: (EVRLE, IVRLE), FIND: (IVRLE,)})


@pytest.mark.parametrize("name", list(REQUESTS))
def test_a_cache_hit_gives_the_bytes_of_a_miss(name):
    """A hit answers with the object of the miss, and its (pinned) bytes are those of a fresh negotiation."""
    wire = REQUESTS[name].encode()
    policy = frozen_policy(POLICY)
    cache = NegotiationCache()
    rq = P.decode_pdu(wire)
    first = cache.negotiate(rq, policy)
    again = cache.negotiate(P.decode_pdu(wire), policy)
    assert again is first and (cache.hits, cache.misses) == (1, 1)
    fresh = negotiate(P.decode_pdu(wire), POLICY)
    assert first == fresh
    assert again.reply.encode() == fresh.reply.encode() == P.decode_pdu(fresh.reply.encode()).encode()
    if name == "wrong called AE (RJ)":
        assert isinstance(first.reply, P.AAssociateRJ)
    else:
        assert isinstance(first.reply, P.AAssociateAC) and id(first.reply) in P._PINNED


def test_the_association_limit_is_part_of_the_key():
    """max_associations=1: accepted with none open, RJ (2, 3, 2) with one open, both from the cache after."""
    policy = frozen_policy(AcceptorPolicy(max_associations=1))
    cache = NegotiationCache()
    rq = P.decode_pdu(REQUESTS["echo"].encode())
    for _ in range(2):
        assert isinstance(cache.negotiate(rq, policy, active_associations=0).reply, P.AAssociateAC)
        rj = cache.negotiate(rq, policy, active_associations=1).reply
        assert (rj.result, rj.source, rj.reason) == (C.RJ_RESULT_TRANSIENT, C.RJ_SOURCE_PRESENTATION,
                                                     C.RJ_PRESENTATION_LOCAL_LIMIT_EXCEEDED)
    assert (cache.hits, cache.misses) == (2, 2)


def test_another_policy_object_is_another_key():
    cache = NegotiationCache()
    rq = P.decode_pdu(REQUESTS["echo"].encode())
    accepted = cache.negotiate(rq, frozen_policy(AcceptorPolicy()))
    refused = cache.negotiate(rq, frozen_policy(AcceptorPolicy(ae_titles=("OTHER",))))
    assert isinstance(accepted.reply, P.AAssociateAC) and isinstance(refused.reply, P.AAssociateRJ)


def test_credentials_are_neither_decoded_once_nor_kept():
    """A request with a user identity (PS3.7 D.3.3.7) is decoded and negotiated every time, never kept."""
    wire = _rq(subs=(UserIdentityRQ(2, b"alice", b"secret", 0),)).encode()
    assert P.decode_pdu(wire) is not P.decode_pdu(wire)
    cache = NegotiationCache()
    policy = frozen_policy(AcceptorPolicy(users={"alice": "secret"}))
    for _ in range(3):
        assert cache.negotiate(P.decode_pdu(wire), policy).user == "alice"
    assert len(cache) == 0 and cache.misses == 3


def test_repeated_requests_decode_to_one_object_and_errors_every_time():
    wire = REQUESTS["roles, window, extended"].encode()
    first = P.decode_pdu(wire)
    assert P.decode_pdu(bytearray(wire)) is first and first == REQUESTS["roles, window, extended"]
    broken = wire[:-3]  # the last sub-item overruns the PDU once the header says so
    broken = broken[:2] + (len(broken) - 6).to_bytes(4, "big") + broken[6:]
    for _ in range(2):
        with pytest.raises(P.RemoteProtocolError):
            P.decode_pdu(broken)


def test_the_cache_is_bounded_and_unpins_what_it_drops():
    cache = NegotiationCache(entries=4)
    policy = frozen_policy(AcceptorPolicy())
    answers = [cache.negotiate(P.decode_pdu(_rq(contexts=((1, C.VERIFICATION_SOP_CLASS, (IVRLE,)),),
                                                  subs=(ImplementationClassUID(f"1.2.{i}"),)).encode()), policy)
               for i in range(10)]
    assert len(cache) == 4
    assert not any(id(a.reply) in P._PINNED and P._PINNED[id(a.reply)][0] is a.reply for a in answers[:6])
    for answer in answers:
        assert answer.reply.encode() == answer.reply._encode()
    cache.clear()
    assert len(cache) == 0 and not any(P._PINNED.get(id(a.reply), (None,))[0] is a.reply for a in answers)


def test_the_servers_policy_is_read_only():
    scp = ReferenceSCP(config(index="none", services=()))
    with pytest.raises(TypeError):
        scp.policy.supported[CT] = (IVRLE,)  # type: ignore[index]
    assert scp.policy.supported == dict(scp.config.policy().supported)


# ------------------------------------------------------------------ the driver


def _cancel_rq(message_id: int) -> bytes:
    ds = Dataset()
    ds.CommandField = 0x0FFF
    ds.MessageIDBeingRespondedTo = message_id
    ds.CommandDataSetType = dimse.NO_DATA_SET
    return b"".join(dimse.fragment(dimse.Message(1, ds), 16384))


def test_an_echo_association_makes_no_service_driver(tmp_path):
    """The services (find, move, get, commitment, mpps) are offered, but an echo never builds their driver;
    the first message for them does (PS3.7 9.3.2.3: C-CANCEL-RQ)."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        scp = ReferenceSCP(config(storage="directory", storage_dir=str(tmp_path)))
        scp._loop = loop
        assert scp.handlers, "the default configuration offers services"
        answers = []
        for cancel in (False, True):
            conn = SCPConnection(scp, False)
            transport = MemoryTransport()
            conn.connection_made(transport)
            conn.data_received(associate_rq())
            conn.data_received(echo_rq())
            assert conn.services is None
            if cancel:
                conn.data_received(_cancel_rq(7))
                assert conn.services is not None
            conn.data_received(RELEASE_RQ)
            conn.connection_lost(None)
            answers.append(transport.writes)
            assert conn.outcome == "released"
        assert answers[0] == answers[1], "a C-CANCEL-RQ with nothing to cancel is not answered"
        scp.storage.close()
    finally:
        loop.close()


@pytest.mark.parametrize("field,sop,expected", [
    (dimse.C_ECHO_RQ, C.VERIFICATION_SOP_CLASS, False), (dimse.C_STORE_RQ, CT, False),
    (dimse.C_FIND_RQ, FIND, True), (dimse.C_FIND_RQ, "1.2.3", False), (0x0FFF, "", True),
])
def test_for_services_is_what_the_driver_handles(field, sop, expected):
    ds = Dataset()
    ds.CommandField = field
    if sop:
        ds.AffectedSOPClassUID = sop
    ds.MessageID = 1
    ds.CommandDataSetType = dimse.NO_DATA_SET
    assert for_services(dimse.Message(1, ds), {FIND: object()}) is expected


@pytest.mark.network
def test_live_repeated_requests_get_the_bytes_of_the_first(scp_factory):
    """Over the wire: the same RQ three times gets three identical ACs, those of a fresh negotiation."""
    handle = scp_factory(index="none", services=())
    wire = associate_rq()
    replies = []
    for _ in range(3):
        with RawClient(handle.port) as client:
            client.send(wire)
            reply = client.recv_pdu()
            assert reply is not None and reply[0] == C.A_ASSOCIATE_AC
            replies.append(pdu(*reply))
            assert client.echo() == 0
            client.send(RELEASE_RQ)
            assert client.recv_pdu()[0] == C.A_RELEASE_RP
    fresh = negotiate(P.decode_pdu(wire), handle.scp.config.policy(handle.scp.services)).reply._encode()
    assert replies == [fresh] * 3
    assert handle.scp.negotiations.hits >= 2


def test_the_line_formatter_writes_what_logging_formatter_writes():
    standard = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    ours = LineFormatter()
    log = logging.getLogger("dicomconf.test")
    for created in (time.time(), 1700000000.0005, 1700000000.9999, 1700000001.5):
        for level in (logging.INFO, logging.WARNING):
            record = log.makeRecord(log.name, level, __file__, 1, "a %s %r %d", ("b", "c", 3), None)
            record.created, record.msecs = created, (created - int(created)) * 1000
            assert ours.format(record) == standard.format(record)
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = log.makeRecord(log.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert ours.format(record) == standard.format(record) and "ValueError: boom" in ours.format(record)
