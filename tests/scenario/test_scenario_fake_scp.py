"""The scripted fake SCP for a team's tests: ``FakeSCP`` and the ``dicomconf_fake_scp`` fixture.

The SCU under test is dicomconf's reference SCU (``dicomconf.scu.app``), pynetdicom's AE, a
reference SCU made to break one rule, or a raw socket; everything on 127.0.0.1 and free ports,
every fake SCP stopped by the fixture (or by the test, for ``FakeSCP`` used directly).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelFind, Verification

from dicomconf.scenario.fake_scp import FakeSCP
from dicomconf.scenario.loader import SourceError
from dicomconf.scu.app import FAILED, OK, Job, ReferenceSCU, perform

sys.path.insert(0, os.path.dirname(__file__))

from scenario_testkit import run_pytest, write  # noqa: E402

pytestmark = pytest.mark.network

ECHO_SCRIPT = """\
- associate: {request: {calling_ae_title: DICOMCONF-SCU}}
- serve: {request: {command_name: C-ECHO-RQ}}
- release: {}
"""

STORE_A700 = """\
- associate: {request: {calling_ae_title: TEAM-SCU}}
- serve: {request: {command_name: C-STORE-RQ}, status: 0xA700}
- release: {}
"""

SCENARIO_FILE = """\
- id: team.echo
  title: the SCU echoes and releases
  role: scp
  clauses: [PS3.7 9.3.5]
  severity: must
  area: dimse
  steps:
    - accept: {}
    - associate: {}
    - serve: {request: {command_name: C-ECHO-RQ}}
    - release: {}
- id: team.store-out-of-resources
  title: the SCU reports A700 and still releases
  role: scp
  clauses: [PS3.4 B.2.3]
  severity: must
  area: dimse
  steps:
    - associate: {ac: {max_pdu_length: 1024}}
    - serve: {request: {command_name: C-STORE-RQ}, status: 0xA700}
    - release: {}
