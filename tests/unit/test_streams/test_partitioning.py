"""In-place routing agrees with the partitioner that places profile-commands."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from streams.partitioning import InPlaceRouting, PartitionOwners, owning_partition


def test_owning_partition_is_the_default_partitioners_choice():
    partitioner = DefaultPartitioner()
    for i in range(500):
        key = f"user-{i}".encode()
        assert owning_partition(key, 4) == partitioner(key, [0, 1, 2, 3], [0, 1, 2, 3])


def test_in_place_only_for_the_routing_key_in_its_own_partition_of_an_equal_topic():
    counts = {"events.clickstream": 4, "foreign.events": 6}
    routing = InPlaceRouting(PartitionOwners(4), counts.get)
    key = b"user-7"
    home = owning_partition(key, 4)
    assert routing.applies("events.clickstream", home, key, key)
    assert not routing.applies("events.clickstream", (home + 1) % 4, key, key)  # partitioned otherwise
    assert not routing.applies("events.clickstream", home, b"anon-1", key)  # keyed by another id
    assert not routing.applies("foreign.events", home, key, key)  # a topic with another partition count


def test_a_topic_without_metadata_yet_is_asked_about_again():
    counts: dict[str, int] = {}
    routing = InPlaceRouting(PartitionOwners(4), counts.get)
    key = b"user-1"
    partition = owning_partition(key, 4)
    assert not routing.applies("t.events.clickstream", partition, key, key)  # no metadata: take the hop
    counts["t.events.clickstream"] = 4
    assert routing.applies("t.events.clickstream", partition, key, key)
