"""MessageAssembler's data set sink and bound (a peer cannot grow the receiver without limit)."""

from __future__ import annotations

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul import dimse as D
from dicomconf.ul.association import Association
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.events import MessageReceived
from dicomconf.ul.items import MaximumLength, PresentationContextRQ, UserInformation
from dicomconf.ul.pdu import PDV, AAssociateRQ

CT = "1.2.840.10008.5.1.4.1.1.2"
CL = C.MCH_COMMAND | C.MCH_LAST
CMD_STORE = D.encode_command(D.c_store_rq(7, CT, "1.2.3").command)
CMD_ECHO = D.encode_command(D.c_echo_rq(8).command)


class Sink:
    def __init__(self, command: D.Message) -> None:
        self.command = command
        self.chunks: list[bytes] = []
        self.ended = 0

    def write(self, buf) -> None:
        assert not self.ended, "write after end"
        self.chunks.append(bytes(buf))

    def end(self) -> None:
        self.ended += 1


def _store_pdvs(data: bytes, step: int) -> list[PDV]:
    pdvs = [PDV(1, CL, CMD_STORE)]
    pieces = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    for i, piece in enumerate(pieces):
        pdvs.append(PDV(1, C.MCH_LAST if i == len(pieces) - 1 else 0, piece))
    return pdvs


def _feed(assembler: D.MessageAssembler, pdvs: list[PDV]) -> list[D.Message]:
    out = []
    for pdv in pdvs:
        msg = assembler.add(pdv)
        if msg is not None:
            out.append(msg)
    return out


def test_sink_takes_every_fragment_in_order_and_nothing_is_held():
    sinks: list[Sink] = []

    def open_sink(command: D.Message) -> Sink:
        sinks.append(Sink(command))
        return sinks[-1]

    data = bytes(range(256)) * 40
    assembler = D.MessageAssembler({1}, data_sink=open_sink)
    (msg,) = _feed(assembler, _store_pdvs(data, 1000))
    (sink,) = sinks
    assert sink.command.command_field == D.C_STORE_RQ and sink.command.affected_sop_instance_uid == "1.2.3"
    assert sink.command.data_length is None  # the sink is opened before any data set byte
    assert b"".join(sink.chunks) == data and len(sink.chunks) == 11 and sink.ended == 1
    assert msg.data_sink is sink and msg.data_length == len(data)
    assert msg.data is None and msg.data_parts == () and not msg.data_dropped
    assert msg.message_id == 7 and msg.affected_sop_class_uid == CT
    with pytest.raises(LocalProtocolError, match="held here"):
        msg.dataset(C.IMPLICIT_VR_LITTLE_ENDIAN)


def test_sink_is_asked_only_for_data_sets_and_may_decline():
    asked: list[int] = []

    def decline(command: D.Message):
        asked.append(command.command_field)
        return None

    assembler = D.MessageAssembler({1}, data_sink=decline)
    out = _feed(assembler, [PDV(1, CL, CMD_ECHO), *_store_pdvs(b"abcd" * 10, 7)])
    assert asked == [D.C_STORE_RQ]
    assert [m.command_field for m in out] == [D.C_ECHO_RQ, D.C_STORE_RQ]
    assert out[1].data == b"abcd" * 10 and out[1].data_sink is None


def test_sink_of_an_incomplete_message_is_never_ended():
    sinks: list[Sink] = []
    assembler = D.MessageAssembler({1}, data_sink=lambda c: sinks.append(Sink(c)) or sinks[-1])
    assembler.add(PDV(1, CL, CMD_STORE))
    assembler.add(PDV(1, 0, b"x" * 100))
    with pytest.raises(RemoteProtocolError, match="was due"):
        assembler.add(PDV(1, CL, CMD_ECHO))
    assert sinks[0].chunks == [b"x" * 100] and sinks[0].ended == 0


@pytest.mark.parametrize("size, dropped", [(999, False), (1000, False), (1001, True), (50_000, True)])
def test_max_data_length_bounds_a_held_data_set(size, dropped):
    assembler = D.MessageAssembler({1}, max_data_length=1000)
    data = b"\x01" * size
    (msg,) = _feed(assembler, _store_pdvs(data, 300))
    assert msg.data_dropped is dropped
    assert msg.data_length == size
    if dropped:
        assert msg.data is None and msg.data_parts == () and msg.data_sink is None
        assert assembler._parts == []  # nothing kept past the bound
    else:
        assert msg.data == data
    # the assembler is ready for the next message, and the bound applies afresh
    (again,) = _feed(assembler, _store_pdvs(b"\x02" * 10, 4))
    assert again.data == b"\x02" * 10 and not again.data_dropped


def test_dropping_keeps_memory_flat_while_data_keeps_coming():
    assembler = D.MessageAssembler({1}, max_data_length=4096)
    assembler.add(PDV(1, CL, CMD_STORE))
    for _ in range(2000):
        assembler.add(PDV(1, 0, b"y" * 2048))
        assert len(assembler._parts) <= 2
    msg = assembler.add(PDV(1, C.MCH_LAST, b"z"))
    assert msg.data_dropped and msg.data_length == 2000 * 2048 + 1


def _rq() -> bytes:
    pcs = (PresentationContextRQ(1, CT, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),)
    return AAssociateRQ("SCP", "SCU", pcs, UserInformation((MaximumLength(16384),))).encode()


def test_association_hands_sink_and_bound_to_its_assembler():
    from dicomconf.ul.negotiation import AcceptorPolicy, negotiate

    sinks: list[Sink] = []
    assoc = Association("acceptor", data_sink=lambda c: sinks.append(Sink(c)) or sinks[-1], max_data_length=10)
    assoc.connection_made()
    (requested,) = [e for e in assoc.receive_data(_rq()) if type(e).__name__ == "AssociateRequested"]
    policy = AcceptorPolicy(ae_titles=("SCP",), supported={CT: (C.IMPLICIT_VR_LITTLE_ENDIAN,)})
    assoc.send(negotiate(requested.pdu, policy).reply)
    message = D.c_store_rq(1, CT, "1.2.9", data=b"q" * 5000)
    wire = b"".join(D.fragment(message, 1000))
    events = assoc.receive_data(wire)
    (received,) = [e for e in events if isinstance(e, MessageReceived)]
    assert received.message.data_sink is sinks[0] and b"".join(sinks[0].chunks) == b"q" * 5000
    assert assoc.state == "Sta6"


def test_endless_command_set_is_refused():
    assembler = D.MessageAssembler({1})
    with pytest.raises(RemoteProtocolError, match="command set of more than") as info:
        for _ in range(D.MAX_COMMAND_SET_LENGTH // 1000 + 2):
            assembler.add(PDV(1, C.MCH_COMMAND, b"\x00" * 1000))
    assert info.value.abort == (C.ABORT_SOURCE_PROVIDER, C.ABORT_REASON_NOT_SPECIFIED)
    assert assembler._parts == []
