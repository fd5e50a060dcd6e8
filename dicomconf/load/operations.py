"""The DICOM operations of a load run, one call each, over the scriptable SCU (PS3.8 7, PS3.7 9).

Theory of operation
-------------------
A :class:`Session` is one simulated modality's link to the target: at most one
association (:class:`dicomconf.scu.client.SCU` over a
:class:`dicomconf.scu.connection.Connection`) at a time.  Its methods are the
steps a Locust user times and reports, each returning the bytes it moved
(Locust's ``response_length``):

* :meth:`Session.open`: TCP (TLS when asked, PS3.15 B.1) and A-ASSOCIATE
  proposing every context the mix needs (PS3.8 7.1.1, 9.3.2);
* :meth:`Session.echo`, :meth:`Session.store`, :meth:`Session.find`,
  :meth:`Session.move`: one C-ECHO, C-STORE, C-FIND or C-MOVE (PS3.7 9.1.5,
  9.1.1, 9.1.2, 9.1.4);
* :meth:`Session.release` (PS3.8 7.2) or :meth:`Session.drop` (A-ABORT and
  close, PS3.8 7.3) when an association cannot go on.

A step that does not succeed raises :class:`LoadFailure`, whose text is the
reason Locust's failure table groups by: ``status 0xA700`` (PS3.7 Annex C),
``association rejected (1,1,7) ...`` (result, source, reason of the
A-ASSOCIATE-RJ, PS3.8 9.3.4), ``association aborted (2,6) ...``, ``no answer
within 10s``, ``connection refused ...``.  The text holds no value that
changes from one occurrence to the next, so equal causes make one row.

:class:`ObjectPool` holds the objects the store tasks send: generated ones
(pydicom, pixel data of the chosen size) and files.  A generated object gets
a new SOP Instance UID for every C-STORE, as a modality's images would; a
file goes out as it is, its bytes unchanged when the accepted transfer syntax
is the file's own.
"""

from __future__ import annotations

import itertools
import math
import socket
import ssl
import pydicom
from pydicom.uid import generate_uid

from dicomconf.load.config import PIXEL_ROW, Generated, LoadConfig, Task
from dicomconf.scu import services
from dicomconf.scu.client import SCU, Aborted, NotNegotiated, Rejected, UnexpectedReply, encode_dataset, load_dataset
from dicomconf.load.fastpath import LoadConnection, echo_pdus
from dicomconf.scu.connection import Closed, Silence, connect_failure
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.errors import RemoteProtocolError

# Statuses that end an operation well (PS3.7 C.1, C.3): success and the warnings (the operation was
# performed: coercion, elements discarded, data set not matching the SOP class, PS3.4 B.2.3).
WARNING_STATUSES = frozenset({0x0001, 0x0107, 0x0116})


class LoadFailure(Exception):
    """A step that did not succeed; ``str()`` is the reason Locust shows (and groups by)."""


def status_ok(status: int) -> bool:
    """True for success (0000) and the warning statuses (0001, 0107, 0116, Bxxx), PS3.7 Annex C."""
    return status == 0x0000 or status in WARNING_STATUSES or 0xB000 <= status <= 0xBFFF


def reason(exc: BaseException, timeout: float) -> str:
    """The failure text for ``exc``: one stable line per cause (see the module docstring)."""
    if isinstance(exc, LoadFailure):
        return str(exc)
    if isinstance(exc, Rejected):
        pdu = exc.pdu
        names = str(exc).split(": ", 1)[-1]
        return f"association rejected ({pdu.result},{pdu.source},{pdu.reason}): {names}"
    if isinstance(exc, Aborted):
        if exc.pdu is None:
            return "association aborted"
        return f"association aborted ({exc.pdu.source},{exc.pdu.reason}) {str(exc).split(' ', 2)[-1]}"
    if isinstance(exc, (Silence, services.Unfinished)):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, Closed):
        return str(exc)
    if isinstance(exc, (NotNegotiated, UnexpectedReply)):
        return str(exc)
    if isinstance(exc, RemoteProtocolError):
        return f"the peer broke the protocol: {exc}"
    if isinstance(exc, (OSError, ssl.SSLError)):
        return f"connection: {connect_failure(exc, timeout)[1]}"
    return f"{type(exc).__name__}: {exc}"


