"""What a PDU breaks: every fault, with the clause, severity and byte offset.

Theory of operation
-------------------
The core decoder (:mod:`dicomconf.ul.pdu`) is strict and stops at the first
fault; a conformance report wants all of them.  :func:`check` walks the bytes
of one PDU leniently: a length that overruns its container is reported and
clamped, a missing item is reported and the walk goes on, so a PDU with five
faults gets five :class:`Finding` objects.  A legal PDU gets none.

Severities follow the standard's words: ``must`` for "shall", ``should``
for what a sender ought to do but a receiver may not test.  What PS3.8 says
is *not* tested on receipt (design notes section 4) is never a ``must``:
non-zero reserved fields are not reported at all unless asked
(``report_reserved``, then ``should``: sent as zero), only bit 0 of the
protocol version counts, AE-title padding is not significant, the AC's echo
of AE titles and of the reserved block is at most ``should``, a rejected
context's transfer syntax is not significant, AC contexts may come in any
order, and an unknown user-information sub-item is simply skipped.

:class:`ConversationState` adds what only the conversation knows: the
Maximum Length each side announced (PS3.8 D.1.1), the contexts the AC
accepted (PDVs on other contexts), and the AC or RJ checked against the RQ
it answers by the core's :func:`dicomconf.ul.negotiation_check.check_reply`
(contexts, transfer syntaxes and roles that were never proposed, echoes),
its problems turned into findings.
Each direction's PDVs also go through the core's DIMSE message assembler,
so a broken fragment sequence or command set is reported too, and every
message it completes through :func:`dicomconf.ul.dimse_check.check_message`
(required command elements, the data set in the context's accepted transfer
syntax, message IDs against the association's outstanding requests).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

from dicomconf.ul import constants as C
from dicomconf.ul.errors import RemoteProtocolError

MUST = "must"
SHOULD = "should"
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Finding:
    """One way a PDU breaks PS3.8 / PS3.7."""

    code: str
    clause: str
    severity: str
    offset: int | None
    message: str

    def __str__(self) -> str:
        at = "" if self.offset is None else f" @{self.offset}"
        return f"[{self.severity}] {self.code}{at}: {self.message} ({self.clause})"


@dataclass(slots=True)
class _Context:
    """What the walk learnt about an A-ASSOCIATE PDU, for the conversation checks."""

    contexts: dict[int, tuple[str | None, list[str], int]] = field(default_factory=dict)  # id -> (abstract, ts, result)
    pdv_contexts: list[int] = field(default_factory=list)  # P-DATA-TF: each PDV's context ID
    max_length: int | None = None


class _Walk:
    def __init__(self, pdu: bytes, report_reserved: bool = False) -> None:
        self.report_reserved = report_reserved
        self.buf = bytes(pdu)
        self.out: list[Finding] = []
        self.info = _Context()

    def add(self, code: str, clause: str, severity: str, offset: int | None, message: str) -> None:
        self.out.append(Finding(code, clause, severity, offset, message))

    def reserved(self, offset: int, size: int, what: str, clause: str) -> None:
        value = self.buf[offset : offset + size]
        if self.report_reserved and any(value):
            self.add("reserved.nonzero", clause, SHOULD, offset,
                     f"{what} is {value.hex()}, should be sent as zero (not tested on receipt)")

    # ------------------------------------------------------------------ items

    def items(self, start: int, end: int, clause: str) -> list[tuple[int, int, int]]:
        """Split [start, end) into (type, value_offset, value_end) items, reporting overruns."""
        out = []
        pos = start
        while pos < end:
            if end - pos < 4:
                self.add("item.truncated-header", clause, MUST, pos,
                         f"{end - pos} trailing byte(s) are too short for an item header")
                break
            item_type, length = self.buf[pos], _U16.unpack_from(self.buf, pos + 2)[0]
            stop = pos + 4 + length
            if stop > end:
                self.add("item.length-overrun", clause, MUST, pos + 2,
                         f"item {item_type:#04x} length {length} overruns its container by {stop - end} byte(s)")
                stop = end
            out.append((item_type, pos + 4, stop))
            pos = stop
        return out

    def uid(self, start: int, end: int, what: str, clause: str) -> str:
        raw = self.buf[start:end].rstrip(b"\0")
        value = raw.decode("latin-1")
        if not raw:
            self.add("uid.empty", clause, MUST, start, f"{what} is empty")
        elif len(raw) > 64:
            self.add("uid.too-long", "PS3.5 9.1", MUST, start, f"{what} is {len(raw)} characters, more than 64")
        elif not _UID.fullmatch(value):
            self.add("uid.invalid", "PS3.5 9.1", MUST, start, f"{what} {value!r} is not a valid UID")
        return value

    def prefixed(self, pos: int, end: int, what: str, clause: str) -> tuple[int, int] | None:
        """A 2-byte length and its field at ``pos``; (field start, field end) or None when broken."""
        if pos + 2 > end:
            self.add("sub-item.field-missing", clause, MUST, pos, f"{what} length field is missing")
            return None
        n = _U16.unpack_from(self.buf, pos)[0]
        if pos + 2 + n > end:
            self.add("sub-item.field-overrun", clause, MUST, pos,
                     f"{what} length {n} overruns its sub-item by {pos + 2 + n - end} byte(s)")
            return None
        return pos + 2, pos + 2 + n

    # ------------------------------------------------------------------- PDUs

    def run(self) -> list[Finding]:
        buf = self.buf
        if len(buf) < C.PDU_HEADER_LENGTH:
            self.add("pdu.too-short", "PS3.8 9.3.1", MUST, 0, f"{len(buf)} byte(s) is shorter than a PDU header")
            return self.out
        pdu_type, length = buf[0], _U32.unpack_from(buf, 2)[0]
        if pdu_type not in C.PDU_NAMES:
            self.add("pdu.unknown-type", "PS3.8 9.3.1", MUST, 0, f"PDU type {pdu_type:#04x} is not defined")
            return self.out
        self.reserved(1, 1, "PDU header reserved byte", "PS3.8 9.3.1")
        end = len(buf)
        if length != end - 6:
            self.add("pdu.length-mismatch", "PS3.8 9.3.1", MUST, 2,
                     f"PDU length field {length} disagrees with the {end - 6} byte(s) of body")
        if pdu_type in (C.A_ASSOCIATE_RQ, C.A_ASSOCIATE_AC):
            self.associate(pdu_type == C.A_ASSOCIATE_RQ, end)
        elif pdu_type == C.P_DATA_TF:
            self.pdata(end)
        else:
            self.fixed(pdu_type, length, end)
        return self.out

    def fixed(self, pdu_type: int, length: int, end: int) -> None:
        """A-ASSOCIATE-RJ, A-RELEASE-RQ/RP, A-ABORT: four-byte bodies (PS3.8 9.3.4-9.3.8)."""
        clause = {C.A_ASSOCIATE_RJ: "PS3.8 9.3.4", C.A_RELEASE_RQ: "PS3.8 9.3.6",
                  C.A_RELEASE_RP: "PS3.8 9.3.7", C.A_ABORT: "PS3.8 9.3.8"}[pdu_type]
        name = C.PDU_NAMES[pdu_type]
        if length != 4:
            self.add("pdu.fixed-length", clause, MUST, 2, f"{name} PDU length is {length}, not 4")
        if end < 10:
            return
        b = self.buf
        if pdu_type in (C.A_RELEASE_RQ, C.A_RELEASE_RP):
            self.reserved(6, 4, f"{name} reserved field", clause)
        elif pdu_type == C.A_ASSOCIATE_RJ:
            self.reserved(6, 1, "A-ASSOCIATE-RJ reserved byte", clause)
            result, source, reason = b[7], b[8], b[9]
            if result not in C.RJ_RESULT_NAMES:
                self.add("rj.result-invalid", "PS3.8 9.3.4 Table 9-21", MUST, 7, f"result {result} is not 1 or 2")
            if source not in C.RJ_SOURCE_NAMES:
                self.add("rj.source-invalid", "PS3.8 9.3.4 Table 9-21", MUST, 8, f"source {source} is not 1, 2 or 3")
            elif reason not in C.RJ_REASONS_BY_SOURCE[source]:
                self.add("rj.reason-invalid", "PS3.8 9.3.4 Table 9-21", MUST, 9,
                         f"reason {reason} is not defined for source {source}")
        else:
            self.reserved(6, 2, "A-ABORT reserved bytes", clause)
            source, reason = b[8], b[9]
            if source not in (C.ABORT_SOURCE_USER, C.ABORT_SOURCE_PROVIDER):
                self.add("abort.source-invalid", "PS3.8 9.3.8 Table 9-26", MUST, 8, f"source {source} is not 0 or 2")
            elif source == C.ABORT_SOURCE_PROVIDER and reason not in C.ABORT_REASON_NAMES:
                self.add("abort.reason-invalid", "PS3.8 9.3.8 Table 9-26", MUST, 9,
                         f"reason {reason} is not defined for a service-provider abort")

    def ae_title(self, offset: int, what: str, clause: str, severity: str) -> bytes:
        raw = self.buf[offset : offset + 16]
        if not raw.strip(b" \0"):
            self.add("ae.all-spaces", clause, severity, offset, f"{what} is all spaces")
        elif any(c < 0x20 or c > 0x7E for c in raw.rstrip(b"\0")) or b"\\" in raw:
            self.add("ae.invalid-characters", "PS3.8 9.3.2, PS3.5 6.2", severity, offset,
                     f"{what} {raw!r} has characters outside the ISO 646 G0 set allowed in an AE title")
        return raw.strip(b" \0")

    def associate(self, is_rq: bool, end: int) -> None:
        clause = "PS3.8 9.3.2" if is_rq else "PS3.8 9.3.3"
        name = "A-ASSOCIATE-RQ" if is_rq else "A-ASSOCIATE-AC"
        if end - 6 < 68:
            self.add("assoc.too-short", clause, MUST, 2,
                     f"{name} body of {end - 6} byte(s) is shorter than its 68 bytes of fixed fields")
            return
        b = self.buf
        version = _U16.unpack_from(b, 6)[0]
        if not version & C.PROTOCOL_VERSION:
            self.add("assoc.protocol-version", clause, MUST, 6,
                     f"protocol version {version:#06x} does not have bit 0 set")
        self.reserved(8, 2, f"{name} reserved bytes 9-10", clause)
        sev = MUST if is_rq else SHOULD  # the AC's AE titles are an echo, not tested on receipt
        self.ae_title(10, "called AE title", clause, sev)
        self.ae_title(26, "calling AE title", clause, sev)
        if is_rq:
            self.reserved(42, 32, "A-ASSOCIATE-RQ reserved bytes 43-74", clause)
        pc_type = C.ITEM_PRESENTATION_CONTEXT_RQ if is_rq else C.ITEM_PRESENTATION_CONTEXT_AC
        seen = {C.ITEM_APPLICATION_CONTEXT: 0, pc_type: 0, C.ITEM_USER_INFORMATION: 0}
        order = {C.ITEM_APPLICATION_CONTEXT: 0, pc_type: 1, C.ITEM_USER_INFORMATION: 2}
        last_rank = 0
        for item_type, start, stop in self.items(74, end, clause):
            hdr = start - 4
            if item_type in order:
                seen[item_type] += 1
                if order[item_type] < last_rank:
                    self.add("assoc.item-order", clause, SHOULD, hdr,
                             f"item {item_type:#04x} comes after an item that Table 9-11 places after it")
                last_rank = max(last_rank, order[item_type])
                self.reserved(hdr + 1, 1, f"item {item_type:#04x} reserved byte", clause)
            if item_type == C.ITEM_APPLICATION_CONTEXT:
                if seen[item_type] > 1:
                    self.add("assoc.duplicate-application-context", clause, MUST, hdr,
                             "more than one application context item")
                self.uid(start, stop, "application context name", "PS3.8 9.3.2.1")
            elif item_type == pc_type:
                (self.pc_rq if is_rq else self.pc_ac)(start, stop)
            elif item_type == C.ITEM_USER_INFORMATION:
                if seen[item_type] > 1:
                    self.add("assoc.duplicate-user-information", clause, MUST, hdr,
                             "more than one user information item")
                self.user_information(start, stop, is_rq)
            elif item_type in C.ITEM_NAMES:
                self.add("assoc.unexpected-item", clause, MUST, hdr,
                         f"{C.ITEM_NAMES[item_type]} item {item_type:#04x} does not belong in the {name} variable field")
            else:
                self.add("assoc.unknown-item", clause, SHOULD, hdr, f"item type {item_type:#04x} is not defined")
        if not seen[C.ITEM_APPLICATION_CONTEXT]:
            self.add("assoc.no-application-context", clause, MUST, 74, "no application context item")
        if not seen[pc_type]:
            self.add("assoc.no-presentation-context", clause, MUST, 74, "no presentation context item")
        elif seen[pc_type] > C.MAX_PRESENTATION_CONTEXTS:
            self.add("assoc.too-many-presentation-contexts", "PS3.8 9.3.2.2", MUST, 74,
                     f"{seen[pc_type]} presentation contexts, more than {C.MAX_PRESENTATION_CONTEXTS}")
        if not seen[C.ITEM_USER_INFORMATION]:
            self.add("assoc.no-user-information", clause, MUST, 74, "no user information item")

    def context_id(self, start: int, clause: str) -> int:
        cid = self.buf[start]
        if cid % 2 == 0:
            self.add("pc.context-id-even", clause, MUST, start, f"presentation context ID {cid} is not odd")
        if cid in self.info.contexts:
            self.add("pc.duplicate-context-id", clause, MUST, start, f"presentation context ID {cid} appears twice")
        return cid

    def pc_rq(self, start: int, stop: int) -> None:
        clause = "PS3.8 9.3.2.2"
        if stop - start < 4:
            self.add("pc.too-short", clause, MUST, start - 4, "presentation context item shorter than 4 bytes")
            return
        cid = self.context_id(start, clause)
        self.reserved(start + 1, 3, "presentation context reserved bytes", clause)
        abstract: str | None = None
        transfers: list[str] = []
        for sub_type, s, e in self.items(start + 4, stop, clause):
            if sub_type == C.ITEM_ABSTRACT_SYNTAX:
                if abstract is not None:
                    self.add("pc.duplicate-abstract-syntax", "PS3.8 9.3.2.2.1", MUST, s - 4,
                             "more than one abstract syntax sub-item")
                abstract = self.uid(s, e, "abstract syntax name", "PS3.8 9.3.2.2.1")
            elif sub_type == C.ITEM_TRANSFER_SYNTAX:
                transfers.append(self.uid(s, e, "transfer syntax name", "PS3.8 9.3.2.2.2"))
            else:
                self.add("pc.unexpected-sub-item", clause, MUST, s - 4,
                         f"sub-item {sub_type:#04x} does not belong in a presentation context item")
        if abstract is None:
            self.add("pc.no-abstract-syntax", "PS3.8 9.3.2.2.1", MUST, start - 4,
                     f"presentation context {cid} has no abstract syntax sub-item")
        if not transfers:
            self.add("pc.no-transfer-syntax", "PS3.8 9.3.2.2.2", MUST, start - 4,
                     f"presentation context {cid} has no transfer syntax sub-item")
        self.info.contexts[cid] = (abstract, transfers, C.PC_ACCEPTANCE)

    def pc_ac(self, start: int, stop: int) -> None:
        clause = "PS3.8 9.3.3.2"
        if stop - start < 4:
            self.add("pc.too-short", clause, MUST, start - 4, "presentation context item shorter than 4 bytes")
            return
        cid = self.context_id(start, clause)
        result = self.buf[start + 2]
        self.reserved(start + 1, 1, "presentation context reserved byte", clause)
        self.reserved(start + 3, 1, "presentation context reserved byte", clause)
        if result not in C.PC_RESULT_NAMES:
            self.add("ac.result-invalid", "PS3.8 9.3.3.2 Table 9-18", MUST, start + 2,
                     f"presentation context {cid} result {result} is not 0-4")
        transfers: list[str] = []
        for sub_type, s, e in self.items(start + 4, stop, clause):
            if result != C.PC_ACCEPTANCE:
                continue  # a rejected context's sub-items are not significant (Table 9-18)
            if sub_type == C.ITEM_TRANSFER_SYNTAX:
                transfers.append(self.uid(s, e, "transfer syntax name", "PS3.8 9.3.3.2.1"))
            else:
                self.add("pc.unexpected-sub-item", clause, MUST, s - 4,
                         f"sub-item {sub_type:#04x} does not belong in an accepted presentation context")
        if result == C.PC_ACCEPTANCE and len(transfers) != 1:
            self.add("ac.transfer-syntax-count", "PS3.8 9.3.3.2.1", MUST, start - 4,
                     f"accepted presentation context {cid} has {len(transfers)} transfer syntax sub-items, not 1")
        self.info.contexts[cid] = (None, transfers, result)

    def user_information(self, start: int, stop: int, is_rq: bool) -> None:
        clause = "PS3.8 9.3.2.3" if is_rq else "PS3.8 9.3.3.3"
        counts: dict[int, int] = {}
        for sub_type, s, e in self.items(start, stop, clause):
            hdr = s - 4
            counts[sub_type] = counts.get(sub_type, 0) + 1
            if sub_type != C.SUB_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION:  # byte 2 of 57H is its version
                self.reserved(hdr + 1, 1, f"sub-item {sub_type:#04x} reserved byte", clause)
            unique = sub_type in (C.SUB_MAXIMUM_LENGTH, C.SUB_IMPLEMENTATION_CLASS_UID,
                                  C.SUB_IMPLEMENTATION_VERSION_NAME, C.SUB_ASYNCHRONOUS_OPERATIONS_WINDOW,
                                  C.SUB_USER_IDENTITY_RQ, C.SUB_USER_IDENTITY_AC)
            if unique and counts[sub_type] == 2:
                self.add("ui.duplicate-sub-item", clause, MUST, hdr,
                         f"more than one {C.ITEM_NAMES[sub_type]} sub-item")
            wrong_side = C.SUB_USER_IDENTITY_AC if is_rq else C.SUB_USER_IDENTITY_RQ
            if sub_type == wrong_side:
                self.add("ui.unexpected-sub-item", "PS3.7 D.3.3.7", MUST, hdr,
                         f"{C.ITEM_NAMES[sub_type]} sub-item does not belong in this PDU")
                continue
            self.sub_item(sub_type, s, e)
        if C.SUB_MAXIMUM_LENGTH not in counts:
            # The requestor shall specify its maximum length; the acceptor "can" (PS3.8 D.1).
            self.add("ui.no-maximum-length", "PS3.8 D.1", MUST if is_rq else SHOULD, start - 4,
                     "no Maximum Length sub-item")
        if C.SUB_IMPLEMENTATION_CLASS_UID not in counts:
            self.add("ui.no-implementation-class-uid", "PS3.7 D.3.3.2.1", MUST, start - 4,
                     "no Implementation Class UID sub-item")

    def fixed_size(self, s: int, e: int, size: int, what: str, clause: str) -> bool:
        if e - s != size:
            self.add("sub-item.size", clause, MUST, s - 2, f"{what} sub-item value is {e - s} bytes, not {size}")
            return False
        return True

    def trailing(self, pos: int, e: int, what: str, clause: str) -> None:
        if pos != e:
            self.add("sub-item.trailing-bytes", clause, MUST, pos, f"{e - pos} byte(s) after the {what}")

    def sub_item(self, t: int, s: int, e: int) -> None:
        b = self.buf
        if t == C.SUB_MAXIMUM_LENGTH:
            if self.fixed_size(s, e, 4, "maximum length", "PS3.8 D.1.1"):
                self.info.max_length = _U32.unpack_from(b, s)[0]
        elif t == C.SUB_IMPLEMENTATION_CLASS_UID:
            self.uid(s, e, "implementation class UID", "PS3.7 D.3.3.2.1")
        elif t == C.SUB_ASYNCHRONOUS_OPERATIONS_WINDOW:
            self.fixed_size(s, e, 4, "asynchronous operations window", "PS3.7 D.3.3.3")
        elif t == C.SUB_IMPLEMENTATION_VERSION_NAME:
            if not 1 <= e - s <= 16:
                self.add("ui.version-name-length", "PS3.7 D.3.3.2.3", MUST, s - 2,
                         f"implementation version name is {e - s} bytes, not 1-16")
        elif t == C.SUB_ROLE_SELECTION:
            clause = "PS3.7 D.3.3.4"
            f = self.prefixed(s, e, "SOP class UID", clause)
            if f is None:
                return
            self.uid(f[0], f[1], "SOP class UID", clause)
            if e - f[1] != 2:
                self.add("sub-item.size", clause, MUST, f[1],
                         f"role selection has {e - f[1]} byte(s) after the SOP class UID, not 2")
                return
            scu, scp = b[f[1]], b[f[1] + 1]
            for value, at, what in ((scu, f[1], "SCU-role"), (scp, f[1] + 1, "SCP-role")):
                if value not in (0, 1):
                    self.add("role.invalid-value", clause, MUST, at, f"{what} {value} is not 0 or 1")
        elif t == C.SUB_SOP_CLASS_EXTENDED_NEGOTIATION:
            f = self.prefixed(s, e, "SOP class UID", "PS3.7 D.3.3.5")
            if f is not None:
                self.uid(f[0], f[1], "SOP class UID", "PS3.7 D.3.3.5")
        elif t == C.SUB_SOP_CLASS_COMMON_EXTENDED_NEGOTIATION:
            clause = "PS3.7 D.3.3.6"
            pos = s
            for what in ("SOP class UID", "service class UID"):
                f = self.prefixed(pos, e, what, clause)
                if f is None:
                    return
                self.uid(f[0], f[1], what, clause)
                pos = f[1]
            f = self.prefixed(pos, e, "related general SOP class identification", clause)
            if f is None:
                return
            rpos = f[0]
            while rpos < f[1]:
                g = self.prefixed(rpos, f[1], "related general SOP class UID", clause)
                if g is None:
                    break
                self.uid(g[0], g[1], "related general SOP class UID", clause)
                rpos = g[1]
            self.trailing(f[1], e, "related general SOP class identification", clause)
        elif t == C.SUB_USER_IDENTITY_RQ:
            self.user_identity(s, e)
        elif t == C.SUB_USER_IDENTITY_AC:
            clause = "PS3.7 D.3.3.7.2"
            f = self.prefixed(s, e, "server response", clause)
            if f is not None:
                self.trailing(f[1], e, "server response", clause)

    def user_identity(self, s: int, e: int) -> None:
        clause = "PS3.7 D.3.3.7.1"
        if e - s < 2:
            self.add("sub-item.size", clause, MUST, s, "user identity sub-item shorter than its fixed fields")
            return
        kind, positive = self.buf[s], self.buf[s + 1]
        if kind not in C.USER_IDENTITY_TYPES:
            self.add("user-identity.type-invalid", clause, MUST, s, f"user identity type {kind} is not 1-5")
        if positive not in (0, 1):
            self.add("user-identity.positive-response-invalid", clause, MUST, s + 1,
                     f"positive-response-requested {positive} is not 0 or 1")
        p = self.prefixed(s + 2, e, "primary field", clause)
        if p is None:
            return
        if p[0] == p[1]:
            self.add("user-identity.primary-empty", clause, MUST, s + 2, "the primary field is empty")
        q = self.prefixed(p[1], e, "secondary field (its length is always present)", clause)
        if q is None:
            return
        if q[1] > q[0] and kind != 2:
            self.add("user-identity.unexpected-secondary", clause, MUST, p[1],
                     f"a secondary field is present with user identity type {kind} (only type 2 has one)")
        if kind == 2 and q[1] == q[0]:
            self.add("user-identity.no-passcode", clause, MUST, p[1], "user identity type 2 has no passcode")
        self.trailing(q[1], e, "secondary field", clause)

    def pdata(self, end: int) -> None:
        clause = "PS3.8 9.3.5"
        pos = 6
        if end == 6:
            self.add("pdata.no-pdv", clause, MUST, 2, "P-DATA-TF with no PDV item")
        while pos < end:
            if end - pos < 6:
                self.add("pdv.truncated-header", clause, MUST, pos,
                         f"{end - pos} trailing byte(s) are too short for a PDV item header")
                return
            length = _U32.unpack_from(self.buf, pos)[0]
            if length < 2:
                self.add("pdv.length-too-small", "PS3.8 9.3.5.1", MUST, pos, f"PDV item length {length} is less than 2")
                return
            cid, mch = self.buf[pos + 4], self.buf[pos + 5]
            if cid % 2 == 0:
                self.add("pdv.context-id-even", "PS3.8 9.3.5.1", MUST, pos + 4,
                         f"PDV presentation context ID {cid} is not odd")
            if self.report_reserved and mch & ~(C.MCH_COMMAND | C.MCH_LAST):
                self.add("reserved.nonzero", "PS3.8 E.2", SHOULD, pos + 5,
                         f"message control header {mch:#04x} sets reserved bits 2-7 (not tested on receipt)")
            stop = pos + 4 + length
            if stop > end:
                self.add("pdv.length-overrun", clause, MUST, pos,
                         f"PDV item length {length} overruns the PDU by {stop - end} byte(s)")
                return
            if length % 2:
                self.add("pdv.odd-fragment", "PS3.8 E.1", MUST, pos,
                         f"a message fragment of {length - 2} bytes: each fragment shall consist of an even "
                         "number of bytes")
            self.info.pdv_contexts.append(cid)
            pos = stop


def _walk(pdu: bytes, report_reserved: bool = False) -> tuple[list[Finding], _Context]:
    w = _Walk(pdu, report_reserved)
    return w.run(), w.info


def check(
    pdu: bytes,
    conversation: "ConversationState | None" = None,
    from_requestor: bool = False,
    *,
    report_reserved: bool = False,
) -> list[Finding]:
    """Every way ``pdu`` breaks PS3.8 / PS3.7; with ``conversation``, also against what it negotiated.

    With a conversation the PDU is also recorded (:meth:`ConversationState.observe`).
    Reserved fields are not tested on receipt (PS3.8 9.3.1), so non-zero ones
    are reported only with ``report_reserved`` (a "should" about the sender,
    for checking what we send ourselves).
    """
    if conversation is not None:
        return conversation.observe(pdu, from_requestor)
    return _walk(pdu, report_reserved)[0]


# check_reply problems whose fault the single-PDU walk reports already (under its own code).
_WALK_COVERS = frozenset({
    "ac.context.duplicate", "ac.context.id-not-odd", "ac.context.result-undefined", "ac.context.no-transfer-syntax",
    "ac.protocol-version", "ac.max-length.missing", "ac.max-length.duplicate",
    "ac.implementation-class-uid.missing", "ac.implementation-class-uid.invalid",
    "ac.implementation-class-uid.duplicate", "ac.implementation-version-name.length",
    "ac.implementation-version-name.duplicate", "ac.async-window.duplicate", "ac.role.value-undefined",
    "ac.user-identity.duplicate", "ac.user-identity.rq-form",
    "rj.result-undefined", "rj.source-undefined", "rj.reason-undefined",
})
# Byte offsets in the reply of the fixed fields some problems are about (PS3.8 9.3.3).
_REPLY_OFFSETS = {"ac.called-ae-echo": 10, "ac.calling-ae-echo": 26, "ac.reserved-echo": 42}


class ConversationState:
    """What one association has negotiated so far, seen from the wire (both directions).

    :meth:`observe` checks a PDU alone and against the conversation, then
    records it.  ``from_requestor`` tells the direction: the requestor sent
    the A-ASSOCIATE-RQ.
    """

    def __init__(self, check_dimse: bool = True, report_reserved: bool = False,
                 data_sets_of: tuple[bool, ...] = (True, False)) -> None:
        self.check_dimse = check_dimse
        # The directions (from_requestor) whose data sets are decoded to check their encoding: a
        # harness checks the peer's, not the megabytes it sends itself.
        self.data_sets_of = data_sets_of
        self.report_reserved = report_reserved
        self.rq: _Context | None = None
        self.rq_bytes = b""
        self.ac: _Context | None = None
        self.accepted: dict[int, str] = {}  # context ID -> transfer syntax
        self.released_by: bool | None = None  # direction of the first A-RELEASE-RQ, once sent
        self.release_requested: set[bool] = set()  # directions that sent an A-RELEASE-RQ (both: a collision)
        self.ended = False
        self._assemblers: dict[bool, object] = {}
        self._outstanding: Any = None  # dimse_check.Outstanding: requests awaiting their final response

    def limit_for(self, from_requestor: bool) -> int | None:
        """The Maximum Length the receiver of this direction announced (PS3.8 D.1.1)."""
        peer = self.ac if from_requestor else self.rq
        return None if peer is None else peer.max_length

    def observe(self, pdu: bytes, from_requestor: bool) -> list[Finding]:
        pdu = bytes(pdu)
        out, info = _walk(pdu, self.report_reserved)
        malformed = any(f.severity == MUST for f in out)
        if len(pdu) < C.PDU_HEADER_LENGTH or pdu[0] not in C.PDU_NAMES:
            return out
        kind = pdu[0]
        self._sequence(kind, from_requestor, out)
        if kind == C.A_ASSOCIATE_RQ and self.rq is None:
            self.rq, self.rq_bytes = info, pdu
        elif kind in (C.A_ASSOCIATE_AC, C.A_ASSOCIATE_RJ) and self.rq is not None and self.ac is None:
            self._check_reply(pdu, out)
        if kind == C.A_ASSOCIATE_AC and self.rq is not None and self.ac is None:
            self.ac = info
            self.accepted = {
                cid: ts[0] for cid, (_a, ts, result) in info.contexts.items()
                if result == C.PC_ACCEPTANCE and ts and cid in self.rq.contexts
            }
        elif kind == C.P_DATA_TF and self.ac is not None:
            self._check_pdata(pdu, info, from_requestor, out, malformed)
        elif kind == C.P_DATA_TF:
            self._requests().lost()
        elif kind == C.A_RELEASE_RQ:
            if self.released_by is None:
                self.released_by = from_requestor
            self.release_requested.add(from_requestor)
        elif kind in (C.A_ABORT, C.A_ASSOCIATE_RJ):
            self.ended = True
        return out

    def _sequence(self, kind: int, from_requestor: bool, out: list[Finding]) -> None:
        """PDUs that no state of PS3.8 Table 9-10 lets this side send now."""
        name = C.PDU_NAMES[kind]
        why = None
        if kind == C.A_ABORT:
            return
        if self.ended:
            why = "after the association ended"
        elif kind == C.A_ASSOCIATE_RQ:
            if not from_requestor or self.rq is not None:
                why = "when an association was already requested"
        elif kind in (C.A_ASSOCIATE_AC, C.A_ASSOCIATE_RJ):
            if from_requestor or self.rq is None or self.ac is not None:
                why = "from a side that has no A-ASSOCIATE-RQ to answer"
        elif self.ac is None:
            why = "before the association was accepted"
        elif kind == C.A_RELEASE_RP and (not from_requestor) not in self.release_requested:
            why = "without an A-RELEASE-RQ from the peer"  # a collision has requests both ways (AR-8)
        if why:
            out.append(Finding("pdu.unexpected", "PS3.8 9.2 Table 9-10", MUST, 0, f"{name} {why}"))

    def _check_reply(self, reply: bytes, out: list[Finding]) -> None:
        """The AC or RJ against the RQ it answers: the core's :func:`check_reply`, as findings.

        Problems the single-PDU walk already reports (structure, undefined
        values, duplicates) are left out so that each fault is listed once.
        """
        from dicomconf.ul.negotiation_check import check_reply
        from dicomconf.ul.pdu import decode_pdu

        try:
            rq, answer = decode_pdu(self.rq_bytes), decode_pdu(reply)
        except RemoteProtocolError:
            return  # the walk has reported what keeps it from decoding
        for problem in check_reply(rq, answer):  # type: ignore[arg-type]
            if problem.code not in _WALK_COVERS:
                out.append(Finding(problem.code, problem.clause, problem.severity,
                                   _REPLY_OFFSETS.get(problem.code), problem.message))

    def _check_pdata(
        self, pdu: bytes, info: _Context, from_requestor: bool, out: list[Finding], malformed: bool
    ) -> None:
        limit = self.limit_for(from_requestor)
        body = len(pdu) - C.PDU_HEADER_LENGTH
        if limit and body > limit:
            out.append(Finding("pdata.exceeds-max-length", "PS3.8 D.1.1", MUST, 2,
                               f"P-DATA-TF variable field of {body} bytes exceeds the peer's maximum length {limit}"))
        if malformed:
            self._requests().lost()
            return  # the walk has reported why
        for cid in info.pdv_contexts:
            if cid not in self.accepted:
                out.append(Finding("pdv.context-not-accepted", "PS3.8 9.3.5.1", MUST, None,
                                   f"PDV on presentation context {cid}, which was not accepted"))
                self._requests().lost()
                return
        if self.check_dimse:
            self._assemble(pdu, from_requestor, out)

    def _requests(self) -> Any:
        """The association's outstanding DIMSE requests (:class:`dicomconf.ul.dimse_check.Outstanding`)."""
        if self._outstanding is None:
            from dicomconf.ul.dimse_check import Outstanding

            self._outstanding = Outstanding()
        return self._outstanding

    def _assemble(self, pdu: bytes, from_requestor: bool, out: list[Finding]) -> None:
        """The core's DIMSE assembler over this direction's PDVs (PS3.8 Annex E, PS3.7 6.3.1); each
        message it completes is checked whole by :func:`dicomconf.ul.dimse_check.check_message`
        (command elements, data set in the accepted transfer syntax, message IDs)."""
        from dicomconf.ul.dimse import MessageAssembler
        from dicomconf.ul.dimse_check import check_message
        from dicomconf.ul.pdu import decode_pdu

        assembler = self._assemblers.setdefault(from_requestor, MessageAssembler())
        try:
            messages = assembler.add_pdata(decode_pdu(pdu))  # type: ignore[attr-defined]
        except RemoteProtocolError as exc:
            out.append(Finding("dimse.invalid", exc.clause, MUST, None, exc.message))
            self._assemblers[from_requestor] = MessageAssembler()
            self._requests().lost()
            return
        for message in messages:
            ts = self.accepted.get(message.context_id) if from_requestor in self.data_sets_of else None
            for p in check_message(message, ts, self._requests(), from_requestor=from_requestor):
                out.append(Finding(p.code, p.clause, p.severity, None, p.message))


__all__ = ["Finding", "ConversationState", "check", "MUST", "SHOULD"]
