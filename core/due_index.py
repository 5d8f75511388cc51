"""An in-memory index of wake-up times, so the trigger clock touches only what is due.

The worker's due table (customer → time a trigger or a segment change may next be due) is the truth and
lives in RocksDB with a changelog; nearly every profile has an entry (e.g. "new visitor" ends 7 days after
first seen). Scanning it every tick would scan every profile, so the worker keeps this min-heap of
``(due_at, key)`` beside it: the profile stage indexes the due times it writes (``write``), the clock pops
only what is due and acts on an entry only if the table still holds that time. The heap holds, for every key
of the table, an entry at or before the key's due time: a due time moved later needs no new entry while the
key's earlier one waits in the heap (most writes: an event pushes a key's reminders and segment expiries
later), since that entry, popped, finds the table's later time and is pushed again for it; one moved
earlier, or written after the key's entry was popped, is pushed. The heap is rebuilt from the table when
the worker's partitions change, and when stale entries make it much larger than the table.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable, Iterable

_NON_NEGATIVE = struct.Struct(">Bd")  # marker 1, then the float's IEEE 754 bytes, big-endian
_NEGATIVE = struct.Struct(">BQ")  # marker 0, then the float's bits, all flipped
_DOUBLE_BITS = struct.Struct(">d")
_BITS = struct.Struct(">Q")
_ALL_BITS = (1 << 64) - 1
PREFIX_BYTES = 9


def _time_prefix(due_at: float) -> bytes:
    """``due_at`` as 9 bytes whose byte order is the float's order. A non-negative float's big-endian IEEE 754
    bytes already sort as the float does, so wake-ups (epoch seconds) take one ``struct`` call; a negative
    one's bits, flipped, sort as it does, and its marker byte puts it before every non-negative one. Exact:
    ``_due_at`` gives back the same float (-0.0 as 0.0, which it equals)."""
    due_at += 0.0
    if due_at >= 0.0:
        return _NON_NEGATIVE.pack(1, due_at)
    (bits,) = _BITS.unpack(_DOUBLE_BITS.pack(due_at))
    return _NEGATIVE.pack(0, bits ^ _ALL_BITS)


def _due_at(entry: bytes) -> float:
    if entry[0]:
        return _NON_NEGATIVE.unpack_from(entry)[1]
    bits = _NEGATIVE.unpack_from(entry)[1] ^ _ALL_BITS
    return _DOUBLE_BITS.unpack(_BITS.pack(bits))[0]


class DueIndex:
    """Min-heap of wake-up times over a key → due-time table."""

    # An entry is one bytes object: the due time's 9 order-keeping bytes (``_time_prefix``), then the key. It
    # sorts as the tuple ``(due_at, key)`` would and takes 56 bytes for a 13-byte key, where that tuple, its
    # float and its own key object took about 130: the heap is most of what a worker keeps per profile
    # (nearly every profile has a wake-up). Every changed wake-up pushes one, leaving the old one stale.
    # Rebuilding once the heap is twice the table keeps it within 2 entries per key (at a million keys about
    # 130 MB: 64 bytes an entry with its list slot), for one read of the table every table-size pushes.
    def __init__(self, *, compact_factor: int = 2, min_compact_size: int = 100_000) -> None:
        self._heap: list[bytes] = []
        self._table_size = 0
        self._compact_factor = compact_factor
        self._min_compact_size = min_compact_size

    def __len__(self) -> int:
        return len(self._heap)

    def rebuild(self, entries: Iterable[tuple[bytes, float]]) -> None:
        """Replace the heap with the table's current ``(key, due_at)`` entries."""
        pack = _NON_NEGATIVE.pack  # the common case inline: a restart rebuilds a heap of every profile
        self._heap = [pack(1, due_at) + key if due_at > 0.0 else _time_prefix(due_at) + key for key, due_at in entries]
        heapq.heapify(self._heap)
        self._table_size = len(self._heap)

    def earliest(self) -> float | None:
        """The smallest wake-up time in the heap (possibly a stale entry the next tick skips); None: empty."""
        return _due_at(self._heap[0]) if self._heap else None

    def push(self, key: bytes, due_at: float) -> None:
        heapq.heappush(self._heap, _time_prefix(due_at) + key)

    def write(self, key: bytes, previous: float | None, due_at: float, now: float) -> None:
        """Index ``key``'s new due time ``due_at``, written at ``now`` over the table's ``previous`` one: pushed
        unless the entry that indexes ``previous`` is still waiting (``previous`` later than ``now``, so not
        popped yet) and pops no later than ``due_at``. A write at or after ``previous`` pushes: the clock fires
        what is due before a later command is applied, so that entry was popped, the key woken at it."""
        if previous is None or due_at < previous or previous <= now:
            heapq.heappush(self._heap, _time_prefix(due_at) + key)

    def needs_compaction(self) -> bool:
        return len(self._heap) > max(self._min_compact_size, self._compact_factor * self._table_size)

    def pop_next(self, now: float, current: Callable[[bytes], float | None]) -> tuple[bytes, float] | None:
        """The earliest ``(key, due_at)`` due at or before ``now`` that is still the table's (``current(key)``),
        removed from the heap; None: nothing is due. An entry on the way whose key's due time was moved later
        is pushed again at that time (``write`` left it to stand for it), others are dropped.

        One at a time, so that a due time written while the previous key is applied (a trigger deferred to
        the end of its quiet hours, already past) is popped in the same pass, in time order."""
        heap = self._heap
        now_prefix = _time_prefix(now)
        while heap and heap[0][:PREFIX_BYTES] <= now_prefix:
            entry = heapq.heappop(heap)
            key, due_at = entry[PREFIX_BYTES:], _due_at(entry)
            table_due = current(key)
            if table_due == due_at:
                return key, due_at
            if table_due is not None and table_due > due_at:
                heapq.heappush(heap, _time_prefix(table_due) + key)
        return None
