"""The decoder fuzz corpus as a regression test, without atheris (PS3.8 9.3, Annex E; PS3.7 6.3.1).

Every input of tests/ul/fuzz_corpus/ (seeded from captures of ``dicomconf
run`` by ``benchmarks/fuzz_decoders.py --seed-from``, kept where it adds
coverage) and every crash reproducer saved there (``crash-*``) goes through
the fuzz target, :func:`fuzz_target.run_one`: decoders raise nothing but
RemoteProtocolError, and the modules keep their promises to each other.

The target lives in benchmarks/fuzz_target.py, beside the script that fuzzes
with it, and is imported here by path: it is a tool of the benchmarks, not
product code, and one function serves both, so a reproducer replays here
exactly as the fuzzer ran it.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul import dimse as D
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.wire.capture import Conversation, write_pcap
from dicomconf.wire.craft import build_pdu

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
sys.path.insert(0, str(BENCHMARKS))

import fuzz_decoders  # noqa: E402
import fuzz_target as T  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pydicom.*")

INPUTS = sorted(p for p in CORPUS.iterdir() if p.is_file()) if CORPUS.is_dir() else []


def test_corpus_is_committed_small_and_seeded():
    """A corpus worth replaying, within what the repository should carry (about 300 files, under 1 MB)."""
    assert len(INPUTS) >= 50
    assert len(INPUTS) <= 300 and sum(p.stat().st_size for p in INPUTS) < 1_000_000
    pdu_types = {p.read_bytes()[T.PREFIX : T.PREFIX + 1] for p in INPUTS}
    for pdu_type in (C.A_ASSOCIATE_RQ, C.A_ASSOCIATE_AC, C.P_DATA_TF, C.A_RELEASE_RQ, C.A_ABORT):
        assert bytes((pdu_type,)) in pdu_types, f"no input starting with a PDU of type {pdu_type:#04x}"


@pytest.mark.parametrize("path", INPUTS, ids=[p.name[:12] for p in INPUTS])
def test_corpus_input_raises_nothing(path):
    T.run_one(path.read_bytes())  # any exception fails: run_one swallows only the decoders' protocol errors


# --------------------------------------------------------------------------
# The target itself: it finds what it is meant to find


def test_target_swallows_protocol_errors_only(monkeypatch):
    T.run_one(b"\x00\x00\x00\x00" + b"\x07\x00\x00\x00\x00\x03xyz")  # a bad A-ABORT: RemoteProtocolError inside
    T.run_one(b"")  # shorter than its prefix: read as zeros

    def broken(data):
        raise IndexError("a decoder bug")

    monkeypatch.setattr(T, "decode_pdu", broken)
    with pytest.raises(IndexError):
        T.run_one(T.seed(b"\x07\x00\x00\x00\x00\x04\x00\x00\x02\x06"))


def test_target_checks_the_fast_command_reader_against_the_full_decoder(monkeypatch):
    command = D.encode_command(D.c_echo_rq(7).command)
    T.run_one(T.seed(command))
    monkeypatch.setattr(T, "read_command", lambda raw: {0x0100: 0x0030, 0x0110: 8, 0x0800: 0x0101})
    with pytest.raises(T.InvariantError, match="read_command read 8"):
        T.run_one(T.seed(command))


def test_target_checks_framing_does_not_depend_on_chunking(monkeypatch):
    stream = D.fragment(D.c_echo_rq(1), 0)[0] * 2

    class Lossy(T.PDUReader):
        def feed(self, data):
            return super().feed(data)[:1]  # drops the second PDU of a chunk

    monkeypatch.setattr(T, "PDUReader", Lossy)
    with pytest.raises(T.InvariantError, match="framing depends on chunking"):
        T.run_one(T.seed(stream, cut=len(stream) // 2))  # whole: one PDU out of two; cut between them: both


def test_target_checks_that_receive_data_lets_no_protocol_error_out(monkeypatch):
    def leaky(self, data):
        raise RemoteProtocolError("escaped", "PS3.8 9.3")

    monkeypatch.setattr(T.Association, "receive_data", leaky)
    with pytest.raises(T.InvariantError, match="let a RemoteProtocolError out"):
        T.run_one(T.seed(b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"))


@pytest.mark.parametrize("start", T.STARTS, ids=["-".join(s) for s in T.STARTS])
def test_copied_association_behaves_as_one_set_up(start):
    """The target copies set-up associations for speed; a copy answers every input as a fresh one does."""
    for path in INPUTS[:: max(1, len(INPUTS) // 40)]:
        payload = path.read_bytes()[T.PREFIX :]
        fresh, copied = T._set_up(*start), T._copy(start)
        got = [
            ([type(e).__name__ for e in a.receive_data(payload)], a.state, a.data_to_send(), a.artim_running)
            for a in (fresh, copied)
        ]
        assert got[0] == got[1], path.name


def test_seed_layout():
    data = T.seed(b"PDU", flags=0x15, sub_item=0x52, cut=0x0102)
    assert data == b"\x15\x52\x01\x02PDU" and len(data) == T.PREFIX + 3


# --------------------------------------------------------------------------
# The script's seeding step, and the fuzzer itself for a few seconds when atheris is there


def test_seeds_from_captures(tmp_path):
    """--seed-from: every PDU of a capture, and each direction's stream, becomes an input."""
    conv = Conversation(("127.0.0.1", 50000), ("127.0.0.1", 11112))
    conv.opened(1_700_000_000.0)
    pdus = [build_pdu({"pdu": "A-ASSOCIATE-RQ"}), build_pdu({"pdu": "A-ASSOCIATE-AC"}),
            build_pdu({"pdu": "P-DATA-TF", "pdvs": [{"command": {"CommandField": "C-ECHO-RQ", "MessageID": 1}}]})]
    conv.client_sent(pdus[0], 1_700_000_000.1)
    conv.server_sent(pdus[1], 1_700_000_000.2)
    conv.client_sent(pdus[2], 1_700_000_000.3)
    (tmp_path / "pcap").mkdir()
    write_pcap(tmp_path / "pcap" / "one.pcap", [conv])
    count = fuzz_decoders.extract_seeds(tmp_path / "pcap", tmp_path / "seeds")
    payloads = {p.read_bytes()[T.PREFIX :] for p in (tmp_path / "seeds").iterdir()}
    # Three PDUs, and each direction's stream: the client's two PDUs, the server's one (as a stream: other flags).
    assert count == len(list((tmp_path / "seeds").iterdir())) == 5 and len(payloads) == 4
    assert set(pdus) <= payloads and pdus[0] + pdus[2] in payloads
    for p in (tmp_path / "seeds").iterdir():
        T.run_one(p.read_bytes())


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed (extra 'fuzz')")
def test_fuzz_script_runs_and_reports(tmp_path):
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "fuzz_decoders.py"), "--runs", "2000", "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    execs = int(next(line for line in result.stdout.splitlines() if line.startswith("execs: ")).split()[1])
    assert execs >= 2000
    assert "crashes: 0 execution(s), 0 distinct" in result.stdout
    assert "execs/s: " in result.stdout
