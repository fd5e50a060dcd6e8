"""End to end: the reference SCP process stores into a directory with its index, stops, restarts: rows and files."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest
from pydicom.dataset import FileMetaDataset
from pynetdicom import AE

from dicomconf.services.index import Index

sys.path.insert(0, os.path.dirname(__file__))
import qr_kit

pytestmark = pytest.mark.network


def _start(store: str, *extra: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "dicomconf.cli", "scp", "--port", "0", "--storage", "directory",
                             "--storage-dir", store, "--index", "default", *extra],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    for _ in range(20):
        line = proc.stderr.readline()
        lines.append(line)
        match = re.search(r"dicomconf scp listening on 127\.0\.0\.1:(\d+)", line)  # after the signal handlers
        if match:
            return proc, int(match.group(1))
        if not line:
            break
    proc.kill()
    proc.wait()
    raise AssertionError("".join(lines))


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return err


def test_stores_survive_a_restart_in_index_and_files(tmp_path):
    store = str(tmp_path / "store")
    datasets = [qr_kit.instance(n, study="1.5", series="1.5.1") for n in range(1, 4)]
    for ds in datasets:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    proc, port = _start(store)
    try:
        ae = AE(ae_title="TESTSCU")
        ae.add_requested_context(qr_kit.CT, "1.2.840.10008.1.2.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="DICOMCONF")
        assert assoc.is_established
        try:
            for ds in datasets:
                assert assoc.send_c_store(ds).Status == 0
        finally:
            assoc.release()
    finally:
        _stop(proc)
    proc, port = _start(store)  # the same directory: the index is opened and reconciled
    _stop(proc)
    index = Index(os.path.join(store, "index.sqlite"))
    images = list(index.find("IMAGE", qr_kit.query(None, SOPInstanceUID="")))
    assert [i.SOPInstanceUID for i in images] == [ds.SOPInstanceUID for ds in datasets]
    for ds in datasets:
        located = index.locate(ds.SOPInstanceUID)
        assert located.path == os.path.join(store, ds.SOPInstanceUID + ".dcm") and os.path.isfile(located.path)
    (study,) = index.find("STUDY", qr_kit.query(None, StudyInstanceUID="1.5", NumberOfStudyRelatedInstances=""))
    assert study.NumberOfStudyRelatedInstances == 3
