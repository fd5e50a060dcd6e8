"""The ladder diagram and the identity of the systems under test, from pcaps (dicomconf.report.ladder)."""

from __future__ import annotations

from dicomconf.report import ladder
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.items import (
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAbort, AAssociateAC, AAssociateRQ, AReleaseRP, AReleaseRQ
from dicomconf.wire.capture import Conversation, write_pcap
from dicomconf.wire.pcapread import CapturedPDU, read_pdus

CLIENT, SERVER = ("127.0.0.1", 40001), ("127.0.0.1", 11112)


def _rq(max_length: int = 16384) -> bytes:
    ui = UserInformation((MaximumLength(max_length), ImplementationClassUID("1.2.3.4"),
                          ImplementationVersionName("SCU_1")))
    return AAssociateRQ("TARGET", "DICOMCONF", (PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS,
                                                                       (C.IMPLICIT_VR_LITTLE_ENDIAN,)),
                                                  PresentationContextRQ(3, "1.2.840.10008.5.1.4.1.1.2",
                                                                       (C.IMPLICIT_VR_LITTLE_ENDIAN,))), ui).encode()


def _ac() -> bytes:
    ui = UserInformation((MaximumLength(32768), ImplementationClassUID("1.2.840.99.7"),
                          ImplementationVersionName("PACS_7")))
    return AAssociateAC("TARGET", "DICOMCONF", (PresentationContextAC(1, 0, C.IMPLICIT_VR_LITTLE_ENDIAN),
                                                 PresentationContextAC(3, 3, None)), ui).encode()


def _conversation(*sends, ts: float = 1000.0, close: str = "client") -> Conversation:
    conv = Conversation(CLIENT, SERVER)
    conv.opened(ts)
    for i, (side, data) in enumerate(sends, 1):
        (conv.client_sent if side == "client" else conv.server_sent)(data, ts + i * 0.01)
    conv.closed(close, ts + (len(sends) + 1) * 0.01)
    return conv


def test_every_pdu_is_an_arrow_with_its_type_key_fields_direction_and_time(tmp_path):
    echo_rq = dimse.fragment(dimse.c_echo_rq(7), 16384)
    echo_rsp = dimse.fragment(dimse.c_echo_rsp(7, 0x0000), 16384)
    pcap = tmp_path / "c.pcap"
    write_pcap(pcap, [_conversation(("client", _rq()), ("server", _ac()), ("client", echo_rq[0]),
                                    ("server", echo_rsp[0]), ("client", AReleaseRQ().encode()),
                                    ("server", AReleaseRP().encode()))])
    lad = ladder.read_ladder(pcap, role="scu")
    assert lad.error is None and lad.pdus == 6 == lad.drawn and lad.not_drawn == 0
    pdus = [r for r in lad.rows if r.kind == "pdu"]
    assert [r.name for r in pdus] == ["A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "P-DATA-TF", "P-DATA-TF",
                                      "A-RELEASE-RQ", "A-RELEASE-RP"]
    assert [r.from_dicomconf for r in pdus] == [True, False] * 3  # dicomconf connected: it is the client
    assert pdus[0].label == "DICOMCONF → TARGET, ctx 1,3, max 16384"
    assert pdus[1].label == "ctx 1 accepted, 1 rejected, max 32768"
    assert pdus[2].label == "C-ECHO-RQ id=7"
    assert pdus[3].label == "C-ECHO-RSP to=7 0x0000 success"
    assert [round(r.t, 3) for r in pdus] == [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]
    assert [(r.kind, r.name) for r in lad.rows if r.kind == "tcp"] == [("tcp", "connect"), ("tcp", "FIN"),
                                                                      ("tcp", "FIN")]
    assert lad.rows[0].name == "connect" and lad.rows[-1].name == "FIN"
    assert lad.connections == [(1, "127.0.0.1:40001", "127.0.0.1:11112")]
    # decoded fields name the UIDs and the DIMSE command; the hex dump starts at the PDU header
    assert "abstract_syntax: 1.2.840.10008.1.1 (Verification)" in pdus[0].fields
    assert "CommandField: 0x0030 (C-ECHO-RQ)" in pdus[2].fields
    assert pdus[4].hex == "0000  " + "05 00 00 00 00 04 00 00  00 00".ljust(48) + "  .........." and not pdus[4].more
    # when dicomconf is the acceptor (an SCU under test), the client is the system under test
    assert [r.from_dicomconf for r in ladder.read_ladder(pcap, role="scp").rows if r.kind == "pdu"] == \
        [False, True] * 3


def test_aborts_and_rejects_show_source_and_reason(tmp_path):
    pcap = tmp_path / "a.pcap"
    write_pcap(pcap, [_conversation(("client", _rq()), ("server", AAbort(C.ABORT_SOURCE_USER, 0).encode()),
                                    close="server")])
    rows = [r for r in ladder.read_ladder(pcap).rows if r.kind == "pdu"]
    assert rows[1].label == "source 0, reason 0" and rows[1].name == "A-ABORT"
    assert "service-user" in rows[1].title  # the whole summary is the arrow's tooltip


def test_a_malformed_pdu_is_drawn_as_such_with_its_bytes(tmp_path):
    pcap = tmp_path / "m.pcap"
    garbage = bytes.fromhex("08 00 00000004 00000000")  # a PDU type that does not exist
    bad_rq = bytearray(_rq())
    bad_rq[7] = 0  # protocol version without bit 0
    write_pcap(pcap, [_conversation(("client", bytes(bad_rq)), ("client", garbage))])
    rows = [r for r in ladder.read_ladder(pcap).rows if r.kind == "pdu"]
    assert [r.name for r in rows] == ["A-ASSOCIATE-RQ", "PDU type 0x08"]
    assert rows[1].bad and rows[1].label.startswith("malformed:")
    assert rows[1].hex.startswith("0000  08 00 00 00 00 04")