"""


def ct_dataset(patient_id: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = "Test^Patient"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated = 16
    ds.PixelData = b"\0" * 512
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def reference_job(scp: FakeSCP, operation: str = "echo", file: str | None = None) -> Job:
    return Job(scp.host, scp.port, operation, scp.ae_title, "DICOMCONF-SCU", file,
               connect_timeout=2, association_timeout=2, dimse_timeout=2, release_timeout=2)


@pytest.fixture
def pynetdicom_ae():
    """A pynetdicom AE (the SCU under test) with short timeouts, shut down at teardown."""
    made = []

    def make(ae_title: str = "TEAM-SCU") -> AE:
        ae = AE(ae_title=ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
        made.append(ae)
        return ae

    yield make
    for ae in made:
        ae.shutdown()


# ------------------------------------------------------------------ the reference SCU as the SCU under test


def test_yaml_string_script_serves_the_reference_scu(dicomconf_fake_scp):
    scp = dicomconf_fake_scp(ECHO_SCRIPT, accept_within=5)
    assert scp.address == f"127.0.0.1:{scp.port}" and scp.port > 0
    status, lines = perform(reference_job(scp))
    assert (status, lines) == (OK, ["echo status 0x0000"])
    result = scp.wait(10)
    result.assert_conforms()
    assert result.passed and result.failure is None
    assert [rq.calling_ae_title for rq in result.associations] == ["DICOMCONF-SCU"]
    assert [rq.called_ae_title for rq in result.associations] == ["DICOMCONF"]
    assert [m.name for m in result.messages] == ["C-ECHO-RQ"]
    assert result.datasets == [None]
    assert [f for f in result.findings if f["severity"] == "must"] == []


def test_file_script_chosen_by_id_serves_the_reference_scu(dicomconf_fake_scp, tmp_path):
    script = write(tmp_path / "team.yaml", SCENARIO_FILE)
    ct = tmp_path / "ct.dcm"
    ct_dataset("FILE-1").save_as(ct, enforce_file_format=True)
    scp = dicomconf_fake_scp(script, scenario_id="team.store-out-of-resources", accept_within=5)
    assert scp.scenario.id == "team.store-out-of-resources"
    status, lines = perform(reference_job(scp, "store", str(ct)))
    assert (status, lines) == (FAILED, ["store status 0xa700"])
    result = scp.wait(10)
    result.assert_conforms()
    assert [m.name for m in result.messages] == ["C-STORE-RQ"]
    assert result.datasets[0].PatientID == "FILE-1"
    # the same file as a str path: the first scenario, an echo
    first = dicomconf_fake_scp(str(script), accept_within=5)
    assert first.scenario.id == "team.echo"
    assert perform(reference_job(first))[0] == OK
    assert first.wait(10).passed


def test_python_objects_script_answers_a_find_with_pending_results(dicomconf_fake_scp, tmp_path):
    steps = [
        {"associate": {}},
        {"serve": {"request": {"command_name": "C-FIND-RQ"},
                   "pending": [{"PatientID": "1", "StudyInstanceUID": "1.2.3"},
                               {"PatientID": "2", "StudyInstanceUID": "1.2.4"}]}},
        {"release": {}},
    ]
    scp = dicomconf_fake_scp(steps, accept_within=5, pcap=tmp_path / "find.pcap")
    status, lines = perform(reference_job(scp, "find"))
    assert (status, lines) == (OK, ["find status 0x0000"])
    result = scp.wait(10)
    result.assert_conforms()
    assert [m.name for m in result.messages] == ["C-FIND-RQ"]
    assert result.datasets[0].QueryRetrieveLevel == "STUDY"
    assert result.pcap == str(tmp_path / "find.pcap") and os.path.getsize(result.pcap) > 100
    assert steps[0] == {"associate": {}}  # the caller's objects are not changed


def test_a_mapping_script_keeps_what_it_gives_and_defaults_the_rest(dicomconf_fake_scp):
    scp = dicomconf_fake_scp({"id": "team.mapping", "severity": "should", "steps": [{"accept": {}}, {"close": {}}]},
                             accept_within=5)
    assert (scp.scenario.id, scp.scenario.severity, scp.scenario.role) == ("team.mapping", "should", "scp")
    assert perform(reference_job(scp))[0] == 2  # closed at once: no association
    assert scp.wait(10).passed


# ------------------------------------------------------------------ pynetdicom as the SCU under test


def test_pynetdicom_store_is_answered_a700_and_its_data_set_is_kept(dicomconf_fake_scp, pynetdicom_ae):
    scp = dicomconf_fake_scp(STORE_A700, accept_within=5)
    ae = pynetdicom_ae("TEAM-SCU")
    ae.add_requested_context(CTImageStorage, ImplicitVRLittleEndian)
    assoc = ae.associate(scp.host, scp.port, ae_title=scp.ae_title)
    assert assoc.is_established
    status = assoc.send_c_store(ct_dataset("PYN-42"))
    assoc.release()
    assert status.Status == 0xA700
    result = scp.wait(10)
    result.assert_conforms()
    assert [rq.calling_ae_title for rq in result.associations] == ["TEAM-SCU"]
    assert [m.name for m in result.messages] == ["C-STORE-RQ"]
    assert result.datasets[0].PatientID == "PYN-42"
    assert result.datasets[0].SOPInstanceUID == result.messages[0].affected_sop_instance_uid


def test_pynetdicom_echo_and_find_from_a_file_and_python_objects(dicomconf_fake_scp, pynetdicom_ae, tmp_path):
    script = write(tmp_path / "echo.yaml", SCENARIO_FILE)
    echo_scp = dicomconf_fake_scp(script, accept_within=5)
    ae = pynetdicom_ae()
    ae.add_requested_context(Verification)
    assoc = ae.associate(echo_scp.host, echo_scp.port, ae_title=echo_scp.ae_title)
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    echo_scp.wait(10).assert_conforms()

    find_scp = dicomconf_fake_scp(
        [{"associate": {}},
         {"serve": {"pending": [{"PatientID": "A"}, {"PatientID": "B"}], "status": 0}},
         {"release": {}}],
        accept_within=5)
    ae = pynetdicom_ae()
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(find_scp.host, find_scp.port, ae_title=find_scp.ae_title)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "*"
    answers = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    assoc.release()
    assert [(s.Status, ds.PatientID if ds else None) for s, ds in answers] == \
        [(0xFF00, "A"), (0xFF00, "B"), (0x0000, None)]
    result = find_scp.wait(10)
    result.assert_conforms()
    assert result.datasets[0].PatientID == "*"


def test_a_rejecting_script_is_seen_by_pynetdicom_and_passes(dicomconf_fake_scp, pynetdicom_ae):
    scp = dicomconf_fake_scp("""\
        - associate: {reject: {result: 1, source: 1, reason: 7}}   # called AE title not recognised
        - expect: {closed: true, within: 5s}                       # AE-4: the SCU closes
        """, accept_within=5)
    ae = pynetdicom_ae()
    ae.add_requested_context(Verification)
    assoc = ae.associate(scp.host, scp.port, ae_title="SOMEONE-ELSE")
    assert assoc.is_rejected and not assoc.is_established
    result = scp.wait(10)
    result.assert_conforms()
    assert [rq.called_ae_title for rq in result.associations] == ["SOMEONE-ELSE"]
    assert result.messages == []


# ------------------------------------------------------------------ SCUs that misbehave


class ClosesInsteadOfReleasing(ReferenceSCU):
    """Ends the association by closing the transport: no A-RELEASE-RQ (PS3.8 7.2)."""

    def release(self) -> None:
        self.conn.close()


def test_an_scu_that_closes_instead_of_releasing_fails_the_script(dicomconf_fake_scp):
    scp = dicomconf_fake_scp(ECHO_SCRIPT, accept_within=5)
    assert perform(reference_job(scp), ClosesInsteadOfReleasing)[0] == OK  # it believes all went well
    result = scp.wait(10)
    assert not result.passed
    assert "did not release the association" in str(result.failure)
    text = result.describe()
    assert "step:     <script>:3 (release)" in text and "script:   steps[2].release" in text
    assert "A-RELEASE-RQ" in text and "closed" in text
    with pytest.raises(AssertionError, match="did not release the association"):
        result.assert_conforms()
    assert [m.name for m in result.messages] == ["C-ECHO-RQ"]  # what came before is still there


def test_pynetdicom_aborting_instead_of_releasing_fails_the_script(dicomconf_fake_scp, pynetdicom_ae):
    scp = dicomconf_fake_scp(ECHO_SCRIPT.replace("DICOMCONF-SCU", "TEAM-SCU"), accept_within=5)
    ae = pynetdicom_ae()
    ae.add_requested_context(Verification)
    assoc = ae.associate(scp.host, scp.port, ae_title=scp.ae_title)
    assert assoc.send_c_echo().Status == 0x0000
    assoc.abort()
    result = scp.wait(10)
    assert not result.passed
    assert "did not release" in result.describe() and "A-ABORT" in result.describe()


def test_garbage_instead_of_an_association_request_fails_the_script(dicomconf_fake_scp):
    scp = dicomconf_fake_scp(ECHO_SCRIPT, accept_within=5)
    with socket.create_connection((scp.host, scp.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        result = scp.wait(10)
    assert not result.passed
    assert "did not request an association" in str(result.failure)
    assert result.associations == [] and result.messages == []


def test_an_scu_that_never_connects_is_inconclusive_not_passed():
    with FakeSCP(ECHO_SCRIPT, accept_within=0.3) as scp:
        result = scp.wait(10)
    assert not result.passed
    assert "did not connect" in result.describe() and "inconclusive" in result.describe()


# ------------------------------------------------------------------ bad scripts, stopping


def test_a_bad_yaml_script_is_refused_with_its_line(dicomconf_fake_scp):
    with pytest.raises(SourceError) as caught:
        dicomconf_fake_scp("- associate: {}\n- serve: {statu: 0xA700}\n- release: {}\n")
    assert str(caught.value).startswith("<script>:2: steps[1].serve.statu: unknown key 'statu'")
    assert "did you mean 'status'" in str(caught.value)


def test_a_bad_file_or_object_script_is_refused_with_where(dicomconf_fake_scp, tmp_path):
    bad = write(tmp_path / "bad.yaml", "steps:\n  - accept: {}\n  - serve: {status: [1, 2]}\n")
    with pytest.raises(SourceError, match=rf"^{tmp_path / 'bad.yaml'}:3: steps\[1\]\.serve\.status"):
        dicomconf_fake_scp(bad)
    with pytest.raises(SourceError, match=r"^<script>: steps\[0\]\.bogus: unknown key"):
        dicomconf_fake_scp([{"bogus": {}}])
    with pytest.raises(SourceError, match=r"^<script>:1: role: the fake SCP plays role: scp"):
        dicomconf_fake_scp("role: scu\nsteps: [{accept: {}}]\n")
    with pytest.raises(SourceError, match="no scenario with id 'team.nope'.*ids: team.echo, team.store"):
        dicomconf_fake_scp(write(tmp_path / "two.yaml", SCENARIO_FILE), scenario_id="team.nope")
    with pytest.raises(SourceError, match=rf"^{tmp_path / 'missing.yaml'}: cannot read"):
        dicomconf_fake_scp(str(tmp_path / "missing.yaml"))


def test_a_script_error_found_while_playing_is_raised_by_wait(dicomconf_fake_scp):
    scp = dicomconf_fake_scp("- associate: {}\n- serve: {status: '{no_such_value}'}\n", accept_within=5)
    assert perform(reference_job(scp))[0] == 2  # the association ended when the script broke
    with pytest.raises(SourceError, match=r"^<script>:2: steps\[1\]\.serve: .*no_such_value"):
        scp.wait(10)


def test_stop_ends_a_waiting_script_at_once_and_frees_the_port():
    scp = FakeSCP(ECHO_SCRIPT, accept_within=60).start()
    port = scp.port
    time.sleep(0.1)
    started = time.monotonic()
    scp.stop()
    scp.stop()  # idempotent
    assert time.monotonic() - started < 3
    result = scp.wait(0)
    assert not result.passed and "stopped (stop()) before its script ended" in result.describe()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again
    assert not any(t.name.startswith("dicomconf-fake-scp-") and t.is_alive() for t in threading.enumerate())


def test_ipv6_loopback(dicomconf_fake_scp):
    try:
        socket.socket(socket.AF_INET6).close()
        socket.getaddrinfo("::1", 0, socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 on this machine")
    scp = dicomconf_fake_scp(ECHO_SCRIPT, host="::1", accept_within=5)
    assert scp.address == f"[::1]:{scp.port}"
    assert perform(reference_job(scp))[0] == OK
    scp.wait(10).assert_conforms()


# ------------------------------------------------------------------ through the plugin


PLUGIN_TESTS = '''\
import socket
import threading

from pynetdicom import AE
from pynetdicom.sop_class import Verification

SEEN = {}


def test_echo(dicomconf_fake_scp):
    scp = dicomconf_fake_scp("""
