"""The pytest plugin's per-process state (:class:`DicomconfState`).

Theory of operation
-------------------
One :class:`DicomconfState` per pytest process (the controller and each
xdist worker), made by :func:`dicomconf.pytest_plugin.pytest_configure` and
registered as a plugin so that it sees every test report: the options, the
profile, the target (a named one, or the embedded reference SCP started on
first use, :mod:`dicomconf.scenario.target_setup`), the report directory
(workers write into the controller's), the SCU half of the run and the
records collected for the reports (:mod:`dicomconf.reruns` keeps one per
scenario whatever ``--reruns`` did).
"""

from __future__ import annotations

import datetime as _dt
import time
from pathlib import Path
from typing import Any

import pytest

from dicomconf import reruns

_PREFLIGHT = pytest.StashKey[Any]()  # the named target's preflight result (pytest_cmdline_main)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


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
        self.preflight = config.stash.get(_PREFLIGHT, None)
        self._watch = None
        try:
            self.profile = apply_options(self.profile, self.options)
            if self.target_address is not None:
                self._target = external_target(self.target_address, self.options, self.profile)
        except TargetSetupError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.strict = bool(opt.dicomconf_strict or getattr(opt, "strict", False))
        self.baseline = None  # scenario id -> baseline Entry (--dicomconf-baseline)
        self.judgement = None  # the run set against it, at the end (dicomconf.scenario.baseline)
        self.baseline_written: tuple[str, int] | None = None  # --dicomconf-write-baseline: (file, entries)
        if opt.dicomconf_baseline:
            from dicomconf.scenario.baseline import load_baseline

            try:
                self.baseline = load_baseline(opt.dicomconf_baseline)
            except SourceError as exc:
                raise pytest.UsageError(f"--baseline: {exc}") from None
        if _is_worker(config):
            info = config.workerinput
            self.report_dir = Path(info["dicomconf_report_dir"])
            self.started = info["dicomconf_started"]
        else:
            self.started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            self.report_dir = self._report_dir(opt.report_dir, config)
        self._scu_side = None
        if opt.scu_command or opt.scu_listen or opt.scu_profile:
            self.scu_side  # noqa: B018  (options that name the SCU are checked now: a usage error, exit 4)
            if opt.scu_listen and not opt.scu_command and getattr(opt, "numprocesses", None):
                raise pytest.UsageError("--scu-listen without --scu-command waits for a device, one scenario at "
                                        "a time, and tells you what to trigger: run it without -n")
        self.records: list[dict[str, Any]] = []
        self.written: Path | None = None
        self.document: dict[str, Any] | None = None  # what the reports render (dicomconf.report.model)
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

    def pcap_for(self, scenario_id: str) -> Path:
        """Where the pcap of scenario ``scenario_id`` is written in this run's report directory."""
        return self.report_dir / "pcap" / f"{_safe(scenario_id)}.pcap"

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

    @property
    def embedded_listener(self):
        """The embedded target's move destination listener (dicomconf.scenario.move_listener), or None."""
        return getattr(self._embedded, "listener", None)

    @property
    def embedded_held(self):
        """What the embedded target holds (store_set sends what it lacks: services_steps.holdings); else None."""
        from dicomconf.scenario.services_steps import holdings

        scp = self._embedded.scp if self._embedded is not None and self.target_address is None else None
        return holdings(scp.storage) if scp is not None else None

    @property
    def called_ae(self) -> str:
        return self.options.called_ae or self.profile.ae_title

    @property
    def calling_ae(self) -> str:
        return self.options.calling_ae or self.profile.calling_ae

    @property
    def scu_side(self):
        """The SCU half of the run (:mod:`dicomconf.scenario.scu_side`): made when the plugin starts
        if an option names the SCU (a bad one is a usage error then), else on first use."""
        if self._scu_side is None:
            from dicomconf.scenario.loader import SourceError
            from dicomconf.scenario.scu_side import SCUSide
            from dicomconf.scenario.scu_sources import SCUSetupError

            from dicomconf.plugin_options import terminal_line

            def tell(text: str) -> None:  # what to trigger on a device (--scu-listen alone), at once
                terminal_line(self.config, text)

            try:
                self._scu_side = SCUSide.from_options(self.config.option, self.target_address is not None,
                                                      self.report_dir / "objects", tell)
            except (SCUSetupError, SourceError) as exc:
                raise pytest.UsageError(str(exc)) from None
        return self._scu_side

    @property
    def watch(self):
        """The :class:`~dicomconf.scenario.liveness.TargetWatch` of a named target (None for the embedded SCP)."""
        if self._watch is None and self.target_address is not None:
            from dicomconf.scenario.liveness import TargetWatch

            self._watch = TargetWatch(self.target, self.called_ae, self.calling_ae)
        return self._watch

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
        record = reruns.final_record(self.config, report)  # one per scenario, whatever --reruns did
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
