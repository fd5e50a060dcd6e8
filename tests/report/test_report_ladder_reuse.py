"""The ladder reads each capture once and makes each distinct PDU's row once (dicomconf.report.ladder)."""

from __future__ import annotations

from dicomconf.report import ladder
from dicomconf.ul import dimse
from dicomconf.ul.pdu import AReleaseRP, AReleaseRQ
from dicomconf.wire.capture import Conversation, write_pcap

CLIENT, SERVER = ("127.0.0.1", 40002), ("127.0.0.1", 11112)


def _pcap(path, *sends):
    conv = Conversation(CLIENT, SERVER)
    conv.opened(1000.0)
    for i, (side, data) in enumerate(sends, 1):
        (conv.client_sent if side == "client" else conv.server_sent)(data, 1000.0 + i * 0.01)
    conv.closed("client", 1000.0 + (len(sends) + 1) * 0.01)
    write_pcap(path, [conv])
    return path


def test_a_capture_is_read_once(tmp_path, monkeypatch):
    pcap = _pcap(tmp_path / "c.pcap", ("client", AReleaseRQ().encode()), ("server", AReleaseRP().encode()))
    opened = []
    real = ladder.read_frames
    monkeypatch.setattr(ladder, "read_frames", lambda path: opened.append(path) or real(path))
    lad = ladder.read_ladder(pcap)
    assert len(opened) == 1
    assert [r.name for r in lad.rows if r.kind == "pdu"] == ["A-RELEASE-RQ", "A-RELEASE-RP"]
    assert [r.name for r in lad.rows if r.kind == "tcp"] == ["connect", "FIN", "FIN"]


def test_repeated_pdus_are_decoded_once_and_each_row_keeps_its_own_place(tmp_path, monkeypatch):
    rq = dimse.fragment(dimse.c_echo_rq(5), 16384)[0]
    rsp = dimse.fragment(dimse.c_echo_rsp(5, 0x0000), 16384)[0]
    pcap = _pcap(tmp_path / "r.pcap", *[("client", rq), ("server", rsp)] * 4)
    ladder._cached_row.cache_clear()
    decoded = []
    real = ladder.decode_pdu
    monkeypatch.setattr(ladder, "decode_pdu", lambda data: decoded.append(bytes(data)) or real(data))
    lad = ladder.read_ladder(pcap)
    rows = [r for r in lad.rows if r.kind == "pdu"]
    assert len(rows) == 8 and len(decoded) == 2  # two distinct PDUs
    assert [r.number for r in rows] == list(range(1, 9))
    assert [r.from_dicomconf for r in rows] == [True, False] * 4
    assert len({id(r) for r in rows}) == 8  # rows are copies: their place is their own
    times = [r.t for r in rows]
    assert times == sorted(times) and len(set(times)) == 8
    first, third = rows[0], rows[2]
    assert (first.label, first.fields, first.hex, first.title) == (third.label, third.fields, third.hex, third.title)
    assert "C-ECHO-RQ" in first.label and "C-ECHO-RSP" in rows[1].label


def test_a_large_pdu_is_not_remembered(tmp_path):
    big = b"\x07\x00" + (ladder._CACHED_BYTES + 4).to_bytes(4, "big") + bytes(ladder._CACHED_BYTES + 4)
    ladder._cached_row.cache_clear()
    row = ladder.pdu_row(big)
    assert row.bad and row.size == len(big)
    assert ladder._cached_row.cache_info().currsize == 0
    small = ladder.pdu_row(AReleaseRQ().encode())
    assert small.name == "A-RELEASE-RQ" and ladder._cached_row.cache_info().currsize == 1


def test_a_capture_cut_short_keeps_what_came_before_the_cut(tmp_path):
    pcap = _pcap(tmp_path / "cut.pcap", ("client", AReleaseRQ().encode()), ("server", AReleaseRP().encode()))
    pcap.write_bytes(pcap.read_bytes()[:-30])
    lad = ladder.read_ladder(pcap)
    assert lad.error.startswith("cut.pcap: truncated capture")
    assert [r.name for r in lad.rows if r.kind == "pdu"][:1] == ["A-RELEASE-RQ"]
