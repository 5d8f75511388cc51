"""Records the agents decide to send, collected per batch and sent by the runtime before it commits.

Agents append; ``Runtime.flush`` sends everything and waits for the broker's acknowledgement *before*
it writes the changelog and commits the input offsets. So a crash never leaves state that says
"trigger sent" or "merge forwarded" without the record itself: the inputs replay and the decision is
made again (deduplicated downstream by the ids the records carry).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Outbox:
    records: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]] = field(default_factory=list)

    def send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> None:
        self.records.append((topic, key, value, headers))

    def take(self) -> list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]]:
        records, self.records = self.records, []
        return records

    def __len__(self) -> int:
        return len(self.records)
