"""The profile stage: the only writer of per-customer state (profiles, identity links, pending triggers).

Reads the key's state, calls the pure ``core.profile_stage.step_key``, writes back what changed (so the
changelogs record it), forwards the commands it asks for (identity links, merges, redirects) and sends
the triggers it decided.
"""

from __future__ import annotations

import logging
import time

from core.profile_stage import KeyState, step_key
from schemas.commands import ApplyEvent, ProfileCommand, decode_command, encode_command
from schemas.segments import SegmentChange
from streams import metrics
from streams.app import (
    alias_to_customer,
    app,
    customer_to_profile,
    customer_to_trigger_due,
    due_index,
    profile_commands_topic,
    segment_changes_topic,
    segment_partition_to_size,
    trigger_topics,
)
from streams.codecs import (
    decode_float,
    decode_identity,
    decode_profile,
    encode_float,
    encode_identity,
    encode_json,
    encode_profile,
)
from streams.stage_config import stage_policy

log = logging.getLogger(__name__)

policy = stage_policy()


@app.agent(profile_commands_topic)
async def update_profiles(stream):
    async for event in stream.events():
        await handle_command(event.key, decode_command(event.value), event.message.partition)


async def handle_command(key: bytes, command: ProfileCommand, partition: int) -> None:
    """One command for ``key``, inside the stream event of ``partition`` (the partition that owns ``key``).

    Called by this agent, and by ingestion for an inbound event already keyed and partitioned as this
    stage would key it (see ``agents.ingest``).
    """
    metrics.profile_commands.labels(command.__struct_config__.tag).inc()
    state = KeyState(
        key=key.decode(),
        profile=decode_profile(customer_to_profile.get(key)),
        identity=decode_identity(alias_to_customer.get(key)),
    )
    result = step_key(state, command, now=time.time(), policy=policy)
    _write_back(key, result)
    _count_members(result.audience_changes, partition)
    for target, forwarded in result.forwards:
        await profile_commands_topic.send(key=target.encode(), value=encode_command(forwarded))
    for change in result.audience_changes:
        await segment_changes_topic.send(key=change.customer_id.encode(), value=encode_json(change))
        metrics.audience_changes.labels(type(change).__struct_config__.tag).inc()
    for trigger in result.triggers:
        await trigger_topics[trigger.channel].send(key=trigger.customer_id.encode(), value=encode_json(trigger))
        metrics.triggers_emitted.labels(trigger.kind, trigger.channel).inc()
    for note in result.notes:
        metrics.profile_notes.labels(note).inc()
    if isinstance(command, ApplyEvent) and command.hops == 0:
        lag = time.time() - command.event.timestamp
        if 0 <= lag < 3600:
            metrics.event_lag_seconds.observe(lag)


def _count_members(changes, partition: int) -> None:
    deltas: dict[str, int] = {}
    for change in changes:
        if isinstance(change, SegmentChange):
            deltas[change.segment] = deltas.get(change.segment, 0) + (1 if change.change == "entered" else -1)
    for segment, delta in deltas.items():
        if delta:
            key = f"{segment}#{partition}".encode()
            segment_partition_to_size[key] = str(int(segment_partition_to_size.get(key) or 0) + delta).encode()


def _write_back(key: bytes, result) -> None:
    """Store what the step changed; no await in here, so read-modify-write of a key is atomic."""
    new_state = result.state
    if result.profile_changed:
        if new_state.profile is None:
            customer_to_profile.pop(key, None)
        else:
            customer_to_profile[key] = encode_profile(new_state.profile)
    if result.identity_changed:
        if new_state.identity.is_default:
            alias_to_customer.pop(key, None)
        else:
            alias_to_customer[key] = encode_identity(new_state.identity)
    stored_due = customer_to_trigger_due.get(key)
    if result.due_at is None:
        if stored_due is not None:
            del customer_to_trigger_due[key]
    elif stored_due is None or decode_float(stored_due) != result.due_at:
        customer_to_trigger_due[key] = encode_float(result.due_at)
        due_index.push(key, result.due_at)
