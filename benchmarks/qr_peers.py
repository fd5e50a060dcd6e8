"""Shared pieces of the Query/Retrieve benchmarks: test data, the Q/R peers, a raw C-FIND/C-MOVE client.

Theory of operation
-------------------
The three Q/R servers must answer from the same logical data.  dicomconf can
synthesize index rows (:func:`dicomconf.services.index_synthetic.synthesize`),
but DCMTK's ``dcmqrscp`` and pynetdicom's ``qrscp`` index real Part 10 files,
so :func:`write_files` writes small files whose patient, study, series and
instance values are the ones the synthesizer gives study number ``s`` (one
patient per two studies, study dates spread over 2025, ``CT``).  A query's
expected answer is computed from those rules (:func:`expected_studies`), and
every server's answer count is checked against it.

Peers (each a subprocess on 127.0.0.1, stopped by its own process id):

* :func:`dcmqrscp`: DCMTK's Q/R server (by path, ``TCP_NODELAY=1``, one
  storage area whose ``index.dat`` ``/usr/bin/dcmqridx`` fills with the files'
  paths; the files stay where they are);
* :func:`pynetdicom_qrscp`: pynetdicom's ``qrscp`` app with a configuration
  file of our own (needs ``sqlalchemy``); its SQLite database is filled
  through the app's own ``db.add_instance``, as its C-STORE handler does;
* :func:`dicomconf_qr`: ``dicomconf scp`` with an index file (synthesized or
  ``--load``-ed) and directory storage.

:class:`QRClient` is one raw client for all of them: it associates once with
pre-encoded PDUs (PS3.8 9.3.2), sends a C-FIND-RQ or C-MOVE-RQ (PS3.7 9.1.2,
9.1.4) and reads P-DATA-TF PDUs until the final (non-pending) response,
counting the pending ones; its own cost per response is a few microseconds,
so the servers are what is timed.
"""

from __future__ import annotations

import fnmatch
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench_scp_common import CT, Reader, Server, free_port, wait_listening  # noqa: F401
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.dimse_codec import decode_command, encode_dataset, read_command
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateRQ

DCMQRSCP = "/usr/bin/dcmqrscp"
DCMQRIDX = "/usr/bin/dcmqridx"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
UID_BASE = "2.25.1"  # the synthesizer's UID root
PENDING = (0xFF00, 0xFF01)
C_FIND_RQ, C_MOVE_RQ = 0x0020, 0x0021


# ------------------------------------------------------------------ the data


def study_values(s: int) -> dict[str, str]:
    """What study number ``s`` holds: the values ``index_synthetic.synthesize`` gives its rows."""
    p = s // 2
    return {
        "PatientID": f"PID{p:07d}", "PatientName": f"Name{p}^Given", "PatientBirthDate": f"19{50 + p % 50}0101",
        "PatientSex": "MF"[p % 2], "StudyInstanceUID": f"{UID_BASE}.{s}",
        "StudyDate": f"2025{1 + s % 12:02d}{1 + s % 28:02d}", "StudyTime": f"{s % 24:02d}0000",
        "AccessionNumber": f"ACC{s:07d}", "StudyID": str(s), "StudyDescription": "synthetic",
    }


