"""PDU codec tables, both ways, and malformed PDUs (PS3.8 9.3).

The expected bytes are packed field by field from the layouts of PS3.8 9.3
with ``struct`` (helpers below), never produced by the codec under test.
"""

from __future__ import annotations

import struct

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.items import (
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UnknownItem,
    UserInformation,
)
from dicomconf.ul.pdu import (
    PDV,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    decode_header,
    decode_pdu,
    pdu_name,
)

# --------------------------------------------------------------------------
# PS3.8 9.3 layouts, packed by hand


def item(item_type: int, value: bytes, reserved: int = 0) -> bytes:
    return struct.pack(">BBH", item_type, reserved, len(value)) + value


def pdu(pdu_type: int, body: bytes, reserved: int = 0) -> bytes:
    return struct.pack(">BBI", pdu_type, reserved, len(body)) + body


def ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16, b" ")


def assoc_body(items, called="CALLED", calling="CALLING", version=1, reserved=bytes(32)) -> bytes:
    return struct.pack(">HH", version, 0) + ae(called) + ae(calling) + reserved + b"".join(items)


def pc_rq(context_id: int, abstract: str, *transfers: str) -> bytes:
    subs = item(0x30, abstract.encode()) + b"".join(item(0x40, t.encode()) for t in transfers)
    return item(0x20, bytes((context_id, 0, 0, 0)) + subs)


def pc_ac(context_id: int, result: int, transfer: str | None) -> bytes:
    subs = b"" if transfer is None else item(0x40, transfer.encode())
    return item(0x21, bytes((context_id, 0, result, 0)) + subs)


def pdv(context_id: int, mch: int, data: bytes) -> bytes:
    return struct.pack(">IBB", len(data) + 2, context_id, mch) + data


