"""DIMSE message assembly and fragmentation (PS3.7 6.3, PS3.8 Annex E)."""

from __future__ import annotations

import struct

import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian

from dicomconf.ul import constants as C
from dicomconf.ul import dimse as D
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.pdu import PDV, PDataTF, decode_pdu

CT = "1.2.840.10008.5.1.4.1.1.2"


def _assemble(pdus: list[bytes], assembler: D.MessageAssembler | None = None) -> list[D.Message]:
    assembler = assembler or D.MessageAssembler()
    out = []
    for raw in pdus:
        out += assembler.add_pdata(decode_pdu(raw))
    return out


def _dataset() -> Dataset:
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "12345"
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.Rows = 2
    return ds


# --------------------------------------------------------------------------
# command sets


def test_encode_command_computes_group_length_and_is_implicit_le():
    raw = D.encode_command(D.c_echo_rq(5).command)
    tag_group, tag_elem, length, value = struct.unpack_from("<HHII", raw)
    assert (tag_group, tag_elem, length) == (0, 0, 4)
    assert value == len(raw) - 12
    # implicit VR: after the group length comes (0000,0002) with a 4-byte length, no VR letters
    assert raw[12:16] == b"\x00\x00\x02\x00"
    assert struct.unpack_from("<I", raw, 16)[0] == len(C.VERIFICATION_SOP_CLASS) + 1  # even padding


def test_encode_command_replaces_a_wrong_group_length():
    ds = D.c_echo_rq(5).command
    ds.CommandGroupLength = 9999
    raw = D.encode_command(ds)
    assert struct.unpack_from("<I", raw, 8)[0] == len(raw) - 12


def test_encode_command_refuses_elements_outside_group_0000():
    ds = D.c_echo_rq(5).command
    ds.PatientName = "X"
    with pytest.raises(LocalProtocolError):
        D.encode_command(ds)


def test_command_round_trip_keeps_every_field():
    rq = D.c_store_rq(9, CT, "1.2.3", priority=D.PRIORITY_HIGH, move_originator=("MOVER", 77))
    ds = D.decode_command(D.encode_command(rq.command))
    assert ds.CommandField == D.C_STORE_RQ
    assert ds.MessageID == 9
    assert ds.Priority == D.PRIORITY_HIGH
    assert ds.AffectedSOPClassUID == CT
    assert ds.AffectedSOPInstanceUID == "1.2.3"
    assert ds.MoveOriginatorApplicationEntityTitle == "MOVER"
    assert ds.MoveOriginatorMessageID == 77
    assert ds.CommandDataSetType != D.NO_DATA_SET


@pytest.mark.parametrize(
    "mutate, offset",
    [
        (lambda b: b[:-1], None),  # truncated: group length disagrees / element overruns
        (lambda b: b + b"\x00\x00", None),  # trailing bytes
        (lambda b: b[:8] + struct.pack("<I", 1) + b[12:], 8),  # wrong group length
        (lambda b: b[12:], 0),  # no group length
        (lambda b: b + struct.pack("<HHI", 8, 0x20, 0), None),  # element outside group 0000
    ],
)
def test_decode_command_rejects_malformed(mutate, offset):
    raw = D.encode_command(D.c_echo_rq(5).command)
    with pytest.raises(RemoteProtocolError) as info:
        D.decode_command(mutate(raw))
    assert info.value.reason == C.ABORT_REASON_INVALID_PARAMETER_VALUE
    if offset is not None:
        assert info.value.offset == offset


def test_decode_command_requires_command_field_and_data_set_type():
    ds = Dataset()
    ds.MessageID = 1
    with pytest.raises(RemoteProtocolError, match="CommandField"):
        D.decode_command(D.encode_command(ds))


# --------------------------------------------------------------------------
# Message


def test_message_properties():
    rq = D.c_store_rq(3, CT, "1.2.3.9", context_id=5, data=b"\x08\x00")
    assert rq.name == "C-STORE-RQ" and rq.command_field == D.C_STORE_RQ
    assert rq.message_id == 3 and rq.message_id_being_responded_to is None
    assert rq.affected_sop_class_uid == CT and rq.affected_sop_instance_uid == "1.2.3.9"
    assert rq.has_data_set and not rq.is_response and rq.context_id == 5
    rsp = D.c_store_rsp(rq, 0xB000)
    assert rsp.name == "C-STORE-RSP" and rsp.is_response
    assert rsp.message_id_being_responded_to == 3 and rsp.status == 0xB000
    assert rsp.context_id == 5 and not rsp.has_data_set and rsp.data is None
    assert rsp.affected_sop_instance_uid == "1.2.3.9"


