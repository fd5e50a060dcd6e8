"""The floor of the echo benchmark: an asyncio server that only replays recorded answers.

No DICOM work per connection: it frames PDUs by their six-byte header and
answers an A-ASSOCIATE-RQ, a P-DATA-TF and an A-RELEASE-RQ with the bytes the
reference SCP's core produced once, at start, for the benchmark's own
requests; then closes like the SCP does.  What ``bench_scp_echo.py --floor``
measures with it is the cost of the event loop, the transport and the
syscalls alone, the bound any asyncio server on this machine stays under.

    python benchmarks/bench_scp_replay.py PORT asyncio|uvloop
"""

from __future__ import annotations

import asyncio
import struct
import sys

from bench_scp_common import ECHO_RQ, RELEASE_RQ, associate_rq

from dicomconf.scp.config import SCPConfig
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.association import Association
from dicomconf.ul.negotiation import negotiate
from dicomconf.ul.pdu import AReleaseRP


def recorded_answers() -> dict[int, bytes]:
    """Our core's answers to the benchmark's three requests, by request PDU type."""
    assoc = Association("acceptor")
    assoc.connection_made()
    (rq_event,) = [e for e in assoc.receive_data(associate_rq()) if type(e).__name__ == "AssociateRequested"]
    ac = assoc.send(negotiate(rq_event.pdu, SCPConfig().policy()).reply)
    (msg_event,) = [e for e in assoc.receive_data(ECHO_RQ) if type(e).__name__ == "MessageReceived"]
    rsp = assoc.send(dimse.c_echo_rsp(msg_event.message))
    assoc.receive_data(RELEASE_RQ)
    rp = assoc.send(AReleaseRP())
    return {C.A_ASSOCIATE_RQ: ac, C.P_DATA_TF: rsp, C.A_RELEASE_RQ: rp}


class Replay(asyncio.Protocol):
    answers: dict[int, bytes] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 6:
            pdu_type, _, length = struct.unpack_from(">BBI", buf)
            if len(buf) < 6 + length:
                return
            del buf[: 6 + length]
            self.transport.write(self.answers[pdu_type])
            if pdu_type == C.A_RELEASE_RQ:
                self.transport.close()


async def serve(port: int) -> None:
    Replay.answers = recorded_answers()
    server = await asyncio.get_running_loop().create_server(Replay, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    port, loop = int(sys.argv[1]), sys.argv[2]
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(port))


if __name__ == "__main__":
    main()
