"""The SCU-testing scenarios of the reject-abort, dimse, malformed, release and services areas can fail.

Theory of operation
-------------------
Each scenario of ``scenarios/scu/{reject-abort,dimse,malformed,release,services}`` is
played in-process, as ``dicomconf run`` plays it: a fake SCP on a loopback
listener (:class:`~dicomconf.scenario.scu_side.SCUSide`) and the embedded
reference SCU (:mod:`dicomconf.scu.app`) as the SCU under test, with the
reference SCU's profile but one-second timeouts so that the run stays short.

The reference SCU passes every one of them.  Each broken variant below is a
subclass of :class:`~dicomconf.scu.app.ReferenceSCU` that breaks exactly one
rule of PS3.8 or PS3.7 (it keeps talking after a rejection, retries a
permanent rejection at once, never releases, answers a release collision
with A-ABORT, ignores a malformed PDU, cancels the wrong C-FIND, ...).
:data:`CATCHES` maps each variant to the scenarios it must fail, and every
such pairing must end in :class:`~dicomconf.scenario.engine.ScenarioFailure`
(a verdict on the SCU), never in an inconclusive run or a scenario error.  A
last test keeps the table whole: every scenario of the four areas is caught
by at least one variant, and the table names no scenario that does not exist.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

import pytest

from dicomconf.scenario.engine import ScenarioFailure
from dicomconf.scenario.library import shipped
from dicomconf.scenario.model import Scenario, load_file
from dicomconf.scenario.scu_profile import SCUTimeouts, reference_scu_profile
from dicomconf.scenario.scu_side import Played, SCUSide
from dicomconf.scenario.scu_sources import EmbeddedSCU
from dicomconf.scu.app import Ended, ReferenceSCU
from dicomconf.scu.client import SCU, UnexpectedReply
from dicomconf.scu.connection import Connection, Silence
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.pdu import AAbort, AAssociateRJ, AReleaseRP, AReleaseRQ, PDataTF

AREAS = ("reject-abort", "dimse", "malformed", "release", "services")
TIME_LIMIT = 30.0

PROFILE = dataclasses.replace(
    reference_scu_profile(),
    timeouts=SCUTimeouts(connect=5.0, association=1.0, dimse=1.0, release=1.0),
)


def _scenarios() -> dict[str, Scenario]:
    root = shipped()
    assert root is not None, "the scenario library (dicomconf.scenarios) is not installed as files on disk"
    out: dict[str, Scenario] = {}
    for area in AREAS:
        for path in sorted((Path(root) / "scu" / area).glob("*.yaml")):
            for entry in load_file(path):
                assert entry.error is None, str(entry.error)
                out[entry.scenario.id] = entry.scenario
    return out


SCENARIOS = _scenarios()


def play(scenario: Scenario, tmp_path: Path, scu_class: type[ReferenceSCU] | None = None) -> Played:
    """Play ``scenario`` with the embedded SCU (``scu_class``, default the reference); raises the verdict."""
    side = SCUSide(PROFILE, EmbeddedSCU(PROFILE, scu_class=scu_class), target_named=False, objects=tmp_path)
    assert side.skip_reason(scenario) is None, side.skip_reason(scenario)
    played = Played()
    side.play(scenario, tmp_path / f"{scenario.id}.pcap", TIME_LIMIT, played)
    return played


# ---------------------------------------------------------------- broken variants


class SpeaksBeforeClosing(ReferenceSCU):
    """Sends an A-RELEASE-RQ whenever it is about to close an open connection: after an A-ASSOCIATE-RJ
    (AE-4), an A-ABORT (AA-3) or the A-RELEASE-RP (AR-3), where it may only close."""

    def associate(self) -> None:
        conn = self.conn
        close = conn.close

        def speak_then_close() -> None:
            if conn.is_open:
                try:
                    conn.send(AReleaseRQ())
                except OSError:
                    pass
            close()

        conn.close = speak_then_close  # type: ignore[method-assign]
        super().associate()


class RetriesAtOnce(ReferenceSCU):
    """After a permanent rejection, opens a new connection at once and asks again."""

    def associate(self) -> None:
        try:
            super().associate()
        except Ended:
            reply = self.scu.last_received.pdu if self.scu.last_received else None
            if isinstance(reply, AAssociateRJ) and reply.result == C.RJ_RESULT_PERMANENT:
                job = self.job
                again = Connection.open(job.host, job.port, timeout=job.connect_timeout)
                try:
                    again.send(SCU(again, calling_ae=job.calling_ae, called_ae=job.called_ae).build_rq(self.contexts()))
                    again.receive_pdu(job.association_timeout)
                except (OSError, Silence):
                    pass
                finally:
                    again.close()
            raise


class HangsWhenClosed(ReferenceSCU):
    """When the acceptor closes the transport connection, keeps its own end open (AA-4 ends the
    association: Sta1, no transport connection) for longer than any scenario waits."""

    def operate(self) -> int:
        try:
            return super().operate()
        except Ended:
            if self.conn.peer_ended() is not None:
                time.sleep(6.0)
            raise


class NeverReleases(ReferenceSCU):
    """Closes the transport connection instead of releasing the association."""

    def release(self) -> None:
        self.conn.close()


class AbortsReleaseCollision(ReferenceSCU):
    """Answers the acceptor's A-RELEASE-RQ that crosses its own (a release collision) with A-ABORT
    instead of A-RELEASE-RP (PS3.8 7.2.2: the association-requestor answers first)."""

    def release(self) -> None:
        self.conn.send(AReleaseRQ())
        deadline = time.monotonic() + self.job.release_timeout
        while True:
            received = self.conn.receive_pdu(max(deadline - time.monotonic(), 0.0))
            if isinstance(received.pdu, AReleaseRQ):
                self.abort(C.ABORT_SOURCE_USER, C.ABORT_REASON_NOT_SPECIFIED, "a release collision")
            if isinstance(received.pdu, (AReleaseRP, AAbort)):
                self.conn.close()
                return


class TalksAfterReleaseRequest(ReferenceSCU):
    """Sends a C-ECHO-RQ after its own A-RELEASE-RQ, before the A-RELEASE-RP (PS3.8 7.2.2 allows
    nothing but an A-ABORT then)."""

    def release(self) -> None:
        self.conn.send(AReleaseRQ())
        context_id = next(iter(self.scu.accepted), 1)
        for pdu in dimse.fragment(dimse.c_echo_rq(99, context_id=context_id), self.scu.peer_max_pdu_length):
            self.conn.send(pdu)
        try:
            while not isinstance(self.conn.receive_pdu(self.job.release_timeout).pdu, (AReleaseRP, AAbort)):
                pass
        except Silence:
            pass
        self.conn.close()


class AbortsOnDataDuringRelease(ReferenceSCU):
    """Answers a P-DATA-TF that arrives after its A-RELEASE-RQ with A-ABORT (Sta7, Evt10 is AR-6:
    a P-DATA indication, the release goes on)."""

    def release(self) -> None:
        self.conn.send(AReleaseRQ())
        deadline = time.monotonic() + self.job.release_timeout
        while True:
            received = self.conn.receive_pdu(max(deadline - time.monotonic(), 0.0))
            if isinstance(received.pdu, PDataTF):
                self.abort(C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_UNEXPECTED_PDU, "P-DATA-TF during the release")
            if isinstance(received.pdu, (AReleaseRP, AAbort)):
                self.conn.close()
                return


class ClosesOnAcceptorRelease(ReferenceSCU):
    """Closes the transport connection when the acceptor asks to release, neither answering with
    A-RELEASE-RP nor aborting."""

    def unexpected(self, exc) -> None:
        if isinstance(getattr(exc.received, "pdu", None), AReleaseRQ):
            self.conn.close()
            raise Ended(1, "closed on the acceptor's A-RELEASE-RQ")
        super().unexpected(exc)


class IgnoresProtocolErrors(ReferenceSCU):
    """Does not act on an invalid or unexpected PDU (AA-8): it waits out its DIMSE timeout and then
    gives up as a service-user (A-ABORT source 0)."""

    def abort(self, source: int, reason: int, why: str) -> None:
        if source == C.ABORT_SOURCE_PROVIDER:
            time.sleep(self.job.dimse_timeout)
            source, reason = C.ABORT_SOURCE_USER, C.ABORT_REASON_NOT_SPECIFIED
        super().abort(source, reason, why)


class AcceptsAnyContext(ReferenceSCU):
    """Takes PDVs on any presentation context ID, accepted or not (PS3.8 7.6.1), and judges nothing
    it receives."""

    def associate(self) -> None:
        super().associate()
        self.scu._assembler = dimse.MessageAssembler()  # no accepted set: no context ID refused

    def check_received(self) -> None:
        self._checked = len(self.conn.findings)


class PassesOverStrayFragments(ReferenceSCU):
    """Drops a PDV that breaks PS3.8 Annex E (a data fragment before any command) and reads on, so
    it takes the response that follows in the same P-DATA-TF."""

    def associate(self) -> None:
        super().associate()
        scu, conn = self.scu, self.conn

        def receive_message(timeout: float) -> dimse.Message:
            deadline = time.monotonic() + timeout
            while True:
                received = conn.receive_pdu(max(deadline - time.monotonic(), 0.0))
                if not isinstance(received.pdu, PDataTF):
                    raise UnexpectedReply(f"expected P-DATA-TF, received {received.name}", received)
                for pdv in received.pdu.pdvs:
                    try:
                        message = scu._assembler.add(pdv)
                    except RemoteProtocolError:
                        scu._assembler = dimse.MessageAssembler(set(scu.accepted))
                        continue
                    if message is not None:
                        return message

        scu.receive_message = receive_message  # type: ignore[method-assign]

    def check_received(self) -> None:
        self._checked = len(self.conn.findings)


class CancelsWrongMessage(ReferenceSCU):
    """Its C-CANCEL-RQ names a Message ID other than its C-FIND-RQ's (PS3.7 9.3.2.3)."""

    def find(self) -> int:
        send = self.scu.send_message

        def send_message(message: dimse.Message) -> None:
            if message.command_field == dimse.C_CANCEL_RQ:
                command = copy.deepcopy(message.command)
                command.MessageIDBeingRespondedTo += 1
                message = dimse.Message(message.context_id, command)
            send(message)

        self.scu.send_message = send_message  # type: ignore[method-assign]
        return super().find()


