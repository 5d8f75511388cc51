"""The trigger engine's shortcuts never change a decision, on the generated (``streamcdp generate``) workload.

The engine skips work on the per-event path: exit rules on fields an event left alone are not re-run, an
untouched pending trigger returns its wake-up at once, one ``cancels`` answer per kind and entry time
serves the whole pass, and rules read record fields straight from the record. Every profile-stage step
of a generated workload (with and without the worker's audiences) is checked against the full
evaluation: no ``before`` profile (every exit rule evaluated, no quiet path) and a ``DefinedTrigger``
subclass per kind (which ``advance_triggers`` asks every time, without the per-pass answers). Each rule
also answers on every profile the same as on the rendered view of the fields it reads.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import msgspec
import pytest
from core_event_factory import T0, identify, page, shipped_triggers, track
from hypothesis import given, settings
from hypothesis import strategies as st
from test_trigger_kinds import STAGE
from test_trigger_properties import OPS, _script
from trigger_journeys import Journey

import core.profile_stage
from core.profile_stage import KeyState, StagePolicy, step_key
from core.rules.context import Context
from core.segment_fields import profile_view
from core.triggers.engine import (
    DefinedTrigger,
    TriggerPolicy,
    TriggerStep,
    advance_triggers,
    quiet_event,
    refresh_may_enter,
    waiting_wake,
)
from core.triggers.payload import JUST_BOUGHT_S, recommend
from offline.generator import WorkloadConfig, generate_workload
from offline.training import ReplayStats, customer_of, decode_lines, identity_map
from schemas.commands import ApplyEvent
from schemas.profile import CartItem, Profile
from schemas.triggers import PendingTrigger
from streams.settings import Settings
from streams.stage_config import stage_policy

# Both comparisons subclass ``DefinedTrigger`` and replace ``core.profile_stage.advance_triggers``: neither is
# possible when scripts/build_compiled.sh has compiled the stage with mypyc (compiled classes take no interpreted
# subclasses; compiled modules call each other's functions directly, not through the module's namespace). They
# check the engine's shortcuts, which the pure run covers; the rest of the suite checks compiled == pure.
compiled_stage = pytest.mark.skipif(
    not core.profile_stage.__file__.endswith(".py"), reason="the stage is compiled (scripts/build_compiled.sh)"
)


class _EveryCheck(DefinedTrigger):
    """The same rule, asked for every exit check (the engine keeps per-pass answers for ``DefinedTrigger``)."""


def _reference(policy: TriggerPolicy) -> TriggerPolicy:
    every = {
        d.name: _EveryCheck(d, policy.consumables, policy.profile, policy.guardrails)
        for d in policy.definitions.definitions
    }
    return dataclasses.replace(policy, rules_by_kind=every)


def _rendered(condition, profile: Profile, now: float, policy: TriggerPolicy) -> bool:
    view = profile_view(profile, now=now, fields=condition.fields, policy=policy.profile)
    return bool(condition.evaluate(Context(view, now, policy.consumables)))


@pytest.fixture(scope="module")
def commands() -> list[tuple[str, ApplyEvent, float]]:
    workload = generate_workload(WorkloadConfig(start=1_700_000_000.0, customers=40, days=12, seed=11))
    events = decode_lines(workload.lines, ReplayStats())
    links = identity_map(events)
    return [(customer_of(event, links), ApplyEvent(event=event), event.timestamp) for event in events]


def _checking(triggers: TriggerPolicy, compared: dict[str, int]):
    """``advance_triggers`` that also runs the full evaluation and the rendered rules, and compares."""
    reference = _reference(triggers)
    conditions = [
        rule for d in triggers.definitions.definitions for rule in (d.entry_rule, d.exit_rule) if rule is not None
    ]

    def checked(profile: Profile, **kwargs) -> TriggerStep:
        step = advance_triggers(profile, **kwargs)
        full = advance_triggers(profile, **{**kwargs, "policy": reference, "before": None, "quiet": None})
        assert step == full
        at = kwargs["at"]
        for condition in conditions:
            direct = condition.holds(profile, at, triggers.consumables, triggers.profile)
            assert direct == _rendered(condition, profile, at, triggers), condition.text
        compared["steps"] += 1
        compared["sent"] += len(step.triggers)
        compared["outcomes"] += len(step.outcomes)
        return step

    return checked


def _checking_dispatch(triggers: TriggerPolicy, compared: dict[str, int]):
    """``quiet_event`` and ``waiting_wake`` as the profile stage asks them (the second only after the first
    said yes, for the same profile); when the pair answers, also the full evaluation, compared: the same
    profile, nothing sent or recorded, the same wake-up. (Nothing is due then, so the forgetting time, which
    only the decisions read and the profile stage passes to ``advance_triggers`` alone, does not matter.)
    The call that follows (told ``quiet``) is ``_checking``'s, compared with the full evaluation."""
    reference = _reference(triggers)
    asked: dict = {}

    def checked_quiet(profile: Profile, event, **kwargs) -> bool:
        quiet = quiet_event(profile, event, **kwargs)
        asked.clear()
        if quiet:
            asked.update(profile=profile, event=event, refreshed=kwargs["refreshed"])
        return quiet

    def checked_wake(profile: Profile, before: Profile | None, **kwargs) -> float | None:
        assert asked["profile"] is profile  # asked only after quiet_event said yes for this profile
        wake = waiting_wake(profile, before, **kwargs)
        if wake is not None:
            event, refreshed = asked["event"], asked["refreshed"]
            full = advance_triggers(
                profile, event=event, at=kwargs["at"], refreshed=refreshed, forgotten_at=None, policy=reference
            )
            assert full.profile is profile
            assert full == TriggerStep(profile, due_at=wake)
            compared["untouched"] += 1
        return wake

    return checked_quiet, checked_wake


