"""A peer that never stops sending cannot hold the SCU past its timeouts (PS3.8 9.1.5, 9.3.5).

Each test gives a :class:`~dicomconf.scu.connection.Connection` a socket that
always has more bytes ready (an in-memory stand-in: every ``recv`` returns at
once), which is what a flooding peer looks like to a reader slower than it:
a PDU whose announced length is never reached, P-DATA-TF PDUs of a data set
that never ends, P-DATA-TF instead of the A-RELEASE-RP.  Every wait must
end at its deadline with ``Silence``, and a send or a close must read only
a bounded amount first.  A peer that has reset the connection when the
reference SCU aborts or answers its A-RELEASE-RQ ends the job with an exit
status, and a response without Status (PS3.7 9.3) is an
``UnexpectedReply``, never an internal error.
"""

from __future__ import annotations

import struct
import threading
import time

import pytest

from dicomconf.scu import connection as connection_module
from dicomconf.scu.client import SCU
from dicomconf.scu.connection import Connection, Silence
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.pdu import AAbort, AReleaseRQ, PDataTF, PDV
from dicomconf.wire.capture import Conversation

TIMEOUT = 0.3
SLACK = 1.5  # seconds beyond the timeout a loaded CI machine may take


class EndlessSocket:
    """A connected socket whose peer always has sent more: ``first`` once, then ``again`` on every recv."""

    def __init__(self, again: bytes, first: bytes = b"") -> None:
        self.first, self.again = first, again
        self.received = 0  # bytes handed to the reader
        self.sent = bytearray()

    def recv(self, size: int) -> bytes:
        data, self.first = (self.first or self.again), b""
        self.received += len(data)
        return data

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def getsockname(self):
        return ("127.0.0.1", 40000)

    def getpeername(self):
        return ("127.0.0.1", 104)

    def settimeout(self, timeout) -> None:
        pass

    def setsockopt(self, *args) -> None:
        pass

    def shutdown(self, how) -> None:
        pass

    def close(self) -> None:
        pass


def connection(sock: EndlessSocket) -> Connection:
    return Connection(sock, Conversation(sock.getsockname(), sock.getpeername()), timeout=TIMEOUT)


def data_fragments(count: int = 200) -> bytes:
    """P-DATA-TF PDUs, each one PDV with a data set fragment that is not the last (PS3.8 E.2)."""
    return PDataTF((PDV(1, 0x00, b"\x00" * 64),)).encode() * count


def associated_scu(sock: EndlessSocket) -> SCU:
    scu = SCU(connection(sock))
    scu.accepted = {1: (C.VERIFICATION_SOP_CLASS, C.IMPLICIT_VR_LITTLE_ENDIAN)}
    scu._assembler = dimse.MessageAssembler({1})
    return scu


