"""The profile stage: the only writer of per-customer state (profiles, identity links, pending triggers).

For one command of one key, in the partition that owns the key: read the key's state from the
partition's store, call the pure ``core.profile_stage.step_key``, write back what changed, and put what
it asks for in the outbox (commands forwarded to other keys, segment changes, triggers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import get_args

from agents.outbox import Outbox
from agents.store import StageStore
from agents.tables import IDENTITIES, PROFILES, SEGMENT_SIZES, TRIGGER_STATS, WAKE_UPS
from agents.tally import (
    AUDIENCE_CHANGES,
    EVENT_LAG_SECONDS,
    PROFILE_COMMANDS,
    PROFILE_OUTCOMES,
    SEGMENT_CHANGES,
    TRIGGER_DECISIONS,
    TRIGGER_RESPONSES,
    TRIGGERS_EMITTED,
    Tally,
)
from core.identity import NO_IDENTITY
from core.profile_stage import KeyState, StagePolicy, StepResult, step_key
from core.triggers.attribution import count_attributions
from core.triggers.payload import HOLDOUT_TREATMENT
from schemas.codecs import encode_json
from schemas.commands import ApplyEvent, ProfileCommand, encode_command
from schemas.segments import AudienceChange, SegmentChange
from schemas.topics import TopicNames

HOLDOUT_TOPIC = "holdout"  # topics.triggers(HOLDOUT_TOPIC): triggers.holdout
# Each command type's ``PROFILE_COMMANDS`` label (its tag), looked up once here rather than per command.
_COMMAND_KINDS: dict[type, tuple[str]] = {kind: (str(kind.__struct_config__.tag),) for kind in get_args(ProfileCommand)}


class CommandHandler:
    """The profile stage's agent, bound to its policy and outputs: ``apply`` handles one command. The runtime
    calls it for every command (``agents.pipeline.ProfilePipeline`` is a ``CommandHandler``), so what never
    changes is attributes, not parameters passed on every call."""

    def __init__(self, policy: StagePolicy, *, topics: TopicNames, outbox: Outbox, tally: Tally) -> None:
        self.policy = policy
        self.topics = topics
        self.outbox = outbox
        self.tally = tally

    def apply(
        self,
        store: StageStore,
        key: bytes,
        command: ProfileCommand,
        now: float,
        forward: Callable[[bytes, ProfileCommand], None] | None = None,
    ) -> None:
        """Apply ``command`` to ``key``'s state in ``store`` (the partition that owns ``key``).

        Commands for other keys (links, merges, events of a linked id) go to ``forward`` when given (the
        runtime applies them in place when it holds the target's partition), else to ``profile-commands``.
        """
        tally = self.tally
        tally.add_each(PROFILE_COMMANDS, _COMMAND_KINDS[type(command)])
        state = KeyState(
            key=key.decode(), profile=store.get(PROFILES, key), identity=store.get(IDENTITIES, key) or NO_IDENTITY
        )
        wall = time.time()
        # ``now`` is the partition's stream time (its records' Kafka timestamps, at the collector the arrival):
        # how far the wall clock is past it is the worker's backlog, whatever the age of the event itself.
        result = step_key(state, command, now=now, policy=self.policy, backlog_s=max(0.0, wall - now))
        _write_back(store, key, result, now)
        # Most results hold only a note: each kind of output is looked at only when there is some.
        if result.forwards:
            self._forward(result.forwards, forward)
        if result.audience_changes:
            self._send_audience_changes(store, result.audience_changes)
        if result.triggers or result.trigger_outcomes or result.conversions:
            self._send_triggers(store, result)
        tally.add_each(PROFILE_OUTCOMES, result.notes)
        if isinstance(command, ApplyEvent) and command.hops == 0:
            lag = wall - command.event.timestamp
            if 0 <= lag < 3600:
                tally.observe(EVENT_LAG_SECONDS, lag)

    def _forward(
        self,
        forwards: tuple[tuple[str, ProfileCommand], ...],
        forward: Callable[[bytes, ProfileCommand], None] | None,
    ) -> None:
        for target, forwarded in forwards:
            if forward is None:
                self.outbox.send(self.topics.profile_commands, target.encode(), encode_command(forwarded))
            else:
                forward(target.encode(), forwarded)

    def _send_audience_changes(self, store: StageStore, changes: tuple[AudienceChange, ...]) -> None:
        _count_members(store, changes)
        topic = self.topics.segment_changes
        for change in changes:
            self.outbox.send(topic, change.customer_id.encode(), encode_json(change))
            self.tally.add(AUDIENCE_CHANGES, str(type(change).__struct_config__.tag))
            if isinstance(change, SegmentChange):
                self.tally.add(SEGMENT_CHANGES, change.change)

    def _send_triggers(self, store: StageStore, result: StepResult) -> None:
        """The triggers (to their channel's topic), their outcomes, the conversions, and both arms' counts."""
        topics, outbox, tally = self.topics, self.outbox, self.tally
        for trigger in result.triggers:
            # The control arm goes to triggers.holdout only: no sender subscribes to it, uplift is measured on it.
            route = HOLDOUT_TOPIC if trigger.treatment == HOLDOUT_TREATMENT else trigger.channel
            outbox.send(topics.triggers(route), trigger.customer_id.encode(), encode_json(trigger))
            tally.add(TRIGGERS_EMITTED, trigger.kind, route)
        for kind, outcome in result.trigger_outcomes:
            tally.add(TRIGGER_DECISIONS, kind, outcome)
        for conversion in result.conversions:
            outbox.send(topics.trigger_conversions, conversion.customer_id.encode(), encode_json(conversion))
            tally.add(TRIGGER_RESPONSES, conversion.kind, conversion.response)
        _count_attributions(store, result)


def handle_command(
    store: StageStore,
    key: bytes,
    command: ProfileCommand,
    *,
    now: float,
    policy: StagePolicy,
    topics: TopicNames,
    outbox: Outbox,
    tally: Tally,
    forward: Callable[[bytes, ProfileCommand], None] | None = None,
) -> None:
    """One command applied as ``CommandHandler.apply`` applies it (for a caller with a single command)."""
    CommandHandler(policy, topics=topics, outbox=outbox, tally=tally).apply(store, key, command, now, forward)


def _count_members(store: StageStore, changes) -> None:
    deltas: dict[str, int] = {}
    for change in changes:
        if isinstance(change, SegmentChange):
            deltas[change.segment] = deltas.get(change.segment, 0) + (1 if change.change == "entered" else -1)
    for segment, delta in deltas.items():
        if delta:
            key = segment.encode()
            store.put(SEGMENT_SIZES, key, (store.get(SEGMENT_SIZES, key) or 0) + delta)


def _count_attributions(store: StageStore, result: StepResult) -> None:
    """Both arms' sends and the attributed responses into the partition's per-kind counters."""
    if not result.triggers and not result.conversions:
        return
    kinds = {trigger.kind for trigger in result.triggers} | {conversion.kind for conversion in result.conversions}
    current = {kind: store.get(TRIGGER_STATS, kind.encode()) for kind in kinds}
    for kind, stats in count_attributions(current, result.triggers, result.conversions).items():
        store.put(TRIGGER_STATS, kind.encode(), stats)


def _write_back(store: StageStore, key: bytes, result, now: float) -> None:
    new_state = result.state
    if result.profile_changed:
        store.put(PROFILES, key, new_state.profile)  # None deletes
    if result.identity_changed:
        store.put(IDENTITIES, key, None if new_state.identity.is_default else new_state.identity)
    stored_due = store.get(WAKE_UPS, key)
    if result.due_at != stored_due:
        store.put(WAKE_UPS, key, result.due_at)
        if result.due_at is not None:
            store.due_index.write(key, stored_due, result.due_at, now)
