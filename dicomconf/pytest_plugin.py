"""The pytest plugin: YAML scenarios as test items, against a target SCP.

Theory of operation
-------------------
Collection follows pytest's non-python-test pattern: ``pytest_collect_file``
returns a :class:`ScenarioFile` for every ``*.yaml``/``*.yml`` file that lies
under a directory named ``scenarios`` (or was named on the command line);
the file yields one :class:`ScenarioItem` per scenario.  Files whose name
starts with ``_`` are not collected.  Nothing else is touched: in a run that
collects no scenario the plugin only adds its options, starts nothing and
writes nothing.

The target is ``--target HOST[:PORT]`` (any host name, IPv4 or IPv6 address),
else the profile's ``target:`` section, else the embedded reference SCP,
started lazily in each process (each xdist worker has its own, on a free
port) the first time a scenario runs, configured from the same profile the
scenarios see, and stopped at the end of the session
(:mod:`dicomconf.scenario.target_setup`).

Each scenario writes its pcap into the report directory.  Its result record
travels on the test report (``report.dicomconf``), which pytest-xdist
serialises to the controller with the report; the controller alone collects
the records and writes ``report.json`` and ``report.html`` at session end
(``dicomconf.report``), so ``-n 4`` and a serial run give the same reports.
JUnit properties (id, clauses, severity, area) go through
``item.user_properties`` into pytest's own ``--junitxml``.

Disruptive scenarios (``disruptive: true``) carry the registered marker
``disruptive``; against an external target each scenario runs inside the
target's cross-process lock (:mod:`dicomconf.scenario.exclusive`), exclusive
for a disruptive one, so verdicts do not depend on ``-n``.  Scenarios left out
of the run (``-m "not disruptive"``, ``-k``) are recorded with the reason by
``pytest_deselected``; xdist workers send theirs in ``workeroutput`` and the
controller puts them in the reports.

Before anything runs, a named target is checked once (``pytest_cmdline_main``,
in the controller, before xdist starts workers: :mod:`dicomconf.scenario.preflight`);
an unreachable one ends the run with one message, a report that says so and
exit code 6 (:mod:`dicomconf.exitcodes`).  During the run each process keeps a
:class:`~dicomconf.scenario.liveness.TargetWatch`: after a scenario that did
not pass it asks whether the target still answers, and the report says at
which scenario it stopped; every scenario has a time limit.

Severity: a failed *should* scenario is reported (outcome "failed" in every
report, shown as ``SHOULD-FAIL`` in the terminal) but does not fail the run
unless ``--strict`` (pytest's own flag, which also turns on pytest's other
strictness options) or ``--dicomconf-strict`` is given: ``pytest_sessionfinish``
sets the exit status back to 0 when every failure was a should-level one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from dicomconf import reruns
from dicomconf.fixtures import dicomconf_fake_scp  # noqa: F401  (a fixture of the plugin)
from dicomconf.plugin_state import _PREFLIGHT, DicomconfState, _is_worker
from dicomconf.scenario.library import SCENARIO_SUFFIXES

_STATE = pytest.StashKey["DicomconfState"]()
_DESELECTED = pytest.StashKey[dict]()  # nodeid -> record of a scenario left out of the run


# ---------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    from dicomconf.plugin_options import add_options

    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    state = DicomconfState(config)
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "dicomconf-state")
    from dicomconf.plugin_overlap import Overlap  # waiting scenarios played early (embedded peers only)

    config.pluginmanager.register(Overlap(config, state), "dicomconf-overlap")
    config.addinivalue_line(
        "markers", "disruptive: a scenario that may disturb other users of the target; it runs alone "
                   "against it, and dicomconf run --gentle (-m 'not disruptive') leaves it out")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist: every worker writes into the controller's report directory."""
    state = node.config.stash[_STATE]
    node.workerinput["dicomconf_report_dir"] = str(state.report_dir)
    node.workerinput["dicomconf_started"] = state.started


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.stop()
        if config.pluginmanager.is_registered(state):
            config.pluginmanager.unregister(state)


