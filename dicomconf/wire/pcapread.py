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
connection is DICOM when one of its ports is given (``ports``: ``--port``, or
the ports a dicomconf capture names in its section header comment, see
:func:`capture_hints`), or when its bytes pass the checks of
:mod:`dicomconf.wire.detect`: a stream seen from its SYN must start with an
A-ASSOCIATE-RQ; a stream joined mid-way (no SYN) must hold a PDU confirmed by
its structure and the next header, on any port.  Where bytes are skipped to
reach the first PDU header, a :class:`StreamNote` says how many, from which
stream offset and in which frame.  Each direction is framed with the core's
:class:`~dicomconf.ul.framing.PDUReader`; every whole PDU comes out as a
:class:`CapturedPDU` with the time and the frame number (Wireshark's) of the
segment that completed it.
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
from dicomconf.wire.detect import (
    RESYNC_MAX_PDU,
    association_start,
    find_pdu,
    plausible_header,
    resync_offset,
)

__all__ = ["CaptureError", "CapturedPDU", "Segment", "StreamDecoder", "StreamNote", "capture_hints",
           "plausible_header", "read_frames", "read_pdus", "resync_offset", "tcp_segments"]


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
            if btype in (3, 6) and blen >= 12:  # the same words as a classic pcap's cut record
                raise CaptureError(f"{path}: truncated capture: the last packet is cut short at byte {end}")
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
    frame: int = 0  # 1-based number of the frame in the file, as Wireshark counts


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
    number = 0
    for ts, linktype, frame in frames:
        number += 1
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
        yield Segment(ts, (_addr(src), sport), (_addr(dst), dport), seq, flags, tcp[(off >> 4) * 4 :], number)


_ADDR_CACHE: dict[bytes, str] = {}


def _addr(raw: bytes) -> str:
    text = _ADDR_CACHE.get(raw)
    if text is None:
        text = _ADDR_CACHE[raw] = str(ipaddress.ip_address(raw))
    return text


@dataclass(frozen=True, slots=True)
class CapturedPDU:
    """One whole PDU from a capture.

    ``frame`` is the 1-based number of the frame whose segment completed it, as Wireshark
    numbers frames (every packet of the file counts).
    """

    ts: float
    connection: int  # 1, 2, ... in order of first appearance
    src: tuple[str, int]
    dst: tuple[str, int]
    from_client: bool  # the client opened the connection (normally the association requestor)
    data: bytes
    frame: int = 0


@dataclass(frozen=True, slots=True)
class StreamNote:
    """Something about a stream worth telling the reader (a gap, a resync, bytes left over).

    ``frame`` and ``offset`` say where (a frame number, a byte offset in the direction's
    stream); ``skipped`` is how many bytes a resynchronisation passed over.
    """

    ts: float
    connection: int
    src: tuple[str, int]
    dst: tuple[str, int]
    message: str
    frame: int = 0
    offset: int | None = None
    skipped: int = 0


def looks_like_association_start(buf: bytes | bytearray) -> bool:
    """Does a stream start with an A-ASSOCIATE-RQ header (PS3.8 9.3.2)?"""
    return len(buf) >= 10 and buf[0] == C.A_ASSOCIATE_RQ and plausible_header(buf, 0)


# Bytes one direction of a connection may hold while nothing says it is DICOM (or, on a DICOM
# connection, while looking for the first PDU header) before they are given up.
DETECT_LIMIT = 2 * RESYNC_MAX_PDU + 64 * 1024


@dataclass(slots=True)
class _Half:
    src: tuple[str, int]
    dst: tuple[str, int]
    base: int | None = None  # sequence number of relative offset 0
    next: int = 0  # next relative offset expected
    pending: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # offset -> (payload, frame)
    from_start: bool = False  # a SYN was seen: byte 0 is the stream's first byte
    synced: bool = False
    hold: bytearray = field(default_factory=bytearray)
    hold_at: int = 0  # stream offset of hold[0]
    hold_chunks: list[tuple[int, int, float]] = field(default_factory=list)  # (offset, frame, ts) held
    scan: int = 0  # where find_pdu resumes in hold
    gave_up: bool = False  # detection found no DICOM in this direction
    reader: PDUReader = field(default_factory=PDUReader)
    last_ts: float = 0.0
    last_frame: int = 0


@dataclass(slots=True)
class _Conn:
    number: int
    client: tuple[str, int]
    server: tuple[str, int]
    halves: dict[tuple, _Half]
    dicom: bool | None = None


class StreamDecoder:
    """Feeds segments in capture order; yields PDUs (and notes) as they complete.

    ``ports`` are DICOM whatever their bytes look like (``--port``, a capture's own hints);
    ``default_ports`` (104, 11112) are DICOM when their bytes look like PDUs at all; on any other
    port a connection is DICOM when its bytes pass :mod:`dicomconf.wire.detect`'s strict checks.
    """

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
            if len(payload) > len(half.pending.get(rel, (b"", 0))[0]):
                half.pending[rel] = (payload, seg.frame)
            if len(half.pending) > MAX_HELD_SEGMENTS:
                self._skip_gap(conn, half, out)
            return out
        self._deliver(conn, half, payload, seg.ts, seg.frame, out)
        while half.pending:
            first = min(half.pending)
            if first > half.next:
                break
            chunk, frame = half.pending.pop(first)
            chunk = chunk[half.next - first :]
            if chunk:
                self._deliver(conn, half, chunk, seg.ts, frame, out)
        return out

    def _deliver(self, conn: _Conn, half: _Half, data: bytes, ts: float, frame: int, out: list) -> None:
        half.next += len(data)
        half.last_ts, half.last_frame = ts, frame
        if conn.dicom is False or half.gave_up:
            return
        if conn.dicom:
            self._take(conn, half, data, ts, frame, out)
            return
        self._hold(half, data, frame, ts)
        verdict = self._judge(conn, half, final=False)
        if verdict is None:
            if len(half.hold) > DETECT_LIMIT:
                self._give_up(conn, half)
            return
        if not verdict:
            self._give_up(conn, half)
            return
        conn.dicom = True
        self._release(conn, out, final=False)

    def _release(self, conn: _Conn, out: list, final: bool) -> None:
        """A connection was just found DICOM: frame both directions' held bytes, in frame order."""
        held: list[CapturedPDU | StreamNote] = []
        for h in conn.halves.values():
            h.gave_up = False  # a direction that showed nothing yet is framed from its next bytes
            if h.hold:
                self._sync(conn, h, held, final=final)
        held.sort(key=lambda item: item.frame)
        out += held

    def _give_up(self, conn: _Conn, half: _Half) -> None:
        """This direction shows no DICOM; a connection whose client did not start with an
        A-ASSOCIATE-RQ, or whose two directions both show none, is not DICOM."""
        half.gave_up = True
        half.hold.clear()
        half.pending.clear()
        half.hold_chunks.clear()
        if (half.from_start and half.src == conn.client) or all(h.gave_up for h in conn.halves.values()):
            conn.dicom = False
            for h in conn.halves.values():
                h.hold.clear()
                h.pending.clear()
                h.hold_chunks.clear()

    def _judge(self, conn: _Conn, half: _Half, final: bool) -> bool | None:
        """Is this connection DICOM, from this direction's held bytes?  None: not yet known."""
        hinted = conn.server[1] in self.known or conn.client[1] in self.known
        if half.from_start and half.hold_at == 0 and half.src == conn.client:
            if hinted:
                if len(half.hold) < 10:
                    return False if final else None
                return plausible_header(half.hold, 0)
            return association_start(half.hold, final)
        start, half.scan = find_pdu(half.hold, half.scan, final, strict=not hinted)
        if start is None:
            return False if final else None
        return True

    @staticmethod
    def _hold(half: _Half, data: bytes, frame: int, ts: float) -> None:
        if not half.hold:
            half.hold_at = half.next - len(data)
            half.scan = 0
            half.hold_chunks.clear()
        half.hold_chunks.append((half.next - len(data), frame, ts))
        half.hold += data

    def _take(self, conn: _Conn, half: _Half, data: bytes, ts: float, frame: int, out: list) -> None:
        """Bytes of a DICOM connection: framed, or held until the first PDU header is found."""
        if half.synced:
            self._emit(conn, half, data, ts, frame, out)
            return
        if half.from_start and not half.hold and half.next == len(data):
            half.synced = True  # the stream's first byte: a PDU starts here
            self._emit(conn, half, data, ts, frame, out)
            return
        self._hold(half, data, frame, ts)
        self._sync(conn, half, out, final=False)

    def _sync(self, conn: _Conn, half: _Half, out: list, final: bool) -> None:
        """Find the first PDU header in the held bytes, say what was skipped, frame from there."""
        if half.from_start and half.hold_at == 0:
            start: int | None = 0  # the stream's first byte
        else:
            start, half.scan = find_pdu(half.hold, half.scan, final)
        if start is None:
            if len(half.hold) > DETECT_LIMIT:
                lost = len(half.hold) - 9
                first = half.hold_chunks[0]
                out.append(StreamNote(first[2], conn.number, half.src, half.dst,
                                      f"no PDU header in {lost} byte(s) from stream offset {half.hold_at}, "
                                      f"frame {first[1]}: skipped", first[1], half.hold_at, lost))
                last = half.hold_chunks[-1]
                del half.hold[:lost]
                half.hold_at += lost
                half.scan = 0
                half.hold_chunks[:] = [(half.hold_at, last[1], last[2])]
            return
        held, at, chunks = bytes(half.hold), half.hold_at, list(half.hold_chunks)
        half.hold.clear()
        half.hold_chunks.clear()
        half.synced = True
        if start:
            frame, ts = next((f, t) for off, f, t in reversed(chunks) if off <= at + start)
            out.append(StreamNote(ts, conn.number, half.src, half.dst,
                                  f"resynchronised: skipped {start} byte(s) from stream offset {at}; the first "
                                  f"PDU header is at stream offset {at + start}, frame {frame}",
                                  frame, at + start, start))
        for k, (off, frame, ts) in enumerate(chunks):  # each PDU gets the frame that completed it
            end = chunks[k + 1][0] if k + 1 < len(chunks) else at + len(held)
            lo = max(off - at, start)
            if end - at > lo:
                self._emit(conn, half, held[lo : end - at], ts, frame, out)

    @staticmethod
    def _emit(conn: _Conn, half: _Half, data: bytes, ts: float, frame: int, out: list) -> None:
        from_client = half.src == conn.client
        for pdu in half.reader.feed(data):
            out.append(CapturedPDU(ts, conn.number, half.src, half.dst, from_client, bytes(pdu), frame))

    def _skip_gap(self, conn: _Conn, half: _Half, out: list) -> None:
        """Give up on missing bytes: resume at the next held segment and resynchronise."""
        first = min(half.pending)
        if conn.dicom:
            out.append(StreamNote(half.last_ts, conn.number, half.src, half.dst,
                                  f"{first - half.next} byte(s) missing from the capture at stream offset "
                                  f"{half.next} (after frame {half.last_frame})", half.last_frame, half.next))
            if half.reader.buffered:
                out.append(StreamNote(half.last_ts, conn.number, half.src, half.dst,
                                      f"dropped an incomplete PDU ({half.reader.buffered} byte(s)) at the gap",
                                      half.last_frame, half.next))
        half.next = first
        half.reader = PDUReader()
        half.synced = False
        half.hold.clear()
        half.hold_chunks.clear()
        while half.pending and min(half.pending) <= half.next:
            first = min(half.pending)
            chunk, frame = half.pending.pop(first)
            chunk = chunk[half.next - first :]
            if chunk and conn.dicom is not False:
                self._deliver(conn, half, chunk, half.last_ts, frame, out)

    def finish(self) -> list[CapturedPDU | StreamNote]:
        """Decide undecided connections, flush held segments past unfilled gaps, note incomplete PDUs."""
        out: list[CapturedPDU | StreamNote] = []
        for conn in self.conns.values():
            if conn.dicom is None:
                for half in conn.halves.values():
                    while half.pending and conn.dicom is None and not half.gave_up:
                        self._skip_gap(conn, half, out)
                if conn.dicom is None and any(h.hold and not h.gave_up and self._judge(conn, h, final=True)
                                              for h in conn.halves.values()):
                    conn.dicom = True
                    self._release(conn, out, final=True)
            if not conn.dicom:
                continue
            for half in conn.halves.values():
                while half.pending:
                    self._skip_gap(conn, half, out)
                if not half.synced and half.hold:
                    half.scan = 0
                    self._sync(conn, half, out, final=True)
                if half.reader.buffered or half.hold:
                    out.append(StreamNote(half.last_ts, conn.number, half.src, half.dst,
                                          f"incomplete PDU at the end of the stream "
                                          f"({half.reader.buffered or len(half.hold)} byte(s))",
                                          half.last_frame, half.next - (half.reader.buffered or len(half.hold))))
        return out


def capture_hints(path: str | PathLike) -> tuple[frozenset[int], list[str]]:
    """(DICOM ports, comments) that the capture's first pcapng section header states.

    dicomconf's own captures name their DICOM ports there (:func:`dicomconf.wire.capture.write_pcap`);
    a classic pcap, or a pcapng without such a comment, gives no port.  Never raises: a file that
    cannot be read gives nothing here and is reported by :func:`read_frames`.
    """
    from dicomconf.wire.capture import ports_in_comment

    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != _PCAPNG_SHB:
                return frozenset(), []
            order = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            (blen,) = struct.unpack_from(order + "I", head, 4)
            if not 28 <= blen <= 1 << 20:
                return frozenset(), []
            body = head[8:] + fh.read(blen - 12)
    except OSError:
        return frozenset(), []
    comments: list[str] = []
    pos = 16  # byte-order magic, version, section length
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, pos)
        if code == 0:
            break
        if code == 1:  # opt_comment
            comments.append(bytes(body[pos + 4 : pos + 4 + length]).decode("utf-8", "replace"))
        pos += 4 + ((length + 3) & ~3)
    ports: set[int] = set()
    for text in comments:
        ports |= ports_in_comment(text)
    return frozenset(ports), comments


def read_pdus(path: str | PathLike, ports: Iterable[int] = ()) -> Iterator[CapturedPDU | StreamNote]:
    """Every PDU of every DICOM connection in the capture, in capture order, then the closing notes.

    The ports the capture's own comments name (:func:`capture_hints`) are DICOM too."""
    decoder = StreamDecoder(set(ports) | capture_hints(path)[0])
    for seg in tcp_segments(read_frames(path)):
        yield from decoder.feed(seg)
    yield from decoder.finish()
