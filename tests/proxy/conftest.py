"""Fixtures of the proxy's tests (helpers in proxy_testkit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scp"))

from proxy_testkit import start  # noqa: E402


@pytest.fixture
def reference_scp():
    scp = start()
    try:
        yield scp
    finally:
        scp.stop()
