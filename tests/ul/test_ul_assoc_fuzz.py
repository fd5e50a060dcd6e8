"""Hypothesis: whatever bytes arrive in Sta2 or Sta6, receive_data raises nothing and the table is followed."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomconf.ul import constants as C
from dicomconf.ul import fsm
from dicomconf.ul.association import Association
from dicomconf.ul.events import Aborted, AssociateRequested
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAbort, AAssociateAC, AAssociateRQ, decode_pdu

UI = UserInformation((MaximumLength(16382), ImplementationClassUID("1.2.826.0.1.3680043.9.9999")))
RQ = AAssociateRQ("A", "B", (PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),), UI)
AC = AAssociateAC("A", "B", (PresentationContextAC(1, C.PC_ACCEPTANCE, C.IMPLICIT_VR_LITTLE_ENDIAN),), UI)


def pdu_like() -> st.SearchStrategy[bytes]:
    """Bytes with a plausible PDU header (any type 0-10, honest or lying length) and random bodies."""

    def build(t: int, body: bytes, lie: int | None) -> bytes:
        length = len(body) if lie is None else lie
        return struct.pack(">BBI", t, 0, length) + body

    return st.builds(
        build,
        st.integers(0, 10),
        st.binary(max_size=120),
        st.one_of(st.none(), st.integers(0, 0xFFFFFFFF)),
    )


CHUNKS = st.lists(st.one_of(st.binary(max_size=64), pdu_like()), min_size=1, max_size=6)


def acceptor_in(state: str) -> Association:
    a = Association("acceptor")
    a.connection_made()
    if state == "Sta6":
        a.receive_data(RQ.encode())
        a.send(AC)
    assert a.state == state
    return a


def check(state: str, chunks: list[bytes]) -> None:
    a = acceptor_in(state)
    events = []
    for chunk in chunks:
        events += a.receive_data(chunk)  # nothing but events may come out
    sent = [decode_pdu(p) for p in PDUReader().feed(a.data_to_send())]
    assert a.state in fsm.STATES
    assert a.artim_running == (a.state in ("Sta2", "Sta13"))
    assert all(isinstance(p, (AAbort,)) for p in sent)
    associated = any(isinstance(e, AssociateRequested) for e in events)
    if a.error is not None:  # a peer violation: the table's answer was an A-ABORT, then Sta13 (or closed)
        assert sent, "a peer violation must be answered with A-ABORT"
        assert a.state in ("Sta13", "Sta1")
        if state == "Sta2" and not associated:
            assert sent[0] == AAbort(C.ABORT_SOURCE_USER, 0)  # AA-1
        else:
            first = next(e for e in events if isinstance(e, Aborted))  # AA-8's A-P-ABORT indication
            assert not first.by_peer and first.error is not None and first.reason == first.error.reason
            assert sent[0] == AAbort(C.ABORT_SOURCE_PROVIDER, first.reason)
    if a.state == "Sta1":
        assert a.should_close or a.last_transition[2] in ("AA-5", "AR-5", "AA-4")
    if state == "Sta2" and not associated:
        assert a.state in ("Sta2", "Sta13", "Sta1")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CHUNKS)
def test_random_bytes_in_sta2(chunks):
    check("Sta2", chunks)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CHUNKS)
def test_random_bytes_in_sta6(chunks):
    check("Sta6", chunks)
