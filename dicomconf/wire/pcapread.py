"""Reading pcap / pcapng captures: frames -> TCP segments -> byte streams -> PDUs.

Theory of operation
-------------------
:func:`read_frames` is a raw reader (``struct`` only, no scapy: a capture of
10,000 PDUs must decode faster than tshark) for classic pcap (micro- and
nanosecond, either byte order) and pcapng (section, interface, enhanced and
simple packet blocks).  :func:`tcp_segments` peels Ethernet (VLAN tags too),
Linux cooked (SLL, SLL2), BSD loopback and raw IP down to TCP.

:class:`StreamDecoder` rebuilds each connection's two byte streams from the
segments: sequence numbers relative to the first seen, out-of-order segments
held until the gap fills, retransmitted and overlapping bytes dropped, a gap
that never fills skipped (the framing resynchronises after it).  A
connection is DICOM when one of its ports is given (``ports``) or, on any
port, when its first bytes are an A-ASSOCIATE-RQ header.  A capture that
starts mid-association (no SYN) is framed from the first plausible PDU
header.  Each direction is framed with the core's
:class:`~dicomconf.ul.framing.PDUReader`; every whole PDU comes out as a
:class:`CapturedPDU` with the time of the segment that completed it.
"""

from __future__ import annotations

import ipaddress
import mmap
import os
import struct
from dataclasses import dataclass, field
from os import PathLike
from typing import Iterable, Iterator

from dicomconf.ul import constants as C
from dicomconf.ul.framing import PDUReader


class CaptureError(Exception):
    """The capture cannot be read (missing, not a capture, truncated)."""


_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


def read_frames(path: str | PathLike) -> Iterator[tuple[float, int, bytes]]:
    """Yield (timestamp, link type, frame) for every packet; CaptureError when unreadable or cut short."""
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise CaptureError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            # Mapped, not read: a capture of gigabytes costs address space, not memory.
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size >= 4 else fh.read()
        except (OSError, ValueError) as exc:
            raise CaptureError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
        if len(data) < 4:
            raise CaptureError(f"{path} is not a pcap or pcapng capture (only {len(data)} byte(s))")
        magic = bytes(data[:4])
        try:
            if magic in _PCAP_MAGIC:
                yield from _pcap(data, path, *_PCAP_MAGIC[magic])
            elif magic == _PCAPNG_SHB:
                yield from _pcapng(data, path)
            else:
                raise CaptureError(f"{path} is not a pcap or pcapng capture (magic {magic.hex()})")
        finally:
            if isinstance(data, mmap.mmap):
                data.close()


def _pcap(data: bytes, path, order: str, unit: float) -> Iterator[tuple[float, int, bytes]]:
    if len(data) < 24:
        raise CaptureError(f"{path}: truncated pcap file header")
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(order + "IIII")
    pos, end = 24, len(data)
    while pos < end:
        if end - pos < 16:
            raise CaptureError(f"{path}: truncated capture: record header cut short at byte {pos}")
        sec, frac, incl, _orig = rec.unpack_from(data, pos)
        pos += 16
        if pos + incl > end:
            raise CaptureError(f"{path}: truncated capture: the last packet is cut short at byte {end}")
        yield sec + frac * unit, linktype, data[pos : pos + incl]
        pos += incl


def _pcapng(data: bytes, path) -> Iterator[tuple[float, int, bytes]]:
    pos, end = 0, len(data)
    order = "<"
    interfaces: list[tuple[int, float]] = []
    while pos < end:
        if end - pos < 12:
            raise CaptureError(f"{path}: truncated capture: block header cut short at byte {pos}")
        if data[pos : pos + 4] == _PCAPNG_SHB:
            bom = data[pos + 8 : pos + 12]
            order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
            interfaces = []
        btype, blen = struct.unpack_from(order + "II", data, pos)
        if blen < 12 or pos + blen > end:
            raise CaptureError(f"{path}: truncated capture: block at byte {pos} is cut short")
        body = data[pos + 8 : pos + blen - 4]
        if btype == 1:  # interface description block
            linktype = struct.unpack_from(order + "H", body, 0)[0]
            interfaces.append((linktype, _if_tsresol(body[8:], order)))
        elif btype == 6:  # enhanced packet block
            iface, hi, lo, incl = struct.unpack_from(order + "IIII", body, 0)
            linktype, unit = interfaces[iface] if iface < len(interfaces) else (1, 1e-6)
            yield ((hi << 32) | lo) * unit, linktype, body[20 : 20 + incl]
        elif btype == 3:  # simple packet block
            linktype = interfaces[0][0] if interfaces else 1
            (orig,) = struct.unpack_from(order + "I", body, 0)
            yield 0.0, linktype, body[4 : 4 + min(orig, len(body) - 4)]
        pos += blen


