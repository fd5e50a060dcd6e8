"""What an acceptor's reply breaks, given the request it answers (PS3.8 7.1.1, 9.3.3-9.3.4; PS3.7 D.3.3).

Theory of operation
-------------------
:func:`check_reply` takes a decoded A-ASSOCIATE-RQ and the A-ASSOCIATE-AC or
-RJ that answered it and returns one :class:`Problem` per rule broken.  It
judges meaning, not bytes: the codec has already refused what cannot be
decoded, and the wire layer turns problems into findings with offsets.

Every problem code lives once in :data:`PROBLEMS` with its clause and
severity, so codes and clauses stay stable: "must" is a "shall" of the
standard; "should" is a value the standard asks for but says is not tested
on receipt, or a choice no clause forbids outright but that no conforming
acceptor makes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pydicom.uid import RE_VALID_UID

from dicomconf.ul import constants as C
from dicomconf.ul.pdu import AAssociateAC, AAssociateRJ, AAssociateRQ

MUST = "must"
SHOULD = "should"


@dataclass(frozen=True, slots=True)
class Problem:
    """One rule a reply breaks: a stable ``code``, the ``clause`` broken, ``severity`` and a message."""

    code: str
    clause: str
    severity: str
    message: str


# code -> (clause, severity)
PROBLEMS: dict[str, tuple[str, str]] = {
    # presentation contexts
    "ac.context.missing": ("PS3.8 7.1.1.14", MUST),
    "ac.context.not-proposed": ("PS3.8 7.1.1.14", MUST),
    "ac.context.duplicate": ("PS3.8 7.1.1.14", MUST),
    "ac.context.id-not-odd": ("PS3.8 9.3.3.2", MUST),
    "ac.context.result-undefined": ("PS3.8 9.3.3.2 Table 9-18", MUST),
    "ac.context.no-transfer-syntax": ("PS3.8 9.3.3.2", MUST),
    "ac.context.transfer-syntax-not-proposed": ("PS3.8 7.1.1.14", MUST),
    # fixed fields echoed or answered
    "ac.protocol-version": ("PS3.8 9.3.3 Table 9-17", MUST),
    "ac.application-context": ("PS3.7 A.2.1", SHOULD),
    "ac.called-ae-echo": ("PS3.8 9.3.3 Table 9-17", SHOULD),
    "ac.calling-ae-echo": ("PS3.8 9.3.3 Table 9-17", SHOULD),
    "ac.reserved-echo": ("PS3.8 9.3.3 Table 9-17", SHOULD),
    # user information
    "ac.max-length.missing": ("PS3.8 D.1", SHOULD),
    "ac.max-length.duplicate": ("PS3.8 D.1.2", MUST),
    "ac.implementation-class-uid.missing": ("PS3.7 D.3.3.2", MUST),
    "ac.implementation-class-uid.invalid": ("PS3.5 9.1", MUST),
    "ac.implementation-class-uid.duplicate": ("PS3.7 D.3.3.2.2", MUST),
    "ac.implementation-version-name.length": ("PS3.7 D.3.3.2.4", MUST),
    "ac.implementation-version-name.duplicate": ("PS3.7 D.3.3.2.4", MUST),
    "ac.async-window.not-proposed": ("PS3.7 D.3.3.3", MUST),
    "ac.async-window.duplicate": ("PS3.7 D.3.3.3.2", MUST),
    "ac.async-window.exceeds-proposal": ("PS3.7 D.3.3.3", MUST),
    "ac.role.not-proposed": ("PS3.7 D.3.3.4", MUST),
    "ac.role.granted-unproposed": ("PS3.7 D.3.3.4", MUST),
    "ac.role.value-undefined": ("PS3.7 D.3.3.4.2 Table D.3-10", MUST),
    "ac.role.duplicate": ("PS3.7 D.3.3.4", SHOULD),
    "ac.extended.not-proposed": ("PS3.7 D.3.3.5", MUST),
    "ac.extended.duplicate": ("PS3.7 D.3.3.5.2", MUST),
    "ac.common-extended.present": ("PS3.7 D.3.3.6", SHOULD),
    "ac.user-identity.not-requested": ("PS3.7 D.3.3.7", MUST),
    "ac.user-identity.response-not-requested": ("PS3.7 D.3.3.7", SHOULD),
    "ac.user-identity.response-not-empty": ("PS3.7 D.3.3.7.2 Table D.3-15", MUST),
    "ac.user-identity.duplicate": ("PS3.7 D.3.3.7.2", MUST),
    "ac.user-identity.rq-form": ("PS3.7 D.3.3.7.2", MUST),
    # A-ASSOCIATE-RJ
    "rj.result-undefined": ("PS3.8 9.3.4 Table 9-21", MUST),
    "rj.source-undefined": ("PS3.8 9.3.4 Table 9-21", MUST),
    "rj.reason-undefined": ("PS3.8 9.3.4 Table 9-21", MUST),
    "rj.protocol-version-supported": ("PS3.8 9.3.2 Table 9-11", MUST),
    "rj.application-context-supported": ("PS3.7 A.2.1", SHOULD),
}


def _problem(code: str, message: str) -> Problem:
    clause, severity = PROBLEMS[code]
    return Problem(code, clause, severity, message)


def _ae(title: str) -> str:
    return title.strip(" ")


def check_reply(rq: AAssociateRQ, reply: AAssociateAC | AAssociateRJ) -> list[Problem]:
    """Every way ``reply`` breaks the rules given ``rq``; an empty list when it breaks none."""
    if isinstance(reply, AAssociateRJ):
        return _check_rj(rq, reply)
    if isinstance(reply, AAssociateAC):
        return _check_contexts(rq, reply) + _check_fixed(rq, reply) + _check_user_information(rq, reply)
    raise TypeError(f"check_reply needs an AAssociateAC or AAssociateRJ, not {type(reply).__name__}")


def _check_rj(rq: AAssociateRQ, rj: AAssociateRJ) -> list[Problem]:
    out: list[Problem] = []
    if rj.result not in C.RJ_RESULT_NAMES:
        out.append(_problem("rj.result-undefined", f"result {rj.result} is neither 1 (permanent) nor 2 (transient)"))
    if rj.source not in C.RJ_SOURCE_NAMES:
        out.append(_problem("rj.source-undefined", f"source {rj.source} is not 1, 2 or 3"))
    elif rj.reason not in C.RJ_REASONS_BY_SOURCE[rj.source]:
        allowed = ", ".join(str(r) for r in sorted(C.RJ_REASONS_BY_SOURCE[rj.source]))
        out.append(
            _problem(
                "rj.reason-undefined",
                f"reason {rj.reason} is not defined for source {rj.source} "
                f"({C.RJ_SOURCE_NAMES[rj.source]}); defined: {allowed}",
            )
        )
    if (
        (rj.source, rj.reason) == (C.RJ_SOURCE_ACSE, C.RJ_ACSE_PROTOCOL_VERSION_NOT_SUPPORTED)
        and rq.protocol_version & C.PROTOCOL_VERSION
    ):
        out.append(
            _problem(
                "rj.protocol-version-supported",
                f"protocol-version-not-supported although the request's version {rq.protocol_version:#06x} "
                "has bit 0 set, the only bit a receiver tests",
            )
        )
    if (
        (rj.source, rj.reason) == (C.RJ_SOURCE_USER, C.RJ_USER_APPLICATION_CONTEXT_NOT_SUPPORTED)
        and rq.application_context_name == C.APPLICATION_CONTEXT_NAME
    ):
        out.append(
            _problem(
                "rj.application-context-supported",
                f"application-context-name-not-supported for the DICOM application context {C.APPLICATION_CONTEXT_NAME}",
            )
        )
    return out


def _check_contexts(rq: AAssociateRQ, ac: AAssociateAC) -> list[Problem]:
    out: list[Problem] = []
    proposed = {}
    for pc in rq.presentation_contexts:
        proposed.setdefault(pc.context_id, pc)
    counts = Counter(pc.context_id for pc in ac.presentation_contexts)
    for cid, n in sorted(counts.items()):
        if n > 1:
            out.append(_problem("ac.context.duplicate", f"presentation context {cid} is answered {n} times"))
    for pc in ac.presentation_contexts:
        cid = pc.context_id
        if cid % 2 == 0:
            out.append(_problem("ac.context.id-not-odd", f"presentation context ID {cid} is not an odd number 1-255"))
        if cid not in proposed:
            out.append(_problem("ac.context.not-proposed", f"presentation context {cid} was not proposed"))
        if pc.result not in C.PC_RESULT_NAMES:
            out.append(
                _problem("ac.context.result-undefined", f"presentation context {cid} has result {pc.result}, not 0-4")
            )
        if pc.result != C.PC_ACCEPTANCE:
            continue  # the transfer syntax of a rejected context is not significant (Table 9-18)
        if pc.transfer_syntax is None:
            out.append(
                _problem("ac.context.no-transfer-syntax", f"accepted presentation context {cid} names no transfer syntax")
            )
        elif cid in proposed and pc.transfer_syntax not in proposed[cid].transfer_syntaxes:
            out.append(
                _problem(
                    "ac.context.transfer-syntax-not-proposed",
                    f"presentation context {cid} accepted with transfer syntax {pc.transfer_syntax}, "
                    f"not one of those proposed ({', '.join(proposed[cid].transfer_syntaxes)})",
                )
            )
    for cid in proposed:
        if cid not in counts:
            out.append(_problem("ac.context.missing", f"proposed presentation context {cid} is not answered"))
    return out


def _check_fixed(rq: AAssociateRQ, ac: AAssociateAC) -> list[Problem]:
    out: list[Problem] = []
    if not ac.protocol_version & C.PROTOCOL_VERSION:
        out.append(_problem("ac.protocol-version", f"protocol version {ac.protocol_version:#06x} does not have bit 0 set"))
    if ac.application_context_name != rq.application_context_name:
        out.append(
            _problem(
                "ac.application-context",
                f"application context {ac.application_context_name} differs from the one proposed, "
                f"{rq.application_context_name}",
            )
        )
    if _ae(ac.called_ae_title) != _ae(rq.called_ae_title):
        out.append(
            _problem("ac.called-ae-echo", f"called AE title {ac.called_ae_title!r} does not echo {rq.called_ae_title!r}")
        )
    if _ae(ac.calling_ae_title) != _ae(rq.calling_ae_title):
        out.append(
            _problem(
                "ac.calling-ae-echo", f"calling AE title {ac.calling_ae_title!r} does not echo {rq.calling_ae_title!r}"
            )
        )
    if ac.reserved != rq.reserved:
        out.append(_problem("ac.reserved-echo", "bytes 43-74 do not echo those of the A-ASSOCIATE-RQ"))
    return out


def _exceeds(answer: int, proposal: int) -> bool:
    """True when ``answer`` allows more than ``proposal``, 0 meaning unlimited (PS3.7 D.3.3.3)."""
    if proposal == 0:
        return False
    return answer == 0 or answer > proposal


def _check_user_information(rq: AAssociateRQ, ac: AAssociateAC) -> list[Problem]:
    out: list[Problem] = []
    rq_ui, ui = rq.user_information, ac.user_information
    kinds = Counter(s.item_type for s in ui.sub_items)

    if kinds[C.SUB_MAXIMUM_LENGTH] == 0:
        out.append(_problem("ac.max-length.missing", "no maximum length sub-item"))
    elif kinds[C.SUB_MAXIMUM_LENGTH] > 1:
        out.append(_problem("ac.max-length.duplicate", f"{kinds[C.SUB_MAXIMUM_LENGTH]} maximum length sub-items"))
    for code, item_type, what in (
        ("ac.implementation-class-uid.duplicate", C.SUB_IMPLEMENTATION_CLASS_UID, "implementation class UID"),
        ("ac.implementation-version-name.duplicate", C.SUB_IMPLEMENTATION_VERSION_NAME, "implementation version name"),
        ("ac.async-window.duplicate", C.SUB_ASYNCHRONOUS_OPERATIONS_WINDOW, "asynchronous operations window"),
    ):
        if kinds[item_type] > 1:
            out.append(_problem(code, f"{kinds[item_type]} {what} sub-items; only one may be present"))
    uid = ui.implementation_class_uid
    if not uid:
        out.append(_problem("ac.implementation-class-uid.missing", "no implementation class UID"))
    elif len(uid) > 64 or not RE_VALID_UID.match(uid):
        out.append(
            _problem("ac.implementation-class-uid.invalid", f"implementation class UID {uid!r} is not a valid UID")
        )
    name = ui.implementation_version_name
    if name is not None and not 1 <= len(name) <= 16:
        out.append(
            _problem("ac.implementation-version-name.length", f"implementation version name of {len(name)} characters")
        )

    window, proposed_window = ui.asynchronous_operations_window, rq_ui.asynchronous_operations_window
    if window is not None and proposed_window is None:
        out.append(_problem("ac.async-window.not-proposed", "asynchronous operations window answered but not proposed"))
    elif window is not None and proposed_window is not None:
        for what, answer, proposal in (
            ("invoked", window.maximum_number_operations_invoked, proposed_window.maximum_number_operations_invoked),
            ("performed", window.maximum_number_operations_performed, proposed_window.maximum_number_operations_performed),
        ):
            if _exceeds(answer, proposal):
                out.append(
                    _problem(
                        "ac.async-window.exceeds-proposal",
                        f"maximum operations {what} {answer} exceeds the {proposal} proposed (0 = unlimited)",
                    )
                )

    out += _check_roles(rq, ac)

    proposed_ext = {e.sop_class_uid for e in rq_ui.extended_negotiations}
    ext_counts = Counter(e.sop_class_uid for e in ui.extended_negotiations)
    for sop, n in ext_counts.items():
        if sop not in proposed_ext:
            out.append(_problem("ac.extended.not-proposed", f"SOP class extended negotiation for {sop} was not proposed"))
        if n > 1:
            out.append(_problem("ac.extended.duplicate", f"{n} SOP class extended negotiation sub-items for {sop}"))
    if ui.common_extended_negotiations:
        out.append(
            _problem(
                "ac.common-extended.present",
                "SOP class common extended negotiation sub-item in an A-ASSOCIATE-AC; it is defined for the RQ only",
            )
        )

    out += _check_user_identity(rq, ac)
    return out


def _check_roles(rq: AAssociateRQ, ac: AAssociateAC) -> list[Problem]:
    out: list[Problem] = []
    proposed = {}
    for item in rq.user_information.role_selections:
        proposed.setdefault(item.sop_class_uid, item)
    counts = Counter(r.sop_class_uid for r in ac.user_information.role_selections)
    for sop, n in counts.items():
        if n > 1:
            out.append(_problem("ac.role.duplicate", f"{n} role selection sub-items for {sop}"))
    for item in ac.user_information.role_selections:
        sop = item.sop_class_uid
        for what, value in (("SCU", item.scu_role), ("SCP", item.scp_role)):
            if value not in (0, 1):
                out.append(_problem("ac.role.value-undefined", f"{what}-role {value} for {sop} is neither 0 nor 1"))
        asked = proposed.get(sop)
        if asked is None:
            out.append(_problem("ac.role.not-proposed", f"role selection answered for {sop}, which sent no role item"))
            continue
        for what, value, offered in (("SCU", item.scu_role, asked.scu_role), ("SCP", item.scp_role, asked.scp_role)):
            if value == 1 and offered != 1:
                out.append(
                    _problem("ac.role.granted-unproposed", f"{what} role granted for {sop} though proposed {offered}")
                )
    return out


def _check_user_identity(rq: AAssociateRQ, ac: AAssociateAC) -> list[Problem]:
    out: list[Problem] = []
    ui = ac.user_information
    asked = rq.user_information.user_identity
    responses = [s for s in ui.sub_items if s.item_type == C.SUB_USER_IDENTITY_AC]
    if ui.user_identity is not None:
        out.append(_problem("ac.user-identity.rq-form", "user identity sub-item 58H (the RQ form) in an A-ASSOCIATE-AC"))
    if len(responses) > 1:
        out.append(_problem("ac.user-identity.duplicate", f"{len(responses)} user identity sub-items"))
    if not responses:
        return out
    if asked is None:
        out.append(_problem("ac.user-identity.not-requested", "user identity response without a user identity request"))
        return out
    if asked.positive_response_requested != 1:
        out.append(
            _problem(
                "ac.user-identity.response-not-requested",
                "user identity response although the request asked for no positive response",
            )
        )
    if asked.user_identity_type in (C.USER_IDENTITY_USERNAME, C.USER_IDENTITY_USERNAME_PASSCODE):
        for response in responses:
            if response.server_response:
                out.append(
                    _problem(
                        "ac.user-identity.response-not-empty",
                        f"server response of {len(response.server_response)} bytes for user identity type "
                        f"{asked.user_identity_type}; it shall be empty",
                    )
                )
    return out
