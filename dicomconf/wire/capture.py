"""Recording conversations and writing them as capture files (pcapng).

Theory of operation
-------------------
A :class:`Conversation` is one TCP connection seen from above the socket:
the harness tells it when the connection opened, what each side sent (with
the time), and how it ended (FIN exchange or RST).  Calls may come from any
thread; each call appends one event under a lock.

:func:`write_pcap` turns conversations into link-layer frames a person can
open in Wireshark, written as pcapng whose section header comment names the
capture and its DICOM ports (so ``dicomconf decode`` needs no ``--port``): Ethernet, IPv4 (or IPv6 when an address contains ``:``),
TCP with sequence and acknowledgement numbers that follow the bytes sent,
the three-way handshake (synthesized at the first event if ``opened`` was
never called), payloads cut into segments of at most
:data:`MAX_SEGMENT_PAYLOAD` bytes, and the closing FIN/ACK exchange or RST.
``closed(by)`` is a half-close: the other side may still send, and its own
FIN follows when it closes too, or at the end of the recording.
Frames of several conversations are merged by time.  Headers and pcapng
blocks are packed here with ``struct`` (checksums included); no scapy.

A conversation keeps at most ``max_bytes`` bytes of payload (default
:data:`MAX_CAPTURE_BYTES`, 256 MiB; a caller passes its own, or sets the
module constant before conversations are made).  Past it, pcap's snap length
rule applies: a data event keeps its original length but only the bytes that
still fit (none, once the bound is reached), and consecutive such events of
one side become one.  Their frames are written with the captured length
shorter than the original length (pcapng's captured < original packet length;
Wireshark says "packet size limited during capture"); IP lengths and TCP sequence numbers
count every byte sent, so the stream stays consistent, and the TCP checksum
of a cut frame covers only what was kept.  ``left_out`` counts the bytes not
kept.
"""

from __future__ import annotations

import ipaddress
import re
import struct
import threading
import time
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Iterable

# 65535 (largest IPv4 total length) - 20 (IPv4 header) - 20 (TCP header).
MAX_SEGMENT_PAYLOAD = 65495
MAX_CAPTURE_BYTES = 256 * 1024 * 1024  # payload bytes one conversation keeps; the rest is counted only

