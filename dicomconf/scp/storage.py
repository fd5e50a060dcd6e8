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
themselves, never joined).  It does not wait for the whole data set: the
server opens a :class:`FileSpool` when the C-STORE-RQ command arrives and
hands it every data set fragment as its PDU comes in (the core's data sink,
:class:`dicomconf.ul.dimse.MessageAssembler`), so a data set of any size
costs a bounded buffer, not its size in memory, and most of it is written
before its last PDU.  The write is atomic: a temporary file in the same
directory, optional ``fsync``, then ``os.replace`` onto the final name, so an
aborted or failed store never leaves a partial file under a name a reader
would pick up; a spool whose data set never completes is discarded.  The
discard backend's spool keeps nothing; the memory backend holds data sets
(within the server's bound, ``max_dataset_length``).

:attr:`Storage.blocking` (and :attr:`Spool.blocking`) tells the server to run
the final step on a worker thread.  With ``fsync`` on, it waits for the disk
and goes to a thread so that it stalls only its own association; without it,
writes land in the page cache in well under a millisecond and are done
inline, which saves two thread hand-offs per store (measured in
``docs/benchmarks/scp.md``).
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
_IOV_MAX = 1024  # POSIX IOV_MAX on Linux: the most buffers one writev takes


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """One instance received by C-STORE."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    data: bytes
    calling_ae_title: str = ""
    path: str | None = None


class Spool:
    """Where one data set goes while it arrives (a ``MessageAssembler`` data sink, see dicomconf.ul.dimse).

    ``write(buffer)`` per fragment and ``end()`` after the last never raise:
    a failure is kept and ``commit()`` answers it as a status.  ``commit()``
    makes the instance stored (and may block when ``blocking``);
    ``discard()`` undoes everything of an instance that will not be stored.
    More than ``limit`` bytes (None: no limit) are not kept: ``commit()``
    then answers A700, out of resources.  This base spool keeps nothing.
    """

    __slots__ = ("limit", "length", "ended", "status")
    blocking = False

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.length = 0
        self.ended = False
        self.status: int | None = None  # a failure already known

    def write(self, buf) -> None:
        self.length += len(buf)
        if self.status is None and self.limit is not None and self.length > self.limit:
            self.status = STATUS_OUT_OF_RESOURCES
            self._abandon()

    def end(self) -> None:
        self.ended = True

    def commit(self) -> int:
        return STATUS_SUCCESS if self.status is None else self.status

    def discard(self) -> None:
        self._abandon()

    def _abandon(self) -> None:
        """Release what was kept of a data set that will not be stored."""


class Storage:
    """Base backend: keeps nothing.

    ``store(instance, parts)``: when ``parts`` (a sequence of buffers) is
    given it is the data set, in the pieces it arrived in, and
    ``instance.data`` is not read; a backend that keeps the bytes joins them.
    ``open(instance, limit)`` gives a :class:`Spool` that takes the data set
    as it arrives instead, or None when this backend holds data sets in
    memory (then ``store`` is called with the held fragments).
    """

    kind = "discard"
    blocking = False

    def store(self, instance: StoredInstance, parts: Sequence | None = None) -> int:
        return STATUS_SUCCESS

    def open(self, instance: StoredInstance, limit: int | None = None) -> Spool | None:
        return Spool(limit)


class DiscardStorage(Storage):
    """Accepts and drops every instance (for load tests of the network path); holds no data set."""


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

    def open(self, instance: StoredInstance, limit: int | None = None) -> Spool | None:
        return None  # held by the assembler, within the server's bound


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

    def _head(self, instance: StoredInstance) -> bytes:
        """Preamble and File Meta Information of ``instance``; ``UnicodeEncodeError`` for a UID not in ASCII."""
        return file_meta_bytes(
            instance.sop_class_uid,
            instance.sop_instance_uid,
            instance.transfer_syntax,
            self.implementation_class_uid,
            self.implementation_version_name,
            instance.calling_ae_title,
        )

    def open(self, instance: StoredInstance, limit: int | None = None) -> Spool:
        """A :class:`FileSpool` that writes ``instance``'s Part 10 file as its data set arrives."""
        try:
            head = self._head(instance)
        except UnicodeEncodeError:  # a UID that is not ASCII
            spool = Spool(limit)
            spool.status = STATUS_PROCESSING_FAILURE
            return spool
        return FileSpool(self, self.path_for(instance.sop_instance_uid), head, limit)

    def store(self, instance: StoredInstance, parts: Sequence | None = None) -> int:
        try:
            head = self._head(instance)
        except UnicodeEncodeError:  # a UID that is not ASCII
            return STATUS_PROCESSING_FAILURE
        body = (instance.data,) if parts is None else tuple(parts)
        return self.write_atomic(self.path_for(instance.sop_instance_uid), (head, *body))

    def write_atomic(self, final: str, parts: tuple[bytes, ...]) -> int:
        """Write ``parts`` to ``final`` through a temporary file in the same directory and ``os.replace``."""
        spool = FileSpool(self, final, parts[0])
        for part in parts[1:]:
            spool.write(part)
        spool.end()
        return spool.commit()

    def temporary_name(self) -> str:
        return os.path.join(self.directory, f".incoming-{os.getpid()}-{next(self._counter)}.part")


class FileSpool(Spool):
    """One Part 10 file written as its data set arrives: a temporary file, then ``os.replace`` (atomic).

    Fragments are gathered and written with one ``writev`` per
    :data:`FLUSH_BYTES` (or :data:`FLUSH_PARTS` pieces, under the system's
    IOV_MAX), so that most of a large data set is on its way to the page
    cache before its last PDU arrives and memory stays bounded by that much.
    The temporary file is created on the first write; a file system error
    ends the spool at once (the temporary file removed) and ``commit``
    answers A700 for a full disk, 0110 for any other failure.
    """

    __slots__ = ("storage", "final", "tmp", "fd", "pending", "pending_bytes")
    FLUSH_BYTES = 256 * 1024
    FLUSH_PARTS = 512

    def __init__(self, storage: DirectoryStorage, final: str, head: bytes, limit: int | None = None) -> None:
        super().__init__(limit)
        self.storage = storage
        self.final = final
        self.tmp: str | None = None
        self.fd = -1
        self.pending: list = [head]
        self.pending_bytes = len(head)

    @property
    def blocking(self) -> bool:  # type: ignore[override]
        return self.storage.fsync

    def write(self, buf) -> None:
        Spool.write(self, buf)  # counts, and abandons the file past the limit
        if self.status is not None:
            return
        pending = self.pending
        pending.append(buf)
        self.pending_bytes += len(buf)
        if self.pending_bytes >= self.FLUSH_BYTES or len(pending) >= self.FLUSH_PARTS:
            self._flush()

    def commit(self) -> int:
        if self.status is None:
            self._flush()
        if self.status is not None:
            return self.status
        try:
            if self.storage.fsync:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            os.replace(self.tmp, self.final)  # type: ignore[arg-type]
            self.tmp = None
            return STATUS_SUCCESS
        except OSError as exc:
            self._fail(exc)
            return self.status  # type: ignore[return-value]

    def _flush(self) -> None:
        views = [memoryview(p) for p in self.pending]
        self.pending = []
        self.pending_bytes = 0
        try:
            if self.fd < 0:
                self.tmp = self.storage.temporary_name()
                self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
            while views:
                written = os.writev(self.fd, views[:_IOV_MAX])
                while views and written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                if views and written:
                    views[0] = views[0][written:]
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.status = STATUS_OUT_OF_RESOURCES if exc.errno in _FULL_DISK else STATUS_PROCESSING_FAILURE
        self._abandon()

    def _abandon(self) -> None:
        self.pending = []
        self.pending_bytes = 0
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


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
