"""Exactly-once v2 (KIP-447) on aiokafka: input offsets committed in a transaction, fenced by the consumer group.

aiokafka 0.14 sends ``TxnOffsetCommit`` v0 only: transactional id, group id, producer id and epoch. The
group coordinator then cannot tell the partitions' owner from a zombie (a worker that lost them in a
rebalance and has not noticed yet), so fencing has to come from a transactional id per partition (EOS v1).
Version 3 (KIP-447) adds the committing consumer's ``generation_id``, ``member_id`` and
``group_instance_id``; the coordinator refuses a commit from an older generation (``ILLEGAL_GENERATION``) or
from a member no longer in the group (``UNKNOWN_MEMBER_ID``, ``FENCED_INSTANCE_ID``), and the producer's
transaction becomes abortable. One transactional producer per worker then suffices: the group, not the id,
tells who owns a partition.

Version 3 is the first "flexible" version of the API (``flexibleVersions: 3+`` in Kafka's
``TxnOffsetCommitRequest.json``): compact strings and arrays, a tagged-field buffer after every struct, and
request header v2 / response header v1. Version 2 added ``committed_leader_epoch`` per partition. aiokafka's
protocol module has all of these (``CompactString``, ``CompactArray``, ``TaggedFields``,
``RequestStruct.FLEXIBLE_VERSION``); only the request is missing. ``GroupFencedProducer`` adds it through
the one place aiokafka builds that request, its sender's ``_do_txn_offset_commit`` (a private method of
aiokafka 0.14: pinned in pyproject.toml, and ``tests/unit/test_streams/test_eos_v2.py`` checks the bytes).

The other half of KIP-447 is on the consumer side: a new owner of a partition must not read the group's
offsets while a transaction that commits them is still open. aiokafka fetches them with ``OffsetFetch``
v1-v3, which answer the offset from before it; ``StableOffsetsConsumer.stable_committed`` sends v7 with
``require_stable`` (flexible too), which the coordinator answers ``UNSTABLE_OFFSET_COMMIT`` until then.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import aiokafka.errors as Errors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import CoordinationType
from aiokafka.producer.sender import Sender, TxnOffsetCommitHandler
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Boolean, CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields
from aiokafka.structs import OffsetAndMetadata, TopicPartition

log = logging.getLogger(__name__)

TXN_OFFSET_COMMIT = 28
FENCED_INSTANCE_ID = 82  # not in aiokafka 0.14's error table

# The coordinator's answers that mean "this member no longer owns what it commits": the transaction must be
# aborted and the worker must not go on (Java's producer raises CommitFailedException for the same codes).
GROUP_FENCING_ERRORS = frozenset(
    {
        Errors.IllegalGenerationError.errno,
        Errors.UnknownMemberIdError.errno,
        Errors.RebalanceInProgressError.errno,
        FENCED_INSTANCE_ID,
    }
)


@dataclass(frozen=True, slots=True)
class GroupMetadata:
    """What the group coordinator checks on a v3 ``TxnOffsetCommit`` (Java's ``ConsumerGroupMetadata``)."""

    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None = None


class GroupFencedError(Errors.KafkaError):
    """The group coordinator refused the transaction's offsets: this worker's generation is over."""


def group_metadata(consumer: AIOKafkaConsumer) -> GroupMetadata:
    """The consumer's current group generation and member id, read from its coordinator (aiokafka has no
    public ``group_metadata()``; these are the attributes its own ``OffsetCommit`` requests send)."""
    coordinator = consumer._coordinator
    if coordinator is None:
        msg = "the consumer has no group coordinator (no group_id): its offsets cannot be fenced by the group"
        raise ValueError(msg)
    return GroupMetadata(
        group_id=coordinator.group_id,
        generation_id=coordinator.generation,
        member_id=coordinator.member_id,
        group_instance_id=coordinator._group_instance_id,
    )


class TxnOffsetCommitResponse_v3(Response):  # aiokafka names protocol versions Name_vN
    API_KEY = TXN_OFFSET_COMMIT
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "errors",  # "topics" in the spec; aiokafka's handler reads ``errors``
            CompactArray(
                ("topic", CompactString("utf-8")),
                (
                    "partition_errors",
                    CompactArray(("partition", Int32), ("error_code", Int16), ("tags", TaggedFields)),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class TxnOffsetCommitRequest_v3(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = TXN_OFFSET_COMMIT
    API_VERSION = 3
    RESPONSE_TYPE = TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),  # nullable
        (
            "topics",
            CompactArray(
                ("topic", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition", Int32),
                        ("offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("metadata", CompactString("utf-8")),  # nullable
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


NO_LEADER_EPOCH = -1


class GroupTxnOffsetCommitRequest(Request[TxnOffsetCommitRequest_v3]):
    """``TxnOffsetCommit`` v3 only: an older broker must fail loudly, not commit without the group check."""

    API_KEY = TXN_OFFSET_COMMIT

    def __init__(
        self,
        *,
        transactional_id: str,
        producer_id: int,
        producer_epoch: int,
        group: GroupMetadata,
        topics: list[tuple[str, list[tuple[int, int, str]]]],
    ) -> None:
        self._transactional_id = transactional_id
        self._producer_id = producer_id
        self._producer_epoch = producer_epoch
        self._group = group
        self._topics = topics

    def build(self, request_struct_class: type[TxnOffsetCommitRequest_v3]) -> TxnOffsetCommitRequest_v3:
        group = self._group
        topics = [
            (
                topic,
                [(partition, offset, NO_LEADER_EPOCH, metadata, {}) for partition, offset, metadata in partitions],
                {},
            )
            for topic, partitions in self._topics
        ]
        return request_struct_class(
            self._transactional_id,
            group.group_id,
            self._producer_id,
            self._producer_epoch,
            group.generation_id,
            group.member_id,
            group.group_instance_id,
            topics,
            {},
        )


class _GroupTxnOffsetCommitHandler(TxnOffsetCommitHandler):
    """aiokafka's handler with the v3 request, and the group's refusal made an abortable transaction error
    (the base handler would raise it inside the sender task)."""

    def __init__(self, sender: Sender, offsets: dict[TopicPartition, OffsetAndMetadata], group: GroupMetadata):
        super().__init__(sender, offsets, group.group_id)
        self._group = group

    def create_request(self) -> GroupTxnOffsetCommitRequest:
        txn_manager = self._sender._txn_manager
        offset_data: dict[str, list[tuple[int, int, str]]] = collections.defaultdict(list)
        for tp, offset in sorted(self._offsets.items()):
            offset_data[tp.topic].append((tp.partition, offset.offset, offset.metadata))
        return GroupTxnOffsetCommitRequest(
            transactional_id=txn_manager.transactional_id,
            producer_id=txn_manager.producer_id,
            producer_epoch=txn_manager.producer_epoch,
            group=self._group,
            topics=list(offset_data.items()),
        )

    def handle_response(self, resp: TxnOffsetCommitResponse_v3) -> float | None:
        refused = [
            (topic, partition, code)
            for topic, partitions, _tags in resp.errors
            for partition, code, _partition_tags in partitions
            if code in GROUP_FENCING_ERRORS
        ]
        if refused:
            topic, partition, code = refused[0]
            name = "FENCED_INSTANCE_ID" if code == FENCED_INSTANCE_ID else Errors.for_code(code).__name__
            msg = (
                f"the group coordinator refused the offset of {topic}[{partition}] ({name}) for generation "
                f"{self._group.generation_id} of member {self._group.member_id!r}: the partitions belong to "
                "another generation"
            )
            self._sender._txn_manager.error_transaction(GroupFencedError(msg))
            return None
        # The base handler reads (partition, error_code) pairs: drop the tagged fields.
        resp.errors = [
            (topic, [(partition, code) for partition, code, _partition_tags in partitions])
            for topic, partitions, _tags in resp.errors
        ]
        return super().handle_response(resp)


class _GroupFencedSender(Sender):
    """aiokafka's sender, committing transactional offsets with v3 when the group's metadata is known."""

    def __init__(self, sender: Sender) -> None:
        super().__init__(
            sender.client,
            acks=sender._acks,
            txn_manager=sender._txn_manager,
            message_accumulator=sender._message_accumulator,
            retry_backoff_ms=sender._retry_backoff * 1000,
            request_timeout_ms=sender._request_timeout_ms,
        )
        self.groups: dict[str, GroupMetadata] = {}  # group id -> metadata of the commit in flight

    async def _do_txn_offset_commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], group_id: str) -> None:
        group = self.groups.get(group_id)
        if group is None:  # offsets sent with a bare group id: aiokafka's v0 request
            await super()._do_txn_offset_commit(offsets, group_id)
            return
        if not offsets:
            return
        try:
            node_id = await self._find_coordinator(CoordinationType.GROUP, group_id)
        except Errors.GroupAuthorizationFailedError as exc:
            self._txn_manager.error_transaction(exc)
            return
        await _GroupTxnOffsetCommitHandler(self, offsets, group).do(node_id)


class GroupFencedProducer(AIOKafkaProducer):
    """A transactional producer whose offset commits carry the consumer group's generation (KIP-447)."""

    def __init__(self, **config: object) -> None:
        super().__init__(**config)  # type: ignore[arg-type]
        self._sender = _GroupFencedSender(self._sender)

    async def send_offsets_to_transaction(  # type: ignore[override]
        self, offsets: dict[TopicPartition, int], group: GroupMetadata | str
    ) -> None:
        """Add ``offsets`` to the transaction; with ``GroupMetadata``, fenced by the group's generation (a
        stale one fails the transaction with ``GroupFencedError``; abort it)."""
        if isinstance(group, str):
            await super().send_offsets_to_transaction(offsets, group)
            return
        sender: _GroupFencedSender = self._sender  # type: ignore[assignment]
        sender.groups[group.group_id] = group
        try:
            await super().send_offsets_to_transaction(offsets, group.group_id)
        finally:
            sender.groups.pop(group.group_id, None)


# --- stable committed offsets (KIP-447's ``require_stable``) -----------------------------------------------

OFFSET_FETCH = 9
UNSTABLE_OFFSET_COMMIT = 88  # not in aiokafka 0.14's error table
NO_COMMITTED_OFFSET = -1
# Answers after which the same request is sent again: the coordinator is loading or moving (aiokafka's own
# committed-offset fetch retries these too), or a transaction that commits offsets of the group is open.
RETRIED_OFFSET_FETCH_ERRORS = frozenset(
    {
        UNSTABLE_OFFSET_COMMIT,
        Errors.GroupLoadInProgressError.errno,
        Errors.GroupCoordinatorNotAvailableError.errno,
        Errors.NotCoordinatorForGroupError.errno,
    }
)


class OffsetFetchResponse_v7(Response):
    API_KEY = OFFSET_FETCH
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "topics",
            CompactArray(
                ("topic", CompactString("utf-8")),
                (
                    "partitions",
                    CompactArray(
                        ("partition", Int32),
                        ("offset", Int64),
                        ("committed_leader_epoch", Int32),
                        ("metadata", CompactString("utf-8")),  # nullable
                        ("error_code", Int16),
                        ("tags", TaggedFields),
                    ),
                ),
                ("tags", TaggedFields),
            ),
        ),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class OffsetFetchRequest_v7(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = OFFSET_FETCH
    API_VERSION = 7
    RESPONSE_TYPE = OffsetFetchResponse_v7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        (
            "topics",
            CompactArray(
                ("topic", CompactString("utf-8")), ("partitions", CompactArray(Int32)), ("tags", TaggedFields)
            ),
        ),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class StableOffsetFetchRequest(Request[OffsetFetchRequest_v7]):
    """``OffsetFetch`` v7 with ``require_stable``: a partition whose offset a still-open transaction commits is
    answered ``UNSTABLE_OFFSET_COMMIT`` instead of with the offset before it. Version 7 only: an older broker
    must fail loudly rather than hand out an offset that a pending transaction is about to move."""

    API_KEY = OFFSET_FETCH

    def __init__(self, group_id: str, partitions: dict[str, list[int]]) -> None:
        self._group_id = group_id
        self._partitions = partitions

    def build(self, request_struct_class: type[OffsetFetchRequest_v7]) -> OffsetFetchRequest_v7:
        topics = [(topic, sorted(partitions), {}) for topic, partitions in sorted(self._partitions.items())]
        return request_struct_class(self._group_id, topics, True, {})


class UnstableOffsetsError(Errors.KafkaError):
    """The group's offsets stayed unstable (a transaction committing them neither committed nor aborted)."""


def stable_offsets_answer(resp: OffsetFetchResponse_v7) -> tuple[dict[TopicPartition, int], int | None]:
    """The committed offsets of an ``OffsetFetch`` v7 answer (partitions without one left out), and the first
    error code to retry on (``None``: the answer is complete). Any other error raises."""
    errors = [resp.error_code] if resp.error_code else []
    offsets: dict[TopicPartition, int] = {}
    for topic, partitions, _tags in resp.topics:
        for partition, offset, _epoch, _metadata, error_code, _partition_tags in partitions:
            if error_code:
                errors.append(error_code)
            elif offset != NO_COMMITTED_OFFSET:
                offsets[TopicPartition(topic, partition)] = offset
    for code in errors:
        if code not in RETRIED_OFFSET_FETCH_ERRORS:
            name = Errors.for_code(code).__name__
            msg = f"the group coordinator refused the stable offset fetch: {name} ({code})"
            raise Errors.KafkaError(msg)
    return offsets, (errors[0] if errors else None)


class StableOffsetsConsumer(AIOKafkaConsumer):
    """The worker's group consumer, which can also read the group's committed offsets with ``require_stable``
    (aiokafka 0.14 fetches them with ``OffsetFetch`` v1-v3, which answer the offset from before a transaction
    whose commit markers are not written yet)."""

    async def stable_committed(
        self, partitions: Iterable[TopicPartition], *, timeout_s: float, retry_s: float = 0.1
    ) -> dict[TopicPartition, int]:
        """The committed offsets of ``partitions`` (those without one left out) once no open transaction
        commits any of them: asked again every ``retry_s`` while one does. Its previous owner's last
        transaction is then committed or aborted, and its outputs and changelog records with it."""
        coordinator = self._coordinator
        if coordinator is None:
            msg = "the consumer has no group coordinator: it must be started with a group id"
            raise ValueError(msg)
        by_topic: dict[str, list[int]] = collections.defaultdict(list)
        for tp in partitions:
            by_topic[tp.topic].append(tp.partition)
        if not by_topic:
            return {}
        request = StableOffsetFetchRequest(coordinator.group_id, dict(by_topic))
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            await coordinator.ensure_coordinator_known()
            try:
                offsets, retry_code = stable_offsets_answer(await coordinator._send_req(request))
            except Errors.KafkaError as exc:
                if not exc.retriable:
                    raise
                retry_code = getattr(exc, "errno", None)
            else:
                if retry_code is None:
                    return offsets
                if retry_code in (
                    Errors.NotCoordinatorForGroupError.errno,
                    Errors.GroupCoordinatorNotAvailableError.errno,
                ):
                    coordinator.coordinator_dead()
            if asyncio.get_running_loop().time() + retry_s > deadline:
                msg = (
                    f"the committed offsets of {sorted(by_topic.items())} were still not stable after "
                    f"{timeout_s:.0f} s (last answer: error {retry_code})"
                )
                raise UnstableOffsetsError(msg)
            await asyncio.sleep(retry_s)