_CLIENT_MAC = bytes.fromhex("020000000001")
_SERVER_MAC = bytes.fromhex("020000000002")
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_TCP_PROTO = 6

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_SIDES = ("client", "server")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened on the connection.

    ``data`` is what was kept of the bytes sent; ``length`` is how many were
    sent (more than ``len(data)`` past the conversation's bound).
    """

    ts: float
    kind: str  # "open" | "data" | "close" | "reset"
    side: str  # "client" | "server" ("open": client)
    data: bytes = b""
    length: int = 0

    @property
    def size(self) -> int:
        """The bytes sent, kept or not."""
        return max(self.length, len(self.data))


class Conversation:
    """One TCP connection, both directions, thread-safe."""

    def __init__(self, client: tuple[str, int], server: tuple[str, int], max_bytes: int | None = None) -> None:
        self.client = (str(client[0]), int(client[1]))
        self.server = (str(server[0]), int(server[1]))
        self.max_bytes = MAX_CAPTURE_BYTES if max_bytes is None else int(max_bytes)
        self.tls = False  # the payload is TLS records (DICOM over TLS, PS3.15 B.1), not DICOM PDUs
        self.kept = 0  # payload bytes kept
        self.left_out = 0  # payload bytes sent past the bound, counted but not kept
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def _add(self, kind: str, side: str, data: bytes, ts: float | None) -> None:
        if side not in _SIDES:
            raise ValueError(f"side must be 'client' or 'server', not {side!r}")
        ts = time.time() if ts is None else float(ts)
        with self._lock:
            if kind != "data":
                self._events.append(Event(ts, kind, side))
                return
            keep = bytes(data[: max(self.max_bytes - self.kept, 0)])
            self.kept += len(keep)
            self.left_out += len(data) - len(keep)
            last = self._events[-1] if self._events else None
            if (not keep and last is not None and last.kind == "data" and last.side == side
                    and last.size > len(last.data)):  # past the bound: one side's run becomes one event
                self._events[-1] = Event(last.ts, "data", side, last.data, last.size + len(data))
            else:
                self._events.append(Event(ts, kind, side, keep, len(data)))

    def opened(self, ts: float | None = None) -> None:
        """The client connected: a SYN, SYN/ACK, ACK handshake."""
        self._add("open", "client", b"", ts)

    def client_sent(self, data: bytes, ts: float | None = None) -> None:
        if data:
            self._add("data", "client", data, ts)

    def server_sent(self, data: bytes, ts: float | None = None) -> None:
        if data:
            self._add("data", "server", data, ts)

    def closed(self, by: str, ts: float | None = None) -> None:
        """``by`` closed the connection: its FIN, then (now or when the peer closes too) the peer's FIN and the last ACK."""
        self._add("close", by, b"", ts)

    def reset(self, by: str, ts: float | None = None) -> None:
        """``by`` reset the connection: RST."""
        self._add("reset", by, b"", ts)

    @property
    def events(self) -> tuple[Event, ...]:
        with self._lock:
            return tuple(self._events)

    def sent(self, side: str) -> bytes:
        """Every byte ``side`` sent, in order (those kept: see ``max_bytes``)."""
        return b"".join(e.data for e in self.events if e.kind == "data" and e.side == side)

    def frames(self) -> list[tuple[float, bytes]]:
        """The conversation as (timestamp, Ethernet frame) pairs (cut frames as they were kept)."""
        return [(ts, frame) for ts, frame, _length in self.records()]

    def records(self) -> list[tuple[float, bytes, int]]:
        """The conversation as (timestamp, Ethernet frame, original frame length) triples: the
        frame is shorter than its original length where the payload was past the bound."""
        return _Synth(self).run()


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): the one's complement of the one's-complement sum of the
    16-bit big-endian words.  Since 2**16 = 1 (mod 0xFFFF), that sum is the bytes read as one big
    integer, mod 0xFFFF (computed in C), except that a non-zero sum that folds to 0 is 0xFFFF."""
    if len(data) % 2:
        data += b"\0"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0 and data.count(0) != len(data):
        total = 0xFFFF
    return ~total & 0xFFFF


class _Synth:
    """Turns a conversation's events into frames with consistent seq/ack numbers."""

    def __init__(self, conv: Conversation) -> None:
        self.conv = conv
        c_ip = ipaddress.ip_address(conv.client[0])
        s_ip = ipaddress.ip_address(conv.server[0])
        if c_ip.version != s_ip.version:
            raise ValueError("client and server addresses must be of the same IP version")
        self.v6 = c_ip.version == 6
        self.ip = {"client": c_ip.packed, "server": s_ip.packed}
        self.port = {"client": conv.client[1], "server": conv.server[1]}
        self.mac = {"client": _CLIENT_MAC, "server": _SERVER_MAC}
        # Initial sequence numbers: fixed, distinct, arbitrary.
        self.seq = {"client": 0x1000_0000, "server": 0x5000_0000}
        self.ip_id = {"client": 1, "server": 1}
        self.out: list[tuple[float, bytes, int]] = []

    @staticmethod
    def other(side: str) -> str:
        return "server" if side == "client" else "client"

    def frame(self, ts: float, side: str, flags: int, payload: bytes = b"", length: int | None = None) -> None:
        """One frame from ``side``; ``length`` is the payload's original length when only
        ``payload``, its first bytes, was kept."""
        length = len(payload) if length is None else length
        cut = length - len(payload)
        peer = self.other(side)
        ack = self.seq[peer] if flags & ACK else 0
        tcp = struct.pack(
            "!HHIIBBHHH", self.port[side], self.port[peer], self.seq[side] & 0xFFFFFFFF,
            ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0,
        ) + payload
        src, dst = self.ip[side], self.ip[peer]
        if self.v6:
            pseudo = src + dst + struct.pack("!IxxxB", len(tcp) + cut, _TCP_PROTO)
        else:
            pseudo = src + dst + struct.pack("!xBH", _TCP_PROTO, len(tcp) + cut)
        csum = _checksum(pseudo + tcp[:16] + tcp[18:])
        tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
        if self.v6:
            ip = struct.pack("!IHBB", 6 << 28, len(tcp) + cut, _TCP_PROTO, 64) + src + dst
            ethertype = _ETHERTYPE_IPV6
        else:
            hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + cut, self.ip_id[side] & 0xFFFF,
                              0x4000, 64, _TCP_PROTO, 0, src, dst)
            ip = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
            ethertype = _ETHERTYPE_IPV4
        self.ip_id[side] += 1
        eth = self.mac[peer] + self.mac[side] + struct.pack("!H", ethertype)
        frame = eth + ip + tcp
        self.out.append((ts, frame, len(frame) + cut))
        self.seq[side] += length + (1 if flags & (SYN | FIN) else 0)

    def handshake(self, ts: float) -> None:
        self.frame(ts, "client", SYN)
        self.frame(ts, "server", SYN | ACK)
        self.frame(ts, "client", ACK)

    def run(self) -> list[tuple[float, bytes]]:
        events = sorted(self.conv.events, key=lambda e: e.ts)  # stable: equal times keep call order
        opened = False
        fin = {"client": False, "server": False}
        last_ts = events[-1].ts if events else 0.0
        for ev in events:
            if not opened:
                self.handshake(ev.ts)
                opened = True
                if ev.kind == "open":
                    continue
            if ev.kind == "data" and not fin[ev.side]:  # nothing is sent after one's own FIN
                view, size = memoryview(ev.data), ev.size
                for pos in range(0, size, MAX_SEGMENT_PAYLOAD):
                    self.frame(ev.ts, ev.side, PSH | ACK, bytes(view[pos : pos + MAX_SEGMENT_PAYLOAD]),
                               min(MAX_SEGMENT_PAYLOAD, size - pos))
            elif ev.kind == "close" and not fin[ev.side]:
                # A half-close: the peer may still send until it closes too.
                self.frame(ev.ts, ev.side, FIN | ACK)
                fin[ev.side] = True
                if fin[self.other(ev.side)]:
                    self.frame(ev.ts, self.other(ev.side), ACK)
            elif ev.kind == "reset":
                self.frame(ev.ts, ev.side, RST | ACK)
                return self.out
        for side in _SIDES:  # one side closed, the other never said: it closes too
            if fin[side] and not fin[self.other(side)]:
                self.frame(last_ts, self.other(side), FIN | ACK)
                self.frame(last_ts, side, ACK)
        return self.out


