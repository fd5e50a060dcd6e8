"""A directory store indexes its first fragments (no re-read of its file) and remembers repeated levels (issue 18)."""

from __future__ import annotations

import json
import os
import struct

import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    generate_uid,
)
from scp_testkit import CT, IVRLE, make_dataset, stored_names, write_part10

import dicomconf.services.index as index_module
from dicomconf.scp.indexing import attach_index
from dicomconf.scp.storage import (
    STATUS_CANNOT_UNDERSTAND,
    STATUS_SUCCESS,
    DirectoryStorage,
    StoredInstance,
)
from dicomconf.services.index import Index, read_for_index
from dicomconf.services.index_prefix import PREFIX_BYTES, dataset_from_prefix
from dicomconf.ul.dimse_codec import encode_dataset

FRAGMENT = 16372  # a data set fragment of a 16382-byte PDU


def _fragments(data: bytes, size: int = FRAGMENT) -> list[memoryview]:
    view = memoryview(data)
    return [view[i:i + size] for i in range(0, len(data), size)]


def _prefix(data: bytes) -> list[memoryview]:
    parts, total = [], 0
    for part in _fragments(data):
        if total >= PREFIX_BYTES:
            break
        parts.append(part)
        total += len(part)
    return parts


def _elements(ds) -> list[tuple]:
    return [(int(e.tag), e.VR, str(e.value)) for e in ds if e.tag.group != 0x0002]


def _long_header(index: int = 0):
    """A data set whose attributes before Pixel Data are longer than the kept prefix."""
    ds = make_dataset(index, size=4096)
    ds.add_new(0x00290010, "LO", "BENCH")
    ds.add_new(0x00291000, "OB", bytes(2 * PREFIX_BYTES))  # past the prefix and its last fragment
    return ds


@pytest.mark.parametrize("syntax", [IVRLE, ExplicitVRLittleEndian])
def test_the_prefix_gives_what_reading_the_file_gives(tmp_path, syntax):
    ds = make_dataset(7, size=300_000)
    data = encode_dataset(ds, syntax)
    path = str(tmp_path / "x.dcm")
    write_part10(ds, path, syntax)
    from_prefix = dataset_from_prefix(_prefix(data), syntax, whole=False)
    assert from_prefix is not None
    assert _elements(from_prefix) == _elements(read_for_index(path))
    assert "PixelData" not in from_prefix


def test_no_answer_when_the_prefix_may_not_hold_every_attribute():
    long_header = encode_dataset(_long_header(), IVRLE)
    assert dataset_from_prefix(_prefix(long_header), IVRLE, whole=False) is None
    assert dataset_from_prefix(_fragments(long_header), IVRLE, whole=True) is not None  # the whole data set
    no_pixels = make_dataset(1, size=2)
    del no_pixels.PixelData
    small = encode_dataset(no_pixels, IVRLE)
    assert dataset_from_prefix([small[:40]], IVRLE, whole=False) is None  # cut short, no Pixel Data seen
    assert _elements(dataset_from_prefix([small], IVRLE, whole=True)) == _elements(no_pixels)
    # elements out of ascending order (PS3.5 7.1): the file read decides, as before
    disordered = struct.pack("<HHI", 0x0010, 0x0020, 4) + b"ID1 " + struct.pack("<HHI", 0x0008, 0x0060, 2) + b"CT"
    assert dataset_from_prefix([disordered + struct.pack("<HHI", 0x7FE0, 0x0010, 0)], IVRLE, whole=True) is None
    deflated = encode_dataset(make_dataset(2, size=64), DeflatedExplicitVRLittleEndian)
    assert dataset_from_prefix([deflated], DeflatedExplicitVRLittleEndian, whole=True) is None


