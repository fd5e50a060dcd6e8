"""Hostile peers for the live fuzz and soak benchmarks: attacks on an SCP, and the reference SCP as a process.

Theory of operation
-------------------
Everything is drawn from a ``random.Random`` the caller seeds, so a run can be
played again.

:func:`make_attack` draws one hostile connection of a kind (:data:`KINDS`):

* ``random``: random bytes, sometimes behind a plausible PDU header;
* ``mutated-rq``: a legal A-ASSOCIATE-RQ (PS3.8 9.3.2) with one to three
  mutations: bit flips, byte changes, truncation, a PDU or item length that
  lies, bytes inserted, removed or repeated;
* ``bad-pdata``: a legal A-ASSOCIATE-RQ, then, once the A-ASSOCIATE-AC is in,
  a P-DATA-TF that breaks PS3.8 9.3.5 / Annex E or PS3.7 6.3 (PDV lengths
  that lie, command sets that do not decode or lack elements, even or
  unaccepted context IDs, a data set before its command, reserved control
  bits, a PDU over the announced maximum length, a command set past any
  bound, an unexpected PDU in Sta6 ...);
* ``stalled``: a PDU header and part of its body, before or after the
  association is established, or an answer the peer never closes after
  (Sta13), then silence: the SCP must end it by its own timers.

:func:`flood` (not among :data:`KINDS`: it holds a connection for seconds)
draws PDUs to repeat without pause once the A-ASSOCIATE-AC is in (C-ECHO-RQs,
C-CANCEL-RQs, data set fragments that never end, undecodable P-DATA-TF,
A-ASSOCIATE-RQs, A-RELEASE-RPs): a peer that keeps a waiting side busy.

:func:`run_attack` plays one on an asyncio connection and says what the SCP
did: ``answered`` (bytes came back; we then close, as a requestor does after
A-ABORT, AA-3/AA-4), ``closed``, ``reset``, ``connect-failed``, or ``hang``:
nothing within the SCP's timer (ARTIM in Sta2 and Sta13, the idle timer in
Sta6, PS3.8 9.1.5) plus a margin.  A stalled connection is ``closed`` only if
the SCP closed it within that bound.

:class:`SCPProcess` runs ``dicomconf scp --port 0`` on 127.0.0.1 as a child
process with its log in a file, reads the port it prints, measures its RSS and
open file descriptors from ``/proc``, scans its log for tracebacks and counts
the association outcomes it logged, and stops it by its process id.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from dicomconf.ul import constants as C  # noqa: E402
from dicomconf.ul import dimse  # noqa: E402
from dicomconf.ul.items import (  # noqa: E402
    AsynchronousOperationsWindow,
    ImplementationClassUID,
    ImplementationVersionName,
    MaximumLength,
    PresentationContextRQ,
    RoleSelection,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateRQ, AReleaseRP, AReleaseRQ  # noqa: E402

CT = "1.2.840.10008.5.1.4.1.1.2"
IVRLE = C.IMPLICIT_VR_LITTLE_ENDIAN
EVRLE = "1.2.840.10008.1.2.1"
KINDS = ("random", "mutated-rq", "bad-pdata", "stalled")
WEIGHTS = {"random": 0.40, "mutated-rq": 0.25, "bad-pdata": 0.27, "stalled": 0.08}
OUTCOMES = ("answered", "closed", "reset", "connect-failed", "hang")
SCP_MAX_PDU = 16382  # the reference SCP's default Maximum Length (docs/scp.md)
_VARIABLE_ITEMS_AT = 74  # PS3.8 9.3.2: 6-byte header + 68 bytes of fixed fields


def tree_env(**extra: str) -> dict[str, str]:
    """The environment for a child ``python -m dicomconf...``: this source tree first on its path, so the
    code measured is this checkout's, whatever ``dicomconf`` is installed."""
    path = os.environ.get("PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}
    return {**env, "PYTHONPATH": REPO_ROOT + (os.pathsep + path if path else ""), **extra}


# ---------------------------------------------------------------- legal PDUs


def legal_rq(called: str = "DICOMCONF", calling: str = "FUZZER", *, contexts: int = 2, rich: bool = False) -> bytes:
    """A legal A-ASSOCIATE-RQ: Verification on context 1, CT Image Storage on 3 (and more when asked)."""
    pcs = [PresentationContextRQ(1, C.VERIFICATION_SOP_CLASS, (IVRLE,)), PresentationContextRQ(3, CT, (IVRLE, EVRLE))]
    pcs += [PresentationContextRQ(2 * i + 1, CT, (EVRLE,)) for i in range(2, contexts)]
    subs: list = [MaximumLength(16384), ImplementationClassUID("1.2.826.0.1.3680043.9.7433.1.1")]
    if rich:
        subs += [AsynchronousOperationsWindow(2, 2), RoleSelection(CT, 1, 1), ImplementationVersionName("FUZZ_1"),
                 UserIdentityRQ(2, b"user", b"pass", 1)]
    return AAssociateRQ(called, calling, tuple(pcs), UserInformation(tuple(subs))).encode()


def _item_length_offsets(pdu: bytes) -> list[int]:
    """Offsets of every 2-byte item and sub-item length of an A-ASSOCIATE-RQ/AC (PS3.8 9.3.2, 9.3.3)."""
    out, pos = [], _VARIABLE_ITEMS_AT
    while pos + 4 <= len(pdu):
        item_type, length = pdu[pos], int.from_bytes(pdu[pos + 2 : pos + 4], "big")
        out.append(pos + 2)
        if item_type in (C.ITEM_PRESENTATION_CONTEXT_RQ, C.ITEM_PRESENTATION_CONTEXT_AC, C.ITEM_USER_INFORMATION):
            sub, end = pos + 4 + (0 if item_type == C.ITEM_USER_INFORMATION else 4), pos + 4 + length
            while sub + 4 <= end:
                out.append(sub + 2)
                sub += 4 + int.from_bytes(pdu[sub + 2 : sub + 4], "big")
        pos += 4 + length
    return out


RQ_CORPUS = [legal_rq(), legal_rq(rich=True), legal_rq(contexts=40), legal_rq("DICOMCONF ", " X")]
_RQ_ITEM_OFFSETS = [_item_length_offsets(rq) for rq in RQ_CORPUS]
ECHO_COMMAND = dimse.encode_command(dimse.c_echo_rq(1).command)
STORE_COMMAND = dimse.encode_command(dimse.c_store_rq(1, CT, "1.2.3.4.5", context_id=3).command)
RELEASE_RQ = AReleaseRQ().encode()
RELEASE_RP = AReleaseRP().encode()


def pdv(context_id: int, mch: int, data: bytes, length: int | None = None) -> bytes:
    """One PDV item (PS3.8 9.3.5.1); ``length`` lies about its size when given."""
    return struct.pack(">IBB", len(data) + 2 if length is None else length, context_id, mch) + data


def pdata(*pdvs: bytes, length: int | None = None) -> bytes:
    """A P-DATA-TF PDU around PDV items (PS3.8 9.3.5); ``length`` lies about its size when given."""
    body = b"".join(pdvs)
    return struct.pack(">BBI", C.P_DATA_TF, 0, len(body) if length is None else length) + body


def pdu(pdu_type: int, body: bytes = b"") -> bytes:
    return struct.pack(">BBI", pdu_type, 0, len(body)) + body


# ---------------------------------------------------------------- mutations

MUTATIONS = ("flip", "byte", "truncate", "pdu-length", "item-length", "insert", "remove", "repeat")


def _length_lie(rng: random.Random, actual: int, width: int) -> int:
    top = (1 << (8 * width)) - 1
    return rng.choice([0, 1, max(actual - 1, 0), actual + 1, actual + rng.randint(2, 4096), top, top >> 1,
                       rng.randrange(top + 1)]) & top


def mutate(data: bytes, rng: random.Random, count: int | None = None, item_offsets: list[int] | None = None) -> bytes:
    """``data`` with ``count`` (default 1 to 3) mutations of :data:`MUTATIONS`."""
    out = bytearray(data)
    for _ in range(count or rng.randint(1, 3)):
        if not out:
            break
        kind, pos = rng.choice(MUTATIONS), rng.randrange(len(out))
        if kind == "flip":
            out[pos] ^= 1 << rng.randrange(8)
        elif kind == "byte":
            out[pos] = rng.randrange(256)
        elif kind == "truncate":
            del out[pos:]
        elif kind == "pdu-length" and len(out) >= 6:
            struct.pack_into(">I", out, 2, _length_lie(rng, len(out) - 6, 4))
        elif kind == "item-length":
            offsets = [o for o in (item_offsets or []) if o + 2 <= len(out)] or [pos] * (pos + 2 <= len(out))
            if offsets:
                at = rng.choice(offsets)
                struct.pack_into(">H", out, at, _length_lie(rng, int.from_bytes(out[at : at + 2], "big"), 2))
        elif kind == "insert":
            out[pos:pos] = rng.randbytes(rng.randint(1, 32))
        elif kind == "remove":
            del out[pos : pos + rng.randint(1, 32)]
        elif kind == "repeat":
            out[pos:pos] = out[pos : pos + rng.randint(1, 64)]
    return bytes(out)


# ---------------------------------------------------------------- attacks on an SCP


@dataclass(slots=True)
class Attack:
    """One hostile connection: what to send at once, what after the A-ASSOCIATE-AC, and whether to stay silent."""

    kind: str
    variant: str
    first: bytes
    after_ac: bytes | None = None  # sent once an A-ASSOCIATE-AC came back (None: do not wait for one)
    stall: bool = False  # then stay silent and open: the SCP must close by its own timers
    flood: bytes = b""  # sent again and again after the A-ASSOCIATE-AC (flood())


def random_bytes(rng: random.Random) -> Attack:
    size = rng.choice([rng.randint(1, 8), rng.randint(9, 300), rng.randint(300, 20000)])
    data = rng.randbytes(size)
    variant = "raw"
    if rng.random() < 0.4:  # a plausible header, so the framing reads on
        variant = "typed"
        data = struct.pack(">BBI", rng.randint(1, 7), rng.choice([0, rng.randrange(256)]),
                           rng.choice([size, rng.randrange(size + 1), rng.randrange(1 << 32)])) + data
    return Attack("random", variant, data)


def mutated_rq(rng: random.Random) -> Attack:
    i = rng.randrange(len(RQ_CORPUS))
    return Attack("mutated-rq", f"corpus{i}", mutate(RQ_CORPUS[i], rng, item_offsets=_RQ_ITEM_OFFSETS[i]))


def _command_without(element: str) -> bytes:
    ds = dimse.c_echo_rq(1).command
    delattr(ds, element)
    return dimse.encode_command(ds)


def _command_with(**values) -> bytes:
    ds = dimse.c_echo_rq(1).command
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return dimse.encode_command(ds)


_BAD_COMMANDS = {
    "no-command-field": _command_without("CommandField"),
    "no-message-id": _command_without("MessageID"),
    "no-sop-class": _command_without("AffectedSOPClassUID"),
    "unknown-command-field": _command_with(CommandField=0x0FFF),
    "stray-response": _command_with(CommandField=dimse.C_ECHO_RSP),
    "echo-with-data-set": _command_with(CommandDataSetType=0x0000),
    "store-on-verification": STORE_COMMAND,
}


def _bad_pdata(rng: random.Random) -> tuple[str, bytes]:
    """(variant, bytes sent in Sta6) breaking PS3.8 9.3.5 / Annex E or PS3.7 6.3."""
    last_cmd = C.MCH_COMMAND | C.MCH_LAST
    choice = rng.randrange(16)
    if choice == 0:
        return "pdv-length-long", pdata(pdv(1, last_cmd, ECHO_COMMAND, len(ECHO_COMMAND) + 2 + rng.randint(1, 5000)))
    if choice == 1:
        return "pdv-length-short", pdata(pdv(1, last_cmd, ECHO_COMMAND, rng.choice([0, 1])))
    if choice == 2:
        return "command-random", pdata(pdv(1, last_cmd, rng.randbytes(rng.randint(0, 400))))
    if choice == 3:
        return "command-mutated", pdata(pdv(1, last_cmd, mutate(ECHO_COMMAND, rng)))
    if choice == 4:
        return "command-truncated", pdata(pdv(1, last_cmd, ECHO_COMMAND[: rng.randrange(len(ECHO_COMMAND))]))
    if choice == 5:
        name = rng.choice(sorted(_BAD_COMMANDS))
        tail = RELEASE_RQ if rng.random() < 0.5 else b""
        return f"command-{name}", pdata(pdv(1, last_cmd, _BAD_COMMANDS[name])) + tail
    if choice == 6:
        return "context-even", pdata(pdv(rng.choice([0, 2, 254]), last_cmd, ECHO_COMMAND))
    if choice == 7:
        return "context-unaccepted", pdata(pdv(rng.randrange(5, 256, 2), last_cmd, ECHO_COMMAND))
    if choice == 8:
        return "data-before-command", pdata(pdv(1, C.MCH_LAST, rng.randbytes(rng.randint(1, 200))))
    if choice == 9:
        return "control-bits", pdata(pdv(1, last_cmd | (rng.randrange(1, 64) << 2), ECHO_COMMAND))
    if choice == 10:
        size = rng.randint(SCP_MAX_PDU, 3 * SCP_MAX_PDU)
        return "over-max-length", pdata(pdv(1, C.MCH_COMMAND, rng.randbytes(size)))
    if choice == 11:
        chunks = [pdata(pdv(1, C.MCH_COMMAND, rng.randbytes(8000))) for _ in range(10)]
        return "command-set-flood", b"".join(chunks)
    if choice == 12:
        return "empty-pdata", pdata() + pdata(pdv(1, last_cmd, ECHO_COMMAND))
    if choice == 13:
        wrong = rng.choice([RQ_CORPUS[0], legal_ac_like(), RELEASE_RP,
                            pdu(rng.choice([0x00, 0x08, 0x7F, 0xFF]), b"\0" * 4)])
        return "unexpected-pdu", wrong
    if choice == 14:
        data = rng.randbytes(rng.randint(100, 2000))
        cut = pdata(pdv(3, C.MCH_COMMAND | C.MCH_LAST, STORE_COMMAND), pdv(3, 0, data[: len(data) // 2]))
        return "store-then-wrong-context", cut + pdata(pdv(1, C.MCH_LAST, data[len(data) // 2 :]))
    return "pdu-mutated", mutate(pdata(pdv(1, last_cmd, ECHO_COMMAND)), rng)


def legal_ac_like() -> bytes:
    """An A-ASSOCIATE-AC-typed PDU (sent the wrong way: by a requestor in Sta6)."""
    return bytes([C.A_ASSOCIATE_AC]) + RQ_CORPUS[0][1:]


def bad_pdata(rng: random.Random) -> Attack:
    variant, data = _bad_pdata(rng)
    return Attack("bad-pdata", variant, RQ_CORPUS[rng.randrange(2)], after_ac=data)


def stalled(rng: random.Random) -> Attack:
    rq = RQ_CORPUS[rng.randrange(len(RQ_CORPUS))]
    choice = rng.randrange(8)
    if choice == 0:
        return Attack("stalled", "nothing", b"", stall=True)
    if choice == 1:
        return Attack("stalled", "partial-header", rq[: rng.randint(1, 5)], stall=True)
    if choice == 2:
        return Attack("stalled", "partial-rq", rq[: rng.randint(6, len(rq) - 1)], stall=True)
    if choice == 3:
        whole = pdata(pdv(1, C.MCH_COMMAND | C.MCH_LAST, ECHO_COMMAND))
        return Attack("stalled", "partial-pdata", rq, after_ac=whole[: rng.randint(1, len(whole) - 1)], stall=True)
    if choice == 4:
        return Attack("stalled", "associated-silence", rq, after_ac=b"", stall=True)
    if choice == 5:
        return Attack("stalled", "after-abort", rng.randbytes(rng.randint(1, 40)) + b"\x08" * 6, stall=True)
    if choice == 6:
        return Attack("stalled", "after-release", rq, after_ac=RELEASE_RQ, stall=True)
    return Attack("stalled", "after-rejection", legal_rq(called="NOT-OUR-AE"), stall=True)


FLOODS = ("echo-rq", "cancel-rq", "endless-data-set", "bad-pdata", "associate-rq", "release-rp")


def flood(rng: random.Random, variant: str | None = None) -> Attack:
    """A legal A-ASSOCIATE-RQ, then PDUs of one ``variant`` (:data:`FLOODS`) as fast as the peer reads."""
    variant = variant or rng.choice(FLOODS)
    if variant == "echo-rq":  # distinct Message IDs (PS3.7 9.1.5.1), so each is a legal request
        first = rng.randrange(1, 60000)
        return Attack("flood", variant, RQ_CORPUS[1], after_ac=b"", flood=b"".join(
            pdata(pdv(1, C.MCH_COMMAND | C.MCH_LAST, dimse.encode_command(dimse.c_echo_rq(first + i).command)))
            for i in range(2000)))
    elif variant == "cancel-rq":
        cancel = dimse.encode_command(_cancel_command())
        unit = pdata(pdv(1, C.MCH_COMMAND | C.MCH_LAST, cancel))
    elif variant == "endless-data-set":  # a C-STORE-RQ command on context 3, then fragments without a last
        unit = pdata(pdv(3, 0x00, rng.randbytes(64)))
        return Attack("flood", variant, RQ_CORPUS[1], after_ac=pdata(pdv(3, C.MCH_COMMAND | C.MCH_LAST,
                                                                           STORE_COMMAND)), flood=unit * 64)
    elif variant == "bad-pdata":
        unit = pdata(pdv(1, C.MCH_COMMAND | C.MCH_LAST, rng.randbytes(40)), length=None)[:-3] + b"\x00" * 3
    elif variant == "associate-rq":
        unit = RQ_CORPUS[0]
    else:
        unit = RELEASE_RP
    return Attack("flood", variant, RQ_CORPUS[1], after_ac=b"", flood=unit * max(1, 4096 // len(unit)))


def _cancel_command():
    from pydicom import Dataset

    command = Dataset()  # C-CANCEL-RQ, PS3.7 9.3.2.3
    command.CommandField = dimse.C_CANCEL_RQ
    command.MessageIDBeingRespondedTo = 1
    command.CommandDataSetType = dimse.NO_DATA_SET
    return command


_MAKERS = {"random": random_bytes, "mutated-rq": mutated_rq, "bad-pdata": bad_pdata, "stalled": stalled}


def make_attack(rng: random.Random, kind: str | None = None, weights: dict[str, float] = WEIGHTS) -> Attack:
    """One hostile connection of ``kind`` (drawn by ``weights`` when None)."""
    if kind is None:
        kind = rng.choices(list(weights), weights=list(weights.values()))[0]
    return _MAKERS[kind](rng)


@dataclass(slots=True)
class Timers:
    """The SCP's timers (seconds) and the margin a hang is judged by."""

    artim: float = 2.0
    idle: float = 4.0
    margin: float = 3.0
    connect: float = 10.0

    def bound(self, attack: Attack) -> float:
        """The longest the SCP may take to answer or close: ARTIM in Sta2 and Sta13, idle then ARTIM in Sta6."""
        if attack.after_ac is None:
            return self.artim + self.margin
        return self.idle + self.artim + self.margin


@dataclass(slots=True)
class Outcome:
    attack: Attack
    outcome: str
    seconds: float
    detail: str = ""


async def _read_pdu_header(reader: asyncio.StreamReader, timeout: float) -> tuple[int, bytes] | None:
    """The next whole PDU (type, body), or None at EOF."""
    try:
        head = await asyncio.wait_for(reader.readexactly(6), timeout)
        body = await asyncio.wait_for(reader.readexactly(struct.unpack(">BBI", head)[2]), timeout)
    except asyncio.IncompleteReadError:
        return None
    return head[0], body


async def _until_closed(reader: asyncio.StreamReader, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), max(deadline - loop.time(), 0.0))
        if not chunk:
            return


async def _play(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, attack: Attack,
                deadline: float) -> tuple[str, str]:
    """(outcome, detail) of one attack on an open connection; raises TimeoutError at ``deadline``."""
    loop = asyncio.get_running_loop()
    if attack.first:
        writer.write(attack.first)
    if attack.after_ac is not None:
        got = await _read_pdu_header(reader, max(deadline - loop.time(), 0.0))
        if got is None:
            return "closed", "before A-ASSOCIATE-AC"
        if got[0] != C.A_ASSOCIATE_AC:
            if not attack.stall:
                return "answered", C.PDU_NAMES.get(got[0], hex(got[0]))
        elif attack.after_ac:
            writer.write(attack.after_ac)
    if attack.stall:
        await _until_closed(reader, deadline)
        return "closed", ""
    chunk = await asyncio.wait_for(reader.read(65536), max(deadline - loop.time(), 0.0))
    return ("answered", C.PDU_NAMES.get(chunk[0], hex(chunk[0]))) if chunk else ("closed", "")


async def run_attack(port: int, attack: Attack, timers: Timers, host: str = "127.0.0.1") -> Outcome:
    """Play ``attack`` against ``host:port``; what the SCP did (see the module docstring)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timers.connect)
    except (OSError, asyncio.TimeoutError) as exc:
        return Outcome(attack, "connect-failed", loop.time() - start, repr(exc))
    try:
        outcome, detail = await _play(reader, writer, attack, start + timers.bound(attack))
    except asyncio.TimeoutError:
        outcome, detail = "hang", ""
    except (ConnectionResetError, BrokenPipeError):
        outcome, detail = "reset", ""
    if outcome == "hang":
        writer.transport.abort()
    else:
        writer.close()
    return Outcome(attack, outcome, loop.time() - start, detail)


async def attack_many(port: int, attacks, timers: Timers, concurrency: int, on_outcome,
                      stop_at: float | None = None) -> None:
    """Play every attack of the iterable ``attacks`` with at most ``concurrency`` at once; ``on_outcome`` each.

    Stops drawing new attacks at the monotonic time ``stop_at``.
    """
    sem = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task] = set()

    async def one(attack: Attack) -> None:
        try:
            on_outcome(await run_attack(port, attack, timers))
        finally:
            sem.release()

    for attack in attacks:
        if stop_at is not None and time.monotonic() >= stop_at:
            break
        await sem.acquire()
        task = asyncio.create_task(one(attack))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)


# ---------------------------------------------------------------- a good client


def good_client(port: int, stop, count: int, pace: float, out, per_association: int = 100) -> None:
    """A well-behaved SCU (a process body): associate, C-ECHO ``per_association`` times, release, again.

    Runs until ``count`` echoes were timed (``count`` > 0) or ``stop`` (a
    multiprocessing Event) is set, sleeping ``pace`` seconds between echoes, and
    puts ``{"echo": [seconds...], "associate": [seconds...], "errors": [text...]}``
    on the queue ``out``.  An echo's time runs from the C-ECHO-RQ sent to the
    last fragment of the C-ECHO-RSP read (PS3.7 9.3.5).
    """
    import socket

    from bench_scp_common import ECHO_RQ, Reader, associate_rq

    rq = associate_rq()
    echo, assoc, errors = [], [], []
    clock = time.perf_counter

    def done() -> bool:
        return len(echo) >= count if count else stop.is_set()

    while not done():
        try:
            t0 = clock()
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = Reader(sock)
            try:
                sock.sendall(rq)
                if reader.pdu()[0] != C.A_ASSOCIATE_AC:
                    raise RuntimeError("association not accepted")
                assoc.append(clock() - t0)
                for _ in range(per_association):
                    t = clock()
                    sock.sendall(ECHO_RQ)
                    while True:
                        pdu_type, body = reader.pdu()
                        if pdu_type != C.P_DATA_TF:
                            raise RuntimeError(f"expected P-DATA-TF, got PDU type {pdu_type:#04x}")
                        if body[5] & 0x03 == 0x03:
                            break
                    echo.append(clock() - t)
                    if done():
                        break
                    if pace:
                        time.sleep(pace)
                sock.sendall(RELEASE_RQ)
                if reader.pdu()[0] != C.A_RELEASE_RP:
                    raise RuntimeError("no A-RELEASE-RP")
            finally:
                sock.close()
        except (OSError, RuntimeError, ConnectionError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.05)
    out.put({"echo": echo, "associate": assoc, "errors": errors})


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# ---------------------------------------------------------------- the reference SCP as a process

TRACEBACK_MARKERS = ("Traceback (most recent call last)", "Exception in callback", "Fatal error",
                     "Task exception was never retrieved", "Unhandled exception")
_LISTENING = re.compile(rb"dicomconf scp listening on 127\.0\.0\.1:(\d+)")
_OUTCOME = re.compile(rb"outcome=(.*?) duration=")
_OUTCOME_CLASSES = ("released", "rejected", "aborted by peer", "aborted", "ARTIM expired", "idle",
                    "closed before A-ASSOCIATE-RQ", "connection closed during association")


class SCPProcess:
    """``dicomconf scp --port 0`` on 127.0.0.1 as a child process; stopped by its own process id."""

    def __init__(self, config_text: str = "", *args: str, start_timeout: float = 30.0) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="dicomconf-fuzz-")
        config = os.path.join(self.dir.name, "scp.yaml")
        with open(config, "w") as f:
            f.write(config_text or "{}\n")
        self.log_path = os.path.join(self.dir.name, "scp.log")
        self._log = open(self.log_path, "wb")
        argv = [sys.executable, "-m", "dicomconf.cli", "scp", "--host", "127.0.0.1", "--port", "0",
                "--config", config, *args]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=tree_env())
        self.exit_code: int | None = None
        deadline = time.monotonic() + start_timeout
        while True:
            m = _LISTENING.search(self.log())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                text = self.log().decode(errors="replace")
                self.cleanup()
                raise RuntimeError(f"dicomconf scp did not start: {text.strip()[-2000:]}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> bytes:
        with open(self.log_path, "rb") as f:
            return f.read()

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def tracebacks(self) -> list[str]:
        """Lines of the log that show an exception escaped (a crash inside the server, even if it lives)."""
        lines = self.log().decode(errors="replace").splitlines()
        return [line for line in lines if any(m in line for m in TRACEBACK_MARKERS)]

    def outcomes(self) -> collections.Counter:
        """How the associations it logged ended (``released``, ``aborted``, ``ARTIM expired`` ...)."""
        counts: collections.Counter = collections.Counter()
        for m in _OUTCOME.finditer(self.log()):
            text = m.group(1).decode(errors="replace")
            counts[next((c for c in _OUTCOME_CLASSES if text.startswith(c)), text)] += 1
        return counts

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM by pid, wait; SIGKILL if it does not end.  Returns its exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_code = None
        elif self.exit_code is None:
            self.exit_code = self.proc.returncode
        self._log.close()
        return self.exit_code

    def cleanup(self) -> None:
        self.stop()
        self.dir.cleanup()

    def __enter__(self) -> "SCPProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


def fuzz_config(timers: Timers, extra: str = "") -> str:
    """The SCP's configuration for a fuzz run: its timers short, so stalls end in seconds."""
    return f"artim_timeout: {timers.artim}\nidle_timeout: {timers.idle}\n{extra}"


__all__ = ["Attack", "Outcome", "SCPProcess", "Timers", "KINDS", "WEIGHTS", "OUTCOMES", "make_attack",
           "run_attack", "attack_many", "mutate", "legal_rq", "pdata", "pdv", "pdu", "fuzz_config", "good_client",
           "percentile", "tree_env"]
