"""Whole DIMSE messages checked on the wire, both directions (ConversationState + dimse_check).

Each association is built from crafted PDUs; the messages are fragmented as
a peer would send them, so these tests see what a scenario, the fake SCP and
``dicomconf decode`` see.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicomconf.ul import dimse as D
from dicomconf.wire.craft import build_pdu
from dicomconf.wire.findings import MUST, SHOULD, ConversationState, Finding

CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
INSTANCE = "1.2.826.0.1.3680043.2.1143.8.1"
IMPL, EXPL = ImplicitVRLittleEndian, ExplicitVRLittleEndian
DIMSE_CODES = ("dimse.",)


def ct_dataset(size: int = 6000) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = INSTANCE
    ds.PatientName = "Wire^Dimse"
    ds.PatientID = "WD1"
    ds.Rows, ds.Columns, ds.BitsAllocated = 1, size // 2, 16
    ds.PixelData = bytes(range(256)) * (size // 256) + bytes(size % 256)
    return ds


def associated(max_length: int = 0) -> ConversationState:
    """An association: context 1 Verification (implicit), 3 CT (implicit), 5 CT (explicit)."""
    state = ConversationState()
    ui = [{"item": "maximum-length", "maximum_length": max_length}, {"item": "implementation-class-uid"}]
    rq = {"pdu": "A-ASSOCIATE-RQ", "user_information": ui, "presentation_contexts": [
        {"context_id": 1, "abstract_syntax": VERIFICATION, "transfer_syntaxes": [IMPL]},
        {"context_id": 3, "abstract_syntax": CT, "transfer_syntaxes": [IMPL]},
        {"context_id": 5, "abstract_syntax": CT, "transfer_syntaxes": [EXPL]},
    ]}
    ac = {"pdu": "A-ASSOCIATE-AC", "user_information": ui, "presentation_contexts": [
        {"context_id": 1, "transfer_syntax": IMPL}, {"context_id": 3, "transfer_syntax": IMPL},
        {"context_id": 5, "transfer_syntax": EXPL}]}
    assert state.observe(build_pdu(rq), True) == []
    assert state.observe(build_pdu(ac), False) == []
    return state


def send(state: ConversationState, message: D.Message, from_requestor: bool, max_pdu: int = 0) -> list[list[Finding]]:
    """The findings of each P-DATA-TF that carries ``message``, fragmented to ``max_pdu``."""
    return [state.observe(pdu, from_requestor) for pdu in D.fragment(message, max_pdu)]


def dimse(found: list[Finding]) -> list[str]:
    return [f.code for f in found if f.code.startswith(DIMSE_CODES)]


def store(message_id: int, context_id: int, ts: str, ds: Dataset | None = None) -> D.Message:
    return D.c_store_rq(message_id, CT, INSTANCE, context_id=context_id,
                        data=D.encode_dataset(ds if ds is not None else ct_dataset(), ts))


def test_legal_echo_and_stores_in_both_syntaxes_have_no_findings():
    state = associated()
    exchange = [
        (D.c_echo_rq(1), True), (D.c_echo_rsp(D.c_echo_rq(1)), False),
        (store(2, 3, IMPL), True), (D.c_store_rsp(store(2, 3, IMPL)), False),
        (store(3, 5, EXPL), True), (D.c_store_rsp(store(3, 5, EXPL)), False),
    ]
    for message, from_rq in exchange:
        for found in send(state, message, from_rq, max_pdu=1024):
            assert found == []
    assert state.observe(build_pdu({"pdu": "A-RELEASE-RQ"}), True) == []


def test_explicit_vr_data_set_on_an_implicit_context_is_flagged():
    state = associated()
    per_pdu = send(state, store(1, 3, EXPL), True, max_pdu=1024)
    assert all(found == [] for found in per_pdu[:-1])
    [finding] = per_pdu[-1]
    assert (finding.code, finding.severity, finding.offset) == ("dimse.data-set.encoding", MUST, None)
    assert "Implicit VR Little Endian" in finding.message and finding.clause.startswith("PS3.5 10")
    assert send(state, store(2, 5, EXPL), True) == [[], []]  # the same bytes on the explicit context are legal


def test_fragmented_message_is_checked_once_when_complete():
    state = associated()
    broken = D.c_store_rq(7, CT, INSTANCE + ".2", context_id=3, data=D.encode_dataset(ct_dataset(), IMPL))
    per_pdu = send(state, broken, True, max_pdu=256)
    assert len(per_pdu) > 20
    assert [dimse(f) for f in per_pdu] == [[]] * (len(per_pdu) - 1) + [["dimse.store.sop-instance-mismatch"]]


def test_responses_are_checked_against_the_peers_requests():
    state = associated()
    assert send(state, D.c_echo_rq(4), True) == [[]]
    [found] = send(state, D.c_echo_rsp(5), False)
    assert dimse(found) == ["dimse.response.unknown-request"]
    assert found[0].clause == "PS3.7 9.3.5.2 Table 9.3-13"
    assert send(state, D.c_echo_rsp(4), False) == [[]]
    [found] = send(state, D.c_echo_rsp(4), False)  # answered already
    assert dimse(found) == ["dimse.response.unknown-request"]


def test_duplicate_message_id_from_either_side():
    state = associated()
    assert send(state, D.c_echo_rq(9), True) == [[]]
    assert [dimse(f) for f in send(state, store(9, 3, IMPL), True)] == [[], ["dimse.message-id.duplicate"]]
    assert send(state, D.c_echo_rq(9), False) == [[]]  # the acceptor's own requests count apart


def test_required_elements_in_a_response_from_the_acceptor():
    state = associated()
    send(state, D.c_echo_rq(1), True)
    rsp = D.c_echo_rsp(1)
    del rsp.command.Status
    [found] = send(state, rsp, False)
    assert dimse(found) == ["dimse.element-missing"]
    assert "Status" in found[0].message and found[0].severity == MUST


def test_command_data_set_type_both_ways():
    state = associated()
    announced_but_absent = build_pdu({"pdu": "P-DATA-TF", "pdvs": [
        {"context_id": 1, "command": {"CommandField": "C-ECHO-RQ", "MessageID": 1, "CommandDataSetType": 0}},
        {"context_id": 1, "command": {"CommandField": "C-ECHO-RQ", "MessageID": 2}}]})
    assert dimse(state.observe(announced_but_absent, True)) == ["dimse.invalid"]  # the assembler: a data set was due
    state = associated()
    data_without_announcement = build_pdu({"pdu": "P-DATA-TF", "pdvs": [
        {"context_id": 1, "command": {"CommandField": "C-ECHO-RQ", "MessageID": 1}},
        {"context_id": 1, "message_control_header": 2, "data": "0800200000000000"}]})
    assert dimse(state.observe(data_without_announcement, True)) == ["dimse.invalid"]
    state = associated()
    echo_with_data = build_pdu({"pdu": "P-DATA-TF", "pdvs": [
        {"context_id": 1, "command": {"CommandField": "C-ECHO-RQ", "MessageID": 1, "CommandDataSetType": 0}},
        {"context_id": 1, "message_control_header": 2, "data": "0800200000000000"}]})
    assert dimse(state.observe(echo_with_data, True)) == ["dimse.data-set.unexpected"]


@pytest.mark.parametrize("length", [0, 100, "missing"])
def test_command_group_length_wrong_or_missing_is_a_must_finding(length):
    good = D.encode_command(D.c_echo_rq(1).command)
    body = good[12:] if length == "missing" else good[:8] + int(length).to_bytes(4, "little") + good[12:]
    state = associated()
    found = state.observe(build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"context_id": 1, "data": body.hex()}]}), True)
    assert [(f.code, f.severity, f.clause) for f in found] == [("dimse.invalid", MUST, "PS3.7 6.3.1, E.1")]
    assert "Command Group Length" in found[0].message


def test_pending_find_without_identifier_is_only_should():
    state = associated()
    find = build_pdu({"pdu": "P-DATA-TF", "pdvs": [
        {"context_id": 1, "command": {"CommandField": "C-FIND-RQ", "MessageID": 3, "Priority": 0,
                                      "AffectedSOPClassUID": "1.2.840.10008.5.1.4.1.2.2.1",
                                      "CommandDataSetType": 0}},
        {"context_id": 1, "message_control_header": 2, "data": "0800520006000000535455445920"}]})
    assert dimse(state.observe(find, True)) == []
    pending = build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"context_id": 1, "command": {
        "CommandField": "C-FIND-RSP", "MessageIDBeingRespondedTo": 3, "Status": 0xFF00,
        "AffectedSOPClassUID": "1.2.840.10008.5.1.4.1.2.2.1"}}]})
    found = state.observe(pending, False)
    assert [(f.code, f.severity) for f in found] == [("dimse.data-set.pending-without-identifier", SHOULD)]
    final = build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"context_id": 1, "command": {
        "CommandField": "C-FIND-RSP", "MessageIDBeingRespondedTo": 3, "Status": 0}}]})  # Verification: differs
    found = state.observe(final, False)  # the pending one kept the request open ...
    assert [f.code for f in found] == ["dimse.response.sop-class-differs"]  # ... whose SOP class was Find
    assert "1.2.840.10008.5.1.4.1.2.2.1" in found[0].message


def _answer_to(message_id: int) -> D.Message:
    return D.c_echo_rsp(message_id, context_id=1)


def test_traffic_not_seen_whole_stops_message_id_checks_not_the_rest():
    state = associated()
    off_context = build_pdu({"pdu": "P-DATA-TF", "pdvs": [
        {"context_id": 7, "command": {"CommandField": "C-ECHO-RQ", "MessageID": 11}}]})
    assert [f.code for f in state.observe(off_context, True)] == ["pdv.context-not-accepted"]
    assert send(state, _answer_to(11), False) == [[]]  # its request never reached the assembler
    rsp = _answer_to(12)
    del rsp.command.Status
    assert [dimse(f) for f in send(state, rsp, False)] == [["dimse.element-missing"]]


def test_broken_fragments_stop_message_id_checks():
    state = associated()
    stray = build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"context_id": 1, "message_control_header": 2, "data": "0000"}]})
    assert dimse(state.observe(stray, True)) == ["dimse.invalid"]
    assert send(state, _answer_to(20), False) == [[]]


def test_pdata_before_the_association_stops_message_id_checks():
    state = ConversationState()
    rq = build_pdu({"pdu": "A-ASSOCIATE-RQ"})
    pipelined = build_pdu({"pdu": "P-DATA-TF", "pdvs": [
        {"context_id": 1, "command": {"CommandField": "C-ECHO-RQ", "MessageID": 30}}]})
    state.observe(rq, True)
    assert [f.code for f in state.observe(pipelined, True)] == ["pdu.unexpected"]
    state.observe(build_pdu({"pdu": "A-ASSOCIATE-AC"}), False)
    assert send(state, _answer_to(30), False) == [[]]


def test_without_dimse_checks_nothing_is_assembled_or_judged():
    state = ConversationState(check_dimse=False)
    state.observe(build_pdu({"pdu": "A-ASSOCIATE-RQ"}), True)
    state.observe(build_pdu({"pdu": "A-ASSOCIATE-AC"}), False)
    assert send(state, _answer_to(40), False) == [[]]


_ELEMENTS = st.fixed_dictionaries({}, optional={
    "MessageID": st.integers(0, 0xFFFF),
    "MessageIDBeingRespondedTo": st.integers(0, 0xFFFF),
    "Status": st.sampled_from([0, 0xFF00, 0xFF01, 0xFE00, 0xA700, 0xB000, 0xC001, 0x0211]),
    "Priority": st.integers(0, 4),
    "AffectedSOPClassUID": st.sampled_from([CT, VERIFICATION, "1.2.3"]),
    "AffectedSOPInstanceUID": st.sampled_from([INSTANCE, "1.2.3.4"]),
    "MoveDestination": st.just("DEST"),
    "ActionTypeID": st.integers(0, 3),
})


@st.composite
def messages(draw):
    command = draw(_ELEMENTS)
    command["CommandField"] = draw(st.sampled_from(sorted(D.COMMAND_FIELDS) + [0x0FF0, 0x8FF0]))
    data = draw(st.one_of(st.none(), st.binary(max_size=40).map(lambda b: b + b"\x00" * (len(b) % 2)),
                          st.just(D.encode_dataset(ct_dataset(64), IMPL)),
                          st.just(D.encode_dataset(ct_dataset(64), EXPL))))
    command["CommandDataSetType"] = D.NO_DATA_SET if data is None else draw(st.sampled_from([0, 1, 0x0102]))
    context_id = draw(st.sampled_from([1, 3, 5]))
    pdvs = [{"context_id": context_id, "command": command}]
    if data is not None:
        pdvs.append({"context_id": context_id, "message_control_header": 2, "data": data.hex()})
    return build_pdu({"pdu": "P-DATA-TF", "pdvs": pdvs}), draw(st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=8))
def test_any_sequence_of_messages_gives_well_formed_findings(sequence):
    state = associated()
    for pdu, from_rq in sequence:
        for f in state.observe(pdu, from_rq):
            assert f.severity in (MUST, SHOULD) and f.clause.startswith("PS3.") and f.message


# ---------------------------------------------------------------------------------------------------
# Real peers on loopback: query/retrieve traffic (pending responses with identifiers, C-CANCEL, C-GET's
# C-STORE sub-operations from the SCP on the same association) gives no DIMSE finding.

DCMTK_FINDSCU, DCMTK_GETSCU = "/usr/bin/findscu", "/usr/bin/getscu"
STUDY = "1.2.826.0.1.3680043.2.1143.5"


@pytest.fixture
def qr_scp():
    """A pynetdicom Study Root Find + Get SCP (three CT instances) on a free loopback port; stopped after."""
    pytest.importorskip("pynetdicom")
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import CTImageStorage
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelFind as FindModel,
    )
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelGet as GetModel,
    )

    stored = []
    for i in range(3):
        ds = ct_dataset(3000)
        ds.SOPInstanceUID = f"{INSTANCE}.{i}"
        ds.StudyInstanceUID = STUDY
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = IMPL
        stored.append(ds)

    def on_find(event):
        for _ds in stored:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            ident = Dataset()
            ident.QueryRetrieveLevel = "STUDY"
            ident.StudyInstanceUID = STUDY
            yield 0xFF00, ident

    def on_get(event):
        yield len(stored)
        for ds in stored:
            yield 0xFF00, ds

    ae = AE(ae_title="QRSCP")
    ae.add_supported_context(FindModel)
    ae.add_supported_context(GetModel)
    ae.add_supported_context(CTImageStorage, scu_role=True, scp_role=True)
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get)])
    yield server
    server.shutdown()


def _findings_of(relay, tmp_path) -> list[tuple[int, Finding]]:
    """Every finding of the relayed conversations, each connection its own association, in wire order."""
    from dicomconf.wire.capture import write_pcap
    from dicomconf.wire.pcapread import CapturedPDU, read_pdus

    path = tmp_path / "relayed.pcap"
    write_pcap(path, relay.conversations)
    states: dict[int, ConversationState] = {}
    found = []
    pdus = [p for p in read_pdus(path) if isinstance(p, CapturedPDU)]
    assert len(pdus) > 10
    for p in pdus:
        state = states.setdefault(p.connection, ConversationState())
        found += [(p.connection, f) for f in state.observe(p.data, p.from_client)]
    return found


@pytest.mark.network
def test_pynetdicom_and_reference_scu_find_get_cancel_have_no_findings(qr_scp, relay_factory, tmp_path):
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import CTImageStorage
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelFind as FindModel,
    )
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelGet as GetModel,
    )

    from dicomconf.scu.app import OK, Job, ReferenceSCU

    relay = relay_factory(qr_scp.server_address[1])
    ae = AE(ae_title="QRSCU")
    for context in (FindModel, GetModel, CTImageStorage):
        ae.add_requested_context(context)
    received = []
    assoc = ae.associate("127.0.0.1", relay.port, ae_title="QRSCP", ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, lambda event: received.append(event.dataset) or 0x0000)])
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", ""
    assert [s.Status for s, _ in assoc.send_c_find(query, FindModel)] == [0xFF00] * 3 + [0]
    query.StudyInstanceUID = STUDY
    assert [s.Status for s, _ in assoc.send_c_get(query, GetModel)][-1] == 0 and len(received) == 3
    assoc.release()
    cancelled = ReferenceSCU(Job("127.0.0.1", relay.port, operation="find", called_ae="QRSCP", cancel_after=1))
    assert cancelled.run() == OK, cancelled.lines
    relay.wait_idle()
    assert len(relay.conversations) == 2
    assert _findings_of(relay, tmp_path) == []


def _dcmtk_env():
    return {**os.environ, "TCP_NODELAY": "1"}


@pytest.mark.network
@pytest.mark.skipif(not (os.path.exists(DCMTK_FINDSCU) and os.path.exists(DCMTK_GETSCU)),
                    reason="DCMTK findscu/getscu not installed")
def test_dcmtk_findscu_and_getscu_traffic_has_no_findings(qr_scp, relay_factory, tmp_path):
    relay = relay_factory(qr_scp.server_address[1])
    common = ["-aet", "DCMTKSCU", "-aec", "QRSCP", "-S", "-k", "QueryRetrieveLevel=STUDY"]
    subprocess.run([DCMTK_FINDSCU, *common, "-k", "StudyInstanceUID", "127.0.0.1", str(relay.port)],
                   check=True, env=_dcmtk_env(), timeout=30, capture_output=True)
    out = tmp_path / "got"
    out.mkdir()
    subprocess.run([DCMTK_GETSCU, *common, "-k", f"StudyInstanceUID={STUDY}", "-od", str(out),
                    "127.0.0.1", str(relay.port)], check=True, env=_dcmtk_env(), timeout=30, capture_output=True)
    relay.wait_idle()
    assert len(list(out.iterdir())) == 3
    assert _findings_of(relay, tmp_path) == []
