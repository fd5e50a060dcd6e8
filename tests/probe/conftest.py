"""Targets for ``dicomconf probe``'s tests, all on 127.0.0.1 and free ports; each is stopped by the test.

- ``reference``: start the reference SCP in this process from an :class:`SCPConfig` (port 0).
- ``third_party``: start DCMTK's or pynetdicom's ``storescp`` the way ``scripts/targets/targets.py``
  does, stopped by its process id (DCMTK tests skip when it is not installed).
- ``probe``: run ``dicomconf probe`` in this process, ``-o`` a file; returns exit code, text, stderr.
- ``certs``: self-signed certificates for a TLS listener and a client.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGETS_SCRIPT = REPO / "scripts" / "targets" / "targets.py"
STORESCP = "/usr/bin/storescp"


def targets_module():
    """``scripts/targets/targets.py`` as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("dicomconf_targets_script", TARGETS_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def need_dcmtk() -> None:
    if not os.access(STORESCP, os.X_OK):
        pytest.skip("DCMTK's /usr/bin/storescp is not installed (Debian package dcmtk)")


@dataclass
class Probed:
    code: int
    text: str
    stderr: str
    path: Path


@pytest.fixture
def reference():
    """``reference(config)`` starts a reference SCP thread; all are stopped at teardown."""
    from dicomconf.scp.runtime import run_in_thread

    handles = []

    def start(config):
        handle = run_in_thread(config)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def targets():
    """``scripts/targets/targets.py`` loaded as a module."""
    return targets_module()


@pytest.fixture
def third_party():
    """``third_party(kind)`` -> (pid, port); every target started is stopped by its pid."""
    targets = targets_module()
    started: list[int] = []

    def start(kind: str) -> tuple[int, int]:
        if kind == "dcmtk":
            need_dcmtk()
        pid, port = targets.start(kind)
        started.append(pid)
        return pid, port

    yield start
    for pid in started:
        if (targets.STATE_DIR / f"{pid}.json").exists():  # not already stopped by the test
            targets.stop(pid)


@pytest.fixture
def probe(tmp_path, capsys):
    """Run ``dicomconf probe ARGS -o FILE`` in this process; returns a :class:`Probed`."""
    from dicomconf.cli import main

    count = iter(range(1, 1000))

    def run(*args: str) -> Probed:
        path = tmp_path / f"probed-{next(count)}.yaml"
        capsys.readouterr()
        code = main(["probe", *args, "-o", str(path)])
        err = capsys.readouterr().err
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        return Probed(code, text, err, path)

    return run


@pytest.fixture
def certs(tmp_path):
    """(server cert, server key, client cert, client key): self-signed, for localhost / 127.0.0.1."""
    from dicomconf.scenario.certs import self_signed

    server, client = tmp_path / "server", tmp_path / "client"
    server.mkdir()
    client.mkdir()
    return (*self_signed(server), *self_signed(client))
