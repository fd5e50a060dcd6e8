"""What the index keeps of a data set's levels, computed once per distinct patient, study and series (PS3.4 C.6.2.1).

Theory of operation
-------------------
The index turns each level's attributes (:func:`dicomconf.services.index.split_levels`)
into its columns and a JSON document of pydicom's model; pydicom converts
every element on the way, tens of microseconds each.  A modality sends many
instances of one series: their patient, study and series attributes repeat
byte for byte.  :class:`LevelRows` splits a data set by tag without
converting anything, keys each of those three levels by what decides its
result (every element's tag, VR as received, encoding and value bytes, and
the data set's Specific Character Set (0008,0005)), and keeps the last
:data:`LevelRows.SIZE` results; a level seen before costs a look-up and none
of its elements is converted.  A level with an element already converted
(a sequence, for instance; a UID read already is keyed by its value) or whose
dictionary VR is ambiguous (resolved from other elements, PS3.5 A.1) has no
key and is computed as always; an element pydicom cannot convert raises the
index's "cannot understand" error (C000, PS3.4 B.2.3); the
instance level, which differs per instance, is always computed.  The
results are those of the callbacks the index passes in, so the rows are the
same whether or not a level was seen before.

A level that is computed (the instance's always) is built element by element,
and most of an instance's own elements repeat across its series too (SOP
Class, rows, columns, bits, photometric interpretation ...): each short raw
element (at most :data:`LevelRows.ELEMENT_BYTES` value bytes, not a sequence,
its VR unambiguous) is remembered the same way, by tag, VR, encoding, value
bytes and character set, with its converted element and its JSON; the last
:data:`LevelRows.ELEMENTS` of them are kept.  Only the elements that differ
(the SOP Instance UID, the instance number, a position) are converted.  The
JSON is pydicom's per-element model (``DataElement.to_json_dict``), each
element's remembered as its encoded text and joined in tag order, the text
``json.dumps`` gives ``Dataset.to_json_dict``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement

CACHED_LEVELS = ("PATIENT", "STUDY", "SERIES")
_CHARSET = 0x00080005


def _ambiguous(tag: int) -> bool:
    try:
        return " or " in dictionary_VR(tag)
    except KeyError:
        return True  # not in the dictionary: its VR comes from elsewhere


class LevelRows:
    """Each level's (column values, JSON) of a data set, the three upper levels remembered by their raw bytes."""

    SIZE = 256
    ELEMENTS = 4096  # converted elements remembered
    ELEMENT_BYTES = 256  # longer values are converted every time

    def __init__(self, levels: tuple[str, ...], level_of: Callable[[str, int], str],
                 bulk_vrs: frozenset, values: Callable[[str, dict[int, DataElement]], dict],
                 error: type[Exception] = ValueError, read: frozenset | None = None) -> None:
        self.levels = levels
        self.error = error  # raised for an element pydicom cannot convert (the index's "cannot understand")
        self.level_of = level_of
        self.bulk_vrs = bulk_vrs
        self.values = values  # (level, that level's elements by tag) -> column values
        self.read = read  # the tags ``values`` reads (None: any), the only ones given to it
        self._memo: OrderedDict = OrderedDict()
        self._elements: OrderedDict = OrderedDict()  # raw key -> (converted element or None when bulk, JSON)
        self._tag_level: dict[int, tuple[str, bool]] = {}  # tag -> (level, VR ambiguous)

    def _where(self, tag: int) -> tuple[str, bool]:
        found = self._tag_level.get(tag)
        if found is None:
            found = self._tag_level[tag] = (self.level_of(keyword_for_tag(tag), tag >> 16), _ambiguous(tag))
        return found

    def rows(self, ds: Dataset) -> dict[str, tuple[dict, str]]:
        """Level -> (column values, attrs JSON) for ``ds``; ``UnindexableError`` as the callbacks raise it."""
        tags: dict[str, list[tuple]] = {level: [] for level in self.levels}  # (tag, element as held, ambiguous)
        keys: dict[str, list | None] = {level: [] for level in CACHED_LEVELS}
        where = self._tag_level
        for tag, raw in ds.items():  # elements as held: iterating the Dataset would convert every one
            tag = int(tag)
            group = tag >> 16
            if group in (0x0002, 0x7FE0) or tag & 0xFFFF == 0 or tag == _CHARSET:
                continue
            level, ambiguous = where.get(tag) or self._where(tag)
            tags[level].append((tag, raw, ambiguous))
            key = keys.get(level)
            if key is None:
                continue
            if ambiguous:
                keys[level] = None
            elif type(raw) is RawDataElement:
                key.append((tag, raw.VR, raw.is_implicit_VR, raw.is_little_endian, raw.value))
            elif raw.VR == "UI":  # a UID the index read already (Study, Series Instance UID)
                key.append((tag, "UI", str(raw.value)))
            else:
                keys[level] = None
        charset = ds.get_item(_CHARSET)
        charset = None if charset is None else (charset.value if type(charset) is RawDataElement else str(charset.value))
        out: dict[str, tuple[dict, str]] = {}
        for level in self.levels:
            key = keys.get(level)
            memo_key = None if key is None else (level, charset, tuple(key))
            if memo_key is not None:
                hit = self._memo.get(memo_key)
                if hit is not None:
                    self._memo.move_to_end(memo_key)
                    out[level] = hit
                    continue
            out[level] = result = self._compute(level, ds, tags[level], charset)
            if memo_key is not None:
                self._memo[memo_key] = result
                if len(self._memo) > self.SIZE:
                    self._memo.popitem(last=False)
        return out

    def _compute(self, level: str, ds: Dataset, tags: list[tuple], charset) -> tuple[dict, str]:
        """(column values, attrs JSON) of one level: its elements converted, or remembered (module docstring)."""
        columns: dict[int, DataElement] = {}  # the elements ``values`` reads, by tag
        fragments: list[str] = []  # '"ggggeeee":{...}' per element, in tag order
        elements = self._elements
        read = self.read
        for tag, raw, ambiguous in tags:
            key = None
            if (type(raw) is RawDataElement and raw.VR != "SQ" and raw.value is not None
                    and len(raw.value) <= self.ELEMENT_BYTES and not ambiguous):
                key = (tag, raw.VR, raw.is_implicit_VR, raw.is_little_endian, raw.value, charset)
                hit = elements.get(key)
                if hit is not None:
                    elements.move_to_end(key)
                    if hit[0] is not None:
                        if read is None or tag in read:
                            columns[tag] = hit[0]
                        fragments.append(hit[1])
                    continue
            try:
                elem = ds[tag]
            except Exception as exc:  # noqa: BLE001 - a value pydicom refuses: not understood
                raise self.error(f"attribute {tag:08X} cannot be read: {exc}") from None
            if elem.VR == "SQ":
                key = None  # items are data sets of their own: converted every time
            if elem.VR in self.bulk_vrs:
                kept = None
            else:
                try:
                    model = elem.to_json_dict(None, 1 << 30)
                except Exception as exc:  # noqa: BLE001 - a value pydicom cannot render: not understood
                    raise self.error(f"an attribute cannot be encoded: {exc}") from None
                kept = (elem, f'"{tag:08X}":{json.dumps(model, separators=(",", ":"))}')
                if read is None or tag in read:
                    columns[tag] = elem
                fragments.append(kept[1])
            if key is not None:
                elements[key] = kept or (None, None)
                if len(elements) > self.ELEMENTS:
                    elements.popitem(last=False)
        return self.values(level, columns), "{" + ",".join(fragments) + "}"


__all__ = ["CACHED_LEVELS", "LevelRows"]
