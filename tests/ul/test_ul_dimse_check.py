"""check_message tables: each broken DIMSE message gives its problem code, legal ones none (PS3.7 9.3, 10.3; PS3.5 10)."""

from __future__ import annotations

import zlib

import pytest
from pydicom import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from dicomconf.ul import constants as C
from dicomconf.ul import dimse as D
from dicomconf.ul.dimse_check import COMMANDS, PROBLEMS, Outstanding, check_message
from dicomconf.ul.negotiation_check import MUST, SHOULD, Problem

CT = "1.2.840.10008.5.1.4.1.1.2"
FIND = "1.2.840.10008.5.1.4.1.2.2.1"
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
GET = "1.2.840.10008.5.1.4.1.2.2.3"
COMMIT = "1.2.840.10008.1.20.1"
INSTANCE = "1.2.826.0.1.3680043.2.1143.7.1"
IMPL, EXPL = ImplicitVRLittleEndian, ExplicitVRLittleEndian

_DEFAULTS = {
    "C-STORE-RQ": {"MessageID": 1, "AffectedSOPClassUID": CT, "AffectedSOPInstanceUID": INSTANCE, "Priority": 0},
    "C-STORE-RSP": {"MessageIDBeingRespondedTo": 1, "Status": 0, "AffectedSOPClassUID": CT,
                    "AffectedSOPInstanceUID": INSTANCE},
    "C-FIND-RQ": {"MessageID": 1, "AffectedSOPClassUID": FIND, "Priority": 0},
    "C-FIND-RSP": {"MessageIDBeingRespondedTo": 1, "Status": 0, "AffectedSOPClassUID": FIND},
    "C-CANCEL-RQ": {"MessageIDBeingRespondedTo": 1},
    "C-GET-RQ": {"MessageID": 1, "AffectedSOPClassUID": GET, "Priority": 0},
    "C-GET-RSP": {"MessageIDBeingRespondedTo": 1, "Status": 0},
    "C-MOVE-RQ": {"MessageID": 1, "AffectedSOPClassUID": MOVE, "Priority": 0, "MoveDestination": "STORE-SCP"},
    "C-MOVE-RSP": {"MessageIDBeingRespondedTo": 1, "Status": 0},
    "C-ECHO-RQ": {"MessageID": 1, "AffectedSOPClassUID": C.VERIFICATION_SOP_CLASS},
    "C-ECHO-RSP": {"MessageIDBeingRespondedTo": 1, "Status": 0},
    "N-ACTION-RQ": {"MessageID": 1, "RequestedSOPClassUID": COMMIT, "RequestedSOPInstanceUID": COMMIT + ".1",
                    "ActionTypeID": 1},
    "N-ACTION-RSP": {"MessageIDBeingRespondedTo": 1, "Status": 0},
    "N-EVENT-REPORT-RQ": {"MessageID": 1, "AffectedSOPClassUID": COMMIT, "AffectedSOPInstanceUID": COMMIT + ".1",
                          "EventTypeID": 1},
    "N-EVENT-REPORT-RSP": {"MessageIDBeingRespondedTo": 1, "Status": 0},
}
_WITH_DATA = {"C-STORE-RQ", "C-FIND-RQ", "C-GET-RQ", "C-MOVE-RQ"}
_DROP = object()


def ct(**attrs) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = INSTANCE
    ds.PatientName = "Check^Dimse"
    ds.PatientID = "DC1"
    for k, v in attrs.items():
        setattr(ds, k, v)
    return ds


def msg(name: str, data: bytes | None | object = _DROP, *, on_wire: bool = True, **changes) -> D.Message:
    """A ``name`` message with every element its table requires; ``changes`` set or drop (None) elements.

    Messages come as the assembler makes them (``Message.from_wire``) unless ``on_wire`` is False.
    """
    values = {**_DEFAULTS[name], **changes}
    ds = Dataset()
    for keyword, value in values.items():
        if value is not None:
            setattr(ds, keyword, value)
    ds.CommandField = D.COMMAND_CODES[name]
    if data is _DROP:
        data = D.encode_dataset(ct(), IMPL) if name in _WITH_DATA else None
    ds.CommandDataSetType = D.NO_DATA_SET if data is None else D.DATA_SET_PRESENT
    if not on_wire:
        return D.Message(1, ds, data)  # type: ignore[arg-type]
    encoded = D.encode_command(ds)
    values_read = D.read_command(encoded)
    head = D.Message(1, D.decode_command(encoded)) if values_read is None else D.Message.from_wire(1, encoded, values_read)
    return head if data is None else head.with_data(data)  # type: ignore[arg-type]


