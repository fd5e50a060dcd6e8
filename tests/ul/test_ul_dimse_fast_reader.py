"""The fast command-set reader agrees with pydicom's path, and the lazy Message keeps its contract (PS3.7 6.3.1, E.1)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset

from dicomconf.scp.responses import response_command
from dicomconf.ul import constants as C
from dicomconf.ul import dimse as D
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.pdu import PDV

CT = "1.2.840.10008.5.1.4.1.1.2"
INSTANCE = "1.2.826.0.1.3680043.2.1125.1.12345678901234567890"
_STORE = D.c_store_rq(7, CT, INSTANCE, data=b"\x08\x00\x16\x00\x00\x00\x00\x00")


def _built() -> dict[str, Dataset]:
    """Every command set the project's builders make, plus the SCP's pre-encoded responses."""
    out = {
        "c-echo-rq": D.c_echo_rq(1).command,
        "c-echo-rq max id": D.c_echo_rq(0xFFFF, context_id=255).command,
        "c-echo-rsp": D.c_echo_rsp(D.c_echo_rq(3), 0x0000).command,
        "c-store-rq": _STORE.command,
        "c-store-rq high priority": D.c_store_rq(1, CT, INSTANCE, D.PRIORITY_HIGH).command,
        "c-store-rq from c-move": D.c_store_rq(2, CT, INSTANCE, move_originator=("MOVER", 9)).command,
        "c-store-rsp": D.c_store_rsp(_STORE, 0xA700).command,
        "c-store-rsp error comment": D.c_store_rsp(_STORE, 0xC000, error_comment="cannot parse").command,
    }
    for status in (0x0000, 0x0110, 0x0211):
        raw = response_command(D.C_STORE_RSP, 5, status, CT, INSTANCE)
        out[f"scp c-store-rsp {status:04X}"] = D.decode_command(raw)
    return out


BUILT = _built()
ENCODED = {name: D.encode_command(ds) for name, ds in BUILT.items()}


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0, element, len(value)) + value


def _command_set(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def _echo_elements(sop_class: bytes = b"1.2.840.10008.1.1\x00", message_id: bytes = b"\x01\x00") -> list[bytes]:
    return [
        _element(0x0002, sop_class),
        _element(0x0100, b"\x30\x00"),
        _element(0x0110, message_id),
        _element(0x0800, b"\x01\x01"),
    ]


def assert_agrees(raw: bytes) -> None:
    """read_command's values are exactly pydicom's, element for element; or it declines."""
    values = D.read_command(raw)
    ds = D.decode_command(raw)
    if values is None:
        return
    pydicom_values = {elem.tag.element: elem.value for elem in ds if elem.tag.element != 0x0000}
    assert set(values) == set(pydicom_values)
    for element, value in values.items():
        theirs = pydicom_values[element]
        assert value == theirs and type(value) is (int if isinstance(theirs, int) else str), hex(element)


@pytest.mark.parametrize("name", sorted(ENCODED))
def test_fast_reader_agrees_with_pydicom_on_built_command_sets(name):
    assert_agrees(ENCODED[name])


@pytest.mark.parametrize(
    "name", ["c-echo-rq", "c-echo-rsp", "c-store-rq", "c-store-rq from c-move", "scp c-store-rsp 0000"]
)
def test_fast_reader_takes_the_regular_command_sets(name):
    """The hot path's command sets must not fall back to pydicom (else the reader gains nothing)."""
    if name == "c-store-rq from c-move":  # Move Originator AE Title is AE: the reader leaves it to pydicom
        assert D.read_command(ENCODED[name]) is None
        return
    values = D.read_command(ENCODED[name])
    assert values is not None and values[0x0100] == BUILT[name].CommandField


def test_uid_padding_is_dropped_as_pydicom_drops_it():
    for pad in (b" ", b"\x00", b"\x00 ", b"  "):
        raw = _command_set(*_echo_elements(sop_class=b"1.2.840.10008.1.1" + pad))
        assert D.read_command(raw)[0x0002] == "1.2.840.10008.1.1"
        assert_agrees(raw)


IRREGULAR_BUT_VALID = {
    "UID with two values": _command_set(*_echo_elements(sop_class=b"1.2\\1.3 ")),
    "Message ID with two values": _command_set(*_echo_elements(message_id=b"\x01\x00\x02\x00")),
    "empty Message ID": _command_set(*_echo_elements(message_id=b"")),
    "element unknown to the dictionary": _command_set(*_echo_elements(), _element(0x0801, b"ab")),
    "UID with a letter": _command_set(*_echo_elements(sop_class=b"1.2.x4")),
}


@pytest.mark.parametrize("case", sorted(IRREGULAR_BUT_VALID))
def test_irregular_command_sets_go_to_pydicom_and_still_make_messages(case):
    raw = IRREGULAR_BUT_VALID[case]
    assert D.read_command(raw) is None
    ds = D.decode_command(raw)
    msg = D.MessageAssembler().add(PDV(1, C.MCH_COMMAND | C.MCH_LAST, raw))
    assert msg is not None and msg.command == ds
    assert msg.message_id == ds.get("MessageID")


