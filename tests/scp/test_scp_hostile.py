"""The reference SCP as its own process under 1,200 hostile connections (PS3.8 9.1.5, 9.2, 9.3).

A bounded version of ``benchmarks/fuzz_live.py``: ``dicomconf scp --port 0``
with ARTIM 1 s and idle 2 s gets 300 connections of each kind of
``benchmarks/hostile.py`` (random bytes, mutated A-ASSOCIATE-RQs, a valid
A-ASSOCIATE-RQ then a bad P-DATA-TF, stalled half PDUs and silences).  Every
one must be answered or closed by the SCP within its timers plus a margin;
then a good association still echoes, its open fds come back to what they
were, it logged no traceback and it exits 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import hostile as H  # noqa: E402
from bench_scp_common import associate_rq, echo_cycle  # noqa: E402

PER_KIND = 300
TIMERS = H.Timers(artim=1.0, idle=2.0, margin=4.0)
# What an answer may be (the first PDU type the SCP sent), per kind: PS3.8 Table 9-10.
ANSWERS = {
    "random": {"A-ABORT", "A-ASSOCIATE-RJ", "A-ASSOCIATE-AC"},
    "mutated-rq": {"A-ABORT", "A-ASSOCIATE-RJ", "A-ASSOCIATE-AC"},
    "bad-pdata": {"A-ABORT", "P-DATA-TF", "A-RELEASE-RP", "A-ASSOCIATE-RJ"},
}


@pytest.fixture
def scp_process():
    scp = H.SCPProcess(H.fuzz_config(TIMERS))
    yield scp
    scp.cleanup()


def play(port: int) -> list[H.Outcome]:
    rng = random.Random(16)
    attacks = [H.make_attack(rng, kind) for kind in H.KINDS for _ in range(PER_KIND)]
    rng.shuffle(attacks)
    outcomes: list[H.Outcome] = []
    asyncio.run(H.attack_many(port, attacks, TIMERS, 128, outcomes.append))
    return outcomes


def test_hostile_connections_are_answered_or_closed_and_leave_nothing_behind(scp_process):
    scp = scp_process
    echo_cycle(scp.port, associate_rq())  # warm up: lazy imports and caches are paid for
    fds_before = scp.fds()

    outcomes = play(scp.port)

    assert len(outcomes) == PER_KIND * len(H.KINDS)
    table = collections.defaultdict(collections.Counter)
    for o in outcomes:
        table[o.attack.kind][o.outcome] += 1
    assert not [o for o in outcomes if o.outcome in ("hang", "connect-failed")], dict(table)
    for kind, allowed in ANSWERS.items():
        answers = {o.detail for o in outcomes if o.attack.kind == kind and o.outcome == "answered"}
        assert answers and answers <= allowed, (kind, answers)
    # bad P-DATA-TF inside an association is always answered (A-ABORT, AA-8, or a DIMSE response)
    assert table["bad-pdata"]["answered"] == PER_KIND, dict(table["bad-pdata"])
    # a stalled connection is closed by the SCP itself, by ARTIM or the idle timer
    assert table["stalled"]["closed"] == PER_KIND, dict(table["stalled"])
    assert max(o.seconds for o in outcomes if o.attack.kind == "stalled") < TIMERS.idle + TIMERS.artim + TIMERS.margin

    assert scp.alive()
    echo_cycle(scp.port, associate_rq())  # a good client is still served
    deadline = time.monotonic() + 5
    while scp.fds() > fds_before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scp.fds() <= fds_before
    outcomes_logged = scp.outcomes()
    assert outcomes_logged["aborted"] and outcomes_logged["ARTIM expired"] and outcomes_logged["idle"]
    assert scp.tracebacks() == []
    assert scp.stop() == 0
