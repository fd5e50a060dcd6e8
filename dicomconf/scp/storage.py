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
endian, then the data set bytes untouched.  The write is atomic: a temporary
file in the same directory, optional ``fsync``, then ``os.replace`` onto the
final name, so an aborted or failed store never leaves a partial file under
a name a reader would pick up.  :attr:`Storage.blocking` tells the server to
run the write on a worker thread so that a slow disk never stalls the event
loop.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass

from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

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
    """Base backend: keeps nothing."""

    kind = "discard"
    blocking = False

    def store(self, instance: StoredInstance) -> int:
        return STATUS_SUCCESS


class DiscardStorage(Storage):
    """Accepts and drops every instance (for load tests of the network path)."""


class MemoryStorage(Storage):
    """Keeps every instance in a list, in arrival order."""

    kind = "memory"

    def __init__(self) -> None:
        self.instances: list[StoredInstance] = []

    def store(self, instance: StoredInstance) -> int:
        self.instances.append(instance)
        return STATUS_SUCCESS


def file_meta_bytes(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax: str,
    implementation_class_uid: str,
    implementation_version_name: str,
    source_ae_title: str = "",
) -> bytes:
    """Preamble, ``DICM`` and the File Meta Information group (PS3.10 7.1)."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = implementation_class_uid
    if implementation_version_name:
        meta.ImplementationVersionName = implementation_version_name
    if source_ae_title:
        meta.SourceApplicationEntityTitle = source_ae_title
    buf = DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = False
    write_file_meta_info(buf, meta, enforce_standard=True)
    return _PREAMBLE + buf.getvalue()


def file_name(sop_instance_uid: str) -> str:
    """The file name for an instance: its UID when that is a safe name, else a digest."""
    if _SAFE_NAME.match(sop_instance_uid) and ".." not in sop_instance_uid:
        return sop_instance_uid + ".dcm"
    return hashlib.sha256(sop_instance_uid.encode("utf-8", "replace")).hexdigest() + ".dcm"


class DirectoryStorage(Storage):
    """Writes each instance as a Part 10 file ``<SOP Instance UID>.dcm``, atomically."""

    kind = "directory"
    blocking = True

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
        self.implementation_class_uid = implementation_class_uid
        self.implementation_version_name = implementation_version_name
        os.makedirs(self.directory, exist_ok=True)

    def path_for(self, sop_instance_uid: str) -> str:
        return os.path.join(self.directory, file_name(sop_instance_uid))

    def store(self, instance: StoredInstance) -> int:
        try:
            head = file_meta_bytes(
                instance.sop_class_uid,
                instance.sop_instance_uid,
                instance.transfer_syntax,
                self.implementation_class_uid,
                self.implementation_version_name,
                instance.calling_ae_title,
            )
        except Exception:  # a UID pydicom refuses to encode
            return STATUS_PROCESSING_FAILURE
        return self.write_atomic(self.path_for(instance.sop_instance_uid), (head, instance.data))

    def write_atomic(self, final: str, parts: tuple[bytes, ...]) -> int:
        """Write ``parts`` to ``final`` through a temporary file and ``os.replace``."""
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".incoming-", suffix=".part", dir=self.directory)
            with os.fdopen(fd, "wb", buffering=0) as f:
                for part in parts:
                    view = memoryview(part)
                    while view:
                        view = view[f.write(view) :]
                if self.fsync:
                    os.fsync(f.fileno())
            os.replace(tmp, final)
            tmp = None
            return STATUS_SUCCESS
        except OSError as exc:
            return STATUS_OUT_OF_RESOURCES if exc.errno in _FULL_DISK else STATUS_PROCESSING_FAILURE
        finally:
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