def test_store_rsp_from_fields_and_echo_rsp_from_request():
    rsp = D.c_store_rsp(status=0xA700, message_id_being_responded_to=4, sop_class_uid=CT, sop_instance_uid="1.9")
    assert (rsp.status, rsp.message_id_being_responded_to, rsp.affected_sop_instance_uid) == (0xA700, 4, "1.9")
    with pytest.raises(LocalProtocolError):
        D.c_store_rsp(status=0)
    echo = D.c_echo_rsp(D.c_echo_rq(11, context_id=7), 0x0000)
    assert (echo.context_id, echo.message_id_being_responded_to, echo.name) == (7, 11, "C-ECHO-RSP")
    assert D.c_echo_rsp(12).message_id_being_responded_to == 12


@pytest.mark.parametrize("ts", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian])
def test_dataset_round_trip_in_transfer_syntax(ts):
    raw = D.encode_dataset(_dataset(), ts)
    msg = D.c_store_rq(1, CT, "1.2.3.4.5", data=raw)
    ds = msg.dataset(ts)
    assert ds.PatientName == "Doe^Jane" and ds.Rows == 2


def test_dataset_errors():
    with pytest.raises(LocalProtocolError):
        D.c_echo_rq(1).dataset(ImplicitVRLittleEndian)
    with pytest.raises(LocalProtocolError):
        D.c_store_rq(1, CT, "1.2", data=b"").dataset("1.2.3.4.5.6.7")
    bad = D.c_store_rq(1, CT, "1.2", data=b"\x10\x00\x10\x00\xff\xff\x00\x00xx")
    with pytest.raises(RemoteProtocolError):
        bad.dataset(ImplicitVRLittleEndian)


# --------------------------------------------------------------------------
# status


@pytest.mark.parametrize(
    "field, status, category, words",
    [
        (D.C_STORE_RSP, 0x0000, "success", "Success"),
        (D.C_ECHO_RSP, 0x0000, "success", "Success"),
        (D.C_STORE_RQ, 0xB000, "warning", "coercion"),
        (D.C_STORE_RSP, 0xB007, "warning", "does not match"),
        (D.C_STORE_RSP, 0xB006, "warning", "discarded"),
        (D.C_STORE_RSP, 0x0001, "warning", "optional attributes"),
        (D.C_STORE_RSP, 0xA700, "failure", "out of resources"),
        (D.C_STORE_RSP, 0xA7FF, "failure", "out of resources"),
        (D.C_STORE_RSP, 0xA900, "failure", "does not match"),
        (D.C_STORE_RSP, 0xC123, "failure", "cannot understand"),
        (D.C_STORE_RSP, 0x0122, "failure", "SOP class not supported"),
        (D.C_ECHO_RSP, 0x0211, "failure", "unrecognized operation"),
        (D.C_ECHO_RSP, 0x0110, "failure", "processing failure"),
        (D.C_FIND_RSP, 0xFF00, "pending", "continuing"),
        (D.C_FIND_RSP, 0xFE00, "cancel", "cancel"),
        (D.C_ECHO_RSP, 0xB000, "warning", "not defined"),
        (D.C_ECHO_RSP, 0xA700, "failure", "not defined"),
        (D.C_STORE_RSP, 0x1234, "unknown", "not defined"),
        (D.C_MOVE_RSP, 0xA801, "failure", "destination unknown"),
        (D.C_MOVE_RQ, 0xB000, "warning", "sub-operations"),
        (D.C_GET_RSP, 0xA702, "failure", "sub-operations"),
        (D.C_FIND_RSP, 0xA900, "failure", "identifier"),
        (D.C_FIND_RSP, 0xA700, "failure", "out of resources"),
        (D.C_ECHO_RSP, 0xFF00, "pending", "continuing"),
    ],
)
def test_status_meaning(field, status, category, words):
    got_category, text = D.status_meaning(field, status)
    assert got_category == category
    assert words.lower() in text.lower()


# --------------------------------------------------------------------------
# fragmentation and assembly


@pytest.mark.parametrize("max_len", [0, 8, 9, 100, 1024, 16384])
def test_fragment_respects_max_length_and_flags(max_len):
    data = bytes(range(256)) * 40
    msg = D.c_store_rq(1, CT, "1.2.3.4", context_id=3, data=data)
    pdus = D.fragment(msg, max_len)
    flags = []
    for raw in pdus:
        pdu = decode_pdu(raw)
        assert isinstance(pdu, PDataTF) and len(pdu.pdvs) == 1
        if max_len:
            assert len(raw) - C.PDU_HEADER_LENGTH <= max_len
        pdv = pdu.pdvs[0]
        assert pdv.context_id == 3
        flags.append(pdv.message_control_header)
    ncmd = sum(1 for f in flags if f & C.MCH_COMMAND)
    assert flags[: ncmd - 1] == [C.MCH_COMMAND] * (ncmd - 1)
    assert flags[ncmd - 1] == C.MCH_COMMAND | C.MCH_LAST
    assert flags[ncmd:-1] == [0] * (len(flags) - ncmd - 1)
    assert flags[-1] == C.MCH_LAST
    if max_len == 0:
        assert len(pdus) == 2
    (got,) = _assemble(pdus)
    assert got.data == data and got.message_id == 1 and got.context_id == 3


