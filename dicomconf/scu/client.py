"""The high-level SCU: associate, echo, store, release, abort (PS3.8 7, PS3.7 9).

Theory of operation
-------------------
:class:`SCU` plays the association-requestor over a
:class:`~dicomconf.scu.connection.Connection`.  It keeps no state machine
(the harness must be able to say anything at any moment); it only remembers
what it negotiated: the accepted presentation contexts
(``accepted[id] = (abstract syntax, transfer syntax)``) and the peer's Maximum
Length (``peer_max_pdu_length``, PS3.8 D.1, 0 = unlimited).

Outgoing DIMSE messages are cut into P-DATA-TF PDUs by
:func:`dicomconf.ul.dimse.fragment` within the peer's limit; incoming PDVs are
put back together by :class:`dicomconf.ul.dimse.MessageAssembler`.  Each call
waits for its reply with a timeout and turns what the peer says instead into
an exception: :class:`Rejected` (A-ASSOCIATE-RJ), :class:`Aborted` (A-ABORT),
:class:`UnexpectedReply` (anything else, including bytes that did not
decode); :class:`~dicomconf.scu.connection.Silence` and
:class:`~dicomconf.scu.connection.Closed` come through from the connection.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import time
from collections import deque
from typing import Any, Iterable, Mapping

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.uid import UID, UID_dictionary

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.errors import LocalProtocolError
from dicomconf.ul.items import (
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextRQ,
    RoleSelection,
    SOPClassExtendedNegotiation,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
)
from dicomconf.scu.connection import Connection, Received, Silence

# Short context names a scenario may use, each mapped to a pydicom UID keyword.
CONTEXT_ALIASES: dict[str, str] = {
    "verification": "Verification",
    "ct": "CTImageStorage",
    "enhanced-ct": "EnhancedCTImageStorage",
    "mr": "MRImageStorage",
    "enhanced-mr": "EnhancedMRImageStorage",
    "cr": "ComputedRadiographyImageStorage",
    "dx": "DigitalXRayImageStorageForPresentation",
    "mg": "DigitalMammographyXRayImageStorageForPresentation",
    "us": "UltrasoundImageStorage",
    "nm": "NuclearMedicineImageStorage",
    "pt": "PositronEmissionTomographyImageStorage",
    "xa": "XRayAngiographicImageStorage",
    "sc": "SecondaryCaptureImageStorage",
    "sr": "BasicTextSRStorage",
    "rtplan": "RTPlanStorage",
    "rtstruct": "RTStructureSetStorage",
    "rtdose": "RTDoseStorage",
    "rtimage": "RTImageStorage",
    "patient-find": "PatientRootQueryRetrieveInformationModelFind",
    "study-find": "StudyRootQueryRetrieveInformationModelFind",
    "patient-move": "PatientRootQueryRetrieveInformationModelMove",
    "study-move": "StudyRootQueryRetrieveInformationModelMove",
    "patient-get": "PatientRootQueryRetrieveInformationModelGet",
    "study-get": "StudyRootQueryRetrieveInformationModelGet",
    "worklist": "ModalityWorklistInformationModelFind",
    "storage-commitment": "StorageCommitmentPushModel",
    "mpps": "ModalityPerformedProcedureStep",
}
DEFAULT_TRANSFER_SYNTAXES: tuple[str, ...] = (C.IMPLICIT_VR_LITTLE_ENDIAN, pydicom.uid.ExplicitVRLittleEndian)
_GROUP_LENGTH_ELEMENT = 12  # (0002,0000) UL in explicit VR little endian: tag, VR, length, value
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_BY_KEYWORD: dict[str, str] = {entry[4]: uid for uid, entry in UID_dictionary.items() if entry[4]}


class Rejected(Exception):
    """The peer answered the A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ (PS3.8 9.3.4)."""

    def __init__(self, pdu: AAssociateRJ, received: Received | None = None) -> None:
        reason = C.RJ_REASON_NAMES.get((pdu.source, pdu.reason), f"reason {pdu.reason}")
        result = C.RJ_RESULT_NAMES.get(pdu.result, f"result {pdu.result}")
        super().__init__(f"association rejected: {result}, {reason}")
        self.pdu = pdu
        self.received = received


class Aborted(Exception):
    """The peer sent an A-ABORT (PS3.8 9.3.8); ``pdu`` is None when the abort was local.

    ``received`` is the :class:`Received` it came in, when it came from the peer.
    """

    def __init__(self, pdu: AAbort | None, received: Received | None = None) -> None:
        if pdu is None:
            text = "association aborted"
        else:
            text = f"association aborted by {C.ABORT_SOURCE_NAMES.get(pdu.source, f'source {pdu.source}')}"
            if pdu.source == C.ABORT_SOURCE_PROVIDER:
                text += f", {C.ABORT_REASON_NAMES.get(pdu.reason, f'reason {pdu.reason}')}"
        super().__init__(text)
        self.pdu = pdu
        self.received = received


class UnexpectedReply(Exception):
    """The peer said something other than what the operation waits for.

    ``received`` is the :class:`Received` PDU or the :class:`dimse.Message`.
    """

    def __init__(self, message: str, received: Any) -> None:
        super().__init__(message)
        self.received = received


class NotNegotiated(LookupError):
    """No accepted presentation context fits the operation."""


# ---------------------------------------------------------------- naming


def resolve_uid(name: str, *, what: str = "SOP class") -> str:
    """A UID from a short name (``"ct"``), a pydicom keyword (``"CTImageStorage"``) or a UID."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a name, keyword or UID string, got {name!r}")
    if _UID_RE.match(name):
        return name
    keyword = CONTEXT_ALIASES.get(name.lower().replace("_", "-"), name)  # study_find is study-find
    try:
        return _BY_KEYWORD[keyword]
    except KeyError:
        raise ValueError(
            f"unknown {what} {name!r}: use a UID, a pydicom keyword or one of {', '.join(CONTEXT_ALIASES)}"
        ) from None


