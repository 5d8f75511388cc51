"""The order in which a partition's inputs are processed: by record timestamp, as Kafka Streams aligns a task.

Partition *p* of every input topic (the inbound ``events.*`` topics and ``profile-commands``) is one task's
input (``streams.assignor``). A fetch returns whatever the broker had ready for each of them, so the order
in which records of different topics arrive depends on batch sizes and fetch timing. ``PartitionGroup``
buffers a partition's records per input and hands them out by timestamp (Kafka Streams' ``PartitionGroup``):
the head record with the smallest timestamp goes first, but only while every input either has buffered
records or is caught up (nothing more on the broker): an input that is empty yet behind may still hold an
earlier record. As Kafka Streams decides since KIP-695, an input whose lag is *known* (the last fetch
response gave its end offset, and the consumer's position is before it) is waited for without a bound:
its records are on the broker and the next fetches bring them, so going on without them would make the
order depend on fetch sizes and timing. An input whose lag is *unknown* (no fetch response yet) is waited
for at most ``max_idle_s`` (``STREAMCDP_MAX_TASK_IDLE_MS``), so a partition whose leader cannot be reached
does not stop the others' inputs for good. A caught-up input (lag 0) is not waited for: a live stream whose
producer stalled must not stop the partition (Kafka Streams' default ``max.task.idle.ms`` of 0).

The inbound topics' record timestamp is the event's time (``streamcdp produce`` sets it); a
``profile-commands`` record is ordered by the stream time it was decided at and its depth (its headers,
``streams.forwarding``), after the record that led to it.

A worker merges all its partitions together (``merge``): a command one partition forwards to another
held by the same worker is applied in memory when it is decided, so every partition must be at the same
point of event time then. The record that goes next is the one with the smallest key over all the
partitions' heads, ``(effective time, depth, partition, input)``, where a record's effective time is its
own, or its partition's stream time when that is later (a late record is processed at the stream time).
A partition that cannot say what comes next (an empty input behind, as above) stops every partition at
its stream time: nothing later goes before its next record is known.

Pure: the caller passes the monotonic time and each input's lag; no Kafka client is used here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeAlias

from aiokafka.structs import ConsumerRecord, TopicPartition

NO_TIME = -1  # stream time before any record (record timestamps are epoch milliseconds, never negative)

# A record's place in event-time order before its partition's stream time is applied: (epoch ms, depth,
# deciding partition); an inbound record is (its timestamp, 0, its partition).
RawKey: TypeAlias = tuple[int, int, int]
# Its place in a worker's merge: (effective epoch ms, depth, partition, input index).
OrderKey: TypeAlias = tuple[int, int, int, int]
RecordKey = Callable[[ConsumerRecord], RawKey]

# An input's lag: records on the broker past the consumer's position; 0: caught up; None: not known yet.
Lag: TypeAlias = Callable[[TopicPartition], "int | None"]


class PartitionGroup:
    """One partition's buffered inputs, merged by record timestamp (see the module docstring)."""

    def __init__(
        self,
        inputs: Iterable[TopicPartition],
        *,
        ordered_topics: Iterable[str],
        max_idle_s: float,
        record_key: Mapping[str, RecordKey] | None = None,
    ) -> None:
        """``record_key``: per topic, a record's ``RawKey`` (default: its timestamp, depth 0)."""
        self.queues: dict[TopicPartition, deque[ConsumerRecord]] = {tp: deque() for tp in inputs}
        self.keys: dict[TopicPartition, deque[RawKey]] = {tp: deque() for tp in self.queues}
        self.index = {tp: index for index, tp in enumerate(self.queues)}
        self.ordered_topics = frozenset(ordered_topics)
        self.max_idle_s = max_idle_s
        self.record_key = dict(record_key or {})
        self.buffered = 0
        self._blocked_since: float | None = None
        self._enforced = False  # the idle wait for an unknown lag lapsed (``blocked``)
        # A worker's merge asks every partition for its head and whether it is blocked after each run;
        # most did not change: the last answers are kept with what they depend on.
        self._changes = 0  # records added or taken
        self._emptied = 0  # inputs that became empty or non-empty
        self._head_memo: tuple[int, int, tuple[OrderKey, TopicPartition] | None] | None = None
        self._blocked_memo: tuple[Lag, float, int, bool] | None = None

    def add(self, tp: TopicPartition, records: Iterable[ConsumerRecord]) -> None:
        queue = self.queues.get(tp)
        if queue is None:  # an input the group did not know (an assignment it was not told of): take it in
            queue = self.queues[tp] = deque()
            self.keys[tp] = deque()
            self.index[tp] = len(self.index)
        keys = self.keys[tp]
        key_of = self.record_key.get(tp.topic)
        self._changes += 1
        if not keys:
            self._emptied += 1
        records = list(records)
        queue.extend(records)
        partition = tp.partition
        keys.extend(
            [(record.timestamp, 0, partition) for record in records] if key_of is None else map(key_of, records)
        )
        self.buffered += len(records)

    def take_run(self, tp: TopicPartition, at_ms: int, bound: OrderKey | None) -> list[ConsumerRecord]:
        """Records of ``tp``, its head first, while each goes before ``bound`` and before the heads of the
        group's other inputs (what ``head`` would answer after each one), taken out; ``at_ms`` follows the
        stream time the run's records move the partition to.

        One pass instead of a ``head`` per record (the merge's per-record cost): the other
        inputs do not change during the run, so their raw heads are read once; each is clamped to the
        moving stream time as ``head`` clamps it."""
        keys = self.keys[tp]
        queue = self.queues[tp]
        index = self.index[tp]
        others = [(other[0], self.index[other_tp]) for other_tp, other in self.keys.items() if other and other_tp != tp]
        run = [queue.popleft()]
        at_ms = max(at_ms, keys.popleft()[0])
        while keys:
            ms, depth, source = keys[0]
            mine = (ms if ms > at_ms else at_ms, depth, source, index)
            if bound is not None and mine >= bound:
                break
            for (other_ms, other_depth, other_source), other_index in others:
                if (other_ms if other_ms > at_ms else at_ms, other_depth, other_source, other_index) < mine:
                    break  # another input's head goes first
            else:
                keys.popleft()
                run.append(queue.popleft())
                at_ms = max(at_ms, ms)
                continue
            break
        self.buffered -= len(run)
        self._changes += 1
        if not keys:
            self._emptied += 1  # ran empty: the next round decides whether the partition waits for this input
        return run

    def blocked(self, lag: Lag, monotonic: float) -> bool:
        """An ordered input is empty and behind, so this partition cannot say what comes next: while its lag
        is known, or, unknown, for ``max_idle_s`` (then given up until the partition is unblocked)."""
        memo = self._blocked_memo
        if memo is not None and memo[0] is lag and memo[1] == monotonic and memo[2] == self._emptied:
            return memo[3]
        blocked = self._blocked(lag, monotonic)
        self._blocked_memo = (lag, monotonic, self._emptied, blocked)
        return blocked

    def _blocked(self, lag: Lag, monotonic: float) -> bool:
        lagging = self.lagging(lag)
        if any(lag(tp) is not None for tp in lagging):
            self._blocked_since, self._enforced = None, False
            return True
        if not lagging:
            self._blocked_since, self._enforced = None, False
            return False
        if self._blocked_since is None:
            self._blocked_since = monotonic
        self._enforced = monotonic - self._blocked_since >= self.max_idle_s
        return not self._enforced

    def head(self, stream_ms: int) -> tuple[OrderKey, TopicPartition] | None:
        """The key and input of the record this partition hands out next, at stream time ``stream_ms``."""
        memo = self._head_memo
        if memo is not None and memo[0] == stream_ms and memo[1] == self._changes:
            return memo[2]
        best: tuple[OrderKey, TopicPartition] | None = None
        for tp, keys in self.keys.items():
            if keys:
                ms, depth, source = keys[0]
                key = (ms if ms > stream_ms else stream_ms, depth, source, self.index[tp])
                if best is None or key < best[0]:
                    best = (key, tp)
        self._head_memo = (stream_ms, self._changes, best)
        return best

    def caught_up(self, lag: Lag) -> bool:
        """Nothing buffered, and no ordered input may still hold records on the broker: the partition's next
        record is not written yet."""
        return not self.buffered and not self.lagging(lag)

    def lagging(self, lag: Lag) -> list[TopicPartition]:
        """Ordered inputs with nothing buffered that may still hold records on the broker (lag > 0 or unknown)."""
        ordered = self.ordered_topics
        return [tp for tp, queue in self.queues.items() if not queue and tp.topic in ordered and lag(tp) != 0]


