"""The relay: one listening socket, one upstream connection per accepted one, bytes both ways.

Theory of operation
-------------------
:class:`Proxy` listens; each accepted connection (the association-requestor,
PS3.8 9.1) gets a :class:`Relay`, which opens a connection to the target (the
acceptor) while the requestor's reading is paused, then relays both
directions with asyncio protocols (uvloop's when installed), TCP_NODELAY on
both sockets.

Relaying: a chunk read from one side is written to the other as it is, then
recorded (:class:`dicomconf.wire.capture.Conversation`, stamped with the time
it was read) and judged (:class:`dicomconf.proxy.judge.AssociationJudge`):
the checks never alter the bytes.  Back-pressure: when the receiving
transport's buffer passes its high-water mark (``pause_writing``) the
sending side's reading is paused until it drains (``resume_writing``), so
nothing is buffered without bound.  Half-close: an end of stream (FIN) from
one side is passed on as ``write_eof`` (shutdown(SHUT_WR)) to the other, and
the other direction goes on; a reset or a connection lost without a FIN
aborts the other side.  The relay ends when both sides are gone.

TLS (PS3.15 B.1, :mod:`dicomconf.proxy.tlsleg`): a leg with TLS has a
:class:`~dicomconf.proxy.tlsleg.TLSLeg` between its socket and the relaying
above: the raw records read and written are recorded in that leg's own
capture, the plaintext is relayed, recorded and judged as a plain leg's bytes
are; a failed handshake aborts both connections and is the association's
error.  ``relay_only`` (the benchmark's floor) relays and does nothing else.

Faults (:mod:`dicomconf.proxy.faults`): a direction some fault touches is
framed into PDUs (PS3.8 9.3.1) and each PDU goes through a queue to a writer
task that delays, splits (one write per segment, a short sleep between) or
corrupts it, or drops both connections after it; reading pauses while the
queue holds more than :data:`HIGH_WATER` bytes.  What was delivered is then
recorded in a second capture (``.delivered.pcap``) and judged, since that is
what the receiver answered.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import time
from typing import Any, Callable

from dicomconf.proxy.faults import FaultPlan
from dicomconf.proxy.judge import CHECK_LIMIT, AssociationJudge
from dicomconf.proxy.tlsleg import TLSError, TLSLeg
from dicomconf.ul import constants as C
from dicomconf.wire.capture import Conversation

HIGH_WATER = 4 * 1024 * 1024  # bytes a receiving transport (or a fault queue) holds before reading pauses
LOW_WATER = 1024 * 1024
_U32 = struct.Struct(">I")
SIDES = ("requestor", "acceptor")
_CONV = {"requestor": "client", "acceptor": "server"}  # the capture's names of the two ends


def _other(side: str) -> str:
    return "acceptor" if side == "requestor" else "requestor"


def _nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


class _End(asyncio.Protocol):
    """One side's connection: hands what happens on it to the relay."""

    def __init__(self, relay: "Relay | None", side: str, proxy: "Proxy | None" = None) -> None:
        self.relay, self.side, self.proxy = relay, side, proxy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _nodelay(transport)
        transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)  # type: ignore[attr-defined]
        if self.relay is None:  # an accepted connection: a new association-requestor
            assert self.proxy is not None
            self.relay = self.proxy.accepted(transport)  # type: ignore[arg-type]
        self.relay.attach(self.side, transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.relay.raw_received(self.side, data)  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.relay.raw_eof(self.side)  # type: ignore[union-attr]
        return True  # keep the transport: the other direction may go on (half-close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.lost(self.side, exc)  # type: ignore[union-attr]

    def pause_writing(self) -> None:
        self.relay.pause(_other(self.side))  # type: ignore[union-attr]

    def resume_writing(self) -> None:
        self.relay.resume(_other(self.side))  # type: ignore[union-attr]


class _Framer:
    """Whole PDUs out of a direction's bytes, for the fault path (PS3.8 9.3.1); ``rest`` at the end."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.passthrough = False  # a header past CHECK_LIMIT: the rest goes on as it comes

    def feed(self, data: bytes) -> list[bytes]:
        if self.passthrough:
            return [data]
        self.buf += data
        out = []
        while len(self.buf) >= C.PDU_HEADER_LENGTH:
            total = C.PDU_HEADER_LENGTH + _U32.unpack_from(self.buf, 2)[0]
            if total > CHECK_LIMIT:
                self.passthrough = True
                out.append(bytes(self.buf))
                self.buf.clear()
                break
            if len(self.buf) < total:
                break
            out.append(bytes(self.buf[:total]))
            del self.buf[:total]
        return out


class Relay:
    """One accepted connection and its upstream connection: one association."""

    def __init__(self, proxy: "Proxy", number: int, down: asyncio.Transport) -> None:
        self.proxy, self.number = proxy, number
        self.t: dict[str, asyncio.Transport | None] = {"requestor": down, "acceptor": None}
        self.started = time.time()
        self.client = _addr(down.get_extra_info("peername"))
        self.local = _addr(down.get_extra_info("sockname"))
        self.conv: Conversation | None = None
        self.delivered: Conversation | None = None
        self.judge: AssociationJudge | None = None
        self.faults = proxy.plan.state() if proxy.plan else None
        self.framers: dict[str, _Framer] = {}
        self.queues: dict[str, asyncio.Queue] = {}
        self.queued = {"requestor": 0, "acceptor": 0}
        self.paused: dict[str, set[str]] = {"requestor": set(), "acceptor": set()}  # side -> why its reading is paused
        self.eofs: set[str] = set()
        self.gone: set[str] = set()
        self.error: str | None = None
        self.dropped: str | None = None
        self.stopped = False
        self.done = asyncio.get_running_loop().create_future()
        self.pdus_seen = 0
        self.tasks: list[asyncio.Task] = []
        self.early: list[bytes] = []
        self.legs: dict[str, TLSLeg] = {}  # side -> its TLS (PS3.15 B.1), when that leg is TLS
        self.leg_convs: dict[str, Conversation] = {}  # side -> the raw TLS records of that leg

    # ------------------------------------------------------------- set-up

    def attach(self, side: str, transport: asyncio.Transport) -> None:
        self.t[side] = transport
        ctx = self.proxy.tls_listen if side == "requestor" else self.proxy.tls_to
        if ctx is None:
            return
        here = _addr(transport.get_extra_info("sockname"))
        peer = _addr(transport.get_extra_info("peername"))
        # the leg's capture: the requestor is the client of its leg, the proxy the client of the other
        conv = Conversation(peer, here) if side == "requestor" else Conversation(here, peer)
        conv.opened(self.started if side == "requestor" else time.time())
        self.leg_convs[side] = conv
        name = None if side == "requestor" else (self.proxy.tls_server_name or self.proxy.target[0])
        self.legs[side] = TLSLeg(ctx, side == "requestor", lambda raw: self._write_raw(side, raw), name)
        if side == "acceptor":
            self._tls_step(side, self.legs[side].start)

    def _write_raw(self, side: str, raw: bytes) -> None:
        """TLS records the proxy sends to ``side``: on the wire and in the leg's capture."""
        t = self.t[side]
        if t is not None and side not in self.gone:
            t.write(raw)
        conv = self.leg_convs[side]
        (conv.server_sent if side == "requestor" else conv.client_sent)(raw, time.time())

    def _tls_step(self, side: str, step: Callable[[], Any]) -> Any:
        """Run a TLS step of ``side``'s leg; a TLS failure ends the association (both sides aborted)."""
        try:
            return step()
        except TLSError as exc:
            if self.error is None:
                self.error = f"TLS with the {side} failed: {exc}"
            for s in SIDES:
                t = self.t[s]
                if t is not None and s not in self.gone:
                    t.abort()
            return None

    def raw_received(self, side: str, data: bytes) -> None:
        """Bytes read from ``side``'s socket: TLS records on a TLS leg, else the DICOM stream itself."""
        leg = self.legs.get(side)
        if leg is None:
            self.received(side, data)
            return
        conv = self.leg_convs[side]
        (conv.client_sent if side == "requestor" else conv.server_sent)(data, time.time())
        plain = self._tls_step(side, lambda: leg.feed(data))
        for chunk in plain or ():
            self.received(side, chunk)

    def raw_eof(self, side: str) -> None:
        leg = self.legs.get(side)
        if leg is not None:
            leg.feed_eof()
            conv = self.leg_convs[side]
            conv.closed("client" if side == "requestor" else "server", time.time())
        self.eof(side)

    def _write(self, side: str, data: bytes) -> None:
        """Plaintext to ``side``: through its TLS leg when it has one."""
        leg = self.legs.get(side)
        if leg is None:
            self.t[side].write(data)  # type: ignore[union-attr]
        else:
            self._tls_step(side, lambda: leg.send(data))

    def start(self) -> None:
        self._pause("requestor", "connecting")
        self.tasks.append(asyncio.ensure_future(self._connect()))

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.proxy.target
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: _End(self, "acceptor"), host, port), self.proxy.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            reason = "timed out" if isinstance(exc, asyncio.TimeoutError) else (exc.strerror or str(exc))
            self.error = f"could not connect to the acceptor {host}:{port}: {reason}"
            down = self.t["requestor"]
            if down is not None:
                down.abort()
            return
        if self.error is not None:  # the acceptor's TLS handshake failed at its first step
            return
        server = _addr(transport.get_extra_info("peername"))
        if _family(server) != _family(self.client):
            server = self.local  # the capture keeps one IP version: the address the requestor connected to
        self.conv = Conversation(self.client, server)
        self.conv.opened(self.started)
        self.judge = AssociationJudge(self.number, self.client, server, self.proxy.check_data_sets)
        if self.faults is not None:
            self.delivered = Conversation(self.client, server)
            self.delivered.opened(self.started)
            for side in SIDES:
                if self.proxy.plan.touches(side):
                    self.framers[side] = _Framer()
                    self.queues[side] = asyncio.Queue()
                    self.tasks.append(asyncio.ensure_future(self._writer(side)))
        if "requestor" in self.gone:
            transport.close()
            return
        early, self.early = self.early, []
        for data in early:
            self.received("requestor", data)
        if "requestor" in self.eofs:  # the requestor's FIN came while connecting
            self.eofs.discard("requestor")
            self.eof("requestor")
        self._resume("requestor", "connecting")

    # ------------------------------------------------------------ relaying

    def received(self, side: str, data: bytes) -> None:
        ts = time.time()
        conv, judge = self.conv, self.judge
        if judge is None:  # read before the acceptor's connection is up: held until it is
            self.early.append(data)
            self._pause(side, "connecting")
            return
        if side in self.framers:
            _record(conv, side, data, ts)
            queue = self.queues[side]
            for pdu in self.framers[side].feed(data):
                queue.put_nowait(pdu)
                self.queued[side] += len(pdu)
            if self.queued[side] > HIGH_WATER:
                self._pause(side, "queue")
            return
        peer = self.t[_other(side)]
        if peer is not None and _other(side) not in self.gone:
            self._write(_other(side), data)
        if self.proxy.relay_only:
            return
        _record(conv, side, data, ts)  # type: ignore[arg-type]
        judge.feed(side, data, ts)  # type: ignore[union-attr]

    async def _writer(self, side: str) -> None:
        """The fault path of the PDUs ``side`` sends (see the module docstring)."""
        queue, peer_side = self.queues[side], _other(side)
        while True:
            pdu = await queue.get()
            if pdu is None:
                break
            self.queued[side] -= len(pdu)
            if self.queued[side] < LOW_WATER:
                self._resume(side, "queue")
            framer = self.framers[side]
            whole = len(pdu) >= C.PDU_HEADER_LENGTH and not framer.passthrough
            self.pdus_seen += 1
            act = self.faults.decide(side, pdu, self.pdus_seen) if whole else None  # type: ignore[union-attr]
            data = pdu if act is None else act.data
            if act is not None and act.delay_s:
                await asyncio.sleep(act.delay_s)
            peer = self.t[peer_side]
            if peer is None or peer_side in self.gone:
                continue
            if act is not None and act.segment:
                for pos in range(0, len(data), act.segment):
                    if pos:  # apart, so each write leaves in its own segment (TCP_NODELAY)
                        await asyncio.sleep(act.gap_s)
                    piece = data[pos:pos + act.segment]
                    if peer_side in self.gone:
                        break
                    self._write(peer_side, piece)
                    _record(self.delivered, side, piece, time.time())  # type: ignore[arg-type]
            else:
                self._write(peer_side, data)
                _record(self.delivered, side, data, time.time())  # type: ignore[arg-type]
            self.judge.feed(side, data, time.time(), act.corrupted if act is not None else None)  # type: ignore[union-attr]
            if act is not None and act.drop_after is not None:
                self.dropped = act.drop_after.describe()
                for s in SIDES:
                    t = self.t[s]
                    if t is not None:
                        t.abort() if act.drop_after.reset else t.close()
                break
        if side in self.eofs:
            self._pass_eof(side)

    def eof(self, side: str) -> None:
        ts = time.time()
        self.eofs.add(side)
        if self.conv is not None:
            self.conv.closed(_CONV[side], ts)
        if side in self.queues:
            self.queues[side].put_nowait(None)  # the writer passes the FIN on once the queue is empty
        else:
            self._pass_eof(side)
        if self.judge is not None and side not in self.framers:
            self.judge.closed(side, ts)

    def _pass_eof(self, side: str) -> None:
        peer = self.t[_other(side)]
        if side in self.framers and self.framers[side].buf:  # a partial PDU at the end goes on as it is
            rest = bytes(self.framers[side].buf)
            self.framers[side].buf.clear()
            if peer is not None and _other(side) not in self.gone:
                self._write(_other(side), rest)
            _record(self.delivered, side, rest, time.time())  # type: ignore[arg-type]
        if self.delivered is not None:
            self.delivered.closed(_CONV[side], time.time())
        if side in self.framers and self.judge is not None:
            self.judge.closed(side, time.time())
        if peer is not None and _other(side) not in self.gone:
            leg = self.legs.get(_other(side))
            if leg is not None:  # close_notify, then the FIN (RFC 8446 6.1)
                self._tls_step(_other(side), leg.close)
                conv = self.leg_convs[_other(side)]
                conv.closed("server" if _other(side) == "requestor" else "client", time.time())
            try:
                if peer.can_write_eof():
                    peer.write_eof()
            except (OSError, RuntimeError):
                pass
        if self.eofs >= set(SIDES):
            for s in SIDES:
                t = self.t[s]
                if t is not None:
                    t.close()

    def lost(self, side: str, exc: Exception | None) -> None:
        ts = time.time()
        self.gone.add(side)
        if side not in self.eofs:  # gone without a FIN: a reset, or the proxy closed it
            if self.conv is not None and self.dropped is None and not self.stopped:
                self.conv.reset(_CONV[side], ts)
            if side in self.leg_convs and self.dropped is None and not self.stopped and self.error is None:
                self.leg_convs[side].reset("client" if side == "requestor" else "server", ts)
            if self.judge is not None:
                self.judge.closed(side, ts, reset=True)
            peer = self.t[_other(side)]
            if peer is not None and _other(side) not in self.gone:
                if self.dropped is not None or self.stopped:
                    peer.close()
                else:
                    peer.abort()
        for q in self.queues.values():
            q.put_nowait(None)
        other = _other(side)
        if other in self.gone or self.t[other] is None:
            self._finish()

    def stop(self) -> None:
        """The proxy stops: both connections are closed now."""
        self.stopped = True
        for s in SIDES:
            t = self.t[s]
            if t is not None and s not in self.gone:
                t.close()
        if self.t["acceptor"] is None:
            self._finish()

    def _finish(self) -> None:
        if self.done.done():
            return
        for task in self.tasks:
            if not task.done() and task is not asyncio.current_task():
                task.cancel()
        self.done.set_result(None)
        self.proxy.finished(self)

    # -------------------------------------------------------- back-pressure

    def pause(self, side: str) -> None:
        self._pause(side, "peer")

    def resume(self, side: str) -> None:
        self._resume(side, "peer")

    def _pause(self, side: str, why: str) -> None:
        t = self.t[side]
        if not self.paused[side] and t is not None and side not in self.gone:
            t.pause_reading()
        self.paused[side].add(why)

    def _resume(self, side: str, why: str) -> None:
        self.paused[side].discard(why)
        t = self.t[side]
        if not self.paused[side] and t is not None and side not in self.gone:
            t.resume_reading()


