"""The index remembers where its studies and series are, and checks it on every use (issue 18).

A store of a series the connection placed before makes fewer statements; the
rows must be the same as those of a connection that remembers nothing, also
when another connection (another worker process) changed or removed them in
between, and on SQLite without ``UPDATE ... RETURNING``.
"""

from __future__ import annotations

import os
import sys

import pytest

from dicomconf.services import index_write
from dicomconf.services.index import Index

sys.path.insert(0, os.path.dirname(__file__))
import qr_kit


class _Forgetful(index_write.Known):
    """Knows nothing, ever: every store looks its rows up, as before the index remembered."""

    __slots__ = ()

    def forget(self) -> None:
        self.studies = _Nothing()
        self.series = _Nothing()


class _Nothing(dict):
    def __setitem__(self, key, value) -> None:
        pass


class _Counting:
    """The index's connection, counting the statements it is given."""

    def __init__(self, db) -> None:
        self.db, self.statements = db, []

    def execute(self, sql, *args):
        self.statements.append(sql)
        return self.db.execute(sql, *args)


def _dump(index: Index) -> dict:
    return {table: index.db.execute(f"SELECT * FROM {table} ORDER BY pk").fetchall()
            for table in ("patient", "study", "series", "instance")}


@pytest.fixture(params=[True, False], ids=["returning", "update-then-select"])
def returning(request, monkeypatch):
    monkeypatch.setattr(index_write, "RETURNING", request.param)
    return request.param


def _stores() -> list:
    """A modality's day: repeated series, a series that changes, a second series, a store again, a refusal."""
    out = [qr_kit.instance(n, series="1.2.3.1.1", SeriesDescription="first") for n in range(1, 4)]
    out.append(qr_kit.instance(4, series="1.2.3.1.1", SeriesDescription="later"))  # the later instance wins
    out.append(qr_kit.instance(5, series="1.2.3.1.1", SeriesDescription="later", name="Doe^Janet"))
    out.append(qr_kit.instance(1, series="1.2.3.1.2", modality="MR", sop_class=qr_kit.MR))  # a second series
    out.append(qr_kit.instance(6, series="1.2.3.1.1", SeriesDescription="later"))
    out.append(qr_kit.instance(2, series="1.2.3.1.1", SeriesDescription="again"))  # stored again: replaces
    out.append(qr_kit.instance(7, series="1.2.3.1.1", SeriesDescription="again"))
    out.append(qr_kit.instance(1, patient="P2", study="1.2.9"))
    return out


def test_a_remembering_index_writes_the_rows_one_that_remembers_nothing_writes(returning):
    dumps = []
    for known in (index_write.Known(), _Forgetful()):
        index = Index()
        index._known = known
        for ds in _stores():
            qr_kit.add(index, ds)
        with pytest.raises(index_write.UnindexableError, match="belongs to patient 'P1'"):
            qr_kit.add(index, qr_kit.instance(8, patient="P3"))  # the study is P1's
        dumps.append(_dump(index))
    assert dumps[0] == dumps[1]
    series = {r[0]: r for r in dumps[0]["series"]}
    assert len(dumps[0]["instance"]) == 9 and len(series) == 3  # instance 2 stored again replaced itself


def test_a_store_of_a_known_series_makes_fewer_statements(returning):
    index = Index()
    qr_kit.add(index, qr_kit.instance(1))
    index.db = counting = _Counting(index.db)
    qr_kit.add(index, qr_kit.instance(2))
    remembered = list(counting.statements)
    index._known.forget()
    counting.statements.clear()
    qr_kit.add(index, qr_kit.instance(3))
    looked_up = counting.statements
    assert len(remembered) <= (7 if returning else 10) < len(looked_up)
    assert not any(s.startswith("SELECT pk") for s in remembered)  # no study, patient or series look-up
    assert any(s.startswith("SELECT pk, patient_pk FROM study") for s in looked_up)


def _attrs(index: Index, series_uid: str) -> str:
    return index.db.execute("SELECT attrs FROM series WHERE series_uid=?", (series_uid,)).fetchone()[0]


def test_a_row_another_connection_rewrote_is_written_again(tmp_path, returning):
    """Worker A's series, rewritten by worker B, then stored by A again: A's attributes are the later."""
    path = str(tmp_path / "index.sqlite")
    a, b = Index(path), Index(path)
    try:
        qr_kit.add(a, qr_kit.instance(1, SeriesDescription="first"))
        qr_kit.add(b, qr_kit.instance(2, SeriesDescription="second"))
        assert '"second"' in _attrs(a, "1.2.3.1.1")
        qr_kit.add(a, qr_kit.instance(3, SeriesDescription="first"))
        assert '"first"' in _attrs(a, "1.2.3.1.1")
        counts = a.db.execute("SELECT n_instances FROM series").fetchall()
        assert counts == [(3,)]
    finally:
        a.close()
        b.close()


def test_rows_another_connection_removed_are_not_trusted(tmp_path, returning):
    """Worker B empties the series A remembers, and its freed rows are taken by another study."""
    path = str(tmp_path / "index.sqlite")
    a, b = Index(path), Index(path)
    try:
        for n in (1, 2):
            qr_kit.add(a, qr_kit.instance(n))
        for n in (1, 2):
            assert b.remove(f"1.2.3.1.1.{n}")
        assert b.count("STUDY") == 0
        qr_kit.add(b, qr_kit.instance(1, patient="P2", study="1.9", series="1.9.1"))  # may reuse the pks
        qr_kit.add(a, qr_kit.instance(3))
        rows = a.db.execute(
            "SELECT st.study_uid, se.series_uid, p.patient_id, se.n_instances, st.n_instances, p.n_instances "
            "FROM series se JOIN study st ON se.study_pk=st.pk JOIN patient p ON st.patient_pk=p.pk "
            "ORDER BY st.study_uid").fetchall()
        assert rows == [("1.2.3.1", "1.2.3.1.1", "P1", 1, 1, 1), ("1.9", "1.9.1", "P2", 1, 1, 1)]
        assert a.count("IMAGE") == 2
    finally:
        a.close()
        b.close()


def test_a_rolled_back_store_leaves_nothing_remembered(tmp_path):
    index = Index(str(tmp_path / "index.sqlite"))
    try:
        with pytest.raises(OSError), index.storing(qr_kit.instance(1), path=None, transfer_syntax="1.2.840.10008.1.2.1",
                                                   size=0):
            raise OSError("the rename failed")
        assert index.count("STUDY") == 0 and not index._known.studies and not index._known.series
        qr_kit.add(index, qr_kit.instance(2))
        assert index.count("STUDY") == index.count("SERIES") == index.count("IMAGE") == 1
    finally:
        index.close()
