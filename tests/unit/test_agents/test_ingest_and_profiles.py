"""The agents of the batch runtime without a broker: ingestion, the profile stage on a real store, the clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from agents.clock import due_commands, rebuild_due_index, stale_audience_commands
from agents.ingest import ingest_record
from agents.outbox import Outbox
from agents.pipeline import ProfilePipeline
from agents.profiles import handle_command
from agents.tables import CHECKED_AUDIENCES, IDENTITIES, PARTITION_KEY, PROFILES, SEGMENT_SIZES, WAKE_UPS
from agents.tally import EVENTS_INGESTED, PROFILE_COMMANDS, Tally
from core.due_index import DueIndex
from core.privacy import PiiPolicy
from core.profile.policy import ProfilePolicy
from core.profile_stage import StagePolicy
from core.triggers.definitions import load_triggers
from core.triggers.engine import TriggerPolicy
from core.triggers.guardrails import QuietHours
from schemas.commands import AbsorbProfile, ApplyEvent, LinkIdentity, WakeUp, decode_command, encode_command
from schemas.errors import InvalidEvent, UndecodableCommand
from schemas.profile import Profile
from schemas.topics import TopicNames
from schemas.validation import REASONS, ContractLimits, decode_event
from streams.settings import Settings
from streams.stage_config import load_audience_policy
from streams.state_store import PartitionStore, StoreOptions

REPO = Path(__file__).resolve().parents[3]
TOPICS = TopicNames(prefix="t1.")
T0 = 1_764_000_000.0
DELAY = 1800.0  # the shipped cart_abandonment's delay (config/triggers.yaml)
POLICY = StagePolicy(profile=ProfilePolicy(pii_hash_key="test-secret"), triggers=TriggerPolicy(load_triggers()))
OPTIONS = StoreOptions(block_cache_bytes=1 << 20, write_buffer_bytes=1 << 20, cache_bytes=1 << 20)

PRIVACY = PiiPolicy(hash_key=b"test-secret")


def consumer_record(
    value: bytes | None,
    *,
    key: bytes | None = b"u-1",
    topic: str = "t1.events.clickstream",
    partition: int = 2,
    offset: int = 41,
) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=int(time.time() * 1000),
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=[],
    )


def payload(**fields: object) -> dict:
    base = {
        "type": "track",
        "event": "Product Viewed",
        "messageId": "m-1",
        "userId": "u-1",
        "timestamp": time.time() - 60,
        "properties": {"product_id": "p-1", "price": 10.5},
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def event(at: float = T0, **fields: object) -> ApplyEvent:
    """A validated event as ingestion hands it to the profile stage."""
    return ApplyEvent(event=decode_event(orjson.dumps(payload(timestamp=at, **fields)), now=at))


def added_to_cart(user: str = "u1", at: float = T0, message_id: str = "add-1", **fields: object) -> ApplyEvent:
    return event(
        at,
        event="Product Added",
        userId=user,
        messageId=message_id,
        properties={"product_id": "tent-2p", "price": 199.0, "quantity": 1, "category": "tents"},
        **fields,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore(0, tmp_path / "partition-0", OPTIONS)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def audiences():
    """The repo's segment definitions and propensity model (the defaults of ``Settings``, made absolute)."""
    settings = Settings(
        segments_file=REPO / "config" / "segments.yaml", model_file=REPO / "models" / "propensity-v1.json"
    )
    return load_audience_policy(settings)


def flush(store: PartitionStore, offset: int = 0) -> None:
    store.persist(store.pending_records(), offset)


def apply(
    store: PartitionStore,
    key: bytes,
    command,
    *,
    now: float = T0,
    policy: StagePolicy = POLICY,
    outbox: Outbox | None = None,
) -> Outbox:
    outbox = Outbox() if outbox is None else outbox
    handle_command(store, key, command, now=now, policy=policy, topics=TOPICS, outbox=outbox, tally=Tally())
    return outbox


def current_due(store: PartitionStore):
    return lambda key: store.get(WAKE_UPS, key)


def sent_to(outbox: Outbox, topic: str) -> list[tuple[bytes | None, bytes]]:
    return [(key, value) for sent_topic, key, value, _ in outbox.records if sent_topic == topic]


