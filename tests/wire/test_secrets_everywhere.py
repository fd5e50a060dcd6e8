"""No credential leaves dicomconf in anything written for people (PS3.7 D.3.3.7; issue "secrets kept").

A User Identity sub-item's passcode (type 2), its token (types 3-5: the primary field) and the 59H
server response are masked in reprs, match failures, expression errors, hex dumps (well-formed and
malformed PDUs), the report files and the terminal; the pcap keeps them (it is the wire) and
``dicomconf decode -v --show-secrets`` shows them.  TLS private keys and key logs are never printed.
Each test here fails when the masking it is about is taken out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ
from dicomconf.wire import secrets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scenario"))

from scenario_testkit import run_pytest, write  # noqa: E402

PASSCODE = "S3cr3t-P4ss-9071"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
VERIFICATION = C.VERIFICATION_SOP_CLASS


def forms(secret: str) -> list[str]:
    """Every way the secret could show: itself, its hex (plain and spaced), and pieces of each that a
    hex dump's line break would leave (6 characters of text, 4 bytes of spaced hex)."""
    raw = secret.encode()
    spaced = raw.hex(" ")
    out = [secret, raw.hex(), spaced]
    out += [secret[i : i + 6] for i in range(len(secret) - 5)]
    out += [raw[i : i + 4].hex(" ") for i in range(len(raw) - 3)]
    return out


def leaked(text: str, secret: str = PASSCODE) -> list[str]:
    return [f for f in forms(secret) if f.lower() in text.lower()]


def rq_bytes(*subs, contexts=((1, VERIFICATION),)) -> bytes:
    pcs = tuple(PresentationContextRQ(cid, sop, (C.IMPLICIT_VR_LITTLE_ENDIAN,)) for cid, sop in contexts)
    ui = UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.3.4")) + tuple(subs))
    return AAssociateRQ("DICOMCONF", "TESTSCU", pcs, ui).encode()


def identity(kind: int = 2, primary: bytes = b"alice", secondary: bytes = PASSCODE.encode()) -> UserIdentityRQ:
    return UserIdentityRQ(kind, primary, secondary, 1)


# ---------------------------------------------------------------- reprs (ul, scp)


def test_user_identity_reprs_show_sizes_not_credentials():
    rq = identity()
    text = repr(rq)
    assert text == ("UserIdentityRQ(user_identity_type=2, primary_field=b'alice', "
                    "secondary_field=<16 bytes hidden>, positive_response_requested=1)")
    assert rq == identity() and hash(rq) == hash(identity()) and rq.secondary_field == PASSCODE.encode()
    token = repr(UserIdentityRQ(5, JWT.encode()))
    assert JWT not in token and f"primary_field=<{len(JWT)} bytes hidden>" in token and "secondary_field=b''" in token
    assert repr(UserIdentityRQ(1, b"bob")).count("b'bob'") == 1  # a user name is no secret
    assert repr(UserIdentityAC(b"ticket-for-alice")) == "UserIdentityAC(server_response=<16 bytes hidden>)"
    assert repr(UserIdentityAC()) == "UserIdentityAC(server_response=b'')"
    ac = AAssociateAC("A", "B", (), UserInformation((UserIdentityAC(b"ticket-for-alice"),)))
    whole = repr(AAssociateRQ("A", "B", (), UserInformation((rq,)))) + repr(ac) + str([rq])
    assert not leaked(whole) and "ticket-for-alice" not in whole


def test_acceptor_policy_and_scp_config_reprs_hide_passcodes():
    from dicomconf.scp.config import SCPConfig

    config = SCPConfig(users={"alice": PASSCODE, "bob": None})
    for text in (repr(config), repr(config.policy()), str(config)):
        assert not leaked(text), text
        assert "users={'alice': <16 characters hidden>, 'bob': None}" in text
    assert config.policy().users == {"alice": PASSCODE, "bob": None}
    assert config == SCPConfig(users={"alice": PASSCODE, "bob": None}) != SCPConfig(users={"alice": "other"})


def test_pytest_compare_explanation_masks_differing_credentials():
    """pytest's drill-down into differing dataclass fields prints raw values; the hook's helper does not."""
    lines = secrets.assertrepr_compare("==", identity(), identity(secondary=b"other"))
    text = "\n".join(lines)
    assert "secondary_field: <16 bytes hidden> != <5 bytes hidden>" in text and not leaked(text)
    rq = AAssociateRQ("A", "B", (), UserInformation((identity(),)))
    nested = "\n".join(secrets.assertrepr_compare("==", rq, AAssociateRQ("A", "C", (), UserInformation(()))))
    assert "calling_ae_title: 'B' != 'C'" in nested and not leaked(nested)
    assert secrets.assertrepr_compare("==", 1, 2) is None
    assert secrets.assertrepr_compare("==", MaximumLength(1), MaximumLength(2)) is None


