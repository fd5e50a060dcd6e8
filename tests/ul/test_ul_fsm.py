"""PS3.8 Table 9-10, cell by cell: the table as data, and an Association driven into each state.

``EXPECTED`` below is a second transcription of Table 9-10 in the
standard's own layout (one row per event, one column per state), made
independently of ``dicomconf.ul.fsm.TRANSITIONS``; a wrong cell in either
fails that cell's own test.  The per-cell Association tests drive a real
association into the state through legal inputs only, fire the event through
the public API and check what the action did (bytes sent, ARTIM, close,
indications) and the next state.
"""

from __future__ import annotations

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul import dimse, fsm
from dicomconf.ul.association import Association
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.events import (
    Aborted,
    AssociateAccepted,
    AssociateRejected,
    AssociateRequested,
    ConnectionClosed,
    MessageReceived,
    PDUReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAbort, AAssociateAC, AAssociateRJ, AAssociateRQ, AReleaseRP, AReleaseRQ, decode_pdu
from dicomconf.table_cli import grid, render

STATE_NAMES = [f"Sta{i}" for i in range(1, 14)]
EVENT_NAMES = [f"Evt{i}" for i in range(1, 20)]

EXPECTED_TEXT = """
       Sta1 Sta2 Sta3 Sta4 Sta5 Sta6 Sta7 Sta8 Sta9 Sta10 Sta11 Sta12 Sta13
Evt1   AE-1 .    .    .    .    .    .    .    .    .     .     .     .
Evt2   .    .    .    AE-2 .    .    .    .    .    .     .     .     .
Evt3   .    AA-1 AA-8 .    AE-3 AA-8 AA-8 AA-8 AA-8 AA-8  AA-8  AA-8  AA-6
Evt4   .    AA-1 AA-8 .    AE-4 AA-8 AA-8 AA-8 AA-8 AA-8  AA-8  AA-8  AA-6
Evt5   AE-5 .    .    .    .    .    .    .    .    .     .     .     .
Evt6   .    AE-6 AA-8 .    AA-8 AA-8 AA-8 AA-8 AA-8 AA-8  AA-8  AA-8  AA-7
Evt7   .    .    AE-7 .    .    .    .    .    .    .     .     .     .
Evt8   .    .    AE-8 .    .    .    .    .    .    .     .     .     .
Evt9   .    .    .    .    .    DT-1 .    AR-7 .    .     .     .     .
Evt10  .    AA-1 AA-8 .    AA-8 DT-2 AR-6 AA-8 AA-8 AA-8  AA-8  AA-8  AA-6
Evt11  .    .    .    .    .    AR-1 .    .    .    .     .     .     .
Evt12  .    AA-1 AA-8 .    AA-8 AR-2 AR-8 AA-8 AA-8 AA-8  AA-8  AA-8  AA-6
Evt13  .    AA-1 AA-8 .    AA-8 AA-8 AR-3 AA-8 AA-8 AR-10 AR-3  AA-8  AA-6
Evt14  .    .    .    .    .    .    .    AR-4 AR-9 .     .     AR-4  .
Evt15  .    .    AA-1 AA-2 AA-1 AA-1 AA-1 AA-1 AA-1 AA-1  AA-1  AA-1  .
Evt16  .    AA-2 AA-3 .    AA-3 AA-3 AA-3 AA-3 AA-3 AA-3  AA-3  AA-3  AA-2
Evt17  .    AA-5 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4 AA-4  AA-4  AA-4  AR-5
Evt18  .    AA-2 .    .    .    .    .    .    .    .     .     .     AA-2
Evt19  .    AA-1 AA-8 .    AA-8 AA-8 AA-8 AA-8 AA-8 AA-8  AA-8  AA-8  AA-7
"""


def _parse(text: str) -> dict[tuple[str, str], str]:
    lines = [line.split() for line in text.strip().splitlines()]
    states = lines[0]
    table = {}
    for row in lines[1:]:
        event, cells = row[0], row[1:]
        assert len(cells) == len(states), event
        for state, cell in zip(states, cells):
            if cell != ".":
                table[(state, event)] = cell
    return table


EXPECTED = _parse(EXPECTED_TEXT)
ALL_CELLS = [(s, e) for s in STATE_NAMES for e in EVENT_NAMES]

# Tables 9-6..9-9: what each action does, written from the definitions.
#   sends: PDU types written; artim: running afterwards (None: unchanged); close: transport close requested;
#   ind: indication classes issued.
EFFECTS: dict[str, dict] = {
    "AE-1": dict(sends=[], artim=None, close=False, ind=[]),
    "AE-2": dict(sends=[C.A_ASSOCIATE_RQ], artim=None, close=False, ind=[]),
    "AE-3": dict(sends=[], artim=None, close=False, ind=[AssociateAccepted]),
    "AE-4": dict(sends=[], artim=None, close=True, ind=[AssociateRejected]),
    "AE-5": dict(sends=[], artim=True, close=False, ind=[]),
    "AE-6": dict(sends=[], artim=False, close=False, ind=[AssociateRequested]),
    "AE-7": dict(sends=[C.A_ASSOCIATE_AC], artim=None, close=False, ind=[]),
    "AE-8": dict(sends=[C.A_ASSOCIATE_RJ], artim=True, close=False, ind=[]),
    "DT-1": dict(sends=[C.P_DATA_TF], artim=None, close=False, ind=[]),
    "DT-2": dict(sends=[], artim=None, close=False, ind=[MessageReceived]),
    "AR-1": dict(sends=[C.A_RELEASE_RQ], artim=None, close=False, ind=[]),
    "AR-2": dict(sends=[], artim=None, close=False, ind=[ReleaseRequested]),
    "AR-3": dict(sends=[], artim=None, close=True, ind=[ReleaseConfirmed]),
    "AR-4": dict(sends=[C.A_RELEASE_RP], artim=True, close=False, ind=[]),
    "AR-5": dict(sends=[], artim=False, close=False, ind=[]),
    "AR-6": dict(sends=[], artim=None, close=False, ind=[MessageReceived]),
    "AR-7": dict(sends=[C.P_DATA_TF], artim=None, close=False, ind=[]),
    "AR-8": dict(sends=[], artim=None, close=False, ind=[ReleaseRequested]),
    "AR-9": dict(sends=[C.A_RELEASE_RP], artim=None, close=False, ind=[]),
    "AR-10": dict(sends=[], artim=None, close=False, ind=[ReleaseConfirmed]),
    "AA-1": dict(sends=[C.A_ABORT], artim=True, close=False, ind=[]),
    "AA-2": dict(sends=[], artim=False, close=True, ind=[]),
    "AA-3": dict(sends=[], artim=None, close=True, ind=[Aborted]),
    "AA-4": dict(sends=[], artim=None, close=False, ind=[Aborted]),
    "AA-5": dict(sends=[], artim=False, close=False, ind=[]),
    "AA-6": dict(sends=[], artim=None, close=False, ind=[]),
    "AA-7": dict(sends=[C.A_ABORT], artim=None, close=False, ind=[]),
    "AA-8": dict(sends=[C.A_ABORT], artim=True, close=False, ind=[Aborted]),
}
# Next state per action; AE-6 takes its accept branch (no provider check), AR-8 depends on the role.
NEXT = {
    "AE-1": "Sta4", "AE-2": "Sta5", "AE-3": "Sta6", "AE-4": "Sta1", "AE-5": "Sta2", "AE-6": "Sta3",
    "AE-7": "Sta6", "AE-8": "Sta13", "DT-1": "Sta6", "DT-2": "Sta6", "AR-1": "Sta7", "AR-2": "Sta8",
    "AR-3": "Sta1", "AR-4": "Sta13", "AR-5": "Sta1", "AR-6": "Sta7", "AR-7": "Sta8", "AR-9": "Sta11",
    "AR-10": "Sta12", "AA-1": "Sta13", "AA-2": "Sta1", "AA-3": "Sta1", "AA-4": "Sta1", "AA-5": "Sta1",
    "AA-6": "Sta13", "AA-7": "Sta13", "AA-8": "Sta13",
}


def expected_next(action: str, role: str) -> str:
    if action == "AR-8":
        return "Sta9" if role == "requestor" else "Sta10"
    return NEXT[action]


# --------------------------------------------------------------------------
# The table as data


@pytest.mark.parametrize("state,event", ALL_CELLS)
def test_cell_matches_standard(state, event):
    assert fsm.TRANSITIONS.get((state, event)) == EXPECTED.get((state, event))


@pytest.mark.parametrize("state,event", ALL_CELLS)
def test_blank_cell_raises_and_present_cell_names_an_action(state, event):
    if (state, event) in EXPECTED:
        assert fsm.transition(state, event) == EXPECTED[(state, event)]
        assert fsm.transition(state, event) in fsm.ACTIONS
    else:
        with pytest.raises(LocalProtocolError, match="Table 9-10"):
            fsm.transition(state, event)


def test_names_are_the_standards():
    assert list(fsm.STATES) == STATE_NAMES
    assert list(fsm.EVENTS) == EVENT_NAMES
    expected_actions = (
        [f"AE-{i}" for i in range(1, 9)] + ["DT-1", "DT-2"] + [f"AR-{i}" for i in range(1, 11)]
        + [f"AA-{i}" for i in range(1, 9)]
    )
    assert sorted(fsm.ACTIONS) == sorted(expected_actions)
    assert set(fsm.TRANSITIONS.values()) == set(expected_actions)


def test_pdu_events_cover_every_connected_state():
    """PS3.8 Table 9-10 has no blank cell for a received PDU where a transport connection exists."""
    for state in STATE_NAMES:
        for event in fsm.PDU_EVENTS:
            assert ((state, event) in fsm.TRANSITIONS) == (state in fsm.CONNECTED_STATES), (state, event)
    assert fsm.CONNECTED_STATES == set(STATE_NAMES) - {"Sta1", "Sta4"}


@pytest.mark.parametrize("action", sorted(NEXT) + ["AR-8"])
def test_action_next_states(action):
    spec = fsm.ACTIONS[action]
    if action == "AE-6":
        assert spec.next_states == ("Sta3", "Sta13")
    elif action == "AR-8":
        assert spec.next_states == ("Sta9", "Sta10")
    else:
        assert spec.next_states == (NEXT[action],)


def test_unknown_state_or_event():
    with pytest.raises(LocalProtocolError, match="no state"):
        fsm.transition("Sta14", "Evt1")
    with pytest.raises(LocalProtocolError, match="no state"):
        fsm.transition("Sta1", "Evt20")


# --------------------------------------------------------------------------
# Pure actions: the conditional ones and the A-ABORT fields


def test_ae6_branches():
    rq = make_rq()
    _, ok = fsm.run("Sta2", "Evt6", fsm.Context("Evt6", "acceptor", pdu=rq))
    assert ok.next_state == "Sta3" and ok.artim == fsm.ARTIM_STOP and ok.indications == (AssociateRequested(rq),)
    rj = AAssociateRJ(C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_ACSE, C.RJ_ACSE_PROTOCOL_VERSION_NOT_SUPPORTED)
    _, no = fsm.run("Sta2", "Evt6", fsm.Context("Evt6", "acceptor", pdu=rq, rejection=rj))
    assert no.next_state == "Sta13" and no.send == (rj,) and no.artim == fsm.ARTIM_RESTART and not no.indications


@pytest.mark.parametrize("role,state", [("requestor", "Sta9"), ("acceptor", "Sta10")])
def test_ar8_by_role(role, state):
    _, out = fsm.run("Sta7", "Evt12", fsm.Context("Evt12", role, pdu=AReleaseRQ()))
    assert out.next_state == state and out.indications == (ReleaseRequested(),)


@pytest.mark.parametrize("source,reason", [(0, 0), (2, 1), (2, 6)])
def test_aa3_reports_the_peers_fields(source, reason):
    _, out = fsm.run("Sta6", "Evt16", fsm.Context("Evt16", "acceptor", pdu=AAbort(source, reason)))
    assert out.indications == (Aborted(source, reason, True),) and out.close and out.next_state == "Sta1"


def test_aa1_source_user_for_a_pdu_and_as_given_for_the_user():
    _, out = fsm.run("Sta2", "Evt19", fsm.Context("Evt19", "acceptor", error=_err(1)))
    assert out.send == (AAbort(C.ABORT_SOURCE_USER, 0),) and out.artim == fsm.ARTIM_RESTART
    _, out = fsm.run("Sta6", "Evt15", fsm.Context("Evt15", "acceptor", pdu=AAbort(2, 5)))
    assert out.send == (AAbort(2, 5),)


@pytest.mark.parametrize("reason", [1, 2, 4, 5, 6])
def test_aa8_and_aa7_reason_from_error(reason):
    err = _err(reason)
    _, out = fsm.run("Sta6", "Evt19", fsm.Context("Evt19", "acceptor", error=err))
    assert out.send == (AAbort(2, reason),) and out.indications == (Aborted(2, reason, False, err),)
    _, out = fsm.run("Sta13", "Evt19", fsm.Context("Evt19", "acceptor", error=err))
    assert out.send == (AAbort(2, reason),) and out.artim is None


def test_aa8_unexpected_pdu_reason():
    _, out = fsm.run("Sta6", "Evt6", fsm.Context("Evt6", "acceptor", pdu=make_rq(), state="Sta6"))
    assert out.send == (AAbort(2, C.ABORT_REASON_UNEXPECTED_PDU),)
    (ind,) = out.indications
    assert ind.reason == 2 and ind.error.clause == "PS3.8 9.2.3 Table 9-10 (Sta6, Evt6)"
    assert "A-ASSOCIATE-RQ PDU" in ind.error.message


def _err(reason: int) -> RemoteProtocolError:
    return RemoteProtocolError("test fault", "PS3.8 9.3", reason=reason)


# --------------------------------------------------------------------------
# The table printed by ``dicomconf table``


@pytest.mark.parametrize("events_as_rows", [False, True])
def test_table_cli_grid_round_trips(events_as_rows):
    rows = grid(events_as_rows)
    header = rows[0][1:]
    found = {}
    for row in rows[1:]:
        for col, cell in zip(header, row[1:]):
            if cell:
                key = (col, row[0]) if events_as_rows else (row[0], col)
                found[key] = cell
    assert found == EXPECTED


def test_table_cli_run(capsys):
    import argparse

    from dicomconf import table_cli

    parser = argparse.ArgumentParser()
    table_cli.add_arguments(parser)
    assert table_cli.run(parser.parse_args(["--format", "csv", "--legend"])) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "," + ",".join(EVENT_NAMES)
    assert out.splitlines()[6].split(",")[1:] == [EXPECTED.get(("Sta6", e), "") for e in EVENT_NAMES]
    assert "AA-8   Send A-ABORT PDU (service-provider source)" in out
    md = render(grid(), "markdown").splitlines()
    assert md[1].count("---") == 20 and md[2].startswith("| Sta1 | AE-1 |")


# --------------------------------------------------------------------------
# Driving an Association into each state and firing each event


def make_rq(max_length: int = 16382) -> AAssociateRQ:
    return AAssociateRQ(
        "ACCEPTOR",
        "REQUESTOR",
        (PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),),
        UserInformation((MaximumLength(max_length), ImplementationClassUID("1.2.826.0.1.3680043.9.9999"))),
    )


