"""Stream framing: any chunking yields the same whole PDUs (PS3.8 9.3.1)."""

from __future__ import annotations

import random

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.framing import FramingError, PDUReader
from dicomconf.ul.items import PresentationContextRQ, UserInformation, MaximumLength
from dicomconf.ul.pdu import PDV, AAbort, AAssociateRQ, AReleaseRQ, PDataTF, decode_pdu

PDUS = [
    AAssociateRQ("SCP", "SCU", (PresentationContextRQ(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),),
                 UserInformation((MaximumLength(16384),))).encode(),
    PDataTF((PDV(1, 3, b"x" * 1000),)).encode(),
    PDataTF((PDV(1, 0, b""), PDV(1, 2, b"yz"))).encode(),
    AReleaseRQ().encode(),
    AAbort(2, 1).encode(),
]
STREAM = b"".join(PDUS)


def _feed_all(reader: PDUReader, chunks) -> list[bytes]:
    out = []
    for chunk in chunks:
        out += [bytes(p) for p in reader.feed(chunk)]
    return out


def test_whole_stream_at_once():
    reader = PDUReader()
    assert _feed_all(reader, [STREAM]) == PDUS
    assert reader.buffered == 0


def test_byte_by_byte():
    reader = PDUReader()
    out = []
    for i in range(len(STREAM)):
        got = reader.feed(STREAM[i : i + 1])
        out += [bytes(p) for p in got]
        assert reader.buffered == sum(len(p) for p in PDUS) - sum(len(p) for p in out) - (len(STREAM) - i - 1)
    assert out == PDUS


@pytest.mark.parametrize("seed", range(20))
def test_random_chunkings(seed):
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(STREAM)), rng.randint(1, 30)))
    chunks = [STREAM[a:b] for a, b in zip([0] + cuts, cuts + [len(STREAM)])]
    assert _feed_all(PDUReader(max_pdu_length=2000), chunks) == PDUS


def test_trailing_bytes_stay_buffered_until_completed():
    reader = PDUReader()
    partial = PDUS[1][:10]
    assert _feed_all(reader, [PDUS[0] + partial]) == [PDUS[0]]
    assert reader.buffered == 10
    assert _feed_all(reader, [PDUS[1][10:] + PDUS[3][:3]]) == [PDUS[1]]
    assert reader.buffered == 3
    assert _feed_all(reader, [PDUS[3][3:]]) == [PDUS[3]]
    assert reader.buffered == 0


def test_empty_feed_and_every_buffer_type():
    reader = PDUReader()
    assert reader.feed(b"") == []
    assert _feed_all(reader, [bytearray(STREAM[:50]), memoryview(STREAM)[50:]]) == PDUS


def test_pdu_inside_a_chunk_is_a_view_of_it():
    chunk = PDUS[3] + PDUS[4]
    first, second = PDUReader().feed(chunk)
    assert isinstance(first, memoryview) and first.obj is chunk
    assert bytes(second) == PDUS[4]


def test_straddling_pdu_from_writable_buffer_survives_reuse():
    reader = PDUReader()
    buf = bytearray(PDUS[1][:500])
    assert reader.feed(buf) == []
    buf[:] = b"\xee" * 500  # the driver reuses its receive buffer
    (pdu,) = reader.feed(PDUS[1][500:])
    assert bytes(pdu) == PDUS[1]
    assert decode_pdu(pdu).pdvs[0].data == b"x" * 1000


@pytest.mark.parametrize("split", [0, 1, 2, 5, 6])
def test_oversized_pdu_refused_once_header_read(split):
    # PS3.8 9.3.1, D.1: the limit is checked on the header, before any body is buffered.
    reader = PDUReader(max_pdu_length=100)
    header = bytes((C.P_DATA_TF, 0)) + (1_000_000).to_bytes(4, "big")
    body = b"\x00" * 4096
    with pytest.raises(RemoteProtocolError) as info:
        assert reader.feed(header[:split]) == []
        assert split < 6 and reader.buffered == split
        reader.feed(header[split:] + body)
    assert info.value.abort == (C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_INVALID_PARAMETER_VALUE)
    assert info.value.offset == 2
    assert reader.buffered <= 6
    with pytest.raises(RemoteProtocolError):  # poisoned
        reader.feed(PDUS[3])


def test_oversized_pdu_refused_after_legal_ones_in_same_chunk():
    reader = PDUReader(max_pdu_length=100)
    small = AReleaseRQ().encode()
    with pytest.raises(FramingError) as info:
        reader.feed(small + PDUS[4] + PDUS[1] + small)  # PDUS[1] is 1012 bytes
    # The PDUs completed before the refused header are handed over with the error.
    assert [bytes(p) for p in info.value.completed] == [small, PDUS[4]]
    assert info.value.abort == (C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_INVALID_PARAMETER_VALUE)
    assert reader.buffered == 0
    with pytest.raises(FramingError) as again:  # poisoned, and nothing more is handed over
        reader.feed(small)
    assert again.value.completed == []


def test_limit_is_inclusive_of_header():
    pdu = PDataTF((PDV(1, 2, b"a" * 88),)).encode()  # 6 + 6 + 88 = 100
    assert len(pdu) == 100
    assert _feed_all(PDUReader(max_pdu_length=100), [pdu]) == [pdu]
    with pytest.raises(RemoteProtocolError):
        PDUReader(max_pdu_length=99).feed(pdu)


def test_unknown_pdu_type_is_framed_not_judged():
    # Framing only splits the stream; decode_pdu judges the type (PS3.8 9.3.1).
    odd = bytes((0x42, 0, 0, 0, 0, 2, 9, 9))
    assert _feed_all(PDUReader(), [odd + PDUS[3]]) == [odd, PDUS[3]]


def test_trickled_pdu_is_gathered_not_held_piece_by_piece():
    pdu = PDataTF((PDV(1, 2, bytes(range(256)) * 40),)).encode()
    reader = PDUReader()
    for i in range(len(pdu) - 1):
        assert reader.feed(pdu[i : i + 1]) == []
    assert len(reader._parts) == 1  # one bytearray, not thousands of one-byte pieces
    assert reader.buffered == len(pdu) - 1
    (whole,) = reader.feed(pdu[-1:])
    assert bytes(whole) == pdu and reader.buffered == 0


def test_large_pieces_of_immutable_chunks_are_held_without_copy():
    pdu = PDataTF((PDV(1, 2, b"q" * 20000),)).encode()
    first, second = pdu[:10000], pdu[10000:]
    reader = PDUReader()
    assert reader.feed(first) == []
    assert any(isinstance(p, memoryview) and p.obj is first for p in reader._parts)
    (whole,) = reader.feed(second)
    assert bytes(whole) == pdu