# ---------------------------------------------------------------- raw bytes: spans and hex dumps


def test_spans_cover_passcode_token_and_server_response():
    data = rq_bytes(identity())
    (span,) = secrets.secret_spans(data)
    assert data[span[0] : span[1]] == PASSCODE.encode()
    token = rq_bytes(UserIdentityRQ(5, JWT.encode(), b"", 0))
    assert [token[a:b] for a, b in secrets.secret_spans(token)] == [JWT.encode()]
    ac = AAssociateAC("A", "B", (), UserInformation((UserIdentityAC(b"ticket-for-alice"),))).encode()
    assert [ac[a:b] for a, b in secrets.secret_spans(ac)] == [b"ticket-for-alice"]
    assert secrets.secret_spans(rq_bytes(UserIdentityRQ(1, b"bob"))) == []  # nothing secret in it
    assert secrets.secret_spans(b"\x04\x00\x00\x00\x00\x06" + data[:6]) == []  # a P-DATA-TF holds none
    masked = secrets.mask_bytes(data)
    assert len(masked) == len(data) and PASSCODE.encode() not in masked and b"*" * 16 in masked


@pytest.mark.parametrize("damage", ["cut", "user-info-overruns", "sub-item-misaligned", "short-sub-item"])
def test_spans_in_malformed_and_incomplete_pdus(damage):
    data = bytearray(rq_bytes(identity()))
    ui = data.index(b"\x50\x00", 74)
    if damage == "cut":  # an incomplete PDU still arriving: half the passcode is there
        data = data[: len(data) - 8]
    elif damage == "user-info-overruns":
        data[ui + 2 : ui + 4] = b"\xff\xff"
    elif damage == "sub-item-misaligned":  # the Maximum Length sub-item claims 7 bytes, not 4
        data[ui + 6 : ui + 8] = b"\x00\x07"
    else:  # the 58H sub-item's own length stops in the middle of the passcode
        at = data.index(b"\x58\x00", ui)
        data[at + 2 : at + 4] = (int.from_bytes(data[at + 2 : at + 4], "big") - 8).to_bytes(2, "big")
    data = bytes(data)
    dump, _ = secrets.hexdump(data)
    masked = secrets.mask_bytes(data)
    assert not leaked(dump) and not leaked(masked.decode("latin-1")) and len(masked) == len(data)
    assert dump.count("**") >= (8 if damage == "cut" else 16)
    assert leaked(secrets.hexdump(data, show_secrets=True)[0])  # asked: shown


def test_hexdump_keeps_offsets_and_other_bytes():
    data = rq_bytes(identity())
    masked, more = secrets.hexdump(data, limit=len(data))
    plain, _ = secrets.hexdump(data, show_secrets=True)
    assert more == 0 and len(masked.splitlines()) == len(plain.splitlines())
    for a, b in zip(masked.splitlines(), plain.splitlines()):
        assert a[:4] == b[:4] and len(a) == len(b)
    assert "alice" in masked  # the user name is not a secret


# ---------------------------------------------------------------- dissect / decode


def test_decode_tree_masks_raw_remainders_and_its_hexdump_fallback(monkeypatch):
    from dicomconf.wire import dissect, layers

    data = bytearray(rq_bytes(identity()))
    ui = data.index(b"\x50\x00", 74)
    data[ui + 6 : ui + 8] = b"\x00\x07"  # misaligned sub-items: scapy keeps part of the item raw
    tree = dissect.tree(bytes(data))
    assert not leaked(tree), tree
    assert leaked(dissect.tree(bytes(data), show_secrets=True))

    def broken(pdu):
        raise ValueError("cannot")

    monkeypatch.setattr(layers, "dissect", broken)
    fallback = dissect.tree(rq_bytes(identity()))
    assert "scapy cannot dissect" in fallback and "** **" in fallback and not leaked(fallback)


def _pcap(path: Path, *pdus: bytes) -> Path:
    from dicomconf.wire.capture import Conversation, write_pcap

    conv = Conversation(("127.0.0.1", 40000), ("127.0.0.1", 11112))
    for i, pdu in enumerate(pdus):
        conv.client_sent(pdu, ts=1.0 + i / 10)
    write_pcap(path, [conv])
    return path