def codes(problems: list[Problem]) -> list[str]:
    return [p.code for p in problems]


# ---------------------------------------------------------------------------------------------------
# Legal messages

@pytest.mark.parametrize("name", sorted(_DEFAULTS))
@pytest.mark.parametrize("on_wire", [True, False], ids=["from-wire", "dataset"])
def test_every_legal_message_has_no_problem(name, on_wire):
    assert check_message(msg(name, on_wire=on_wire), IMPL) == []


def test_builders_make_legal_messages_and_a_legal_exchange():
    out = Outstanding()
    data = D.encode_dataset(ct(), EXPL)
    conversation = [
        (D.c_echo_rq(1), True), (D.c_echo_rsp(D.c_echo_rq(1)), False),
        (D.c_store_rq(2, CT, INSTANCE, data=data), True),
        (D.c_store_rsp(D.c_store_rq(2, CT, INSTANCE)), False),
        (D.c_echo_rq(1), True), (D.c_echo_rsp(1), False),  # an ID is free again once answered
        (D.c_store_rq(3, CT, INSTANCE, move_originator=("MOVER", 7), priority=D.PRIORITY_HIGH, data=data), True),
        (D.c_store_rsp(message_id_being_responded_to=3, sop_class_uid=CT, sop_instance_uid=INSTANCE,
                       status=0xB000), False),
    ]
    for message, from_rq in conversation:
        assert check_message(message, EXPL, out, from_requestor=from_rq) == [], message
    assert out.open_ids(True) == [] and out.open_ids(False) == []


def test_echo_response_without_affected_sop_class_is_legal():
    """C-ECHO-RSP Affected SOP Class UID is U(=) (PS3.7 Table 9.1-5): leaving it out is legal."""
    assert check_message(msg("C-ECHO-RSP", AffectedSOPClassUID=None), None) == []
    assert check_message(msg("C-STORE-RSP", AffectedSOPClassUID=None, AffectedSOPInstanceUID=None), None) == []


def test_every_command_field_the_codec_knows_has_a_table():
    assert set(COMMANDS) == set(D.COMMAND_FIELDS)
    for clause, required, _data in COMMANDS.values():
        assert clause.startswith("PS3.7 ") and "Table" in clause
        assert ("MessageID" in required) != ("MessageIDBeingRespondedTo" in required)


# ---------------------------------------------------------------------------------------------------
# One message: (description, message factory, transfer syntax, expected code, clause fragment)

def _store(ds: Dataset, ts: str, **changes) -> D.Message:
    return msg("C-STORE-RQ", D.encode_dataset(ds, ts), **changes)


