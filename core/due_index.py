"""An in-memory index of wake-up times, so the trigger clock touches only what is due.

The worker's due table (customer → time a trigger or a segment change may next be due) is the truth and
lives in RocksDB with a changelog; nearly every profile has an entry (e.g. "new visitor" ends 7 days after
first seen). Scanning it every tick would scan every profile, so the worker keeps this min-heap of
``(due_at, key)`` beside it: the profile stage pushes every due time it writes, the clock pops only what
is due and acts on an entry only if the table still holds that time (stale entries are skipped).
The heap is rebuilt from the table when the worker's partitions change, and when stale entries make it
much larger than the table.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable


class DueIndex:
    """Min-heap of wake-up times over a key → due-time table."""

    # An entry is a tuple of a float and a key (about 130 bytes); every changed wake-up pushes one, leaving
    # the old one stale. Rebuilding once the heap is twice the table keeps it within 2 entries per key (at a
    # million keys about 260 MB rather than the 520 a factor of 4 allows), for one read of the table every
    # table-size pushes.
    def __init__(self, *, compact_factor: int = 2, min_compact_size: int = 100_000) -> None:
        self._heap: list[tuple[float, bytes]] = []
        self._table_size = 0
        self._compact_factor = compact_factor
        self._min_compact_size = min_compact_size

    def __len__(self) -> int:
        return len(self._heap)

    def rebuild(self, entries: Iterable[tuple[bytes, float]]) -> None:
        """Replace the heap with the table's current ``(key, due_at)`` entries."""
        self._heap = [(due_at, key) for key, due_at in entries]
        heapq.heapify(self._heap)
        self._table_size = len(self._heap)

    def earliest(self) -> float | None:
        """The smallest wake-up time in the heap (possibly a stale entry the next tick skips); None: empty."""
        return self._heap[0][0] if self._heap else None

    def push(self, key: bytes, due_at: float) -> None:
        heapq.heappush(self._heap, (due_at, key))

    def needs_compaction(self) -> bool:
        return len(self._heap) > max(self._min_compact_size, self._compact_factor * self._table_size)

    def pop_next(self, now: float, current: Callable[[bytes], float | None]) -> tuple[bytes, float] | None:
        """The earliest ``(key, due_at)`` due at or before ``now`` that is still the table's (``current(key)``),
        removed from the heap (stale entries on the way are dropped); None: nothing is due.

        One at a time, so that a due time written while the previous key is applied (a trigger deferred to
        the end of its quiet hours, already past) is popped in the same pass, in time order."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            due_at, key = heapq.heappop(heap)
            if current(key) == due_at:
                return key, due_at
        return None
