"""The optional uvloop event loop and the standalone server's allocator setting."""

from __future__ import annotations

import asyncio
import importlib.util
import platform
import subprocess
import sys

import pytest
from scp_testkit import CT, IVRLE, RELEASE_RQ, RawClient, abort_fields, config, pdu

from dicomconf.scp.config import ConfigError
from dicomconf.scp.runtime import event_loop_factory, run_in_thread
from dicomconf.ul import constants as C
from dicomconf.ul import dimse

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_asyncio_is_the_standard_loop():
    assert event_loop_factory("asyncio") is asyncio.new_event_loop


def test_unknown_loop_is_a_config_error():
    with pytest.raises(ConfigError, match="event loop must be one of"):
        event_loop_factory("trio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now fails
    assert event_loop_factory("auto") is asyncio.new_event_loop
    with pytest.raises(ConfigError, match="not installed"):
        event_loop_factory("uvloop")


def test_cli_refuses_uvloop_when_missing_with_exit_2(tmp_path):
    code = (
        "import sys; sys.modules['uvloop'] = None\n"
        "from dicomconf.cli import main\n"
        "sys.exit(main(['scp', '--port', '0', '--event-loop', 'uvloop']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "uvloop is not installed" in done.stderr


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")
@pytest.mark.network
def test_echo_store_and_bad_input_on_uvloop():
    handle = run_in_thread(config(artim_timeout=1.0, index="none"), event_loop="uvloop")  # raw-byte data sets
    try:
        assert type(handle.loop).__module__.startswith("uvloop")
        with RawClient(handle.port) as client:
            assert client.associate(contexts=((1, C.VERIFICATION_SOP_CLASS, (IVRLE,)), (3, CT, (IVRLE,))))[0] == (
                C.A_ASSOCIATE_AC
            )
            assert client.echo() == 0x0000
            data = bytes(range(256)) * 300
            client.send(b"".join(dimse.fragment(dimse.c_store_rq(2, CT, "1.2.3.9", context_id=3, data=data), 4096)))
            reply = client.recv_pdu()
            assert reply is not None and reply[0] == C.P_DATA_TF
            client.send(RELEASE_RQ)
            assert client.recv_pdu()[0] == C.A_RELEASE_RP
        assert [(i.sop_instance_uid, i.data) for i in handle.stored] == [("1.2.3.9", data)]
        with RawClient(handle.port) as client:  # Sta2 garbage: A-ABORT, then ARTIM closes
            client.send(pdu(0x08, bytes(4)))
            abort_fields(client.recv_pdu())
            assert client.wait_closed(3.0) is not None
    finally:
        handle.stop()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_tune_allocator_applies_on_glibc():
    code = "from dicomconf.scp.runtime import tune_allocator; print(tune_allocator())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