def write_files(directory: str, studies: int, instances_per_study: int, pixel_bytes: int = 0) -> list[str]:
    """Part 10 files (explicit VR little endian, one CT series per study); their paths in study order."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for s in range(studies):
        for i in range(instances_per_study):
            ds = Dataset()
            ds.SOPClassUID = CT
            ds.SOPInstanceUID = f"{UID_BASE}.{s}.0.{i}"
            for keyword, value in study_values(s).items():
                setattr(ds, keyword, value)
            ds.Modality = "CT"
            ds.SeriesInstanceUID = f"{UID_BASE}.{s}.0"
            ds.SeriesNumber = 1
            ds.InstanceNumber = i + 1
            if pixel_bytes:
                side = int((pixel_bytes // 2) ** 0.5)
                ds.Rows = ds.Columns = side
                ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
                ds.BitsAllocated = ds.BitsStored = 16
                ds.HighBit, ds.PixelRepresentation = 15, 0
                ds.PixelData = os.urandom(side * side * 2)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CT
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta.TransferSyntaxUID = EXPLICIT_LE
            meta.ImplementationClassUID = "1.2.826.0.1.3680043.10.1"
            ds.file_meta = meta
            path = os.path.join(directory, f"s{s:06d}_{i:04d}.dcm")
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def expected_studies(studies: int, name_pattern: str, date_from: str, date_to: str) -> int:
    """How many of ``studies`` a PatientName wild card plus StudyDate range matches (PS3.4 C.2.2.2.4, C.2.2.2.5)."""
    n = 0
    for s in range(studies):
        v = study_values(s)
        if fnmatch.fnmatchcase(v["PatientName"], name_pattern) and date_from <= v["StudyDate"] <= date_to:
            n += 1
    return n


def study_identifier(name_pattern: str, date_range: str) -> Dataset:
    """A study-level identifier: the two matching keys and five keys to return."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = name_pattern
    ds.PatientID = ""
    ds.StudyDate = date_range
    ds.StudyTime = ""
    ds.AccessionNumber = ""
    ds.StudyID = ""
    ds.StudyInstanceUID = ""
    return ds


# ------------------------------------------------------------------ the peers


def _start(argv: list[str], port: int, *, timeout: float, env: dict | None = None, cwd: str | None = None,
           log: str | None = None) -> Server:
    """A :class:`Server` whose start may take ``timeout`` seconds (an index to load)."""
    server = Server.__new__(Server)
    server.port = port
    with open(log or os.devnull, "wb") as out:
        server.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, cwd=cwd, stdout=out,
                                       stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} {' '.join(argv[1:4])}... exited with {server.proc.returncode}")
            try:
                wait_listening(port, timeout=0.5)
                return server
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
    except BaseException:
        server.stop()
        raise


def dcmqridx(area: str, paths: list[str], batch: int = 500) -> float:
    """Register ``paths`` in ``area``/index.dat with DCMTK's dcmqridx; seconds taken."""
    t0 = time.perf_counter()
    for k in range(0, len(paths), batch):
        subprocess.run([DCMQRIDX, "-q", area, *paths[k:k + batch]], check=True)
    return time.perf_counter() - t0


def write_dcmqrscp_config(path: str, port: int, area: str, *, ae: str, max_studies: int = 100_000,
                          max_associations: int = 16, max_pdu: int = 16384,
                          destinations: dict[str, tuple[str, int]] | None = None) -> str:
    """A dcmqrscp configuration file (DCMTK dcmqrcnf.txt): one read/write storage area ``area`` as AE
    ``ae`` open to any peer, and ``destinations`` (AE -> host, port) in its HostTable (where C-MOVE
    sub-operations go).  Also used by scripts/targets/targets.py."""
    hosts = "".join(f"{name.lower()} = ({name}, {host}, {p})\n" for name, (host, p) in (destinations or {}).items())
    with open(path, "w") as f:
        f.write(f"NetworkTCPPort = {port}\nMaxPDUSize = {max_pdu}\nMaxAssociations = {max_associations}\n"
                f"HostTable BEGIN\n{hosts}HostTable END\nVendorTable BEGIN\nVendorTable END\n"
                f"AETable BEGIN\n{ae} {area} RW ({max_studies}, 1024mb) ANY\nAETable END\n")
    return path


def dcmqrscp(port: int, area: str, workdir: str, *, ae: str = "DCMQR", max_studies: int = 100_000,
             destinations: dict[str, tuple[str, int]] | None = None) -> Server:
    """DCMTK's dcmqrscp serving ``area`` (filled by :func:`dcmqridx`) as AE ``ae``."""
    config = write_dcmqrscp_config(os.path.join(workdir, "dcmqrscp.cfg"), port, area, ae=ae,
                                   max_studies=max_studies, destinations=destinations)
    return _start([DCMQRSCP, "-c", config, "-ll", "error", str(port)], port, timeout=30,
                  env={"TCP_NODELAY": "1"}, cwd=workdir)


