"""How far behind a worker is: consumer lag per input partition and the age of the oldest pending wake-up.

The runtime's loop calls ``observe_progress`` once per fetch, with what it already has at hand (the
consumer, the fetched batch, the partition stores, the time), so this module owns no I/O and keeps no
state beyond what the gauges need between two calls:

- records behind: the partition's high watermark (from the last fetch response, no extra request)
  minus the position after the last record processed;
- seconds behind: while records are behind, now minus the timestamp of the last record processed (the
  next record is at least that old); 0 when caught up, so an idle partition is not "late";
- wake-up age: how long the earliest entry of the wake-up heaps is overdue. The clock pops due entries
  every ``STREAMCDP_TRIGGER_SCAN_INTERVAL_S``, so more than a few intervals means the clock is stuck or
  far behind.

A rebalance that changes the assignment is counted, and the gauges of partitions no longer held are
removed (another worker reports them now).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

from streams import metrics


class LagGauges:
    """Position and last record timestamp per input partition between two fetches, and the gauges."""

    def __init__(self) -> None:
        self._positions: dict[tuple[str, int], int] = {}
        self._timestamps: dict[tuple[str, int], float] = {}
        self._assignment: frozenset[tuple[str, int]] = frozenset()

    def observe(self, consumer, batch: Mapping, stores: Iterable, now: float) -> None:
        """Update the lag and wake-up gauges after one fetch (``batch``: the ``getmany`` result)."""
        for tp, records in batch.items():
            if records:
                last = records[-1]
                self._positions[(tp.topic, tp.partition)] = last.offset + 1
                self._timestamps[(tp.topic, tp.partition)] = last.timestamp / 1000
        assigned = consumer.assignment()
        assignment = frozenset((tp.topic, tp.partition) for tp in assigned)
        if assignment != self._assignment:
            self._forget(self._assignment - assignment)
            metrics.assignment_changes.inc()
            self._assignment = assignment
        for tp in assigned:
            key = (tp.topic, tp.partition)
            highwater = consumer.highwater(tp)
            position = self._positions.get(key)
            if highwater is None or position is None:
                continue  # nothing fetched from it yet: no figure rather than a wrong one
            behind = max(highwater - position, 0)
            labels = (tp.topic, str(tp.partition))
            metrics.child(metrics.consumer_lag_records, *labels).set(behind)
            seconds = max(now - self._timestamps[key], 0.0) if behind else 0.0
            metrics.child(metrics.consumer_lag_seconds, *labels).set(seconds)
        metrics.oldest_wakeup_age_seconds.set(oldest_wakeup_age(stores, now))

    def _forget(self, partitions: frozenset[tuple[str, int]]) -> None:
        for topic, partition in partitions:
            self._positions.pop((topic, partition), None)
            self._timestamps.pop((topic, partition), None)
            for gauge in (metrics.consumer_lag_records, metrics.consumer_lag_seconds):
                with contextlib.suppress(KeyError):  # never reported: nothing to remove
                    gauge.remove(topic, str(partition))
        if partitions:
            metrics.child.cache_clear()  # a removed child must not be handed out again


def oldest_wakeup_age(stores: Iterable, now: float) -> float:
    """Seconds the earliest pending wake-up of ``stores`` is overdue (0: none is)."""
    earliest = [due_at for store in stores if (due_at := store.due_index.earliest()) is not None]
    return max(now - min(earliest), 0.0) if earliest else 0.0


lag_gauges = LagGauges()
observe_progress = lag_gauges.observe  # what the runtime's loop calls after each fetch
