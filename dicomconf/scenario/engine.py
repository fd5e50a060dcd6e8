"""The step interpreter: plays a scenario against a target (PS3.8, PS3.7).

Theory of operation
-------------------
A :class:`Runner` plays one :class:`~dicomconf.scenario.model.Scenario`
against one :class:`Target` with the scriptable SCU (``dicomconf.scu``).  It
keeps named connections (``connect: {as: name}``; ``main`` is opened on first
use), one :class:`~dicomconf.scu.client.SCU` per connection for the
high-level steps, and the values saved by earlier steps.  Step arguments are
templates rendered when the step runs (``{profile.artim + 5}s``).

Everything that comes back is an :class:`~dicomconf.scenario.expectations.Event`:
a whole PDU, a whole DIMSE message (however many PDUs carried it), the peer's
close or reset, or silence until a deadline; expectations are matched against
events (:mod:`dicomconf.scenario.expectations`, :mod:`dicomconf.scenario.match`).  After every step the
findings of every PDU received so far (``Connection.findings``, computed by
``dicomconf.wire.findings``) are examined: a must-level finding that the
scenario does not list in ``allow_findings`` fails the scenario with its
clause, even when the step's own expectation matched.

Two exceptions end a run early: :class:`ScenarioFailure` (the target did not
do what the scenario expects: the verdict is *failed*) and
:class:`~dicomconf.scenario.loader.SourceError` (the scenario itself cannot
be played, e.g. a template naming an unknown variable: the verdict is
*error*).  Whatever happens, every connection is closed and every
conversation written to the scenario's pcap.
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
    describe_received,
    next_event,
    next_message,
    view_of,
    wants_message,
)
from dicomconf.scenario.match import get_path, match
from dicomconf.scenario.model import Scenario, Step
from dicomconf.scenario.profile import Profile
from dicomconf.scu.target import format_hostport
from dicomconf.ul import constants as C
from dicomconf.ul.errors import LocalProtocolError

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


def _brief(spec: Any) -> str:
    if isinstance(spec, dict):
        spec = {k: v for k, v in spec.items() if k not in ("on", "save", "skip", "within")}
    return json.dumps(spec, default=str)


class Inconclusive(Exception):
    """The target did not stay alive and speaking DICOM up to the point the scenario tests,
    so no verdict on it is possible (reported as *error*, never *passed*)."""

    def __init__(self, step: Step | None, message: str) -> None:
        where = f"{step.where} ({step.kind}): " if step is not None else ""
        super().__init__(f"inconclusive: {where}{message}")
        self.step = step


class Runner:
    """Plays one scenario; see the module docstring."""

    def __init__(self, scenario: Scenario, profile: Profile, target: Target) -> None:
        self.scenario = scenario
        self.profile = profile
        self.target = target
        self.connections: dict[str, Any] = {}
        self.all_connections: list[tuple[str, Any]] = []
        self.scus: dict[str, Any] = {}
        self.saved: dict[str, Any] = {}
        self.findings: list[dict[str, Any]] = []
        self._checked: dict[int, int] = {}
        self.pcap_error: str | None = None
        self._lock = threading.RLock()
        self._time_up = threading.Event()
        self._assemblers: dict[str, Any] = {}  # connection name -> DIMSE message assembler (expect)

    # ------------------------------------------------------------------ running

    def run(self, pcap: str | Path | None = None, time_limit: float | None = None) -> None:
        """Play every step; raises ScenarioFailure or SourceError; writes ``pcap`` in any case.

        ``time_limit`` (seconds) bounds the whole scenario: when it passes, every connection
        is shut down (which wakes any step waiting on the target) and the scenario fails
        with that reason, whatever the interrupted step said.
        """
        watchdog = None
        if time_limit is not None:
            watchdog = threading.Timer(time_limit, self._stop_at_limit)
            watchdog.daemon = True
            watchdog.start()
        try:
            try:
                self.run_steps(self.scenario.steps, {})
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
                from dicomconf.wire.capture import write_pcap

                try:
                    Path(pcap).parent.mkdir(parents=True, exist_ok=True)
                    write_pcap(pcap, [conn.conversation for _, conn in self.all_connections])
                except OSError as exc:  # the verdict stands; the missing capture is reported
                    self.pcap_error = f"cannot write {pcap}: {exc}"

    @property
    def heard_dicom(self) -> bool:
        """True if the target sent at least one PDU that decoded, on any connection of the scenario."""
        with self._lock:
            return any(conn.pdus_received for _, conn in self.all_connections)

    def _stop_at_limit(self) -> None:
        """The watchdog: mark the time as up and wake every step blocked on a socket or a sleep."""
        self._time_up.set()
        with self._lock:
            conns = [c for _, c in self.all_connections]
        for conn in conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run_steps(self, steps: tuple[Step, ...], local: dict[str, Any]) -> None:
        for step in steps:
            if self._time_up.is_set():
                raise ScenarioFailure(step, "time limit reached")
            handler: Callable[[Step, Any, dict], None] = getattr(self, f"_step_{step.kind}")
            if step.kind in ("parallel", "repeat"):
                handler(step, step.args, local)
            else:
                handler(step, self._render(step, step.args, local), local)
            self._check_findings(step)

    def namespace(self, local: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            ns = dict(self.saved)
        ns.update(local)
        ns["profile"] = self.profile
        ns["target"] = {
            "host": self.target.host,
            "port": self.target.port,
            "tls_port": self.target.tls_port,
            "called_ae": self.called_ae,
            "calling_ae": self.calling_ae,
        }
        return ns

    @property
    def called_ae(self) -> str:
        return self.target.called_ae or self.profile.ae_title

    @property
    def calling_ae(self) -> str:
        return self.target.calling_ae or self.profile.calling_ae

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

    def _check_findings(self, step: Step | None) -> None:
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
                    if step is not None and failure is None and f.severity == "must" and not allowed:
                        failure = record
        if failure is not None:
            raise ScenarioFailure(
                step,
                f"the target broke {failure['clause']}: {failure['message']}",
                finding=failure,
            )

    # ---------------------------------------------------------------- connections

    def _open(self, step: Step, name: str, tls: bool, within: float) -> Any:
        from dicomconf.scu.client import SCU
        from dicomconf.scu.connection import Connection

        port = self.target.port
        context = None
        if tls:
            if self.target.tls_port is None or self.target.tls_context is None:
                raise ScenarioFailure(step, "the scenario needs TLS but the target has no TLS port in its profile")
            port, context = self.target.tls_port, self.target.tls_context
        try:
            conn = Connection.open(self.target.host, port, tls=context, timeout=within,
                                   server_name=self.target.server_name)
        except (OSError, ssl.SSLError) as exc:
            raise ScenarioFailure(
                step,
                f"could not connect to {format_hostport(self.target.host, port)}{' (TLS)' if tls else ''}: {exc}",
                expected=f"a connection within {within:g}s",
                came=str(exc),
            ) from None
        with self._lock:
            old = self.connections.get(name)
            if old is not None:
                old.close()
            self.connections[name] = conn
            self.all_connections.append((name, conn))
            self.scus[name] = SCU(conn, calling_ae=self.calling_ae, called_ae=self.called_ae)
        return conn

    def _conn(self, step: Step, args: Any) -> tuple[str, Any]:
        name = (args or {}).get("on", "main") if isinstance(args, dict) else "main"
        with self._lock:
            conn = self.connections.get(name)
        if conn is None:
            if name != "main":
                raise step.error(f"no connection named {name!r} (open it first with connect: {{as: {name}}})", "on")
            conn = self._open(step, name, False, CONNECT_WITHIN)
        return name, conn

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

    def _step_connect(self, step: Step, args: Any, local: dict) -> None:
        args = args or {}
        names = args.get("as", "main")
        names = [names] if isinstance(names, str) else list(names)
        within = self._duration(step, args.get("within"), CONNECT_WITHIN)
        for name in names:
            self._open(step, str(name), bool(args.get("tls")), within)

    def _step_associate(self, step: Step, args: Any, local: dict) -> None:
        from dicomconf.scu.client import Aborted, Rejected, UnexpectedReply, resolve_uid
        from dicomconf.scu.connection import Closed, Silence

        args = args or {}
        name, conn = self._conn(step, args)
        scu = self.scus[name]
        scu.calling_ae = args.get("calling_ae", self.calling_ae)
        scu.called_ae = args.get("called_ae", self.called_ae)
        if "max_pdu_length" in args:
            scu.max_pdu_length = int(args["max_pdu_length"])
        within = self._duration(step, args.get("within"), DEFAULT_WITHIN)
        contexts = [
            (c["abstract_syntax"], c.get("transfer_syntaxes") or args.get("transfer_syntaxes") or None)
            if isinstance(c, dict)
            else c
            for c in args.get("contexts", ["verification"])
        ]
        contexts = [c if isinstance(c, str) or c[1] else c[0] for c in contexts]
        roles = {sop: (int(r.get("scu", 0)), int(r.get("scp", 0))) for sop, r in (args.get("roles") or {}).items()}
        event: Event
        try:
            scu.associate(
                contexts,
                transfer_syntaxes=args.get("transfer_syntaxes"),
                roles=roles or None,
                user_identity=args.get("user_identity"),
                async_window=tuple(args["async_window"]) if args.get("async_window") else None,
                overrides=_overrides(args.get("overrides") or {}),
                timeout=within,
            )
            event = Event("pdu", _as_received(scu.last_received, scu.ac))
        except (Rejected, Aborted) as exc:
            event = Event("pdu", _as_received(exc.received, exc.pdu))
        except UnexpectedReply as exc:
            event = Event("pdu", exc.received)
        except Closed as exc:
            event = Event(exc.kind)
        except Silence:
            event = Event("silence", waited=within)
        except (ValueError, TypeError, LocalProtocolError) as exc:
            raise step.error(f"cannot build the A-ASSOCIATE-RQ: {exc}") from None
        reply = args.get("reply") or {"pdu": "A-ASSOCIATE-AC"}
        problems = check(reply, event)
        if problems:
            raise ScenarioFailure(
                step,
                "the association did not go as expected: " + "; ".join(problems),
                expected=f"{_brief(reply)} within {within:g}s",
                came=event.describe(),
            )
        for key, want_accepted in (("accepted", True), ("rejected", False)):
            for sop in args.get(key) or ():
                try:
                    uid = resolve_uid(sop)
                except ValueError as exc:
                    raise step.error(str(exc), key) from None
                is_accepted = any(a == uid for a, _ in scu.accepted.values())
                if is_accepted != want_accepted:
                    raise ScenarioFailure(
                        step,
                        f"presentation context {sop} was {'rejected' if want_accepted else 'accepted'}",
                        expected=f"{sop} {key}",
                        came=event.describe(),
                    )
        self._save(step, args.get("save"), event)

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
        if wants_message(args):
            from dicomconf.ul import dimse

            event = next_message(conn, self._assemblers.setdefault(name, dimse.MessageAssembler()), within, skip)
            if event.message is not None and event.kind != "message":
                self._assemblers.pop(name, None)  # the sequence broke Annex E: start afresh
        else:
            event = next_event(conn, within, skip)
        problems = check(args, event)
        if problems:
            raise ScenarioFailure(
                step,
                "; ".join(problems),
                expected=f"{_brief(args)} within {within:g}s on {name}",
                came=event.describe(),
            )
        self._save(step, args.get("save"), event)

    def _dimse(self, step: Step, args: Any, call: Callable[[Any, float], int], default_within: float, what: str) -> None:
        from dicomconf.scu.client import Aborted, NotNegotiated, Rejected, UnexpectedReply
        from dicomconf.scu.connection import Closed, Silence

        name, conn = self._conn(step, args)
        within = self._duration(step, args.get("within"), default_within)
        want = args.get("status", 0)
        try:
            status = call(self.scus[name], within)
        except NotNegotiated as exc:
            raise ScenarioFailure(step, f"{what}: {exc}", expected="an accepted presentation context") from None
        except (Aborted, Rejected) as exc:
            raise ScenarioFailure(step, f"{what}: {exc}", expected=f"a {what}-RSP within {within:g}s",
                                  came=describe_received(_as_received(exc.received, exc.pdu))) from None
        except UnexpectedReply as exc:
            came = describe_received(exc.received) if hasattr(exc.received, "raw") else str(exc)
            raise ScenarioFailure(step, f"{what}: {exc}", expected=f"a {what}-RSP", came=came) from None
        except (Closed, Silence, OSError) as exc:
            raise ScenarioFailure(step, f"{what}: {exc}", expected=f"a {what}-RSP within {within:g}s", came=str(exc)) from None
        if want == "any":
            return
        if match(want, status):
            from dicomconf.ul import dimse

            meaning = dimse.status_meaning(dimse.COMMAND_CODES[f"{what}-RSP"], status)
            raise ScenarioFailure(
                step,
                f"{what} status {status:#06x} ({meaning[1]})",
                expected=f"status {want}",
                came=f"status {status:#06x}",
            )

    def _step_echo(self, step: Step, args: Any, local: dict) -> None:
        self._dimse(step, args or {}, lambda scu, t: scu.echo(timeout=t), DEFAULT_WITHIN, "C-ECHO")

    def _step_store(self, step: Step, args: Any, local: dict) -> None:
        args = args or {}
        dataset = self._dataset(step, args)
        self._dimse(step, args, lambda scu, t: scu.store(dataset, timeout=t), STORE_WITHIN, "C-STORE")

    def _dataset(self, step: Step, args: dict) -> Any:
        import pydicom
        from pydicom.uid import generate_uid

        from dicomconf.scu.client import resolve_uid

        if "file" in args:
            path = Path(step.file).parent / args["file"]
            if not path.is_file():
                raise step.error(f"no such file {path}", "file")
            return str(path)
        ds = pydicom.Dataset()
        try:
            ds.SOPClassUID = resolve_uid(args.get("sop_class", "ct"))
        except ValueError as exc:
            raise step.error(str(exc), "sop_class") from None
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID = generate_uid()
        ds.SeriesInstanceUID = generate_uid()
        ds.PatientName = "DICOMCONF^TEST"
        ds.PatientID = "DICOMCONF"
        ds.Modality = "OT"
        for keyword, value in (args.get("attributes") or {}).items():
            try:
                setattr(ds, keyword, value)
            except (ValueError, TypeError, AttributeError) as exc:
                raise step.error(f"attribute {keyword}: {exc}", "attributes", keyword) from None
            if keyword not in ds:
                raise step.error(f"{keyword!r} is not a DICOM keyword", "attributes", keyword)
        return ds

    def _step_release(self, step: Step, args: Any, local: dict) -> None:
        from dicomconf.scu.client import Aborted, UnexpectedReply
        from dicomconf.scu.connection import Closed, Silence

        args = args or {}
        name, conn = self._conn(step, args)
        within = self._duration(step, args.get("within"), DEFAULT_WITHIN)
        try:
            self.scus[name].release(timeout=within)
        except Aborted as exc:
            raise ScenarioFailure(step, f"release: {exc}", expected="A-RELEASE-RP",
                                  came=describe_received(_as_received(exc.received, exc.pdu))) from None
        except UnexpectedReply as exc:
            raise ScenarioFailure(step, f"release: {exc}", expected="A-RELEASE-RP",
                                  came=describe_received(exc.received)) from None
        except (Closed, Silence, OSError) as exc:
            raise ScenarioFailure(step, f"release: {exc}", expected=f"A-RELEASE-RP within {within:g}s", came=str(exc)) from None

    def _step_abort(self, step: Step, args: Any, local: dict) -> None:
        args = args or {}
        name, conn = self._conn(step, args)
        from dicomconf.scu.connection import Closed

        try:
            self.scus[name].abort(args.get("source", C.ABORT_SOURCE_USER), args.get("reason", C.ABORT_REASON_NOT_SPECIFIED))
        except (Closed, OSError):
            pass  # the peer is already gone: aborting a dead connection is not the target's fault

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


def _overrides(values: dict) -> dict:
    """YAML values for A-ASSOCIATE-RQ fields: ``reserved`` may be given as hex."""
    out = dict(values)
    if isinstance(out.get("reserved"), str):
        out["reserved"] = bytes.fromhex(out["reserved"].replace(" ", ""))
    return out


def _as_received(received: Any, pdu: Any) -> Any:
    """The Received the SCU consumed, as it came; else a record with the PDU re-encoded."""
    if received is not None and getattr(received, "raw", None) is not None:
        return received
    from dicomconf.scu.connection import Received

    raw = pdu.encode() if pdu is not None else b""
    return Received(raw, pdu, None, (), time.monotonic())