def build_contexts(
    contexts: Iterable[Any], transfer_syntaxes: Iterable[str] | None = None
) -> tuple[PresentationContextRQ, ...]:
    """Presentation context items for ``contexts``, IDs 1, 3, 5, ... (PS3.8 9.3.2.2).

    Each entry is a name/keyword/UID (proposed with ``transfer_syntaxes`` or
    the default two little-endian syntaxes), a ``(name, [transfer syntaxes])``
    pair, or a ready :class:`PresentationContextRQ` (kept as is).
    """
    if isinstance(contexts, str):
        contexts = [contexts]
    default = tuple(resolve_uid(t, what="transfer syntax") for t in (transfer_syntaxes or DEFAULT_TRANSFER_SYNTAXES))
    out: list[PresentationContextRQ] = []
    ids = itertools.count(1, 2)
    for entry in contexts:
        context_id = next(ids)
        if isinstance(entry, PresentationContextRQ):
            out.append(entry)
            continue
        if isinstance(entry, str):
            out.append(PresentationContextRQ(context_id, resolve_uid(entry), default))
        elif _is_pair(entry):
            name, syntaxes = entry
            out.append(
                PresentationContextRQ(
                    context_id, resolve_uid(name), tuple(resolve_uid(t, what="transfer syntax") for t in syntaxes)
                )
            )
        else:
            raise ValueError(f"a presentation context is a name, a UID or a (name, [transfer syntaxes]) pair, not {entry!r}")
    if not out:
        raise ValueError("at least one presentation context is needed")
    return tuple(out)


def _is_pair(entry: Any) -> bool:
    return (
        isinstance(entry, (tuple, list))
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], (list, tuple))
    )


def _user_identity(spec: Any) -> UserIdentityRQ:
    if isinstance(spec, UserIdentityRQ):
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError("user_identity is a UserIdentityRQ or a mapping with type, primary, secondary, positive_response")

    def raw(value: Any) -> bytes:
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)

    return UserIdentityRQ(
        int(spec.get("type", 1)),
        raw(spec.get("primary", b"")),
        raw(spec.get("secondary", b"")),
        int(bool(spec.get("positive_response", False))),
    )


# ---------------------------------------------------------------- data sets


def load_dataset(source: Any) -> tuple[pydicom.Dataset, bytes | None, str | None]:
    """(data set, its encoded bytes as found or None, their transfer syntax or None).

    ``source`` is a pydicom Dataset, the bytes of a Part 10 file, or a path.
    """
    if isinstance(source, pydicom.Dataset):
        meta = getattr(source, "file_meta", None)
        ts = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
        return source, None, str(ts) if ts else None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read data set file {source}: {exc.strerror}") from None
    else:
        raise ValueError(f"store() takes a pydicom Dataset, Part 10 bytes or a path, not {type(source).__name__}")
    if len(data) < 132 or data[128:132] != b"DICM":
        raise ValueError("not a DICOM Part 10 file (no 'DICM' prefix after the 128-byte preamble)")
    try:
        ds = pydicom.dcmread(DicomBytesIO(data))
        ts = str(ds.file_meta.TransferSyntaxUID)
    except Exception as exc:
        raise ValueError(f"cannot parse the DICOM file: {exc}") from None
    # PS3.10 7.1: the data set follows the File Meta group, whose length (0002,0000) is type 1.
    # A missing or wrong group length: the data set is encoded again instead.
    group_length = ds.file_meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        return ds, None, ts
    start = 132 + _GROUP_LENGTH_ELEMENT + int(group_length)
    if not _first_tag_is_at(ds, ts, data, start):
        return ds, None, ts
    return ds, data[start:], ts


