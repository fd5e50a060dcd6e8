"""The SCU-testing scenarios of negotiation, connection, max-length and timers can fail.

Theory of operation
-------------------
Every scenario of ``scenarios/scu/{negotiation,connection,max-length,timers}``
is played in-process (:class:`~dicomconf.scenario.scu_side.SCUSide`, no
pytest inside pytest) against the embedded reference SCU, which must pass it,
and against broken variants of it: each variant is a subclass of
:class:`~dicomconf.scu.app.ReferenceSCU` that breaks exactly one rule (sends
on a rejected presentation context, ignores the acceptor's maximum length,
waits forever ...).  :data:`CATCHES` maps each variant to the scenarios it
must fail, and the failure must be a verdict on the SCU
(:class:`~dicomconf.scenario.engine.ScenarioFailure`), never an inconclusive
run or an error of the scenario; a last check keeps the table complete, so a
scenario added to these areas without a variant that fails it fails the suite.

Legal variants (the reference SCU announcing a maximum length of 0, and one
that cuts its messages into small PDVs) must still pass every SCU-testing
scenario of the library, both parts.

The SCU profile used here claims timeouts of one second, so the timer
scenarios are quick; every server the scenarios open listens on 127.0.0.1,
port 0, and is closed by the harness.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from dicomconf.scenario.engine import ScenarioFailure
from dicomconf.scenario.model import Scenario, load_file
from dicomconf.scenario.scu_profile import SCUProfile, SCUTimeouts, reference_scu_profile
from dicomconf.scenario.scu_side import Played, SCUSide
from dicomconf.scenario.scu_sources import EmbeddedSCU
from dicomconf.scu.app import NO_ASSOCIATION, Ended, ReferenceSCU
from dicomconf.scu.client import load_dataset
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.items import MaximumLength, UnknownSubItem, UserInformation

SCU_SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios" / "scu"
AREAS = ("negotiation", "connection", "max-length", "timers")
PROFILE = dataclasses.replace(reference_scu_profile(),
                              timeouts=SCUTimeouts(connect=5.0, association=1.0, dimse=1.0, release=1.0))
TIME_LIMIT = 40.0
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"


def _load(root: Path, strict: bool) -> dict[str, Scenario]:
    """The scenarios under ``root`` by id; an invalid one stops the module when ``strict`` (it is
    ours), else is left to the library's own tests (the loader and schema tests report it)."""
    out: dict[str, Scenario] = {}
    for path in sorted(root.rglob("*.yaml")):
        for entry in load_file(path):
            assert entry.scenario is not None or not strict, f"{path}: {entry.error}"
            if entry.scenario is not None:
                out[entry.scenario.id] = entry.scenario
    return out


OURS = {sid: s for area in AREAS for sid, s in _load(SCU_SCENARIOS / area, strict=True).items()}
ALL = _load(SCU_SCENARIOS, strict=False)


def play(scenario: Scenario, tmp_path: Path, scu_class: type | None = None, profile: SCUProfile = PROFILE) -> Played:
    """Play ``scenario`` against the embedded SCU (``scu_class``); raises the verdict."""
    side = SCUSide(profile, EmbeddedSCU(profile, scu_class=scu_class), target_named=False, objects=tmp_path)
    reason = side.skip_reason(scenario)
    if reason:
        pytest.fail(f"{scenario.id} would be skipped for the test profile: {reason}")
    played = Played()
    side.play(scenario, tmp_path / f"{scenario.id}.pcap", TIME_LIMIT, played)
    return played


# ---------------------------------------------------------------- broken variants: negotiation


class SendsOnRejectedContext(ReferenceSCU):
    """Treats every context it proposed as accepted, whatever the A-ASSOCIATE-AC said (PS3.8 7.6.1)."""

    def associate(self) -> None:
        super().associate()
        self.scu.accepted = {pc.context_id: (pc.abstract_syntax, pc.transfer_syntaxes[0])
                             for pc in self.scu.rq.presentation_contexts}


class DropsUselessAssociation(ReferenceSCU):
    """Closes the TCP connection, without A-RELEASE-RQ or A-ABORT, when nothing it proposed was accepted
    (PS3.8 9.1.4)."""

    def associate(self) -> None:
        super().associate()
        if not self.scu.accepted:
            self.conn.close()
            raise Ended(NO_ASSOCIATION, "nothing accepted: connection closed")