def fill_pynetdicom_db(db_file: str, paths: list[str]) -> float:
    """Index ``paths`` into a pynetdicom qrscp database with the app's own ``add_instance``; seconds taken."""
    from pydicom import dcmread
    from pynetdicom.apps.qrscp import db
    from sqlalchemy.orm import sessionmaker

    t0 = time.perf_counter()
    engine = db.create(f"sqlite:///{db_file}")
    session = sessionmaker(bind=engine)()
    try:
        for path in paths:
            db.add_instance(dcmread(path, stop_before_pixels=True), session, path)
    finally:
        session.close()
        engine.dispose()
    return time.perf_counter() - t0


def write_qrscp_config(path: str, port: int, db_file: str, instances: str, *, ae: str,
                       timeouts: tuple[float, float, float] = (30, 30, 30),
                       destinations: dict[str, tuple[str, int]] | None = None) -> str:
    """A configuration file for pynetdicom's qrscp app (its default.ini's keys): AE ``ae`` on
    127.0.0.1:``port``, ``timeouts`` the ACSE, DIMSE and network timeouts, and one section per move
    destination (AE -> host, port).  Also used by scripts/targets/targets.py."""
    acse, dimse_timeout, network = timeouts
    with open(path, "w") as f:
        f.write(f"[DEFAULT]\nae_title: {ae}\nport: {port}\nmax_pdu: 16382\nacse_timeout: {acse}\n"
                f"dimse_timeout: {dimse_timeout}\nnetwork_timeout: {network}\nbind_address: 127.0.0.1\n"
                f"instance_location: {instances}\ndatabase_location: {db_file}\n"
                f"log_identifier: False\n")
        f.writelines(f"[{name}]\naddress: {host}\nport: {p}\n" for name, (host, p) in (destinations or {}).items())
    return path


def pynetdicom_qrscp(port: int, db_file: str, workdir: str, *, ae: str = "QRSCP",
                     destinations: dict[str, tuple[str, int]] | None = None) -> Server:
    """pynetdicom's qrscp app over ``db_file`` (see :func:`fill_pynetdicom_db`)."""
    config = write_qrscp_config(os.path.join(workdir, "qrscp.ini"), port, db_file,
                                os.path.join(workdir, "instances"), ae=ae, destinations=destinations)
    return _start([sys.executable, "-m", "pynetdicom", "qrscp", "-q", "-c", config], port, timeout=60, cwd=workdir)


def dicomconf_qr(port: int, index_file: str, storage_dir: str, *extra: str, timeout: float = 600,
                 log: str | None = None, profile: str | None = None) -> Server:
    """``dicomconf scp`` with directory storage and the index ``index_file`` (``extra``: --load, ...).

    ``profile``: run it under cProfile, whose statistics go to that file when it stops.
    """
    python = [sys.executable, "-m", "cProfile", "-o", profile] if profile else [sys.executable]
    argv = [*python, "-m", "dicomconf.cli", "scp", "--port", str(port), "--ae", "DICOMCONF",
            "--storage", "directory", "--storage-dir", storage_dir, "--index", index_file, *extra]
    return _start(argv, port, timeout=timeout, log=log)


# ------------------------------------------------------------------ the client


