"""The step interpreter's shared half: what both roles of a scenario do alike (PS3.8, PS3.7).

Theory of operation
-------------------
A scenario is played by a :class:`Player` for the role dicomconf takes in it:
:class:`~dicomconf.scenario.requestor.Runner` when dicomconf is the
association-requestor (the SCU; the system under test is an SCP) and
:class:`~dicomconf.scenario.acceptor.AcceptorRunner` when dicomconf is the
acceptor (a scripted fake SCP; the system under test is an SCU).  Each role
driver adds its own steps (``connect``/``associate``/``echo``/``store``/
``release`` for the requestor; ``accept``/``associate``/``serve``/``release``
for the acceptor); this module holds what both share: named connections
(``main`` is opened by the role's own first step), the values saved by
earlier steps, templates rendered when a step runs (``{profile.artim + 5}s``),
the steps that say the same on either side (``send``, ``expect``, ``abort``,
``close``, ``sleep``, ``parallel``, ``repeat``), findings, the time limit and
the pcap.

Everything that comes back is an :class:`~dicomconf.scenario.expectations.Event`:
a whole PDU, a whole DIMSE message (however many PDUs carried it), the peer's
close or reset, or silence until a deadline; expectations are matched against
events (:mod:`dicomconf.scenario.expectations`, :mod:`dicomconf.scenario.match`).
After every step the findings of every PDU received so far
(``Connection.findings``, computed by ``dicomconf.wire.findings`` with the
rules of the peer's role) are examined: a must-level finding that the
scenario does not list in ``allow_findings`` fails the scenario with its
clause, even when the step's own expectation matched.

Two exceptions end a run early: :class:`ScenarioFailure` (the peer did not
do what the scenario expects: the verdict is *failed*) and
:class:`~dicomconf.scenario.loader.SourceError` (the scenario itself cannot
be played, e.g. a template naming an unknown variable: the verdict is
*error*); :class:`Inconclusive` says no verdict is possible.  Whatever
happens, every connection is closed and every conversation written to the
scenario's pcap.

:attr:`Player.trace` lists the steps as they were played (line, kind, what
the step says, when it started, ``ok`` or ``failed``, how deep in a
``parallel`` or ``repeat`` it sits), for the report; a long ``repeat`` is
cut at :data:`TRACE_LIMIT` entries, the rest counted in ``trace_cut``.
"""

from __future__ import annotations

import json
import ssl
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dicomconf.scenario.expr import ExpressionError, duration, render_all
from dicomconf.scenario.expectations import (
    Event,
    check,
    next_event,
    next_message,
    view_of,
    wants_message,
)
from dicomconf.scenario.match import get_path
from dicomconf.scenario.model import Scenario, Step
from dicomconf.ul import constants as C
from dicomconf.wire.secrets import mask_spec

DEFAULT_WITHIN = 5.0
CONNECT_WITHIN = 5.0
STORE_WITHIN = 30.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where the scenario connects: host (name or address), port, optional TLS port and client
    context, and the name the target's certificate must carry when it differs from ``host``."""

    host: str
    port: int
    tls_port: int | None = None
    tls_context: ssl.SSLContext | None = None
    description: str = ""
    called_ae: str | None = None
    calling_ae: str | None = None
    server_name: str | None = None


