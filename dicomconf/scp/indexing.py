"""The index of the reference SCP's storage: where it lives, crash recovery and ``--load`` at start.

Theory of operation
-------------------
:func:`attach_index` runs once, when the server builds its storage
(:func:`make_storage`, here, which builds the backend the configuration asks
for).  It opens the
:class:`~dicomconf.services.index.Index` where the ``index`` setting says
(:func:`index_location`), reconciles a storage directory with it (the crash
windows of ``docs/scp.md``: a temporary file is deleted unless its process is
alive, a final file without a row is indexed, a row without its file is
removed), then loads each ``load`` directory: in place for directory storage
(the rows point at the files, nothing is copied), into memory for memory
storage (within ``memory_storage_limit``: past it the start fails with one
line).  From then on the storage backends keep the index current on every
store (:mod:`dicomconf.scp.storage`).
"""

from __future__ import annotations

import os

from dicomconf.scp.storage import (
    INDEX_FILE,
    INSTANCE_COST,
    DirectoryStorage,
    DiscardStorage,
    MemoryStorage,
    Storage,
    StorageSetupError,
    StoredInstance,
)
from dicomconf.scp.filewriter import is_live_temporary, is_temporary, make_private_dirs
from dicomconf.services.index import (
    Index,
    IndexFileError,
    dataset_offset,
    log_load,
    scan,
)


def index_location(storage: Storage, setting: str | None) -> str | None:
    """Where the index of ``storage`` lives: ``index.sqlite`` in a storage directory, ``:memory:`` for
    memory storage (setting ``default``), a path or ``:memory:`` as set, or None (``none``; discard storage)."""
    if setting in (None, "none") or storage.kind == "discard":
        return None
    if setting == "default":
        return os.path.join(storage.directory, INDEX_FILE) if isinstance(storage, DirectoryStorage) else ":memory:"
    return setting


def attach_index(storage: Storage, setting: str | None, load: tuple[str, ...] = (), reconcile: bool = True) -> None:
    """Open the index, reconcile a storage directory with it, then load the ``load`` directories.

    Files of a ``load`` directory are indexed in place for directory storage
    (not copied: their rows point at them), and their data sets read into
    memory storage (within its limit: past it, :class:`StorageSetupError`).
    ``reconcile`` False: only open it (a worker process, whose parent reconciled and loaded).
    """
    location = index_location(storage, setting)
    if location is None:
        if load:
            raise StorageSetupError("--load needs an index: with discard storage or index: none nothing is kept")
        return
    try:
        if location != ":memory:":
            make_private_dirs(os.path.dirname(os.path.abspath(location)))
        index = Index(location, fsync=getattr(storage, "fsync", False))
    except (IndexFileError, OSError) as exc:
        raise StorageSetupError(f"index {location}: {exc}") from None
    storage.index = index
    if isinstance(storage, DirectoryStorage) and reconcile:
        index.reconcile(storage.directory, temporary=is_temporary, keep=is_live_temporary)
    for directory in load:
        if not os.path.isdir(directory):
            raise StorageSetupError(f"--load {directory}: not a directory")
        stats: dict[str, int] = {"loaded": 0, "skipped": 0, "duplicates": 0, "unindexable": 0}
        for found in scan(directory, stats):
            if isinstance(storage, MemoryStorage):
                _load_into_memory(storage, found, stats)
            else:
                index.load_one(found, found.path, stats)
        log_load(directory, stats)


def _load_into_memory(storage: MemoryStorage, found, stats: dict[str, int]) -> None:
    """Read a Part 10 file's data set into memory storage and index it (``--load`` with memory storage)."""
    offset = dataset_offset(found.path)
    if offset is None:
        stats["skipped"] += 1
        return
    with open(found.path, "rb") as f:
        f.seek(offset)
        data = f.read()
    meta = found.dataset.file_meta
    sop_class = str(meta.get("MediaStorageSOPClassUID", "") or found.dataset.get("SOPClassUID", ""))
    instance = StoredInstance(sop_class, str(found.dataset.SOPInstanceUID), found.transfer_syntax, data)
    cost = len(data) + INSTANCE_COST
    if not storage.room(cost):
        raise StorageSetupError(f"--load {found.path}: {storage.full_cause()}: raise memory_storage_limit "
                                f"(--memory-limit) or use directory storage")
    if storage.index.locate(instance.sop_instance_uid) is not None:
        storage.remove(instance.sop_instance_uid)
        stats["duplicates"] += 1
    storage.index.load_one(found, None, stats, then=lambda: storage._append(instance, cost))


def make_storage(config, startup: bool = True) -> Storage:
    """The backend an :class:`~dicomconf.scp.config.SCPConfig` asks for, with its index (:func:`attach_index`).

    ``startup`` False (a worker process, dicomconf.scp.workers): the index is opened, neither
    reconciled nor loaded (the parent did both once, before starting the workers).
    """
    if config.storage == "memory":
        storage: Storage = MemoryStorage(config.memory_storage_limit)
    elif config.storage == "directory":
        storage = DirectoryStorage(
            config.storage_dir,
            fsync=config.fsync,
            implementation_class_uid=config.implementation_class_uid,
            implementation_version_name=config.implementation_version_name,
        )
    else:
        return DiscardStorage()
    load = tuple(getattr(config, "load", ()) or ()) if startup else ()
    attach_index(storage, getattr(config, "index", "none"), load, reconcile=startup)
    return storage
