"""ARTIM restarts: the driver follows ``artim_starts``, not only ``artim_running`` (PS3.8 9.2.3, Table 9-10 AA-1)."""

from __future__ import annotations

import time

import pytest
from scp_testkit import RELEASE_RQ, RawClient, abort_fields

pytestmark = pytest.mark.network

ARTIM = 1.0


def test_aa1_in_sta2_restarts_the_running_artim(scp_factory):
    """Sta2 has ARTIM running (AE-5); an A-RELEASE-RQ there is AA-1, which restarts it.

    The connection must then stay open for a whole ARTIM period after the
    A-ABORT, not only for what was left of the first period.
    """
    handle = scp_factory(artim_timeout=ARTIM, idle_timeout=None)
    with RawClient(handle.port) as client:
        time.sleep(ARTIM * 0.6)
        client.send(RELEASE_RQ)
        abort_fields(client.recv_pdu(timeout=ARTIM))
        elapsed = client.wait_closed(ARTIM * 3)
    assert elapsed is not None, "not closed by the restarted ARTIM"
    assert elapsed >= ARTIM * 0.8, f"closed {elapsed:.3f}s after the A-ABORT: ARTIM was not restarted"
