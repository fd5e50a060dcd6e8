"""The fake SCP (``role: scp`` scenarios) never hangs nor raises against a hostile SCU (PS3.8 9.1.5).

Hostile SCUs from ``benchmarks/hostile.py`` (random bytes, mutated
A-ASSOCIATE-RQs, bad P-DATA-TF, stalled half PDUs, floods of PDUs while a
step waits) play against a :class:`~dicomconf.scenario.fake_scp.FakeSCP` on
127.0.0.1 (``benchmarks/fuzz_fake_scp.py``, the CI-sized version of
``python benchmarks/fuzz_live.py --direction fake-scp``): every run ends
within its script's own waits plus a margin, with a verdict, never a
traceback nor the engine's time limit.  Every fake SCP is stopped by the case.
"""

from __future__ import annotations

import os
import random
import sys
from types import SimpleNamespace

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))

import fuzz_fake_scp as F
import hostile as H

pytestmark = pytest.mark.network

ARGS = SimpleNamespace(within=0.5, margin=2.0, flood_seconds=8.0, seed=1, workers=6, seconds=25.0)


@pytest.fixture(scope="module")
def built():
    return F.scenarios(ARGS.within)


@pytest.mark.parametrize("script, variant", [
    ("release-only", "cancel-rq"),      # the release step passes over C-CANCEL-RQs: within its bound
    ("leave-open", "cancel-rq"),        # after the last step the SCU is served: within finish_within
    ("echo", "echo-rq"),
    ("echo", "endless-data-set"),       # a C-STORE whose data set never ends
    ("store", "bad-pdata"),
    ("echo", "associate-rq"),
    ("release-only", "release-rp"),
])
def test_a_flooding_scu_does_not_hold_the_fake_scp(built, script, variant):
    attack = H.flood(random.Random(1), variant)
    outcome = F.play_case(script, built[script], attack, ARGS)
    assert outcome["judged"] in ("passed", "failed"), outcome
    bound = F.STEPS[script] * ARGS.within + 2 * ARGS.within + ARGS.margin
    assert outcome["seconds"] < bound + 1.0, outcome
    assert outcome["client"] in ("closed", "reset"), outcome  # the fake SCP ended the flood, not the flooder


def test_hostile_scus_against_every_script(built):
    fds0 = F.fds()
    cases = F.draw(random.Random(ARGS.seed), 48)
    outcomes = [F.play_case(script, built[script], attack, ARGS) for script, attack in cases if attack.kind != "flood"]
    bad = [o for o in outcomes if o["judged"] not in ("passed", "failed")]
    assert not bad, bad
    assert {o["kind"] for o in outcomes} >= {"random", "mutated-rq", "bad-pdata"}
    assert F.fds() <= fds0 + 2
