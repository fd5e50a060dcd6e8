"""Where C-STORE data sets go: memory, a directory of Part 10 files, or nowhere.

Theory of operation
-------------------
A backend's :meth:`~Storage.store` takes one received instance (the command's
SOP class and instance UIDs, the data set bytes exactly as received in the
presentation context's transfer syntax) and returns a DIMSE status
(PS3.4 B.2.3): 0000 on success, A700 (out of resources) when the disk or
the memory budget is full, 0110 (processing failure) for any other failure
to keep it.

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
discard backend's spool keeps nothing.

The memory backend's :class:`MemorySpool` holds the fragments of a data set
as they arrive and charges them at once to the backend's budget
(``memory_storage_limit``, shared by every association): the first fragment
that would take the total past it ends the spool (its fragments released, the
rest of the data set only counted) and the store answers A700, out of
resources (PS3.4 B.2.3).  A refusal rather than evicting older instances: a
fake PACS whose contents vanish silently is worse than one that says it is
full.  :meth:`MemoryStorage.remove` and :meth:`MemoryStorage.clear` give the
memory back.

A spool or backend that fails keeps the reason in one line (``cause``: disk
full, quota, permission, memory limit, data set too large) for the server's
log.  Files are created readable by their owner only (0o600) and the
directories the backend creates 0o700: they hold patient data.

:attr:`Storage.blocking` (and :attr:`Spool.blocking`) tells the server to run
the final step on a worker thread.  With ``fsync`` on, it waits for the disk
and goes to a thread so that it stalls only its own association; without it,
writes land in the page cache in well under a millisecond and are done
inline, which saves two thread hand-offs per store (measured in
``docs/benchmarks/scp.md``).

With an index (:class:`dicomconf.services.index.Index`, the ``index``
setting, see :mod:`dicomconf.scp.indexing`) every store is
indexed atomically with its object: the data set is read with pydicom (its
first fragments, kept as they pass, when they hold every attribute before the
pixel data, else the written temporary file; or the held bytes), its rows are inserted in a
transaction, the file is renamed into place (or the bytes kept), and the
transaction commits; any failure rolls back and removes the file.  A data set
the index cannot read or place (no Study or Series Instance UID) is not
stored: C-STORE answers C000, cannot understand (PS3.4 B.2.3), with the
cause logged.  At start :func:`dicomconf.scp.indexing.make_storage` reconciles a directory with its
index (crash recovery) and loads the ``load`` directories.  The files' head, names, directories and
temporary names are :mod:`dicomconf.scp.filewriter`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Sequence

from dicomconf.scp.filewriter import (  # noqa: F401 - file_meta_bytes, file_name re-exported
    IOV_MAX,
    TEMPORARY_PREFIX,
    file_meta_bytes,
    file_name,
    make_private_dirs,
)
from dicomconf.services.index_prefix import PREFIX_BYTES

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700  # PS3.4 B.2.3: Refused, out of resources
STATUS_PROCESSING_FAILURE = 0x0110  # PS3.7 C.4.2: Failure, processing failure
STATUS_CANNOT_UNDERSTAND = 0xC000  # PS3.4 B.2.3: Error, cannot understand (the index cannot read it)
INDEX_FILE = "index.sqlite"  # the embedded index of directory storage, in the storage directory

DEFAULT_MEMORY_LIMIT = 256 << 20  # bytes held by memory storage unless configured otherwise
INSTANCE_COST = 1024  # bytes charged per kept instance beyond its data set: the record, its UIDs, the list slot
FILE_MODE = 0o600  # Part 10 files hold patient data: readable by the owner only
_FULL_DISK = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def format_size(n: int) -> str:
    """``268435456`` -> ``256 MiB``: the largest binary unit that divides ``n``, else bytes."""
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


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
    then answers A700, out of resources.  ``cause`` says in one line why a
    failed spool failed.  This base spool keeps nothing.
    """

    __slots__ = ("limit", "length", "ended", "status", "cause")
    blocking = False

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.length = 0
        self.ended = False
        self.status: int | None = None  # a failure already known
        self.cause: str | None = None  # why, in one line

    def write(self, buf) -> None:
        self.length += len(buf)
        if self.status is None and self.limit is not None and self.length > self.limit:
            self.fail(STATUS_OUT_OF_RESOURCES, f"data set longer than max_dataset_length ({format_size(self.limit)})")

    def fail(self, status: int, cause: str) -> None:
        """End the spool with ``status`` (answered by ``commit``) and release what it kept."""
        self.status = status
        self.cause = cause
        self._abandon()

    def end(self) -> None:
        self.ended = True

    def commit(self) -> int:
        return STATUS_SUCCESS if self.status is None else self.status

    def discard(self) -> None:
        self._abandon()

    def _abandon(self) -> None:
        """Release what was kept of a data set that will not be stored."""