class AbortsOnPending(ReferenceSCU):
    """Does not read pending C-FIND responses: the first one makes it give up with A-ABORT."""

    def find(self) -> int:
        receive = self.scu.receive_message

        def receive_message(timeout: float) -> dimse.Message:
            reply = receive(timeout)
            if reply.status in (0xFF00, 0xFF01):
                self.give_up("a pending C-FIND-RSP")
            return reply

        self.scu.receive_message = receive_message  # type: ignore[method-assign]
        return super().find()


class ReleasesAtFirstPending(ReferenceSCU):
    """Takes the first C-FIND response for the last, though it is pending, and releases at once
    (PS3.4 C.4.1.2.1: only Success, Failure or Cancel end the pending responses)."""

    def find(self) -> int:
        receive = self.scu.receive_message

        def receive_message(timeout: float) -> dimse.Message:
            reply = receive(timeout)
            if reply.status in (0xFF00, 0xFF01):
                command = copy.deepcopy(reply.command)
                command.Status = 0x0000
                reply = dimse.Message(reply.context_id, command)
            return reply

        self.scu.receive_message = receive_message  # type: ignore[method-assign]
        return super().find()


class AbortsOnNonSuccess(ReferenceSCU):
    """Takes any status but success (a warning, a failure) as the end of the association: A-ABORT."""

    def operate(self) -> int:
        status = super().operate()
        if not self.lines[-1].endswith("0x0000"):
            self.give_up(f"not a success: {self.lines[-1]}")
        return status