def _check(status: int) -> None:
    if not status_ok(status):
        raise LoadFailure(f"status 0x{status:04X}")


# ---------------------------------------------------------------- objects


def generate(spec: Generated, index: int) -> pydicom.Dataset:
    """One object of ``spec``: a 16-bit monochrome image whose pixel data is ``spec.size`` bytes,
    rounded up to whole rows of :data:`PIXEL_ROW` bytes (PS3.3 C.7.6.3)."""
    ds = pydicom.Dataset()
    ds.SOPClassUID = spec.sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "DICOMCONF^LOAD"
    ds.PatientID = spec.patient_id
    ds.StudyID = "LOAD"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Columns = PIXEL_ROW // 2
    ds.Rows = max(1, math.ceil(spec.size / PIXEL_ROW))
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes((index & 0xFF,)) * (ds.Rows * PIXEL_ROW)
    return ds


class ObjectPool:
    """The objects of the store tasks, handed out in turn (round robin)."""

    def __init__(self, config: LoadConfig) -> None:
        self.items: list[tuple[pydicom.Dataset, bytes | None, str | None, bool]] = []
        for spec in config.generated:
            self.items += [(generate(spec, i), None, None, True) for i in range(spec.count)]
        for path in config.files:
            ds, raw, ts = load_dataset(path)
            self.items.append((ds, raw, ts, False))
        self._turn = itertools.cycle(range(len(self.items))) if self.items else None

    def next(self) -> tuple[pydicom.Dataset, bytes | None, str | None, bool]:
        if self._turn is None:
            raise LoadFailure("no objects to store")
        return self.items[next(self._turn)]


# ---------------------------------------------------------------- the session

_RESOLVED: dict[tuple[str, int], str] = {}


def resolve(host: str, port: int) -> str:
    """The address ``host`` resolves to, looked up once per process: under gevent every lookup
    goes through a thread pool, which would cost more than the association itself.  A name that
    does not resolve is looked up again next time (and fails as a connection failure)."""
    key = (host, port)
    if key not in _RESOLVED:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        _RESOLVED[key] = str(infos[0][4][0])
    return _RESOLVED[key]



