"""The acceptor's driver: dicomconf plays a scripted fake SCP, the system under test is an SCU.

Theory of operation
-------------------
:class:`AcceptorRunner` plays a scenario of ``role: scp``.  A
:class:`~dicomconf.scenario.listener.Listener` is open before the SCU under
test starts; each step is an act of the fake SCP (PS3.8 9.1.2, 9.2; PS3.7):

* ``accept``: take the SCU's next connection, at once or after a ``delay``
  (the connection waits in the listen queue meanwhile); ``accept`` and then
  ``close`` is an acceptor that closes at once, ``accept`` then ``expect:
  {closed: true}`` one that says nothing;
* ``associate``: read the SCU's A-ASSOCIATE-RQ (checked against ``request``)
  and answer it, after an optional ``delay``: an A-ASSOCIATE-AC negotiated as
  the reference SCP would (:mod:`dicomconf.scenario.answers`) with any field
  changed (``ac``), or an A-ASSOCIATE-RJ (``reject``), an A-ABORT
  (``abort``) or nothing (``silent``);
* ``serve``: read the SCU's next DIMSE request, reassembled from however many
  PDVs and PDUs carried it (checked against ``request``), and answer it: the
  chosen ``status``, C-FIND ``pending`` identifiers first (a C-CANCEL-RQ
  arriving between them ends the sequence with FE00, PS3.4 C.4.1.3.1;
  with ``cancel`` the SCU must send one, naming the C-FIND, PS3.7 9.3.2.3),
  response elements changed (``response``), the response fragmented
  (``max_pdu_length``, or sent on another ``context_id``), late (``delay``),
  or instead an A-ABORT (``abort``), a close (``close``) or nothing
  (``silent``); with ``service`` (find, worklist, move, get, commitment,
  mpps) the reference SCP's own handler answers, its misbehaviour scripted
  (:mod:`dicomconf.scenario.fake_services`);
* ``release``: wait for the SCU's A-RELEASE-RQ (or, with ``or_abort``, take
  its A-ABORT instead) and answer A-RELEASE-RP (or not: ``silent``,
  ``abort``), then see the SCU close the transport (AR-3); ``initiate``
  sends the acceptor's own A-RELEASE-RQ and
  ``collision`` answers the SCU's request with one (PS3.8 9.2 Table 9-10,
  AR-8 to AR-10); an A-RELEASE-RQ that came before the final response of a
  pending C-FIND fails it (PS3.4 C.4.1.2.1);
* and the steps both roles share (``send`` any PDU, legal or not;
  ``expect``; ``abort``; ``close``; ``sleep``; ``parallel``; ``repeat``).
  What the SCU sent while ``serve`` waited between pending responses (an
  A-ABORT, an A-RELEASE-RQ, its close) is what the next step reads first.

What the script does not script, the reference behaviour answers: after the
last step every connection still open is served by :meth:`finish` (an AC for
an RQ, a success for a request, an RP for a release request) until the SCU
closes it; a connection still open after ``finish_within`` fails the
scenario (the SCU neither released nor closed).

Every PDU the SCU sends is checked with the requestor's rules
(``Connection.findings``, :mod:`dicomconf.wire.findings`): its P-DATA within
the maximum length we announced, PDVs on accepted contexts only, its command
sets and data sets; a must-level finding fails the scenario as for the other
role.  :attr:`received` keeps what the SCU sent (associations, DIMSE
messages, data sets) for the ``dicomconf_fake_scp`` fixture.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from dicomconf.scenario.answers import (
    FAKE_SCP_AE,
    STATUS_CANCEL,
    AnswerError,
    accepted_contexts,
    answer_rq,
    fake_policy,
    final_status,
    pending_responses,
    response,
)
from dicomconf.scenario.engine import DEFAULT_WITHIN, Inconclusive, Player, ScenarioFailure, brief
from dicomconf.scenario.expectations import Event, check, next_event, next_message
from dicomconf.scenario.listener import Listener, ListenerClosed, NoConnection
from dicomconf.scenario.model import Scenario, Step
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.pdu import AAbort, AAssociateAC, AAssociateRJ, AReleaseRP, AReleaseRQ

ACCEPT_WITHIN = 30.0
FINISH_WITHIN = 10.0
CLOSE_WITHIN = 5.0  # the SCU closes after our RJ, A-ABORT or RP (AE-4, AA-3, AR-3): at once, give or take


@dataclass
class Association:
    """What the fake SCP knows of the association on one connection."""

    rq: Any = None
    reply: Any = None
    accepted: dict[int, tuple[str, str]] = field(default_factory=dict)
    peer_max_pdu_length: int = 0
    released: bool = False


@dataclass
class Received:
    """What the SCU sent, for the fixture: associations (the RQs), DIMSE messages with the data
    sets decoded in their context's transfer syntax (None when there was none or it did not decode)."""

    associations: list = field(default_factory=list)
    messages: list = field(default_factory=list)
    datasets: list = field(default_factory=list)


