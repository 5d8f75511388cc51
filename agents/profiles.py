"""The profile stage: the only writer of per-customer state.

Reads the key's state, calls the pure ``core.profile_stage.step``, writes the result back (so the
changelog records it) and sends the triggers it decided.
"""

from __future__ import annotations

import logging
import time

from core.profile_stage import StagePolicy, step
from core.triggers import CartAbandonmentPolicy
from schemas.commands import ApplyEvent, decode_command
from streams import metrics
from streams.app import app, customer_to_profile, customer_to_trigger_due, profile_commands_topic, settings, trigger_topics
from streams.codecs import decode_profile, encode_float, encode_json, encode_profile

log = logging.getLogger(__name__)

policy = StagePolicy(
    cart_abandonment=CartAbandonmentPolicy(
        delay_s=settings.cart_abandonment_delay_s, max_age_s=settings.cart_abandonment_max_age_s
    )
)


@app.agent(profile_commands_topic)
async def update_profiles(stream):
    async for event in stream.events():
        key = event.key
        command = decode_command(event.value)
        kind = "event" if isinstance(command, ApplyEvent) else "check"
        metrics.profile_commands.labels(kind).inc()
        before = decode_profile(customer_to_profile.get(key))
        result = step(before, command, now=time.time(), policy=policy)
        if result.duplicate:
            metrics.events_duplicate.inc()
        if result.changed and result.profile is not None:
            customer_to_profile[key] = encode_profile(result.profile)
        _store_due(key, result.due_at)
        for trigger in result.triggers:
            await trigger_topics[trigger.channel].send(key=trigger.customer_id.encode(), value=encode_json(trigger))
            metrics.triggers_emitted.labels(trigger.kind, trigger.channel).inc()
        if isinstance(command, ApplyEvent) and not result.duplicate:
            lag = time.time() - command.event.timestamp
            if 0 <= lag < 3600:
                metrics.event_lag_seconds.observe(lag)


def _store_due(key: bytes, due_at: float | None) -> None:
    stored = customer_to_trigger_due.get(key)
    if due_at is None:
        if stored is not None:
            del customer_to_trigger_due[key]
    elif stored is None or float(stored) != due_at:
        customer_to_trigger_due[key] = encode_float(due_at)
