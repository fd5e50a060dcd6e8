"""Modality Worklist C-FIND as a service, from a YAML file or a directory of DICOM files (PS3.4 K.6).

Theory of operation
-------------------
A worklist item is one Scheduled Procedure Step with the patient, visit and
request attributes around it (PS3.4 K.6.1.1).  :class:`WorklistSource` reads
the items once, from

* a YAML file: a list of items, each a mapping of attribute keyword to value;
  a sequence is a list of such mappings, a multi-valued attribute a list of
  scalars, ``null`` or ``""`` an empty value.  Scalars are taken as the text
  written (``20261207`` is a DA, not a number; YAML's own date and octal
  readings do not apply).  A fault is a :class:`WorklistError` reading
  ``file:line: message`` (an unknown keyword, a value the VR refuses, a
  list where a mapping belongs ...), the way every YAML file of the project
  reports.
* a directory: every regular file in it (not its subdirectories, not dot
  files) a DICOM file holding one item.

and again on :meth:`WorklistSource.reload` (a failed reload keeps the items
it had).  :class:`WorklistService` answers C-FIND-RQs for the Modality
Worklist Information Model (``handle(request)`` is the handler of
:mod:`dicomconf.services.base`):

* the identifier's keys are matched with PS3.4 C.2.2.2 by
  :func:`dicomconf.services.matching.match_dataset`; the Scheduled Procedure
  Step Sequence's keys sit in its one item (K.6.1.2.2, C.2.2.2.6) and a
  worklist item matches when one of its steps matches them; only the steps
  that match are returned;
* each match is a pending response, FF00, whose identifier holds exactly the
  requested keys (PS3.4 C.4.1.1.3.2): the item's value, or the key empty
  when the item lacks it (return keys are type 2 in K.6.1.2.2), and
  Specific Character Set when the item has one;
* an identifier that is not one (no data set, a Scheduled Procedure Step
  Sequence of several items) is A900 "identifier does not match SOP class";
  a failure inside the service is C000 "unable to process"; a C-CANCEL-RQ
  ends the exchange with FE00; the end of the matches is 0000 (statuses:
  PS3.4 K.4.1.1.4, Table K.4-1 — FF01 is never sent, since every requested
  key is returned, empty when the item has no value).

A scenario's :class:`Misbehaviour` answers a scripted status instead, delays
each response or aborts.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import yaml
from pydicom import Dataset, config, dcmread
from pydicom.datadict import dictionary_has_tag, dictionary_VR, tag_for_keyword
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID_dictionary
from pydicom.valuerep import validate_value

from dicomconf.services.base import Cancel, Exchange, Misbehaviour, Reply, Request
from dicomconf.services.matching import match_dataset

__all__ = [
    "CANCEL",
    "IDENTIFIER_DOES_NOT_MATCH",
    "OUT_OF_RESOURCES",
    "PENDING",
    "PENDING_OPTIONAL_KEYS_NOT_SUPPORTED",
    "SUCCESS",
    "UNABLE_TO_PROCESS",
    "WORKLIST_SOP_CLASS",
    "WorklistError",
    "WorklistService",
    "WorklistSource",
    "load_dicom_items",
    "load_yaml_items",
]

WORKLIST_SOP_CLASS = next(uid for uid, e in UID_dictionary.items() if e[4] == "ModalityWorklistInformationModelFind")

# C-FIND statuses of the Basic Worklist Management Service (PS3.4 K.4.1.1.4, Table K.4-1).
SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_OPTIONAL_KEYS_NOT_SUPPORTED = 0xFF01
CANCEL = 0xFE00
OUT_OF_RESOURCES = 0xA700
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000

_SPS = tag_for_keyword("ScheduledProcedureStepSequence")
_CHARSET = tag_for_keyword("SpecificCharacterSet")
_NUMBER_VRS = {"US": int, "SS": int, "UL": int, "SL": int, "UV": int, "SV": int, "FL": float, "FD": float}
_NULL = "tag:yaml.org,2002:null"


class WorklistError(Exception):
    """A worklist source that cannot be read, located: ``file:line: message`` (or ``file: message``)."""


# ------------------------------------------------------------------ reading


def load_yaml_items(path: str | os.PathLike) -> list[Dataset]:
    """The worklist items of a YAML file (see the module's theory); faults raise :class:`WorklistError`."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise WorklistError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise WorklistError(f"{name}: not UTF-8 text: {exc.reason}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}" if mark is not None else name
        raise WorklistError(f"{where}: YAML syntax error: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise WorklistError(f"{name}: YAML error: {exc}") from None
    if root is None:
        return []
    if not isinstance(root, yaml.SequenceNode):
        raise WorklistError(f"{name}:{root.start_mark.line + 1}: a worklist is a list of items (mappings)")
    return [_dataset(node, name, "item") for node in root.value]


def _dataset(node: yaml.Node, name: str, what: str) -> Dataset:
    """A mapping node as a Dataset, each key an attribute keyword (PS3.6)."""
    if not isinstance(node, yaml.MappingNode):
        raise WorklistError(f"{name}:{node.start_mark.line + 1}: {what} must be a mapping of keyword: value")
    ds = Dataset()
    for key_node, value_node in node.value:
        line = key_node.start_mark.line + 1
        keyword = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        tag = tag_for_keyword(keyword) if isinstance(keyword, str) else None
        if tag is None:
            raise WorklistError(f"{name}:{line}: {keyword!r} is not a DICOM attribute keyword")
        if tag in ds:
            raise WorklistError(f"{name}:{line}: {keyword} given twice")
        vr = dictionary_VR(tag)
        if vr == "SQ":
            if value_node.tag == _NULL:
                ds.add_new(tag, vr, [])
            elif isinstance(value_node, yaml.SequenceNode):
                ds.add_new(tag, vr, [_dataset(item, name, f"an item of {keyword}") for item in value_node.value])
            else:
                raise WorklistError(f"{name}:{line}: {keyword} is a sequence: give a list of mappings")
            continue
        ds.add_new(tag, vr, _value(value_node, vr, keyword, name))
    return ds


def _value(node: yaml.Node, vr: str, keyword: str, name: str) -> Any:
    """A scalar or a list of scalars as the element value its VR takes, checked (PS3.5 6.2)."""
    line = node.start_mark.line + 1
    if isinstance(node, yaml.SequenceNode):
        parts = node.value
    elif isinstance(node, yaml.ScalarNode):
        if node.tag == _NULL:
            return None
        parts = [node]
    else:
        raise WorklistError(f"{name}:{line}: {keyword} takes a value or a list of values, not a mapping")
    values: list[Any] = []
    for part in parts:
        if not isinstance(part, yaml.ScalarNode):
            raise WorklistError(f"{name}:{part.start_mark.line + 1}: {keyword}: a value must be a scalar")
        text = part.value
        try:
            value: Any = _NUMBER_VRS[vr](text) if vr in _NUMBER_VRS else text
            if vr not in _NUMBER_VRS:
                validate_value(vr, value, config.RAISE)
        except (ValueError, TypeError) as exc:
            reason = str(exc).split(" Please see")[0]
            raise WorklistError(f"{name}:{part.start_mark.line + 1}: {keyword} ({vr}) {text!r}: {reason}") from None
        values.append(value)
    return values[0] if len(values) == 1 and isinstance(node, yaml.ScalarNode) else values


def load_dicom_items(directory: str | os.PathLike) -> list[Dataset]:
    """One worklist item per DICOM file directly in ``directory``, in name order."""
    base = Path(directory)
    try:
        names = sorted(p for p in base.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise WorklistError(f"{base}: cannot list: {exc.strerror or exc}") from None
    return [_read_item(path) for path in names]


def _read_item(path: Path) -> Dataset:
    """A Part 10 file, or a bare data set (as worklist tools often write them, PS3.10 7.1 without preamble).

    A bare data set is accepted only when every top-level tag is a public one
    of the dictionary or a private one, so that a stray text file is refused.
    """
    try:
        try:
            return dcmread(path)
        except InvalidDicomError:
            with warnings.catch_warnings():  # a stray file's made-up tags warn while being judged
                warnings.simplefilter("ignore")
                ds = dcmread(path, force=True)
                if len(ds) and all(el.tag.is_private or dictionary_has_tag(el.tag) for el in ds):
                    return ds
            raise InvalidDicomError("neither a Part 10 file nor a data set") from None
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise WorklistError(f"{path}: not a DICOM file: {exc}") from None


class WorklistSource:
    """The items of a worklist file or directory, read once and again on :meth:`reload`."""

    def __init__(self, path: str | os.PathLike | None = None, items: list[Dataset] | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self._lock = threading.Lock()
        self._items: list[Dataset] = list(items or [])
        if self.path is not None:
            self.reload()

    def reload(self) -> int:
        """Read the source again; return the item count.  On a fault the old items stay and it raises."""
        if self.path is None:
            return len(self._items)
        items = load_dicom_items(self.path) if os.path.isdir(self.path) else load_yaml_items(self.path)
        with self._lock:
            self._items = items
        return len(items)

    def items(self) -> list[Dataset]:
        """The current items (a snapshot of the list; the datasets are shared, do not edit them)."""
        with self._lock:
            return list(self._items)


# ------------------------------------------------------------------ answering


class WorklistService:
    """The Modality Worklist C-FIND SCP (PS3.4 K.6) over a :class:`WorklistSource`."""

    def __init__(self, source: WorklistSource, *, misbehaviour: Misbehaviour | None = None) -> None:
        self.source = source
        self.misbehaviour = misbehaviour or Misbehaviour()

    def handle(self, request: Request) -> Exchange:
        """C-FIND-RQ → a pending response per match, then the final one (PS3.4 K.4.1.1, C.4.1.3)."""
        shape = self.misbehaviour.shape
        refusal = self.misbehaviour.refusal()
        if refusal is not None:
            yield refusal
            return
        identifier = request.dataset
        problem = _identifier_problem(identifier)
        if problem is not None:
            yield shape(Reply(IDENTIFIER_DOES_NOT_MATCH, None, {"ErrorComment": problem}))
            return
        assert identifier is not None
        try:
            for item in self.source.items():
                answer = self._answer(identifier, item)
                if answer is not None:
                    yield shape(Reply(PENDING, answer))
        except Cancel:
            yield shape(Reply(CANCEL))
            return
        except Exception as exc:  # noqa: BLE001 - a fault while matching is the service's "unable to process"
            yield shape(Reply(UNABLE_TO_PROCESS, None, {"ErrorComment": f"{type(exc).__name__}: {exc}"[:64]}))
            return
        yield shape(Reply(SUCCESS))

    def matches(self, identifier: Dataset) -> list[Dataset]:
        """The response identifiers for ``identifier``, without the protocol around them (for tests, scenarios)."""
        found = (self._answer(identifier, item) for item in self.source.items())
        return [answer for answer in found if answer is not None]

    @staticmethod
    def _answer(identifier: Dataset, item: Dataset) -> Dataset | None:
        """The response identifier for ``item``, or None when it does not match (K.6.1.2.2, C.2.2.2)."""
        top = Dataset()
        for element in identifier:
            if element.tag != _SPS:
                top.add(element)
        if not match_dataset(top, item):
            return None
        steps = None
        if _SPS in identifier:
            keys = identifier[_SPS].value[0] if identifier[_SPS].value else Dataset()
            candidates = list(item[_SPS].value) if _SPS in item and item[_SPS].VR == "SQ" else []
            steps = [step for step in candidates if match_dataset(keys, step)]
            if not steps and not (candidates == [] and match_dataset(keys, Dataset())):
                return None
        answer = _returned(identifier, item)
        if steps is not None:
            wanted = identifier[_SPS].value[0] if identifier[_SPS].value else None
            answer[_SPS].value = [_returned(wanted, step) if wanted is not None and len(wanted) else _full(step)
                                  for step in steps]
        return answer


def _identifier_problem(identifier: Dataset | None) -> str | None:
    """Why an identifier is not a Modality Worklist identifier (PS3.4 K.6.1.2.2, C.2.2.2.6), or None."""
    if identifier is None:
        return "the C-FIND-RQ has no identifier"
    if _SPS in identifier:
        element = identifier[_SPS]
        if element.VR != "SQ":
            return "Scheduled Procedure Step Sequence is not a sequence"
        if len(element.value) > 1:
            return "Scheduled Procedure Step Sequence key has more than one item"
    return None


def _returned(wanted: Dataset, item: Dataset) -> Dataset:
    """Exactly the keys of ``wanted``, with ``item``'s values, empty where it has none (C.4.1.1.3.2)."""
    out = Dataset()
    if _CHARSET in item:
        out.add_new(_CHARSET, "CS", item[_CHARSET].value)
    elif _CHARSET in wanted:
        out.add_new(_CHARSET, "CS", None)  # asked for: the default repertoire (PS3.5 6.1.2.5.1)
    for key in wanted:
        if key.tag == _CHARSET:
            continue
        if key.tag not in item:
            out.add_new(key.tag, key.VR, [] if key.VR == "SQ" else None)
            continue
        got = item[key.tag]
        if key.VR == "SQ" and got.VR == "SQ":
            sub = key.value[0] if key.value else None
            items = [_returned(sub, x) if sub is not None and len(sub) else _full(x) for x in got.value]
            out.add_new(key.tag, "SQ", items)
        else:
            out.add_new(key.tag, got.VR, got.value)
    return out


def _full(item: Dataset) -> Dataset:
    """A copy of an item with all its attributes (a sequence key with no item keys, C.2.2.2.6)."""
    out = Dataset()
    for element in item:
        if element.VR == "SQ":
            out.add_new(element.tag, "SQ", [_full(x) for x in element.value])
        else:
            out.add_new(element.tag, element.VR, element.value)
    return out
