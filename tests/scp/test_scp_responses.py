"""The SCP's pre-encoded responses equal the core's general encoder, byte for byte."""

from __future__ import annotations

import pytest
from pydicom import Dataset

from dicomconf.scp.responses import response_command, response_pdata
from dicomconf.ul import constants as C
from dicomconf.ul import dimse


def general(field, message_id, status, sop_class=None, sop_instance=None) -> bytes:
    ds = Dataset()
    if sop_class:
        ds.AffectedSOPClassUID = sop_class
    ds.CommandField = field
    ds.MessageIDBeingRespondedTo = message_id
    ds.CommandDataSetType = dimse.NO_DATA_SET
    ds.Status = status
    if sop_instance:
        ds.AffectedSOPInstanceUID = sop_instance
    return dimse.encode_command(ds)


@pytest.mark.parametrize(
    "field, message_id, status, sop_class, sop_instance",
    [
        (dimse.C_ECHO_RSP, 1, 0x0000, C.VERIFICATION_SOP_CLASS, None),
        (dimse.C_ECHO_RSP, 65535, 0x0000, C.VERIFICATION_SOP_CLASS, None),
        (dimse.C_STORE_RSP, 7, 0x0000, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"),  # odd-length UID padded
        (dimse.C_STORE_RSP, 7, 0xA700, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.56"),
        (dimse.C_FIND_RSP, 3, 0x0211, "1.2.840.10008.5.1.4.1.2.1.1", None),
        (dimse.N_GET_RSP, 3, 0x0211, None, None),
    ],
)
def test_fast_response_equals_general_encoder(field, message_id, status, sop_class, sop_instance):
    fast = response_command(field, message_id, status, sop_class, sop_instance)
    assert fast == general(field, message_id, status, sop_class, sop_instance)
    decoded = dimse.decode_command(fast)
    assert decoded.Status == status and decoded.MessageIDBeingRespondedTo == message_id


def test_response_that_does_not_fit_falls_back():
    command = response_command(dimse.C_ECHO_RSP, 1, 0, C.VERIFICATION_SOP_CLASS)
    assert response_pdata(1, command, 0) is not None
    assert response_pdata(1, command, len(command) + 6) is not None
    assert response_pdata(1, command, len(command) + 5) is None
    pdv = response_pdata(3, command, 16384).pdvs[0]
    assert (pdv.context_id, pdv.is_command, pdv.is_last, bytes(pdv.data)) == (3, True, True, command)
