"""The per-value caches of the codec give what decoding/encoding without them gives, errors included.

Decoded presentation context and user information items are kept by their
exact value bytes; UID/name sub-items, accepted-context items, Maximum
Length sub-items, AE titles and response SOP class elements are encoded once
per value.  A hit must equal a fresh decode, the objects must be immutable,
a fault must be raised (with the offset of the PDU at hand) every time,
credentials are never kept, the caches are bounded, and a finished
association holds no reference back to its driver.
"""

from __future__ import annotations

import dataclasses
import gc
import struct
import weakref

import pytest

from dicomconf.ul import constants as C
from dicomconf.ul import items as I
from dicomconf.ul.association import Association
from dicomconf.ul.errors import LocalProtocolError, RemoteProtocolError
from dicomconf.ul.items import (
    ImplementationClassUID,
    MaximumLength,
    PresentationContextAC,
    PresentationContextRQ,
    UserIdentityAC,
    UserIdentityRQ,
    UserInformation,
)
from dicomconf.ul.pdu import AAssociateAC, AAssociateRQ, AReleaseRP, decode_pdu, encode_ae_title

VERIFICATION = C.VERIFICATION_SOP_CLASS


def _value(item) -> memoryview:
    return memoryview(item.encode())[4:]  # after the 4-byte item header


