"""Hostile streams of 50 MB: the framer and the receive path hold no more than their bounds (PS3.8 9.3.1, D.1.1).

Each test feeds about 50 MB shaped to make a receiver buffer as much as it
can (PDUs of the largest length allowed, bodies that arrive in odd-sized
chunks, a DIMSE data set that never ends, a command set that never ends, an
A-ASSOCIATE-RQ announced at the association bound and trickled) and checks
after every chunk that the reader's ``buffered`` stays within its limit, and
at the end that the peak of memory allocated meanwhile (``tracemalloc``) is a
small multiple of the bound, not of the 50 MB.
"""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul import dimse as D
from dicomconf.ul.association import ASSOCIATE_PDU_BOUND, Association
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.events import Aborted, MessageReceived, PDUReceived
from dicomconf.ul.framing import PDUReader
from dicomconf.ul.items import (
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ

TOTAL = 50 * 1024 * 1024
MAX_LENGTH = 16382  # the Maximum Length we announce (PS3.8 D.1.1)
LIMIT = MAX_LENGTH + C.PDU_HEADER_LENGTH
CT = "1.2.840.10008.5.1.4.1.1.2"
MIB = 1 << 20


def _pdata(pdv_data: bytes, mch: int, context_id: int = 1) -> bytes:
    """One P-DATA-TF of one PDV (PS3.8 9.3.5)."""
    return struct.pack(">BBIIBB", C.P_DATA_TF, 0, len(pdv_data) + 6, len(pdv_data) + 2, context_id, mch) + pdv_data


def _chunks(stream: bytes, total: int, seed: int):
    """``stream`` repeated to ``total`` bytes or a little more (whole repetitions), in chunks of 1 to 9,000 bytes."""
    rng = random.Random(seed)
    view = memoryview(stream)
    sent = pos = 0
    while sent < total or pos:
        n = rng.randint(1, 9000)
        piece = view[pos : pos + n]
        pos = (pos + len(piece)) % len(view)
        sent += len(piece)
        yield piece


def _measured(run):
    """Run ``run()`` under tracemalloc; return (its result, peak bytes allocated meanwhile)."""
    tracemalloc.start()
    try:
        result = run()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reader_of_largest_pdus_in_odd_chunks_stays_within_its_limit():
    """Every PDU at the largest length allowed, straddling chunks: buffered <= limit, peak a few PDUs."""
    stream = _pdata(bytes(MAX_LENGTH - 6), 0x00) * 4  # variable field = MAX_LENGTH exactly

    def run() -> int:
        reader, pdus = PDUReader(LIMIT), 0
        for chunk in _chunks(stream, TOTAL, 1):
            for pdu in reader.feed(chunk):
                assert len(pdu) == LIMIT
                pdus += 1
            assert reader.buffered <= LIMIT
        return pdus

    pdus, peak = _measured(run)
    assert pdus >= TOTAL // LIMIT - 1
    assert peak < 8 * LIMIT + 64 * 1024, f"peak {peak} bytes for PDUs of {LIMIT}"


def test_reader_trickled_bytes_and_a_lying_header_cost_nothing_more():
    """One byte at a time, then a header above the limit: refused at its header, before any body (PS3.8 9.3.1)."""
    reader = PDUReader(LIMIT)
    pdu = _pdata(bytes(MAX_LENGTH - 6), 0x00)
    for i in range(len(pdu)):
        out = reader.feed(pdu[i : i + 1])
        assert reader.buffered <= LIMIT
    assert [bytes(p) for p in out] == [pdu]
    with pytest.raises(RemoteProtocolError) as info:
        reader.feed(struct.pack(">BBI", C.P_DATA_TF, 0, 0xFFFFFFF0))
    assert info.value.reason == C.ABORT_REASON_INVALID_PARAMETER_VALUE and reader.buffered == 0


def _established(**kwargs) -> Association:
    ui = UserInformation((MaximumLength(MAX_LENGTH),))
    a = Association("acceptor", max_pdu_length=MAX_LENGTH, **kwargs)
    a.connection_made()
    a.receive_data(AAssociateRQ("SCP", "SCU", (PresentationContextRQ(1, CT, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),),
                                ui).encode())
    a.send(AAssociateAC("SCP", "SCU", (PresentationContextAC(1, C.PC_ACCEPTANCE, C.IMPLICIT_VR_LITTLE_ENDIAN),), ui))
    a.data_to_send()
    assert a.state == "Sta6"
    return a


def _feed(a: Association, stream: bytes, seed: int) -> list:
    """Feed as a driver does; keep the events but PDUReceived (whose PDUs are views of the chunks: a driver
    that kept them all would hold the stream itself)."""
    events, fed = [], 0
    for chunk in _chunks(stream, TOTAL, seed):
        events += [e for e in a.receive_data(bytes(chunk)) if not isinstance(e, PDUReceived)]
        fed += len(chunk)
        a.data_to_send()
        assert a._reader.buffered <= a._reader.max_pdu_length
    assert fed >= TOTAL and fed % len(stream) == 0
    return events


def test_endless_data_set_is_counted_not_held():
    """A C-STORE data set of 50 MB with a 1 MiB bound: dropped past the bound, the message still completes."""
    a = _established(max_data_length=MIB)
    store = D.c_store_rq(1, CT, "1.2.3.4", data=b"")
    command = D.fragment(store, MAX_LENGTH)[0]
    fragment = _pdata(bytes(MAX_LENGTH - 6), 0x00)  # data set, not last
    assert [type(e) for e in a.receive_data(command)] == [PDUReceived]

    def run() -> list:
        return _feed(a, fragment * 4, 2)

    events, peak = _measured(run)
    assert not [e for e in events if not isinstance(e, MessageReceived)] and a.state == "Sta6"
    assert peak < 4 * MIB, f"peak {peak} bytes for a data set bound of {MIB}"
    done = [e for e in a.receive_data(_pdata(b"\x00\x00", 0x02)) if isinstance(e, MessageReceived)]
    fragments = -(-TOTAL // LIMIT // 4) * 4  # whole repetitions of four PDUs
    assert len(done) == 1 and done[0].message.data_dropped
    assert done[0].message.data_length == fragments * (MAX_LENGTH - 6) + 2  # every byte counted


def test_endless_command_set_is_refused_and_the_rest_ignored():
    """A command set that never ends: A-ABORT past 64 KiB (PS3.7 6.3.1), then 50 MB ignored in Sta13 (AA-6)."""
    a = _established()
    fragment = _pdata(bytes(MAX_LENGTH - 6), 0x01)  # command, not last

    events, peak = _measured(lambda: _feed(a, fragment * 4, 3))
    aborts = [e for e in events if isinstance(e, Aborted)]
    assert len(aborts) == 1 and aborts[0].error is not None and a.state == "Sta13"
    assert peak < 2 * D.MAX_COMMAND_SET_LENGTH + 8 * LIMIT, f"peak {peak} bytes"


def test_association_request_at_the_bound_trickled_in_sta2():
    """A-ASSOCIATE-RQs announced at the association bound (1 MiB), 50 MB of them: held at most one at a time."""
    a = Association("acceptor")
    a.connection_made()
    # Fixed fields, then unknown items of 64 KiB (a 16-bit item length, PS3.8 9.3.2) up to the bound.
    body = bytearray(68)
    while len(body) + 4 + 0xFFFF <= ASSOCIATE_PDU_BOUND - C.PDU_HEADER_LENGTH:
        body += struct.pack(">BBH", 0x99, 0, 0xFFFF) + bytes(0xFFFF)
    rq = struct.pack(">BBI", C.A_ASSOCIATE_RQ, 0, len(body)) + body

    events, peak = _measured(lambda: _feed(a, rq, 4))
    assert a.state == "Sta13" and a.error is not None  # the first one was refused (AA-1), the rest answered (AA-7)
    assert not [e for e in events if isinstance(e, MessageReceived)]
    # About 3.8 times the bound: the straddling pieces, the joined PDU, the copies its unknown items keep.
    assert peak < 6 * ASSOCIATE_PDU_BOUND, f"peak {peak} bytes for a bound of {ASSOCIATE_PDU_BOUND}"


# --------------------------------------------------------------------------
# Found while writing these: fragments the length bounds barely count


def _pdvs(count: int, mch: int, data: bytes = b"") -> bytes:
    """One P-DATA-TF of ``count`` PDVs, each a fragment of ``data`` (PS3.8 9.3.5.1, E.2)."""
    body = (struct.pack(">IBB", len(data) + 2, 1, mch) + data) * count
    return struct.pack(">BBI", C.P_DATA_TF, 0, len(body)) + body


@pytest.mark.parametrize("mch", [0x01, 0x00], ids=["command", "data-set"])
def test_empty_fragments_hold_nothing(mch):
    """Empty fragments, 1 MiB of them: the assembler used to keep a list entry per fragment (PS3.8 E.1).

    An empty fragment adds nothing to a command set or data set, so neither the command bound (64 KiB)
    nor ``max_data_length`` ever grew, and 20 MB of them held 30 MB (1 MiB: 1.5 MB).  Now they hold nothing.
    """
    a = _established(max_data_length=MIB)
    if mch == 0x00:  # a C-STORE-RQ whose data set is due
        a.receive_data(D.fragment(D.c_store_rq(1, CT, "1.2.3.4", data=b""), MAX_LENGTH)[0])
    pdu = _pdvs(MAX_LENGTH // 6, mch)

    def run() -> int:
        for _ in range(MIB // len(pdu)):
            a.receive_data(pdu)
        return tracemalloc.get_traced_memory()[0]

    held, _peak = _measured(run)
    assert a.state == "Sta6" and a._assembler.in_progress
    assert held < 64 * 1024, f"{held} bytes held for empty fragments"


def test_tiny_fragments_cost_their_bytes_up_to_the_bound():
    """2-byte data set fragments against a 64 KiB bound: held as bytes, not as an object each (PS3.8 E.1).

    Each used to cost a bytes object and a list entry (about 43 bytes for 2), so the bound let 22 times
    its size be held before it tripped.
    """
    bound = 64 * 1024
    a = _established(max_data_length=bound)
    a.receive_data(D.fragment(D.c_store_rq(1, CT, "1.2.3.4", data=b""), MAX_LENGTH)[0])
    pdu = _pdvs(100, 0x00, b"\x00\x00")

    def run() -> None:
        for _ in range(bound // 200 - 1):  # just under the bound: everything is still held
            a.receive_data(pdu)

    _none, peak = _measured(run)
    assert peak < 4 * bound, f"peak {peak} bytes for {bound} bytes of data set held"
    done = [e for e in a.receive_data(_pdata(b"\x00\x00", 0x02)) if isinstance(e, MessageReceived)]
    assert len(done) == 1 and not done[0].message.data_dropped
    assert done[0].message.data == bytes((bound // 200 - 1) * 200 + 2)


def test_a_deflated_data_set_inflates_within_its_bound():
    """A zip bomb (a few hundred KB that inflate to 300 MiB) is refused as the peer's fault, not inflated."""
    import zlib

    from dicomconf.ul.dimse_codec import INFLATE_LIMIT, decode_dataset, inflate

    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = packer.compress(b"\0" * (INFLATE_LIMIT + (44 << 20))) + packer.flush()
    assert len(bomb) < 400_000
    tracemalloc.start()
    try:
        with pytest.raises(RemoteProtocolError, match="inflates to more than"):
            decode_dataset(bomb, "1.2.840.10008.1.2.1.99")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < INFLATE_LIMIT * 1.25  # the limit, the buffer's growth margin and one 1 MiB step
    small = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert inflate(small.compress(b"abc" * 1000) + small.flush()) == b"abc" * 1000
    with pytest.raises(ValueError):
        inflate(zlib.compress(b"x" * 2000)[2:-4], limit=1000)
