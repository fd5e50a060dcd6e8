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

Severity: a failed *should* scenario is reported (outcome "failed" in every
report, shown as ``SHOULD-FAIL`` in the terminal) but does not fail the run
unless ``--strict`` (pytest's own flag, which also turns on pytest's other
strictness options) or ``--dicomconf-strict`` is given: ``pytest_sessionfinish``
sets the exit status back to 0 when every failure was a should-level one.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import time
from pathlib import Path
from typing import Any

import pytest

_STATE = pytest.StashKey["DicomconfState"]()
SCENARIO_SUFFIXES = (".yaml", ".yml")


# ---------------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dicomconf", "dicomconf conformance scenarios")
    group.addoption("--target", metavar="HOST[:PORT]", default=None,
                    help="the SCP under test: a host name, IPv4 or [IPv6] address, port 104 unless given "
                         "(default: the profile's target, else the embedded reference SCP)")
    group.addoption("--called-ae", default=None, help="called AE title (default: the profile's ae_title)")
    group.addoption("--calling-ae", default=None, help="calling AE title (default: the profile's calling_ae)")
    group.addoption("--profile", metavar="FILE", default=None,
                    help="target profile (YAML); default: the embedded reference SCP's profile")
    group.addoption("--report-dir", metavar="DIR", default=None,
                    help="where reports and pcaps go (default: reports/<timestamp>, with reports/latest)")
    group.addoption("--dicomconf-link-latest", action="store_true", default=False, help=argparse.SUPPRESS)
    group.addoption("--dicomconf-strict", action="store_true", default=False,
                    help="should-level failures fail the run (pytest's --strict does too)")
    group.addoption("--tls-port", type=int, metavar="N", default=None,
                    help="the target's TLS port (PS3.15 B.1; default: the profile's)")
    group.addoption("--tls-ca", metavar="FILE", default=None,
                    help="CA certificates that verify the target (default: the profile's, else the system's)")
    group.addoption("--tls-cert", metavar="FILE", default=None, help="our client certificate (PEM)")
    group.addoption("--tls-key", metavar="FILE", default=None, help="the key of --tls-cert (PEM)")
    group.addoption("--tls-server-name", metavar="NAME", default=None,
                    help="the host name the target's certificate must carry (default: the target's host)")
    group.addoption("--tls-insecure", action="store_true", default=False,
                    help="do not verify the target's certificate or host name (recorded in the report)")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class DicomconfState:
    """Per-process state: options, profile, the target (started lazily), collected records."""

    def __init__(self, config: pytest.Config) -> None:
        from dicomconf.scenario.loader import SourceError
        from dicomconf.scenario.profile import load_profile
        from dicomconf.scenario.target_setup import (
            TargetOptions,
            TargetSetupError,
            apply_options,
            external_target,
            target_address,
        )

        self.config = config
        opt = config.option
        self.options = TargetOptions.from_namespace(opt)
        self._profile = None
        if opt.profile:
            try:
                self._profile = load_profile(opt.profile)
            except SourceError as exc:
                raise pytest.UsageError(f"--profile: {exc}") from None
        try:
            self.target_address = target_address(self.options, self._profile)
        except TargetSetupError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.target_text = str(self.target_address) if self.target_address is not None else None
        self._embedded = None
        self._target = None
        try:
            self.profile = apply_options(self.profile, self.options)
            if self.target_address is not None:
                self._target = external_target(self.target_address, self.options, self.profile)
        except TargetSetupError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.strict = bool(opt.dicomconf_strict or getattr(opt, "strict", False))
        if _is_worker(config):
            info = config.workerinput
            self.report_dir = Path(info["dicomconf_report_dir"])
            self.started = info["dicomconf_started"]
        else:
            self.started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            self.report_dir = self._report_dir(opt.report_dir, config)
        self.records: list[dict[str, Any]] = []
        self.written: Path | None = None
        self.failed: set[str] = set()
        self.should_failed: set[str] = set()
        self.t0 = time.monotonic()

    @property
    def profile(self):
        """The ``--profile`` file; else the reference SCP's profile (embedded target) or a
        generic profile that claims nothing (``--target`` without ``--profile``)."""
        if self._profile is None:
            from dicomconf.scenario.profile import Profile, reference_profile

            if self.target_address is None:
                self._profile = reference_profile()
            else:
                self._profile = Profile(name="generic target (no --profile)", source="<no --profile>")
        return self._profile

    @profile.setter
    def profile(self, value) -> None:
        self._profile = value

    def _report_dir(self, given: str | None, config: pytest.Config) -> Path:
        base = config.invocation_params.dir
        if given:
            return (base / given).resolve()
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return (base / "reports" / stamp).resolve()

    # ---------------------------------------------------------------- target

    def target(self):
        """The :class:`~dicomconf.scenario.engine.Target`; starts the reference SCP on first use."""
        if self._target is None:
            self._target = self._start()
        return self._target

    def _start(self):
        from dicomconf.scenario.target_setup import EmbeddedTarget

        self._embedded = EmbeddedTarget()
        target, self.profile = self._embedded.start(self.options, self.profile)
        return target

    def tls_summary(self) -> dict[str, Any] | None:
        """What the report says of TLS: None without it, else the port and whether the
        target's certificate and host name were verified (``--tls-insecure`` turns that off)."""
        from dicomconf.scenario.target_setup import tls_insecure

        if not self.profile.tls.enabled:
            return None
        insecure = tls_insecure(self.options, self.profile)
        return {"port": self.profile.tls.port, "verified": not insecure, "insecure": insecure}

    def settle(self, timeout: float = 2.0) -> None:
        """Wait until the embedded SCP has no association left (the next scenario starts clean)."""
        scp = self._embedded.scp if self._embedded is not None else None
        if scp is None:
            return
        deadline = time.monotonic() + timeout
        while getattr(scp, "active", 0) and time.monotonic() < deadline:
            time.sleep(0.005)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect the record a scenario item attached to its report (on the controller under xdist)."""
        record = getattr(report, "dicomconf", None)
        if record is None:
            return
        self.records.append(record)
        if record["outcome"] in ("failed", "error"):
            self.failed.add(record["nodeid"])
            if record["outcome"] == "failed" and record["severity"] == "should":
                self.should_failed.add(record["nodeid"])

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None


def pytest_configure(config: pytest.Config) -> None:
    state = DicomconfState(config)
    config.stash[_STATE] = state
    config.pluginmanager.register(state, "dicomconf-state")


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
        self.pcap: str | None = None
        self.findings: list[dict] = []
        self.duration_s = 0.0
        raw = entry.raw if entry.scenario is None else {}
        sc = entry.scenario
        self.meta = {
            "id": sc.id if sc else raw.get("id", entry.name),
            "title": sc.title if sc else raw.get("title", ""),
            "clauses": list(sc.clauses) if sc else [str(c) for c in raw.get("clauses", []) or [] if isinstance(raw.get("clauses"), list)],
            "severity": sc.severity if sc else (raw.get("severity") if raw.get("severity") in ("must", "should") else "must"),
            "area": sc.area if sc else str(raw.get("area", "")),
        }
        for key in ("id", "clauses", "severity", "area"):
            value = self.meta[key]
            self.user_properties.append((key, ", ".join(value) if isinstance(value, list) else value))

    def runtest(self) -> None:
        from dicomconf.scenario.engine import Runner
        from dicomconf.scenario.profile import unmet

        if self.entry.error is not None:
            raise self.entry.error
        state: DicomconfState = self.config.stash[_STATE]
        scenario = self.entry.scenario
        reason = unmet(state.profile, scenario.requires)
        if reason:
            pytest.skip(reason)
        target = state.target()
        reason = unmet(state.profile, scenario.requires)  # the started SCP may have filled in the profile
        if reason:
            pytest.skip(reason)
        pcap = state.report_dir / "pcap" / f"{_safe(scenario.id)}.pcap"
        runner = Runner(scenario, state.profile, target)
        t0 = time.monotonic()
        try:
            runner.run(pcap)
        finally:
            self.duration_s = time.monotonic() - t0
            self.findings = runner.findings
            self.pcap = str(pcap) if pcap.exists() else None
            state.settle()

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from dicomconf.scenario.engine import ScenarioFailure
        from dicomconf.scenario.loader import SourceError

        head = f"{self.meta['severity'].upper()} scenario {self.meta['id']} ({'; '.join(self.meta['clauses'])})"
        if isinstance(excinfo.value, ScenarioFailure):
            return f"{head} failed: {excinfo.value.render(self.pcap)}"
        if isinstance(excinfo.value, SourceError):
            return f"{head}: invalid scenario\n{excinfo.value}"
        return f"{head}: engine error\n" + str(super().repr_failure(excinfo))

    def reportinfo(self):
        return self.path, (self.entry.line or 1) - 1, f"scenario {self.meta['id']}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


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
            "pcap": item.pcap,
            "file": f"{item.entry.scenario.file if item.entry.scenario else item.path}:{item.entry.line}",
            "failure": failure,
            "skip_reason": skip_reason,
            "nodeid": item.nodeid,
        }
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    record = getattr(report, "dicomconf", None)
    if record is None or record["outcome"] != "failed" or record["severity"] != "should":
        return None
    if config.stash[_STATE].strict:
        return None
    return "should-failed", "S", ("SHOULD-FAIL", {"yellow": True})


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None:
        return
    state.stop()
    if _is_worker(session.config) or not state.records:
        return
    if not state.strict and session.exitstatus == pytest.ExitCode.TESTS_FAILED and state.failed <= state.should_failed:
        session.exitstatus = pytest.ExitCode.OK
    from dicomconf.report import write_reports

    run = {
        "target": state.target_text or "embedded reference SCP",
        "profile": {"name": state.profile.name, "source": state.profile.source},
        "start": state.started,
        "duration_s": round(time.monotonic() - state.t0, 3),
        "strict": state.strict,
        "exit_status": int(session.exitstatus),
        "tls": state.tls_summary(),
    }
    state.written = write_reports(state.report_dir, run, state.records, latest=session.config.option.report_dir is None or session.config.option.dicomconf_link_latest)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or _is_worker(config) or not state.records:
        return
    from dicomconf.report import area_table

    terminalreporter.section("dicomconf conformance by area")
    for line in area_table(state.records):
        terminalreporter.write_line(line)
    should = [r for r in state.records if r["outcome"] == "failed" and r["severity"] == "should"]
    if should and not state.strict:
        terminalreporter.section("should-level failures (reported; they fail the run only with --strict)", sep="-")
        for r in should:
            terminalreporter.write_line((r.get("failure") or {}).get("text") or r["id"])
        terminalreporter.write_line(
            f"{len(state.should_failed)} should-level failure(s) reported; they fail the run only with --strict"
        )
    if state.written:
        terminalreporter.write_line(f"reports: {state.written}")
