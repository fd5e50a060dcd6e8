"""Load: many simultaneous associations are all served; stalled clients delay nobody."""

from __future__ import annotations

import asyncio
import resource
import struct
import time

import pytest
from scp_testkit import RELEASE_RQ, associate_rq, echo_rq

from dicomconf.ul import constants as C

pytestmark = pytest.mark.network

RQ, ECHO = associate_rq(), echo_rq()


def _ensure_files(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            pytest.skip(f"needs {n} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


async def _read_pdu(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(6)
    pdu_type, _, length = struct.unpack(">BBI", head)
    return pdu_type, await reader.readexactly(length)


async def _open(port: int):
    for attempt in range(50):
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:  # a transient refusal while the accept queue drains
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("could not connect")


async def _associate_echo_release(reader, writer) -> bool:
    writer.write(RQ)
    if (await _read_pdu(reader))[0] != C.A_ASSOCIATE_AC:
        return False
    writer.write(ECHO)
    pdu_type, body = await _read_pdu(reader)
    # one P-DATA-TF, one PDV: the command set's Status (0000,0900) is its last element
    if pdu_type != C.P_DATA_TF or body[-2:] != b"\x00\x00" or body[-10:-6] != b"\x00\x00\x00\x09":
        return False
    writer.write(RELEASE_RQ)
    ok = (await _read_pdu(reader))[0] == C.A_RELEASE_RP
    writer.close()
    return ok


def test_1000_simultaneous_associations_all_served(scp_factory):
    n = 1000
    _ensure_files(2 * n + 500)
    handle = scp_factory(artim_timeout=10.0, idle_timeout=20.0)

    async def main() -> list[bool]:
        conns = await asyncio.gather(*(_open(handle.port) for _ in range(n)))
        # every connection is open before any associates: all n are held at once
        return await asyncio.wait_for(asyncio.gather(*(_associate_echo_release(r, w) for r, w in conns)), 60)

    results = asyncio.run(main())
    assert sum(results) == n
    deadline = time.monotonic() + 5
    while handle.scp.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert handle.scp.active == 0, "associations still counted after every peer released"


def test_stalled_half_sent_pdus_do_not_delay_a_good_client(scp_factory):
    stalled_n = 200
    _ensure_files(2 * stalled_n + 200)
    handle = scp_factory(artim_timeout=30.0, idle_timeout=30.0)

    async def main() -> float:
        stalled = await asyncio.gather(*(_open(handle.port) for _ in range(stalled_n)))
        for _, w in stalled:
            w.write(RQ[: len(RQ) // 2])
            await w.drain()
        await asyncio.sleep(0.2)
        start = time.monotonic()
        reader, writer = await _open(handle.port)
        ok = await asyncio.wait_for(_associate_echo_release(reader, writer), 5)
        elapsed = time.monotonic() - start
        assert ok
        for _, w in stalled:
            w.close()
        return elapsed

    elapsed = asyncio.run(main())
    # Far below ARTIM (30 s): the good client was served while 200 others stalled mid-PDU.
    assert elapsed < 5.0, f"the good client took {elapsed:.2f}s"
