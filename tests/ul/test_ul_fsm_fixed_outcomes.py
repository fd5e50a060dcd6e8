"""The outcomes fsm decides once at import for context-free actions are those run() decides per event."""

from __future__ import annotations

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul import fsm
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.pdu import AAbort, AReleaseRP, AReleaseRQ


def _contexts(state: str, event: str):
    error = RemoteProtocolError("bad", "PS3.8 9.3.1", reason=C.ABORT_REASON_INVALID_PARAMETER_VALUE)
    for role in ("requestor", "acceptor"):
        yield fsm.Context(event, role, state=state)
        yield fsm.Context(event, role, pdu=AReleaseRQ(), state=state)
        yield fsm.Context(event, role, pdu=AAbort(2, 6), error=error, state=state)
        yield fsm.Context(event, role, pdu=AReleaseRP(), messages=("m",), rejection="rj", state=state)


@pytest.mark.parametrize("cell", sorted(fsm.FIXED_OUTCOMES))
def test_fixed_outcome_is_what_the_action_decides_for_any_context(cell):
    state, event = cell
    name, outcome = fsm.FIXED_OUTCOMES[cell]
    assert name == fsm.TRANSITIONS[cell]
    assert outcome.next_state in fsm.ACTIONS[name].next_states
    for ctx in _contexts(state, event):
        assert fsm.run(state, event, ctx) == (name, outcome)


def test_the_actions_that_read_their_context_are_not_fixed():
    fixed = {name for name, _ in fsm.FIXED_OUTCOMES.values()}
    assert fixed == {"AE-1", "AE-5", "AR-2", "AR-3", "AR-5", "AR-10", "AA-2", "AA-4", "AA-5", "AA-6"}
    # Every cell of a fixed action is fixed, and no other cell is.
    assert set(fsm.FIXED_OUTCOMES) == {cell for cell, name in fsm.TRANSITIONS.items() if name in fixed}