APP = item(0x10, b"1.2.840.10008.3.1.1.1")
UI_MIN = item(0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.3.4"))
UI_MIN_OBJ = UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.3.4")))
IVR = "1.2.840.10008.1.2"
EVR = "1.2.840.10008.1.2.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
VER = "1.2.840.10008.1.1"

# --------------------------------------------------------------------------
# legal PDUs: (id, object, bytes)

LEGAL = [
    (
        "rq-minimal",
        AAssociateRQ("CALLED", "CALLING", (PresentationContextRQ(1, VER, (IVR,)),), UI_MIN_OBJ),
        pdu(1, assoc_body([APP, pc_rq(1, VER, IVR), UI_MIN])),
    ),
    (
        "rq-several-contexts-odd-version-reserved-echo",
        AAssociateRQ(
            "ANY-SCP",
            "ME",
            (PresentationContextRQ(1, VER, (IVR, EVR)), PresentationContextRQ(255, CT, (EVR,))),
            UserInformation((MaximumLength(0), ImplementationVersionName("DICOMCONF_01"))),
            protocol_version=3,
            reserved=bytes(range(32)),
        ),
        pdu(
            1,
            assoc_body(
                [APP, pc_rq(1, VER, IVR, EVR), pc_rq(255, CT, EVR),
                 item(0x50, item(0x51, bytes(4)) + item(0x55, b"DICOMCONF_01"))],
                called="ANY-SCP", calling="ME", version=3, reserved=bytes(range(32)),
            ),
        ),
    ),
    (
        "rq-unknown-item-kept",
        AAssociateRQ(
            "A", "B", (PresentationContextRQ(3, VER, (IVR,)),), UI_MIN_OBJ,
            unknown_items=(UnknownItem(0x60, b"\x01\x02"),),
        ),
        pdu(1, assoc_body([APP, pc_rq(3, VER, IVR), UI_MIN, item(0x60, b"\x01\x02")], called="A", calling="B")),
    ),
    (
        "ac-accept-and-rejects",
        AAssociateAC(
            "CALLED",
            "CALLING",
            (
                PresentationContextAC(1, C.PC_ACCEPTANCE, IVR),
                PresentationContextAC(3, C.PC_ABSTRACT_SYNTAX_NOT_SUPPORTED, None),
                PresentationContextAC(5, C.PC_TRANSFER_SYNTAXES_NOT_SUPPORTED, EVR),
            ),
            UI_MIN_OBJ,
        ),
        pdu(2, assoc_body([APP, pc_ac(1, 0, IVR), pc_ac(3, 3, None), pc_ac(5, 4, EVR), UI_MIN])),
    ),
    ("rj-permanent-user-called", AAssociateRJ(1, 1, 7), pdu(3, bytes((0, 1, 1, 7)))),
    ("rj-transient-presentation", AAssociateRJ(2, 3, 1), pdu(3, bytes((0, 2, 3, 1)))),
    ("pdata-one-command-pdv", PDataTF((PDV(1, 3, b"\x00\x01"),)), pdu(4, pdv(1, 3, b"\x00\x01"))),
    (
        "pdata-several-pdvs",
        PDataTF((PDV(1, 1, b"abc"), PDV(1, 3, b""), PDV(3, 2, b"d" * 300))),
        pdu(4, pdv(1, 1, b"abc") + pdv(1, 3, b"") + pdv(3, 2, b"d" * 300)),
    ),
    ("release-rq", AReleaseRQ(), pdu(5, bytes(4))),
    ("release-rp", AReleaseRP(), pdu(6, bytes(4))),
    ("abort-user", AAbort(0, 0), pdu(7, bytes(4))),
    ("abort-provider-unexpected", AAbort(2, 2), pdu(7, bytes((0, 0, 2, 2)))),
]


def _norm(obj):
    """PDV data decode as memoryviews: compare their bytes."""
    if isinstance(obj, PDataTF):
        return [(p.context_id, p.message_control_header, bytes(p.data)) for p in obj.pdvs]
    return obj


@pytest.mark.parametrize("obj, raw", [c[1:] for c in LEGAL], ids=[c[0] for c in LEGAL])
def test_bytes_to_object_to_bytes(obj, raw):
    decoded = decode_pdu(raw)
    assert _norm(decoded) == _norm(obj)
    assert decoded.encode() == raw


@pytest.mark.parametrize("obj, raw", [c[1:] for c in LEGAL], ids=[c[0] for c in LEGAL])
def test_object_to_bytes_to_object(obj, raw):
    assert obj.encode() == raw
    assert _norm(decode_pdu(obj.encode())) == _norm(obj)
    assert decode_header(raw) == (obj.pdu_type, len(raw) - 6)
    assert pdu_name(obj) == C.PDU_NAMES[raw[0]]


@pytest.mark.parametrize("obj, raw", [c[1:] for c in LEGAL], ids=[c[0] for c in LEGAL])
def test_decode_accepts_bytes_bytearray_memoryview(obj, raw):
    for form in (bytes(raw), bytearray(raw), memoryview(raw), memoryview(b"xx" + raw)[2:]):
        assert _norm(decode_pdu(form)) == _norm(obj)


@pytest.mark.parametrize("obj, raw", [c[1:] for c in LEGAL], ids=[c[0] for c in LEGAL])
def test_decode_refuses_trailing_and_missing_bytes(obj, raw):
    for bad in (raw + b"\x00", raw[:-1]):
        with pytest.raises(RemoteProtocolError) as info:
            decode_pdu(bad)
        assert info.value.reason == C.ABORT_REASON_INVALID_PARAMETER_VALUE
        assert info.value.offset == 2


def test_pdv_data_is_a_view_not_a_copy():
    raw = bytearray(pdu(4, pdv(1, 2, b"abcdef")))
    decoded = decode_pdu(raw)
    raw[-1] = ord("Z")
    assert bytes(decoded.pdvs[0].data) == b"abcdeZ"


def test_reserved_fields_not_tested_on_receipt():
    # PS3.8 9.3.1: reserved fields are not tested; only bit 0 of the version matters.
    raw = bytearray(pdu(5, b"\xff\xff\xff\xff", reserved=0xAA))
    assert decode_pdu(raw) == AReleaseRQ()
    rq = decode_pdu(pdu(1, assoc_body([APP, pc_rq(1, VER, IVR), item(0x50, b"", reserved=9)], version=0xFFFF)))
    assert rq.protocol_version == 0xFFFF
    ab = decode_pdu(pdu(7, bytes((9, 9, 2, 6))))
    assert ab == AAbort(2, 6)


def test_ae_title_padding_and_uid_nul_padding():
    body = (struct.pack(">HH", 1, 0) + b"SCP\x00".ljust(16, b" ") + b"  ME  ".ljust(16, b" ") + bytes(32)
            + item(0x10, b"1.2.840.10008.3.1.1.1\x00") + pc_rq(1, VER + "\x00", IVR + "\x00") + item(0x50, b""))
    rq = decode_pdu(pdu(1, body))
    assert rq.called_ae_title == "SCP" and rq.calling_ae_title == "  ME"
    assert rq.application_context_name == C.APPLICATION_CONTEXT_NAME
    assert rq.presentation_contexts[0].abstract_syntax == VER
    assert rq.presentation_contexts[0].transfer_syntaxes == (IVR,)


# --------------------------------------------------------------------------
# malformed PDUs: (id, bytes, reason, offset of the fault)

R6 = C.ABORT_REASON_INVALID_PARAMETER_VALUE
R5 = C.ABORT_REASON_UNEXPECTED_PARAMETER
PC1 = pc_rq(1, VER, IVR)
BASE = 6 + 68  # first item of an A-ASSOCIATE-RQ/AC

MALFORMED = [
    ("short-header", b"\x01\x00\x00", R6, 0),
    ("unknown-pdu-type", pdu(0x08, bytes(4)), C.ABORT_REASON_UNRECOGNIZED_PDU, 0),
    ("pdu-type-zero", pdu(0x00, b""), C.ABORT_REASON_UNRECOGNIZED_PDU, 0),
    ("release-length-6", pdu(5, bytes(6)), R6, 2),
    ("abort-length-0", pdu(7, b""), R6, 2),
    ("rj-length-3", pdu(3, bytes(3)), R6, 2),
    ("rq-fixed-fields-short", pdu(1, bytes(67)), R6, 2),
    ("pdata-empty", pdu(4, b""), R6, 2),
    ("pdata-pdv-header-cut", pdu(4, pdv(1, 2, b"ab") + b"\x00\x00\x00"), R6, 6 + 8),
    ("pdata-pdv-length-1", pdu(4, struct.pack(">IBB", 1, 1, 2)), R6, 6),
    ("pdata-pdv-overruns", pdu(4, struct.pack(">IBB", 10, 1, 2) + b"ab"), R6, 6),
    ("rq-no-app-context", pdu(1, assoc_body([PC1, UI_MIN])), R6, BASE),
    ("rq-no-presentation-context", pdu(1, assoc_body([APP, UI_MIN])), R6, BASE),
    ("rq-no-user-info", pdu(1, assoc_body([APP, PC1])), R6, BASE),
    ("rq-two-app-contexts", pdu(1, assoc_body([APP, APP, PC1, UI_MIN])), R6, BASE + len(APP)),
    ("rq-two-user-infos", pdu(1, assoc_body([APP, PC1, UI_MIN, UI_MIN])), R6, BASE + len(APP + PC1 + UI_MIN)),
    ("rq-ac-context-item", pdu(1, assoc_body([APP, pc_ac(1, 0, IVR), UI_MIN])), R5, BASE + len(APP)),
    ("ac-rq-context-item", pdu(2, assoc_body([APP, PC1, UI_MIN])), R5, BASE + len(APP)),
    ("rq-bare-sub-item", pdu(1, assoc_body([APP, PC1, UI_MIN, item(0x51, bytes(4))])), R5,
     BASE + len(APP + PC1 + UI_MIN)),
    ("rq-item-overruns", pdu(1, assoc_body([APP, PC1, UI_MIN[:-1]])), R6, BASE + len(APP + PC1) + 2),
    ("rq-item-header-cut", pdu(1, assoc_body([APP, PC1, UI_MIN, b"\x60\x00"])), R6,
     BASE + len(APP + PC1 + UI_MIN)),
    ("pc-too-short", pdu(1, assoc_body([APP, item(0x20, b"\x01\x00"), UI_MIN])), R6, BASE + len(APP) + 4),
    ("pc-no-abstract", pdu(1, assoc_body([APP, item(0x20, b"\x01\x00\x00\x00" + item(0x40, IVR.encode())), UI_MIN])),
     R6, BASE + len(APP) + 4),
    ("pc-no-transfer", pdu(1, assoc_body([APP, item(0x20, b"\x01\x00\x00\x00" + item(0x30, VER.encode())), UI_MIN])),
     R6, BASE + len(APP) + 4),
    ("pc-two-abstracts",
     pdu(1, assoc_body([APP, item(0x20, b"\x01\x00\x00\x00" + item(0x30, b"1") + item(0x30, b"2")), UI_MIN])),
     R6, BASE + len(APP) + 8 + 5),
    ("pc-foreign-sub-item",
     pdu(1, assoc_body([APP, item(0x20, b"\x01\x00\x00\x00" + item(0x30, b"1") + item(0x51, bytes(4))), UI_MIN])),
     R5, BASE + len(APP) + 8 + 5),
    ("ac-accepted-no-transfer", pdu(2, assoc_body([APP, pc_ac(1, 0, None), UI_MIN])), R6, BASE + len(APP) + 4),
    ("ac-accepted-two-transfers",
     pdu(2, assoc_body([APP, item(0x21, b"\x01\x00\x00\x00" + item(0x40, b"1") + item(0x40, b"2")), UI_MIN])),
     R5, BASE + len(APP) + 8 + 5),
    ("ui-max-length-3-bytes", pdu(1, assoc_body([APP, PC1, item(0x50, item(0x51, bytes(3)))])), R6,
     BASE + len(APP + PC1) + 8),
    ("ui-sub-item-overruns", pdu(1, assoc_body([APP, PC1, item(0x50, item(0x52, b"1.2")[:-1])])), R6,
     BASE + len(APP + PC1) + 4 + 2),
]


@pytest.mark.parametrize("raw, reason, offset", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_pdu_raises_remote_error_with_reason_and_offset(raw, reason, offset):
    with pytest.raises(RemoteProtocolError) as info:
        decode_pdu(raw)
    err = info.value
    assert err.abort == (C.ABORT_SOURCE_PROVIDER, reason)
    assert err.offset == offset
    assert err.clause.startswith("PS3.")
    assert str(err)


@pytest.mark.parametrize(
    "obj",
    [AAssociateRJ(1, 2, 256), AAbort(-1, 0), PDataTF((PDV(256, 0, b""),)), PDV(1, 300, b""),
     AAssociateRQ("A" * 17, "B", ()), AAssociateRQ("A", "B", (), reserved=b"short"), AAssociateRQ("A", "B", (), protocol_version=-1)],
    ids=repr,
)
def test_unencodable_fields_are_local_errors(obj):
    from dicomconf.ul.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        obj.encode()


def test_decode_reads_any_buffer_as_bytes():
    import array

    raw = AAbort(2, 1).encode() + b"\x00\x00"  # 12 bytes: six 16-bit items
    arr = array.array("H", raw)
    with pytest.raises(RemoteProtocolError):  # two trailing bytes: the length disagrees
        decode_pdu(memoryview(arr))
    assert decode_pdu(memoryview(array.array("B", AAbort(2, 1).encode()))) == AAbort(2, 1)
    assert decode_pdu(memoryview(array.array("H", AReleaseRQ().encode() + b"\x00\x00"))[:5]) == AReleaseRQ()


@pytest.mark.parametrize("obj, raw", [c[1:] for c in LEGAL], ids=[c[0] for c in LEGAL])
def test_each_legal_pdu_through_the_reader_whole_bytewise_and_with_trailing(obj, raw):
    from dicomconf.ul.framing import PDUReader

    reader = PDUReader(max_pdu_length=len(raw))
    (whole,) = reader.feed(raw)
    assert _norm(decode_pdu(whole)) == _norm(obj)
    got = [p for i in range(len(raw)) for p in reader.feed(raw[i : i + 1])]
    assert [bytes(p) for p in got] == [raw]
    trailing = AReleaseRP().encode()[:4]
    assert [bytes(p) for p in reader.feed(raw + trailing)] == [raw]
    assert reader.buffered == 4


def test_pdv_repr_is_short():
    assert repr(PDV(3, 3, bytes(100000))) == "PDV(context_id=3, command, last, 100000 bytes)"
    assert repr(PDV(1, 0, memoryview(b"ab"))) == "PDV(context_id=1, data, 2 bytes)"
