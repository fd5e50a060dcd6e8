"""Findings: a table of malformed PDUs, each with the finding it must produce; legal PDUs produce none."""

from __future__ import annotations

import pytest

from dicomconf.wire.craft import build_pdu
from dicomconf.wire.findings import MUST, SHOULD, ConversationState, Finding, check

RQ, AC = "A-ASSOCIATE-RQ", "A-ASSOCIATE-AC"
ECHO_CMD = {"CommandField": "C-ECHO-RQ", "MessageID": 1}

# (fault, spec, expected code, expected severity, expected offset or None to skip the offset check)
MALFORMED = [
    ("too short for a header", {"raw": "0100"}, "pdu.too-short", MUST, 0),
    ("unknown PDU type", {"pdu": 8, "body": "00000000"}, "pdu.unknown-type", MUST, 0),
    ("length field too big", {"pdu": "A-RELEASE-RQ", "length": 9}, "pdu.length-mismatch", MUST, 2),
    ("length field too small", {"pdu": RQ, "length": 100}, "pdu.length-mismatch", MUST, 2),
    ("release RQ body not 4", {"pdu": "A-RELEASE-RQ", "body": "000000", "length": 3}, "pdu.fixed-length", MUST, 2),
    ("abort body not 4", {"pdu": "A-ABORT", "body": "0000000000"}, "pdu.fixed-length", MUST, 2),
    ("RJ result 3", {"pdu": "A-ASSOCIATE-RJ", "result": 3}, "rj.result-invalid", MUST, 7),
    ("RJ source 4", {"pdu": "A-ASSOCIATE-RJ", "source": 4}, "rj.source-invalid", MUST, 8),
    ("RJ reason 5 for user", {"pdu": "A-ASSOCIATE-RJ", "source": 1, "reason": 5}, "rj.reason-invalid", MUST, 9),
    ("RJ reason 3 for ACSE", {"pdu": "A-ASSOCIATE-RJ", "source": 2, "reason": 3}, "rj.reason-invalid", MUST, 9),
    ("abort source 1 (reserved)", {"pdu": "A-ABORT", "source": 1}, "abort.source-invalid", MUST, 8),
    ("abort provider reason 3", {"pdu": "A-ABORT", "source": 2, "reason": 3}, "abort.reason-invalid", MUST, 9),
    ("RQ shorter than fixed fields", {"pdu": RQ, "body": "0001" + "00" * 20}, "assoc.too-short", MUST, 2),
    ("protocol version bit 0 clear", {"pdu": RQ, "protocol_version": 2}, "assoc.protocol-version", MUST, 6),
    ("called AE all spaces", {"pdu": RQ, "called_ae_title": ""}, "ae.all-spaces", MUST, 10),
    ("calling AE control char", {"pdu": RQ, "calling_ae_title": "BAD\tAE"}, "ae.invalid-characters", MUST, 26),
    ("AC AE all spaces is only should", {"pdu": AC, "calling_ae_title": ""}, "ae.all-spaces", SHOULD, 26),
    ("trailing bytes too short for an item", {"pdu": RQ, "extra_items": [{"item": 0x60, "raw": ""}],
                                              "truncate": 211}, "item.truncated-header", MUST, None),
    ("item length overruns", {"pdu": RQ, "user_information": {"length": 200, "sub_items": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"}]}}, "item.length-overrun", MUST, None),
    ("no application context", {"pdu": RQ, "application_context_name": None}, "assoc.no-application-context",
     MUST, 74),
    ("two application contexts", {"pdu": RQ, "extra_items": [{"item": "application-context"}]},
     "assoc.duplicate-application-context", MUST, None),
    ("application context name not a UID", {"pdu": RQ, "application_context_name": "1.2.x"}, "uid.invalid", MUST,
     78),
    ("no presentation context", {"pdu": RQ, "presentation_contexts": []}, "assoc.no-presentation-context", MUST, 74),
    ("129 presentation contexts", {"pdu": RQ, "presentation_contexts": [{"context_id": 1 + 2 * (i % 128)}
                                                                         for i in range(129)]},
     "assoc.too-many-presentation-contexts", MUST, 74),
    ("no user information", {"pdu": RQ, "user_information": None}, "assoc.no-user-information", MUST, 74),
    ("two user information items", {"pdu": RQ, "extra_items": [{"item": "user-information", "sub_items": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"}]}]},
     "assoc.duplicate-user-information", MUST, None),
    ("AC context item in an RQ", {"pdu": RQ, "extra_items": [{"item": "presentation-context-ac"}]},
     "assoc.unexpected-item", MUST, None),
    ("unknown item type", {"pdu": RQ, "extra_items": [{"item": 0x60, "raw": "00"}]}, "assoc.unknown-item", SHOULD,
     None),
    ("user information before contexts", {"pdu": RQ, "items": [
        {"item": "application-context"},
        {"item": "user-information", "sub_items": [{"item": "maximum-length"}, {"item": "implementation-class-uid"}]},
        {"item": "presentation-context-rq"}]}, "assoc.item-order", SHOULD, None),
    ("even context ID", {"pdu": RQ, "presentation_contexts": [{"context_id": 2}]}, "pc.context-id-even", MUST, 78 + 21 + 4),
    ("duplicate context ID", {"pdu": RQ, "presentation_contexts": [{"context_id": 1}, {"context_id": 1}]},
     "pc.duplicate-context-id", MUST, None),
    ("context item shorter than 4", {"pdu": RQ, "presentation_contexts": [{"raw": "01"}]}, "pc.too-short", MUST,
     None),
    ("no abstract syntax", {"pdu": RQ, "presentation_contexts": [{"items": [{"item": "transfer-syntax",
                                                                             "uid": "1.2.840.10008.1.2"}]}]},
     "pc.no-abstract-syntax", MUST, None),
    ("two abstract syntaxes", {"pdu": RQ, "presentation_contexts": [{"items": [
        {"item": "abstract-syntax", "uid": "1.2.840.10008.1.1"}, {"item": "abstract-syntax", "uid": "1.2.3"},
        {"item": "transfer-syntax", "uid": "1.2.840.10008.1.2"}]}]}, "pc.duplicate-abstract-syntax", MUST, None),
    ("no transfer syntax", {"pdu": RQ, "presentation_contexts": [{"transfer_syntaxes": []}]},
     "pc.no-transfer-syntax", MUST, None),
    ("user info sub-item inside a context", {"pdu": RQ, "presentation_contexts": [{"items": [
        {"item": "abstract-syntax", "uid": "1.2.840.10008.1.1"}, {"item": "transfer-syntax", "uid": "1.2.840.10008.1.2"},
        {"item": "maximum-length"}]}]}, "pc.unexpected-sub-item", MUST, None),
    ("abstract syntax with leading zero", {"pdu": RQ, "presentation_contexts": [{"abstract_syntax": "1.2.03"}]},
     "uid.invalid", MUST, None),
    ("transfer syntax longer than 64", {"pdu": RQ, "presentation_contexts": [{"transfer_syntaxes": ["1." * 40 + "1"]}]},
     "uid.too-long", MUST, None),
    ("empty transfer syntax", {"pdu": RQ, "presentation_contexts": [{"transfer_syntaxes": [""]}]}, "uid.empty",
     MUST, None),
    ("AC result 5", {"pdu": AC, "presentation_contexts": [{"result": 5}]}, "ac.result-invalid", MUST, None),
    ("accepted context without transfer syntax", {"pdu": AC, "presentation_contexts": [{"transfer_syntax": None}]},
     "ac.transfer-syntax-count", MUST, None),
    ("accepted context with two transfer syntaxes", {"pdu": AC, "presentation_contexts": [{"items": [
        {"item": "transfer-syntax", "uid": "1.2.840.10008.1.2"},
        {"item": "transfer-syntax", "uid": "1.2.840.10008.1.2.1"}]}]}, "ac.transfer-syntax-count", MUST, None),
    ("no maximum length", {"pdu": RQ, "user_information": [{"item": "implementation-class-uid"}]},
     "ui.no-maximum-length", MUST, None),
    ("AC without maximum length is only should", {"pdu": AC, "user_information": [
        {"item": "implementation-class-uid"}]}, "ui.no-maximum-length", SHOULD, None),
    ("no implementation class UID", {"pdu": RQ, "user_information": [{"item": "maximum-length"}]},
     "ui.no-implementation-class-uid", MUST, None),
    ("two maximum lengths", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"}, {"item": "maximum-length"}]},
     "ui.duplicate-sub-item", MUST, None),
    ("maximum length of 3 bytes", {"pdu": RQ, "user_information": [
        {"item": "maximum-length", "raw": "004000"}, {"item": "implementation-class-uid"}]}, "sub-item.size", MUST,
     None),
    ("async window of 2 bytes", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "asynchronous-operations-window", "raw": "0001"}]}, "sub-item.size", MUST, None),
    ("version name of 17 bytes", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "implementation-version-name", "implementation_version_name": "X" * 17}]},
     "ui.version-name-length", MUST, None),
    ("role selection value 2", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "role-selection", "sop_class_uid": "1.2.840.10008.1.1", "scu_role": 2}]},
     "role.invalid-value", MUST, None),
    ("role selection UID length overruns", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "role-selection", "sop_class_uid": "1.2.840.10008.1.1", "uid_length": 40}]},
     "sub-item.field-overrun", MUST, None),
    ("user identity without secondary length", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "user-identity", "primary_field": "bob", "secondary_field_length": None}]},
     "sub-item.field-missing", MUST, None),
    ("user identity type 9", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "user-identity", "user_identity_type": 9, "primary_field": "bob"}]},
     "user-identity.type-invalid", MUST, None),
    ("user identity positive response 2", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "user-identity", "positive_response_requested": 2, "primary_field": "bob"}]},
     "user-identity.positive-response-invalid", MUST, None),
    ("user identity type 1 with passcode", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "user-identity", "primary_field": "bob", "secondary_field": "pw"}]},
     "user-identity.unexpected-secondary", MUST, None),
    ("user identity type 2 without passcode", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "user-identity", "user_identity_type": 2, "primary_field": "bob"}]},
     "user-identity.no-passcode", MUST, None),
    ("user identity empty primary", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"}, {"item": "user-identity"}]},
     "user-identity.primary-empty", MUST, None),
    ("user identity AC sub-item in an RQ", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"}, {"item": "user-identity-ac"}]},
     "ui.unexpected-sub-item", MUST, None),
    ("user identity response trailing bytes", {"pdu": AC, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "user-identity-ac", "raw": "000000"}]}, "sub-item.trailing-bytes", MUST, None),
    ("common extended negotiation trailing bytes", {"pdu": RQ, "user_information": [
        {"item": "maximum-length"}, {"item": "implementation-class-uid"},
        {"item": "sop-class-common-extended-negotiation", "sop_class_uid": "1.2.3", "service_class_uid": "1.2",
         "related_general_sop_class_identification_length": 0, "related_general_sop_class_uids": ["1.2.4"]}]},
     "sub-item.trailing-bytes", MUST, None),
    ("P-DATA-TF with no PDV", {"pdu": "P-DATA-TF", "pdvs": []}, "pdata.no-pdv", MUST, 2),
    ("PDV length 1", {"pdu": "P-DATA-TF", "pdvs": [{"length": 1, "data": "00"}]}, "pdv.length-too-small", MUST, 6),
    ("PDV length overruns", {"pdu": "P-DATA-TF", "pdvs": [{"length": 50, "data": "00"}]}, "pdv.length-overrun",
     MUST, 6),
    ("PDV header cut short", {"pdu": "P-DATA-TF", "pdvs": [{"data": "00"}], "append": "0000",
                              "length": 9}, "pdv.truncated-header", MUST, 13),
    ("PDV even context", {"pdu": "P-DATA-TF", "pdvs": [{"context_id": 4, "data": "00"}]}, "pdv.context-id-even",
     MUST, 10),
    ("PDV odd fragment", {"pdu": "P-DATA-TF", "pdvs": [{"data": "000000"}]}, "pdv.odd-fragment", MUST, 6),
]