class Session:
    """One user's association to the target (see the module docstring)."""

    def __init__(self, config: LoadConfig, pool: ObjectPool | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.pool = pool
        self.tls = tls
        self.timeout = config.association.timeout
        self.scu: SCU | None = None
        self._contexts = config.contexts()

    @property
    def is_open(self) -> bool:
        return self.scu is not None

    def open(self) -> int:
        """Connect and associate (PS3.8 7.1.1); the A-ASSOCIATE-AC's length is the bytes moved."""
        target, assoc = self.config.target, self.config.association
        server_name = (target.tls.server_name or target.host) if target.tls is not None else None
        connection = LoadConnection.open(resolve(target.host, target.port), target.port, tls=self.tls,
                                         timeout=self.timeout, server_name=server_name)
        scu = SCU(connection, calling_ae=target.calling_ae, called_ae=target.called_ae,
                  max_pdu_length=assoc.max_pdu_length)
        try:
            scu.associate(self._contexts, transfer_syntaxes=assoc.transfer_syntaxes, timeout=self.timeout)
        except BaseException:
            connection.close()
            raise
        self.scu = scu
        return len(scu.last_received.raw) if scu.last_received is not None else 0

    def _scu(self) -> SCU:
        if self.scu is None:
            raise LoadFailure("no association")
        return self.scu

    def echo(self) -> int:
        """C-ECHO (PS3.7 9.1.5, 9.3.5); a status other than 0000 fails."""
        scu = self._scu()
        context_id = scu.context_for(C.VERIFICATION_SOP_CLASS)
        for pdu in echo_pdus(scu.next_message_id(), context_id, scu.peer_max_pdu_length):
            scu.connection.send(pdu)
        reply = scu.receive_message(self.timeout)
        if reply.name != "C-ECHO-RSP" or reply.status is None:
            raise UnexpectedReply(f"expected C-ECHO-RSP, received {reply.name}", reply)
        if reply.status != 0x0000:
            raise LoadFailure(f"status 0x{reply.status:04X}")
        return 0

    def store(self) -> int:
        """C-STORE the pool's next object (PS3.7 9.1.1); returns the data set's length."""
        scu = self._scu()
        if self.pool is None:
            raise LoadFailure("no objects to store")
        ds, raw, raw_ts, fresh = self.pool.next()
        sop_class = str(ds.SOPClassUID)
        context_id = scu.context_for(sop_class, raw_ts)
        ts = scu.accepted[context_id][1]
        if fresh:
            ds.SOPInstanceUID = generate_uid()
        data = raw if raw is not None and raw_ts == ts else encode_dataset(ds, ts)
        request = dimse.c_store_rq(scu.next_message_id(), sop_class, str(ds.SOPInstanceUID),
                                   context_id=context_id, data=data)
        scu.send_message(request)
        reply = scu.receive_message(self.timeout)
        if reply.name != "C-STORE-RSP" or reply.status is None:
            raise UnexpectedReply(f"expected C-STORE-RSP, received {reply.name}", reply)
        _check(int(reply.status))
        return len(data)

    def _identifier(self, task: Task) -> pydicom.Dataset:
        ds = pydicom.Dataset()
        ds.QueryRetrieveLevel = task.level
        for keyword, value in task.keys:
            setattr(ds, keyword, value)
        return ds

    def find(self, task: Task) -> int:
        """C-FIND (PS3.7 9.1.2); returns the bytes of the identifiers that came back."""
        outcome = services.find(self._scu(), task.model or "", self._identifier(task), within=self.timeout)
        if outcome.status is None:
            raise LoadFailure("no final C-FIND response")
        _check(outcome.status)
        return sum(len(m.data or b"") for m in outcome.responses)

    def move(self, task: Task) -> int:
        """C-MOVE to the task's destination (PS3.7 9.1.4); failed sub-operations fail it
        (PS3.4 C.4.2.1.3: the final response's counts)."""
        outcome = services.move(self._scu(), task.model or "", self._identifier(task), task.destination or "",
                                within=self.timeout)
        if outcome.status is None:
            raise LoadFailure("no final C-MOVE response")
        if outcome.failed:
            raise LoadFailure(f"status 0x{outcome.status:04X}: sub-operations failed")
        _check(outcome.status)
        return 0

    def release(self) -> int:
        """A-RELEASE (PS3.8 7.2); the association is gone afterwards whatever happened."""
        scu, self.scu = self._scu(), None
        try:
            scu.release(self.timeout)
        except BaseException:
            scu.connection.close()
            raise
        return 0

    def drop(self) -> None:
        """A-ABORT and close, quietly (PS3.8 7.3): after a failure the association is not trusted."""
        scu, self.scu = self.scu, None
        if scu is None:
            return
        try:
            scu.abort(C.ABORT_SOURCE_USER, C.ABORT_REASON_NOT_SPECIFIED)
        except (OSError, Closed):
            scu.connection.close()


def run_op(session: Session, task: Task) -> int:
    """The task's DICOM operation on the open association: the bytes moved."""
    if task.op == "echo":
        return session.echo()
    if task.op == "store":
        return session.store()
    if task.op == "find":
        return session.find(task)
    return session.move(task)


REQUEST_TYPES: dict[str, str] = {"echo": "C-ECHO", "store": "C-STORE", "find": "C-FIND", "move": "C-MOVE"}

__all__ = ["LoadFailure", "ObjectPool", "REQUEST_TYPES", "Session", "generate", "reason", "run_op", "status_ok"]
