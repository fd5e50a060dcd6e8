"""``dicomconf scp --workers N``: N server processes on one port, started and stopped by a parent.

Theory of operation
-------------------
One Python process runs one event loop, so one reference SCP uses one core
at most.  With ``--workers N`` the ``dicomconf scp`` process becomes a
parent that serves nothing itself:

1. it reconciles the storage directory with its index and indexes the
   ``--load`` directories once (:func:`~dicomconf.scp.indexing.make_storage`),
   then closes them;
2. it reserves the port (port 0 picks a free one) with a socket bound with
   SO_REUSEPORT, forks N workers and closes that socket once every worker
   listens.  Each worker is a :class:`WorkerSCP` listening on its own socket
   bound to the same address with SO_REUSEPORT: the kernel spreads incoming
   connections over the workers' accept queues (PS3.8 9.1.2: one acceptor
   address, however many processes behind it);
3. it forwards SIGTERM and SIGINT to every worker by its pid and waits for
   them; each worker stops as ``dicomconf scp`` does (stop accepting, let
   in-flight stores finish and answer, abort the rest).  A worker asks the
   kernel for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), so even a
   parent killed with SIGKILL leaves no orphan.

What the workers share:

* storage: directory storage (or discard).  Each worker writes its
  temporary files under names that carry its pid, and renames them onto
  ``<SOP Instance UID>.dcm`` atomically; the SQLite index file is opened by
  every worker (WAL, a busy timeout: :mod:`dicomconf.services.index`), and a
  store's rows and rename happen inside one write transaction, so the files
  and the rows agree whichever worker stored them.  The workers take turns
  writing through ``flock`` on ``index.sqlite.lock``
  (:mod:`dicomconf.services.index_writers`) rather than SQLite's sleeping
  retries.  Memory storage (and an
  in-memory index) would be one per process: refused with ``--workers``.
* the association limit (``max_associations``, PS3.8 9.3.4, A-ASSOCIATE-RJ
  "local limit exceeded"): coordinated through a counter per worker in
  shared memory, under one lock.  A worker's negotiation reads the total and,
  when there is room, takes the slot at once, in the same step; the slot is
  kept if the association is accepted and given back otherwise before the
  event loop's next callback.  So the limit holds across workers however
  associations race.  A worker that dies has its count cleared by the parent.
* ``max_connections`` (file descriptors, a per-process protection) is
  divided: each worker takes ``max_connections // N`` (at least 1).
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from dicomconf.scp.config import ConfigError, SCPConfig
from dicomconf.scp.server import ReferenceSCP

log = logging.getLogger("dicomconf.scp")

_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies (Linux)
STOP_GRACE = 30.0  # s the parent waits for stopping workers before SIGKILL
START_TIMEOUT = 60.0  # s the parent waits for every worker to listen


class SharedCount:
    """Associations established now in every worker: one slot per worker in shared memory, one lock."""

    def __init__(self, workers: int) -> None:
        self.lock = multiprocessing.Lock()
        self.counts = multiprocessing.RawArray("i", workers)

    def total(self) -> int:
        return sum(self.counts)


class WorkerSCP(ReferenceSCP):
    """One worker: the reference SCP on a SO_REUSEPORT socket, its ``active`` count shared (module docstring)."""

    startup = False
    reuse_port = True

    def __init__(self, config: SCPConfig, shared: SharedCount, slot: int) -> None:
        self._shared = shared
        self._slot = slot
        self._seen = 0  # the total the last read returned
        self._held = 0  # a slot taken by a read and not yet confirmed by an increment
        super().__init__(config)
        index = self.storage.index
        if index is not None and index.location != ":memory:":
            index.share_writes(index.location + ".lock")  # one writer at a time, woken at once

    @property
    def active(self) -> int:  # type: ignore[override]
        """Associations established now in every worker; with a limit and room, a read takes a slot."""
        shared, limit = self._shared, self.config.max_associations
        with shared.lock:
            total = shared.total() - self._held
            if limit is not None and not self._held and total < limit and self._loop is not None:
                shared.counts[self._slot] += 1  # held for the negotiation that reads it (PS3.8 9.3.4)
                self._held = 1
                self._loop.call_soon(self._give_back)
        self._seen = total
        return total

    @active.setter
    def active(self, value: int) -> None:
        delta = value - self._seen
        shared = self._shared
        with shared.lock:
            if delta > 0 and self._held:
                self._held -= 1  # the held slot is the association's now
                delta -= 1
            shared.counts[self._slot] += delta
        self._seen = value

    def _give_back(self) -> None:
        """A slot held by a negotiation that did not accept: free again."""
        if self._held:
            with self._shared.lock:
                self._shared.counts[self._slot] -= self._held
                self._held = 0


def _die_with_parent() -> None:
    """Have the kernel send SIGTERM to this process when its parent dies (Linux; elsewhere nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _reserve(host: str, port: int) -> socket.socket:
    """A socket bound (SO_REUSEPORT, not listening) to ``host:port``, holding the port for the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if family == socket.AF_INET and not host.replace(".", "").isdigit():
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6 and host == "::":
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind((host, port))
    return sock


class _Tagged(logging.Formatter):
    """A worker's log lines: the parent's format with ``worker I/N pid P`` after the level."""

    def __init__(self, inner: logging.Formatter, tag: str) -> None:
        super().__init__()
        self.inner, self.tag = inner, tag

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        head, sep, rest = line.partition(f" {record.levelname} ")
        return f"{head}{sep}{self.tag} {rest}" if sep else f"{self.tag} {line}"


async def _serve_worker(config: SCPConfig, shared: SharedCount, slot: int, ready: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the parent hears "listening" and may forward one
        loop.add_signal_handler(sig, stop.set)
    scp = WorkerSCP(config, shared, slot)
    await scp.start()
    os.write(ready, b"R")
    try:
        await stop.wait()
    finally:
        log.info("stopping: finishing in-flight stores")
        await scp.stop()
    return 0


def _worker(config: SCPConfig, shared: SharedCount, slot: int, workers: int, ready: int, parent: int,
            event_loop: str) -> int:
    """The body of a forked worker; its exit status."""
    _die_with_parent()
    if os.getppid() != parent:
        return 0  # the parent died before the request to be told took effect
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    root = logging.getLogger("dicomconf")
    for handler in root.handlers:
        handler.setFormatter(_Tagged(handler.formatter or logging.Formatter(), f"worker {slot + 1}/{workers} "
                                                                               f"pid {os.getpid()}:"))
    from dicomconf.scp.runtime import event_loop_factory

    try:
        with asyncio.Runner(loop_factory=event_loop_factory(event_loop)) as runner:
            return runner.run(_serve_worker(config, shared, slot, ready))
    except Exception as exc:  # noqa: BLE001 - reported to the parent in one line, which exits with it
        os.write(ready, f"E{type(exc).__name__}: {exc}\n".encode("utf-8", "replace"))
        return 1


def check(config: SCPConfig, workers: int) -> None:
    """ConfigError when ``workers`` processes cannot share this configuration's storage."""
    if workers < 1:
        raise ConfigError(f"<command line>:0: --workers must be at least 1, not {workers}")
    if config.storage == "memory":
        raise ConfigError("<command line>:0: --workers needs directory or discard storage: "
                          "memory storage would be one per worker process")
    if config.storage == "directory" and config.index == ":memory:":
        raise ConfigError("<command line>:0: --workers needs a file index (or none): "
                          "an in-memory index would be one per worker process")


def run_workers(config: SCPConfig, workers: int, event_loop: str = "auto") -> int:
    """Run ``workers`` worker processes (module docstring) until SIGTERM or SIGINT; the exit status."""
    from dicomconf.scp.indexing import make_storage

    check(config, workers)
    config.validate()
    make_storage(config).close()  # reconcile and --load, once (StorageSetupError: the caller says so)
    holders = [_reserve(config.host, config.port)]
    port = holders[0].getsockname()[1]
    tls = config.tls
    if tls.enabled:
        holders.append(_reserve(config.host, tls.port))
        tls = dataclasses.replace(tls, port=holders[1].getsockname()[1])
    child_config = config.replace(port=port, tls=tls, load=(), max_connections=max(1, config.max_connections // workers))
    shared = SharedCount(workers)
    ready_r, ready_w = os.pipe()
    parent = os.getpid()
    children: dict[int, int] = {}
    sys.stdout.flush()
    sys.stderr.flush()
    for slot in range(workers):
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            for sock in holders:
                sock.close()
            status = 1
            try:
                status = _worker(child_config, shared, slot, workers, ready_w, parent, event_loop)
            finally:
                logging.shutdown()
                os._exit(status)
        children[pid] = slot
    os.close(ready_w)
    return _supervise(config, children, shared, ready_r, holders, port, tls.port if tls.enabled else None)


def _supervise(config: SCPConfig, children: dict[int, int], shared: SharedCount, ready: int,
               holders: list, port: int, tls_port: int | None) -> int:
    """The parent: wait until every worker listens, forward SIGTERM/SIGINT, reap them; the exit status."""
    stopping: list[float] = []

    def forward(signum: int, frame: Any) -> None:
        if not stopping:
            stopping.append(time.monotonic())
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, forward)
    status = _wait_ready(config, children, ready, holders, port, tls_port, forward, stopping)
    killed = False
    while children:
        try:
            pid, code = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if stopping and not killed and time.monotonic() - stopping[0] > STOP_GRACE:
                for child in children:
                    os.kill(child, signal.SIGKILL)
                killed = True
            time.sleep(0.05)
            continue
        slot = children.pop(pid)
        with shared.lock:
            shared.counts[slot] = 0  # its associations are gone with it
        code = os.waitstatus_to_exitcode(code)
        if not stopping:
            log.warning("worker %d (pid %d) exited with status %d; %d left", slot + 1, pid, code, len(children))
            status = 1
            if not children:
                print("dicomconf scp: every worker has exited", file=sys.stderr)
        elif code not in (0, -signal.SIGTERM):  # a worker stopped before its loop could catch SIGTERM: clean too
            status = 1
    os.close(ready)
    return status


def _wait_ready(config: SCPConfig, children: dict[int, int], ready: int, holders: list, port: int,
                tls_port: int | None, forward: Any, stopping: list) -> int:
    """Wait for an ``R`` from each worker on the pipe (or a worker's ``E...`` line, or its exit); 0 or 1.

    On success print the listening line; on failure say why in one line and stop the others.
    """
    got, listening, error = b"", 0, None
    deadline = time.monotonic() + START_TIMEOUT
    while listening < len(children) and error is None:
        if stopping:
            break  # SIGTERM or SIGINT while the workers start: they are stopping already
        if time.monotonic() > deadline:
            error = f"not listening after {START_TIMEOUT:g} s"
            break
        readable, _, _ = select.select([ready], [], [], 0.1)
        if readable:
            got += os.read(ready, 4096)
        while got:
            if got[:1] == b"R":
                listening, got = listening + 1, got[1:]
            elif b"\n" in got:
                line, _, got = got.partition(b"\n")
                error = line[1:].decode("utf-8", "replace")
                break
            else:
                break
        if error is None and listening < len(children):
            for pid in children:  # a worker that exited without a word (peeked at, not reaped)
                if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    error = f"worker pid {pid} exited"
                    break
    for sock in holders:
        sock.close()
    if stopping:
        return 0
    if error is not None:
        print(f"dicomconf scp: a worker could not start on {config.host}:{port}: {error}", file=sys.stderr)
        forward(signal.SIGTERM, None)
        return 1
    host = f"[{config.host}]" if ":" in config.host else config.host
    pids = ", ".join(str(pid) for pid in children)
    print(f"dicomconf scp listening on {host}:{port}" + (f" (TLS on {tls_port})" if tls_port else "")
          + f" with {len(children)} workers (pids {pids})", file=sys.stderr, flush=True)
    return 0


__all__ = ["SharedCount", "WorkerSCP", "check", "run_workers"]
