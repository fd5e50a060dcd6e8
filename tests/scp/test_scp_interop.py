"""Interoperability: pynetdicom's SCU and DCMTK's echoscu / storescu against the reference SCP."""

from __future__ import annotations

import os
import subprocess

import pytest
from scp_testkit import (
    CT,
    DCMTK,
    EVRLE,
    IVRLE,
    dataset_bytes_of_file,
    dcmtk_env,
    have_dcmtk,
    make_dataset,
    stored_names,
    with_syntax,
    write_part10,
)

from dicomconf.ul import constants as C
from dicomconf.ul.dimse import encode_dataset

pynetdicom = pytest.importorskip("pynetdicom")
from pynetdicom import AE, build_role  # noqa: E402
from pynetdicom.pdu_primitives import UserIdentityNegotiation  # noqa: E402

pytestmark = pytest.mark.network
needs_dcmtk = pytest.mark.skipif(not have_dcmtk(), reason="DCMTK (echoscu, storescu) is not installed")


def ae(**kw) -> AE:
    a = AE(ae_title="PYNETDICOM")
    a.acse_timeout = a.dimse_timeout = a.network_timeout = 5
    for key, value in kw.items():
        setattr(a, key, value)
    return a


def test_pynetdicom_echo(scp):
    a = ae()
    a.add_requested_context(C.VERIFICATION_SOP_CLASS)
    assoc = a.associate("127.0.0.1", scp.port, ae_title="DICOMCONF")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert assoc.is_released


@pytest.mark.parametrize("transfer_syntax", [IVRLE, EVRLE])
def test_pynetdicom_store_is_kept_byte_for_byte(scp, transfer_syntax):
    a = ae()
    a.add_requested_context(CT, transfer_syntax)
    assoc = a.associate("127.0.0.1", scp.port, ae_title="DICOMCONF")
    sent = []
    for i in range(5):
        ds = with_syntax(make_dataset(i, size=2048), transfer_syntax)
        assert assoc.send_c_store(ds).Status == 0x0000
        sent.append((ds.SOPInstanceUID, encode_dataset(ds, transfer_syntax)))
    assoc.release()
    got = [(s.sop_instance_uid, s.data, s.transfer_syntax, s.calling_ae_title) for s in scp.stored]
    assert got == [(uid, data, transfer_syntax, "PYNETDICOM") for uid, data in sent]


def test_pynetdicom_tiny_maximum_pdu_both_ways(scp_factory):
    """The SCP announces 1024 and honours the SCU's 512 when fragmenting (PS3.8 D.1)."""
    handle = scp_factory(max_pdu_length=1024)
    a = ae(maximum_pdu_size=512)
    a.add_requested_context(CT, IVRLE)
    a.add_requested_context(C.VERIFICATION_SOP_CLASS)
    assoc = a.associate("127.0.0.1", handle.port, ae_title="DICOMCONF", max_pdu=512)
    assert assoc.is_established
    assert assoc.acceptor.maximum_length == 1024
    ds = with_syntax(make_dataset(1, size=10000), IVRLE)
    assert assoc.send_c_store(ds).Status == 0x0000
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert handle.stored[0].data == encode_dataset(ds, IVRLE)


def test_pynetdicom_role_selection(scp_factory):
    """PS3.7 D.3.3.4: a configured role is accepted, an unconfigured one refused, never 1 for a proposed 0."""
    handle = scp_factory(roles={CT: (True, True)})
    a = ae()
    a.add_requested_context(CT)
    a.add_requested_context("1.2.840.10008.5.1.4.1.1.4")  # MR Image Storage: no role configured
    roles = [build_role(CT, scu_role=True, scp_role=True), build_role("1.2.840.10008.5.1.4.1.1.4", scp_role=True)]
    assoc = a.associate("127.0.0.1", handle.port, ae_title="DICOMCONF", ext_neg=roles)
    assert assoc.is_established
    selection = assoc.acceptor.role_selection
    assert (selection[CT].scu_role, selection[CT].scp_role) == (True, True)
    mr = selection.get("1.2.840.10008.5.1.4.1.1.4")
    assert mr is None or not mr.scp_role
    assoc.release()


def _identity(kind: int, primary: bytes, secondary: bytes = b"", response: bool = True) -> UserIdentityNegotiation:
    item = UserIdentityNegotiation()
    item.user_identity_type = kind
    item.primary_field = primary
    if kind == 2:
        item.secondary_field = secondary
    item.positive_response_requested = response
    return item


@pytest.mark.parametrize(
    "kind, primary, secondary, accepted",
    [(2, b"alice", b"secret", True), (2, b"alice", b"wrong", False), (1, b"bob", b"", True), (1, b"eve", b"", False)],
)
def test_pynetdicom_user_identity(scp_factory, kind, primary, secondary, accepted):
    handle = scp_factory(users={"alice": "secret", "bob": None}, require_user_identity=True)
    a = ae()
    a.add_requested_context(C.VERIFICATION_SOP_CLASS)
    assoc = a.associate("127.0.0.1", handle.port, ae_title="DICOMCONF",
                        ext_neg=[_identity(kind, primary, secondary)])
    assert assoc.is_established is accepted
    if accepted:
        assert assoc.acceptor.user_identity is not None  # server response when requested (PS3.7 D.3.3.7.2)
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    else:
        assert assoc.is_rejected


