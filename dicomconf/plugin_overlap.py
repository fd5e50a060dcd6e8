"""Waiting scenarios played early, side by side, against private copies of the embedded peers.

Theory of operation
-------------------
Most of a default run's time is deliberate waiting: a scenario that checks the
acceptor's ARTIM or idle timer (PS3.8 9.1.5, Table 9-10 Evt18), a silence
window, or an SCU's own timeouts (PS3.8 7.3, 9.2 Evt15) spends seconds with
nothing to do.  When the run's peers are the embedded ones (no ``--target``:
the reference SCP; no ``--scu-command``/``--scu-listen``: the reference SCU),
:class:`Overlap` starts those scenarios as the test loop starts, each on a
thread of a bounded pool (``--dicomconf-overlap N`` threads, default
:data:`DEFAULT_THREADS`; 0 turns it off):

* an SCP-testing scenario (``role: scu``) against a reference SCP of its own,
  started from the run's profile for it alone and stopped after it, so it runs
  alone against its target as a disruptive scenario must
  (:mod:`dicomconf.scenario.exclusive`) and no other scenario's associations
  count against its association limit or disturb its timers;
* an SCU-testing scenario (``role: scp``) as in the item: it has its own fake
  SCP listener on a free port and its own reference SCU thread already.

The scenario's item still runs in its place: :meth:`Overlap.collect` waits for
that scenario's play and takes over what it left (the verdict raised as the
play raised it, findings, steps, pcap, duration, the SCU's record), so the
order of the records, the reports (JSON, JUnit, HTML), the pcaps and the
baseline's judgement are those of a serial run.  A rerun (``--reruns``) plays
the scenario again in the item itself, like any other.  A scenario that the
private SCP's profile, once started, cannot run is left to its item, which
skips it with the usual reason.

Which scenarios wait is read from their steps (:func:`waits`): a template on
the profile's timers or the SCU profile's timeouts, a ``silence``
expectation, a ``sleep`` step, a ``delay``/``pending_delay``, or an
``accept: {none: true}`` (a wait for nothing to come).  The rest run in their
items, one after another, as before.

Off under pytest-xdist (a worker is sent its scenarios one batch at a time,
so it cannot start them early, and the workers overlap scenarios already);
against a named target SCP (its association limit, its other users and the
exclusive rules of :mod:`dicomconf.scenario.exclusive` apply: one scenario at
a time, as a serial run does); for a named SCU (a command or a device);
under ``--collect-only``.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

DEFAULT_THREADS = 24  # waiting scenarios at once; each mostly sleeps on a socket or a timer
_WAIT_MARKS = re.compile(
    r"profile\.(?:artim|idle|timers|timeouts)\b"  # a template on a timer (PS3.8 9.1.5) or an SCU timeout
    r'|"(?:silence|sleep|delay|pending_delay|none)"'  # a window of nothing, a pause, a wait for no connection
)


def waits(scenario: Any) -> bool:
    """Whether ``scenario`` spends time waiting on purpose (see the module docstring)."""

    def flat(steps: Any) -> list[Any]:
        return [(s.kind, s.args, [flat(b) for b in s.branches]) for s in steps]

    return bool(_WAIT_MARKS.search(json.dumps(flat(scenario.steps), default=str)))


@dataclass
class Early:
    """What a scenario played early left for its item."""

    error: BaseException | None = None
    duration_s: float = 0.0
    findings: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    pcap: str | None = None
    scu: dict[str, Any] | None = None


class Overlap:
    """The pool that plays the waiting scenarios early (see the module docstring)."""

    def __init__(self, config: pytest.Config, state: Any) -> None:
        self.config = config
        self.state = state
        given = config.option.dicomconf_overlap
        self.threads = DEFAULT_THREADS if given is None else given
        self.base_profile: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future] = {}

    def active(self) -> bool:
        opt = self.config.option
        return bool(self.threads and self.threads > 0 and not hasattr(self.config, "workerinput")
                    and not getattr(opt, "numprocesses", None) and not opt.collectonly)

    def eligible(self, item: Any) -> bool:
        """An item whose scenario waits and runs here against an embedded peer (module docstring)."""
        from dicomconf.scenario.profile import unmet

        scenario = getattr(getattr(item, "entry", None), "scenario", None)
        if scenario is None or item.entry.error is not None or not waits(scenario):
            return False
        side = self.state.scu_side
        if side.skip_reason(scenario):
            return False
        if scenario.role == "scp":
            return side.mode == "embedded"
        return self.state.target_address is None and unmet(self.base_profile, scenario.requires) is None

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session):
        if self.active():
            self.start(session.items)
        try:
            return (yield)
        finally:
            self.stop()

    def start(self, items: list[Any]) -> None:
        """Submit every eligible item's scenario, in the run's order."""
        self.base_profile = self.state.profile  # as the options made it; the SCPs started here fill in ports
        chosen = [item for item in items if self.eligible(item)]
        if not chosen:
            return
        self._pool = ThreadPoolExecutor(max_workers=min(self.threads, len(chosen)),
                                        thread_name_prefix="dicomconf-overlap")
        for item in chosen:
            self._futures[item.nodeid] = self._pool.submit(self._play, item)

    def stop(self) -> None:
        """Drop the plays not started (a run stopped by ``-x``); wait for those under way."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures.clear()

    def collect(self, item: Any) -> bool:
        """Give ``item`` what its early play left and raise its verdict; False when it was not played."""
        future = self._futures.pop(item.nodeid, None)
        if future is None:
            return False
        early = future.result()
        if early is None:
            return False
        item.duration_s, item.findings, item.steps = early.duration_s, early.findings, early.steps
        item.pcap, item.scu = early.pcap, early.scu
        if early.error is not None:
            raise early.error
        return True

    # ---------------------------------------------------------------- plays (on the pool's threads)

    def _play(self, item: Any) -> Early | None:
        scenario = item.entry.scenario
        pcap = self.state.pcap_for(scenario.id)
        if scenario.role == "scp":
            return self._play_scu_test(scenario, pcap)
        return self._play_scp_test(scenario, pcap)

    def _play_scp_test(self, scenario: Any, pcap: Any) -> Early | None:
        """Against a reference SCP of its own, started from the run's profile and stopped after."""
        from dicomconf.scenario.liveness import time_limit
        from dicomconf.scenario.profile import unmet
        from dicomconf.scenario.requestor import Runner
        from dicomconf.scenario.target_setup import EmbeddedTarget

        embedded = EmbeddedTarget()
        target, profile = embedded.start(self.state.options, self.base_profile)
        try:
            if unmet(profile, scenario.requires):
                return None  # the item skips it, with the reason
            runner = Runner(scenario, profile, target)
            runner.listener = embedded.listener
            early = Early()
            t0 = time.monotonic()
            try:
                runner.run(pcap, time_limit=time_limit(profile, self.config.option.scenario_timeout))
            except Exception as exc:  # noqa: BLE001 - the verdict, raised again by the item
                early.error = exc
            finally:
                early.duration_s = time.monotonic() - t0
                early.findings, early.steps = runner.findings, runner.trace
                early.pcap = str(pcap) if pcap.exists() else None
            return early
        finally:
            embedded.stop()

    def _play_scu_test(self, scenario: Any, pcap: Any) -> Early:
        """As the item plays it (:meth:`dicomconf.scenario.scu_side.SCUSide.play`)."""
        from dicomconf.scenario.scu_side import Played

        side = self.state.scu_side
        played = Played()
        early = Early()
        t0 = time.monotonic()
        try:
            side.play(scenario, pcap, side.time_limit(self.config.option.scenario_timeout), played)
        except Exception as exc:  # noqa: BLE001 - the verdict, raised again by the item
            early.error = exc
        finally:
            early.duration_s = time.monotonic() - t0
            early.findings, early.steps = played.findings, played.steps
            early.pcap = str(played.pcap) if played.pcap else None
            early.scu = played.scu
        return early
