"""The profile stage as one pure step: (state of a key, command, now) → new state and what to emit.

``agents.profiles.CommandHandler.apply`` reads the key's state from the partition's store, calls ``step_key``,
writes the returned state back and sends what it says; all decisions live here.

Per key the store holds (and the agent builds ``KeyState(key, profile, identity)`` from), in the tables
of ``agents.tables``:

- ``PROFILES[key]``     ``Profile``, absent when ``state.profile`` is None;
- ``IDENTITIES[key]``   ``core.identity.KeyIdentity``, absent when it ``is_default``;
- ``WAKE_UPS[key]``     ``StepResult.due_at`` (absent when None): the earliest pending trigger or audience
  refresh of the key.

After ``step_key`` the agent writes the profile back if ``result.profile_changed`` (deleting it when
``result.state.profile`` is None), the identity if ``result.identity_changed`` (deleting it when it
``is_default``), stores ``due_at``, forwards each ``(key, command)`` of ``result.forwards`` (applied in
place when the worker holds that key's partition, else sent to ``profile-commands``), sends
``result.triggers`` and ``result.audience_changes`` and counts ``result.notes``; the
``result.conversions`` (``core.triggers.attribution``: responses attributed to a sent or held-out
trigger) go to ``trigger-conversions`` and, with the triggers, into the per-kind counters.

Deletion ("Deletion Requested" event or ``ForgetCustomer``): the profile is removed, every linked id
gets an ``UnlinkIdentity``, and the key keeps only ``KeyIdentity(forgotten_at=...)`` — an id and a time,
no personal data. Later events for the key with a timestamp up to ``forgotten_at`` (replays, late
arrivals) are dropped; newer ones start a fresh profile (the person came back). Triggers are never
decided from state older than ``forgotten_at``.

Triggers: after every command (and after segments and scores are refreshed) ``core.triggers.engine``
advances the key's pending triggers — entries, exits, due decisions through the guard chain — and
answers the triggers to publish and the outcomes to count (``StepResult.triggers`` / ``trigger_outcomes``).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from core.audiences import AudiencePolicy, refresh_audiences
from core.identity import (
    UNLINKED,
    KeyIdentity,
    decide_link,
    decide_unlink,
    flattening_links,
    links_revealed,
    replayed_before_link,
    with_linked_ids,
)
from core.profile.apply import apply_event, new_profile
from core.profile.bounded import capped_append
from core.profile.merge import holds_every_event_of, merge_profiles
from core.profile.policy import MAX_ABSORBED_IDS, ProfilePolicy
from core.stage_state import KeyState, StepResult
from core.triggers.attribution import ATTRIBUTED_EVENTS, DEFAULT_WINDOW_S, attribute_event
from core.triggers.engine import (
    TriggerPolicy,
    advance_triggers,
    nothing_to_advance,
    quiet_event,
    refresh_may_enter,
    waiting_wake,
)
from schemas.commands import (
    AbsorbProfile,
    ApplyEvent,
    ForgetCustomer,
    LinkIdentity,
    ProfileCommand,
    UnlinkIdentity,
    WakeUp,
)
from schemas.conversions import TriggerConversion
from schemas.profile import Profile
from schemas.segments import AudienceChange, SegmentChange
from schemas.triggers import Trigger

DELETION_REQUESTED = "Deletion Requested"

# Notes (besides core.identity's link notes), one metric label value each.
APPLIED = "applied"
DUPLICATE = "duplicate"
FORWARDED = "forwarded"
REDIRECT_LOOP = "redirect_loop"
FORGOTTEN_DROP = "forgotten_drop"
ABSORBED = "absorbed"
ABSORB_DUPLICATE = "absorb_duplicate"
ABSORB_FORGOTTEN = "absorb_forgotten"
FORGOTTEN = "forgotten"


@dataclass(frozen=True)
class StagePolicy:
    """Everything the profile stage decides by (built from ``Settings`` by the worker).

    ``profile.pii_hash_key`` must be ``Settings.pii_hash_key`` (the default drops email/phone instead of
    hashing them); ``max_users_per_anonymous_id`` is ``Settings.max_users_per_anonymous_id``.
    """

    triggers: TriggerPolicy | None = None  # trigger definitions; None: no triggers
    profile: ProfilePolicy = ProfilePolicy()
    max_users_per_anonymous_id: int = 3
    max_hops: int = 8  # a command forwarded this often is dropped (redirect loop)
    audiences: AudiencePolicy | None = None  # segments and scores; None: not maintained
    audience_min_interval_s: float = 0.0  # refresh segments/scores at most this often per customer
    # While the worker is ``backlog_s`` seconds behind its input (``step_key``), an event stretches that
    # interval to ``backlog_s × audience_backlog_fraction``, at most ``audience_max_interval_s``: while the
    # stage catches up, a customer's burst is evaluated once, not once a second, and live traffic keeps the
    # short interval, old events included (an SDK's offline queue is live traffic to a worker not behind).
    audience_backlog_fraction: float = 0.0
    audience_max_interval_s: float = 60.0
    attribution_window_s: float = DEFAULT_WINDOW_S  # responses to a trigger count this long after it


def _result(
    before: KeyState,
    after: KeyState,
    policy: StagePolicy,
    *,
    notes: tuple[str, ...] = (),
    forwards: tuple[tuple[str, ProfileCommand], ...] = (),
    triggers: tuple[Trigger, ...] = (),
    due_at: float | None = None,
) -> StepResult:
    return StepResult(
        state=after,
        due_at=due_at,
        triggers=triggers,
        forwards=forwards,
        notes=notes,
        profile_changed=after.profile is not before.profile,
        identity_changed=after.identity is not before.identity,
    )


def _forward(state: KeyState, command: ProfileCommand, policy: StagePolicy, target: str) -> StepResult:
    """Send ``command`` on to the key this one redirects to (hops + 1), or drop it as a loop."""
    hops = getattr(command, "hops", 0)
    if hops >= policy.max_hops:
        return _result(state, state, policy, notes=(REDIRECT_LOOP,))
    forwarded = msgspec.structs.replace(command, hops=hops + 1)
    return _result(state, state, policy, notes=(FORWARDED,), forwards=((target, forwarded),))


def _apply(state: KeyState, command: ApplyEvent, now: float, policy: StagePolicy) -> StepResult:
    event = command.event
    identity = state.identity
    if identity.redirect_to is not None:  # a linked id (else no replay before a link can be dropped here)
        if replayed_before_link(identity, event):
            return _result(state, state, policy, notes=(DUPLICATE,))
        return _forward(state, command, policy, identity.redirect_to)
    if event.type == "track" and event.event == DELETION_REQUESTED:
        forget = ForgetCustomer(customer_id=state.key, at=event.timestamp, request_id=event.message_id)
        return _forget(state, forget, policy)
    forgotten_at = identity.forgotten_at
    if forgotten_at is not None and event.timestamp <= forgotten_at:
        return _result(state, state, policy, notes=(FORGOTTEN_DROP,))
    profile = state.profile or new_profile(state.key)
    updated = apply_event(profile, event, now=now, policy=policy.profile)
    if updated is profile:  # apply_event returns its input unchanged for an already applied message id
        # A replay after a crash: the profile write may have reached the changelog while the links it
        # asked for did not. Links are idempotent at the alias's key, so ask for them again.
        relinks = links_revealed(profile, event, again=True)
        return _result(state, state, policy, notes=(DUPLICATE,), forwards=tuple((link.alias, link) for link in relinks))
    links = links_revealed(updated, event)
    forwards: tuple[tuple[str, ProfileCommand], ...] = ()
    if links:
        updated = with_linked_ids(updated, [link.alias for link in links])
        forwards = tuple((link.alias, link) for link in links)
    conversions: tuple[TriggerConversion, ...] = ()
    if event.event in ATTRIBUTED_EVENTS:  # checked here: most events are neither messaging nor orders
        updated, conversions = attribute_event(updated, event, window_s=policy.attribution_window_s)
    # Built once, with everything the step decided (this is the path of nearly every event).
    return StepResult(
        state=msgspec.structs.replace(state, profile=updated),
        due_at=None,
        forwards=forwards,
        notes=(APPLIED,),
        profile_changed=updated is not state.profile,
        conversions=conversions,
    )


def _link(state: KeyState, command: LinkIdentity, policy: StagePolicy) -> StepResult:
    decision = decide_link(state.identity, state.profile, command, max_users=policy.max_users_per_anonymous_id)
    after = KeyState(key=state.key, profile=decision.profile, identity=decision.identity)
    forwards = ((command.customer_id, decision.absorb),) if decision.absorb is not None else ()
    return _result(state, after, policy, notes=(decision.note,), forwards=forwards)


def _absorb(state: KeyState, command: AbsorbProfile, policy: StagePolicy) -> StepResult:
    if state.identity.redirect_to is not None:
        return _forward(state, command, policy, state.identity.redirect_to)
    forgotten_at = state.identity.forgotten_at
    if forgotten_at is not None and command.linked_at <= forgotten_at:
        return _result(state, state, policy, notes=(ABSORB_FORGOTTEN,))
    profile = state.profile or new_profile(state.key)
    if command.absorb_id in profile.absorbed_ids or holds_every_event_of(profile, command.absorbed):
        return _result(state, state, policy, notes=(ABSORB_DUPLICATE,))
    merged = merge_profiles(profile, command.absorbed, policy=policy.profile)
    merged = msgspec.structs.replace(
        merged, absorbed_ids=capped_append(merged.absorbed_ids, command.absorb_id, MAX_ABSORBED_IDS)
    )
    links = flattening_links(merged, command.absorbed, command.linked_at)
    after = msgspec.structs.replace(state, profile=merged)
    return _result(state, after, policy, notes=(ABSORBED,), forwards=tuple((link.alias, link) for link in links))


def _forget(state: KeyState, command: ForgetCustomer, policy: StagePolicy) -> StepResult:
    if state.identity.redirect_to is not None:
        return _forward(state, command, policy, state.identity.redirect_to)
    profile = state.profile
    linked = profile.linked_ids if profile is not None else ()
    forgotten_at = max(state.identity.forgotten_at or command.at, command.at)
    identity = KeyIdentity(forgotten_at=forgotten_at)
    if identity == state.identity and profile is None:
        return _result(state, state, policy, notes=(FORGOTTEN,), due_at=None)
    unlinks = tuple((alias, UnlinkIdentity(alias=alias, customer_id=state.key, at=command.at)) for alias in linked)
    after = KeyState(key=state.key, profile=None, identity=identity)
    return _result(state, after, policy, notes=(FORGOTTEN,), forwards=unlinks, due_at=None)


def _unlink(state: KeyState, command: UnlinkIdentity, policy: StagePolicy) -> StepResult:
    identity = decide_unlink(state.identity, command)
    after = state if identity == state.identity else msgspec.structs.replace(state, identity=identity)
    return _result(state, after, policy, notes=(UNLINKED,))


def step_key(
    state: KeyState, command: ProfileCommand, *, now: float, policy: StagePolicy, backlog_s: float = 0.0
) -> StepResult:
    """Apply one command to the state of its key, bring its segments and scores up to date, then advance
    its triggers. ``backlog_s``: how far the worker's processing is behind its input (the wall clock minus
    the partition's stream time, i.e. its records' Kafka timestamps), not how old the event is.

    Segments and scores are refreshed when the profile changed, at most once per
    ``policy.audience_min_interval_s`` per customer: a burst of events (a session, a backlog) is evaluated
    once, at the end of the interval, by a wake-up. A ``WakeUp`` or new definitions always refresh. The
    wake-up time ``due_at`` is the earliest of the pending triggers and the next audience refresh, so one
    due table serves both.
    """
    # An event is nearly every command: straight to its step, past the dispatch.
    result = (
        _apply(state, command, now, policy)
        if isinstance(command, ApplyEvent)
        else _step_command(state, command, now=now, policy=policy)
    )
    at = command.now if isinstance(command, WakeUp) else now
    refreshed = False
    if policy.audiences is not None:
        result, refreshed = _refresh(state, command, result, now=now, at=at, backlog_s=backlog_s, policy=policy)
    if policy.triggers is None or result.state.profile is None:
        return result
    return _advance_triggers(state.profile, command, result, at=at, refreshed=refreshed, policy=policy.triggers)


def _advance_triggers(
    before: Profile | None,
    command: ProfileCommand,
    result: StepResult,
    *,
    at: float,
    refreshed: bool,
    policy: TriggerPolicy,
) -> StepResult:
    """``result`` with the key's triggers advanced (``core.triggers.engine``) and its wake-up time."""
    profile = result.state.profile
    assert profile is not None
    event = command.event if isinstance(command, ApplyEvent) and APPLIED in result.notes else None
    refreshed = refreshed or isinstance(command, WakeUp)
    if refreshed and event is not None and not refresh_may_enter(profile, event, at=at, policy=policy):
        refreshed = False  # nothing rule-only can enter: the event's own paths (see refresh_may_enter)
    if nothing_to_advance(profile, event, refreshed=refreshed, policy=policy):
        return result  # as advance_triggers would leave it: same profile, no wake-up of its own
    quiet = quiet_event(profile, event, refreshed=refreshed, policy=policy)
    if quiet:  # the event can touch no pending trigger: often none changes (half the calls of the workload)
        wake = waiting_wake(profile, before, at=at, policy=policy)
        if wake is not None:  # as advance_triggers would leave it: same profile, the waiting triggers' wake-up
            due_at = _earliest(result.due_at, wake)
            return result if due_at == result.due_at else msgspec.structs.replace(result, due_at=due_at)
    step = advance_triggers(
        profile,
        event=event,
        at=at,
        refreshed=refreshed,
        forgotten_at=result.state.identity.forgotten_at,
        policy=policy,
        before=before,
        quiet=quiet,  # asked above (and, when quiet, the waiting triggers' wake-up): not asked again
    )
    due_at = _earliest(result.due_at, step.due_at)
    if step.profile is profile:
        if step.outcomes:  # entries that arrived stale: counted, the profile unchanged
            return msgspec.structs.replace(result, due_at=due_at, trigger_outcomes=step.outcomes)
        return result if due_at == result.due_at else msgspec.structs.replace(result, due_at=due_at)
    return msgspec.structs.replace(
        result,
        state=msgspec.structs.replace(result.state, profile=step.profile),
        profile_changed=True,
        due_at=due_at,
        triggers=(*result.triggers, *step.triggers),
        trigger_outcomes=step.outcomes,
    )


