"""The captures' TCP/IP checksums (RFC 1071) agree with scapy's own, on every length and edge case."""

from __future__ import annotations

import random

from scapy.utils import checksum as scapy_checksum

from dicomconf.wire.capture import _checksum


def test_the_checksum_is_scapys_on_random_and_edge_data():
    rng = random.Random(7)
    cases = [b"", b"\x00", b"\x00\x00", b"\xff", b"\xff\xff", b"\xff\xff" * 9, b"\xff\xfe\x00\x01", b"\x00\x01\xff\xfe",
             b"\x80\x00" * 2]
    cases += [rng.randbytes(n) for n in (1, 2, 3, 17, 1459, 1460, 65535, 65536, 1 << 20)]
    for data in cases:
        assert _checksum(data) == scapy_checksum(data) & 0xFFFF, data[:8]
