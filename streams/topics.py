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
                    topic_configs={**configs[changelog], **durability},
                )
            )
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them meanwhile: fine
                admin.create_topics(new_topics)
            log.info("created topics: %s", ", ".join(missing))
        return missing
    finally:
        admin.close()
