"""How a C-FIND's rows from the index become candidates (PS3.4 C.4.1.3.1.2, C.2.2.2).

Theory of operation
-------------------
:meth:`dicomconf.services.index.Index.query` turns an identifier into one SQL
statement over the index's tables (the keys with a column matched there); a
:class:`Query` carries that statement and the layout of its rows: the
primary key, the raw values of the selected columns, then, when a key needs
them, each level's stored attributes (pydicom's JSON model).
:meth:`Query.candidate` builds the pydicom data set of one row, which the
Python predicate (:func:`~dicomconf.services.matching.match_dataset`) and the
general response path read; the C-FIND fast path
(:mod:`dicomconf.services.find_wire`) reads the raw values instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement


@dataclass(frozen=True, slots=True)
class Query:
    """A C-FIND's SQL over the index (:meth:`Index.query`) and how each of its rows becomes a candidate.

    ``cols`` are the (keyword, :class:`Column`) pairs whose raw values follow the primary key
    in each row; ``attrs``: the levels' stored attributes follow them; ``exact``: the SQL
    alone decides the match (no key is left to :func:`match_dataset`).
    """

    statement: str
    params: list
    cols: list
    attrs: bool
    exact: bool
    wanted_tags: set

    def candidate(self, row: tuple) -> Dataset:
        """The candidate data set of one row: the wanted stored attributes, then the column values."""
        candidate = Dataset()
        cols = self.cols
        if self.attrs:
            for blob in row[1 + len(cols):]:
                if blob and blob != "{}":
                    model = {t: v for t, v in json.loads(blob).items() if t in self.wanted_tags}
                    if model:
                        candidate.update(Dataset.from_json(model))
        for (keyword, column), value in zip(cols, row[1:]):
            if value is None or value == "" or (keyword in candidate and not column.count):
                continue
            if column.style == "python":
                value = value.split("\\")
            candidate[keyword] = _element(keyword, value)
        return candidate


def _element(keyword: str, value):
    return DataElement(tag_for_keyword(keyword), dictionary_VR(keyword), value)


__all__ = ["Query"]