def merge(
    groups: Mapping[int, PartitionGroup], stream_ms: Mapping[int, int], lag: Lag, monotonic: float
) -> Iterator[tuple[TopicPartition, list[ConsumerRecord]]]:
    """Runs of records of all ``groups`` (one per state partition) in the worker's event-time order (see the
    module docstring), while that order is known. The caller processes each run before asking for the
    next: processing moves stream times (``stream_ms``, read afresh for every run)."""
    while True:
        floor: OrderKey | None = None  # nothing at or after a blocked partition's stream time goes yet
        candidates: list[tuple[OrderKey, int, TopicPartition]] = []
        for partition, group in groups.items():
            at_ms = stream_ms.get(partition, NO_TIME)
            if group.blocked(lag, monotonic):
                if floor is None or (at_ms, -1, -1, -1) < floor:
                    floor = (at_ms, -1, -1, -1)
            elif group.buffered:
                head = group.head(at_ms)
                if head is not None:
                    candidates.append((head[0], partition, head[1]))
        if not candidates:
            return
        candidates.sort()
        key, partition, tp = candidates[0]
        if floor is not None and key >= floor:
            return
        bound = candidates[1][0] if len(candidates) > 1 else None
        if floor is not None and (bound is None or floor < bound):
            bound = floor
        yield tp, groups[partition].take_run(tp, stream_ms.get(partition, NO_TIME), bound)
