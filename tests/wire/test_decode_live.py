"""``dicomconf decode --live IFACE``: a real association on loopback decoded as it happens (root),
and one-line errors for what cannot start."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from dicomconf.cli import main

root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                          reason="sniffing an interface needs root (a raw socket)")


def test_a_bound_is_required(capsys):
    assert main(["decode", "--live", "lo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--count N or --seconds S" in err


def test_file_and_live_do_not_mix(capsys, tmp_path):
    assert main(["decode", str(tmp_path / "x.pcap"), "--live", "lo", "--count", "3"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["decode", str(tmp_path / "x.pcap"), "--count", "3"]) == 2
    assert "go with --live" in capsys.readouterr().err
    assert main(["decode", str(tmp_path / "x.pcap"), "--filter", "tcp"]) == 2
    assert "go with --live" in capsys.readouterr().err
    assert main(["decode"]) == 2
    assert "give a capture file, or --live IFACE" in capsys.readouterr().err


def test_an_unknown_interface_is_one_line(capsys):
    assert main(["decode", "--live", "nosuchif9", "--seconds", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no network interface named 'nosuchif9'" in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="run as root: the root check passes")
def test_not_root_is_one_line(capsys):
    assert main(["decode", "--live", "lo", "--seconds", "1"]) == 1
    assert "needs root" in capsys.readouterr().err


@root
def test_live_decode_of_a_real_association_on_loopback():
    from pynetdicom import AE

    scp = subprocess.Popen([sys.executable, "-m", "dicomconf.cli", "scp", "--port", "0", "--ae", "LIVESCP"],
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    decode = None
    try:
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", scp.stderr.readline())
        assert match
        port = int(match.group(1))
        # the filter keeps other loopback traffic (parallel tests) out of the sniffer
        decode = subprocess.Popen([sys.executable, "-m", "dicomconf.cli", "decode", "--live", "lo", "--seconds", "8",
                                   "--filter", f"tcp port {port}", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert "sniffing on lo" in decode.stderr.readline()
        ae = AE(ae_title="LIVESCU")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="LIVESCP")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()
        out, err = decode.communicate(timeout=60)
    finally:
        for proc in (decode, scp):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
    assert decode.returncode == 0, err
    import json

    records = [json.loads(line) for line in out.splitlines()]
    assert {r["record"] for r in records} == {"pdu", "association"}  # nothing from other ports
    ours = [r for r in records if r["record"] == "pdu"]
    assert [r["pdu"] for r in ours] == ["A-ASSOCIATE-RQ", "A-ASSOCIATE-AC", "P-DATA-TF", "P-DATA-TF",
                                        "A-RELEASE-RQ", "A-RELEASE-RP"]
    assoc_rec = next(r for r in records if r["record"] == "association" and r["acceptor"].endswith(f":{port}"))
    assert (assoc_rec["calling_ae_title"], assoc_rec["called_ae_title"]) == ("LIVESCU", "LIVESCP")
    assert assoc_rec["operations"][0]["command"] == "C-ECHO" and assoc_rec["operations"][0]["status"] == 0
    assert assoc_rec["end"]["how"] == "release"


@root
def test_a_filter_that_does_not_compile_is_one_line(capsys):
    assert main(["decode", "--live", "lo", "--seconds", "1", "--filter", "tcp port nonsense("]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not compile" in err