# --- ingest_record -----------------------------------------------------------------------------------


def test_a_valid_event_becomes_an_apply_event_keyed_by_its_user_id():
    tally = Tally()
    raw = orjson.dumps(payload(anonymousId="a-1"))
    key, command = ingest_record(consumer_record(raw), limits=ContractLimits(), privacy=PRIVACY, tally=tally)
    assert key == b"u-1"
    assert isinstance(command, ApplyEvent) and command.hops == 0
    assert (command.event.message_id, command.event.user_id, command.event.anonymous_id) == ("m-1", "u-1", "a-1")
    assert command.event.event == "Product Viewed"
    assert decode_command(encode_command(command)) == command  # what the runtime re-keys through the topic
    counts, _ = tally.take()
    assert counts == {(EVENTS_INGESTED, ("clickstream",)): 1}


def test_an_anonymous_event_is_keyed_by_its_anonymous_id():
    raw = orjson.dumps(payload(userId=..., anonymousId="a-9"))
    key, _ = ingest_record(consumer_record(raw, key=b"a-9"), limits=ContractLimits(), privacy=PRIVACY, tally=Tally())
    assert key == b"a-9"


def test_the_routing_id_ignores_the_record_key():
    raw = orjson.dumps(payload(userId="u-7"))
    key, _ = ingest_record(
        consumer_record(raw, key=b"something-else"), limits=ContractLimits(), privacy=PRIVACY, tally=Tally()
    )
    assert key == b"u-7"


INVALID = [
    ("not_json", b"{not json"),
    ("not_utf8", b"\xff\xfe"),
    ("not_an_object", b"[]"),
    ("not_json", None),  # a tombstone on an inbound topic
    ("missing_field", orjson.dumps(payload(messageId=...))),
    ("missing_identity", orjson.dumps(payload(userId=...))),
    ("timestamp_skew", orjson.dumps(payload(timestamp=time.time() - 1000 * 86400))),
]


@pytest.mark.parametrize(("reason", "raw"), INVALID, ids=[f"{case[0]}-{i}" for i, case in enumerate(INVALID)])
def test_an_invalid_message_raises_its_reason_and_counts_nothing(reason: str, raw: bytes | None):
    """The dead letter is the error policy's (``tests/unit/test_streams/test_error_policy.py``)."""
    tally = Tally()
    with pytest.raises(InvalidEvent) as raised:
        ingest_record(consumer_record(raw), limits=ContractLimits(), privacy=PRIVACY, tally=tally)
    assert raised.value.reason == reason and reason in REASONS
    assert tally.take() == ({}, {"event_lag_seconds": []})


def test_an_oversized_message_is_rejected_by_the_configured_limit():
    raw = orjson.dumps(payload())
    with pytest.raises(InvalidEvent, match="oversized"):
        ingest_record(
            consumer_record(raw), privacy=PRIVACY, limits=ContractLimits(max_event_bytes=len(raw) - 1), tally=Tally()
        )


# --- the pipeline the runtime drives -----------------------------------------------------------------


def pipeline(outbox: Outbox | None = None, tally: Tally | None = None) -> ProfilePipeline:
    return ProfilePipeline(
        POLICY,
        topics=TOPICS,
        limits=ContractLimits(),
        privacy=PRIVACY,
        outbox=outbox or Outbox(),
        tally=tally or Tally(),
    )


def test_the_pipeline_decodes_a_command_record():
    command = WakeUp(now=T0)
    record = consumer_record(encode_command(command), topic=TOPICS.profile_commands)
    assert pipeline().decode(record) == command


@pytest.mark.parametrize("raw", [b"\x93garbage", b"", None], ids=["garbage", "empty", "tombstone"])
def test_an_undecodable_command_record_raises_undecodable_command(raw: bytes | None):
    with pytest.raises(UndecodableCommand) as raised:
        pipeline().decode(consumer_record(raw, topic=TOPICS.profile_commands))
    assert raised.value.reason == "undecodable_command"