class EncodesInFirstProposedSyntax(ReferenceSCU):
    """Encodes its data set in the transfer syntax it proposed first, whatever was accepted (PS3.8 7.6.1)."""

    def associate(self) -> None:
        super().associate()
        first = {pc.context_id: pc.transfer_syntaxes[0] for pc in self.scu.rq.presentation_contexts}
        self.scu.accepted = {cid: (abstract, first[cid]) for cid, (abstract, _ts) in self.scu.accepted.items()}


class SendsFileAsIs(ReferenceSCU):
    """Sends its file's data set bytes as they are, whatever transfer syntax was accepted (PS3.8 7.6.1)."""

    def associate(self) -> None:
        super().associate()
        file_ts = load_dataset(self.job.file)[2] if self.job.file else None
        self.scu.accepted = {cid: (abstract, file_ts or ts) for cid, (abstract, ts) in self.scu.accepted.items()}


class NoDefaultTransferSyntax(ReferenceSCU):
    """Offers Explicit VR Little Endian only, never the default transfer syntax (PS3.5 10.1)."""

    def contexts(self) -> list:
        return [(c if isinstance(c, str) else c[0], [EXPLICIT_VR_LITTLE_ENDIAN]) for c in super().contexts()]


class _ProposesVerificationToo(ReferenceSCU):
    """Proposes Verification after the job's own context (legal: a base for the variants below)."""

    def contexts(self) -> list:
        own = super().contexts()
        return own if own == ["verification"] else [*own, "verification"]


class MapsResultsByPosition(_ProposesVerificationToo):
    """Reads the A-ASSOCIATE-AC's results in the order of its own proposals, not by context ID (PS3.8 7.1.1.14)."""

    def associate(self) -> None:
        super().associate()
        proposed = self.scu.rq.presentation_contexts
        self.scu.accepted = {rq.context_id: (rq.abstract_syntax, ac.transfer_syntax or "")
                             for rq, ac in zip(proposed, self.scu.ac.presentation_contexts)
                             if ac.result == C.PC_ACCEPTANCE}


class _RefusesAC(ReferenceSCU):
    """Aborts an accepted association when :meth:`refuse` finds fault with the A-ASSOCIATE-AC."""

    def refuse(self, rq: Any, ac: Any) -> str | None:
        raise NotImplementedError

    def associate(self) -> None:
        super().associate()
        why = self.refuse(self.scu.rq, self.scu.ac)
        if why:
            self.abort(C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_INVALID_PARAMETER_VALUE, why)


class ChecksRejectedTransferSyntax(_RefusesAC, _ProposesVerificationToo):
    """Aborts when a rejected context names a transfer syntax it never proposed (PS3.8 Table 9-18)."""

    def refuse(self, rq: Any, ac: Any) -> str | None:
        proposed = {pc.context_id: pc.transfer_syntaxes for pc in rq.presentation_contexts}
        for pc in ac.presentation_contexts:
            if pc.result != C.PC_ACCEPTANCE and pc.transfer_syntax not in proposed.get(pc.context_id, ()):
                return f"context {pc.context_id}: transfer syntax {pc.transfer_syntax} was never proposed"
        return None


class RequiresProtocolVersion1(_RefusesAC):
    """Accepts only protocol version 0001H instead of testing bit 0 (PS3.8 Table 9-17)."""

    def refuse(self, rq: Any, ac: Any) -> str | None:
        return None if ac.protocol_version == 1 else f"protocol version {ac.protocol_version:#06x}"


class ChecksReservedBytes(_RefusesAC):
    """Tests that the AC's bytes 43-74 echo its request (PS3.8 Table 9-17)."""

    def refuse(self, rq: Any, ac: Any) -> str | None:
        return None if ac.reserved == rq.reserved else "bytes 43-74 do not echo the request"


class ChecksAETitleEcho(_RefusesAC):
    """Tests that the AC returns its called and calling AE titles (PS3.8 Table 9-17)."""

    def refuse(self, rq: Any, ac: Any) -> str | None:
        same = (ac.called_ae_title.strip(), ac.calling_ae_title.strip()) == (rq.called_ae_title.strip(),
                                                                               rq.calling_ae_title.strip())
        return None if same else "the AC does not echo the AE titles"


class RequiresVersionName(_RefusesAC):
    """Refuses an AC without an Implementation Version Name (optional, PS3.7 D.3.3.2)."""

    def refuse(self, rq: Any, ac: Any) -> str | None:
        return None if ac.user_information.implementation_version_name else "no implementation version name"


class RejectsUnknownSubItem(_RefusesAC):
    """Refuses an AC carrying a user information sub-item of an unknown type (PS3.8 D.2)."""

    def refuse(self, rq: Any, ac: Any) -> str | None:
        unknown = [s for s in ac.user_information.sub_items if isinstance(s, UnknownSubItem)]
        return f"unknown sub-item {unknown[0].item_type:#04x}" if unknown else None