def elapsed(fn, *args) -> float:
    """Seconds ``fn(*args)`` took to raise Silence, run on a thread so that a regression fails, not hangs."""
    box: dict = {}

    def run() -> None:
        start = time.monotonic()
        try:
            fn(*args)
        except BaseException as exc:
            box["raised"] = exc
        box["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIMEOUT + SLACK + 5)
    assert not thread.is_alive(), f"{fn.__qualname__} still waiting {TIMEOUT + SLACK + 5:g} s after {TIMEOUT} s"
    assert isinstance(box.get("raised"), Silence), box.get("raised")
    return box["seconds"]


def test_pdu_that_never_completes_ends_in_silence():
    # A P-DATA-TF announcing almost 2 GiB whose body keeps coming: no whole PDU, ever (the receive
    # bound raised above it, so that the framer waits for it, as it does for any PDU under the bound).
    sock = EndlessSocket(b"\x00" * 4096, first=struct.pack(">BBI", C.P_DATA_TF, 0, 0x7FFFFFF0))
    conn = connection(sock)
    conn.default_receive_bound = 1 << 32
    assert elapsed(conn.receive_pdu, TIMEOUT) < TIMEOUT + SLACK
    assert sock.received > 4096  # it did keep reading until the deadline


def test_message_that_never_completes_ends_in_silence():
    # A C-ECHO-RSP announcing a data set, then data set fragments without a last one.
    rsp = dimse.c_echo_rsp(1)
    rsp.command.CommandDataSetType = 0x0000
    head = PDataTF((PDV(1, C.MCH_COMMAND | C.MCH_LAST, dimse.encode_command(rsp.command)),)).encode()
    sock = EndlessSocket(data_fragments(), first=head)
    scu = associated_scu(sock)
    assert elapsed(scu.echo, TIMEOUT) < TIMEOUT + SLACK
    assert sock.sent.startswith(bytes([C.P_DATA_TF]))  # the C-ECHO-RQ went out


def test_release_answered_with_pdata_forever_ends_in_silence():
    sock = EndlessSocket(data_fragments())
    scu = associated_scu(sock)
    assert elapsed(scu.release, TIMEOUT) < TIMEOUT + SLACK
    assert sock.sent == AReleaseRQ().encode()


def test_wait_closed_against_a_peer_that_keeps_sending_ends_in_silence():
    sock = EndlessSocket(data_fragments())
    conn = connection(sock)
    assert elapsed(conn.wait_closed, TIMEOUT) < TIMEOUT + SLACK
    assert conn.passed_over  # what came meanwhile is kept, as for a peer that stops


@pytest.mark.parametrize("action", ["send", "close"])
def test_send_and_close_read_a_bounded_amount_first(action):
    sock = EndlessSocket(b"\x00" * connection_module.RECV_SIZE,
                         first=struct.pack(">BBI", C.P_DATA_TF, 0, 0x7FFFFFF0))
    conn = connection(sock)
    done = threading.Event()

    def run() -> None:
        conn.send(AAbort(C.ABORT_SOURCE_USER, 0)) if action == "send" else conn.close()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(SLACK + 5), f"{action} still reading what the peer keeps sending"
    if action == "send":
        assert sock.sent == AAbort(C.ABORT_SOURCE_USER, 0).encode()
    else:
        assert not conn.is_open
    assert sock.received <= connection_module.DRAIN_LIMIT + connection_module.RECV_SIZE


# ---------------------------------------------------------------- a peer that is gone, a response without status


class GoneSocket(EndlessSocket):
    """The peer has reset the connection: nothing to read yet, and every write fails."""

    def __init__(self, chunks: tuple[bytes, ...] = ()) -> None:
        super().__init__(b"")
        self.chunks = list(chunks)

    def recv(self, size: int) -> bytes:
        if self.chunks:
            return self.chunks.pop(0)
        raise BlockingIOError()

    def sendall(self, data: bytes) -> None:
        raise ConnectionResetError(104, "Connection reset by peer")


def reference_scu(sock):
    from dicomconf.scu.app import Job, ReferenceSCU

    app = ReferenceSCU(Job("127.0.0.1", 104, "echo", connect_timeout=TIMEOUT, association_timeout=TIMEOUT,
                           dimse_timeout=TIMEOUT, release_timeout=TIMEOUT))
    app.conn = connection(sock)
    return app


def test_reference_scu_abort_to_a_peer_that_reset_ends_the_job():
    from dicomconf.scu.app import NO_ASSOCIATION, Ended

    app = reference_scu(GoneSocket())
    with pytest.raises(Ended) as ended:
        app.abort(C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_UNEXPECTED_PDU, "a PDU we did not expect")
    assert ended.value.status == NO_ASSOCIATION


def test_reference_scu_answering_a_release_to_a_peer_that_reset_ends_the_job():
    from dicomconf.scu.app import FAILED, Ended
    from dicomconf.scu.client import UnexpectedReply
    from dicomconf.scu.connection import Received

    app = reference_scu(GoneSocket())
    rq = AReleaseRQ()
    with pytest.raises(Ended) as ended:
        app.unexpected(UnexpectedReply("expected P-DATA-TF", Received(rq.encode(), rq, None, (), 0.0)))
    assert ended.value.status == FAILED


def test_response_without_status_is_an_unexpected_reply():
    from dicomconf.scu.client import UnexpectedReply

    rsp = dimse.c_echo_rsp(1)
    del rsp.command.Status
    sock = GoneSocket((PDataTF((PDV(1, C.MCH_COMMAND | C.MCH_LAST, dimse.encode_command(rsp.command)),)).encode(),))
    sock.sendall = lambda data: None
    scu = associated_scu(sock)
    with pytest.raises(UnexpectedReply, match="without a Status"):
        scu.echo(TIMEOUT)
