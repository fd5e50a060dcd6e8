"""scapy's dissection (our fixed layers) and the core codec agree on legal bytes, and crafting agrees with both."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomconf.ul import constants as C
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ, PDataTF, decode_pdu
from dicomconf.wire import layers
from dicomconf.wire.craft import build_pdu


def _uid(raw: bytes) -> str:
    return raw.decode("latin-1").rstrip("\0")


def _scapy_view(pdu: bytes) -> dict:
    """What scapy makes of a PDU, in the core's terms."""
    pkt = layers.dissect(pdu)
    body = pkt.payload
    view: dict = {"type": pkt.pdu_type, "length": pkt.length}
    if pkt.pdu_type in (C.A_ASSOCIATE_RQ, C.A_ASSOCIATE_AC):
        view["called"] = body.called_ae_title.decode("latin-1").strip()
        view["calling"] = body.calling_ae_title.decode("latin-1").strip()
        view["version"] = body.protocol_version
        ctxs, subs = [], []
        for item in body.variable_items:
            inner = item.payload
            if item.item_type == C.ITEM_APPLICATION_CONTEXT:
                view["app"] = _uid(inner.uid)
            elif item.item_type in (C.ITEM_PRESENTATION_CONTEXT_RQ, C.ITEM_PRESENTATION_CONTEXT_AC):
                names = [(s.item_type, _uid(s.payload.uid)) for s in inner.sub_items]
                result = getattr(inner, "result", None)
                ctxs.append((inner.context_id, result, names))
            elif item.item_type == C.ITEM_USER_INFORMATION:
                subs = [s.item_type for s in inner.sub_items]
                for s in inner.sub_items:
                    if s.item_type == C.SUB_MAXIMUM_LENGTH:
                        view["max"] = s.payload.max_pdu_length
        view["contexts"], view["subs"] = ctxs, subs
    elif pkt.pdu_type == C.P_DATA_TF:
        view["pdvs"] = [(p.context_id, p.is_command, p.is_last, bytes(p.data)) for p in body.pdv_items]
    else:
        view["raw"] = bytes(body)
    return view


def _core_view(pdu: bytes) -> dict:
    p = decode_pdu(pdu)
    view: dict = {"type": p.pdu_type, "length": len(pdu) - 6}
    if isinstance(p, (AAssociateRQ, AAssociateAC)):
        view.update(called=p.called_ae_title, calling=p.calling_ae_title, version=p.protocol_version,
                    app=p.application_context_name, max=p.user_information.maximum_length)
        ctxs = []
        for pc in p.presentation_contexts:
            if isinstance(p, AAssociateRQ):
                names = [(C.ITEM_ABSTRACT_SYNTAX, pc.abstract_syntax)]
                names += [(C.ITEM_TRANSFER_SYNTAX, t) for t in pc.transfer_syntaxes]
                ctxs.append((pc.context_id, None, names))
            else:
                names = [] if pc.transfer_syntax is None else [(C.ITEM_TRANSFER_SYNTAX, pc.transfer_syntax)]
                ctxs.append((pc.context_id, pc.result, names))
        view["contexts"] = ctxs
        view["subs"] = [s.item_type for s in p.user_information.sub_items]
    elif isinstance(p, PDataTF):
        view["pdvs"] = [(v.context_id, v.is_command, v.is_last, bytes(v.data)) for v in p.pdvs]
    else:
        view["raw"] = pdu[6:]
    return view


uids = st.lists(st.integers(0, 99999), min_size=2, max_size=6).map(lambda xs: ".".join(map(str, xs)))
aes = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=16)