class NoMessageID(ReferenceSCU):
    """Leaves Message ID (0000,0110) out of its requests' command sets."""

    def operate(self) -> int:
        send = self.scu.send_message

        def send_message(message: dimse.Message) -> None:
            if not message.is_response and "MessageID" in message.command:
                command = copy.deepcopy(message.command)
                del command.MessageID
                message = dimse.Message(message.context_id, command, message.data)
            send(message)

        self.scu.send_message = send_message  # type: ignore[method-assign]
        return super().operate()


class NoQueryLevel(ReferenceSCU):
    """Leaves Query/Retrieve Level (0008,0052) out of its C-FIND identifier (PS3.4 C.4.1.1.3.1)."""

    def find(self) -> int:
        self.job.query = {k: v for k, v in self.job.query.items() if k != "QueryRetrieveLevel"}
        return super().find()


RJ = [s for s in SCENARIOS if s.startswith("scu.reject-abort.rejected-")]
# Faults either the UL or the DIMSE user may catch: an A-ABORT from either source passes (see the scenarios).
EITHER_SOURCE = ["scu.malformed.pdv-on-unaccepted-context", "scu.malformed.data-set-before-command"]
MALFORMED = [s for s in SCENARIOS if s.startswith("scu.malformed.") and s not in EITHER_SOURCE]
STATUSES = [s for s in SCENARIOS if s.startswith(("scu.dimse.store-warning-", "scu.dimse.store-failure-"))]