def test_a_header_cut_anywhere_across_fragments_reads_as_the_whole():
    """The first fragment is read alone first; cut inside an element, the fragments are read joined."""
    data = encode_dataset(make_dataset(5, size=2000), IVRLE)
    whole = _elements(dataset_from_prefix([data], IVRLE, whole=True))
    pixels = data.index(struct.pack("<HH", 0x7FE0, 0x0010))
    for cut in (7, 40, 101, pixels - 3, pixels + 8):
        view = memoryview(data)
        assert _elements(dataset_from_prefix([view[:cut], view[cut:]], IVRLE, whole=True)) == whole, cut
        assert _elements(dataset_from_prefix([view[:cut], view[cut:cut + 9]], IVRLE, whole=False) or []) == (
            whole if cut + 9 >= pixels + 8 else []), cut  # the Pixel Data tag and length arrived


def _storage(tmp_path) -> DirectoryStorage:
    storage = DirectoryStorage(str(tmp_path / "store"), implementation_class_uid="1.2.3")
    attach_index(storage, "default")
    return storage


def _store(storage: DirectoryStorage, ds, syntax: str = IVRLE) -> int:
    data = encode_dataset(ds, syntax)
    spool = storage.open(StoredInstance(CT, str(ds.SOPInstanceUID), syntax, b"", "MODALITY"))
    for part in _fragments(data):
        spool.write(part)
    spool.end()
    return spool.commit()


def test_a_store_is_indexed_without_reading_its_file_back(tmp_path, monkeypatch):
    reads: list[str] = []
    real = index_module.read_for_index
    monkeypatch.setattr(index_module, "read_for_index", lambda path, **kw: reads.append(path) or real(path, **kw))
    storage = _storage(tmp_path)
    try:
        plain, long_header = make_dataset(1, size=200_000), _long_header(2)
        assert _store(storage, plain) == STATUS_SUCCESS
        assert reads == []  # the header was in the first fragments
        assert _store(storage, long_header) == STATUS_SUCCESS
        assert len(reads) == 1  # longer than the prefix: read from the written file, as before
        for ds in (plain, long_header):
            located = storage.index.locate(str(ds.SOPInstanceUID))
            assert located is not None and located.path == storage.path_for(str(ds.SOPInstanceUID))
            assert located.size == os.path.getsize(located.path)
            assert located.transfer_syntax == IVRLE
        assert storage.index.count("STUDY") == 2
    finally:
        storage.close()


def test_an_unindexable_store_answers_c000_and_leaves_no_file(tmp_path):
    storage = _storage(tmp_path)
    try:
        ds = make_dataset(3, size=50_000)
        del ds.StudyInstanceUID
        assert _store(storage, ds) == STATUS_CANNOT_UNDERSTAND
        assert stored_names(storage.directory) == []
        assert storage.index.count("IMAGE") == 0
    finally:
        storage.close()


class _NoMemo(dict):
    """A level memo that never remembers: every level computed, as before the memo."""

    def get(self, key, default=None):
        return None

    def __setitem__(self, key, value) -> None:
        pass


def _dump(index: Index) -> dict:
    return {table: index.db.execute(f"SELECT * FROM {table} ORDER BY pk").fetchall()
            for table in ("patient", "study", "series", "instance")}


def _instances() -> list[bytes]:
    """One study, two series; then the same patient name bytes under two character sets (PS3.5 6.1.2.3)."""
    study = generate_uid()
    series = [generate_uid(), generate_uid()]
    out = []
    for i in range(8):
        ds = make_dataset(i, size=64)
        ds.PatientID, ds.StudyInstanceUID = "ID-MEMO", study
        ds.SeriesInstanceUID = series[i % 2]
        ds.SeriesDescription = "later" if i >= 5 and i % 2 else "first"  # a series changes: the later wins
        ds.ImageComments = "same"  # an instance's element that repeats: remembered, not converted again
        if i >= 6:  # b"M\xc3\xbcller" both times: Latin-1 "MÃ¼ller", then UTF-8 "Müller"
            ds.SpecificCharacterSet = "ISO_IR 100" if i == 6 else "ISO_IR 192"
            ds.PatientName = "MÃ¼ller" if i == 6 else "Müller"
            ds.ImageComments = str(ds.PatientName)  # the same bytes too, at the instance level
        else:
            ds.PatientName = "Test^Memo"
        out.append(encode_dataset(ds, IVRLE))
    assert out[6].count(b"M\xc3\xbcller") == out[7].count(b"M\xc3\xbcller") == 2  # name and comments
    return out


