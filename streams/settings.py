"""The one settings object of streamcdp, read from ``STREAMCDP_*`` environment variables once.

Every knob the pipeline has lives here, with its default and the reason for it; the README's
settings table is generated from the same field descriptions (``streamcdp settings``).
Code receives a ``Settings`` instance; nothing else reads ``os.environ``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Frozen configuration; build it with ``Settings()`` (reads the environment) or with keywords in tests."""

    model_config = SettingsConfigDict(env_prefix="STREAMCDP_", frozen=True, extra="ignore")

    # --- Kafka -------------------------------------------------------------------------------
    broker_url: str = Field(
        "kafka://127.0.0.1:9092", description="Kafka bootstrap servers: `kafka://host:port[;kafka://host:port]`."
    )
    topic_prefix: str = Field("", description="Prefix for every topic name, e.g. `shop1.` (empty: none).")
    topic_partitions: int = Field(4, ge=1, description="Partitions of every topic the project creates.")
    app_id: str = Field(
        "streamcdp", description="Application id: the workers' consumer group and their changelog topic's name."
    )

    # --- Worker ------------------------------------------------------------------------------
    data_dir: Path = Field(Path("var/data"), description="Where the worker keeps its RocksDB tables.")
    web_port: int = Field(6066, description="Port of the worker's web server (profile API, metrics).")
    web_host: str = Field("127.0.0.1", description="Interface the worker's web server binds to.")
    rocksdb_block_cache_bytes: int = Field(
        64 * 1024 * 1024,
        description="RocksDB block cache per partition store.",
    )
    rocksdb_write_buffer_bytes: int = Field(16 * 1024 * 1024, description="RocksDB memtable size per partition store.")
    state_cache_keys: int = Field(
        50_000,
        ge=100,
        description="Decoded keys kept in memory per partition store (beyond it, clean ones are dropped after a flush).",
    )
    commit_interval_s: float = Field(
        0.5,
        gt=0,
        description="Longest time between flushes (outputs sent, changelog written, input offsets committed).",
    )
    flush_max_records: int = Field(
        20_000, ge=1, description="Inputs processed before a flush is forced, whatever the interval."
    )
    fetch_max_records: int = Field(5_000, ge=1, description="Most records taken from Kafka per fetch.")
    log_level: str = Field("info", description="Worker log level.")

    # --- Local Kafka (streamcdp kafka start) ---------------------------------------------------
    kafka_version: str = Field("3.9.1", description="Apache Kafka broker version taken from Maven Central.")
    kafka_home: Path = Field(Path(".cache/kafka"), description="Cache of the broker jars (git-ignored, reused).")
    kafka_run_dir: Path = Field(Path("var/kafka"), description="KRaft storage, log file and pid of the local broker.")
    kafka_port: int = Field(9092, description="Port of the local broker's client listener on 127.0.0.1.")
    kafka_controller_port: int = Field(0, description="Port of the KRaft controller listener (0: kafka_port + 1).")
    kafka_heap: str = Field("512m", description="JVM heap of the local broker.")

    # --- Ingestion -----------------------------------------------------------------------------
    max_event_bytes: int = Field(
        64 * 1024, description="Largest accepted event payload; larger ones are dead-lettered."
    )
    max_future_skew_s: float = Field(300.0, description="How far in the future an event timestamp may be.")
    max_past_skew_s: float = Field(400 * 86400.0, description="How far in the past an event timestamp may be.")
    dedup_max_ids: int = Field(
        256,
        ge=16,
        description="Dedup window: each profile remembers its last N messageIds; a repeat within them is dropped.",
    )

    ingest_in_place: bool = Field(
        True,
        description="Apply an inbound event in place when its key and partition already match its routing id "
        "(no hop through profile-commands).",
    )

    # --- Identity and privacy ------------------------------------------------------------------
    pii_hash_key: str = Field(
        "dev-only-change-me", description="Secret key of the keyed hash (HMAC-SHA256) of email and phone."
    )
    max_users_per_anonymous_id: int = Field(
        3, description="Over-merge guard: a device linked to more user ids than this stops being re-linked."
    )
    api_token: str = Field("dev-token", description="Bearer token required to read profiles over HTTP.")

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
        description="Segments and scores are re-evaluated at most this often per customer; a burst is evaluated once at its end.",
    )
    audience_backlog_fraction: float = Field(
        0.1,
        ge=0,
        description="Behind live traffic, an event `lag` s old stretches that interval to `lag` × this "
        "(0: never), at most `STREAMCDP_AUDIENCE_MAX_INTERVAL_S`.",
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

    @property
    def score_threshold_map(self) -> dict[str, tuple[float, ...]]:
        """``score_thresholds`` parsed: score name → ascending thresholds."""
        thresholds: dict[str, list[float]] = {}
        for item in filter(None, (part.strip() for part in self.score_thresholds.split(","))):
            name, _, value = item.partition(":")
            thresholds.setdefault(name.strip(), []).append(float(value))
        return {name: tuple(sorted(values)) for name, values in thresholds.items()}

    @property
    def broker_bootstrap(self) -> str:
        """The broker list as aiokafka / kafka-python want it: ``host:port[,host:port]``."""
        return ",".join(part.split("://", 1)[-1] for part in self.broker_url.split(";"))

    @property
    def controller_port(self) -> int:
        return self.kafka_controller_port or self.kafka_port + 1
