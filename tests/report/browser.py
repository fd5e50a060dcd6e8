"""Headless chromium for the report tests and the benchmark: the page as a browser builds it.

:func:`dump_dom` runs ``chromium --headless --dump-dom`` on a file URL and returns the DOM after
the page's script ran; :func:`screenshot` writes a PNG.  Each run has a fresh profile directory,
a time limit, and is ended by its own process id (and its session's, for chromium's helpers) if
it does not finish.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium")
SKIP_REASON = "chromium is not installed (Debian package chromium; .ci/run installs it)"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio")


def _run(args: list[str], profile: Path | None, timeout: float) -> str:
    own = profile is None
    profile = Path(tempfile.mkdtemp(prefix="dicomconf-chromium-")) if own else profile
    cmd = [CHROMIUM or "chromium", *FLAGS, f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session this call started: chromium and its helpers
        proc.communicate()
        raise
    finally:
        if own:
            shutil.rmtree(profile, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"chromium exited with {proc.returncode}: {' '.join(cmd)}")
    return out


def dump_dom(page: Path, fragment: str = "", profile: Path | None = None, timeout: float = 90) -> str:
    """The DOM of ``page`` (``#fragment`` appended) once loaded and its script run."""
    url = Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    return _run(["--dump-dom", url], profile, timeout)


def screenshot(page: Path, png: Path, size: str = "1280,1600", profile: Path | None = None,
               timeout: float = 90) -> Path:
    """A PNG of the top of ``page`` at window size ``size``."""
    _run([f"--screenshot={png}", f"--window-size={size}", "--hide-scrollbars", Path(page).resolve().as_uri()],
         profile, timeout)
    return Path(png)