class StorageSetupError(RuntimeError):
    """Storage that cannot start: an index that does not open, a --load that does not fit (one line)."""


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
    index = None  # a dicomconf.services.index.Index the backend keeps up to date, or None

    def store(self, instance: StoredInstance, parts: Sequence | None = None) -> int:
        return STATUS_SUCCESS

    def close(self) -> None:
        """Close the index (the server calls it once it has stopped)."""
        if self.index is not None:
            self.index.close()

    def open(self, instance: StoredInstance, limit: int | None = None) -> Spool | None:
        return Spool(limit)


class DiscardStorage(Storage):
    """Accepts and drops every instance (for load tests of the network path); holds no data set."""


class MemoryStorage(Storage):
    """Keeps every instance in a list, in arrival order, within ``limit`` bytes in all (None: no bound).

    Each kept instance costs its data set plus :data:`INSTANCE_COST`; data
    sets still arriving are charged as their fragments come
    (:class:`MemorySpool`), so the total held never passes ``limit``.  Runs on
    the server's event-loop thread; :meth:`remove` and :meth:`clear` may be
    called from any thread.  An instance taken out of :attr:`instances` by
    other means (``del``, ``pop``) is noticed when the list's length changes.
    """

    kind = "memory"

    def __init__(self, limit: int | None = DEFAULT_MEMORY_LIMIT) -> None:
        self.instances: list[StoredInstance] = []
        self.limit = limit
        self._used = 0  # bytes charged for the kept instances
        self._counted = 0  # len(instances) when _used was last right
        self._reserved = 0  # bytes of data sets still arriving
        self._lock = threading.Lock()
        self.cause: str | None = None  # why the last keep() failed

    @property
    def used(self) -> int:
        """Bytes charged for the instances kept now (data sets plus :data:`INSTANCE_COST` each)."""
        with self._lock:
            self._sync()
            return self._used

    @property
    def reserved(self) -> int:
        """Bytes of data sets still arriving, already charged."""
        return self._reserved

    def _sync(self) -> None:
        """Recount after :attr:`instances` changed length behind our back (caller holds the lock)."""
        if len(self.instances) != self._counted:
            self._used = sum(len(i.data) + INSTANCE_COST for i in self.instances)
            self._counted = len(self.instances)

    def room(self, more: int) -> bool:
        """True when ``more`` bytes fit beside what is kept and arriving."""
        if self.limit is None:
            return True
        if self._used + self._reserved + more <= self.limit:
            return True
        with self._lock:
            self._sync()  # something may have been taken out
            return self._used + self._reserved + more <= self.limit

    def full_cause(self) -> str:
        return f"memory storage limit {format_size(self.limit or 0)} reached"

    def keep(self, instance: StoredInstance, charged: int = 0) -> int:
        """Add ``instance``, moving ``charged`` reserved bytes to the kept ones; A700 past the limit.

        With an index the data set is read and indexed in the same step; C000
        when it cannot be (``cause`` says why), and an instance stored again
        replaces the older copy.
        """
        cost = len(instance.data) + INSTANCE_COST
        self._reserved -= charged
        if not self.room(cost):
            self.cause = self.full_cause()
            return STATUS_OUT_OF_RESOURCES
        if self.index is None:
            self._append(instance, cost)
            return STATUS_SUCCESS
        from dicomconf.services.index import UnindexableError, read_bytes_for_index

        again = self.index.locate(instance.sop_instance_uid) is not None
        try:
            ds = read_bytes_for_index(instance.data, instance.transfer_syntax)
            with self.index.storing(ds, path=None, transfer_syntax=instance.transfer_syntax, size=len(instance.data),
                                    sop_class_uid=instance.sop_class_uid,
                                    sop_instance_uid=instance.sop_instance_uid):
                self._append(instance, cost)
        except UnindexableError as exc:
            self.cause = f"the index cannot take it: {exc}"
            return STATUS_CANNOT_UNDERSTAND
        if again:
            self._drop_older(instance)
        return STATUS_SUCCESS

    def _append(self, instance: StoredInstance, cost: int) -> None:
        with self._lock:
            self._sync()
            self.instances.append(instance)
            self._used += cost
            self._counted = len(self.instances)

    def _drop_older(self, instance: StoredInstance) -> None:
        """Forget earlier copies of an instance stored again (the index holds the later one)."""
        uid = instance.sop_instance_uid
        with self._lock:
            kept = [i for i in self.instances if i.sop_instance_uid != uid or i is instance]
            self.instances[:] = kept
            self._used = sum(len(i.data) + INSTANCE_COST for i in kept)
            self._counted = len(kept)

    def read(self, sop_instance_uid: str) -> bytes | None:
        """The data set bytes of the latest kept instance with this SOP Instance UID, or None."""
        with self._lock:
            for instance in reversed(self.instances):
                if instance.sop_instance_uid == sop_instance_uid:
                    return instance.data
        return None

    def store(self, instance: StoredInstance, parts: Sequence | None = None) -> int:
        if parts is not None:
            instance = dataclasses.replace(instance, data=_joined(parts))
        return self.keep(instance)

    def open(self, instance: StoredInstance, limit: int | None = None) -> Spool | None:
        return MemorySpool(self, instance, limit)

    def remove(self, sop_instance_uid: str) -> int:
        """Forget every kept instance with this SOP Instance UID and give its memory back; how many."""
        if self.index is not None:
            self.index.remove(sop_instance_uid)
        with self._lock:
            self._sync()
            kept = [i for i in self.instances if i.sop_instance_uid != sop_instance_uid]
            gone = len(self.instances) - len(kept)
            self.instances[:] = kept
            self._used = sum(len(i.data) + INSTANCE_COST for i in kept)
            self._counted = len(kept)
        return gone

    def clear(self) -> None:
        """Forget every kept instance."""
        if self.index is not None:
            for instance in list(self.instances):
                self.index.remove(instance.sop_instance_uid)
        with self._lock:
            self.instances.clear()
            self._used = self._counted = 0