def test_the_pipeline_applies_a_command_with_its_outbox_and_tally(store: PartitionStore):
    outbox, tally = Outbox(), Tally()
    forwarded: list[tuple[bytes, object]] = []
    stages = pipeline(outbox, tally)
    identify = event(T0, type="identify", event=..., properties=..., userId="u1", anonymousId="a1", messageId="i-1")
    stages.apply(store, b"u1", identify, T0, lambda key, command: forwarded.append((key, command)))
    assert [(key, type(command)) for key, command in forwarded] == [(b"a1", LinkIdentity)]
    assert len(outbox) == 0  # the link went to ``forward``, not to profile-commands
    counts, _ = tally.take()
    assert counts[(PROFILE_COMMANDS, ("event",))] == 1
    assert stages.rebuild_index(store) == 0


# --- handle_command ----------------------------------------------------------------------------------


def test_an_applied_event_creates_the_profile_and_schedules_its_cart_reminder(store: PartitionStore):
    outbox = apply(store, b"u1", added_to_cart())
    profile = store.get(PROFILES, b"u1")
    assert isinstance(profile, Profile)
    assert profile.customer_id == "u1" and profile.event_count == 1
    assert [item.product_id for item in profile.cart] == ["tent-2p"]
    assert store.get(WAKE_UPS, b"u1") == T0 + DELAY
    assert len(store.due_index) == 1
    assert store.due_index.pop_next(T0 + DELAY, current_due(store)) == (b"u1", T0 + DELAY)
    assert len(outbox) == 0  # no links, no audiences, nothing due yet
    assert sorted(key for key, _ in store.pending_records()) == [b"d" + b"u1", b"p" + b"u1"]


def test_a_duplicate_message_id_is_not_counted_twice(store: PartitionStore):
    apply(store, b"u1", added_to_cart(message_id="m-dup"))
    flush(store)
    apply(store, b"u1", added_to_cart(message_id="m-dup", at=T0 + 5))
    assert store.get(PROFILES, b"u1").event_count == 1
    assert store.get(WAKE_UPS, b"u1") == T0 + DELAY
    assert store.dirty_count == 0  # nothing was written back
    assert len(store.due_index) == 1  # the unchanged due time was not pushed again


def test_a_replay_after_a_restart_is_deduplicated_from_rocksdb(tmp_path: Path):
    path = tmp_path / "partition-0"
    first = PartitionStore(0, path, OPTIONS)
    apply(first, b"u1", added_to_cart(message_id="m-1"))
    flush(first, 10)
    first.close()
    store = PartitionStore(0, path, OPTIONS)
    try:
        apply(store, b"u1", added_to_cart(message_id="m-1"))
        apply(store, b"u1", added_to_cart(message_id="m-2", at=T0 + 60))
        assert store.get(PROFILES, b"u1").event_count == 2
        assert store.get(WAKE_UPS, b"u1") == T0 + 60 + DELAY
    finally:
        store.close()


def test_a_later_event_moves_the_due_time_and_pushes_it(store: PartitionStore):
    apply(store, b"u1", added_to_cart(message_id="m-1"))
    apply(store, b"u1", added_to_cart(message_id="m-2", at=T0 + 100))
    assert store.get(WAKE_UPS, b"u1") == T0 + 100 + DELAY
    assert store.due_index.pop_next(T0 + DELAY, current_due(store)) is None  # the first time is stale
    assert store.due_index.pop_next(T0 + 100 + DELAY, current_due(store)) == (b"u1", T0 + 100 + DELAY)


def test_an_order_clears_the_due_time_with_a_tombstone(store: PartitionStore):
    apply(store, b"u1", added_to_cart())
    flush(store)
    apply(
        store,
        b"u1",
        event(
            T0 + 60,
            event="Order Completed",
            userId="u1",
            messageId="o-1",
            properties={"order_id": "o-1", "total": 199.0},
        ),
        now=T0 + 60,
    )
    assert store.get(WAKE_UPS, b"u1") is None
    assert (b"du1", None) in store.pending_records()
    assert store.get(PROFILES, b"u1").orders == 1


