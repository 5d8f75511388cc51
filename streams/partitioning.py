"""Which partition owns a key, as the profile stage's topic and tables see it.

Everything keyed on ``profile-commands`` is placed by the default Kafka partitioner (murmur2 of the key,
as the Java client and aiokafka compute it). An inbound message that already carries its routing id as
key *and* sits in the partition murmur2 gives for that key, in a topic with the same partition count, is
already where the profile stage would put it: ingestion may apply it in place instead of re-sending it.
Producers that partition otherwise (librdkafka's default is CRC32) simply take the re-keying hop.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def owning_partition(key: bytes, partitions: int) -> int:
    """The partition the default partitioner assigns ``key`` among ``partitions``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionOwners:
    """``owning_partition`` with a bounded memo: murmur2 is pure Python in aiokafka (~3 µs a key), and a
    customer's events and commands repeat the same keys."""

    def __init__(self, partitions: int, *, max_cached_keys: int = 200_000) -> None:
        self.partitions = partitions
        self._owner: dict[bytes, int] = {}
        self._max_cached_keys = max_cached_keys

    def __call__(self, key: bytes) -> int:
        partition = self._owner.get(key)
        if partition is None:
            if len(self._owner) >= self._max_cached_keys:
                self._owner.clear()
            partition = self._owner[key] = owning_partition(key, self.partitions)
        return partition

    def place(self, key: bytes, partitions: int) -> int:
        """``owning_partition`` for a topic of ``partitions`` partitions: from the memo when it has this count."""
        return self(key) if partitions == self.partitions else owning_partition(key, partitions)


class InPlaceRouting:
    """Decides whether an inbound message may be applied in place (no hop through profile-commands)."""

    def __init__(self, owners: PartitionOwners, topic_partitions) -> None:
        self._owner = owners
        self._topic_partitions = topic_partitions  # topic name → its partition count (or None: unknown)
        self._topic_ok: dict[str, bool] = {}

    def applies(self, topic: str, partition: int, message_key: bytes | None, routing_key: bytes) -> bool:
        return self.key_applies(partition, message_key, routing_key) and self.topic_applies(topic)

    def key_applies(self, partition: int, message_key: bytes | None, routing_key: bytes) -> bool:
        """The message's half of ``applies``: keyed by its routing id and in the partition that id owns (the
        runtime asks ``topic_applies`` once per run of a topic's records, this per message)."""
        return message_key == routing_key and self._owner(routing_key) == partition

    def topic_applies(self, topic: str) -> bool:
        """Whether ``topic``'s messages may be applied in place at all (its partition count is the profile
        stage's); ``applies`` then asks only the key's. The runtime asks once per run of a partition's records."""
        ok = self._topic_ok.get(topic)
        if ok is None:
            count = self._topic_partitions(topic)
            ok = count == self._owner.partitions
            if count is not None:  # unknown yet (no metadata): ask again next time, never remember "no"
                self._topic_ok[topic] = ok
        return ok