def test_dicomconf_decode_of_a_malformed_rq(tmp_path, capsys):
    from dicomconf.cli import main

    data = bytearray(rq_bytes(identity()))
    ui = data.index(b"\x50\x00", 74)
    data[ui + 2 : ui + 4] = b"\x00\x10"  # a user information item that ends before its sub-items do
    pcap = _pcap(tmp_path / "bad.pcap", bytes(data))
    for args in (["-v"], ["--json"], []):
        main(["decode", str(pcap), "--port", "11112", *args])
        out = capsys.readouterr()
        assert not leaked(out.out + out.err), (args, out.out)
    main(["decode", str(pcap), "--port", "11112", "-v", "--show-secrets"])
    assert leaked(capsys.readouterr().out)
    assert PASSCODE.encode() in pcap.read_bytes()


# ---------------------------------------------------------------- reports: the ladder


def test_ladder_fields_and_hex_show_no_credential():
    from dicomconf.report.ladder import pdu_row

    row = pdu_row(rq_bytes(identity()))
    assert "secondary_field: *** (16 bytes)" in row.fields and "** ** **" in row.hex
    assert not leaked(row.fields + row.hex + row.label + row.title)
    token = pdu_row(rq_bytes(UserIdentityRQ(4, b"<saml>assertion-for-alice</saml>", b"", 0)))
    assert "assertion-for-alice" not in token.fields + token.hex and "primary_field: *** (32 bytes)" in token.fields
    accepted = (PresentationContextAC(1, C.PC_ACCEPTANCE, C.IMPLICIT_VR_LITTLE_ENDIAN),)
    ac = pdu_row(AAssociateAC("A", "B", accepted, UserInformation((UserIdentityAC(b"ticket-for-alice"),))).encode())
    assert "ticket-for-alice" not in ac.fields + ac.hex and "server_response: *** (16 bytes)" in ac.fields


# ---------------------------------------------------------------- scenario messages


def test_match_failures_quote_credentials_by_size():
    from dicomconf.scenario.match import get_path, match, pdu_view
    from dicomconf.ul.pdu import decode_pdu

    view = pdu_view(decode_pdu(rq_bytes(identity())))
    problems = match({"user_identity": {"secondary_field": "77726f6e67"}}, view)
    assert problems == ["user_identity.secondary_field: expected <10 characters hidden>, got <32 characters hidden>"]
    for want in ({"not": PASSCODE.encode().hex()}, [PASSCODE, "x"], {"any": [PASSCODE]}):
        text = "; ".join(match({"user_identity": {"secondary_field": want}}, view))
        assert text and not leaked(text), text
    whole = "; ".join(match({"user_identity": "something"}, view))  # the whole sub-item quoted
    assert "'secondary_field': '***'" in whole and "616c696365" in whole and not leaked(whole)
    listed = "; ".join(match({"user_information": {"sub_items": [{"secondary_field": "00"}]}}, view))
    assert listed and not leaked(listed), listed
    saved = get_path(view, "user_identity.secondary_field")
    assert saved == PASSCODE.encode().hex() and repr(saved) == "<32 characters hidden>"
    assert repr(get_path(view, "user_identity.primary_field")) == "'616c696365'"


def test_expression_errors_do_not_quote_passcodes():
    from dicomconf.scenario.expr import ExpressionError, render
    from dicomconf.scenario.profile import Profile

    ns = {"profile": Profile(users={"alice": PASSCODE}), "pw": secrets.SecretText(PASSCODE.encode().hex())}
    for template in ("{profile.users.alice + 1}", "{int(profile.users.alice)}", "{profile.users.alice + '-x' + 1}",
                     "{profile.users[profile.users.alice]}", "{upper(profile.users.alice) + 1}", "{pw + 1}",
                     "{int(pw)}"):
        with pytest.raises(ExpressionError) as caught:
            render(template, ns)
        message = str(caught.value)
        assert not leaked(message) and ("***" in message or "hidden>" in message), message
    assert render("{profile.users.alice}", ns) == PASSCODE  # the value itself is unchanged


def test_step_records_mask_users_and_saved_secrets():
    from dicomconf.scenario.engine import brief

    text = brief({"user_identity": {"type": 2, "primary": "alice", "secondary": PASSCODE},
                  "users": {"alice": PASSCODE}, "value": secrets.SecretText(PASSCODE)})
    assert not leaked(text) and "alice" in text


