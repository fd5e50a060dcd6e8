"""The SQLite index of stored instances: patient, study, series, instance (PS3.4 C.6.1.1, C.6.2.1).

Theory of operation
-------------------
One table per level of the Query/Retrieve information models.  The keys the
standard lists for each level (PS3.4 C.6.1.1.2-C.6.1.1.5 for Patient Root,
C.6.2.1 for Study Root) that are worth a SQL index are columns
(:data:`COLUMNS`: names, IDs, dates, times, accession number, modality,
numbers, UIDs, SOP class), each in the form :func:`~dicomconf.services.matching.stored_form`
gives it (PN case-folded, times in a normal form) beside its value as stored.
Every other top-level attribute of the level (no pixel data, no bulk binary
VR) is kept as pydicom's JSON model in the row's ``attrs``, so any optional key
a C-FIND asks for can be answered from what was stored.  The counts C.6.1.1
and C.6.2.1 define (Number of Patient Related Studies ..., Modalities in
Study, SOP Classes in Study, Number of Series Related Instances) are kept
up to date on every insert and removal, never computed per query.  An
instance row says where the object is: a file path (directory storage, or a
file loaded in place) or NULL (memory storage), plus transfer syntax and size.

Which level an attribute belongs to: group 0010 is the patient's, except the
Patient Study module's (age, size, weight ...), which are the study's;
:data:`STUDY_KEYWORDS` and :data:`SERIES_KEYWORDS` list the rest of those two
levels; everything else is the instance's.

Storing is atomic with the object (:meth:`Index.storing`): BEGIN, insert the
rows (:mod:`dicomconf.services.index_write`, which remembers where this
connection's studies and series are and checks it on use), let the caller
put the file in place (``os.replace``) or the bytes in memory, COMMIT; any
failure rolls back and the caller removes what it wrote.
A crash can leave (see docs/scp.md) a temporary file (no row: deleted by
:meth:`Index.reconcile`), a final file whose transaction never committed
(indexed by reconcile), or a row whose file someone deleted (the row is
removed); SQLite's journal undoes an uncommitted transaction by itself.

A C-FIND reads the index through :meth:`Index.find` (pydicom candidates)
or, on the fast path, :meth:`Index.query` and :meth:`Index.rows` (the SQL
and its raw rows, :mod:`dicomconf.services.index_query`).

One connection serves every thread (``check_same_thread=False``) behind one
lock; a file index runs in WAL mode and has a schema version
(``PRAGMA user_version``).  Several processes may write one file index (the
workers of ``dicomconf scp --workers``): each has its own connection, WAL lets
readers run beside the one writer, and a writer waits up to
:data:`BUSY_TIMEOUT` for another's transaction (SQLite's busy timeout).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from dicomconf.services.index_levels import LevelRows
from dicomconf.services.index_query import Query
from dicomconf.services.index_write import (
    Known,
    Stale,
    UnindexableError,
    insert,
    remove,
)
from dicomconf.services.matching import (
    key_kind,
    keys_of,
    match_dataset,
    sql_condition,
    stored_form,
    text_of,
)
from dicomconf.ul.dimse_codec import inflate

log = logging.getLogger("dicomconf.services.index")

SCHEMA_VERSION = 1
BUSY_TIMEOUT = 10.0  # s a write waits for another connection's transaction (several worker processes)
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
TABLE = {"PATIENT": "patient", "STUDY": "study", "SERIES": "series", "IMAGE": "instance"}
ALIAS = {"PATIENT": "p", "STUDY": "st", "SERIES": "se", "IMAGE": "i"}
BULK_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})

PATIENT_STUDY_KEYWORDS = frozenset({
    "PatientAge", "PatientSize", "PatientWeight", "Occupation", "AdditionalPatientHistory",
    "PatientSizeCodeSequence", "PatientBodyMassIndex", "MeasuredAPDimension", "MeasuredLateralDimension",
})
STUDY_KEYWORDS = PATIENT_STUDY_KEYWORDS | frozenset({
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "IssuerOfAccessionNumberSequence",
    "StudyID", "StudyDescription", "ReferringPhysicianName", "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "ProcedureCodeSequence", "ReferencedStudySequence",
    "AdmittingDiagnosesDescription", "AdmissionID", "ReasonForPerformedProcedureCodeSequence",
    "RequestingService", "ReferencedPatientSequence",
})
SERIES_KEYWORDS = frozenset({
    "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDate", "SeriesTime", "SeriesDescription",
    "Laterality", "PerformingPhysicianName", "ProtocolName", "OperatorsName", "BodyPartExamined",
    "PatientPosition", "PerformedProcedureStepID", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "PerformedProcedureStepDescription", "RequestAttributesSequence",
    "ReferencedPerformedProcedureStepSequence", "FrameOfReferenceUID", "PositionReferenceIndicator",
    "Manufacturer", "InstitutionName", "StationName", "ManufacturerModelName", "DeviceSerialNumber",
    "SoftwareVersions", "InstitutionalDepartmentName",
})


@dataclass(frozen=True, slots=True)
class Column:
    """An indexed key: its level, the column of its value, the column it is matched on, the match style."""

    level: str
    raw: str
    match: str
    style: str  # see matching.sql_condition
    count: bool = False  # maintained by the index, not read from the data set


COLUMNS: dict[str, Column] = {
    "PatientID": Column("PATIENT", "patient_id", "patient_id", "text"),
    "IssuerOfPatientID": Column("PATIENT", "issuer", "issuer", "text"),
    "PatientName": Column("PATIENT", "patient_name", "patient_name_fold", "pn"),
    "PatientBirthDate": Column("PATIENT", "birth_date", "birth_date", "date"),
    "PatientSex": Column("PATIENT", "sex", "sex", "text"),
    "NumberOfPatientRelatedStudies": Column("PATIENT", "n_studies", "n_studies", "int", True),
    "NumberOfPatientRelatedSeries": Column("PATIENT", "n_series", "n_series", "int", True),
    "NumberOfPatientRelatedInstances": Column("PATIENT", "n_instances", "n_instances", "int", True),
    "StudyInstanceUID": Column("STUDY", "study_uid", "study_uid", "uid"),
    "StudyDate": Column("STUDY", "study_date", "study_date", "date"),
    "StudyTime": Column("STUDY", "study_time", "study_time_n", "time"),
    "AccessionNumber": Column("STUDY", "accession", "accession", "text"),
    "StudyID": Column("STUDY", "study_id", "study_id", "text"),
    "ReferringPhysicianName": Column("STUDY", "referring", "referring_fold", "pn"),
    "StudyDescription": Column("STUDY", "description", "description", "text"),
    "NumberOfStudyRelatedSeries": Column("STUDY", "n_series", "n_series", "int", True),
    "NumberOfStudyRelatedInstances": Column("STUDY", "n_instances", "n_instances", "int", True),
    "ModalitiesInStudy": Column("STUDY", "modalities", "modalities", "python", True),
    "SOPClassesInStudy": Column("STUDY", "sop_classes", "sop_classes", "python", True),
    "SeriesInstanceUID": Column("SERIES", "series_uid", "series_uid", "uid"),
    "Modality": Column("SERIES", "modality", "modality", "text"),
    "SeriesNumber": Column("SERIES", "series_number", "series_number", "int"),
    "SeriesDate": Column("SERIES", "series_date", "series_date", "date"),
    "SeriesTime": Column("SERIES", "series_time", "series_time_n", "time"),
    "NumberOfSeriesRelatedInstances": Column("SERIES", "n_instances", "n_instances", "int", True),
    "SOPInstanceUID": Column("IMAGE", "sop_uid", "sop_uid", "uid"),
    "SOPClassUID": Column("IMAGE", "sop_class", "sop_class", "uid"),
    "InstanceNumber": Column("IMAGE", "instance_number", "instance_number", "int"),
}
PAGE = 1000  # rows read from SQLite at a time by Index.find
DATE_TIME_COLUMNS = frozenset({"StudyDate", "StudyTime", "SeriesDate", "SeriesTime"})
UNIQUE_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
              "IMAGE": "SOPInstanceUID"}
_PARENT = {"STUDY": "patient_pk", "SERIES": "study_pk", "IMAGE": "series_pk"}


def _schema() -> str:
    """CREATE statements: one table per level, its columns from :data:`COLUMNS`, an index per match column."""
    out = []
    for level in LEVELS:
        table = TABLE[level]
        cols = ["pk INTEGER PRIMARY KEY"]
        if level in _PARENT:
            cols.append(f"{_PARENT[level]} INTEGER NOT NULL")
        seen = set()
        for column in COLUMNS.values():
            if column.level != level:
                continue
            for name in (column.raw, column.match):
                if name not in seen:
                    seen.add(name)
                    kind = "INTEGER DEFAULT 0" if column.count and column.style == "int" else (
                        "INTEGER" if column.style == "int" else "TEXT")
                    cols.append(f"{name} {kind}")
        if level == "IMAGE":
            cols += ["path TEXT", "transfer_syntax TEXT", "size INTEGER"]
        cols.append("attrs TEXT NOT NULL DEFAULT '{}'")
        out.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(cols)})")
        if level in _PARENT:
            out.append(f"CREATE INDEX IF NOT EXISTS {table}_parent ON {table}({_PARENT[level]})")
        for keyword, column in COLUMNS.items():
            if column.level == level and column.style != "python" and not column.count:
                unique = "UNIQUE " if keyword == UNIQUE_KEY[level] and level != "PATIENT" else ""
                out.append(f"CREATE {unique}INDEX IF NOT EXISTS {table}_{column.match} ON {table}({column.match})")
    out.append("CREATE UNIQUE INDEX IF NOT EXISTS patient_identity ON patient(patient_id, issuer)")
    return ";\n".join(out)


def level_of(keyword: str, group: int) -> str:
    """The Q/R level an attribute belongs to (see the module docstring)."""
    if keyword in COLUMNS:
        return COLUMNS[keyword].level
    if keyword in STUDY_KEYWORDS:
        return "STUDY"
    if keyword in SERIES_KEYWORDS:
        return "SERIES"
    if group == 0x0010:
        return "PATIENT"
    return "IMAGE"


class IndexFileError(Exception):
    """An index file that cannot be used (wrong schema version, not a database)."""


def split_levels(ds: Dataset) -> dict[str, Dataset]:
    """The top-level attributes of ``ds`` per level, without pixel data, bulk VRs, group lengths, meta."""
    out = {level: Dataset() for level in LEVELS}
    for elem in ds:
        tag = elem.tag
        if tag.group in (0x0002, 0x7FE0) or tag.element == 0 or elem.VR in BULK_VRS or tag == 0x00080005:
            continue
        out[level_of(elem.keyword, tag.group)].add(elem)
    return out


def _value(ds: Dataset, keyword: str) -> str | None:
    elem = ds.data_element(keyword) if keyword in ds else None
    if elem is None or elem.VR == "SQ":
        return None
    text = text_of(elem.value)
    return text if text != "" else None


_LEVEL_COLUMNS = {level: tuple((tag_for_keyword(k), k, c) for k, c in COLUMNS.items() if c.level == level and not c.count)
                  for level in LEVELS}  # level -> (tag, keyword, column) that _column_values fills
_COLUMN_TAGS = frozenset(tag for columns in _LEVEL_COLUMNS.values() for tag, _, _ in columns)  # what it reads


def _column_values(level: str, elements: dict) -> dict[str, object]:
    """The indexed columns of ``level`` (raw and matching forms) from its elements by tag (``LevelRows``)."""
    out: dict[str, object] = {}
    for tag, keyword, column in _LEVEL_COLUMNS[level]:
        elem = elements.get(tag)
        text = None
        if elem is not None and elem.VR != "SQ":
            text = text_of(elem.value) or None
        if column.style == "int":
            try:
                out[column.raw] = int(float(text)) if text is not None else None
            except ValueError:
                out[column.raw] = None
            continue
        out[column.raw] = text
        if column.match != column.raw:
            vr = dictionary_VR(keyword)
            out[column.match] = stored_form(vr, text) if text is not None else None
        elif column.style in ("date",) and text is not None:
            out[column.raw] = stored_form("DA", text)
    if level == "PATIENT":
        out["patient_id"] = out.get("patient_id") or ""
        out["issuer"] = out.get("issuer") or ""
    return out


@dataclass(frozen=True, slots=True)
class Located:
    """Where a stored instance is: ``path`` (None: in memory storage), its transfer syntax and size."""

    sop_instance_uid: str
    sop_class_uid: str
    path: str | None
    transfer_syntax: str
    size: int


@dataclass
class Scanned:
    """One Part 10 file found by :func:`scan`."""

    path: str
    dataset: Dataset
    transfer_syntax: str
    size: int


def dataset_offset(path: str) -> int | None:
    """Where the data set starts in a Part 10 file: after preamble, DICM and the meta group (PS3.10 7.1)."""
    with open(path, "rb") as f:
        head = f.read(144)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
        return None
    return 144 + struct.unpack_from("<I", head, 140)[0]


def read_for_index(source, **kw) -> Dataset:
    """A data set read for indexing: pydicom up to the pixel data; UnindexableError when it does not parse."""
    try:
        return dcmread(source, stop_before_pixels=True, **kw)
    except (InvalidDicomError, Exception) as exc:  # noqa: BLE001 - any parse failure is "cannot understand"
        raise UnindexableError(f"not a DICOM data set pydicom can read: {exc}") from None


def read_bytes_for_index(data: bytes, transfer_syntax: str) -> Dataset:
    """A data set received as bytes in ``transfer_syntax`` (no File Meta), read up to the pixel data.

    Elements must come in ascending tag order (PS3.5 7.1): reading stops at
    the first that does not, so a buffer of garbage costs a few elements,
    not one per eight bytes.
    """
    uid = UID(transfer_syntax)
    try:
        if uid.is_deflated:
            data = bytes(inflate(data))
        last = [-1]

        def stop(tag, vr, length) -> bool:
            if tag <= last[0] or tag >= 0x7FE00000:
                return True
            last[0] = tag
            return False

        ds = read_dataset(io.BytesIO(data), uid.is_implicit_VR, uid.is_little_endian, stop_when=stop)
        for _ in ds:  # convert every raw element now, so a bad value fails here
            pass
        return ds
    except Exception as exc:  # noqa: BLE001 - any parse failure is "cannot understand"
        raise UnindexableError(f"not a data set pydicom can read in {transfer_syntax}: {exc}") from None


def scan(directory: str, stats: dict) -> Iterator[Scanned]:
    """Every Part 10 file under ``directory`` (recursive, sorted); ``stats['skipped']`` counts the others."""
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = os.path.abspath(os.path.join(root, name))
            if name.startswith("index.sqlite"):
                continue
            try:
                ds = read_for_index(path)
                ts = str(ds.file_meta.TransferSyntaxUID)
                if "SOPInstanceUID" not in ds:
                    raise UnindexableError("no SOP Instance UID")
            except (UnindexableError, AttributeError, OSError):
                stats["skipped"] = stats.get("skipped", 0) + 1
                continue
            yield Scanned(path, ds, ts, os.path.getsize(path))


class Index:
    """The index (see the module docstring); ``location`` is a file path or ``":memory:"``."""

    def __init__(self, location: str = ":memory:", *, fsync: bool = False) -> None:
        self.location = location
        self._lock = threading.RLock()
        self._writers: contextlib.AbstractContextManager = contextlib.nullcontext()  # see share_writes
        self._levels = LevelRows(LEVELS, level_of, BULK_VRS, _column_values, UnindexableError, _COLUMN_TAGS)
        self._known = Known()  # the rows of the studies and series this connection placed (index_write)
        try:
            self.db = sqlite3.connect(location, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            tables = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise IndexFileError(f"{location}: not an index database: {exc}") from None
        if tables and version != SCHEMA_VERSION:
            raise IndexFileError(f"{location}: index schema version {version}, this version reads "
                              f"{SCHEMA_VERSION}: remove the file to rebuild it (--load the files again)")
        if location != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self.db.executescript(_schema())
        self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self.db.close()
            getattr(self._writers, "close", lambda: None)()

    def share_writes(self, lock_path: str) -> None:
        """Take turns with other processes writing this file through ``lock_path`` (``index_writers``)."""
        from dicomconf.services.index_writers import ProcessWriteLock

        self._writers = ProcessWriteLock(lock_path)

    # ------------------------------------------------------------ storing

    @contextlib.contextmanager
    def storing(self, ds: Dataset, *, path: str | None, transfer_syntax: str, size: int,
                sop_class_uid: str | None = None, sop_instance_uid: str | None = None) -> Iterator[None]:
        """Index ``ds`` in a transaction around the caller's own step (the ``os.replace`` of its file).

        The rows are written, then the body of the ``with`` runs, then the
        transaction commits; an exception anywhere rolls it back and
        propagates, so the caller undoes its own step.  ``UnindexableError``
        for a data set without Study or Series Instance UID (PS3.4 C.6.2.1).
        """
        rows = self._levels.rows(ds)  # computed before the write lock is taken
        with self._lock, self._writers:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                given = {"path": path, "transfer_syntax": transfer_syntax, "size": size,
                         "sop_class_uid": sop_class_uid, "sop_instance_uid": sop_instance_uid}
                try:
                    insert(self.db, self._known, rows, **given)
                except Stale:  # a remembered row changed under another connection: again, remembering nothing
                    self.db.execute("ROLLBACK")
                    self._known.forget()
                    self.db.execute("BEGIN IMMEDIATE")
                    insert(self.db, self._known, rows, **given)
                yield
                self.db.execute("COMMIT")
            except BaseException:
                self._known.forget()
                self.db.execute("ROLLBACK")
                raise

    def add(self, ds: Dataset, *, path: str | None, transfer_syntax: str, size: int) -> None:
        """Index one instance on its own (its object is already in place)."""
        with self.storing(ds, path=path, transfer_syntax=transfer_syntax, size=size):
            pass

    def remove(self, sop_instance_uid: str) -> bool:
        """Remove an instance's row (and its series, study, patient when they become empty)."""
        with self._lock, self._writers:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                gone = remove(self.db, sop_instance_uid)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            return gone

    # ------------------------------------------------------------ reading

    def locate(self, sop_instance_uid: str) -> Located | None:
        """Where an instance is (for C-MOVE/C-GET sub-operations)."""
        with self._lock:
            row = self.db.execute("SELECT sop_uid, sop_class, path, transfer_syntax, size FROM instance "
                                  "WHERE sop_uid=?", (sop_instance_uid,)).fetchone()
        return Located(*row) if row else None

    def count(self, level: str) -> int:
        with self._lock:
            return self.db.execute(f"SELECT count(*) FROM {TABLE[level]}").fetchone()[0]

    def paths(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self.db.execute("SELECT path FROM instance WHERE path IS NOT NULL")}

    def find(self, level: str, identifier: Dataset, *, combine_datetime: bool = False,
             sql_only: bool = False) -> Iterator[Dataset]:
        """Candidates at ``level`` (with the attributes of the levels above) matching ``identifier``.

        The keys with a column are matched in SQL (:func:`~dicomconf.services.matching.sql_condition`);
        when any key is left over, each SQL row's stored attributes are loaded
        and :func:`match_dataset` decides.  A candidate holds the identifier's
        keys that the entity has and the unique key of each level, not its
        other attributes; ``sql_only`` returns the SQL pre-filter's rows with
        every column (for the differential test).  Rows come in insertion order, read
        :data:`PAGE` at a time, so a large answer is never held whole.
        """
        query = self.query(level, identifier, combine_datetime=combine_datetime, sql_only=sql_only)
        for row in self.rows(query):
            candidate = query.candidate(row)
            if not query.exact and not sql_only and not match_dataset(identifier, candidate,
                                                                     combine_datetime=combine_datetime):
                continue
            yield candidate

    def query(self, level: str, identifier: Dataset, *, combine_datetime: bool = False,
              sql_only: bool = False) -> Query:
        """The SQL of :meth:`find` for ``identifier`` at ``level``, and how its rows become candidates."""
        levels = LEVELS[: LEVELS.index(level) + 1]
        keys = list(keys_of(identifier))
        where, params, exact = [], [], True
        for key in keys:
            column = COLUMNS.get(key.keyword)
            condition = None
            if column is not None and column.level in levels:
                condition = sql_condition(key, f"{ALIAS[column.level]}.{column.match}", column.style)
            if condition is None:
                exact = exact and key_kind(key) == "universal" and key.VR != "SQ"
                continue
            if combine_datetime and key.keyword in DATE_TIME_COLUMNS:
                exact = False  # C.2.2.2.5.1 joins date and time: the predicate decides
                continue
            if condition[0]:
                where.append(condition[0])
                params.extend(condition[1])
        requested = {k.keyword for k in keys} | {UNIQUE_KEY[lv] for lv in levels}  # unique keys: always
        attrs = not sql_only and any(k.keyword not in COLUMNS for k in keys)
        attrs = attrs or (not sql_only and not exact)
        cols = [(kw, c) for kw, c in COLUMNS.items() if c.level in levels and (sql_only or kw in requested)]
        select = [f"{ALIAS[level]}.pk"] + [f"{ALIAS[c.level]}.{c.raw}" for _, c in cols]
        if attrs:
            select += [f"{ALIAS[lv]}.attrs" for lv in levels]
        sql = [f"SELECT {', '.join(select)} FROM {TABLE[level]} {ALIAS[level]}"]
        for lower, upper in zip(reversed(levels), reversed(levels[:-1])):
            sql.append(f"JOIN {TABLE[upper]} {ALIAS[upper]} ON {ALIAS[lower]}.{_PARENT[lower]}={ALIAS[upper]}.pk")
        sql.append("WHERE " + " AND ".join([*where, f"{ALIAS[level]}.pk > ?"]))
        sql.append(f"ORDER BY {ALIAS[level]}.pk LIMIT {PAGE}")
        return Query(" ".join(sql), params, cols, attrs, exact, {f"{int(k.tag):08X}" for k in keys})

    def rows(self, query: Query) -> Iterator[tuple]:
        """The rows of ``query``: primary key, then the values of ``query.cols`` (then attributes)."""
        last = 0
        while True:
            with self._lock:
                rows = self.db.execute(query.statement, [*query.params, last]).fetchall()
            yield from rows
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    # ------------------------------------------------------------ start-up

    def reconcile(self, storage_dir: str, *, temporary: Callable[[str], bool] | None = None,
                  keep: Callable[[str], bool] | None = None) -> dict[str, int]:
        """Make the index and ``storage_dir`` agree after a crash (see the module docstring).

        A row whose file is gone is removed; a ``*.dcm`` file of the directory
        without a row is indexed (or, when it does not parse, left and
        counted); a file ``temporary(name)`` calls temporary is deleted
        (``keep(name)`` may spare one, e.g. another live process's).
        Returns the counts: ``removed``, ``indexed``, ``unreadable``, ``temporary``.
        """
        counts = {"removed": 0, "indexed": 0, "unreadable": 0, "temporary": 0}
        with self._lock:
            rows = self.db.execute("SELECT sop_uid, path FROM instance WHERE path IS NOT NULL").fetchall()
        for sop_uid, path in rows:
            if not os.path.exists(path):
                self.remove(sop_uid)
                counts["removed"] += 1
        known = self.paths()
        directory = os.path.abspath(storage_dir)
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if temporary is not None and temporary(name):
                if keep is None or not keep(name):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                        counts["temporary"] += 1
                continue
            if not name.endswith(".dcm") or path in known or not os.path.isfile(path):
                continue
            try:
                ds = read_for_index(path)
                self.add(ds, path=path, transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
                         size=os.path.getsize(path))
                counts["indexed"] += 1
            except (UnindexableError, AttributeError, OSError) as exc:
                log.warning("%s: left out of the index: %s", path, exc)
                counts["unreadable"] += 1
        if any(counts.values()):
            log.info("index reconciled with %s: %d rows without a file removed, %d files indexed, "
                     "%d unreadable files left, %d temporary files deleted", directory, counts["removed"],
                     counts["indexed"], counts["unreadable"], counts["temporary"])
        return counts

    def load(self, directory: str) -> dict[str, int]:
        """Index the Part 10 files under ``directory`` in place (``--load``); the later of a duplicate wins."""
        stats: dict[str, int] = {"loaded": 0, "skipped": 0, "duplicates": 0, "unindexable": 0}
        for found in scan(directory, stats):
            self.load_one(found, found.path, stats)
        log_load(directory, stats)
        return stats

    def load_one(self, found: Scanned, path: str | None, stats: dict[str, int],
                 then: Callable[[], None] | None = None) -> None:
        """Index one scanned file (``then`` runs inside the transaction); counts into ``stats``."""
        uid = _value(found.dataset, "SOPInstanceUID")
        if uid and self.locate(uid) is not None:
            stats["duplicates"] += 1
            log.info("%s: SOP Instance UID %s loaded before: the later file wins", found.path, uid)
        try:
            with self.storing(found.dataset, path=path, transfer_syntax=found.transfer_syntax, size=found.size):
                if then is not None:
                    then()
            stats["loaded"] += 1
        except UnindexableError as exc:
            stats["unindexable"] += 1
            log.warning("%s: not loaded: %s", found.path, exc)

    # ------------------------------------------------------------ benchmarks

    def synthesize(self, studies: int, series_per_study: int, instances_per_series: int) -> None:
        """Fill the index with rows only, no files (for the C-FIND benchmark): see ``index_synthetic``."""
        from dicomconf.services.index_synthetic import synthesize

        with self._lock:
            synthesize(self.db, studies, series_per_study, instances_per_series)


def log_load(directory: str, stats: dict[str, int]) -> None:
    log.info("loaded %s: %d instances indexed, %d files not DICOM skipped, %d duplicates (the later won), "
             "%d not indexable", directory, stats.get("loaded", 0), stats.get("skipped", 0),
             stats.get("duplicates", 0), stats.get("unindexable", 0))


__all__ = [
    "COLUMNS",
    "LEVELS",
    "UNIQUE_KEY",
    "Index",
    "IndexFileError",
    "Located",
    "Query",
    "Scanned",
    "UnindexableError",
    "dataset_offset",
    "level_of",
    "read_bytes_for_index",
    "read_for_index",
    "scan",
    "split_levels",
]