class QRClient:
    """One association to a Q/R SCP; :meth:`exchange` times one C-FIND or C-MOVE (PS3.7 9.1.2, 9.1.4)."""

    def __init__(self, port: int, called_ae: str, *, calling_ae: str = "BENCHSCU", max_pdu: int = 16384) -> None:
        contexts = (PresentationContextRQ(1, STUDY_ROOT_FIND, (EXPLICIT_LE, C.IMPLICIT_VR_LITTLE_ENDIAN)),
                    PresentationContextRQ(3, STUDY_ROOT_MOVE, (EXPLICIT_LE, C.IMPLICIT_VR_LITTLE_ENDIAN)))
        ui = UserInformation((MaximumLength(max_pdu), ImplementationClassUID("1.2.826.0.1.3680043.10.1")))
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = Reader(self.sock)
        self.max_pdu = max_pdu
        self.message_id = 0
        self.sock.sendall(AAssociateRQ(called_ae, calling_ae, contexts, ui).encode())
        pdu_type, body = self.reader.pdu()
        if pdu_type != C.A_ASSOCIATE_AC:
            self.sock.close()
            raise RuntimeError(f"{called_ae} on {port}: association not accepted (PDU {pdu_type:#04x})")
        self.transfer_syntax = self._accepted(body)

    @staticmethod
    def _accepted(body: bytes) -> dict[int, str]:
        """Context ID -> accepted transfer syntax, from an A-ASSOCIATE-AC's variable items (PS3.8 9.3.3.2)."""
        out, pos = {}, 68
        while pos + 4 <= len(body):
            item, length = body[pos], int.from_bytes(body[pos + 2:pos + 4], "big")
            if item == 0x21 and body[pos + 6] == 0:  # accepted presentation context
                sub = pos + 8
                sub_len = int.from_bytes(body[sub + 2:sub + 4], "big")
                out[body[pos + 4]] = body[sub + 4:sub + 4 + sub_len].decode().rstrip("\0 ")
            pos += 4 + length
        return out

    def exchange(self, identifier: Dataset, *, move_destination: str | None = None) -> tuple[float, int, int]:
        """Send a C-FIND-RQ (or C-MOVE-RQ) and read to the final response: (seconds, pendings, final status)."""
        context = 3 if move_destination else 1
        if context not in self.transfer_syntax:
            raise RuntimeError(f"presentation context {context} not accepted")
        self.message_id += 1
        command = Dataset()
        command.AffectedSOPClassUID = STUDY_ROOT_MOVE if move_destination else STUDY_ROOT_FIND
        command.CommandField = C_MOVE_RQ if move_destination else C_FIND_RQ
        command.MessageID = self.message_id
        command.Priority = 0
        if move_destination:
            command.MoveDestination = move_destination
        command.CommandDataSetType = 0x0001
        data = encode_dataset(identifier, self.transfer_syntax[context])
        pdus = b"".join(dimse.fragment(dimse.Message(context, command, data), self.max_pdu))
        pendings, command_buf = 0, bytearray()
        t0 = time.perf_counter()
        self.sock.sendall(pdus)
        while True:
            pdu_type, body = self.reader.pdu()
            if pdu_type != C.P_DATA_TF:
                raise RuntimeError(f"expected P-DATA-TF, got PDU {pdu_type:#04x}")
            pos = 0
            while pos < len(body):
                length = int.from_bytes(body[pos:pos + 4], "big")
                header = body[pos + 5]
                if header & 0x01:  # a command fragment (PS3.8 E.2)
                    command_buf += body[pos + 6:pos + 4 + length]
                    if header & 0x02:
                        status = _status(bytes(command_buf))
                        command_buf.clear()
                        if status in PENDING:
                            pendings += 1
                        else:
                            return time.perf_counter() - t0, pendings, status
                pos += 4 + length

    def close(self) -> None:
        try:
            self.sock.sendall(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00")  # A-RELEASE-RQ (PS3.8 9.3.6)
            self.sock.settimeout(5)
            self.reader.pdu()
        except (OSError, ConnectionError):
            pass
        finally:
            self.sock.close()


def _status(command: bytes) -> int:
    """Status (0000,0900) of a response command set (the fast reader, else pydicom for the rest)."""
    values = read_command(command)
    if values is not None and 0x0900 in values:
        return int(values[0x0900])
    return int(decode_command(command).Status)


def summarize(times: list[float]) -> tuple[float, float]:
    """(min, median) of a list of seconds."""
    ordered = sorted(times)
    return ordered[0], ordered[len(ordered) // 2]