# ---------------------------------------------------------------- end to end: a real run, every output

PROFILE = f"""\
name: identity test SCP
ae_title: DICOMCONF-SCP
calling_ae: DICOMCONF-SCU
sop_classes: [verification]
user_identity: true
users:
  alice: {PASSCODE}
"""

SCU_SCENARIOS = """\
- id: secrets.reply-expectation
  title: the AC's user identity response is expected to be the passcode (it is not)
  clauses: [PS3.7 D.3.3.7]
  severity: must
  area: negotiation
  steps:
    - associate:
        contexts: [verification]
        user_identity: {type: 2, primary: alice, secondary: "{profile.users.alice}", positive_response: true}
        reply: {pdu: A-ASSOCIATE-AC, user_identity_response: {server_response: "{profile.users.alice}"}}
- id: secrets.short-rq
  title: a short crafted RQ puts the passcode inside the ladder's hex dump
  clauses: [PS3.7 D.3.3.7]
  severity: must
  area: negotiation
  steps:
    - send:
        pdu: A-ASSOCIATE-RQ
        called_ae_title: DICOMCONF-SCP
        calling_ae_title: DICOMCONF-SCU
        presentation_contexts: [{context_id: 1, abstract_syntax: verification}]
        user_information:
          - {item: user-identity, user_identity_type: 2, primary_field: alice,
             secondary_field: "{profile.users.alice}"}
    - expect: {pdu: A-ASSOCIATE-AC, user_identity: {secondary_field: "{profile.users.alice}"}, within: 3s}
- id: secrets.template-error
  title: an expression error on the passcode
  clauses: [PS3.7 D.3.3.7]
  severity: must
  area: negotiation
  steps:
    - associate:
        contexts: [verification]
        user_identity: {type: 2, primary: alice, secondary: "{profile.users.alice + 1}"}
"""

SCP_SCENARIOS = """\
- id: secrets.fake-scp-request
  title: the fake SCP expects another passcode than the SCU sends
  role: scp
  clauses: [PS3.7 D.3.3.7]
  severity: must
  area: negotiation
  steps:
    - associate: {request: {user_identity: {user_identity_type: 2, secondary_field: "77726f6e67"}}}
- id: secrets.fake-scp-saved
  title: a saved passcode misused in a template
  role: scp
  clauses: [PS3.7 D.3.3.7]
  severity: must
  area: negotiation
  steps:
    - associate: {save: {pw: user_identity.secondary_field}}
    - sleep: "{pw + 1}"
"""

SCU_PROGRAM = f"""\
import sys
from dicomconf.scu.client import SCU
from dicomconf.scu.connection import Connection

host, port, called, calling = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
try:
    scu = SCU(Connection.open(host, port), called_ae=called, calling_ae=calling)
    scu.associate(["verification"], user_identity={{"type": 2, "primary": "alice", "secondary": "{PASSCODE}"}})
    scu.echo()
    scu.release()
except Exception as exc:
    print("the SCU stopped:", type(exc).__name__)
"""


