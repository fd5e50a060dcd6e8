"""Helpers for the reference SCP's tests: servers on free ports, raw clients, data sets, certificates."""

from __future__ import annotations

import datetime
import os
import socket
import struct
import time

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomconf.scp.config import SCPConfig
from dicomconf.scp.runtime import run_in_thread
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateRQ, AReleaseRQ

CT = "1.2.840.10008.5.1.4.1.1.2"
IVRLE = C.IMPLICIT_VR_LITTLE_ENDIAN
EVRLE = ExplicitVRLittleEndian
DCMTK = {name: f"/usr/bin/{name}" for name in ("storescp", "storescu", "echoscu")}


def have_dcmtk() -> bool:
    return all(os.access(p, os.X_OK) for p in DCMTK.values())


def dcmtk_env() -> dict:
    return {**os.environ, "TCP_NODELAY": "1"}


def config(**overrides) -> SCPConfig:
    """A test configuration: free port, short timers."""
    base = dict(port=0, artim_timeout=1.0, idle_timeout=2.0)
    base.update(overrides)
    return SCPConfig(**base)


def start(**overrides):
    return run_in_thread(config(**overrides))


def stored_names(directory) -> list[str]:
    """The files of a storage directory, without the index's own (index.sqlite and its WAL files)."""
    from dicomconf.scp.storage import INDEX_FILE

    return sorted(n for n in os.listdir(directory) if not n.startswith(INDEX_FILE))


# ---------------------------------------------------------------- raw PDUs


def associate_rq(
    called: str = "DICOMCONF",
    calling: str = "TESTSCU",
    contexts: tuple = ((1, C.VERIFICATION_SOP_CLASS, (IVRLE,)),),
    max_pdu: int = 16384,
    extra_sub_items: tuple = (),
) -> bytes:
    pcs = tuple(PresentationContextRQ(cid, abstract, tuple(ts)) for cid, abstract, ts in contexts)
    ui = UserInformation((MaximumLength(max_pdu), ImplementationClassUID("1.2.3.4")) + tuple(extra_sub_items))
    return AAssociateRQ(called, calling, pcs, ui).encode()


def echo_rq(message_id: int = 1, context_id: int = 1, max_pdu: int = 16384) -> bytes:
    return b"".join(dimse.fragment(dimse.c_echo_rq(message_id, context_id=context_id), max_pdu))


RELEASE_RQ = AReleaseRQ().encode()


def pdu(pdu_type: int, body: bytes = b"", length: int | None = None) -> bytes:
    return struct.pack(">BBI", pdu_type, 0, len(body) if length is None else length) + body


class RawClient:
    """A blocking socket that speaks PDUs (any bytes) to 127.0.0.1."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int, deadline: float) -> bool:
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return False
            if not chunk:
                return False
            self.buf += chunk
        return True

    def recv_pdu(self, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The next whole PDU as (type, body), or None if the peer closed or time ran out."""
        deadline = time.monotonic() + timeout
        if not self._fill(6, deadline):
            return None
        pdu_type, _, length = struct.unpack(">BBI", self.buf[:6])
        if not self._fill(6 + length, deadline):
            return None
        body, self.buf = self.buf[6 : 6 + length], self.buf[6 + length :]
        return pdu_type, body

    def wait_closed(self, timeout: float = 5.0) -> float | None:
        """Seconds until the peer closed (EOF or reset), or None if it did not within ``timeout``."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            except (ConnectionResetError, BrokenPipeError):
                return time.monotonic() - start
            if not chunk:
                return time.monotonic() - start
            self.buf += chunk
        return None

    def associate(self, **kw) -> tuple[int, bytes]:
        self.send(associate_rq(**kw))
        reply = self.recv_pdu()
        assert reply is not None, "no answer to A-ASSOCIATE-RQ"
        return reply

    def echo(self, message_id: int = 1, context_id: int = 1) -> int:
        """Send a C-ECHO-RQ; return the response status."""
        self.send(echo_rq(message_id, context_id))
        assembler = dimse.MessageAssembler()
        from dicomconf.ul.pdu import decode_pdu

        while True:
            reply = self.recv_pdu()
            assert reply is not None and reply[0] == C.P_DATA_TF, f"expected P-DATA-TF, got {reply!r}"
            for msg in assembler.add_pdata(decode_pdu(pdu(reply[0], reply[1]))):
                return msg.status

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MemoryTransport:
    """An asyncio transport in memory, for driving an SCPConnection without sockets: it keeps
    every write (``writes``; ``data`` joins them) and what the connection asked of it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 40000) if name == "peername" else None

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def abort_fields(reply: tuple[int, bytes] | None) -> tuple[int, int]:
    """(source, reason) of an A-ABORT reply; fails if it is not one."""
    assert reply is not None, "connection closed without an A-ABORT"
    assert reply[0] == C.A_ABORT, f"expected A-ABORT, got PDU type {reply[0]:#04x}"
    return reply[1][2], reply[1][3]


# ---------------------------------------------------------------- data sets


def make_dataset(index: int = 0, size: int = 256, sop_class: str = CT) -> Dataset:
    """A small, valid-enough instance of ``sop_class`` with ``size`` bytes of pixel-like data."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = f"Test^Patient{index}"
    ds.PatientID = f"ID{index:05d}"
    ds.Modality = "CT"
    ds.InstanceNumber = index
    ds.Columns = min(size // 2, 1024)
    ds.Rows = max(1, size // 2 // ds.Columns)
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes((index + i) % 251 for i in range(size))
    return ds


def with_syntax(ds: Dataset, transfer_syntax: str) -> Dataset:
    """Give ``ds`` the file meta pynetdicom reads to pick a presentation context."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    return ds


def write_part10(ds: Dataset, path: str, transfer_syntax: str = EVRLE) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)


def dataset_bytes_of_file(path: str) -> bytes:
    """The data set bytes after the File Meta Information group of a Part 10 file."""
    raw = open(path, "rb").read()
    assert raw[128:132] == b"DICM", f"{path} is not a Part 10 file"
    (group_length,) = struct.unpack_from("<I", raw, 132 + 8)
    return raw[132 + 12 + group_length :]


# ---------------------------------------------------------------- certificates


def make_certificates(directory: str) -> dict[str, str]:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost and a client certificate."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, key, cert) -> tuple[str, str]:
        kp, cp = os.path.join(directory, f"{stem}.key"), os.path.join(directory, f"{stem}.pem")
        with open(kp, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(cp, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        return cp, kp

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(name("dicomconf test CA")).issuer_name(name("dicomconf test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = {"ca": write("ca", ca_key, ca)[0]}
    for stem, cn in (("server", "localhost"), ("client", "TESTSCU")):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if stem == "server":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        out[stem], out[f"{stem}_key"] = write(stem, key, builder.sign(ca_key, hashes.SHA256()))
    return out

