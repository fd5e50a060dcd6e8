"""The files of directory storage: their head, their names, their directories, the temporary ones.

Theory of operation
-------------------
:class:`~dicomconf.scp.storage.DirectoryStorage` writes each instance as a
Part 10 file; this module holds what is true of those files whoever writes
them.  :func:`file_meta_bytes` encodes the preamble and File Meta
Information (PS3.10 7.1) directly, :func:`file_name` names the file after the
SOP Instance UID (a digest when the UID is not a safe file name), and
:func:`make_private_dirs` creates directories readable by their owner only
(they hold patient data).  The temporary files are named ``.incoming-<pid>-<n>.part`` in the storage
directory (:func:`is_temporary`); at start the index's reconcile deletes those
of processes that no longer run (:func:`is_live_temporary`).
"""

from __future__ import annotations

import hashlib
import os
import re
import struct

from pydicom.datadict import dictionary_VR, tag_for_keyword

IOV_MAX = 1024  # POSIX IOV_MAX on Linux: the most buffers one writev takes
DIRECTORY_MODE = 0o700
TEMPORARY_PREFIX = ".incoming-"
_PREAMBLE = bytes(128) + b"DICM"
_SAFE_NAME = re.compile(r"^[0-9][0-9.]{0,63}$")


def _meta_tag(keyword: str) -> tuple[int, int, bytes]:
    tag = tag_for_keyword(keyword)
    assert tag is not None and tag >> 16 == 0x0002, keyword
    return 0x0002, tag & 0xFFFF, dictionary_VR(tag).encode("ascii")


_META_LENGTH = _meta_tag("FileMetaInformationGroupLength")
_META_VERSION = _meta_tag("FileMetaInformationVersion")
_META_SOP_CLASS = _meta_tag("MediaStorageSOPClassUID")
_META_SOP_INSTANCE = _meta_tag("MediaStorageSOPInstanceUID")
_META_TRANSFER_SYNTAX = _meta_tag("TransferSyntaxUID")
_META_IMPLEMENTATION_UID = _meta_tag("ImplementationClassUID")
_META_IMPLEMENTATION_VERSION = _meta_tag("ImplementationVersionName")
_META_SOURCE_AE = _meta_tag("SourceApplicationEntityTitle")
_SHORT = struct.Struct("<HH2sH")  # explicit VR little endian, 2-byte length (PS3.5 7.1.2)
_LONG = struct.Struct("<HH2s2xI")  # OB and the like: 2 reserved bytes, 4-byte length


def _meta_element(tag: tuple[int, int, bytes], value: bytes, pad: bytes) -> bytes:
    if len(value) & 1:
        value += pad
    if tag[2] == b"OB":
        return _LONG.pack(tag[0], tag[1], tag[2], len(value)) + value
    return _SHORT.pack(tag[0], tag[1], tag[2], len(value)) + value


def file_meta_bytes(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    implementation_class_uid: str,
    implementation_version_name: str,
    source_ae_title: str = "",
) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group, explicit VR little endian (PS3.10 7.1).

    Encoded directly (the tests compare it with pydicom's ``write_file_meta_info``).
    Raises ``UnicodeEncodeError`` for a UID that is not ASCII.
    """
    parts = [
        _meta_element(_META_VERSION, b"\x00\x01", b"\x00"),
        _meta_element(_META_SOP_CLASS, sop_class_uid.encode("ascii"), b"\x00"),
        _meta_element(_META_SOP_INSTANCE, sop_instance_uid.encode("ascii"), b"\x00"),
        _meta_element(_META_TRANSFER_SYNTAX, transfer_syntax.encode("ascii"), b"\x00"),
        _meta_element(_META_IMPLEMENTATION_UID, implementation_class_uid.encode("ascii"), b"\x00"),
    ]
    if implementation_version_name:
        parts.append(_meta_element(_META_IMPLEMENTATION_VERSION, implementation_version_name.encode("ascii"), b" "))
    if source_ae_title:
        parts.append(_meta_element(_META_SOURCE_AE, source_ae_title.encode("ascii", "replace"), b" "))
    body = b"".join(parts)
    return _PREAMBLE + _SHORT.pack(_META_LENGTH[0], _META_LENGTH[1], _META_LENGTH[2], 4) + struct.pack("<I", len(body)) + body


def file_name(sop_instance_uid: str) -> str:
    """The file name for an instance: its UID when that is a safe name, else a digest."""
    if _SAFE_NAME.match(sop_instance_uid) and ".." not in sop_instance_uid:
        return sop_instance_uid + ".dcm"
    return hashlib.sha256(sop_instance_uid.encode("utf-8", "replace")).hexdigest() + ".dcm"


def make_private_dirs(path: str) -> None:
    """Create ``path`` and any missing parents with mode 0o700 (existing ones are left as they are)."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIRECTORY_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise


def is_temporary(name: str) -> bool:
    """A temporary file of :meth:`DirectoryStorage.temporary_name` (left by a crash when found at start)."""
    return name.startswith(TEMPORARY_PREFIX) and name.endswith(".part")


def is_live_temporary(name: str) -> bool:
    """A temporary file of another process that is running now (reconcile leaves it)."""
    try:
        pid = int(name[len(TEMPORARY_PREFIX):].split("-", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


__all__ = ["IOV_MAX", "TEMPORARY_PREFIX", "file_meta_bytes", "file_name", "is_live_temporary", "is_temporary",
           "make_private_dirs"]