@pytest.mark.network
def test_a_real_run_writes_no_passcode_anywhere(tmp_path):
    """Both roles, a failing expectation on the identity, an expression error and a saved passcode: the
    terminal (stdout, stderr, live DEBUG logging), report.json, JUnit XML, HTML and the markdown summary
    never hold the passcode; each pcap does, and ``dicomconf decode --show-secrets`` shows it."""
    write(tmp_path / "profile.yaml", PROFILE)
    write(tmp_path / "scenarios" / "scp" / "identity.yaml", SCU_SCENARIOS)
    write(tmp_path / "scenarios" / "scu" / "identity.yaml", SCP_SCENARIOS)
    program = write(tmp_path / "scu_with_identity.py", SCU_PROGRAM)
    command = f"{sys.executable} {program} {{host}} {{port}} {{called_ae}} {{calling_ae}}"
    common = ("-o", "log_cli=true", "--log-cli-level=DEBUG", "-v", "-n", "0")
    terminal, files, pcaps, outcome = "", {}, [], {}
    # the embedded reference SCP plays the target of the SCP-testing scenarios; a program the SCU
    # under test of the SCU-testing ones (each run skips the other half)
    for half, options in (("scp", ("--profile", str(tmp_path / "profile.yaml"))),
                          ("scu", ("--scu-command", command, "--scu-wait", "20"))):
        reports = tmp_path / f"reports-{half}"
        proc = run_pytest(tmp_path, f"scenarios/{half}", *options, "--report-dir", str(reports), "--junitxml",
                          str(reports / "junit.xml"), "--dicomconf-summary-md", str(reports / "summary.md"),
                          *common, timeout=240)
        terminal += proc.stdout + proc.stderr
        document = json.loads((reports / "report.json").read_text())
        outcome.update({s["id"]: s["outcome"] for s in document["scenarios"]})
        files.update({f"{half}/report.json": json.dumps(document),
                      f"{half}/junit.xml": (reports / "junit.xml").read_text(),
                      f"{half}/report.html": (reports / "report.html").read_text(),
                      f"{half}/summary.md": (reports / "summary.md").read_text()})
        pcaps += sorted((reports / "pcap").glob("*.pcap"))
    assert outcome == {"secrets.reply-expectation": "failed", "secrets.short-rq": "failed",
                       "secrets.template-error": "error", "secrets.fake-scp-request": "failed",
                       "secrets.fake-scp-saved": "error"}, terminal[-3000:]
    # the failures are there, told without the passcode
    assert "server_response: expected <16 characters hidden>, got ''" in terminal
    assert "user_identity.secondary_field: expected <10 characters hidden>, got <32 characters hidden>" in terminal
    assert "cannot apply Add to '***' and 1" in terminal
    assert "cannot apply Add to <32 characters hidden> and 1" in terminal
    html = files["scp/report.html"]
    assert "secondary_field: *** (16 bytes)" in html and re.search(r"(\*\* ){8}", html)
    assert "secondary_field: *** (16 bytes)" in files["scu/report.html"]
    for name, text in {"terminal": terminal, **files}.items():
        assert not leaked(text), (name, leaked(text))
    assert len(pcaps) == 4 and all(PASSCODE.encode() in p.read_bytes() for p in pcaps)  # the wire keeps it
    short = tmp_path / "reports-scp" / "pcap" / "secrets.short-rq.pcap"
    plain = subprocess.run([sys.executable, "-m", "dicomconf.cli", "decode", str(short), "-v"],
                           check=False, capture_output=True, text=True, timeout=60)
    shown = subprocess.run([sys.executable, "-m", "dicomconf.cli", "decode", str(short), "-v", "--show-secrets"],
                           check=False, capture_output=True, text=True, timeout=60)
    assert plain.returncode == shown.returncode == 0, plain.stderr
    assert "b'***'" in plain.stdout and not leaked(plain.stdout + plain.stderr)
    assert PASSCODE in shown.stdout


FAKE_SCP_TEST = """\
import os

from dicomconf.scu.client import SCU
from dicomconf.scu.connection import Connection
from dicomconf.ul.items import UserIdentityRQ


def test_identity(dicomconf_fake_scp):
    fake = dicomconf_fake_scp("- associate: {}\\n- release: {}\\n", accept_within=5)
    scu = SCU(Connection.open("127.0.0.1", fake.port), called_ae="DICOMCONF")
    secret = os.environ["TEAM_PASSCODE"]
    scu.associate(["verification"], user_identity={"type": 2, "primary": "alice", "secondary": secret})
    scu.release()
    result = fake.wait(10)
    assert result.associations[0].user_information.user_identity == UserIdentityRQ(2, b"alice", b"other", 0)


def test_whole_result(dicomconf_fake_scp):
    fake = dicomconf_fake_scp("- associate: {}\\n- serve: {request: {command_name: C-STORE-RQ}}\\n",
                              accept_within=5)
    scu = SCU(Connection.open("127.0.0.1", fake.port), called_ae="DICOMCONF")
    secret = os.environ["TEAM_PASSCODE"]
    scu.associate(["verification"], user_identity={"type": 2, "primary": "alice", "secondary": secret})
    try:
        scu.echo()  # the script wants a C-STORE-RQ: it fails and closes
        scu.release()
    except Exception:
        pass
    result = fake.wait(10)
    assert result.passed, result
"""