# The words of the section header comment that name a capture's DICOM ports; decode reads them back.
_PORTS_RE = re.compile(r"DICOM on TCP ports? ([0-9]+(?:, [0-9]+)*)")
_PCAPNG_BOM = 0x1A2B3C4D
_OPT_COMMENT, _SHB_USERAPPL = 1, 4
SNAPLEN = 262144


def capture_comment(name: str, ports: Iterable[int], tls_ports: Iterable[int] = ()) -> str:
    """The section header comment of a capture: its name (a scenario's ID), its DICOM ports and
    its DICOM-over-TLS ports (whose payload is TLS records: not read as DICOM by ``decode``)."""
    parts = []
    for words, group in (("DICOM on TCP", ports), ("DICOM over TLS on TCP", tls_ports)):
        listed = sorted(set(group))
        if listed:
            parts.append(f"{words} {'port' if len(listed) == 1 else 'ports'} {', '.join(map(str, listed))}")
    return f"dicomconf capture {name}: {'; '.join(parts) or 'no connection'}"


def ports_in_comment(text: str) -> set[int]:
    """The DICOM ports a :func:`capture_comment` names (none in any other text)."""
    match = _PORTS_RE.search(text)
    if not match:
        return set()
    return {int(p) for p in match.group(1).split(", ") if 0 < int(p) < 65536}


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(btype: int, body: bytes) -> bytes:
    """A pcapng block: type, total length, body (padded to 32 bits), total length again."""
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


