"""Shared fixtures of the scenario tests: the embedded reference SCP (qr_play beside this file)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import qr_play  # noqa: E402


@pytest.fixture
def embedded():
    """The embedded reference SCP, as the plugin starts it (with the harness's move listener):
    ``(EmbeddedTarget, target, profile)``; stopped at teardown."""
    started = qr_play.start()
    yield started
    started[0].stop()
