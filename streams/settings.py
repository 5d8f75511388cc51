"""The one settings object of streamcdp, read from ``STREAMCDP_*`` environment variables once.

Every knob the pipeline has lives here, with its default and the reason for it; the README's
settings table is generated from the same field descriptions (``streamcdp settings``).
Code receives a ``Settings`` instance; nothing else reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.privacy import HASHED_PII_TRAITS, PII_TRAIT_KEYS, trait_key
from core.profile.policy import MAX_APPLIED_IDS, MAX_LINKED_USERS
from core.triggers import guardrails as rails

# Development defaults: usable only with STREAMCDP_ENV=dev (streams.security.check_production_settings).
DEV_API_TOKEN = "dev-token"
DEV_PII_HASH_KEY = "dev-only-change-me"


class Settings(BaseSettings):
    """Frozen configuration; build it with ``Settings()`` (reads the environment) or with keywords in tests."""

    model_config = SettingsConfigDict(env_prefix="STREAMCDP_", frozen=True, extra="ignore")

    env: Literal["dev", "production"] = Field(
        "production",
        description="`dev` lets the worker start with the development defaults of `STREAMCDP_API_TOKEN` and "
        "`STREAMCDP_PII_HASH_KEY` (the demo and the tests set it); `production` refuses them.",
    )

    # --- Kafka -------------------------------------------------------------------------------
    broker_url: str = Field(
        "kafka://127.0.0.1:9092", description="Kafka bootstrap servers: `kafka://host:port[;kafka://host:port]`."
    )
    topic_prefix: str = Field("", description="Prefix for every topic name, e.g. `shop1.` (empty: none).")
    topic_partitions: int = Field(4, ge=1, description="Partitions of every topic the project creates.")
    app_id: str = Field(
        "streamcdp", description="Application id: the workers' consumer group and their changelog topic's name."
    )
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor of the topics the project creates (production: 3)."
    )
    topic_min_insync_replicas: int = Field(
        1,
        ge=1,
        description="`min.insync.replicas` of the topics the project creates: with acks=all, a write needs this "
        "many replicas (production: 2, at most the replication factor).",
    )

    # --- Worker ------------------------------------------------------------------------------
    data_dir: Path = Field(Path("var/data"), description="Where the worker keeps its RocksDB tables.")
    web_port: int = Field(6066, description="Port of the worker's web server (profile API, metrics).")
    web_host: str = Field("127.0.0.1", description="Interface the worker's web server binds to.")
    web_idle_timeout_s: float = Field(
        15.0,
        gt=0,
        description="An HTTP connection that sends no complete request for this long (idle, or half-sent) is closed.",
    )
    peer_timeout_s: float = Field(
        2.0, gt=0, description="Longest wait for another worker's answer to a forwarded profile read."
    )
    trusted_peer_url_pattern: str = Field(
        r"http://127(\.[0-9]{1,3}){3}:[0-9]{1,5}",
        description="Regular expression a worker's advertised URL must match in full before profile reads are "
        "forwarded to it (default: http on a 127.x.x.x loopback address).",
    )
    advertised_url: str = Field(
        "",
        description="URL other workers and redirects use to reach this worker's web server, e.g. "
        "`http://worker-0.streamcdp-worker:6066` (empty: `http://WEB_HOST:WEB_PORT`; set it when binding `0.0.0.0`).",
    )
    rocksdb_block_cache_bytes: int = Field(
        128 * 1024 * 1024,
        ge=1024 * 1024,
        description="RocksDB memory of a worker, all its partition stores together: one block cache (data, index "
        "and filter blocks) that the memtables are charged to as well.",
    )
    rocksdb_write_buffer_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024 * 1024,
        description="RocksDB memtables of a worker, all its partition stores together (part of "
        "`STREAMCDP_ROCKSDB_BLOCK_CACHE_BYTES`).",
    )
    state_cache_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Decoded state values a worker keeps in memory beyond those changed since the last flush, "
        "counted by their encoded size (decoded they take about 3–4 times that), shared by its partition "
        "stores; the oldest are dropped after a flush.",
    )
    restore_fetch_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024 * 1024,
        description="Most changelog bytes one fetch of a state restore reads (all partitions together); larger "
        "reads fewer, bigger fetches, at up to about three times this much memory during a restore.",
    )
    commit_interval_s: float = Field(
        0.5,
        gt=0,
        description="Longest time between flushes (outputs sent, changelog written, input offsets committed).",
    )
    flush_max_records: int = Field(
        20_000, ge=1, description="Inputs processed before a flush is forced, whatever the interval."
    )
    flush_max_dirty_keys: int = Field(
        5_000,
        ge=1,
        description="State keys changed since the last flush, all partition stores together, that force a flush "
        "between two slices of a fetch (a partition's run of records, 500 at most), or between two wake-ups the "
        "clock or a record makes due: a flush holds every changed value encoded, in the producer's batches and in "
        "RocksDB's write batch at once, so this bounds its memory (a fetch of new customers changes about three "
        "keys per event).",
    )
    output_linger_s: float = Field(
        0.05,
        ge=0,
        description="While the worker keeps up with its inputs (a fetch returns fewer than `fetch_max_records`), "
        "longest time an output (trigger, segment change, dead letter) waits for its flush: outputs are made "
        "visible at most this long after the previous flush instead of waiting for `commit_interval_s`. Under a "
        "backlog (full fetches) flushes follow `commit_interval_s` and `flush_max_records`, so transactions stay "
        "large. 0: a flush after every fetch that leaves outputs.",
    )
    fetch_max_records: int = Field(5_000, ge=1, description="Most records taken from Kafka per fetch.")
    live_fetch_interval_s: float = Field(
        0.025,
        ge=0,
        description="While the worker keeps up (a fetch returns fewer than `fetch_max_records`), shortest time "
        "between two fetches: records gather in the consumer meanwhile, so live traffic pays each fetch's fixed "
        "costs for more records (never past the moment waiting outputs are due a flush). 0: fetch again at once.",
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "exactly_once",
        description="`exactly_once` commits the worker's outputs, changelog records and input offsets in one "
        "Kafka transaction per flush (EOS v2: zombie workers fenced by the group generation); downstream "
        "consumers must read with `isolation.level=read_committed`. `at_least_once` may resend outputs after a "
        "crash (deduplicated by the ids they carry), for brokers without transactions.",
    )
    max_task_idle_ms: int = Field(
        100,
        ge=0,
        description=(
            "Longest wait, per partition, for an inbound topic that has no fetched records and whose lag is not "
            "known yet (no fetch response) before the other topics' records are processed without it. Records of "
            "a partition's inbound topics are processed in timestamp order (event time); a topic whose lag is "
            "known (position < end offset of the last fetch) is waited for without a bound (Kafka Streams' "
            "KIP-695), a caught-up one not at all. A longer wait keeps the order while a partition's leader "
            "cannot be reached, a shorter one bounds the delay that adds."
        ),
    )
    buffered_records_per_input: int = Field(
        1_000,
        ge=1,
        description="Records of one input partition fetched and held for event-time order beyond which its fetching "
        "is paused until they are processed (Kafka Streams' `buffered.records.per.partition`): without it, a "
        "backlog whose topics are fetched unevenly would hold everything read ahead of the slowest input in "
        "memory.",
    )
    fetch_partition_bytes: int = Field(
        1024 * 1024,
        ge=64 * 1024,
        description="Most bytes of one input partition a fetch of the worker's consumer returns (Kafka's "
        "`max.partition.fetch.bytes`). The consumer holds up to one fetch response per input partition until it is "
        "processed: at 4 MiB the responses of a worker's 16 input partitions took ~170 MiB of a draining worker.",
    )
    fetch_max_bytes: int = Field(
        8 * 1024 * 1024,
        ge=64 * 1024,
        description="Most bytes one fetch of the worker's consumer returns, all partitions together (Kafka's "
        "`fetch.max.bytes`).",
    )
    malloc_trim_interval_s: float = Field(
        1.0,
        ge=0,
        description="Shortest time between two returns of the C heap's free pages to the system (glibc "
        "`malloc_trim`, after a flush; 20-70 ms each): a flush allocates and frees tens of MiB that glibc "
        "otherwise keeps. 0: never (also where the C library has no `malloc_trim`).",
    )
    malloc_trim_growth_bytes: int = Field(
        32 * 1024 * 1024,
        ge=0,
        description="Growth of the worker's resident memory since the last heap trim that makes the next flush "
        "trim (at most every `malloc_trim_interval_s`): the RSS stays within about this much of what is live. "
        "0: trim every `malloc_trim_interval_s` whatever the growth.",
    )
    log_level: str = Field("info", description="Worker log level.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as `text` or `json` (one object per line); record errors name topic, partition, offset.",
    )

    # --- Local Kafka (streamcdp kafka start) ---------------------------------------------------
    kafka_version: str = Field("3.9.1", description="Apache Kafka broker version taken from Maven Central.")
    kafka_home: Path = Field(Path(".cache/kafka"), description="Cache of the broker jars (git-ignored, reused).")
    kafka_run_dir: Path = Field(Path("var/kafka"), description="KRaft storage, log file and pid of the local broker.")
    kafka_port: int = Field(9092, description="Port of the local broker's client listener on 127.0.0.1.")
    kafka_controller_port: int = Field(0, description="Port of the KRaft controller listener (0: kafka_port + 1).")
    kafka_heap: str = Field("512m", description="JVM heap of the local broker.")

    # --- Ingestion -----------------------------------------------------------------------------
    max_event_bytes: int = Field(
        64 * 1024,
        ge=1024,
        # Re-encoded as a profile-commands record an event grows at most 2.25 times (a JSON float of 4 bytes
        # becomes a msgpack float64 of 9), so it stays well within the producers' 1 MiB request.
        le=256 * 1024,
        description="Largest accepted event payload; larger ones are dead-lettered.",
    )
    max_future_skew_s: float = Field(300.0, description="How far in the future an event timestamp may be.")
    max_past_skew_s: float = Field(400 * 86400.0, description="How far in the past an event timestamp may be.")
    dedup_max_ids: int = Field(
        MAX_APPLIED_IDS,
        ge=16,
        le=MAX_APPLIED_IDS,  # the cap that bounds a stored profile's size (core.profile.policy)
        description="Dedup window: each profile remembers its last N messageIds; a repeat within them is dropped.",
    )

    ingest_in_place: bool = Field(
        True,
        description="Apply an inbound event in place when its key and partition already match its routing id "
        "(no hop through profile-commands).",
    )

    # --- HTTP collector (streamcdp collect) ----------------------------------------------------
    write_keys: str = Field(
        "",
        description="Write keys the collector accepts (HTTP Basic user or body `writeKey`): "
        "`key[:source][,key[:source]]`; a key's source name is added to each event's `context.source` "
        "(empty: the collector refuses to start).",
    )
    collector_port: int = Field(
        8088, description="Port of the Segment-compatible HTTP collector; it binds to `STREAMCDP_WEB_HOST`."
    )
    collector_max_call_bytes: int = Field(
        32 * 1024, ge=1024, description="Largest single call, and largest event inside a batch (Segment: 32 KB)."
    )
    collector_max_batch_bytes: int = Field(
        500 * 1024, ge=1024, description="Largest `/v1/batch` body after decompression (Segment: 500 KB)."
    )
    collector_max_in_flight_requests: int = Field(
        256, ge=1, description="Requests the collector handles at once; beyond, it answers 429 with Retry-After."
    )
    collector_max_in_flight_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024 * 1024,
        description="Request bytes the collector holds at once (back-pressure); beyond, it answers 429 "
        "with Retry-After.",
    )
    collector_read_timeout_s: float = Field(
        10.0, gt=0, description="Time a client has to send a request body; a slower or half-sent one gets 408."
    )
    collector_produce_timeout_s: float = Field(
        10.0, gt=0, description="Time the broker has to acknowledge a request's events before the answer is 503."
    )
    collector_retry_after_s: int = Field(
        2, ge=1, description="`Retry-After` seconds of the collector's 429 and 503 answers."
    )
    collector_cors_origins: str = Field(
        "*", description="Origins browser SDKs may send from: `*` or `https://a.example,https://b.example`."
    )

    # --- Identity and privacy ------------------------------------------------------------------
    pii_hash_key: str = Field(
        DEV_PII_HASH_KEY, description="Secret key of the keyed hash (HMAC-SHA256) of email and phone."
    )
    pii_traits: str = Field(
        ",".join(sorted(PII_TRAIT_KEYS)),
        description="Personal data keys (compared without case, `_`, `-` and spaces) hashed or dropped from every "
        "event right after validation: in traits (also nested, e.g. `address.street`), properties and context "
        "(there `name` stays: product and page names).",
    )
    pii_hashed_traits: str = Field(
        ",".join(sorted(HASHED_PII_TRAITS)),
        description="Of `STREAMCDP_PII_TRAITS`, the keys kept as keyed hashes (`<key>_hash`) instead of dropped.",
    )
    deadletter_keep_pii: bool = Field(
        False,
        description="Keep dead letters' original messages unredacted (default: the `STREAMCDP_PII_TRAITS` fields "
        "of a JSON message are hashed or dropped, as in accepted events).",
    )
    deadletter_retention_ms: int = Field(
        7 * 86_400_000, ge=1, description="`retention.ms` of the dead-letter topic when the project creates it."
    )
    changelog_max_compaction_lag_ms: int = Field(
        86_400_000,
        ge=1,
        description="`max.compaction.lag.ms` of the state changelog: an overwritten or deleted value is compacted "
        "away at most this long (plus one log-cleaner pass) after it was written.",
    )
    changelog_delete_retention_ms: int = Field(
        86_400_000,
        ge=0,
        description="`delete.retention.ms` of the state changelog: how long a deletion marker (key only) stays "
        "after compaction.",
    )
    max_users_per_anonymous_id: int = Field(
        3,
        ge=1,
        le=MAX_LINKED_USERS,
        description="Over-merge guard: a device linked to more user ids than this stops being re-linked.",
    )
    api_token: str = Field(
        DEV_API_TOKEN,
        description="Bearer token required to read profiles over HTTP; also keys the signatures of the workers' "
        "internal profile reads.",
    )

    # --- Segments and scores -------------------------------------------------------------------
    segments_file: Path = Field(
        Path("config/segments.yaml"), description="Segment definitions (YAML); checked at start."
    )
    model_file: Path = Field(
        Path("models/propensity-v1.json"), description="Propensity model file (`streamcdp train`)."
    )
    audience_min_interval_s: float = Field(
        1.0,
        ge=0.0,
        description="Segments and scores are re-evaluated at most this often per customer; "
        "a burst is evaluated once at its end.",
    )
    audience_backlog_fraction: float = Field(
        0.0,
        ge=0,
        description="While the worker is `lag` s behind its input (wall clock − stream time, not the event's "
        "age), that interval stretches to `lag` × this, at most `STREAMCDP_AUDIENCE_MAX_INTERVAL_S`. 0 (the "
        "default): never, so segment changes are decided at the same event times however far behind the worker "
        "is; above 0 a catch-up does less work, but its segment changes depend on how fast it ran (no longer "
        "deterministic across restarts and replays).",
    )
    audience_max_interval_s: float = Field(
        60.0, gt=0, description="Longest refresh interval of segments and scores while catching up on a backlog."
    )
    score_thresholds: str = Field(
        "purchase_7d:0.6,churn_60d:0.5",
        description="Score thresholds whose crossing is published on segments.changes: `score:t[,score:t]`.",
    )

    # --- Triggers ------------------------------------------------------------------------------
    triggers_file: Path = Field(
        Path("config/triggers.yaml"),
        description="Trigger definitions (YAML, README section Triggers); a broken file stops the worker at start.",
    )
    trigger_scan_interval_s: float = Field(
        1.0, description="How often the worker wakes the keys whose wake-up time has come (triggers, segments)."
    )
    # Guardrails (README section Triggers; the trigger file's `guardrails:` section overrides them by name).
    trigger_customer_caps: str = Field(
        rails.DEFAULT_CUSTOMER_CAPS,
        description="Most messages per customer across all kinds in rolling windows: `MAX/WINDOW[,MAX/WINDOW]` "
        "(empty: none). Holdout decisions count as messages.",
    )
    trigger_kind_caps: str = Field(
        rails.DEFAULT_KIND_CAPS,
        description="Most messages of one kind per customer in rolling windows (a definition's `cap` overrides).",
    )
    trigger_channel_caps: str = Field(
        rails.DEFAULT_CHANNEL_CAPS,
        description="Most messages per customer on a channel: `CHANNEL:MAX/WINDOW[,...]`; a capped channel is "
        "skipped for the next allowed one.",
    )
    trigger_quiet_hours: str = Field(
        rails.DEFAULT_QUIET_HOURS,
        description="Local time `HH:MM-HH:MM` in which nothing is sent: a due trigger is deferred to its end "
        "(empty: none).",
    )
    trigger_default_timezone: str = Field(
        rails.DEFAULT_TIMEZONE,
        description="IANA time zone of the quiet hours for customers without a (known) `timezone` trait.",
    )
    trigger_consent: str = Field(
        rails.DEFAULT_CONSENT,
        description="Consent without an explicit `Consent Updated`, per channel: `opt_out` (allowed unless "
        "withdrawn) or `opt_in` (only after a grant); channels not named are `opt_in`.",
    )
    trigger_holdout_shares: str = Field(
        rails.DEFAULT_HOLDOUT_SHARES,
        description="Share of customers held out per kind, `KIND:SHARE[,...]`, `*` for every kind (a definition's "
        "`holdout` overrides): they get no message; the decision goes to triggers.holdout.",
    )
    trigger_control_group_share: float = Field(
        rails.DEFAULT_CONTROL_GROUP_SHARE,
        ge=0.0,
        le=1.0,
        description="Share of customers in the global control group: no triggered message of any kind.",
    )
    trigger_engagement_prior: str = Field(
        rails.DEFAULT_ENGAGEMENT_PRIOR,
        description="`ALPHA,BETA` of the Beta prior smoothing each channel's engagement rate for channel choice.",
    )
    attribution_window_s: float = Field(
        3 * 86400.0,
        gt=0,
        description="Deliveries, opens, clicks and orders this long after a trigger's send (or holdout "
        "decision) are attributed to it (README section Measuring triggers).",
    )

    @model_validator(mode="after")
    def _insync_replicas_possible(self) -> Settings:
        if self.topic_min_insync_replicas > self.topic_replication_factor:
            msg = (
                f"STREAMCDP_TOPIC_MIN_INSYNC_REPLICAS={self.topic_min_insync_replicas} exceeds "
                f"STREAMCDP_TOPIC_REPLICATION_FACTOR={self.topic_replication_factor}: no write could succeed"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _guardrails_parse(self) -> Settings:
        _ = self.guardrails  # parsed at start: a bad value stops the worker with its name
        return self

    @property
    def guardrails(self) -> rails.Guardrails:
        """The ``trigger_*`` guardrail settings parsed (``core.triggers.guardrails``)."""
        texts = {
            "customer_caps": self.trigger_customer_caps,
            "kind_caps": self.trigger_kind_caps,
            "channel_caps": self.trigger_channel_caps,
            "quiet_hours": self.trigger_quiet_hours,
            "default_timezone": self.trigger_default_timezone,
            "consent": self.trigger_consent,
            "holdout_shares": self.trigger_holdout_shares,
            "control_group_share": self.trigger_control_group_share,
            "engagement_prior": self.trigger_engagement_prior,
        }
        return rails.Guardrails.from_texts(texts)

    @property
    def score_threshold_map(self) -> dict[str, tuple[float, ...]]:
        """``score_thresholds`` parsed: score name → ascending thresholds."""
        thresholds: dict[str, list[float]] = {}
        for item in filter(None, (part.strip() for part in self.score_thresholds.split(","))):
            name, _, value = item.partition(":")
            thresholds.setdefault(name.strip(), []).append(float(value))
        return {name: tuple(sorted(values)) for name, values in thresholds.items()}

    @property
    def pii_trait_set(self) -> frozenset[str]:
        """``pii_traits`` parsed and folded like trait names (``core.privacy.trait_key``)."""
        return _folded_list(self.pii_traits)

    @property
    def pii_hashed_trait_set(self) -> frozenset[str]:
        return _folded_list(self.pii_hashed_traits)

    @property
    def broker_bootstrap(self) -> str:
        """The broker list as aiokafka / kafka-python want it: ``host:port[,host:port]``."""
        return ",".join(part.split("://", 1)[-1] for part in self.broker_url.split(";"))

    @property
    def controller_port(self) -> int:
        return self.kafka_controller_port or self.kafka_port + 1


def _folded_list(text: str) -> frozenset[str]:
    return frozenset(trait_key(part) for part in text.split(",") if part.strip())
