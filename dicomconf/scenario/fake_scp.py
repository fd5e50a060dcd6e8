"""A scripted fake SCP for a team's own tests: :class:`FakeSCP` (PS3.8 9.1.2, 9.2; PS3.7 9.3).

Theory of operation
-------------------
:class:`FakeSCP` is the ``role: scp`` scenario engine
(:class:`~dicomconf.scenario.acceptor.AcceptorRunner`) packaged for an
in-process test: it listens, plays a script on a background thread while the
test drives the SCU under test, and then says what the SCU sent and whether
it behaved.  It adds no protocol logic of its own.

The script is turned into a :class:`~dicomconf.scenario.model.Scenario` by
the scenario loader and validated by the scenario schema
(``scp_scenario``), so a bad script is refused by the constructor with the
loader's :class:`~dicomconf.scenario.loader.SourceError`, located:

* a ``str`` is YAML text (``<script>:LINE`` in errors), unless it is one line
  ending in ``.yaml``/``.yml``, which is a file name, like a
  :class:`~pathlib.Path` (``FILE:LINE``);
* a ``list`` or ``dict`` is the same script as Python objects (errors name
  the key, ``<script>: steps[1].serve.status: ...``; there are no lines);
* either holds a list of steps, one scenario mapping, or a list of scenario
  mappings (each with ``steps``), of which the first, or the one whose ``id``
  is ``scenario_id``, is played;
* what a mapping leaves out gets a default (:data:`DEFAULTS`: ``id:
  fake-scp``, ``role: scp`` ...); a ``role`` other than ``scp`` is refused;
  ``requires`` is not consulted (the test itself decides what its SCU does).

:meth:`FakeSCP.start` binds the listener (port 0: a free one) and starts the
thread; :meth:`FakeSCP.wait` joins it and returns a :class:`FakeSCPResult`:
the verdict (``passed``; ``failure`` is the
:class:`~dicomconf.scenario.engine.ScenarioFailure` or
:class:`~dicomconf.scenario.engine.Inconclusive`), the A-ASSOCIATE-RQs, DIMSE
messages and data sets received, the findings and the pcap.  The run ends
when the script's last step is done and every connection still open has been
served by the reference behaviour until the SCU closed it (the acceptor's
``finish``), or at ``time_limit``; the listener is closed then.
:meth:`FakeSCP.stop` wakes whatever the script waits on (the listener, every
connection), joins the thread and is idempotent; a run it cut short fails
with that reason.  A script error found only while playing (a template naming
an unknown value) is raised by :meth:`wait` as a ``SourceError``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomconf.scenario.acceptor import ACCEPT_WITHIN, FINISH_WITHIN, AcceptorRunner
from dicomconf.scenario.answers import FAKE_SCP_AE
from dicomconf.scenario.engine import Inconclusive, ScenarioFailure
from dicomconf.scenario.listener import Listener
from dicomconf.scenario.loader import Located, SourceError, load_yaml, load_yaml_text
from dicomconf.scenario.model import Scenario, scenario_from
from dicomconf.scenario.scu_profile import SCUProfile, load_scu_profile
from dicomconf.scenario.validation import dotted
from dicomconf.scu.target import format_hostport

SCRIPT = "<script>"  # the file name of a script given as text or Python objects
DEFAULTS = {
    "id": "fake-scp",
    "title": "A scripted fake SCP",
    "clauses": ["PS3.8 9.2", "PS3.7 9.3"],
    "severity": "must",
    "area": "dimse",
    "role": "scp",
}
STOP_WITHIN = 10.0  # stop(): how long the thread may take to end once woken


@dataclass
class FakeSCPResult:
    """What a :class:`FakeSCP` run saw: the verdict and everything the SCU sent.

    ``associations`` are the A-ASSOCIATE-RQ PDUs (PS3.8 9.3.2), ``messages``
    the DIMSE messages (:class:`~dicomconf.ul.dimse.Message`, PS3.7 6.3) and
    ``datasets`` their data sets decoded in the accepted transfer syntax
    (pydicom Datasets, None where a message had none), parallel to
    ``messages``; ``findings`` are the wire findings (dicts with ``code``,
    ``clause``, ``severity``, ``message`` ...).
    """

    scenario_id: str
    failure: ScenarioFailure | Inconclusive | None = None
    associations: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    datasets: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    pcap: str | None = None
    pcap_error: str | None = None

    @property
    def passed(self) -> bool:
        """True when the SCU did everything the script expects and broke no must-level rule."""
        return self.failure is None

    def describe(self) -> str:
        """The verdict in words: the failure rendered with its step, expectation and finding."""
        if self.failure is None:
            return f"{self.scenario_id}: passed"
        if isinstance(self.failure, ScenarioFailure):
            text = self.failure.render(self.pcap)
            step = self.failure.step
            if step is not None:
                text += f"\nscript:   {dotted(step.path + (step.kind,))}"
        else:
            text = str(self.failure) + (f"\npcap:     {self.pcap}" if self.pcap else "")
        return f"{self.scenario_id}: failed: {text}"

    def assert_conforms(self) -> None:
        """Raise AssertionError with :meth:`describe` unless the run passed."""
        if self.failure is not None:
            raise AssertionError(self.describe())


class FakeSCP:
    """A scripted fake SCP on a background thread; see the module docstring.

    ``profile`` is what templates call ``profile`` (``{profile.timeouts.dimse + 2}s``):
    an :class:`~dicomconf.scenario.scu_profile.SCUProfile`, a path to an SCU profile, or
    None for an empty one.  ``pcap`` is where the conversation is written (None: nowhere).
    """

    def __init__(self, script: Any, *, host: str = "127.0.0.1", port: int = 0, ae_title: str = FAKE_SCP_AE,
                 time_limit: float = 60.0, accept_within: float = ACCEPT_WITHIN,
                 finish_within: float = FINISH_WITHIN, max_pdu_length: int = 16382,
                 profile: SCUProfile | str | Path | None = None, pcap: str | Path | None = None,
                 scenario_id: str | None = None) -> None:
        __tracebackhide__ = True  # pytest: a bad script shows its message, not the loader's frames
        try:
            self.scenario = script if isinstance(script, Scenario) else build_scenario(script, scenario_id)
        except SourceError as exc:
            raise exc.with_traceback(None) from None
        if self.scenario.role != "scp":
            raise SourceError(self.scenario.file, self.scenario.line,
                              f"scenario {self.scenario.id} has role {self.scenario.role}: the fake SCP plays "
                              "role: scp scenarios")
        if isinstance(profile, (str, Path)):
            profile = load_scu_profile(profile)
        self.profile = profile if profile is not None else SCUProfile(called_ae=ae_title)
        if not time_limit or time_limit <= 0:
            raise ValueError(f"time_limit must be a positive number of seconds, not {time_limit!r}")
        self.bind_host, self.bind_port = host, port
        self.ae_title = ae_title
        self.time_limit = time_limit
        self.accept_within, self.finish_within = accept_within, finish_within
        self.max_pdu_length = max_pdu_length
        self.pcap = None if pcap is None else str(pcap)
        self.listener: Listener | None = None
        self.runner: AcceptorRunner | None = None
        self._thread: threading.Thread | None = None
        self._outcome: BaseException | None = None
        self._stopped = False
        self._result: FakeSCPResult | None = None

    # ---------------------------------------------------------------- where

    @property
    def host(self) -> str:
        """The address a local SCU connects to (loopback for a wildcard bind)."""
        return self._listening().connect_host()

    @property
    def port(self) -> int:
        return self._listening().port

    @property
    def address(self) -> str:
        """``host:port`` (``[::1]:port`` for IPv6) of :attr:`host` and :attr:`port`."""
        return format_hostport(self.host, self.port)

    def _listening(self) -> Listener:
        if self.listener is None:
            raise RuntimeError("the fake SCP is not started: call start() first")
        return self.listener

    # ---------------------------------------------------------------- life

    def start(self) -> "FakeSCP":
        """Listen and play the script on a background thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("the fake SCP is already started")
        try:
            self.listener = Listener(self.bind_host, self.bind_port)
        except OSError as exc:
            where = format_hostport(self.bind_host, self.bind_port)
            raise OSError(exc.errno, f"the fake SCP cannot listen on {where}: {exc.strerror or exc}") from None
        self.runner = AcceptorRunner(self.scenario, self.profile, self.listener, accept_within=self.accept_within,
                                     finish_within=self.finish_within, ae_title=self.ae_title,
                                     max_pdu_length=self.max_pdu_length)
        self._thread = threading.Thread(target=self._play, name=f"dicomconf-fake-scp-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _play(self) -> None:
        try:
            self.runner.run(self.pcap, time_limit=self.time_limit)
        except BaseException as exc:  # the verdict, a script error or a bug: wait() sorts them
            self._outcome = exc
        finally:
            self.listener.close()

    def wait(self, timeout: float | None = None) -> FakeSCPResult:
        """Wait for the run to end (see the module docstring) and return its result.

        Raises TimeoutError if it has not ended within ``timeout`` seconds, and the
        ``SourceError`` of a script found bad while playing.
        """
        __tracebackhide__ = True
        if self._thread is None:
            raise RuntimeError("the fake SCP is not started: call start() first")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the fake SCP's script {self.scenario.id} has not ended within {timeout:g}s")
        return self._collect()

    def stop(self) -> None:
        """Close the listener and every connection and join the thread (bounded).  Idempotent."""
        if self._thread is None:
            return
        if self._thread.is_alive():
            self._stopped = True
            self.runner.stop()
            self._thread.join(STOP_WITHIN)
            if self._thread.is_alive():
                raise RuntimeError(f"the fake SCP's thread did not end within {STOP_WITHIN:g}s of stop()")
        self.listener.close()

    def __enter__(self) -> "FakeSCP":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.address if self.listener is not None else "not started"
        return f"FakeSCP({self.scenario.id}, {where})"

    # ---------------------------------------------------------------- result

    def _collect(self) -> FakeSCPResult:
        __tracebackhide__ = True
        if self._result is not None:
            return self._result
        outcome = self._outcome
        if isinstance(outcome, SourceError):
            raise outcome.with_traceback(None)  # the script is bad: its located message says all
        if outcome is not None and not isinstance(outcome, (ScenarioFailure, Inconclusive)):
            raise outcome  # a bug, not a verdict: its traceback matters
        if outcome is not None and self._stopped:
            outcome = ScenarioFailure(outcome.step, "the fake SCP was stopped (stop()) before its script ended",
                                      expected="the script to end before stop()")
        runner = self.runner
        received = runner.received
        self._result = FakeSCPResult(
            scenario_id=self.scenario.id,
            failure=outcome,
            associations=list(received.associations),
            messages=list(received.messages),
            datasets=list(received.datasets),
            findings=list(runner.findings),
            pcap=self.pcap if self.pcap and runner.all_connections and not runner.pcap_error else None,
            pcap_error=runner.pcap_error,
        )
        return self._result


# -------------------------------------------------------------------- scripts


def build_scenario(script: Any, scenario_id: str | None = None) -> Scenario:
    """The ``role: scp`` scenario a script describes (see the module docstring); SourceError if bad."""
    if isinstance(script, Path) or (isinstance(script, str) and "\n" not in script
                                    and script.strip().endswith((".yaml", ".yml"))):
        doc = load_yaml(Path(script.strip() if isinstance(script, str) else script))
    elif isinstance(script, str):
        doc = load_yaml_text(script, SCRIPT)
    elif isinstance(script, (list, tuple, dict)):
        doc = Located(SCRIPT, _plain(script))
    else:
        raise SourceError(SCRIPT, None, f"a script is YAML text, a file path, a list of steps or a mapping, "
                                        f"not {type(script).__name__}")
    return scenario_from(_as_scenario(_chosen(doc, scenario_id)))


def _plain(value: Any) -> Any:
    """Python objects as the YAML loader would give them (tuples become lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _chosen(doc: Located, scenario_id: str | None) -> Located:
    """The scenario of a list of scenarios (the first or ``scenario_id``), else ``doc`` itself."""
    value = doc.value
    scenarios = isinstance(value, list) and bool(value) and all(isinstance(v, dict) and "steps" in v for v in value)
    if not scenarios:
        if scenario_id is not None and not (isinstance(value, dict) and value.get("id") == scenario_id):
            raise SourceError(doc.file, doc.line_of(()), f"no scenario with id {scenario_id!r} in the script")
        return doc
    ids = [v.get("id") for v in value]
    if scenario_id is None:
        return doc.sub((0,))
    if scenario_id not in ids:
        known = ", ".join(str(i) for i in ids)
        raise SourceError(doc.file, doc.line_of(()), f"no scenario with id {scenario_id!r} in the script; ids: {known}")
    return doc.sub((ids.index(scenario_id),))


def _as_scenario(doc: Located) -> Located:
    """``doc`` as a whole scenario mapping: a list of steps becomes its ``steps`` (lines kept),
    and every field the script leaves out gets its default (:data:`DEFAULTS`)."""
    value = doc.value
    if isinstance(value, list):
        def moved(table: dict) -> dict:
            return {("steps",) + path: n for path, n in table.items()}

        lines = moved(doc.lines)
        if () in doc.lines:
            lines[()] = doc.lines[()]
        doc = Located(doc.file, {"steps": value}, lines, moved(doc.key_lines), order=moved(doc.order))
        value = doc.value
    if not isinstance(value, dict):
        what = "empty" if value is None else f"a {type(value).__name__}"
        raise SourceError(doc.file, doc.line_of(()), f"a script is a list of steps or a mapping, not {what}")
    role = value.get("role", "scp")
    if role != "scp":
        raise SourceError(doc.file, doc.line_of(("role",)),
                          f"role: the fake SCP plays role: scp scripts (dicomconf as the SCP), not {role!r}")
    doc.value = {**DEFAULTS, **value}
    return doc
