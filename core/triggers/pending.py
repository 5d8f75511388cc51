"""Pending-trigger state across a merge of two profiles of one customer (``core.profile.merge.merge_profiles``).

One cart is one reminder: when an anonymous device (or a second device) is merged into a customer, each
kind keeps ONE pending trigger. Of one episode (a cart) it keeps the one entered first, with its
``trigger_id``, waiting until the later of both entries' activity; of two episodes (replenishment of two
purchases) the later entry. A pending trigger entered before a send of its kind on the other side is
dropped: that episode was messaged already. The sends the frequency caps count are united; the
guard chain's contact state (suppressions, push token, web push subscription) is latest-wins.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.triggers import PendingTrigger, TriggerOutcome

MAX_TRIGGER_SENDS = 32  # sends remembered for the caps (more than any weekly cap needs)


def merge_trigger_state(a: Any, b: Any, history_cap: int) -> dict[str, Any]:
    """The ``pending_triggers``, ``trigger_history`` and ``trigger_last_sent`` of ``a`` and ``b`` merged."""
    last_sent = dict(a.trigger_last_sent)
    for kind, at in b.trigger_last_sent.items():
        last_sent[kind] = max(at, last_sent.get(kind, at))
    by_kind: dict[str, PendingTrigger] = {}
    for pending in sorted((*a.pending_triggers, *b.pending_triggers), key=lambda p: (p.entered_at, p.trigger_id)):
        if pending.entered_at <= last_sent.get(pending.kind, float("-inf")):
            continue
        kept = by_kind.get(pending.kind)
        if kept is None or kept.facts.get("episode", "") != pending.facts.get("episode", ""):
            by_kind[pending.kind] = pending  # another episode (a newer purchase): the later entry knows more
        elif pending.last_entry_at > kept.last_entry_at:
            by_kind[pending.kind] = msgspec.structs.replace(
                kept, last_entry_at=pending.last_entry_at, due_at=max(kept.due_at, pending.due_at)
            )
    history: dict[tuple[str, str], TriggerOutcome] = {}
    for outcome in (*a.trigger_history, *b.trigger_history):
        history.setdefault((outcome.trigger_id, outcome.outcome), outcome)
    recent = sorted(history.values(), key=lambda o: (o.at, o.trigger_id, o.outcome))[-history_cap:]
    return {
        "pending_triggers": tuple(sorted(by_kind.values(), key=lambda p: p.kind)),
        "trigger_history": tuple(recent),
        "trigger_last_sent": last_sent,
        "trigger_sends": tuple(sorted({*a.trigger_sends, *b.trigger_sends}, key=lambda s: (s.at, s.kind, s.channel)))[
            -MAX_TRIGGER_SENDS:
        ],
        **merge_contact_state(a, b),
    }


def merge_contact_state(a: Any, b: Any) -> dict[str, Any]:
    """Suppressions, push token and web push subscription of two profiles of one customer: the latest wins."""
    suppressed, times = dict(a.suppressed), dict(a.suppressed_at)
    for channel, why in b.suppressed.items():
        at = b.suppressed_at.get(channel, 0.0)
        if channel not in suppressed or (at, why) > (times.get(channel, 0.0), suppressed[channel]):
            suppressed[channel], times[channel] = why, at
    token = max((a.push_token_at, a.push_token_hash or ""), (b.push_token_at, b.push_token_hash or ""))
    webpush = max((a.webpush_at, a.webpush_subscribed), (b.webpush_at, b.webpush_subscribed))
    return {
        "suppressed": suppressed,
        "suppressed_at": {k: v for k, v in times.items() if k in suppressed},
        "push_token_at": token[0],
        "push_token_hash": token[1] or None,
        "webpush_at": webpush[0],
        "webpush_subscribed": webpush[1],
    }