def make_ac(max_length: int = 16382) -> AAssociateAC:
    return AAssociateAC(
        "ACCEPTOR",
        "REQUESTOR",
        (PresentationContextAC(1, C.PC_ACCEPTANCE, C.IMPLICIT_VR_LITTLE_ENDIAN),),
        UserInformation((MaximumLength(max_length), ImplementationClassUID("1.2.826.0.1.3680043.9.9999"))),
    )


RJ = AAssociateRJ(C.RJ_RESULT_PERMANENT, C.RJ_SOURCE_USER, C.RJ_USER_NO_REASON)
UNKNOWN_PDU = bytes.fromhex("08 00 00000004 00000000")
PDATA_ECHO = b"".join(dimse.fragment(dimse.c_echo_rq(7), 0))

PDU_BYTES = {
    "Evt3": make_ac().encode(),
    "Evt4": RJ.encode(),
    "Evt6": make_rq().encode(),
    "Evt10": PDATA_ECHO,
    "Evt12": AReleaseRQ().encode(),
    "Evt13": AReleaseRP().encode(),
    "Evt16": AAbort(C.ABORT_SOURCE_USER, 0).encode(),
    "Evt19": UNKNOWN_PDU,
}


def drive(state: str, role: str) -> Association | None:
    """An association brought to ``state`` through legal inputs only, or None if ``role`` never reaches it."""
    a = Association(role)
    steps = PATHS[role].get(state)
    if steps is None:
        return None
    for step in steps:
        step(a)
        a.data_to_send()
    assert a.state == state
    return a


