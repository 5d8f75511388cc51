"""The profile stage: the only writer of per-customer state (profiles, identity links, pending triggers).

For one command of one key, in the partition that owns the key: read the key's state from the
partition's store, call the pure ``core.profile_stage.step_key``, write back what changed, and put what
it asks for in the outbox (commands forwarded to other keys, segment changes, triggers).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from core.identity import NO_IDENTITY
from core.profile_stage import KeyState, StagePolicy, step_key
from schemas.commands import ApplyEvent, ProfileCommand, encode_command
from schemas.segments import SegmentChange
from streams import metrics
from streams.codecs import encode_json
from streams.outbox import Outbox
from streams.state_store import PartitionStore
from streams.tables import IDENTITIES, PROFILES, SEGMENT_SIZES, WAKE_UPS
from streams.topics import TopicNames


def handle_command(
    store: PartitionStore,
    key: bytes,
    command: ProfileCommand,
    *,
    now: float,
    policy: StagePolicy,
    topics: TopicNames,
    outbox: Outbox,
    forward: Callable[[bytes, ProfileCommand], None] | None = None,
) -> None:
    """Apply ``command`` to ``key``'s state in ``store`` (the partition that owns ``key``).

    Commands for other keys (links, merges, events of a linked id) go to ``forward`` when given (the
    runtime applies them in place when it holds the target's partition), else to ``profile-commands``.
    """
    metrics.tally.add(metrics.profile_commands, command.__struct_config__.tag)
    state = KeyState(
        key=key.decode(), profile=store.get(PROFILES, key), identity=store.get(IDENTITIES, key) or NO_IDENTITY
    )
    result = step_key(state, command, now=now, policy=policy)
    _write_back(store, key, result)
    _count_members(store, result.audience_changes)
    for target, forwarded in result.forwards:
        if forward is None:
            outbox.send(topics.profile_commands, target.encode(), encode_command(forwarded))
        else:
            forward(target.encode(), forwarded)
    for change in result.audience_changes:
        outbox.send(topics.segment_changes, change.customer_id.encode(), encode_json(change))
        metrics.tally.add(metrics.audience_changes, type(change).__struct_config__.tag)
    for trigger in result.triggers:
        outbox.send(topics.triggers(trigger.channel), trigger.customer_id.encode(), encode_json(trigger))
        metrics.tally.add(metrics.triggers_emitted, trigger.kind, trigger.channel)
    for kind, outcome in result.trigger_outcomes:
        metrics.tally.add(metrics.trigger_decisions, kind, outcome)
    for note in result.notes:
        metrics.tally.add(metrics.profile_notes, note)
    if isinstance(command, ApplyEvent) and command.hops == 0:
        lag = time.time() - command.event.timestamp
        if 0 <= lag < 3600:
            metrics.event_lag_seconds.observe(lag)


def _count_members(store: PartitionStore, changes) -> None:
    deltas: dict[str, int] = {}
    for change in changes:
        if isinstance(change, SegmentChange):
            deltas[change.segment] = deltas.get(change.segment, 0) + (1 if change.change == "entered" else -1)
    for segment, delta in deltas.items():
        if delta:
            key = segment.encode()
            store.put(SEGMENT_SIZES, key, (store.get(SEGMENT_SIZES, key) or 0) + delta)


def _write_back(store: PartitionStore, key: bytes, result) -> None:
    new_state = result.state
    if result.profile_changed:
        store.put(PROFILES, key, new_state.profile)  # None deletes
    if result.identity_changed:
        store.put(IDENTITIES, key, None if new_state.identity.is_default else new_state.identity)
    stored_due = store.get(WAKE_UPS, key)
    if result.due_at != stored_due:
        store.put(WAKE_UPS, key, result.due_at)
        if result.due_at is not None:
            store.due_index.push(key, result.due_at)