def test_fragment_refuses_impossible_or_inconsistent():
    with pytest.raises(LocalProtocolError):
        D.fragment(D.c_echo_rq(1), 6)
    with pytest.raises(LocalProtocolError):
        D.fragment(D.c_echo_rq(1), -1)
    with pytest.raises(LocalProtocolError):
        D.fragment(D.Message(1, D.c_echo_rq(1).command, b"\x00"), 0)
    with pytest.raises(LocalProtocolError):
        D.fragment(D.c_store_rq(1, CT, "1.2", data=None), 0)


def test_echo_round_trip_through_reader_byte_by_byte():
    stream = b"".join(D.fragment(D.c_echo_rq(42, context_id=9), 32))
    reader = PDUReader()
    assembler = D.MessageAssembler({9})
    got = []
    for i in range(len(stream)):
        for raw in reader.feed(stream[i : i + 1]):
            got += assembler.add_pdata(decode_pdu(raw))
    assert [m.name for m in got] == ["C-ECHO-RQ"]
    assert got[0].message_id == 42 and got[0].data is None


def test_several_messages_in_sequence_and_multiple_pdvs_per_pdu():
    m1 = D.c_echo_rq(1, context_id=1)
    m2 = D.c_store_rq(2, CT, "1.2", context_id=3, data=b"abcd" * 10)
    pdvs = D.message_pdvs(m1, 0) + D.message_pdvs(m2, 20)
    got = _assemble([PDataTF(tuple(pdvs)).encode()])
    assert [(m.name, m.context_id) for m in got] == [("C-ECHO-RQ", 1), ("C-STORE-RQ", 3)]
    assert got[1].data == b"abcd" * 10


def test_writable_buffers_are_copied_readonly_are_not():
    msg = D.c_store_rq(1, CT, "1.2", data=b"xy" * 50)
    pdvs = D.message_pdvs(msg, 40)
    assembler = D.MessageAssembler()
    result = None
    scratch = []
    for pdv in pdvs:
        buf = bytearray(pdv.data)
        scratch.append(buf)
        result = assembler.add(PDV(pdv.context_id, pdv.message_control_header, memoryview(buf)))
    for buf in scratch:  # the driver reuses its buffers
        buf[:] = b"\x00" * len(buf)
    assert result is not None and result.data == b"xy" * 50


def _pdv(ctx: int, mch: int, data: bytes) -> PDV:
    return PDV(ctx, mch, data)


CMD_ECHO = D.encode_command(D.c_echo_rq(1).command)
CMD_STORE = D.encode_command(D.c_store_rq(1, CT, "1.2").command)
CL = C.MCH_COMMAND | C.MCH_LAST


@pytest.mark.parametrize(
    "pdvs, reason, words",
    [
        ([_pdv(1, C.MCH_LAST, b"x")], C.ABORT_REASON_UNEXPECTED_PARAMETER, "before any command"),
        ([_pdv(1, C.MCH_COMMAND, CMD_STORE[:10]), _pdv(1, 0, b"x")], 5, "before the last command"),
        ([_pdv(1, C.MCH_COMMAND, CMD_STORE[:10]), _pdv(3, CL, CMD_STORE[10:])], 5, "incomplete"),
        ([_pdv(1, CL, CMD_STORE), _pdv(3, C.MCH_LAST, b"x")], 5, "incomplete"),
        ([_pdv(1, CL, CMD_STORE), _pdv(1, CL, CMD_ECHO)], 5, "was due"),
        ([_pdv(1, CL, CMD_ECHO), _pdv(1, C.MCH_LAST, b"x")], 5, "before any command"),
        ([_pdv(2, CL, CMD_ECHO)], C.ABORT_REASON_INVALID_PARAMETER_VALUE, "odd"),
        ([_pdv(1, CL, CMD_ECHO[:-2])], 6, "overruns"),
        ([_pdv(1, CL, CMD_ECHO[:8] + struct.pack("<I", 3) + CMD_ECHO[12:])], 6, "Group Length is 3"),
        ([_pdv(1, CL, b"")], 6, "Command Group Length"),
    ],
)
def test_assembler_rejects_bad_sequences(pdvs, reason, words):
    assembler = D.MessageAssembler()
    with pytest.raises(RemoteProtocolError, match=words) as info:
        for pdv in pdvs:
            assembler.add(pdv)
    assert info.value.abort == (C.ABORT_SOURCE_PROVIDER, reason)
    with pytest.raises(RemoteProtocolError):  # poisoned
        assembler.add(_pdv(1, CL, CMD_ECHO))