def _connect(a):
    a.connection_made()


def _send(p):
    return lambda a: a.send(p() if callable(p) else p)


def _recv(b):
    return lambda a: a.receive_data(b)


_ACC_STA3 = [_connect, _recv(make_rq().encode())]
_ACC_STA6 = _ACC_STA3 + [_send(make_ac())]
_REQ_STA5 = [_send(make_rq()), _connect]
_REQ_STA6 = _REQ_STA5 + [_recv(make_ac().encode())]
PATHS = {
    "acceptor": {
        "Sta1": [],
        "Sta2": [_connect],
        "Sta3": _ACC_STA3,
        "Sta6": _ACC_STA6,
        "Sta7": _ACC_STA6 + [_send(AReleaseRQ())],
        "Sta8": _ACC_STA6 + [_recv(AReleaseRQ().encode())],
        "Sta10": _ACC_STA6 + [_send(AReleaseRQ()), _recv(AReleaseRQ().encode())],
        "Sta12": _ACC_STA6 + [_send(AReleaseRQ()), _recv(AReleaseRQ().encode()), _recv(AReleaseRP().encode())],
        "Sta13": _ACC_STA3 + [_send(RJ)],
    },
    "requestor": {
        "Sta1": [],
        "Sta4": [_send(make_rq())],
        "Sta5": _REQ_STA5,
        "Sta6": _REQ_STA6,
        "Sta7": _REQ_STA6 + [_send(AReleaseRQ())],
        "Sta8": _REQ_STA6 + [_recv(AReleaseRQ().encode())],
        "Sta9": _REQ_STA6 + [_send(AReleaseRQ()), _recv(AReleaseRQ().encode())],
        "Sta11": _REQ_STA6 + [_send(AReleaseRQ()), _recv(AReleaseRQ().encode()), _send(AReleaseRP())],
        "Sta13": _REQ_STA6 + [_recv(AReleaseRQ().encode()), _send(AReleaseRP())],
    },
}


