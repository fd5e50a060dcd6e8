"""One-line summaries and full trees of PDUs, DIMSE command sets included.

Theory of operation
-------------------
:func:`summary` is the fast path used for every PDU of a capture: the core's
strict codec (:func:`dicomconf.ul.pdu.decode_pdu`) and, for a command PDV,
pydicom through :func:`dicomconf.ul.dimse.decode_command`; no scapy.  A PDU
the strict codec refuses is summarised from its header with the reason.

:func:`tree` is the slow, complete view for ``-v``: scapy's dissection (our
fixed layers, :mod:`dicomconf.wire.layers`) followed by each command set
decoded with pydicom (scapy's DIMSE classes ignore tags, design notes 5).

:func:`describe_command` names a command set as PS3.7 does: command name,
message ID or the ID being responded to, affected SOP class and instance,
status with its meaning (PS3.7 Annex C).
"""

from __future__ import annotations

from functools import lru_cache

from pydicom import Dataset

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.items import PresentationContextRQ
from dicomconf.ul.pdu import AAbort, AAssociateAC, AAssociateRJ, AAssociateRQ, PDataTF, decode_pdu


@lru_cache(maxsize=512)
def uid_name(uid: str | None) -> str:
    """A UID's name from pydicom's registry, else the UID itself."""
    if not uid:
        return "-"
    from pydicom.uid import UID_dictionary

    entry = UID_dictionary.get(uid)
    return entry[4] or entry[0] if entry else uid


def describe_command(cmd: Dataset) -> str:
    """``C-ECHO-RSP to 1, Verification, status 0x0000 success (Success)``."""
    field = int(cmd.get("CommandField", -1))
    parts = [dimse.COMMAND_FIELDS.get(field, f"command {field:#06x}")]
    if "MessageID" in cmd:
        parts.append(f"id={cmd.MessageID}")
    if "MessageIDBeingRespondedTo" in cmd:
        parts.append(f"to={cmd.MessageIDBeingRespondedTo}")
    sop = cmd.get("AffectedSOPClassUID") or cmd.get("RequestedSOPClassUID")
    if sop:
        parts.append(uid_name(str(sop)))
    inst = cmd.get("AffectedSOPInstanceUID") or cmd.get("RequestedSOPInstanceUID")
    if inst:
        parts.append(f"instance={inst}")
    if "Status" in cmd:
        category, meaning = dimse.status_meaning(field, int(cmd.Status))
        parts.append(f"status={int(cmd.Status):#06x} {category} ({meaning})")
    return " ".join(parts)


def pdv_flags(mch: int) -> str:
    kind = "CMD" if mch & C.MCH_COMMAND else "DATA"
    return kind + ("+LAST" if mch & C.MCH_LAST else "")


def _assoc(p: AAssociateRQ | AAssociateAC) -> str:
    arrow = "->" if isinstance(p, AAssociateRQ) else "<-"
    out = f"{p.calling_ae_title or '-'} {arrow} {p.called_ae_title or '-'}"
    ctx = []
    for pc in p.presentation_contexts:
        if isinstance(pc, PresentationContextRQ):
            ts = ",".join(uid_name(t) for t in pc.transfer_syntaxes)
            ctx.append(f"{pc.context_id}:{uid_name(pc.abstract_syntax)}[{ts}]")
        else:
            result = C.PC_RESULT_NAMES.get(pc.result, f"result {pc.result}").split(" ")[0]
            ts = f"[{uid_name(pc.transfer_syntax)}]" if pc.result == C.PC_ACCEPTANCE else ""
            ctx.append(f"{pc.context_id}:{result}{ts}")
    out += " contexts " + " ".join(ctx)
    ml = p.user_information.maximum_length
    if ml is not None:
        out += f" max={ml}"
    return out


def _pdata(p: PDataTF) -> str:
    parts = []
    for pdv in p.pdvs:
        text = f"ctx={pdv.context_id} {pdv_flags(pdv.message_control_header)} {len(pdv.data)}B"
        if pdv.is_command and pdv.is_last:
            try:
                text += " " + describe_command(dimse.decode_command(pdv.data))
            except RemoteProtocolError:
                text += " (command fragment)"
        parts.append(text)
    return "; ".join(parts)


def body_summary(pdu) -> str:
    """The summary of a decoded core PDU object, without its name."""
    if isinstance(pdu, (AAssociateRQ, AAssociateAC)):
        return _assoc(pdu)
    if isinstance(pdu, PDataTF):
        return _pdata(pdu)
    if isinstance(pdu, AAssociateRJ):
        reason = C.RJ_REASON_NAMES.get((pdu.source, pdu.reason), f"reason {pdu.reason}")
        return (f"{C.RJ_RESULT_NAMES.get(pdu.result, f'result {pdu.result}')}, "
                f"source {C.RJ_SOURCE_NAMES.get(pdu.source, pdu.source)}, {reason}")
    if isinstance(pdu, AAbort):
        text = f"source {C.ABORT_SOURCE_NAMES.get(pdu.source, pdu.source)}"
        if pdu.source == C.ABORT_SOURCE_PROVIDER:
            text += f", reason {C.ABORT_REASON_NAMES.get(pdu.reason, pdu.reason)}"
        return text
    return ""


def summary(pdu: bytes) -> str:
    """One line: PDU type and what matters in it (PS3.8 9.3)."""
    buf = memoryview(pdu)
    if len(buf) < C.PDU_HEADER_LENGTH:
        return f"(truncated: {len(buf)} byte(s))"
    name = C.PDU_NAMES.get(buf[0], f"PDU type {buf[0]:#04x}")
    try:
        decoded = decode_pdu(buf)
    except RemoteProtocolError as exc:
        return f"{name} len={len(buf) - 6} (malformed: {exc.message})"
    rest = body_summary(decoded)
    return f"{name} {rest}".rstrip()


def tree(pdu: bytes) -> str:
    """The full dissection: scapy's tree, then each whole command PDV decoded with pydicom."""
    from dicomconf.wire.layers import dissect

    pkt = dissect(pdu)
    text = pkt.show(dump=True)
    if buf_type(pdu) == C.P_DATA_TF:
        try:
            decoded = decode_pdu(pdu)
        except RemoteProtocolError:
            return text
        for i, pdv in enumerate(decoded.pdvs):
            if pdv.is_command and pdv.is_last:
                try:
                    cmd = dimse.decode_command(pdv.data)
                except RemoteProtocolError as exc:
                    text += f"\nPDV {i}: command set does not decode: {exc.message}"
                    continue
                text += f"\nPDV {i} command set: {describe_command(cmd)}\n"
                text += "\n".join("    " + line for line in str(cmd).splitlines())
    return text


def buf_type(pdu: bytes) -> int | None:
    return pdu[0] if len(pdu) else None
