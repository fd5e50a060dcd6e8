"""Writing an instance's rows into the index, remembering where its studies and series are (PS3.4 C.6.1.1, C.6.2.1).

Theory of operation
-------------------
:func:`insert` places one instance under its patient, study and series
(PS3.4 C.6.1.1 and C.6.2.1: a study belongs to one patient, a series to one
study), keeps the counts and the sets C.6 defines (Number of ... Related ...,
Modalities in Study, SOP Classes in Study) and lets the later instance win
for a level's attributes; :func:`remove` undoes it, dropping a series, study
or patient that becomes empty.  The caller (:meth:`dicomconf.services.index.Index.storing`)
holds the transaction.

A modality sends many instances of one series.  Looking up its study,
checking its patient and rewriting the three upper rows with the values they
already hold was most of the statements of a store, so :class:`Known`
remembers, for this connection, the rows (primary keys) of the studies and
series it placed.  A store of a known series trusts nothing it remembers: the
three count increments it makes anyway name the row by key *and* by what
identifies it (series UID and study; study UID and patient; patient ID and
issuer) and return the row's attributes (``RETURNING``; an UPDATE then a
SELECT on SQLite before 3.35).  A row that is gone or changed (another
connection, another worker process, removed it) makes the store start again
from a rolled-back transaction without the remembered rows
(:class:`Stale`); a row whose attributes are the JSON this instance brings is
not rewritten (an UPDATE writes only non-NULL columns and the JSON, so
writing the same attributes again changes nothing); Modalities in Study and
SOP Classes in Study come back with the study's increment.  The rows are the
same as those a store that remembers nothing writes, in fewer statements.
"""

from __future__ import annotations

import logging
import sqlite3

log = logging.getLogger("dicomconf.services.index")


class UnindexableError(ValueError):
    """A data set the index cannot place (PS3.4 B.2.3 "cannot understand": C-STORE answers C000)."""


class Stale(Exception):
    """A remembered row is gone or belongs elsewhere now: roll back, forget, and store again (module docstring)."""


class Known:
    """The rows of the studies and series this connection placed (module docstring); a hint, checked on use."""

    LIMIT = 4096  # studies or series remembered; past it everything is forgotten and learnt again

    __slots__ = ("series", "studies")

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        self.studies: dict[str, tuple[int, int, tuple[str, str]]] = {}  # study UID -> (pk, patient pk, patient)
        self.series: dict[str, tuple[int, int]] = {}  # series UID -> (pk, study pk)


RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)  # UPDATE ... RETURNING (else UPDATE, then SELECT)


def insert(db: sqlite3.Connection, known: Known, rows: dict, *, path: str | None, transfer_syntax: str,
           size: int, sop_class_uid: str | None = None, sop_instance_uid: str | None = None) -> None:
    """Write one instance's rows; ``rows`` is level -> (column values, attrs JSON) (``LevelRows.rows``).

    :class:`Stale` when a remembered row turned out gone or changed: the
    caller rolls back, forgets and calls again.
    """
    patient, patient_json = rows["PATIENT"]
    study_values, study_json = rows["STUDY"]
    series_values, series_json = rows["SERIES"]
    instance_values, instance_json = rows["IMAGE"]
    sop_uid = sop_instance_uid or instance_values.get("sop_uid")
    study_uid, series_uid = study_values.get("study_uid"), series_values.get("series_uid")
    if not sop_uid or not study_uid or not series_uid:
        missing = [k for k, v in (("SOP Instance UID", sop_uid), ("Study Instance UID", study_uid),
                                  ("Series Instance UID", series_uid)) if not v]
        raise UnindexableError(f"the data set has no {', '.join(missing)} (PS3.4 C.6.2.1)")
    if db.execute("SELECT 1 FROM instance WHERE sop_uid=?", (sop_uid,)).fetchone():
        log.info("instance %s stored again: the later one replaces it in the index", sop_uid)
        remove(db, sop_uid)
    identity = (patient["patient_id"], patient["issuer"])
    study = known.studies.get(study_uid)
    series = known.series.get(series_uid)
    if study is not None and series is not None and study[2] == identity and series[1] == study[0]:
        study_pk, patient_pk, _ = study
        series_pk = series[0]
        found = _count(db, "series", "series_uid=? AND study_pk=?", (series_pk, series_uid, study_pk), "attrs")
        if found is None:
            raise Stale(series_uid)
        if found[0] != series_json:
            _upsert(db, "series", (series_pk,), series_values, series_json, None)
        found = _count(db, "study", "study_uid=? AND patient_pk=?", (study_pk, study_uid, patient_pk),
                       "attrs, modalities, sop_classes")
        if found is None:
            raise Stale(study_uid)
        if found[0] != study_json:
            _upsert(db, "study", (study_pk,), study_values, study_json, None)
        sets = found[1:]
        found = _count(db, "patient", "patient_id=? AND issuer=?", (patient_pk, *identity), "attrs")
        if found is None:
            raise Stale(study_uid)
        if found[0] != patient_json:
            _upsert(db, "patient", (patient_pk,), patient, patient_json, None)
    else:
        patient_pk, study_pk, series_pk = _place(db, known, identity, study_uid, series_uid, rows)
        sets = db.execute("SELECT modalities, sop_classes FROM study WHERE pk=?", (study_pk,)).fetchone()
    instance = dict(instance_values)
    instance["sop_uid"] = sop_uid
    instance["sop_class"] = sop_class_uid or instance.get("sop_class")
    instance.update(path=path, transfer_syntax=transfer_syntax, size=size, series_pk=series_pk, attrs=instance_json)
    names = list(instance)
    db.execute(f"INSERT INTO instance ({','.join(names)}) VALUES ({','.join('?' * len(names))})",
               [instance[n] for n in names])
    _add_to_sets(db, study_pk, tuple(sets), series_values.get("modality"), instance["sop_class"])


