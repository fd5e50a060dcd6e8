"""A fuzzing fake SCP: answers an SCU with random bytes, mutated ACs and RJs, bad P-DATA, silence and resets.

Theory of operation
-------------------
:class:`FuzzingSCP` listens on 127.0.0.1 (a free port) on its own event-loop
thread.  Each accepted connection gets one behaviour of :data:`BEHAVIOURS`,
drawn from the seeded generator in accept order (``honest_next(n)`` makes
the next ``n`` connections honest, e.g. for a harness's first "is the target
there" association).  Up to the point a behaviour breaks the rules, the
server answers as a plain SCP would (A-ASSOCIATE-AC accepting every proposed
context with its first transfer syntax, PS3.8 9.3.3; C-ECHO-RSP and
C-STORE-RSP success, PS3.7 9.3.1.2 and 9.3.5.2; A-RELEASE-RP, PS3.8 9.3.7).
The points are where an SCU waits for an answer: the A-ASSOCIATE-RQ
(``rq``), its first DIMSE request (``pdata``) and its A-RELEASE-RQ
(``release``).  What a behaviour does there:

* ``honest``: nothing wrong; ``trailing-garbage``: honest, then random bytes
  after the A-RELEASE-RP and the connection left open;
* ``random``: random bytes (sometimes behind a PDU header), then close,
  silence or reset;
* ``mutated-ac`` / ``mutated-rj``: an A-ASSOCIATE-AC with one to three
  mutations (then honest as far as the stream allows), an A-ASSOCIATE-RJ with
  any result, source and reason (PS3.8 9.3.4), sometimes mutated;
* ``bad-pdata``: the DIMSE answer broken: PDV lengths that lie, a command
  set that does not decode or lacks elements, the wrong message ID or
  command, an even or unaccepted context ID, a data set first, reserved
  control bits, more than the Maximum Length the SCU announced;
* ``silence`` (reads, says nothing), ``deaf`` (reads nothing either);
* ``reset`` (an RST), ``half-pdu`` (part of the answer, then silence),
  ``abort`` (an A-ABORT with any source and reason), ``release-rq`` (the
  acceptor's own A-RELEASE-RQ instead of the DIMSE answer);
* ``drip``: the right answer one byte at a time, slower than any timeout;
* ``flood-data`` / ``flood-release``: a DIMSE answer whose data set never
  ends, or P-DATA-TF without end instead of the A-RELEASE-RP, small PDUs as
  fast as the SCU reads them: the SCU must give up by its own deadline.

* ``endless-pdu``: a P-DATA-TF header announcing almost 2 GiB, then its body
  at about 6 MB/s, never complete.

No connection is kept past :data:`CONNECTION_LIMIT`.  An exception inside the
server other than the peer going away is a bug of this module and is kept in
``errors``.
"""

from __future__ import annotations

import asyncio
import collections
import random
import socket
import struct
import threading
import traceback

from hostile import RELEASE_RP, mutate, pdata, pdu, pdv

from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.errors import RemoteProtocolError
from dicomconf.ul.items import ImplementationClassUID, MaximumLength, PresentationContextAC, UserInformation
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ, decode_pdu

BEHAVIOURS = ("honest", "trailing-garbage", "random", "mutated-ac", "mutated-rj", "bad-pdata", "silence", "deaf",
              "reset", "half-pdu", "abort", "release-rq", "drip", "flood-data", "flood-release", "endless-pdu")
POINTS = ("rq", "pdata", "release")
CONNECTION_LIMIT = 60.0  # seconds any connection is kept at most
DEAF_FOR = 20.0  # seconds a deaf connection stays before we close it
OUR_MAX_PDU = 16382
_LINGER_RESET = struct.pack("ii", 1, 0)
_LAST_COMMAND = C.MCH_COMMAND | C.MCH_LAST


class _Gone(Exception):
    """The peer closed the connection (or it ended) before the point a behaviour waits for."""