def fire(a: Association, event: str):
    """Cause ``event`` through the public API; return (events, bytes written)."""
    if event in PDU_BYTES:
        events = a.receive_data(PDU_BYTES[event])
        return events, a.data_to_send()
    if event in ("Evt2", "Evt5"):
        return a.connection_made(), a.data_to_send()
    if event == "Evt17":
        return a.connection_lost(), a.data_to_send()
    if event == "Evt18":
        return a.timer_expired(), a.data_to_send()
    primitive = {
        "Evt1": make_rq(),
        "Evt7": make_ac(),
        "Evt8": RJ,
        "Evt9": dimse.c_echo_rq(9),
        "Evt11": AReleaseRQ(),
        "Evt14": AReleaseRP(),
        "Evt15": AAbort(),
    }[event]
    out = a.send(primitive)
    return [], out + a.data_to_send()


LOCAL_PRIMITIVES = {"Evt1", "Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"}


def expressible(event: str, role: str, state: str) -> bool:
    """Whether the public API can cause ``event`` for ``role`` (transport events belong to one role each)."""
    if event == "Evt5" or (event == "Evt1"):
        return role == ("acceptor" if event == "Evt5" else "requestor")
    if event == "Evt2":
        return role == "requestor" and state != "Sta1"  # before AE-1 the connection is only recorded
    return True