def test_remembered_levels_give_the_rows_computing_them_gives():
    dumps, indexes = [], []
    encoded = _instances()
    for memo in (True, False):
        index = Index(":memory:")
        if not memo:
            index._levels._memo = _NoMemo()
            index._levels._elements = _NoMemo()
        for i, data in enumerate(encoded):
            ds = dataset_from_prefix([data], IVRLE, whole=True)
            with index.storing(ds, path=f"/stored/{i}.dcm", transfer_syntax=IVRLE, size=len(data)):
                pass
        dumps.append(_dump(index))
        indexes.append(index)
    assert dumps[0] == dumps[1]
    assert len(indexes[0]._levels._memo) < 3 * len(encoded)  # levels were remembered, not all recomputed
    name = indexes[0].db.execute("SELECT patient_name FROM patient").fetchall()
    assert name == [("Müller",)]  # the character set is part of what a level is remembered by
    descriptions = indexes[0].db.execute("SELECT attrs FROM series ORDER BY pk").fetchall()
    assert '"later"' in descriptions[1][0] and '"first"' in descriptions[0][0]
    comments = [json.loads(r[0])["00204000"]["Value"][0]
                for r in indexes[0].db.execute("SELECT attrs FROM instance ORDER BY pk")]
    assert comments == ["same"] * 6 + ["MÃ¼ller", "Müller"]  # elements remembered with their character set


def test_remembered_elements_give_pydicoms_json_model_and_the_values_that_differ():
    """The attrs JSON equals pydicom's Dataset.to_json_dict of the level; each instance keeps its own values."""
    index = Index(":memory:")
    study, series = generate_uid(), generate_uid()
    for i in range(4):
        ds = make_dataset(i, size=64)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID = study, series, "ID-ELEMENTS"
        ds.ImagePositionPatient = [0, 0, i * 2.5]
        ds.add_new(0x00091010, "LO", "private")  # a private element: kept in attrs as pydicom gives it
        data = encode_dataset(ds, ExplicitVRLittleEndian)
        parsed = dataset_from_prefix([data], ExplicitVRLittleEndian, whole=True)
        with index.storing(parsed, path=f"/stored/{i}.dcm", transfer_syntax=ExplicitVRLittleEndian, size=len(data)):
            pass
        attrs = index.db.execute("SELECT attrs, instance_number FROM instance WHERE sop_uid=?",
                                 (ds.SOPInstanceUID,)).fetchone()
        expected = index_module.split_levels(dataset_from_prefix([data], ExplicitVRLittleEndian, whole=True))["IMAGE"]
        assert json.loads(attrs[0]) == expected.to_json_dict(bulk_data_threshold=1 << 30)
        assert attrs[1] == i
    assert len(index._levels._elements) > 0  # the repeating elements were remembered


def test_an_element_pydicom_cannot_convert_is_not_understood_even_when_another_was_remembered():
    index = Index(":memory:")
    good = make_dataset(1, size=64)
    good.StudyInstanceUID = generate_uid()
    bad = make_dataset(2, size=64)
    bad.StudyInstanceUID = good.StudyInstanceUID
    for ds in (good, bad):
        data = encode_dataset(ds, IVRLE)
        if ds is bad:  # Rows (0028,0010) US with a 3-byte value: pydicom cannot convert it
            data = data.replace(struct.pack("<HHI", 0x0028, 0x0010, 2) + struct.pack("<H", ds.Rows),
                                struct.pack("<HHI", 0x0028, 0x0010, 3) + b"\x01\x00\x00")
            data += b"\x00"
        parsed = dataset_from_prefix([data], IVRLE, whole=True)
        if ds is good:
            with index.storing(parsed, path="/stored/good.dcm", transfer_syntax=IVRLE, size=len(data)):
                pass
            continue
        with pytest.raises(index_module.UnindexableError):
            with index.storing(parsed, path="/stored/bad.dcm", transfer_syntax=IVRLE, size=len(data)):
                pass
    assert index.count("IMAGE") == 1
