"""The profile stage as one pure step: (state of a key, command, now) → new state and what to emit.

The Faust agent ``agents.profiles.update_profiles`` reads the key's state from its tables, calls
``step``, writes the returned state back and sends what it says; all decisions live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.profile import Profile, apply_event
from core.triggers import CartAbandonmentPolicy, Trigger, cart_reminder_due_at, decide_cart_abandonment, record_trigger
from schemas.commands import ApplyEvent, CheckTriggers, ProfileCommand


@dataclass(frozen=True)
class StagePolicy:
    """Everything the profile stage decides by (built from ``Settings`` by the worker)."""

    cart_abandonment: CartAbandonmentPolicy = CartAbandonmentPolicy()


@dataclass(frozen=True)
class StepResult:
    """What one command changes: the profile to store, when a trigger may next be due, what to send."""

    profile: Profile | None
    due_at: float | None
    triggers: tuple[Trigger, ...] = ()
    duplicate: bool = False
    changed: bool = True
    notes: tuple[str, ...] = field(default=())


def _next_due(profile: Profile | None, policy: StagePolicy) -> float | None:
    return None if profile is None else cart_reminder_due_at(profile, policy.cart_abandonment)


def step(profile: Profile | None, command: ProfileCommand, *, now: float, policy: StagePolicy) -> StepResult:
    """Apply one command to the state of its key."""
    if isinstance(command, ApplyEvent):
        if profile is not None and command.event.message_id in profile.applied_ids:
            return StepResult(profile=profile, due_at=_next_due(profile, policy), duplicate=True, changed=False)
        updated = apply_event(profile, command.event, now=now)
        return StepResult(profile=updated, due_at=_next_due(updated, policy))
    if isinstance(command, CheckTriggers):
        if profile is None:
            return StepResult(profile=None, due_at=None, changed=False)
        trigger = decide_cart_abandonment(profile, command.now, policy.cart_abandonment)
        if trigger is None:
            due_at = _next_due(profile, policy)
            # Due but not decided means stale (idle past max age): stop checking it.
            return StepResult(profile=profile, due_at=None if due_at is not None and due_at <= command.now else due_at,
                              changed=False)
        updated = record_trigger(profile, trigger)
        return StepResult(profile=updated, due_at=_next_due(updated, policy), triggers=(trigger,))
    msg = f"unknown profile command {type(command).__name__}"
    raise TypeError(msg)
