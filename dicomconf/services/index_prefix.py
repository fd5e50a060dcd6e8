"""The attributes a store indexes, read from the first received bytes of its data set (PS3.5 7.1, PS3.10 7.1).

Theory of operation
-------------------
The index reads every attribute of a stored instance that comes before its
pixel data (:func:`dicomconf.services.index.read_for_index`, pydicom's
``stop_before_pixels``).  A directory store used to read them back from the
temporary file it had just written; :func:`dataset_from_prefix` reads them
instead from the data set's first fragments, which the spool keeps as they
pass (a bounded prefix, :data:`PREFIX_BYTES`).  The answer is the same data
set only when the prefix holds every attribute the file read would return,
so it is given only when the parse reached a Pixel Data element
((7FE0,0008), (7FE0,0009) or (7FE0,0010), where ``stop_before_pixels``
stops) or the prefix is the whole data set; in every other case (a header
longer than the prefix, elements out of ascending order, a deflated transfer
syntax, an element pydicom cannot frame) it answers None and the caller
reads the file as before, which also words the refusal (C000, PS3.4 B.2.3).
Like pydicom's file read, it leaves the elements raw: the index converts
what it needs (:mod:`dicomconf.services.index_levels`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from pydicom import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

PREFIX_BYTES = 64 * 1024  # the first bytes of a data set a spool keeps for the index
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})  # Float, Double Float, Pixel Data (PS3.6)


def dataset_from_prefix(parts: Sequence, transfer_syntax: str, whole: bool) -> Dataset | None:
    """The data set's top-level attributes before its pixel data, read from ``parts`` (its first bytes), or None.

    ``whole`` says that ``parts`` are the entire data set.  None whenever the
    prefix may not hold every attribute a read of the stored file would give
    (see the module docstring).  The first part is read alone first: it
    usually reaches the pixel data, and then nothing is joined.
    """
    if not parts:
        return None
    try:
        uid = UID(transfer_syntax)
        if uid.is_deflated or not uid.is_transfer_syntax:
            return None
    except Exception:  # noqa: BLE001 - not a UID pydicom knows: the caller reads the file
        return None
    if len(parts) > 1:
        ds = _read(parts[0], uid, False)
        if ds is not None:
            return ds
    return _read(parts[0] if len(parts) == 1 else b"".join(parts), uid, whole)


def _read(data, uid: UID, whole: bool) -> Dataset | None:
    """``data`` read up to a Pixel Data element; None unless it got there (or ``whole``), in ascending order."""
    try:
        state = {"last": -1, "pixels": False, "disordered": False}

        def stop(tag, vr, length) -> bool:
            if tag in PIXEL_TAGS:
                state["pixels"] = True
                return True
            if tag <= state["last"]:
                state["disordered"] = True
                return True
            state["last"] = tag
            return False

        ds = read_dataset(io.BytesIO(data), uid.is_implicit_VR, uid.is_little_endian, stop_when=stop)
        if state["disordered"] or not (state["pixels"] or whole):
            return None
        return ds  # raw elements, converted when the index reads them (as pydicom's file read leaves them)
    except Exception:  # noqa: BLE001 - anything unusual: the caller reads the file, as before
        return None


__all__ = ["PREFIX_BYTES", "dataset_from_prefix"]
