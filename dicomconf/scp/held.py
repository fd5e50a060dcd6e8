"""A service request's data set while it arrives: held, within a bound of its own (PS3.7 9.3, 10.3).

Theory of operation
-------------------
C-FIND identifiers, C-MOVE/C-GET identifiers and DIMSE-N attribute lists are
small; the association's bound for a held data set (``max_dataset_length``,
2 GiB) is for C-STORE.  The connection gives the core a :class:`HeldDataSet`
as the data sink of such a request: it keeps the fragments up to
:data:`SERVICE_DATA_LIMIT`, past it only counts them, and the driver answers
the request out of resources (:data:`TOO_LARGE`, else 0213).
"""

from __future__ import annotations

from dicomconf.scp.storage import Spool
from dicomconf.ul import dimse

SERVICE_DATA_LIMIT = 16 << 20  # bytes of a request's identifier or attribute list held; more is refused
STATUS_RESOURCE_LIMITATION = 0x0213  # PS3.7 C.5: Failure, resource limitation (DIMSE-N)
# A request whose data set is past SERVICE_DATA_LIMIT: out of resources (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.5)
TOO_LARGE = {dimse.C_FIND_RQ: 0xA700, dimse.C_MOVE_RQ: 0xA701, dimse.C_GET_RQ: 0xA701}


class HeldDataSet(Spool):
    """A service request's data set, kept while it arrives up to ``limit`` bytes; past it only counted,
    and the request is refused out of resources (the association's own bound, ``max_dataset_length``,
    is for C-STORE data sets, far larger than any identifier)."""

    __slots__ = ("parts",)

    def __init__(self, limit: int = SERVICE_DATA_LIMIT) -> None:
        super().__init__(limit)
        self.parts: list[bytes] = []

    def write(self, buf) -> None:
        self.length += len(buf)
        if self.status is not None:
            return
        if self.limit is not None and self.length > self.limit:
            self.fail(0xA700, f"data set over {self.limit >> 20} MiB: not held")
            return
        self.parts.append(bytes(buf))

    def _abandon(self) -> None:
        self.parts = []

    def data(self) -> bytes:
        return b"".join(self.parts)


__all__ = ["HeldDataSet", "SERVICE_DATA_LIMIT", "STATUS_RESOURCE_LIMITATION", "TOO_LARGE"]
