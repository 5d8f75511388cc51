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

Each forwarded record carries headers saying where it belongs and what it is:

- ``streamcdp-at``: the stream time (epoch ms) it was decided at; *q* applies it no earlier;
- ``streamcdp-depth``: its hops from the inbound record that led to it (1 for the first), so a command
  sorts after the record that caused it;
- ``streamcdp-src`` and ``streamcdp-seq``: the deciding partition and its count of forwarded commands
  (stored with its state, so a replay of the same inputs numbers them the same).

*q* stores the highest sequence it applied from each source (``FORWARDS_APPLIED``) with its state, so a
command is applied once whichever way it comes first: in memory, then its copy from Kafka is skipped; or,
when *q*'s state was committed without it (a crash between the two partitions' transactions), from Kafka;
or, when *q* committed it and *p* did not (*p* replays and forwards it again), skipped both ways.
A record without the headers (written by an older version, or a re-keyed inbound event) has no
sequence and is applied as it comes.
"""

from __future__ import annotations

from typing import NamedTuple

from aiokafka.structs import ConsumerRecord

AT_HEADER = "streamcdp-at"
DEPTH_HEADER = "streamcdp-depth"
SOURCE_HEADER = "streamcdp-src"
SEQUENCE_HEADER = "streamcdp-seq"

NO_SOURCE = -1


class Origin(NamedTuple):
    """Where a forwarded command was decided: when (epoch ms), how deep, by which partition, its number there."""

    at_ms: int
    depth: int
    source: int = NO_SOURCE
    sequence: int | None = None


def origin_headers(origin: Origin) -> list[tuple[str, bytes]]:
    headers = [
        (AT_HEADER, str(origin.at_ms).encode()),
        (DEPTH_HEADER, str(origin.depth).encode()),
        (SOURCE_HEADER, str(origin.source).encode()),
    ]
    if origin.sequence is not None:
        headers.append((SEQUENCE_HEADER, str(origin.sequence).encode()))
    return headers


def record_origin(record: ConsumerRecord) -> Origin:
    """A ``profile-commands`` record's origin; without headers (or with unreadable ones): its own timestamp,
    depth 1, no source, no sequence."""
    at_ms, depth, source, sequence = record.timestamp, 1, NO_SOURCE, None
    for name, value in record.headers or ():
        try:
            if name == AT_HEADER:
                at_ms = int(value)
            elif name == DEPTH_HEADER:
                depth = int(value)
            elif name == SOURCE_HEADER:
                source = int(value)
            elif name == SEQUENCE_HEADER:
                sequence = int(value)
        except (TypeError, ValueError):
            continue  # a header not written by streamcdp: the record keeps the default for it
    return Origin(at_ms, depth, source, sequence)


def source_key(source: int) -> bytes:
    """The ``FORWARDS_APPLIED`` key of a source partition."""
    return str(source).encode()
