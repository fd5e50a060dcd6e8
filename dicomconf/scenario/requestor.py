"""The requestor's driver: dicomconf plays the SCU, the system under test is an SCP (PS3.8 7.1, PS3.7 9.1).

Theory of operation
-------------------
:class:`Runner` plays a scenario of ``role: scu`` (the default) against one
:class:`~dicomconf.scenario.engine.Target` with the scriptable SCU
(``dicomconf.scu``): ``connect`` opens named connections (``main`` is opened
on first use), ``associate`` sends an A-ASSOCIATE-RQ built from the step and
matches the reply, ``echo`` and ``store`` run one DIMSE operation and check
its status, ``release`` asks for an orderly release; the Query/Retrieve,
commitment and MPPS steps (``store_set``, ``find``, ``move``, ``get``,
``commit``, ``mpps``) come from :mod:`dicomconf.scenario.services_steps`.  One
:class:`~dicomconf.scu.client.SCU` per connection keeps what was negotiated.
Everything else (``send``, ``expect``, findings, the pcap) is the shared
half in :mod:`dicomconf.scenario.engine`.
"""

from __future__ import annotations

import os
import ssl
import time
from pathlib import Path
from typing import Any, Callable

from dicomconf.scenario.engine import (
    CONNECT_WITHIN,
    DEFAULT_WITHIN,
    STORE_WITHIN,
    Player,
    ScenarioFailure,
    Target,
    brief,
)
from dicomconf.scenario.expectations import Event, check, describe_received
from dicomconf.scenario.match import match
from dicomconf.scenario.model import Scenario, Step
from dicomconf.scenario.services_steps import ServiceSteps
from dicomconf.scu.target import format_hostport
from dicomconf.ul.errors import LocalProtocolError


class Runner(ServiceSteps, Player):
    """Plays a scenario in which dicomconf is the association-requestor; see the module docstring."""

    role = "scu"

    def __init__(self, scenario: Scenario, profile: Any, target: Target) -> None:
        super().__init__(scenario, profile)
        self.target = target
        self.scus: dict[str, Any] = {}

    def names(self) -> dict[str, Any]:
        from dicomconf.scenario.qr_data import template_view_with

        return {
            # the known data set, with the profile's worklist items if it gives them (docs/scenarios.md)
            "set": template_view_with(getattr(self.profile, "worklist_items", ())),
            "target": {
                "host": self.target.host,
                "port": self.target.port,
                "tls_port": self.target.tls_port,
                "called_ae": self.called_ae,
                "calling_ae": self.calling_ae,
            }
        }

    @property
    def called_ae(self) -> str:
        return self.target.called_ae or self.profile.ae_title

    @property
    def calling_ae(self) -> str:
        return self.target.calling_ae or self.profile.calling_ae

    # ---------------------------------------------------------------- connections

    def _open(self, step: Step, name: str, tls: Any, within: float) -> Any:
        """Open connection ``name``; ``tls`` is False, True (the run's TLS context) or ``connect``'s
        mapping of a TLS offer of its own (:mod:`dicomconf.scenario.tls_probe`)."""
        from dicomconf.scu.client import SCU
        from dicomconf.scu.connection import Connection

        port = self.target.port
        context = None
        if tls or isinstance(tls, dict):
            if self.target.tls_port is None or self.target.tls_context is None:
                raise ScenarioFailure(step, "the scenario needs TLS but the target has no TLS port in its profile")
            port, context = self.target.tls_port, self.target.tls_context
            if isinstance(tls, dict):
                from dicomconf.scenario.tls_probe import context_for

                context, _ = context_for(step, self.target, tls)
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
        self._register(name, conn)
        with self._lock:
            self.scus[name] = SCU(conn, calling_ae=self.calling_ae, called_ae=self.called_ae)
        return conn

    def _open_main(self, step: Step) -> Any:
        return self._open(step, "main", False, CONNECT_WITHIN)

    # ---------------------------------------------------------------- steps

    def _step_connect(self, step: Step, args: Any, local: dict) -> None:
        args = args or {}
        names = args.get("as", "main")
        names = [names] if isinstance(names, str) else list(names)
        within = self._duration(step, args.get("within"), CONNECT_WITHIN)
        if args.get("refused"):  # a check that the target refuses this TLS handshake (PS3.15 B.10, B.12)
            from dicomconf.scenario.tls_probe import expect_refused

            return expect_refused(self, step, args.get("tls"), within)
        tls = args.get("tls") if isinstance(args.get("tls"), dict) else bool(args.get("tls"))
        for name in names:
            self._open(step, str(name), tls, within)

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
                extended=_extended(args.get("extended_negotiation")),
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
                expected=f"{brief(reply)} within {within:g}s",
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
            # Scenario files are data: they name files below their own directory, nothing else.
            # A symbolic link that leads out counts as out: the check is on the resolved path.
            base = Path(step.file).parent.resolve()
            path = (base / str(args["file"])).resolve()
            if os.path.isabs(str(args["file"])) or base not in path.parents:
                raise step.error(f"{args['file']!r} is outside the scenario's directory: a store step reads "
                                 "files below the directory of its scenario file only", "file")
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


def _extended(values: Any) -> dict | None:
    """``extended_negotiation``: SOP class -> service-class-application-information (PS3.7 D.3.3.5),
    a list of byte values or a hex string."""
    if not values:
        return None
    return {sop: bytes.fromhex(info.replace(" ", "")) if isinstance(info, str) else bytes(info)
            for sop, info in values.items()}


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
