"""A directory store answers only once its index row is committed: a C-FIND after the response sees it."""

from __future__ import annotations

import os

import pytest
from scp_testkit import CT, IVRLE, RawClient, make_dataset

from dicomconf.scp.storage import STATUS_SUCCESS
from dicomconf.services.index import Index
from dicomconf.ul import constants as C
from dicomconf.ul import dimse
from dicomconf.ul.dimse_codec import encode_dataset
from dicomconf.ul.pdu import decode_pdu


def _status(client: RawClient) -> int:
    assembler = dimse.MessageAssembler()
    while True:
        reply = client.recv_pdu()
        assert reply is not None and reply[0] == C.P_DATA_TF
        for message in assembler.add_pdvs(decode_pdu(bytes([reply[0], 0]) + len(reply[1]).to_bytes(4, "big")
                                                     + reply[1]).pdvs):
            if message is not None:
                return message.status


@pytest.mark.network
def test_the_index_row_is_there_when_the_response_arrives(scp_factory, tmp_path):
    """A C-FIND right after a C-STORE's response sees the instance: the row commits before the answer."""
    handle = scp_factory(storage="directory", storage_dir=str(tmp_path), index="default")
    reader = Index(str(tmp_path / "index.sqlite"))  # another connection, as another process would read it
    try:
        with RawClient(handle.port) as client:
            reply = client.associate(contexts=((1, CT, (IVRLE,)),))
            assert reply[0] == C.A_ASSOCIATE_AC
            for i in range(6):
                ds = make_dataset(i, size=600_000)  # several flushes each
                data = encode_dataset(ds, IVRLE)
                client.send(b"".join(dimse.fragment(
                    dimse.c_store_rq(i + 1, CT, ds.SOPInstanceUID, data=data), 16382)))
                assert _status(client) == STATUS_SUCCESS
                located = reader.locate(ds.SOPInstanceUID)
                assert located is not None and located.size == os.path.getsize(located.path)
                assert open(located.path, "rb").read().endswith(data)
    finally:
        reader.close()
