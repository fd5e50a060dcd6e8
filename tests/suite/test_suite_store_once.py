"""``store_set`` sends the known set once per run to the embedded reference SCP, and every time to a named target.

Against the embedded target the run hands the runner what that SCP holds
(:func:`dicomconf.scenario.services_steps.holdings`); an instance it holds byte for byte as the
C-STORE would send it is not sent again.  A named target (a PACS) gets every C-STORE of every
scenario.  The C-STOREs are counted in each scenario's pcap.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dicomconf.report import ladder
from dicomconf.scenario import qr_data
from dicomconf.scenario.model import load_file
from dicomconf.scenario.profile import reference_profile
from dicomconf.scenario.requestor import Runner
from dicomconf.scenario.services_steps import holdings
from dicomconf.scenario.target_setup import EmbeddedTarget, TargetOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scenario"))

from scenario_testkit import outcomes, run_pytest, write  # noqa: E402

SET = len(qr_data.instances())
SCENARIO = """\
id: {id}
title: the known set stored, then found
clauses: [PS3.4 C.4.1]
severity: must
area: services
steps:
  - associate: {{contexts: [{contexts}, study_find]}}
  - store_set:
  - find:
      level: STUDY
      keys: {{PatientID: "DCONF-QR-*", StudyInstanceUID: null}}
      matches: 4
  - release:
"""
EXPLICIT_ONLY = ('{abstract_syntax: ct, transfer_syntaxes: ["1.2.840.10008.1.2.1"]}, '
                 '{abstract_syntax: mr, transfer_syntaxes: ["1.2.840.10008.1.2.1"]}')


def _stores(pcap: Path) -> int:
    """C-STORE-RQs in a scenario's capture."""
    lad = ladder.read_ladder(pcap, "scu", head=10_000, tail=0)
    assert lad.error is None, lad.error
    return sum(r.label.count("C-STORE-RQ") for r in lad.rows if r.kind == "pdu")


def _suite(tmp_path: Path) -> Path:
    for name in ("a", "b"):
        write(tmp_path / "scenarios" / f"{name}.yaml", SCENARIO.format(id=f"services.store-once-{name}", contexts="ct, mr"))
    return tmp_path / "scenarios"


def test_the_embedded_target_gets_the_known_set_once_per_run(tmp_path):
    result = run_pytest(tmp_path, str(_suite(tmp_path)), "-p", "no:xdist", "--report-dir", str(tmp_path / "r"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert outcomes(tmp_path / "r") == {"services.store-once-a": "passed", "services.store-once-b": "passed"}
    pcaps = tmp_path / "r" / "pcap"
    assert _stores(pcaps / "services.store-once-a.pcap") == SET
    assert _stores(pcaps / "services.store-once-b.pcap") == 0  # held already: the find still finds the set


def test_a_named_target_gets_every_store_of_every_scenario(tmp_path):
    pacs = EmbeddedTarget()  # a reference SCP of its own, named with --target as a PACS would be
    target, profile = pacs.start(TargetOptions(), reference_profile())
    try:
        result = run_pytest(tmp_path, str(_suite(tmp_path)), "-p", "no:xdist", "--target",
                            f"127.0.0.1:{target.port}", "--called-ae", profile.ae_title,
                            "--report-dir", str(tmp_path / "r"))
    finally:
        pacs.stop()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    pcaps = tmp_path / "r" / "pcap"
    assert _stores(pcaps / "services.store-once-a.pcap") == SET
    assert _stores(pcaps / "services.store-once-b.pcap") == SET


def _scenario(tmp_path: Path, sid: str, contexts: str = "ct, mr"):
    path = write(tmp_path / f"{sid}.yaml", SCENARIO.format(id=sid, contexts=contexts))
    (entry,) = load_file(path)
    assert entry.error is None, entry.error
    return entry.scenario


def _play(emb, target, profile, scenario, pcap: Path, held=True) -> int:
    runner = Runner(scenario, profile, target)
    runner.listener = emb.listener
    runner.held = holdings(emb.scp.storage) if held else None
    runner.run(pcap, time_limit=60)
    return _stores(pcap)


def test_what_the_target_lacks_or_holds_otherwise_is_stored_again(tmp_path):
    emb = EmbeddedTarget()
    target, profile = emb.start(TargetOptions(), reference_profile())
    try:
        play = lambda name, **kw: _play(emb, target, profile, _scenario(tmp_path, name, **kw),  # noqa: E731
                                        tmp_path / f"{name}.pcap")
        assert play("first") == SET
        assert play("again") == 0
        lost = qr_data.instances()[3].uid
        assert emb.scp.storage.remove(lost) == 1
        assert play("after-a-loss") == 1  # only the instance the SCP no longer holds
        held = holdings(emb.scp.storage)(lost)
        assert held is not None and held[1] == "1.2.840.10008.1.2"  # as the SCP accepted it: implicit VR
        assert play("explicit", contexts=EXPLICIT_ONLY) == SET  # held, but not as this C-STORE would send it
        assert holdings(emb.scp.storage)(lost)[1] == "1.2.840.10008.1.2.1"
        assert play("explicit-again", contexts=EXPLICIT_ONLY) == 0
        without = Runner(_scenario(tmp_path, "no-holdings"), profile, target)
        without.listener = emb.listener
        without.run(tmp_path / "no-holdings.pcap", time_limit=60)  # held not set: every store is sent
        assert _stores(tmp_path / "no-holdings.pcap") == SET
    finally:
        emb.stop()


def test_holdings_is_only_for_a_memory_storage():
    class Discard:
        kind = "discard"

    assert holdings(Discard()) is None
    assert holdings(object()) is None