class ScenarioFailure(AssertionError):
    """The target did not behave as the scenario expects."""

    def __init__(
        self,
        step: Step | None,
        message: str,
        *,
        expected: str | None = None,
        came: str | None = None,
        finding: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.step = step
        self.message = message
        self.expected = expected
        self.came = came
        self.finding = finding

    def details(self) -> dict[str, Any]:
        return {
            "step": f"{self.step.where} ({self.step.kind})" if self.step else None,
            "message": self.message,
            "expected": self.expected,
            "came": self.came,
            "finding": self.finding,
        }

    def render(self, pcap: str | None = None) -> str:
        lines = [self.message]
        if self.step is not None:
            lines.append(f"step:     {self.step.where} ({self.step.kind})")
        if self.expected:
            lines.append(f"expected: {self.expected}")
        if self.came:
            lines.append("came:     " + self.came.replace("\n", "\n          "))
        if self.finding:
            f = self.finding
            lines.append(f"finding:  {f['code']} ({f['clause']}, {f['severity']}): {f['message']}")
        if pcap:
            lines.append(f"pcap:     {pcap}")
        return "\n".join(lines)


def brief(spec: Any) -> str:
    """A step's arguments in one line for the report, user identity credentials masked (dicomconf.wire.secrets)."""
    if isinstance(spec, dict):
        spec = {k: v for k, v in spec.items() if k not in ("on", "save", "skip", "within")}
    return json.dumps(mask_spec(spec), default=str)


class Inconclusive(Exception):
    """The target did not stay alive and speaking DICOM up to the point the scenario tests,
    so no verdict on it is possible (reported as *error*, never *passed*)."""

    def __init__(self, step: Step | None, message: str) -> None:
        where = f"{step.where} ({step.kind}): " if step is not None else ""
        super().__init__(f"inconclusive: {where}{message}")
        self.step = step


TRACE_LIMIT = 200  # steps listed per scenario in the report; a repeat of thousands is counted, not listed


class Player:
    """Plays one scenario in one role; see the module docstring.  ``profile`` is what the
    system under test claims (its profile, the SCP's or the SCU's)."""

    role = ""
    peer_word = "target"  # what the system under test is called in messages

    def __init__(self, scenario: Scenario, profile: Any) -> None:
        self.scenario = scenario
        self.profile = profile
        self.connections: dict[str, Any] = {}
        self.all_connections: list[tuple[str, Any]] = []
        self.saved: dict[str, Any] = {}
        self.findings: list[dict[str, Any]] = []
        self._checked: dict[int, int] = {}
        self.pcap_error: str | None = None
        self._lock = threading.RLock()
        self._time_up = threading.Event()
        self._assemblers: dict[str, Any] = {}  # connection name -> DIMSE message assembler (expect)
        self.trace: list[dict[str, Any]] = []  # the steps as played (see the module docstring)
        self.trace_cut = 0
        self._t0 = time.monotonic()

    # ------------------------------------------------------------------ running

    def run(self, pcap: str | Path | None = None, time_limit: float | None = None) -> None:
        """Play every step; raises ScenarioFailure or SourceError; writes ``pcap`` in any case.

        ``time_limit`` (seconds) bounds the whole scenario: when it passes, every connection
        is shut down (which wakes any step waiting on the target) and the scenario fails
        with that reason, whatever the interrupted step said.
        """
        self._t0 = time.monotonic()
        watchdog = None
        if time_limit is not None:
            watchdog = threading.Timer(time_limit, self._stop_at_limit)
            watchdog.daemon = True
            watchdog.start()
        try:
            try:
                self.run_steps(self.scenario.steps, {})
                self.finish()
                self._check_findings(None, judge=True)
            except (ScenarioFailure, OSError):
                if not self._time_up.is_set():
                    raise
            if self._time_up.is_set():
                raise ScenarioFailure(
                    None,
                    f"the scenario did not finish within its time limit of {time_limit:g}s: the target kept "
                    "it waiting (its connections were shut down then)",
                    expected=f"the whole scenario within {time_limit:g}s",
                    came="no end to the conversation",
                ) from None
        finally:
            if watchdog is not None:
                watchdog.cancel()
            self.close_all()
            self._check_findings(None)  # findings of PDUs read while closing are recorded, not judged
            if pcap is not None and self.all_connections:
                try:
                    Path(pcap).parent.mkdir(parents=True, exist_ok=True)
                    self._write_captures(Path(pcap))
                except OSError as exc:  # the verdict stands; the missing capture is reported
                    self.pcap_error = f"cannot write {pcap}: {exc}"

    def _write_captures(self, pcap: Path) -> None:
        """The scenario's pcap (the bytes as they were on the wire) and, when a connection used
        TLS (PS3.15 B.1), its key log ``<id>.keys`` and a decrypted copy ``<id>.decrypted.pcap``
        (every connection, TLS ones decrypted) that ``dicomconf decode`` reads without keys."""
        from dicomconf.wire import capture

        conns = [conn for _, conn in self.all_connections]
        capture.write_pcap(pcap, [conn.conversation for conn in conns])
        keys, copy = capture.key_log_path(pcap), capture.decrypted_path(pcap)
        if not any(getattr(conn, "decrypted", None) is not None for conn in conns):
            for stale in (keys, copy):  # from an earlier run of the scenario with TLS
                stale.unlink(missing_ok=True)
            return
        capture.write_key_log(keys, [line for conn in conns for line in getattr(conn, "key_log", ())])
        capture.write_pcap(copy, [getattr(conn, "decrypted", None) or conn.conversation for conn in conns],
                           name=capture.capture_id(pcap), note=capture.decrypted_note(pcap))

    @property
    def heard_dicom(self) -> bool:
        """True if the target sent at least one PDU that decoded, on any connection of the scenario."""
        with self._lock:
            return any(conn.pdus_received for _, conn in self.all_connections)

    def stop(self) -> None:
        """End the run from another thread, as its time limit would: every waiting step wakes."""
        self._stop_at_limit()

    def _stop_at_limit(self) -> None:
        """The watchdog: mark the time as up and wake every step blocked on a socket or a sleep."""
        self._time_up.set()
        self.interrupt()
        with self._lock:
            conns = [c for _, c in self.all_connections]
        for conn in conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def interrupt(self) -> None:
        """What else a role driver must wake when the time is up (a listening socket ...)."""

    def finish(self) -> None:
        """What a role driver does after the last step, before every connection is closed
        (the acceptor serves what the script left unscripted); judged like a step."""

    def run_steps(self, steps: tuple[Step, ...], local: dict[str, Any]) -> None:
        for step in steps:
            if self._time_up.is_set():
                raise ScenarioFailure(step, "time limit reached")
            handler: Callable[[Step, Any, dict], None] = getattr(self, f"_step_{step.kind}")
            entry = self._trace(step)
            try:
                if step.kind in ("parallel", "repeat"):
                    handler(step, step.args, local)
                else:
                    handler(step, self._render(step, step.args, local), local)
                self._check_findings(step)
            except BaseException:
                if entry is not None:
                    entry["status"] = "failed"
                raise

    def _trace(self, step: Step) -> dict[str, Any] | None:
        """Add ``step`` to :attr:`trace` (``None`` past :data:`TRACE_LIMIT`)."""
        with self._lock:
            if len(self.trace) >= TRACE_LIMIT:
                self.trace_cut += 1
                return None
            what = brief(step.args) if step.kind not in ("parallel", "repeat") else (
                f"{len(step.branches)} branches" if step.kind == "parallel" else f"times: {step.args.get('times')}")
            entry = {"line": step.line, "kind": step.kind, "what": what[:300], "status": "ok",
                     "t": round(time.monotonic() - self._t0, 4),
                     "depth": max(sum(1 for p in step.path if isinstance(p, int)) - 1, 0)}
            self.trace.append(entry)
            return entry

    def namespace(self, local: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            ns = dict(self.saved)
        ns.update(local)
        ns["profile"] = self.profile
        ns.update(self.names())
        return ns

    def names(self) -> dict[str, Any]:
        """The role's own template names (``target`` for the requestor, ``listen`` for the acceptor)."""
        return {}

    def _render(self, step: Step, args: Any, local: dict[str, Any]) -> Any:
        try:
            return render_all(args, self.namespace(local))
        except ExpressionError as exc:
            raise step.error(str(exc)) from None

    def _duration(self, step: Step, value: Any, default: float, key: str = "within") -> float:
        if value is None:
            return default
        try:
            return duration(value)
        except ExpressionError as exc:
            raise step.error(str(exc), key) from None

    # ---------------------------------------------------------------- findings

    def _check_findings(self, step: Step | None, judge: bool | None = None) -> None:
        """Record new findings; fail on a must-level one not allowed (see the module docstring)."""
        failure = None
        with self._lock:
            for name, conn in self.all_connections:
                start = self._checked.get(id(conn), 0)
                new = list(conn.findings[start:])
                self._checked[id(conn)] = start + len(new)
                for f in new:
                    allowed = f.code in self.scenario.allow_findings
                    record = {
                        "code": f.code,
                        "clause": f.clause,
                        "severity": f.severity,
                        "offset": f.offset,
                        "message": f.message,
                        "connection": name,
                        "allowed": allowed,
                    }
                    self.findings.append(record)
                    judged = step is not None if judge is None else judge
                    if judged and failure is None and f.severity == "must" and not allowed:
                        failure = record
        if failure is not None:
            raise ScenarioFailure(
                step,
                f"the {self.peer_word} broke {failure['clause']}: {failure['message']}",
                finding=failure,
            )

    # ---------------------------------------------------------------- connections

    def _conn(self, step: Step, args: Any) -> tuple[str, Any]:
        """The connection a step names (``on``, default ``main``); a role driver opens ``main``
        on first use (:meth:`_open_main`)."""
        name = (args or {}).get("on", "main") if isinstance(args, dict) else "main"
        with self._lock:
            conn = self.connections.get(name)
        if conn is None:
            if name != "main":
                raise step.error(f"no connection named {name!r} ({self.how_to_open(name)})", "on")
            conn = self._open_main(step)
        return name, conn

    def how_to_open(self, name: str) -> str:
        return f"open it first with connect: {{as: {name}}}"

    def _open_main(self, step: Step) -> Any:
        raise NotImplementedError

    def _register(self, name: str, conn: Any) -> None:
        with self._lock:
            old = self.connections.get(name)
            if old is not None:
                old.close()
            self.connections[name] = conn
            self.all_connections.append((name, conn))

    def close_all(self) -> None:
        with self._lock:
            conns = [c for _, c in self.all_connections]
        for conn in conns:
            try:
                conn.close()
            except OSError:
                pass

    # ---------------------------------------------------------------- events

    def _save(self, step: Step, save: dict | None, event: Event) -> None:
        if not save:
            return
        if event.kind not in ("pdu", "message") or event.received.pdu is None:
            raise ScenarioFailure(step, f"nothing to save from: {event.describe()}")
        view = view_of(event)
        for var, path in save.items():
            try:
                value = get_path(view, path)
            except KeyError:
                raise ScenarioFailure(
                    step, f"cannot save {var}: {path} is not in the received {view['pdu']}", came=event.describe()
                ) from None
            with self._lock:
                self.saved[var] = value

    # ---------------------------------------------------------------- steps

    def _step_send(self, step: Step, args: Any, local: dict) -> None:
        from dicomconf.scu.connection import Closed
        from dicomconf.wire.craft import CraftError, build_pdu

        name, conn = self._conn(step, args)
        spec = {k: v for k, v in args.items() if k not in ("on", "chunks", "delay")}
        try:
            data = build_pdu(spec)
        except CraftError as exc:
            raise step.error(exc.message, *[p for p in exc.key.replace("[", ".").replace("]", "").split(".") if p]) from None
        ended = conn.peer_ended()
        if ended is not None:
            raise Inconclusive(
                step,
                f"the target had {'reset' if ended == 'reset' else 'closed'} connection {name} before this step "
                "sent its PDU, so how it answers that PDU cannot be seen",
            )
        try:
            if "chunks" in args:
                delay = self._duration(step, args.get("delay"), 0.0, "delay")
                conn.send_chunks(data, args["chunks"], delay)
            else:
                conn.send(data)
        except (Closed, OSError) as exc:
            raise ScenarioFailure(step, f"could not send on {name}: {exc}", expected="an open connection") from None

    def _step_expect(self, step: Step, args: Any, local: dict) -> None:
        name, conn = self._conn(step, args)
        skip = tuple(args.get("skip") or ())
        if "silence" in args:
            within = self._duration(step, args["silence"], 0.0, "silence")
        else:
            within = self._duration(step, args.get("within"), DEFAULT_WITHIN)
        deadline = time.monotonic() + within
        passed_over = 0
        while True:
            event = self._read(name, conn, args, max(deadline - time.monotonic(), 0.0), skip)
            problems = check(args, event)
            if not problems or not args.get("until") or event.kind not in ("pdu", "message"):
                break
            if time.monotonic() >= deadline:  # what does not match kept coming: the wait still ends
                break
            passed_over += 1  # until: what does not match is passed over, within the bound
        if problems:
            over = f" (after passing over {passed_over} that did not match)" if passed_over else ""
            raise ScenarioFailure(
                step,
                "; ".join(problems) + over,
                expected=f"{brief(args)} within {within:g}s on {name}",
                came=event.describe(),
            )
        self._save(step, args.get("save"), event)

    def _read(self, name: str, conn: Any, args: dict, within: float, skip: tuple[str, ...]) -> Event:
        """The next event for an expectation: a whole DIMSE message when it names a message key."""
        if wants_message(args):
            from dicomconf.ul import dimse

            event = next_message(conn, self._assemblers.setdefault(name, dimse.MessageAssembler()), within, skip)
            if event.message is not None and event.kind != "message":
                self._assemblers.pop(name, None)  # the sequence broke Annex E: start afresh
            return event
        return next_event(conn, within, skip)

    def _step_abort(self, step: Step, args: Any, local: dict) -> None:
        args = args or {}
        name, conn = self._conn(step, args)
        from dicomconf.scu.connection import Closed

        from dicomconf.ul.pdu import AAbort

        try:
            conn.send(AAbort(args.get("source", C.ABORT_SOURCE_USER), args.get("reason", C.ABORT_REASON_NOT_SPECIFIED)))
        except (Closed, OSError):
            pass  # the peer is already gone: aborting a dead connection is not the peer's fault
        finally:
            conn.close()

    def _step_close(self, step: Step, args: Any, local: dict) -> None:
        args = args or {}
        name, conn = self._conn(step, args)
        if args.get("reset"):
            conn.reset()
        elif args.get("half"):
            conn.shutdown_write()
        else:
            conn.close()

    def _step_sleep(self, step: Step, args: Any, local: dict) -> None:
        try:
            self._time_up.wait(duration(args))
        except ExpressionError as exc:
            raise step.error(str(exc)) from None

    def _step_parallel(self, step: Step, args: Any, local: dict) -> None:
        errors: list[BaseException | None] = [None] * len(step.branches)

        def branch(i: int, steps: tuple[Step, ...]) -> None:
            try:
                self.run_steps(steps, dict(local))
            except BaseException as exc:  # re-raised in the scenario's thread below
                errors[i] = exc

        threads = [
            threading.Thread(target=branch, args=(i, steps), name=f"scenario-branch-{i + 1}", daemon=True)
            for i, steps in enumerate(step.branches)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for exc in errors:
            if exc is not None:
                raise exc

    def _step_repeat(self, step: Step, args: Any, local: dict) -> None:
        times = self._render(step, args["times"], local)
        if isinstance(times, bool) or not isinstance(times, int) or times < 0:
            raise step.error(f"times must give a non-negative integer, got {times!r}", "times")
        for i in range(1, times + 1):
            self.run_steps(step.branches[0], {**local, "index": i})