def test_an_identify_asks_the_anonymous_id_to_link_through_profile_commands(store: PartitionStore):
    outbox = apply(
        store,
        b"u1",
        event(
            T0,
            type="identify",
            event=...,
            properties=...,
            userId="u1",
            anonymousId="a1",
            messageId="id-1",
            traits={"city": "Lyon"},
        ),
    )
    forwards = sent_to(outbox, TOPICS.profile_commands)
    assert len(forwards) == len(outbox) == 1
    key, value = forwards[0]
    assert key == b"a1"
    link = decode_command(value)
    assert isinstance(link, LinkIdentity)
    assert (link.alias, link.customer_id, link.kind, link.at) == ("a1", "u1", "identify", T0)
    assert "a1" in store.get(PROFILES, b"u1").linked_ids


def test_the_link_travels_to_the_alias_and_its_profile_is_absorbed(store: PartitionStore):
    """All three keys live in this one store: alias history, the link at the alias, the absorb at the customer."""
    apply(store, b"a1", added_to_cart(user=..., anonymousId="a1", message_id="anon-add"))
    outbox = apply(
        store,
        b"u1",
        event(T0 + 10, type="identify", event=..., properties=..., userId="u1", anonymousId="a1", messageId="id-1"),
        now=T0 + 10,
    )
    [(alias_key, link_bytes)] = sent_to(outbox, TOPICS.profile_commands)
    outbox = apply(store, alias_key, decode_command(link_bytes), now=T0 + 10)
    assert store.get(PROFILES, b"a1") is None
    assert store.get(IDENTITIES, b"a1").redirect_to == "u1"
    [(customer_key, absorb_bytes)] = sent_to(outbox, TOPICS.profile_commands)
    absorb = decode_command(absorb_bytes)
    assert customer_key == b"u1" and isinstance(absorb, AbsorbProfile)
    apply(store, customer_key, absorb, now=T0 + 10)
    merged = store.get(PROFILES, b"u1")
    assert merged.event_count == 2 and [item.product_id for item in merged.cart] == ["tent-2p"]
    assert store.get(WAKE_UPS, b"u1") == T0 + DELAY  # the anonymous cart's reminder moved to the customer
    forwarded = apply(store, b"a1", added_to_cart(user=..., anonymousId="a1", message_id="late", at=T0 + 20))
    assert [key for key, _ in sent_to(forwarded, TOPICS.profile_commands)] == [b"u1"]  # redirected


def test_a_due_cart_check_sends_the_trigger_and_clears_the_due_time(store: PartitionStore):
    apply(store, b"u1", added_to_cart())
    outbox = apply(store, b"u1", WakeUp(now=T0 + DELAY), now=T0 + DELAY)
    triggers = sent_to(outbox, TOPICS.triggers("email"))
    assert len(triggers) == 1 and triggers[0][0] == b"u1"
    assert orjson.loads(triggers[0][1])["customer_id"] == "u1"
    assert store.get(WAKE_UPS, b"u1") is None
    assert len(store.get(PROFILES, b"u1").triggers_sent) == 1


def test_segment_entries_are_published_and_counted_per_partition(store: PartitionStore, audiences):
    policy = StagePolicy(profile=POLICY.profile, audiences=audiences)
    outbox = Outbox()
    for user in ("u1", "u2"):
        apply(store, user.encode(), added_to_cart(user=user, message_id=f"add-{user}"), policy=policy, outbox=outbox)
    changes = [orjson.loads(value) for _, value in sent_to(outbox, TOPICS.segment_changes)]
    entries = [(c["customer_id"], c["change"]) for c in changes if c.get("segment") == "new_visitors"]
    assert entries == [("u1", "entered"), ("u2", "entered")]
    assert store.get(SEGMENT_SIZES, b"new_visitors") == 2
    assert store.get(PROFILES, b"u1").audience_version == audiences.version


# --- the clock ---------------------------------------------------------------------------------------


def schedule(store: PartitionStore, key: bytes, due_at: float | None) -> None:
    """Write a due time as the profile stage does: into the table, and onto the index."""
    store.put(WAKE_UPS, key, due_at)
    if due_at is not None:
        store.due_index.push(key, due_at)


