"""The P-DATA-TF path that skips fsm.run for fragments completing no message does what Table 9-10 says."""

from __future__ import annotations

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul import fsm
from dicomconf.ul.association import _QUIET_PDATA, Association
from dicomconf.ul.events import MessageReceived, PDUReceived
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ, AReleaseRQ

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize("state", sorted(_QUIET_PDATA))
def test_quiet_pdata_matches_the_table_action(state):
    """For a P-DATA-TF completing no message the table's action has no effect but its next state."""
    action, next_state = _QUIET_PDATA[state]
    assert fsm.TRANSITIONS[(state, "Evt10")] == action
    ctx = fsm.Context("Evt10", "acceptor", None, None, (), None, None, state)
    name, outcome = fsm.run(state, "Evt10", ctx)
    assert name == action and outcome.next_state == next_state
    assert (outcome.send, outcome.artim, outcome.close, outcome.connect, outcome.indications, outcome.fault) == (
        (), None, False, False, (), None,
    )


def test_quiet_pdata_covers_exactly_the_indicating_cells():
    expected = {s for (s, e), a in fsm.TRANSITIONS.items() if e == "Evt10" and a in ("DT-2", "AR-6")}
    assert set(_QUIET_PDATA) == expected == {"Sta6", "Sta7"}


def _acceptor_in_sta6() -> Association:
    ui = UserInformation((MaximumLength(16382), ImplementationClassUID("1.2.3.4")))
    rq = AAssociateRQ("ACC", "REQ", (PresentationContextRQ(1, CT, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),), ui)
    ac = AAssociateAC("ACC", "REQ", (PresentationContextAC(1, C.PC_ACCEPTANCE, C.IMPLICIT_VR_LITTLE_ENDIAN),), ui)
    acc = Association("acceptor")
    acc.connection_made()
    acc.receive_data(rq.encode())
    acc.send(ac)
    assert acc.state == "Sta6"
    return acc


@pytest.mark.parametrize("state", ["Sta6", "Sta7"])
def test_fragments_then_message_in_sta6_and_sta7(state):
    acc = _acceptor_in_sta6()
    if state == "Sta7":
        acc.send(AReleaseRQ())
    data = bytes(5000)
    pdus = dimse.fragment(dimse.c_store_rq(3, CT, "1.2.3", data=data), 1024)
    for raw in pdus[:-1]:
        events = acc.receive_data(raw)
        assert [type(e) for e in events] == [PDUReceived]
        assert acc.last_transition == (state, "Evt10", _QUIET_PDATA[state][0], state) and acc.state == state
    events = acc.receive_data(pdus[-1])
    assert [type(e) for e in events] == [PDUReceived, MessageReceived]
    assert events[1].message.data == data and acc.state == state