def _jpeg_dataset() -> bytes:
    ds = ct(Rows=8, Columns=8, BitsAllocated=8, BitsStored=8, HighBit=7, SamplesPerPixel=1, PixelRepresentation=0,
            PhotometricInterpretation="MONOCHROME2")
    ds.PixelData = encapsulate([b"\xff\xd8" + bytes(62) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return D.encode_dataset(ds, EXPL)  # encapsulated pixel data, other elements explicit VR little endian


BROKEN = [
    ("C-STORE-RQ without Message ID", lambda: msg("C-STORE-RQ", MessageID=None), None,
     "dimse.element-missing", "Table 9.3-1"),
    ("C-STORE-RQ without Affected SOP Class", lambda: msg("C-STORE-RQ", AffectedSOPClassUID=None), None,
     "dimse.element-missing", "Table 9.3-1"),
    ("C-STORE-RQ without Affected SOP Instance", lambda: msg("C-STORE-RQ", AffectedSOPInstanceUID=None), None,
     "dimse.element-missing", "Table 9.3-1"),
    ("C-STORE-RQ without Priority", lambda: msg("C-STORE-RQ", Priority=None), None,
     "dimse.element-missing", "Table 9.3-1"),
    ("C-STORE-RSP without Message ID Being Responded To",
     lambda: msg("C-STORE-RSP", MessageIDBeingRespondedTo=None), None, "dimse.element-missing", "Table 9.3-2"),
    ("C-STORE-RSP without Status", lambda: msg("C-STORE-RSP", Status=None), None,
     "dimse.element-missing", "Table 9.3-2"),
    ("C-FIND-RQ without Priority", lambda: msg("C-FIND-RQ", Priority=None), None,
     "dimse.element-missing", "Table 9.3-3"),
    ("C-FIND-RSP without Status", lambda: msg("C-FIND-RSP", Status=None), None,
     "dimse.element-missing", "Table 9.3-4"),
    ("C-CANCEL-RQ without Message ID Being Responded To",
     lambda: msg("C-CANCEL-RQ", MessageIDBeingRespondedTo=None), None, "dimse.element-missing", "Table 9.3-5"),
    ("C-GET-RQ without Affected SOP Class", lambda: msg("C-GET-RQ", AffectedSOPClassUID=None), None,
     "dimse.element-missing", "Table 9.3-6"),
    ("C-GET-RSP without Status", lambda: msg("C-GET-RSP", Status=None), None,
     "dimse.element-missing", "Table 9.3-7"),
    ("C-MOVE-RQ without Move Destination", lambda: msg("C-MOVE-RQ", MoveDestination=None), None,
     "dimse.element-missing", "Table 9.3-9"),
    ("C-MOVE-RSP without Message ID Being Responded To",
     lambda: msg("C-MOVE-RSP", MessageIDBeingRespondedTo=None), None, "dimse.element-missing", "Table 9.3-10"),
    ("C-ECHO-RQ without Message ID", lambda: msg("C-ECHO-RQ", MessageID=None), None,
     "dimse.element-missing", "Table 9.3-12"),
    ("C-ECHO-RQ without Affected SOP Class", lambda: msg("C-ECHO-RQ", AffectedSOPClassUID=None), None,
     "dimse.element-missing", "Table 9.3-12"),
    ("C-ECHO-RSP without Status", lambda: msg("C-ECHO-RSP", Status=None), None,
     "dimse.element-missing", "Table 9.3-13"),
    ("C-ECHO-RSP without Status, built here", lambda: msg("C-ECHO-RSP", Status=None, on_wire=False), None,
     "dimse.element-missing", "Table 9.3-13"),
    ("N-ACTION-RQ without Action Type ID", lambda: msg("N-ACTION-RQ", ActionTypeID=None), None,
     "dimse.element-missing", "Table 10.3-7"),
    ("N-EVENT-REPORT-RQ without Event Type ID", lambda: msg("N-EVENT-REPORT-RQ", EventTypeID=None), None,
     "dimse.element-missing", "Table 10.3-1"),
    ("N-EVENT-REPORT-RSP without Status", lambda: msg("N-EVENT-REPORT-RSP", Status=None), None,
     "dimse.element-missing", "Table 10.3-2"),
    ("C-FIND-RQ with priority 3", lambda: msg("C-FIND-RQ", Priority=3), None,
     "dimse.priority-invalid", "Table 9.3-3"),
    ("C-ECHO-RQ with a data set", lambda: msg("C-ECHO-RQ", b"\x08\x00\x20\x00\x00\x00\x00\x00"), None,
     "dimse.data-set.unexpected", "Table 9.3-12"),
    ("C-STORE-RSP with a data set", lambda: msg("C-STORE-RSP", b"\x08\x00\x20\x00\x00\x00\x00\x00"), None,
     "dimse.data-set.unexpected", "Table 9.3-2"),
    ("C-STORE-RQ without a data set", lambda: msg("C-STORE-RQ", None), None,
     "dimse.data-set.missing", "Table 9.3-1"),
    ("C-MOVE-RQ without identifier", lambda: msg("C-MOVE-RQ", None), None,
     "dimse.data-set.missing", "Table 9.3-9"),
    ("C-FIND-RSP success with an identifier", lambda: msg("C-FIND-RSP", D.encode_dataset(ct(), IMPL)), None,
     "dimse.data-set.not-pending", "9.1.2.1.5"),
    ("C-FIND-RSP pending without identifier", lambda: msg("C-FIND-RSP", None, Status=0xFF00), None,
     "dimse.data-set.pending-without-identifier", "9.1.2.1.5"),
    ("explicit VR data set on an implicit VR context", lambda: _store(ct(), EXPL), IMPL,
     "dimse.data-set.encoding", "PS3.5 10"),
    ("implicit VR data set on an explicit VR context", lambda: _store(ct(), IMPL), EXPL,
     "dimse.data-set.encoding", "PS3.5 10"),
    ("big endian data set on a little endian context", lambda: _store(ct(), ExplicitVRBigEndian), EXPL,
     "dimse.data-set.encoding", "PS3.5 10"),
    ("data set cut in the middle of an element", lambda: msg("C-STORE-RQ", D.encode_dataset(ct(), IMPL)[:-3]),
     IMPL, "dimse.data-set.encoding", "PS3.5 10"),
    ("deflated context, data set not deflated", lambda: _store(ct(), EXPL), DeflatedExplicitVRLittleEndian,
     "dimse.data-set.encoding", "PS3.5 10"),
    ("implicit VR identifier on an explicit VR C-FIND context",
     lambda: msg("C-FIND-RQ", D.encode_dataset(ct(), IMPL)), EXPL, "dimse.data-set.encoding", "PS3.5 10"),
    ("C-STORE-RQ SOP class differs from the data set's", lambda: _store(ct(SOPClassUID=CT + ".1"), IMPL), IMPL,
     "dimse.store.sop-class-mismatch", "PS3.3 C.12.1.1.1"),
    ("C-STORE-RQ SOP instance differs from the data set's", lambda: _store(ct(SOPInstanceUID=INSTANCE + ".9"), IMPL),
     IMPL, "dimse.store.sop-instance-mismatch", "PS3.3 C.12.1.1.1"),
]


@pytest.mark.parametrize("why, make, ts, code, clause", BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_message_gives_its_problem(why, make, ts, code, clause):
    found = check_message(make(), ts)
    assert codes(found) == [code]
    assert clause in found[0].clause
    assert found[0].severity == PROBLEMS[code][1]


LEGAL_DATA = [
    ("implicit VR on implicit", lambda: _store(ct(), IMPL), IMPL),
    ("explicit VR on explicit", lambda: _store(ct(), EXPL), EXPL),
    ("big endian on big endian", lambda: _store(ct(), ExplicitVRBigEndian), ExplicitVRBigEndian),
    ("deflated on deflated", lambda: _store(ct(), DeflatedExplicitVRLittleEndian), DeflatedExplicitVRLittleEndian),
    ("encapsulated pixel data on JPEG Baseline", lambda: msg("C-STORE-RQ", _jpeg_dataset()), JPEGBaseline8Bit),
    ("a sequence, then more elements", lambda: _store(ct(ReferencedImageSequence=[Dataset()], StudyID="7"), EXPL),
     EXPL),
    ("a private transfer syntax is not judged", lambda: _store(ct(), EXPL), "1.2.826.0.1.3680043.2.1143.999"),
    ("no transfer syntax known: not decoded", lambda: msg("C-STORE-RQ", b"not a data set"), None),
    ("a data set without SOP UIDs", lambda: _store(Dataset(), IMPL), IMPL),
    ("C-FIND-RSP pending with an identifier", lambda: msg("C-FIND-RSP", D.encode_dataset(ct(), IMPL),
                                                          Status=0xFF01), IMPL),
    ("C-FIND-RSP cancel without identifier", lambda: msg("C-FIND-RSP", None, Status=0xFE00), IMPL),
    ("C-MOVE-RSP failure with an identifier (U)", lambda: msg("C-MOVE-RSP", D.encode_dataset(ct(), IMPL),
                                                              Status=0xA701), IMPL),
]


@pytest.mark.parametrize("why, make, ts", LEGAL_DATA, ids=[x[0] for x in LEGAL_DATA])
def test_legal_data_sets_give_no_problem(why, make, ts):
    assert check_message(make(), ts) == []


def test_deflated_bytes_that_do_not_inflate_are_reported():
    garbage = zlib.compress(b"x" * 50)  # zlib header: not a raw deflate stream of a data set
    found = check_message(msg("C-STORE-RQ", garbage), DeflatedExplicitVRLittleEndian)
    assert codes(found) == ["dimse.data-set.encoding"]


def test_a_data_set_not_held_is_not_decoded():
    assembler = D.MessageAssembler(max_data_length=10)
    bad = D.c_store_rq(1, CT, INSTANCE, data=D.encode_dataset(ct(), EXPL))  # explicit VR: wrong for IMPL
    [dropped] = [m for pdv in D.message_pdvs(bad, 0) if (m := assembler.add(pdv)) is not None]
    assert dropped.data_dropped and dropped.data is None
    assert check_message(dropped, IMPL) == []
    assert codes(check_message(bad, IMPL)) == ["dimse.data-set.encoding"]  # held, the same bytes are judged


def test_unknown_command_field_is_judged_only_on_what_every_message_shares():
    ds = Dataset()
    ds.CommandField = 0x0FF0
    ds.MessageID = 9
    ds.CommandDataSetType = D.NO_DATA_SET
    out = Outstanding()
    assert check_message(D.Message(1, ds), IMPL, out) == []
    rsp = Dataset()
    rsp.CommandField = 0x8FF0
    rsp.MessageIDBeingRespondedTo = 9
    rsp.Status = 0x0211
    rsp.CommandDataSetType = D.NO_DATA_SET
    assert check_message(D.Message(1, rsp), IMPL, out, from_requestor=False) == []
    assert out.open_ids(True) == []


# ---------------------------------------------------------------------------------------------------
# Message IDs: (description, [(message factory, from requestor)], expected codes of the last message)

RQ, RSP = True, False
EXCHANGES = [
    ("duplicate ID while outstanding",
     [(lambda: msg("C-ECHO-RQ"), RQ), (lambda: msg("C-STORE-RQ"), RQ)], ["dimse.message-id.duplicate"]),
    ("ID reused after the final response",
     [(lambda: msg("C-ECHO-RQ"), RQ), (lambda: msg("C-ECHO-RSP"), RSP), (lambda: msg("C-ECHO-RQ"), RQ)], []),
    ("response to no request", [(lambda: msg("C-ECHO-RSP", MessageIDBeingRespondedTo=5), RSP)],
     ["dimse.response.unknown-request"]),
    ("response to a request of its own side", [(lambda: msg("C-ECHO-RQ"), RQ), (lambda: msg("C-ECHO-RSP"), RQ)],
     ["dimse.response.unknown-request"]),
    ("second final response", [(lambda: msg("C-ECHO-RQ"), RQ), (lambda: msg("C-ECHO-RSP"), RSP),
                               (lambda: msg("C-ECHO-RSP"), RSP)], ["dimse.response.unknown-request"]),
    ("C-ECHO-RSP to a C-STORE-RQ", [(lambda: msg("C-STORE-RQ"), RQ), (lambda: msg("C-ECHO-RSP"), RSP)],
     ["dimse.response.wrong-command"]),
    ("C-STORE-RSP names another SOP instance",
     [(lambda: msg("C-STORE-RQ"), RQ), (lambda: msg("C-STORE-RSP", AffectedSOPInstanceUID=INSTANCE + ".2"), RSP)],
     ["dimse.response.sop-instance-differs"]),
    ("C-STORE-RSP names another SOP class",
     [(lambda: msg("C-STORE-RQ"), RQ), (lambda: msg("C-STORE-RSP", AffectedSOPClassUID=CT + ".1"), RSP)],
     ["dimse.response.sop-class-differs"]),
    ("C-ECHO-RSP names another SOP class",
     [(lambda: msg("C-ECHO-RQ"), RQ), (lambda: msg("C-ECHO-RSP", AffectedSOPClassUID=CT), RSP)],
     ["dimse.response.sop-class-differs"]),
    ("C-FIND pending responses keep the request open",
     [(lambda: msg("C-FIND-RQ"), RQ)]
     + [(lambda: msg("C-FIND-RSP", D.encode_dataset(ct(), IMPL), Status=0xFF00), RSP)] * 3
     + [(lambda: msg("C-FIND-RSP"), RSP)], []),
    ("C-FIND response after the final one",
     [(lambda: msg("C-FIND-RQ"), RQ), (lambda: msg("C-FIND-RSP"), RSP),
      (lambda: msg("C-FIND-RSP", D.encode_dataset(ct(), IMPL), Status=0xFF00), RSP)],
     ["dimse.response.unknown-request"]),
    ("C-FIND cancelled", [(lambda: msg("C-FIND-RQ"), RQ), (lambda: msg("C-CANCEL-RQ"), RQ),
                          (lambda: msg("C-FIND-RSP", None, Status=0xFE00), RSP)], []),
    ("C-CANCEL after the final response (they crossed)",
     [(lambda: msg("C-FIND-RQ"), RQ), (lambda: msg("C-FIND-RSP"), RSP), (lambda: msg("C-CANCEL-RQ"), RQ)], []),
    ("pending C-ECHO-RSP does not keep a C-ECHO open",
     [(lambda: msg("C-ECHO-RQ"), RQ), (lambda: msg("C-ECHO-RSP", Status=0xFF00), RSP),
      (lambda: msg("C-ECHO-RSP"), RSP)], ["dimse.response.unknown-request"]),
    ("two requests with one ID get two answers",
     [(lambda: msg("C-ECHO-RQ"), RQ), (lambda: msg("C-ECHO-RQ"), RQ), (lambda: msg("C-ECHO-RSP"), RSP),
      (lambda: msg("C-ECHO-RSP"), RSP)], []),
    ("C-GET sub-operation reuses the C-GET's ID from the other side",
     [(lambda: msg("C-GET-RQ"), RQ), (lambda: msg("C-STORE-RQ"), RSP), (lambda: msg("C-STORE-RSP"), RQ),
      (lambda: msg("C-GET-RSP"), RSP)], []),
    ("storage commitment: N-ACTION, then N-EVENT-REPORT from the SCP",
     [(lambda: msg("N-ACTION-RQ"), RQ), (lambda: msg("N-ACTION-RSP"), RSP), (lambda: msg("N-EVENT-REPORT-RQ"), RSP),
      (lambda: msg("N-EVENT-REPORT-RSP"), RQ)], []),
    ("N-ACTION-RSP to a C-ECHO-RQ", [(lambda: msg("C-ECHO-RQ"), RQ), (lambda: msg("N-ACTION-RSP"), RSP)],
     ["dimse.response.wrong-command"]),
    ("a request without Message ID stops the judging",
     [(lambda: msg("C-ECHO-RQ", MessageID=None), RQ), (lambda: msg("C-ECHO-RSP", MessageIDBeingRespondedTo=0), RSP)],
     []),
]


@pytest.mark.parametrize("why, exchange, expected", EXCHANGES, ids=[e[0] for e in EXCHANGES])
def test_message_ids_over_an_association(why, exchange, expected):
    out = Outstanding()
    *before, (last, side) = exchange
    for make, from_rq in before:
        check_message(make(), IMPL, out, from_requestor=from_rq)
    found = check_message(last(), IMPL, out, from_requestor=side)
    assert codes(found) == expected
    for p in found:
        assert p.severity == MUST and p.clause.startswith("PS3.7")


def test_unknown_request_names_the_response_table():
    found = check_message(msg("C-STORE-RSP", MessageIDBeingRespondedTo=4), None, Outstanding(), from_requestor=False)
    assert found[0].clause == "PS3.7 9.3.1.2 Table 9.3-2"


def test_lost_traffic_stops_message_id_checks():
    out = Outstanding()
    check_message(msg("C-ECHO-RQ"), IMPL, out, from_requestor=True)
    out.lost()
    assert not out.reliable and out.open_ids(True) == []
    assert check_message(msg("C-ECHO-RSP", MessageIDBeingRespondedTo=77), IMPL, out, from_requestor=False) == []
    assert codes(check_message(msg("C-ECHO-RSP", Status=None), IMPL, out, from_requestor=False)) == [
        "dimse.element-missing"]  # the message's own rules still hold


def test_a_peer_repeating_one_id_forever_does_not_grow_the_record():
    out = Outstanding()
    for _ in range(300):
        check_message(msg("C-ECHO-RQ"), IMPL, out)
    assert not out.reliable and out.open_ids(True) == []


def test_every_problem_code_is_exercised_and_well_formed():
    seen = {b[3] for b in BROKEN} | {c for e in EXCHANGES for c in e[2]}
    assert seen == set(PROBLEMS)
    for code, (clause, severity) in PROBLEMS.items():
        assert code.startswith("dimse.") and clause.startswith("PS3.") and severity in (MUST, SHOULD)


def test_values_of_two_numbers_are_judged_without_error():
    """A US element sent with two values (VM 2) is present, but names no single ID, status or priority."""
    out = Outstanding()
    find = msg("C-FIND-RQ", MessageID=[1, 2], Priority=[0, 1])
    assert codes(check_message(find, IMPL, out)) == ["dimse.priority-invalid"]
    assert not out.reliable  # no single Message ID: its responses cannot be matched
    rsp = msg("C-FIND-RSP", D.encode_dataset(ct(), IMPL), MessageIDBeingRespondedTo=[1, 2], Status=[0xFF00, 0])
    assert check_message(rsp, IMPL, out, from_requestor=False) == []
