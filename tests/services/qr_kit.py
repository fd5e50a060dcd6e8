"""Helpers for the index and C-FIND tests: instances with a chosen patient, study and series, Part 10 files."""

from __future__ import annotations

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from dicomconf.services.base import Request
from dicomconf.services.index import Index
from dicomconf.services.qr_find import PATIENT_ROOT_FIND

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
C_FIND_RQ = 0x0020


def instance(n: int, *, patient: str = "P1", name: str = "Doe^Jane", study: str = "1.2.3.1", series: str | None = None,
             modality: str = "CT", sop_class: str = CT, date: str = "20250102", time: str = "101500",
             accession: str = "A1", **extra) -> Dataset:
    """Instance ``n`` of a series of a study of a patient; ``extra`` keywords are set as given."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"{series or study + '.1'}.{n}"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series or study + ".1"
    ds.PatientID = patient
    ds.PatientName = name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyDate = date
    ds.StudyTime = time
    ds.AccessionNumber = accession
    ds.StudyID = "S1"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = n
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def add(index: Index, ds: Dataset, path: str | None = None) -> None:
    index.add(ds, path=path, transfer_syntax=ExplicitVRLittleEndian, size=0)


def write_part10(ds: Dataset, path, transfer_syntax: str = ExplicitVRLittleEndian) -> str:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ds.save_as(str(path), enforce_file_format=True)
    return str(path)


def find_request(identifier: Dataset | None, sop_class: str = PATIENT_ROOT_FIND, extended: bytes = b"",
                 called: str = "DICOMCONF") -> Request:
    command = Dataset()
    command.AffectedSOPClassUID = sop_class
    command.CommandField = C_FIND_RQ
    command.MessageID = 1
    return Request(C_FIND_RQ, 1, sop_class, command, identifier, called_ae=called, extended=extended)


def query(level: str | None, **keys) -> Dataset:
    ds = Dataset()
    if level is not None:
        ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds
