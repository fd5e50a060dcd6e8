"""Reading a stored Part 10 file for a sub-operation: its transfer syntax and data set bytes (PS3.10 7.1).

Theory of operation
-------------------
A C-MOVE or C-GET sub-operation sends a stored instance as it was received:
the data set's bytes after the File Meta Information, in the transfer syntax
the meta group names.  :func:`read_part10` reads the 128-byte preamble, the
``DICM`` prefix and the group length element (0002,0000), walks the meta
group's elements with ``struct`` (always explicit VR little endian, PS3.10
7.1) to Transfer Syntax UID (0002,0010), and reads the rest of the file; a
meta group that does not open with its group length goes to pydicom's
reader, as before.  The walk costs microseconds where pydicom's meta reader
costs about a hundred.  :func:`offer_for` names the transfer syntaxes to
propose for a stored instance, :func:`transcode` re-encodes one between the
uncompressed transfer syntaxes when the peer accepted another.
"""

from __future__ import annotations

import struct

from dicomconf.ul.dimse_codec import decode_dataset, encode_dataset

_META_HEAD = struct.Struct("<HH2sH")  # group, element, VR, 2-byte length (PS3.5 7.1.2; the meta group is explicit VR LE)
_META_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


def _meta_transfer_syntax(meta: bytes) -> str | None:
    """Transfer Syntax UID (0002,0010) from the File Meta Information's elements (PS3.10 7.1), or None."""
    pos, end = 0, len(meta)
    while pos + 8 <= end:
        group, element, vr, length = _META_HEAD.unpack_from(meta, pos)
        pos += 8
        if vr in _META_LONG_VRS:
            if pos + 4 > end:
                return None
            length = int.from_bytes(meta[pos:pos + 4], "little")
            pos += 4
        if group != 0x0002:
            return None
        if element == 0x0010:
            return meta[pos:pos + length].decode("ascii").rstrip("\0 ") if pos + length <= end else None
        pos += length
    return None


def read_part10(path: str) -> tuple[str, bytes] | None:
    """(transfer syntax, data set bytes) of a DICOM Part 10 file (PS3.10 7.1), or None if unreadable.

    The data set's bytes are taken as stored, after the File Meta Information (whose group
    length, (0002,0000), says where it ends), so that a sub-operation sends what was received.
    The meta group is read with ``struct`` (explicit VR little endian, PS3.10 7.1); a file
    whose meta group does not open with its group length is left to pydicom's reader.
    """
    try:
        with open(path, "rb", buffering=0) as f:  # unbuffered: the rest is one read of its known size
            head = f.read(144)
            if len(head) == 144 and head[128:132] == b"DICM" and head[132:138] == b"\x02\x00\x00\x00UL":
                length = int.from_bytes(head[140:144], "little")
                transfer_syntax = _meta_transfer_syntax(f.read(length))
                if transfer_syntax:
                    return transfer_syntax, f.read()
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    from pydicom.filereader import read_file_meta_info

    try:
        meta = read_file_meta_info(path)
        length = int(meta.FileMetaInformationGroupLength)
        transfer_syntax = str(meta.TransferSyntaxUID)
        with open(path, "rb") as f:
            f.seek(128 + 4 + 12 + length)  # preamble, "DICM", the group length element, the group
            return transfer_syntax, f.read()
    except Exception:  # noqa: BLE001 - a file gone, truncated or without group length: the sub-operation fails
        return None


def offer_for(stored: str) -> tuple[str, ...]:
    """Transfer syntaxes proposed for an instance stored in ``stored``: that one, then the uncompressed ones."""
    uncompressed = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
    return (stored, *[ts for ts in uncompressed if ts != stored])


_UNCOMPRESSED = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"})


def transcode(data: bytes, source: str, target: str) -> bytes | None:
    """``data`` re-encoded from ``source`` to ``target`` transfer syntax, or None when that needs a codec
    (only between the uncompressed ones, PS3.5 A.1-A.3; anything else is the sender's choice to refuse)."""
    if source not in _UNCOMPRESSED or target not in _UNCOMPRESSED:
        return None
    try:
        return encode_dataset(decode_dataset(data, source), target)
    except Exception:
        return None


__all__ = ["offer_for", "read_part10", "transcode"]
