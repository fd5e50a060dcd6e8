"""The reference SCU as an application: one job (echo, store or find), done as PS3.8 and PS3.7 ask.

Theory of operation
-------------------
:class:`ReferenceSCU` is what a well-behaved modality, viewer or router does
with one piece of work, built on the scriptable SCU (:mod:`dicomconf.scu.client`):
connect, request an association for what the job needs, run the operation,
release, and end every failure the way the requestor's rows of PS3.8 Table
9-10 say:

* A-ASSOCIATE-RJ: close the transport connection (AE-4); A-ABORT: close
  (AA-3); the acceptor's close: nothing more to do (AA-4);
* no answer within the job's timeout (association, DIMSE or release): send
  A-ABORT and close (the service-user gives up, PS3.8 7.3);
* a PDU that is invalid or unexpected (an unknown type, a malformed PDU, a
  P-DATA-TF longer than the maximum length we announced, a PDV on a context
  that was not accepted, a DIMSE message that breaks PS3.8 Annex E): A-ABORT
  with source 2 and the reason the core gives (AA-8), then close;
* the acceptor's own A-RELEASE-RQ while we wait: answer A-RELEASE-RP (AR-2,
  AR-4) and let the acceptor close; a release collision is answered as
  :meth:`dicomconf.scu.client.SCU.release` does (AR-8, AR-9).

C-STORE sends the file's data set in the accepted transfer syntax within the
acceptor's maximum length; C-FIND reads pending responses to the final one,
and sends C-CANCEL-RQ after ``cancel_after`` of them (PS3.7 9.3.2.3).  Each
response must come within the DIMSE timeout, and the C-FIND as a whole is
bounded too, so an acceptor answering "pending" for ever cannot hold the job:
after ``max_pending`` pending responses (default 100,000) or ``find_timeout``
seconds (default none), the SCU gives up with A-ABORT (PS3.8 7.3) and status 1.

The outcome is an exit status like a command-line SCU's (0 success, 1 the
operation failed or was refused, 2 the association failed) with the lines it
would print.  Each phase is a method, so a test can make an SCU that breaks
one rule (ignores the maximum length, never releases ...) by overriding one.
:func:`main` is ``python -m dicomconf.scu.app``, the same SCU as a command.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from dicomconf.scu.client import SCU, Aborted, NotNegotiated, Rejected, UnexpectedReply, load_dataset
from dicomconf.scu.connection import Closed, Connection, Silence
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.pdu import AAbort, AReleaseRP, AReleaseRQ

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
OK, FAILED, NO_ASSOCIATION = 0, 1, 2


@dataclass
class Job:
    """One piece of work for the reference SCU."""

    host: str
    port: int
    operation: str = "echo"  # echo, store, find
    called_ae: str = "ANY-SCP"
    calling_ae: str = "DICOMCONF-SCU"
    file: str | None = None  # store: a DICOM file
    query: dict = field(default_factory=lambda: {"QueryRetrieveLevel": "STUDY", "PatientID": "*",
                                                  "StudyInstanceUID": ""})
    cancel_after: int | None = None  # find: send C-CANCEL-RQ after this many pending responses
    max_pending: int = 100_000  # find: give up (A-ABORT) after this many pending responses
    find_timeout: float | None = None  # find: give up (A-ABORT) when the final response is not in within this
    max_pdu_length: int = 16382
    connect_timeout: float = 5.0
    association_timeout: float = 5.0
    dimse_timeout: float = 5.0
    release_timeout: float = 5.0


class Ended(Exception):
    """The association is over (the reason says how); ``status`` is the exit status."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class ReferenceSCU:
    """Does one :class:`Job`; see the module docstring."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.lines: list[str] = []
        self.conn: Connection | None = None
        self.scu: SCU | None = None
        self._checked = 0

    def say(self, text: str) -> None:
        self.lines.append(text)

    # ---------------------------------------------------------------- phases

    def run(self) -> int:
        """Do the job; the exit status (0, 1, 2)."""
        job = self.job
        try:
            self.conn = Connection.open(job.host, job.port, timeout=job.connect_timeout)
        except OSError as exc:
            self.say(f"cannot connect to {job.host}:{job.port}: {exc}")
            return NO_ASSOCIATION
        self.scu = SCU(self.conn, calling_ae=job.calling_ae, called_ae=job.called_ae,
                       max_pdu_length=job.max_pdu_length)
        try:
            self.associate()
            status = self.operate()
            self.release()
            return status
        except Ended as end:
            self.say(str(end))
            return end.status
        finally:
            self.conn.close()

    def contexts(self) -> list:
        job = self.job
        if job.operation == "store":
            ds, _raw, ts = load_dataset(job.file)
            syntaxes = [C.IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1"]
            if ts and ts not in syntaxes:
                syntaxes.insert(0, ts)
            return [(str(ds.SOPClassUID), syntaxes)]
        if job.operation == "find":
            return [(STUDY_ROOT_FIND, [C.IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1"])]
        return ["verification"]

    def associate(self) -> None:
        try:
            self.scu.associate(self.contexts(), timeout=self.job.association_timeout)
        except Rejected as exc:
            raise Ended(NO_ASSOCIATION, f"association rejected: {exc}") from None
        except Aborted as exc:
            raise Ended(NO_ASSOCIATION, f"association aborted: {exc}") from None
        except Closed:
            raise Ended(NO_ASSOCIATION, "the peer closed the connection before answering") from None
        except Silence:
            self.give_up("no answer to the A-ASSOCIATE-RQ")
        except UnexpectedReply as exc:
            self.protocol_error(exc.received, f"{exc}")
        self.check_received()

    def operate(self) -> int:
        op = self.job.operation
        try:
            if op == "echo":
                status = self.scu.echo(timeout=self.job.dimse_timeout)
            elif op == "store":
                status = self.scu.store(self.job.file, timeout=self.job.dimse_timeout)
            elif op == "find":
                status = self.find()
            else:
                raise ValueError(f"unknown operation {op!r}")
        except NotNegotiated as exc:
            self.say(f"{exc}")
            self.release()
            raise Ended(FAILED, "nothing to do on this association") from None
        except Aborted as exc:
            raise Ended(NO_ASSOCIATION, f"association aborted: {exc}") from None
        except Closed:
            raise Ended(NO_ASSOCIATION, "the peer closed the connection") from None
        except Silence:
            self.give_up(f"no {op} response within {self.job.dimse_timeout:g}s")
        except UnexpectedReply as exc:
            self.unexpected(exc)
        except RemoteProtocolError as exc:
            self.abort(C.ABORT_SOURCE_PROVIDER, exc.reason, f"invalid DIMSE message: {exc}")
        self.check_received()
        self.say(f"{op} status {status:#06x}")
        return OK if status in (0x0000, 0xB000, 0xB006, 0xB007) else FAILED

    def find(self) -> int:
        scu = self.scu
        context_id = scu.context_for(STUDY_ROOT_FIND)
        ts = scu.accepted[context_id][1]
        from pydicom import Dataset

        from dicomconf.scu.client import encode_dataset

        ds = Dataset()
        for keyword, value in self.job.query.items():
            setattr(ds, keyword, value)
        command = Dataset()  # C-FIND-RQ, PS3.7 9.3.2.1
        command.AffectedSOPClassUID = STUDY_ROOT_FIND
        command.CommandField = dimse.C_FIND_RQ
        command.MessageID = message_id = 1
        command.Priority = dimse.PRIORITY_MEDIUM
        command.CommandDataSetType = dimse.DATA_SET_PRESENT
        scu.send_message(dimse.Message(context_id, command, encode_dataset(ds, ts)))
        pending = 0
        started = time.monotonic()
        while True:
            self.check_find_bounds(pending, started)
            reply = scu.receive_message(self.job.dimse_timeout)
            self.check_received()
            if reply.name != "C-FIND-RSP" or reply.message_id_being_responded_to != message_id:
                raise UnexpectedReply(f"expected C-FIND-RSP to message {message_id}, received {reply.name}", reply)
            if reply.status not in (0xFF00, 0xFF01):
                return int(reply.status)
            pending += 1
            if self.job.cancel_after is not None and pending == self.job.cancel_after:
                cancel = Dataset()  # C-CANCEL-RQ, PS3.7 9.3.2.3
                cancel.CommandField = dimse.C_CANCEL_RQ
                cancel.MessageIDBeingRespondedTo = message_id
                cancel.CommandDataSetType = dimse.NO_DATA_SET
                scu.send_message(dimse.Message(context_id, cancel))

    def check_find_bounds(self, pending: int, started: float) -> None:
        """End a C-FIND that the acceptor keeps pending past ``max_pending`` responses or
        ``find_timeout`` seconds: A-ABORT (PS3.8 7.3), status 1."""
        job = self.job
        if pending >= job.max_pending:
            why = f"C-FIND still pending after {pending} pending responses (max_pending {job.max_pending})"
        elif job.find_timeout is not None and time.monotonic() - started >= job.find_timeout:
            why = f"C-FIND still pending after {job.find_timeout:g}s ({pending} pending responses)"
        else:
            return
        try:
            self.conn.send(AAbort(C.ABORT_SOURCE_USER, C.ABORT_REASON_NOT_SPECIFIED))
        except (OSError, Closed):
            pass
        raise Ended(FAILED, f"gave up: {why}; A-ABORT sent")

    def release(self) -> None:
        try:
            self.scu.release(timeout=self.job.release_timeout)
        except Aborted as exc:
            raise Ended(NO_ASSOCIATION, f"aborted while releasing: {exc}") from None
        except Closed:
            return
        except Silence:
            self.give_up("no A-RELEASE-RP")
        except UnexpectedReply as exc:
            self.protocol_error(exc.received, str(exc))

    # ---------------------------------------------------------------- ends

    def unexpected(self, exc: UnexpectedReply) -> None:
        """A PDU other than the response: the acceptor's A-RELEASE-RQ is answered (AR-2, AR-4),
        anything else is a protocol error (AA-8)."""
        received = exc.received
        pdu = getattr(received, "pdu", None)
        if isinstance(pdu, AReleaseRQ):
            try:
                self.conn.send(AReleaseRP())
                self.conn.wait_closed(self.job.release_timeout)
            except (Silence, Closed, OSError):
                pass
            raise Ended(FAILED, "the acceptor released the association before answering")
        if isinstance(received, dimse.Message):
            self.abort(C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_UNEXPECTED_PARAMETER, str(exc))
        self.protocol_error(received, str(exc))

    def protocol_error(self, received: Any, why: str) -> None:
        error = getattr(received, "error", None)
        reason = error.reason if isinstance(error, RemoteProtocolError) else C.ABORT_REASON_UNEXPECTED_PDU
        self.abort(C.ABORT_SOURCE_PROVIDER, reason, why)

    def check_received(self) -> None:
        """A received PDU that breaks PS3.8 (a must-level finding) is answered with A-ABORT (AA-8).
        What is wrong inside a whole DIMSE message (a missing element, a data set in another
        syntax: ``dimse.*`` findings other than a broken PDV sequence) is not a PDU fault: it is
        reported as it is and the operation goes on with what the message says."""
        findings = self.conn.findings
        new, self._checked = findings[self._checked:], len(findings)
        for f in new:
            if f.code.startswith("dimse.") and f.code != "dimse.invalid":
                self.say(f"{f.code}: {f.message} ({f.clause})")
            elif f.severity == "must":
                reason = (C.ABORT_REASON_UNRECOGNIZED_PDU if f.code == "pdu.unknown-type"
                          else C.ABORT_REASON_INVALID_PARAMETER_VALUE)
                self.abort(C.ABORT_SOURCE_PROVIDER, reason, f"{f.code}: {f.message}")

    def give_up(self, why: str) -> None:
        self.abort(C.ABORT_SOURCE_USER, C.ABORT_REASON_NOT_SPECIFIED, why)

    def abort(self, source: int, reason: int, why: str) -> None:
        try:
            self.conn.send(AAbort(source, reason))
        except (OSError, Closed):
            pass  # the peer has already gone: the association is over either way
        raise Ended(NO_ASSOCIATION, f"aborted (source {source}, reason {reason}): {why}")


def perform(job: Job, scu_class: type[ReferenceSCU] = ReferenceSCU) -> tuple[int, list[str]]:
    """Do ``job`` with ``scu_class``; (exit status, lines)."""
    app = scu_class(job)
    try:
        status = app.run()
    except Exception as exc:  # an SCU bug is an outcome to report, never a hung harness
        app.say(f"internal error: {type(exc).__name__}: {exc}")
        status = 3
    return status, app.lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dicomconf.scu.app",
                                     description="the reference SCU: one echo, store or find")
    parser.add_argument("operation", choices=("echo", "store", "find"))
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("file", nargs="?", help="store: the DICOM file")
    parser.add_argument("--called-ae", default="ANY-SCP")
    parser.add_argument("--calling-ae", default="DICOMCONF-SCU")
    parser.add_argument("--timeout", type=float, default=5.0, help="every timeout, in seconds")
    args = parser.parse_args(argv)
    t = args.timeout
    status, lines = perform(Job(args.host, args.port, args.operation, args.called_ae, args.calling_ae, args.file,
                                connect_timeout=t, association_timeout=t, dimse_timeout=t, release_timeout=t))
    for line in lines:
        print(line)
    return status


if __name__ == "__main__":
    sys.exit(main())
