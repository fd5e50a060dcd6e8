"""The sans-IO Association against a real peer on loopback: pynetdicom as acceptor and as requestor.

A minimal blocking driver (socket in, events out) is enough: what is tested
is that the bytes our state machine writes and expects are the ones an
independent implementation writes and expects, fragmentation included.
"""

from __future__ import annotations

import socket
import threading

import pytest
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import generate_uid

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.association import Association
from dicomconf.ul.events import (
    AssociateAccepted,
    AssociateRequested,
    MessageReceived,
    ReleaseConfirmed,
    ReleaseRequested,
)
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ, AReleaseRP, AReleaseRQ

pynetdicom = pytest.importorskip("pynetdicom")
pytestmark = pytest.mark.network

CT = "1.2.840.10008.5.1.4.1.1.2"
IMPL_UID = "1.2.826.0.1.3680043.9.9999"


def ct_dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Test^Fragmented"
    ds.PatientID = "FRAG-1"
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(256)) * 32
    return ds


def pump(sock: socket.socket, assoc: Association, want, limit: int = 200) -> list:
    """Read and feed until an event of type ``want`` arrives (or the peer closes); write what the machine says."""
    events: list = []
    for _ in range(limit):
        out = assoc.data_to_send()
        if out:
            sock.sendall(out)
        if any(isinstance(e, want) for e in events) or assoc.state == "Sta1":
            return events
        data = sock.recv(65536)
        events += assoc.receive_data(data) if data else assoc.connection_lost()
    raise AssertionError(f"no {want.__name__} after {limit} reads; state {assoc.state}")


def test_requestor_against_pynetdicom_acceptor():
    ae = pynetdicom.AE(ae_title="PYNETDICOM")
    ae.maximum_pdu_size = 1024  # forces our C-STORE into many P-DATA-TF PDUs
    ae.add_supported_context(C.VERIFICATION_SOP_CLASS, C.IMPLICIT_VR_LITTLE_ENDIAN)
    ae.add_supported_context(CT, C.IMPLICIT_VR_LITTLE_ENDIAN)
    stored: list[Dataset] = []

    def on_store(event):
        stored.append(event.dataset)
        return 0x0000

    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(pynetdicom.evt.EVT_C_STORE, on_store)])
    try:
        sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
        a = Association("requestor", max_pdu_length=2048)
        rq = AAssociateRQ(
            "PYNETDICOM",
            "DICOMCONF",
            (
                PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),
                PresentationContextRQ(3, CT, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),
            ),
            UserInformation((MaximumLength(2048), ImplementationClassUID(IMPL_UID))),
        )
        a.send(rq)
        a.connection_made()
        pump(sock, a, AssociateAccepted)
        assert a.state == "Sta6" and a.peer_max_pdu_length == 1024 and set(a.accepted_contexts) == {1, 3}
        sock.sendall(a.send(dimse.c_echo_rq(1)))
        (echo,) = [e.message for e in pump(sock, a, MessageReceived) if isinstance(e, MessageReceived)]
        assert echo.name == "C-ECHO-RSP" and echo.status == 0
        ds = ct_dataset()
        out = a.send(dimse.c_store_rq(2, CT, ds.SOPInstanceUID, context_id=3,
                                      data=dimse.encode_dataset(ds, C.IMPLICIT_VR_LITTLE_ENDIAN)))
        assert out.count(bytes([C.P_DATA_TF, 0])) >= 8
        sock.sendall(out)
        (rsp,) = [e.message for e in pump(sock, a, MessageReceived) if isinstance(e, MessageReceived)]
        assert rsp.name == "C-STORE-RSP" and rsp.status == 0
        assert stored[0].SOPInstanceUID == ds.SOPInstanceUID and stored[0].PixelData == ds.PixelData
        sock.sendall(a.send(AReleaseRQ()))
        pump(sock, a, ReleaseConfirmed)
        assert a.state == "Sta1" and a.should_close
        sock.close()
    finally:
        server.shutdown()


def _serve_once(listener: socket.socket, result: dict) -> None:
    """Our acceptor: accept every context with its first transfer syntax, answer C-ECHO and C-STORE."""
    conn, _ = listener.accept()
    conn.settimeout(10)
    a = Association("acceptor", max_pdu_length=1024)
    a.connection_made()
    try:
        while a.state != "Sta1":
            data = conn.recv(65536)
            events = a.receive_data(data) if data else a.connection_lost()
            for e in events:
                if isinstance(e, AssociateRequested):
                    ac = AAssociateAC(
                        e.pdu.called_ae_title,
                        e.pdu.calling_ae_title,
                        tuple(PresentationContextAC(pc.context_id, C.PC_ACCEPTANCE, pc.transfer_syntaxes[0])
                              for pc in e.pdu.presentation_contexts),
                        UserInformation((MaximumLength(1024), ImplementationClassUID(IMPL_UID))),
                        reserved=e.pdu.reserved,
                    )
                    conn.sendall(a.send(ac))
                elif isinstance(e, MessageReceived) and e.message.name == "C-ECHO-RQ":
                    conn.sendall(a.send(dimse.c_echo_rsp(e.message)))
                elif isinstance(e, MessageReceived) and e.message.name == "C-STORE-RQ":
                    result["stored"] = e.message.dataset(a.accepted_contexts[e.message.context_id][1])
                    conn.sendall(a.send(dimse.c_store_rsp(e.message, 0x0000)))
                elif isinstance(e, ReleaseRequested):
                    conn.sendall(a.send(AReleaseRP()))
            out = a.data_to_send()
            if out:
                conn.sendall(out)
            if a.should_close:
                break
        result["state"] = a.state
        result["error"] = a.error
    except OSError as exc:  # reported by the test through ``result``
        result["state"] = f"{a.state}: {exc}"
    finally:
        conn.close()


def test_acceptor_against_pynetdicom_requestor():
    listener = socket.create_server(("127.0.0.1", 0))
    result: dict = {}
    thread = threading.Thread(target=_serve_once, args=(listener, result), daemon=True)
    thread.start()
    try:
        ae = pynetdicom.AE(ae_title="PYNETDICOM")
        ae.add_requested_context(C.VERIFICATION_SOP_CLASS, C.IMPLICIT_VR_LITTLE_ENDIAN)
        ae.add_requested_context(CT, C.IMPLICIT_VR_LITTLE_ENDIAN)
        assoc = ae.associate("127.0.0.1", listener.getsockname()[1], ae_title="DICOMCONF")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        ds = ct_dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = C.IMPLICIT_VR_LITTLE_ENDIAN
        assert assoc.send_c_store(ds).Status == 0  # pynetdicom must fragment to our 1024
        assoc.release()
        thread.join(10)
        assert result["state"] == "Sta1" and result["error"] is None
        assert result["stored"].SOPInstanceUID == ds.SOPInstanceUID
        assert result["stored"].PixelData == ds.PixelData
    finally:
        listener.close()
        thread.join(10)