def test_table_has_at_least_thirty_distinct_faults():
    assert len({code for _f, _s, code, _sev, _o in MALFORMED}) >= 30
    assert len({fault for fault, *_ in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize("fault,spec,code,severity,offset", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_pdu_produces_its_finding(fault, spec, code, severity, offset):
    found = check(build_pdu(spec))
    matching = [f for f in found if f.code == code]
    assert matching, f"{fault}: expected {code}, got {[str(f) for f in found]}"
    assert matching[0].severity == severity
    assert matching[0].clause.startswith("PS3.")
    if offset is not None:
        assert matching[0].offset == offset, str(matching[0])


def test_all_faults_of_one_pdu_are_listed():
    spec = {"pdu": RQ, "protocol_version": 0, "called_ae_title": "", "application_context_name": None,
            "presentation_contexts": [{"context_id": 2, "transfer_syntaxes": []}],
            "user_information": [{"item": "maximum-length", "raw": "00"}]}
    codes = {f.code for f in check(build_pdu(spec))}
    assert {"assoc.protocol-version", "ae.all-spaces", "assoc.no-application-context", "pc.context-id-even",
            "pc.no-transfer-syntax", "sub-item.size", "ui.no-implementation-class-uid"} <= codes


LEGAL = [
    {"pdu": RQ},
    {"pdu": RQ, "protocol_version": 3},  # only bit 0 is tested
    {"pdu": RQ, "called_ae_title": "  PADDED", "reserved": 0},  # leading spaces are not significant
    {"pdu": AC, "presentation_contexts": [{}, {"context_id": 3, "result": 3, "transfer_syntax": None},
                                          {"context_id": 5, "result": 4, "items": [{"item": 0x77, "raw": "00"}]}]},
    {"pdu": RQ, "user_information": [
        {"item": "maximum-length", "maximum_length": 0}, {"item": "implementation-class-uid"},
        {"item": "implementation-version-name"}, {"item": "asynchronous-operations-window"},
        {"item": "role-selection", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "scu_role": 1, "scp_role": 1},
        {"item": "sop-class-extended-negotiation", "sop_class_uid": "1.2.840.10008.5.1.4.1.2.1.1",
         "service_class_application_information": "01"},
        {"item": "sop-class-common-extended-negotiation", "sop_class_uid": "1.2.3", "service_class_uid": "1.2",
         "related_general_sop_class_uids": ["1.2.4", "1.2.5"]},
        {"item": "user-identity", "user_identity_type": 2, "primary_field": "bob", "secondary_field": "pw"},
        {"item": 0x70, "raw": "0102"}]},  # an unknown sub-item is skipped, not a fault
    {"pdu": AC, "user_information": [{"item": "maximum-length"}, {"item": "implementation-class-uid"},
                                     {"item": "user-identity-ac", "server_response": "ok"}]},
    {"pdu": "P-DATA-TF", "pdvs": [{"command": ECHO_CMD}]},
    {"pdu": "P-DATA-TF", "pdvs": [{"message_control_header": 0, "data": "00" * 10},
                                  {"message_control_header": 2, "data": "1122"}]},
    {"pdu": "A-ASSOCIATE-RJ", "result": 2, "source": 3, "reason": 2},
    {"pdu": "A-RELEASE-RQ", "reserved_1": 0xFFFFFFFF},  # reserved: not tested on receipt
    {"pdu": "A-RELEASE-RP"},
    {"pdu": "A-ABORT", "source": 0, "reason": 9},  # reason not significant from a service-user
    {"pdu": "A-ABORT", "source": 2, "reason": 6, "reserved_1": 1},
]


@pytest.mark.parametrize("spec", LEGAL, ids=range(len(LEGAL)))
def test_legal_pdu_has_no_findings(spec):
    assert check(build_pdu(spec)) == []


def test_reserved_fields_are_should_only_and_only_on_request():
    pdu = build_pdu({"pdu": "A-RELEASE-RQ", "reserved": 1, "reserved_1": 5})
    assert check(pdu) == []
    found = check(pdu, report_reserved=True)
    assert [f.code for f in found] == ["reserved.nonzero", "reserved.nonzero"]
    assert {f.severity for f in found} == {SHOULD}
    assert [f.offset for f in found] == [1, 6]


def test_pynetdicom_pdus_have_no_findings():
    pdu_mod = pytest.importorskip("pynetdicom.pdu")
    from pynetdicom.pdu_primitives import A_ASSOCIATE, A_ABORT, A_RELEASE, MaximumLengthNotification
    from pynetdicom.pdu_primitives import ImplementationClassUIDNotification
    from pynetdicom.presentation import build_context

    prim = A_ASSOCIATE()
    prim.application_context_name = "1.2.840.10008.3.1.1.1"
    prim.calling_ae_title, prim.called_ae_title = "SCU", "SCP"
    ctx = build_context("1.2.840.10008.1.1")
    ctx.context_id = 1
    prim.presentation_context_definition_list = [ctx]
    ml, ic = MaximumLengthNotification(), ImplementationClassUIDNotification()
    ml.maximum_length_received = 16382
    ic.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.3.0.4"
    prim.user_information = [ml, ic]
    rq = pdu_mod.A_ASSOCIATE_RQ()
    rq.from_primitive(prim)
    release = pdu_mod.A_RELEASE_RQ()
    release.from_primitive(A_RELEASE())
    abort_prim = A_ABORT()
    abort_prim.abort_source = 0
    abort = pdu_mod.A_ABORT_RQ()
    abort.from_primitive(abort_prim)
    for p in (rq, release, abort):
        assert check(p.encode()) == [], p


# ---------------------------------------------------------------- conversation


def _conversation(rq_spec, ac_spec):
    state = ConversationState()
    assert state.observe(build_pdu({"pdu": RQ, **rq_spec}), True) == []
    return state, state.observe(build_pdu({"pdu": AC, **ac_spec}), False)


def _codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


def test_legal_conversation_has_no_findings():
    state, found = _conversation({}, {})
    assert found == []
    for spec, from_rq in (({"pdu": "P-DATA-TF", "pdvs": [{"command": ECHO_CMD}]}, True),
                          ({"pdu": "P-DATA-TF", "pdvs": [{"command": {"CommandField": "C-ECHO-RSP",
                                                                      "MessageIDBeingRespondedTo": 1,
                                                                      "Status": 0}}]}, False),
                          ({"pdu": "A-RELEASE-RQ"}, True), ({"pdu": "A-RELEASE-RP"}, False)):
        assert state.observe(build_pdu(spec), from_rq) == []


def test_ac_in_any_order_with_rejected_context_without_transfer_syntax_is_fine():
    _state, found = _conversation(
        {"presentation_contexts": [{"context_id": 1}, {"context_id": 3, "abstract_syntax": "CTImageStorage"}]},
        {"presentation_contexts": [{"context_id": 3, "result": 3, "transfer_syntax": None}, {"context_id": 1}]})
    assert found == []


CONVERSATION_FAULTS = [
    ({}, {"presentation_contexts": [{"transfer_syntax": "1.2.840.10008.1.2.1"}]}, "ac.context.transfer-syntax-not-proposed"),
    ({}, {"presentation_contexts": [{}, {"context_id": 3}]}, "ac.context.not-proposed"),
    ({"presentation_contexts": [{"context_id": 1}, {"context_id": 3}]}, {}, "ac.context.missing"),
    ({}, {"user_information": [{"item": "maximum-length"}, {"item": "implementation-class-uid"},
                               {"item": "role-selection", "sop_class_uid": "1.2.840.10008.1.1"}]},
     "ac.role.not-proposed"),
    ({"user_information": [{"item": "maximum-length"}, {"item": "implementation-class-uid"},
                           {"item": "role-selection", "sop_class_uid": "1.2.840.10008.1.1", "scu_role": 1,
                            "scp_role": 0}]},
     {"user_information": [{"item": "maximum-length"}, {"item": "implementation-class-uid"},
                           {"item": "role-selection", "sop_class_uid": "1.2.840.10008.1.1", "scu_role": 1,
                            "scp_role": 1}]}, "ac.role.granted-unproposed"),
    ({}, {"called_ae_title": "SOMEONE-ELSE"}, "ac.called-ae-echo"),
    ({"reserved_block": "01" * 32}, {}, "ac.reserved-echo"),
]


@pytest.mark.parametrize("rq,ac,code", CONVERSATION_FAULTS, ids=[c[2] + str(i) for i, c in enumerate(CONVERSATION_FAULTS)])
def test_ac_checked_against_rq(rq, ac, code):
    _state, found = _conversation(rq, ac)
    assert code in _codes(found)
    severity = next(f.severity for f in found if f.code == code)
    assert severity == (SHOULD if code in ("ac.called-ae-echo", "ac.reserved-echo") else MUST)
    assert all(f.clause.startswith("PS3.") for f in found)


def test_rj_checked_against_rq():
    state = ConversationState()
    state.observe(build_pdu({"pdu": RQ}), True)
    found = state.observe(build_pdu({"pdu": "A-ASSOCIATE-RJ", "source": 2, "reason": 2}), False)
    assert _codes(found) == ["rj.protocol-version-supported"]  # the RQ's version has bit 0 set


def test_each_fault_listed_once_when_walk_and_check_reply_overlap():
    _state, found = _conversation({}, {"presentation_contexts": [{"result": 7}]})
    assert _codes(found) == ["ac.result-invalid"]


def test_pdata_larger_than_announced_maximum_length():
    state, _ = _conversation({"user_information": [{"item": "maximum-length", "maximum_length": 100},
                                                    {"item": "implementation-class-uid"}]},
                             {"user_information": [{"item": "maximum-length", "maximum_length": 200},
                                                   {"item": "implementation-class-uid"}]})
    big = {"pdu": "P-DATA-TF", "pdvs": [{"message_control_header": 0, "data": "00" * 150}]}
    assert "pdata.exceeds-max-length" not in _codes(state.observe(build_pdu(big), True))  # AC allowed 200
    found = state.observe(build_pdu(big), False)  # the RQ announced 100
    assert "pdata.exceeds-max-length" in _codes(found)


def test_maximum_length_zero_means_unlimited():
    state, _ = _conversation({"user_information": [{"item": "maximum-length", "maximum_length": 0},
                                                    {"item": "implementation-class-uid"}]}, {})
    big = {"pdu": "P-DATA-TF", "pdvs": [{"message_control_header": 0, "data": "00" * 70000}]}
    assert "pdata.exceeds-max-length" not in _codes(state.observe(build_pdu(big), False))


def test_pdv_on_context_not_accepted():
    state, _ = _conversation({"presentation_contexts": [{"context_id": 1}, {"context_id": 3}]},
                             {"presentation_contexts": [{"context_id": 1}, {"context_id": 3, "result": 1,
                                                                           "transfer_syntax": None}]})
    found = state.observe(build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"context_id": 3, "command": ECHO_CMD}]}), True)
    assert _codes(found) == ["pdv.context-not-accepted"]


def test_unexpected_pdus_in_sequence():
    state = ConversationState()
    assert _codes(state.observe(build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"command": ECHO_CMD}]}), True)) == [
        "pdu.unexpected"]
    assert _codes(state.observe(build_pdu({"pdu": AC}), True)) == ["pdu.unexpected"]


def test_broken_dimse_fragment_sequence():
    state, _ = _conversation({}, {})
    data_first = {"pdu": "P-DATA-TF", "pdvs": [{"message_control_header": 2, "data": "0000"}]}
    found = state.observe(build_pdu(data_first), True)
    assert _codes(found) == ["dimse.invalid"]
    assert found[0].clause.startswith("PS3.")
