"""Whatever the bytes, findings, summaries and the stream reader return normally (hypothesis)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from dicomconf.wire import dissect
from dicomconf.wire.craft import build_pdu
from dicomconf.wire.findings import ConversationState, Finding, check
from dicomconf.wire.pcapread import CapturedPDU, Segment, StreamDecoder

LEGAL = [build_pdu({"pdu": "A-ASSOCIATE-RQ"}), build_pdu({"pdu": "A-ASSOCIATE-AC"}),
         build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"command": {"CommandField": "C-ECHO-RQ", "MessageID": 1}}]}),
         build_pdu({"pdu": "A-ABORT"})]


@st.composite
def mutated(draw):
    """A legal PDU with some bytes flipped, some cut or some added, header length kept consistent or not."""
    pdu = bytearray(draw(st.sampled_from(LEGAL)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(pdu) - 1))
        pdu[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        pdu = pdu[: draw(st.integers(0, len(pdu)))]
    pdu += draw(st.binary(max_size=8))
    if draw(st.booleans()) and len(pdu) >= 6:
        struct.pack_into(">I", pdu, 2, len(pdu) - 6)
    return bytes(pdu)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), mutated()))
def test_findings_and_summaries_never_raise(data):
    found = check(data)
    assert all(isinstance(f, Finding) and f.severity in ("must", "should") for f in found)
    assert isinstance(dissect.summary(data), str)
    assert isinstance(dissect.fields(data), dict)
    state = ConversationState()
    for pdu, from_rq in ((LEGAL[0], True), (data, False), (data, True)):
        state.observe(pdu, from_rq)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.binary(max_size=200), mutated()))
def test_scapy_tree_never_raises(data):
    assert isinstance(dissect.tree(data), str)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3000), st.binary(min_size=1, max_size=60)), max_size=30))
def test_stream_decoder_survives_any_segments(segments):
    dec = StreamDecoder(ports=[104])
    out = []
    for seq, payload in segments:
        out += dec.feed(Segment(0.0, ("127.0.0.1", 5000), ("127.0.0.1", 104), seq, 0x18, payload))
    out += dec.finish()
    assert all(isinstance(r, CapturedPDU) or hasattr(r, "message") for r in out)