def _record(conv: Conversation | None, side: str, data: bytes, ts: float) -> None:
    if conv is not None:
        (conv.client_sent if side == "requestor" else conv.server_sent)(data, ts)


def _addr(raw: Any) -> tuple[str, int]:
    if not raw:
        return ("0.0.0.0", 0)
    host = str(raw[0]).split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, int(raw[1])


def _family(addr: tuple[str, int]) -> int:
    return 6 if ":" in addr[0] else 4


class Proxy:
    """The listening side: accepts requestors, relays each to ``target``, reports each association."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], plan: FaultPlan | None = None,
                 on_finished: Callable[[Relay], None] | None = None, check_data_sets: bool = True,
                 connect_timeout: float = 10.0, relay_only: bool = False,
                 tls_listen: ssl.SSLContext | None = None, tls_to: ssl.SSLContext | None = None,
                 tls_server_name: str | None = None) -> None:
        self.listen, self.target = listen, target
        self.tls_listen, self.tls_to, self.tls_server_name = tls_listen, tls_to, tls_server_name
        # side -> the NSS key log file its TLS context writes (SSLContext.keylog_filename)
        self.keylogs = {side: getattr(ctx, "keylog_filename", None) for side, ctx in
                        (("requestor", tls_listen), ("acceptor", tls_to)) if ctx is not None}
        self.relay_only = relay_only  # benchmarks' floor: relay, record nothing, judge nothing
        self.plan = plan or FaultPlan()
        self.on_finished = on_finished
        self.check_data_sets = check_data_sets
        self.connect_timeout = connect_timeout
        self.server: asyncio.AbstractServer | None = None
        self.relays: set[Relay] = set()
        self.count = 0
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        host = self.listen[0] or None
        self.server = await loop.create_server(lambda: _End(None, "requestor", self), host, self.listen[1])
        self.port = self.server.sockets[0].getsockname()[1]

    def accepted(self, transport: asyncio.Transport) -> Relay:
        self.count += 1
        relay = Relay(self, self.count, transport)
        self.relays.add(relay)
        relay.start()
        return relay

    def finished(self, relay: Relay) -> None:
        self.relays.discard(relay)
        if self.on_finished is not None:
            self.on_finished(relay)

    async def stop(self) -> None:
        """Stop listening, close the associations still open and wait for them to end."""
        if self.server is not None:
            self.server.close()
        relays = list(self.relays)
        for relay in relays:
            relay.stop()
        if relays:
            await asyncio.wait([r.done for r in relays], timeout=5)


__all__ = ["Proxy", "Relay", "HIGH_WATER"]
