"""A lock shared by every process that plays scenarios against one target.

Theory of operation
-------------------
A verdict must not depend on which other scenarios happened to run at the same
time (``pytest -n 4`` against serial).  Gentle scenarios may overlap; a
disruptive one (``disruptive: true``: it exhausts the association limit, holds
connections, waits for the target's timers or sends malformed bytes) runs
alone against its target.  That is a reader/writer lock: gentle scenarios hold
it *shared*, disruptive ones *exclusive* (and every scenario when the target
takes fewer associations than there are processes: :func:`runs_alone`).

The lock lives in two files named after the target's address, in a directory
that every process of the run can reach (by default a per-user directory
under :func:`tempfile.gettempdir`, so that pytest-xdist workers, and separate
runs against the same target, meet there), and is built on ``flock(2)``,
which the kernel releases when a process dies:

* the *main* file is what a scenario holds while it runs: shared for a gentle
  scenario, exclusive for a disruptive one;
* the *gate* file gives writers preference.  A gentle scenario takes the gate
  exclusively, then the main file shared, and lets the gate go at once; a
  disruptive one takes the gate and keeps it until it is done, then waits on
  the main file for the gentle scenarios already running.  While it waits no
  new gentle scenario gets past the gate, so a stream of overlapping gentle
  scenarios cannot starve it.

Each acquisition opens its own file descriptors, so two threads of one
process exclude each other like two processes do (``flock`` locks belong to
the open file description).  Without ``fcntl`` (Windows) the lock does
nothing: scenarios then overlap only under ``-n``, which serial runs avoid.

The embedded reference SCP needs no lock: each process starts its own.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


def default_directory() -> Path:
    """The per-user directory that holds the lock files."""
    uid = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    return Path(tempfile.gettempdir()) / f"dicomconf-locks-{uid}"


def target_key(address: Any) -> str:
    """``host:port`` of ``address``: an object with ``host`` and ``port``, or a ``(host, port)`` pair."""
    if isinstance(address, tuple):
        host, port = address
    else:
        host, port = address.host, address.port
    return f"{str(host).lower()}:{int(port)}"


def _file_stem(key: str) -> str:
    readable = "".join(c if c.isalnum() or c in ".-" else "_" for c in key)
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


class TargetLock:
    """The reader/writer lock of one target (see the module docstring)."""

    def __init__(self, key: str, directory: str | os.PathLike | None = None) -> None:
        self.key = key
        self.directory = Path(directory) if directory is not None else default_directory()
        stem = _file_stem(key)
        self.gate_path = self.directory / f"{stem}.gate"
        self.main_path = self.directory / f"{stem}.lock"

    def _open(self, path: Path) -> int:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        """Held by a gentle scenario: any number at once, none beside an exclusive holder."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        main = self._open(self.main_path)
        try:
            gate = self._open(self.gate_path)
            try:
                fcntl.flock(gate, fcntl.LOCK_EX)  # queue behind a waiting disruptive scenario
                fcntl.flock(main, fcntl.LOCK_SH)
            finally:
                os.close(gate)  # closing releases the gate
            yield
        finally:
            os.close(main)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held by a disruptive scenario: alone against the target."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        gate = self._open(self.gate_path)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX)  # no new shared holder from here on
            main = self._open(self.main_path)
            try:
                fcntl.flock(main, fcntl.LOCK_EX)  # the shared holders already running finish
                yield
            finally:
                os.close(main)
        finally:
            os.close(gate)


def runs_alone(disruptive: bool, max_associations: int | None, workers: int, *, listener: bool = False) -> bool:
    """Whether a scenario takes the lock exclusively.

    A disruptive scenario always does, and so does one that needs the harness's move
    destination (``listener``, :func:`dicomconf.scenario.move_listener.needs_listener`)
    against a named target: its port is fixed by the profile, so one scenario at a time
    listens there, and what arrives is that scenario's alone.  A gentle scenario holds at most one
    association at a time, so ``workers`` processes hold at most ``workers``
    associations together; when the profile says the target takes fewer
    (``max_associations``), a target that rejects associations beyond its
    limit (PS3.8 9.3.4, transient, local-limit-exceeded) would fail gentle
    scenarios only because others were running, so every scenario runs alone.
    A target that takes one association at a time gains nothing from
    parallel scenarios anyway.
    """
    return disruptive or listener or (max_associations is not None and workers > 1 and max_associations < workers)


def hold(address: Any, exclusive: bool, directory: str | os.PathLike | None = None):
    """The context manager a scenario runs in: nothing for the embedded SCP (``address`` None),
    else the target's lock, exclusive or shared."""
    if address is None:
        return contextlib.nullcontext()
    lock = TargetLock(target_key(address), directory)
    return lock.exclusive() if exclusive else lock.shared()
