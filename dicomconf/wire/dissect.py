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

import struct
from functools import lru_cache
from typing import Mapping

from pydicom import Dataset

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.items import PresentationContextRQ, UserInformation
from dicomconf.ul.pdu import (
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    PDataTF,
    decode_pdu,
)


@lru_cache(maxsize=512)
def uid_name(uid: str | None) -> str:
    """A UID's name from pydicom's registry, else the UID itself."""
    if not uid:
        return "-"
    from pydicom.uid import UID_dictionary

    entry = UID_dictionary.get(uid)
    return entry[4] or entry[0] if entry else uid


def command_name(field: int | None) -> str:
    if field is None:
        return "no command field"
    return dimse.COMMAND_FIELDS.get(field, f"command {field:#06x}")


def describe_command(cmd: Mapping | Dataset) -> str:
    """``C-ECHO-RSP to=1 Verification status=0x0000 success (Success)`` (PS3.7 9.3, Annex C).

    ``cmd`` is a pydicom Dataset or the keyword mapping :func:`fast_command` returns.
    """
    field = cmd.get("CommandField")
    parts = [command_name(field)]
    for keyword, label in (("MessageID", "id"), ("MessageIDBeingRespondedTo", "to")):
        value = cmd.get(keyword)
        if value is not None:
            parts.append(f"{label}={value}")
    sop = cmd.get("AffectedSOPClassUID") or cmd.get("RequestedSOPClassUID")
    if sop:
        parts.append(uid_name(str(sop)))
    inst = cmd.get("AffectedSOPInstanceUID") or cmd.get("RequestedSOPInstanceUID")
    if inst:
        parts.append(f"instance={inst}")
    status = cmd.get("Status")
    if status is not None and field is not None:
        category, meaning = _status(int(field), int(status))
        parts.append(f"status={int(status):#06x} {category} ({meaning})")
    return " ".join(parts)


@lru_cache(maxsize=1024)
def _status(field: int, status: int) -> tuple[str, str]:
    return dimse.status_meaning(field, status)


_ELEMENT = struct.Struct("<HHI")
_GROUP_LENGTH_HEADER = b"\x00\x00\x00\x00\x04\x00\x00\x00"
_NUMERIC = {"US": struct.Struct("<H"), "UL": struct.Struct("<I"), "SS": struct.Struct("<h"), "SL": struct.Struct("<i")}
_TEXT_VRS = frozenset({"UI", "AE", "LO", "SH", "CS", "ST", "LT"})
_COMMAND_ELEMENTS: dict[int, tuple[str, struct.Struct | None, bool]] = {}


def _command_elements() -> dict[int, tuple[str, struct.Struct | None, bool]]:
    """Group 0000 of pydicom's data dictionary: element -> (keyword, numeric unpacker, is text)."""
    if not _COMMAND_ELEMENTS:
        from pydicom.datadict import DicomDictionary

        for tag, entry in DicomDictionary.items():
            if tag >> 16 == 0:
                vr, keyword = entry[0], entry[4]
                _COMMAND_ELEMENTS[tag & 0xFFFF] = (keyword, _NUMERIC.get(vr), vr in _TEXT_VRS)
    return _COMMAND_ELEMENTS


def fast_command(data: bytes | memoryview) -> dict[str, object] | None:
    """A command set (implicit VR little endian, PS3.7 6.3.1) as {keyword: value}, or None if malformed.

    The fast path for summaries: a ``struct`` walk with pydicom's data
    dictionary for keywords and VRs, and the same structural checks as
    :func:`dicomconf.ul.dimse.decode_command` (group 0000, elements tiling the
    bytes, Command Group Length first and right, Command Field present).
    """
    elements = _COMMAND_ELEMENTS or _command_elements()
    raw = bytes(data)
    end = len(raw)
    if end < 12 or raw[:8] != _GROUP_LENGTH_HEADER or _NUMERIC["UL"].unpack_from(raw, 8)[0] != end - 12:
        return None
    out: dict[str, object] = {}
    unpack = _ELEMENT.unpack_from
    pos = 0
    while pos < end:
        if end - pos < 8:
            return None
        group, element, length = unpack(raw, pos)
        stop = pos + 8 + length
        if group or stop > end:
            return None
        known = elements.get(element)
        if known is None:
            out[f"(0000,{element:04X})"] = raw[pos + 8 : stop]
        else:
            keyword, number, is_text = known
            if number is not None and length == number.size:
                out[keyword] = number.unpack_from(raw, pos + 8)[0]
            elif is_text:
                out[keyword] = raw[pos + 8 : stop].decode("latin-1").rstrip("\x00 ")
            else:
                out[keyword] = raw[pos + 8 : stop]
        pos = stop
    if not isinstance(out.get("CommandField"), int):
        return None
    return out


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
    info = user_info_text(p.user_information)
    return f"{out} {info}" if info else out


