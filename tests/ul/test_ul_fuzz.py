"""Hypothesis: hostile bytes never escape the core as anything but RemoteProtocolError.

Random bytes and mutated legal PDUs (bit flips, truncations, length-field
edits, inserted and removed bytes) go to ``decode_pdu``, to ``PDUReader`` in
any chunking, and through ``MessageAssembler``.  The reader's ``buffered``
never exceeds its limit.  Runs are derandomized so CI sees the same examples.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomconf.ul import dimse as D
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.items import (
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    SOPClassCommonExtendedNegotiation,
    SOPClassExtendedNegotiation,
    UnknownSubItem,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.pdu import PDV, AAbort, AAssociateAC, AAssociateRJ, AAssociateRQ, AReleaseRQ, PDataTF, decode_pdu

# pydicom warns about the invalid values it is fed here (bad UIDs, odd VRs); the test is about errors.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom.*")

FUZZ = settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CT = "1.2.840.10008.5.1.4.1.1.2"
LIMIT = 4096

_SUBS = (
    MaximumLength(16384),
    ImplementationClassUID("1.2.3.4"),
    AsynchronousOperationsWindow(1, 1),
    RoleSelection(CT, 1, 0),
    ImplementationVersionName("X_1"),
    SOPClassExtendedNegotiation(CT, b"\x01\x01"),
    SOPClassCommonExtendedNegotiation(CT, "1.2.840.10008.4.2", ("1.2.3",)),
    UserIdentityRQ(2, b"u", b"p", 1),
    UnknownSubItem(0x5F, b"?"),
)
_STORE = D.c_store_rq(1, CT, "1.2.3.4", context_id=3, data=bytes(range(200)))
CORPUS = [
    AAssociateRQ("SCP", "SCU", (PresentationContextRQ(1, CT, ("1.2.840.10008.1.2",)),
                                PresentationContextRQ(3, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",))),
                 UserInformation(_SUBS)).encode(),
    AAssociateAC("SCP", "SCU", (PresentationContextAC(1, 0, "1.2.840.10008.1.2"), PresentationContextAC(3, 3, None)),
                 UserInformation((MaximumLength(0), UserIdentityAC(b"ok")))).encode(),
    AAssociateRJ(1, 2, 2).encode(),
    PDataTF((PDV(1, 3, b"abc"), PDV(1, 2, b"de"))).encode(),
    AReleaseRQ().encode(),
    AAbort(2, 6).encode(),
    *D.fragment(_STORE, 64),
]


@st.composite
def mutated(draw) -> bytes:
    """A legal PDU with one to three mutations."""
    data = bytearray(draw(st.sampled_from(CORPUS)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "pdu-length", "item-length", "insert", "remove"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "pdu-length" and len(data) >= 6:
            data[2:6] = struct.pack(">I", draw(st.one_of(st.integers(0, 300), st.integers(0, 0xFFFFFFFF))))
        elif kind == "item-length" and pos + 2 <= len(data):
            data[pos : pos + 2] = struct.pack(">H", draw(st.integers(0, 0xFFFF)))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


def _decode(raw) -> None:
    try:
        pdu = decode_pdu(raw)
    except RemoteProtocolError as exc:
        assert exc.reason in (0, 1, 2, 4, 5, 6) and exc.clause
        return
    pdu.encode  # noqa: B018 - a decoded PDU is a real object


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_remote_error(raw):
    _decode(raw)


@FUZZ
@given(st.binary(max_size=64).map(lambda b: bytes((b[0] % 8,)) + b[1:] if b else b))
def test_random_bytes_with_plausible_pdu_type(raw):
    if len(raw) >= 6:
        raw = raw[:2] + struct.pack(">I", len(raw) - 6) + raw[6:]
    _decode(raw)


@FUZZ
@given(mutated())
def test_mutated_pdus_decode_or_raise_remote_error(raw):
    _decode(raw)


@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=4), st.data())
def test_reader_any_chunking_bounded(pdus, data):
    stream = b"".join(pdus)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(stream) - 1)), max_size=12)))
    reader = PDUReader(max_pdu_length=LIMIT)
    try:
        for a, b in zip([0, *cuts], [*cuts, len(stream)]):
            for pdu in reader.feed(stream[a:b]):
                assert len(pdu) <= LIMIT
                _decode(pdu)
            assert reader.buffered <= LIMIT
    except RemoteProtocolError:
        assert reader.buffered <= 6


@FUZZ
@given(st.binary(max_size=2000), st.integers(1, 200))
def test_reader_random_stream_small_limit(stream, chunk):
    reader = PDUReader(max_pdu_length=256)
    try:
        for i in range(0, len(stream), chunk):
            reader.feed(stream[i : i + chunk])
            assert reader.buffered < 256
    except RemoteProtocolError as exc:
        assert exc.offset == 2


_COMMANDS = [D.encode_command(m.command) for m in (_STORE, D.c_echo_rq(1), D.c_store_rsp(_STORE, 0))]


@st.composite
def pdv_sequences(draw) -> list[PDV]:
    """PDVs mostly shaped like real fragments: legal command sets cut anywhere, random data."""
    out = []
    for _ in range(draw(st.integers(1, 8))):
        ctx = draw(st.sampled_from([1, 3, 2, 255]))
        mch = draw(st.integers(0, 3)) | draw(st.sampled_from([0, 0, 0, 0x80]))
        if mch & 1 and draw(st.booleans()):
            cmd = draw(st.sampled_from(_COMMANDS))
            a = draw(st.integers(0, len(cmd)))
            b = draw(st.integers(a, len(cmd)))
            payload = cmd[a:b] if draw(st.booleans()) else cmd
            if draw(st.booleans()) and payload:
                i = draw(st.integers(0, len(payload) - 1))
                payload = payload[:i] + bytes((payload[i] ^ 0xFF,)) + payload[i + 1 :]
        else:
            payload = draw(st.binary(max_size=40))
        out.append(PDV(ctx, mch, payload))
    return out


@FUZZ
@given(pdv_sequences())
def test_assembler_random_pdvs_raise_only_remote_error(pdvs):
    assembler = D.MessageAssembler()
    try:
        for pdv in pdvs:
            msg = assembler.add(pdv)
            if msg is not None:
                assert msg.context_id == pdv.context_id
                assert (msg.data is not None) == msg.has_data_set
    except RemoteProtocolError as exc:
        assert exc.reason in (5, 6)


@FUZZ
@given(st.lists(mutated(), min_size=1, max_size=6))
def test_stream_to_messages_raises_only_remote_error(pdus):
    reader = PDUReader(max_pdu_length=LIMIT)
    assembler = D.MessageAssembler()
    try:
        for raw in reader.feed(b"".join(pdus)):
            pdu = decode_pdu(raw)
            if isinstance(pdu, PDataTF):
                assembler.add_pdata(pdu)
    except RemoteProtocolError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=120), st.sampled_from(_COMMANDS).flatmap(
    lambda c: st.tuples(st.integers(0, len(c) - 1), st.integers(0, 255)).map(
        lambda t: c[: t[0]] + bytes((t[1],)) + c[t[0] + 1 :]))))
def test_decode_command_raises_only_remote_error(raw):
    try:
        ds = D.decode_command(raw)
    except RemoteProtocolError as exc:
        assert exc.reason == 6
        return
    assert isinstance(ds.CommandField, int)




@FUZZ
@given(st.binary(max_size=200), st.sampled_from(["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]))
def test_decode_dataset_raises_only_remote_error(raw, ts):
    try:
        D.decode_dataset(raw, ts)
    except RemoteProtocolError as exc:
        assert exc.reason == 6
