"""One writer at a time across processes for a shared index file, without SQLite's sleeping retries.

Theory of operation
-------------------
Several processes may write one SQLite index file (the workers of
``dicomconf scp --workers``).  SQLite lets one write transaction run at a
time and makes the others retry: its busy handler sleeps 1, 2, 5, 10 ... ms
between attempts, and a worker sleeping there holds up every association on
its event loop.  :class:`ProcessWriteLock` takes an exclusive ``flock`` on a
lock file beside the index before ``BEGIN IMMEDIATE`` and drops it after
``COMMIT`` or ``ROLLBACK``: a waiting process is woken the moment the other
is done, and the kernel drops the lock of a process that dies, so a crashed
worker never wedges the others.  SQLite's busy timeout stays as the guard
for writers outside this lock (another program opening the file).
"""

from __future__ import annotations

import os


class ProcessWriteLock:
    """``with lock:`` holds an exclusive ``flock`` on ``path`` (created 0o600 if missing)."""

    def __init__(self, path: str) -> None:
        import fcntl  # POSIX only: --workers is too

        self._fcntl = fcntl
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)

    def __enter__(self) -> ProcessWriteLock:
        self._fcntl.flock(self.fd, self._fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        self._fcntl.flock(self.fd, self._fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


__all__ = ["ProcessWriteLock"]
