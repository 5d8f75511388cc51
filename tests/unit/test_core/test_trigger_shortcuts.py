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

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_trigger_kinds import STAGE
from test_trigger_properties import OPS, _script
from trigger_journeys import Journey

import core.profile_stage
from core.profile_stage import KeyState, StagePolicy, step_key
from core.rules.context import Context
from core.segment_fields import profile_view
from core.triggers.engine import DefinedTrigger, TriggerPolicy, TriggerStep, advance_triggers
from offline.generator import WorkloadConfig, generate_workload
from offline.training import ReplayStats, customer_of, decode_lines, identity_map
from schemas.commands import ApplyEvent
from schemas.profile import Profile
from streams.settings import Settings
from streams.stage_config import stage_policy


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
        full = advance_triggers(profile, **{**kwargs, "policy": reference, "before": None})
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


@pytest.mark.parametrize("audiences", [False, True], ids=["no audiences", "audiences"])
def test_the_shortcuts_decide_as_the_full_evaluation(commands, audiences, monkeypatch):
    worker = stage_policy(Settings())
    policy = worker if audiences else StagePolicy(triggers=worker.triggers, profile=worker.profile)
    assert policy.triggers is not None
    compared = dict.fromkeys(("steps", "sent", "outcomes"), 0)
    monkeypatch.setattr(core.profile_stage, "advance_triggers", _checking(policy.triggers, compared))
    states: dict[str, KeyState] = {}
    for key, command, now in commands:
        state = states.get(key) or KeyState(key=key)
        states[key] = step_key(state, command, now=now, policy=policy).state
    # The workload exercises the decisions, not only the fast path.
    assert compared["steps"] > len(commands) / 2
    assert compared["sent"] > 10
    assert compared["outcomes"] > compared["sent"]


# Journeys of the property tests, squeezed so that carts empty and checkouts and orders land while triggers
# wait: mostly the known customer, one product, gaps shorter than the cart reminder's delay.
journeys = st.lists(
    st.tuples(st.sampled_from(OPS), st.sampled_from(("u1", "u1", "a1")), st.integers(1, 40), st.just("p1")),
    min_size=2,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(journeys, st.one_of(st.none(), st.integers(0, 24)))
def test_the_shortcuts_decide_as_the_full_evaluation_on_random_journeys(raw: list, forget_at: int | None):
    """Carts emptied by removals, orders on linked devices, logins, deletions, clock ticks: the exits by rule
    that the generated workload rarely has."""
    played, _ = _script(raw, forget_at)
    assert STAGE.triggers is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(core.profile_stage, "advance_triggers", _checking(STAGE.triggers, defaultdict(int)))
        Journey(STAGE).play(*played)