- associate: {request: {calling_ae_title: TEAM-SCU}}
- serve: {request: {command_name: C-ECHO-RQ}}
- release: {}
""", accept_within=5)
    ae = AE(ae_title="TEAM-SCU")
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context(Verification)
    assoc = ae.associate(scp.host, scp.port, ae_title=scp.ae_title)
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    ae.shutdown()
    scp.wait(10).assert_conforms()


def test_left_waiting(dicomconf_fake_scp):
    SEEN["ports"] = [dicomconf_fake_scp("- accept: {}", accept_within=60).port for _ in range(2)]


def test_teardown_stopped_them():
    assert not [t.name for t in threading.enumerate() if t.name.startswith("dicomconf-fake-scp-")]
    for port in SEEN["ports"]:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
            s.close()
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_bad_script_fails_only_its_test(dicomconf_fake_scp):
    dicomconf_fake_scp("- serve: {statu: 1}")
'''


def test_the_plugin_gives_the_fixture_without_a_conftest(tmp_path):
    write(tmp_path / "test_team_scu.py", PLUGIN_TESTS)
    started = time.monotonic()
    run = run_pytest(tmp_path, "-q", "-n", "0", "test_team_scu.py")
    assert time.monotonic() - started < 60
    assert not (tmp_path / "conftest.py").exists()
    assert "1 failed, 3 passed" in run.stdout, run.stdout + run.stderr
    assert "<script>:1: steps[0].serve.statu: unknown key 'statu'" in run.stdout
    assert "FAILED test_team_scu.py::test_a_bad_script_fails_only_its_test" in run.stdout
    assert "model.py" not in run.stdout and "loader.py" not in run.stdout  # no frames from inside


def test_without_the_plugin_there_is_no_fixture(tmp_path):
    write(tmp_path / "test_team_scu.py", PLUGIN_TESTS)
    (tmp_path / "pytest.ini").touch()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:dicomconf.pytest_plugin", "-p",
                          "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path),
                          "test_team_scu.py::test_echo"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")})
    assert "fixture 'dicomconf_fake_scp' not found" in run.stdout, run.stdout + run.stderr


def test_closing_the_listener_wakes_a_waiting_accept_whatever_the_moment():
    """Listener.close from another thread (the time limit, FakeSCP.stop) ends a waiting accept with
    ListenerClosed, never with an error from a socket closed under select or accept."""
    import threading

    from dicomconf.scenario.listener import Listener, ListenerClosed

    for delay in (0.0, 0.001, 0.01, 0.05):
        listener = Listener("127.0.0.1", 0)
        timer = threading.Timer(delay, listener.close)
        timer.start()
        with pytest.raises(ListenerClosed):
            listener.accept(5.0)
        timer.join()
