"""PDU views and partial matching (dicomconf.scenario.match)."""

from __future__ import annotations

from dicomconf.scenario.match import field_names, get_path, match, pdu_view
from dicomconf.ul.dimse import c_echo_rsp
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    RoleSelection,
    UserInformation,
)
from dicomconf.ul.pdu import AAbort, AAssociateAC, PDataTF, PDV


def _ac():
    return AAssociateAC(
        "SCP",
        "SCU",
        (PresentationContextAC(1, 0, "1.2.840.10008.1.2"), PresentationContextAC(3, 3, None)),
        UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.3"), RoleSelection("1.2.840.1", 1, 0))),
    )


def test_view_of_an_ac_has_fields_and_user_information_shortcuts():
    view = pdu_view(_ac())
    assert view["pdu"] == "A-ASSOCIATE-AC"
    assert view["maximum_length"] == 16384
    assert view["implementation_class_uid"] == "1.2.3"
    assert view["role_selections"] == [{"sop_class_uid": "1.2.840.1", "scu_role": 1, "scp_role": 0, "item_type": 0x54}]
    assert view["reserved"] == "00" * 32
    assert get_path(view, "presentation_contexts.1.result") == 3
    assert get_path(view, "user_information.maximum_length") == 16384
    assert {"maximum_length", "presentation_contexts", "called_ae_title"} <= field_names("A-ASSOCIATE-AC")
    assert field_names("A-ABORT") == {"source", "reason", "pdu_type"}


def test_matching_rules():
    view = pdu_view(_ac())
    assert match({"called_ae_title": "SCP"}, view) == []
    assert match({"called_ae_title": "SCP  "}, view) == []  # padding is not significant
    assert match({"maximum_length": {"min": 1, "max": 16384}}, view) == []
    assert match({"maximum_length": {"max": 100}}, view) != []
    assert match({"presentation_contexts": [{"context_id": 3, "result": [3, 4]}]}, view) == []
    assert match({"presentation_contexts": [{"context_id": 5}]}, view) != []
    assert match({"presentation_contexts": {"exactly": [{"context_id": 1}, {"context_id": 3}]}}, view) == []
    assert match({"presentation_contexts": {"exactly": [{"context_id": 3}, {"context_id": 1}]}}, view) != []
    assert match({"user_identity_response": {"present": False}}, view) == []
    assert match({"maximum_length": {"not": 0}}, view) == []
    assert match({"nonexistent": 1}, view)[0].startswith("nonexistent: not present")


def test_abort_alternatives():
    view = pdu_view(AAbort(2, 1))
    assert match({"source": 2, "reason": [0, 1]}, view) == []
    problems = match({"source": 2, "reason": [4, 5]}, view)
    assert problems == ["reason: expected one of [4, 5], got 1"]


def test_pdata_view_decodes_the_command():
    message = c_echo_rsp(7, status=0, context_id=1)
    from dicomconf.ul.dimse import fragment
    from dicomconf.ul.pdu import decode_pdu

    pdu = decode_pdu(fragment(message, 0)[0])
    view = pdu_view(pdu)
    assert view["command_name"] == "C-ECHO-RSP"
    assert view["status"] == 0
    assert view["command"]["MessageIDBeingRespondedTo"] == 7
    assert match({"pdvs": [{"is_command": True, "is_last": True}], "status": 0}, view) == []
    raw = PDataTF((PDV(1, 3, b"\x00\x01"),))
    assert "command" not in pdu_view(raw)  # a command that does not decode gives no view
