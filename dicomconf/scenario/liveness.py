"""A target that dies mid-run: bounded scenarios, and where it stopped answering.

Theory of operation
-------------------
A verdict is *passed* only when the target was seen alive at the point
tested, and a dead target must not cost a timeout per step of every scenario
left.  :class:`TargetWatch` keeps, for one process of the run, whether the
named target still answers:

* after a scenario that did not pass, it asks (the same gentle check as the
  run's preflight, :func:`dicomconf.scenario.preflight.check_target`, bounded
  by :data:`LIVENESS_TIMEOUT`).  If nobody answers, the scenario at which the
  target stopped answering is recorded (the report's ``run.target_lost``);
* before each later scenario it asks again (at most every
  :data:`RECHECK_INTERVAL` seconds): while the target does not answer, the
  scenario is not played (:class:`TargetLost`, an *error* verdict naming that
  scenario); once it answers again, scenarios run as before;
* a scenario that passed without a single DICOM PDU from the target (it
  expected only a close, or silence) stands only if the target then answers
  a Verification association: a listener that closes every connection at
  once, or never answers, passes nothing.

A rejection for our AE titles is an answer: the target is alive.  After a
disruptive scenario, :meth:`TargetWatch.settle` waits out the profile's ARTIM
(when the scenario opened several connections, which a target may count
against its limits until then) and then until the target accepts an
association again (at most
:data:`MAX_SETTLE` seconds), so that connections the scenario left for the
target's timers do not reject the next scenario: verdicts do not depend on
the order scenarios run in.

:func:`time_limit` is the bound of a whole scenario (the engine's watchdog,
:meth:`dicomconf.scenario.engine.Player.run`): ``--scenario-timeout``, else
120 s plus twice the longest timer the profile claims, so that scenarios
which wait for ARTIM or the idle timeout (PS3.8 9.1.5) fit.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Callable

from dicomconf.scenario.preflight import check_target
from dicomconf.scenario.profile import Profile

LIVENESS_TIMEOUT = 3.0  # seconds: does a target that just failed a scenario still answer?
RECHECK_INTERVAL = 10.0  # seconds between two checks of a target that stopped answering
MAX_SETTLE = 12.0  # seconds at most after a disruptive scenario
BASE_TIME_LIMIT = 120.0


class TargetLost(Exception):
    """The target stopped answering earlier in the run; this scenario was not played."""


def time_limit(profile: Profile, override: float | None = None) -> float:
    """The time limit of one scenario against a target described by ``profile``."""
    if override:
        return override
    timers = [t for t in (profile.timers.artim, profile.timers.idle) if t]
    return BASE_TIME_LIMIT + 2 * max(timers, default=0.0)


class TargetWatch:
    """Whether the named target still answers (see the module docstring)."""

    def __init__(self, target: Callable[[], Any], called_ae: str, calling_ae: str,
                 timeout: float = LIVENESS_TIMEOUT) -> None:
        self._target = target
        self.called_ae, self.calling_ae, self.timeout = called_ae, calling_ae, timeout
        self.lost: dict[str, Any] | None = None
        self._checked_at = 0.0

    def settle(self, artim: float | None, bound: float = MAX_SETTLE) -> None:
        """After a disruptive scenario: let the connections it left behind go (a target counts
        them against its limits until its ARTIM fires, PS3.8 9.1.5), then wait (at most ``bound``
        seconds in all) until the target accepts a Verification association again.  Accepting
        one association does not prove the leftovers are gone, hence the ARTIM wait when the
        profile knows the timer.  A target that keeps rejecting is left to the next scenario."""
        deadline = time.monotonic() + bound
        if artim:
            time.sleep(min(artim + 0.5, bound))
        while True:
            result = check_target(self._target(), self.called_ae, self.calling_ae, self.timeout)
            if result.cause == "accepted" or not result.ok or time.monotonic() >= deadline:
                return
            time.sleep(0.2)

    def alive_after_silent_pass(self) -> Any:
        """A scenario passed without one DICOM PDU from the target: is it alive at all?  The
        result of the check (``ok`` False: the pass cannot stand)."""
        result, _alive = self._answers()
        return result

    def _answers(self) -> Any:
        result = check_target(self._target(), self.called_ae, self.calling_ae, self.timeout)
        return result, result.ok or result.cause in ("called-ae", "calling-ae")

    def after_failure(self, scenario_id: str) -> dict[str, Any] | None:
        """After a scenario that did not pass: the record of where the target stopped, if it did."""
        if self.lost is not None:
            return None
        result, alive = self._answers()
        if alive:
            return None
        self._checked_at = time.monotonic()
        self.lost = {
            "at_scenario": scenario_id,
            "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "cause": result.cause,
            "message": result.message,
        }
        return self.lost

    def before(self, scenario_id: str) -> None:
        """Before a scenario: raise :class:`TargetLost` while a target that stopped still does not answer
        (asked again at most every :data:`RECHECK_INTERVAL` seconds, so a hung target costs little)."""
        if self.lost is None:
            return
        now = time.monotonic()
        if now - self._checked_at >= RECHECK_INTERVAL:
            self._checked_at = now
            _result, alive = self._answers()
            if alive:
                self.lost = None
                return
        raise TargetLost(f"not run: the target stopped answering at scenario {self.lost['at_scenario']} "
                         f"({self.lost['message']}), and still does not answer")


__all__ = ["LIVENESS_TIMEOUT", "TargetLost", "TargetWatch", "time_limit"]