def _if_tsresol(options: bytes, order: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = options[pos + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        pos += 4 + ((length + 3) & ~3)
    return 1e-6


@dataclass(frozen=True, slots=True)
class Segment:
    ts: float
    src: tuple[str, int]
    dst: tuple[str, int]
    seq: int
    flags: int
    payload: bytes


_SYN, _FIN, _RST = 0x02, 0x01, 0x04
# Out-of-order segments held per direction before a gap is declared lost.
MAX_HELD_SEGMENTS = 512


def _ip_payload(frame: bytes, linktype: int) -> tuple[int, bytes] | None:
    """(IP version, IP packet) from a link-layer frame, or None."""
    if linktype == 1:  # Ethernet
        ethertype, pos = struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 14 else 0, 14
        while ethertype in (0x8100, 0x88A8) and len(frame) >= pos + 4:
            ethertype, pos = struct.unpack_from("!H", frame, pos + 2)[0], pos + 4
    elif linktype == 113:  # Linux cooked v1
        ethertype, pos = (struct.unpack_from("!H", frame, 14)[0] if len(frame) >= 16 else 0), 16
    elif linktype == 276:  # Linux cooked v2
        ethertype, pos = (struct.unpack_from("!H", frame, 0)[0] if len(frame) >= 20 else 0), 20
    elif linktype in (0, 108):  # BSD loopback: 4-byte address family
        return (6 if len(frame) > 4 and frame[4] >> 4 == 6 else 4, frame[4:]) if len(frame) > 4 else None
    elif linktype in (101, 12, 14, 228, 229):  # raw IP
        return (frame[0] >> 4, frame) if frame else None
    else:
        return None
    if ethertype == 0x0800:
        return 4, frame[pos:]
    if ethertype == 0x86DD:
        return 6, frame[pos:]
    return None


def tcp_segments(frames: Iterable[tuple[float, int, bytes]]) -> Iterator[Segment]:
    """TCP segments of the IPv4 / IPv6 packets among ``frames`` (others skipped)."""
    unpack_tcp = struct.Struct("!HHIIBB").unpack_from
    for ts, linktype, frame in frames:
        ip = _ip_payload(frame, linktype)
        if ip is None:
            continue
        version, pkt = ip
        if version == 4 and len(pkt) >= 20:
            ihl = (pkt[0] & 0x0F) * 4
            total = struct.unpack_from("!H", pkt, 2)[0]
            if pkt[9] != 6 or struct.unpack_from("!H", pkt, 6)[0] & 0x3FFF:  # not TCP, or a fragment
                continue
            src, dst = pkt[12:16], pkt[16:20]
            tcp = pkt[ihl : total if total >= ihl else len(pkt)]
        elif version == 6 and len(pkt) >= 40:
            if pkt[6] != 6:  # extension headers are not followed
                continue
            src, dst = pkt[8:24], pkt[24:40]
            tcp = pkt[40 : 40 + struct.unpack_from("!H", pkt, 4)[0]]
        else:
            continue
        if len(tcp) < 20:
            continue
        sport, dport, seq, _ack, off, flags = unpack_tcp(tcp)
        yield Segment(ts, (_addr(src), sport), (_addr(dst), dport), seq, flags, tcp[(off >> 4) * 4 :])


_ADDR_CACHE: dict[bytes, str] = {}


def _addr(raw: bytes) -> str:
    text = _ADDR_CACHE.get(raw)
    if text is None:
        text = _ADDR_CACHE[raw] = str(ipaddress.ip_address(raw))
    return text


@dataclass(frozen=True, slots=True)
class CapturedPDU:
    """One whole PDU from a capture."""

    ts: float
    connection: int  # 1, 2, ... in order of first appearance
    src: tuple[str, int]
    dst: tuple[str, int]
    from_client: bool  # the client opened the connection (normally the association requestor)
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamNote:
    """Something about a stream worth telling the reader (a gap, a resync, bytes left over)."""

    ts: float
    connection: int
    src: tuple[str, int]
    dst: tuple[str, int]
    message: str


def plausible_header(buf: bytes | bytearray | memoryview, pos: int) -> bool:
    """Could a PDU start at ``pos``?  Used to resynchronise a stream joined mid-way (PS3.8 9.3.1)."""
    if len(buf) - pos < 10:
        return False
    t, reserved = buf[pos], buf[pos + 1]
    (length,) = struct.unpack_from(">I", buf, pos + 2)
    if t not in C.PDU_NAMES or reserved:
        return False
    if t in (C.A_ASSOCIATE_RQ, C.A_ASSOCIATE_AC):
        return 68 <= length < (1 << 20) and bool(buf[pos + 7] & 1)
    if t == C.P_DATA_TF:
        (pdv,) = struct.unpack_from(">I", buf, pos + 6)
        return 2 <= pdv <= length - 4 and (len(buf) - pos < 12 or (buf[pos + 10] & 1 and buf[pos + 11] < 4))
    if t == C.A_ASSOCIATE_RJ:
        return length == 4 and buf[pos + 7] in C.RJ_RESULT_NAMES and buf[pos + 8] in C.RJ_SOURCE_NAMES
    if t == C.A_ABORT:
        return length == 4 and buf[pos + 8] in (C.ABORT_SOURCE_USER, C.ABORT_SOURCE_PROVIDER)
    return length == 4


# A PDU header found while resynchronising must announce at most this much.
RESYNC_MAX_PDU = 1 << 20


def _tiles(buf: bytes | bytearray, pos: int, end: int, header: int, length_at: int, fmt: str) -> bool:
    """Do the items (PDVs) from ``pos`` tile ``[pos, end)`` exactly?"""
    size = struct.calcsize(fmt)
    while pos < end:
        if end - pos < header:
            return False
        pos += length_at + size + struct.unpack_from(fmt, buf, pos + length_at)[0]
    return pos == end


def resync_offset(buf: bytes | bytearray, final: bool = False) -> int | None:
    """The first offset where a PDU starts, confirmed by its own structure and the next header; None: wait.

    ``final``: the stream has ended, so a candidate with no next header to confirm it is taken;
    so is one at offset 0 (where a segment began) whose own structure checks out.
    """
    for i in range(max(0, len(buf) - 9)):
        if not plausible_header(buf, i):
            continue
        total = C.PDU_HEADER_LENGTH + struct.unpack_from(">I", buf, i + 2)[0]
        if total > RESYNC_MAX_PDU:
            continue
        if i + total > len(buf):
            return None  # wait for the whole candidate
        if buf[i] == C.P_DATA_TF and not _tiles(buf, i + 6, i + total, 6, 0, ">I"):
            continue
        if buf[i] in (C.A_ASSOCIATE_RQ, C.A_ASSOCIATE_AC) and not _tiles(buf, i + 74, i + total, 4, 2, ">H"):
            continue
        if i + total + 10 > len(buf):
            if final or i == 0:  # the stream (a segment) starts right here: trust the structure checks
                return i
            return None  # wait for the next header to confirm this one
        if not plausible_header(buf, i + total):
            continue
        return i
    return None


def looks_like_association_start(buf: bytes | bytearray) -> bool:
    """Does a stream start with an A-ASSOCIATE-RQ header (PS3.8 9.3.2)?"""
    return len(buf) >= 10 and buf[0] == C.A_ASSOCIATE_RQ and plausible_header(buf, 0)


@dataclass(slots=True)
class _Half:
    src: tuple[str, int]
    dst: tuple[str, int]
    base: int | None = None  # sequence number of relative offset 0
    next: int = 0  # next relative offset expected
    pending: dict[int, bytes] = field(default_factory=dict)
    from_start: bool = False  # a SYN was seen: byte 0 is the stream's first byte
    synced: bool = False
    hold: bytearray = field(default_factory=bytearray)
    reader: PDUReader = field(default_factory=PDUReader)
    last_ts: float = 0.0


@dataclass(slots=True)
class _Conn:
    number: int
    client: tuple[str, int]
    server: tuple[str, int]
    halves: dict[tuple, _Half]
    dicom: bool | None = None


class StreamDecoder:
    """Feeds segments in capture order; yields PDUs (and notes) as they complete."""

    def __init__(self, ports: Iterable[int] = (), default_ports: Iterable[int] = (104, 11112)) -> None:
        self.forced = frozenset(ports)
        self.known = self.forced | frozenset(default_ports)
        self.conns: dict[frozenset, _Conn] = {}

    def _conn(self, seg: Segment) -> _Conn:
        key = frozenset((seg.src, seg.dst))
        conn = self.conns.get(key)
        if conn is None:
            if seg.flags & _SYN and not seg.flags & 0x10:
                client, server = seg.src, seg.dst
            elif seg.flags & _SYN:
                client, server = seg.dst, seg.src
            elif seg.dst[1] in self.known and seg.src[1] not in self.known:
                client, server = seg.src, seg.dst
            elif seg.src[1] in self.known and seg.dst[1] not in self.known:
                client, server = seg.dst, seg.src
            else:
                client, server = seg.src, seg.dst
            conn = _Conn(len(self.conns) + 1, client, server,
                         {(client, server): _Half(client, server), (server, client): _Half(server, client)})
            if self.forced and (client[1] in self.forced or server[1] in self.forced):
                conn.dicom = True
            self.conns[key] = conn
        return conn

    def feed(self, seg: Segment) -> list[CapturedPDU | StreamNote]:
        conn = self._conn(seg)
        half = conn.halves[(seg.src, seg.dst)]
        out: list[CapturedPDU | StreamNote] = []
        if conn.dicom is False:
            return out
        if seg.flags & _SYN:
            half.base = (seg.seq + 1) & 0xFFFFFFFF
            half.from_start = True
            half.next = 0
            return out
        if not seg.payload:
            return out
        if half.base is None:
            half.base = seg.seq
        rel = (seg.seq - half.base) & 0xFFFFFFFF
        if rel >= 0x80000000:  # before the start we know: a retransmission of old bytes
            return out
        payload = seg.payload
        if rel < half.next:
            payload = payload[half.next - rel :]
            rel = half.next
            if not payload:
                return out
        if rel > half.next:
            if len(payload) > len(half.pending.get(rel, b"")):
                half.pending[rel] = payload
            if len(half.pending) > MAX_HELD_SEGMENTS:
                self._skip_gap(conn, half, out)
            return out
        self._deliver(conn, half, payload, seg.ts, out)
        while half.pending:
            first = min(half.pending)
            if first > half.next:
                break
            chunk = half.pending.pop(first)[half.next - first :]
            if chunk:
                self._deliver(conn, half, chunk, seg.ts, out)
        return out

    def _deliver(self, conn: _Conn, half: _Half, data: bytes, ts: float, out: list) -> None:
        half.next += len(data)
        half.last_ts = ts
        if conn.dicom is None:
            half.hold += data
            if len(half.hold) < 10:
                return
            conn.dicom = looks_like_association_start(half.hold) or (
                conn.server[1] in self.known and plausible_header(half.hold, 0)
            )
            if not conn.dicom:
                for h in conn.halves.values():
                    h.hold.clear()
                    h.pending.clear()
                return
            for h in conn.halves.values():
                if h is not half and h.hold:
                    held, h.hold = bytes(h.hold), bytearray()
                    self._frame(conn, h, held, ts, out)
            data, half.hold = bytes(half.hold), bytearray()
        self._frame(conn, half, data, ts, out)

    def _frame(self, conn: _Conn, half: _Half, data: bytes, ts: float, out: list) -> None:
        if not half.synced:
            if half.from_start and not half.hold and half.next == len(data):
                half.synced = True  # the stream's first byte: a PDU starts here
            else:
                half.hold += data
                start = resync_offset(half.hold)
                if start is None:
                    return
                if start:
                    out.append(StreamNote(ts, conn.number, half.src, half.dst,
                                          f"skipped {start} byte(s) to the first PDU header"))
                data, half.hold = bytes(half.hold[start:]), bytearray()
                half.synced = True
        from_client = half.src == conn.client
        for pdu in half.reader.feed(data):
            out.append(CapturedPDU(ts, conn.number, half.src, half.dst, from_client, bytes(pdu)))

    def _skip_gap(self, conn: _Conn, half: _Half, out: list) -> None:
        """Give up on missing bytes: resume at the next held segment and resynchronise."""
        first = min(half.pending)
        out.append(StreamNote(half.last_ts, conn.number, half.src, half.dst,
                              f"{first - half.next} byte(s) missing from the capture at stream offset {half.next}"))
        if half.reader.buffered:
            out.append(StreamNote(half.last_ts, conn.number, half.src, half.dst,
                                  f"dropped an incomplete PDU ({half.reader.buffered} byte(s)) at the gap"))
        half.next = first
        half.reader = PDUReader()
        half.synced = False
        half.hold.clear()
        while half.pending and min(half.pending) <= half.next:
            first = min(half.pending)
            chunk = half.pending.pop(first)[half.next - first :]
            if chunk and conn.dicom:
                self._deliver(conn, half, chunk, half.last_ts, out)

    def finish(self) -> list[CapturedPDU | StreamNote]:
        """Flush held segments past unfilled gaps; note incomplete PDUs at the end of a stream."""
        out: list[CapturedPDU | StreamNote] = []
        for conn in self.conns.values():
            if not conn.dicom:
                continue
            for half in conn.halves.values():
                while half.pending:
                    self._skip_gap(conn, half, out)
                if not half.synced and half.hold:
                    start = resync_offset(half.hold, final=True)
                    if start is not None:
                        rest, half.hold = bytes(half.hold[start:]), bytearray()
                        half.synced = True
                        self._frame(conn, half, rest, half.last_ts, out)
                if half.reader.buffered or half.hold:
                    out.append(StreamNote(half.last_ts, conn.number, half.src, half.dst,
                                          f"incomplete PDU at the end of the stream "
                                          f"({half.reader.buffered or len(half.hold)} byte(s))"))
        return out


def read_pdus(path: str | PathLike, ports: Iterable[int] = ()) -> Iterator[CapturedPDU | StreamNote]:
    """Every PDU of every DICOM connection in the capture, in capture order, then the closing notes."""
    decoder = StreamDecoder(ports)
    for seg in tcp_segments(read_frames(path)):
        yield from decoder.feed(seg)
    yield from decoder.finish()