def _earliest(first: float | None, second: float | None) -> float | None:
    """The earlier of two optional wake-up times (plain comparisons: this runs for every event)."""
    if first is None:
        return second
    return first if second is None or first <= second else second


def _refresh(
    state: KeyState,
    command: ProfileCommand,
    result: StepResult,
    *,
    now: float,
    at: float,
    backlog_s: float,
    policy: StagePolicy,
) -> tuple[StepResult, bool]:
    """``result`` with segments and scores refreshed when due (see ``step_key``), and whether they were.

    ``result`` is copied once, and only when this changes it (most events change nothing here: their
    customer's refresh is not due yet and a wake-up for it is already set)."""
    before = result.state.profile
    audiences = policy.audiences
    assert audiences is not None
    if before is None:
        return _leave_all_segments(state.profile, result, now=now, policy=audiences), False
    profile = before
    changes: tuple[AudienceChange, ...] = ()
    changes_were_computed = False
    must_refresh = isinstance(command, WakeUp) or profile.audience_version != audiences.version
    if must_refresh or result.profile_changed:
        next_refresh = profile.audience_refreshed_at + _refresh_interval(command, backlog_s, policy)
        if must_refresh or at >= next_refresh:
            update = refresh_audiences(profile, now=at, policy=audiences, profile_policy=policy.profile)
            changes = update.changes
            changes_were_computed = True
            profile = msgspec.structs.replace(update.profile, audience_refreshed_at=at)
        elif profile.audience_due_at is None or profile.audience_due_at > next_refresh:
            profile = msgspec.structs.replace(profile, audience_due_at=next_refresh)
        # else: a wake-up is due by then anyway
    audience_due = profile.audience_due_at
    if audience_due is not None and audience_due <= at and changes_were_computed:
        # Just refreshed, yet due again at or before now: asking to be woken for the past would spin.
        audience_due = None
    # An overdue refresh that this step did not perform stays the key's wake-up (the clock fires it at its
    # next tick): dropping it here would leave the profile with stale segments until its next event.
    due_at = _earliest(result.due_at, audience_due)
    if profile is before:
        if due_at == result.due_at and changes == result.audience_changes:
            return result, changes_were_computed
        return msgspec.structs.replace(result, due_at=due_at, audience_changes=changes), changes_were_computed
    state_after = msgspec.structs.replace(result.state, profile=profile)
    refreshed = msgspec.structs.replace(
        result, state=state_after, profile_changed=True, due_at=due_at, audience_changes=changes
    )
    return refreshed, changes_were_computed