def _joined(parts: Sequence) -> bytes:
    return parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)


class MemorySpool(Spool):
    """A data set for :class:`MemoryStorage`, held as it arrives and charged to the storage's budget at once.

    The first fragment that would take the storage past its limit ends the
    spool: the fragments held are released, the rest is only counted, and
    ``commit`` answers A700 (out of resources, PS3.4 B.2.3).
    """

    __slots__ = ("storage", "instance", "parts", "charged")

    def __init__(self, storage: MemoryStorage, instance: StoredInstance, limit: int | None = None) -> None:
        super().__init__(limit)
        self.storage = storage
        self.instance = instance
        self.parts: list = []
        self.charged = 0  # bytes reserved in the storage for this data set

    def write(self, buf) -> None:
        n = len(buf)
        self.length += n
        if self.status is not None:
            return
        if self.limit is not None and self.length > self.limit:
            self.fail(STATUS_OUT_OF_RESOURCES, f"data set longer than max_dataset_length ({format_size(self.limit)})")
            return
        storage = self.storage
        if not storage.room(n + INSTANCE_COST):
            self.fail(STATUS_OUT_OF_RESOURCES, storage.full_cause())
            return
        storage._reserved += n
        self.charged += n
        self.parts.append(buf)

    def commit(self) -> int:
        if self.status is not None:
            return self.status
        data = _joined(self.parts) if self.parts else b""
        self.parts = []
        charged, self.charged = self.charged, 0
        status = self.storage.keep(dataclasses.replace(self.instance, data=data), charged)
        if status != STATUS_SUCCESS:
            self.status, self.cause = status, self.storage.cause
        return status

    def _abandon(self) -> None:
        self.parts = []
        self.storage._reserved -= self.charged
        self.charged = 0


