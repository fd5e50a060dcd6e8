"""The known data set the Query/Retrieve, commitment and MPPS scenarios store and then ask about (PS3.4 C, J, F.7).

Theory of operation
-------------------
:func:`known_set` builds, with pydicom and without randomness, a small set of
objects: 3 patients, 4 studies, 6 series, 12 instances (CT and MR image
storage), every UID fixed under :data:`ROOT` (so storing the set again into a
real PACS is idempotent: the same instances, not new ones), with patient IDs
and names that start with ``DCONF`` so that every query a scenario makes can
narrow to the set and never match a PACS's other data.  Chosen values give
each matching type of PS3.4 C.2.2.2 something to find:

* patient names: ``DCONFALPHA^ANNA``, one whose family name is empty
  (``^DCONFBETA``: a caret-only family name component) and one non-ASCII name
  (``DCONFÖSTERGÅRD^ÅSA``) with Specific Character Set ``ISO_IR 192`` (UTF-8);
* study dates across two years (2025, 2026) and times for range matching;
* accession numbers ``DCONFACC01`` .. ``DCONFACC04``; modalities CT and MR;
* a Modality Worklist (PS3.4 K.6): one Scheduled Procedure Step per study,
  for the study's patient, modality, date and time, at a station of its own
  (``DCONF-CT1``, ``DCONF-MR1``, ``DCONF-CT2``, ``DCONF-MR1``), so that the two
  items of patient 0 differ in station, modality and date.

:func:`template_view` is what scenario templates see as ``set``:
``{set.patients[1].id}``, ``{set.studies[0].uid}``,
``{set.count.instance}``, ``{set.worklist[0].accession}`` ... (docs/scenarios.md,
"The known data set"); :func:`template_view_with` puts a profile's own
worklist items (a RIS's, ``worklist_items``) in place of the set's.
:func:`worklist_items` turns worklist entries into the data sets a worklist
SCP serves (the embedded SCP's, from its profile).
:func:`encoded` gives each instance's bytes in a transfer syntax, which is
what ``store_set`` sends and what arrivals are compared against.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydicom import Dataset
from pydicom.uid import UID_dictionary

from dicomconf.ul import constants as C

ROOT = C.IMPLEMENTATION_CLASS_UID + ".17"  # our own arc: every UID of the set is below it
PREFIX = "DCONF"  # every patient ID and name of the set starts with it
_BY_KEYWORD = {entry[4]: uid for uid, entry in UID_dictionary.items() if entry[4] in ("CTImageStorage",
                                                                                      "MRImageStorage")}
SOP_CLASSES = {"CT": _BY_KEYWORD["CTImageStorage"], "MR": _BY_KEYWORD["MRImageStorage"]}

# (patient ID, name, birth date, sex, specific character set)
_PATIENTS = (
    ("DCONF-QR-001", "DCONFALPHA^ANNA", "19600214", "F", None),
    ("DCONF-QR-002", "^DCONFBETA", "19751103", "M", None),
    ("DCONF-QR-003", "DCONFÖSTERGÅRD^ÅSA", "19881230", "F", "ISO_IR 192"),
)
# (patient index, modality, study date, study time, accession number, description, series per study)
_STUDIES = (
    (0, "CT", "20250314", "083000", "DCONFACC01", "DCONF CT CHEST", 2),
    (0, "MR", "20260120", "141500", "DCONFACC02", "DCONF MR HEAD", 1),
    (1, "CT", "20251102", "101010", "DCONFACC03", "DCONF CT ABDOMEN", 2),
    (2, "MR", "20260630", "235900", "DCONFACC04", "DCONF MR KNEE", 1),
)
INSTANCES_PER_SERIES = 2
# Scheduled Station AE Title of each study's Scheduled Procedure Step (PS3.4 K.6.1.2.2)
_STATIONS = ("DCONF-CT1", "DCONF-MR1", "DCONF-CT2", "DCONF-MR1")
# What a worklist entry must give (the scenarios read them), and what it may (docs/scenarios.md)
WORKLIST_REQUIRED = ("patient_id", "patient_name", "study_uid", "accession", "requested_procedure_id", "sps_id",
                     "station_ae", "modality", "start_date", "start_time")
WORKLIST_OPTIONAL = ("birth_date", "sex", "charset", "requested_procedure_description", "sps_description")


@dataclass(frozen=True, slots=True)
class Instance:
    """One object of the set: its data set and where it sits."""

    dataset: Dataset
    patient: int
    study: int
    series: int

    @property
    def sop_class(self) -> str:
        return str(self.dataset.SOPClassUID)

    @property
    def uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)


def _uid(*parts: int) -> str:
    return ".".join([ROOT, *map(str, parts)])


def _instance(p: int, s: int, series_no: int, series_index: int, n: int) -> Dataset:
    pid, name, birth, sex, charset = _PATIENTS[p]
    _, modality, date, study_time, accession, description, _ = _STUDIES[s]
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = SOP_CLASSES[modality]
    ds.SOPInstanceUID = _uid(3, s + 1, series_no, n)
    ds.StudyDate = date
    ds.SeriesDate = date
    ds.ContentDate = date
    ds.StudyTime = study_time
    ds.SeriesTime = study_time
    ds.ContentTime = study_time
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.Manufacturer = "dicomconf"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = description
    ds.SeriesDescription = f"{description} {series_no}"
    ds.PatientName = name
    ds.PatientID = pid
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    ds.StudyInstanceUID = _uid(1, s + 1)
    ds.SeriesInstanceUID = _uid(2, s + 1, series_no)
    ds.StudyID = f"DC{s + 1}"
    ds.SeriesNumber = series_no
    ds.InstanceNumber = n
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 4
    ds.Columns = 4
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(((series_index * 16 + n) & 0xFF, 0)) * 16  # 4 x 4, 16 bits: distinct per instance
    return ds


@lru_cache(maxsize=1)
def _built() -> tuple[Instance, ...]:
    out = []
    series_index = 0
    for s, (p, _m, _d, _t, _a, _desc, series_count) in enumerate(_STUDIES):
        for series_no in range(1, series_count + 1):
            series_index += 1
            for n in range(1, INSTANCES_PER_SERIES + 1):
                out.append(Instance(_instance(p, s, series_no, series_index, n), p, s, series_index - 1))
    return tuple(out)


def instances(studies: Any = None) -> list[Instance]:
    """The instances of the set (a deep copy of each data set: a caller may change it), all or those of ``studies``
    (indexes into :func:`template_view`'s ``studies``, or Study Instance UIDs)."""
    chosen = None
    if studies is not None:
        chosen = set()
        uids = [_uid(1, s + 1) for s in range(len(_STUDIES))]
        for item in studies:
            if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(_STUDIES):
                chosen.add(item)
            elif isinstance(item, str) and item in uids:
                chosen.add(uids.index(item))
            else:
                raise ValueError(f"{item!r} is not a study of the known set (an index 0..{len(_STUDIES) - 1} "
                                 "or one of its Study Instance UIDs)")
    return [Instance(copy.deepcopy(i.dataset), i.patient, i.study, i.series) for i in _built()
            if chosen is None or i.study in chosen]


def by_uid(sop_instance_uid: str) -> Instance | None:
    """The instance of the set with this SOP Instance UID, or None."""
    return next((i for i in _built() if i.uid == sop_instance_uid), None)


def encoded(instance: Instance, transfer_syntax: str) -> bytes:
    """The instance's data set encoded in ``transfer_syntax`` (PS3.5 7, 10), as ``store_set`` sends it."""
    from dicomconf.ul import dimse

    return dimse.encode_dataset(instance.dataset, transfer_syntax)


def _worklist_entries() -> list[dict[str, Any]]:
    """The known set's worklist: one Scheduled Procedure Step per study (see the module docstring)."""
    out = []
    for s, (p, modality, date, study_time, accession, description, _n) in enumerate(_STUDIES):
        pid, name, birth, sex, charset = _PATIENTS[p]
        out.append({
            "patient": p, "patient_id": pid, "patient_name": name, "birth_date": birth, "sex": sex,
            "charset": charset or "", "study": s, "study_uid": _uid(1, s + 1), "accession": accession,
            "requested_procedure_id": f"DCONFRP{s + 1}", "requested_procedure_description": description,
            "sps_id": f"DCONFSPS{s + 1}", "sps_description": description, "station_ae": _STATIONS[s],
            "modality": modality, "start_date": date, "start_time": study_time,
        })
    return out


def worklist_items(entries: Any = None) -> list[Dataset]:
    """Modality Worklist items (PS3.4 K.6.1.2.2, Table K.6-1) for worklist ``entries`` (mappings with the keys
    of :data:`WORKLIST_REQUIRED` and :data:`WORKLIST_OPTIONAL`; default: the known set's), one Scheduled
    Procedure Step each, every Type 1 return key with a value."""
    out = []
    for entry in (_worklist_entries() if entries is None else entries):
        def get(key: str) -> str:
            value = entry.get(key)
            return "" if value is None else str(value)

        ds = Dataset()
        if get("charset"):
            ds.SpecificCharacterSet = get("charset")
        ds.PatientName = get("patient_name")
        ds.PatientID = get("patient_id")
        ds.PatientBirthDate = get("birth_date")
        ds.PatientSex = get("sex")
        ds.StudyInstanceUID = get("study_uid")
        ds.AccessionNumber = get("accession")
        ds.ReferringPhysicianName = ""
        ds.RequestedProcedureID = get("requested_procedure_id")
        ds.RequestedProcedureDescription = get("requested_procedure_description") or get("requested_procedure_id")
        step = Dataset()
        step.ScheduledStationAETitle = get("station_ae")
        step.ScheduledProcedureStepStartDate = get("start_date")
        step.ScheduledProcedureStepStartTime = get("start_time")
        step.Modality = get("modality")
        step.ScheduledPerformingPhysicianName = ""
        step.ScheduledProcedureStepDescription = get("sps_description") or get("sps_id")
        step.ScheduledProcedureStepID = get("sps_id")
        step.ScheduledProcedureStepStatus = "SCHEDULED"
        ds.ScheduledProcedureStepSequence = [step]
        out.append(ds)
    return out


def template_view_with(worklist: Any = None) -> dict[str, Any]:
    """:func:`template_view`, with ``worklist`` entries (a profile's ``worklist_items``) as ``set.worklist``
    when given."""
    view = template_view()
    if not worklist:
        return view
    return {**view, "worklist": [dict(entry) for entry in worklist]}


@lru_cache(maxsize=1)
def template_view() -> dict[str, Any]:
    """The set as scenario templates see it (``set``): plain mappings and lists, see the module docstring."""
    built = _built()
    patients = [{"id": pid, "name": name, "birth_date": birth, "sex": sex, "charset": charset or "",
                 "studies": sum(1 for st in _STUDIES if st[0] == p)}
                 for p, (pid, name, birth, sex, charset) in enumerate(_PATIENTS)]
    studies = []
    for s, (p, modality, date, study_time, accession, description, series_count) in enumerate(_STUDIES):
        studies.append({
            "uid": _uid(1, s + 1), "patient": p, "patient_id": _PATIENTS[p][0], "patient_name": _PATIENTS[p][1],
            "date": date, "time": study_time, "accession": accession, "modality": modality,
            "description": description, "series": series_count,
            "instances": sum(1 for i in built if i.study == s),
            "instance_uids": [i.uid for i in built if i.study == s],
        })
    series = []
    for i in built:
        if i.series == len(series):
            series.append({"uid": str(i.dataset.SeriesInstanceUID), "study": i.study,
                           "study_uid": _uid(1, i.study + 1), "modality": str(i.dataset.Modality),
                           "number": int(i.dataset.SeriesNumber), "instances": 0})
        series[i.series]["instances"] += 1
    return {
        "root": ROOT,
        "prefix": PREFIX,
        "patients": patients,
        "studies": studies,
        "series": series,
        "instances": [{"uid": i.uid, "sop_class": i.sop_class, "study": i.study, "series": i.series,
                       "study_uid": str(i.dataset.StudyInstanceUID)} for i in built],
        "worklist": _worklist_entries(),
        "count": {"patient": len(patients), "study": len(studies), "series": len(series), "instance": len(built)},
    }


__all__ = ["PREFIX", "ROOT", "WORKLIST_OPTIONAL", "WORKLIST_REQUIRED", "Instance", "by_uid", "encoded", "instances",
           "template_view", "template_view_with", "worklist_items"]