def _short_uid(uid: str) -> str:
    """A SOP class's name without spaces (``CTImageStorage``), or the UID."""
    name = uid_name(uid)
    return uid if name == uid else name.replace(" ", "").replace("SOPClass", "")


def user_info_text(ui: UserInformation) -> str:
    """The user information sub-items in one compact phrase (PS3.8 D.1, PS3.7 D.3.3):
    ``max=16384 impl=1.2.3/NAME async=1/1 role=CTImageStorage:scu1,scp0 identity=Username+rsp
    ext=CTImageStorage:4B cext=CTImageStorage<1.2.840.10008.4.2>``.  Credentials never show
    (a user identity's type and flags only; its response's length)."""
    parts: list[str] = []
    if ui.maximum_length is not None:
        parts.append(f"max={ui.maximum_length}")
    impl = ui.implementation_class_uid
    version = ui.implementation_version_name
    if impl is not None or version is not None:
        parts.append(f"impl={impl or '-'}" + (f"/{version}" if version is not None else ""))
    window = ui.asynchronous_operations_window
    if window is not None:
        parts.append(f"async={window.maximum_number_operations_invoked}/{window.maximum_number_operations_performed}")
    for role in ui.role_selections:
        parts.append(f"role={_short_uid(role.sop_class_uid)}:scu{role.scu_role},scp{role.scp_role}")
    identity = ui.user_identity
    if identity is not None:
        kind = C.USER_IDENTITY_TYPES.get(identity.user_identity_type, f"type{identity.user_identity_type}")
        parts.append(f"identity={kind.replace(' ', '')}" + ("+rsp" if identity.positive_response_requested else ""))
    answer = ui.user_identity_response
    if answer is not None:
        parts.append(f"identity-rsp={len(answer.server_response)}B")
    for ext in ui.extended_negotiations:
        parts.append(f"ext={_short_uid(ext.sop_class_uid)}:{len(ext.service_class_application_information)}B")
    for cext in ui.common_extended_negotiations:
        parts.append(f"cext={_short_uid(cext.sop_class_uid)}<{_short_uid(cext.service_class_uid)}>")
    return " ".join(parts)


def user_info_fields(ui: UserInformation) -> dict[str, object]:
    """The user information sub-items for ``--json`` (credentials left out, as in :func:`user_info_text`)."""
    out: dict[str, object] = {"maximum_length": ui.maximum_length,
                              "implementation_class_uid": ui.implementation_class_uid,
                              "implementation_version_name": ui.implementation_version_name}
    window = ui.asynchronous_operations_window
    if window is not None:
        out["asynchronous_operations_window"] = {"invoked": window.maximum_number_operations_invoked,
                                                 "performed": window.maximum_number_operations_performed}
    if ui.role_selections:
        out["role_selection"] = [{"sop_class_uid": r.sop_class_uid, "scu_role": r.scu_role, "scp_role": r.scp_role}
                                 for r in ui.role_selections]
    if ui.user_identity is not None:
        out["user_identity"] = {"type": ui.user_identity.user_identity_type,
                                "positive_response_requested": bool(ui.user_identity.positive_response_requested)}
    if ui.user_identity_response is not None:
        out["user_identity_response_length"] = len(ui.user_identity_response.server_response)
    if ui.extended_negotiations:
        out["extended_negotiation"] = [{"sop_class_uid": e.sop_class_uid,
                                        "length": len(e.service_class_application_information)}
                                       for e in ui.extended_negotiations]
    if ui.common_extended_negotiations:
        out["common_extended_negotiation"] = [
            {"sop_class_uid": e.sop_class_uid, "service_class_uid": e.service_class_uid,
             "related_general_sop_class_uids": list(e.related_general_sop_class_uids)}
            for e in ui.common_extended_negotiations]
    return out


