"""The judge's header-only P-DATA-TF path finds what the full checks find (wire.findings), PDU for PDU."""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from dicomconf.proxy.judge import AssociationJudge
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ
from dicomconf.wire.findings import ConversationState

CT = "1.2.840.10008.5.1.4.1.1.2"
IVRLE = C.IMPLICIT_VR_LITTLE_ENDIAN
MAX = 16382
INSTANCE = "1.2.3.4.5.6"


def _handshake() -> tuple[bytes, bytes]:
    pcs = (PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (IVRLE,)), PresentationContextRQ(3, CT, (IVRLE,)))
    ui = UserInformation((MaximumLength(MAX), ImplementationClassUID("1.2.3.4")))
    rq = AAssociateRQ("SCP", "SCU", pcs, ui).encode()
    ac = AAssociateAC("SCP", "SCU", (PresentationContextAC(1, 0, IVRLE), PresentationContextAC(3, 0, IVRLE)),
                      ui).encode()
    return rq, ac


def _data_set(instance: str, size: int) -> bytes:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientID = CT, instance, "JUDGE"
    ds.BitsAllocated = 8
    ds.PixelData = bytes(size)
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, ds)
    return fp.getvalue()


def _pdata(*pdvs: tuple[int, int, bytes]) -> bytes:
    body = b"".join(struct.pack(">IBB", len(d) + 2, cid, mch) + d for cid, mch, d in pdvs)
    return struct.pack(">BBI", C.P_DATA_TF, 0, len(body)) + body


def _store(mid: int, instance: str, data: bytes) -> list[bytes]:
    stream = b"".join(dimse.fragment(dimse.c_store_rq(mid, CT, instance, context_id=3, data=data), MAX))
    out, pos = [], 0
    while pos < len(stream):
        n = 6 + struct.unpack_from(">I", stream, pos + 2)[0]
        out.append(stream[pos:pos + n])
        pos += n
    return out


def _echo(mid: int) -> bytes:
    return b"".join(dimse.fragment(dimse.c_echo_rq(mid, context_id=1), MAX))


def _echo_rsp(mid: int) -> bytes:
    return b"".join(dimse.fragment(dimse.c_echo_rsp(message_id_being_responded_to=mid, context_id=1), MAX))


CASES = {
    "a store in 16 KiB PDUs, then an echo": lambda: [*_store(1, INSTANCE, _data_set(INSTANCE, 100_000)), _echo(2)],
    "SOP instance differs from the command's": lambda: _store(1, "1.2.3.9", _data_set(INSTANCE, 40_000)),
    "an odd fragment": lambda: [_pdata((1, 3, b"abc"))],
    "an even context ID": lambda: [_pdata((2, 3, b"ab"))],
    "a PDV length under 2": lambda: [struct.pack(">BBIIBB", 4, 0, 6, 1, 1, 3)],
    "a PDV overrunning the PDU": lambda: [struct.pack(">BBIIBB", 4, 0, 8, 20, 1, 3) + b"ab"],
    "a context not accepted": lambda: [_pdata((5, 3, b"ab"))],
    "over the peer's maximum length": lambda: [_pdata((3, 0, bytes(MAX + 2)))],
    "data before any command": lambda: [_pdata((3, 0, b"abcd"))],
    "a command where data is due": lambda: [_store(1, INSTANCE, _data_set(INSTANCE, 40_000))[0], _echo(2)],
    "a response to nothing": lambda: [_echo_rsp(7)],
    "two requests with one message ID": lambda: [_echo(4), _echo(4)],
}


def _reference(pdus: list[bytes]) -> list[tuple[int, str]]:
    """What the full checks (every PDU walked and decoded, data sets assembled) say, by PDU number."""
    rq, ac = _handshake()
    state = ConversationState(data_sets_of=(True, False))
    out = []
    for n, (raw, from_rq) in enumerate([(rq, True), (ac, False)] + [(p, True) for p in pdus], 1):
        out += [(n, f.code) for f in state.observe(raw, from_rq) if f.code != "pdu.unexpected"]
    return out


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("chunk", [None, 1000, 7])
def test_header_only_path_finds_what_the_full_checks_find(name, chunk):
    pdus = CASES[name]()
    rq, ac = _handshake()
    judge = AssociationJudge(1, ("127.0.0.1", 1000), ("127.0.0.1", 104))
    judge.feed("requestor", rq, 1.0)
    judge.feed("acceptor", ac, 1.0)
    stream = b"".join(pdus)
    for pos in range(0, len(stream), chunk or len(stream)):
        judge.feed("requestor", stream[pos:pos + (chunk or len(stream))], 2.0)
    judge.finish()
    got = sorted((j.pdu, j.finding.code) for j in judge.judged if j.finding.code != "pdu.unexpected")
    assert got == sorted(_reference(pdus))
    if name.startswith("SOP instance"):
        assert ("dimse.store.sop-instance-mismatch" in {c for _n, c in got})  # found after the association


def test_the_hot_path_keeps_no_copy_and_counts_the_operations():
    rq, ac = _handshake()
    judge = AssociationJudge(1, ("127.0.0.1", 1000), ("127.0.0.1", 104))
    judge.feed("requestor", rq, 1.0)
    judge.feed("acceptor", ac, 1.0)
    data = _data_set(INSTANCE, 200_000)
    stream = b"".join(_store(1, INSTANCE, data))
    judge.feed("requestor", stream, 2.0)
    rsp = dimse.c_store_rsp(None, 0, message_id_being_responded_to=1, sop_class_uid=CT, sop_instance_uid=INSTANCE,
                            context_id=3)
    judge.feed("acceptor", b"".join(dimse.fragment(rsp, MAX)), 3.0)
    [deferred] = judge.deferred
    assert sum(map(len, deferred.parts)) == len(data)
    assert all(isinstance(p, memoryview) and p.obj is stream for p in deferred.parts)  # views of the chunk read
    assert judge.finish() == []
    [op] = judge.summary.operations
    assert (op.command, op.status, op.rtt) == ("C-STORE", 0, 1.0)
    assert judge.summary.pdus == 2 + len(_store(1, INSTANCE, data)) + 1


def test_no_data_set_checks_keeps_nothing():
    rq, ac = _handshake()
    judge = AssociationJudge(1, ("127.0.0.1", 1000), ("127.0.0.1", 104), check_data_sets=False)
    judge.feed("requestor", rq, 1.0)
    judge.feed("acceptor", ac, 1.0)
    judge.feed("requestor", b"".join(_store(1, "1.2.3.9", _data_set(INSTANCE, 40_000))), 2.0)
    assert judge.deferred == [] and judge.finish() == []
