"""The reference SCP drives service handlers over the network (PS3.7 9.3, 10.3; dicomconf.scp.service_driver).

The handlers here are small stand-ins written for the driver's contract
(dicomconf.services.base): each test checks one thing the driver does with what a
handler yields — pending responses with identifiers, a scripted delay a
C-CANCEL interrupts, a C-GET's C-STORE on the same association with the
requestor's SCP role, an N-EVENT-REPORT on the same association, a handler
that raises. The peer is pynetdicom, on loopback.
"""

from __future__ import annotations

import threading
import time

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomconf.scp.storage import StoredInstance
from dicomconf.services.base import Cancel, EventReport, Reply, SubOperation
from dicomconf.ul.negotiation import default_supported

pynetdicom = pytest.importorskip("pynetdicom")
from pynetdicom import AE, build_role, evt  # noqa: E402

pytestmark = pytest.mark.network

FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND
GET = "1.2.840.10008.5.1.4.1.2.2.3"  # Study Root Query/Retrieve Information Model - GET
MOVE = "1.2.840.10008.5.1.4.1.2.2.2"  # Study Root Query/Retrieve Information Model - MOVE
COMMITMENT = "1.2.840.10008.1.20.1"  # Storage Commitment Push Model
CT = "1.2.840.10008.5.1.4.1.1.2"
TS = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)


def _supported() -> dict:
    supported = default_supported()
    for uid in (FIND, GET, MOVE, COMMITMENT):
        supported[uid] = TS
    return supported


@pytest.fixture
def services_scp(scp_factory):
    def start(handlers, **overrides):
        handle = scp_factory(supported=_supported(), roles={CT: (True, True)}, idle_timeout=10.0, **overrides)
        handle.scp.handlers = handlers
        return handle
    return start