def test_assembler_refuses_unaccepted_context():
    assembler = D.MessageAssembler(accepted_contexts={1, 3})
    assert assembler.add(_pdv(3, CL, CMD_ECHO)).name == "C-ECHO-RQ"
    with pytest.raises(RemoteProtocolError, match="not accepted"):
        assembler.add(_pdv(5, CL, CMD_ECHO))


def test_assembler_reports_in_progress_and_empty_data_set():
    assembler = D.MessageAssembler()
    assert not assembler.in_progress
    assert assembler.add(_pdv(1, CL, CMD_STORE)) is None
    assert assembler.in_progress
    msg = assembler.add(_pdv(1, C.MCH_LAST, b""))
    assert msg is not None and msg.data == b"" and not assembler.in_progress


def test_reserved_message_control_header_bits_are_not_tested():
    # PS3.8 E.2: bits 2-7 are sent as 0 and not checked by the receiver.
    msg = D.MessageAssembler().add(_pdv(1, CL | 0xFC, CMD_ECHO))
    assert msg is not None and msg.name == "C-ECHO-RQ"


def test_contract_names_are_exported_from_dimse():
    # docs/architecture.md and the DIMSE contract name these in dicomconf.ul.dimse
    for name in ("Message", "MessageAssembler", "fragment", "encode_command", "decode_command", "c_echo_rq",
                 "c_echo_rsp", "c_store_rq", "c_store_rsp", "COMMAND_FIELDS", "status_meaning"):
        assert name in D.__all__ and hasattr(D, name), name
    assert D.COMMAND_FIELDS[D.C_STORE_RQ] == "C-STORE-RQ" and D.COMMAND_CODES["C-ECHO-RSP"] == 0x8030
    msg = D.Message(1, D.c_echo_rq(1).command)
    with pytest.raises(AttributeError):
        msg.context_id = 3  # frozen
    assert not hasattr(msg, "__dict__")  # slotted


def _with_group_length(body: bytes) -> bytes:
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def test_decode_command_refuses_unordered_or_repeated_elements():
    field = struct.pack("<HHIH", 0, 0x0100, 2, D.C_ECHO_RQ)
    dstype = struct.pack("<HHIH", 0, 0x0800, 2, D.NO_DATA_SET)
    assert D.decode_command(_with_group_length(field + dstype)).CommandField == D.C_ECHO_RQ
    for body in (dstype + field, field + field + dstype):
        with pytest.raises(RemoteProtocolError, match="ascending") as info:
            D.decode_command(_with_group_length(body))
        assert info.value.reason == C.ABORT_REASON_INVALID_PARAMETER_VALUE
        assert info.value.offset == 12 + 10


def test_decode_command_keeps_unknown_elements_as_un_without_warning(recwarn):
    field = struct.pack("<HHIH", 0, 0x0100, 2, D.C_ECHO_RQ)
    unknown = struct.pack("<HHI", 0, 0x0777, 2) + b"\x01\x02"
    dstype = struct.pack("<HHIH", 0, 0x0800, 2, D.NO_DATA_SET)
    ds = D.decode_command(_with_group_length(field + unknown + dstype))
    assert ds[0x00000777].VR == "UN" and ds[0x00000777].value == b"\x01\x02"
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_message_repr_is_short():
    text = repr(D.c_store_rq(4, CT, "1.2", context_id=3, data=bytes(1 << 20)))
    assert text == "Message(C-STORE-RQ, context_id=3, id=4, data=1048576 bytes)"
    assert repr(D.c_echo_rsp(9, 0x0110)) == "Message(C-ECHO-RSP, context_id=1, id=9, status=0x0110, no data set)"


@pytest.mark.parametrize("max_pdu_length", [8, 9, 21, 33, 101, 16383])
def test_fragments_have_an_even_length_whatever_the_maximum(max_pdu_length):
    """PS3.8 E.1: "Each fragment of a message shall consist of an even number of bytes" (also for
    an odd Maximum Length, where the room left is odd)."""
    from dicomconf.ul import dimse

    message = dimse.c_echo_rsp(7)
    pdvs = list(dimse.message_pdvs(message, max_pdu_length))
    assert len(pdvs) >= 1
    assert all(len(p.data) % 2 == 0 and len(p.data) + 6 <= max_pdu_length for p in pdvs)


def test_a_maximum_length_with_no_room_for_an_even_fragment_is_refused():
    from dicomconf.ul import dimse

    with pytest.raises(LocalProtocolError, match="even-length"):
        list(dimse.message_pdvs(dimse.c_echo_rsp(7), 7))
