"""Where C-STORE data sets go: memory, a directory of Part 10 files, or nowhere.

Theory of operation
-------------------
A backend's :meth:`~Storage.store` takes one received instance (the command's
SOP class and instance UIDs, the data set bytes exactly as received in the
presentation context's transfer syntax) and returns a DIMSE status
(PS3.4 B.2.3): 0000 on success, A700 (out of resources) when the disk is
full, 0110 (processing failure) for any other failure to keep it.

The directory backend writes a DICOM Part 10 file (PS3.10 7.1): 128-byte
preamble, ``DICM``, the File Meta Information group in explicit VR little
endian, then the data set bytes untouched (from the received fragments
themselves, never joined).  The write is atomic: a temporary
file in the same directory written with ``writev``, optional ``fsync``,
then ``os.replace`` onto the final name, so an aborted or failed store never
leaves a partial file under a name a reader would pick up.

:attr:`Storage.blocking` tells the server to run the write on a worker
thread.  With ``fsync`` on, a write waits for the disk and goes to a thread
so that it stalls only its own association; without it, a write lands in the
page cache in well under a millisecond and is done inline, which saves two
thread hand-offs per store (measured in ``docs/benchmarks/scp.md``).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import itertools
import re
import struct
from dataclasses import dataclass
from typing import Sequence

from pydicom.datadict import dictionary_VR, tag_for_keyword

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700  # PS3.4 B.2.3: Refused, out of resources
STATUS_PROCESSING_FAILURE = 0x0110  # PS3.7 C.4.2: Failure, processing failure

_PREAMBLE = bytes(128) + b"DICM"
_SAFE_NAME = re.compile(r"^[0-9][0-9.]{0,63}$")
_FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """One instance received by C-STORE."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    data: bytes
    calling_ae_title: str = ""
    path: str | None = None


class Storage:
    """Base backend: keeps nothing.

    ``store(instance, parts)``: when ``parts`` (a sequence of buffers) is
    given it is the data set, in the pieces it arrived in, and
    ``instance.data`` is not read; a backend that keeps the bytes joins them.
    """

    kind = "discard"
    blocking = False

    def store(self, instance: StoredInstance, parts: Sequence | None = None) -> int:
        return STATUS_SUCCESS


class DiscardStorage(Storage):
    """Accepts and drops every instance (for load tests of the network path)."""


class MemoryStorage(Storage):
    """Keeps every instance in a list, in arrival order."""

    kind = "memory"

    def __init__(self) -> None:
        self.instances: list[StoredInstance] = []

    def store(self, instance: StoredInstance, parts: Sequence | None = None) -> int:
        if parts is not None:
            instance = dataclasses.replace(instance, data=parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts))
        self.instances.append(instance)
        return STATUS_SUCCESS


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


class DirectoryStorage(Storage):
    """Writes each instance as a Part 10 file ``<SOP Instance UID>.dcm``, atomically."""

    kind = "directory"

    def __init__(
        self,
        directory: str,
        *,
        fsync: bool = False,
        implementation_class_uid: str,
        implementation_version_name: str = "",
    ) -> None:
        self.directory = os.path.abspath(directory)
        self.fsync = fsync
        self.blocking = fsync
        self.implementation_class_uid = implementation_class_uid
        self.implementation_version_name = implementation_version_name
        self._counter = itertools.count()
        os.makedirs(self.directory, exist_ok=True)

    def path_for(self, sop_instance_uid: str) -> str:
        return os.path.join(self.directory, file_name(sop_instance_uid))

    def store(self, instance: StoredInstance, parts: Sequence | None = None) -> int:
        try:
            head = file_meta_bytes(
                instance.sop_class_uid,
                instance.sop_instance_uid,
                instance.transfer_syntax,
                self.implementation_class_uid,
                self.implementation_version_name,
                instance.calling_ae_title,
            )
        except UnicodeEncodeError:  # a UID that is not ASCII
            return STATUS_PROCESSING_FAILURE
        body = (instance.data,) if parts is None else tuple(parts)
        return self.write_atomic(self.path_for(instance.sop_instance_uid), (head, *body))

    def write_atomic(self, final: str, parts: tuple[bytes, ...]) -> int:
        """Write ``parts`` to ``final`` through a temporary file in the same directory and ``os.replace``."""
        tmp = os.path.join(self.directory, f".incoming-{os.getpid()}-{next(self._counter)}.part")
        fd = -1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
            views = [memoryview(p) for p in parts]
            while views:
                written = os.writev(fd, views)
                while views and written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                if views and written:
                    views[0] = views[0][written:]
            if self.fsync:
                os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, final)
            tmp = None
            return STATUS_SUCCESS
        except OSError as exc:
            return STATUS_OUT_OF_RESOURCES if exc.errno in _FULL_DISK else STATUS_PROCESSING_FAILURE
        finally:
            if fd >= 0:
                os.close(fd)
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def make_storage(config) -> Storage:
    """The backend an :class:`~dicomconf.scp.config.SCPConfig` asks for."""
    if config.storage == "memory":
        return MemoryStorage()
    if config.storage == "directory":
        return DirectoryStorage(
            config.storage_dir,
            fsync=config.fsync,
            implementation_class_uid=config.implementation_class_uid,
            implementation_version_name=config.implementation_version_name,
        )
    return DiscardStorage()
