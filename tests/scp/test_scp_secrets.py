"""Secrets stay secret: user identity passcodes and tokens are masked in traces, step records and decodes.

PS3.7 D.3.3.7: the passcode of a type 2 User Identity sub-item and the primary field of types 3-5 (a
Kerberos ticket, a SAML assertion, a JWT) are credentials.  The SCP compares passcodes in constant time.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scp_testkit import RawClient

from dicomconf.scp.config import SCPConfig
from dicomconf.scp.describe import describe, user_identity
from dicomconf.ul import constants as C
from dicomconf.ul.items import UserIdentityAC, UserIdentityRQ
from dicomconf.ul.pdu import decode_pdu

pytestmark = pytest.mark.network
PASSCODE = "s3cret-Passc0de"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def _rq(identity: UserIdentityRQ) -> bytes:
    from scp_testkit import associate_rq

    return associate_rq(extra_sub_items=(identity,))


@pytest.fixture
def trace_log():
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("dicomconf.scp")
    handler, level = Keep(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


# ---------------------------------------------------------------- the SCP's -v trace


def test_describe_masks_passcodes_and_tokens():
    rq = decode_pdu(_rq(UserIdentityRQ(2, b"alice", PASSCODE.encode(), 1)))
    line = describe(rq)
    assert PASSCODE not in line
    assert "user identity type 2 user='alice' passcode: *** (15 bytes) (positive response requested)" in line
    assert PASSCODE in describe(rq, show_secrets=True)
    token = user_identity(UserIdentityRQ(5, JWT.encode(), b"", 0))
    assert JWT not in token and token == f"user identity type 5 JWT: *** ({len(JWT)} bytes)"
    assert "user='bob'" in user_identity(UserIdentityRQ(1, b"bob", b"", 0))


def test_describe_masks_the_server_response_of_the_ac():
    from dicomconf.ul.items import UserInformation
    from dicomconf.ul.pdu import AAssociateAC

    ac = AAssociateAC("A", "B", (), UserInformation((UserIdentityAC(b"ticket-for-alice"),)))
    assert "ticket-for-alice" not in describe(ac) and "user identity response: *** (16 bytes)" in describe(ac)


@pytest.mark.parametrize("show", [False, True])
def test_scp_trace_masks_the_passcode_unless_asked(scp_factory, trace_log, show):
    handle = scp_factory(verbose=True, show_secrets=show, users={"alice": PASSCODE})
    with RawClient(handle.port) as client:
        client.send(_rq(UserIdentityRQ(2, b"alice", PASSCODE.encode(), 1)))
        assert client.recv_pdu()[0] == C.A_ASSOCIATE_AC
    text = "\n".join(trace_log)
    assert "user identity type 2 user='alice'" in text
    assert (PASSCODE in text) is show
    assert ("passcode: ***" in text) is not show


def test_scp_command_prints_no_passcode(tmp_path):
    """``dicomconf scp -v`` in its own process: the terminal output of a user identity association."""
    cfg = tmp_path / "scp.yaml"
    cfg.write_text(f"users: {{alice: {PASSCODE}}}\nrequire_user_identity: true\n")
    proc = subprocess.Popen([sys.executable, "-m", "dicomconf.cli", "scp", "--port", "0", "-v", "--config", str(cfg)],
                            stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.monotonic() + 30
        lines = []
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        assert port, lines
        with RawClient(port) as client:
            client.send(_rq(UserIdentityRQ(2, b"alice", PASSCODE.encode(), 1)))
            assert client.recv_pdu()[0] == C.A_ASSOCIATE_AC
            client.send(_rq(UserIdentityRQ(2, b"alice", b"wrong-" + PASSCODE.encode(), 1)))  # a second RQ: aborted
            client.recv_pdu()
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=20)[1]
    text = "".join(lines) + err
    assert "passcode: ***" in text and PASSCODE not in text


# ---------------------------------------------------------------- constant-time comparison


def test_passcodes_are_compared_in_constant_time(scp_factory, monkeypatch):
    """PS3.15 B.4: the SCP checks the passcode with hmac.compare_digest, never ==."""
    import hmac

    from dicomconf.ul import negotiation

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(negotiation.hmac, "compare_digest", spy)
    handle = scp_factory(users={"alice": PASSCODE}, require_user_identity=True)
    for passcode, answer in ((b"nope", C.A_ASSOCIATE_RJ), (PASSCODE.encode(), C.A_ASSOCIATE_AC)):
        with RawClient(handle.port) as client:
            client.send(_rq(UserIdentityRQ(2, b"alice", passcode, 0)))
            assert client.recv_pdu()[0] == answer
    assert calls == [(b"nope", PASSCODE.encode()), (PASSCODE.encode(), PASSCODE.encode())]


def test_configuration_repr_hides_the_users():
    assert PASSCODE not in repr(SCPConfig(users={"alice": PASSCODE}))


# ---------------------------------------------------------------- scenario step records and decoded captures


SCENARIO = f"""\
id: secrets.literal-passcode
title: a scenario that writes its passcode literally
clauses: [PS3.7 D.3.3.7]
severity: must
area: negotiation
steps:
  - associate:
      contexts: [verification]
      user_identity: {{type: 2, primary: alice, secondary: "{PASSCODE}", positive_response: true}}
  - send:
      pdu: A-ASSOCIATE-RQ
      called_ae_title: DICOMCONF
      user_information:
        - {{item: user-identity, user_identity_type: 5, primary_field: "{JWT}"}}
  - expect: {{pdu: A-ABORT, within: 3s}}
"""


def test_scenario_records_and_decoded_capture_mask_the_credentials(scp_factory, tmp_path, capsys):
    from dicomconf.cli import main
    from dicomconf.scenario.engine import Target
    from dicomconf.scenario.model import load_file
    from dicomconf.scenario.profile import Profile
    from dicomconf.scenario.requestor import Runner

    handle = scp_factory(users={"alice": PASSCODE})
    path = tmp_path / "secret.yaml"
    path.write_text(SCENARIO)
    (entry,) = load_file(path)
    assert entry.error is None, entry.error
    runner = Runner(entry.scenario, Profile(ae_title="DICOMCONF"), Target("127.0.0.1", handle.port))
    pcap = tmp_path / "run.pcap"
    runner.run(pcap, time_limit=20)
    records = repr(runner.trace)
    assert PASSCODE not in records and JWT not in records and records.count("***") == 2, records
    assert main(["decode", str(pcap), "--port", str(handle.port), "-v"]) == 0
    masked = capsys.readouterr().out
    assert "secondary_field= b'***'" in masked and PASSCODE not in masked and JWT not in masked
    assert main(["decode", str(pcap), "--port", str(handle.port), "-v", "--show-secrets"]) == 0
    shown = capsys.readouterr().out
    assert PASSCODE in shown and JWT in shown
    assert os.path.getsize(pcap) > 0 and PASSCODE.encode() in Path(pcap).read_bytes()  # the wire keeps it