def _count(db: sqlite3.Connection, table: str, identified: str, params: tuple, returning: str) -> tuple | None:
    """Count one more instance in the row with this pk and identity; its ``returning`` columns, None if none is."""
    where = f"pk=? AND {identified}"
    if RETURNING:
        return db.execute(f"UPDATE {table} SET n_instances=n_instances+1 WHERE {where} RETURNING {returning}",
                          params).fetchone()
    if db.execute(f"UPDATE {table} SET n_instances=n_instances+1 WHERE {where}", params).rowcount != 1:
        return None
    return db.execute(f"SELECT {returning} FROM {table} WHERE pk=?", params[:1]).fetchone()


def _place(db: sqlite3.Connection, known: Known, identity: tuple[str, str], study_uid: str, series_uid: str,
           rows: dict) -> tuple[int, int, int]:
    """Find or make the patient, study and series rows of an instance, count it in them; their pks.

    Remembers the study and the series (:class:`Known`) when they are where
    the instance says: a series first stored under another study stays there.
    """
    patient, patient_json = rows["PATIENT"]
    study_row = db.execute("SELECT pk, patient_pk FROM study WHERE study_uid=?", (study_uid,)).fetchone()
    owner = None
    if study_row is not None:  # a study stays with the patient it was first stored under
        row = (study_row[1],)
        owner = db.execute("SELECT patient_id, issuer FROM patient WHERE pk=?", row).fetchone()
        if owner is not None and tuple(owner) != identity:
            # Renaming the study's patient would move every other study of that patient too:
            # the instance is refused (C000), and the index stays as it was (PS3.4 C.6.2.1).
            raise UnindexableError(
                f"study {study_uid} belongs to patient {owner[0]!r}, this instance names patient "
                f"{patient['patient_id']!r}")
    else:
        row = db.execute("SELECT pk FROM patient WHERE patient_id=? AND issuer=?", identity).fetchone()
    patient_pk = _upsert(db, "patient", row, patient, patient_json, None)
    study_pk = _upsert(db, "study", study_row, *rows["STUDY"], ("patient_pk", patient_pk))
    if study_row is None:
        db.execute("UPDATE patient SET n_studies=n_studies+1 WHERE pk=?", (patient_pk,))
    series_row = db.execute("SELECT pk, study_pk FROM series WHERE series_uid=?", (series_uid,)).fetchone()
    series_pk = _upsert(db, "series", series_row, *rows["SERIES"], ("study_pk", study_pk))
    if series_row is None:
        db.execute("UPDATE study SET n_series=n_series+1 WHERE pk=?", (study_pk,))
        db.execute("UPDATE patient SET n_series=n_series+1 WHERE pk=?", (patient_pk,))
    db.execute("UPDATE series SET n_instances=n_instances+1 WHERE pk=?", (series_pk,))
    db.execute("UPDATE study SET n_instances=n_instances+1 WHERE pk=?", (study_pk,))
    db.execute("UPDATE patient SET n_instances=n_instances+1 WHERE pk=?", (patient_pk,))
    if len(known.studies) >= Known.LIMIT or len(known.series) >= Known.LIMIT:
        known.forget()
    if study_row is None or owner is not None:
        known.studies[study_uid] = (study_pk, patient_pk, identity)
        if series_row is None or series_row[1] == study_pk:
            known.series[series_uid] = (series_pk, study_pk)
    return patient_pk, study_pk, series_pk


