"""Records the agents decide to send, collected per batch and sent by the runtime before it commits.

Agents append; the runtime's checkpoint (``streams.checkpoint``) sends everything and waits for the
broker's acknowledgement *before* it writes the changelog and commits the input offsets. So a crash never
leaves state that says "trigger sent" or "merge forwarded" without the record itself: the inputs replay
and the decision is made again (deduplicated downstream by the ids the records carry).

``partition`` is the state partition whose input or wake-up is being processed (the runtime sets it before
a partition's work): a command forwarded to another partition names it as its source
(``streams.forwarding``). With exactly-once, everything in the outbox is committed in the worker's one
transaction, whatever partition produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[str, bytes]]
OutboundRecord = tuple[str, bytes | None, bytes, Headers | None]  # topic, key, value, headers


@dataclass
class Outbox:
    records: list[OutboundRecord] = field(default_factory=list)
    partition: int | None = None  # the partition whose work is being processed now (the runtime sets it)

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Headers | None = None) -> None:
        self.records.append((topic, key, value, headers))

    def take(self) -> list[OutboundRecord]:
        records, self.records = self.records, []
        return records

    def __len__(self) -> int:
        return len(self.records)
