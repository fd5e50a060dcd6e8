"""Differential DIMSE tests: pynetdicom's messages assemble in ours, ours in pynetdicom (PS3.7, PS3.8 E)."""

from __future__ import annotations

from io import BytesIO

import pytest

pytest.importorskip("pynetdicom")

from pynetdicom import dimse_messages as dm  # noqa: E402
from pynetdicom import dimse_primitives as dp  # noqa: E402
from pynetdicom.pdu import P_DATA_TF  # noqa: E402

from dicomconf.ul import dimse as D  # noqa: E402
from dicomconf.ul.framing import PDUReader  # noqa: E402
from dicomconf.ul.pdu import decode_pdu  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"
DATA = bytes(range(256)) * 37 + b"\x01"  # odd length on purpose: kept exactly


def _pn_message(kind: str):
    if kind.startswith("C-ECHO"):
        p = dp.C_ECHO()
        p.AffectedSOPClassUID = "1.2.840.10008.1.1"
    else:
        p = dp.C_STORE()
        p.AffectedSOPClassUID = CT
        p.AffectedSOPInstanceUID = "1.2.3.4.5"
    if kind.endswith("RQ"):
        p.MessageID = 17
        if kind == "C-STORE-RQ":
            p.Priority = 2
            p.MoveOriginatorApplicationEntityTitle = "MOVER"
            p.MoveOriginatorMessageID = 3
            p.DataSet = BytesIO(DATA)
    else:
        p.MessageIDBeingRespondedTo = 17
        p.Status = 0xB000 if kind == "C-STORE-RSP" else 0x0000
    msg = {"C-ECHO-RQ": dm.C_ECHO_RQ, "C-ECHO-RSP": dm.C_ECHO_RSP,
           "C-STORE-RQ": dm.C_STORE_RQ, "C-STORE-RSP": dm.C_STORE_RSP}[kind]()
    msg.primitive_to_message(p)
    return msg


KINDS = ["C-ECHO-RQ", "C-ECHO-RSP", "C-STORE-RQ", "C-STORE-RSP"]


@pytest.mark.parametrize("max_pdu", [0, 64, 1000, 16384])
@pytest.mark.parametrize("kind", KINDS)
def test_pynetdicom_messages_assemble_in_ours(kind, max_pdu):
    theirs = _pn_message(kind)
    stream = b""
    for prim in theirs.encode_msg(5, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(prim)
        stream += pdu.encode()
    assembler = D.MessageAssembler({5})
    got = []
    for raw in PDUReader().feed(stream):
        got += assembler.add_pdata(decode_pdu(raw))
    (msg,) = got
    assert msg.name == kind and msg.context_id == 5
    cs = theirs.command_set
    for keyword in ("MessageID", "MessageIDBeingRespondedTo", "Status", "Priority",
                    "AffectedSOPClassUID", "AffectedSOPInstanceUID", "MoveOriginatorMessageID"):
        assert msg.command.get(keyword) == cs.get(keyword), keyword
    assert msg.data == (DATA if kind == "C-STORE-RQ" else None)


def _ours(kind: str) -> D.Message:
    rq = D.c_store_rq(17, CT, "1.2.3.4.5", D.PRIORITY_LOW, ("MOVER", 3), context_id=5, data=DATA)
    return {
        "C-ECHO-RQ": D.c_echo_rq(17, context_id=5),
        "C-ECHO-RSP": D.c_echo_rsp(17, context_id=5),
        "C-STORE-RQ": rq,
        "C-STORE-RSP": D.c_store_rsp(rq, 0xB000),
    }[kind]


@pytest.mark.parametrize("max_pdu", [0, 64, 1000, 16384])
@pytest.mark.parametrize("kind", KINDS)
def test_our_messages_assemble_in_pynetdicom(kind, max_pdu):
    ours = _ours(kind)
    theirs = dm.DIMSEMessage()
    done = False
    for raw in D.fragment(ours, max_pdu):
        assert not done
        if max_pdu:
            assert len(raw) - 6 <= max_pdu
        pdu = P_DATA_TF()
        pdu.decode(raw)
        done = theirs.decode_msg(pdu.to_primitive())
    assert done
    assert type(theirs).__name__ == kind.replace("-", "_")
    assert theirs.context_id == 5
    cs = theirs.command_set
    for keyword in ("MessageID", "MessageIDBeingRespondedTo", "Status", "Priority", "AffectedSOPClassUID",
                    "AffectedSOPInstanceUID", "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID",
                    "CommandDataSetType"):
        assert cs.get(keyword) == ours.command.get(keyword), keyword
    if kind == "C-STORE-RQ":
        assert theirs.data_set.getvalue() == DATA