@pytest.mark.network
def test_pytest_assertion_messages_about_a_fake_scp_run(tmp_path, monkeypatch):
    """A team's test asserting on what its SCU sent: pytest's assertion rewriting prints the reprs of the
    results and sub-items, masked; the field drill-down is masked by the plugin's compare hook.  (The team's
    test reads its passcode from the environment: pytest prints the failing test's source lines.)"""
    monkeypatch.setenv("TEAM_PASSCODE", PASSCODE)
    write(tmp_path / "test_team.py", FAKE_SCP_TEST)
    proc = run_pytest(tmp_path, "test_team.py", "-vv", "-n", "0", timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "2 failed" in out, out[-3000:]
    assert "secondary_field=<16 bytes hidden>" in out and "FakeSCPResult(" in out
    assert "secondary_field: <16 bytes hidden> != <5 bytes hidden>" in out
    assert not leaked(out), leaked(out)


# ---------------------------------------------------------------- TLS keys and key logs


def _key_pair(tmp_path: Path) -> tuple[str, str]:
    from dicomconf.scenario.certs import TLSUnavailable, self_signed

    try:
        return self_signed(tmp_path)
    except TLSUnavailable as exc:
        pytest.skip(str(exc))


def test_tls_key_errors_name_the_file_never_its_contents(tmp_path):
    from dicomconf.scp.tls import TLSConfig, TLSSetupError, server_context
    from dicomconf.scu.tls import client_context

    cert, key = _key_pair(tmp_path)
    assert os.stat(key).st_mode & 0o077 == 0  # the throwaway key is the owner's alone
    (tmp_path / "other").mkdir()
    other_cert, other_key = _key_pair(tmp_path / "other")
    pem = Path(key).read_text()
    body = "".join(pem.splitlines()[1:-1])
    with pytest.raises(TLSSetupError) as server_error:
        server_context(TLSConfig(cert=other_cert, key=key, port=0))  # a key that is not the certificate's
    with pytest.raises(ValueError) as client_error:
        client_context(cert=cert, key=other_key)
    for message in (str(server_error.value), str(client_error.value)):
        assert "key" in message and ("key.pem" in message)
        assert "PRIVATE KEY" not in message and body[:24] not in message


def test_a_tls_key_log_is_written_only_when_asked(tmp_path, monkeypatch):
    """The client contexts follow the standard library's SSLKEYLOGFILE convention; nothing else writes one."""
    from dicomconf.scp.tls import TLSConfig, server_context
    from dicomconf.scu.tls import client_context

    cert, key = _key_pair(tmp_path)
    monkeypatch.delenv("SSLKEYLOGFILE", raising=False)
    assert client_context(ca=cert).keylog_filename is None
    log = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(log))
    assert client_context(ca=cert).keylog_filename == str(log)
    assert server_context(TLSConfig(cert=cert, key=key, port=0)).keylog_filename is None


# ---------------------------------------------------------------- command lines, profiles, throwaway keys


def test_a_command_line_is_shown_without_its_password():
    from dicomconf.scenario.scu_sources import CommandSCU
    from dicomconf.wire.secrets import mask_argv

    argv = ["storescu", "+usr", "alice", "+pwd", PASSCODE, f"--password={PASSCODE}", "-pw", PASSCODE,
            "--user-token", PASSCODE, "-aec", "PACS", "{host}", "{port}"]
    masked = mask_argv(argv)
    assert PASSCODE not in " ".join(masked)
    assert masked[:3] == ["storescu", "+usr", "alice"] and masked[-4:] == ["-aec", "PACS", "{host}", "{port}"]
    shown = CommandSCU(f"{sys.executable} -c pass --password {PASSCODE} {{host}}").describe()
    assert PASSCODE not in shown and ("--password '***'" in shown or "--password ***" in shown), shown


def test_a_profile_never_prints_or_quotes_a_passcode(tmp_path):
    from dicomconf.scenario.loader import SourceError, SourceErrors
    from dicomconf.scenario.profile import Profile, load_profile

    assert PASSCODE not in repr(Profile(users={"alice": PASSCODE})) and "alice" in repr(Profile(users={"alice": PASSCODE}))
    path = tmp_path / "profile.yaml"
    path.write_text(f"ae_title: PACS\nuser_identity: true\nusers:\n  alice: [{PASSCODE}, {PASSCODE}]\n")
    with pytest.raises((SourceError, SourceErrors)) as info:
        load_profile(path)
    assert "users.alice" in str(info.value) and PASSCODE not in str(info.value)


def test_a_throwaway_key_is_never_readable_by_others(tmp_path, monkeypatch):
    """The key file is created 0600 (no window in which it has the umask's mode)."""
    import stat

    monkeypatch.setattr(os, "umask", os.umask)  # restored by monkeypatch
    old = os.umask(0)  # the most open umask: a write-then-chmod would leave 0666 for a moment
    try:
        cert, key = _key_pair(tmp_path)
        again = _key_pair(tmp_path)  # a second call replaces the files
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and again[1] == key
