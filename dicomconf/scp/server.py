"""The reference SCP: listeners, connections, lifecycle (PS3.8 9.1.2; the connection: scp/connection.py).

Theory of operation
-------------------
One listening socket per listener (plain, and TLS beside it when configured),
opened with a large backlog.  asyncio's accept loop takes every queued
connection as soon as the socket is readable, in arrival order, and gives
each its own :class:`~dicomconf.scp.connection.SCPConnection` protocol
object, so accepting, negotiating and serving are per connection: one idle,
slow or malicious client never delays another.

:class:`ReferenceSCP` holds what the connections share: the configuration,
the acceptor policy, the storage and its index, the service handlers
(:mod:`dicomconf.scp.services_setup`), the bounds (``max_connections``, open
files) and the worker threads of blocking stores.  :meth:`ReferenceSCP.stop`
stops accepting, waits for in-flight stores (and far event reports), then
aborts what is left and closes the index.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import resource
import socket
from typing import Any

from dicomconf.scp.config import ConfigError, SCPConfig
from dicomconf.scp.hooks import Hooks
from dicomconf.scp.indexing import make_storage
from dicomconf.scp.part10 import read_part10
from dicomconf.scp.services_setup import offer
from dicomconf.scp.storage import (
    MemoryStorage,
    StoredInstance,
)
from dicomconf.scp.tls import TLSSetupError, server_context
from dicomconf.ul import constants as C
from dicomconf.ul.echo_lane import EchoTemplates
from dicomconf.ul.negotiation_cache import NegotiationCache, frozen_policy
from dicomconf.ul.pdu import AAbort

from dicomconf.scp.connection import SCPConnection

log = logging.getLogger("dicomconf.scp")

RECORDS_KEPT = 10_000  # directory and discard storage: ReferenceSCP.stored lists at most twice this many
_FDS_PER_CONNECTION = 2  # its socket and the temporary file of a store being written


def _raise_nofile(wanted: int) -> int | None:
    """Raise the soft open-files limit toward ``wanted`` (never above the hard limit); the limit now (None: none)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def _where(host: str, port: int, backlog: int, reuse_port: bool = False) -> dict[str, Any]:
    """Where a listener binds, as ``create_server`` arguments (PS3.8 9.1.2: the acceptor listens).

    ``::`` (every IPv6 address) is one dual-stack socket where the OS allows, so IPv4 peers
    reach it too (asyncio's own binding of ``::`` is IPv6-only); any other host binds as given.
    ``reuse_port``: SO_REUSEPORT, the port shared by the worker processes (dicomconf.scp.workers).
    """
    if host == "::" and socket.has_dualstack_ipv6():
        sock = socket.create_server(("::", port), family=socket.AF_INET6, backlog=backlog,
                                    reuse_port=reuse_port, dualstack_ipv6=True)
        return {"sock": sock, "backlog": backlog}
    return {"host": host, "port": port, "backlog": backlog, "reuse_address": True,
            **({"reuse_port": True} if reuse_port else {})}


