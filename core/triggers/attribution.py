"""Attribution: which responses a trigger earned, each counted once, and the per-kind counters.

``attribute_event(profile, event, window_s=...)`` runs in the profile stage after an event is applied to
the canonical profile (so an order placed under any linked id, web or POS, is seen here). Candidates are
the triggers in ``profile.trigger_history`` with outcome ``sent`` (the treatment arm) or ``holdout`` (the
control arm, decided but deliberately not sent):

- a ``Message Delivered`` / ``Opened`` / ``Clicked`` event whose ``properties.trigger_id`` names a sent
  trigger is attributed to it, if it happened at most ``window_s`` after the send (the id proves the link,
  so a sender clock slightly behind ours does not lose it);
- an ``Order Completed`` is attributed (``converted``) to every candidate of either arm decided at most
  ``window_s`` before the order: each kind's uplift is measured on its own, so one order may convert a
  cart reminder and a replenishment reminder alike.

Each ``(trigger_id, response)`` is attributed once: the pairs are remembered in
``profile.trigger_responses`` (capped; an entry outlives the window, its trigger's history entry no
longer qualifies anyway). A replayed event never reaches here (``apply_event`` drops an applied message id).
Limits: candidates come from the capped ``trigger_history`` (``MAX_TRIGGER_HISTORY`` recent outcomes); an
order applied through a merge (``AbsorbProfile``) is not attributed.

``count_attributions`` turns what the stage published (triggers of both arms, conversions) into new
``KindStats`` counters; ``merge_stats`` sums counters of several partitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from core.profile.bounded import capped_append
from schemas.conversions import (
    CLICKED,
    CONVERTED,
    DELIVERED,
    HOLDOUT,
    OPENED,
    TREATMENT,
    ChannelStats,
    KindStats,
    TriggerConversion,
)
from schemas.events import Event
from schemas.profile import Profile
from schemas.triggers import Trigger, TriggerOutcome

DEFAULT_WINDOW_S = 3 * 86400.0
MAX_TRIGGER_RESPONSES = 64  # 16 history entries × 4 responses: every candidate's responses fit
SENT_OUTCOME = "sent"
HOLDOUT_OUTCOME = "holdout"
ORDER_COMPLETED = "Order Completed"
RESPONSE_OF_EVENT = {"Message Delivered": DELIVERED, "Message Opened": OPENED, "Message Clicked": CLICKED}
ATTRIBUTED_EVENTS = frozenset({*RESPONSE_OF_EVENT, ORDER_COMPLETED})


def attribute_event(
    profile: Profile, event: Event, *, window_s: float = DEFAULT_WINDOW_S
) -> tuple[Profile, tuple[TriggerConversion, ...]]:
    """The profile with what ``event`` earned remembered, and the conversions to publish (see the module
    docstring). ``profile`` already has ``event`` applied; unchanged (same object) when nothing is attributed."""
    name = event.event
    if name not in ATTRIBUTED_EVENTS or event.type != "track" or not profile.trigger_history:
        return profile, ()
    if name == ORDER_COMPLETED:
        conversions = _order_conversions(profile, event, window_s)
    else:
        conversion = _message_conversion(profile, event, RESPONSE_OF_EVENT[name], window_s)
        conversions = () if conversion is None else (conversion,)
    if not conversions:
        return profile, ()
    responses = profile.trigger_responses
    for conversion in conversions:
        responses = capped_append(responses, conversion.conversion_id, MAX_TRIGGER_RESPONSES)
    return msgspec.structs.replace(profile, trigger_responses=responses), conversions


def _arm(outcome: TriggerOutcome) -> str | None:
    if outcome.outcome == SENT_OUTCOME:
        return TREATMENT
    if outcome.outcome == HOLDOUT_OUTCOME:
        return HOLDOUT
    return None


def _message_conversion(profile: Profile, event: Event, response: str, window_s: float) -> TriggerConversion | None:
    trigger_id = event.properties.get("trigger_id")
    if not trigger_id:
        return None
    trigger_id = str(trigger_id)
    if f"{trigger_id}:{response}" in profile.trigger_responses:
        return None
    for outcome in reversed(profile.trigger_history):
        if outcome.trigger_id != trigger_id or outcome.outcome != SENT_OUTCOME:
            continue
        if event.timestamp > outcome.at + window_s:
            return None
        return _conversion(profile, outcome, TREATMENT, response, event)
    return None


def _order_conversions(profile: Profile, event: Event, window_s: float) -> tuple[TriggerConversion, ...]:
    props = event.properties
    revenue = int(props.get("total") or props.get("revenue") or 0)
    order_id = str(props.get("order_id") or "")
    currency = props.get("currency")
    found: dict[str, TriggerConversion] = {}
    for outcome in profile.trigger_history:
        arm = _arm(outcome)
        if arm is None or not outcome.at <= event.timestamp <= outcome.at + window_s:
            continue
        if f"{outcome.trigger_id}:{CONVERTED}" in profile.trigger_responses:
            continue
        found[outcome.trigger_id] = _conversion(
            profile,
            outcome,
            arm,
            CONVERTED,
            event,
            order_id=order_id,
            revenue=revenue,
            currency=str(currency) if currency else None,
        )
    return tuple(found.values())


def _conversion(
    profile: Profile,
    outcome: TriggerOutcome,
    arm: str,
    response: str,
    event: Event,
    *,
    order_id: str = "",
    revenue: int = 0,
    currency: str | None = None,
) -> TriggerConversion:
    return TriggerConversion(
        conversion_id=f"{outcome.trigger_id}:{response}",
        trigger_id=outcome.trigger_id,
        kind=outcome.kind,
        customer_id=profile.customer_id,
        treatment=arm,
        channel=outcome.channel,
        response=response,
        decided_at=outcome.at,
        at=event.timestamp,
        message_id=event.message_id,
        order_id=order_id,
        revenue=revenue,
        currency=currency,
    )


# --- counters --------------------------------------------------------------------------------------


def _copy(stats: KindStats | None) -> KindStats:
    if stats is None:
        return KindStats()
    channels = {name: msgspec.structs.replace(counts) for name, counts in stats.channels.items()}
    return msgspec.structs.replace(stats, channels=channels)


def count_attributions(
    stats: Mapping[str, KindStats | None],
    triggers: Iterable[Trigger],
    conversions: Iterable[TriggerConversion],
) -> dict[str, KindStats]:
    """New counters for every kind that ``triggers`` (published, either arm) and ``conversions`` touch.

    ``stats``: the current counters by kind (None or absent: none yet); the inputs are never changed.
    """
    updated: dict[str, KindStats] = {}

    def counters(kind: str) -> KindStats:
        if kind not in updated:
            updated[kind] = _copy(stats.get(kind))
        return updated[kind]

    for trigger in triggers:
        kind_stats = counters(trigger.kind)
        if trigger.treatment == HOLDOUT:
            kind_stats.holdout += 1
            continue
        kind_stats.sent += 1
        channel = kind_stats.channels.setdefault(trigger.channel, ChannelStats())
        channel.sent += 1
    for conversion in conversions:
        kind_stats = counters(conversion.kind)
        if conversion.response == CONVERTED:
            if conversion.treatment == HOLDOUT:
                kind_stats.converted_holdout += 1
                kind_stats.revenue_holdout += conversion.revenue
            else:
                kind_stats.converted_treatment += 1
                kind_stats.revenue_treatment += conversion.revenue
            continue
        channel = kind_stats.channels.setdefault(conversion.channel, ChannelStats())
        setattr(channel, conversion.response, getattr(channel, conversion.response) + 1)
    return updated


def merge_stats(parts: Iterable[Mapping[str, KindStats]]) -> dict[str, KindStats]:
    """The counters of several partitions (or workers) summed per kind and channel."""
    total: dict[str, KindStats] = {}
    for part in parts:
        for kind, stats in part.items():
            into = total.setdefault(kind, KindStats())
            for field in ("sent", "holdout", "converted_treatment", "converted_holdout"):
                setattr(into, field, getattr(into, field) + getattr(stats, field))
            into.revenue_treatment += stats.revenue_treatment
            into.revenue_holdout += stats.revenue_holdout
            for name, channel in stats.channels.items():
                target = into.channels.setdefault(name, ChannelStats())
                for field in ("sent", "delivered", "opened", "clicked"):
                    setattr(target, field, getattr(target, field) + getattr(channel, field))
    return total
