"""The order in which a partition's inputs are processed: by record timestamp, as Kafka Streams aligns a task.

Partition *p* of every input topic (the inbound ``events.*`` topics and ``profile-commands``) is one task's
input (``streams.assignor``). A fetch returns whatever the broker had ready for each of them, so the order
in which records of different topics arrive depends on batch sizes and fetch timing. ``PartitionGroup``
buffers a partition's records per input and hands them out by timestamp (Kafka Streams' ``PartitionGroup``):
the head record with the smallest timestamp goes first, but only while every input either has buffered
records or is caught up (nothing more on the broker): an input that is empty yet behind may still hold an
earlier record. Such an input is waited for at most ``max_idle_s`` (``STREAMCDP_MAX_TASK_IDLE_MS``); after
that the group goes on without it, as a live stream whose producer stalled must not stop the partition.

Only the inbound topics are ordered by timestamp (``ordered_topics``): their record timestamp is the
event's time (``streamcdp produce`` sets it). ``profile-commands`` records carry the time a worker wrote
them, which during a catch-up is far ahead of the events they carry; they go first, as soon as fetched,
as before, and an empty ``profile-commands`` input is not waited for.

Pure: the caller passes the monotonic time and which inputs are caught up; no Kafka client is used here.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from aiokafka.structs import ConsumerRecord, TopicPartition

NO_TIME = -1  # stream time before any record (record timestamps are epoch milliseconds, never negative)


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

    def lagging(self, caught_up: Callable[[TopicPartition], bool]) -> list[TopicPartition]:
        """Ordered inputs with nothing buffered that may still hold records on the broker."""
        ordered = self.ordered_topics
        return [tp for tp, queue in self.queues.items() if not queue and tp.topic in ordered and not caught_up(tp)]

    def _key(self, tp: TopicPartition, queue: deque[ConsumerRecord]) -> int:
        return queue[0].timestamp if tp.topic in self.ordered_topics else NO_TIME

    def drain(self, caught_up: Callable[[TopicPartition], bool], monotonic: float) -> Iterator[ConsumerRecord]:
        """Hand out buffered records in timestamp order (ties: in input order) while the order is known.

        Stops when an ordered input is empty and behind, unless it has been so for ``max_idle_s`` already
        (``monotonic``: the caller's monotonic clock, in seconds).
        """
        if not self.buffered:
            self._blocked_since = None
            return
        if self.lagging(caught_up):
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
            elif not enforced and tp.topic in self.ordered_topics and not caught_up(tp):
                return  # this input may hold the next record: wait for its next fetch


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