def _refresh_interval(command: ProfileCommand, backlog_s: float, policy: StagePolicy) -> float:
    """How long after the last refresh segments and scores may be refreshed again (see ``StagePolicy``).

    The stretch follows the worker's backlog, not the event's age: an event stamped hours ago (an SDK's
    offline queue, a late upload) that reaches a worker keeping up is refreshed as promptly as any other."""
    interval = policy.audience_min_interval_s
    if policy.audience_backlog_fraction > 0 and backlog_s > 0 and isinstance(command, ApplyEvent):
        interval = max(interval, min(backlog_s * policy.audience_backlog_fraction, policy.audience_max_interval_s))
    return interval


def _leave_all_segments(
    before: Profile | None, result: StepResult, *, now: float, policy: AudiencePolicy
) -> StepResult:
    """A profile that is gone (forgotten, or merged into another) leaves every segment it was in."""
    if before is None or not before.segments:
        return result
    reason = "customer forgotten" if FORGOTTEN in result.notes else "profile merged into another customer"
    exits = tuple(
        SegmentChange(
            customer_id=before.customer_id,
            segment=name,
            change="exited",
            at=now,
            reason=reason,
            group=(rule.group or "") if (rule := policy.definitions.rule(name)) is not None else "",
        )
        for name in before.segments
    )
    return msgspec.structs.replace(result, audience_changes=exits)


