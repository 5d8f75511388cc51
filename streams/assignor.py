"""Consumer-group assignment of the profile stage: co-partitioned, and telling every worker who owns what.

Partition *p* of every source topic (the inbound topics, ``profile-commands``) goes to the same worker,
the one holding the state of partition *p*: an event keyed by customer id is applied where that
customer's state lives. Each member puts its web address in its join metadata; the leader shares the
full partition → address map in every assignment, so any worker can fetch a profile from its owner
(``streams.web``; ``streams.security`` decides which advertised addresses are trusted).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import orjson
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

log = logging.getLogger(__name__)


def co_partitioned(
    partition_counts: Mapping[str, int], members: list[str], subscriptions: Mapping[str, Iterable[str]] | None = None
) -> dict[str, dict[str, list[int]]]:
    """member → topic → partitions: partition p of a topic goes to the p-th (mod n) of the sorted members
    subscribed to it (``subscriptions``: member → topics; None: all members take every topic). Members
    with the same subscriptions thus get the same partition numbers in every topic; a member is never
    given a topic it did not subscribe to (workers of two versions during a rolling deploy)."""
    plan: dict[str, dict[str, list[int]]] = {member: {} for member in sorted(members)}
    for topic, count in sorted(partition_counts.items()):
        takers = sorted(m for m in members if subscriptions is None or topic in set(subscriptions[m]))
        if not takers:
            continue
        for partition in range(count):
            plan[takers[partition % len(takers)]].setdefault(topic, []).append(partition)
    return plan


class CoPartitionAssignor(AbstractPartitionAssignor):
    """See the module docstring. One instance per worker; ``owners`` is the latest partition → URL map."""

    name = "streamcdp-copartition"
    version = 0

    def __init__(self, web_url: str) -> None:
        self.web_url = web_url
        self.owners: dict[int, str] = {}

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:  # type: ignore[override]
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), self.web_url.encode())

    def assign(self, cluster, members: Mapping[str, ConsumerProtocolMemberMetadata]):  # type: ignore[override]
        topics = {topic for metadata in members.values() for topic in metadata.subscription}
        counts = {}
        for topic in topics:
            partitions = cluster.partitions_for_topic(topic)
            if partitions is None:
                log.warning("no partition metadata for topic %s", topic)
                continue
            counts[topic] = len(partitions)
        plan = co_partitioned(counts, list(members), {m: meta.subscription for m, meta in members.items()})
        owners: dict[int, str] = {}
        for member, by_topic in plan.items():
            for partitions in by_topic.values():
                for partition in partitions:
                    owners.setdefault(partition, members[member].user_data.decode())
        shared = orjson.dumps({str(p): url for p, url in owners.items()})
        return {
            member: ConsumerProtocolMemberAssignment(self.version, sorted(plan[member].items()), shared)
            for member in members
        }

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:  # type: ignore[override]
        try:
            self.owners = {int(p): url for p, url in orjson.loads(assignment.user_data or b"{}").items()}
        except (orjson.JSONDecodeError, ValueError, AttributeError):
            log.warning("assignment without an owner map; profile reads will not be routed")
            self.owners = {}
