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

Only the inbound topics are ordered by timestamp (``ordered_topics``): their record timestamp is the
event's time (``streamcdp produce`` sets it). ``profile-commands`` records carry the time a worker wrote
them, which during a catch-up is far ahead of the events they carry; they go first, as soon as fetched,
as before, and an empty ``profile-commands`` input is not waited for.

Pure: the caller passes the monotonic time and each input's lag; no Kafka client is used here.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeAlias

from aiokafka.structs import ConsumerRecord, TopicPartition

NO_TIME = -1  # stream time before any record (record timestamps are epoch milliseconds, never negative)

# An input's lag: records on the broker past the consumer's position; 0: caught up; None: not known yet.
Lag: TypeAlias = Callable[[TopicPartition], "int | None"]


class PartitionGroup:
    """One partition's buffered inputs, merged by record timestamp (see the module docstring)."""

    def __init__(self, inputs: Iterable[TopicPartition], *, ordered_topics: Iterable[str], max_idle_s: float) -> None:
        self.queues: dict[TopicPartition, deque[ConsumerRecord]] = {tp: deque() for tp in inputs}
        self.ordered_topics = frozenset(ordered_topics)
        self.max_idle_s = max_idle_s
        self.buffered = 0
        self._blocked_since: float | None = None

    def add(self, tp: TopicPartition, records: Iterable[ConsumerRecord]) -> None:
        queue = self.queues.get(tp)
        if queue is None:  # an input the group did not know (an assignment it was not told of): take it in
            queue = self.queues[tp] = deque()
        before = len(queue)
        queue.extend(records)
        self.buffered += len(queue) - before

    def lagging(self, lag: Lag) -> list[TopicPartition]:
        """Ordered inputs with nothing buffered that may still hold records on the broker (lag > 0 or unknown)."""
        ordered = self.ordered_topics
        return [tp for tp, queue in self.queues.items() if not queue and tp.topic in ordered and lag(tp) != 0]

    def _key(self, tp: TopicPartition, queue: deque[ConsumerRecord]) -> int:
        return queue[0].timestamp if tp.topic in self.ordered_topics else NO_TIME

    def drain(self, lag: Lag, monotonic: float) -> Iterator[ConsumerRecord]:
        """Hand out buffered records in timestamp order (ties: in input order) while the order is known.

        Stops when an ordered input is empty and behind: for as long as its lag is known, else until it has
        been so for ``max_idle_s`` (``monotonic``: the caller's monotonic clock, in seconds).
        """
        if not self.buffered:
            self._blocked_since = None
            return
        lagging = self.lagging(lag)
        if any(lag(tp) is not None for tp in lagging):
            self._blocked_since = None  # records known to be on the broker: the next fetches bring them
            return
        if lagging:
            if self._blocked_since is None:
                self._blocked_since = monotonic
            if monotonic - self._blocked_since < self.max_idle_s:
                return
        else:
            self._blocked_since = None
        # The smallest head first; a queue that runs empty ends the merge unless that input is caught up.
        heads = [(self._key(tp, queue), index, tp) for index, (tp, queue) in enumerate(self.queues.items()) if queue]
        heapq.heapify(heads)
        enforced = self._blocked_since is not None
        while heads:
            _, index, tp = heapq.heappop(heads)
            queue = self.queues[tp]
            record = queue.popleft()
            self.buffered -= 1
            yield record
            if queue:
                heapq.heappush(heads, (self._key(tp, queue), index, tp))
            elif tp.topic in self.ordered_topics and _waits_for(lag(tp), enforced=enforced):
                return  # this input may hold the next record: wait for its next fetch


def _waits_for(lag: int | None, *, enforced: bool) -> bool:
    """Whether an ordered input that ran empty stops the merge: it may hold the next record (lag > 0 or unknown),
    unless the idle wait for unknown lags has lapsed (``enforced``)."""
    return lag != 0 and not (enforced and lag is None)


def runs(records: Iterable[ConsumerRecord]) -> Iterator[tuple[TopicPartition, list[ConsumerRecord]]]:
    """Consecutive records of the same topic partition, grouped (the runtime processes a run at a time)."""
    run: list[ConsumerRecord] = []
    current: TopicPartition | None = None
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        if tp != current and run:
            yield current, run  # type: ignore[misc]  (current is set whenever run is not empty)
            run = []
        current = tp
        run.append(record)
    if run:
        yield current, run  # type: ignore[misc]