def _ae(*contexts) -> AE:
    ae = AE(ae_title="SVCSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for uid in contexts:
        ae.add_requested_context(uid, [ImplicitVRLittleEndian])
    return ae


def _identifier(name: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = name
    return ds


def test_pending_responses_carry_the_identifiers_then_success(services_scp):
    seen = []

    def find(request):
        seen.append((request.calling_ae, request.dataset.QueryRetrieveLevel, request.transfer_syntax))
        for name in ("A^ONE", "B^TWO", "C^THREE"):
            yield Reply(0xFF00, _identifier(name))
        yield Reply(0x0000)

    handle = services_scp({FIND: find})
    assoc = _ae(FIND).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    assert assoc.is_established
    answers = [(status.Status, ident.PatientName if ident is not None else None)
               for status, ident in assoc.send_c_find(_identifier("*"), FIND)]
    assoc.release()
    assert answers == [(0xFF00, "A^ONE"), (0xFF00, "B^TWO"), (0xFF00, "C^THREE"), (0x0000, None)]
    assert seen == [("SVCSCU", "STUDY", ImplicitVRLittleEndian)]


def test_cancel_during_a_scripted_delay_ends_with_the_handlers_cancel_response(services_scp):
    cancelled = threading.Event()

    def slow_find(request):
        try:
            for i in range(20):
                yield Reply(0xFF00, _identifier(f"P^{i}"), delay=0.3)
            yield Reply(0x0000)
        except Cancel:
            cancelled.set()
            yield Reply(0xFE00)

    handle = services_scp({FIND: slow_find})
    assoc = _ae(FIND).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    statuses = []
    started = time.monotonic()
    for status, _ in assoc.send_c_find(_identifier("*"), FIND, msg_id=7):
        statuses.append(status.Status)
        if len(statuses) == 1:
            context_id = next(cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == FIND)
            assoc.send_c_cancel(7, context_id)
    took = time.monotonic() - started
    assoc.release()
    assert cancelled.is_set()
    assert statuses[0] == 0xFF00 and statuses[-1] == 0xFE00 and len(statuses) <= 3, statuses
    assert took < 3.0, took  # not the 6 s the twenty delays would take


def test_c_get_sub_operation_is_a_c_store_on_the_same_association(services_scp):
    """PS3.4 C.4.3.2: the C-STORE goes on the C-GET's association, with the requestor in the SCP role."""
    handle = services_scp({}, storage="memory")
    ct = Dataset()
    ct.SOPClassUID, ct.SOPInstanceUID = CT, generate_uid()
    ct.PatientName, ct.Modality = "GET^ME", "CT"
    ct.PatientID, ct.StudyInstanceUID, ct.SeriesInstanceUID = "GET1", generate_uid(), generate_uid()
    ct.file_meta = FileMetaDataset()
    ct.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    store_ae = _ae(CT)
    assoc = store_ae.associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    assert assoc.send_c_store(ct).Status == 0x0000
    assoc.release()

    results = []

    def get(request):
        status = yield SubOperation(CT, ct.SOPInstanceUID, "")
        results.append(status)
        missing = yield SubOperation(CT, "1.2.3.999", "")
        results.append(missing)
        yield Reply(0xB000, fields={"NumberOfCompletedSuboperations": 1, "NumberOfFailedSuboperations": 1,
                                    "NumberOfWarningSuboperations": 0})

    handle.scp.handlers = {GET: get}
    received = []

    def on_store(event):
        received.append(event.dataset.PatientName)
        return 0x0000

    ae = _ae(GET, CT)
    assoc = ae.associate("127.0.0.1", handle.port, ae_title="DICOMCONF",
                         ext_neg=[build_role(CT, scp_role=True)], evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    finals = [status for status, _ in assoc.send_c_get(_identifier("*"), GET)]
    assoc.release()
    assert received == ["GET^ME"]
    assert results == [0x0000, None]  # the second could not be attempted: nothing stored under that UID
    assert finals[-1].Status == 0xB000 and finals[-1].NumberOfFailedSuboperations == 1


def test_c_get_without_the_scp_role_stores_nothing(services_scp):
    handle = services_scp({}, storage="memory")
    results = []

    def get(request):
        results.append((yield SubOperation(CT, "1.2.3.4", "")))
        yield Reply(0xA702)

    handle.scp.handlers = {GET: get}
    handle.scp.storage.keep(StoredInstance(CT, "1.2.3.4", ImplicitVRLittleEndian, b"\x08\x00\x60\x00\x02\x00\x00\x00CT"))
    assoc = _ae(GET, CT).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")  # no role selection
    finals = [status.Status for status, _ in assoc.send_c_get(_identifier("*"), GET)]
    assoc.release()
    assert results == [None] and finals[-1] == 0xA702


def test_event_report_on_the_same_association_gets_the_peers_status(services_scp):
    """An N-EVENT-REPORT-RQ after the N-ACTION-RSP, on the same association (PS3.4 J.3.3)."""
    answered = []

    def commit(request):
        yield Reply(0x0000, fields={"AffectedSOPInstanceUID": request.sop_instance_uid,
                                    "ActionTypeID": 1})
        report = Dataset()
        report.TransactionUID = request.dataset.TransactionUID
        answered.append((yield EventReport(COMMITMENT, request.sop_instance_uid, 1, report)))

    handle = services_scp({COMMITMENT: commit})
    reports = []

    def on_report(event):
        reports.append((event.event_type, event.event_information.TransactionUID))
        return 0x0000, None

    ae = _ae(COMMITMENT)
    assoc = ae.associate("127.0.0.1", handle.port, ae_title="DICOMCONF",
                         ext_neg=[build_role(COMMITMENT, scu_role=True, scp_role=True)],
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    action = Dataset()
    action.TransactionUID = uid = generate_uid()
    status, _ = assoc.send_n_action(action, 1, COMMITMENT, "1.2.840.10008.1.20.1.1")
    deadline = time.monotonic() + 5
    while not answered and time.monotonic() < deadline:
        time.sleep(0.05)
    assoc.release()
    assert status.Status == 0x0000
    assert reports == [(1, uid)] and answered == [0x0000]


def test_a_handler_that_raises_answers_processing_failure_and_the_association_goes_on(services_scp):
    def broken(request):
        raise RuntimeError("a bug")
        yield  # pragma: no cover - makes this a generator

    handle = services_scp({FIND: broken})
    assoc = _ae(FIND, "1.2.840.10008.1.1").associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    statuses = [status.Status for status, _ in assoc.send_c_find(_identifier("*"), FIND)]
    assert statuses == [0x0110]
    assert assoc.send_c_echo().Status == 0x0000  # still serving
    assoc.release()


def _destination(contexts, handlers):
    """A pynetdicom acceptor on a free loopback port: the far end of a C-MOVE or of a commitment report."""
    ae = AE(ae_title="DEST")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for uid, roles in contexts:
        ae.add_supported_context(uid, [ImplicitVRLittleEndian, ExplicitVRLittleEndian], **roles)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    return server, server.socket.getsockname()[1]


def _store(handle, count):
    uids = []
    assoc = _ae(CT).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    for i in range(count):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = CT, generate_uid()
        ds.PatientName, ds.PatientID = f"MOVE^{i}", "MOVE1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        assert assoc.send_c_store(ds).Status == 0x0000
        uids.append(ds.SOPInstanceUID)
    assoc.release()
    return uids


def _mover(uids):
    def move(request):
        destination = str(request.command.MoveDestination).strip()
        completed = failed = 0
        for i, uid in enumerate(uids):
            status = yield SubOperation(CT, uid, "", destination=destination)
            if status == 0:
                completed += 1
            else:
                failed += 1
            if i < len(uids) - 1:
                yield Reply(0xFF00, fields={"NumberOfRemainingSuboperations": len(uids) - i - 1,
                                            "NumberOfCompletedSuboperations": completed,
                                            "NumberOfFailedSuboperations": failed,
                                            "NumberOfWarningSuboperations": 0})
        yield Reply(0x0000 if not failed else 0xB000,
                    fields={"NumberOfCompletedSuboperations": completed, "NumberOfFailedSuboperations": failed,
                            "NumberOfWarningSuboperations": 0})
    return move


def test_c_move_sub_operations_go_to_the_destination_over_one_association(services_scp):
    """PS3.4 C.4.2.2: C-STOREs to the move destination, carrying the Move Originator (PS3.7 9.3.1.1)."""
    arrived = []

    def on_store(event):
        arrived.append((event.dataset.PatientName, event.request.MoveOriginatorApplicationEntityTitle,
                        event.request.MoveOriginatorMessageID, event.assoc.requestor.ae_title))
        return 0x0000

    associations = []
    server, port = _destination([(CT, {})], [(evt.EVT_C_STORE, on_store),
                                             (evt.EVT_ESTABLISHED, lambda e: associations.append(1))])
    try:
        handle = services_scp({}, storage="memory")
        uids = _store(handle, 3)
        handle.scp.handlers = {MOVE: _mover(uids)}
        handle.scp.move_destinations = {"DEST": ("127.0.0.1", port)}
        assoc = _ae(MOVE).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
        replies = [status for status, _ in assoc.send_c_move(_identifier("*"), "DEST", MOVE, msg_id=9)]
        assoc.release()
    finally:
        server.shutdown()
    assert [str(name) for name, *_ in arrived] == ["MOVE^0", "MOVE^1", "MOVE^2"]
    assert {(str(o).strip(), m, str(r).strip()) for _, o, m, r in arrived} == {("SVCSCU", 9, "DICOMCONF")}
    assert associations == [1]
    assert [r.Status for r in replies] == [0xFF00, 0xFF00, 0x0000]
    assert replies[-1].NumberOfCompletedSuboperations == 3


def test_c_move_to_a_destination_that_refuses_counts_failures(services_scp):
    handle = services_scp({}, storage="memory")
    uids = _store(handle, 2)
    closed = socket_port()
    handle.scp.handlers = {MOVE: _mover(uids)}
    handle.scp.move_destinations = {"DEST": ("127.0.0.1", closed)}
    assoc = _ae(MOVE).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    replies = [status for status, _ in assoc.send_c_move(_identifier("*"), "DEST", MOVE)]
    assoc.release()
    assert replies[-1].Status == 0xB000 and replies[-1].NumberOfFailedSuboperations == 2


def socket_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_event_report_over_a_new_association_takes_the_scp_role(services_scp):
    """PS3.4 J.3.3.1: the report may go over an association the SCP requests, proposing the SCP role."""
    reports = []

    def on_report(event):
        roles = [(cx.abstract_syntax, cx.as_scu, cx.as_scp) for cx in event.assoc.accepted_contexts]
        reports.append((event.event_type, str(event.event_information.TransactionUID), roles))
        return 0x0000, None

    server, port = _destination([(COMMITMENT, {"scu_role": True, "scp_role": True})],
                                [(evt.EVT_N_EVENT_REPORT, on_report)])
    answered = []

    def commit(request):
        yield Reply(0x0000, fields={"AffectedSOPInstanceUID": request.sop_instance_uid, "ActionTypeID": 1})
        report = Dataset()
        report.TransactionUID = request.dataset.TransactionUID
        answered.append((yield EventReport(COMMITMENT, request.sop_instance_uid, 1, report, to="DEST")))

    try:
        handle = services_scp({COMMITMENT: commit})
        handle.scp.move_destinations = {"DEST": ("127.0.0.1", port)}
        assoc = _ae(COMMITMENT).associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
        action = Dataset()
        action.TransactionUID = uid = generate_uid()
        status, _ = assoc.send_n_action(action, 1, COMMITMENT, "1.2.840.10008.1.20.1.1")
        assoc.release()
        deadline = time.monotonic() + 5
        while not answered and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
    assert status.Status == 0x0000 and answered == [0x0000]
    assert reports and reports[0][:2] == (1, uid)
    # the acceptor's view: it is the SCU of the class on that association, so the reference SCP is its SCP
    assert reports[0][2] == [(COMMITMENT, True, False)]


def test_an_identifier_past_the_service_bound_is_refused_out_of_resources(services_scp):
    """A C-FIND identifier is held up to 16 MiB (SERVICE_DATA_LIMIT), not max_dataset_length: past it
    the request is answered A700 (PS3.4 C.4.1.1.4) without reaching the handler; the association goes on."""
    from dicomconf.scp.held import SERVICE_DATA_LIMIT

    seen = []

    def find(request):
        seen.append(request)
        yield Reply(0x0000)

    handle = services_scp({FIND: find})
    assoc = _ae(FIND, "1.2.840.10008.1.1").associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    big = _identifier("*")
    big.add_new(0x00091010, "OB", b"\0" * (SERVICE_DATA_LIMIT + 1024))
    statuses = [status.Status for status, _ in assoc.send_c_find(big, FIND)]
    small = [status.Status for status, _ in assoc.send_c_find(_identifier("*"), FIND)]
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert statuses == [0xA700] and small == [0x0000] and len(seen) == 1


def test_pending_responses_wait_for_a_peer_that_does_not_read(services_scp):
    """Endless pendings to a peer that reads nothing: the SCP holds about one batch in its write buffer
    (the transport's high-water mark, then pause_writing), not every response; the peer reading resumes it."""
    import socket as _socket

    from scp_testkit import associate_rq

    from dicomconf.ul import dimse as _dimse
    from dicomconf.ul.dimse_codec import encode_dataset

    made = [0]

    def endless(request):
        while True:
            made[0] += 1
            ident = _identifier(f"P^{made[0]}")
            ident.PatientComments = "x" * 8000  # 8 KB a response: the kernel's socket buffers fill at once
            yield Reply(0xFF00, ident)

    handle = services_scp({FIND: endless})
    sock = _socket.create_connection(("127.0.0.1", handle.port))
    try:
        sock.sendall(associate_rq(called="DICOMCONF", contexts=((1, FIND, (ImplicitVRLittleEndian,)),)))
        time.sleep(0.3)
        command = Dataset()
        command.AffectedSOPClassUID = FIND
        command.CommandField = _dimse.C_FIND_RQ
        command.MessageID = 1
        command.Priority = 0
        command.CommandDataSetType = _dimse.DATA_SET_PRESENT
        msg = _dimse.Message(1, command, encode_dataset(_identifier("*"), ImplicitVRLittleEndian))
        for pdu in _dimse.fragment(msg, 16384):
            sock.sendall(pdu)
        time.sleep(2.0)  # the peer reads nothing meanwhile
        (conn,) = list(handle.scp._connections)
        buffered = conn.transport.get_write_buffer_size()
        assert conn.write_paused and conn.services.paused, "the exchange did not wait for the peer"
        assert buffered < 1 << 20, buffered  # one batch past the high-water mark, not an endless stream
        before = made[0]
        time.sleep(0.5)
        assert made[0] == before, "responses were made while the peer read nothing"
        sock.settimeout(2.0)
        deadline = time.monotonic() + 10
        while made[0] == before and time.monotonic() < deadline:  # the peer reads: the exchange goes on
            sock.recv(1 << 20)
        assert made[0] > before
    finally:
        sock.close()