def _checking_refresh(triggers: TriggerPolicy, compared: dict[str, int]):
    """``refresh_may_enter`` as the profile stage asks it; when it says no rule-only definition can enter, the
    full evaluation of the refreshed event is compared with the full evaluation of the event alone (what the
    stage then runs): the same answer. (The forgetting time is the same in both, so it need not be the stage's.)"""
    reference = _reference(triggers)

    def checked(profile: Profile, event, *, at: float, policy: TriggerPolicy) -> bool:
        may_enter = refresh_may_enter(profile, event, at=at, policy=policy)
        if not may_enter:
            asked = {"event": event, "at": at, "forgotten_at": None, "policy": reference}
            assert advance_triggers(profile, refreshed=True, **asked) == advance_triggers(
                profile, refreshed=False, **asked
            )
            compared["refresh_enters_nothing"] += 1
        return may_enter

    return checked


def _patch_stage(patch: pytest.MonkeyPatch, triggers: TriggerPolicy, compared: dict[str, int]) -> None:
    """The profile stage's trigger calls replaced by the checking ones above."""
    checked_quiet, checked_wake = _checking_dispatch(triggers, compared)
    patch.setattr(core.profile_stage, "refresh_may_enter", _checking_refresh(triggers, compared))
    patch.setattr(core.profile_stage, "advance_triggers", _checking(triggers, compared))
    patch.setattr(core.profile_stage, "quiet_event", checked_quiet)
    patch.setattr(core.profile_stage, "waiting_wake", checked_wake)


@compiled_stage
@pytest.mark.parametrize("audiences", [False, True], ids=["no audiences", "audiences"])
def test_the_shortcuts_decide_as_the_full_evaluation(commands, audiences, monkeypatch):
    worker = stage_policy(Settings())
    policy = worker if audiences else StagePolicy(triggers=worker.triggers, profile=worker.profile)
    assert policy.triggers is not None
    compared = dict.fromkeys(("steps", "untouched", "sent", "outcomes", "refresh_enters_nothing"), 0)
    _patch_stage(monkeypatch, policy.triggers, compared)
    states: dict[str, KeyState] = {}
    for key, command, now in commands:
        state = states.get(key) or KeyState(key=key)
        states[key] = step_key(state, command, now=now, policy=policy).state
    # The workload exercises the decisions and the stage's shortcut, not only the fast path.
    assert compared["steps"] + compared["untouched"] > len(commands) / 2
    # With audiences nearly every event refreshes; most refreshes let no rule-only entry in, and then the
    # event takes the same paths as without (``refresh_may_enter``).
    assert compared["untouched"] > 10
    if audiences:
        assert compared["refresh_enters_nothing"] > len(commands) / 2
    assert compared["sent"] > 10
    assert compared["outcomes"] > compared["sent"]


QUIET_CASES = [
    ("a page view", page(T0 + 7200), False, {}, True),
    ("a message event", track("Message Sent", T0 + 7200), False, {}, True),
    ("an identify", identify(T0 + 7200), False, {}, True),
    ("an entry event", track("Product Viewed", T0 + 7200), False, {}, False),
    ("an exit event", track("Order Completed", T0 + 7200), False, {}, False),
    ("a channel-withdrawing event", track("Unsubscribed", T0 + 7200), False, {}, False),
    ("an identify on the suppression list", identify(T0 + 7200, suppressed=True), False, {"suppressed": True}, False),
    ("a page view at a refresh (rule-only entries asked)", page(T0 + 7200), True, {}, False),
    ("a wake-up (no event)", None, True, {}, False),
]


