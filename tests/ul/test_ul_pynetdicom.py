"""Differential tests: our codec and pynetdicom's agree on legal PDUs, both ways.

Bytes pynetdicom builds (from its primitives) decode in ours to the same
fields; bytes we build decode in pynetdicom (``PDU().decode(bytes)``) to the
same fields.  Each side is reduced to a plain "normal form" of tuples so the
comparison does not depend on either library's classes.
"""

from __future__ import annotations

import pytest

pynetdicom = pytest.importorskip("pynetdicom")

from pynetdicom import pdu as pnpdu  # noqa: E402
from pynetdicom import pdu_primitives as prim  # noqa: E402
from pynetdicom.presentation import PresentationContext  # noqa: E402

from dicomconf.ul import constants as C  # noqa: E402
from dicomconf.ul import items as I  # noqa: E402
from dicomconf.ul.pdu import (  # noqa: E402
    PDV,
    AAbort,
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    AReleaseRQ,
    PDataTF,
    decode_pdu,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
IVR = "1.2.840.10008.1.2"
EVR = "1.2.840.10008.1.2.1"
VER = "1.2.840.10008.1.1"


def _s(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return str(value).rstrip("\x00 ")


# --------------------------------------------------------------------------
# normal forms


def _pn_sub(s) -> tuple:
    t = s.item_type
    if t == 0x51:
        return (t, s.maximum_length_received)
    if t in (0x52, 0x55):
        return (t, _s(s.implementation_class_uid if t == 0x52 else s.implementation_version_name))
    if t == 0x53:
        return (t, s.maximum_number_operations_invoked, s.maximum_number_operations_performed)
    if t == 0x54:
        return (t, _s(s.sop_class_uid), s.scu_role, s.scp_role)
    if t == 0x56:
        return (t, _s(s.sop_class_uid), bytes(s.service_class_application_information))
    if t == 0x57:
        return (t, _s(s.sop_class_uid), _s(s.service_class_uid),
                tuple(_s(u) for u in s.related_general_sop_class_identification))
    if t == 0x58:
        return (t, s.user_identity_type, int(s.positive_response_requested), bytes(s.primary_field),
                bytes(s.secondary_field or b""))
    if t == 0x59:
        return (t, bytes(s.server_response))
    raise AssertionError(f"unexpected pynetdicom sub-item {t:#x}")


def _our_sub(s) -> tuple:
    t = s.item_type
    if isinstance(s, I.MaximumLength):
        return (t, s.maximum_length)
    if isinstance(s, I.ImplementationClassUID):
        return (t, s.implementation_class_uid)
    if isinstance(s, I.ImplementationVersionName):
        return (t, s.implementation_version_name)
    if isinstance(s, I.AsynchronousOperationsWindow):
        return (t, s.maximum_number_operations_invoked, s.maximum_number_operations_performed)
    if isinstance(s, I.RoleSelection):
        return (t, s.sop_class_uid, s.scu_role, s.scp_role)
    if isinstance(s, I.SOPClassExtendedNegotiation):
        return (t, s.sop_class_uid, bytes(s.service_class_application_information))
    if isinstance(s, I.SOPClassCommonExtendedNegotiation):
        return (t, s.sop_class_uid, s.service_class_uid, s.related_general_sop_class_uids)
    if isinstance(s, I.UserIdentityRQ):
        return (t, s.user_identity_type, s.positive_response_requested, s.primary_field, s.secondary_field)
    if isinstance(s, I.UserIdentityAC):
        return (t, s.server_response)
    raise AssertionError(f"unexpected sub-item {s!r}")


def pn_form(p) -> tuple:
    """Normal form of a pynetdicom PDU."""
    if isinstance(p, pnpdu.A_ASSOCIATE_RQ):
        contexts = tuple(
            (c.context_id, _s(c.abstract_syntax), tuple(_s(t) for t in c.transfer_syntax))
            for c in p.presentation_context
        )
        return ("RQ", _s(p.called_ae_title), _s(p.calling_ae_title), _s(p.application_context_name),
                contexts, tuple(_pn_sub(s) for s in p.user_information.user_data))
    if isinstance(p, pnpdu.A_ASSOCIATE_AC):
        contexts = tuple(
            (c.context_id, c.result, _s(c.transfer_syntax) if c.transfer_syntax else None)
            for c in p.presentation_context
        )
        return ("AC", _s(p.reserved_aet), _s(p.reserved_aec), _s(p.application_context_name),
                contexts, tuple(_pn_sub(s) for s in p.user_information.user_data))
    if isinstance(p, pnpdu.A_ASSOCIATE_RJ):
        return ("RJ", p.result, p.source, p.reason_diagnostic)
    if isinstance(p, pnpdu.P_DATA_TF):
        # pynetdicom keeps the message control header as the first byte of the value
        return ("PDATA", tuple((v.context_id, v.presentation_data_value[0], bytes(v.presentation_data_value[1:]))
                               for v in p.presentation_data_value_items))
    if isinstance(p, pnpdu.A_RELEASE_RQ):
        return ("RELEASE-RQ",)
    if isinstance(p, pnpdu.A_RELEASE_RP):
        return ("RELEASE-RP",)
    if isinstance(p, pnpdu.A_ABORT_RQ):
        return ("ABORT", p.source, p.reason_diagnostic)
    raise AssertionError(f"unexpected pynetdicom PDU {p!r}")


def our_form(p) -> tuple:
    """Normal form of one of our PDUs."""
    if isinstance(p, AAssociateRQ):
        contexts = tuple((c.context_id, c.abstract_syntax, c.transfer_syntaxes) for c in p.presentation_contexts)
        return ("RQ", p.called_ae_title, p.calling_ae_title, p.application_context_name, contexts,
                tuple(_our_sub(s) for s in p.user_information.sub_items))
    if isinstance(p, AAssociateAC):
        contexts = tuple((c.context_id, c.result, c.transfer_syntax) for c in p.presentation_contexts)
        return ("AC", p.called_ae_title, p.calling_ae_title, p.application_context_name, contexts,
                tuple(_our_sub(s) for s in p.user_information.sub_items))
    if isinstance(p, AAssociateRJ):
        return ("RJ", p.result, p.source, p.reason)
    if isinstance(p, PDataTF):
        return ("PDATA", tuple((v.context_id, v.message_control_header, bytes(v.data)) for v in p.pdvs))
    if isinstance(p, AReleaseRQ):
        return ("RELEASE-RQ",)
    if isinstance(p, AReleaseRP):
        return ("RELEASE-RP",)
    if isinstance(p, AAbort):
        return ("ABORT", p.source, p.reason)
    raise AssertionError(f"unexpected PDU {p!r}")


# --------------------------------------------------------------------------
# pynetdicom-built PDUs


def _user_info(ac: bool) -> list:
    ml = prim.MaximumLengthNotification()
    ml.maximum_length_received = 32768
    ic = prim.ImplementationClassUIDNotification()
    ic.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.3.0.4"
    vn = prim.ImplementationVersionNameNotification()
    vn.implementation_version_name = "PYNETDICOM_304"
    aw = prim.AsynchronousOperationsWindowNegotiation()
    aw.maximum_number_operations_invoked = 3
    aw.maximum_number_operations_performed = 2
    roles = []
    for uid, scu, scp in ((CT, True, False), (MR, False, True)):
        r = prim.SCP_SCU_RoleSelectionNegotiation()
        r.sop_class_uid, r.scu_role, r.scp_role = uid, scu, scp
        roles.append(r)
    ext = prim.SOPClassExtendedNegotiation()
    ext.sop_class_uid = CT
    ext.service_class_application_information = b"\x01\x00\x01\x00"
    out = [ml, ic, aw, *roles, vn, ext]
    if ac:
        uid = prim.UserIdentityNegotiation()
        uid.server_response = b"welcome"
        return out + [uid]
    common = prim.SOPClassCommonExtendedNegotiation()
    common.sop_class_uid = MR
    common.service_class_uid = "1.2.840.10008.4.2"
    common.related_general_sop_class_identification = ["1.2.840.10008.5.1.4.1.1.4.1", "1.2.3"]
    ident = prim.UserIdentityNegotiation()
    ident.user_identity_type = 2
    ident.primary_field = b"alice"
    ident.secondary_field = b"s3cret"
    ident.positive_response_requested = True
    return out + [common, ident]


def _pn_rq(n_contexts: int = 3) -> pnpdu.A_ASSOCIATE_RQ:
    a = prim.A_ASSOCIATE()
    a.application_context_name = C.APPLICATION_CONTEXT_NAME
    a.calling_ae_title = "STORESCU"
    a.called_ae_title = "ANY-SCP"
    contexts = []
    for i in range(n_contexts):
        cx = PresentationContext()
        cx.context_id = 2 * i + 1
        cx.abstract_syntax = (VER, CT, MR)[i % 3]
        cx.transfer_syntax = [IVR, EVR] if i % 2 else [IVR]
        contexts.append(cx)
    a.presentation_context_definition_list = contexts
    a.user_information = _user_info(ac=False)
    p = pnpdu.A_ASSOCIATE_RQ()
    p.from_primitive(a)
    return p


def _pn_ac() -> pnpdu.A_ASSOCIATE_AC:
    a = prim.A_ASSOCIATE()
    a.application_context_name = C.APPLICATION_CONTEXT_NAME
    a.calling_ae_title = "STORESCU"
    a.called_ae_title = "ANY-SCP"
    a.result = 0
    contexts = []
    for cid, result, ts in ((1, 0, IVR), (3, 3, IVR), (5, 4, EVR), (7, 0, EVR)):
        cx = PresentationContext()
        cx.context_id, cx.result = cid, result
        cx.transfer_syntax = [ts]
        contexts.append(cx)
    a.presentation_context_definition_results_list = contexts
    a.user_information = _user_info(ac=True)
    p = pnpdu.A_ASSOCIATE_AC()
    p.from_primitive(a)
    return p


def _pn_simple(kind: str):
    if kind == "rj":
        p = pnpdu.A_ASSOCIATE_RJ()
        p.result, p.source, p.reason_diagnostic = 2, 3, 1
    elif kind == "pdata":
        d = prim.P_DATA()
        d.presentation_data_value_list = [[1, b"\x03" + b"cmd"], [3, b"\x00" + bytes(range(256))], [3, b"\x02"]]
        p = pnpdu.P_DATA_TF()
        p.from_primitive(d)
    elif kind == "release-rq":
        p = pnpdu.A_RELEASE_RQ()
    elif kind == "release-rp":
        p = pnpdu.A_RELEASE_RP()
    elif kind == "abort-user":
        a = prim.A_ABORT()
        a.abort_source = 0
        p = pnpdu.A_ABORT_RQ()
        p.from_primitive(a)
    else:
        a = prim.A_P_ABORT()
        a.provider_reason = 6
        p = pnpdu.A_ABORT_RQ()
        p.from_primitive(a)
    return p


PYNETDICOM_PDUS = {
    "rq-many-sub-items": _pn_rq,
    "rq-40-contexts": lambda: _pn_rq(40),
    "ac": _pn_ac,
    **{k: (lambda k=k: _pn_simple(k)) for k in
       ("rj", "pdata", "release-rq", "release-rp", "abort-user", "abort-provider")},
}


@pytest.mark.parametrize("make", PYNETDICOM_PDUS.values(), ids=PYNETDICOM_PDUS.keys())
def test_pynetdicom_bytes_decode_to_same_fields_in_ours(make):
    theirs = make()
    raw = theirs.encode()
    ours = decode_pdu(raw)
    assert our_form(ours) == pn_form(theirs)
    # and our re-encoding is the same bytes
    assert ours.encode() == raw


def _our_pdus() -> dict[str, object]:
    subs = (
        I.MaximumLength(16384),
        I.ImplementationClassUID("1.2.826.0.1.3680043.9.9"),
        I.AsynchronousOperationsWindow(0, 1),
        I.RoleSelection(CT, 1, 1),
        I.ImplementationVersionName("DICOMCONF_01"),
        I.SOPClassExtendedNegotiation(MR, b"\x01"),
        I.SOPClassCommonExtendedNegotiation(CT, "1.2.840.10008.4.2", ("1.2.3.4",)),
    )
    rq_subs = subs + (I.UserIdentityRQ(1, b"bob"),)
    ac_subs = subs + (I.UserIdentityAC(b"ok"),)
    contexts = tuple(I.PresentationContextRQ(2 * i + 1, (CT, MR, VER)[i % 3], (EVR, IVR)) for i in range(5))
    return {
        "rq": AAssociateRQ("PACS", "MODALITY", contexts, I.UserInformation(rq_subs)),
        "ac": AAssociateAC(
            "PACS",
            "MODALITY",
            (I.PresentationContextAC(1, 0, EVR), I.PresentationContextAC(3, 1, IVR),
             I.PresentationContextAC(5, 2, IVR)),
            I.UserInformation(ac_subs),
        ),
        "rj": AAssociateRJ(1, 1, 3),
        "pdata": PDataTF((PDV(1, 1, b"a" * 100), PDV(1, 3, b"b"), PDV(1, 2, b"c" * 5000))),
        "release-rq": AReleaseRQ(),
        "release-rp": AReleaseRP(),
        "abort": AAbort(2, 4),
    }


OURS = _our_pdus()
PN_CLASSES = {
    C.A_ASSOCIATE_RQ: pnpdu.A_ASSOCIATE_RQ,
    C.A_ASSOCIATE_AC: pnpdu.A_ASSOCIATE_AC,
    C.A_ASSOCIATE_RJ: pnpdu.A_ASSOCIATE_RJ,
    C.P_DATA_TF: pnpdu.P_DATA_TF,
    C.A_RELEASE_RQ: pnpdu.A_RELEASE_RQ,
    C.A_RELEASE_RP: pnpdu.A_RELEASE_RP,
    C.A_ABORT: pnpdu.A_ABORT_RQ,
}


@pytest.mark.parametrize("ours", OURS.values(), ids=OURS.keys())
def test_our_bytes_decode_to_same_fields_in_pynetdicom(ours):
    raw = ours.encode()
    theirs = PN_CLASSES[raw[0]]()
    theirs.decode(raw)
    assert pn_form(theirs) == our_form(ours)
    assert theirs.encode() == raw