def _first_tag_is_at(ds: pydicom.Dataset, transfer_syntax: str, data: bytes, start: int) -> bool:
    """True if the data set's first element tag is at ``data[start]`` (deflated data: not checked)."""
    uid = UID(transfer_syntax)
    if uid.is_transfer_syntax and uid.is_deflated:
        return start <= len(data)
    if start + 4 > len(data):
        return False
    first = next(iter(ds.keys()), None)
    if first is None:
        return True
    order = "little" if (not uid.is_transfer_syntax or uid.is_little_endian) else "big"
    group = int.from_bytes(data[start : start + 2], order)
    element = int.from_bytes(data[start + 2 : start + 4], order)
    return (group, element) == (first.group, first.element)


def encode_dataset(ds: pydicom.Dataset, transfer_syntax: str) -> bytes:
    """``ds`` encoded in ``transfer_syntax`` by the core (PS3.5 7, 10); a clear error if it cannot be."""
    try:
        return dimse.encode_dataset(ds, transfer_syntax)
    except LocalProtocolError as exc:
        raise ValueError(str(exc)) from None


# ---------------------------------------------------------------- the SCU


class SCU:
    """An association-requestor over one :class:`Connection` (PS3.8 7.1, PS3.7 9.1).

    ``max_pdu_length`` is our Maximum Length (0 = unlimited) sent in the
    A-ASSOCIATE-RQ.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        calling_ae: str = "DICOMCONF-SCU",
        called_ae: str = "ANY-SCP",
        max_pdu_length: int = 16382,
    ) -> None:
        self.connection = connection
        self.calling_ae = calling_ae
        self.called_ae = called_ae
        self.max_pdu_length = max_pdu_length
        self.accepted: dict[int, tuple[str, str]] = {}
        self.peer_max_pdu_length = 0
        self.rq: AAssociateRQ | None = None
        self.ac: AAssociateAC | None = None
        self.last_received: Received | None = None  # the last PDU an operation consumed, as it came
        self._message_ids = itertools.count(1)
        self._assembler = dimse.MessageAssembler()
        self._messages: deque[dimse.Message] = deque()
        # requests the peer sent while an operation waited for its response (an N-EVENT-REPORT-RQ
        # before the N-ACTION-RSP, PS3.4 J.3.3), kept for the next operation that waits for them
        self.held: deque[dimse.Message] = deque()

    def next_message_id(self) -> int:
        """A Message ID not used before on this association (PS3.7 9.3.1.1: unique among outstanding)."""
        return next(self._message_ids) & 0xFFFF or next(self._message_ids) & 0xFFFF

    # ---------------------------------------------------------- association

    def build_rq(
        self,
        contexts: Any = ("verification",),
        *,
        transfer_syntaxes: Iterable[str] | None = None,
        roles: Mapping[str, tuple[int, int]] | None = None,
        user_identity: Any = None,
        async_window: tuple[int, int] | None = None,
        extended: Mapping[str, bytes] | None = None,
        overrides: Mapping[str, Any] = {},
    ) -> AAssociateRQ:
        """The A-ASSOCIATE-RQ that :meth:`associate` would send (PS3.8 9.3.2, PS3.7 D.3.3)."""
        subs: list[Any] = [
            MaximumLength(self.max_pdu_length),
            ImplementationClassUID(C.IMPLEMENTATION_CLASS_UID),
        ]
        if async_window is not None:
            subs.append(AsynchronousOperationsWindow(*async_window))
        for sop, (scu_role, scp_role) in (roles or {}).items():
            subs.append(RoleSelection(resolve_uid(sop), int(scu_role), int(scp_role)))
        subs.append(ImplementationVersionName(C.IMPLEMENTATION_VERSION_NAME))
        for sop, info in (extended or {}).items():
            subs.append(SOPClassExtendedNegotiation(resolve_uid(sop), bytes(info)))
        if user_identity is not None:
            subs.append(_user_identity(user_identity))
        rq = AAssociateRQ(
            called_ae_title=self.called_ae,
            calling_ae_title=self.calling_ae,
            presentation_contexts=build_contexts(contexts, transfer_syntaxes),
            user_information=UserInformation(tuple(subs)),
        )
        if overrides:
            known = {f.name for f in dataclasses.fields(AAssociateRQ)}
            unknown = sorted(set(overrides) - known)
            if unknown:
                raise ValueError(f"unknown A-ASSOCIATE-RQ field(s) {unknown}; known: {sorted(known)}")
            rq = dataclasses.replace(rq, **dict(overrides))
        return rq

    def associate(
        self,
        contexts: Any = ("verification",),
        *,
        transfer_syntaxes: Iterable[str] | None = None,
        roles: Mapping[str, tuple[int, int]] | None = None,
        user_identity: Any = None,
        async_window: tuple[int, int] | None = None,
        extended: Mapping[str, bytes] | None = None,
        overrides: Mapping[str, Any] = {},
        timeout: float = 5.0,
    ) -> AAssociateAC:
        """Send an A-ASSOCIATE-RQ and wait for the answer (PS3.8 7.1.1).

        The arguments are those of :meth:`build_rq`: ``contexts`` names
        (:data:`CONTEXT_ALIASES`, pydicom keywords) or UIDs, or
        ``(name, [transfer syntaxes])`` pairs; ``roles`` maps a SOP class to
        (SCU role, SCP role); ``overrides`` replaces any A-ASSOCIATE-RQ field
        by name.  Returns the A-ASSOCIATE-AC
        and records ``accepted`` and ``peer_max_pdu_length``.  An
        A-ASSOCIATE-RJ closes the connection at once (so the acceptor need not
        wait for its ARTIM, PS3.8 9.2 Sta13) and raises :class:`Rejected`; an
        A-ABORT raises :class:`Aborted` likewise.
        """
        rq = self.build_rq(
            contexts,
            transfer_syntaxes=transfer_syntaxes,
            roles=roles,
            user_identity=user_identity,
            async_window=async_window,
            extended=extended,
            overrides=overrides,
        )
        self.rq = rq
        self.connection.send(rq)
        received = self.last_received = self.connection.receive_pdu(timeout)
        pdu = received.pdu
        if isinstance(pdu, AAssociateAC):
            self.ac = pdu
            proposed = {pc.context_id: pc.abstract_syntax for pc in rq.presentation_contexts}
            self.accepted = {
                pc.context_id: (proposed.get(pc.context_id, ""), pc.transfer_syntax or "")
                for pc in pdu.presentation_contexts
                if pc.result == C.PC_ACCEPTANCE
            }
            self.peer_max_pdu_length = pdu.user_information.maximum_length or 0
            self._assembler = dimse.MessageAssembler(set(self.accepted))
            return pdu
        if isinstance(pdu, AAssociateRJ):
            self.connection.close()
            raise Rejected(pdu, received)
        if isinstance(pdu, AAbort):
            self.connection.close()
            raise Aborted(pdu, received)
        raise UnexpectedReply(f"expected A-ASSOCIATE-AC, received {received.name}", received)

    def context_for(self, abstract_syntax: str, transfer_syntax: str | None = None) -> int:
        """The ID of an accepted context for ``abstract_syntax`` (preferring ``transfer_syntax``)."""
        uid = resolve_uid(abstract_syntax)
        matches = [cid for cid, (a, _t) in sorted(self.accepted.items()) if a == uid]
        if not matches:
            raise NotNegotiated(f"no accepted presentation context for {UID(uid).name}")
        exact = [cid for cid in matches if self.accepted[cid][1] == transfer_syntax]
        return (exact or matches)[0]

    # ---------------------------------------------------------- DIMSE

    def send_message(self, message: dimse.Message) -> None:
        """Send one DIMSE message as P-DATA-TF PDUs within the peer's Maximum Length (PS3.8 9.3.5, D.1)."""
        for pdu in dimse.fragment(message, self.peer_max_pdu_length):
            self.connection.send(pdu)

    def receive_message(self, timeout: float) -> dimse.Message:
        """The next whole DIMSE message (PS3.7 6.3.1, PS3.8 Annex E).

        Raises :class:`Aborted` on an A-ABORT, :class:`UnexpectedReply` on
        any other PDU than P-DATA-TF, and the core's ``RemoteProtocolError``
        when the PDVs break PS3.8 Annex E (a context not accepted, a data set
        before its command, ...); :class:`Silence` when no whole message came
        within ``timeout``, however many PDUs did.
        """
        deadline = time.monotonic() + timeout
        while not self._messages:
            received = self.last_received = self.connection.receive_pdu(max(deadline - time.monotonic(), 0.0))
            pdu = received.pdu
            if isinstance(pdu, PDataTF):
                for pdv in pdu.pdvs:
                    message = self._assembler.add(pdv)
                    if message is not None:
                        self._messages.append(message)
            elif isinstance(pdu, AAbort):
                raise Aborted(pdu, received)
            else:
                raise UnexpectedReply(f"expected P-DATA-TF, received {received.name}", received)
            if not self._messages and time.monotonic() >= deadline:
                raise Silence(timeout)  # P-DATA-TF kept coming, but no whole message within the timeout
        return self._messages.popleft()

    def _request(self, message: dimse.Message, expected: str, timeout: float) -> dimse.Message:
        self.send_message(message)
        reply = self.receive_message(timeout)
        if reply.name != expected:
            raise UnexpectedReply(f"expected {expected}, received {reply.name}", reply)
        if reply.status is None:  # Status (0000,0900) is mandatory in every response (PS3.7 9.3)
            raise UnexpectedReply(f"{expected} without a Status (0000,0900)", reply)
        return reply

    def echo(self, timeout: float = 5.0) -> int:
        """C-ECHO on the accepted Verification context; return the status (PS3.7 9.1.5)."""
        context_id = self.context_for(C.VERIFICATION_SOP_CLASS)
        request = dimse.c_echo_rq(next(self._message_ids), context_id=context_id)
        reply = self._request(request, "C-ECHO-RSP", timeout)
        return int(reply.status)

    def store(self, dataset: Any, *, context_id: int | None = None, timeout: float = 30.0) -> int:
        """C-STORE ``dataset`` (a pydicom Dataset, Part 10 bytes or a path); return the status (PS3.7 9.1.1).

        The context is the accepted one for the data set's SOP class,
        preferring its own transfer syntax; the bytes of a file go out
        unchanged when the transfer syntaxes agree, otherwise the data set is
        encoded in the context's syntax.  ``context_id`` forces a context,
        accepted or not (a harness may send on a context it was refused).
        """
        ds, raw, raw_ts = load_dataset(dataset)
        try:
            sop_class, sop_instance = str(ds.SOPClassUID), str(ds.SOPInstanceUID)
        except AttributeError:
            raise ValueError("the data set has no SOP Class UID or SOP Instance UID") from None
        if context_id is None:
            context_id = self.context_for(sop_class, raw_ts)
        ts = self.accepted.get(context_id, ("", raw_ts or C.IMPLICIT_VR_LITTLE_ENDIAN))[1]
        data = raw if raw is not None and raw_ts == ts else encode_dataset(ds, ts)
        request = dimse.c_store_rq(
            next(self._message_ids), sop_class, sop_instance, context_id=context_id, data=data
        )
        reply = self._request(request, "C-STORE-RSP", timeout)
        return int(reply.status)

    # ---------------------------------------------------------- ending

    def release(self, timeout: float = 5.0) -> None:
        """A-RELEASE-RQ, wait for A-RELEASE-RP, close (PS3.8 7.2).

        A release collision (the peer's own A-RELEASE-RQ) is answered with an
        A-RELEASE-RP as the requestor must (PS3.8 9.2, AR-8/AR-9); P-DATA-TF
        still arriving is kept in ``connection.passed_over``.  An A-ABORT
        raises :class:`Aborted`; a timeout raises :class:`Silence` and leaves
        the connection open.
        """
        self.connection.send(AReleaseRQ())
        deadline = time.monotonic() + timeout
        while True:
            received = self.last_received = self.connection.receive_pdu(max(deadline - time.monotonic(), 0.0))
            pdu = received.pdu
            if isinstance(pdu, AReleaseRP):
                self.connection.close()
                return
            if isinstance(pdu, AReleaseRQ):
                self.connection.send(AReleaseRP())
            elif isinstance(pdu, AAbort):
                self.connection.close()
                raise Aborted(pdu, received)
            elif isinstance(pdu, PDataTF):
                self.connection.passed_over.append(received)
            else:
                raise UnexpectedReply(f"expected A-RELEASE-RP, received {received.name}", received)
            if time.monotonic() >= deadline:
                raise Silence(timeout)  # other PDUs kept coming, but no A-RELEASE-RP within the timeout

    def abort(self, source: int = C.ABORT_SOURCE_USER, reason: int = C.ABORT_REASON_NOT_SPECIFIED) -> None:
        """Send an A-ABORT and close the connection (PS3.8 7.3, 9.3.8)."""
        try:
            self.connection.send(AAbort(source, reason))
        finally:
            self.connection.close()


__all__ = [
    "SCU",
    "Rejected",
    "Aborted",
    "UnexpectedReply",
    "NotNegotiated",
    "Silence",
    "Received",
    "resolve_uid",
    "build_contexts",
    "load_dataset",
    "encode_dataset",
]