@pytest.mark.parametrize(
    ("event", "refreshed", "traits", "quiet"), [c[1:] for c in QUIET_CASES], ids=[c[0] for c in QUIET_CASES]
)
def test_quiet_event_is_the_engines_own_quiet_path(event, refreshed, traits, quiet):
    """``quiet_event`` (the one definition of an event that can touch no pending trigger) on a table of events,
    and ``advance_triggers`` told its answer (as the profile stage tells it, a cart reminder due) answers as
    when it asks itself, and as the full evaluation."""
    triggers = shipped_triggers()
    cart = (CartItem(product_id="p1", quantity=1, price=100, added_at=T0),)
    pending = PendingTrigger(
        kind="cart_abandonment", trigger_id="t1", entered_at=T0, last_entry_at=T0, due_at=T0 + 1800
    )
    profile = Profile(
        customer_id="c1", user_id="u1", email_hash="e1", cart=cart, custom_traits=traits, pending_triggers=(pending,)
    )
    assert quiet_event(profile, event, refreshed=refreshed, policy=triggers) is quiet
    at = T0 + 7200
    kwargs = {"event": event, "at": at, "refreshed": refreshed, "forgotten_at": None, "before": profile}
    if quiet:
        assert waiting_wake(profile, profile, at=at, policy=triggers) is None  # due: the stage makes the call
    told = advance_triggers(profile, policy=triggers, quiet=quiet, **kwargs)
    assert told == advance_triggers(profile, policy=triggers, **kwargs)
    assert told == advance_triggers(profile, policy=_reference(triggers), **{**kwargs, "before": None})
    assert told.profile is not profile  # the due reminder was decided (sent, or another outcome recorded)


def _recommended_by_key(profile: Profile, exclude: set[str], at: float, count: int) -> tuple[str, ...]:
    """The ranking as ``recommend`` wrote it before Round 7: the candidates sorted with a key function."""
    in_cart = {item.product_id for item in profile.cart}
    horizon = at - JUST_BOUGHT_S
    candidates = [
        (pid, viewed_at)
        for pid, viewed_at in profile.recently_viewed
        if pid not in exclude
        and pid not in in_cart
        and not (profile.product_purchases.get(pid) and profile.product_purchases[pid][-1] >= horizon)
    ]
    views = profile.product_views
    ranked = sorted(candidates, key=lambda entry: (-views.get(entry[0], 0), -entry[1], entry[0]))
    return tuple(pid for pid, _ in ranked[:count])


_products = st.sampled_from(("p1", "p2", "p3", "p4", "p5"))


@settings(max_examples=300, deadline=None)
@given(
    viewed=st.lists(st.tuples(_products, st.sampled_from((T0 - 50.0, T0 - 10.0, T0))), max_size=9),
    views=st.dictionaries(_products, st.integers(0, 4)),
    bought=st.dictionaries(_products, st.sampled_from((T0 - 40 * 86400.0, T0 - 86400.0))),
    in_cart=st.lists(_products, max_size=2),
    exclude=st.sets(_products, max_size=2),
    count=st.integers(0, 6),
)
def test_recommend_ranks_as_the_key_sort(*, viewed, views, bought, in_cart, exclude, count):
    """``recommend`` sorts each candidate as its own key tuple; the same products in the same order as the
    key-function sort it replaced, ties (same views, same time) and repeated products included."""
    cart = tuple(CartItem(product_id=pid, quantity=1, price=100, added_at=T0) for pid in in_cart)
    purchases = {pid: [at] for pid, at in bought.items()}
    profile = Profile(
        customer_id="c1", recently_viewed=tuple(viewed), product_views=views, product_purchases=purchases, cart=cart
    )
    expected = _recommended_by_key(profile, exclude, T0, count) if count > 0 else ()
    assert recommend(profile, exclude=exclude, at=T0, count=count) == expected


# Journeys of the property tests, squeezed so that carts empty and checkouts and orders land while triggers
# wait: mostly the known customer, one product, gaps shorter than the cart reminder's delay.
journeys = st.lists(
    st.tuples(st.sampled_from(OPS), st.sampled_from(("u1", "u1", "a1")), st.integers(1, 40), st.just("p1")),
    min_size=2,
    max_size=25,
)


@compiled_stage
@settings(max_examples=150, deadline=None)
@given(journeys, st.one_of(st.none(), st.integers(0, 24)))
def test_the_shortcuts_decide_as_the_full_evaluation_on_random_journeys(raw: list, forget_at: int | None):
    """Carts emptied by removals, orders on linked devices, logins, deletions, clock ticks: the exits by rule
    that the generated workload rarely has."""
    played, _ = _script(raw, forget_at)
    assert STAGE.triggers is not None
    with pytest.MonkeyPatch.context() as patch:
        _patch_stage(patch, STAGE.triggers, defaultdict(int))
        Journey(STAGE).play(*played)


