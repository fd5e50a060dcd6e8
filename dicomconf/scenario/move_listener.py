"""The harness as C-MOVE destination and Storage Commitment report receiver (PS3.4 C.4.2, J.3.3.1).

Theory of operation
-------------------
A C-MOVE sends its sub-operations over a new association from the target to
the Move Destination (PS3.4 C.4.2.2); a Storage Commitment report may come
over a new association from the target too (PS3.4 J.3.3.1).  Scenarios that
test those need the harness to listen: :class:`MoveListener` is the
reference SCP run in this process (:func:`dicomconf.scp.runtime.run_in_thread`)
with memory storage and no index, accepting every storage SOP class and the
Storage Commitment Push Model with the SCP role taken by the peer (PS3.7
D.3.3.4), keeping what arrives: the C-STOREd data sets as their bytes came
(:attr:`stored`) and every N-EVENT-REPORT-RQ, answered 0000 (:attr:`reports`).

Where it listens is the profile's ``query_retrieve.move_destination``
(``ae_title``, ``host``, ``port``, ``bind``): the target must be configured
to know that AE title at that host and port (the user's setup, see
docs/scenarios.md).  The embedded reference SCP target gets a listener on a
free loopback port for the whole run and its ``move_destinations`` point
there; against a named target the listener's port is fixed by the profile,
so a scenario that needs it (:func:`needs_listener`) starts its own, runs
alone against the target (:mod:`dicomconf.scenario.exclusive`) and stops it
when it ends.  Either way a scenario starts with an empty listener
(:meth:`MoveListener.clear`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from dicomconf.scenario.model import Scenario, Step

COMMITMENT_SOP_CLASS = "1.2.840.10008.1.20.1"  # PS3.4 J.3 (also dicomconf.services.commitment)
MAX_REPORTS = 100  # N-EVENT-REPORTs kept per scenario: a hostile target cannot grow the list without end
STEPS_NEEDING_IT = ("move", "commit")


@dataclass(frozen=True, slots=True)
class Report:
    """An N-EVENT-REPORT-RQ the listener received (PS3.7 10.1.1) and answered 0000."""

    event_type: int | None
    sop_class: str
    sop_instance: str
    dataset: Any
    calling_ae: str


def _step_kinds(steps: tuple[Step, ...]) -> set[str]:
    kinds: set[str] = set()
    for step in steps:
        kinds.add(step.kind)
        for branch in step.branches:
            kinds |= _step_kinds(branch)
    return kinds


def needs_listener(scenario: Scenario) -> bool:
    """Whether ``scenario`` uses the listener: a ``move`` or ``commit`` step, or ``requires: {query_retrieve.move: true}``."""
    return bool(_step_kinds(scenario.steps) & set(STEPS_NEEDING_IT)) or scenario.requires.get(
        "query_retrieve.move") is True


class MoveListener:
    """The reference SCP as move destination and report receiver; see the module docstring."""

    def __init__(self, ae_title: str, bind: str = "127.0.0.1", port: int = 0) -> None:
        self.ae_title = ae_title
        self.bind = bind
        self.requested_port = port
        self._handle: Any = None
        self._lock = threading.Lock()
        self._reports: list[Report] = []
        self._arrived = threading.Condition(self._lock)

    @property
    def port(self) -> int | None:
        return self._handle.port if self._handle is not None else None

    def start(self) -> MoveListener:
        from dicomconf.scp.config import SCPConfig
        from dicomconf.scp.runtime import run_in_thread
        from dicomconf.ul import constants as C
        from dicomconf.ul.negotiation import default_supported

        supported = {**default_supported(), COMMITMENT_SOP_CLASS: (C.IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1")}
        config = SCPConfig(host=self.bind, port=self.requested_port, ae_titles=(self.ae_title,),
                           require_called_ae=False, supported=supported, roles={COMMITMENT_SOP_CLASS: (True, True)},
                           storage="memory", index="none", services=(), artim_timeout=5.0, idle_timeout=60.0,
                           source="the move listener")
        self._handle = run_in_thread(config)
        self._handle.scp.handlers[COMMITMENT_SOP_CLASS] = self._report
        return self

    def _report(self, request: Any):
        """The handler of an N-EVENT-REPORT-RQ (PS3.4 J.3.3.1): keep it, answer 0000 (PS3.7 10.1.1.1.8)."""
        from dicomconf.services.base import Reply

        fields: dict[str, Any] = {}
        if request.command_field == 0x0100:  # N-EVENT-REPORT-RQ
            event = request.command.get("EventTypeID")
            with self._arrived:
                if len(self._reports) < MAX_REPORTS:
                    self._reports.append(Report(int(event) if event is not None else None, request.sop_class_uid,
                                                request.sop_instance_uid or "", request.dataset,
                                                request.calling_ae))
                self._arrived.notify_all()
            fields = {"AffectedSOPInstanceUID": request.sop_instance_uid or "", "EventTypeID": event}
            yield Reply(0x0000, fields={k: v for k, v in fields.items() if v is not None})
            return
        yield Reply(0x0211)  # unrecognised operation (PS3.7 C.4): the listener only receives reports

    @property
    def stored(self) -> list[Any]:
        """The instances received so far (:class:`dicomconf.scp.storage.StoredInstance`: bytes as they came)."""
        return list(self._handle.stored) if self._handle is not None else []

    @property
    def reports(self) -> list[Report]:
        with self._lock:
            return list(self._reports)

    def wait_report(self, within: float, after: int = 0) -> Report | None:
        """The first report past the ``after`` already seen, waiting at most ``within`` seconds."""
        deadline = time.monotonic() + within
        with self._arrived:
            while len(self._reports) <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._arrived.wait(min(left, 0.1))
            return self._reports[after]

    def wait_stored(self, count: int, within: float) -> list[Any]:
        """The instances received, once ``count`` have come or ``within`` seconds have passed."""
        deadline = time.monotonic() + within
        while len(self.stored) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.stored

    def clear(self) -> None:
        """Forget what arrived (a scenario starts with an empty listener)."""
        if self._handle is not None:
            self._handle.call(self._handle.scp.stored.clear)
        with self._lock:
            self._reports.clear()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.stop()
            self._handle = None


__all__ = ["MoveListener", "Report", "needs_listener"]