MALFORMED = {
    "no group length": _command_set(*_echo_elements())[12:],
    "group length too large": struct.pack("<HHII", 0, 0, 4, 999) + b"".join(_echo_elements()),
    "descending tags": _command_set(*reversed(_echo_elements())),
    "repeated tag": _command_set(*_echo_elements(), _element(0x0800, b"\x01\x01")),
    "group 0008 element": _command_set(*_echo_elements()) + b"",  # replaced below
    "no Command Data Set Type": _command_set(*_echo_elements()[:3]),
    "no Command Field": _command_set(_echo_elements()[0], *_echo_elements()[2:]),
    "odd-length US": _command_set(*_echo_elements(message_id=b"\x01\x00\x02")),
    "trailing bytes": _command_set(*_echo_elements()) + b"\x00\x00",
}
_in_group_8 = bytearray(MALFORMED["group 0008 element"])
_in_group_8[12 + 8 + 18] = 0x08  # the group of the element after Affected SOP Class UID
MALFORMED["group 0008 element"] = bytes(_in_group_8)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_command_sets_are_refused_as_before(case):
    raw = MALFORMED[case]
    assert D.read_command(raw) is None
    with pytest.raises(RemoteProtocolError):
        D.decode_command(raw)
    with pytest.raises(RemoteProtocolError) as exc:
        D.MessageAssembler().add(PDV(1, C.MCH_COMMAND | C.MCH_LAST, raw))
    assert exc.value.reason == C.ABORT_REASON_INVALID_PARAMETER_VALUE


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(ENCODED)).flatmap(
    lambda name: st.tuples(
        st.just(ENCODED[name]), st.integers(0, len(ENCODED[name]) - 1), st.integers(0, 255), st.integers(0, 3)
    )
))
def test_mutated_command_sets_fast_reader_never_accepts_what_pydicom_refuses(case):
    base, index, byte, cut = case
    raw = base[:index] + bytes((byte,)) + base[index + 1 :]
    raw = raw[: len(raw) - cut]
    values = D.read_command(raw)
    try:
        ds = D.decode_command(raw)
    except RemoteProtocolError:
        assert values is None
        return
    if values is not None:
        assert values == {e.tag.element: e.value for e in ds if e.tag.element != 0x0000}


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_fast_reader_never_accepts_what_pydicom_refuses(raw):
    if D.read_command(raw) is not None:
        assert_agrees(raw)


# ---------------------------------------------------------------- the lazy Message


def _assembled(message: D.Message) -> D.Message:
    assembler = D.MessageAssembler()
    out = None
    for pdv in D.message_pdvs(message, 16384):
        out = assembler.add(pdv)
    assert out is not None
    return out


PROPERTIES = (
    "command_field", "name", "message_id", "message_id_being_responded_to", "status", "affected_sop_class_uid",
    "requested_sop_class_uid", "affected_sop_instance_uid", "has_data_set", "is_response", "data_set_type",
)


@pytest.mark.parametrize("name", sorted(BUILT))
def test_message_from_the_wire_answers_like_one_built_from_a_dataset(name):
    ds = BUILT[name]
    data = b"\x08\x00\x16\x00\x00\x00\x00\x00" if ds.CommandDataSetType != D.NO_DATA_SET else None
    built = D.Message(3, ds, data)
    wire = _assembled(built)
    for prop in PROPERTIES:
        assert getattr(wire, prop) == getattr(built, prop), prop
    assert repr(wire) == repr(built)
    assert wire.command == D.decode_command(D.encode_command(ds))
    assert wire == D.Message(3, D.decode_command(D.encode_command(ds)), data) and wire.data == data


def test_message_command_is_decoded_once_and_changes_are_seen():
    wire = _assembled(D.c_echo_rq(41))
    first = wire.command
    assert isinstance(first, Dataset) and wire.command is first
    first.MessageID = 42
    assert wire.message_id == 42


def test_fast_reader_values_match_what_the_wire_message_reports():
    wire = _assembled(_STORE)
    assert (wire.message_id, wire.affected_sop_class_uid, wire.affected_sop_instance_uid) == (7, CT, INSTANCE)
    assert wire.data == _STORE.data and wire.has_data_set and not wire.is_response


# ---------------------------------------------------------------- data set fragments


def test_data_set_fragments_are_handed_over_unjoined_and_join_on_demand():
    data = bytes(range(256)) * 40  # 10240 bytes: ten or so fragments of views at max PDU 1030
    msg = D.c_store_rq(9, CT, INSTANCE, data=data)
    stream = [bytes(p) for p in D.fragment(msg, 2048)]  # bytes PDUs: fragments stay read-only views
    assembler = D.MessageAssembler()
    from dicomconf.ul.pdu import decode_pdu

    out = [m for raw in stream for m in assembler.add_pdata(decode_pdu(raw))]
    assert len(out) == 1
    wire = out[0]
    parts = wire.data_parts
    assert len(parts) == len(stream) - 1 and wire.data_length == len(data)
    assert repr(wire).endswith(f"data={len(data)} bytes)") and wire.data_parts is parts  # repr did not join
    assert b"".join(parts) == data
    assert wire.data == data and wire.data_parts == (data,) and wire.data_length == len(data)


def test_message_without_data_set_has_no_parts():
    msg = D.c_echo_rq(1)
    assert (msg.data, msg.data_parts, msg.data_length) == (None, (), None)