CATCHES: dict[type[ReferenceSCU], list[str]] = {
    SpeaksBeforeClosing: RJ + [
        "scu.reject-abort.abort-instead-of-associate-ac",
        "scu.reject-abort.abort-after-request",
        "scu.reject-abort.provider-abort-after-request",
        "scu.reject-abort.abort-during-data-set",
        "scu.release.normal-release",
        "scu.release.release-collision",
        "scu.release.abort-instead-of-release-rp",
        "scu.release.delayed-release-rp",
    ],
    RetriesAtOnce: ["scu.reject-abort.no-reconnect-after-permanent-rejection"],
    HangsWhenClosed: ["scu.reject-abort.close-during-data-set"],
    NeverReleases: ["scu.release.normal-release", "scu.release.delayed-release-rp", "scu.dimse.find-pending-responses"],
    AbortsReleaseCollision: ["scu.release.release-collision"],
    TalksAfterReleaseRequest: ["scu.release.nothing-after-release-rq", "scu.release.normal-release"],
    AbortsOnDataDuringRelease: ["scu.release.pdata-during-release"],
    ClosesOnAcceptorRelease: ["scu.release.acceptor-requests-release", "scu.release.acceptor-release-accepted"],
    IgnoresProtocolErrors: MALFORMED,
    AcceptsAnyContext: ["scu.malformed.pdv-on-unaccepted-context"],
    PassesOverStrayFragments: ["scu.malformed.data-set-before-command"],
    CancelsWrongMessage: ["scu.dimse.find-cancel", "scu.services.find-cancel-real-matches"],
    AbortsOnPending: ["scu.dimse.find-pending-responses", "scu.dimse.find-cancel", "scu.services.find-real-matches",
                      "scu.services.find-slow-pendings"],
    ReleasesAtFirstPending: ["scu.dimse.find-pending-responses", "scu.services.find-real-matches"],
    AbortsOnNonSuccess: STATUSES + ["scu.dimse.echo-failure-status", "scu.services.find-failure-ends-the-find"],
    NoQueryLevel: ["scu.services.find-identifier-has-level"],
    NoMessageID: ["scu.dimse.store-request-command", "scu.dimse.echo-request-command",
                  "scu.dimse.find-request-command"],
}
PAIRS = [(variant, sid) for variant, ids in CATCHES.items() for sid in ids]


# ---------------------------------------------------------------- tests


def test_the_four_areas_have_their_scenarios() -> None:
    by_area: dict[str, int] = {}
    for scenario in SCENARIOS.values():
        assert scenario.role == "scp" and scenario.id.startswith(f"scu.{scenario.area}."), scenario.id
        by_area[scenario.area] = by_area.get(scenario.area, 0) + 1
    assert by_area.get("reject-abort", 0) >= 9
    assert by_area.get("dimse", 0) >= 10
    assert by_area.get("malformed", 0) >= 7
    assert by_area.get("release", 0) >= 5


@pytest.mark.parametrize("sid", sorted(SCENARIOS))
def test_the_reference_scu_passes(sid: str, tmp_path: Path) -> None:
    played = play(SCENARIOS[sid], tmp_path)
    assert played.scu is not None and played.scu["exit_status"] is not None, played.scu  # it ended
    judged = [f for f in played.findings if f["severity"] == "must" and not f["allowed"]]
    assert not judged, judged


@pytest.mark.parametrize("variant,sid", PAIRS, ids=[f"{v.__name__}-{s}" for v, s in PAIRS])
def test_a_broken_scu_fails(variant: type[ReferenceSCU], sid: str, tmp_path: Path) -> None:
    with pytest.raises(ScenarioFailure):
        play(SCENARIOS[sid], tmp_path, variant)


def test_a_filled_identifier_value_is_repeated_text_and_a_bad_one_names_its_key(tmp_path: Path) -> None:
    from dicomconf.scenario.answers import AnswerError, identifier
    from dicomconf.scenario.loader import SourceError

    assert identifier({"TextValue": {"fill": "ab", "length": 5}}).TextValue == "ababa"
    for bad in ({"fill": "", "length": 5}, {"fill": "x", "length": -1}, {"fill": "x"}, {"fill": "x", "length": "9"}):
        with pytest.raises(AnswerError) as err:
            identifier({"TextValue": bad})
        assert err.value.key == "pending.TextValue"
    path = tmp_path / "bad-fill.yaml"
    path.write_text(
        "id: scu.dimse.bad-fill\ntitle: a filled value that cannot be built\nrole: scp\noperation: find\n"
        "clauses: [PS3.7 9.1.2]\nseverity: should\narea: dimse\nsteps:\n  - associate: {}\n"
        "  - serve:\n      pending: [{TextValue: {fill: x, length: -1}}]\n", encoding="utf-8")
    (entry,) = load_file(path)
    with pytest.raises(SourceError) as err:
        play(entry.scenario, tmp_path)
    assert f"{path}:11" in str(err.value) and "pending.0.TextValue" in str(err.value), str(err.value)


def test_every_scenario_of_the_four_areas_is_caught_by_a_variant() -> None:
    caught = {sid for ids in CATCHES.values() for sid in ids}
    assert set(SCENARIOS) - caught == set(), "scenarios no broken variant is shown to fail"
    assert caught - set(SCENARIOS) == set(), "the table names scenarios that do not exist"
    assert all(len(set(ids)) == len(ids) and ids for ids in CATCHES.values())
