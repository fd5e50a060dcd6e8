"""The load file (dicomconf.load.config) and the DICOM steps (dicomconf.load.operations), without Locust."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicomconf.load import fastpath
from dicomconf.load.config import load_config
from dicomconf.load.operations import LoadFailure, ObjectPool, Session, reason
from dicomconf.scenario.loader import SourceError
from dicomconf.scp.config import SCPConfig
from dicomconf.scp.runtime import run_in_thread
from dicomconf.scu.client import resolve_uid
from dicomconf.scu.connection import Connection

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "load-example.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(tmp_path: Path, text: str, name: str = "load.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "dicomconf.cli", "load", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- the file


def test_the_shipped_example_is_valid_and_proposes_what_its_mix_needs():
    config = load_config(EXAMPLE)
    assert [t.op for t in config.tasks] == ["echo", "store", "find", "move"]
    assert config.think_time == (1.0, 3.0)
    assert config.generated[0].size == 512 * 1024 and config.generated[0].count == 20
    assert config.contexts() == tuple(resolve_uid(n) for n in ("verification", "ct", "study-find", "study-move"))
    move = config.tasks[3]
    assert move.destination == "VIEWER" and move.keys == (("StudyInstanceUID", "1.2.826.0.1.3680043.2.1125.1"),)


def test_schema_errors_are_located_with_the_key_and_a_suggestion(tmp_path):
    path = write(tmp_path, """\
        target: {host: 127.0.0.1, prot: 104}
        association: {reuse: maybe}
        tasks:
          - {op: ecko, weight: 0}
        """)
    with pytest.raises(SourceError) as info:
        load_config(path)
    text = str(info.value)
    assert f"{path}:1: target.prot: unknown key 'prot' (did you mean 'port'?)" in text
    assert f"{path}:2: association.reuse: got 'maybe'" in text
    assert f"{path}:4: tasks[0].op: got 'ecko' (did you mean 'echo'?)" in text
    assert f"{path}:4: tasks[0].weight: got 0 (minimum 1)" in text


def test_what_the_schema_cannot_say_is_located_too(tmp_path):
    path = write(tmp_path, """\
        target: {host: "bad host", called_ae: "  "}
        association: {timeout: 5q}
        think_time: {min: 2s, max: 1s}
        tasks:
          - {op: move, keys: {StudyInstanceUID: "1.2"}}
          - op: store
          - op: find
            model: study-fnd
            keys: {PatientIDD: "x"}
        objects:
          - files: [missing/*.dcm]
        """)
    with pytest.raises(SourceError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert lines == [
        f"{path}:1: target.host: target host 'bad host' is not a host name or an IP address",
        f"{path}:1: target.called_ae: AE title '  ' is empty or all spaces (PS3.8 9.3.2)",
        f"{path}:2: association.timeout: '5q' is not a duration (use e.g. 5s or 500ms)",
        f"{path}:3: think_time: max (1s) is below min (2s)",
        f"{path}:5: tasks[0]: a move task needs a destination (an AE title the target knows)",
        lines[5],
        f"{path}:9: tasks[2].keys.PatientIDD: 'PatientIDD' is not a DICOM keyword (PS3.6) (did you mean 'PatientID'?)",
        f"{path}:11: objects[0].files[0]: no file matches 'missing/*.dcm'",
    ]
    assert lines[5].startswith(f"{path}:8: tasks[2].model: unknown information model 'study-fnd'")


def test_the_command_reports_a_bad_file_in_lines_and_exit_code_4_never_a_traceback(tmp_path):
    path = write(tmp_path, "target: {host: 127.0.0.1}\ntasks:\n  - {op: store}\n")
    result = cli(str(path), "--headless", cwd=tmp_path)
    assert result.returncode == 4
    assert result.stderr.strip() == f"{path}:3: tasks[0]: a store task needs objects (a top-level objects: list)"
    missing = cli(str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 4 and "nope.yaml: cannot read" in missing.stderr and "Traceback" not in missing.stderr
    syntax = write(tmp_path, "target: {host: [\n", "syntax.yaml")
    result = cli(str(syntax), cwd=tmp_path)
    assert result.returncode == 4 and result.stderr.startswith(f"{syntax}:") and "Traceback" not in result.stderr
    ok = cli(str(EXAMPLE), "--check", cwd=tmp_path)
    assert ok.returncode == 0 and "tasks: echo x2, store x5" in ok.stdout


def test_the_locustfile_option_is_refused(tmp_path):
    result = cli(str(EXAMPLE), "-f", "other.py", cwd=tmp_path)
    assert result.returncode == 4 and "-f is set by dicomconf load" in result.stderr


# ---------------------------------------------------------------- the steps, against the reference SCP


def test_the_fast_connection_overrides_hooks_that_connection_still_has():
    """If Connection renamed a hook, LoadConnection would silently run the full checks again."""
    for hook in ("_record", "_observe_sent", "_received"):
        assert callable(getattr(Connection, hook))
        assert getattr(fastpath.LoadConnection, hook) is not getattr(Connection, hook)


def _part10(path: Path, study: str) -> Path:
    ds = pydicom.Dataset()
    ds.SOPClassUID = resolve_uid("sc")
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "LOAD-P1", "LOAD^FILE", "OT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.network
def test_every_step_against_the_reference_scp(tmp_path):
    study = generate_uid()
    _part10(tmp_path / "one.dcm", study)
    port = free_port()
    scp = run_in_thread(SCPConfig(port=port, ae_titles=("LOAD-SCP",), storage="memory", artim_timeout=2.0,
                                  move_destinations={"LOAD-SCP": ("127.0.0.1", port)}))  # moves to itself
    try:
        path = write(tmp_path, f"""\
            target: {{host: 127.0.0.1, port: {scp.port}, called_ae: LOAD-SCP}}
            association: {{timeout: 5s}}
            objects:
              - generate: {{sop_class: ct, size: 1000, count: 2}}
              - files: ["*.dcm"]
            tasks:
              - {{op: echo}}
              - {{op: store, count: 3}}
              - {{op: find, keys: {{PatientID: LOAD-P1, StudyInstanceUID: ""}}}}
              - {{op: move, destination: LOAD-SCP, keys: {{StudyInstanceUID: "{study}"}}}}
              - {{op: move, destination: NOWHERE, keys: {{StudyInstanceUID: "{study}"}}}}
            """)
        config = load_config(path)
        session = Session(config, ObjectPool(config))
        assert session.open() > 0 and session.is_open
        assert session.echo() == 0
        sizes = [session.store() for _ in range(3)]  # two generated CT (1000 bytes: 2 rows of 512), the file
        assert sizes[0] > 1024 and sizes[1] > 1024 and 0 < sizes[2] < 1024
        assert len(scp.stored) == 3 and len({s.sop_instance_uid for s in scp.stored}) == 3
        assert session.find(config.tasks[2]) > 0  # the file's study came back
        assert session.move(config.tasks[3]) == 0
        with pytest.raises(LoadFailure) as info:
            session.move(config.tasks[4])
        assert str(info.value) == "status 0xA801"  # move destination unknown (PS3.4 C.4.2.1.5)
        assert session.echo() == 0  # a DIMSE failure leaves the association usable
        assert session.release() == 0 and not session.is_open
        assert session.scu is None
    finally:
        scp.stop()


@pytest.mark.network
def test_failures_are_named_by_their_cause(tmp_path):
    scp = run_in_thread(SCPConfig(port=0, ae_titles=("LOAD-SCP",), require_called_ae=True, artim_timeout=2.0))
    try:
        path = write(tmp_path, f"target: {{host: 127.0.0.1, port: {scp.port}, called_ae: WRONG}}\n"
                               "tasks: [{op: echo}]\n")
        session = Session(load_config(path))
        with pytest.raises(Exception) as info:
            session.open()
        assert reason(info.value, 10) == "association rejected (1,1,7): rejected-permanent, called-AE-title-not-recognized"
        assert not session.is_open
    finally:
        scp.stop()
    with pytest.raises(OSError) as refused:
        session.open()  # the SCP is gone: nothing listens on its port
    assert reason(refused.value, 10) == "connection: refused the connection: nothing listens on that port"
