"""The co-partitioning assignor: partition p of every source topic on one member, and the shared owner map."""

from __future__ import annotations

import random

import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.assignor import CoPartitionAssignor, co_partitioned

TOPICS = ("events.clickstream", "events.purchase", "streamcdp.profile-commands")


class FakeCluster:
    """The part of aiokafka's ClusterMetadata the assignor reads."""

    def __init__(self, partition_counts: dict[str, int]) -> None:
        self.partition_counts = partition_counts

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self.partition_counts.get(topic)
        return None if count is None else set(range(count))


def owner_of(plan: dict[str, dict[str, list[int]]], topic: str, partition: int) -> list[str]:
    return [member for member, by_topic in plan.items() if partition in by_topic.get(topic, [])]


# --- co_partitioned ----------------------------------------------------------------------------------


def test_partition_p_of_every_topic_goes_to_the_same_member():
    plan = co_partitioned(dict.fromkeys(TOPICS, 4), ["m-b", "m-a"])
    assert plan == {
        "m-a": {topic: [0, 2] for topic in TOPICS},
        "m-b": {topic: [1, 3] for topic in TOPICS},
    }


@settings(max_examples=200, deadline=None)
@given(
    partitions=st.integers(min_value=1, max_value=24),
    topics=st.lists(st.text("abcdefgh.-", min_size=1, max_size=8), min_size=1, max_size=4, unique=True),
    members=st.lists(st.text("0123456789abcdef-", min_size=1, max_size=12), min_size=1, max_size=8, unique=True),
)
def test_equal_partition_counts_are_co_partitioned_spread_and_complete(partitions, topics, members):
    plan = co_partitioned(dict.fromkeys(topics, partitions), members)
    assert set(plan) == set(members)
    for partition in range(partitions):
        owners = {topic: owner_of(plan, topic, partition) for topic in topics}
        assert all(len(found) == 1 for found in owners.values()), owners  # assigned exactly once
        assert len({found[0] for found in owners.values()}) == 1, owners  # and to one member for all topics
    per_member = [len(by_topic.get(topics[0], [])) for by_topic in plan.values()]
    assert sum(per_member) == partitions
    assert max(per_member) - min(per_member) <= 1  # spread evenly


@settings(max_examples=100, deadline=None)
@given(members=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=6, unique=True), seed=st.integers())
def test_the_plan_does_not_depend_on_member_order(members, seed):
    shuffled = list(members)
    random.Random(seed).shuffle(shuffled)
    counts = dict.fromkeys(TOPICS, 6)
    assert co_partitioned(counts, shuffled) == co_partitioned(counts, members)


def test_members_beyond_the_partition_count_get_nothing():
    plan = co_partitioned({"t": 2}, ["m3", "m1", "m2"])
    assert plan == {"m1": {"t": [0]}, "m2": {"t": [1]}, "m3": {}}


def test_a_topic_with_more_partitions_keeps_the_shared_ones_together():
    plan = co_partitioned({"small": 2, "large": 6}, ["a", "b"])
    for partition in range(2):
        assert owner_of(plan, "small", partition) == owner_of(plan, "large", partition)
    assert sorted(p for by_topic in plan.values() for p in by_topic["large"]) == list(range(6))


# --- CoPartitionAssignor -----------------------------------------------------------------------------


def joined_members(urls: dict[str, str], topics=TOPICS) -> dict[str, ConsumerProtocolMemberMetadata]:
    """member id → metadata as the group leader sees it: each worker's ``metadata()``, through the wire."""
    return {
        member: ConsumerProtocolMemberMetadata.decode(CoPartitionAssignor(url).metadata(topics).encode())
        for member, url in urls.items()
    }


def received(assignment: ConsumerProtocolMemberAssignment) -> ConsumerProtocolMemberAssignment:
    """The assignment as a member receives it from the coordinator (encoded and decoded)."""
    return ConsumerProtocolMemberAssignment.decode(assignment.encode())


