"""``TxnOffsetCommit`` v3 on the wire (flexible version: compact strings and arrays, tagged fields, request
header v2), built without a broker; the broker's acceptance is tests/integration/test_eos_v2_fencing.py."""

from __future__ import annotations

import struct

import pytest
from aiokafka.protocol.api import RequestHeader_v2

from streams.eos_v2 import GroupMetadata, GroupTxnOffsetCommitRequest, TxnOffsetCommitResponse_v3


def compact(text: str) -> bytes:
    data = text.encode()
    return bytes([len(data) + 1]) + data  # unsigned varint length + 1; every length here is < 127


def test_v3_request_bytes_follow_the_spec() -> None:
    group = GroupMetadata(group_id="g", generation_id=5, member_id="m-1", group_instance_id=None)
    request = GroupTxnOffsetCommitRequest(
        transactional_id="app-w0",
        producer_id=1000,
        producer_epoch=3,
        group=group,
        topics=[("in", [(2, 42, "")])],
    ).prepare({28: (0, 3)})
    expected = (
        compact("app-w0")
        + compact("g")
        + struct.pack(">qhi", 1000, 3, 5)
        + compact("m-1")
        + b"\x00"  # group_instance_id: null compact string
        + b"\x02"  # one topic (compact array: count + 1)
        + compact("in")
        + b"\x02"  # one partition
        + struct.pack(">iqi", 2, 42, -1)  # partition, offset, committed_leader_epoch (none)
        + compact("")  # metadata
        + b"\x00"  # partition's tagged fields
        + b"\x00"  # topic's tagged fields
        + b"\x00"  # request's tagged fields
    )
    assert request.API_VERSION == 3
    assert request.encode() == expected
    assert isinstance(request.build_request_header(correlation_id=1, client_id="c"), RequestHeader_v2)


def test_a_broker_without_v3_is_refused_rather_than_committing_unfenced() -> None:
    request = GroupTxnOffsetCommitRequest(
        transactional_id="t", producer_id=1, producer_epoch=0, group=GroupMetadata("g", 1, "m"), topics=[]
    )
    with pytest.raises(NotImplementedError):
        request.prepare({28: (0, 2)})


def test_v3_response_decodes_partition_errors() -> None:
    body = struct.pack(">i", 0) + b"\x02" + compact("in") + b"\x02" + struct.pack(">ih", 2, 22) + b"\x00\x00\x00"
    response = TxnOffsetCommitResponse_v3.decode(body)
    assert response.errors == [("in", [(2, 22, {})], {})]