def due_keys(store: PartitionStore, now: float) -> list[bytes]:
    commands = list(due_commands(store, now))
    # Each wake-up is decided at its own due time, whenever the clock gets to it.
    assert all(command == WakeUp(now=store.get(WAKE_UPS, key)) for key, command in commands)
    return [key for key, _ in commands]


@pytest.mark.parametrize(("behind_s", "interval_s"), [(0.0, 1.0), (3600.0, 60.0)])
def test_the_refresh_stretch_follows_the_workers_backlog_not_the_events_age(
    store: PartitionStore, audiences, behind_s: float, interval_s: float
):
    """Events stamped two hours back (an SDK's offline queue): a worker whose stream time is the wall clock
    is not behind and keeps the one-second interval; one an hour behind its input stretches it to 60 s."""
    policy = StagePolicy(
        profile=POLICY.profile,
        audiences=audiences,
        audience_min_interval_s=1.0,
        audience_backlog_fraction=0.1,
        audience_max_interval_s=60.0,
    )
    stream_time = time.time() - behind_s
    sent_at = time.time() - 7200.0
    apply(store, b"u1", event(sent_at, messageId="old-1"), now=stream_time, policy=policy)
    refreshed_at = store.get(PROFILES, b"u1").audience_refreshed_at
    assert refreshed_at == stream_time
    apply(store, b"u1", event(sent_at + 1, messageId="old-2"), now=stream_time + 0.5, policy=policy)
    assert store.get(WAKE_UPS, b"u1") == refreshed_at + interval_s


def test_due_commands_only_for_due_times_still_in_the_table(store: PartitionStore):
    schedule(store, b"a", T0 + 10)
    schedule(store, b"b", T0 + 100)
    schedule(store, b"c", T0 + 5)
    schedule(store, b"c", T0 + 50)  # moved later: the T0 + 5 entry is stale
    schedule(store, b"d", T0 + 1)
    schedule(store, b"d", None)  # nothing pending any more
    assert due_keys(store, T0) == []
    assert due_keys(store, T0 + 20) == [b"a"]
    assert due_keys(store, T0 + 60) == [b"c"]
    assert due_keys(store, T0 + 200) == [b"b"]
    assert due_keys(store, T0 + 300) == []  # each due time fires once


def test_due_commands_compact_a_bloated_index_from_the_table(store: PartitionStore):
    store.due_index = DueIndex(compact_factor=1, min_compact_size=0)
    for shift in range(10):
        schedule(store, b"a", T0 + shift)  # nine stale entries, one current
    schedule(store, b"b", T0 + 50)
    assert store.due_index.needs_compaction()
    assert due_keys(store, T0 + 20) == [b"a"]
    assert len(store.due_index) == 1  # rebuilt from the two table entries, then "a" popped
    assert due_keys(store, T0 + 50) == [b"b"]


def test_rebuild_due_index_from_a_reopened_store(tmp_path: Path):
    path = tmp_path / "partition-0"
    first = PartitionStore(0, path, OPTIONS)
    schedule(first, b"a", T0 + 10)
    schedule(first, b"b", T0 + 20)
    schedule(first, b"gone", T0 + 5)
    flush(first)
    schedule(first, b"gone", None)
    flush(first, 1)
    first.close()
    store = PartitionStore(0, path, OPTIONS)
    try:
        assert due_keys(store, T0 + 100) == []  # a fresh index knows nothing until rebuilt
        assert rebuild_due_index(store) == 2
        assert due_keys(store, T0 + 100) == [b"a", b"b"]
    finally:
        store.close()


def test_the_clock_wakes_the_profile_stage_for_an_abandoned_cart(store: PartitionStore):
    apply(store, b"u1", added_to_cart())
    assert due_keys(store, T0 + DELAY - 1) == []
    outbox = Outbox()
    for key, command in due_commands(store, T0 + DELAY):
        apply(store, key, command, now=T0 + DELAY, outbox=outbox)
    assert [key for key, _ in sent_to(outbox, TOPICS.triggers("email"))] == [b"u1"]
    assert due_keys(store, T0 + 10 * DELAY) == []