def _step_command(state: KeyState, command: ProfileCommand, *, now: float, policy: StagePolicy) -> StepResult:
    """Apply one command to the state of its key (``state.key`` is the command's Kafka key).

    - ``ApplyEvent``: forwarded (hops + 1) if the key redirects, unless the key applied it itself before
      it was linked away (a replay: dropped, see ``KeyIdentity.applied_before_link``); "Deletion
      Requested" forgets the customer; else applied to the profile (a new one if none), asking for links
      it reveals.
    - ``LinkIdentity``: ``core.identity.decide_link`` at the alias; may forward an ``AbsorbProfile``.
    - ``AbsorbProfile``: merged once per ``absorb_id``, and not at all when the customer already applied
      every event of the absorbed profile (``core.profile.merge.holds_every_event_of``); re-points the
      absorbed profile's linked ids.
    - ``ForgetCustomer``: profile deleted, ``UnlinkIdentity`` to every linked id, key marked forgotten.
    - ``UnlinkIdentity``: the alias drops its redirect to the forgotten customer.
    - ``WakeUp``: nothing here; ``step_key`` refreshes audiences and advances triggers at ``command.now``.
    """
    if isinstance(command, ApplyEvent):
        return _apply(state, command, now, policy)
    if isinstance(command, WakeUp):
        return _result(state, state, policy)
    if isinstance(command, LinkIdentity):
        return _link(state, command, policy)
    if isinstance(command, AbsorbProfile):
        return _absorb(state, command, policy)
    if isinstance(command, ForgetCustomer):
        return _forget(state, command, policy)
    if isinstance(command, UnlinkIdentity):
        return _unlink(state, command, policy)
    msg = f"unknown profile command {type(command).__name__}"
    raise TypeError(msg)