def test_pynetdicom_without_identity_is_rejected_when_required(scp_factory):
    handle = scp_factory(users={"alice": "secret"}, require_user_identity=True)
    a = ae()
    a.add_requested_context(C.VERIFICATION_SOP_CLASS)
    assoc = a.associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    assert assoc.is_rejected


def test_unrecognised_operation_is_answered_0211(scp_factory):
    find = "1.2.840.10008.5.1.4.1.2.1.1"  # Patient Root Q/R Find: negotiable, but no service offered
    handle = scp_factory(services=(), supported={C.VERIFICATION_SOP_CLASS: (IVRLE,), find: (IVRLE,)})
    a = ae()
    a.add_requested_context(find, IVRLE)
    assoc = a.associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    assert assoc.is_established
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = "*"
    statuses = [status.Status for status, _ in assoc.send_c_find(query, "1.2.840.10008.5.1.4.1.2.1.1") if status]
    assoc.release()
    assert statuses == [0x0211]


def test_max_associations_rejects_transient_local_limit(scp_factory):
    """Beyond the limit: A-ASSOCIATE-RJ transient, presentation source, local-limit-exceeded (PS3.8 9.3.4)."""
    from scp_testkit import RawClient

    handle = scp_factory(max_associations=2)
    a = ae()
    a.add_requested_context(C.VERIFICATION_SOP_CLASS)
    held = [a.associate("127.0.0.1", handle.port, ae_title="DICOMCONF") for _ in range(2)]
    assert all(x.is_established for x in held)
    with RawClient(handle.port) as client:
        reply = client.associate()
        assert reply[0] == C.A_ASSOCIATE_RJ
        assert tuple(reply[1][1:4]) == (
            C.RJ_RESULT_TRANSIENT, C.RJ_SOURCE_PRESENTATION, C.RJ_PRESENTATION_LOCAL_LIMIT_EXCEEDED
        )
    for x in held:
        x.release()
    fourth = a.associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    assert fourth.is_established
    fourth.release()


@needs_dcmtk
def test_dcmtk_echoscu(scp):
    result = subprocess.run(
        [DCMTK["echoscu"], "-aec", "DICOMCONF", "-to", "5", "127.0.0.1", str(scp.port)],
        env=dcmtk_env(), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr


@needs_dcmtk
def test_dcmtk_storescu_100_instances_byte_identical_on_disk(scp_factory, tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    handle = scp_factory(storage="directory", storage_dir=str(dst))
    files = []
    for i in range(100):
        path = str(src / f"{i:03d}.dcm")
        write_part10(make_dataset(i, size=512), path, EVRLE)
        files.append(path)
    result = subprocess.run(
        [DCMTK["storescu"], "-aec", "DICOMCONF", "-to", "10", "-xe", "127.0.0.1", str(handle.port), *files],
        env=dcmtk_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    received = stored_names(dst)
    assert len(received) == 100
    assert not [n for n in received if not n.endswith(".dcm")], "temporary files left behind"
    import pydicom

    for path in files:
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        out = dst / f"{uid}.dcm"
        assert dataset_bytes_of_file(str(out)) == dataset_bytes_of_file(path)
        meta = pydicom.dcmread(str(out), stop_before_pixels=True).file_meta
        assert meta.MediaStorageSOPInstanceUID == uid and meta.TransferSyntaxUID == EVRLE


def test_pynetdicom_store_into_directory_with_fsync(scp_factory, tmp_path):
    """With fsync on, writes run on a worker thread; the files are whole and byte-identical."""
    handle = scp_factory(storage="directory", storage_dir=str(tmp_path), fsync=True)
    assert handle.scp.storage.blocking
    a = ae()
    a.add_requested_context(CT, EVRLE)
    assoc = a.associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    sent = {}
    for i in range(5):
        ds = with_syntax(make_dataset(i, size=4096), EVRLE)
        assert assoc.send_c_store(ds).Status == 0x0000
        sent[ds.SOPInstanceUID] = encode_dataset(ds, EVRLE)
    assoc.release()
    assert stored_names(tmp_path) == sorted(f"{uid}.dcm" for uid in sent)
    for uid, data in sent.items():
        assert dataset_bytes_of_file(str(tmp_path / f"{uid}.dcm")) == data


def test_store_that_cannot_be_written_answers_failure_and_leaves_nothing(scp_factory, tmp_path, monkeypatch):
    from dicomconf.scp import storage as storage_module

    handle = scp_factory(storage="directory", storage_dir=str(tmp_path))

    def refuse(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(storage_module.os, "replace", refuse)
    a = ae()
    a.add_requested_context(CT, EVRLE)
    assoc = a.associate("127.0.0.1", handle.port, ae_title="DICOMCONF")
    status = assoc.send_c_store(with_syntax(make_dataset(1), EVRLE)).Status
    assoc.release()
    assert status == 0x0110
    assert stored_names(tmp_path) == []
    assert handle.stored == []


def test_ipv6_loopback(scp_factory):
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        handle = scp_factory(host="::1")
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    a = ae()
    a.add_requested_context(C.VERIFICATION_SOP_CLASS)
    assoc = a.associate("::1", handle.port, ae_title="DICOMCONF")
    assert assoc.is_established and assoc.send_c_echo().Status == 0
    assoc.release()
