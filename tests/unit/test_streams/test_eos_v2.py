"""``TxnOffsetCommit`` v3 on the wire (flexible version: compact strings and arrays, tagged fields, request
header v2), built without a broker; the broker's acceptance is tests/integration/test_eos_v2_fencing.py."""

from __future__ import annotations

import struct

import pytest
from aiokafka.errors import KafkaError
from aiokafka.protocol.api import RequestHeader_v2
from aiokafka.structs import TopicPartition

from streams.eos_v2 import (
    UNSTABLE_OFFSET_COMMIT,
    GroupMetadata,
    GroupTxnOffsetCommitRequest,
    OffsetFetchResponse_v7,
    StableOffsetFetchRequest,
    TxnOffsetCommitResponse_v3,
    stable_offsets_answer,
)


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


# --- OffsetFetch v7 with require_stable ------------------------------------------------------------------


def test_stable_offset_fetch_request_bytes_follow_the_spec() -> None:
    request = StableOffsetFetchRequest("g", {"in": [3, 1]}).prepare({9: (0, 9)})
    expected = (
        compact("g")
        + b"\x02"  # one topic
        + compact("in")
        + b"\x03"  # two partitions
        + struct.pack(">ii", 1, 3)
        + b"\x00"  # topic's tagged fields
        + b"\x01"  # require_stable
        + b"\x00"  # request's tagged fields
    )
    assert request.API_VERSION == 7
    assert request.encode() == expected
    assert isinstance(request.build_request_header(correlation_id=1, client_id="c"), RequestHeader_v2)


def test_a_broker_without_require_stable_is_refused_rather_than_answering_unstable_offsets() -> None:
    with pytest.raises(NotImplementedError):
        StableOffsetFetchRequest("g", {"in": [0]}).prepare({9: (0, 6)})


def offset_fetch_answer(*partitions: tuple[int, int, int], error_code: int = 0) -> OffsetFetchResponse_v7:
    """An ``OffsetFetch`` v7 answer for topic ``in``: (partition, offset, error code) each."""
    rows = b"".join(
        struct.pack(">iqi", p, offset, -1) + b"\x00" + struct.pack(">h", code) + b"\x00"
        for p, offset, code in partitions
    )
    body = (
        struct.pack(">i", 0)
        + b"\x02"
        + compact("in")
        + bytes([len(partitions) + 1])
        + rows
        + b"\x00"
        + struct.pack(">h", error_code)
        + b"\x00"
    )
    return OffsetFetchResponse_v7.decode(body)


def test_a_stable_answer_gives_the_committed_offsets_and_leaves_out_partitions_without_one() -> None:
    offsets, retry = stable_offsets_answer(offset_fetch_answer((0, 42, 0), (1, -1, 0)))
    assert offsets == {TopicPartition("in", 0): 42} and retry is None


def test_an_offset_a_pending_transaction_commits_is_asked_again() -> None:
    offsets, retry = stable_offsets_answer(offset_fetch_answer((0, 42, 0), (1, 7, UNSTABLE_OFFSET_COMMIT)))
    assert retry == UNSTABLE_OFFSET_COMMIT


def test_any_other_error_of_the_stable_fetch_raises() -> None:
    with pytest.raises(KafkaError, match="GroupAuthorizationFailedError"):
        stable_offsets_answer(offset_fetch_answer((0, 42, 0), error_code=30))