class ReferenceSCP:
    """The reference SCP (see the module docstring); ``start()``, ``stop()``, ``.port``, ``.stored``."""

    startup = True  # reconcile the storage with its index and --load at start (a worker's parent did)
    reuse_port = False  # listen with SO_REUSEPORT (the workers of dicomconf.scp.workers)

    def __init__(self, config: SCPConfig, hooks: Hooks | None = None) -> None:
        config.validate()
        self.config = config
        self.hooks = hooks  # variants (dicomconf.scp.hooks); None on the default path
        self.storage = make_storage(config, startup=self.startup)
        self.services = offer(config, self.storage)  # the DIMSE services beyond echo and store
        self.policy = frozen_policy(config.policy(self.services))  # read-only: the negotiation cache keys on it
        self.negotiations = NegotiationCache()  # answers to A-ASSOCIATE-RQs that repeat byte for byte
        self.echo_templates = EchoTemplates()  # answers to C-ECHO-RQs that repeat but for their Message ID
        self.stored: list[StoredInstance] = (
            self.storage.instances if isinstance(self.storage, MemoryStorage) else []
        )
        self.port: int | None = None
        self.tls_port: int | None = None
        self.active = 0  # associations established now
        self.associations = 0  # connections finished so far
        self.refused = 0  # connections closed at once past max_connections
        self.max_connections = config.max_connections  # lowered at start() when file descriptors are short
        self.tracing = config.verbose
        self.handlers: dict = dict(self.services.handlers)  # SOP class UID -> handler; empty: echo and store only
        self.move_destinations: dict = dict(config.move_destinations)  # AE -> (host, port), PS3.4 C.4.2, J.3.3
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[SCPConnection] = set()
        self._in_flight: set[asyncio.Future] = set()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._idle_waiter: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _record(self, instance: StoredInstance) -> None:
        if self.storage.kind == "memory":
            return  # MemoryStorage already appended it to self.stored
        path = getattr(self.storage, "path_for", None)
        if len(self.stored) >= 2 * RECORDS_KEPT:
            del self.stored[:RECORDS_KEPT]  # the files are the store; the list is only the recent ones
        self.stored.append(
            StoredInstance(
                instance.sop_class_uid, instance.sop_instance_uid, instance.transfer_syntax, b"",
                instance.calling_ae_title, path(instance.sop_instance_uid) if path else None,
            )
        )

    def read_instance(self, sub: Any) -> tuple[str, bytes] | None:
        """(transfer syntax, data set bytes) of a stored instance a sub-operation sends, or None."""
        if isinstance(self.storage, MemoryStorage):
            for instance in reversed(self.storage.instances):
                if instance.sop_instance_uid == sub.sop_instance_uid:
                    return instance.transfer_syntax, bytes(instance.data)
            return None
        return read_part10(sub.path) if sub.path else None

    async def start(self) -> None:
        """Bind the listeners (PS3.8 9.1.2: the acceptor listens); port 0 picks a free port."""
        self._loop = loop = asyncio.get_running_loop()
        cfg = self.config
        fds = _raise_nofile(max(4096, cfg.backlog * 2, cfg.max_connections * _FDS_PER_CONNECTION + 64))
        if fds is not None and cfg.max_connections * _FDS_PER_CONNECTION + 64 > fds:
            self.max_connections = max(1, (fds - 64) // _FDS_PER_CONNECTION)
            log.warning("max_connections lowered from %d to %d: the process may open %d files",
                        cfg.max_connections, self.max_connections, fds)
        if self.storage.blocking:
            self._executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="dicomconf-store")
        server = await loop.create_server(
            lambda: SCPConnection(self, False), **_where(cfg.host, cfg.port, cfg.backlog, self.reuse_port)
        )
        self._servers.append(server)
        self.port = server.sockets[0].getsockname()[1]
        if cfg.tls.enabled:
            try:
                ctx = server_context(cfg.tls)
            except TLSSetupError as exc:
                raise ConfigError(f"{cfg.source}: {exc}") from None
            tls_server = await loop.create_server(
                lambda: SCPConnection(self, True), **_where(cfg.host, cfg.tls.port, cfg.backlog, self.reuse_port),
                ssl=ctx, ssl_handshake_timeout=cfg.artim_timeout,
            )
            self._servers.append(tls_server)
            self.tls_port = tls_server.sockets[0].getsockname()[1]
        log.info(
            "listening on %s:%d%s as %s (storage: %s)", f"[{cfg.host}]" if ":" in cfg.host else cfg.host,
            self.port, f", TLS on {self.tls_port}" if self.tls_port else "", "/".join(cfg.ae_titles),
            self.storage.kind,
        )

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let in-flight stores finish and answer, then abort and close the rest."""
        for server in self._servers:
            server.close()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=grace)
            await asyncio.sleep(0)
        for conn in list(self._connections):
            if conn.assoc.state in ("Sta6", "Sta7", "Sta8"):
                conn._send(AAbort(C.ABORT_SOURCE_USER, C.ABORT_REASON_NOT_SPECIFIED))
                conn.outcome = "aborted: server stopping"
            conn._close()
        if self._connections:
            self._idle_waiter = self._loop.create_future()  # type: ignore[union-attr]
            try:
                await asyncio.wait_for(self._idle_waiter, timeout=2.0)
            except asyncio.TimeoutError:
                for conn in list(self._connections):
                    if conn.transport is not None:
                        conn.transport.abort()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.storage.close()