class _Peer:
    """One accepted connection and the honest SCP state that goes with it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rng: random.Random) -> None:
        self.reader, self.writer, self.rng = reader, writer, rng
        self.assembler: dimse.MessageAssembler | None = None
        self.peer_max = 0  # the SCU's Maximum Length (0: unlimited)
        self.answer = b""  # the honest answer due at the point reached
        self.request: dimse.Message | None = None  # the DIMSE request at the point "pdata"

    async def read_pdu(self) -> tuple[int, bytes]:
        try:
            head = await self.reader.readexactly(6)
            body = await self.reader.readexactly(struct.unpack(">BBI", head)[2])
        except asyncio.IncompleteReadError:
            raise _Gone() from None
        return head[0], head + body

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    async def until_closed(self) -> None:
        while await self.reader.read(65536):
            pass

    def reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.writer.transport.abort()

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()

    # ---------------------------------------------------------- honest SCP

    def accept(self, rq_raw: bytes) -> bytes:
        """The A-ASSOCIATE-AC for ``rq_raw``: every context accepted with its first transfer syntax."""
        rq = decode_pdu(rq_raw)
        if not isinstance(rq, AAssociateRQ):
            raise _Gone()
        pcs = tuple(PresentationContextAC(pc.context_id, 0, pc.transfer_syntaxes[0]) if pc.transfer_syntaxes
                    else PresentationContextAC(pc.context_id, 4, None) for pc in rq.presentation_contexts)
        self.peer_max = rq.user_information.maximum_length or 0
        self.assembler = dimse.MessageAssembler({pc.context_id for pc in pcs if pc.result == 0})
        ui = UserInformation((MaximumLength(OUR_MAX_PDU), ImplementationClassUID("1.2.826.0.1.3680043.9.7433.1.2")))
        return AAssociateAC(rq.called_ae_title, rq.calling_ae_title, pcs, ui, reserved=rq.reserved).encode()

    def response(self, msg: dimse.Message) -> bytes:
        if msg.command_field == dimse.C_ECHO_RQ:
            rsp = dimse.c_echo_rsp(msg)
        elif msg.command_field == dimse.C_STORE_RQ:
            rsp = dimse.c_store_rsp(msg, 0x0000)
        else:
            return b""
        return b"".join(dimse.fragment(rsp, self.peer_max))

    async def honest_until(self, point: str | None) -> None:
        """Answer as a plain SCP until ``point`` (None: to the end); there ``answer`` holds what was due."""
        kind, raw = await self.read_pdu()
        self.answer = self.accept(raw) if kind == C.A_ASSOCIATE_RQ else b""
        if point == "rq":
            return
        self.write(self.answer)
        await self.serve(point)

    async def serve(self, point: str | None) -> None:
        while True:
            kind, raw = await self.read_pdu()
            if kind == C.P_DATA_TF and self.assembler is not None:
                for item in decode_pdu(raw).pdvs:
                    msg = self.assembler.add(item)
                    if msg is None:
                        continue
                    self.answer = self.response(msg)
                    if point == "pdata":
                        self.request = msg
                        return
                    self.write(self.answer)
            elif kind == C.A_RELEASE_RQ:
                self.answer = RELEASE_RP
                if point == "release":
                    return
                self.write(RELEASE_RP)
                await self.until_closed()
                return
            else:
                raise _Gone()


# ---------------------------------------------------------------- what each behaviour sends


def _random_answer(rng: random.Random) -> bytes:
    data = rng.randbytes(rng.choice([rng.randint(1, 8), rng.randint(9, 400), rng.randint(400, 9000)]))
    if rng.random() < 0.5:
        data = struct.pack(">BBI", rng.randint(1, 7), 0, rng.choice([len(data), rng.randrange(1 << 32)])) + data
    return data


def _bad_response(rng: random.Random, answer: bytes, request: dimse.Message | None, peer_max: int) -> bytes:
    """A broken DIMSE answer to ``request`` (whose honest answer is ``answer``)."""
    context = request.context_id if request is not None else 1
    message_id = (request.message_id if request is not None else None) or 1
    good = dimse.c_echo_rsp(message_id, context_id=context)
    command = dimse.encode_command(good.command)
    choice = rng.randrange(14)
    if choice == 0:
        return pdata(pdv(context, _LAST_COMMAND, command, len(command) + 2 + rng.randint(1, 3000)))
    if choice == 1:
        return pdata(pdv(context, _LAST_COMMAND, command, rng.choice([0, 1])))
    if choice == 2:
        return pdata(pdv(context, _LAST_COMMAND, rng.randbytes(rng.randint(0, 300))))
    if choice == 3:
        return pdata(pdv(context, _LAST_COMMAND, mutate(command, rng)))
    if choice == 4:
        return pdata(pdv(context, _LAST_COMMAND, command[: rng.randrange(len(command))]))
    if choice == 5:
        wrong = dimse.c_echo_rsp(message_id + rng.randint(1, 1000), context_id=context)
        return b"".join(dimse.fragment(wrong, 0))
    if choice == 6:
        ds = good.command
        for keyword in rng.sample(["Status", "MessageIDBeingRespondedTo", "CommandField", "CommandDataSetType"], 2):
            if keyword in ds:
                delattr(ds, keyword)
        return pdata(pdv(context, _LAST_COMMAND, dimse.encode_command(ds)))
    if choice == 7:
        return pdata(pdv(rng.choice([0, 2, 254, (context + 2) % 256 | 1]), _LAST_COMMAND, command))
    if choice == 8:
        return pdata(pdv(context, C.MCH_LAST, rng.randbytes(rng.randint(1, 300)))) + answer
    if choice == 9:
        return pdata(pdv(context, _LAST_COMMAND | (rng.randrange(1, 64) << 2), command))
    if choice == 10:
        size = (peer_max or OUR_MAX_PDU) + rng.randint(1, 4000)
        return pdata(pdv(context, 0, rng.randbytes(size)))
    if choice == 11:
        ds = good.command
        ds.CommandField = rng.choice([dimse.C_STORE_RSP, dimse.C_ECHO_RQ, 0x0FFF])
        return pdata(pdv(context, _LAST_COMMAND, dimse.encode_command(ds)))
    if choice == 12:
        ds = good.command
        ds.Status = rng.choice([0xC000, 0xA700, 0x0110, 0xFF00, 0xFE00, rng.randrange(1 << 16)])
        return pdata(pdv(context, _LAST_COMMAND, dimse.encode_command(ds)))
    return mutate(answer or pdata(pdv(context, _LAST_COMMAND, command)), rng)


def _abort(rng: random.Random) -> bytes:
    return pdu(C.A_ABORT, bytes([0, 0, rng.choice([0, 1, 2, 3, 255]), rng.choice([0, 1, 2, 4, 5, 6, 7, 255])]))


def _reject(rng: random.Random) -> bytes:
    body = bytes([0, rng.choice([1, 2, 0, 3, 255]), rng.choice([1, 2, 3, 0, 7]), rng.randrange(256)])
    data = pdu(C.A_ASSOCIATE_RJ, body)
    return mutate(data, rng, 1) if rng.random() < 0.3 else data


class FuzzingSCP:
    """The fuzzing fake SCP (see the module docstring); ``start()`` returns its port."""

    def __init__(self, seed: int = 1, behaviours: tuple[str, ...] = BEHAVIOURS, host: str = "127.0.0.1") -> None:
        self.seed, self.behaviours, self.host = seed, tuple(behaviours), host
        self.rng = random.Random(seed)
        self.used: collections.Counter = collections.Counter()
        self.errors: list[str] = []
        self.port = 0
        self._count = 0
        self._honest = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task] = set()

    def honest_next(self, n: int = 1) -> None:
        """The next ``n`` connections are answered honestly."""
        with self._lock:
            self._honest += n

    def _choose(self) -> tuple[str, random.Random]:
        with self._lock:
            index, self._count = self._count, self._count + 1
            if self._honest:
                self._honest -= 1
                behaviour = "honest"
            else:
                behaviour = self.rng.choice(self.behaviours)
            self.used[behaviour] += 1
        return behaviour, random.Random(f"{self.seed}:{index}")

    # ---------------------------------------------------------- running

    def start(self) -> int:
        ready = threading.Event()

        def main() -> None:
            loop = self._loop = asyncio.new_event_loop()
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=main, name="fuzzing-scp", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.port

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)
        self._thread = None

    def __enter__(self) -> "FuzzingSCP":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        behaviour, rng = self._choose()
        peer = _Peer(reader, writer, rng)
        try:
            await asyncio.wait_for(getattr(self, "play_" + behaviour.replace("-", "_"))(peer), CONNECTION_LIMIT)
        except (_Gone, OSError, asyncio.TimeoutError, asyncio.CancelledError, RemoteProtocolError):
            pass
        except Exception:
            self.errors.append(f"{behaviour}: {traceback.format_exc()}")
        finally:
            try:
                peer.close()
            except Exception:
                pass
            self._tasks.discard(task)

    # ---------------------------------------------------------- behaviours

    async def play_honest(self, peer: _Peer) -> None:
        await peer.honest_until(None)

    async def play_trailing_garbage(self, peer: _Peer) -> None:
        await peer.honest_until("release")
        peer.write(RELEASE_RP + peer.rng.randbytes(peer.rng.randint(1, 200)))
        await peer.until_closed()

    async def play_random(self, peer: _Peer) -> None:
        await peer.honest_until(peer.rng.choice(POINTS))
        peer.write(_random_answer(peer.rng))
        end = peer.rng.randrange(3)
        if end == 0:
            await peer.drain()
        elif end == 1:
            await peer.until_closed()
        else:
            peer.reset()

    async def play_mutated_ac(self, peer: _Peer) -> None:
        await peer.honest_until("rq")
        peer.write(mutate(peer.answer, peer.rng) if peer.answer else _random_answer(peer.rng))
        await peer.serve(None)

    async def play_mutated_rj(self, peer: _Peer) -> None:
        await peer.honest_until("rq")
        peer.write(_reject(peer.rng))
        await peer.until_closed()

    async def play_bad_pdata(self, peer: _Peer) -> None:
        await peer.honest_until("pdata")
        peer.write(_bad_response(peer.rng, peer.answer, peer.request, peer.peer_max))
        await peer.serve(None)

    async def play_silence(self, peer: _Peer) -> None:
        await peer.honest_until(peer.rng.choice(POINTS))
        await peer.until_closed()

    async def play_deaf(self, peer: _Peer) -> None:
        await asyncio.sleep(DEAF_FOR)

    async def play_reset(self, peer: _Peer) -> None:
        point = peer.rng.choice(("accept",) + POINTS)
        if point != "accept":
            await peer.honest_until(point)
        peer.reset()

    async def play_half_pdu(self, peer: _Peer) -> None:
        await peer.honest_until(peer.rng.choice(POINTS))
        answer = peer.answer or _abort(peer.rng)
        peer.write(answer[: peer.rng.randint(1, max(len(answer) - 1, 1))])
        await peer.until_closed()

    async def play_abort(self, peer: _Peer) -> None:
        await peer.honest_until(peer.rng.choice(POINTS))
        peer.write(_abort(peer.rng))
        await peer.until_closed()

    async def play_release_rq(self, peer: _Peer) -> None:
        await peer.honest_until("pdata")
        peer.write(pdu(C.A_RELEASE_RQ, b"\0" * 4))
        await peer.serve(None)

    async def play_drip(self, peer: _Peer) -> None:
        await peer.honest_until(peer.rng.choice(POINTS[:2]))
        for byte in peer.answer or _abort(peer.rng):
            peer.write(bytes([byte]))
            await asyncio.sleep(0.25)
        await peer.serve(None)

    async def _flood(self, peer: _Peer, head: bytes, context: int) -> None:
        """``head``, then small P-DATA-TF PDUs without end, as fast as the SCU takes them (TCP back-pressure)."""
        burst = pdata(pdv(context, 0, peer.rng.randbytes(64))) * 1000
        peer.write(head)
        while True:
            peer.write(burst)
            await peer.drain()

    async def play_flood_data(self, peer: _Peer) -> None:
        await peer.honest_until("pdata")
        request = peer.request
        context = request.context_id if request is not None else 1
        rsp = dimse.c_echo_rsp((request.message_id if request is not None else None) or 1, context_id=context)
        rsp.command.CommandDataSetType = 0x0000  # a data set follows (PS3.7 E.1): it never ends
        await self._flood(peer, pdata(pdv(context, _LAST_COMMAND, dimse.encode_command(rsp.command))), context)

    async def play_flood_release(self, peer: _Peer) -> None:
        await peer.honest_until("release")
        await self._flood(peer, b"", 1)

    async def play_endless_pdu(self, peer: _Peer) -> None:
        await peer.honest_until(peer.rng.choice(POINTS[:2]))
        peer.write(struct.pack(">BBI", C.P_DATA_TF, 0, 0x7FFFFFF0))
        chunk = peer.rng.randbytes(64 << 10)
        while True:
            peer.write(chunk)
            await peer.drain()
            await asyncio.sleep(0.01)


class FuzzingSCPProcess:
    """A :class:`FuzzingSCP` in a child process of its own (so its floods do not share our interpreter);
    the same interface: ``start()`` returns the port, ``honest_next``, ``stop``, then ``used`` and ``errors``."""

    def __init__(self, seed: int = 1, behaviours: tuple[str, ...] = BEHAVIOURS) -> None:
        import multiprocessing

        self._ctx = multiprocessing.get_context("fork")
        self._args = (seed, tuple(behaviours))
        self.used: collections.Counter = collections.Counter()
        self.errors: list[str] = []
        self.port = 0
        self._conn = None
        self._proc = None

    @staticmethod
    def _child(conn, seed: int, behaviours: tuple[str, ...]) -> None:
        server = FuzzingSCP(seed, behaviours)
        conn.send(server.start())
        while True:
            command, value = conn.recv()
            if command == "honest":
                server.honest_next(value)
                conn.send(None)
            else:
                server.stop()
                conn.send((dict(server.used), server.errors))
                return

    def start(self) -> int:
        self._conn, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=self._child, args=(child, *self._args), daemon=True)
        self._proc.start()
        self.port = self._conn.recv()
        return self.port

    def honest_next(self, n: int = 1) -> None:
        self._conn.send(("honest", n))
        self._conn.recv()

    def stop(self) -> None:
        if self._proc is None:
            return
        try:
            self._conn.send(("stop", None))
            if self._conn.poll(30):
                used, self.errors = self._conn.recv()
                self.used.update(used)
        finally:
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._proc = None