def test_an_unreadable_capture_gives_a_note_not_an_exception(tmp_path):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture at all" * 10)
    lad = ladder.read_ladder(garbage)
    assert lad.error and "not a pcap" in lad.error and lad.rows == []
    cut = tmp_path / "cut.pcap"
    write_pcap(cut, [_conversation(("client", _rq()), ("server", _ac()))])
    cut.write_bytes(cut.read_bytes()[:-30])  # the last packet cut short
    lad = ladder.read_ladder(cut)
    assert lad.error.startswith("cut.pcap: truncated capture: the last packet is cut short")
    assert lad.pdus >= 1  # what was read before the cut stays
    assert ladder.read_ladder(tmp_path / "missing.pcap").error


def test_long_conversations_are_cut_to_the_first_and_last_pdus(tmp_path):
    rq = dimse.fragment(dimse.c_echo_rq(1), 16384)[0]
    pcap = tmp_path / "long.pcap"
    write_pcap(pcap, [_conversation(*[("client", rq)] * 200)])
    lad = ladder.read_ladder(pcap)
    assert lad.pdus == 200 and lad.drawn == ladder.HEAD + ladder.TAIL and lad.not_drawn == 200 - 80
    numbers = [r.number for r in lad.rows if r.kind == "pdu"]
    assert numbers == list(range(1, 61)) + list(range(181, 201))
    (gap,) = [r for r in lad.rows if r.kind == "gap"]
    assert gap.label == "120 PDUs not drawn"


def test_the_hex_dump_is_capped(tmp_path):
    dump, more = ladder.hexdump(bytes(range(256)) * 4)
    assert more == 1024 - ladder.HEX_LIMIT and len(dump.splitlines()) == ladder.HEX_LIMIT // 16
    assert dump.splitlines()[4].startswith("0040  40 41 42") and dump.splitlines()[4].endswith("@ABCDEFGHIJKLMNO")


def test_layout_points_each_arrow_at_its_receiver(tmp_path):
    pcap = tmp_path / "c.pcap"
    write_pcap(pcap, [_conversation(("client", _rq()), ("server", _ac()))])
    lay = ladder.layout(ladder.read_ladder(pcap))
    pdus = [a for a in lay["rows"] if a["row"].kind == "pdu"]
    assert (pdus[0]["x1"], pdus[0]["x2"]) == (lay["left"], lay["right"])
    assert (pdus[1]["x1"], pdus[1]["x2"]) == (lay["right"], lay["left"])
    ys = [a["y"] for a in lay["rows"]]
    assert ys == sorted(ys) and lay["height"] > ys[-1]


def test_real_run_pcaps_match_the_stream_reader(tiny_run, tiny_document):
    """A real run's captures: one arrow per PDU that read_pdus finds, in its order."""
    for s in tiny_document["scenarios"]:
        if not s["pcap"]:
            continue
        pdus = [p for p in read_pdus(tiny_run / s["pcap"]) if isinstance(p, CapturedPDU)]
        lad = ladder.read_ladder(tiny_run / s["pcap"], s["role"])
        assert lad.error is None and [r.size for r in lad.rows if r.kind == "pdu"] == [len(p.data) for p in pdus]
    echo = ladder.read_ladder(tiny_run / "pcap" / "tiny.echo-store.pcap")
    labels = [f"{r.name} {r.label}" for r in echo.rows if r.kind == "pdu"]
    assert labels[0].startswith("A-ASSOCIATE-RQ") and labels[1].startswith("A-ASSOCIATE-AC ctx 1,3 accepted")
    assert any(t.startswith("P-DATA-TF C-ECHO-RQ id=") for t in labels)
    assert any("C-STORE-RSP" in t and "0x0000 success" in t for t in labels)
    assert labels[-2:] == ["A-RELEASE-RQ ", "A-RELEASE-RP "]


def test_identify_reads_the_implementation_of_each_system_under_test(tiny_run, tiny_document, tmp_path):
    found = ladder.identify(tiny_document, tiny_run)
    assert found["scp"]["implementation_class_uid"] == C.IMPLEMENTATION_CLASS_UID
    assert found["scp"]["implementation_version_name"] == C.IMPLEMENTATION_VERSION_NAME
    assert found["scp"]["scenario"] != "tiny.scu-release"  # from a scenario that tests the SCP
    assert found["scu"]["scenario"] == "tiny.scu-release"  # from the one that tests the SCU
    # from crafted captures: the AC's values for the SCP, the RQ's for the SCU
    (tmp_path / "pcap").mkdir()
    write_pcap(tmp_path / "pcap" / "x.pcap", [_conversation(("client", _rq()), ("server", _ac()))])
    doc = {"scenarios": [{"id": "x", "role": "scu", "pcap": "pcap/x.pcap", "outcome": "passed"},
                         {"id": "y", "role": "scp", "pcap": "pcap/x.pcap", "outcome": "passed"},
                         {"id": "z", "role": "scu", "pcap": "pcap/missing.pcap", "outcome": "failed"}]}
    found = ladder.identify(doc, tmp_path)
    assert found["scp"] == {"implementation_class_uid": "1.2.840.99.7", "implementation_version_name": "PACS_7",
                            "scenario": "x"}
    assert found["scu"] == {"implementation_class_uid": "1.2.3.4", "implementation_version_name": "SCU_1",
                            "scenario": "y"}
    assert ladder.identify({"scenarios": []}, tmp_path) == {"scp": None, "scu": None}
