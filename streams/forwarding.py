"""Commands one state partition forwards to a key of another: their place in event-time order, and applied once.

The profile stage forwards commands to other keys (a link to an alias, a profile absorbed into its
customer, an event of a linked device). With exactly-once processing every partition commits in its own
transaction (``streams.checkpoint``), so a command for a key of partition *q* decided in partition *p*'s
work is written to ``profile-commands`` in *p*'s transaction, where it is durable with its cause. When
*q* is held by the same worker it is also applied to *q*'s state right away, at the point of the
worker's event-time order where it was decided (the worker merges all its partitions' inputs by event
time, ``streams.alignment.merge``): so one worker decides the same, whatever the batch sizes, the fetch
interleaving and the restarts, instead of applying it when the record comes back from Kafka at
whatever time *q* has reached by then.

Each forwarded record carries headers saying where it belongs:

- ``streamcdp-at``: the stream time (epoch ms) it was decided at; *q* applies it no earlier;
- ``streamcdp-depth``: its hops from the inbound record that led to it (1 for the first), so a command
  sorts after the record that caused it;
- ``streamcdp-src``: the deciding partition (ties between sources go by it).

Applied once, if it can be told: the copy of a command applied in memory by this process is skipped when
it is read back (``InMemoryCopies``, matched by its exact key and bytes, never persisted). Any other copy
is applied as it comes, and the profile stage's commands are idempotent (an event's message id, a link's
target, an absorbed profile's ``absorb_id``): the copy of a command whose effect is already in *q*'s
state changes nothing. That covers a crash between the two partitions' transactions either way: *p*
committed and *q* not, *q* reads the copy after its restore and applies it; *q* committed and *p* not, *p*
replays and forwards it again, and *q* finds it applied. A numbering of the commands would not: a
replay of inputs that were still arriving when first processed need not decide the same commands in the
same order, and a number that came to mean another command would drop it.
"""

from __future__ import annotations

from typing import NamedTuple

from aiokafka.structs import ConsumerRecord

AT_HEADER = "streamcdp-at"
DEPTH_HEADER = "streamcdp-depth"
SOURCE_HEADER = "streamcdp-src"

NO_SOURCE = -1


class Origin(NamedTuple):
    """Where a forwarded command was decided: when (epoch ms), how deep, by which partition."""

    at_ms: int
    depth: int
    source: int = NO_SOURCE


def origin_headers(origin: Origin) -> list[tuple[str, bytes]]:
    return [
        (AT_HEADER, str(origin.at_ms).encode()),
        (DEPTH_HEADER, str(origin.depth).encode()),
        (SOURCE_HEADER, str(origin.source).encode()),
    ]


def record_origin(record: ConsumerRecord) -> Origin:
    """A ``profile-commands`` record's origin; without headers (or with unreadable ones): its own timestamp,
    depth 1, no source."""
    at_ms, depth, source = record.timestamp, 1, NO_SOURCE
    for name, value in record.headers or ():
        try:
            if name == AT_HEADER:
                at_ms = int(value)
            elif name == DEPTH_HEADER:
                depth = int(value)
            elif name == SOURCE_HEADER:
                source = int(value)
        except (TypeError, ValueError):
            continue  # a header not written by streamcdp: the record keeps the default for it
    return Origin(at_ms, depth, source)


class InMemoryCopies:
    """Commands this process applied in memory whose durable copy it has not read back yet (see the module
    docstring), as a count per exact (key, bytes). Bounded: past ``max_entries`` the oldest are forgotten,
    and their copies are then applied again, which the commands' idempotence makes harmless."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._pending: dict[tuple[bytes, bytes], int] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def applied(self, key: bytes, value: bytes) -> None:
        """A command applied in memory; its copy (``key``, ``value``) is on its way."""
        pending = self._pending
        entry = (key, value)
        pending[entry] = pending.pop(entry, 0) + 1
        if len(pending) > self.max_entries:
            del pending[next(iter(pending))]

    def take(self, key: bytes | None, value: bytes | None) -> bool:
        """Whether the record (``key``, ``value``) is the copy of a command applied in memory (then forgotten)."""
        if key is None or value is None:
            return False
        pending = self._pending
        entry = (key, value)
        count = pending.get(entry)
        if count is None:
            return False
        if count > 1:
            pending[entry] = count - 1
        else:
            del pending[entry]
        return True