RECORD_RULES = (
    "count(cart) > 0",
    "count(cart) == 0",
    "count(cart) != 2",
    "count(cart) >= 2 and not exists(user_id)",
    "exists(user_id)",
    "scores.purchase_7d >= 0.6",
    "scores.purchase_7d < 0.6 or orders > 1",
    "orders > 0 and scores.churn_60d >= 0.5",
    "orders == 1",
    "count(cart) > 0 and orders > 0 and exists(user_id)",
    "orders == 1 or count(cart) == 0 or scores.purchase_7d >= 0.6",
    "not (orders > 0 or exists(user_id))",
)


def _profiles() -> list[Profile]:
    from schemas.profile import CartItem

    item = CartItem(product_id="p1", quantity=1, price=100, added_at=1_700_000_000.0)
    carts: list[tuple[CartItem, ...]] = [
        (),
        (item,),
        (item, CartItem(product_id="p2", quantity=2, price=0, added_at=0.0)),
    ]
    scores: list[dict] = [{}, {"purchase_7d": 0.6}, {"purchase_7d": 0.59, "churn_60d": 1}, {"churn_60d": 0.5}]
    scores += [{"purchase_7d": True, "churn_60d": "0.9"}]  # not numbers (a record built unchecked): never true
    return [
        Profile(customer_id="c1", cart=cart, scores=score, user_id=user_id, orders=orders)
        for cart in carts
        for score in scores
        for user_id in (None, "", "u1")
        for orders in (0, 1, 2)
    ]


@pytest.mark.parametrize("text", RECORD_RULES)
def test_a_rule_answered_from_the_record_answers_as_its_rendered_view(text):
    """``record_test`` (counts, numbers, existence read straight from the record) against the compiled rule
    on the rendered view, for every combination of the fields it reads."""
    from core.triggers.rules import build_catalog, compile_condition

    condition = compile_condition(text, build_catalog())
    assert condition._record_test(Profile) is not None  # the rule is one the record test covers
    policy = stage_policy(Settings()).triggers
    assert policy is not None
    for profile in _profiles():
        assert condition.holds(profile, 1_700_000_000.0) == _rendered(condition, profile, 1_700_000_000.0, policy)


def test_a_rule_the_record_test_does_not_cover_reads_the_view():
    from core.triggers.rules import build_catalog, compile_condition

    for text in ("count(recently_viewed) > 1", "days_since(last_seen) > 3", "scores.purchase_7d >= orders"):
        assert compile_condition(text, build_catalog())._record_test(Profile) is None, text


def test_a_refresh_matters_only_when_a_rule_only_definition_may_enter():
    """``refresh_may_enter`` (win_back, the shipped rule-only kind: ``orders > 0 and scores.churn_60d >= 0.5``,
    re-entry 60 days): yes when its rule holds and it may enter again, or when one is pending; no otherwise,
    and never without rule-only definitions."""
    triggers = STAGE.triggers
    assert triggers is not None
    event = page(T0)
    likely_to_churn = Profile(customer_id="c1", user_id="u1", orders=1, scores={"churn_60d": 0.9})
    assert refresh_may_enter(likely_to_churn, event, at=T0, policy=triggers)
    assert not refresh_may_enter(msgspec.structs.replace(likely_to_churn, orders=0), event, at=T0, policy=triggers)
    assert not refresh_may_enter(
        msgspec.structs.replace(likely_to_churn, scores={"churn_60d": 0.4}), event, at=T0, policy=triggers
    )
    sent_lately = msgspec.structs.replace(likely_to_churn, trigger_last_sent={"win_back": T0 - 86400.0})
    assert not refresh_may_enter(sent_lately, event, at=T0, policy=triggers)  # within its re-entry time
    waiting = PendingTrigger(
        kind="win_back", trigger_id="win_back:1", entered_at=T0, last_entry_at=T0, due_at=T0 + 60, facts={}
    )
    waiting_profile = msgspec.structs.replace(sent_lately, orders=0, pending_triggers=(waiting,))
    assert refresh_may_enter(waiting_profile, event, at=T0, policy=triggers)  # the pass settles it
    without_rule_only = dataclasses.replace(
        triggers,
        definitions=dataclasses.replace(
            triggers.definitions,
            definitions=tuple(d for d in triggers.definitions.definitions if d.entry_events),
        ),
    )
    assert not refresh_may_enter(likely_to_churn, event, at=T0, policy=without_rule_only)
