"""The trigger pipeline of the profile stage: entries, exits, due decisions, all pure.

``advance_triggers(profile, event=..., at=..., refreshed=..., forgotten_at=..., policy=...)`` is called by
the profile stage once per command, after the event is applied and segments and scores are refreshed. It

1. cancels pending triggers whose exit events arrived (``exit.events``);
2. lets definitions whose entry events match (or, at a refresh or a wake-up, rule-only definitions)
   enter or renew a pending trigger (one per kind; a new episode supersedes the old one); an entry that
   arrives stale (a replay, a backlog far behind its events: its due time plus ``expires`` already past,
   ``ArrivedStale``) could only be dropped, so it is decided at once and counted, never pending and not
   kept in the profile's trigger history (it would push real decisions out of that bounded record);
3. cancels pending triggers whose exit rule holds, recomputes each due time from the current definitions
   (changed file, restart: same ``trigger_id``, new due time, never a second message);
4. passes each due trigger, highest priority first, through ``TriggerRule.decide`` — facts still valid,
   then the guard chain (``core.triggers.guards``) — and builds the payload of what is sent (or held
   out); a trigger deferred by quiet hours stays pending with its new due time. An event that may take
   a channel away (consent withdrawn, unsubscribed, bounced, the suppression list) cancels what waits
   without a channel left.

It answers the new profile (same object if nothing changed), the triggers to publish, the outcomes to
count and the next wake-up time (the earliest pending due time; for one held for an anonymous visitor,
its expiry). Each kind is a ``TriggerRule``; ``DefinedTrigger`` implements it from a definition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from operator import attrgetter
from typing import NamedTuple, Protocol

import msgspec

from core.profile.bounded import capped_append
from core.profile.policy import DEFAULT_POLICY, MAX_TRIGGER_HISTORY, MAX_TRIGGERS_REMEMBERED, ProfilePolicy
from core.replenishment import ConsumableCatalog
from core.triggers.caps import remember_send
from core.triggers.contact import WITHDRAWING_EVENTS, on_suppression_list, open_channels
from core.triggers.definitions import TriggerDefinition, TriggerDefinitions
from core.triggers.guardrails import NO_GUARDRAILS, Guardrails
from core.triggers.guards import (
    CANCELLED_CONSENT,
    CANCELLED_EXIT,
    CANCELLED_FACTS,
    CONTROL,
    DEFER,
    HOLD,
    SEND,
    SUPERSEDED,
    WITHDRAWN,
    Decision,
    Outcome,
    run_guards,
)
from core.triggers.kinds import EntryFacts
from core.triggers.payload import build_trigger, trigger_id_for
from core.triggers.step import TriggerStep
from schemas.events import Event
from schemas.profile import Profile
from schemas.triggers import PendingTrigger, Trigger, TriggerOutcome, TriggerSend

NEVER = float("-inf")
HELD_EXPIRY_MARGIN_S = 1.0  # a held trigger's wake-up comes just after it expires, so the stale guard drops it


class ArrivedStale(NamedTuple):
    """What ``TriggerRule.enter`` answers for a new entry that is stale on arrival: ``pending`` would be due
    longer ago than its ``expires`` at the decision time, so deciding it can only drop it (``StaleGuard``, or
    a guard before it). It has no ``trigger_id`` (``""``): no sender ever sees it, and no id is computed."""

    pending: PendingTrigger


class TriggerRule(Protocol):
    """One trigger kind: when a customer enters it, when it becomes due, what cancels it, and the decision."""

    @property
    def name(self) -> str:
        """The kind (a metric label, a guard's name in docs)."""

    def enter(
        self, profile: Profile, event: Event | None, *, entry_at: float, at: float, existing: PendingTrigger | None
    ) -> PendingTrigger | ArrivedStale | None:
        """The pending trigger after this entry (new, renewed or a new episode), or None: no entry.

        ``ArrivedStale`` (only when nothing of the kind is pending): a new entry already stale at ``at``.
        """

    def due_at(self, pending: PendingTrigger) -> float:
        """When ``pending`` may be decided (from the current definition)."""

    def cancels(
        self, profile: Profile, pending: PendingTrigger, event: Event | None, at: float, before: Profile | None = None
    ) -> bool:
        """Whether an exit (the event, or the exit rule on the profile) cancels ``pending``.

        ``before``: the profile before this event, when ``pending`` was already waiting then (an exit rule
        whose fields the event left alone need not be evaluated again).
        """

    def decide(
        self,
        profile: Profile,
        pending: PendingTrigger,
        *,
        at: float,
        forgotten_at: float | None,
        pass_sends: tuple[TriggerSend, ...] = (),
    ) -> Decided:
        """The outcome of a due ``pending`` and, when sent or held out, its payload.

        ``pass_sends``: what the higher-priority triggers decided before it in this pass sent (caps).
        """

    def wake_after_hold(self, pending: PendingTrigger) -> float:
        """When to look again at a held trigger (just after it would expire)."""


@dataclass(frozen=True)
class DefinedTrigger:
    """The ``TriggerRule`` of a definition from ``config/triggers.yaml``."""

    definition: TriggerDefinition
    consumables: ConsumableCatalog | None = None
    profile_policy: ProfilePolicy = DEFAULT_POLICY  # what the rules' view traits decide by
    guardrails: Guardrails = NO_GUARDRAILS  # what the guard chain decides by

    @property
    def name(self) -> str:
        return self.definition.name

    def enter(
        self, profile: Profile, event: Event | None, *, entry_at: float, at: float, existing: PendingTrigger | None
    ) -> PendingTrigger | ArrivedStale | None:
        d = self.definition
        entry_facts, rule_first = self._entry_order
        rule = d.entry_rule
        if rule_first and rule is not None and not rule.holds(profile, at, self.consumables, self.profile_policy):
            return None  # before the re-entry check: a rule that fails (the usual case) reads less of the profile
        if existing is None and entry_at < profile.trigger_last_sent.get(d.name, NEVER) + d.re_entry:
            return None
        facts: dict = {}
        if entry_facts is not None:
            found = entry_facts.enter(profile, event, d.params, self.consumables)
            if found is None:
                return None
            facts = found
        if not rule_first and rule is not None and not rule.holds(profile, at, self.consumables, self.profile_policy):
            return None
        episode = str(facts.get("episode", ""))
        # Each record built once, with its due time (``due_at``'s rule; a pass re-times every pending
        # trigger by ``rule.due_at`` before deciding anything, so a subclass's own ``due_at`` still rules).
        wait = d.wait
        if existing is not None and str(existing.facts.get("episode", "")) == episode:
            last = max(existing.last_entry_at, entry_at)
            kept = facts or existing.facts
            return msgspec.structs.replace(existing, last_entry_at=last, facts=kept, due_at=wait.due_at(last, kept))
        due_at = wait.due_at(entry_at, facts)
        if existing is None and at > due_at + wait.expires:  # as ``StaleGuard`` would find it when decided
            return ArrivedStale(
                PendingTrigger(
                    kind=d.name, trigger_id="", entered_at=entry_at, last_entry_at=entry_at, due_at=due_at, facts=facts
                )
            )
        return PendingTrigger(
            kind=d.name,
            trigger_id=trigger_id_for(profile.customer_id, d.name, entry_at, episode),
            entered_at=entry_at,
            last_entry_at=entry_at,
            due_at=due_at,
            facts=facts,
        )

    @cached_property
    def _entry_order(self) -> tuple[EntryFacts | None, bool]:
        """The entry facts function, and whether the rule is tested first: the cheaper test first, a
        selective facts function (most events leave it nothing), else the rule. Found once per kind."""
        entry_facts = self.definition.entry_facts
        return entry_facts, entry_facts is None or not entry_facts.selective

    def due_at(self, pending: PendingTrigger) -> float:
        return self.definition.wait.due_at(pending.last_entry_at, pending.facts)

    def cancels(
        self, profile: Profile, pending: PendingTrigger, event: Event | None, at: float, before: Profile | None = None
    ) -> bool:
        d = self.definition
        if event is not None and event.event in d.exit_events and event.timestamp >= pending.entered_at:
            return True
        rule = d.exit_rule
        if rule is None or (event is not None and rule.unchanged(before, profile)):
            return False
        return rule.holds(profile, at, self.consumables, self.profile_policy)

    def decide(
        self,
        profile: Profile,
        pending: PendingTrigger,
        *,
        at: float,
        forgotten_at: float | None,
        pass_sends: tuple[TriggerSend, ...] = (),
    ) -> Decided:
        d = self.definition
        entry_facts = d.entry_facts
        if entry_facts is not None and not entry_facts.still_valid(profile, pending, d.params):
            return Decided(CANCELLED_FACTS)
        decision = Decision(profile, pending, d, at, forgotten_at, self.guardrails, pass_sends)
        outcome = run_guards(decision)
        if outcome.action == DEFER:
            return Decided(outcome, defer_to=decision.quiet_until)
        if outcome.action not in (SEND, CONTROL):
            return Decided(outcome)
        channel, reason = decision.channel
        trigger = build_trigger(
            profile,
            pending,
            d,
            at=at,
            channel=channel,
            reason=reason,
            holdout=outcome.action == CONTROL,
            content=decision.content,
        )
        return Decided(outcome, trigger)

    def wake_after_hold(self, pending: PendingTrigger) -> float:
        return pending.due_at + self.definition.wait.expires + HELD_EXPIRY_MARGIN_S


class Decided(NamedTuple):
    """What ``TriggerRule.decide`` answers: the outcome, the payload (sent or held out), a deferral time.

    A named tuple: one is built for every due trigger, and a frozen dataclass's ``__init__`` costs a few
    times more."""

    outcome: Outcome
    trigger: Trigger | None = None
    defer_to: float | None = None


@dataclass(frozen=True)
class TriggerPolicy:
    """The trigger definitions in force and what their facts functions need (the consumables catalog).

    ``profile``: the stage's profile policy, which the rules' view traits decide by (as for segments);
    the definitions were compiled with its affinity half-life (``load_triggers(affinity_half_life_s=...)``).
    """

    definitions: TriggerDefinitions
    consumables: ConsumableCatalog | None = None
    profile: ProfilePolicy = DEFAULT_POLICY
    rules_by_kind: Mapping[str, TriggerRule] = field(default_factory=dict, compare=False)
    guardrails: Guardrails = NO_GUARDRAILS  # the worker's: the settings overridden by the file's section

    @cached_property
    def rules(self) -> dict[str, TriggerRule]:
        """Every kind's rule: ``rules_by_kind`` (custom rules) over the definitions' ``DefinedTrigger``."""
        defined = {
            d.name: DefinedTrigger(d, self.consumables, self.profile, self.guardrails)
            for d in self.definitions.definitions
        }
        return {**defined, **self.rules_by_kind}

    @cached_property
    def priority_order(self) -> dict[str, tuple[int, str]]:
        """Each kind's place in a pass, highest priority first (a kind without a rule, or with a custom rule:
        priority 0), found once: ``(-priority, kind)``."""
        rules = self.rules
        return {
            kind: (-rule.definition.priority if isinstance(rule, DefinedTrigger) else 0, kind)
            for kind, rule in rules.items()
        }

    @cached_property
    def reactive_events(self) -> frozenset[str]:
        """The track events that may touch a pending trigger without it being due: those that enter a kind,
        exit one by name, or may take a channel away (``WITHDRAWING_EVENTS``). Found once."""
        definitions = self.definitions
        return frozenset(definitions.by_entry_event) | definitions.exit_events | WITHDRAWING_EVENTS

    @property
    def version(self) -> str:
        return self.definitions.version


def advance_triggers(  # noqa: PLR0912 - the per-event path in one function: a helper costs every entry event a call
    profile: Profile,
    *,
    event: Event | None,
    at: float,
    refreshed: bool,
    forgotten_at: float | None,
    policy: TriggerPolicy,
    before: Profile | None = None,
    quiet: bool | None = None,
) -> TriggerStep:
    """Run the trigger pipeline for one command of ``profile``'s key (see the module docstring).

    ``event``: the event just applied (None for a wake-up, a merge, a link); ``at``: the decision time;
    ``refreshed``: segments and scores were just re-evaluated (rule-only entries are checked then);
    ``before``: the profile before the event (exit rules on fields the event left alone are not re-run);
    ``quiet``: ``quiet_event``'s answer when the caller (the profile stage) asked it already, and then, when
    True, ``waiting_wake`` found a waiting trigger that may change: neither is asked again, the pass settles
    the waiting triggers at once. None: ask them here.
    """
    pending_before = profile.pending_triggers
    asked = quiet is not None
    if not asked:
        quiet = quiet_event(profile, event, refreshed=refreshed, policy=policy)
    if quiet:
        if not pending_before:
            return TriggerStep(profile)  # nothing pending, and the event can enter nothing
        if not asked:
            wake = waiting_wake(profile, before, at=at, policy=policy)
            if wake is not None:
                return TriggerStep(profile, due_at=wake)  # the common case: pending, untouched, not due
        # Nothing can enter: straight to the pass that settles the waiting triggers (a due one, an exit rule).
        work = _Pass(
            policy.rules, {p.kind: p for p in pending_before}, at, before, forgotten_at, guardrails=policy.guardrails
        )
    else:
        definitions = policy.definitions
        name = event.event if event is not None and event.type == "track" else None
        entering = definitions.by_entry_event.get(name, ()) if name is not None else ()
        rule_only = definitions.rule_only if refreshed or event is None else ()
        if not pending_before and not entering and not rule_only:
            return TriggerStep(profile)  # the per-event fast path: nothing pending, nothing to enter
        withdrawing = event is not None and _withdraws(event, name, profile)
        plain = event is not None and name not in definitions.exit_events and not withdrawing
        if event is not None and not rule_only:
            candidates = entering  # the usual case: no tuple to build, no kind to deduplicate
        else:
            # Without an event (a wake-up, a merge) pending kinds with entry facts recompute them: a merge may
            # have brought purchases that move a predicted date (same episode) or start a new one.
            renewing = () if event is not None else tuple(_with_facts(definitions, pending_before))
            candidates = tuple({d.name: d for d in (*entering, *rule_only, *renewing)}.values())  # a kind may be both
        entered = _enter_all(
            policy, profile, event, candidates, before, at, forgotten_at, withdrawing=withdrawing, plain=plain
        )
        if isinstance(entered, TriggerStep):
            return entered  # nothing entered, nothing else to do
        work = entered
    kinds = list(work.current)
    if len(kinds) > 1:
        order = policy.priority_order
        kinds.sort(key=lambda kind: order.get(kind) or (0, kind))
    for kind in kinds:
        work.settle(kind, profile, event)
    pending_after = tuple(work.current.values())
    if len(pending_after) > 1:
        pending_after = tuple(sorted(pending_after, key=_kind_of))
    due_at = min(work.wake) if work.wake else None
    if pending_after == pending_before and not work.outcomes:
        return TriggerStep(profile, outcomes=tuple(work.arrived_stale), due_at=due_at)
    return TriggerStep(
        _recorded(profile, pending_after, work.outcomes, work.sent, work.pass_sends, at, guardrails=policy.guardrails),
        triggers=tuple(work.sent),
        outcomes=(*work.arrived_stale, *((pending.kind, outcome.name) for pending, outcome in work.outcomes)),
        due_at=due_at,
    )


def nothing_to_advance(profile: Profile, event: Event | None, *, refreshed: bool, policy: TriggerPolicy) -> bool:
    """Whether ``advance_triggers`` would answer ``TriggerStep(profile)`` at once: nothing pending, and
    nothing the event (or a refresh, a wake-up) could enter. The profile stage asks this first for every
    event, so most events (nothing pending) skip the call and the step it builds."""
    if profile.pending_triggers:
        return False
    definitions = policy.definitions
    if (refreshed or event is None) and definitions.rule_only:
        return False
    return event is None or event.type != "track" or event.event not in definitions.by_entry_event


def quiet_event(profile: Profile, event: Event | None, *, refreshed: bool, policy: TriggerPolicy) -> bool:
    """Whether ``event`` can touch no pending trigger by itself: it enters nothing, exits nothing by name and
    takes no channel away (``TriggerPolicy.reactive_events``; an identify may have put the customer on the
    suppression list, as ``_withdraws`` reads it), and no rule-only entry is asked (no refresh, not a wake-up).

    Then only a waiting trigger that is due, or whose exit rule reads a field the event changed, can change
    (``waiting_wake``). The one definition of the quiet path: the profile stage asks it before the call
    (after ``nothing_to_advance``) and ``advance_triggers`` when its caller did not."""
    if event is None or (refreshed and policy.definitions.rule_only):
        return False
    if event.type == "track":
        return event.event not in policy.reactive_events
    return event.type != "identify" or not on_suppression_list(profile)


def refresh_may_enter(profile: Profile, event: Event, *, at: float, policy: TriggerPolicy) -> bool:
    """Whether the refresh of segments and scores before ``event`` may let a rule-only definition enter (or
    renew): one of them is pending, has a custom rule, or may enter now (``DefinedTrigger.enter``).

    A refresh matters to the trigger stage only through the rule-only entries it asks. When none of them can
    enter, ``advance_triggers`` answers for the refreshed event what it answers for the event alone, so the
    profile stage passes ``refreshed=False`` and the quiet paths stay open (live traffic refreshes on nearly
    every event, and most of them enter nothing). The entry is asked as ``_enter_all`` asks it: same event,
    entry time ``at`` (a rule-only definition has no entry events)."""
    rule_only = policy.definitions.rule_only
    if not rule_only:
        return False
    rules = policy.rules
    pending = profile.pending_triggers
    for definition in rule_only:
        rule = rules.get(definition.name)
        if type(rule) is not DefinedTrigger:  # a custom rule may enter on more than its definition says
            return True
        if pending and any(p.kind == definition.name for p in pending):  # a renewal, settled by the pass
            return True
        condition = definition.entry_rule
        if (
            rule._entry_order[1]  # ``enter`` tests this rule first too; it fails for most refreshes
            and condition is not None
            and not condition.holds(profile, at, rule.consumables, rule.profile_policy)
        ):
            continue
        if rule.enter(profile, event, entry_at=at, at=at, existing=None) is not None:
            return True
    return False


def _enter_all(  # noqa: PLR0917 - the pass's inputs, as advance_triggers has them
    policy: TriggerPolicy,
    profile: Profile,
    event: Event | None,
    candidates: tuple[TriggerDefinition, ...],
    before: Profile | None,
    at: float,
    forgotten_at: float | None,
    *,
    withdrawing: bool,
    plain: bool,
) -> _Pass | TriggerStep:
    """The pass with ``candidates`` entered, or the answer when nothing entered and nothing else can change
    (``plain``: the event exits nothing by name and takes no channel away)."""
    rules = policy.rules
    current = {p.kind: p for p in profile.pending_triggers} if profile.pending_triggers else {}
    entries: list[tuple[str, PendingTrigger]] | None = None
    arrived_stale: list[tuple[str, str]] = []
    if plain and (not current or not _any_waiting(candidates, current)):
        # Kinds with nothing waiting: each entry is asked on its own, as ``_Pass.enter`` would (no exit
        # check, nothing to supersede); the usual answer, nothing entered, needs no pass at all.
        for definition in candidates:
            entry_at = event.timestamp if event is not None and definition.entry_events else at
            rule = rules[definition.name]
            entered = rule.enter(profile, event, entry_at=entry_at, at=at, existing=None)
            if entered is None:
                continue
            if isinstance(entered, ArrivedStale):
                arrived_stale.append(_decided_stale(rule, profile, entered, at, forgotten_at))
                continue
            if entries is None:
                entries = []
            entries.append((definition.name, entered))
        if entries is None:
            return _unchanged(profile, before, at, policy, None, forgotten_at, arrived_stale)
    work = _Pass(rules, current, at, before, forgotten_at, guardrails=policy.guardrails, withdrawing=withdrawing)
    if entries is not None:
        current.update(entries)
        work.arrived_stale = arrived_stale
        return work
    for definition in candidates:
        work.enter(definition, profile, event)
    if not work.changed and plain:
        return _unchanged(profile, before, at, policy, work, forgotten_at, work.arrived_stale)
    return work


def _decided_stale(
    rule: TriggerRule, profile: Profile, entry: ArrivedStale, at: float, forgotten_at: float | None
) -> tuple[str, str]:
    """``(kind, outcome)`` of an entry that arrived stale: ``rule.decide`` as for any due trigger (the facts
    check, then the guards up to ``StaleGuard``, which drops it if nothing before it does)."""
    pending = entry.pending
    return pending.kind, rule.decide(profile, pending, at=at, forgotten_at=forgotten_at).outcome.name


def _any_waiting(candidates: tuple[TriggerDefinition, ...], current: dict[str, PendingTrigger]) -> bool:
    """Whether any of ``candidates`` has a pending trigger (a loop: a generator per call costs more)."""
    for definition in candidates:  # noqa: SIM110 - see the docstring
        if definition.name in current:
            return True
    return False


def _unchanged(  # noqa: PLR0917 - the pass's inputs, as _enter_all has them
    profile: Profile,
    before: Profile | None,
    at: float,
    policy: TriggerPolicy,
    work: _Pass | None,
    forgotten_at: float | None,
    arrived_stale: list[tuple[str, str]],
) -> _Pass | TriggerStep:
    """After a plain event entered nothing: the answer, or the pass (``work``, else a new one) to settle
    when a waiting trigger may change. ``arrived_stale``: the outcomes of entries that arrived stale."""
    if not profile.pending_triggers:
        return TriggerStep(profile, outcomes=tuple(arrived_stale))  # nothing entered, nothing pending
    wake = waiting_wake(profile, before, at=at, policy=policy)  # nothing entered: often nothing else to do
    if wake is not None:
        return TriggerStep(profile, outcomes=tuple(arrived_stale), due_at=wake)
    if work is not None:
        return work
    current = {p.kind: p for p in profile.pending_triggers}
    work = _Pass(policy.rules, current, at, before, forgotten_at, guardrails=policy.guardrails)
    work.arrived_stale = arrived_stale
    return work


class _Pass:
    """One run of ``advance_triggers`` over a profile: the pending triggers by kind and what it decided.

    A plain slots class (one is built for most entry and exit events; a dataclass with five default
    factories cost more than the rest of a pass that enters nothing)."""

    __slots__ = (
        "rules",
        "current",
        "at",
        "before",
        "forgotten_at",
        "guardrails",
        "withdrawing",
        "outcomes",
        "sent",
        "pass_sends",
        "wake",
        "changed",
        "exits",
        "arrived_stale",
    )

    def __init__(
        self,
        rules: Mapping[str, TriggerRule],
        current: dict[str, PendingTrigger],
        at: float,
        before: Profile | None,
        forgotten_at: float | None = None,
        *,
        guardrails: Guardrails = NO_GUARDRAILS,
        withdrawing: bool = False,
    ) -> None:
        self.rules = rules
        self.current = current
        self.at = at
        self.before = before
        self.forgotten_at = forgotten_at
        self.guardrails = guardrails
        self.withdrawing = withdrawing  # the event may have taken channels away (consent, suppression)
        self.outcomes: list[tuple[PendingTrigger, Outcome]] = []
        self.sent: list[Trigger] = []
        self.pass_sends: list[TriggerSend] = []  # what this pass sent: the caps count it
        self.wake: list[float] = []
        self.changed = False  # an entry added, renewed or replaced a pending trigger
        # ``DefinedTrigger.cancels`` answers, by (kind, entered_at): the answer reads the pending trigger
        # only through ``entered_at`` (a renewal keeps it), so the check before an entry also serves ``settle``.
        self.exits: dict[tuple[str, float], bool] = {}
        self.arrived_stale: list[tuple[str, str]] = []  # (kind, outcome) of entries decided on arrival

    def enter(self, definition: TriggerDefinition, profile: Profile, event: Event | None) -> None:
        """Let ``definition`` enter (or renew, or start a new episode of) its pending trigger."""
        rule = self.rules[definition.name]
        existing = self.current.get(definition.name)
        if event is not None and definition.entry_events:
            entry_at = event.timestamp
        else:
            entry_at = existing.last_entry_at if existing is not None else self.at
        if existing is not None and self._cancels(rule, profile, existing, event):
            return  # the same event exits it (and may not renew it)
        entered = rule.enter(profile, event, entry_at=entry_at, at=self.at, existing=existing)
        if entered is None:
            return
        if isinstance(entered, ArrivedStale):
            self.arrived_stale.append(_decided_stale(rule, profile, entered, self.at, self.forgotten_at))
            return
        if existing is not None and entered.trigger_id != existing.trigger_id:
            self.outcomes.append((existing, SUPERSEDED))
        if entered is not existing:
            self.current[definition.name] = entered
            self.changed = True

    def _cancels(self, rule: TriggerRule, profile: Profile, pending: PendingTrigger, event: Event | None) -> bool:
        """``rule.cancels`` for ``pending`` in this pass, evaluated once per kind and entry time."""
        if type(rule) is not DefinedTrigger:  # a custom rule (or subclass) may read more of the pending trigger
            return rule.cancels(profile, pending, event, self.at, self._before(pending))
        key = (pending.kind, pending.entered_at)
        found = self.exits.get(key)
        if found is None:
            found = self.exits[key] = rule.cancels(profile, pending, event, self.at, self._before(pending))
        return found

    def _before(self, pending: PendingTrigger) -> Profile | None:
        """The profile before the event if ``pending`` was already waiting then (else None: evaluate)."""
        before = self.before
        if before is None or pending not in before.pending_triggers:  # same record: waiting unchanged
            return None
        return before

    def settle(self, kind: str, profile: Profile, event: Event | None) -> None:
        """Withdraw, cancel, re-time, or decide the pending trigger of ``kind``."""
        pending = self.current[kind]
        rule = self.rules.get(kind)
        if rule is None or self._cancels(rule, profile, pending, event):
            self.outcomes.append((pending, WITHDRAWN if rule is None else CANCELLED_EXIT))
            del self.current[kind]
            return
        if self.withdrawing and self._no_channel_left(rule, profile):
            self.outcomes.append((pending, CANCELLED_CONSENT))
            del self.current[kind]
            return
        due_at = max(rule.due_at(pending), pending.deferred_until)
        if due_at != pending.due_at:
            pending = self.current[kind] = msgspec.structs.replace(pending, due_at=due_at)
        if due_at > self.at:
            self.wake.append(due_at)
            return
        decided = rule.decide(
            profile, pending, at=self.at, forgotten_at=self.forgotten_at, pass_sends=tuple(self.pass_sends)
        )
        outcome, trigger = decided.outcome, decided.trigger
        if outcome.action == HOLD:
            self.wake.append(rule.wake_after_hold(pending))
            return
        if outcome.action == DEFER and decided.defer_to is not None:
            until = decided.defer_to
            self.current[kind] = msgspec.structs.replace(pending, due_at=until, deferred_until=until)
            self.outcomes.append((pending, outcome))
            self.wake.append(until)
            return
        del self.current[kind]
        self.outcomes.append((pending, outcome))
        if trigger is not None:
            self.sent.append(trigger)
            self.pass_sends.append(TriggerSend(kind=trigger.kind, channel=trigger.channel, at=self.at))

    def _no_channel_left(self, rule: TriggerRule, profile: Profile) -> bool:
        """Whether the suppression list, suppressions or consent leave ``rule``'s kind no channel at all."""
        if on_suppression_list(profile):
            return True
        if not isinstance(rule, DefinedTrigger):
            return False
        return not open_channels(profile, rule.definition.channels, self.guardrails)


def waiting_wake(profile: Profile, before: Profile | None, *, at: float, policy: TriggerPolicy) -> float | None:
    """The next wake-up if an event that enters and exits nothing (``quiet_event``) leaves every pending
    trigger as it was (none due, none re-timed, no exit rule reading a field the event changed), else None:
    a waiting trigger may change (settle them). ``advance_triggers`` answers ``TriggerStep(profile,
    due_at=...)`` then: the profile stage asks this itself, without the call, its pass and its step (half the
    calls of the generated workload)."""
    waiting = profile.pending_triggers
    if before is None or before.pending_triggers is not waiting:
        return None
    by_kind = policy.definitions.by_kind
    earliest = None
    for pending in waiting:
        due = pending.due_at
        definition = by_kind.get(pending.kind)
        if definition is None or due <= at:
            return None
        retimed = definition.wait.due_at(pending.last_entry_at, pending.facts)
        if (retimed if retimed > pending.deferred_until else pending.deferred_until) != due:
            return None  # the definition changed (a new file): re-time it on the full path
        exit_rule = definition.exit_rule
        if exit_rule is not None and not exit_rule.unchanged(before, profile):
            return None
        if earliest is None or due < earliest:
            earliest = due
    return earliest


def _withdraws(event: Event, name: str | None, profile: Profile) -> bool:
    """Whether ``event`` may have taken channels away (pending triggers without one are then cancelled)."""
    if name is not None:
        return name in WITHDRAWING_EVENTS
    return event.type == "identify" and on_suppression_list(profile)


def _with_facts(definitions: TriggerDefinitions, pending: tuple[PendingTrigger, ...]) -> list[TriggerDefinition]:
    found = (definitions.by_kind.get(p.kind) for p in pending)
    return [d for d in found if d is not None and d.facts]


_kind_of = attrgetter("kind")


def _recorded(  # noqa: PLR0917 - the pass's results, as advance_triggers has them
    profile: Profile,
    pending: tuple[PendingTrigger, ...],
    outcomes: list[tuple[PendingTrigger, Outcome]],
    sent: list[Trigger],
    sends: list[TriggerSend],
    at: float,
    *,
    guardrails: Guardrails,
) -> Profile:
    """``profile`` with the pass's results: one copy of the profile, each record built once (``sends``: the
    pass's records of ``sent``, in order, as the caps counted them)."""
    history = profile.trigger_history
    if outcomes:
        channels = {trigger.trigger_id: trigger.channel for trigger in reversed(sent)} if sent else {}
        records = tuple(
            TriggerOutcome(
                trigger_id=trigger_pending.trigger_id,
                kind=trigger_pending.kind,
                outcome=outcome.name,
                at=at,
                channel=channels.get(trigger_pending.trigger_id, ""),
            )
            for trigger_pending, outcome in outcomes
        )
        history += records
        if len(history) > MAX_TRIGGER_HISTORY:  # as ``capped_append`` of each record: the newest kept
            history = history[-MAX_TRIGGER_HISTORY:]
    if not sent:
        return msgspec.structs.replace(profile, pending_triggers=pending, trigger_history=history)
    triggers_sent = profile.triggers_sent
    last_sent = dict(profile.trigger_last_sent)
    remembered = profile.trigger_sends
    for trigger, send in zip(sent, sends, strict=True):
        triggers_sent = capped_append(triggers_sent, trigger.trigger_id, MAX_TRIGGERS_REMEMBERED)
        last_sent[trigger.kind] = at
        remembered = remember_send(remembered, send, guardrails)
    return msgspec.structs.replace(
        profile,
        pending_triggers=pending,
        trigger_history=history,
        triggers_sent=triggers_sent,
        trigger_last_sent=last_sent,
        trigger_sends=remembered,
    )
