"""Records the agents decide to send, collected per batch and sent by the runtime before it commits.

Agents append; the runtime's checkpoint (``streams.checkpoint``) sends everything and waits for the
broker's acknowledgement *before* it writes the changelog and commits the input offsets. So a crash never
leaves state that says "trigger sent" or "merge forwarded" without the record itself: the inputs replay
and the decision is made again (deduplicated downstream by the ids the records carry).

Each record is tagged with the state partition whose input or wake-up produced it (``partition``, set by
the runtime before it processes a partition's work), so that with exactly-once processing every
partition's outputs are committed in that partition's own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[str, bytes]]
OutboundRecord = tuple[str, bytes | None, bytes, Headers | None]  # topic, key, value, headers


@dataclass
class Outbox:
    records: list[OutboundRecord] = field(default_factory=list)
    partitions: list[int | None] = field(default_factory=list)  # the producing partition of each record
    partition: int | None = None  # the partition whose work is being processed now (the runtime sets it)

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Headers | None = None) -> None:
        self.records.append((topic, key, value, headers))
        self.partitions.append(self.partition)

    def take(self) -> list[OutboundRecord]:
        records, self.records, self.partitions = self.records, [], []
        return records

    def take_by_partition(self) -> dict[int | None, list[OutboundRecord]]:
        """Everything, grouped by producing partition, in sending order within each partition."""
        grouped: dict[int | None, list[OutboundRecord]] = {}
        partitions = self.partitions
        for partition, record in zip(partitions, self.take(), strict=True):
            grouped.setdefault(partition, []).append(record)
        return grouped

    def __len__(self) -> int:
        return len(self.records)
