"""The Faust application: the app object, its topics and its tables, built from ``Settings``.

Agents (``agents/``) and web views (``streams/web.py``) import what they need from here; the worker
(``streams/worker.py``) imports them so that they register. Nothing here processes data.
"""

from __future__ import annotations

import faust

from core.due_index import DueIndex
from streams.settings import Settings
from streams.topics import CHANNELS, topic_names

settings = Settings()
topics = topic_names(settings)

app = faust.App(
    settings.app_id,
    broker=settings.broker_url,
    store="rocksdb://",
    datadir=str(settings.data_dir),
    topic_partitions=settings.topic_partitions,
    topic_replication_factor=1,
    topic_allow_declare=True,
    consumer_auto_offset_reset="earliest",
    processing_guarantee="at_least_once",
    web_enabled=True,
    web_bind=settings.web_host,
    web_port=settings.web_port,
    web_host=settings.web_host,
    web_transport=f"tcp://{settings.web_host}:{settings.web_port}",
    table_standby_replicas=0,
    producer_acks=-1,
    producer_linger_ms=5,
    # A crashed worker's partitions move on after 10 s instead of the 60 s default.
    broker_session_timeout=10.0,
    broker_heartbeat_interval=3.0,
    autodiscover=False,
)


def _rocksdb_options() -> dict:
    # A fresh dict per table: faust pops keys out of the dict it is given.
    return {
        "driver": "rocksdict",
        "block_cache_size": settings.rocksdb_block_cache_bytes,
        "block_cache_compressed_size": 0,
        "write_buffer_size": settings.rocksdb_write_buffer_bytes,
        "max_write_buffer_number": 2,
    }


def _raw_topic(name: str) -> faust.TopicT:
    return app.topic(name, key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions)


inbound_topic = app.topic(
    *topics.all_inbound, key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions
)
deadletter_topic = _raw_topic(topics.deadletter)
profile_commands_topic = _raw_topic(topics.profile_commands)
trigger_topics = {channel: _raw_topic(topics.triggers(channel)) for channel in (*CHANNELS, "holdout")}
segment_changes_topic = _raw_topic(topics.segment_changes)


def _table(name: str, help_text: str) -> faust.Table:
    return app.Table(
        name,
        default=None,
        key_type=bytes,  # bytes in, bytes out: faust picks its "raw" codec; we encode with msgspec
        value_type=bytes,
        partitions=settings.topic_partitions,
        options=_rocksdb_options(),
        help=help_text,
    )


# Keyed by the routing id of profile-commands (canonical customer id, or an alias before linking).
customer_to_profile = _table("customer_to_profile", "msgpack Profile per customer id")
alias_to_customer = _table(
    "alias_to_customer", "msgpack KeyIdentity per id: redirect to the canonical customer, link count, forgotten_at"
)
# Keyed "<segment>#<partition>": each partition counts its own members, so the count is written in the
# partition that owns the customers it counts; /segments sums the partitions this worker holds.
segment_partition_to_size = _table("segment_partition_to_size", "members of a segment within one partition")
customer_to_trigger_due = _table(
    "customer_to_trigger_due", "epoch seconds at which a pending trigger of the customer may become due"
)
# This process's heap over customer_to_trigger_due (the table stays the truth; see core/due_index.py).
due_index = DueIndex()
