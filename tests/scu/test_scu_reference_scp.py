"""The SCU against dicomconf's own reference SCP, plain and over TLS."""

from __future__ import annotations

import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from dicomconf.scp.config import SCPConfig, TLSConfig
from dicomconf.scp.runtime import run_in_thread
from dicomconf.scu.client import SCU, load_dataset
from dicomconf.scu.connection import Connection

CT_FILE = get_testdata_file("CT_small.dcm")


@pytest.fixture
def reference_scp(tls_pair):
    handle = run_in_thread(
        SCPConfig(
            port=0,
            max_pdu_length=2048,
            artim_timeout=1.0,
            idle_timeout=5.0,
            tls=TLSConfig(cert=tls_pair.cert, key=tls_pair.key, port=0),
        )
    )
    yield handle
    handle.stop()


def test_store_in_fragments_to_the_reference_scp(reference_scp):
    scu = SCU(Connection.open("127.0.0.1", reference_scp.port), called_ae="DICOMCONF")
    scu.associate(["verification", ("ct", [ExplicitVRLittleEndian])])
    assert scu.peer_max_pdu_length == 2048
    assert scu.echo() == 0x0000
    assert scu.store(CT_FILE) == 0x0000
    scu.release()
    (stored,) = reference_scp.stored
    assert stored.data == load_dataset(CT_FILE)[1]
    assert scu.connection.findings == []


def test_tls_echo_with_the_reference_scp(reference_scp, tls_pair):
    conn = Connection.open("127.0.0.1", reference_scp.tls_port, tls=tls_pair.client)
    assert conn.sock.version() is not None  # a TLS session
    scu = SCU(conn, called_ae="DICOMCONF")
    scu.associate()
    assert scu.echo() == 0x0000
    scu.release()
    assert not scu.connection.findings
