"""Rows without files for the Q/R benchmarks: an index of any size, synthesized (PS3.4 C.6 levels).

Theory of operation
-------------------
:func:`synthesize` writes patient, study, series and instance rows straight
into an :class:`~dicomconf.services.index.Index`'s tables with
``executemany``, in one transaction, with the counts the index keeps
(Number of ... Related ..., Modalities in Study) already right: one patient
per two studies, study dates spread over a year, ``CT`` series.  No data set
is parsed and no file written, so 1,000,000 instances take seconds; the
instance rows have no path (a C-FIND benchmark needs none).
"""

from __future__ import annotations

import sqlite3


def synthesize(db: sqlite3.Connection, studies: int, series_per_study: int, instances_per_series: int,
               sop_class_uid: str = "1.2.840.10008.5.1.4.1.1.2") -> None:
    """Insert ``studies`` x ``series_per_study`` x ``instances_per_series`` instances' rows (caller holds the lock)."""
    base = "2.25.1"
    db.execute("BEGIN")
    n_patients = max(1, (studies + 1) // 2)
    per = series_per_study * instances_per_series
    db.executemany(
        "INSERT INTO patient (pk, patient_id, issuer, patient_name, patient_name_fold, birth_date, sex, "
        "n_studies, n_series, n_instances) VALUES (?,?,?,?,?,?,?,?,?,?)",
        ((p + 1, f"PID{p:07d}", "", f"Name{p}^Given", f"name{p}^given", f"19{50 + p % 50}0101",
          "MF"[p % 2], n, n * series_per_study, n * per)
         for p in range(n_patients) for n in [2 if 2 * p + 1 < studies else studies - 2 * p]))
    db.executemany(
        "INSERT INTO study (pk, patient_pk, study_uid, study_date, study_time, study_time_n, accession, "
        "study_id, description, n_series, n_instances, modalities, sop_classes) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ((s + 1, s // 2 + 1, f"{base}.{s}", f"2025{1 + s % 12:02d}{1 + s % 28:02d}", f"{s % 24:02d}0000",
          f"{s % 24:02d}0000.000000", f"ACC{s:07d}", str(s), "synthetic", series_per_study, per, "CT",
          sop_class_uid) for s in range(studies)))
    db.executemany(
        "INSERT INTO series (pk, study_pk, series_uid, modality, series_number, n_instances) "
        "VALUES (?,?,?,?,?,?)",
        ((s * series_per_study + r + 1, s + 1, f"{base}.{s}.{r}", "CT", r + 1, instances_per_series)
         for s in range(studies) for r in range(series_per_study)))
    db.executemany(
        "INSERT INTO instance (series_pk, sop_uid, sop_class, instance_number, transfer_syntax, size) "
        "VALUES (?,?,?,?,?,?)",
        ((se + 1, f"{base}.{se // series_per_study}.{se % series_per_study}.{i}", sop_class_uid, i + 1,
          "1.2.840.10008.1.2.1", 0)
         for se in range(studies * series_per_study) for i in range(instances_per_series)))
    db.execute("COMMIT")