CASES = [
    pytest.param(state, event, role, id=f"{state}-{event}-{role}")
    for state, event in ALL_CELLS
    for role in ("acceptor", "requestor")
    if state in PATHS[role] and expressible(event, role, state)
]


def sent_pdus(data: bytes) -> list:
    return [decode_pdu(p) for p in PDUReader().feed(data)]


@pytest.mark.parametrize("state,event,role", CASES)
def test_cell_on_association(state, event, role):
    a = drive(state, role)
    action = EXPECTED.get((state, event))
    if action is None:
        with pytest.raises(LocalProtocolError):
            fire(a, event)
        assert a.state == state
        return
    artim_before, starts_before = a.artim_running, a.artim_starts
    events, out = fire(a, event)
    effects = EFFECTS[action]
    nxt = expected_next(action, role)
    assert a.state == nxt
    assert a.last_transition == (state, event, action, nxt)
    pdus = sent_pdus(out)
    assert [p.pdu_type for p in pdus] == effects["sends"]
    assert a.artim_running == (artim_before if effects["artim"] is None else effects["artim"])
    assert a.artim_running == (nxt in ("Sta2", "Sta13"))  # ARTIM runs only while awaiting RQ or close
    assert a.artim_starts == starts_before + (effects["artim"] is True)  # AA-1 restarts even a running ARTIM
    assert a.should_close == effects["close"]
    indications = [type(e) for e in events if not isinstance(e, (PDUReceived, ConnectionClosed))]
    assert indications == effects["ind"]
    if event not in LOCAL_PRIMITIVES:  # send() returns bytes, not events
        assert any(isinstance(e, ConnectionClosed) for e in events) == (nxt == "Sta1")
    if action in ("AA-1",):
        assert pdus[0].source == C.ABORT_SOURCE_USER
    if action in ("AA-7", "AA-8"):
        expected_reason = C.ABORT_REASON_UNRECOGNIZED_PDU if event == "Evt19" else C.ABORT_REASON_UNEXPECTED_PDU
        assert pdus[0] == AAbort(C.ABORT_SOURCE_PROVIDER, expected_reason)
        assert a.error is not None and a.error.reason == expected_reason
    if action in ("DT-2", "AR-6"):
        (msg,) = [e.message for e in events if isinstance(e, MessageReceived)]
        assert msg.name == "C-ECHO-RQ" and msg.message_id == 7


@pytest.mark.parametrize("state", STATE_NAMES)
def test_every_state_is_reached_by_driving(state):
    assert any(drive(state, role) is not None for role in ("acceptor", "requestor"))
