"""What the agents need of a partition's state store: tables, and a store they read and write.

The store itself (RocksDB behind a write-back cache, its changelog) is the runtime's
(``streams.state_store.PartitionStore``); the agents see only this small interface, so they can be
driven with any object that has it, and the dependency points from the runtime to the agents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from core.due_index import DueIndex


@dataclass(frozen=True)
class Table:
    """One kind of value in the store: its key tag and its byte codec."""

    tag: bytes
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]

    def storage_key(self, key: bytes) -> bytes:
        return self.tag + key


class StageStore(Protocol):
    """The state of one partition as the profile stage uses it."""

    partition: int
    due_index: DueIndex  # wake-up times of the partition's keys, in memory beside ``WAKE_UPS``

    def get(self, table: Table, key: bytes) -> Any:
        """The value of ``key`` in ``table``, None when it has none."""

    def put(self, table: Table, key: bytes, value: Any) -> None:
        """Set ``key`` in ``table`` (None deletes it)."""

    def items(self, table: Table) -> Iterator[tuple[bytes, Any]]:
        """Every ``(key, value)`` of ``table``."""