class _RequestChanged(ReferenceSCU):
    """Sends its A-ASSOCIATE-RQ changed by :meth:`change`."""

    def change(self, rq: Any) -> Any:
        raise NotImplementedError

    def associate(self) -> None:
        build = self.scu.build_rq
        self.scu.build_rq = lambda *a, **k: self.change(build(*a, **k))  # type: ignore[method-assign]
        super().associate()


class NoMaximumLength(_RequestChanged):
    """Leaves the Maximum Length sub-item out of its A-ASSOCIATE-RQ (PS3.8 D.1)."""

    def change(self, rq: Any) -> Any:
        subs = tuple(s for s in rq.user_information.sub_items if not isinstance(s, MaximumLength))
        return dataclasses.replace(rq, user_information=UserInformation(subs))


class PrivateApplicationContext(_RequestChanged):
    """Proposes a private application context name (PS3.7 A.2.1)."""

    def change(self, rq: Any) -> Any:
        return dataclasses.replace(rq, application_context_name="1.2.826.0.1.3680043.10.99.1")


class CallsAnotherAE(_RequestChanged):
    """Calls an AE title other than the one it was told to call (PS3.8 7.1.1.4)."""

    def change(self, rq: Any) -> Any:
        return dataclasses.replace(rq, called_ae_title="SOMEONE-ELSE")


class CallsAsAnotherAE(_RequestChanged):
    """Sends a calling AE title other than the one its profile states (PS3.8 7.1.1.3)."""

    def change(self, rq: Any) -> Any:
        return dataclasses.replace(rq, calling_ae_title="NOT-IN-PROFILE")


# ---------------------------------------------------------------- broken variants: maximum length


class IgnoresMaxLength(ReferenceSCU):
    """Sends every message in one PDV per part whatever maximum length the acceptor announced (PS3.8 D.1)."""

    def associate(self) -> None:
        super().associate()
        self.scu.peer_max_pdu_length = 0


class OddFragments(ReferenceSCU):
    """Fills each P-DATA-TF to the acceptor's limit exactly, odd fragments included (PS3.8 E.1)."""

    def associate(self) -> None:
        super().associate()
        self.scu.send_message = self._send  # type: ignore[method-assign]

    def _send(self, message: dimse.Message) -> None:
        room = (self.scu.peer_max_pdu_length or 1 << 20) - 6
        for payload, kind in ((dimse.encode_command(message.command), C.MCH_COMMAND), (message.data, 0)):
            if payload is None:
                continue
            pieces = [payload[i:i + room] for i in range(0, len(payload), room)]
            for i, piece in enumerate(pieces):
                mch = kind | (C.MCH_LAST if i == len(pieces) - 1 else 0)
                body = (len(piece) + 2).to_bytes(4, "big") + bytes((message.context_id, mch)) + bytes(piece)
                self.conn.send(bytes((C.P_DATA_TF, 0)) + len(body).to_bytes(4, "big") + body)


class ZeroMeansZero(ReferenceSCU):
    """Reads a maximum length of 0 as zero bytes instead of no limit, and cannot send (PS3.8 D.1.2)."""

    def associate(self) -> None:
        super().associate()
        if self.scu.ac.user_information.maximum_length == 0:
            self.scu.peer_max_pdu_length = 1


class RequiresMaxLengthSubItem(_RefusesAC):
    """Refuses an AC without a Maximum Length sub-item (the acceptor "can" give one, PS3.8 D.1)."""

    def refuse(self, rq: Any, ac: Any) -> str | None:
        return None if ac.user_information.maximum_length is not None else "no maximum length sub-item"


class _WholeCommandsOnly:
    """A message assembler that cannot take a command set in more than one PDV."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def add(self, pdv: Any) -> Any:
        if pdv.is_command and not pdv.is_last:
            raise RemoteProtocolError("a command set in more than one PDV", "PS3.8 E.1",
                                      reason=C.ABORT_REASON_UNEXPECTED_PARAMETER)
        return self.inner.add(pdv)


class NoReassembly(ReferenceSCU):
    """Aborts when a response's command set comes in several PDVs instead of reassembling it (PS3.8 E.1)."""

    def associate(self) -> None:
        super().associate()
        self.scu._assembler = _WholeCommandsOnly(self.scu._assembler)


# ---------------------------------------------------------------- broken variants: timers, connection