@st.composite
def rq_specs(draw):
    n = draw(st.integers(1, 6))
    return {
        "pdu": "A-ASSOCIATE-RQ",
        "called_ae_title": draw(aes), "calling_ae_title": draw(aes),
        "presentation_contexts": [
            {"context_id": 2 * i + 1, "abstract_syntax": draw(uids),
             "transfer_syntaxes": draw(st.lists(uids, min_size=1, max_size=4))} for i in range(n)],
        "user_information": [{"item": "maximum-length", "maximum_length": draw(st.integers(0, 2**32 - 1))},
                             {"item": "implementation-class-uid", "implementation_class_uid": draw(uids)}]
        + draw(st.lists(st.builds(lambda u, a, b: {"item": "role-selection", "sop_class_uid": u,
                                                    "scu_role": a, "scp_role": b}, uids, st.integers(0, 1),
                                  st.integers(0, 1)), max_size=3)),
    }


@st.composite
def ac_specs(draw):
    n = draw(st.integers(1, 6))
    ctxs = []
    for i in range(n):
        result = draw(st.integers(0, 4))
        ctxs.append({"context_id": 2 * i + 1, "result": result,
                     "transfer_syntax": draw(uids) if result == 0 else draw(st.none() | uids)})
    return {"pdu": "A-ASSOCIATE-AC", "called_ae_title": draw(aes), "calling_ae_title": draw(aes),
            "presentation_contexts": ctxs}


@st.composite
def pdata_specs(draw):
    return {"pdu": "P-DATA-TF", "pdvs": draw(st.lists(st.builds(
        lambda c, m, d: {"context_id": c, "message_control_header": m, "data": d.hex()},
        st.integers(0, 127).map(lambda x: 2 * x + 1), st.integers(0, 3), st.binary(max_size=64)), min_size=1,
        max_size=8))}


fixed_specs = st.one_of(
    st.builds(lambda r, s, n: {"pdu": "A-ASSOCIATE-RJ", "result": r, "source": s, "reason": n},
              st.integers(1, 2), st.integers(1, 3), st.integers(1, 2)),
    st.just({"pdu": "A-RELEASE-RQ"}), st.just({"pdu": "A-RELEASE-RP"}),
    st.builds(lambda s, n: {"pdu": "A-ABORT", "source": s, "reason": n}, st.sampled_from([0, 2]), st.integers(0, 6)),
)


@settings(max_examples=60, deadline=None)
@given(st.one_of(rq_specs(), ac_specs(), pdata_specs(), fixed_specs))
def test_scapy_and_core_agree_on_crafted_legal_pdus(spec):
    pdu = build_pdu(spec)
    assert _scapy_view(pdu) == _core_view(pdu)
    assert bytes(layers.dissect(pdu)) == pdu  # scapy rebuilds the same bytes
    assert decode_pdu(pdu).encode() == pdu  # and so does the core


def test_scapy_and_core_agree_on_pynetdicom_pdus():
    pdu_mod = pytest.importorskip("pynetdicom.pdu")
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.pdu_primitives import ImplementationClassUIDNotification, SCP_SCU_RoleSelectionNegotiation
    from pynetdicom.presentation import build_context

    prim = A_ASSOCIATE()
    prim.application_context_name = "1.2.840.10008.3.1.1.1"
    prim.calling_ae_title, prim.called_ae_title = "SCU", "SCP"
    ctxs = []
    for i, uid in enumerate(["1.2.840.10008.1.1", "1.2.840.10008.5.1.4.1.1.2"]):
        ctx = build_context(uid)
        ctx.context_id = 2 * i + 1
        ctxs.append(ctx)
    prim.presentation_context_definition_list = ctxs
    ml, ic, role = MaximumLengthNotification(), ImplementationClassUIDNotification(), SCP_SCU_RoleSelectionNegotiation()
    ml.maximum_length_received = 16382
    ic.implementation_class_uid = "1.2.826.0.1.3680043.9.3811.3.0.4"
    role.sop_class_uid, role.scu_role, role.scp_role = "1.2.840.10008.5.1.4.1.1.2", True, True
    prim.user_information = [ml, ic, role]
    rq = pdu_mod.A_ASSOCIATE_RQ()
    rq.from_primitive(prim)
    raw = rq.encode()
    assert _scapy_view(raw) == _core_view(raw)
    assert bytes(layers.dissect(raw)) == raw