class AcceptorRunner(Player):
    """Plays a scenario in which dicomconf is the acceptor; see the module docstring."""

    role = "scp"
    peer_word = "SCU"

    def __init__(self, scenario: Scenario, profile: Any, listener: Listener, *,
                 accept_within: float = ACCEPT_WITHIN, finish_within: float = FINISH_WITHIN,
                 ae_title: str | None = None, max_pdu_length: int = 16382) -> None:
        super().__init__(scenario, profile)
        self.listener = listener
        self.accept_within = accept_within
        self.finish_within = finish_within
        self.ae_title = ae_title or getattr(profile, "called_ae", None) or FAKE_SCP_AE
        self.policy = fake_policy(max_pdu_length, self.ae_title)
        self.assocs: dict[str, Association] = {}
        self.received = Received()
        self._held: dict[str, Event] = {}  # what came while a C-FIND waited for a C-CANCEL-RQ
        self._other_cancels: list = []  # Message IDs named by C-CANCEL-RQs for no C-FIND being answered
        self._services: Any = None  # the services of serve: {service: ...} (fake_services.FakeServices), on first use

    def names(self) -> dict[str, Any]:
        return {"listen": {"host": self.listener.host, "port": self.listener.port, "ae_title": self.ae_title}}

    def how_to_open(self, name: str) -> str:
        return f"accept it first with accept: {{as: {name}}}"

    def interrupt(self) -> None:
        self.listener.close()

    # ---------------------------------------------------------------- connections

    def _accept(self, step: Step | None, name: str, within: float, delay: float = 0.0) -> Any:
        try:
            conn = self.listener.accept(within, delay=delay)
        except NoConnection:
            raise Inconclusive(step, f"the SCU under test did not connect to {self.listener.address} within "
                                     f"{within:g}s, so there is nothing to judge") from None
        except ListenerClosed:
            raise ScenarioFailure(step, "time limit reached while waiting for the SCU to connect") from None
        self._register(name, conn)
        with self._lock:
            self.assocs[name] = Association()
        return conn

    def _open_main(self, step: Step) -> Any:
        return self._accept(step, "main", self.accept_within)

    def _assoc(self, name: str) -> Association:
        with self._lock:
            return self.assocs.setdefault(name, Association())

    # ---------------------------------------------------------------- reading

    def _next(self, step: Step | None, name: str, conn: Any, within: float, what: str) -> Event:
        """The next PDU or whole DIMSE message from the SCU (PS3.8 Annex E)."""
        held = self._held.pop(name, None)
        if held is not None:
            return held
        assembler = self._assemblers.setdefault(name, dimse.MessageAssembler())
        event = next_message(conn, assembler, within)
        if event.message is not None and event.kind != "message":
            self._assemblers.pop(name, None)
        return event

    def _fail(self, step: Step, message: str, expected: str, event: Event) -> ScenarioFailure:
        return ScenarioFailure(step, message, expected=expected, came=event.describe())

    def _pause(self, step: Step, args: dict) -> None:
        delay = self._duration(step, args.get("delay"), 0.0, "delay")
        if delay > 0:
            self._time_up.wait(delay)

    def _send(self, step: Step | None, name: str, conn: Any, data: Any) -> None:
        from dicomconf.scu.connection import Closed

        try:
            conn.send(data)
        except (Closed, OSError) as exc:
            raise ScenarioFailure(step, f"could not send on {name}: {exc}",
                                  expected="the SCU to keep the connection open") from None

    def _instead(self, step: Step | None, name: str, conn: Any, args: dict) -> bool:
        """``silent: true`` (answer nothing) or ``abort: {source, reason}`` (an A-ABORT instead of
        the answer, PS3.8 9.3.8): True when one of them was the answer."""
        if args.get("silent"):
            return True
        if "abort" in args:
            a = args["abort"] or {}
            self._send(step, name, conn, AAbort(a.get("source", C.ABORT_SOURCE_USER),
                                                a.get("reason", C.ABORT_REASON_NOT_SPECIFIED)))
            return True
        return False

    def _send_message(self, step: Step | None, name: str, conn: Any, message: dimse.Message,
                      max_pdu_length: int | None = None) -> None:
        limit = self._assoc(name).peer_max_pdu_length if max_pdu_length is None else max_pdu_length
        for pdu in dimse.fragment(message, limit):
            self._send(step, name, conn, pdu)

    # ---------------------------------------------------------------- steps

    def _step_accept(self, step: Step, args: Any, local: dict) -> None:
        args = args or {}
        names = args.get("as", "main")
        within = self._duration(step, args.get("within"), self.accept_within)
        delay = self._duration(step, args.get("delay"), 0.0, "delay")
        if args.get("none"):
            self._no_connection(step, within)
            return
        for name in [names] if isinstance(names, str) else list(names):
            self._accept(step, str(name), within, delay)

    def _no_connection(self, step: Step, within: float) -> None:
        """``accept: {none: true}``: the SCU must not open another connection within ``within``
        (an SCU that retries at once after a permanent rejection, or forever)."""
        try:
            conn = self.listener.accept(within)
        except NoConnection:
            return
        except ListenerClosed:
            raise ScenarioFailure(step, "time limit reached") from None
        self._register(f"unexpected-{self.listener.accepted}", conn)
        raise ScenarioFailure(step, "the SCU opened another connection", expected=f"no connection within {within:g}s",
                              came=f"a connection from {conn.peer[0]}:{conn.peer[1]}")

    def _step_associate(self, step: Step, args: Any, local: dict) -> None:
        args = args or {}
        name, conn = self._conn(step, args)
        within = self._duration(step, args.get("within"), self.accept_within)
        event = next_event(conn, within)
        request = {"pdu": "A-ASSOCIATE-RQ", **(args.get("request") or {})}
        problems = check(request, event)
        if problems:
            raise self._fail(step, "the SCU did not request an association as expected: " + "; ".join(problems),
                             f"{brief(request)} within {within:g}s", event)
        rq = event.received.pdu
        assoc = self._assoc(name)
        assoc.rq = rq
        self.received.associations.append(rq)
        self._save(step, args.get("save"), event)
        self._pause(step, args)
        if self._instead(step, name, conn, args):
            return
        if "reject" in args:
            r = args["reject"] or {}
            self._send(step, name, conn, AAssociateRJ(r.get("result", C.RJ_RESULT_PERMANENT),
                                                      r.get("source", C.RJ_SOURCE_USER),
                                                      r.get("reason", C.RJ_USER_NO_REASON)))
            assoc.reply = "rejected"
            return
        try:
            self._accept_rq(step, name, conn, rq, args.get("ac"))
        except AnswerError as exc:
            raise step.error(str(exc), "ac", *exc.key.split(".")) from None
        except (TypeError, ValueError) as exc:
            raise step.error(f"cannot build the A-ASSOCIATE-AC: {exc}", "ac") from None

    def _accept_rq(self, step: Step | None, name: str, conn: Any, rq: Any, changes: Any) -> None:
        """Answer ``rq`` as the reference SCP would, with the scenario's ``ac`` changes (answers.py)."""
        reply, negotiated = answer_rq(rq, self.policy, changes)
        assoc = self._assoc(name)
        assoc.reply = reply
        assoc.peer_max_pdu_length = negotiated.peer_max_pdu_length
        if isinstance(reply, AAssociateAC):
            assoc.accepted = accepted_contexts(rq, reply)
            self._assemblers[name] = dimse.MessageAssembler()
        self._send(step, name, conn, reply)

    def _step_serve(self, step: Step, args: Any, local: dict) -> None:
        args = args or {}
        name, conn = self._conn(step, args)
        within = self._duration(step, args.get("within"), self.accept_within)
        count = args.get("count", 1)
        for _ in range(count):
            event = self._next(step, name, conn, within, "a DIMSE request")
            if event.kind != "message" or event.message.is_response:
                what = "a DIMSE request"
                raise self._fail(step, f"the SCU did not send {what}", f"{what} within {within:g}s", event)
            if args.get("request"):
                spec = {"pdu": "P-DATA-TF", **args["request"]}
                problems = check(spec, event)
                if problems:
                    raise self._fail(step, "the SCU's request is not as expected: " + "; ".join(problems),
                                     brief(spec), event)
            self._record(name, event.message)
            if args.get("identifier") is not None:
                self._check_identifier(step, args["identifier"], event)
            self._save(step, args.get("save"), event)
            if args.get("service") and not (args.get("silent") or args.get("close")):
                if not self._serve_service(step, name, conn, event.message, args):
                    return
                continue
            self._pause(step, args)
            if not self._answer(step, name, conn, event.message, args):
                return

    def _check_identifier(self, step: Step, spec: Any, event: Event) -> None:
        """``identifier``: the request's data set (a C-FIND identifier, PS3.4 C.4.1.1.3.1), decoded in its
        context's transfer syntax, must match ``spec`` (pydicom keywords, as in Matching)."""
        from dicomconf.scenario.match import match
        from dicomconf.scenario.services_steps import dataset_view

        with self._lock:
            dataset = self.received.datasets[-1]
        problems = ["no data set that decodes"] if dataset is None else match(spec, dataset_view(dataset), "identifier")
        if problems:
            raise self._fail(step, "the SCU's identifier is not as expected: " + "; ".join(problems),
                             f"identifier {brief(spec)}", event)

    def _serve_service(self, step: Step, name: str, conn: Any, rq: dimse.Message, args: dict) -> bool:
        """``serve: {service: ...}``: the reference SCP's handler answers (fake_services); False when the
        association ended meanwhile."""
        from dicomconf.scenario.fake_services import FakeServices

        for key in ("pending", "pending_delay"):
            if key in args:
                raise step.error(f"{key} cannot go with service: the service's handler gives the pending responses",
                                 key)
        with self._lock:
            if self._services is None:
                self._services = FakeServices(self)
        delay = self._duration(step, args.get("delay"), 0.0, "delay")
        return self._services.serve(step, name, conn, rq, args, delay)

    def _answer(self, step: Step | None, name: str, conn: Any, rq: dimse.Message, args: dict) -> bool:
        """Answer one request as ``args`` say; False when the answer ended the association."""
        if self._instead(step, name, conn, args):
            return "abort" not in args
        if args.get("close"):
            conn.close()
            return False
        changes = args.get("response")
        limit = args.get("max_pdu_length")
        context_id = args.get("context_id")
        try:
            if rq.command_field == dimse.C_FIND_RQ and args.get("pending"):
                ts = self._assoc(name).accepted.get(rq.context_id, ("", C.IMPLICIT_VR_LITTLE_ENDIAN))[1]
                gap = self._duration(step, args.get("pending_delay"), 0.0, "pending_delay") if step else 0.0
                for i, pending in enumerate(pending_responses(rq, list(args["pending"]), ts, changes)):
                    if i:
                        seen = self._cancelled(name, conn, rq, gap)
                        if seen != "none":
                            return self._cancel_answer(step, name, conn, rq, changes, limit, seen)
                    self._send_message(step, name, conn, _on(pending, context_id), limit)
                seen = self._cancelled(name, conn, rq, gap)
                if seen != "none":
                    return self._cancel_answer(step, name, conn, rq, changes, limit, seen)
                if args.get("cancel") and step is not None:
                    raise self._not_cancelled(step, rq, len(args["pending"]))
            message = response(rq, final_status(rq, args.get("status")), changes, context_id=context_id)
        except AnswerError as exc:
            if step is None:
                raise
            raise step.error(str(exc), *exc.key.split(".")) from None
        self._send_message(step, name, conn, message, limit)
        return True

    def _cancel_answer(self, step: Step | None, name: str, conn: Any, rq: dimse.Message, changes: Any,
                       limit: Any, seen: str) -> bool:
        """After a C-CANCEL-RQ: the final response, status FE00 (PS3.4 C.4.1.3.1); after anything
        else that ended the pending sequence (the SCU aborted or closed): nothing."""
        if seen == "cancel":
            self._send_message(step, name, conn, response(rq, STATUS_CANCEL, changes), limit)
            return True
        return False

    def _not_cancelled(self, step: Step, rq: dimse.Message, count: int) -> ScenarioFailure:
        """``serve: {cancel: true}``: the SCU let every pending response go by without a C-CANCEL-RQ
        naming its C-FIND (PS3.7 9.3.2.3: Message ID Being Responded To is the C-FIND-RQ's Message ID)."""
        others, self._other_cancels = self._other_cancels, []
        came = (f"C-CANCEL-RQ naming Message ID {', '.join(map(str, others))}" if others
                else "no C-CANCEL-RQ")
        return ScenarioFailure(step, f"the SCU did not cancel its C-FIND-RQ (Message ID {rq.message_id}) during "
                                     f"the {count} pending response(s)",
                               expected=f"a C-CANCEL-RQ with Message ID Being Responded To {rq.message_id} "
                                        "(PS3.7 9.3.2.3 Table 9.3-5)", came=came)

    def _cancelled(self, name: str, conn: Any, rq: dimse.Message, wait: float) -> str:
        """What the SCU sent while a C-FIND was pending (PS3.7 9.3.2.3): "cancel" (a C-CANCEL-RQ
        for it), "ended" (an A-ABORT, a close), or "none" (nothing, or something kept for later)."""
        event = self._next(None, name, conn, wait, "C-CANCEL-RQ")
        if event.kind == "silence":
            return "none"
        if event.kind == "message" and event.message.command_field == dimse.C_CANCEL_RQ:
            self._record(name, event.message)
            if event.message.message_id_being_responded_to == rq.message_id:
                return "cancel"
            self._other_cancels.append(event.message.message_id_being_responded_to)
            return "none"
        self._held[name] = event
        if event.kind in ("closed", "reset") or (event.received is not None and event.received.pdu is not None
                                                 and event.received.pdu.pdu_type == C.A_ABORT):
            return "ended"
        return "none"

    def _record(self, name: str, message: dimse.Message) -> None:
        ts = self._assoc(name).accepted.get(message.context_id, ("", ""))[1]
        dataset = None
        if message.has_data_set and message.data is not None and ts:
            try:
                dataset = message.dataset(ts)
            except Exception:  # undecodable: the findings say why
                dataset = None
        with self._lock:
            self.received.messages.append(message)
            self.received.datasets.append(dataset)

    def _after_cancels(self, name: str, conn: Any, within: float) -> Event:
        """The next event, passing over C-CANCEL-RQs: one may cross the final response of the
        operation it cancels, and then has nothing left to cancel (PS3.7 9.3.2.3)."""
        deadline = time.monotonic() + within
        while True:
            event = self._next(None, name, conn, max(deadline - time.monotonic(), 0.0), "A-RELEASE-RQ")
            if event.kind != "message" or event.message.command_field != dimse.C_CANCEL_RQ:
                return event
            self._record(name, event.message)
            if time.monotonic() >= deadline:  # C-CANCEL-RQs kept coming: they do not extend the wait
                return Event("silence", waited=within)

    def _step_release(self, step: Step, args: Any, local: dict) -> None:
        args = args or {}
        name, conn = self._conn(step, args)
        within = self._duration(step, args.get("within"), DEFAULT_WITHIN)
        close_within = self._duration(step, args.get("close_within"), CLOSE_WITHIN, "close_within")
        if args.get("initiate"):
            self._send(step, name, conn, AReleaseRQ())
            event = next_event(conn, within)
            problems = check({"pdu": "A-RELEASE-RP"}, event)
            if problems:
                raise self._fail(step, "the SCU did not answer our A-RELEASE-RQ: " + "; ".join(problems),
                                 f"A-RELEASE-RP within {within:g}s (PS3.8 9.2, AR-2)", event)
            conn.close()  # AR-3: the requestor of the release closes the transport
            return
        held = self._held.pop(name, None)  # came while a C-FIND was pending: before its final response
        event = held or self._after_cancels(name, conn, within)
        if args.get("or_abort") and not check({"aborted": True}, event):
            conn.close()  # the SCU aborted instead (AA-3: close the transport connection)
            return
        problems = check({"pdu": "A-RELEASE-RQ"}, event)
        if problems:
            raise self._fail(step, "the SCU did not release the association: " + "; ".join(problems),
                             f"A-RELEASE-RQ{' or A-ABORT' if args.get('or_abort') else ''} within {within:g}s", event)
        if held is not None:
            raise self._fail(step, "the SCU requested the release before the final response to its C-FIND-RQ",
                             "the final C-FIND-RSP (Success, Failure or Cancel: PS3.4 C.4.1.2.1) before the "
                             "A-RELEASE-RQ", event)
        self._assoc(name).released = True
        self._pause(step, args)
        if self._instead(step, name, conn, args):
            return
        if args.get("collision"):
            self._send(step, name, conn, AReleaseRQ())  # Sta8 -> crossing requests: the SCU is in Sta9
            event = next_event(conn, within)
            problems = check({"pdu": "A-RELEASE-RP"}, event)
            if problems:
                raise self._fail(step, "the SCU did not answer the colliding A-RELEASE-RQ: " + "; ".join(problems),
                                 f"A-RELEASE-RP within {within:g}s (PS3.8 9.2 Table 9-10: Sta9, AR-9)", event)
        self._send(step, name, conn, AReleaseRP())
        event = next_event(conn, close_within)
        if event.kind not in ("closed", "reset"):
            raise self._fail(step, "the SCU did not close the transport connection after the A-RELEASE-RP",
                             f"the connection closed within {close_within:g}s (PS3.8 9.2 Table 9-10: Sta7 or "
                             "Sta11, Evt13, AR-3)", event)

    def _step_expect(self, step: Step, args: Any, local: dict) -> None:
        """The shared ``expect``, but what the SCU sent while a C-FIND was pending (an A-ABORT, an
        A-RELEASE-RQ, its close: read ahead by ``serve``) is matched first."""
        name = args.get("on", "main")
        held = self._held.pop(name, None)
        if held is None or (held.kind == "pdu" and held.received.name in (args.get("skip") or ())):
            super()._step_expect(step, args, local)
            return
        problems = check(args, held)
        if problems:
            raise ScenarioFailure(step, "; ".join(problems), expected=f"{brief(args)} on {name}",
                                  came=held.describe())
        self._save(step, args.get("save"), held)

    # ---------------------------------------------------------------- what the script leaves

    def finish(self) -> None:
        """Serve every connection still open as the reference SCP would, until the SCU closes."""
        deadline = time.monotonic() + self.finish_within
        with self._lock:
            open_ = [(n, c) for n, c in self.connections.items() if c.is_open]
        for name, conn in open_:
            self._serve_default(name, conn, deadline)

    def _serve_default(self, name: str, conn: Any, deadline: float) -> None:
        assoc = self._assoc(name)
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            event = self._next(None, name, conn, remaining, "anything")
            self._check_findings(None, judge=True)
            if event.kind in ("closed", "reset"):
                return
            if event.kind == "silence":
                raise ScenarioFailure(
                    None,
                    f"the SCU kept connection {name} open for {self.finish_within:g}s after the scenario's last "
                    "step without releasing or closing it",
                    expected="an A-RELEASE-RQ, an A-ABORT or the transport closed",
                    came=event.describe(),
                )
            if event.kind == "message":
                self._record(name, event.message)
                if not event.message.is_response and event.message.command_field != dimse.C_CANCEL_RQ:
                    self._answer(None, name, conn, event.message, {})
            elif (pdu := event.received.pdu) is None:
                pass  # the findings have judged it
            elif pdu.pdu_type == C.A_ASSOCIATE_RQ and assoc.rq is None:
                assoc.rq = pdu
                self.received.associations.append(pdu)
                self._accept_rq(None, name, conn, pdu, None)
            elif pdu.pdu_type == C.A_RELEASE_RQ:
                assoc.released = True
                self._send(None, name, conn, AReleaseRP())
            elif pdu.pdu_type in (C.A_ABORT, C.A_RELEASE_RP):
                conn.close()
                return
            if time.monotonic() >= deadline:  # an SCU that keeps sending does not hold the scenario
                raise ScenarioFailure(
                    None,
                    f"the SCU kept sending on connection {name} for {self.finish_within:g}s after the scenario's "
                    "last step without releasing or closing it",
                    expected="an A-RELEASE-RQ, an A-ABORT or the transport closed",
                    came=event.describe(),
                )


def _on(message: dimse.Message, context_id: int | None) -> dimse.Message:
    return message if context_id is None else dimse.Message(context_id, message.command, message.data)