class NeverTimesOut(ReferenceSCU):
    """Waits ten minutes for every answer, whatever its profile claims."""

    def __init__(self, job: Any) -> None:
        super().__init__(job)
        job.association_timeout = job.dimse_timeout = job.release_timeout = 600.0


class GivesUpEarly(ReferenceSCU):
    """Gives up after 0.2 s where its profile claims one second."""

    def __init__(self, job: Any) -> None:
        super().__init__(job)
        job.association_timeout = job.dimse_timeout = job.release_timeout = 0.2


class ReconnectsAtOnce(ReferenceSCU):
    """Tries again at once, up to three times, when the association could not be made."""

    def run(self) -> int:
        status = super().run()
        for _ in range(3):
            if status != NO_ASSOCIATION:
                break
            status = super().run()
        return status


# ---------------------------------------------------------------- legal variants


class SmallPDVs(ReferenceSCU):
    """Cuts every message it sends into PDVs of at most 128 bytes, one per P-DATA-TF (legal, PS3.8 E.1)."""

    def associate(self) -> None:
        super().associate()
        peer = self.scu.peer_max_pdu_length
        self.scu.peer_max_pdu_length = min(peer, 134) if peer else 134


# ---------------------------------------------------------------- the table

N, CN, M, T = "scu.negotiation.", "scu.connection.", "scu.max-length.", "scu.timers."
CATCHES: dict[type, tuple[str, ...]] = {
    SendsOnRejectedContext: (N + "all-contexts-rejected", N + "store-context-rejected"),
    DropsUselessAssociation: (N + "nothing-accepted-ended-properly",),
    EncodesInFirstProposedSyntax: (N + "transfer-syntax-last-proposed",),
    SendsFileAsIs: (N + "store-in-default-transfer-syntax",),
    NoDefaultTransferSyntax: (N + "default-transfer-syntax-only", N + "store-in-default-transfer-syntax"),
    MapsResultsByPosition: (N + "reversed-context-order",),
    ChecksRejectedTransferSyntax: (N + "rejected-transfer-syntax-not-tested",),
    RequiresProtocolVersion1: (N + "protocol-version-3",),
    ChecksReservedBytes: (N + "reserved-block-not-tested",),
    ChecksAETitleEcho: (N + "ae-titles-not-tested",),
    RequiresVersionName: (N + "no-implementation-version-name",),
    RejectsUnknownSubItem: (N + "unknown-user-information-sub-item",),
    NoMaximumLength: (N + "request-maximum-length",),
    PrivateApplicationContext: (N + "request-application-context",),
    CallsAnotherAE: (N + "request-called-ae",),
    CallsAsAnotherAE: (N + "request-calling-ae",),
    IgnoresMaxLength: (M + "small-max-length", M + "odd-max-length", M + "tiny-max-length-command"),
    OddFragments: (M + "odd-max-length",),
    ZeroMeansZero: (M + "unlimited-max-length",),
    RequiresMaxLengthSubItem: (M + "no-max-length-sub-item",),
    NoReassembly: (M + "fragmented-response", M + "fragmented-find-identifiers"),
    NeverTimesOut: (T + "association-silence", T + "dimse-silence", T + "release-silence", CN + "never-accepted"),
    GivesUpEarly: (T + "association-answer-delayed", T + "dimse-answer-delayed", CN + "accept-delayed"),
    ReconnectsAtOnce: (CN + "closed-instead-of-answer", CN + "reset-instead-of-answer"),
}
CASES = [(variant, sid) for variant, ids in CATCHES.items() for sid in ids]


def test_every_scenario_of_part_a_is_caught_by_a_variant():
    caught = {sid for ids in CATCHES.values() for sid in ids}
    assert len(OURS) >= 11 + 3 + 4 + 5
    assert not sorted(set(OURS) - caught), f"scenarios no broken variant fails: {sorted(set(OURS) - caught)}"
    assert not sorted(caught - set(OURS)), f"the table names unknown scenarios: {sorted(caught - set(OURS))}"


def test_area_counts():
    by_area: dict[str, int] = {}
    for s in OURS.values():
        by_area[s.area] = by_area.get(s.area, 0) + 1
    assert by_area.get("negotiation", 0) >= 11
    assert by_area.get("connection", 0) >= 3
    assert by_area.get("max-length", 0) >= 4
    assert by_area.get("timers", 0) >= 5


def _rq() -> Any:
    from dicomconf.scu.client import SCU

    scu = SCU(None, calling_ae="A", called_ae="B")  # type: ignore[arg-type]  (build_rq sends nothing)
    return scu.build_rq(["ct", ("verification", [EXPLICIT_VR_LITTLE_ENDIAN, C.IMPLICIT_VR_LITTLE_ENDIAN])])


