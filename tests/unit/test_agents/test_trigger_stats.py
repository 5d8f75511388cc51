"""The profile stage's trigger counters: conversions of both arms published and counted once, kept in the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from agents.outbox import Outbox
from agents.profiles import handle_command
from agents.tables import PROFILES, TRIGGER_STATS
from agents.tally import Tally
from core.profile.policy import ProfilePolicy
from core.profile_stage import StagePolicy
from schemas.commands import ApplyEvent
from schemas.conversions import ChannelStats, KindStats
from schemas.events import MESSAGING, PURCHASE, Event
from schemas.profile import Profile
from schemas.topics import TopicNames
from schemas.triggers import TriggerOutcome
from streams.state_store import PartitionStore, StoreOptions

TOPICS = TopicNames(prefix="t1.")
T0 = 1_764_000_000.0
POLICY = StagePolicy(profile=ProfilePolicy(pii_hash_key="test-secret"), attribution_window_s=3600.0)
OPTIONS = StoreOptions(block_cache_bytes=1 << 20, write_buffer_bytes=1 << 20, cache_bytes=1 << 20)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    opened = PartitionStore(0, tmp_path / "partition-0", OPTIONS)
    yield opened
    opened.close()


def event(name: str, at: float, message_id: str, family: str, **properties) -> Event:
    return Event(
        type="track",
        event=name,
        message_id=message_id,
        timestamp=at,
        family=family,
        user_id="u1",
        properties=properties,
    )


def apply(store: PartitionStore, command: ApplyEvent) -> Outbox:
    outbox = Outbox()
    handle_command(store, b"u1", command, now=T0, policy=POLICY, topics=TOPICS, outbox=outbox, tally=Tally())
    return outbox


def test_conversions_of_both_arms_are_published_and_counted_once(store):
    history = (
        TriggerOutcome(trigger_id="t-sent", kind="cart_abandonment", outcome="sent", at=T0, channel="sms"),
        TriggerOutcome(trigger_id="t-held", kind="replenishment", outcome="holdout", at=T0, channel="email"),
    )
    store.put(PROFILES, b"u1", Profile(customer_id="u1", user_id="u1", trigger_history=history))
    click = ApplyEvent(event=event("Message Clicked", T0 + 5, "m-click", MESSAGING, channel="sms", trigger_id="t-sent"))
    order = ApplyEvent(event=event("Order Completed", T0 + 60, "m-order", PURCHASE, order_id="o1", total=4990))

    published = [*apply(store, click).records, *apply(store, order).records]
    for command in (click, order):  # replays
        assert not [r for r in apply(store, command).records if r[0] == TOPICS.trigger_conversions]

    conversions = [orjson.loads(value) for topic, _, value, _ in published if topic == TOPICS.trigger_conversions]
    assert sorted((c["trigger_id"], c["response"], c["treatment"]) for c in conversions) == [
        ("t-held", "converted", "holdout"),
        ("t-sent", "clicked", "treatment"),
        ("t-sent", "converted", "treatment"),
    ]
    assert store.get(TRIGGER_STATS, b"cart_abandonment") == KindStats(
        converted_treatment=1, revenue_treatment=4990, channels={"sms": ChannelStats(clicked=1)}
    )
    assert store.get(TRIGGER_STATS, b"replenishment") == KindStats(converted_holdout=1, revenue_holdout=4990)