def test_a_reminder_deferred_to_a_time_already_past_is_decided_then_in_the_same_pass(store: PartitionStore):
    # A cart left at 22:10 UTC in Vienna: due at 23:40 local, inside the quiet hours (21:00-08:00), so deferred to
    # 08:00 local (07:00 UTC). A clock that first fires at noon (a worker catching up, or restarted) decides it at
    # 07:00 in the same pass; left to the next tick, any command for the key before it would find the reminder
    # overdue and decide it at its own time, 13:00 local, differently from an undisturbed run.
    day = T0 - T0 % 86400
    quiet = replace(POLICY.triggers.guardrails, quiet_hours=QuietHours(21 * 60, 8 * 60))
    policy = replace(POLICY, triggers=replace(POLICY.triggers, guardrails=quiet))
    zone = {"timezone": "Europe/Vienna"}
    apply(store, b"u1", event(day, type="identify", event=..., properties=..., userId="u1", traits=zone), policy=policy)
    apply(store, b"u1", added_to_cart(at=day + 22 * 3600 + 600), policy=policy)
    noon = day + 86400 + 12 * 3600
    outbox = Outbox()
    woken = []
    for key, command in due_commands(store, noon):
        woken.append(command.now)
        apply(store, key, command, now=noon, policy=policy, outbox=outbox)
    assert woken == [day + 22 * 3600 + 600 + DELAY, day + 86400 + 7 * 3600]
    sent = [orjson.loads(value) for _, value in sent_to(outbox, TOPICS.triggers("email"))]
    decided = [(trigger["kind"], trigger["decided_at"]) for trigger in sent]
    assert decided == [("cart_abandonment", day + 86400 + 7 * 3600)]


def test_stale_audience_commands_only_for_profiles_of_another_version(store: PartitionStore, audiences):
    policy = StagePolicy(audiences=audiences)
    current = audiences.version
    for key, version in (
        (b"c-current", current),
        (b"c-old", "0123456789abcdef"),
        (b"c-never", ""),
        (b"c-deleted", "old"),
    ):
        store.put(PROFILES, key, Profile(customer_id=key.decode(), audience_version=version))
    flush(store)
    store.delete(PROFILES, b"c-deleted")
    store.put(PROFILES, b"c-cached", Profile(customer_id="c-cached", audience_version="old"))  # not yet flushed
    store.put(WAKE_UPS, b"c-other-table", T0)
    commands = stale_audience_commands(store, policy, T0)
    assert sorted(key for key, _ in commands) == [b"c-cached", b"c-never", b"c-old"]
    assert all(command == WakeUp(now=T0) for _, command in commands)


def test_a_partition_checked_against_these_definitions_reads_no_profile_at_the_next_takeover(
    store: PartitionStore, audiences
):
    policy = StagePolicy(audiences=audiences)
    store.put(PROFILES, b"c-old", Profile(customer_id="c-old", audience_version="old"))
    assert [key for key, _ in stale_audience_commands(store, policy, T0)] == [b"c-old"]
    assert store.get(CHECKED_AUDIENCES, PARTITION_KEY) == audiences.version  # stored with the checks
    assert stale_audience_commands(store, policy, T0) == []  # the next takeover with the same definitions
    changed = StagePolicy(audiences=replace(audiences, version="another-version"))
    assert [key for key, _ in stale_audience_commands(store, changed, T0)] == [b"c-old"]  # new definitions


def test_stale_audience_checks_bring_profiles_to_the_current_version(store: PartitionStore, audiences):
    policy = StagePolicy(audiences=audiences)
    store.put(
        PROFILES, b"c1", Profile(customer_id="c1", first_seen=T0, last_seen=T0, event_count=1, audience_version="old")
    )
    for key, command in stale_audience_commands(store, policy, T0):
        apply(store, key, command, policy=policy)
    assert store.get(PROFILES, b"c1").audience_version == audiences.version
    assert stale_audience_commands(store, policy, T0) == []


def test_no_stale_audience_commands_without_audiences(store: PartitionStore):
    store.put(PROFILES, b"c1", Profile(customer_id="c1", audience_version="old"))
    assert stale_audience_commands(store, StagePolicy(), T0) == []