# ---------------------------------------------------------------------- collection


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> "ScenarioFile | None":
    if file_path.suffix not in SCENARIO_SUFFIXES or file_path.name.startswith("_"):
        return None
    if "scenarios" in file_path.parent.parts or parent.session.isinitpath(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """A scenario file: one item per scenario it holds (valid or not)."""

    def collect(self):
        from dicomconf.scenario.model import load_file

        seen: dict[str, int] = {}
        for entry in load_file(self.path):
            name = entry.name
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name}#{seen[name]}"
            yield ScenarioItem.from_parent(self, name=name, entry=entry)


class ScenarioItem(pytest.Item):
    """One scenario, played against the target when the item runs."""

    def __init__(self, *, entry: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entry = entry
        self.failure: Any = None
        self.target_lost: dict[str, Any] | None = None
        self.pcap: str | None = None
        self.findings: list[dict] = []
        self.steps: list[dict] = []  # the steps as played (Player.trace)
        self.scu: dict[str, Any] | None = None  # how the SCU under test ran (SCU-testing scenarios)
        self.duration_s = 0.0
        raw = entry.raw if entry.scenario is None else {}
        sc = entry.scenario
        self.meta = {
            "id": sc.id if sc else raw.get("id", entry.name),
            "title": sc.title if sc else raw.get("title", ""),
            "clauses": list(sc.clauses) if sc else [str(c) for c in raw.get("clauses", []) or [] if isinstance(raw.get("clauses"), list)],
            "severity": sc.severity if sc else (raw.get("severity") if raw.get("severity") in ("must", "should") else "must"),
            "area": sc.area if sc else str(raw.get("area", "")),
            "disruptive": sc.disruptive if sc else raw.get("disruptive") is True,
            "requirement": sc.requirement if sc else str(raw.get("requirement") or ""),
            "role": sc.role if sc else ("scp" if raw.get("role") == "scp" else "scu"),
        }
        self.meta["tests"] = "SCU" if self.meta["role"] == "scp" else "SCP"
        if self.meta["disruptive"]:
            self.add_marker("disruptive")
        if entry.error is not None:  # an invalid scenario fails the same way every time: no rerun
            self.add_marker(pytest.mark.flaky(reruns=0))
        for key in ("id", "clauses", "severity", "area", "role", "tests"):
            value = self.meta[key]
            self.user_properties.append((key, ", ".join(value) if isinstance(value, list) else value))
        if self.meta["requirement"]:  # the "shall" the scenario enforces, quoted (docs/scenarios.md)
            self.user_properties.append(("requirement", self.meta["requirement"]))

    def runtest(self) -> None:
        from dicomconf.scenario import exclusive
        from dicomconf.scenario.move_listener import needs_listener
        from dicomconf.scenario.requestor import Runner
        from dicomconf.scenario.liveness import time_limit
        from dicomconf.scenario.profile import unmet

        reruns.begin_attempt(self)  # --reruns: keep the previous attempt's pcap
        if self.entry.error is not None:
            raise self.entry.error
        if self.config.pluginmanager.get_plugin("dicomconf-overlap").collect(self):
            return  # played early, beside other waiting scenarios (dicomconf.plugin_overlap)
        state: DicomconfState = self.config.stash[_STATE]
        scenario = self.entry.scenario
        reason = state.scu_side.skip_reason(scenario)
        if reason:
            pytest.skip(reason)
        if scenario.role == "scp":
            return self._run_scu_test(state, scenario)
        reason = unmet(state.profile, scenario.requires)
        if reason:
            pytest.skip(reason)
        target = state.target()
        reason = unmet(state.profile, scenario.requires)  # the started SCP may have filled in the profile
        if reason:
            pytest.skip(reason)
        watch = state.watch
        if watch is not None:
            watch.before(scenario.id)
        pcap = state.pcap_for(scenario.id)
        runner = Runner(scenario, state.profile, target)
        runner.listener = state.embedded_listener  # the embedded target's move destination (else the runner's own)
        runner.held = state.embedded_held  # store_set: the known set once per run, embedded target only
        # A disruptive scenario runs alone against an external target, whatever -n is.
        workers = int(self.config.workerinput.get("workercount", 1)) if _is_worker(self.config) else 1
        alone = exclusive.runs_alone(scenario.disruptive, state.profile.max_associations, workers,
                                     listener=state.target_address is not None and needs_listener(scenario))
        with exclusive.hold(state.target_address, alone):
            t0 = time.monotonic()
            try:
                runner.run(pcap, time_limit=time_limit(state.profile, self.config.option.scenario_timeout))
            except Exception:
                if watch is not None:
                    self.target_lost = watch.after_failure(scenario.id)
                raise
            else:
                if watch is not None and not runner.heard_dicom:
                    self._check_silent_pass(watch)
            finally:
                self.duration_s = time.monotonic() - t0
                self.findings, self.steps = runner.findings, runner.trace
                self.pcap = str(pcap) if pcap.exists() else None
                state.settle()
                if alone and watch is not None and watch.lost is None:
                    # Several connections may be left for the target's timers: wait out its ARTIM.
                    many = len(runner.all_connections) > 1
                    watch.settle(state.profile.timers.artim if many else None)

    def _run_scu_test(self, state: DicomconfState, scenario: Any) -> None:
        """An SCU-testing scenario: dicomconf plays the fake SCP (:mod:`dicomconf.scenario.scu_side`)."""
        from dicomconf.scenario.scu_side import Played

        side = state.scu_side
        played = Played()
        t0 = time.monotonic()
        try:
            side.play(scenario, state.pcap_for(scenario.id),
                      side.time_limit(self.config.option.scenario_timeout), played)
        finally:
            self.duration_s = time.monotonic() - t0
            self.findings, self.steps = played.findings, played.steps
            self.pcap = str(played.pcap) if played.pcap else None
            self.scu = played.scu

    def _check_silent_pass(self, watch: Any) -> None:
        """A pass without one DICOM PDU from the target stands only if the target is alive."""
        from dicomconf.scenario.engine import Inconclusive

        result = watch.alive_after_silent_pass()
        if not result.ok and result.cause not in ("called-ae", "calling-ae"):
            raise Inconclusive(None, "the target sent no DICOM PDU during this scenario and does not answer a "
                                     f"Verification association now ({result.message}): what the scenario "
                                     "expected (a close, or silence) proves nothing about it")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from dicomconf.scenario.engine import ScenarioFailure
        from dicomconf.scenario.loader import SourceError

        head = f"{self.meta['severity'].upper()} scenario {self.meta['id']} ({'; '.join(self.meta['clauses'])})"
        if isinstance(excinfo.value, ScenarioFailure):
            shall = f"\nrequirement: {self.meta['requirement']}" if self.meta["requirement"] else ""
            return f"{head} failed: {excinfo.value.render(self.pcap)}{shall}"
        if isinstance(excinfo.value, SourceError):
            return f"{head}: invalid scenario\n{excinfo.value}"
        from dicomconf.scenario.engine import Inconclusive
        from dicomconf.scenario.liveness import TargetLost

        if isinstance(excinfo.value, (TargetLost, Inconclusive)):
            return f"{head}: {excinfo.value}"
        return f"{head}: engine error\n" + str(super().repr_failure(excinfo))

    def reportinfo(self):
        return self.path, (self.entry.line or 1) - 1, f"scenario {self.meta['id']}"


# ---------------------------------------------------------------------- scenarios left out


def _deselect_reason(item: ScenarioItem, config: pytest.Config) -> str:
    markexpr, keyword = config.option.markexpr, config.option.keyword
    if item.meta["disruptive"] and "disruptive" in markexpr:
        return f"disruptive: may disturb other users of the target (-m {markexpr!r}; dicomconf run --gentle)"
    given = [f"{flag} {expr!r}" for flag, expr in (("-k", keyword), ("-m", markexpr)) if expr]
    return f"deselected by {' or '.join(given)}" if given else "deselected"


def pytest_deselected(items: list[pytest.Item]) -> None:
    """Record the scenarios left out of the run; xdist workers send theirs to the controller."""
    for item in items:
        if not isinstance(item, ScenarioItem):
            continue
        config = item.config
        left = config.stash.setdefault(_DESELECTED, {})
        left[item.nodeid] = {
            **item.meta,
            "file": f"{item.entry.scenario.file if item.entry.scenario else item.path}:{item.entry.line}",
            "reason": _deselect_reason(item, config),
            "nodeid": item.nodeid,
        }
        if _is_worker(config):
            config.workeroutput["dicomconf_deselected"] = list(left.values())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: gather the scenarios each worker left out (they all collect the same)."""
    left = node.config.stash.setdefault(_DESELECTED, {})
    for record in getattr(node, "workeroutput", {}).get("dicomconf_deselected", ()):
        left.setdefault(record["nodeid"], record)


# ---------------------------------------------------------------------- results


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if not isinstance(item, ScenarioItem):
        return report
    if call.when == "call" or (call.when == "setup" and not report.passed):
        from dicomconf.scenario.engine import ScenarioFailure

        if report.passed:
            outcome = "passed"
        elif report.skipped:
            outcome = "skipped"
        elif call.excinfo is not None and isinstance(call.excinfo.value, ScenarioFailure):
            outcome = "failed"
        else:
            outcome = "error"
        failure = None
        if call.excinfo is not None and outcome in ("failed", "error"):
            value = call.excinfo.value
            failure = value.details() if isinstance(value, ScenarioFailure) else {"message": str(value)}
        if failure is not None:
            failure["text"] = str(report.longrepr)
        skip_reason = None
        if outcome == "skipped" and isinstance(report.longrepr, tuple):
            skip_reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            report.longrepr = (str(item.path), item.entry.line or 1, f"Skipped: {skip_reason}")
        report.dicomconf = {
            **item.meta,
            "outcome": outcome,
            "duration_s": round(item.duration_s, 4),
            "findings": item.findings,
            "steps": item.steps,
            "pcap": item.pcap,
            "file": f"{item.entry.scenario.file if item.entry.scenario else item.path}:{item.entry.line}",
            "failure": failure,
            "skip_reason": skip_reason,
            "target_lost": item.target_lost,
            "scu": item.scu,
            "nodeid": item.nodeid,
        }
        from dicomconf.plugin_options import junit_extras

        junit_extras(item, report.dicomconf)
    return report


def pytest_assertrepr_compare(op: str, left: Any, right: Any) -> list[str] | None:
    """A failed comparison of objects holding a user identity credential shows sizes, not bytes."""
    from dicomconf.wire.secrets import assertrepr_compare

    return assertrepr_compare(op, left, right)


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    record = getattr(report, "dicomconf", None)
    if record is None or report.outcome == "rerun" or record["outcome"] != "failed" or record["severity"] != "should":
        return None
    if config.stash[_STATE].strict:
        return None
    return "should-failed", "S", ("SHOULD-FAIL", {"yellow": True})


def _names_scenarios(config: pytest.Config) -> bool:
    """True if the run's paths hold scenario files (so checking the target is worth it)."""
    for arg in config.args:
        path = Path(str(arg).split("::", 1)[0])
        if not path.is_absolute():
            path = config.invocation_params.dir / path
        if path.is_file() and path.suffix in SCENARIO_SUFFIXES:
            return True
        if path.is_dir() and any(p.suffix in SCENARIO_SUFFIXES for p in path.rglob("*.y*ml")):
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Before anything runs: does the named target answer at all? (:mod:`dicomconf.scenario.preflight`)

    Runs in the controller only, before xdist starts workers, and only when a target was
    named and the run's paths hold scenarios.  An unreachable target ends the run here with
    one message, a report that says why, and :data:`dicomconf.exitcodes.TARGET_UNREACHABLE`
    (an AE title the target does not recognise: :data:`~dicomconf.exitcodes.USAGE_ERROR`).
    """
    opt = config.option
    if _is_worker(config) or not opt.target and not opt.profile or opt.dicomconf_no_preflight:
        return None
    if any(getattr(opt, name, False) for name in ("help", "version", "collectonly", "showfixtures", "markers")):
        return None
    if not _names_scenarios(config):
        return None
    from dicomconf import exitcodes
    from dicomconf.scenario.preflight import DEFAULT_TIMEOUT, check_target

    state = DicomconfState(config)
    if state._target is None:
        return None
    config.stash[_PREFLIGHT] = result = check_target(
        state._target, state.called_ae, state.calling_ae, state.options.target_timeout or DEFAULT_TIMEOUT
    )
    if result.ok:
        return None
    state.preflight = result
    code = exitcodes.USAGE_ERROR if result.cause in ("called-ae", "calling-ae") else exitcodes.TARGET_UNREACHABLE
    _write_run_report(state, None, code)
    import sys

    print(f"dicomconf: no scenario was run: {result.render()}\nreports: {state.written}", file=sys.stderr, flush=True)
    return code


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None:
        return
    state.stop()
    deselected = list(session.config.stash.get(_DESELECTED, {}).values())
    if _is_worker(session.config) or not (state.records or state.preflight or deselected):
        return
    if state.baseline is not None and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        from dicomconf.scenario.baseline import judge

        collected = [r["id"] for r in state.records] + [d["id"] for d in deselected]
        state.judgement = judge(state.records, state.baseline, collected=collected, strict=state.strict,
                                allow_stale=session.config.option.dicomconf_allow_stale)
        session.exitstatus = pytest.ExitCode.OK if state.judgement.conforms else pytest.ExitCode.TESTS_FAILED
    elif not state.strict and session.exitstatus == pytest.ExitCode.TESTS_FAILED and state.failed <= state.should_failed:
        session.exitstatus = pytest.ExitCode.OK
    path = session.config.option.dicomconf_write_baseline
    if path:
        from dicomconf.scenario.baseline import update_baseline

        state.baseline_written = (path, update_baseline(path, state.records, state.target_text, state.strict))
    _write_run_report(state, session, int(session.exitstatus))


def _write_run_report(state: DicomconfState, session: pytest.Session | None, exit_status: int) -> None:
    """report.json and report.html for the run (also when the target never answered)."""
    from dicomconf.plugin_report import write_run_report

    write_run_report(state, list(session.config.stash.get(_DESELECTED, {}).values()) if session is not None else [],
                     exit_status)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    deselected = list(config.stash.get(_DESELECTED, {}).values())
    if state is None or _is_worker(config) or not (state.records or deselected):
        return
    from dicomconf.plugin_report import terminal_summary

    terminal_summary(terminalreporter, state, deselected)


# ---------------------------------------------------------------------- profile gaps

_GAPS_SHOWN = pytest.StashKey[bool]()


def _show_profile_gaps(config: pytest.Config, scenarios: list[Any]) -> None:
    """Before the first scenario runs: which scenarios the profile's missing or null fields skip."""
    state = config.stash.get(_STATE, None)
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if state is None or terminal is None or not scenarios or config.stash.get(_GAPS_SHOWN, False):
        return
    config.stash[_GAPS_SHOWN] = True
    from dicomconf.scenario.profile import skipped_by_missing_fields

    lines = skipped_by_missing_fields(state.profile, scenarios)
    if lines:
        terminal.write_line(f"dicomconf: the profile ({state.profile.source}) leaves fields open; "
                            "state them to run these scenarios:", yellow=True)
        for line in lines:
            terminal.write_line(f"  {line}")


def pytest_collection_finish(session: pytest.Session) -> None:
    from dicomconf.plugin_options import freeze_heap

    freeze_heap(any(isinstance(i, ScenarioItem) for i in session.items))  # it lives until the run ends
    if not _is_worker(session.config):
        scenarios = [i.entry.scenario for i in session.items if isinstance(i, ScenarioItem) and i.entry.scenario]
        _show_profile_gaps(session.config, scenarios)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """pytest-xdist: the controller collects nothing itself; read the scenarios a worker collected."""
    config = node.config
    if config.stash.get(_GAPS_SHOWN, False):
        return
    from dicomconf.plugin_options import scenarios_of_node_ids

    scenarios = scenarios_of_node_ids(config, ids)
    _show_profile_gaps(config, scenarios)