def write_pcap(path: str | PathLike, conversations: Iterable[Conversation], name: str | None = None,
               note: str | None = None) -> None:
    """Write ``conversations`` to ``path``, merged by time, as pcapng (Ethernet link type).

    The file is pcapng whatever its name (Wireshark, tshark and libpcap read by content; the
    harness keeps naming it ``.pcap``).  The section header's comment names the capture (``name``,
    by default the file name without its extension: a scenario's ID) and the TCP ports that carry
    DICOM (each conversation's server port), which ``dicomconf decode`` takes as ``--port``; the
    first frame of each conversation carries a comment naming its two ends.  Timestamps are in
    microseconds; a frame cut at the capture bound keeps its original length (the Enhanced Packet Block's two lengths).
    A conversation whose ``tls`` is set is named "DICOM over TLS" instead (its payload is TLS
    records, decrypted with the capture's key log).  ``note`` is appended to the section comment
    (a decrypted copy says there that it is not the wire).
    """
    convs = list(conversations)
    frames: list[tuple[float, bytes, int, str | None]] = []
    for number, conv in enumerate(convs, 1):
        records = conv.records()
        for k, (ts, frame, wirelen) in enumerate(records):
            comment = None
            if k == 0:
                carried = "DICOM over TLS" if conv.tls else "DICOM"
                comment = (f"dicomconf connection {number}: {_endpoint(conv.client)} -> {_endpoint(conv.server)}, "
                           f"{carried} on TCP port {conv.server[1]}")
            frames.append((ts, frame, wirelen, comment))
    frames.sort(key=lambda f: f[0])
    label = Path(path).stem if name is None else name
    shb = struct.pack("<IHHq", _PCAPNG_BOM, 1, 0, -1)
    section = capture_comment(label, (c.server[1] for c in convs if not c.tls), (c.server[1] for c in convs if c.tls))
    shb += _option(_OPT_COMMENT, (section + (f" ({note})" if note else "")).encode())
    shb += _option(_SHB_USERAPPL, b"dicomconf") + _option(0, b"")
    idb = struct.pack("<HHI", 1, 0, SNAPLEN)
    epb_head = struct.Struct("<IIIII")
    with open(path, "wb") as fh:
        out = [_block(0x0A0D0D0A, shb), _block(1, idb)]
        for ts, frame, wirelen, comment in frames:
            stamp = round(ts * 1_000_000)
            body = epb_head.pack(0, stamp >> 32, stamp & 0xFFFFFFFF, len(frame), wirelen) + frame
            if comment is not None:
                body += b"\0" * (-len(body) % 4) + _option(_OPT_COMMENT, comment.encode()) + _option(0, b"")
            out.append(_block(6, body))
            if len(out) >= 256:
                fh.write(b"".join(out))
                out.clear()
        fh.write(b"".join(out))


def key_log_path(pcap: str | PathLike) -> Path:
    """Where the key log of the capture ``pcap`` goes: ``<id>.keys`` beside ``<id>.pcap``."""
    path = Path(pcap)
    return path.with_name(capture_id(path) + ".keys")


def decrypted_path(pcap: str | PathLike) -> Path:
    """Where the decrypted copy of the capture ``pcap`` goes: ``<id>.decrypted.pcap`` beside it."""
    path = Path(pcap)
    return path.with_name(capture_id(path) + ".decrypted.pcap")


def decrypted_note(pcap: str | PathLike) -> str:
    """The words a decrypted copy's section comment adds (see :func:`write_pcap`'s ``note``)."""
    path = Path(pcap)
    return (f"decrypted copy, not the wire: the TLS connections hold the DICOM stream as dicomconf "
            f"sent and received it inside TLS; the bytes on the wire are in {path.name}, "
            f"decrypted with the key log {key_log_path(path).name}")


def write_key_log(path: str | PathLike, lines: Iterable[str]) -> None:
    """Write NSS key log ``lines`` (``LABEL <client random> <secret>``, the ``SSLKEYLOGFILE``
    format Wireshark and tshark read as ``tls.keylog_file``) to ``path``."""
    with open(path, "w", encoding="ascii") as fh:
        fh.write("# TLS session secrets of a dicomconf capture (NSS key log format)\n")
        fh.writelines(line + "\n" for line in lines)


def capture_id(path: str | PathLike) -> str:
    """The capture's name: its file name without ``.pcap`` (a scenario's ID)."""
    path = Path(path)
    return path.name.removesuffix(".pcap")


def _endpoint(ep: tuple[str, int]) -> str:
    host, port = ep
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
