"""The names of every Kafka topic streamcdp reads or writes, and their idempotent creation.

Inbound (one per event family), dead letters, outbound trigger topics (one per channel plus the holdout
log), segment changes, and the internal topics of the profile stage (commands re-keyed by id, and the
compacted changelog of its state). ``ensure_topics`` creates them all with explicit partition counts
before a worker or producer uses them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from streams.settings import Settings

log = logging.getLogger(__name__)

CHANNELS = ("email", "sms", "whatsapp", "webpush", "apppush")
INBOUND_FAMILIES = ("clickstream", "purchase", "messaging", "customer")


@dataclass(frozen=True)
class TopicNames:
    prefix: str

    def inbound(self, family: str) -> str:
        return f"{self.prefix}events.{family}"

    @property
    def all_inbound(self) -> tuple[str, ...]:
        return tuple(self.inbound(family) for family in INBOUND_FAMILIES)

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}events.deadletter"

    def triggers(self, channel: str) -> str:
        return f"{self.prefix}triggers.{channel}"

    @property
    def all_triggers(self) -> tuple[str, ...]:
        return tuple(self.triggers(channel) for channel in (*CHANNELS, "holdout"))

    @property
    def segment_changes(self) -> str:
        return f"{self.prefix}segments.changes"

    @property
    def profile_commands(self) -> str:
        """Internal: events and commands re-keyed by the id whose profile partition must act."""
        return f"{self.prefix}streamcdp.profile-commands"

    def state_changelog(self, app_id: str) -> str:
        """Internal, compacted: the profile stage's state (``streams.state_store``), partitioned like its inputs."""
        return f"{self.prefix}{app_id}.state-changelog"

    @property
    def all_declared(self) -> tuple[str, ...]:
        return (*self.all_inbound, self.deadletter, *self.all_triggers, self.segment_changes, self.profile_commands)


def topic_names(settings: Settings) -> TopicNames:
    return TopicNames(prefix=settings.topic_prefix)


def ensure_topics(settings: Settings) -> list[str]:
    """Create every project topic that does not exist yet; return the names created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    names = topic_names(settings)
    admin = KafkaAdminClient(bootstrap_servers=settings.broker_bootstrap, client_id="streamcdp-admin")
    try:
        existing = set(admin.list_topics())
        missing = [name for name in names.all_declared if name not in existing]
        replication = settings.topic_replication_factor
        durability = {"min.insync.replicas": str(settings.topic_min_insync_replicas)}
        new_topics = [
            NewTopic(
                name=name,
                num_partitions=settings.topic_partitions,
                replication_factor=replication,
                topic_configs=durability,
            )
            for name in missing
        ]
        changelog = names.state_changelog(settings.app_id)
        if changelog not in existing:
            missing.append(changelog)
            new_topics.append(
                NewTopic(
                    name=changelog,
                    num_partitions=settings.topic_partitions,
                    replication_factor=replication,
                    topic_configs={"cleanup.policy": "compact", **durability},
                )
            )
        if missing:
            try:
                admin.create_topics(new_topics)
            except TopicAlreadyExistsError:
                pass  # another process created them between our list and create: fine
            log.info("created topics: %s", ", ".join(missing))
        return missing
    finally:
        admin.close()