def test_metadata_carries_the_sorted_topics_and_the_web_url():
    metadata = CoPartitionAssignor("http://10.0.0.7:6066").metadata(reversed(TOPICS))
    assert metadata.subscription == sorted(TOPICS)
    assert metadata.user_data == b"http://10.0.0.7:6066"
    assert metadata.version == CoPartitionAssignor.version


def test_assign_builds_the_co_partitioned_plan_and_shares_the_owner_map():
    urls = {"member-2": "http://w2:6066", "member-0": "http://w0:6066", "member-1": "http://w1:6066"}
    members = joined_members(urls)
    cluster = FakeCluster(dict.fromkeys(TOPICS, 6))
    assignments = CoPartitionAssignor(urls["member-0"]).assign(cluster, members)
    assert set(assignments) == set(urls)

    plan = co_partitioned(dict.fromkeys(TOPICS, 6), list(urls))
    expected_owners = {
        partition: urls[member] for member, by_topic in plan.items() for partition in by_topic[TOPICS[0]]
    }
    assert sorted(expected_owners) == list(range(6))
    for member, assignment in assignments.items():
        wire = received(assignment)
        assert sorted(wire.partitions()) == sorted(
            (topic, p) for topic, partitions in plan[member].items() for p in partitions
        )
        worker = CoPartitionAssignor(urls[member])
        worker.on_assignment(wire)
        assert worker.owners == expected_owners
    assert expected_owners == {
        0: "http://w0:6066",
        1: "http://w1:6066",
        2: "http://w2:6066",
        3: "http://w0:6066",
        4: "http://w1:6066",
        5: "http://w2:6066",
    }


def test_every_member_owns_what_the_map_says():
    urls = {"a": "http://a", "b": "http://b"}
    assignments = CoPartitionAssignor("http://a").assign(FakeCluster(dict.fromkeys(TOPICS, 4)), joined_members(urls))
    worker = CoPartitionAssignor("http://a")
    worker.on_assignment(received(assignments["a"]))
    for member, assignment in assignments.items():
        for topic, partition in received(assignment).partitions():
            assert worker.owners[partition] == urls[member], (topic, partition)


def test_a_single_member_owns_everything():
    assignments = CoPartitionAssignor("http://solo").assign(
        FakeCluster(dict.fromkeys(TOPICS, 3)), joined_members({"solo": "http://solo"})
    )
    wire = received(assignments["solo"])
    assert sorted(wire.partitions()) == sorted((topic, p) for topic in TOPICS for p in range(3))
    worker = CoPartitionAssignor("http://solo")
    worker.on_assignment(wire)
    assert worker.owners == {0: "http://solo", 1: "http://solo", 2: "http://solo"}


def test_a_topic_without_metadata_is_left_out():
    cluster = FakeCluster({TOPICS[0]: 2, TOPICS[1]: 2})  # the third topic is unknown to the cluster
    assignments = CoPartitionAssignor("http://a").assign(cluster, joined_members({"a": "http://a", "b": "http://b"}))
    topics = {topic for assignment in assignments.values() for topic, _ in received(assignment).partitions()}
    assert topics == {TOPICS[0], TOPICS[1]}


@pytest.mark.parametrize(
    "user_data",
    [b"", None, b"garbage", b"\xff\xfe", b"[1, 2]", b"null", b'"text"', b'{"not a partition": "http://a"}'],
    ids=["empty", "none", "garbage", "not_utf8", "list", "null", "string", "bad_key"],
)
def test_on_assignment_without_a_usable_owner_map_gives_no_owners(user_data):
    worker = CoPartitionAssignor("http://a")
    worker.owners = {0: "http://stale"}
    worker.on_assignment(ConsumerProtocolMemberAssignment(0, [(TOPICS[0], [0])], user_data))
    assert worker.owners == {}


def test_a_member_only_gets_topics_it_subscribed_to():
    """A rolling deploy may mix workers that subscribe to different topics: each keeps to its own."""
    plan = co_partitioned({"a": 2, "b": 2}, ["old", "new"], {"old": ["a"], "new": ["a", "b"]})
    assert set(plan["old"]) == {"a"}
    assert plan["new"]["b"] == [0, 1]
    assert sorted(plan["old"]["a"] + plan["new"]["a"]) == [0, 1]
