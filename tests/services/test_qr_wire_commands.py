"""The Q/R fast paths' command sets and file reads equal the general encoders' and pydicom's (PS3.7 E.1, PS3.10 7.1)."""

from __future__ import annotations

import os
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from dicomconf.scp.part10 import read_part10
from dicomconf.scp.requestor import fragments
from dicomconf.scp.responses import response_command, store_request_command
from dicomconf.ul import dimse

sys.path.insert(0, os.path.dirname(__file__))
from qr_kit import instance, write_part10

STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
COUNTS = ("NumberOfRemainingSuboperations", "NumberOfCompletedSuboperations", "NumberOfFailedSuboperations",
          "NumberOfWarningSuboperations")


def _general_response(field, message_id, status, sop_class, data_set, counts) -> bytes:
    ds = Dataset()
    if sop_class:
        ds.AffectedSOPClassUID = sop_class
    ds.CommandField = field
    ds.MessageIDBeingRespondedTo = message_id
    ds.CommandDataSetType = dimse.DATA_SET_PRESENT if data_set else dimse.NO_DATA_SET
    ds.Status = status
    for keyword, n in zip(COUNTS, counts or ()):
        if n is not None:
            setattr(ds, keyword, n)
    return dimse.encode_command(ds)


def _elements(raw: bytes) -> list[tuple]:
    return [(int(e.tag), e.VR, e.value) for e in dimse.decode_command(raw)]


@pytest.mark.parametrize("field, status, sop_class, data_set, counts", [
    (dimse.C_FIND_RSP, 0xFF00, STUDY_ROOT_FIND, True, None),  # a pending C-FIND-RSP with its identifier
    (dimse.C_FIND_RSP, 0xFF01, STUDY_ROOT_FIND, True, None),
    (dimse.C_FIND_RSP, 0x0000, STUDY_ROOT_FIND, False, None),
    (dimse.C_MOVE_RSP, 0xFF00, STUDY_ROOT_MOVE, False, (99, 1, 0, 0)),  # a pending C-MOVE-RSP (PS3.7 9.3.4.2)
    (dimse.C_MOVE_RSP, 0xB000, STUDY_ROOT_MOVE, False, (None, 90, 10, 0)),  # final: no Remaining
    (dimse.C_GET_RSP, 0x0000, None, False, (0, 65535, 0, 65535)),
])
def test_response_command_with_data_set_and_counts_equals_the_general_encoder(field, status, sop_class, data_set,
                                                                                counts):
    fast = response_command(field, 7, status, sop_class, data_set=data_set, counts=counts)
    general = _general_response(field, 7, status, sop_class, data_set, counts)
    assert _elements(fast) == _elements(general)  # element for element ...
    assert fast == general  # ... and byte for byte
    assert dimse.decode_command(fast).CommandDataSetType == (dimse.DATA_SET_PRESENT if data_set else dimse.NO_DATA_SET)


def _general_store(sop_class, sop_instance, message_id, priority, originator) -> bytes:
    ds = Dataset()
    ds.AffectedSOPClassUID = sop_class
    ds.CommandField = dimse.C_STORE_RQ
    ds.MessageID = message_id
    ds.Priority = priority
    ds.CommandDataSetType = dimse.DATA_SET_PRESENT
    ds.AffectedSOPInstanceUID = sop_instance
    if originator is not None:
        ds.MoveOriginatorApplicationEntityTitle = originator[0]
        ds.MoveOriginatorMessageID = originator[1]
    return dimse.encode_command(ds)


_UIDS = st.from_regex(r"[12](\.[1-9][0-9]{0,8}){1,12}", fullmatch=True).filter(lambda u: len(u) <= 64)
_AE = st.text(alphabet="ABCXYZ019_-", min_size=1, max_size=16)


@settings(max_examples=150, deadline=None)
@given(sop_class=_UIDS, sop_instance=_UIDS, message_id=st.integers(0, 0xFFFF), priority=st.sampled_from([0, 1, 2]),
       originator=st.none() | st.tuples(_AE, st.integers(0, 0xFFFF)))
def test_store_request_command_equals_the_general_encoder(sop_class, sop_instance, message_id, priority, originator):
    fast = store_request_command(sop_class, sop_instance, message_id, priority, originator)
    general = _general_store(sop_class, sop_instance, message_id, priority, originator)
    assert _elements(fast) == _elements(general)
    assert fast == general


def test_store_request_command_refuses_what_it_cannot_encode():
    with pytest.raises(UnicodeEncodeError):
        store_request_command(CT, "1.2.3", 1, 0, ("ÄE", 1))
    with pytest.raises(struct.error):
        store_request_command(CT, "1.2.3", 1 << 16, 0)


@pytest.mark.parametrize("transfer_syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                                             DeflatedExplicitVRLittleEndian])
def test_read_part10_gives_pydicoms_transfer_syntax_and_the_bytes_after_the_meta_group(tmp_path, transfer_syntax):
    ds = instance(1, PatientComments="odd length value!")
    path = write_part10(ds, tmp_path / "a.dcm", transfer_syntax)
    found = read_part10(path)
    meta = read_file_meta_info(path)
    with open(path, "rb") as f:
        raw = f.read()
    assert found is not None
    assert found[0] == str(meta.TransferSyntaxUID) == transfer_syntax
    assert found[1] == raw[144 + meta.FileMetaInformationGroupLength:]
    assert found[1] and found[1] != raw


def test_read_part10_without_group_length_or_file(tmp_path):
    assert read_part10(str(tmp_path / "missing.dcm")) is None
    not_dicom = tmp_path / "x.dcm"
    not_dicom.write_bytes(b"\0" * 300)
    assert read_part10(str(not_dicom)) is None
    ds = instance(1)
    path = write_part10(ds, tmp_path / "b.dcm")
    with open(path, "rb") as f:
        raw = f.read()
    # A file cut inside its meta group, before Transfer Syntax UID: neither reader can use it.
    truncated = tmp_path / "c.dcm"
    truncated.write_bytes(bytes(raw[:150]))
    assert read_part10(str(truncated)) is None
    # A meta group without its group length element goes to pydicom's reader, which gives up too.
    no_length = tmp_path / "d.dcm"
    no_length.write_bytes(bytes(raw[:132]) + bytes(raw[144:]))
    assert read_part10(str(no_length)) is None


@settings(max_examples=150, deadline=None)
@given(size=st.integers(0, 70_000).map(lambda n: n & ~1), max_pdu=st.sampled_from([0, 256, 4096, 16384, 16385, 65536]),
       context_id=st.sampled_from([1, 3, 255]))
def test_c_store_fragments_are_the_core_fragmenters_pdus(size, max_pdu, context_id):
    """The C-MOVE sub-operation's PDUs equal dimse.fragment's for the same message (PS3.8 E.2, D.1.1)."""
    command = store_request_command(CT, "1.2.3.4.5", 9, 0, ("MOVER", 3))
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    pdus = fragments(context_id, command, data, max_pdu)
    message = dimse.Message(context_id, dimse.decode_command(command), data)
    assert pdus.encode() == b"".join(dimse.fragment(message, max_pdu))
    assert all(len(p.data) + 6 <= max_pdu for p in pdus.pdvs) if max_pdu else len(pdus.pdvs) == 2


def test_fragments_refuse_a_maximum_length_too_small_for_the_command():
    command = store_request_command(CT, "1.2.3.4.5", 9, 0)
    assert fragments(1, command, b"\0\0", len(command) + 5) is None
    assert fragments(1, command, b"\0\0", len(command) + 6) is not None
