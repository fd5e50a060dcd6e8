"""PS3.8 Table 9-10 against an independent implementation's transcription (pynetdicom)."""

from __future__ import annotations

import pytest

from dicomconf.ul import fsm

pn_fsm = pytest.importorskip("pynetdicom.fsm")

CELLS = [(s, e) for s in fsm.STATES for e in fsm.EVENTS]


@pytest.mark.parametrize("state,event", CELLS)
def test_cell_agrees_with_pynetdicom(state, event):
    # pynetdicom keys its table (event, state) and leaves invalid cells out, as we do.
    assert fsm.TRANSITIONS.get((state, event)) == pn_fsm.TRANSITION_TABLE.get((event, state))
