"""The SCU half of a run: which SCU is under test, whether a scenario runs, and playing it.

Theory of operation
-------------------
A run tests an SCP (scenarios of ``role: scu``, dicomconf plays the SCU),
an SCU (``role: scp``, dicomconf plays a scripted fake SCP), or both.  What
the user names decides which half runs (:meth:`SCUSide.skip_reason`):

* nothing: both halves, against the embedded reference SCP and SCU;
* a target SCP only (``--target`` or a profile's ``target``): the SCP half;
  the SCU half is skipped, "no SCU under test";
* an SCU only (``--scu-command`` or ``--scu-listen``): the SCU half; the SCP
  half is skipped, "no target SCP named";
* both: both halves.

:meth:`SCUSide.play` plays one SCU-testing scenario: it opens the fake SCP's
listener, starts the SCU under test (:mod:`dicomconf.scenario.scu_sources`)
for the scenario's operation, plays the steps
(:class:`~dicomconf.scenario.acceptor.AcceptorRunner`), stops the SCU and
returns what the report needs even when the verdict is not *passed*.  A
scenario that passes without one DICOM PDU from the SCU is
:class:`~dicomconf.scenario.engine.Inconclusive`: an SCU that never spoke
DICOM proves nothing.  A fixed listening address is shared by every worker
of ``-n``, so each scenario then holds its lock alone
(:mod:`dicomconf.scenario.exclusive`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from dicomconf.scenario.scu_profile import SCUProfile, reference_scu_profile, unmet

BASE_TIME_LIMIT = 60.0
# Without --scu-profile, what a command does is taken from its program's name (echoscu, storescu,
# findscu and the like); the report shows the profile's name, which says so.
_NAMED_OPERATIONS = (("echo", "echo"), ("store", "store"), ("send", "store"), ("find", "find"), ("query", "find"))


def unprofiled(command: str | None) -> SCUProfile:
    """The SCU profile when none is given for a named SCU: its operations guessed from the
    command's program name, nothing else claimed (timeouts unknown: timer scenarios skip)."""
    import shlex

    program = ""
    if command:
        try:
            program = Path(shlex.split(command)[0]).name.lower()
        except (ValueError, IndexError):
            program = ""
    ops = tuple(dict.fromkeys(op for word, op in _NAMED_OPERATIONS if word in program))
    how = f"operations {list(ops)} guessed from the program name {program!r}" if ops else "operations unknown"
    return SCUProfile(name=f"SCU under test, no --scu-profile ({how})", calling_ae=None, operations=ops,
                      source="<no --scu-profile>")


@dataclass
class Played:
    """What the report needs of an SCU-testing scenario, whatever its verdict."""

    findings: list = field(default_factory=list)
    pcap: Path | None = None
    scu: dict[str, Any] | None = None
    steps: list = field(default_factory=list)  # Player.trace


class SCUSide:
    """The SCU under test of a run (see the module docstring)."""

    def __init__(self, profile: SCUProfile, source: Any, target_named: bool, objects: Path) -> None:
        self.profile = profile
        self.source = source  # None: no SCU under test in this run
        self.target_named = target_named
        self.objects = objects

    @classmethod
    def from_options(cls, opt: Any, target_named: bool, objects: Path,
                     tell: Callable[[str], None] | None = None) -> "SCUSide":
        """From the pytest options; raises SCUSetupError or SourceError for bad ones."""
        from dicomconf.scenario.scu_profile import load_scu_profile
        from dicomconf.scenario.scu_sources import make_source

        profile = load_scu_profile(opt.scu_profile) if opt.scu_profile else None
        command = opt.scu_command or (profile.command if profile is not None else None)
        named = bool(command or opt.scu_listen)
        if profile is None:
            profile = unprofiled(command) if named else reference_scu_profile()
        source = None
        if named or not target_named:
            source = make_source(command, opt.scu_listen, profile, wait=opt.scu_wait, tell=tell)
        return cls(profile, source, target_named, objects)

    @property
    def mode(self) -> str | None:
        return None if self.source is None else self.source.mode

    def describe(self) -> str | None:
        return None if self.source is None else self.source.describe()

    def skip_reason(self, scenario: Any) -> str | None:
        """Why ``scenario`` does not run in this run (see the module docstring), or None."""
        if scenario.role != "scp":
            if not self.target_named and self.source is not None and self.source.mode != "embedded":
                return ("tests an SCP: no target SCP named (give --target); this run tests the SCU "
                        f"({self.source.describe()})")
            return None
        if self.source is None:
            return "tests an SCU: no SCU under test (give --scu-command or --scu-listen); this run tests the target SCP"
        op = scenario.operation
        if op != "any" and op not in self.profile.operations:
            return (f"the SCU does not do {op} (SCU profile operations: {list(self.profile.operations)}; "
                    f"{self.profile.source})")
        return unmet(self.profile, scenario.requires)

    def time_limit(self, override: float | None) -> float:
        if override:
            return override
        return BASE_TIME_LIMIT + 2 * self.profile.timeouts.longest(10.0) + self.source.accept_within

    def play(self, scenario: Any, pcap: Path, time_limit: float, played: Played) -> None:
        """Play ``scenario`` against the SCU under test; fills ``played``; raises the verdict."""
        from dicomconf.scenario import exclusive
        from dicomconf.scenario.acceptor import AcceptorRunner
        from dicomconf.scenario.engine import Inconclusive
        from dicomconf.scenario.listener import Listener
        from dicomconf.scenario.scu_sources import Call, wait_exit

        source = self.source
        fixed = (source.listen_host, source.listen_port) if source.listen_port else None
        with exclusive.hold(fixed, True):
            listener = Listener(source.listen_host, source.listen_port)
            runner = AcceptorRunner(scenario, self.profile, listener, accept_within=source.accept_within,
                                    finish_within=self.profile.timeouts.longest(5.0) + 5.0,
                                    ae_title=self.profile.called_ae)
            host = listener.connect_host() if source.mode != "device" else source.listen_host
            call = Call(host, listener.port, self.profile.called_ae, self.profile.calling_ae or "DICOMCONF-SCU",
                        scenario.operation, self._object(scenario), scenario.id,
                        cancel=scenario.requires.get("cancels") is True)
            handle = None
            try:
                handle = source.start(call)
                runner.run(pcap, time_limit=time_limit)
                if not runner.heard_dicom:
                    raise Inconclusive(None, "the SCU sent no DICOM PDU during this scenario: what the scenario "
                                             "expected (a close, or silence) proves nothing about it")
            finally:
                listener.close()
                played.findings = runner.findings
                played.steps = runner.trace
                played.pcap = pcap if pcap.exists() else None
                if handle is not None:
                    played.scu = wait_exit(handle)

    def _object(self, scenario: Any) -> Path:
        from dicomconf.scenario.scu_sources import write_object

        path = self.objects / f"{scenario.id}.dcm"
        if not path.exists():
            write_object(path)
        return path