def test_presentation_context_hit_equals_a_fresh_decode_and_is_frozen():
    pc = PresentationContextRQ(3, VERIFICATION, (C.IMPLICIT_VR_LITTLE_ENDIAN, "1.2.840.10008.1.2.1"))
    value = _value(pc)
    first = I.decode_presentation_context_rq(value, 10)
    again = I.decode_presentation_context_rq(memoryview(bytes(value)), 500)
    assert first == again == pc == I._decode_presentation_context_rq(value, 10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        again.abstract_syntax = "1.2.3"  # type: ignore[misc]
    assert isinstance(again.transfer_syntaxes, tuple)


def test_the_key_is_the_exact_bytes():
    a = PresentationContextRQ(1, VERIFICATION, (C.IMPLICIT_VR_LITTLE_ENDIAN,))
    b = PresentationContextRQ(3, VERIFICATION, (C.IMPLICIT_VR_LITTLE_ENDIAN,))
    assert I.decode_presentation_context_rq(_value(a), 0) == a
    assert I.decode_presentation_context_rq(_value(b), 0) == b  # differs only in the context ID byte


def test_a_faulty_item_raises_with_its_own_offset_every_time():
    raw = bytes(_value(PresentationContextRQ(1, VERIFICATION, (C.IMPLICIT_VR_LITTLE_ENDIAN,))))
    bad = raw[:4] + raw[4 + 4 + len(VERIFICATION):]  # the abstract syntax sub-item removed
    offsets = []
    for base in (20, 300):
        with pytest.raises(RemoteProtocolError) as info:
            I.decode_presentation_context_rq(memoryview(bad), base)
        offsets.append(info.value.offset)
        assert "PS3.8 9.3.2.2.1" in info.value.clause
    assert offsets == [20, 300]


def test_an_rq_pdu_decodes_the_same_twice_and_a_broken_one_fails_the_same_twice():
    ui = UserInformation((MaximumLength(16384), ImplementationClassUID("1.2.3.4")))
    rq = AAssociateRQ("ACC", "REQ", (PresentationContextRQ(1, VERIFICATION, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),), ui)
    raw = rq.encode()
    assert decode_pdu(raw) == decode_pdu(raw) == rq
    broken = bytearray(raw)
    pc_item = 6 + 68 + 4 + len(C.APPLICATION_CONTEXT_NAME)
    assert broken[pc_item] == C.ITEM_PRESENTATION_CONTEXT_RQ
    broken[pc_item + 2] = 0xFF  # its length now overruns the PDU
    errors = []
    decode_pdu(raw)  # its items are kept now
    for _ in range(2):
        with pytest.raises(RemoteProtocolError) as info:
            decode_pdu(bytes(broken))
        errors.append((info.value.message, info.value.clause, info.value.offset))
    assert errors[0] == errors[1] and errors[0][2] == pc_item + 2 and "overruns" in errors[0][0]


def test_user_information_with_credentials_is_never_kept():
    ui = UserInformation((MaximumLength(16384), UserIdentityRQ(2, b"alice", b"secret", 1)))
    cache = I.decode_user_information
    cache.clear()
    decoded = cache(_value(ui), 0)
    assert decoded == ui and len(cache) == 0
    answer = UserInformation((MaximumLength(16384), UserIdentityAC(b"ticket")))
    assert cache(_value(answer), 0) == answer and len(cache) == 0
    plain = UserInformation((MaximumLength(16384),))
    assert cache(_value(plain), 0) == plain and len(cache) == 1


def test_the_cache_is_bounded_and_skips_large_values():
    cache = I._ItemCache(I._decode_presentation_context_rq, entries=4, max_value=200)
    pcs = [PresentationContextRQ(2 * i + 1, VERIFICATION, (C.IMPLICIT_VR_LITTLE_ENDIAN,)) for i in range(10)]
    for pc in pcs:
        assert cache(_value(pc), 0) == pc
    assert len(cache) == 4
    big = PresentationContextRQ(1, VERIFICATION, tuple(f"1.2.3.{i}" for i in range(30)))
    assert len(_value(big)) > 200
    assert cache(_value(big), 0) == big
    assert bytes(_value(big)) not in cache._items and len(cache) == 4


@pytest.mark.parametrize(
    "item",
    [MaximumLength(1.0), MaximumLength(-1), MaximumLength(1 << 32), PresentationContextAC(1.0, 0, "1.2"),
     PresentationContextAC(300, 0, "1.2"), ImplementationClassUID("1.2\u20ac")],
)
def test_encode_caches_never_turn_a_misfit_into_bytes(item):
    MaximumLength(1).encode()  # a cached value equal to 1.0 must not answer for it
    PresentationContextAC(1, 0, "1.2").encode()
    for _ in range(2):
        with pytest.raises(LocalProtocolError):
            item.encode()


def test_cached_encodings_equal_the_plain_ones():
    assert MaximumLength(16382).encode() == I.header(C.SUB_MAXIMUM_LENGTH, struct.pack(">I", 16382))
    ac = PresentationContextAC(5, C.PC_ACCEPTANCE, C.IMPLICIT_VR_LITTLE_ENDIAN)
    body = bytes((5, 0, 0, 0)) + I.header(C.ITEM_TRANSFER_SYNTAX, C.IMPLICIT_VR_LITTLE_ENDIAN.encode())
    assert ac.encode() == ac.encode() == I.header(C.ITEM_PRESENTATION_CONTEXT_AC, body)
    assert PresentationContextAC(5, 3, None).encode() == I.header(C.ITEM_PRESENTATION_CONTEXT_AC, bytes((5, 0, 3, 0)))
    assert encode_ae_title("ABC") == b"ABC" + b" " * 13
    with pytest.raises(LocalProtocolError):
        encode_ae_title("X" * 17)


class _Driver:
    """A driver whose data sink is its own bound method, as the reference SCP's is."""

    def __init__(self) -> None:
        self.assoc = Association("acceptor", data_sink=self.sink)

    def sink(self, command):
        return None


def test_a_finished_association_lets_go_of_its_driver():
    ui = UserInformation((MaximumLength(16382), ImplementationClassUID("1.2.3.4")))
    rq = AAssociateRQ("ACC", "REQ", (PresentationContextRQ(1, VERIFICATION, (C.IMPLICIT_VR_LITTLE_ENDIAN,)),), ui)
    ac = AAssociateAC("ACC", "REQ", (PresentationContextAC(1, C.PC_ACCEPTANCE, C.IMPLICIT_VR_LITTLE_ENDIAN),), ui)
    gc.collect()
    gc.disable()
    try:
        driver = _Driver()
        assoc = driver.assoc
        assoc.connection_made()
        assoc.receive_data(rq.encode())
        assoc.send(ac)
        assert assoc.data_sink is not None
        from dicomconf.ul.pdu import AReleaseRQ

        assoc.receive_data(AReleaseRQ().encode())
        assoc.send(AReleaseRP())
        assoc.connection_lost()
        assert assoc.state == "Sta1" and assoc.data_sink is None
        assert assoc.receive_data(b"\x07\x00\x00\x00\x00\x04\x00\x00\x00\x00") == []  # late bytes: ignored
        gone = weakref.ref(driver)
        del driver, assoc
        assert gone() is None  # freed by reference counting: no cycle left for the collector
    finally:
        gc.enable()


def test_response_command_sop_class_cache_keeps_errors_and_bytes():
    from dicomconf.scp import responses as R

    first = R.response_command(0x8030, 7, 0, C.VERIFICATION_SOP_CLASS)
    again = R.response_command(0x8030, 7, 0, C.VERIFICATION_SOP_CLASS)
    assert first == again and R._ui(R._SOP_CLASS, C.VERIFICATION_SOP_CLASS) in first
    for _ in range(2):
        with pytest.raises(UnicodeEncodeError):
            R.response_command(0x8030, 7, 0, "1.2.\u00e9")
        with pytest.raises(struct.error):
            R.response_command(0x8030, 70000, 0, C.VERIFICATION_SOP_CLASS)
