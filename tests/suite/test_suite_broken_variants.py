"""No false passes: every must-level scenario fails against a reference SCP broken on its rule.

Theory of operation
-------------------
Each :class:`Variant` is the reference SCP with hooks (:mod:`dicomconf.scp.hooks`) or a
configuration change that breaks one rule of the standard, and names the must-level scenarios
that must catch it.  The test starts the variant on 127.0.0.1 (a free port; TLS beside it where
the variant says so), runs only its scenarios (``-k``) with a profile that says what a *correct*
target would claim (the reference profile, TLS off unless the variant listens for it, plus the
variant's profile changes), and asserts that each mapped scenario's outcome is ``failed``:
not passed (blind), not error (the scenario did not reach its verdict).  Every SCP is stopped by
its handle at the end.

``VARIANTS`` is the mapping the issue asks to keep: a scenario whose rule can no longer fail is
noticed here.  :func:`test_mapping_names_must_level_scenarios` checks that the mapping names only
scenarios of the shipped library that exist and are must-level; ``UNMAPPED`` lists the
must-level scenarios that no variant catches yet (kept empty when every one is mapped).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import service_variants_find
import service_variants_retrieve
import service_variants_workflow
import yaml
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from variant_kit import PDUFilter, Variant

from dicomconf.scenario.library import catalogue
from dicomconf.scenario.profile import load_profile
from dicomconf.scp.hooks import Hooks
from dicomconf.scp.runtime import run_in_thread
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.items import (
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    RoleSelection,
    UserIdentityAC,
    UserInformation,
)
from dicomconf.ul.negotiation import negotiate
from dicomconf.ul.pdu import AAssociateAC, AAssociateRJ, AReleaseRP, PDataTF

pytestmark = pytest.mark.network

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "dicomconf" / "scenario" / "reference-profile.yaml"
UNKNOWN_PDU = b"\xff\x00\x00\x00\x00\x00"  # a PDU type PS3.8 9.3.1 does not define, empty body
NOT_PROPOSED_TS = "1.2.840.10008.1.2.4.50"  # JPEG Baseline: no scenario proposes it for these contexts


# ---------------------------------------------------------------- byte-level helpers


def _split(data: bytes) -> list[bytes]:
    """Whole PDUs of ``data`` (PS3.8 9.3.1: type, reserved, 4-byte length); a cut tail stays whole."""
    out, pos = [], 0
    while pos + 6 <= len(data):
        end = pos + 6 + int.from_bytes(data[pos + 2:pos + 6], "big")
        out.append(data[pos:end])
        pos = end
    if pos < len(data):
        out.append(data[pos:])
    return out


def _command(primitive: Any) -> tuple[int, Any] | None:
    """(context ID, command Dataset) of a response the SCP is about to send, else None."""
    if isinstance(primitive, dimse.Message):
        return primitive.context_id, primitive.command
    if isinstance(primitive, PDataTF) and primitive.pdvs and all(
            p.message_control_header & C.MCH_COMMAND for p in primitive.pdvs):
        raw = b"".join(bytes(p.data) for p in primitive.pdvs)
        return primitive.pdvs[0].context_id, read_dataset(DicomBytesIO(raw), True, True)
    return None


def rewrite_response(change: Callable[[Any], None]) -> Callable[[Any, Any], Any]:
    """An ``answer`` hook that lets ``change(dataset)`` edit every DIMSE response command (PS3.7 9.3)."""
    def hook(primitive, connection):
        found = _command(primitive)
        if found is None:
            return primitive
        context_id, ds = found
        change(ds)
        return dimse.Message(context_id, ds)
    return hook


def rewrite_ac(change: Callable[[AAssociateAC, Any], Any]) -> Callable[[Any, Any], Any]:
    """An ``answer`` hook whose ``change(ac, connection)`` returns what to send for each A-ASSOCIATE-AC."""
    def hook(primitive, connection):
        return change(primitive, connection) if isinstance(primitive, AAssociateAC) else primitive
    return hook


def _user_info(ac: AAssociateAC, keep: Callable[[Any], bool] = lambda s: True, add: tuple = ()) -> AAssociateAC:
    subs = tuple(s for s in ac.user_information.sub_items if keep(s)) + add
    return dataclasses.replace(ac, user_information=UserInformation(subs))


# ---------------------------------------------------------------- the broken variants


def abort_dropped() -> Hooks:
    """AA-1/AA-8 without their A-ABORT PDU (PS3.8 9.2.3 Table 9-10): nothing is sent, ARTIM still runs."""
    return Hooks(wire=lambda data, conn: b"".join(p for p in _split(data) if p[:1] != bytes([C.A_ABORT])))


def abort_source_swapped() -> Hooks:
    """The A-ABORT of AA-1 says service-provider (2), that of AA-8 service-user (0) (PS3.8 9.3.8 Table 9-26)."""
    def swap(pdu: bytes) -> bytes:
        if pdu[:1] != bytes([C.A_ABORT]) or len(pdu) < 10:
            return pdu
        return pdu[:8] + bytes([{0: 2, 2: 0}.get(pdu[8], pdu[8])]) + pdu[9:]
    return Hooks(wire=lambda data, conn: b"".join(swap(p) for p in _split(data)))


def peer_abort_ignored() -> Hooks:
    """An A-ABORT from the requestor is dropped (Table 9-10 Evt16: AA-2/AA-3 close the transport)."""
    return Hooks(inbound=PDUFilter(lambda pdu, conn: b"" if pdu[:1] == bytes([C.A_ABORT]) else pdu))


def release_rp_dropped() -> Hooks:
    """An A-RELEASE-RQ is never answered (PS3.8 7.2, Table 9-10 AR-2/AR-3: A-RELEASE-RP)."""
    return Hooks(answer=lambda p, conn: None if isinstance(p, AReleaseRP) else p)


def sta13_answers() -> Hooks:
    """In Sta13 a PDU other than A-ABORT is taken as unrecognised, so it is answered with an A-ABORT
    instead of being ignored (Table 9-10 Sta13, Evt3-Evt15: AA-6 ignore; Evt6/Evt19: AA-7)."""
    def keep(pdu: bytes, conn: Any) -> bytes:
        if conn.assoc.state == "Sta13" and pdu[:1] != bytes([C.A_ABORT]):
            return UNKNOWN_PDU
        return pdu
    return Hooks(inbound=PDUFilter(keep))


def released_slot_held() -> Hooks:
    """A released association still counts against the limit for 30 s after its A-RELEASE-RP
    (Table 9-10 Sta13, Evt17, AR-5: the association is gone when the requestor closes)."""
    released: list[float] = []

    def hook(primitive, connection):
        if isinstance(primitive, AReleaseRP):
            released.append(time.monotonic())
        elif isinstance(primitive, AAssociateAC):
            held = sum(time.monotonic() - t < 30 for t in released)
            if connection.server.active + held > (connection.server.config.max_associations or 1):
                return AAssociateRJ(2, 3, 2)  # transient, service-provider (presentation), local limit
        return primitive
    return Hooks(answer=hook)


def responses_misaddressed() -> Hooks:
    """Responses name the wrong request and SOP class (PS3.7 9.3.1.2 and 9.3.5.2: Message ID Being
    Responded To and Affected SOP Class UID shall be those of the request)."""
    def change(ds):
        ds.MessageIDBeingRespondedTo = (ds.MessageIDBeingRespondedTo + 1) & 0xFFFF
        if "AffectedSOPClassUID" in ds:
            ds.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    return Hooks(answer=rewrite_response(change))


def status_failure() -> Hooks:
    """Every C-ECHO/C-STORE answers 0110 Processing failure (PS3.4 A.4, B.2.3: success is 0000)."""
    def change(ds):
        ds.Status = 0x0110
    return Hooks(answer=rewrite_response(change))


def max_length_ignored() -> Hooks:
    """Each response goes as one PDV in one P-DATA-TF whatever the requestor's Maximum Length
    (PS3.8 D.1: the PDU length shall never exceed it)."""
    def hook(primitive, connection):
        found = _command(primitive)
        if found is None:
            return primitive
        pdvs = dimse.message_pdvs(dimse.Message(*found), 0)
        return PDataTF(tuple(pdvs))
    return Hooks(answer=hook)


def unlimited_unanswered() -> Hooks:
    """A requestor that announced Maximum Length 0 (unlimited, PS3.8 D.1) gets no DIMSE response."""
    def hook(primitive, connection):
        if connection.assoc.peer_max_pdu_length == 0 and _command(primitive) is not None:
            return None
        return primitive
    return Hooks(answer=hook)


def ae_spaces_significant() -> Hooks:
    """An AE title with leading spaces is taken as another AE title (PS3.8 9.3.2 Table 9-11: leading
    and trailing spaces are non-significant)."""
    def change(ac, conn):
        rq = conn.assoc.rq
        if rq.called_ae_title.startswith(" "):
            return AAssociateRJ(1, 1, 7)
        if rq.calling_ae_title.startswith(" "):
            return AAssociateRJ(1, 1, 3)
        return ac
    return Hooks(answer=rewrite_ac(change))


def protocol_version_exact() -> Hooks:
    """Version 0x0003 is rejected and a version with bit 0 clear accepted (PS3.8 9.3.2 Table 9-11: only
    bit 0 is tested)."""
    def hook(primitive, conn):
        rq = conn.assoc.rq
        if isinstance(primitive, AAssociateAC) and rq.protocol_version != 1:
            return AAssociateRJ(1, 2, 2)
        if isinstance(primitive, AAssociateRJ) and not rq.protocol_version & 1:
            return negotiate(dataclasses.replace(rq, protocol_version=1), conn.server.policy).reply
        return primitive
    return Hooks(answer=hook)


def reserved_checked() -> Hooks:
    """Non-zero reserved fields are refused (PS3.8 9.3.1: reserved fields are not tested on receipt):
    such an A-ASSOCIATE-RQ is read as protocol version 0, such a P-DATA-TF or A-RELEASE-RQ as an
    unrecognised PDU."""
    def keep(pdu: bytes, conn: Any) -> bytes:
        kind = pdu[0]
        if kind == C.A_ASSOCIATE_RQ and len(pdu) >= 74 and (pdu[1] or any(pdu[8:10]) or any(pdu[42:74])):
            return pdu[:6] + b"\x00\x00" + pdu[8:]
        if kind in (C.P_DATA_TF, C.A_RELEASE_RQ) and (pdu[1] or (kind == C.A_RELEASE_RQ and any(pdu[6:10]))):
            return UNKNOWN_PDU
        return pdu
    return Hooks(inbound=PDUFilter(keep))


def contexts_all_accepted() -> Hooks:
    """Every presentation context is accepted with a transfer syntax that was not proposed (PS3.8 9.3.3.2
    Table 9-18: the transfer syntax is one of those proposed; PS3.7 D.3.2)."""
    def change(ac, conn):
        contexts = tuple(dataclasses.replace(pc, result=C.PC_ACCEPTANCE, transfer_syntax=NOT_PROPOSED_TS)
                         for pc in ac.presentation_contexts)
        return dataclasses.replace(ac, presentation_contexts=contexts)
    return Hooks(answer=rewrite_ac(change))


def last_context_dropped() -> Hooks:
    """Of two or more proposed presentation contexts the last gets no answer (PS3.8 9.3.3.2: one item
    per proposed context)."""
    return Hooks(answer=rewrite_ac(lambda ac, conn: dataclasses.replace(
        ac, presentation_contexts=ac.presentation_contexts[:-1] or ac.presentation_contexts)))


def no_implementation_class_uid() -> Hooks:
    """The AC has no Implementation Class UID sub-item (PS3.7 D.3.3.2: it shall be present)."""
    return Hooks(answer=rewrite_ac(lambda ac, conn: _user_info(
        ac, lambda s: not isinstance(s, ImplementationClassUID))))


def no_user_identity_response() -> Hooks:
    """A requested positive response is never sent (PS3.7 D.3.3.7.2)."""
    return Hooks(answer=rewrite_ac(lambda ac, conn: _user_info(ac, lambda s: not isinstance(s, UserIdentityAC))))


def async_window_unlimited() -> Hooks:
    """The AC always answers an unlimited (0, 0) asynchronous operations window (PS3.7 D.3.3.3)."""
    return Hooks(answer=rewrite_ac(lambda ac, conn: _user_info(
        ac, lambda s: not isinstance(s, AsynchronousOperationsWindow), (AsynchronousOperationsWindow(0, 0),))))


def _rq_roles(conn: Any) -> list[RoleSelection]:
    return [s for s in conn.assoc.rq.user_information.sub_items if isinstance(s, RoleSelection)]


def roles_all_granted() -> Hooks:
    """Every proposed role item is answered with both roles accepted (PS3.7 D.3.3.4 Table D.3-10)."""
    return Hooks(answer=rewrite_ac(lambda ac, conn: _user_info(
        ac, lambda s: not isinstance(s, RoleSelection),
        tuple(RoleSelection(r.sop_class_uid, 1, 1) for r in _rq_roles(conn)))))


def roles_refused() -> Hooks:
    """Every proposed role item is answered with both roles turned down, the claimed SCU role too."""
    return Hooks(answer=rewrite_ac(lambda ac, conn: _user_info(
        ac, lambda s: not isinstance(s, RoleSelection),
        tuple(RoleSelection(r.sop_class_uid, 0, 0) for r in _rq_roles(conn)))))


def roles_unasked() -> Hooks:
    """Role items the requestor did not ask for (PS3.7 D.3.3.4: an answer only for a proposed item, each
    for its own SOP class): every accepted abstract syntax gets one, and every proposed item is
    answered for the first proposed SOP class."""
    def change(ac, conn):
        asked = [r.sop_class_uid for r in _rq_roles(conn)]
        abstract = {pc.context_id: pc.abstract_syntax for pc in conn.assoc.rq.presentation_contexts}
        accepted = [abstract[pc.context_id] for pc in ac.presentation_contexts
                    if pc.result == C.PC_ACCEPTANCE and pc.context_id in abstract]
        uids = asked[:1] * len(asked) + [u for u in dict.fromkeys(accepted) if u not in asked]
        return _user_info(ac, lambda s: not isinstance(s, RoleSelection), tuple(RoleSelection(u, 1, 0) for u in uids))
    return Hooks(answer=rewrite_ac(change))


def oversized_pdata_taken(limit: int = 16382) -> Hooks:
    """A P-DATA-TF longer than the Maximum Length the AC announced is taken, as if it had come in
    PDUs that fit (PS3.8 D.1: exceeding it "shall be a protocol error"): its PDVs are cut into
    fragments of one P-DATA-TF each before the state machine sees them."""
    def keep(pdu: bytes, conn: Any) -> bytes:
        if pdu[0] != C.P_DATA_TF or len(pdu) - 6 <= limit:
            return pdu
        out, pos, step = [], 6, limit // 2
        while pos + 6 <= len(pdu):
            end = pos + 4 + int.from_bytes(pdu[pos:pos + 4], "big")
            context_id, mch, data = pdu[pos + 4], pdu[pos + 5], pdu[pos + 6:end]
            pieces = [data[i:i + step] for i in range(0, len(data), step)] or [b""]
            for i, piece in enumerate(pieces):
                last = mch & C.MCH_LAST if i == len(pieces) - 1 else 0
                pdv = bytes((context_id, (mch & C.MCH_COMMAND) | last)) + piece
                item = len(pdv).to_bytes(4, "big") + pdv
                out.append(bytes((C.P_DATA_TF, 0)) + len(item).to_bytes(4, "big") + item)
            pos = end
        return b"".join(out)
    return Hooks(inbound=PDUFilter(keep))


def single_connection() -> Hooks:
    """An A-ASSOCIATE-RQ is rejected while any other connection is open, queued ones included
    (PS3.8 9.1.2: incoming transport connections are accepted and each served)."""
    def change(ac, conn):
        return AAssociateRJ(1, 1, 1) if len(conn.server._connections) > 1 else ac
    return Hooks(answer=rewrite_ac(change))


def small_segments_refused() -> Hooks:
    """An A-ASSOCIATE-RQ that does not arrive in one read is taken as garbage (PS3.8 9.3.1 and 9.1.1:
    TCP is a byte stream; a PDU may arrive in any number of pieces)."""
    def hook(data: bytes, conn: Any) -> bytes:
        if conn.assoc.state == "Sta2" and data[:1] == bytes([C.A_ASSOCIATE_RQ]) and (
                len(data) < 6 or len(data) < 6 + int.from_bytes(data[2:6], "big")):
            return UNKNOWN_PDU
        return data
    return Hooks(inbound=hook)


def poisoned_by_abrupt_close() -> Hooks:
    """After any connection ended without release, abort or rejection (closed before or during its
    A-ASSOCIATE-RQ, reset, or cut mid-P-DATA), every further A-ASSOCIATE-RQ is rejected permanently
    (PS3.8 9.1.2: the acceptor listens again, Table 9-10 AA-5 back to Sta1)."""
    seen: list[Any] = []

    def hook(primitive, connection):
        if connection not in seen:
            seen.append(connection)
        if isinstance(primitive, AAssociateAC):
            clean = sum(c.closed and c.outcome.startswith(("released", "rejected", "aborted")) for c in seen)
            if connection.server.associations > clean:
                return AAssociateRJ(1, 1, 1)
        return primitive
    return Hooks(answer=hook)


_NO_TIMERS = {"artim_timeout": 60.0, "idle_timeout": None}

VARIANTS: dict[str, Variant] = {
    "abort-dropped": Variant(abort_dropped, (
        "fsm.associate-rj-before-association", "fsm.release-rp-before-association",
        "fsm.associate-ac-behind-associate-rq", "fsm.associate-rj-behind-associate-rq",
        "fsm.second-associate-rq-behind-associate-rq", "fsm.release-rp-behind-associate-rq",
        "fsm.unknown-pdu-behind-associate-rq", "fsm.associate-rq-behind-release-rq",
        "fsm.unknown-pdu-behind-release-rq", "fsm.release-rq-before-association",
        "fsm.associate-ac-before-association", "fsm.associate-rj-in-association",
        "fsm.associate-ac-in-association", "fsm.unsolicited-release-rp",
        "malformed.associate-rq-length-below-fixed-fields", "malformed.associate-rq-item-overruns-pdu",
        "malformed.pdv-overruns-pdata-tf", "malformed.pdv-length-too-small", "malformed.release-rq-wrong-length",
        "malformed.pdata-before-association", "malformed.second-associate-rq",
        "malformed.unknown-pdu-type-in-association", "malformed.unknown-pdu-type-no-body-in-association",
        "malformed.unknown-pdu-type-before-association", "malformed.unknown-pdu-type-no-body-before-association",
        "release-abort.associate-rq-after-release-rp-aborted", "release-abort.unknown-pdu-after-release-rp-aborted",
    )),
    "abort-source-swapped": Variant(abort_source_swapped, (
        "fsm.associate-rj-before-association", "fsm.release-rp-before-association",
        "fsm.associate-ac-behind-associate-rq", "fsm.associate-rj-behind-associate-rq",
        "fsm.second-associate-rq-behind-associate-rq", "fsm.release-rp-behind-associate-rq",
        "fsm.unknown-pdu-behind-associate-rq", "fsm.associate-ac-before-association",
        "fsm.associate-rj-in-association", "fsm.associate-ac-in-association", "fsm.unsolicited-release-rp",
        "malformed.associate-rq-length-below-fixed-fields", "malformed.associate-rq-item-overruns-pdu",
        "malformed.pdv-overruns-pdata-tf", "malformed.release-rq-wrong-length",
        "malformed.pdata-before-association", "malformed.second-associate-rq",
        "malformed.unknown-pdu-type-no-body-in-association", "malformed.unknown-pdu-type-before-association",
        "malformed.unknown-pdu-type-no-body-before-association", "malformed.pdata-exceeds-acceptor-max-length",
    )),
    "peer-abort-ignored": Variant(peer_abort_ignored, (
        "fsm.abort-before-association-closes", "fsm.abort-behind-associate-rq", "fsm.abort-behind-release-rq",
        "release-abort.a-abort-closes-transport", "release-abort.abort-after-release-rp-closes",
        "release-abort.abort-with-nonzero-reserved-closes", "release-abort.abort-mid-message",
    ), config=_NO_TIMERS),
    "release-rp-dropped": Variant(release_rp_dropped, (
        "release-abort.release-answered", "release-abort.release-after-echo", "release-abort.nothing-after-release-rp",
        "release-abort.pdata-after-release-rp-ignored", "release-abort.associate-ac-after-release-rp-ignored",
        "release-abort.associate-rj-after-release-rp-ignored", "release-abort.release-rq-after-release-rp-ignored",
        "release-abort.release-rp-after-release-rp-ignored",
    ), config=_NO_TIMERS),
    "sta13-answers": Variant(sta13_answers, (
        "release-abort.pdata-after-release-rp-ignored", "release-abort.associate-ac-after-release-rp-ignored",
        "release-abort.associate-rj-after-release-rp-ignored", "release-abort.release-rq-after-release-rp-ignored",
        "release-abort.release-rp-after-release-rp-ignored",
    )),
    "released-slot-held": Variant(released_slot_held, ("release-abort.close-after-release-rp-frees-association",)),
    "responses-misaddressed": Variant(responses_misaddressed, (
        "dimse.echo-response-fields", "dimse.store-response-fields",
    )),
    "status-failure": Variant(status_failure, (
        "dimse.echo", "dimse.store-ct", "dimse.fragmented-command-reassembled",
        "dimse.fragmented-command-element-boundary", "dimse.mch-reserved-bits-not-checked",
        "dimse.store-then-echo-same-association", "dimse.store-command-and-data-in-one-pdu",
        "dimse.store-data-set-fragmented-over-pdus", "fsm.associate-rq-on-open-connection",
        "fsm.pdata-in-association-indicated", "negotiation.nonzero-reserved-in-pdata-accepted",
        "roles.scu-proposal-store-served", "connection.parallel-associations",
        "connection.three-parallel-associations-each-served", "tls.echo", "tls.store-and-release",
        "tls.fragmented-command-reassembled",
    ), tls=True),
    "max-length-ignored": Variant(max_length_ignored, (
        "negotiation.our-small-max-length-honoured-echo", "negotiation.our-small-max-length-honoured-store",
    )),
    "unlimited-unanswered": Variant(unlimited_unanswered, (
        "negotiation.max-length-zero-unlimited-served", "negotiation.max-length-zero-unlimited-store",
    )),
    "called-ae-unchecked": Variant(None, ("negotiation.called-ae-not-recognized",),
                                   config={"require_called_ae": False}),
    "calling-ae-unchecked": Variant(None, ("negotiation.calling-ae-not-recognized",),
                                    config={"allowed_calling_aes": None}),
    "ae-spaces-significant": Variant(ae_spaces_significant, (
        "negotiation.called-ae-leading-spaces-not-significant", "negotiation.calling-ae-leading-spaces-not-significant",
    )),
    "protocol-version-exact": Variant(protocol_version_exact, (
        "negotiation.protocol-version-3-accepted", "negotiation.protocol-version-bit0-clear-rejected",
    )),
    "reserved-checked": Variant(reserved_checked, (
        "negotiation.nonzero-reserved-fields-accepted", "negotiation.nonzero-reserved-in-pdata-accepted",
    )),
    "contexts-all-accepted": Variant(contexts_all_accepted, (
        "negotiation.verification-accepted", "negotiation.unsupported-abstract-syntax-rejected",
        "negotiation.unsupported-transfer-syntax-rejected", "negotiation.transfer-syntax-chosen-from-proposed",
    )),
    "last-context-dropped": Variant(last_context_dropped, (
        "negotiation.context-ids-echoed", "negotiation.128-contexts-all-answered",
    )),
    "no-implementation-class-uid": Variant(no_implementation_class_uid, (
        "negotiation.ac-implementation-class-uid-present",
    )),
    "no-user-identity-response": Variant(no_user_identity_response, (
        "negotiation.user-identity-positive-response",
    )),
    "async-window-unlimited": Variant(async_window_unlimited, (
        "negotiation.async-window-answer-within-proposal", "negotiation.async-window-not-proposed-not-answered",
    )),
    "roles-all-granted": Variant(roles_all_granted, (
        "roles.scu-only-proposal-never-grants-scp", "roles.scp-only-proposal-never-grants-scu",
        "roles.neither-role-proposed-never-granted",
    )),
    "roles-refused": Variant(roles_refused, (
        "roles.both-proposed-scu-granted-when-claimed", "roles.scu-proposal-store-served",
    )),
    "roles-unasked": Variant(roles_unasked, (
        "roles.no-proposal-no-role-item", "roles.each-sop-class-answered-separately",
        "roles.answers-only-for-proposed-sop-classes",
    )),
    "oversized-pdata-taken": Variant(oversized_pdata_taken, ("malformed.pdata-exceeds-acceptor-max-length",)),
    "small-segments-refused": Variant(small_segments_refused, (
        "malformed.associate-rq-in-small-segments", "tls.fragmented-rq-over-tls",
    ), tls=True),
    "poisoned-by-abrupt-close": Variant(poisoned_by_abrupt_close, (
        "connection.reset-during-rq-next-answered", "fsm.close-before-association",
        "malformed.cut-pdata-then-close-target-survives",
    )),
    # Claims three associations, serves one: the second is rejected (PS3.8 9.1.1, 9.1.2).
    "one-association-only": Variant(None, (
        "connection.parallel-associations", "connection.three-parallel-associations-each-served",
    ), config={"max_associations": 1}),
    "single-connection": Variant(single_connection, ("connection.queued-connections-served-in-order",)),
    # TLS twins: the same broken rules behind the TLS listener (PS3.15 B.1), caught by the tls area.
    "abort-dropped-tls": Variant(abort_dropped, (
        "tls.unknown-pdu-in-association-aborted", "tls.pdata-before-association-aborted",
        "tls.pdata-exceeds-acceptor-max-length",
    ), tls=True),
    "abort-source-swapped-tls": Variant(abort_source_swapped, (
        "tls.unknown-pdu-in-association-aborted", "tls.pdata-before-association-aborted",
        "tls.pdata-exceeds-acceptor-max-length",
    ), tls=True),
    "peer-abort-ignored-tls": Variant(peer_abort_ignored, (
        "tls.a-abort-closes-transport", "tls.abort-before-association-closes",
    ), config=_NO_TIMERS, tls=True),
    "release-rp-dropped-tls": Variant(release_rp_dropped, ("tls.release-answered",), config=_NO_TIMERS, tls=True),
    "called-ae-unchecked-tls": Variant(None, ("tls.called-ae-not-recognized",),
                                       config={"require_called_ae": False}, tls=True),
    "oversized-pdata-taken-tls": Variant(oversized_pdata_taken, ("tls.pdata-exceeds-acceptor-max-length",), tls=True),
    # A TLS listener weaker than the BCP 195 profiles allow (PS3.15 B.10, B.12).
    "tls-1.0-and-1.1-negotiated": Variant(None, ("tls.tls-1-0-refused", "tls.tls-1-1-refused"), tls=True,
                                          tls_config={"min_version": "TLSv1", "ciphers": "DEFAULT:@SECLEVEL=0"}),
    "tls-1.2-refused": Variant(None, ("tls.tls-1-2-supported",), tls=True, tls_config={"min_version": "TLSv1.3"}),
    "null-suites-negotiated": Variant(None, ("tls.null-and-export-suites-refused",), tls=True,
                                      tls_config={"ciphers": "ALL:eNULL:@SECLEVEL=0"}),  # DEFAULT removes eNULL for good
}

# The services' broken variants (PS3.4 C, F.7, J, K): wrong handlers, one table per part.
for _table in (service_variants_find.VARIANTS, service_variants_retrieve.VARIANTS, service_variants_workflow.VARIANTS):
    assert not set(_table) & set(VARIANTS), "a service variant reuses a name"
    VARIANTS.update(_table)

# Must-level scenarios of the shipped library that no variant above catches yet.
UNMAPPED: tuple[str, ...] = ()


# ---------------------------------------------------------------- running a variant


def _profile(path: Path, name: str, changes: dict, tls: dict, move_port: int) -> Path:
    data = yaml.safe_load(REFERENCE.read_text(encoding="utf-8"))
    data["name"] = f"reference SCP, as a correct {name} would claim"
    data["tls"] = tls
    # A named target sends C-MOVE sub-operations (and new-association commitment reports) to the
    # port its configuration gives (scp_config passes the profile's): a fixed free port, where each
    # scenario that needs it starts its own listener (the same port in the SCP's profile and the run's).
    data["query_retrieve"]["move_destination"]["port"] = move_port
    data.update(changes)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(port: int, profile: Path, report: Path, ids: tuple[str, ...]) -> dict[str, dict]:
    argv = [sys.executable, "-m", "pytest", str(REPO / "scenarios"), "-q", "-p", "no:cacheprovider", "-n", "0",
            "-k", " or ".join(ids), "--target", f"127.0.0.1:{port}", "--profile", str(profile),
            "--report-dir", str(report)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert (report / "report.json").exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    scenarios = json.loads((report / "report.json").read_text(encoding="utf-8"))["scenarios"]
    return {s["id"]: s for s in scenarios}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_broken_variant_is_caught_by_its_scenarios(name, tmp_path):
    variant = VARIANTS[name]
    move_port = _free_port()
    base = load_profile(_profile(tmp_path / "base.yaml", name, variant.profile, {"enabled": variant.tls}, move_port))
    cert = key = None
    if variant.tls:
        from dicomconf.scenario.certs import TLSUnavailable, self_signed
        try:
            cert, key = self_signed(tmp_path)
        except TLSUnavailable as exc:
            pytest.skip(f"no TLS certificate can be made here: {exc}")
    config = dataclasses.replace(base.scp_config(port=0, cert=cert, key=key), **variant.config)
    if variant.tls_config:
        config = dataclasses.replace(config, tls=dataclasses.replace(config.tls, **variant.tls_config))
    handle = run_in_thread(config, hooks=variant.hooks() if variant.hooks else None)
    if variant.handlers is not None:  # before any association: connections read them when they associate
        handle.scp.handlers = variant.handlers(dict(handle.scp.handlers))
    try:
        tls = {"enabled": True, "port": handle.tls_port, "ca": cert} if variant.tls else {"enabled": False}
        profile = _profile(tmp_path / "profile.yaml", name, variant.profile, tls, move_port)
        results = _run(handle.port, profile, tmp_path / "report", variant.scenarios)
    finally:
        handle.stop()
    wrong = {}
    for sid in variant.scenarios:
        got = results.get(sid)
        if got is None or got["outcome"] != "failed":
            wrong[sid] = "not run" if got is None else (got["outcome"], (got.get("failure") or {}).get("message")
                                                        or got.get("skip_reason"))
    assert not wrong, f"{name}: scenarios that did not catch it: {wrong}"


def test_mapping_names_must_level_scenarios():
    """Every mapped id is a must-level scenario of the shipped library that tests an SCP; every
    must-level one is mapped or listed in UNMAPPED; ids are plain enough for ``-k``.  (Scenarios that
    test an SCU have their broken SCUs in test_suite_scu_part_a.py and test_suite_scu_part_b.py.)"""
    infos = [i for i in catalogue([REPO / "scenarios"]) if i.error is None and i.role != "scp"]
    severity = {i.id: i.severity for i in infos}
    mapped = {sid for v in VARIANTS.values() for sid in v.scenarios}
    unknown = sorted(sid for sid in mapped | set(UNMAPPED) if sid not in severity)
    not_must = sorted(sid for sid in mapped | set(UNMAPPED) if severity.get(sid, "must") != "must")
    assert not unknown, f"mapped scenarios that do not exist: {unknown}"
    assert not not_must, f"mapped scenarios that are not must-level: {not_must}"
    assert all(re.fullmatch(r"[\w.\-]+", sid) for sid in mapped)
    must = {sid for sid, sev in severity.items() if sev == "must"}
    assert not set(UNMAPPED) & mapped
    assert must - mapped <= set(UNMAPPED), f"must-level scenarios no variant catches: {sorted(must - mapped - set(UNMAPPED))}"