def _ac(changes: dict) -> Any:
    from dicomconf.scenario.answers import answer_rq, fake_policy

    return answer_rq(_rq(), fake_policy(), changes)[0]


def test_the_ac_changes_these_scenarios_use():
    """The A-ASSOCIATE-AC changes part A relies on, each against a two-context request (CT, Verification)."""
    reversed_ac = _ac({"accept_only": ["ct"], "contexts": "reverse"})
    assert [(pc.context_id, pc.result) for pc in reversed_ac.presentation_contexts] == [(3, 3), (1, 0)]
    rejected = _ac({"accept_only": ["ct"], "contexts": [{"accepted": False, "transfer_syntax": "1.2.3.4"}]})
    assert [(pc.result, pc.transfer_syntax) for pc in rejected.presentation_contexts][1] == (3, "1.2.3.4")
    assert rejected.presentation_contexts[0].transfer_syntax != "1.2.3.4"
    last = _ac({"contexts": [{"proposed_transfer_syntax": -1}]})
    assert [pc.transfer_syntax for pc in last.presentation_contexts] == [EXPLICIT_VR_LITTLE_ENDIAN,
                                                                         C.IMPLICIT_VR_LITTLE_ENDIAN]
    beyond = _ac({"contexts": [{"id": 3, "proposed_transfer_syntax": 7}]})
    assert beyond.presentation_contexts[1].transfer_syntax == C.IMPLICIT_VR_LITTLE_ENDIAN
    only = _ac({"contexts": [{"result": 4}, {"proposing": "ExplicitVRLittleEndian", "result": 0,
                                             "transfer_syntax": "ExplicitVRLittleEndian"}]})
    assert [(pc.result, pc.transfer_syntax) for pc in only.presentation_contexts] == [
        (0, EXPLICIT_VR_LITTLE_ENDIAN), (0, EXPLICIT_VR_LITTLE_ENDIAN)]
    only_implicit = _ac({"contexts": [{"result": 4}, {"id": 3, "proposing": "ExplicitVRBigEndian", "result": 0}]})
    assert [pc.result for pc in only_implicit.presentation_contexts] == [4, 4]
    extra = _ac({"extra_sub_items": [{"item_type": 0x5F, "data": "01 02"}]})
    assert extra.user_information.sub_items[-1] == UnknownSubItem(0x5F, b"\x01\x02")
    assert extra.encode()[-6:] == bytes.fromhex("5f0000020102")


@pytest.mark.parametrize("changes, key", [
    ({"extra_sub_items": [{"item_type": 95, "data": "zz"}]}, "extra_sub_items.0"),
    ({"contexts": [{"proposing": "NoSuchSyntax", "result": 0}]}, "contexts.0"),
])
def test_a_bad_ac_change_names_its_key(changes: dict, key: str):
    from dicomconf.scenario.answers import AnswerError

    with pytest.raises(AnswerError) as caught:
        _ac(changes)
    assert caught.value.key == key


@pytest.mark.parametrize("sid", sorted(OURS))
def test_reference_scu_passes(sid: str, tmp_path: Path):
    played = play(OURS[sid], tmp_path)
    assert played.pcap is not None and played.pcap.exists()


@pytest.mark.parametrize("variant, sid", CASES, ids=[f"{v.__name__}-{s}" for v, s in CASES])
def test_broken_variant_fails(variant: type, sid: str, tmp_path: Path):
    with pytest.raises(ScenarioFailure):
        play(OURS[sid], tmp_path, variant)


LEGAL: dict[str, tuple[type | None, SCUProfile]] = {
    "announces-max-length-0": (None, dataclasses.replace(PROFILE, max_pdu_length=0)),
    "small-pdvs": (SmallPDVs, PROFILE),
}
LEGAL_CASES = [(name, sid) for name in LEGAL for sid in sorted(ALL)]


@pytest.mark.parametrize("name, sid", LEGAL_CASES, ids=[f"{n}-{s}" for n, s in LEGAL_CASES])
def test_legal_variant_passes_every_scu_scenario(name: str, sid: str, tmp_path: Path):
    scu_class, profile = LEGAL[name]
    scenario = ALL[sid]
    side = SCUSide(profile, EmbeddedSCU(profile, scu_class=scu_class), target_named=False, objects=tmp_path)
    reason = side.skip_reason(scenario)
    if reason:
        pytest.skip(f"the legal variant's profile does not meet the scenario's requirements: {reason}")
    side.play(scenario, tmp_path / f"{sid}.pcap", TIME_LIMIT, Played())
