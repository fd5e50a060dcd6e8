"""Fixtures for the reference SCP's tests."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import scp_testkit  # noqa: E402


@pytest.fixture
def scp_factory():
    """Start reference SCPs on free ports; every one is stopped at teardown."""
    handles = []

    def start(**overrides):
        handle = scp_testkit.start(**overrides)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        handle.stop()


@pytest.fixture
def scp(scp_factory):
    return scp_factory()


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    try:
        return scp_testkit.make_certificates(str(tmp_path_factory.mktemp("certs")))
    except RuntimeError as exc:  # neither the cryptography package nor the openssl command
        pytest.skip(str(exc))