def _upsert(db: sqlite3.Connection, table: str, row, values: dict, attrs: str, parent: tuple | None) -> int:
    """Insert a level's row, or refresh its columns and attributes (JSON; the later instance wins)."""
    values = dict(values)
    values["attrs"] = attrs
    if row is not None:
        keep = {k: v for k, v in values.items() if v is not None}
        db.execute(f"UPDATE {table} SET {','.join(f'{k}=?' for k in keep)} WHERE pk=?", [*keep.values(), row[0]])
        return row[0]
    if parent is not None:
        values[parent[0]] = parent[1]
    names = list(values)
    return db.execute(f"INSERT INTO {table} ({','.join(names)}) VALUES ({','.join('?' * len(names))})",
                      [values[n] for n in names]).lastrowid  # type: ignore[return-value]


def _add_to_sets(db: sqlite3.Connection, study_pk: int, stored: tuple, modality: str | None,
                 sop_class: str | None) -> None:
    """Add one series' modality and one instance's class to the study's sets (insert order, no repeats)."""
    new = []
    for current, value in zip(stored, (modality, sop_class)):
        values = current.split("\\") if current else []
        if value and value not in values:
            values.append(value)
        new.append("\\".join(values) or None)
    if tuple(new) != stored:
        db.execute("UPDATE study SET modalities=?, sop_classes=? WHERE pk=?", (*new, study_pk))


def remove(db: sqlite3.Connection, sop_uid: str) -> bool:
    """Remove an instance's row (and its series, study, patient when they become empty)."""
    row = db.execute(
        "SELECT i.pk, se.pk, st.pk, st.patient_pk FROM instance i JOIN series se ON i.series_pk=se.pk "
        "JOIN study st ON se.study_pk=st.pk WHERE i.sop_uid=?", (sop_uid,)).fetchone()
    if row is None:
        return False
    instance_pk, series_pk, study_pk, patient_pk = row
    db.execute("DELETE FROM instance WHERE pk=?", (instance_pk,))
    for table, pk in (("series", series_pk), ("study", study_pk), ("patient", patient_pk)):
        db.execute(f"UPDATE {table} SET n_instances=n_instances-1 WHERE pk=?", (pk,))
    if db.execute("SELECT n_instances FROM series WHERE pk=?", (series_pk,)).fetchone()[0] <= 0:
        db.execute("DELETE FROM series WHERE pk=?", (series_pk,))
        db.execute("UPDATE study SET n_series=n_series-1 WHERE pk=?", (study_pk,))
        db.execute("UPDATE patient SET n_series=n_series-1 WHERE pk=?", (patient_pk,))
    if db.execute("SELECT n_series FROM study WHERE pk=?", (study_pk,)).fetchone()[0] <= 0:
        db.execute("DELETE FROM study WHERE pk=?", (study_pk,))
        db.execute("UPDATE patient SET n_studies=n_studies-1 WHERE pk=?", (patient_pk,))
        if db.execute("SELECT n_studies FROM patient WHERE pk=?", (patient_pk,)).fetchone()[0] <= 0:
            db.execute("DELETE FROM patient WHERE pk=?", (patient_pk,))
    else:
        _refresh_sets(db, study_pk)
    return True


def _refresh_sets(db: sqlite3.Connection, study_pk: int) -> None:
    """Modalities in Study and SOP Classes in Study again from the study's series and instances (on removal)."""
    modalities = [r[0] for r in db.execute(
        "SELECT DISTINCT modality FROM series WHERE study_pk=? AND modality IS NOT NULL ORDER BY pk",
        (study_pk,))]
    classes = [r[0] for r in db.execute(
        "SELECT DISTINCT i.sop_class FROM instance i JOIN series se ON i.series_pk=se.pk "
        "WHERE se.study_pk=? AND i.sop_class IS NOT NULL ORDER BY i.pk", (study_pk,))]
    db.execute("UPDATE study SET modalities=?, sop_classes=? WHERE pk=?",
               ("\\".join(modalities) or None, "\\".join(classes) or None, study_pk))


__all__ = ["Known", "Stale", "UnindexableError", "insert", "remove"]