_NOT_ASCII = "a UID of the instance is not ASCII (PS3.5 9.1)"


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
        make_private_dirs(self.directory)

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
            spool.fail(STATUS_PROCESSING_FAILURE, _NOT_ASCII)
            return spool
        return FileSpool(self, self.path_for(instance.sop_instance_uid), head, limit, instance)

    def store(self, instance: StoredInstance, parts: Sequence | None = None) -> int:
        try:
            head = self._head(instance)
        except UnicodeEncodeError:  # a UID that is not ASCII
            return STATUS_PROCESSING_FAILURE
        body = (instance.data,) if parts is None else tuple(parts)
        return self.write_atomic(self.path_for(instance.sop_instance_uid), (head, *body), instance)

    def write_atomic(self, final: str, parts: tuple[bytes, ...], instance: StoredInstance | None = None) -> int:
        """Write ``parts`` to ``final`` through a temporary file in the same directory and ``os.replace``."""
        spool = FileSpool(self, final, parts[0], instance=instance)
        for part in parts[1:]:
            spool.write(part)
        spool.end()
        return spool.commit()

    def temporary_name(self) -> str:
        return os.path.join(self.directory, f"{TEMPORARY_PREFIX}{os.getpid()}-{next(self._counter)}.part")


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

    __slots__ = ("storage", "final", "tmp", "fd", "pending", "pending_bytes", "instance", "prefix", "prefix_bytes",
                 "head_bytes")
    FLUSH_BYTES = 256 * 1024
    FLUSH_PARTS = 512

    def __init__(self, storage: DirectoryStorage, final: str, head: bytes, limit: int | None = None,
                 instance: StoredInstance | None = None) -> None:
        super().__init__(limit)
        self.instance = instance
        self.storage = storage
        self.final = final
        self.tmp: str | None = None
        self.fd = -1
        self.pending: list = [head]
        self.pending_bytes = self.head_bytes = len(head)
        self.prefix: list = []  # the data set's first fragments, for the index (services.index_prefix)
        self.prefix_bytes = 0 if storage.index is not None else PREFIX_BYTES  # nothing kept without an index

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
        if self.prefix_bytes < PREFIX_BYTES:
            self.prefix.append(buf)
            self.prefix_bytes += len(buf)
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
            if self.storage.index is not None:
                return self._commit_indexed()
            os.replace(self.tmp, self.final)  # type: ignore[arg-type]
            self.tmp = None
            return STATUS_SUCCESS
        except OSError as exc:
            self._fail(exc)
            return self.status  # type: ignore[return-value]

    def _commit_indexed(self) -> int:
        """Read the data set's attributes, then BEGIN; index rows; ``os.replace``; COMMIT (any failure: neither).

        The attributes come from the data set's first fragments when they hold
        them all (:func:`~dicomconf.services.index_prefix.dataset_from_prefix`),
        else from the written file.
        """
        from dicomconf.services.index import UnindexableError, read_for_index
        from dicomconf.services.index_prefix import dataset_from_prefix

        tmp = self.tmp
        instance = self.instance
        prefix, self.prefix = self.prefix, []
        ds = None
        if instance is not None and prefix:
            ds = dataset_from_prefix(prefix, instance.transfer_syntax, self.prefix_bytes == self.length)
            ts = instance.transfer_syntax
        if ds is None:
            try:
                ds = read_for_index(tmp)
                meta = getattr(ds, "file_meta", None)
                ts = str(meta.TransferSyntaxUID) if meta is not None and "TransferSyntaxUID" in meta else ""
            except UnindexableError as exc:
                self.fail(STATUS_CANNOT_UNDERSTAND, f"the index cannot take it: {exc}")
                return STATUS_CANNOT_UNDERSTAND
        placed = False
        try:
            with self.storage.index.storing(
                ds, path=self.final, transfer_syntax=ts, size=self.head_bytes + self.length,  # type: ignore[arg-type]
                sop_class_uid=instance.sop_class_uid if instance else None,
                sop_instance_uid=instance.sop_instance_uid if instance else None,
            ):
                os.replace(tmp, self.final)  # type: ignore[arg-type]
                placed = True
                self.tmp = None
        except UnindexableError as exc:
            self.fail(STATUS_CANNOT_UNDERSTAND, f"the index cannot take it: {exc}")
            return STATUS_CANNOT_UNDERSTAND
        except (OSError, sqlite3.Error) as exc:  # the rename or the COMMIT failed: no file without its row
            if placed:
                with contextlib.suppress(OSError):
                    os.unlink(self.final)
            if isinstance(exc, OSError):
                self._fail(exc)
            else:
                self.fail(STATUS_PROCESSING_FAILURE, f"the index failed: {exc}")
            return self.status  # type: ignore[return-value]
        return STATUS_SUCCESS

    def _flush(self) -> None:
        views = [memoryview(p) for p in self.pending]
        self.pending = []
        self.pending_bytes = 0
        try:
            if self.fd < 0:
                self.tmp = self.storage.temporary_name()
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                self.fd = os.open(self.tmp, flags, FILE_MODE)
            while views:
                written = os.writev(self.fd, views[:IOV_MAX])
                while views and written >= len(views[0]):
                    written -= len(views[0])
                    views.pop(0)
                if views and written:
                    views[0] = views[0][written:]
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.fail(STATUS_OUT_OF_RESOURCES if exc.errno in _FULL_DISK else STATUS_PROCESSING_FAILURE, str(exc))

    def _abandon(self) -> None:
        self.pending = []
        self.pending_bytes = 0
        self.prefix = []
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
