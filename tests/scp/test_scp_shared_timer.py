"""ARTIM and the idle deadline share one timer per connection: each still fires when it should.

The driver arms one event-loop timer for the earliest deadline and, when a
deadline moves later, lets the armed timer fire early and re-arm.  These
cases put the two deadlines in each order (PS3.8 9.1.5 ARTIM, 9.2.3 Sta13).
"""

from __future__ import annotations

import time

import pytest
from scp_testkit import RELEASE_RQ, RawClient, abort_fields, echo_rq

from dicomconf.ul import constants as C

pytestmark = pytest.mark.network


def associated(port: int) -> RawClient:
    client = RawClient(port)
    assert client.associate()[0] == C.A_ASSOCIATE_AC
    return client


def test_idle_shorter_than_the_artim_left_aborts_on_time(scp_factory):
    """ARTIM (Sta2) is armed for 4 s; after the RQ the 0.6 s idle deadline is earlier and must win."""
    handle = scp_factory(artim_timeout=4.0, idle_timeout=0.6)
    with associated(handle.port) as client:
        start = time.monotonic()
        reply = client.recv_pdu(timeout=2.5)
        waited = time.monotonic() - start
        assert reply is not None and reply[0] == C.A_ABORT, "no A-ABORT from the idle timer"
        abort_fields(reply)
        assert 0.45 <= waited < 2.0, f"idle abort after {waited:.3f}s, expected about 0.6s"
        assert client.wait_closed(1.0) is not None


def test_idle_longer_than_the_artim_left_fires_after_the_early_timer(scp_factory):
    """The timer armed for ARTIM (0.5 s) fires first, finds nothing due and re-arms for idle (1.2 s)."""
    handle = scp_factory(artim_timeout=0.5, idle_timeout=1.2)
    with associated(handle.port) as client:
        start = time.monotonic()
        reply = client.recv_pdu(timeout=3.0)
        waited = time.monotonic() - start
        assert reply is not None and reply[0] == C.A_ABORT
        assert 1.0 <= waited < 2.5, f"idle abort after {waited:.3f}s, expected about 1.2s"


def test_each_pdu_moves_the_idle_deadline(scp_factory):
    """PDUs every 0.4 s keep a 0.8 s idle deadline from expiring; silence then ends it."""
    handle = scp_factory(artim_timeout=1.0, idle_timeout=0.8)
    with associated(handle.port) as client:
        for message_id in range(1, 5):
            time.sleep(0.4)
            client.send(echo_rq(message_id))
            reply = client.recv_pdu(timeout=1.0)
            assert reply is not None and reply[0] == C.P_DATA_TF, "aborted although PDUs kept arriving"
        start = time.monotonic()
        reply = client.recv_pdu(timeout=2.5)
        assert reply is not None and reply[0] == C.A_ABORT
        assert time.monotonic() - start >= 0.6


def test_artim_after_release_fires_although_idle_timer_is_later(scp_factory):
    """Sta13 ARTIM (0.5 s) is earlier than the armed idle deadline (5 s): it must replace it."""
    handle = scp_factory(artim_timeout=0.5, idle_timeout=5.0)
    with associated(handle.port) as client:
        time.sleep(0.6)  # past the Sta2 ARTIM period, so the armed timer now serves the idle deadline
        client.send(RELEASE_RQ)
        reply = client.recv_pdu(timeout=1.0)
        assert reply is not None and reply[0] == C.A_RELEASE_RP
        elapsed = client.wait_closed(3.0)
        assert elapsed is not None and 0.35 <= elapsed < 2.0, f"closed after {elapsed}s, expected about 0.5s"