def _pdata(p: PDataTF, commands: list | None = None) -> str:
    parts = []
    for pdv in p.pdvs:
        text = f"ctx={pdv.context_id} {pdv_flags(pdv.message_control_header)} {len(pdv.data)}B"
        if pdv.is_command and pdv.is_last:
            cmd = fast_command(pdv.data)
            if commands is not None and cmd is not None:
                commands.append(cmd)
            text += " " + describe_command(cmd) if cmd is not None else " (command set does not decode)"
        parts.append(text)
    return "; ".join(parts)


def body_summary(pdu, commands: list | None = None) -> str:
    """The summary of a decoded core PDU object, without its name; ``commands`` (a list) receives
    the command sets of a P-DATA-TF's last command fragments, as :func:`fast_command` decodes them."""
    if isinstance(pdu, (AAssociateRQ, AAssociateAC)):
        return _assoc(pdu)
    if isinstance(pdu, PDataTF):
        return _pdata(pdu, commands)
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


def tree(pdu: bytes, show_secrets: bool = False) -> str:
    """The full dissection: scapy's tree, then each whole command PDV decoded with pydicom.

    User identity credentials print as ``***`` unless ``show_secrets`` (:mod:`dicomconf.wire.secrets`):
    their bytes are starred before scapy sees them (so a malformed PDU's raw remainder does not show
    them either), then the fields scapy found are set to ``***``; the hex dump of a PDU scapy cannot
    dissect stars them too.
    """
    from dicomconf.wire.layers import dissect
    from dicomconf.wire.secrets import hexdump, mask_bytes, mask_packet

    try:
        packet = dissect(pdu if show_secrets else mask_bytes(pdu))
        text = (packet if show_secrets else mask_packet(packet)).show(dump=True)
    except Exception as exc:  # scapy's fields raise on bytes too short for them
        return f"(scapy cannot dissect these {len(pdu)} byte(s): {exc})\n{hexdump(pdu, show_secrets=show_secrets)[0]}"
    if len(pdu) and pdu[0] == C.P_DATA_TF:
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


def fields(pdu: bytes) -> dict[str, object]:
    """A machine-readable view of one PDU (for ``dicomconf decode --json``)."""
    buf = memoryview(pdu)
    out: dict[str, object] = {"type": buf[0] if len(buf) else None}
    if len(buf) < C.PDU_HEADER_LENGTH:
        out["error"] = "truncated PDU header"
        return out
    out["pdu"] = C.PDU_NAMES.get(buf[0], f"unknown {buf[0]:#04x}")
    out["length"] = struct.unpack_from(">I", buf, 2)[0]
    try:
        p = decode_pdu(buf)
    except RemoteProtocolError as exc:
        out["error"] = exc.message
        return out
    if isinstance(p, (AAssociateRQ, AAssociateAC)):
        out["called_ae_title"] = p.called_ae_title
        out["calling_ae_title"] = p.calling_ae_title
        out["maximum_length"] = p.user_information.maximum_length
        out["user_information"] = user_info_fields(p.user_information)
        out["presentation_contexts"] = [
            {"context_id": pc.context_id, "abstract_syntax": pc.abstract_syntax,
             "transfer_syntaxes": list(pc.transfer_syntaxes)}
            if isinstance(pc, PresentationContextRQ)
            else {"context_id": pc.context_id, "result": pc.result, "transfer_syntax": pc.transfer_syntax}
            for pc in p.presentation_contexts
        ]
    elif isinstance(p, PDataTF):
        pdvs = []
        for pdv in p.pdvs:
            entry: dict[str, object] = {"context_id": pdv.context_id, "command": pdv.is_command,
                                        "last": pdv.is_last, "length": len(pdv.data) + 2}
            if pdv.is_command and pdv.is_last:
                cmd = fast_command(pdv.data)
                if cmd is not None:
                    entry["dimse"] = command_name(cmd.get("CommandField"))  # type: ignore[arg-type]
                    for keyword in ("MessageID", "MessageIDBeingRespondedTo", "Status", "AffectedSOPClassUID",
                                    "AffectedSOPInstanceUID"):
                        if keyword in cmd:
                            entry[keyword] = cmd[keyword]
            pdvs.append(entry)
        out["pdvs"] = pdvs
    elif isinstance(p, AAssociateRJ):
        out.update(result=p.result, source=p.source, reason=p.reason)
    elif isinstance(p, AAbort):
        out.update(source=p.source, reason=p.reason)
    return out
