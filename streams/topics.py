"""The project's topic names for a ``Settings`` (``schemas.topics``), and their idempotent creation.

``ensure_topics`` creates them all with explicit partition counts before a worker or producer uses them.
"""

from __future__ import annotations

import contextlib
import logging

from schemas.topics import TopicNames
from streams.security import privacy_topic_configs
from streams.settings import Settings

log = logging.getLogger(__name__)

# A cold restore reads what the log cleaner has left of the changelog. Kafka never cleans a partition's
# active segment (1 GiB by default: a partition of a few hundred thousand profiles would be read back
# uncompacted, 6-8 records per profile, until ``max.compaction.lag.ms`` rolls it) and by default cleans
# only once half of the rest is dirty. With these, at most 64 MiB per partition is uncleaned and at most a
# fifth of the rest is dirty: a restore reads at most about 1.25 x the compacted changelog plus 64 MiB per
# partition. The price is the cleaner's work: it rewrites a partition's log whenever a fifth is dirty.
CHANGELOG_RESTORE_BOUND = {"segment.bytes": str(64 * 1024 * 1024), "min.cleanable.dirty.ratio": "0.2"}


def topic_names(settings: Settings) -> TopicNames:
    return TopicNames(prefix=settings.topic_prefix)


def ensure_topics(settings: Settings) -> list[str]:
    """Create every project topic that does not exist yet; return the names created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    names = topic_names(settings)
    configs = privacy_topic_configs(settings, names)  # dead-letter retention, changelog compaction bound
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
                topic_configs={**configs.get(name, {}), **durability},
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
                    topic_configs={**configs[changelog], **CHANGELOG_RESTORE_BOUND, **durability},
                )
            )
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them meanwhile: fine
                admin.create_topics(new_topics)
            log.info("created topics: %s", ", ".join(missing))
        return missing
    finally:
        admin.close()
